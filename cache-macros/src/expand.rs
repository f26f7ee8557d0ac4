//! Emitting the code for an already-checked task or flow.
//!
//! For `#[task] fn add(x: i64, y: i64) -> i64 { x + y }` the expansion is:
//! the function itself, whose body is `<add>::call(Ending::Output, x, y).into_output()`;
//! a type `add` (type namespace only, so it does not clash with the function); and an
//! `impl add` with `spec()` (the settings, a `static`), `call(…)` (one call of the
//! runtime with the original body in a closure, ending with the output alone or with
//! the final state) and `run(…)` (`call` for the final state). An `async fn` task has
//! no `call`: its function awaits `run(…)`. Everything from the runtime is named through
//! `::taskcache::…` so that the user's own `Result` or `Option` cannot interfere.

use crate::attr::{FlowArgs, TaskArgs, ValidatorArg};
use crate::model::Function;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{Attribute, FnArg, Pat};

/// The pieces shared by tasks and flows: the outer function, the type, the doc.
struct Frame<'a> {
    func: &'a Function,
    /// `#[cfg]` attributes, repeated on every generated item.
    cfgs: Vec<&'a Attribute>,
}

impl<'a> Frame<'a> {
    fn new(func: &'a Function) -> Self {
        let cfgs = func
            .item
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .collect();
        Frame { func, cfgs }
    }

    /// The user's signature with `mut` dropped from the arguments (the body moved into
    /// the runtime call, where the `mut` is kept).
    fn outer_sig(&self) -> syn::Signature {
        let mut sig = self.func.item.sig.clone();
        for arg in &mut sig.inputs {
            if let FnArg::Typed(pt) = arg {
                if let Pat::Ident(pi) = &mut *pt.pat {
                    pi.mutability = None;
                }
            }
        }
        sig
    }

    /// The user's function, calling `name::run(…)`, or `name::call(…)` for the output
    /// alone when the type has it (`via_call`: a sync task).
    fn outer_fn(&self, via_call: bool) -> TokenStream {
        let item = &self.func.item;
        let attrs = &item.attrs;
        let vis = &item.vis;
        let sig = self.outer_sig();
        let ident = self.func.ident();
        let args = self.func.inputs.iter().map(|i| &i.ident);
        let dot_await = self.func.is_async().then(|| quote!(.await));
        let call = if via_call {
            quote!(<#ident>::call(::taskcache::__private::Ending::Output, #(#args),*))
        } else {
            quote!(<#ident>::run(#(#args),*) #dot_await)
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                #call.into_output()
            }
        }
    }

    /// `refresh(…)` and `invalidate()`, the cache's controls on a task's type.
    fn cache_controls(&self, result_static: Option<&TokenStream>) -> TokenStream {
        let vis = &self.func.item.vis;
        let mut sig = self.outer_sig();
        sig.ident = format_ident!("refresh", span = sig.ident.span());
        let args = self.func.inputs.iter().map(|i| &i.ident);
        let args2 = args.clone();
        let body = if self.func.is_async() {
            quote! {
                ::taskcache::Context::current()
                    .with_refresh(true)
                    .scope_async(Self::run(#(#args),*))
                    .await
                    .into_output()
            }
        } else {
            quote! {
                ::taskcache::Context::current()
                    .with_refresh(true)
                    .scope(|| Self::run(#(#args2),*))
                    .into_output()
            }
        };
        let make = proc_macro2::Ident::new("make_result", proc_macro2::Span::mixed_site());
        let backend = match result_static {
            Some(result_static) => quote! {{
                #result_static
                ::core::option::Option::Some(
                    ::taskcache::__private::result(&RESULT, #make)
                        as &dyn ::taskcache::results::ResultBackend,
                )
            }},
            None => quote!(::core::option::Option::None),
        };
        quote! {
            /// Runs the body whatever is cached for these inputs, and replaces the cached
            /// output, its persisted record and the target with what it returns.
            #vis #sig {
                #body
            }

            /// Drops everything cached for this task's key: the outputs in memory and
            /// the persisted cache records (result files and targets stay).
            #vis fn invalidate() {
                ::taskcache::__private::invalidate(Self::spec(), #backend)
            }
        }
    }

    /// The task or flow type.
    fn type_item(&self, doc: String) -> TokenStream {
        let vis = &self.func.item.vis;
        let ident = self.func.ident();
        let cfgs = &self.cfgs;
        // At the function's name: a module or type of the same name in the same module
        // clashes with this type (E0428), and the error is best shown there.
        quote_spanned! {ident.span()=>
            #(#cfgs)*
            #[doc = #doc]
            #[allow(non_camel_case_types)]
            #vis struct #ident {}
        }
    }

    /// `run`'s signature: the user's, returning `ret`, with `mut` dropped unless `keep_mut`.
    fn run_sig(&self, ret: TokenStream, keep_mut: bool) -> TokenStream {
        let sig = if keep_mut {
            self.func.item.sig.clone()
        } else {
            self.outer_sig()
        };
        let vis = &self.func.item.vis;
        let asyncness = &sig.asyncness;
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let inputs = &sig.inputs;
        quote! {
            #vis #asyncness fn run #generics (#inputs) -> #ret #where_clause
        }
    }
}

/// Expands `#[task]`.
pub fn task(args: &TaskArgs, func: &Function) -> TokenStream {
    let frame = Frame::new(func);
    let ident = func.ident();
    let name = args
        .name
        .as_ref()
        .map_or_else(|| ident.to_string(), |n| n.value());
    let output = &func.output;
    let vis = &func.item.vis;
    let cfgs = &frame.cfgs;

    // The settings.
    let input_names = func.inputs.iter().map(|i| i.ident.to_string());
    let mut spec_calls = Vec::new();
    if let Some(d) = &args.cache_for {
        let secs = d.value.as_secs();
        let nanos = d.value.subsec_nanos();
        spec_calls.push(quote!(.with_cache_for(::core::time::Duration::new(#secs, #nanos))));
    }
    if let Some((_, v)) = &args.cache_validator {
        let v = validator(v);
        spec_calls.push(quote!(.with_cache_validator(#v)));
    }
    match (&args.cache_key, &args.name) {
        (Some(key), _) => spec_calls.push(quote!(.with_cache_key(#key))),
        // A `name` written out is the key, so that tasks can share outputs by name.
        (None, Some(_)) => {}
        // Unique per function: two tasks called `load` in two modules never share.
        (None, None) => spec_calls.push(quote!(
            .with_cache_key(::core::concat!(::core::module_path!(), "::", #name))
        )),
    }
    if let Some(target) = &args.target {
        spec_calls.push(quote!(.with_target(#target)));
    }
    if let Some((_, on)) = &args.checkpoint {
        spec_calls.push(quote!(.with_checkpoint(#on)));
    }
    // The code's version: the user's `cache_version`, or a fingerprint of the function's
    // tokens (signature and body; formatting and comments are not tokens, and the
    // attributes, doc comments among them, are left out).
    let version = match &args.cache_version {
        Some(v) => v.value(),
        None => {
            use sha2::Digest;
            let sig = func.item.sig.to_token_stream().to_string();
            let block = func.item.block.to_token_stream().to_string();
            let digest = sha2::Sha256::new()
                .chain_update(sig.as_bytes())
                .chain_update([0u8])
                .chain_update(block.as_bytes())
                .finalize();
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    };
    spec_calls.push(quote!(.with_code_version(#version)));
    if let Some((_, n)) = &args.max_entries {
        spec_calls.push(quote!(.with_max_entries(#n)));
    }
    if let Some((key, which)) = &args.trigger {
        let variant = match which.to_string().as_str() {
            "manual_only" => quote!(ManualOnly),
            "any_failed" => quote!(AnyFailed),
            "all_finished" | "always_run" => quote!(AllFinished),
            _ => quote!(AllSuccessful),
        };
        spec_calls.push(quote_spanned!(key.span()=> .with_trigger(::taskcache::Trigger::#variant)));
    }
    if let Some((_, n)) = args.max_retries.as_ref().filter(|(_, n)| *n > 0) {
        let delay = args
            .retry_delay
            .as_ref()
            .map_or(std::time::Duration::ZERO, |d| d.value);
        let (secs, nanos) = (delay.as_secs(), delay.subsec_nanos());
        spec_calls.push(quote!(.with_retries(#n, ::core::time::Duration::new(#secs, #nanos))));
    }

    // The call of the runtime.
    let owned: Vec<_> = func.owned().collect();
    let owned_idents: Vec<_> = owned.iter().map(|i| &i.ident).collect();
    let owned_tys: Vec<_> = owned.iter().map(|i| &i.ty).collect();
    let owned_pats = owned.iter().map(|i| {
        let id = &i.ident;
        if i.mutable {
            quote!(mut #id)
        } else {
            quote!(#id)
        }
    });
    let mut steps = Vec::new();
    if let Some(cache_for) = &args.cache_for {
        // Mixed-site hygiene: this name cannot clash with an argument called `hasher`.
        let hasher = proc_macro2::Ident::new("hasher", proc_macro2::Span::mixed_site());
        // Runs of bytes are hashed in bulk, anything else through serde (the bound
        // reported at the argument).
        let hashes = func.inputs.iter().map(|i| {
            let id = &i.ident;
            quote_spanned!(id.span()=> (&&::taskcache::__private::Arg(#id)).hash_arg(#hasher)?;)
        });
        steps.push(quote! {
            .hash_inputs(|(#(#owned_idents,)*): &(#(#owned_tys,)*), #hasher| {
                #[allow(unused_imports)]
                use ::taskcache::__private::{HashAsBytes as _, HashWithSerde as _};
                #(#hashes)*
                ::core::result::Result::Ok(())
            })
        });
        let span = match &func.item.sig.output {
            syn::ReturnType::Type(_, ty) => syn::spanned::Spanned::span(ty),
            syn::ReturnType::Default => cache_for.span,
        };
        // The bounds (`Clone` on the output, or on the `T` of a `Result<T, E>`) are on
        // the method chosen for the type, reported at the return type.
        let method = quote_spanned!(span=> cached_value);
        let chosen = quote! {
            (&::taskcache::__private::OutputType::<#output>::NEW).#method()
        };
        steps.push(quote! {
            .cache_output({
                #[allow(unused_imports)]
                use ::taskcache::__private::{CachedAsSuccess as _, CachedWhole as _};
                #chosen
            })
        });
    }
    let retries = args.max_retries.as_ref().filter(|(_, n)| *n > 0);
    let manual = args
        .trigger
        .as_ref()
        .filter(|(_, which)| which == "manual_only");
    // A retried task keeps its inputs for the next attempt; a `manual_only` one for its
    // approval, perhaps in another process: both need them to round-trip through serde.
    if let Some(key) = retries.map(|(k, _)| k).or(manual.map(|(k, _)| k)) {
        steps.push(quote_spanned!(key.span()=> .cache_inputs()));
    }
    let mut result_static = None;
    if let Some((key, expr)) = &args.result {
        let checkpoint = match &args.checkpoint {
            Some((_, on)) => quote!(::core::option::Option::Some(#on)),
            None => quote!(::core::option::Option::None),
        };
        // `result = shared()` would make `|| shared()` a redundant closure in the user's
        // code for clippy: the closure is bound where that lint is allowed.
        let make = proc_macro2::Ident::new("make_result", proc_macro2::Span::mixed_site());
        result_static = Some(quote! {
            static RESULT: ::taskcache::__private::ResultCell = ::taskcache::__private::ResultCell::new();
            #[allow(clippy::redundant_closure)]
            let #make = || #expr;
        });
        // How outputs are stored, chosen by the type: the `T` of a `Result<T, E>` (so `E`
        // needs no serde), else the whole value. The bounds are reported at the return
        // type.
        let span = match &func.item.sig.output {
            syn::ReturnType::Type(_, ty) => syn::spanned::Spanned::span(ty),
            syn::ReturnType::Default => key.span(),
        };
        let method = quote_spanned!(span=> persist_ops);
        let ops = quote! {{
            #[allow(unused_imports)]
            use ::taskcache::__private::{PersistedAsSuccess as _, PersistedWhole as _};
            (&::taskcache::__private::OutputType::<#output>::NEW).#method()
        }};
        steps.push(quote_spanned!(key.span()=> .result(::taskcache::__private::result(&RESULT, #make), #ops, #checkpoint)));
        if let Some(target) = &args.target {
            steps.push(quote!(.target(#target)));
        }
        if !func.inputs.is_empty() {
            steps.push(template_renderer(args, func, &owned_tys));
        }
    }
    // Which values are failures, decided by the type whatever it is called: an `Err` of
    // a `Result` (with its `Display` text, else its `Debug` text), nothing else.
    steps.push(quote! {
        .fallible({
            #[allow(unused_imports)]
            use ::taskcache::__private::{
                FailsWithDebug as _, FailsWithDisplay as _, FailsWithoutText as _,
                NeverFails as _,
            };
            (&&&::taskcache::__private::OutputType::<#output>::NEW).classifier()
        })
    });
    let block = &func.item.block;
    // Mixed-site hygiene: this name cannot clash with an argument called `ending`.
    let ending = proc_macro2::Ident::new("ending", proc_macro2::Span::mixed_site());
    let run_call = if func.is_async() {
        quote! {
            .run_async(|(#(#owned_pats,)*): (#(#owned_tys,)*)| async move #block)
            .await
        }
    } else {
        quote! {
            .end(#ending, |(#(#owned_pats,)*): (#(#owned_tys,)*)| -> #output #block)
        }
    };
    let run_sig = frame.run_sig(quote!(::taskcache::State<#output>), false);
    let chain = quote! {
        #result_static
        ::taskcache::__private::TaskRun::new(Self::spec(), (#(#owned_idents,)*))
            #(#steps)*
            #run_call
    };
    // A sync task's body is written once, in `call`, which ends with the state (`run`)
    // or with the output alone (the function), which a cache hit gives without
    // building a state.
    let run_fns = if func.is_async() {
        quote! {
            /// Runs this task and returns its final state, with the history of the run.
            #run_sig {
                #chain
            }
        }
    } else {
        let sig = frame.outer_sig();
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let inputs = &sig.inputs;
        let args = func.inputs.iter().map(|i| &i.ident);
        quote! {
            /// Runs this task and returns its final state, with the history of the run.
            #run_sig {
                Self::call(::taskcache::__private::Ending::State, #(#args),*).into_state()
            }

            #[allow(clippy::too_many_arguments)]
            fn call #generics (
                #ending: ::taskcache::__private::Ending,
                #inputs
            ) -> ::taskcache::__private::Ended<#output> #where_clause {
                #chain
            }
        }
    };

    let outer = frame.outer_fn(!func.is_async());
    let controls = frame.cache_controls(result_static.as_ref());
    let type_item = frame.type_item(format!(
        "The task `{name}`: `{ident}::spec()` gives its settings, `{ident}::run(…)` runs it and returns its final state, `{ident}::refresh(…)` runs it whatever is cached, `{ident}::invalidate()` drops what is cached."
    ));
    quote! {
        #outer

        #type_item

        #(#cfgs)*
        impl #ident {
            /// The settings of this task.
            #vis fn spec() -> &'static ::taskcache::TaskSpec {
                static SPEC: ::taskcache::TaskSpec = ::taskcache::TaskSpec::new(#name, &[#(#input_names),*])
                    #(#spec_calls)*;
                &SPEC
            }

            #run_fns

            #controls
        }
    }
}

/// `.template_inputs(…)`: a closure giving the text of any argument by name, which the
/// runtime calls for the arguments the target and the result's location template name
/// (however the result was built), before the body takes them:
///
/// ```text
/// .template_inputs(|(x, label): &(i64, Label), name: &str| {
///     use ::taskcache::__private::{RenderWithDisplay as _, RenderWithSerde as _, RenderWithNothing as _};
///     match name {
///         "x" => Some(Ok(::taskcache::__private::template_input(x))),                  // named inline
///         "label" => Some((&&::taskcache::__private::ArgumentText(label)).render_argument()),
///         _ => None,
///     }
/// })
/// ```
///
/// An argument named in a template written in the attribute must be `Display` (a compile
/// error at the argument otherwise) and renders with it; any other renders with
/// `Display` if its type has it, else through serde (scalars only), else is an error
/// when a template names it. Borrowed arguments are captured; the closure is called
/// once by the builder and not kept.
fn template_renderer(args: &TaskArgs, func: &Function, owned_tys: &[&syn::Type]) -> TokenStream {
    let inline = template_inputs(args, func);
    let name = proc_macro2::Ident::new("name", proc_macro2::Span::mixed_site());
    let pats = func.owned().map(|i| &i.ident);
    let arms = func.inputs.iter().map(|i| {
        let id = &i.ident;
        let key = id.to_string();
        if inline.iter().any(|n| n.ident == *id) {
            quote_spanned! {id.span()=>
                #key => ::core::option::Option::Some(::core::result::Result::Ok(
                    ::taskcache::__private::template_input(#id),
                )),
            }
        } else {
            quote! {
                #key => ::core::option::Option::Some(
                    (&&::taskcache::__private::ArgumentText(#id)).render_argument(),
                ),
            }
        }
    });
    quote! {
        .template_inputs(|(#(#pats,)*): &(#(#owned_tys,)*), #name: &str| {
            #[allow(unused_imports)]
            use ::taskcache::__private::{
                RenderWithDisplay as _, RenderWithNothing as _, RenderWithSerde as _,
            };
            match #name {
                #(#arms)*
                _ => ::core::option::Option::None,
            }
        })
    }
}

/// The arguments that templates written in the attribute name: in `target`, or in a
/// string literal inside the `result` expression (a `location` template). They must be
/// `Display`, checked at compile time.
fn template_inputs<'f>(args: &TaskArgs, func: &'f Function) -> Vec<&'f crate::model::Input> {
    let mut templates: Vec<String> = args.target.iter().map(|t| t.value()).collect();
    if let Some((_, expr)) = &args.result {
        collect_strings(expr.to_token_stream(), &mut templates);
    }
    let mut names = Vec::new();
    for t in &templates {
        if let Ok(parsed) = crate::template::parse_template(t) {
            for seg in parsed.segments {
                if let crate::template::Segment::Placeholder { name, .. } = seg {
                    names.push(name);
                }
            }
        }
    }
    func.inputs
        .iter()
        .filter(|i| names.iter().any(|n| i.ident == n))
        .collect()
}

fn collect_strings(tokens: TokenStream, out: &mut Vec<String>) {
    for tt in tokens {
        match tt {
            proc_macro2::TokenTree::Group(g) => collect_strings(g.stream(), out),
            proc_macro2::TokenTree::Literal(l) => {
                if let Ok(s) = syn::parse2::<syn::LitStr>(l.into_token_stream()) {
                    out.push(s.value());
                }
            }
            _ => {}
        }
    }
}

/// The runtime value of a validator argument.
fn validator(v: &ValidatorArg) -> TokenStream {
    match v {
        ValidatorArg::Builtin(id) => {
            let variant = match id.to_string().as_str() {
                "never_use" => format_ident!("NeverUse", span = id.span()),
                "duration_only" => format_ident!("DurationOnly", span = id.span()),
                "all_inputs" => format_ident!("AllInputs", span = id.span()),
                _ => format_ident!("AllParameters", span = id.span()),
            };
            quote!(::taskcache::CacheValidator::#variant)
        }
        ValidatorArg::Partial { kind, names } => {
            let variant = if kind == "partial_inputs_only" {
                format_ident!("PartialInputsOnly")
            } else {
                format_ident!("PartialParametersOnly")
            };
            let names = names.iter().map(|(n, _)| n);
            quote!(::taskcache::CacheValidator::#variant(&[#(#names),*]))
        }
        ValidatorArg::Custom(path) => {
            quote!(::taskcache::CacheValidator::Custom(#path))
        }
    }
}

/// Expands `#[flow]`.
pub fn flow(args: &FlowArgs, func: &Function) -> TokenStream {
    let frame = Frame::new(func);
    let ident = func.ident();
    let name = args
        .name
        .as_ref()
        .map_or_else(|| ident.to_string(), |n| n.value());
    let output = &func.output;
    let cfgs = &frame.cfgs;
    let parameters = func.inputs.iter().map(|i| {
        let id = &i.ident;
        let key = id.to_string();
        quote_spanned!(id.span()=> .parameter(#key, ::taskcache::__private::parameter(&#id)))
    });
    let block = &func.item.block;
    let run_call = if func.is_async() {
        quote!(.run_async(async move #block).await)
    } else {
        quote!(.run(move || -> #output #block))
    };
    let run_sig = frame.run_sig(quote!(::taskcache::FlowRun<#output>), true);
    let outer = frame.outer_fn(false);
    let type_item = frame.type_item(format!(
        "The flow `{name}`: `{ident}::run(…)` runs it and returns the final state of every task run in it."
    ));
    let state = args
        .state
        .as_ref()
        .map(|(key, expr)| quote_spanned!(key.span()=> .state_file(#expr)));
    quote! {
        #outer

        #type_item

        #(#cfgs)*
        impl #ident {
            /// Runs this flow and returns its final state and the final state of every task run in it.
            #run_sig {
                ::taskcache::Flow::new(#name)
                    #state
                    #(#parameters)*
                    #run_call
            }
        }
    }
}

/// Makes the token stream of an item for an error path: the user's function unchanged,
/// so that the only errors shown are the macro's own.
pub fn unchanged(item: &impl ToTokens) -> TokenStream {
    item.to_token_stream()
}
