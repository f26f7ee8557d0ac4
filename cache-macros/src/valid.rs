//! Checks of a task's settings against each other and against its function. Every
//! mistake found is reported, each at its own token.

use crate::attr::{TaskArgs, ValidatorArg};
use crate::model::Function;

/// Checks `args` against `func`.
pub fn check_task(args: &TaskArgs, func: &Function) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let err =
        |errors: &mut Vec<syn::Error>, span, msg: String| errors.push(syn::Error::new(span, msg));

    if args.cache_for.is_none() {
        if let Some((key, _)) = &args.cache_validator {
            err(
                &mut errors,
                key.span(),
                "`cache_validator` has no effect without `cache_for`: add `cache_for = \"1h\"` (how long outputs stay cached)".into(),
            );
        }
        if let Some(key) = &args.cache_key {
            err(
                &mut errors,
                key.span(),
                "`cache_key` has no effect without `cache_for`: add `cache_for = \"1h\"` (how long outputs stay cached)".into(),
            );
        }
        if let Some((key, _)) = &args.max_entries {
            err(
                &mut errors,
                key.span(),
                "`max_entries` has no effect without `cache_for`: add `cache_for = \"1h\"` (how long outputs stay cached)".into(),
            );
        }
    }
    if let Some(delay) = &args.retry_delay {
        if args.max_retries.as_ref().is_none_or(|(_, n)| *n == 0) {
            err(
                &mut errors,
                delay.span,
                "`retry_delay` has no effect without retries: add `max_retries = 3` (how many times a failed run is retried)".into(),
            );
        }
    }
    // As Prefect, which refuses `max_retries` without `retry_delay`: an immediate retry
    // must be asked for, so that a retry loop hammering a failing service is a choice.
    if let (Some((key, n)), None) = (&args.max_retries, &args.retry_delay) {
        if *n > 0 {
            err(
                &mut errors,
                key.span(),
                format!(
                    "`max_retries = {n}` needs a `retry_delay`: add `retry_delay = \"10s\"` \
                     (how long to wait before each retry), or `retry_delay = \"0s\"` to retry at once"
                ),
            );
        }
    }
    if let Some((_, ValidatorArg::Partial { kind, names })) = &args.cache_validator {
        if kind == "partial_inputs_only" {
            for (name, span) in names {
                if func.input(name).is_none() {
                    let have: Vec<String> =
                        func.inputs.iter().map(|i| i.ident.to_string()).collect();
                    err(
                        &mut errors,
                        *span,
                        format!(
                            "`{name}` is not an argument of `{}`; its arguments are: {}",
                            func.ident(),
                            if have.is_empty() {
                                "(none)".into()
                            } else {
                                have.join(", ")
                            }
                        ),
                    );
                }
            }
        }
    }
    let checkpoint = args.checkpoint.as_ref().map(|(_, on)| *on);
    if let (Some((key, true)), None) = (&args.checkpoint, &args.result) {
        err(
            &mut errors,
            key.span(),
            "`checkpoint` needs a `result` to write to: add `result = LocalResult::new(\"~/.taskcache\")`".into(),
        );
    }
    if let Some(target) = &args.target {
        let mut missing = Vec::new();
        if args.result.is_none() {
            missing.push(
                "`result = LocalResult::new(\"~/.taskcache\")` (where the target file lives)",
            );
        }
        if checkpoint != Some(true) {
            missing.push("`checkpoint` (so the output is written to the target)");
        }
        if !missing.is_empty() {
            err(
                &mut errors,
                target.span(),
                format!("`target` needs {}", missing.join(" and ")),
            );
        }
        if let Err(e) = crate::template::parse_template(&target.value()) {
            err(
                &mut errors,
                target.span(),
                format!(
                    "invalid target template: {} (at byte {})",
                    e.message, e.offset
                ),
            );
        }
    }
    match errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
