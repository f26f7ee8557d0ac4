//! Durations written as strings ("30s", "15m", "1h30m", "2days"), checked at compile time.

use proc_macro2::Span;
use syn::LitStr;

/// A value with the span of the literal it came from.
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// The longest duration accepted: 100 000 years (humantime's years of 365.25 days), far
/// beyond any use, yet short enough to be added to any date chrono can hold today or
/// for millennia to come, so that no expiry or retry time can overflow.
const MAX_SECS: u64 = 100_000 * 31_557_600;

/// Parses a duration literal with humantime's grammar, or explains the mistake at the
/// literal.
pub fn parse_duration(lit: &LitStr) -> syn::Result<Spanned<std::time::Duration>> {
    let text = lit.value();
    match humantime::parse_duration(&text) {
        Ok(value) if value.as_secs() > MAX_SECS => Err(syn::Error::new(
            lit.span(),
            format!(
                "`{text}` is longer than the longest accepted duration, \"100000years\"; \
                 write a duration of at most that"
            ),
        )),
        Ok(value) => Ok(Spanned {
            value,
            span: lit.span(),
        }),
        Err(e) => Err(syn::Error::new(
            lit.span(),
            format!(
                "`{text}` is not a duration ({e}); write a number and a unit, \
                 as in \"30s\", \"15m\", \"1h30m\" or \"2days\""
            ),
        )),
    }
}
