//! The Kubernetes `Status` bodies of rejected requests.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The compact 401 body, as Go's `json.Encoder` writes it for API clients (with a final newline).
pub const UNAUTHORIZED_BODY: &str = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n";

/// The pretty 401 body Kubernetes sends to curl, wget and browsers (no final newline).
pub const UNAUTHORIZED_BODY_PRETTY: &str = "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n  \"message\": \"Unauthorized\",\n  \"reason\": \"Unauthorized\",\n  \"code\": 401\n}";

/// Whether Kubernetes would pretty-print a response to this request: `?pretty=<bool>` decides
/// when present, else a `User-Agent` starting with `curl`, `Wget` or `Mozilla/5.0`.
pub fn is_pretty_print(uri: &http::Uri, headers: &http::HeaderMap) -> bool {
    if let Some(query) = uri.query()
        && query.contains("pretty")
    {
        {
            let value = query
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .find(|(k, _)| *k == "pretty")
                .map(|(_, v)| v);
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                return matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True");
            }
        }
    }
    headers.get(USER_AGENT).is_some_and(|ua| {
        let ua = ua.as_bytes();
        ua.starts_with(b"curl") || ua.starts_with(b"Wget") || ua.starts_with(b"Mozilla/5.0")
    })
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
    }
}
