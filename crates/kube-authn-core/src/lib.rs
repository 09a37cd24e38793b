//! The core of kube-authn: Kubernetes request authentication as `tower` middleware.
//!
//! This crate mirrors `k8s.io/apiserver/pkg/authentication`: the [`UserInfo`] of a request, the
//! three authenticator contracts ([`AuthenticateRequest`], [`AuthenticateToken`],
//! [`AuthenticatePassword`]) with their three outcomes, the [`Union`] of authenticators, the
//! [`AuthenticatedGroupAdder`], [`Anonymous`] access, the credential readers
//! ([`BearerToken`], [`WebSocketProtocol`], [`BasicAuth`]), the generic [`AuthnLayer`] that
//! answers `401` with the Kubernetes `Status` body, and [`reload`], the hot-reload machinery of
//! file-backed strategies.
//!
//! Most users depend on the `kube-authn` facade instead, which builds a whole chain from a
//! configuration file.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use kube_authn_core::{
//!     Audiences, AuthenticateToken, Authenticated, AuthnFuture, AuthnLayer, AuthnResult,
//!     BearerToken, UserInfo,
//! };
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! struct OneToken;
//! impl AuthenticateToken for OneToken {
//!     fn authenticate_token(&self, token: &str, _: &Audiences) -> AuthnFuture<AuthnResult> {
//!         let user = (token == "s3cret").then(|| Authenticated::new(UserInfo::new("alice")));
//!         AuthnFuture::ready(Ok(user))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(AuthnLayer::new(BearerToken::new(OneToken)))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<UserInfo>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(user.username.clone()))
//!     }));
//!
//! let ok = svc.clone().oneshot(
//!     Request::get("/").header("authorization", "Bearer s3cret").body(String::new()).unwrap(),
//! ).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! let denied = svc.oneshot(
//!     Request::get("/").header("authorization", "Bearer wrong").body(String::new()).unwrap(),
//! ).await.unwrap();
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```
//!
//! # Security
//! - A bad credential is `401` even when anonymous access is enabled ([`WithAnonymous`]).
//! - Credentials are removed from the request before the inner service sees it.
//! - Errors and logs never contain a credential; token copies made for asynchronous lookups are
//!   zeroed when dropped.

#![forbid(unsafe_code)]

mod anonymous;
mod authenticator;
pub mod credentials;
mod error;
#[cfg(feature = "axum")]
pub mod extract;
mod future;
mod group;
pub mod layer;
mod metrics;
pub mod reload;
pub mod status;
mod union;
mod user;
mod warning;

#[cfg(test)]
mod testing;

pub use anonymous::{Anonymous, WithAnonymous};
pub use authenticator::{
    Audiences, AuthenticatePassword, AuthenticateRequest, AuthenticateToken, Authenticated,
    AuthnResult, RequestHead, RequestOutcome,
};
pub use credentials::{BasicAuth, BearerToken, WebSocketProtocol};
pub use error::{Aggregate, AuthnError, ErrorKind, StrategyError};
pub use future::AuthnFuture;
pub use group::{AuthenticatedGroupAdder, add_authenticated_group};
pub use layer::{AuthnLayer, AuthnService, CloseConnection};
pub use union::{TokenUnion, Union};
pub use user::{
    ANONYMOUS_USER, AUTHENTICATED_GROUP, CREDENTIAL_ID_KEY, MASTERS_GROUP, UNAUTHENTICATED_GROUP,
    UserInfo,
};
pub use warning::{AuthnWarnings, add_warning};
