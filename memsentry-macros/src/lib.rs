//! `#[tracked]`: the attribute behind `memsentry::tracked`. Use it through `memsentry`
//! (this crate's expansion names `::memsentry`); see `memsentry::task` for what it counts.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Item, ItemFn, Lit, LitStr, ReturnType, Token};

mod limit;

/// A memory budget on a test function: fails the test, naming the top call sites, when
/// what the function allocates exceeds a limit.
///
/// `#[memsentry::limit(allocations = 40, peak = "24 MiB", leaks = 0)]` on a `#[test]`
/// function (or above `#[tokio::test]` on an `async fn`) runs its body in a measured
/// scope with every allocation sampled (`memsentry::budget::Measure::sites`) and checks,
/// at its end:
///
/// - `allocations = N`: at most N allocations;
/// - `allocated_bytes = SIZE`: at most SIZE requested bytes allocated;
/// - `peak = SIZE`: a peak of net live bytes of at most SIZE;
/// - `leaks = N`: at most N blocks allocated in the body still live at its end.
///
/// A SIZE is a number of bytes or a string: `"24 MiB"`, `"24MB"` (10^6), `"512 KiB"`.
/// Put it above `#[tokio::test]`, so that it measures the test's future rather than the
/// runtime tokio builds around it.
#[proc_macro_attribute]
pub fn limit(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: TokenStream2 = item.into();
    match limit::expand(args.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        // The function as written, and the error: no cascade of errors from a missing item.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#item #error).into()
        }
    }
}

/// Counts a function's instances, polls, allocations and frees as a `memsentry` task.
///
/// - `#[tracked]` on an `async fn` wraps its body in `memsentry::task::Tracked`: each
///   call is an instance, started when first polled, finished when it returns, cancelled
///   if dropped before; what it allocates while polled is charged to it.
/// - On a plain `fn`, each call is an instance for the call's duration.
/// - `#[tracked(name = "checkout")]` names the task; the default is the function's path,
///   `module::function`.
///
/// Free functions, inherent and trait-impl methods (any receiver) and generic functions
/// all work.
#[proc_macro_attribute]
pub fn tracked(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The attribute's arguments: nothing, or `name = "literal"`.
struct Args {
    name: Option<LitStr>,
}

/// One `key = value` argument (of `#[tracked]` and `#[limit]`).
struct Arg {
    key: Ident,
    value: Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        Ok(Arg { key, value })
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args { name: None };
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            if arg.key != "name" {
                return Err(syn::Error::new(
                    arg.key.span(),
                    format!(
                        "unknown argument `{}`: #[tracked] takes only `name = \"...\"`",
                        arg.key
                    ),
                ));
            }
            if args.name.is_some() {
                return Err(syn::Error::new(arg.key.span(), "`name` is given twice"));
            }
            match arg.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(name),
                    ..
                }) => {
                    if name.value().is_empty() {
                        return Err(syn::Error::new(name.span(), "the task name is empty"));
                    }
                    args.name = Some(name);
                }
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "the task name must be a string literal, such as `name = \"checkout\"`",
                    ));
                }
            }
        }
        Ok(args)
    }
}

fn expand(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args: Args = syn::parse2(args)?;
    let function = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => function,
        Ok(other) => {
            return Err(syn::Error::new(
                item_span(&other),
                "#[tracked] applies to functions and methods (`fn` or `async fn`)",
            ));
        }
        // A method inside an `impl` or a trait: parse it as a function.
        Err(_) => syn::parse2::<ItemFn>(item).map_err(|error| {
            syn::Error::new(
                error.span(),
                "#[tracked] applies to functions and methods (`fn` or `async fn`)",
            )
        })?,
    };
    if let Some(constness) = &function.sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "#[tracked] cannot count a `const fn`",
        ));
    }
    let ident = &function.sig.ident;
    let name = match &args.name {
        Some(name) => name.to_token_stream(),
        None => {
            let ident = ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident))
        }
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let span = block.span();
    let task = quote_spanned! {span=>
        static __MEMSENTRY_TASK: ::memsentry::task::TaskName =
            ::memsentry::task::TaskName::new(#name);
    };
    let body = if sig.asyncness.is_some() {
        // The body runs in an `async move` block the task wraps: the same statements,
        // the same captures (the arguments, moved in as the original future would).
        let annotated = match &sig.output {
            // `impl Trait` cannot annotate a binding: leave it to inference.
            ReturnType::Type(_, ty) if !mentions_impl(&ty.to_token_stream()) => {
                quote_spanned!(span=> let __memsentry_output: #ty = #block; __memsentry_output)
            }
            ReturnType::Default => {
                quote_spanned!(span=> let __memsentry_output: () = #block; __memsentry_output)
            }
            ReturnType::Type(..) => quote_spanned!(span=> #block),
        };
        quote_spanned! {span=>
            #task
            __MEMSENTRY_TASK.track(async move { #annotated }).await
        }
    } else {
        quote_spanned! {span=>
            #task
            let __memsentry_scope = __MEMSENTRY_TASK.scope();
            #block
        }
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}

/// Whether a type's tokens contain `impl` (an `impl Trait` anywhere in it).
fn mentions_impl(tokens: &TokenStream2) -> bool {
    tokens.clone().into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == "impl",
        proc_macro2::TokenTree::Group(group) => mentions_impl(&group.stream()),
        _ => false,
    })
}

/// Where to point at an item that is not a function: its keyword and name.
fn item_span(item: &Item) -> Span {
    match item {
        Item::Struct(s) => s
            .struct_token
            .span
            .join(s.ident.span())
            .unwrap_or(s.ident.span()),
        Item::Enum(e) => e
            .enum_token
            .span
            .join(e.ident.span())
            .unwrap_or(e.ident.span()),
        Item::Impl(i) => i.impl_token.span,
        Item::Mod(m) => m.mod_token.span,
        Item::Trait(t) => t.trait_token.span,
        other => other.span(),
    }
}
