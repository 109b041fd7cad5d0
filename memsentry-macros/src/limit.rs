//! `#[limit(..)]`: a memory budget on a test function (see `memsentry::budget`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};

use crate::Arg;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, ItemFn, Lit, Token};

/// The keys `#[limit]` takes, as listed in its error messages.
const KEYS: &str = "`allocations`, `allocated_bytes`, `peak`, `leaks`";

/// The parsed limits, each a number of allocations, bytes or blocks.
#[derive(Default)]
struct Limits {
    allocations: Option<(u64, Span)>,
    allocated_bytes: Option<(u64, Span)>,
    peak: Option<(u64, Span)>,
    leaks: Option<(u64, Span)>,
}

/// Sets `slot` once; a second time is an error on the key.
fn set_once(slot: &mut Option<(u64, Span)>, value: u64, key: &Ident) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key}` is given twice"),
        ));
    }
    *slot = Some((value, key.span()));
    Ok(())
}

/// A whole number: an integer literal.
fn count(value: &Expr, key: &Ident) -> syn::Result<u64> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse(),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{key}` takes a whole number, such as `{key} = 40`"),
        )),
    }
}

/// A size: an integer literal (bytes) or a string such as `"24 MiB"` or `"24MB"`.
fn size(value: &Expr, key: &Ident) -> syn::Result<u64> {
    let expected = || {
        format!(
            "`{key}` takes a size: bytes, or a string such as \"24 MiB\", \"24MB\" or \
             \"512 KiB\" (units B, KB, MB, GB, KiB, MiB, GiB)"
        )
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse(),
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => parse_size(&text.value()).ok_or_else(|| syn::Error::new(text.span(), expected())),
        other => Err(syn::Error::new(other.span(), expected())),
    }
}

/// `"24 MiB"`, `"24MiB"`, `"24MB"` (decimal: 10^6), `"100 B"`, `"100"`.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let multiple: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiple)
}

impl Parse for Limits {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut limits = Limits::default();
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            let key = &arg.key;
            match key.to_string().as_str() {
                "allocations" => {
                    set_once(&mut limits.allocations, count(&arg.value, key)?, key)?;
                }
                "leaks" => set_once(&mut limits.leaks, count(&arg.value, key)?, key)?,
                "allocated_bytes" => {
                    set_once(&mut limits.allocated_bytes, size(&arg.value, key)?, key)?;
                }
                "peak" => set_once(&mut limits.peak, size(&arg.value, key)?, key)?,
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown limit `{key}`: #[limit] takes {KEYS}"),
                    ));
                }
            }
        }
        Ok(limits)
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let limits: Limits = syn::parse2(args)?;
    if [
        &limits.allocations,
        &limits.allocated_bytes,
        &limits.peak,
        &limits.leaks,
    ]
    .iter()
    .all(|limit| limit.is_none())
    {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("#[limit] needs at least one limit: {KEYS}"),
        ));
    }
    let function: ItemFn = syn::parse2(item).map_err(|error| {
        syn::Error::new(
            error.span(),
            "#[limit] applies to functions (`fn` or `async fn`)",
        )
    })?;
    if let Some(constness) = &function.sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "#[limit] cannot measure a `const fn`",
        ));
    }
    let setter = |limit: &Option<(u64, Span)>, method: &str| {
        limit.map(|(value, span)| {
            let method = Ident::new(method, span);
            quote_spanned!(span=> .#method(#value))
        })
    };
    let setters = [
        setter(&limits.allocations, "allocations"),
        setter(&limits.allocated_bytes, "allocated_bytes"),
        setter(&limits.peak, "peak_bytes"),
        setter(&limits.leaks, "leaks"),
    ];
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let measure = quote!(::memsentry::budget::Measure::new().sites(true));
    let measured = if sig.asyncness.is_some() {
        quote!(#measure.run_future(async move #block).await)
    } else {
        quote!(#measure.run(move || #block))
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __memsentry_limits = ::memsentry::budget::Limits::new() #(#setters)*;
            let (__memsentry_output, __memsentry_usage) = #measured;
            __memsentry_usage.enforce(&__memsentry_limits);
            __memsentry_output
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("24 MiB"), Some(24 << 20));
        assert_eq!(parse_size("24MiB"), Some(24 << 20));
        assert_eq!(parse_size("24MB"), Some(24_000_000));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("100 B"), Some(100));
        for bad in [
            "",
            "MiB",
            "24 mib",
            "24 MiBs",
            "1.5 MiB",
            "-1",
            "99999999999 GiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
