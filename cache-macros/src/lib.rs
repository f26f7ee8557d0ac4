//! The `#[task]` and `#[flow]` attribute macros of taskcache.
//!
//! Use them through the `taskcache` crate, whose documentation describes every argument.
//! Each macro parses its arguments (`attr.rs`), reads the function (`model.rs`), checks
//! the two against each other (`valid.rs`) and only then emits code (`expand.rs`).
//! Every mistake is a compile error at the token that caused it.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use syn::parse_macro_input;

mod attr;
mod duration;
mod expand;
mod model;
// The template parser is shared with the runtime, which renders what this checks: one
// grammar, one implementation. It depends on std and chrono only.
#[path = "../../cache-core/src/template/parse.rs"]
mod template;
mod valid;

/// Makes a function a task: output caching, retries with input caching, checkpointed
/// results and target files, configured by its arguments. See the `taskcache` crate docs.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::ItemFn);
    let parsed = syn::parse::<attr::TaskArgs>(args);
    let func = model::Function::from_item(item.clone(), "task");
    let result = match (parsed, func) {
        (Ok(args), Ok(func)) => {
            valid::check_task(&args, &func).map(|()| expand::task(&args, &func))
        }
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => with_item(e, &item),
    }
}

/// Makes a function a flow: its arguments become the flow's parameters, and the tasks
/// it calls report to it. See the `taskcache` crate docs.
#[proc_macro_attribute]
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::ItemFn);
    let parsed = syn::parse::<attr::FlowArgs>(args);
    let func = model::Function::from_item(item.clone(), "flow");
    let result = match (parsed, func) {
        (Ok(args), Ok(func)) => Ok(expand::flow(&args, &func)),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => with_item(e, &item),
    }
}

/// The errors, followed by the function unchanged so that its callers still resolve and
/// the macro's errors are the only ones shown.
fn with_item(e: syn::Error, item: &syn::ItemFn) -> TokenStream {
    let mut tokens = e.to_compile_error();
    tokens.extend(expand::unchanged(item));
    tokens.into()
}
