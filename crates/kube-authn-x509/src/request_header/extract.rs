//! Reading the identity from the proxy's headers, and removing them
//! (Kubernetes `requestHeaderAuthRequestHandler` and `ClearAuthenticationHeaders`).

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use kube_authn_core::UserInfo;

use super::config::Compiled;

/// A header value as text. Go takes header bytes as they are; bytes that are not UTF-8 become
/// U+FFFD here, so such a value still counts where it stands (a later username header must
/// not win because the first one is not UTF-8).
fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// The first value of the first of `names` whose first value is non-empty (Go's `h.Get`).
fn first_non_empty(headers: &HeaderMap, names: &[HeaderName]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| headers.get(n))
        .find(|v| !v.is_empty())
        .map(text)
}

/// Whether `name` (lower case, as `http` keeps it) starts with `prefix` (lower case).
fn has_prefix(name: &HeaderName, prefix: &str) -> bool {
    name.as_str().starts_with(prefix)
}

/// The user the headers name, `None` when no username header has a non-empty value.
pub(crate) fn user_from_headers(headers: &HeaderMap, config: &Compiled) -> Option<UserInfo> {
    let username = first_non_empty(headers, &config.username)?;
    let uid = first_non_empty(headers, &config.uid).unwrap_or_default();
    let groups = config
        .group
        .iter()
        .flat_map(|n| headers.get_all(n).iter())
        .filter(|v| !v.is_empty())
        .map(text)
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in &config.extra_prefixes {
        for name in headers.keys() {
            if !has_prefix(name, prefix) {
                continue;
            }
            let suffix = &name.as_str()[prefix.len()..];
            let key = path_unescape(suffix).unwrap_or_else(|| suffix.to_owned());
            let values = extra.entry(key).or_default();
            values.extend(headers.get_all(name).iter().map(text));
        }
    }
    Some(UserInfo {
        username,
        uid,
        groups,
        extra,
    })
}

/// Removes the username, uid and group headers and every header with an extra prefix.
pub(crate) fn strip(headers: &mut HeaderMap, config: &Compiled) {
    for name in config
        .username
        .iter()
        .chain(&config.uid)
        .chain(&config.group)
    {
        headers.remove(name);
    }
    if config.extra_prefixes.is_empty() {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| config.extra_prefixes.iter().any(|p| has_prefix(n, p)))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Go's `url.PathUnescape`: `%XX` escapes decoded once, `+` kept; `None` for a malformed
/// escape. Decoded bytes that are not UTF-8 become U+FFFD, as for header values: Go keeps the
/// bytes, and every JSON Kubernetes writes of the key (a review, a webhook) has U+FFFD there.
pub(crate) fn path_unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_header::RequestHeaderConfig;
    use proptest::prelude::*;

    #[test]
    fn unescape_like_go() {
        assert_eq!(path_unescape("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(path_unescape("%zz"), None);
        assert_eq!(path_unescape("abc%"), None);
        assert_eq!(path_unescape("abc%2"), None);
        assert_eq!(path_unescape("%2520").as_deref(), Some("%20"));
        assert_eq!(
            path_unescape("%ff").as_deref(),
            Some("\u{FFFD}"),
            "not utf-8"
        );
        assert_eq!(
            path_unescape("bad%ff%fe").as_deref(),
            Some("bad\u{FFFD}\u{FFFD}")
        );
        assert_eq!(path_unescape("%c3%a4").as_deref(), Some("ä"));
    }

    fn compiled() -> Compiled {
        RequestHeaderConfig::standard()
            .username_headers(["X-Remote-User", "X-User"])
            .compile()
            .unwrap()
            .0
    }

    proptest! {
        /// Header extraction and stripping never panic, whatever the header names and values.
        #[test]
        fn header_extraction_never_panics(
            headers in proptest::collection::vec(
                ("x-remote-[a-z%0-9-]{0,12}|[a-z-]{1,10}", proptest::collection::vec(any::<u8>(), 0..24)),
                0..12,
            )
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
                    map.append(n, v);
                }
            }
            let config = compiled();
            let _ = user_from_headers(&map, &config);
            strip(&mut map, &config);
            prop_assert!(map.keys().all(|k| !k.as_str().starts_with("x-remote-extra-")));
            prop_assert!(map.get("x-remote-user").is_none());
        }

        /// Unescaping never panics.
        #[test]
        fn unescape_never_panics(s in "\\PC{0,40}") {
            let _ = path_unescape(&s);
        }
    }
}
