//! [`AuthnLayer`]: the layer users mount.

use tower_layer::Layer;

use crate::{Authenticator, AuthnBuilder, AuthnConfig, BuildError};

/// Authenticates every request as Kubernetes does and attaches [`UserInfo`](crate::UserInfo).
///
/// By default it runs an [`Authenticator`] built from an [`AuthnConfig`] or an
/// [`AuthnBuilder`]; [`AuthnLayer::new`] takes any single strategy instead. Cheap to clone.
#[derive(Debug)]
pub struct AuthnLayer<A = Authenticator> {
    inner: kube_authn_core::AuthnLayer<A>,
}

impl<A> Clone for AuthnLayer<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl AuthnLayer {
    /// Builds the layer of a configuration: loads every file it names (each must load; files
    /// are then watched unless `reload: false`).
    pub async fn from_config(config: &AuthnConfig) -> Result<Self, BuildError> {
        AuthnBuilder::from_config(config).build()
    }

    /// A builder for a chain assembled in code.
    pub fn builder() -> AuthnBuilder {
        AuthnBuilder::new()
    }
}

impl<A> AuthnLayer<A> {
    /// A layer authenticating with one strategy (or any `AuthenticateRequest`).
    pub fn new(auth: A) -> Self {
        Self {
            inner: kube_authn_core::AuthnLayer::new(auth),
        }
    }

    /// Sets the server's API audiences (see [`kube_authn_core::AuthnLayer::api_audiences`]).
    #[must_use]
    pub fn api_audiences<I, S>(self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            inner: self.inner.api_audiences(audiences),
        }
    }

    /// Sets `WWW-Authenticate: Basic realm="<realm>"` on rejections.
    #[must_use]
    pub fn basic_realm(self, realm: &str) -> Self {
        Self {
            inner: self.inner.basic_realm(realm),
        }
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &A {
        self.inner.authenticator()
    }
}

impl<S, A> Layer<S> for AuthnLayer<A> {
    type Service = kube_authn_core::AuthnService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        self.inner.layer(inner)
    }
}
