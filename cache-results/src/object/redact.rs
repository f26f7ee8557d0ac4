//! Keeping credentials out of messages, logs and `Debug` output.
//!
//! An object store's error text can quote a request: its URL (with a SAS token or a
//! signature in the query string) or a configuration value. Every message taskcache
//! builds from one goes through [`redact`] first.

/// The environment variables whose values are credentials, by the words in their names.
const SECRET_WORDS: [&str; 7] = [
    "SECRET",
    "KEY",
    "TOKEN",
    "SAS",
    "PASSWORD",
    "CREDENTIAL",
    "SIGNATURE",
];

/// Whether a configuration key or environment variable holds a credential.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// The values of the cloud credentials in the environment (`AWS_*`, `AZURE_*`,
/// `GOOGLE_*` variables whose names say they are secret).
fn secrets_in_environment() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.to_str()?;
            let cloud = ["AWS_", "AZURE_", "GOOGLE_", "GCS_", "OBJECT_STORE_"]
                .iter()
                .any(|p| name.to_ascii_uppercase().starts_with(p));
            (cloud && is_secret_name(name))
                .then(|| value.into_string().ok())
                .flatten()
        })
        .collect()
}

/// `text` with every credential in `secrets` or in the environment replaced by
/// `<redacted>`, and the query string of every URL cut off (it may carry a signature
/// or a SAS token).
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = strip_queries(text);
    let mut all: Vec<String> = secrets.to_vec();
    all.extend(secrets_in_environment());
    // Longest first, so a secret that contains another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in all.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "<redacted>");
        }
    }
    out
}

/// `text` with the query of each `scheme://…?query` cut to `?<redacted>`.
fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL runs from its scheme to the next space, quote or closing bracket.
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ']'))
            .map_or(rest.len(), |e| at + e);
        let url = &rest[..end];
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?<redacted>");
            }
            None => out.push_str(url),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `url` without user information (`scheme://user:password@host`) or query string.
pub(crate) fn display_url(url: &str) -> String {
    let stripped = strip_queries(url);
    match stripped.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..host_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{scheme}://{rest}")
        }
        None => stripped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_queries_are_removed() {
        let text = "GET https://acct.blob.core.windows.net/c/x?sig=abc&se=1 failed: key hunter22";
        let out = redact(text, &["hunter22".into()]);
        assert_eq!(
            out,
            "GET https://acct.blob.core.windows.net/c/x?<redacted> failed: key <redacted>"
        );
    }

    #[test]
    fn user_information_is_not_displayed() {
        assert_eq!(
            display_url("s3://AKIA:pw@bucket/p?x=1"),
            "s3://bucket/p?<redacted>"
        );
        assert_eq!(display_url("gs://bucket/prefix"), "gs://bucket/prefix");
    }
}
