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

impl std::error::Error for ParseError {}

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

/// Checks a strftime format, one specifier at a time so that the error points at the
/// offending `%`. A specifier must both parse (no `Item::Error`) and format a date:
/// chrono accepts a few specifiers, such as `%#z`, for parsing only, and those would
/// fail at render time.
fn check_format(format: &str, offset: usize) -> Result<(), ParseError> {
    if format.is_empty() {
        return Err(error(
            "empty format after `:`: write a strftime format such as `%A` or `%Y-%m-%d`, or drop the `:`",
            offset,
        ));
    }
    // Split before every `%` that starts a specifier (`%%` is a literal `%`): each piece
    // holds at most one specifier and is a strftime format of its own.
    let bytes = format.as_bytes();
    let mut starts = vec![0];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if i > 0 {
                starts.push(i);
            }
            // Skip the specifier's first character, so that `%%` stays in one piece.
            i += 2;
        } else {
            i += 1;
        }
    }
    starts.push(format.len());
    for pair in starts.windows(2) {
        let (from, to) = (pair[0], pair[1].min(format.len()));
        if from >= to {
            continue;
        }
        let piece = &format[from..to];
        if let Some(message) = check_specifier(piece) {
            return Err(error(
                format!(
                    "`{format}` is not a valid strftime format: `{}` {message}; see chrono's \
                     `format::strftime` for the specifiers (`%Y`, `%m`, `%d`, `%A`, `%H`, …), \
                     and write `%%` for a literal `%`",
                    specifier(piece)
                ),
                offset + from,
            ));
        }
    }
    Ok(())
}

/// What is wrong with a piece of a strftime format holding at most one specifier, if
/// anything.
fn check_specifier(piece: &str) -> Option<&'static str> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write;
    let items = StrftimeItems::new(piece);
    if items.clone().any(|item| matches!(item, Item::Error)) {
        return Some("is not a specifier");
    }
    // Any UTC date will do: with all of a date's fields present, formatting fails only
    // for specifiers that chrono accepts for parsing alone.
    let sample = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let mut sink = String::new();
    match write!(sink, "{}", sample.format_with_items(items)) {
        Ok(()) => None,
        Err(_) => Some("can parse a date but not format one"),
    }
}

/// The specifier a piece starts with, for messages: `%`, its modifiers and one character.
fn specifier(piece: &str) -> &str {
    if !piece.starts_with('%') {
        return piece;
    }
    let modifiers = piece[1..]
        .find(|c: char| !matches!(c, '-' | '_' | '0'..='9' | '.' | ':' | '#'))
        .map_or(piece.len(), |p| p + 1);
    let end = piece[modifiers..]
        .chars()
        .next()
        .map_or(modifiers, |c| modifiers + c.len_utf8());
    &piece[..end]
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

    fn literal(text: &str) -> Segment {
        Segment::Literal(text.into())
    }

    #[test]
    fn both_spellings_and_doubled_delimiters() {
        let t = parse_template("{date:%A}/<task_name>.bin").unwrap();
        assert_eq!(
            t.segments,
            [
                placeholder("date", Some("%A")),
                literal("/"),
                placeholder("task_name", None),
                literal(".bin"),
            ]
        );
        let t = parse_template("a{{b}}<<c>>é").unwrap();
        assert_eq!(t.segments, [literal("a{b}<c>é")]);
    }

    #[test]
    fn angle_spelling_with_a_format_and_adjacent_placeholders() {
        let t = parse_template("<date:%Y/%m/%d>{flow_name}<_x1>").unwrap();
        assert_eq!(
            t.segments,
            [
                placeholder("date", Some("%Y/%m/%d")),
                placeholder("flow_name", None),
                placeholder("_x1", None),
            ]
        );
    }

    #[test]
    fn a_format_keeps_its_colons_and_literal_percent() {
        let t = parse_template("{date:%H:%M:%S%%}").unwrap();
        assert_eq!(t.segments, [placeholder("date", Some("%H:%M:%S%%"))]);
        let t = parse_template("{date:%-d.%3f%:z}").unwrap();
        assert_eq!(t.segments, [placeholder("date", Some("%-d.%3f%:z"))]);
    }

    #[test]
    fn doubled_delimiters_next_to_placeholders() {
        let t = parse_template("{{{a}}}<<<b>>>").unwrap();
        assert_eq!(
            t.segments,
            [
                literal("{"),
                placeholder("a", None),
                literal("}<"),
                placeholder("b", None),
                literal(">"),
            ]
        );
    }

    #[test]
    fn errors_say_where_and_what_to_write() {
        let cases = [
            ("", 0, "the template is empty"),
            ("x/{name", 2, "unclosed placeholder: add `}`"),
            ("x/<name", 2, "unclosed placeholder: add `>`"),
            ("a{", 1, "write `{{` for a literal `{`"),
            ("x}", 1, "lone `}`: write `}}`"),
            ("x>y", 1, "lone `>`: write `>>`"),
            ("é}", 2, "lone `}`"),
            ("{a}}", 3, "lone `}`"),
            ("{name>", 5, "must close with `}`, not `>`"),
            ("<name}", 5, "must close with `>`, not `}`"),
            ("{}", 1, "empty placeholder"),
            ("<>", 1, "empty placeholder"),
            ("{:%A}", 1, "empty placeholder"),
            ("{9a}", 1, "start with a letter"),
            ("{ a}", 1, "start with a letter"),
            ("{é}", 1, "start with a letter"),
            ("{a-b}", 2, "letters, digits and `_` only"),
            ("{ab c}", 3, "letters, digits and `_` only"),
            ("{a{b}}", 2, "unclosed placeholder: add `}` before `{`"),
            ("{a<b>}", 2, "unclosed placeholder: add `}` before `<`"),
            ("{date:%Q}", 6, "`%Q` is not a specifier"),
            ("{date:%Y-%Q}", 9, "`%Q` is not a specifier"),
            ("<date:%Y%%%Q>", 10, "`%Q` is not a specifier"),
            ("{date:%Y%}", 8, "`%` is not a specifier"),
            ("{date:%#z}", 6, "`%#z` can parse a date but not format one"),
            ("{date:}", 6, "empty format"),
        ];
        for (template, offset, text) in cases {
            let e = parse_template(template).unwrap_err();
            assert_eq!(e.offset, offset, "{template:?}: {e}");
            assert!(e.message.contains(text), "{template:?}: {e}");
            assert_eq!(e.to_string(), format!("{} (at byte {offset})", e.message));
        }
    }

    #[test]
    fn an_invalid_format_message_names_the_format_and_the_fix() {
        let e = parse_template("{date:%Q}").unwrap_err();
        assert_eq!(
            e.message,
            "`%Q` is not a valid strftime format: `%Q` is not a specifier; see chrono's \
             `format::strftime` for the specifiers (`%Y`, `%m`, `%d`, `%A`, `%H`, …), \
             and write `%%` for a literal `%`"
        );
    }
}
