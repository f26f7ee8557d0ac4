//! Parsing the arguments of `#[task(...)]` and `#[flow(...)]` into typed settings.
//!
//! Only the syntax is checked here (each value has the right shape, no argument twice);
//! what depends on the function or on other arguments is checked in `valid.rs`.

use crate::duration::{parse_duration, Spanned};
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitBool, LitInt, LitStr, Path, Token};

/// The validator named in `cache_validator = …`.
pub enum ValidatorArg {
    /// One of Prefect's validators without arguments: `all_inputs`, …
    Builtin(Ident),
    /// `partial_inputs_only(a, b)` or `partial_parameters_only(a, b)`.
    Partial {
        kind: Ident,
        names: Vec<(String, Span)>,
    },
    /// A path to the user's own function.
    Custom(Path),
}

/// The settings of `#[task(...)]`.
#[derive(Default)]
pub struct TaskArgs {
    pub name: Option<LitStr>,
    pub cache_for: Option<Spanned<std::time::Duration>>,
    pub cache_validator: Option<(Ident, ValidatorArg)>,
    pub cache_key: Option<LitStr>,
    pub max_retries: Option<(Ident, u32)>,
    pub retry_delay: Option<Spanned<std::time::Duration>>,
    pub checkpoint: Option<(Ident, bool)>,
    pub result: Option<(Ident, Expr)>,
    pub target: Option<LitStr>,
    /// `trigger = manual_only` (or `all_successful`, `all_finished`, `always_run`,
    /// `any_failed`): the key and the trigger's name.
    pub trigger: Option<(Ident, Ident)>,
    /// `cache_version = "3"`: a version the user manages, in place of the code's
    /// fingerprint.
    pub cache_version: Option<LitStr>,
    /// `max_entries = 1000`: the most outputs of the task kept in memory.
    pub max_entries: Option<(Ident, usize)>,
}

/// The settings of `#[flow(...)]`.
#[derive(Default)]
pub struct FlowArgs {
    pub name: Option<LitStr>,
    /// `state = <expr>`: the path of the flow's state store file (`AsRef<Path>`).
    pub state: Option<(Ident, syn::Expr)>,
}

const TASK_KEYS: &str = "name, cache_for, cache_validator, cache_key, max_retries, retry_delay, checkpoint, result, target, trigger, cache_version, max_entries";

/// The triggers `trigger = …` takes.
pub const TRIGGERS: [&str; 5] = [
    "all_successful",
    "all_finished",
    "always_run",
    "any_failed",
    "manual_only",
];

impl Parse for TaskArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = TaskArgs::default();
        let mut errors: Option<syn::Error> = None;
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            let name = key.to_string();
            let duplicate = match name.as_str() {
                "name" => args.name.is_some(),
                "cache_for" => args.cache_for.is_some(),
                "cache_validator" => args.cache_validator.is_some(),
                "cache_key" => args.cache_key.is_some(),
                "max_retries" => args.max_retries.is_some(),
                "retry_delay" => args.retry_delay.is_some(),
                "checkpoint" => args.checkpoint.is_some(),
                "result" => args.result.is_some(),
                "target" => args.target.is_some(),
                "trigger" => args.trigger.is_some(),
                "cache_version" => args.cache_version.is_some(),
                "max_entries" => args.max_entries.is_some(),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown task argument `{name}`; the arguments are: {TASK_KEYS}"),
                    ))
                }
            };
            if duplicate {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{name}` is given twice; keep one"),
                ));
            }
            let result = (|| -> syn::Result<()> {
                match name.as_str() {
                    "checkpoint" => {
                        // `checkpoint` alone means `checkpoint = true`.
                        let value = if input.peek(Token![=]) {
                            input.parse::<Token![=]>()?;
                            bool_value(input, "checkpoint")?
                        } else {
                            true
                        };
                        args.checkpoint = Some((key.clone(), value));
                        return Ok(());
                    }
                    _ => {
                        if !input.peek(Token![=]) {
                            return Err(syn::Error::new(
                                key.span(),
                                format!("`{name}` needs a value: write `{name} = …`"),
                            ));
                        }
                        input.parse::<Token![=]>()?;
                    }
                }
                match name.as_str() {
                    "name" => args.name = Some(non_empty(text_value(input, "name")?, "name")?),
                    "cache_for" => {
                        args.cache_for = Some(positive(
                            parse_duration(&duration_value(input, "cache_for")?)?,
                            "cache_for",
                        )?)
                    }
                    "retry_delay" => {
                        args.retry_delay =
                            Some(parse_duration(&duration_value(input, "retry_delay")?)?)
                    }
                    "cache_key" => {
                        args.cache_key =
                            Some(non_empty(text_value(input, "cache_key")?, "cache_key")?)
                    }
                    "target" => {
                        args.target = Some(non_empty(text_value(input, "target")?, "target")?)
                    }
                    "max_entries" => {
                        let lit: LitInt = input.parse().map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                "`max_entries` takes a whole number, as in `max_entries = 1000`",
                            )
                        })?;
                        let n = lit.base10_parse::<usize>()?;
                        if n == 0 {
                            return Err(syn::Error::new(
                                lit.span(),
                                "`max_entries = 0` would keep nothing: leave `cache_for` out instead",
                            ));
                        }
                        args.max_entries = Some((key.clone(), n));
                    }
                    "cache_version" => {
                        args.cache_version = Some(non_empty(
                            text_value(input, "cache_version")?,
                            "cache_version",
                        )?)
                    }
                    "trigger" => {
                        let which: Ident = input.parse().map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                format!(
                                    "`trigger` takes one of {}, as in `trigger = manual_only`",
                                    TRIGGERS.join(", ")
                                ),
                            )
                        })?;
                        if !TRIGGERS.contains(&which.to_string().as_str()) {
                            return Err(syn::Error::new(
                                which.span(),
                                format!(
                                    "unknown trigger `{which}`; the triggers are {}",
                                    TRIGGERS.join(", ")
                                ),
                            ));
                        }
                        args.trigger = Some((key.clone(), which));
                    }
                    "max_retries" => {
                        let lit: LitInt = input.parse().map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                "`max_retries` takes a whole number, as in `max_retries = 3`",
                            )
                        })?;
                        let n = lit.base10_parse::<u32>()?;
                        args.max_retries = Some((key.clone(), n));
                    }
                    "cache_validator" => args.cache_validator = Some((key.clone(), input.parse()?)),
                    "result" => args.result = Some((key.clone(), input.parse()?)),
                    _ => unreachable!("keys are matched above"),
                }
                Ok(())
            })();
            if let Err(e) = result {
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
                // Skip to the next argument so that later mistakes are reported too.
                while !input.is_empty() && !input.peek(Token![,]) {
                    input.parse::<proc_macro2::TokenTree>()?;
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(args),
        }
    }
}

impl Parse for FlowArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = FlowArgs::default();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            let duplicate = match key.to_string().as_str() {
                "name" => args.name.is_some(),
                "state" => args.state.is_some(),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown flow argument `{key}`; the arguments are `name = \"…\"` \
                             and `state = \"runs.db\"` (the state store's file)"
                        ),
                    ))
                }
            };
            if duplicate {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{key}` is given twice; keep one"),
                ));
            }
            if !input.peek(Token![=]) {
                let example = if key == "name" {
                    "name = \"…\""
                } else {
                    "state = \"runs.db\""
                };
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{key}` needs a value: write `{example}`"),
                ));
            }
            input.parse::<Token![=]>()?;
            if key == "name" {
                args.name = Some(non_empty(text_value(input, "name")?, "name")?);
            } else {
                let expr: syn::Expr = input.parse()?;
                args.state = Some((key, expr));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// The tokens of a value written where a literal was expected, up to the next comma.
fn rest_of_value(input: ParseStream) -> syn::Result<proc_macro2::TokenStream> {
    let mut tokens = proc_macro2::TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<proc_macro2::TokenTree>()?]);
    }
    Ok(tokens)
}

/// The string of `key = "…"` (`name`, `cache_key`, `target`); anything else is an error
/// that shows the value quoted.
fn text_value(input: ParseStream, key: &str) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    let span = input.span();
    let tokens = rest_of_value(input)?;
    let single: Vec<_> = tokens.clone().into_iter().collect();
    let msg = match single.as_slice() {
        [] => format!("`{key}` needs a value: write `{key} = \"…\"`"),
        [proc_macro2::TokenTree::Ident(_) | proc_macro2::TokenTree::Literal(_)] => {
            let written = single[0].to_string();
            let written = written.trim_matches('\'');
            format!("`{key}` takes a string literal: write `{key} = \"{written}\"`")
        }
        _ => format!(
            "`{key}` takes a string literal, read at compile time (a constant or an \
             expression cannot be): write `{key} = \"…\"`"
        ),
    };
    Err(spanned(tokens, span, msg))
}

/// The string of a duration (`cache_for`, `retry_delay`); a number is an error that
/// shows it as a string with a unit.
fn duration_value(input: ParseStream, key: &str) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    let span = input.span();
    let number = input.fork().parse::<LitInt>().ok();
    let tokens = rest_of_value(input)?;
    let example = match &number {
        Some(n) if tokens.clone().into_iter().count() == 1 => {
            let n = n.base10_digits();
            format!("`{key} = \"{n}s\"` ({n} seconds)")
        }
        _ => format!("`{key} = \"1h\"`"),
    };
    let msg = if tokens.is_empty() {
        format!("`{key}` needs a value: write {example}")
    } else if number.is_some() {
        format!(
            "`{key}` takes a duration as a string, with its unit: write {example}, \
             or another duration such as \"30s\", \"15m\", \"1h30m\", \"2days\""
        )
    } else {
        format!(
            "`{key}` takes a duration as a string literal, checked at compile time \
             (a constant or an expression cannot be read): write {example}, or another \
             duration such as \"30s\", \"15m\", \"1h30m\", \"2days\""
        )
    };
    Err(spanned(tokens, span, msg))
}

/// `true` or `false` (`checkpoint = …`).
fn bool_value(input: ParseStream, key: &str) -> syn::Result<bool> {
    if input.peek(LitBool) {
        return Ok(input.parse::<LitBool>()?.value);
    }
    let span = input.span();
    let tokens = rest_of_value(input)?;
    Err(spanned(
        tokens,
        span,
        format!(
            "`{key}` takes `true` or `false`: write `{key}` (or `{key} = true`) to turn it on, \
             `{key} = false` to turn it off"
        ),
    ))
}

/// An error over `tokens`, or at `span` when there are none.
fn spanned(tokens: proc_macro2::TokenStream, span: Span, msg: String) -> syn::Error {
    if tokens.is_empty() {
        syn::Error::new(span, msg)
    } else {
        syn::Error::new_spanned(tokens, msg)
    }
}

impl Parse for ValidatorArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let path: Path = input.parse()?;
        if let Some(ident) = path.get_ident() {
            let name = ident.to_string();
            match name.as_str() {
                "never_use" | "duration_only" | "all_inputs" | "all_parameters" => {
                    if input.peek(syn::token::Paren) {
                        let hint = if name.ends_with("inputs") {
                            "partial_inputs_only(a, b)"
                        } else {
                            "partial_parameters_only(a, b)"
                        };
                        return Err(syn::Error::new(
                            input.span(),
                            format!(
                                "`{name}` takes no arguments; to compare only some, write `{hint}`"
                            ),
                        ));
                    }
                    return Ok(ValidatorArg::Builtin(ident.clone()));
                }
                "partial_inputs_only" | "partial_parameters_only" => {
                    let kind = ident.clone();
                    if !input.peek(syn::token::Paren) {
                        return Err(syn::Error::new(
                            kind.span(),
                            format!("`{name}` takes the names to compare: write `{name}(a, b)`, or `{name}()` to compare none"),
                        ));
                    }
                    let content;
                    syn::parenthesized!(content in input);
                    let names = Punctuated::<NameArg, Token![,]>::parse_terminated(&content)?;
                    let names = names.into_iter().map(|n| (n.0, n.1)).collect();
                    return Ok(ValidatorArg::Partial { kind, names });
                }
                _ => {}
            }
        }
        if input.peek(syn::token::Paren) {
            return Err(syn::Error::new(
                input.span(),
                "only `partial_inputs_only(…)` and `partial_parameters_only(…)` take arguments; \
                 a validator of your own is named by its path, as in `cache_validator = my_validator`",
            ));
        }
        Ok(ValidatorArg::Custom(path))
    }
}

/// A name inside `partial_*_only(…)`: an identifier or a string.
struct NameArg(String, Span);

impl Parse for NameArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(LitStr) {
            let s: LitStr = input.parse()?;
            Ok(NameArg(s.value(), s.span()))
        } else {
            let i: Ident = input.parse()?;
            Ok(NameArg(i.to_string(), i.span()))
        }
    }
}

fn non_empty(s: LitStr, what: &str) -> syn::Result<LitStr> {
    if s.value().is_empty() {
        Err(syn::Error::new(
            s.span(),
            format!("`{what}` cannot be empty"),
        ))
    } else {
        Ok(s)
    }
}

fn positive(
    d: Spanned<std::time::Duration>,
    what: &str,
) -> syn::Result<Spanned<std::time::Duration>> {
    if d.value.is_zero() {
        Err(syn::Error::new(
            d.span,
            format!("`{what}` must be longer than zero; to turn caching off, remove `{what}`"),
        ))
    } else {
        Ok(d)
    }
}
