//! The annotated function, reduced to what the expansion needs: its arguments by name,
//! whether it is `async`, what it returns.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

/// One argument of the function.
pub struct Input {
    /// Its name: it keys the hashed inputs, validators and templates.
    pub ident: Ident,
    /// Whether the user wrote `mut name`.
    pub mutable: bool,
    /// Its type.
    pub ty: Type,
    /// True for `&T`: passed to every attempt as is, never cached.
    pub borrowed: bool,
}

/// The function a macro is applied to.
pub struct Function {
    pub item: ItemFn,
    pub inputs: Vec<Input>,
    /// The return type, `()` when none is written. Whether its values can be failures
    /// (a `Result`, whatever it is called) is decided by the generated code, from the
    /// type itself.
    pub output: Type,
}

impl Function {
    /// Reads the function, reporting every argument that cannot be a task input.
    /// `what` is "task" or "flow".
    pub fn from_item(item: ItemFn, what: &str) -> syn::Result<Self> {
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut inputs = Vec::new();
        check_signature(&item.sig, what, &mut errors);
        for param in &item.sig.generics.params {
            if !matches!(param, GenericParam::Lifetime(_)) {
                errors.push(syn::Error::new(
                    param.span(),
                    format!(
                        "a {what} cannot have type or const parameters: its settings and cache are \
                         shared by all its calls; write a {what} for each concrete type, calling a \
                         generic function from its body"
                    ),
                ));
            }
        }
        for arg in &item.sig.inputs {
            match arg {
                FnArg::Receiver(r) => errors.push(syn::Error::new(
                    r.self_token.span,
                    format!(
                        "a {what} cannot take `self`: it is a free function whose output depends on \
                         its arguments alone; pass what you need from `self` as arguments"
                    ),
                )),
                FnArg::Typed(pt) => {
                    let Pat::Ident(pi) = &*pt.pat else {
                        errors.push(syn::Error::new(
                            pt.pat.span(),
                            format!(
                                "{what} arguments must be plain names, because the names key the \
                                 input hashes, validators and templates: write `name: Type` and \
                                 destructure inside the body"
                            ),
                        ));
                        continue;
                    };
                    if pi.by_ref.is_some() || pi.subpat.is_some() {
                        errors.push(syn::Error::new(
                            pt.pat.span(),
                            format!("{what} arguments must be plain names: write `name: Type`"),
                        ));
                        continue;
                    }
                    let borrowed = match &*pt.ty {
                        Type::Reference(r) if r.mutability.is_some() => {
                            errors.push(syn::Error::new(
                                r.span(),
                                format!(
                                    "a {what} cannot take `&mut` arguments: its output must depend on \
                                     its inputs alone, and a cached run would skip the mutation; \
                                     take the value and return the new one"
                                ),
                            ));
                            continue;
                        }
                        Type::Reference(_) => true,
                        _ => false,
                    };
                    inputs.push(Input {
                        ident: pi.ident.clone(),
                        mutable: pi.mutability.is_some(),
                        ty: (*pt.ty).clone(),
                        borrowed,
                    });
                }
            }
        }
        if let Some(v) = &item.sig.variadic {
            errors.push(syn::Error::new(
                v.span(),
                format!("a {what} cannot be variadic"),
            ));
        }
        if let Some(e) = errors.into_iter().reduce(|mut a, b| {
            a.combine(b);
            a
        }) {
            return Err(e);
        }
        let output = match &item.sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        Ok(Function {
            item,
            inputs,
            output,
        })
    }

    /// Whether the function is `async fn`.
    pub fn is_async(&self) -> bool {
        self.item.sig.asyncness.is_some()
    }

    /// The function's name.
    pub fn ident(&self) -> &Ident {
        &self.item.sig.ident
    }

    /// The owned (not borrowed) arguments, which travel through the runtime as a tuple.
    pub fn owned(&self) -> impl Iterator<Item = &Input> {
        self.inputs.iter().filter(|i| !i.borrowed)
    }

    /// The argument called `name`.
    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| i.ident == name)
    }
}

/// The mistakes in the signature outside the arguments' patterns: `const`, `unsafe`,
/// `impl Trait`, `Self`.
fn check_signature(sig: &syn::Signature, what: &str, errors: &mut Vec<syn::Error>) {
    if let Some(c) = &sig.constness {
        errors.push(syn::Error::new(
            c.span,
            format!(
                "a {what} cannot be a `const fn`: it reads its cache, the clock and the context \
                 when it is called; remove `const`"
            ),
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new(
            u.span,
            format!(
                "a {what} cannot be an `unsafe fn`: its body runs inside a closure, where it \
                 would lose its `unsafe` context, and the generated `{}::run` would be a safe \
                 way to call it; remove `unsafe` from the signature and write an `unsafe {{ … }}` \
                 block in the body, with the reason it is sound",
                sig.ident
            ),
        ));
    }
    for arg in &sig.inputs {
        if let FnArg::Typed(pt) = arg {
            if let Some(span) = find_ident(pt.ty.to_token_stream(), "impl") {
                errors.push(syn::Error::new(
                    span,
                    format!(
                        "a {what} argument cannot be `impl Trait`: a {what} has one set of \
                         settings and one cache, so each argument needs one concrete type; \
                         take a concrete type (write a {what} for each type you need, calling a \
                         generic function from its body)"
                    ),
                ));
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some(span) = find_ident(ty.to_token_stream(), "impl") {
            errors.push(syn::Error::new(
                span,
                format!(
                    "a {what} cannot return `impl Trait`: its output is kept in its final state \
                     (and cached), which needs the type's name; return a concrete type, or \
                     `Box<dyn Trait>`"
                ),
            ));
        }
    }
    let in_signature = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => Some(pt.ty.to_token_stream()),
            FnArg::Receiver(_) => None,
        })
        .chain(match &sig.output {
            ReturnType::Type(_, ty) => Some(ty.to_token_stream()),
            ReturnType::Default => None,
        })
        .find_map(|tokens| find_ident(tokens, "Self"));
    if let Some(span) = in_signature {
        errors.push(syn::Error::new(
            span,
            format!(
                "`#[{what}]` goes on a free function, not on a function in an `impl` block: it \
                 defines a type of the function's name beside it, which an `impl` block cannot \
                 hold; define the {what} outside the `impl` block, naming the type instead of \
                 `Self`, and call it from there"
            ),
        ));
    }
}

/// The first identifier (or keyword) `name` in `tokens`, at any depth.
fn find_ident(tokens: TokenStream, name: &str) -> Option<Span> {
    tokens.into_iter().find_map(|tt| match tt {
        TokenTree::Ident(i) if i == name => Some(i.span()),
        TokenTree::Group(g) => find_ident(g.stream(), name),
        _ => None,
    })
}
