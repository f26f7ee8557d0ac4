//! Rendering a task argument that has no `Display` into a template, through serde.
//!
//! Only scalars have a text form here: integers, floats (as Rust's `Display` prints
//! them), `bool`, `char`, strings, unit variants (the variant's serde name), and a
//! newtype struct or `Some` of any of these. Anything else (a sequence, a map, a struct,
//! a tuple, `None`, `()`, bytes, a variant with data) is a [`RenderError`].

use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// Why a value has no text form for a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(String);

impl RenderError {
    /// An error saying `why` (the sentence after "cannot be rendered: ").
    pub(crate) fn new(why: String) -> Self {
        RenderError(why)
    }

    fn kind(what: &str) -> Self {
        RenderError(format!(
            "its value is {what}, which has no text form; implement `Display` for its \
             type, or pass a scalar (an integer, float, bool, char, string, unit-like \
             enum variant, or a newtype or `Some` of one)"
        ))
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

impl ser::Error for RenderError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RenderError(format!("its serialization failed: {msg}"))
    }
}

/// Renders `value` as template text through its serde serialization.
///
/// # Errors
/// [`RenderError`] when the value is not a scalar (see the module's docs).
///
/// ```
/// use taskcache_core::template::render_value;
/// assert_eq!(render_value(&42u8).unwrap(), "42");
/// assert_eq!(render_value(&Some(1.5f64)).unwrap(), "1.5");
/// assert!(render_value(&vec![1, 2]).is_err());
/// ```
pub fn render_value<T: Serialize + ?Sized>(value: &T) -> Result<String, RenderError> {
    value.serialize(Scalar)
}

/// The serializer: scalars to text, everything else an error.
struct Scalar;

type Refused = Impossible<String, RenderError>;

macro_rules! display {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method(self, v: $ty) -> Result<String, RenderError> {
                Ok(v.to_string())
            }
        )*
    };
}

impl ser::Serializer for Scalar {
    type Ok = String;
    type Error = RenderError;
    type SerializeSeq = Refused;
    type SerializeTuple = Refused;
    type SerializeTupleStruct = Refused;
    type SerializeTupleVariant = Refused;
    type SerializeMap = Refused;
    type SerializeStruct = Refused;
    type SerializeStructVariant = Refused;

    display! {
        serialize_bool: bool,
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64,
        serialize_char: char,
        serialize_str: &str,
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<String, RenderError> {
        Err(RenderError::kind("bytes"))
    }

    fn serialize_none(self) -> Result<String, RenderError> {
        Err(RenderError::kind("`None`"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String, RenderError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<String, RenderError> {
        Err(RenderError::kind("`()`"))
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<String, RenderError> {
        Err(RenderError::kind(&format!("the unit struct `{name}`")))
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, RenderError> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, RenderError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<String, RenderError> {
        Err(RenderError::kind(&format!(
            "the variant `{name}::{variant}` with data"
        )))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Refused, RenderError> {
        Err(RenderError::kind("a sequence"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Refused, RenderError> {
        Err(RenderError::kind("a tuple"))
    }

    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Refused, RenderError> {
        Err(RenderError::kind(&format!("the tuple struct `{name}`")))
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Refused, RenderError> {
        Err(RenderError::kind(&format!(
            "the variant `{name}::{variant}` with data"
        )))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Refused, RenderError> {
        Err(RenderError::kind("a map"))
    }

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Refused, RenderError> {
        Err(RenderError::kind(&format!("the struct `{name}`")))
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Refused, RenderError> {
        Err(RenderError::kind(&format!(
            "the variant `{name}::{variant}` with data"
        )))
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<String, RenderError> {
        Ok(value.to_string())
    }

    fn is_human_readable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    enum Region {
        Emea,
        #[serde(rename = "north-america")]
        NorthAmerica,
        Other(u8),
    }

    #[derive(Serialize)]
    struct Id(u32);

    #[derive(Serialize)]
    struct Point {
        x: i32,
    }

    #[test]
    fn scalars_render_as_display_prints_them() {
        assert_eq!(render_value(&-7i64).unwrap(), "-7");
        assert_eq!(render_value(&u128::MAX).unwrap(), u128::MAX.to_string());
        assert_eq!(render_value(&0.1f64).unwrap(), "0.1");
        assert_eq!(render_value(&1e21f64).unwrap(), 1e21f64.to_string());
        assert_eq!(render_value(&2.5f32).unwrap(), "2.5");
        assert_eq!(render_value(&true).unwrap(), "true");
        assert_eq!(render_value(&'é').unwrap(), "é");
        assert_eq!(render_value("a b").unwrap(), "a b");
        assert_eq!(render_value(&String::from("x")).unwrap(), "x");
    }

    #[test]
    fn unit_variants_newtypes_and_some_render_what_they_hold() {
        assert_eq!(render_value(&Region::Emea).unwrap(), "Emea");
        assert_eq!(
            render_value(&Region::NorthAmerica).unwrap(),
            "north-america"
        );
        assert_eq!(render_value(&Id(3)).unwrap(), "3");
        assert_eq!(render_value(&Some(Id(4))).unwrap(), "4");
    }

    #[test]
    fn anything_else_is_an_error_that_says_what_it_is() {
        let cases: [(Result<String, RenderError>, &str); 8] = [
            (render_value(&vec![1]), "a sequence"),
            (render_value(&(1, 2)), "a tuple"),
            (render_value(&Point { x: 1 }), "the struct `Point`"),
            (
                render_value(&Region::Other(1)),
                "the variant `Region::Other` with data",
            ),
            (render_value(&None::<u8>), "`None`"),
            (render_value(&()), "`()`"),
            (
                render_value(&std::collections::BTreeMap::from([(1, 2)])),
                "a map",
            ),
            (render_value(&Some(vec![1])), "a sequence"),
        ];
        for (result, what) in cases {
            let e = result.unwrap_err().to_string();
            assert!(e.starts_with(&format!("its value is {what},")), "{e}");
            assert!(e.contains("implement `Display`"), "{e}");
        }
    }
}
