//! Durations written as strings ("30s", "15m", "1h30m", "2days"), checked at compile time.

use proc_macro2::Span;
use syn::LitStr;

/// A value with the span of the literal it came from.
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// Parses a duration literal with humantime's grammar, or explains the mistake at the
/// literal.
pub fn parse_duration(lit: &LitStr) -> syn::Result<Spanned<std::time::Duration>> {
    let text = lit.value();
    match humantime::parse_duration(&text) {
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
