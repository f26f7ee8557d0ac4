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
mod value;

pub use parse::{parse_template, ParseError, ParsedTemplate, Segment};
pub use value::{render_value, RenderError};

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
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// A placeholder's text leaves an empty, `.` or `..` component in the rendered path
    /// (an empty argument, `.`, `./`, `x/` at the end, `a//b`, …), which would silently
    /// change the path's shape: `loc/{name}` with an empty `name` would write `loc`.
    #[error(
        "template `{template}` renders `{name}` as {value:?}, which leaves {}; give \
         `{name}` a value that is not empty, `.` or `..` and has no \
         leading, trailing or doubled `/` or `\\` and no `.` or `..` between them, or \
         change the template",
        describe_component(component)
    )]
    BadPathComponent {
        /// The template.
        template: String,
        /// The placeholder's name.
        name: String,
        /// The text it rendered as.
        value: String,
        /// The offending component: `""`, `"."` or `".."`.
        component: &'static str,
    },
    /// The template names a task argument whose value has no text form.
    #[error("template `{template}` names the task argument `{name}`, which cannot be rendered: {reason}")]
    Argument {
        /// The template.
        template: String,
        /// The argument's name.
        name: String,
        /// Why ([`RenderError`]'s message).
        reason: String,
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
    /// A text value may hold `/` (or `\`, which locations read as `/`) to nest
    /// directories, as long as every path component it takes part in stays a real
    /// name: a component that is empty, `.` or `..` and that a text value is part of
    /// (or whose separator it wrote) is refused. Literal text and date formats are the
    /// template's own and are left to [`Location`](crate::result::Location) to check
    /// and normalise.
    ///
    /// # Errors
    /// [`TemplateError::UnknownName`], [`TemplateError::FormatOnText`] or
    /// [`TemplateError::BadPathComponent`].
    pub fn render(&self, values: &dyn TemplateValues) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.source.len() + 16);
        // Where each text value landed in `out`: (start, end, segment index).
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for (index, segment) in self.parsed.segments.iter().enumerate() {
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
                    (Some(TemplateValue::Text(t)), None) => {
                        let start = out.len();
                        out.push_str(&t);
                        spans.push((start, out.len(), index));
                    }
                    (Some(TemplateValue::Text(_)), Some(_)) => {
                        return Err(TemplateError::FormatOnText {
                            template: self.source.clone(),
                            name: name.clone(),
                        })
                    }
                },
            }
        }
        self.check_components(&out, &spans)?;
        Ok(out)
    }

    /// Refuses an empty, `.` or `..` component of `rendered` that a text value in
    /// `spans` is part of, or delimits with a separator of its own.
    fn check_components(
        &self,
        rendered: &str,
        spans: &[(usize, usize, usize)],
    ) -> Result<(), TemplateError> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut start = 0;
        for component in rendered.split(['/', '\\']) {
            let end = start + component.len();
            if matches!(component, "" | "." | "..") {
                // A span touches [start, end] when it overlaps it, ends with the
                // separator just before it, starts with the separator just after it,
                // or is empty and sits inside it.
                if let Some(&(s, e, index)) =
                    spans.iter().find(|&&(s, e, _)| s <= end && e >= start)
                {
                    let Segment::Placeholder { name, .. } = &self.parsed.segments[index] else {
                        unreachable!("spans are recorded for placeholders only")
                    };
                    return Err(TemplateError::BadPathComponent {
                        template: self.source.clone(),
                        name: name.clone(),
                        value: rendered[s..e].to_owned(),
                        component: match component {
                            "" => "",
                            "." => ".",
                            _ => "..",
                        },
                    });
                }
            }
            // Both separators are one byte.
            start = end + 1;
        }
        Ok(())
    }
}

/// A component for a message: "an empty path component", "a `.` path component", ….
fn describe_component(component: &str) -> String {
    if component.is_empty() {
        "an empty path component".to_owned()
    } else {
        format!("a `{component}` path component")
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

    /// One text argument, `name`, beside the usual values.
    struct Arg<'a>(&'a str);

    impl TemplateValues for Arg<'_> {
        fn value(&self, name: &str) -> Option<TemplateValue<'_>> {
            match name {
                "name" => Some(TemplateValue::Text(Cow::Borrowed(self.0))),
                other => values().value(other).map(|v| match v {
                    TemplateValue::Text(t) => TemplateValue::Text(Cow::Owned(t.into_owned())),
                    TemplateValue::Date(d) => TemplateValue::Date(d),
                }),
            }
        }
        fn names(&self) -> Vec<String> {
            let mut names = values().names();
            names.push("name".into());
            names
        }
    }

    fn render_arg(t: &str, arg: &str) -> Result<String, TemplateError> {
        Template::parse(t)?.render(&Arg(arg))
    }

    /// Asserts that `arg` in `template` is refused for leaving `component`.
    fn assert_refused(template: &str, arg: &str, component: &str) {
        let e = render_arg(template, arg).unwrap_err();
        assert!(
            matches!(&e, TemplateError::BadPathComponent { template: t, name, value, component: c, .. }
                if t == template && name == "name" && value == arg && *c == component),
            "{template} with {arg:?}: {e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("renders `name` as"), "{message}");
        assert!(message.contains(&format!("{arg:?}")), "{message}");
    }

    #[test]
    fn an_argument_that_leaves_a_bad_component_is_refused() {
        for (arg, component) in [
            ("", ""),
            (".", "."),
            ("./", "."),
            ("..", ".."),
            ("./", "."),
            ("/x", ""),
            ("a//b", ""),
            ("a/./b", "."),
            ("a\\..", ".."),
            ("a\\", ""),
            ("\\\\", ""),
            ("./x", "."),
            ("x/.", "."),
            ("../x", ".."),
        ] {
            assert_refused("loc/{name}", arg, component);
            assert_refused("<name>/out.bin", arg, component);
        }
    }

    #[test]
    fn an_empty_argument_names_the_argument_and_what_to_do() {
        let e = render_arg("loc/{name}", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template `loc/{name}` renders `name` as \"\", which leaves an empty path \
             component; give `name` a value that is not empty, `.` or `..` and has no \
             leading, trailing or doubled `/` or `\\` and no `.` or `..` between them, or \
             change the template"
        );
        let e = render_arg("loc/{name}", "a\\..").unwrap_err();
        assert!(
            e.to_string()
                .contains("renders `name` as \"a\\\\..\", which leaves a `..` path component;"),
            "{e}"
        );
    }

    #[test]
    fn the_offending_argument_is_named_among_several() {
        let e = render_arg("{region}/{task_name}/{name}", "").unwrap_err();
        assert!(
            matches!(&e, TemplateError::BadPathComponent { name, value, .. }
                if name == "name" && value.is_empty()),
            "{e:?}"
        );
    }

    #[test]
    fn an_argument_whose_separator_delimits_a_dot_component_is_refused() {
        // The literal `..`/`.` becomes a component only because of the argument's slash.
        assert_refused("{name}..", "a/", "..");
        assert_refused(".{name}", "/b", ".");
    }

    #[test]
    fn an_argument_may_nest_directories() {
        assert_eq!(render_arg("loc/{name}", "a/b").unwrap(), "loc/a/b");
        assert_eq!(render_arg("loc/{name}", "a\\b").unwrap(), "loc/a\\b");
        assert_eq!(
            render_arg("{name}{task_name}", "runs/").unwrap(),
            "runs/report"
        );
        assert_eq!(render_arg("runs{name}", "/a").unwrap(), "runs/a");
        assert_eq!(render_arg("loc/{name}", "...").unwrap(), "loc/...");
        assert_eq!(render_arg("loc/{name}", ".a/b.").unwrap(), "loc/.a/b.");
    }

    #[test]
    fn an_argument_inside_a_longer_component_may_be_empty_or_dots() {
        assert_eq!(render_arg("out/{name}.bin", "").unwrap(), "out/.bin");
        assert_eq!(render_arg("out/{name}.bin", ".").unwrap(), "out/..bin");
        assert_eq!(render_arg("out/{name}.bin", "..").unwrap(), "out/...bin");
        assert_eq!(render_arg("a{name}b/c", "").unwrap(), "ab/c");
    }

    #[test]
    fn literal_text_and_date_formats_are_left_to_the_location() {
        // As before: `Location` drops `.` and a trailing empty component, and refuses
        // the rest; the template does not blame an argument it did not involve.
        assert_eq!(render_arg("./{name}", "a").unwrap(), "./a");
        assert_eq!(render_arg("loc/./{name}/", "a").unwrap(), "loc/./a/");
        assert_eq!(render_arg("{name}/../x", "a").unwrap(), "a/../x");
        assert_eq!(render_arg("a//{name}", "b").unwrap(), "a//b");
        assert_eq!(render_arg("{date:%Y/}", "").unwrap(), "2026/");
        assert_eq!(render("{date:%Y//%m}").unwrap(), "2026//11");
    }
}
