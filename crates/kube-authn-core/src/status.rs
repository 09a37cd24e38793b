//! The Kubernetes `Status` bodies of rejected requests.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The compact 401 body, as Go's `json.Encoder` writes it for API clients (with a final newline).
pub const UNAUTHORIZED_BODY: &str = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n";

/// The pretty 401 body Kubernetes sends to curl, wget and browsers (no final newline).
pub const UNAUTHORIZED_BODY_PRETTY: &str = "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n  \"message\": \"Unauthorized\",\n  \"reason\": \"Unauthorized\",\n  \"code\": 401\n}";

/// Whether Kubernetes would pretty-print a response to this request (`isPrettyPrint`): when the
/// raw query mentions `pretty`, the first non-empty value of the query parameter `pretty`
/// (decoded as Go's `url.ParseQuery` does) decides, as `strconv.ParseBool` reads it; else a
/// `User-Agent` starting with `curl`, `Wget` or `Mozilla/5.0`.
pub fn is_pretty_print(uri: &http::Uri, headers: &http::HeaderMap) -> bool {
    if let Some(query) = uri.query()
        && query.contains("pretty")
        && let Some(value) = first_query_value(query, "pretty")
        && !value.is_empty()
    {
        return matches!(&*value, "1" | "t" | "T" | "true" | "TRUE" | "True");
    }
    headers.get(USER_AGENT).is_some_and(|ua| {
        let ua = ua.as_bytes();
        ua.starts_with(b"curl") || ua.starts_with(b"Wget") || ua.starts_with(b"Mozilla/5.0")
    })
}

/// The first value of `key` in `query`, as Go's `url.ParseQuery` then `Values.Get` give it:
/// pairs split at `&`, a pair holding `;` or a bad escape is skipped, keys and values are
/// query-unescaped. `None` when the key is absent; `Some("")` for `?key` or `?key=`.
pub fn first_query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (query_unescape(k)?, query_unescape(v)?);
            (k == key).then_some(v)
        })
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; a `%` without two hex digits is
/// refused. Go keeps bytes that are not UTF-8 in its string; here they become U+FFFD, which
/// compares with every ASCII value as Go's bytes do (`?pretty=%ff` is a value, not a bool).
fn query_unescape(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_owned());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    Some(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// The 401 response: the Kubernetes `Status` with reason `Unauthorized`,
/// `Content-Type: application/json` and `Cache-Control: no-cache, private`.
pub fn unauthorized(pretty: bool) -> Response<Full<Bytes>> {
    let body = if pretty {
        UNAUTHORIZED_BODY_PRETTY
    } else {
        UNAUTHORIZED_BODY
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_kubernetes_status() {
        let compact: serde_json::Value = serde_json::from_str(UNAUTHORIZED_BODY).unwrap();
        let pretty: serde_json::Value = serde_json::from_str(UNAUTHORIZED_BODY_PRETTY).unwrap();
        assert_eq!(compact, pretty);
        assert_eq!(
            UNAUTHORIZED_BODY.trim_end(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
        );
    }

    #[test]
    fn pretty_print_rules() {
        let check = |uri: &str, ua: Option<&str>| {
            let mut h = http::HeaderMap::new();
            if let Some(ua) = ua {
                h.insert(USER_AGENT, HeaderValue::from_str(ua).unwrap());
            }
            is_pretty_print(&uri.parse().unwrap(), &h)
        };
        assert!(check("/api", Some("curl/8.0")));
        assert!(check("/api", Some("Wget/1.21")));
        assert!(check("/api", Some("Mozilla/5.0 (X11)")));
        assert!(!check("/api", Some("kubectl/v1.33.1")));
        assert!(!check("/api", None));
        assert!(check("/api?pretty=true", None));
        assert!(check("/api?a=b&pretty=1", Some("kubectl")));
        assert!(!check("/api?pretty=false", Some("curl/8.0")));
        assert!(!check("/api?pretty=nope", Some("curl/8.0")));
        assert!(check("/api?pretty=", Some("curl/8.0")));
        assert!(check("/api?prettyish=1", Some("curl/8.0")));
        // Decoded as Go's url.ParseQuery: escapes and `+` in keys and values.
        assert!(check("/api?pretty=%74rue", Some("kubectl")));
        assert!(check("/api?pr%65tty=1&pretty=0", Some("kubectl")));
        assert!(!check("/api?pretty=%66alse", Some("curl/8.0")));
        assert!(!check("/api?pretty=+true", Some("curl/8.0")));
        // Pairs with `;` or a bad escape are skipped: the next `pretty`, else the user agent.
        assert!(check("/api?pretty=0;x", Some("curl/8.0")));
        assert!(!check("/api?pretty=1;x", Some("kubectl")));
        assert!(check("/api?pretty=%zz&pretty=1", Some("kubectl")));
        assert!(check("/api?pretty=%f", Some("curl/8.0")));
        // A byte that is not UTF-8 is a value all the same (Go keeps it): not a bool.
        assert!(!check("/api?pretty=%ff", Some("curl/8.0")));
        assert!(!check("/api?pretty=%ff&pretty=0", Some("kubectl")));
        // The first value decides, even when a later one is set.
        assert!(check("/api?pretty=1&pretty=0", Some("kubectl")));
        assert!(check("/api?pretty&pretty=0", Some("curl/8.0")));
    }
}
