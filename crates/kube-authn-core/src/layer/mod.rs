//! The authentication middleware: [`AuthnLayer`] and [`AuthnService`].
//!
//! The service runs the authenticator on the request head. On success it attaches
//! [`crate::UserInfo`] to the request extensions, removes `Authorization` and the
//! standard front-proxy headers (`X-Remote-User`, `X-Remote-Uid`, `X-Remote-Group`,
//! `X-Remote-Extra-*`) as Kubernetes does, and calls the inner service. Otherwise it answers
//! `401` with the Kubernetes `Status` body and never calls the inner service.
//!
//! # Security
//! A rejected request never reaches the inner service. Rejection reasons are logged at debug
//! level under the target `kube_authn::rejected`, never with the credential.

mod body;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::AuthnLayer;
pub use service::AuthnService;

use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, Response};
use http_body_util::Full;

use crate::{Audiences, AuthnError, AuthnWarnings, RequestOutcome, UserInfo};

/// A response extension: the server should close the connection once this response is sent.
///
/// Kubernetes' HTTP/2 denial-of-service mitigation (`UnauthenticatedHTTP2DOSMitigation`, on by
/// default since 1.29): an HTTP/2 request that is answered 401, or that is served as an
/// anonymous user (`system:anonymous`, or any user in `system:unauthenticated`), gets
/// `Connection: close`, on which Go's HTTP/2 server sends GOAWAY and ends the connection once
/// its streams are done. Unauthenticated clients cannot keep HTTP/2 connections open (they get
/// the cost of HTTP/1.1 without keep-alive). `Connection` is not an HTTP/2 header, so the
/// layer marks the response with this extension instead; `kube_authn_x509::serve` acts on it
/// (hyper's graceful shutdown: GOAWAY, then the end of the connection). A server with its own
/// accept loop can do the same. HTTP/1.1 requests are never marked, as in Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseConnection;

/// What the inner service's response gets on the way out.
#[derive(Debug, Default)]
pub(crate) struct After {
    pub(crate) warnings: Option<AuthnWarnings>,
    pub(crate) close: bool,
}

impl After {
    pub(crate) fn apply<B>(&self, response: &mut Response<B>) {
        add_warning_headers(response.headers_mut(), self.warnings.as_ref());
        if self.close {
            response.extensions_mut().insert(CloseConnection);
        }
    }
}

/// What the service needs besides the authenticator; shared behind an `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) audiences: Option<Audiences>,
    pub(crate) www_authenticate: Option<http::HeaderValue>,
    pub(crate) metrics: crate::metrics::AuthnMetrics,
}

static STRIPPED: [HeaderName; 3] = [
    HeaderName::from_static("x-remote-user"),
    HeaderName::from_static("x-remote-uid"),
    HeaderName::from_static("x-remote-group"),
];
const EXTRA_PREFIX: &[u8] = b"x-remote-extra-";

impl Settings {
    /// Decides a finished authentication: the head to pass on, or the 401 response.
    pub(crate) fn decide(
        &self,
        outcome: RequestOutcome,
        start: Option<Instant>,
    ) -> Result<(Parts, After), Rejection> {
        let RequestOutcome { mut parts, result } = outcome;
        let warnings = if parts.extensions.is_empty() {
            None
        } else {
            parts.extensions.remove::<AuthnWarnings>()
        };
        let error = match result {
            Ok(Some(auth)) => {
                if let Some(api) = &self.audiences
                    && !auth.audiences.is_empty()
                    && api.intersect(&auth.audiences).is_empty()
                {
                    {
                        tracing::debug!(target: "kube_authn::rejected", api_audiences = ?api.as_slice(), token_audiences = ?auth.audiences.as_slice(), "unable to match the audience");
                        self.metrics.record_error(start);
                        return Err(self.reject(&parts, warnings));
                    }
                }
                strip_credentials(&mut parts);
                self.metrics.record_success(start, &auth.user);
                let close = parts.version == http::Version::HTTP_2 && auth.user.is_anonymous();
                parts.extensions.insert::<UserInfo>(auth.user);
                return Ok((*parts, After { warnings, close }));
            }
            Ok(None) => None,
            Err(e) => Some(e),
        };
        match &error {
            Some(e) => {
                log_rejection(&parts, e);
                self.metrics.record_error(start);
            }
            None => {
                tracing::debug!(target: "kube_authn::rejected", method = %parts.method, path = parts.uri.path(), "no credentials and anonymous access is disabled");
                self.metrics.record_failure(start);
            }
        }
        Err(self.reject(&parts, warnings))
    }
}

impl Settings {
    fn reject(&self, parts: &Parts, warnings: Option<AuthnWarnings>) -> Rejection {
        Rejection {
            format: crate::status::status_format(&parts.uri, &parts.headers),
            after: After {
                warnings,
                close: parts.version == http::Version::HTTP_2,
            },
            www_authenticate: self.www_authenticate.clone(),
        }
    }
}

/// A rejected request: what is needed to build its 401 response.
#[derive(Debug)]
pub(crate) struct Rejection {
    format: crate::status::StatusFormat,
    after: After,
    www_authenticate: Option<http::HeaderValue>,
}

impl Rejection {
    /// The 401 response with the Kubernetes `Status` body.
    pub(crate) fn response(self) -> Response<Full<Bytes>> {
        let mut response = crate::status::unauthorized_as(self.format);
        if let Some(value) = self.www_authenticate {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        self.after.apply(&mut response);
        response
    }
}

/// Appends `Warning` headers for the collected warnings.
pub(crate) fn add_warning_headers(headers: &mut http::HeaderMap, warnings: Option<&AuthnWarnings>) {
    if let Some(warnings) = warnings {
        for value in warnings.header_values() {
            headers.append(http::header::WARNING, value);
        }
    }
}

fn log_rejection(parts: &Parts, error: &AuthnError) {
    let strategies: Vec<&str> = match error {
        AuthnError::Aggregate(agg) => agg.errors().iter().map(|e| e.strategy).collect(),
        _ => Vec::new(),
    };
    tracing::debug!(target: "kube_authn::rejected", method = %parts.method, path = parts.uri.path(), kind = ?error.kind(), strategies = ?strategies, error = %error, "unable to authenticate the request");
}

/// Removes what Kubernetes' authentication filter removes after any successful authentication:
/// `Authorization` and the standard front-proxy headers. One pass over the names decides what is
/// there, so the usual request (no such header left) costs no hash lookups.
fn strip_credentials(parts: &mut Parts) {
    const REMOTE_PREFIX: &[u8] = b"x-remote-";
    let headers = &mut parts.headers;
    let (mut authorization, mut remote) = (false, false);
    for name in headers.keys() {
        if *name == http::header::AUTHORIZATION {
            authorization = true;
        } else if name.as_str().as_bytes().starts_with(REMOTE_PREFIX) {
            remote = true;
        }
    }
    if authorization {
        headers.remove(http::header::AUTHORIZATION);
    }
    if !remote {
        return;
    }
    for name in &STRIPPED {
        headers.remove(name);
    }
    let extra: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().as_bytes().starts_with(EXTRA_PREFIX))
        .cloned()
        .collect();
    for name in extra {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn strip_credentials_removes_authorization_and_every_front_proxy_header() {
        let mut parts = head(&[
            ("Authorization", "Bearer a"),
            ("Authorization", "Bearer b"),
            ("X-Remote-User", "admin"),
            ("X-Remote-Uid", "1"),
            ("X-Remote-Group", "g1"),
            ("X-Remote-Group", "g2"),
            ("X-Remote-Extra-Scopes", "all"),
            ("X-Remote-Extra-Acme.com%2Fproject", "p"),
            ("X-Remote-Other", "kept: not a front-proxy header"),
            ("Accept", "application/json"),
        ]);
        strip_credentials(&mut parts);
        let mut left: Vec<&str> = parts.headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-remote-other"]);
    }

    /// Kubernetes' HTTP/2 mitigation: HTTP/2 responses to a 401 or an anonymous user are
    /// marked [`CloseConnection`]; an authenticated user's and every HTTP/1.1 response are not.
    /// With synchronous and asynchronous authenticators (two response-future paths).
    #[tokio::test]
    async fn unauthenticated_http2_responses_ask_to_close_the_connection() {
        use crate::{
            Anonymous, Audiences, AuthenticateToken, Authenticated, AuthnFuture, AuthnResult,
            BearerToken, WithAnonymous,
        };
        use tower::{Layer, ServiceExt, service_fn};
        /// Knows the token `good` (alice); answers later when `.0`.
        #[derive(Clone)]
        struct Good(bool);
        impl AuthenticateToken for Good {
            fn authenticate_token(&self, token: &str, _: &Audiences) -> AuthnFuture<AuthnResult> {
                let result =
                    Ok((token == "good").then(|| Authenticated::new(UserInfo::new("alice"))));
                if self.0 {
                    AuthnFuture::boxed(async move { result })
                } else {
                    AuthnFuture::ready(result)
                }
            }
        }
        for asynchronous in [false, true] {
            let auth = WithAnonymous::new(
                BearerToken::new(Good(asynchronous)),
                Anonymous::with_paths(["/anon"]),
            );
            let svc = AuthnLayer::new(auth).layer(service_fn(|_: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            }));
            for (version, path, token, status, close) in [
                (http::Version::HTTP_2, "/", Some("good"), 200, false),
                (http::Version::HTTP_2, "/", Some("bad"), 401, true),
                (http::Version::HTTP_2, "/", None, 401, true),
                (http::Version::HTTP_2, "/anon", None, 200, true),
                (http::Version::HTTP_11, "/", Some("bad"), 401, false),
                (http::Version::HTTP_11, "/anon", None, 200, false),
            ] {
                let mut request = http::Request::get(path).version(version);
                if let Some(t) = token {
                    request = request.header("Authorization", format!("Bearer {t}"));
                }
                let response = svc
                    .clone()
                    .oneshot(request.body(()).unwrap())
                    .await
                    .unwrap();
                let case = format!("{version:?} {path} {token:?} async={asynchronous}");
                assert_eq!(response.status(), status, "{case}");
                assert_eq!(
                    response.extensions().get::<CloseConnection>().is_some(),
                    close,
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn strip_credentials_leaves_other_requests_alone() {
        let mut parts = head(&[("Accept", "*/*"), ("User-Agent", "kubectl")]);
        strip_credentials(&mut parts);
        assert_eq!(parts.headers.len(), 2);
    }
}
