//! Credential readers: request authenticators that find a credential in the request and hand it
//! to a token or password authenticator.

mod basic;
mod bearer;
mod websocket;

pub use basic::BasicAuth;
pub use bearer::{BearerToken, EXTRA_SPACE_WARNING};
pub use websocket::{WEBSOCKET_BEARER_PROTOCOL_PREFIX, WebSocketProtocol, is_websocket_request};

use http::request::Parts;

use crate::{Audiences, AuthnFuture, AuthnResult, RequestOutcome};

/// Go's `strings.TrimSpace` on bytes: ASCII white space and the Latin-1 spaces U+0085 and
/// U+00A0 at both ends (header values hold no other Unicode white space in practice).
pub(crate) fn trim_space(mut b: &[u8]) -> &[u8] {
    loop {
        match b {
            [c, rest @ ..] if c.is_ascii_whitespace() || *c == 0x0b => b = rest,
            [0xc2, 0x85 | 0xa0, rest @ ..] => b = rest,
            _ => break,
        }
    }
    loop {
        match b {
            [rest @ .., c] if c.is_ascii_whitespace() || *c == 0x0b => b = rest,
            [rest @ .., 0xc2, 0x85 | 0xa0] => b = rest,
            _ => break,
        }
    }
    b
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
