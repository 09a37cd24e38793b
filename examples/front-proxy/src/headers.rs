//! What crosses the proxy: the request headers forwarded upstream (without hop-by-hop
//! headers and without any credential or identity header of the client), the identity headers
//! the proxy adds, and the response headers passed back.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use kube_authn::UserInfo;

/// The username header (kube-apiserver `--requestheader-username-headers=X-Remote-User`).
pub(crate) const REMOTE_USER: HeaderName = HeaderName::from_static("x-remote-user");
/// The UID header (`--requestheader-uid-headers=X-Remote-Uid`), sent when the user has one.
pub(crate) const REMOTE_UID: HeaderName = HeaderName::from_static("x-remote-uid");
/// The group header (`--requestheader-group-headers=X-Remote-Group`), one per group.
pub(crate) const REMOTE_GROUP: HeaderName = HeaderName::from_static("x-remote-group");
/// The extra prefix (`--requestheader-extra-headers-prefix=X-Remote-Extra-`).
pub(crate) const REMOTE_EXTRA_PREFIX: &str = "x-remote-extra-";
/// Every identity header a client might send to impersonate through the proxy starts so.
const REMOTE_PREFIX: &str = "x-remote-";

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones Go's reverse proxy drops): they
/// describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Why the user cannot be passed on in headers.
#[derive(Debug, thiserror::Error)]
#[error("the {what} of the authenticated user cannot be sent in an HTTP header")]
pub(crate) struct UnrepresentableIdentity {
    what: &'static str,
}

/// Whether the request asks for a protocol upgrade (websocket or SPDY over HTTP/1.1, or an
/// HTTP/2 extended `CONNECT`).
pub(crate) fn is_upgrade(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::CONNECT
        || (headers.contains_key(header::UPGRADE)
            && connection_tokens(headers).any(|t| t == "upgrade"))
}

/// The protocol an upgrade request (or a `101` answer) names in `Upgrade`, when the
/// `Connection` header has the `upgrade` token.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    if !connection_tokens(headers).any(|t| t == "upgrade") {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

/// Puts back the two hop-by-hop headers of an upgrade (Go's reverse proxy does the same after
/// removing the others): `Connection: Upgrade` and `Upgrade: <protocol>`.
pub(crate) fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// The lower-cased tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// `headers` without hop-by-hop headers, including those the `Connection` header names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = connection_tokens(headers).collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Identity headers the upstream trusts besides `X-Remote-*`: never forwarded from a client.
#[derive(Clone, Debug, Default)]
pub(crate) struct Strip {
    names: Vec<HeaderName>,
    prefixes: Vec<String>,
}

impl Strip {
    /// From the flags; a name that is not a valid header name is refused.
    pub(crate) fn new(names: &[String], prefixes: &[String]) -> Result<Self, String> {
        let names = names
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.trim().as_bytes())
                    .map_err(|_| format!("--strip-request-headers: invalid header name {n:?}"))
            })
            .collect::<Result<_, _>>()?;
        let prefixes = prefixes
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Self { names, prefixes })
    }

    fn matches(&self, name: &HeaderName) -> bool {
        self.names.contains(name)
            || self
                .prefixes
                .iter()
                .any(|p| name.as_str().starts_with(p.as_str()))
    }
}

/// The headers to send upstream for a request of `user` from `peer`: the client's end-to-end
/// headers minus `Host` (the upstream's is set by the client library), `Authorization` (the
/// credential was for the proxy) and every `X-Remote-*` header (a client never speaks for
/// itself), plus the identity headers of `user` and `X-Forwarded-For`.
pub(crate) fn upstream_request_headers(
    incoming: &HeaderMap,
    user: &UserInfo,
    peer: Option<SocketAddr>,
    strip: &Strip,
) -> Result<HeaderMap, UnrepresentableIdentity> {
    let mut headers = end_to_end(incoming);
    headers.remove(header::HOST);
    headers.remove(header::AUTHORIZATION);
    remove_websocket_tokens(&mut headers);
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(REMOTE_PREFIX) || strip.matches(name))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    set_identity(&mut headers, user)?;
    if let Some(peer) = peer {
        append_forwarded_for(&mut headers, peer);
    }
    Ok(headers)
}

/// Drops the bearer-token entries (`base64url.bearer.authorization.k8s.io.…`) of
/// `Sec-WebSocket-Protocol`: like `Authorization`, a credential for the proxy. The websocket
/// authenticator removes the entry only when it is the one that authenticated; a request
/// authenticated otherwise (a client certificate, a bearer header) may still carry one.
fn remove_websocket_tokens(headers: &mut HeaderMap) {
    kube_authn::core::credentials::remove_websocket_token_entries(headers);
}

/// Adds the identity headers as Kubernetes' `transport.SetAuthProxyHeaders` does:
/// `X-Remote-User`, `X-Remote-Uid` when not empty, one `X-Remote-Group` per group and one
/// `X-Remote-Extra-<escaped key>` per extra value.
pub(crate) fn set_identity(
    headers: &mut HeaderMap,
    user: &UserInfo,
) -> Result<(), UnrepresentableIdentity> {
    let value = |what, s: &str| {
        HeaderValue::from_bytes(s.as_bytes()).map_err(|_| UnrepresentableIdentity { what })
    };
    headers.insert(REMOTE_USER, value("name", &user.username)?);
    if !user.uid.is_empty() {
        headers.insert(REMOTE_UID, value("uid", &user.uid)?);
    }
    for group in &user.groups {
        headers.append(REMOTE_GROUP, value("group", group)?);
    }
    for (key, values) in &user.extra {
        // Not lower-cased here (client-go does not): header names fold ASCII case, and the
        // API server lower-cases the escaped form, so a non-ASCII key arrives as it is.
        let name = format!("{REMOTE_EXTRA_PREFIX}{}", header_key_escape(key));
        let name = HeaderName::try_from(name)
            .map_err(|_| UnrepresentableIdentity { what: "extra key" })?;
        for v in values {
            headers.append(name.clone(), value("extra value", v)?);
        }
    }
    Ok(())
}

/// Appends the client's address to `X-Forwarded-For`, as Go's reverse proxy does.
fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    let joined = {
        let mut hops: Vec<&str> = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        hops.push(&ip);
        hops.join(", ")
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// The upstream's response headers to pass back: its end-to-end headers.
pub(crate) fn downstream_response_headers(upstream: &HeaderMap) -> HeaderMap {
    end_to_end(upstream)
}

/// Escapes an extra key for a header name as Kubernetes does (`headerKeyEscape` of
/// client-go's `transport`): every byte that is not legal in a header name (an RFC 9110
/// token character), and `%` itself, becomes `%XX` (upper-case hex). The API server reverses
/// it with Go's `url.PathUnescape`, so this is a subset of `url.PathEscape` that also keeps the
/// header name valid (`PathEscape` leaves `:`, `@` and `=`, which a header name cannot hold).
pub(crate) fn header_key_escape(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if is_token_byte(b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Go's `url.PathUnescape`, as the API server applies it (kube-authn's
    /// `RequestHeaderAuthenticator` does the same).
    fn path_unescape(s: &str) -> Option<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    #[test]
    fn extra_keys_escape_as_kubernetes_and_round_trip() {
        // client-go's TestAuthProxyRoundTripper cases.
        let cases = [
            ("alpha", "alpha"),
            ("alph4num3r1c", "alph4num3r1c"),
            ("percent encoded", "percent%20encoded"),
            (
                "almost%zzpercent%xxencoded",
                "almost%25zzpercent%25xxencoded",
            ),
            (
                "example.com/percent%20encoded",
                "example.com%2Fpercent%2520encoded",
            ),
            (
                "example.com/今日は",
                "example.com%2F%E4%BB%8A%E6%97%A5%E3%81%AF",
            ),
            ("abc123!#$+.-_*\\^`~|'", "abc123!#$+.-_*%5C^`~|'"),
            (
                "authentication.kubernetes.io/credential-id",
                "authentication.kubernetes.io%2Fcredential-id",
            ),
            ("a:b@c=d", "a%3Ab%40c%3Dd"),
        ];
        for (key, escaped) in cases {
            assert_eq!(header_key_escape(key), escaped, "{key}");
            // What the API server reads back: lower-cased header name, then PathUnescape.
            let name = HeaderName::try_from(format!("{REMOTE_EXTRA_PREFIX}{escaped}")).unwrap();
            let suffix = &name.as_str()[REMOTE_EXTRA_PREFIX.len()..];
            assert_eq!(path_unescape(suffix).as_deref(), Some(key), "{key}");
        }
    }

    #[test]
    fn extra_keys_keep_non_ascii_case_as_client_go_sends_them() {
        let mut user = UserInfo::new("alice");
        user.extra.insert("Team-Ä".into(), vec!["x".into()]);
        let mut headers = HeaderMap::new();
        set_identity(&mut headers, &user).unwrap();
        let name = headers
            .keys()
            .find(|n| n.as_str().starts_with(REMOTE_EXTRA_PREFIX))
            .unwrap();
        // Header names fold ASCII case; the escaped non-ASCII letter is kept (Ä, not ä).
        assert_eq!(name.as_str(), "x-remote-extra-team-%c3%84");
        let suffix = &name.as_str()[REMOTE_EXTRA_PREFIX.len()..];
        assert_eq!(path_unescape(suffix).as_deref(), Some("team-Ä"));
    }

    #[test]
    fn websocket_token_entries_are_not_forwarded() {
        let forwarded = |lines: &[&str]| {
            let mut incoming = HeaderMap::new();
            for line in lines {
                incoming.append(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_bytes(line.as_bytes()).unwrap(),
                );
            }
            let out = upstream_request_headers(
                &incoming,
                &UserInfo::new("alice"),
                None,
                &Strip::default(),
            )
            .unwrap();
            out.get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let token = "base64url.bearer.authorization.k8s.io.dG9rZW4x";
        // Entries are trimmed as Go trims them (Unicode white space): an upstream reads these
        // as tokens.
        assert_eq!(
            forwarded(&[&format!("\u{a0}{token}, base64.binary.k8s.io")]),
            ["base64.binary.k8s.io"]
        );
        assert_eq!(forwarded(&[&format!("x,\u{3000}{token}\u{2009}")]), ["x"]);
        assert_eq!(
            forwarded(&[&format!("{token}, base64.binary.k8s.io")]),
            ["base64.binary.k8s.io"]
        );
        assert_eq!(
            forwarded(&["v4.channel.k8s.io", &format!("{token},x")]),
            ["v4.channel.k8s.io,x"]
        );
        assert!(forwarded(&[token]).is_empty());
        // Without a token entry the header passes as it is.
        assert_eq!(forwarded(&["a, b", "c"]), ["a, b", "c"]);
    }

    #[test]
    fn identity_headers_replace_whatever_the_client_sent() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("host", "proxy.example"),
            ("authorization", "Bearer s3cret"),
            ("x-remote-user", "admin"),
            ("X-Remote-Group", "system:masters"),
            ("x-remote-uid", "0"),
            ("x-remote-extra-scopes", "all"),
            ("X-REMOTE-Something-Else", "x"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("accept", "application/json"),
            ("x-forwarded-for", "10.0.0.1"),
            (
                "impersonate-user",
                "kept: the upstream authorizes impersonation",
            ),
        ] {
            incoming.append(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        let mut user = UserInfo::new("alice");
        user.uid = "uid-a".into();
        user.groups = vec!["devs".into(), "system:authenticated".into()];
        user.extra
            .insert("Scopes".into(), vec!["view".into(), "edit".into()]);
        user.extra
            .insert("example.com/team".into(), vec!["blue".into()]);
        let peer: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let out =
            upstream_request_headers(&incoming, &user, Some(peer), &Strip::default()).unwrap();

        let all = |name: &str| -> Vec<&str> {
            out.get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("x-remote-user"), ["alice"]);
        assert_eq!(all("x-remote-uid"), ["uid-a"]);
        assert_eq!(all("x-remote-group"), ["devs", "system:authenticated"]);
        assert_eq!(all("x-remote-extra-scopes"), ["view", "edit"]);
        assert_eq!(all("x-remote-extra-example.com%2Fteam"), ["blue"]);
        assert_eq!(all("x-forwarded-for"), ["10.0.0.1, 192.0.2.7"]);
        assert_eq!(all("accept"), ["application/json"]);
        assert_eq!(all("impersonate-user").len(), 1);
        for gone in [
            "host",
            "authorization",
            "x-remote-something-else",
            "connection",
            "x-private",
            "keep-alive",
            "te",
            "proxy-authorization",
        ] {
            assert!(out.get(gone).is_none(), "{gone} was forwarded");
        }
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "impersonate-user",
                "x-forwarded-for",
                // Header names are lower case on the wire (HTTP/2) and in `http`; the API
                // server lower-cases them anyway before `PathUnescape`.
                "x-remote-extra-example.com%2fteam",
                "x-remote-extra-scopes",
                "x-remote-group",
                "x-remote-uid",
                "x-remote-user",
            ]
        );
    }

    #[test]
    fn no_uid_header_for_a_user_without_uid() {
        let out = upstream_request_headers(
            &HeaderMap::new(),
            &UserInfo::new("bob"),
            None,
            &Strip::default(),
        )
        .unwrap();
        assert!(out.get("x-remote-uid").is_none());
        assert!(out.get("x-forwarded-for").is_none());
        assert_eq!(out.get("x-remote-user").unwrap(), "bob");
    }

    #[test]
    fn non_standard_identity_headers_of_the_upstream_are_stripped_too() {
        let mut incoming = HeaderMap::new();
        incoming.insert("x-groups", HeaderValue::from_static("system:masters"));
        incoming.insert("x-my-extra-scopes", HeaderValue::from_static("all"));
        incoming.insert("accept", HeaderValue::from_static("*/*"));
        let strip = Strip::new(&["X-Groups".to_owned()], &["X-My-Extra-".to_owned()]).unwrap();
        let out = upstream_request_headers(&incoming, &UserInfo::new("bob"), None, &strip).unwrap();
        assert!(out.get("x-groups").is_none());
        assert!(out.get("x-my-extra-scopes").is_none());
        assert_eq!(out["accept"], "*/*");
        // without the flags they would pass
        let out =
            upstream_request_headers(&incoming, &UserInfo::new("bob"), None, &Strip::default())
                .unwrap();
        assert_eq!(out["x-groups"], "system:masters");
        assert!(Strip::new(&["bad header".to_owned()], &[]).is_err());
    }

    #[test]
    fn a_name_that_is_not_a_header_value_is_refused() {
        let err = upstream_request_headers(
            &HeaderMap::new(),
            &UserInfo::new("eve\r\nx-remote-group: system:masters"),
            None,
            &Strip::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn upgrades_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade(&http::Method::GET, &h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(
            !is_upgrade(&http::Method::GET, &h),
            "Upgrade without Connection: upgrade"
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_upgrade(&http::Method::GET, &h));
        assert!(is_upgrade(&http::Method::CONNECT, &HeaderMap::new()));
    }

    #[test]
    fn response_headers_lose_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.append(header::WARNING, HeaderValue::from_static("299 - \"a\""));
        h.append(header::WARNING, HeaderValue::from_static("299 - \"b\""));
        let out = downstream_response_headers(&h);
        assert_eq!(out.len(), 3);
        assert_eq!(out.get_all(header::WARNING).iter().count(), 2);
        assert!(out.get(header::TRANSFER_ENCODING).is_none());
    }
}
