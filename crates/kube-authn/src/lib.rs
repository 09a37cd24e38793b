//! Kubernetes request authentication for axum and hyper servers, as `tower` layers.
//!
//! `kube-authn` gives a server the authentication of kube-apiserver: the same credentials
//! (static token file, HTTP basic with a password file, bearer tokens in the websocket
//! protocol, anonymous), the same file formats, user names and groups, and the same `401`
//! `Status` body. Each strategy attaches a [`UserInfo`] to the request; the first strategy that
//! succeeds wins; a bad credential is `401` even when anonymous access is on; every
//! authenticated user gets `system:authenticated`.
//!
//! # Example
//! ```
//! use axum::{routing::get, Json, Router};
//! use kube_authn::{AuthnConfig, AuthnLayer, UserInfo};
//!
//! async fn whoami(user: UserInfo) -> Json<UserInfo> {
//!     Json(user)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::fs::write(dir.path().join("tokens.csv"), "s3cret,alice,1,\"devs\"\n")?;
//! # let config_path = dir.path().join("authn.yaml");
//! # std::fs::write(&config_path, "tokenAuthFile: tokens.csv\n")?;
//! let config = AuthnConfig::from_file(&config_path)?;
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(AuthnLayer::from_config(&config).await?);
//! # use tower::ServiceExt;
//! # let req = http::Request::get("/whoami").header("authorization", "Bearer s3cret").body(axum::body::Body::empty())?;
//! # assert_eq!(app.clone().oneshot(req).await?.status(), 200);
//! # let req = http::Request::get("/whoami").header("authorization", "Bearer nope").body(axum::body::Body::empty())?;
//! # assert_eq!(app.oneshot(req).await?.status(), 401);
//! # Ok(()) }
//! ```
//!
//! Per-route policies use `route_layer`; see the `per_route` example of this crate.
//!
//! # Features
//! - `axum` (default): [`UserInfo`] is an axum extractor (`500` when the layer is missing).
//! - `x509` (default): client certificates (`clientCAFile`, [`AuthnBuilder::client_ca_file`]),
//!   the authenticating proxy (`requestHeader`), and [`x509::serve`], a TLS accept loop that
//!   hands the peer's certificates to the authenticators.
//!
//! # Security
//! - Credentials are removed before the inner service sees the request: `Authorization` after
//!   any success, the token entry of `Sec-WebSocket-Protocol`, and the `X-Remote-*` headers.
//! - Token and password comparisons are constant time; `Debug` output never shows a secret;
//!   rejection reasons are logged at debug level under `kube_authn::rejected`, never with the
//!   credential.
//! - A file that fails to parse never replaces the one in force.

#![forbid(unsafe_code)]

mod chain;
mod config;
mod layer;

pub use chain::{Authenticator, AuthnBuilder, BuildError};
pub use config::{
    AnonymousCondition, AnonymousConfig, AuthnConfig, ConfigError, Reload, RequestHeaderFileConfig,
};
pub use layer::AuthnLayer;

#[cfg(feature = "axum")]
pub use kube_authn_core::extract::MissingUserInfo;
pub use kube_authn_core::{
    ANONYMOUS_USER, AUTHENTICATED_GROUP, Anonymous, Audiences, AuthenticatePassword,
    AuthenticateRequest, AuthenticateToken, Authenticated, AuthnError, AuthnFuture, AuthnResult,
    AuthnService, BasicAuth, BearerToken, CloseConnection, ErrorKind, RequestOutcome, TokenUnion,
    UNAUTHENTICATED_GROUP, Union, UserInfo, WebSocketProtocol, reload, status,
};
pub use kube_authn_static::{PasswordFile, TokenFile};

/// Client certificates, the authenticating proxy and the rustls server helpers.
#[cfg(feature = "x509")]
pub use kube_authn_x509 as x509;

/// The core crate, for strategy authors.
pub use kube_authn_core as core;
