//! The annotated function, reduced to what the expansion needs: its arguments by name,
//! whether it is `async`, what it returns.

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
    /// The return type, `()` when none is written.
    pub output: Type,
    /// True when the return type is spelled `Result<…>` (any path ending in `Result`):
    /// an `Err` is then a failure.
    pub returns_result: bool,
}

impl Function {
    /// Reads the function, reporting every argument that cannot be a task input.
    /// `what` is "task" or "flow".
    pub fn from_item(item: ItemFn, what: &str) -> syn::Result<Self> {
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut inputs = Vec::new();
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
        let returns_result = is_result(&output);
        Ok(Function {
            item,
            inputs,
            output,
            returns_result,
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

/// True for a type spelled `Result<…>` or `some::path::Result<…>`, also when it comes
/// through a `macro_rules!` fragment (an invisible group) or parentheses.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Result")
        }
        Type::Group(g) => is_result(&g.elem),
        Type::Paren(p) => is_result(&p.elem),
        _ => false,
    }
}
