//! Bearer tokens in `Sec-WebSocket-Protocol` (Kubernetes `request/websocket`).
//!
//! Browsers cannot set `Authorization` on a websocket, so they send the token as a subprotocol:
//! `new WebSocket(url, ["base64url.bearer.authorization.k8s.io.<base64url token>", "base64.binary.k8s.io"])`.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::{CONNECTION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use zeroize::Zeroizing;

use super::{finish, request_audiences};
use crate::{AuthenticateRequest, AuthenticateToken, AuthnError, AuthnFuture, RequestOutcome};

/// Go's `base64.RawURLEncoding`: URL alphabet, no padding (a `=` is an error), lenient about
/// the unused bits of the last character.
const RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// The subprotocol prefix that carries a base64url (unpadded) bearer token.
pub const WEBSOCKET_BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// Whether the request asks for a websocket upgrade, as Kubernetes decides it: the first
/// `Upgrade` header is `websocket` (any case) and some `Connection` header contains `upgrade`.
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let upgrade = headers.get(UPGRADE).is_some_and(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"websocket") || (!v.is_ascii() && equal_fold_websocket(v))
    });
    upgrade
        && headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"upgrade"))
        })
}

/// Removes every bearer-token entry ([`WEBSOCKET_BEARER_PROTOCOL_PREFIX`]…) from the
/// `Sec-WebSocket-Protocol` headers, whatever the request, reading the entries as
/// [`WebSocketProtocol`] reads them (split on `,`, trimmed of white space as Go's
/// `strings.TrimSpace` trims it). The other entries are kept, joined by `,`; the header goes
/// when none remain. Returns whether an entry was removed (the headers are untouched when
/// none was).
///
/// For a proxy passing requests on: a token entry is a credential for the proxy, and
/// [`WebSocketProtocol`] removes it only when it is the strategy that authenticated the
/// request (as Kubernetes does).
pub fn remove_websocket_token_entries(headers: &mut HeaderMap) -> bool {
    let prefix = WEBSOCKET_BEARER_PROTOCOL_PREFIX.as_bytes();
    let entries = |headers: &HeaderMap| -> Vec<Vec<u8>> {
        headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|line| line.as_bytes().split(|b| *b == b','))
            .map(|e| super::trim_space(e).to_vec())
            .collect()
    };
    let all = entries(headers);
    if !all.iter().any(|e| e.starts_with(prefix)) {
        return false;
    }
    let kept: Vec<&[u8]> = all
        .iter()
        .map(Vec::as_slice)
        .filter(|e| !e.is_empty() && !e.starts_with(prefix))
        .collect();
    headers.remove(SEC_WEBSOCKET_PROTOCOL);
    // The kept entries came from header values, so they are valid header text.
    if let Ok(value) = HeaderValue::from_bytes(&kept.join(&b","[..]))
        && !value.is_empty()
    {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    true
}

/// Go's `strings.EqualFold(value, "websocket")` for a value that is not ASCII: Unicode simple
/// case folding also makes `ſ` (U+017F) an `s` and the Kelvin sign (U+212A) a `k`.
fn equal_fold_websocket(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut chars = value.chars();
    let matches = "websocket".chars().all(|want| {
        chars.next().is_some_and(|c| {
            c.eq_ignore_ascii_case(&want)
                || (c == '\u{17f}' && want == 's')
                || (c == '\u{212a}' && want == 'k')
        })
    });
    matches && chars.next().is_none()
}

/// Reads a bearer token from the `Sec-WebSocket-Protocol` header of websocket upgrade requests.
///
/// Rules (Kubernetes): every header line is split on `,` and trimmed; at most one entry may carry
/// the prefix ([`WEBSOCKET_BEARER_PROTOCOL_PREFIX`]) followed by unpadded base64url of a UTF-8
/// token; a token needs at least one other subprotocol. On success the header is rewritten to
/// the remaining protocols joined by `,`, so neither the inner service nor the websocket
/// handshake ever echoes the token. Requests that are not websocket upgrades are ignored.
#[derive(Clone, Debug)]
pub struct WebSocketProtocol<T> {
    tokens: T,
}

impl<T> WebSocketProtocol<T> {
    /// Reads websocket protocol tokens for `tokens`.
    pub fn new(tokens: T) -> Self {
        Self { tokens }
    }
}

/// A token found in the protocol header.
pub(crate) struct ProtocolToken {
    /// The decoded token, wiped when dropped.
    pub(crate) token: Zeroizing<String>,
    /// The other entries joined by `,`.
    pub(crate) remaining: Vec<u8>,
}

/// What the protocol header says: `Ok(None)` no token, else the token and the other entries.
/// Read on the header's bytes, as Go does.
pub(crate) fn protocol_token(headers: &HeaderMap) -> Result<Option<ProtocolToken>, AuthnError> {
    // The decoded token is wiped when dropped, also when a later entry makes the header bad.
    let mut token: Option<Zeroizing<String>> = None;
    let mut filtered: Vec<&[u8]> = Vec::new();
    for line in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        for item in line.as_bytes().split(|b| *b == b',') {
            let item = super::trim_space(item);
            let Some(encoded) = item.strip_prefix(WEBSOCKET_BEARER_PROTOCOL_PREFIX.as_bytes())
            else {
                filtered.push(item);
                continue;
            };
            if token.is_some() {
                return Err(AuthnError::MultipleWebSocketTokens);
            }
            let decoded = RAW_URL
                .decode(encoded)
                .map_err(|_| AuthnError::InvalidWebSocketTokenEncoding)?;
            match String::from_utf8(decoded) {
                Ok(decoded) => token = Some(Zeroizing::new(decoded)),
                Err(e) => {
                    drop(Zeroizing::new(e.into_bytes()));
                    return Err(AuthnError::InvalidWebSocketToken);
                }
            }
        }
    }
    match token {
        Some(t) if !t.is_empty() => {
            if filtered.is_empty() {
                return Err(AuthnError::MissingAdditionalSubprotocol);
            }
            Ok(Some(ProtocolToken {
                token: t,
                remaining: filtered.join(&b","[..]),
            }))
        }
        _ => Ok(None),
    }
}

impl<T: AuthenticateToken> AuthenticateRequest for WebSocketProtocol<T> {
    fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        if !is_websocket_request(&parts.headers)
            || !parts.headers.contains_key(SEC_WEBSOCKET_PROTOCOL)
        {
            return AuthnFuture::ready(RequestOutcome::no_opinion(parts));
        }
        let ProtocolToken { token, remaining } = match protocol_token(&parts.headers) {
            Ok(Some(found)) => found,
            Ok(None) => return AuthnFuture::ready(RequestOutcome::no_opinion(parts)),
            Err(e) => return AuthnFuture::ready(RequestOutcome::new(parts, Err(e))),
        };
        let audiences = request_audiences(&parts);
        let inner = self.tokens.authenticate_token(&token, &audiences);
        finish(
            parts,
            inner,
            || AuthnError::InvalidBearerToken,
            move |parts: &mut Parts| {
                // The remaining entries came from header values, so they are valid header text.
                match HeaderValue::from_bytes(&remaining) {
                    Ok(v) => {
                        parts.headers.insert(SEC_WEBSOCKET_PROTOCOL, v);
                    }
                    Err(_) => {
                        parts.headers.remove(SEC_WEBSOCKET_PROTOCOL);
                    }
                }
            },
        )
    }

    fn name(&self) -> &'static str {
        "websocket-bearer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Outcome, TokenFn};

    fn request(connection: &[&str], protocols: &[&str]) -> crate::RequestHead {
        let mut b = http::Request::get("/");
        if !connection.is_empty() {
            b = b.header(UPGRADE, "websocket");
        }
        for c in connection {
            b = b.header(CONNECTION, *c);
        }
        for p in protocols {
            b = b.header(SEC_WEBSOCKET_PROTOCOL, *p);
        }
        b.body(()).unwrap().into_parts().0.into()
    }

    fn protocols(parts: &Parts) -> Vec<String> {
        parts
            .headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    const UP: &[&str] = &["upgrade"];
    const TOKEN_DUMMY: &str = "base64url.bearer.authorization.k8s.io.dG9rZW4,dummy";

    // Kubernetes protocol_test.go, case names kept.
    #[tokio::test]
    async fn websocket_protocol_table() {
        use Outcome::*;
        struct Case {
            name: &'static str,
            connection: &'static [&'static str],
            protocols: &'static [&'static str],
            outcome: Outcome,
            ok: bool,
            err: Option<&'static str>,
            /// The protocol header the request goes on with (unchanged unless authenticated).
            after: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "TestAuthenticateRequest",
                connection: UP,
                protocols: &[TOKEN_DUMMY],
                outcome: User("user"),
                ok: true,
                err: None,
                after: &["dummy"],
            },
            Case {
                name: "TestAuthenticateRequestMultipleConnectionHeaders",
                connection: &["not", "upgrade"],
                protocols: &[TOKEN_DUMMY],
                outcome: User("user"),
                ok: true,
                err: None,
                after: &["dummy"],
            },
            Case {
                name: "TestAuthenticateRequestTokenInvalid",
                connection: UP,
                protocols: &[TOKEN_DUMMY],
                outcome: NoOpinion,
                ok: false,
                err: Some("invalid bearer token"),
                after: &[TOKEN_DUMMY],
            },
            Case {
                name: "TestAuthenticateRequestTokenInvalidCustomError",
                connection: UP,
                protocols: &[TOKEN_DUMMY],
                outcome: Error("custom"),
                ok: false,
                err: Some("custom"),
                after: &[TOKEN_DUMMY],
            },
            Case {
                name: "TestAuthenticateRequestTokenError",
                connection: UP,
                protocols: &[TOKEN_DUMMY],
                outcome: Error("error"),
                ok: false,
                err: Some("error"),
                after: &[TOKEN_DUMMY],
            },
            Case {
                name: "TestAuthenticateRequestBadValue/no headers",
                connection: &[],
                protocols: &[],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &[],
            },
            Case {
                name: "TestAuthenticateRequestBadValue/other-protocol",
                connection: UP,
                protocols: &["other-protocol"],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &["other-protocol"],
            },
            Case {
                name: "TestAuthenticateRequestBadValue/empty token",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io."],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &["base64url.bearer.authorization.k8s.io."],
            },
            Case {
                name: "TestBearerToken/no header",
                connection: UP,
                protocols: &[],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &[],
            },
            Case {
                name: "TestBearerToken/empty header",
                connection: UP,
                protocols: &[""],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &[""],
            },
            Case {
                name: "TestBearerToken/non-bearer header",
                connection: UP,
                protocols: &["undefined"],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &["undefined"],
            },
            Case {
                name: "TestBearerToken/empty bearer token",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io."],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &["base64url.bearer.authorization.k8s.io."],
            },
            Case {
                name: "TestBearerToken/valid bearer token removing header",
                connection: UP,
                protocols: &[
                    "base64url.bearer.authorization.k8s.io.dG9rZW4",
                    "dummy, dummy2",
                ],
                outcome: User("myuser"),
                ok: true,
                err: None,
                after: &["dummy,dummy2"],
            },
            Case {
                name: "TestBearerToken/invalid bearer token",
                connection: UP,
                protocols: &[TOKEN_DUMMY],
                outcome: NoOpinion,
                ok: false,
                err: Some("invalid bearer token"),
                after: &[TOKEN_DUMMY],
            },
            Case {
                name: "TestBearerToken/error bearer token",
                connection: UP,
                protocols: &[TOKEN_DUMMY],
                outcome: Error("error"),
                ok: false,
                err: Some("error"),
                after: &[TOKEN_DUMMY],
            },
            // derived edge cases (from the upstream code)
            Case {
                name: "token alone",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io.dG9rZW4"],
                outcome: MustNotBeCalled,
                ok: false,
                err: Some("missing additional subprotocol"),
                after: &["base64url.bearer.authorization.k8s.io.dG9rZW4"],
            },
            Case {
                name: "two tokens on one line",
                connection: UP,
                protocols: &[
                    "base64url.bearer.authorization.k8s.io.dG9rZW4, base64url.bearer.authorization.k8s.io.dG9rZW4, x",
                ],
                outcome: MustNotBeCalled,
                ok: false,
                err: Some("multiple base64.bearer.authorization tokens specified"),
                after: &[
                    "base64url.bearer.authorization.k8s.io.dG9rZW4, base64url.bearer.authorization.k8s.io.dG9rZW4, x",
                ],
            },
            Case {
                name: "two tokens across lines",
                connection: UP,
                protocols: &[
                    "base64url.bearer.authorization.k8s.io.dG9rZW4, x",
                    "base64url.bearer.authorization.k8s.io.dG9rZW4",
                ],
                outcome: MustNotBeCalled,
                ok: false,
                err: Some("multiple base64.bearer.authorization tokens specified"),
                after: &[
                    "base64url.bearer.authorization.k8s.io.dG9rZW4, x",
                    "base64url.bearer.authorization.k8s.io.dG9rZW4",
                ],
            },
            Case {
                name: "padded base64",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io.dG9rZW4=, x"],
                outcome: MustNotBeCalled,
                ok: false,
                err: Some("invalid base64.bearer.authorization token encoding"),
                after: &["base64url.bearer.authorization.k8s.io.dG9rZW4=, x"],
            },
            Case {
                name: "standard alphabet",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io.+/+/, x"],
                outcome: MustNotBeCalled,
                ok: false,
                err: Some("invalid base64.bearer.authorization token encoding"),
                after: &["base64url.bearer.authorization.k8s.io.+/+/, x"],
            },
            Case {
                name: "not utf-8",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io._w, x"],
                outcome: MustNotBeCalled,
                ok: false,
                err: Some("invalid base64.bearer.authorization token"),
                after: &["base64url.bearer.authorization.k8s.io._w, x"],
            },
            Case {
                name: "browser comma and space",
                connection: &["Upgrade"],
                protocols: &["base64url.bearer.authorization.k8s.io.dG9rZW4, base64.binary.k8s.io"],
                outcome: User("user"),
                ok: true,
                err: None,
                after: &["base64.binary.k8s.io"],
            },
            Case {
                name: "empty other entry counts",
                connection: UP,
                protocols: &["base64url.bearer.authorization.k8s.io.dG9rZW4, "],
                outcome: User("user"),
                ok: true,
                err: None,
                after: &[""],
            },
            Case {
                name: "keep-alive, Upgrade",
                connection: &["keep-alive, Upgrade"],
                protocols: &[TOKEN_DUMMY],
                outcome: User("user"),
                ok: true,
                err: None,
                after: &["dummy"],
            },
            Case {
                name: "not an upgrade",
                connection: &["keep-alive"],
                protocols: &[TOKEN_DUMMY],
                outcome: MustNotBeCalled,
                ok: false,
                err: None,
                after: &[TOKEN_DUMMY],
            },
        ];
        for c in cases {
            let a = WebSocketProtocol::new(TokenFn::expecting("token", c.outcome));
            let out = a
                .authenticate_request(request(c.connection, c.protocols))
                .await;
            assert_eq!(
                matches!(out.result, Ok(Some(_))),
                c.ok,
                "{}: {:?}",
                c.name,
                out.result
            );
            match (c.err, &out.result) {
                (Some(msg), Err(e)) => assert_eq!(e.to_string(), msg, "{}", c.name),
                (None, Err(e)) => panic!("{}: unexpected error {e}", c.name),
                (Some(msg), Ok(_)) => panic!("{}: expected error {msg}", c.name),
                (None, Ok(_)) => {}
            }
            if let (Outcome::User(name), Ok(Some(auth))) = (c.outcome, &out.result) {
                assert_eq!(auth.user.username, name, "{}", c.name);
            }
            assert_eq!(protocols(&out.parts), c.after, "{}", c.name);
        }
    }

    #[tokio::test]
    async fn non_utf8_lines_keep_their_other_entries() {
        let mut parts = request(UP, &[]);
        parts.headers.append(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_bytes(b"base64url.bearer.authorization.k8s.io.dG9rZW4, x\xff")
                .unwrap(),
        );
        let a = WebSocketProtocol::new(TokenFn::expecting("token", Outcome::User("u")));
        let out = a.authenticate_request(parts).await;
        assert!(matches!(out.result, Ok(Some(_))));
        assert_eq!(
            out.parts
                .headers
                .get(SEC_WEBSOCKET_PROTOCOL)
                .unwrap()
                .as_bytes(),
            b"x\xff"
        );

        let mut parts = request(UP, &["base64url.bearer.authorization.k8s.io.dG9rZW4, x"]);
        parts.headers.append(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_bytes(b"\xff, base64url.bearer.authorization.k8s.io.dG9rZW4")
                .unwrap(),
        );
        let out = a.authenticate_request(parts).await;
        assert_eq!(
            out.result.unwrap_err().to_string(),
            "multiple base64.bearer.authorization tokens specified"
        );
    }

    #[test]
    fn token_entries_are_removed_whatever_their_white_space() {
        let mut headers = HeaderMap::new();
        for line in [
            &b"\xc2\xa0base64url.bearer.authorization.k8s.io.dG9rZW4x, base64.binary.k8s.io"[..],
            b"\xe3\x80\x80base64url.bearer.authorization.k8s.io.dG9rZW4y\t,  ,v4.channel.k8s.io",
        ] {
            headers.append(
                SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_bytes(line).unwrap(),
            );
        }
        assert!(remove_websocket_token_entries(&mut headers));
        let left: Vec<_> = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter().collect();
        assert_eq!(left, ["base64.binary.k8s.io,v4.channel.k8s.io"]);
        // Nothing to remove: untouched (the spaces stay).
        assert!(!remove_websocket_token_entries(&mut headers));
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("a, b"));
        assert!(!remove_websocket_token_entries(&mut headers));
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "a, b");
        // Only a token: the header goes.
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64url.bearer.authorization.k8s.io.dG9rZW4"),
        );
        assert!(remove_websocket_token_entries(&mut headers));
        assert!(!headers.contains_key(SEC_WEBSOCKET_PROTOCOL));
    }

    #[tokio::test]
    async fn entries_are_trimmed_of_unicode_white_space_as_go_trims_them() {
        let parts = request(
            UP,
            &["\u{3000}base64url.bearer.authorization.k8s.io.dG9rZW4,\u{2003}dummy\u{a0}"],
        );
        let a = WebSocketProtocol::new(TokenFn::expecting("token", Outcome::User("u")));
        let out = a.authenticate_request(parts).await;
        assert!(matches!(out.result, Ok(Some(_))));
        assert_eq!(protocols(&out.parts), ["dummy"]);
    }

    #[test]
    fn upgrade_detection() {
        let h = |up: &str, conn: &[&str]| {
            let mut b = http::Request::get("/").header(UPGRADE, up);
            for c in conn {
                b = b.header(CONNECTION, *c);
            }
            is_websocket_request(b.body(()).unwrap().headers())
        };
        assert!(h("websocket", &["Upgrade"]));
        // Go's EqualFold folds these two to ASCII letters.
        assert!(h("web\u{17f}oc\u{212a}et", &["Upgrade"]));
        assert!(!h("web\u{17f}ocke", &["Upgrade"]));
        assert!(!h("websockets", &["Upgrade"]));
        assert!(h("WebSocket", &["keep-alive, upgrade"]));
        assert!(h("websocket", &["not", "upgrade"]));
        assert!(!h("h2c", &["upgrade"]));
        assert!(!h("websocket", &["keep-alive"]));
        assert!(!h("websocket", &[]));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_protocol_header(lines in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..48), 0..4)) {
            let mut parts = request(UP, &[]);
            for l in &lines {
                if let Ok(v) = HeaderValue::from_bytes(l) {
                    parts.headers.append(SEC_WEBSOCKET_PROTOCOL, v);
                }
            }
            let a = WebSocketProtocol::new(TokenFn::any(Outcome::UserAny("u")));
            let _ = a.authenticate_request(parts).into_ready();
        }

        #[test]
        fn round_trips_any_token(token in "[ -~]{1,40}", other in "[a-z.0-9]{1,20}") {
            let entry = format!("{WEBSOCKET_BEARER_PROTOCOL_PREFIX}{}", RAW_URL.encode(&token));
            let parts = request(UP, &[&format!("{entry}, {other}")]);
            let got = protocol_token(&parts.headers).unwrap().unwrap();
            proptest::prop_assert_eq!(got.token.as_str(), token.as_str());
            proptest::prop_assert_eq!(got.remaining, other.into_bytes());
        }
    }
}
