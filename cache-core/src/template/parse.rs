//! The template grammar: `{name}`, `{name:format}`, `<name>`, `<name:format>`, with
//! doubled delimiters (`{{`, `}}`, `<<`, `>>`) standing for themselves.
//!
//! This file uses only `std` and `chrono`: the `#[task]` macro includes it with
//! `#[path]` to check templates at compile time, with the very parser the runtime uses
//! to render them.

use std::fmt;

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTemplate {
    /// The pieces of the template.
    pub segments: Vec<Segment>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is (doubled delimiters already undoubled).
    Literal(String),
    /// A value to substitute, with an optional strftime format.
    Placeholder {
        /// The value's name.
        name: String,
        /// The text after `:`, if any.
        format: Option<String>,
    },
}

/// Why a template does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong and what to write instead.
    pub message: String,
    /// The byte offset of the offending character.
    pub offset: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

fn error(message: impl Into<String>, offset: usize) -> ParseError {
    ParseError {
        message: message.into(),
        offset,
    }
}

/// Parses a template.
///
/// # Errors
/// An empty template, an unclosed placeholder, a lone closing delimiter, a mismatched
/// pair (`{name>`), an empty or invalid name, or an invalid strftime format.
pub fn parse_template(s: &str) -> Result<ParsedTemplate, ParseError> {
    if s.is_empty() {
        return Err(error(
            "the template is empty; write a path such as \"{task_name}.bin\"",
            0,
        ));
    }
    let mut segments = Vec::new();
    let mut literal = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'{' | b'<' => {
                if bytes.get(i + 1) == Some(&c) {
                    literal.push(c as char);
                    i += 2;
                    continue;
                }
                let close = if c == b'{' { b'}' } else { b'>' };
                let other_close = if c == b'{' { b'>' } else { b'}' };
                let start = i + 1;
                let Some(len) = bytes[start..]
                    .iter()
                    .position(|b| *b == close || *b == other_close || *b == b'{' || *b == b'<')
                else {
                    return Err(error(
                        format!(
                            "unclosed placeholder: add `{}`, or write `{}{}` for a literal `{}`",
                            close as char, c as char, c as char, c as char
                        ),
                        i,
                    ));
                };
                let end = start + len;
                if bytes[end] != close {
                    let found = bytes[end] as char;
                    return Err(error(
                        if found == other_close as char {
                            format!(
                                "a placeholder opened with `{}` must close with `{}`, not `{found}`",
                                c as char, close as char
                            )
                        } else {
                            format!(
                                "unclosed placeholder: add `{}` before `{found}`, or write `{}{}` for a literal `{}`",
                                close as char, c as char, c as char, c as char
                            )
                        },
                        end,
                    ));
                }
                let inner = &s[start..end];
                let (name, format) = match inner.find(':') {
                    Some(colon) => (&inner[..colon], Some(&inner[colon + 1..])),
                    None => (inner, None),
                };
                check_name(name, start)?;
                if let Some(f) = format {
                    check_format(f, start + name.len() + 1)?;
                }
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(Segment::Placeholder {
                    name: name.to_owned(),
                    format: format.map(str::to_owned),
                });
                i = end + 1;
            }
            b'}' | b'>' => {
                if bytes.get(i + 1) == Some(&c) {
                    literal.push(c as char);
                    i += 2;
                    continue;
                }
                return Err(error(
                    format!(
                        "a lone `{}`: write `{}{}` for a literal `{}`",
                        c as char, c as char, c as char, c as char
                    ),
                    i,
                ));
            }
            _ => {
                // Copy a whole UTF-8 character.
                let ch = s[i..].chars().next().unwrap_or('\u{FFFD}');
                literal.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(ParsedTemplate { segments })
}

fn check_name(name: &str, offset: usize) -> Result<(), ParseError> {
    let mut chars = name.chars();
    match chars.next() {
        None => Err(error(
            "empty placeholder: name a value, as in `{task_name}` or `{date:%A}`",
            offset,
        )),
        Some(first) if !(first.is_ascii_alphabetic() || first == '_') => Err(error(
            format!("`{name}` is not a name: names start with a letter or `_`"),
            offset,
        )),
        Some(_) => match chars.position(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
            Some(p) => Err(error(
                format!("`{name}` is not a name: use letters, digits and `_` only"),
                offset + 1 + p,
            )),
            None => Ok(()),
        },
    }
}

fn check_format(format: &str, offset: usize) -> Result<(), ParseError> {
    use chrono::format::{Item, StrftimeItems};
    if format.is_empty() {
        return Err(error(
            "empty format after `:`: write a strftime format such as `%A` or `%Y-%m-%d`, or drop the `:`",
            offset,
        ));
    }
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(error(
            format!("`{format}` is not a valid strftime format (see chrono's `format::strftime`)"),
            offset,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholder(name: &str, format: Option<&str>) -> Segment {
        Segment::Placeholder {
            name: name.into(),
            format: format.map(Into::into),
        }
    }

    #[test]
    fn both_spellings_and_doubled_delimiters() {
        let t = parse_template("{date:%A}/<task_name>.bin").unwrap();
        assert_eq!(
            t.segments,
            [
                placeholder("date", Some("%A")),
                Segment::Literal("/".into()),
                placeholder("task_name", None),
                Segment::Literal(".bin".into()),
            ]
        );
        let t = parse_template("a{{b}}<<c>>é").unwrap();
        assert_eq!(t.segments, [Segment::Literal("a{b}<c>é".into())]);
    }

    #[test]
    fn errors_say_where_and_what_to_write() {
        let cases = [
            ("", 0, "empty"),
            ("x/{name", 2, "unclosed"),
            ("x}", 1, "lone `}`"),
            ("{name>", 5, "must close with `}`"),
            ("<name}", 5, "must close with `>`"),
            ("{}", 1, "empty placeholder"),
            ("{9a}", 1, "start with a letter"),
            ("{a-b}", 2, "letters, digits"),
            ("{date:%Q}", 6, "strftime"),
            ("{date:}", 6, "empty format"),
            ("{a{b}}", 2, "unclosed"),
        ];
        for (template, offset, text) in cases {
            let e = parse_template(template).unwrap_err();
            assert_eq!(e.offset, offset, "{template:?}: {e}");
            assert!(e.message.contains(text), "{template:?}: {e}");
        }
    }
}
