//! `Authorization: Basic base64(user:password)` (Kubernetes' former `request/basicauth`).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::finish;
use crate::{AuthenticatePassword, AuthenticateRequest, AuthnError, AuthnFuture, RequestOutcome};

/// Go's `base64.StdEncoding`: standard alphabet, padding required, lenient about the unused bits.
const STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Reads HTTP basic credentials and authenticates them with a password authenticator.
///
/// Rules (Go `Request.BasicAuth` as Kubernetes used it): the first `Authorization` header, the
/// `Basic ` prefix in any case, padded standard base64, split at the first `:` (the password may
/// contain colons). A header that does not parse is no credential; credentials the password
/// authenticator does not accept are the error `invalid username/password combination`. The
/// `Authorization` header is removed on success.
#[derive(Clone, Debug)]
pub struct BasicAuth<P> {
    passwords: P,
}

impl<P> BasicAuth<P> {
    /// Reads basic credentials for `passwords`.
    pub fn new(passwords: P) -> Self {
        Self { passwords }
    }
}

/// Credentials up to this many bytes are decoded on the stack (no allocation per request);
/// longer ones on the heap.
const INLINE: usize = 192;

/// Where a `user:password` pair is decoded. The caller owns it and never moves it once it
/// holds a secret; dropping it wipes every byte a decoding may have written (also when the
/// decoding failed half way: base64 writes whole blocks before it sees a bad one).
pub(crate) struct CredentialBuffer {
    inline: [u8; INLINE],
    /// How many bytes of `inline` may hold secret data.
    dirty: usize,
    heap: zeroize::Zeroizing<Vec<u8>>,
}

impl CredentialBuffer {
    pub(crate) fn new() -> Self {
        Self {
            inline: [0; INLINE],
            dirty: 0,
            heap: zeroize::Zeroizing::new(Vec::new()),
        }
    }

    /// The decoded `user:password` pair, if the header is a well-formed basic credential.
    pub(crate) fn decode(&mut self, value: &[u8]) -> Option<&[u8]> {
        const PREFIX: &[u8] = b"Basic ";
        if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
            return None;
        }
        let encoded = &value[PREFIX.len()..];
        let estimate = base64::decoded_len_estimate(encoded.len());
        let decoded = if estimate <= INLINE {
            self.dirty = estimate;
            let len = STD.decode_slice(encoded, &mut self.inline).ok()?;
            self.inline.get(..len)?
        } else {
            // Sized up front, so the vector is never reallocated (leaving a copy behind).
            self.heap.resize(estimate, 0);
            let len = STD.decode_slice(encoded, &mut self.heap[..]).ok()?;
            self.heap.get(..len)?
        };
        decoded.contains(&b':').then_some(decoded)
    }
}

impl CredentialBuffer {
    /// Wipes what a decoding may have written (the heap copy wipes itself when dropped).
    fn wipe(&mut self) {
        use zeroize::Zeroize;
        self.inline
            .get_mut(..self.dirty)
            .unwrap_or_default()
            .zeroize();
    }
}

impl Drop for CredentialBuffer {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl<P: AuthenticatePassword> AuthenticateRequest for BasicAuth<P> {
    fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return AuthnFuture::ready(RequestOutcome::no_opinion(parts));
        };
        let mut buffer = CredentialBuffer::new();
        let Some(decoded) = buffer.decode(value.as_bytes()) else {
            return AuthnFuture::ready(RequestOutcome::no_opinion(parts));
        };
        // Bytes that are not UTF-8 can match no stored (UTF-8) credential.
        let Ok(text) = std::str::from_utf8(decoded) else {
            return AuthnFuture::ready(RequestOutcome::new(
                parts,
                Err(AuthnError::InvalidUsernamePassword),
            ));
        };
        let Some((user, password)) = text.split_once(':') else {
            return AuthnFuture::ready(RequestOutcome::no_opinion(parts));
        };
        let inner = self.passwords.authenticate_password(user, password);
        finish(
            parts,
            inner,
            || AuthnError::InvalidUsernamePassword,
            |parts: &mut Parts| {
                parts.headers.remove(AUTHORIZATION);
            },
        )
    }

    fn name(&self) -> &'static str {
        "basic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::parts_with;
    use crate::{Authenticated, AuthnResult, UserInfo};
    use std::sync::Mutex;

    /// Records the pair it was called with and answers a fixed result.
    struct Recorder {
        seen: Mutex<Option<(String, String)>>,
        answer: fn() -> AuthnResult,
    }

    impl AuthenticatePassword for Recorder {
        fn authenticate_password(&self, u: &str, p: &str) -> AuthnFuture<AuthnResult> {
            *self.seen.lock().unwrap() = Some((u.to_owned(), p.to_owned()));
            AuthnFuture::ready((self.answer)())
        }
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    // Kubernetes basicauth_test.go (removed in 1.19), case names kept.
    #[allow(clippy::type_complexity)] // a test table
    #[tokio::test]
    async fn basic_auth_table() {
        let no = || Ok(None);
        let user = || Ok(Some(Authenticated::new(UserInfo::new("returneduser"))));
        let err = || Err(AuthnError::invalid("auth error"));
        let cases: &[(
            &str,
            Option<&str>,
            fn() -> AuthnResult,
            Option<(&str, &str)>,
            Result<Option<&str>, &str>,
        )] = &[
            ("no auth", None, no, None, Ok(None)),
            (
                "empty password",
                Some("user_with_empty_password:"),
                no,
                Some(("user_with_empty_password", "")),
                Err("invalid username/password combination"),
            ),
            (
                "colon in password",
                Some("myuser:mypassword:withcolon"),
                no,
                Some(("myuser", "mypassword:withcolon")),
                Err("invalid username/password combination"),
            ),
            (
                "returned user",
                Some("myuser:mypw"),
                user,
                Some(("myuser", "mypw")),
                Ok(Some("returneduser")),
            ),
            (
                "returned error",
                Some("myuser:mypw"),
                err,
                Some(("myuser", "mypw")),
                Err("auth error"),
            ),
        ];
        for (case, header, answer, called, want) in cases {
            let rec = std::sync::Arc::new(Recorder {
                seen: Mutex::new(None),
                answer: *answer,
            });
            let h: Vec<String> = header.iter().map(|h| basic(h)).collect();
            let h: Vec<&str> = h.iter().map(String::as_str).collect();
            let out = BasicAuth::new(rec.clone())
                .authenticate_request(parts_with(AUTHORIZATION, &h))
                .await;
            let seen = rec.seen.lock().unwrap().clone();
            assert_eq!(
                seen.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                *called,
                "{case}"
            );
            match (want, &out.result) {
                (Ok(w), Ok(got)) => {
                    assert_eq!(got.as_ref().map(|a| a.user.username.as_str()), *w, "{case}")
                }
                (Err(msg), Err(e)) => assert_eq!(e.to_string(), *msg, "{case}"),
                _ => panic!("{case}: {:?}", out.result),
            }
            if matches!(out.result, Ok(Some(_))) {
                assert!(
                    out.parts.headers.get(AUTHORIZATION).is_none(),
                    "{case}: header removed on success"
                );
            }
        }
    }

    #[test]
    fn short_and_long_credentials_decode_alike() {
        use base64::Engine;
        for len in [0, 1, 100, 180, 189, 190, 191, 192, 193, 300, 4000] {
            let pair = format!("user:{}", "p".repeat(len));
            let header = format!("Basic {}", STD.encode(&pair));
            let mut buffer = CredentialBuffer::new();
            let decoded = buffer.decode(header.as_bytes()).unwrap().to_vec();
            assert_eq!(decoded, pair.as_bytes(), "{len}");
            let inline = base64::decoded_len_estimate(header.len() - 6) <= INLINE;
            assert_eq!(buffer.heap.is_empty(), inline, "{len}");
            assert_eq!(buffer.dirty > 0, inline, "{len}");
        }
    }

    #[test]
    fn a_half_decoded_credential_is_wiped_too() {
        use base64::Engine;
        // Whole blocks of the secret come before a bad last block: base64 has written them.
        let header = format!("Basic {}!!!!", STD.encode("user:hunter2-secret"));
        let mut buffer = CredentialBuffer::new();
        assert!(buffer.decode(header.as_bytes()).is_none());
        assert!(
            buffer.inline.windows(6).any(|w| w == b"hunter"),
            "the test needs a partial decoding to wipe"
        );
        // `Drop` runs `wipe` (memory after a drop cannot be read without `unsafe`, which this
        // crate forbids): what this shows is that `wipe` covers a half-decoded credential,
        // i.e. that `dirty` was set before the decoding could fail.
        buffer.wipe();
        assert!(buffer.inline.iter().all(|&b| b == 0));
    }

    #[test]
    fn malformed_headers_are_no_credential() {
        for h in [
            "",
            "Basic",
            "Basic ",
            "Basic !!!!",
            "Basic dXNlcg==",
            "Basic dXNlcjpwdw",
            "Basic  dXNlcjpwdw==",
            "Bearer dXNlcjpwdw==",
        ] {
            assert!(
                CredentialBuffer::new().decode(h.as_bytes()).is_none(),
                "{h:?}"
            );
        }
        assert_eq!(
            CredentialBuffer::new().decode(b"bAsIc dXNlcjpwdw=="),
            Some(&b"user:pw"[..])
        );
    }

    struct AcceptAll;
    impl AuthenticatePassword for AcceptAll {
        fn authenticate_password(&self, u: &str, _: &str) -> AuthnFuture<AuthnResult> {
            AuthnFuture::ready(Ok(Some(Authenticated::new(UserInfo::new(u)))))
        }
    }

    proptest::proptest! {
        #[test]
        fn the_whole_reader_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64), prefix in proptest::bool::ANY) {
            let mut value = if prefix { b"Basic ".to_vec() } else { Vec::new() };
            value.extend_from_slice(&bytes);
            if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                let mut parts = parts_with(AUTHORIZATION, &[]);
                parts.headers.insert(AUTHORIZATION, v);
                let _ = BasicAuth::new(AcceptAll).authenticate_request(parts).into_ready();
            }
        }

        #[test]
        fn the_whole_reader_never_panics_on_any_base64_payload(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..48)) {
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&payload));
            let parts = parts_with(AUTHORIZATION, &[&value]);
            let out = BasicAuth::new(AcceptAll).authenticate_request(parts).into_ready().unwrap();
            let has_colon = payload.contains(&b':');
            let utf8 = std::str::from_utf8(&payload).is_ok();
            proptest::prop_assert_eq!(matches!(out.result, Ok(Some(_))), has_colon && utf8);
        }

        #[test]
        fn never_panics_on_any_header(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = CredentialBuffer::new().decode(&bytes);
            let mut prefixed = b"Basic ".to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = CredentialBuffer::new().decode(&prefixed);
        }
    }
}
