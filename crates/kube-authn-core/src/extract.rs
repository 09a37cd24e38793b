//! The axum extractor: handlers take [`UserInfo`] (or `Option<UserInfo>`) as an argument.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::UserInfo;

/// The rejection when no [`UserInfo`] is attached: the authentication layer is missing in front
/// of this handler. That is a server bug, so the answer is `500`, not `401`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "no UserInfo in the request extensions: is the authentication layer installed in front of this handler?"
)]
#[non_exhaustive]
pub struct MissingUserInfo;

impl IntoResponse for MissingUserInfo {
    fn into_response(self) -> Response {
        tracing::trace!(target: "kube_authn::rejection", "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UserInfo {
    type Rejection = MissingUserInfo;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<UserInfo>()
            .cloned()
            .ok_or(MissingUserInfo)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for UserInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<UserInfo>().cloned())
    }
}
