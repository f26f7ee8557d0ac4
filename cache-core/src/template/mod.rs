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
use std::fmt;

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
         nor an argument of the task; available: {}",
        list(available)
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
    #[error(
        "template `{template}` gives `{name}` a format, but formats apply only to dates; \
         drop the `:` and the format after `{name}`"
    )]
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
                    (Some(TemplateValue::Date(d)), format) => {
                        // `%+` is RFC 3339, exactly as `to_rfc3339`, written in place.
                        // Formatting a `DateTime<Utc>` fails only for an invalid specifier
                        // or one chrono accepts for parsing alone (`%#z`), and the parser
                        // tried every specifier on a date: this cannot fail.
                        d.format(format.as_deref().unwrap_or("%+"))
                            .write_to(&mut out)
                            .expect("the parser checked that this format formats a date");
                    }
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

/// The available names for a message, or `(none)`.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
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

    /// Monday 23 November 2026, 09:05 UTC.
    fn monday() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 5, 0).unwrap()
    }

    /// A few context keys and a parameter, as the runner would offer them.
    struct Values {
        date: DateTime<Utc>,
        region: String,
    }

    impl TemplateValues for Values {
        fn value(&self, name: &str) -> Option<TemplateValue<'_>> {
            match name {
                "date" => Some(TemplateValue::Date(self.date)),
                "today" => Some(TemplateValue::Text(Cow::Borrowed("2026-11-23"))),
                "task_name" => Some(TemplateValue::Text(Cow::Borrowed("report"))),
                "region" => Some(TemplateValue::Text(Cow::Borrowed(&self.region))),
                "run" => Some(TemplateValue::Text(Cow::Owned(format!("r{}", 7)))),
                _ => None,
            }
        }
        fn names(&self) -> Vec<String> {
            ["today", "task_name", "date", "region", "run", "date"]
                .map(String::from)
                .to_vec()
        }
    }

    fn values() -> Values {
        Values {
            date: monday(),
            region: "emea".into(),
        }
    }

    fn render(t: &str) -> Result<String, TemplateError> {
        Template::parse(t)?.render(&values())
    }

    #[test]
    fn renders_the_brace_spelling() {
        assert_eq!(
            render("{date:%A}/{task_name}.bin").unwrap(),
            "Monday/report.bin"
        );
    }

    #[test]
    fn renders_the_angle_spelling() {
        assert_eq!(
            render("<date:%A>/<task_name>.txt").unwrap(),
            "Monday/report.txt"
        );
    }

    #[test]
    fn renders_both_spellings_mixed() {
        assert_eq!(
            render("{region}/<date:%A>/{task_name}-<run>.bin").unwrap(),
            "emea/Monday/report-r7.bin"
        );
    }

    #[test]
    fn doubled_delimiters_are_literal() {
        assert_eq!(render("{{x}}-<<{region}>>").unwrap(), "{x}-<emea>");
        assert_eq!(render("{{{today}}}").unwrap(), "{2026-11-23}");
    }

    #[test]
    fn a_date_format_may_hold_slashes() {
        assert_eq!(
            render("{date:%Y/%m/%d}/{task_name}").unwrap(),
            "2026/11/23/report"
        );
        assert_eq!(render("<date:%H:%M>").unwrap(), "09:05");
    }

    #[test]
    fn today_is_text() {
        assert_eq!(render("{today}/out.bin").unwrap(), "2026-11-23/out.bin");
    }

    #[test]
    fn a_date_without_a_format_is_rfc3339() {
        assert_eq!(render("{date}").unwrap(), "2026-11-23T09:05:00+00:00");
        let precise = Values {
            date: monday() + chrono::Duration::nanoseconds(123_456_789),
            region: String::new(),
        };
        let t = Template::parse("{date}").unwrap();
        assert_eq!(t.render(&precise).unwrap(), precise.date.to_rfc3339());
        assert_eq!(
            t.render(&precise).unwrap(),
            "2026-11-23T09:05:00.123456789+00:00"
        );
    }

    #[test]
    fn a_literal_only_template_renders_as_is() {
        assert_eq!(render("results/fixed.bin").unwrap(), "results/fixed.bin");
    }

    #[test]
    fn an_unknown_name_lists_the_available_names_sorted() {
        let e = render("{regon}/x.bin").unwrap_err();
        assert!(
            matches!(&e, TemplateError::UnknownName { name, .. } if name == "regon"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "template `{regon}/x.bin` names `regon`, which is neither a context key, a flow \
             parameter nor an argument of the task; available: date, region, run, task_name, today"
        );
    }

    #[test]
    fn an_unknown_name_with_nothing_available_says_none() {
        struct Nothing;
        impl TemplateValues for Nothing {
            fn value(&self, _: &str) -> Option<TemplateValue<'_>> {
                None
            }
            fn names(&self) -> Vec<String> {
                Vec::new()
            }
        }
        let e = Template::parse("<x>")
            .unwrap()
            .render(&Nothing)
            .unwrap_err();
        assert!(e.to_string().ends_with("available: (none)"), "{e}");
    }

    #[test]
    fn a_format_on_text_is_an_error() {
        let e = render("{region:%A}").unwrap_err();
        assert!(
            matches!(&e, TemplateError::FormatOnText { template, name }
                if template == "{region:%A}" && name == "region"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "template `{region:%A}` gives `region` a format, but formats apply only to dates; \
             drop the `:` and the format after `region`"
        );
    }

    #[test]
    fn parse_errors_keep_the_template_message_and_offset() {
        let e = Template::parse("{date:%Q}").unwrap_err();
        assert!(
            matches!(&e, TemplateError::Parse { template, offset: 6, message }
                if template == "{date:%Q}" && message.contains("`%Q` is not a specifier")),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("template `{date:%Q}` is invalid: "),
            "{e}"
        );
        assert!(e.to_string().ends_with("(at byte 6)"), "{e}");
        let e = Template::parse("").unwrap_err();
        assert!(matches!(e, TemplateError::Parse { offset: 0, .. }), "{e:?}");
    }

    #[test]
    fn placeholders_are_listed_in_order() {
        let t = Template::parse("{a}/<b:%Y>/c/{a}").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["a", "b", "a"]);
    }

    #[test]
    fn a_template_shows_its_source() {
        let t = Template::parse("<date:%A>/{task_name}.bin").unwrap();
        assert_eq!(t.as_str(), "<date:%A>/{task_name}.bin");
        assert_eq!(t.to_string(), "<date:%A>/{task_name}.bin");
        assert_eq!(format!("{t:?}"), r#"Template("<date:%A>/{task_name}.bin")"#);
        assert_eq!(t.clone(), t);
        assert_ne!(t, Template::parse("{date:%A}/{task_name}.bin").unwrap());
    }
}
