//! The forwarding handler and the upstream client.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use kube_authn::UserInfo;

use crate::BoxError;
use crate::headers;

/// What the handler needs: the upstream clients and the upstream's base URL.
#[derive(Clone)]
pub(crate) struct Proxy {
    client: reqwest::Client,
    /// The same client restricted to HTTP/1.1, for upgrades (websocket, SPDY).
    upgrades: reqwest::Client,
    /// The upstream URL without its trailing `/`; the request's path and query follow it.
    base: Arc<str>,
    /// The upstream URL, to check that a forwarded request still goes there.
    upstream: Arc<reqwest::Url>,
    /// Identity headers the upstream trusts besides `X-Remote-*`.
    strip: Arc<headers::Strip>,
}

impl Proxy {
    pub(crate) fn new(
        (client, upgrades): (reqwest::Client, reqwest::Client),
        upstream: &reqwest::Url,
        strip: headers::Strip,
    ) -> Self {
        Self {
            client,
            upgrades,
            base: upstream.as_str().trim_end_matches('/').into(),
            upstream: Arc::new(upstream.clone()),
            strip: Arc::new(strip),
        }
    }
}

/// The upstream clients: trust only `ca_file`, present the front-proxy client certificate,
/// never follow redirects (they are the client's business) and never use a proxy from the
/// environment. There is no overall timeout: watches and log follows last as long as the
/// client keeps them. The second client speaks HTTP/1.1 only, for upgrade requests.
pub(crate) fn upstream_clients(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<(reqwest::Client, reqwest::Client), BoxError> {
    let read = |flag: &str, path: &Path| {
        fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let ca = read("--upstream-ca-file", ca_file)?;
    let roots = reqwest::Certificate::from_pem_bundle(&ca).map_err(|e| {
        format!(
            "--upstream-ca-file {}: {}",
            ca_file.display(),
            error_chain(&e)
        )
    })?;
    if roots.is_empty() {
        return Err(format!(
            "--upstream-ca-file {}: no certificate found",
            ca_file.display()
        )
        .into());
    }
    let mut pem = read("--proxy-client-cert-file", cert_file)?;
    pem.push(b'\n');
    let key = read("--proxy-client-key-file", key_file)?;
    pem.extend_from_slice(&key);
    let pair_error = |e: &reqwest::Error| {
        format!(
            "--proxy-client-cert-file {} and --proxy-client-key-file {}: {}",
            cert_file.display(),
            key_file.display(),
            error_chain(e)
        )
    };
    let client = |http1_only: bool| -> Result<reqwest::Client, BoxError> {
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| pair_error(&e))?;
        let mut builder = reqwest::Client::builder()
            .tls_certs_only(roots.clone())
            .identity(identity)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10));
        if http1_only {
            builder = builder.http1_only();
        }
        // The builder is where rustls checks the key against the certificate.
        builder.build().map_err(|e| pair_error(&e).into())
    };
    Ok((client(false)?, client(true)?))
}

/// The upstream URL of a request's path and query: the path must be absolute, and the result
/// must still point at the upstream. A path glued to the upstream's address must never be able
/// to move the host: `@other-host:10250/pods` would turn the address into user info and send
/// the user's identity headers and the proxy's client certificate elsewhere. (`http` 1.x
/// refuses such a path when it parses the request; this does not rely on it. HTTP/2 clients
/// can still send `?query` without a path, which is refused here too.)
fn upstream_url(base: &str, upstream: &reqwest::Url, path: &str) -> Result<reqwest::Url, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    // An encoded slash or backslash would let a gateway that decodes it before resolving dot
    // segments climb out of the upstream's path (`/..%2fcluster-b`). Refused: resource names
    // cannot hold one; the cost is the service and pod `proxy` subresources, whose remaining
    // path cannot hold one through this proxy.
    let raw_path = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if raw_path.contains("%2f") || raw_path.contains("%5c") || raw_path.contains('\\') {
        return Err(format!("{path:?} holds an encoded slash"));
    }
    let url = reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| e.to_string())?;
    if url.scheme() != upstream.scheme()
        || url.host() != upstream.host()
        || url.port_or_known_default() != upstream.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!("{path:?} does not stay on the upstream"));
    }
    // The URL parser resolves `..` and `%2e%2e` segments: the path must still be under the
    // upstream's (`--upstream=https://gw/cluster-a` never reaches `https://gw/cluster-b`).
    let prefix = upstream.path().trim_end_matches('/');
    let under = url
        .path()
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !under {
        return Err(format!("{path:?} leaves the upstream's path {prefix:?}"));
    }
    Ok(url)
}

/// Forwards an authenticated request upstream and streams the answer back.
pub(crate) async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    // hyper's handle on the client's connection, for an upgrade request.
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let Some(user) = parts.extensions.get::<UserInfo>() else {
        // The authentication layer is missing in front of the handler: a bug of this binary.
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no user on the request",
        );
    };
    let upgrade = if headers::is_upgrade(&parts.method, &parts.headers) {
        // HTTP/1.1 upgrades (websocket, SPDY) are proxied; HTTP/2's extended CONNECT is not.
        let (Some(protocol), Some(on_upgrade)) =
            (headers::upgrade_protocol(&parts.headers), on_upgrade)
        else {
            return status(
                StatusCode::NOT_IMPLEMENTED,
                "InternalError",
                "front-proxy proxies upgrades over HTTP/1.1 only (not HTTP/2 extended CONNECT)",
            );
        };
        Some((protocol, on_upgrade))
    } else {
        None
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = match upstream_url(&proxy.base, &proxy.upstream, path) {
        Ok(url) => url,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("invalid request path: {e}"),
            );
        }
    };
    let peer = parts.extensions.get::<SocketAddr>().copied();
    let upstream_headers =
        match headers::upstream_request_headers(&parts.headers, user, peer, &proxy.strip) {
            Ok(mut h) => {
                if let Some((protocol, _)) = &upgrade {
                    headers::set_upgrade(&mut h, protocol.clone());
                }
                h
            }
            Err(e) => {
                tracing::warn!(user = ?user.username, error = %e, "cannot forward");
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &e.to_string(),
                );
            }
        };
    tracing::debug!(
        method = %parts.method,
        path = %parts.uri.path(),
        user = ?user.username,
        "forwarding"
    );

    let mut upstream = reqwest::Request::new(parts.method, url);
    *upstream.headers_mut() = upstream_headers;
    // A request without a body (most GETs) is sent without one rather than as an empty
    // chunked stream; any other body is streamed as it arrives.
    if !(body.is_end_stream() || body.size_hint().exact() == Some(0)) {
        *upstream.body_mut() = Some(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    if let Some((protocol, on_upgrade)) = upgrade {
        return forward_upgrade(&proxy, upstream, protocol, on_upgrade).await;
    }
    match proxy.client.execute(upstream).await {
        Ok(answer) => passed_back(answer),
        Err(e) => {
            let message = format!("error trying to reach the upstream: {}", error_chain(&e));
            tracing::warn!("{message}");
            status(StatusCode::BAD_GATEWAY, "InternalError", &message)
        }
    }
}

/// The upstream's answer for the client: its status, its end-to-end headers, its body streamed
/// as it arrives.
fn passed_back(answer: reqwest::Response) -> Response {
    let code = answer.status();
    let answer_headers = headers::downstream_response_headers(answer.headers());
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = code;
    *response.headers_mut() = answer_headers;
    response
}

/// Forwards an upgrade request over HTTP/1.1, as Go's reverse proxy does: when the upstream
/// switches to the protocol asked for, the client gets the `101` with the upstream's headers
/// and the two connections are joined byte for byte until either side closes; any other
/// answer (a `401`, a `404`) is passed back as it is.
async fn forward_upgrade(
    proxy: &Proxy,
    mut upstream: reqwest::Request,
    protocol: http::HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Response {
    *upstream.version_mut() = http::Version::HTTP_11;
    let answer = match proxy.upgrades.execute(upstream).await {
        Ok(answer) => answer,
        Err(e) => {
            let message = format!("error trying to reach the upstream: {}", error_chain(&e));
            tracing::warn!("{message}");
            return status(StatusCode::BAD_GATEWAY, "InternalError", &message);
        }
    };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return passed_back(answer);
    }
    let mut answer_headers = headers::downstream_response_headers(answer.headers());
    let switched = headers::upgrade_protocol(answer.headers());
    if !switched
        .as_ref()
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(protocol.as_bytes()))
    {
        let message = format!(
            "backend tried to switch protocol {:?} when {:?} was requested",
            switched
                .as_ref()
                .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned()),
            String::from_utf8_lossy(protocol.as_bytes()),
        );
        tracing::warn!("{message}");
        return status(StatusCode::BAD_GATEWAY, "InternalError", &message);
    }
    headers::set_upgrade(&mut answer_headers, protocol);
    tokio::spawn(async move {
        let (client, upstream) = match (on_upgrade.await, answer.upgrade().await) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(e), _) => {
                tracing::debug!(error = %e, "the client's connection was not upgraded");
                return;
            }
            (_, Err(e)) => {
                tracing::debug!(error = %error_chain(&e), "the upstream connection was not upgraded");
                return;
            }
        };
        // As Go's reverse proxy: when either direction ends, both connections are closed (a
        // peer that never finishes its half cannot hold the other side open).
        let (mut client_read, mut client_write) =
            tokio::io::split(hyper_util::rt::TokioIo::new(client));
        let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
        let ended = tokio::select! {
            r = tokio::io::copy(&mut client_read, &mut upstream_write) => r,
            r = tokio::io::copy(&mut upstream_read, &mut client_write) => r,
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = answer_headers;
    response
}

/// An error and its sources, `: `-separated (reqwest's own message rarely says why).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// A Kubernetes `Status` failure response.
pub(crate) fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut text = body.to_string();
    text.push('\n');
    (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::upstream_url;

    fn check(upstream: &str, path: &str) -> Result<String, String> {
        let upstream = reqwest::Url::parse(upstream).unwrap();
        let base = upstream.as_str().trim_end_matches('/').to_owned();
        upstream_url(&base, &upstream, path).map(String::from)
    }

    /// Dot segments, plain or percent-encoded, cannot climb out of the upstream's path.
    #[test]
    fn paths_stay_under_the_upstream_path() {
        let up = "https://gw.example/cluster-a";
        for path in [
            "/../cluster-b/api",
            "/%2e%2e/cluster-b/api",
            "/%2E%2E/healthz",
            "/api/../../cluster-b",
            "/./../x",
            "/..%2fcluster-b/api",
            "/%2e%2e%2Fcluster-b",
            "/..%5ccluster-b",
            "/..\\cluster-b",
        ] {
            assert!(check(up, path).is_err(), "{path}: {:?}", check(up, path));
        }
        // An encoded slash in the query is not in the path.
        assert_eq!(
            check(up, "/api?fieldSelector=a%2Fb").unwrap(),
            "https://gw.example/cluster-a/api?fieldSelector=a%2Fb"
        );
        // Dot segments that stay inside are resolved as any URL's are.
        assert_eq!(
            check(up, "/api/../healthz").unwrap(),
            "https://gw.example/cluster-a/healthz"
        );
        assert_eq!(check(up, "/").unwrap(), "https://gw.example/cluster-a/");
        // No path prefix: nothing to leave.
        assert_eq!(
            check("https://gw.example", "/../healthz").unwrap(),
            "https://gw.example/healthz"
        );
    }

    #[test]
    fn paths_are_appended_to_the_upstream() {
        let up = "https://127.0.0.1:6443";
        assert_eq!(
            check(up, "/api/v1/namespaces/default/pods?watch=true").unwrap(),
            "https://127.0.0.1:6443/api/v1/namespaces/default/pods?watch=true"
        );
        assert_eq!(check(up, "/").unwrap(), "https://127.0.0.1:6443/");
        assert_eq!(
            check(up, "//other.example/x").unwrap(),
            "https://127.0.0.1:6443//other.example/x"
        );
        assert_eq!(
            check("https://apiserver.example/prefix/", "/api").unwrap(),
            "https://apiserver.example/prefix/api"
        );
    }

    #[test]
    fn a_path_cannot_send_the_request_to_another_host() {
        for path in [
            "@internal.example:10250/pods",
            "@internal.example/pods",
            ".evil.example/x",
            ":10250/pods",
            "\\\\evil.example/x",
            "evil",
            "",
        ] {
            let got = check("https://127.0.0.1:6443", path);
            assert!(got.is_err(), "{path:?} gave {got:?}");
        }
    }
}
