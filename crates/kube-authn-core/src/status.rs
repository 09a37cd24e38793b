//! The Kubernetes `Status` bodies of rejected requests.

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The compact 401 body, as Go's `json.Encoder` writes it for API clients (with a final newline).
pub const UNAUTHORIZED_BODY: &str = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n";

/// The pretty 401 body Kubernetes sends to curl, wget and browsers (no final newline).
pub const UNAUTHORIZED_BODY_PRETTY: &str = "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n  \"message\": \"Unauthorized\",\n  \"reason\": \"Unauthorized\",\n  \"code\": 401\n}";

/// The 401 body as YAML, as kube-apiserver's YAML serializer writes it (`Accept:
/// application/yaml`: the JSON object's keys sorted, a final newline).
pub const UNAUTHORIZED_BODY_YAML: &str = "apiVersion: v1\ncode: 401\nkind: Status\nmessage: Unauthorized\nmetadata: {}\nreason: Unauthorized\nstatus: Failure\n";

/// How Kubernetes writes a `Status` in answer to a request (`responsewriters.ErrorNegotiated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusFormat {
    /// JSON: compact with a final newline, or pretty-printed (curl, browsers, `?pretty`, and
    /// an `Accept` the server cannot satisfy, for which Kubernetes falls back to indented
    /// JSON).
    Json {
        /// Indented, without a final newline.
        pretty: bool,
    },
    /// YAML (`Accept: application/yaml`).
    Yaml,
}

/// The format of a `Status` for this request, as Kubernetes negotiates it from the first
/// `Accept` header (munnerz/goautoneg's parsing and ordering, then the first clause that names
/// `application/json`, `application/yaml`, `application/*` or `*/*`; a clause asking for a
/// transformation (`as`, `g`, `v`) or a server version (`sv`) is not acceptable for an error).
/// No `Accept`, or an empty one, is JSON; an `Accept` that nothing satisfies is the indented
/// JSON Kubernetes falls back to. Protocol buffers are not offered (as for custom resources):
/// a clause asking only for them is passed over.
pub fn status_format(uri: &http::Uri, headers: &http::HeaderMap) -> StatusFormat {
    let json = || StatusFormat::Json {
        pretty: is_pretty_print(uri, headers),
    };
    let Some(accept) = headers.get(ACCEPT) else {
        return json();
    };
    let accept = String::from_utf8_lossy(accept.as_bytes());
    if accept.is_empty() {
        return json();
    }
    for clause in parse_accept(&accept) {
        // The server's media types in its order: JSON (which streams), YAML (which does not).
        for (subtype, streams) in [("json", true), ("yaml", false)] {
            let matches = (clause.kind == "application"
                && (clause.subtype == subtype || clause.subtype == "*"))
                || (clause.kind == "*" && clause.subtype == "*");
            if !matches || !clause.acceptable_for_errors(streams) {
                continue;
            }
            return match subtype {
                "yaml" => StatusFormat::Yaml,
                // `NegotiateOutputMediaType`: the clause's `pretty=1`, or `isPrettyPrint`.
                _ => StatusFormat::Json {
                    pretty: clause.params.contains(&("pretty", "1"))
                        || is_pretty_print(uri, headers),
                },
            };
        }
    }
    StatusFormat::Json { pretty: true }
}

/// One media range of an `Accept` header, as munnerz/goautoneg parses it.
#[derive(Debug, PartialEq)]
struct Clause<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

impl Clause<'_> {
    /// Whether Kubernetes' `acceptMediaTypeOptions` accepts the clause's parameters for an
    /// error response and a serializer that `streams` or not: its endpoint restrictions allow
    /// no conversion (`as`, `g`, `v`), no server version (`sv`), and a `stream` only of
    /// `watch`, for a serializer that streams.
    fn acceptable_for_errors(&self, streams: bool) -> bool {
        !self.params.iter().any(|(k, v)| match *k {
            "as" | "g" | "v" => true,
            "sv" => !v.is_empty(),
            "stream" => !v.is_empty() && (!streams || *v != "watch"),
            _ => false,
        })
    }
}

/// goautoneg's `ParseAccept`: clauses split at `,` and trimmed of spaces, `type/subtype` (or
/// `*`) and parameters at `;`, `q` read as a float (0 when it does not parse); then ordered by
/// its comparison (a higher q first, else a clause without a wildcard before one with).
///
/// That comparison is not a consistent order, so the result depends on the sort: up to 12
/// clauses this is the insertion sort Go's `sort.Sort` uses for them, so the order is Go's.
/// Beyond (no client sends that many), a stable sort by (q, wildcards): linear-logarithmic,
/// where an insertion sort would let one request cost quadratic time, and the same order as
/// Go's whenever the comparison is consistent.
fn parse_accept(header: &str) -> Vec<Clause<'_>> {
    let mut clauses = Vec::new();
    for part in header.split(',') {
        let part = part.trim_matches(' ');
        let mut pieces = part.split(';');
        let range = pieces.next().unwrap_or_default();
        let mut sp = range.split('/');
        let kind = sp.next().unwrap_or_default().trim_matches(' ');
        let subtype = match (sp.next(), sp.next()) {
            (None, _) if kind == "*" => "*",
            (Some(sub), None) => sub.trim_matches(' '),
            _ => continue,
        };
        let mut clause = Clause {
            kind,
            subtype,
            q: 1.0,
            params: Vec::new(),
        };
        for param in pieces {
            let Some((token, value)) = param.split_once('=') else {
                continue;
            };
            let token = token.trim_matches(' ');
            if token == "q" {
                // Go's strconv.ParseFloat(value, 32): no spaces, and 0 on error.
                clause.q = value.parse::<f32>().map_or(0.0, f64::from);
            } else {
                clause.params.push((token, value.trim_matches(' ')));
            }
        }
        clauses.push(clause);
    }
    if clauses.len() <= 12 {
        let less = |a: &Clause<'_>, b: &Clause<'_>| {
            a.q > b.q || (a.kind != "*" && b.kind == "*") || (a.subtype != "*" && b.subtype == "*")
        };
        for i in 1..clauses.len() {
            let mut j = i;
            while j > 0 && less(&clauses[j], &clauses[j - 1]) {
                clauses.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        // q descending (NaN as 0), then no wildcard before a wildcard: a total order.
        let q = |c: &Clause<'_>| if c.q.is_nan() { 0.0 } else { c.q };
        clauses.sort_by(|a, b| {
            q(b).total_cmp(&q(a))
                .then((a.kind == "*").cmp(&(b.kind == "*")))
                .then((a.subtype == "*").cmp(&(b.subtype == "*")))
        });
    }
    clauses
}

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

/// The 401 response in JSON: the Kubernetes `Status` with reason `Unauthorized`,
/// `Content-Type: application/json` and `Cache-Control: no-cache, private`.
pub fn unauthorized(pretty: bool) -> Response<Full<Bytes>> {
    unauthorized_as(StatusFormat::Json { pretty })
}

/// The 401 response in `format` (see [`status_format`]), with `Cache-Control: no-cache,
/// private`.
pub fn unauthorized_as(format: StatusFormat) -> Response<Full<Bytes>> {
    let (body, content_type) = match format {
        StatusFormat::Json { pretty: false } => (UNAUTHORIZED_BODY, "application/json"),
        StatusFormat::Json { pretty: true } => (UNAUTHORIZED_BODY_PRETTY, "application/json"),
        StatusFormat::Yaml => (UNAUTHORIZED_BODY_YAML, "application/yaml"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kubernetes' output negotiation for the 401 (`ErrorNegotiated` over goautoneg).
    #[test]
    fn the_status_format_follows_accept() {
        use StatusFormat::{Json, Yaml};
        let format = |accept: Option<&str>, agent: &str| {
            let mut b = http::Request::get("/api").header(USER_AGENT, agent);
            if let Some(a) = accept {
                b = b.header(ACCEPT, a);
            }
            let r = b.body(()).unwrap();
            status_format(r.uri(), r.headers())
        };
        let kubectl = "kubectl/v1.33.0";
        let compact = Json { pretty: false };
        let pretty = Json { pretty: true };
        for (accept, agent, want) in [
            (None, kubectl, compact),
            (None, "curl/8.5.0", pretty),
            (Some(""), kubectl, compact),
            (Some("application/json"), kubectl, compact),
            (Some("application/json"), "curl/8.5.0", pretty),
            (Some("application/yaml"), kubectl, Yaml),
            (Some("application/yaml"), "curl/8.5.0", Yaml),
            (Some("*/*"), kubectl, compact),
            (Some("*"), kubectl, compact),
            (Some("application/*"), kubectl, compact),
            // kubectl get: the Table clauses are not acceptable for an error.
            (
                Some(
                    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                ),
                kubectl,
                compact,
            ),
            (
                Some("application/yaml;as=Table;v=v1;g=meta.k8s.io"),
                kubectl,
                pretty,
            ),
            (Some("application/json;sv=v1"), kubectl, pretty),
            // Protocol buffers are not offered: the next clause, else the indented fallback.
            (
                Some("application/vnd.kubernetes.protobuf, */*"),
                kubectl,
                compact,
            ),
            (Some("application/vnd.kubernetes.protobuf"), kubectl, pretty),
            (Some("application/xml"), kubectl, pretty),
            (Some("text/plain"), kubectl, pretty),
            // Browsers.
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                "Mozilla/5.0 (X11; Linux x86_64)",
                pretty,
            ),
            // Quality and goautoneg's ordering.
            (
                Some("application/yaml;q=0.5, application/json"),
                kubectl,
                compact,
            ),
            (
                Some("application/json;q=0.5, application/yaml"),
                kubectl,
                Yaml,
            ),
            (Some("*/*;q=0.1, application/yaml;q=0.9"), kubectl, Yaml),
            (Some("application/yaml;q=0.1, */*"), kubectl, compact),
            (
                Some("application/json;q=bad, application/yaml;q=0.2"),
                kubectl,
                Yaml,
            ),
            // Not a media range: skipped.
            (Some("application/yaml/x, application/yaml"), kubectl, Yaml),
            // The clause's pretty=1 (Kubernetes' media type option), and `stream`: only
            // `watch`, and only for JSON (YAML has no stream serializer).
            (Some("application/json;pretty=1"), kubectl, pretty),
            (Some("application/json;pretty=0"), kubectl, compact),
            (Some("application/json;stream=watch"), kubectl, compact),
            (Some("application/json;stream=other"), kubectl, pretty),
            (Some("application/yaml;stream=watch"), kubectl, pretty),
            (
                Some("application/yaml;stream=watch, application/json"),
                kubectl,
                compact,
            ),
            // goautoneg's comparison puts a clause without wildcard first whatever its q
            // (Go's insertion sort, up to 12 clauses).
            (Some("*/*;q=0.9, application/yaml;q=0.1"), kubectl, Yaml),
            // Exact names, as Kubernetes compares them.
            (Some("Application/YAML"), kubectl, pretty),
        ] {
            assert_eq!(format(accept, agent), want, "{accept:?} {agent}");
        }
    }

    /// A long `Accept` (hyper takes heads of ~400 KB) is sorted in n log n: the insertion
    /// sort of short lists would cost ~10^9 moves here. Correctness, not time, is asserted:
    /// the order of the many clauses is (q, wildcards).
    #[test]
    fn a_long_accept_is_sorted_as_a_total_order() {
        let header = format!(
            "{}{}application/yaml;q=0.5",
            "*,".repeat(20_000),
            "a/b,".repeat(10_000)
        );
        let clauses = parse_accept(&header);
        assert_eq!(clauses.len(), 30_001);
        assert_eq!((clauses[0].kind, clauses[0].subtype), ("a", "b"));
        assert_eq!((clauses[10_000].kind, clauses[10_000].subtype), ("*", "*"));
        assert_eq!(clauses[30_000].subtype, "yaml");
        // The first acceptable clause is `*/*`: JSON (compact: no pretty-printing agent).
        let r = http::Request::get("/")
            .header(ACCEPT, header)
            .body(())
            .unwrap();
        assert_eq!(
            status_format(r.uri(), r.headers()),
            StatusFormat::Json { pretty: false }
        );
    }

    #[test]
    fn the_yaml_body_is_the_json_status() {
        let response = unauthorized_as(StatusFormat::Yaml);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/yaml");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // The same object as the JSON body, keys sorted.
        let keys: Vec<&str> = UNAUTHORIZED_BODY_YAML
            .lines()
            .filter_map(|l| l.split_once(": ").map(|(k, _)| k))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        let json: serde_json::Value = serde_json::from_str(UNAUTHORIZED_BODY).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(keys.len(), object.len());
        for line in UNAUTHORIZED_BODY_YAML.lines() {
            let (k, v) = line.split_once(": ").unwrap();
            let want = match &object[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) if o.is_empty() => "{}".to_owned(),
                other => other.to_string(),
            };
            assert_eq!(v, want, "{k}");
        }
    }

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
