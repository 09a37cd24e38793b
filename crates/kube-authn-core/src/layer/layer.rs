use std::sync::Arc;

use tower_layer::Layer;

use super::{AuthnService, Settings};
use crate::Audiences;

/// A [`tower::Layer`](tower_layer::Layer) that authenticates every request with `A`.
///
/// Cheap to clone (two `Arc`s). Build one per policy and mount it with `Router::layer` or
/// `route_layer`.
#[derive(Debug)]
pub struct AuthnLayer<A> {
    pub(crate) auth: Arc<A>,
    pub(crate) settings: Arc<Settings>,
}

impl<A> Clone for AuthnLayer<A> {
    fn clone(&self) -> Self {
        Self {
            auth: Arc::clone(&self.auth),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<A> AuthnLayer<A> {
    /// A layer authenticating with `auth`.
    ///
    /// Metrics handles are taken from the `metrics` recorder installed at this point: install
    /// the recorder before building layers.
    pub fn new(auth: A) -> Self {
        Self::from_arc(Arc::new(auth))
    }

    /// A layer over a shared authenticator.
    pub fn from_arc(auth: Arc<A>) -> Self {
        Self {
            auth,
            settings: Arc::new(Settings {
                audiences: None,
                www_authenticate: None,
                metrics: crate::metrics::AuthnMetrics::new(),
            }),
        }
    }

    fn with_settings(self, edit: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = (*self.settings).clone();
        edit(&mut settings);
        Self {
            auth: self.auth,
            settings: Arc::new(settings),
        }
    }

    /// Answers rejections with `WWW-Authenticate: Basic realm="<realm>"`, as kube-apiserver did
    /// while it accepted basic credentials (realm `kubernetes-master`). Default: no such header.
    #[must_use]
    pub fn basic_realm(self, realm: &str) -> Self {
        let value = http::HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")).ok();
        self.with_settings(|s| s.www_authenticate = value)
    }

    /// Sets the server's API audiences (Kubernetes `--api-audiences`). Token authenticators
    /// receive them, and a credential authenticated for other audiences only is rejected.
    /// Default: none.
    #[must_use]
    pub fn api_audiences<I, S>(self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let audiences: Audiences = audiences.into_iter().collect();
        self.with_settings(|s| s.audiences = (!audiences.is_empty()).then_some(audiences))
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<A> {
        &self.auth
    }
}

impl<S, A> Layer<S> for AuthnLayer<A> {
    type Service = AuthnService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthnService {
            inner,
            auth: Arc::clone(&self.auth),
            settings: Arc::clone(&self.settings),
        }
    }
}
