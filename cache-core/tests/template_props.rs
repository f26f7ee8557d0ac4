//! Property tests: `Location` and template rendering against arbitrary and hostile
//! strings (empty, dots, slashes, backslashes, NUL, drive prefixes, unicode, very long).
//!
//! What must hold: a `Location` is always normalised and stays under its root; a
//! rendered template either keeps the exact shape the template and the value give it,
//! or is refused with an error that names the placeholder; nothing panics.

use proptest::prelude::*;
use std::borrow::Cow;
use std::path::{Component, Path};
use taskcache_core::result::Location;
use taskcache_core::template::{Template, TemplateError, TemplateValue, TemplateValues};

/// Text values by name, as a task's arguments would be offered.
struct Args(Vec<(&'static str, String)>);

impl TemplateValues for Args {
    fn value(&self, name: &str) -> Option<TemplateValue<'_>> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| TemplateValue::Text(Cow::Borrowed(v)))
    }
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.to_string()).collect()
    }
}

/// Strings built to hit the edge cases, mixed with arbitrary ones.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("a".to_owned()),
        Just("C:".to_owned()),
        Just("\0".to_owned()),
        Just("é".to_owned()),
        Just("日本".to_owned()),
        Just(" ".to_owned()),
        "[a-z0-9._:-]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        5 => prop::collection::vec(piece, 0..10).prop_map(|v| v.concat()),
        2 => any::<String>(),
        2 => "[a./\\\\]{0,5}",
        1 => ("[a-z./\\\\]{1,3}", 500usize..4000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// The components of a rendered path as `Location` reads it (`\` is `/`).
fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split(['/', '\\'])
}

fn is_bad_component(c: &str) -> bool {
    matches!(c, "" | "." | "..")
}

/// Checks everything a `Location` promises, and that it stays under `root`.
fn check_location(loc: &Location, root: &Path) -> Result<(), TestCaseError> {
    let s = loc.as_str();
    prop_assert!(!s.is_empty());
    prop_assert!(!s.starts_with('/') && !s.starts_with('\\'), "{s:?}");
    prop_assert!(!s.contains('\0') && !s.contains('\\'), "{s:?}");
    for c in s.split('/') {
        prop_assert!(!is_bad_component(c), "{s:?} has component {c:?}");
        let b = c.as_bytes();
        prop_assert!(
            !(b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic()),
            "{s:?} has a drive prefix in {c:?}"
        );
    }
    prop_assert_eq!(&Location::new(s).unwrap(), loc);

    let path = loc.under(root);
    prop_assert!(path.starts_with(root), "{path:?} leaves {root:?}");
    prop_assert!(
        !path.components().any(|c| c == Component::ParentDir),
        "{path:?}"
    );
    prop_assert_eq!(
        path.components().count(),
        root.components().count() + s.split('/').count(),
        "{:?}",
        path
    );
    prop_assert_eq!(
        path.file_name().and_then(|f| f.to_str()),
        s.rsplit('/').next()
    );
    Ok(())
}

/// The templates rendered with a hostile `x`. In each, every component that is not
/// literal text contains `x`'s text, and no literal component is empty, `.` or `..`.
const TEMPLATES: &[&str] = &[
    "out/{x}.bin",
    "out/{x}",
    "out/<x>/data.bin",
    "{x}",
    "{x}.bin",
];

proptest! {
    #[test]
    fn a_location_is_normalised_or_refused(s in hostile()) {
        match Location::new(s.clone()) {
            Ok(loc) => {
                check_location(&loc, Path::new("/srv/results"))?;
                check_location(&loc, Path::new("results"))?;
                // Without `.`, `\` or a trailing `/` there is nothing to normalise.
                if !components(&s).any(|c| c == ".") && !s.contains('\\') && !s.ends_with('/') {
                    prop_assert_eq!(loc.as_str(), s.as_str());
                }
            }
            Err(e) => prop_assert_eq!(e.location, s),
        }
    }

    #[test]
    fn a_rendered_value_keeps_its_shape_or_is_refused_by_name(
        template in prop::sample::select(TEMPLATES),
        x in hostile(),
    ) {
        let expected = template.replace("{x}", &x).replace("<x>", &x);
        let bad = components(&expected).any(is_bad_component);
        let rendered = Template::parse(template).unwrap().render(&Args(vec![("x", x.clone())]));
        let rendered = match rendered {
            Err(TemplateError::BadPathComponent { template: t, name, value, component }) => {
                prop_assert!(bad, "{x:?} in {template} refused for {component:?}");
                prop_assert_eq!(name, "x");
                prop_assert_eq!(value, x.as_str());
                prop_assert_eq!(t, template);
                prop_assert!(is_bad_component(component));
                let e = Template::parse(template).unwrap().render(&Args(vec![("x", x.clone())]));
                let message = e.unwrap_err().to_string();
                prop_assert!(message.contains("renders `x` as"), "{}", message);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{x:?} in {template}: {e:?}"))),
            Ok(rendered) => rendered,
        };
        prop_assert!(!bad, "{x:?} in {template} rendered {rendered:?}");
        prop_assert_eq!(&rendered, &expected);

        match Location::new(rendered.clone()) {
            // What is left for `Location` to refuse: a NUL byte or a drive prefix.
            Err(e) => {
                prop_assert_eq!(&e.location, &rendered);
                let drive = components(&rendered).any(|c| {
                    let b = c.as_bytes();
                    b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic()
                });
                prop_assert!(
                    rendered.contains('\0') || drive,
                    "{rendered:?} refused: {e}"
                );
            }
            Ok(loc) => {
                check_location(&loc, Path::new("/srv/results"))?;
                // Exactly the rendered path: nothing dropped, nothing collapsed.
                let normalised = expected.replace('\\', "/");
                prop_assert_eq!(loc.as_str(), normalised.as_str());
                prop_assert!(loc.as_str().contains(&x.replace('\\', "/")));
                if template.starts_with("out/") {
                    prop_assert!(loc.as_str().starts_with("out/"), "{loc:?}");
                }
                if !x.contains(['/', '\\']) && template.ends_with("{x}.bin") {
                    let file = loc.as_str().rsplit('/').next().unwrap();
                    prop_assert_eq!(file, format!("{x}.bin"));
                }
            }
        }
    }

    #[test]
    fn the_refused_placeholder_is_the_one_that_broke_the_path(
        x in hostile(),
        y in hostile(),
    ) {
        let t = Template::parse("runs/{x}/{y}.bin").unwrap();
        let args = Args(vec![("x", x.clone()), ("y", y.clone())]);
        let rendered = format!("runs/{x}/{y}.bin");
        // `x` takes part in every component between `runs/` and the literal `/`, `y`
        // in every one after it; the first bad one is reported.
        let x_part = format!("runs/{x}");
        let x_bad = components(&x_part).skip(1).any(is_bad_component);
        let y_bad = components(&format!("{y}.bin")).any(is_bad_component);
        match t.render(&args) {
            Ok(r) => {
                prop_assert!(!x_bad && !y_bad, "{r:?}");
                prop_assert_eq!(r, rendered);
            }
            Err(TemplateError::BadPathComponent { name, value, .. }) => {
                if x_bad {
                    prop_assert_eq!(&name, "x");
                    prop_assert_eq!(&value, &x);
                } else {
                    prop_assert!(y_bad, "{rendered:?}");
                    prop_assert_eq!(&name, "y");
                    prop_assert_eq!(&value, &y);
                }
            }
            Err(e) => return Err(TestCaseError::fail(format!("{rendered:?}: {e:?}"))),
        }
    }
}
