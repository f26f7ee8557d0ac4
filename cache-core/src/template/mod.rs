//! Templates for targets and result locations, as `"{date:%A}/{task_name}.bin"`.
//!
//! A placeholder is `{name}` or `<name>` (the design card's spelling), optionally with
//! a strftime format after `:` for dates: `{date:%Y/%m/%d}`. Doubled delimiters are
//! literal. Names are the context's keys (`date`, `today`, `task_name`, …), the flow's
//! parameters and the task's own arguments.
//!
//! ```
//! use taskcache_core::template::{Template, TemplateValue, TemplateValues};
//! use chrono::{TimeZone, Utc};
//!
//! struct Values;
//! impl TemplateValues for Values {
//!     fn value(&self, name: &str) -> Option<TemplateValue<'_>> {
//!         match name {
//!             "date" => Some(TemplateValue::Date(Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap())),
//!             "task_name" => Some(TemplateValue::Text("report".into())),
//!             _ => None,
//!         }
//!     }
//!     fn names(&self) -> Vec<String> {
//!         vec!["date".into(), "task_name".into()]
//!     }
//! }
//!
//! let t = Template::parse("{date:%A}/<task_name>.bin").unwrap();
//! assert_eq!(t.render(&Values).unwrap(), "Monday/report.bin");
//! ```

mod parse;

pub use parse::{parse_template, ParseError, ParsedTemplate, Segment};

use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::fmt::{self, Write};

/// A parsed template, ready to render.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parsed: ParsedTemplate,
}

/// A value a placeholder renders.
#[derive(Debug, Clone)]
pub enum TemplateValue<'a> {
    /// A date, formatted with the placeholder's strftime format (RFC 3339 without one).
    Date(DateTime<Utc>),
    /// Text, rendered as is.
    Text(Cow<'a, str>),
}

/// Where a template's values come from.
pub trait TemplateValues {
    /// The value called `name`, if there is one.
    fn value(&self, name: &str) -> Option<TemplateValue<'_>>;
    /// Every name available, for the message when a template names an unknown one.
    fn names(&self) -> Vec<String>;
}

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("template `{template}` is invalid: {message} (at byte {offset})")]
    Parse {
        /// The template.
        template: String,
        /// What is wrong.
        message: String,
        /// Where.
        offset: usize,
    },
    /// The template names a value that does not exist.
    #[error(
        "template `{template}` names `{name}`, which is neither a context key, a flow parameter \
         nor an argument of the task; available: {}", available.join(", ")
    )]
    UnknownName {
        /// The template.
        template: String,
        /// The unknown name.
        name: String,
        /// Every name that was available.
        available: Vec<String>,
    },
    /// A format was given for a value that is not a date.
    #[error("template `{template}` gives `{name}` a format, but formats apply only to dates")]
    FormatOnText {
        /// The template.
        template: String,
        /// The value's name.
        name: String,
    },
}

impl Template {
    /// Parses a template.
    ///
    /// # Errors
    /// [`TemplateError::Parse`], saying what to write instead.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let parsed = parse_template(source).map_err(|e| TemplateError::Parse {
            template: source.to_owned(),
            message: e.message,
            offset: e.offset,
        })?;
        Ok(Template {
            source: source.to_owned(),
            parsed,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The names of its placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parsed.segments.iter().filter_map(|s| match s {
            Segment::Placeholder { name, .. } => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Renders the template with `values`.
    ///
    /// # Errors
    /// [`TemplateError::UnknownName`] or [`TemplateError::FormatOnText`].
    pub fn render(&self, values: &dyn TemplateValues) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for segment in &self.parsed.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Placeholder { name, format } => match (values.value(name), format) {
                    (None, _) => {
                        let mut available = values.names();
                        available.sort();
                        available.dedup();
                        return Err(TemplateError::UnknownName {
                            template: self.source.clone(),
                            name: name.clone(),
                            available,
                        });
                    }
                    (Some(TemplateValue::Date(d)), Some(f)) => {
                        write!(out, "{}", d.format(f)).expect("formats were checked when parsed");
                    }
                    (Some(TemplateValue::Date(d)), None) => out.push_str(&d.to_rfc3339()),
                    (Some(TemplateValue::Text(t)), None) => out.push_str(&t),
                    (Some(TemplateValue::Text(_)), Some(_)) => {
                        return Err(TemplateError::FormatOnText {
                            template: self.source.clone(),
                            name: name.clone(),
                        })
                    }
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct Values;
    impl TemplateValues for Values {
        fn value(&self, name: &str) -> Option<TemplateValue<'_>> {
            match name {
                "date" => Some(TemplateValue::Date(
                    Utc.with_ymd_and_hms(2026, 11, 23, 9, 5, 0).unwrap(),
                )),
                "today" => Some(TemplateValue::Text("2026-11-23".into())),
                "region" => Some(TemplateValue::Text("emea".into())),
                _ => None,
            }
        }
        fn names(&self) -> Vec<String> {
            vec!["today".into(), "date".into(), "region".into()]
        }
    }

    fn render(t: &str) -> Result<String, TemplateError> {
        Template::parse(t)?.render(&Values)
    }

    #[test]
    fn renders_dates_text_and_both_spellings() {
        assert_eq!(render("{date:%A}/<region>.bin").unwrap(), "Monday/emea.bin");
        assert_eq!(
            render("{date:%Y/%m/%d}/{today}").unwrap(),
            "2026/11/23/2026-11-23"
        );
        assert_eq!(render("{{x}}-<<{region}>>").unwrap(), "{x}-<emea>");
        assert_eq!(render("{date}").unwrap(), "2026-11-23T09:05:00+00:00");
    }

    #[test]
    fn render_errors_name_the_problem() {
        let e = render("{regon}/x.bin").unwrap_err().to_string();
        assert!(
            e.contains("`regon`") && e.contains("date, region, today"),
            "{e}"
        );
        let e = render("{region:%A}").unwrap_err();
        assert!(matches!(e, TemplateError::FormatOnText { .. }), "{e}");
        let e = Template::parse("{date:%Q}").unwrap_err();
        assert!(matches!(e, TemplateError::Parse { offset: 6, .. }), "{e}");
    }

    #[test]
    fn placeholders_are_listed() {
        let t = Template::parse("{a}/<b:%Y>/c").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["a", "b"]);
    }
}
