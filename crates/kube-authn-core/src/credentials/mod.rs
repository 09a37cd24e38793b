//! Credential readers: request authenticators that find a credential in the request and hand it
//! to a token or password authenticator.

mod basic;
mod bearer;
mod websocket;

pub use basic::BasicAuth;
pub use bearer::{BearerToken, EXTRA_SPACE_WARNING};
pub use websocket::{
    WEBSOCKET_BEARER_PROTOCOL_PREFIX, WebSocketProtocol, is_websocket_request,
    remove_websocket_token_entries,
};

use http::request::Parts;

use crate::{Audiences, AuthnFuture, AuthnResult, RequestOutcome};

/// Go's `strings.TrimSpace` on bytes: Unicode white space (Go's `unicode.IsSpace`, the same set
/// as Rust's `char::is_whitespace`: ASCII `\t \n \v \f \r` and space, U+0085, U+00A0,
/// U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) at both ends. Bytes that are
/// not UTF-8 are not white space (Go reads them as U+FFFD).
pub(crate) fn trim_space(mut b: &[u8]) -> &[u8] {
    while let Some(n) = leading_space(b) {
        b = b.get(n..).unwrap_or_default();
    }
    while let Some(n) = trailing_space(b) {
        b = b.get(..b.len() - n).unwrap_or_default();
    }
    b
}

/// The length of the white-space character `b` starts with, if it starts with one.
fn leading_space(b: &[u8]) -> Option<usize> {
    let len = match *b.first()? {
        c @ 0x00..=0x7f => return is_ascii_space(c).then_some(1),
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        // Four-byte characters are never white space; continuation bytes start none.
        _ => return None,
    };
    is_space(b.get(..len)?).then_some(len)
}

/// The length of the white-space character `b` ends with, if it ends with one.
fn trailing_space(b: &[u8]) -> Option<usize> {
    let &end = b.last()?;
    if end < 0x80 {
        return is_ascii_space(end).then_some(1);
    }
    // The last character starts at the last byte that is not a continuation byte (at most
    // three bytes back for the characters that can be white space).
    let start = (b.len().saturating_sub(3)..b.len())
        .rev()
        .find(|&i| b.get(i).is_some_and(|c| (c & 0xc0) != 0x80))?;
    let last = b.get(start..)?;
    is_space(last).then_some(last.len())
}

/// Go's ASCII white space: `\t \n \v \f \r` and space.
fn is_ascii_space(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0x0b
}

/// Whether `b` is exactly one white-space character.
fn is_space(b: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(b) else {
        return false;
    };
    let mut chars = s.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_whitespace())
}

/// The API audiences the layer attached to the request, if any.
pub(crate) fn request_audiences(parts: &Parts) -> Audiences {
    parts
        .extensions
        .get::<Audiences>()
        .cloned()
        .unwrap_or_default()
}

/// Turns a token/password result into a request outcome: `Ok(None)` becomes `on_reject`, and on
/// success `edit` rewrites the head. Stays ready when the inner future is ready.
pub(crate) fn finish<E>(
    mut parts: crate::RequestHead,
    inner: AuthnFuture<AuthnResult>,
    on_reject: fn() -> crate::AuthnError,
    edit: E,
) -> AuthnFuture<RequestOutcome>
where
    E: FnOnce(&mut Parts) + Send + 'static,
{
    let apply = move |parts: &mut Parts, result: AuthnResult| -> AuthnResult {
        match result {
            Ok(Some(auth)) => {
                edit(parts);
                Ok(Some(auth))
            }
            Ok(None) => Err(on_reject()),
            Err(e) => Err(e),
        }
    };
    match inner.into_ready() {
        Ok(result) => {
            let result = apply(&mut parts, result);
            AuthnFuture::ready(RequestOutcome::new(parts, result))
        }
        Err(pending) => AuthnFuture::boxed(async move {
            let result = pending.await;
            let result = apply(&mut parts, result);
            RequestOutcome::new(parts, result)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::trim_space;

    #[test]
    fn trim_space_trims_what_go_strings_trim_space_trims() {
        // Every white-space character of Go's unicode.IsSpace, at both ends.
        let spaces = "\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}\u{2001}\u{2002}\u{2003}\u{2004}\u{2005}\u{2006}\u{2007}\u{2008}\u{2009}\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}";
        for c in spaces.chars() {
            let padded = format!("{c}{c}Bearer token{c}");
            assert_eq!(
                trim_space(padded.as_bytes()),
                b"Bearer token",
                "U+{:04X}",
                c as u32
            );
        }
        let all = format!("{spaces}x y{spaces}");
        assert_eq!(trim_space(all.as_bytes()), b"x y");
        assert_eq!(trim_space(spaces.as_bytes()), b"");
        assert_eq!(trim_space(b""), b"");
    }

    proptest::proptest! {
        /// On UTF-8, Go's TrimSpace and Rust's `str::trim` trim the same set (White_Space).
        #[test]
        fn trim_space_agrees_with_str_trim(s in "[ \\t\\n\\u{b}\\u{85}\\u{a0}\\u{2000}-\\u{200b}\\u{3000}a-zé€😀]{0,12}") {
            proptest::prop_assert_eq!(trim_space(s.as_bytes()), s.trim().as_bytes());
        }

        /// On any bytes: never panics, and the result is a slice of the input.
        #[test]
        fn trim_space_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..24)) {
            let out = trim_space(&bytes);
            let found = (0..=bytes.len() - out.len()).any(|i| &bytes[i..i + out.len()] == out);
            proptest::prop_assert!(found);
            // What was trimmed is white space only: trimming again changes nothing.
            proptest::prop_assert_eq!(trim_space(out), out);
        }
    }

    #[test]
    fn trim_space_keeps_what_is_not_white_space() {
        // Not white space in Go: U+001C-U+001F, U+200B (zero width), U+FEFF (BOM), U+180E, and
        // bytes that are not UTF-8 (Go reads them as U+FFFD).
        for c in [
            '\u{1c}', '\u{1f}', '\u{200b}', '\u{feff}', '\u{180e}', 'é', '€', '😀',
        ] {
            let s = format!("{c}a{c}");
            assert_eq!(trim_space(s.as_bytes()), s.as_bytes(), "U+{:04X}", c as u32);
        }
        for raw in [
            &b"\xa0a\xa0"[..],
            b"\x85a\x85",
            b"\xe3\x80a\xe3\x80",
            b"\xc2a\xc2",
            b"\xff",
        ] {
            assert_eq!(trim_space(raw), raw);
        }
    }
}
