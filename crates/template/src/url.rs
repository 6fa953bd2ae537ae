//! URL mode: every `{{ value }}` is percent-encoded as one URL component, so that a value can
//! never add a path segment, a query, a fragment or another host to a target-relative URL;
//! `| raw` opts out (the result is still checked against its target by the http step).

use minijinja::{Error, Output, State, Value};

use crate::error::refuse;
use crate::json::display;
use crate::marks::Raw;
use crate::placeholder::is_placeholder;

/// Percent-encodes everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// upper-case hex: `/`, `?`, `#`, `%`, `:`, `@`, `&`, `=`, `+` and spaces all become `%XX`.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The formatter of the URL environment.
pub(crate) fn formatter(
    out: &mut Output<'_>,
    _: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    let text = display(value).map_err(refuse)?;
    // Verbatim: an opted-out value, and a dry-run placeholder (`<steps.q.outputs.id>`) so that
    // the plan stays readable.
    if value.downcast_object_ref::<Raw>().is_some() || is_placeholder(value).is_some() {
        return out.write_str(&text).map_err(Error::from);
    }
    out.write_str(&encode_component(&text)).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::encode_component;

    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(encode_component("a-Z_9.~"), "a-Z_9.~");
        assert_eq!(
            encode_component("../../admin?role=root#"),
            "..%2F..%2Fadmin%3Frole%3Droot%23"
        );
        assert_eq!(
            encode_component("http://other:1/x y+%"),
            "http%3A%2F%2Fother%3A1%2Fx%20y%2B%25"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
    }
}
