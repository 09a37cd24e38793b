//! [`TlsSource`] and [`ReloadingServerConfig`]: a `ServerConfig` that follows the CA bundles it
//! advertises.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ResolvesServerCert, StoresServerSessions};

use super::verifier::RequestClientCert;
use crate::pool::CaBundle;

/// Where the accept loop takes the TLS configuration of each new connection from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// One configuration for every connection.
    Static(Arc<ServerConfig>),
    /// A configuration rebuilt when an advertised CA bundle is reloaded.
    Reloading(ReloadingServerConfig),
}

impl TlsSource {
    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self {
            TlsSource::Static(config) => Arc::clone(config),
            TlsSource::Reloading(reloading) => reloading.current(),
        }
    }
}

impl From<Arc<ServerConfig>> for TlsSource {
    fn from(config: Arc<ServerConfig>) -> Self {
        TlsSource::Static(config)
    }
}

impl From<ServerConfig> for TlsSource {
    fn from(config: ServerConfig) -> Self {
        TlsSource::Static(Arc::new(config))
    }
}

impl From<ReloadingServerConfig> for TlsSource {
    fn from(config: ReloadingServerConfig) -> Self {
        TlsSource::Reloading(config)
    }
}

/// A `ServerConfig` whose acceptable-issuer hints (the CA names of the `CertificateRequest`)
/// follow the advertised CA bundles: when a bundle is reloaded, the next connection gets a
/// configuration rebuilt with the new names, as kube-apiserver's dynamic serving controller
/// does. The serving certificate resolver and the session cache are shared by every
/// generation, so certificate rotation and session resumption are unaffected.
#[derive(Clone)]
pub struct ReloadingServerConfig {
    inner: Arc<Inner>,
}

struct Inner {
    bundles: Vec<CaBundle>,
    resolver: Arc<dyn ResolvesServerCert>,
    sessions: Arc<dyn StoresServerSessions>,
    state: ArcSwap<Generation>,
}

struct Generation {
    generations: Vec<u64>,
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ReloadingServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingServerConfig")
            .field("bundles", &self.inner.bundles.len())
            .field("generations", &self.inner.state.load().generations)
            .finish_non_exhaustive()
    }
}

impl ReloadingServerConfig {
    pub(crate) fn new(
        bundles: Vec<CaBundle>,
        resolver: Arc<dyn ResolvesServerCert>,
    ) -> Result<Self, rustls::Error> {
        let sessions: Arc<dyn StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(256);
        let generations = current_generations(&bundles);
        let config = build(&bundles, &resolver, &sessions)?;
        Ok(Self {
            inner: Arc::new(Inner {
                bundles,
                resolver,
                sessions,
                state: ArcSwap::from_pointee(Generation {
                    generations,
                    config: Arc::new(config),
                }),
            }),
        })
    }

    /// The configuration for a new connection: the cached one, or a new one when an advertised
    /// bundle changed since it was built (a failed rebuild keeps the previous configuration).
    pub fn current(&self) -> Arc<ServerConfig> {
        let inner = &self.inner;
        let state = inner.state.load();
        let generations = current_generations(&inner.bundles);
        if generations == state.generations {
            return Arc::clone(&state.config);
        }
        match build(&inner.bundles, &inner.resolver, &inner.sessions) {
            Ok(config) => {
                let config = Arc::new(config);
                inner.state.store(Arc::new(Generation {
                    generations,
                    config: Arc::clone(&config),
                }));
                tracing::info!(target: "kube_authn::serve", "client CA bundle changed: advertising its new names to new connections");
                config
            }
            Err(e) => {
                tracing::error!(target: "kube_authn::serve", error = %e, "unable to rebuild the TLS configuration; keeping the previous one");
                Arc::clone(&state.config)
            }
        }
    }
}

fn current_generations(bundles: &[CaBundle]) -> Vec<u64> {
    bundles.iter().map(|b| b.current().generation()).collect()
}

fn build(
    bundles: &[CaBundle],
    resolver: &Arc<dyn ResolvesServerCert>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<ServerConfig, rustls::Error> {
    let mut verifier = RequestClientCert::new();
    for bundle in bundles {
        verifier = verifier.advertise(&bundle.current());
    }
    let mut config = super::serving::config_builder()?
        .with_client_cert_verifier(verifier.into_arc())
        .with_cert_resolver(Arc::clone(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::clone(sessions);
    Ok(config)
}
