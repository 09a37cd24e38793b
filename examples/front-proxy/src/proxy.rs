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

/// What the handler needs: the upstream client and the upstream's base URL.
#[derive(Clone)]
pub(crate) struct Proxy {
    client: reqwest::Client,
    /// The upstream URL without its trailing `/`; the request's path and query follow it.
    base: Arc<str>,
    /// The upstream URL, to check that a forwarded request still goes there.
    upstream: Arc<reqwest::Url>,
    /// Identity headers the upstream trusts besides `X-Remote-*`.
    strip: Arc<headers::Strip>,
}

impl Proxy {
    pub(crate) fn new(
        client: reqwest::Client,
        upstream: &reqwest::Url,
        strip: headers::Strip,
    ) -> Self {
        Self {
            client,
            base: upstream.as_str().trim_end_matches('/').into(),
            upstream: Arc::new(upstream.clone()),
            strip: Arc::new(strip),
        }
    }
}

/// The upstream client: trusts only `ca_file`, presents the front-proxy client certificate,
/// never follows redirects (they are the client's business) and never uses a proxy from the
/// environment. There is no overall timeout: watches and log follows last as long as the
/// client keeps them.
pub(crate) fn upstream_client(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<reqwest::Client, BoxError> {
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
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| pair_error(&e))?;
    // The builder is where rustls checks the key against the certificate.
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .identity(identity)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| pair_error(&e).into())
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
    let url = reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| e.to_string())?;
    if url.scheme() != upstream.scheme()
        || url.host() != upstream.host()
        || url.port_or_known_default() != upstream.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!("{path:?} does not stay on the upstream"));
    }
    Ok(url)
}

/// Forwards an authenticated request upstream and streams the answer back.
pub(crate) async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(user) = parts.extensions.get::<UserInfo>() else {
        // The authentication layer is missing in front of the handler: a bug of this binary.
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no user on the request",
        );
    };
    if headers::is_upgrade(&parts.method, &parts.headers) {
        return status(
            StatusCode::NOT_IMPLEMENTED,
            "InternalError",
            "front-proxy does not proxy upgrade requests (websocket, SPDY: exec, attach, \
             port-forward); watch and log follow work over plain HTTP",
        );
    }
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
            Ok(h) => h,
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
    match proxy.client.execute(upstream).await {
        Ok(answer) => {
            let code = answer.status();
            let answer_headers = headers::downstream_response_headers(answer.headers());
            let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
            *response.status_mut() = code;
            *response.headers_mut() = answer_headers;
            response
        }
        Err(e) => {
            let message = format!("error trying to reach the upstream: {}", error_chain(&e));
            tracing::warn!("{message}");
            status(StatusCode::BAD_GATEWAY, "InternalError", &message)
        }
    }
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
