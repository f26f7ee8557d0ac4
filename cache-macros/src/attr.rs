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
}

/// The settings of `#[flow(...)]`.
#[derive(Default)]
pub struct FlowArgs {
    pub name: Option<LitStr>,
}

const TASK_KEYS: &str = "name, cache_for, cache_validator, cache_key, max_retries, retry_delay, checkpoint, result, target";

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
                            input.parse::<LitBool>()?.value
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
                    "name" => args.name = Some(non_empty(input.parse()?, "name")?),
                    "cache_for" => {
                        args.cache_for =
                            Some(positive(parse_duration(&input.parse()?)?, "cache_for")?)
                    }
                    "retry_delay" => args.retry_delay = Some(parse_duration(&input.parse()?)?),
                    "cache_key" => args.cache_key = Some(non_empty(input.parse()?, "cache_key")?),
                    "target" => args.target = Some(non_empty(input.parse()?, "target")?),
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
            if key != "name" {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown flow argument `{key}`; the only argument is `name = \"…\"`"),
                ));
            }
            if args.name.is_some() {
                return Err(syn::Error::new(
                    key.span(),
                    "`name` is given twice; keep one",
                ));
            }
            input.parse::<Token![=]>()?;
            args.name = Some(non_empty(input.parse()?, "name")?);
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
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
