//! [`Authenticator`]: the assembled chain, and [`AuthnBuilder`] that assembles it.

use std::path::PathBuf;
use std::sync::Arc;

use kube_authn_core::reload::ReloadOptions;
use kube_authn_core::{
    Anonymous, AuthenticatePassword, AuthenticateRequest, AuthenticateToken,
    AuthenticatedGroupAdder, AuthnFuture, BasicAuth, BearerToken, RequestOutcome, TokenUnion,
    Union, WebSocketProtocol, WithAnonymous,
};
use kube_authn_static::{PasswordFile, TokenFile};

use crate::{AuthnConfig, AuthnLayer};

/// The authentication chain Kubernetes assembles: request authenticators in order (custom ones,
/// HTTP basic), then the token authenticators read from `Authorization: Bearer` and then from
/// the websocket protocol, all in one union; `system:authenticated` added to every user; then
/// anonymous, only when no authenticator errored.
#[derive(Clone, Debug)]
pub struct Authenticator {
    inner: Inner,
    #[cfg(feature = "x509")]
    ca_bundles: Vec<kube_authn_x509::CaBundle>,
}

impl Authenticator {
    /// The CA bundles of the certificate-based authenticators (client CA, request-header CA):
    /// a TLS server requests client certificates when this is not empty, and may advertise
    /// their subjects.
    #[cfg(feature = "x509")]
    pub fn ca_bundles(&self) -> &[kube_authn_x509::CaBundle] {
        &self.ca_bundles
    }
}

/// Where a CA bundle comes from.
#[cfg(feature = "x509")]
enum CaSource {
    File(PathBuf),
    Bundle(kube_authn_x509::CaBundle),
}

#[cfg(feature = "x509")]
impl CaSource {
    /// The bundle; a file is named `<purpose>::<file>` in messages, as Kubernetes names it.
    fn bundle(
        self,
        purpose: &'static str,
        reload: Option<&ReloadOptions>,
    ) -> Result<kube_authn_x509::CaBundle, BuildError> {
        let path = match self {
            CaSource::Bundle(b) => return Ok(b),
            CaSource::File(path) => path,
        };
        match reload {
            Some(options) => kube_authn_x509::CaBundle::watch_for(purpose, &path, options.clone()),
            None => kube_authn_x509::CaBundle::load_for(purpose, &path),
        }
        .map_err(|e| BuildError::Strategy {
            strategy: "CA bundle",
            source: Box::new(e),
        })
    }
}

#[derive(Clone, Debug)]
enum Inner {
    Plain(AuthenticatedGroupAdder<Union>),
    Anonymous(WithAnonymous<AuthenticatedGroupAdder<Union>>),
}

impl AuthenticateRequest for Authenticator {
    fn authenticate_request(
        &self,
        parts: kube_authn_core::RequestHead,
    ) -> AuthnFuture<RequestOutcome> {
        match &self.inner {
            Inner::Plain(a) => a.authenticate_request(parts),
            Inner::Anonymous(a) => a.authenticate_request(parts),
        }
    }

    fn name(&self) -> &'static str {
        "chain"
    }
}

/// Why a chain could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A strategy's file or settings were refused.
    #[error("{strategy}: {source}")]
    Strategy {
        /// Which strategy.
        strategy: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// No strategy and no anonymous access: every request would be refused, where
    /// kube-apiserver, with no authenticator at all, disables authentication and lets every
    /// request through with no user. Neither is assumed: serve without the layer to disable
    /// authentication.
    #[error(
        "no authentication strategy is configured and anonymous access is disabled: \
         kube-apiserver would disable authentication (every request passes with no user); \
         configure a strategy or anonymous access, or serve without the authentication layer"
    )]
    NothingConfigured,
}

/// Builds an [`AuthnLayer`] over an [`Authenticator`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("tokens.csv");
/// # std::fs::write(&path, "s3cret,alice,1,\"devs\"\n")?;
/// use kube_authn::AuthnLayer;
/// let layer = AuthnLayer::builder()
///     .token_file(&path)   // watched and hot-reloaded
///     .anonymous(false)    // the default
///     .build()?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Default)]
#[must_use]
pub struct AuthnBuilder {
    requests: Vec<Arc<dyn AuthenticateRequest>>,
    tokens: Vec<Arc<dyn AuthenticateToken>>,
    passwords: Vec<Arc<dyn AuthenticatePassword>>,
    token_files: Vec<PathBuf>,
    password_files: Vec<PathBuf>,
    anonymous: Option<Anonymous>,
    api_audiences: Vec<String>,
    reload: Option<ReloadOptions>,
    basic_realm: Option<Option<String>>,
    #[cfg(feature = "x509")]
    client_cas: Vec<CaSource>,
    #[cfg(feature = "x509")]
    request_header: Option<(CaSource, kube_authn_x509::RequestHeaderConfig)>,
}

impl std::fmt::Debug for AuthnBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthnBuilder")
            .field("token_files", &self.token_files)
            .field("password_files", &self.password_files)
            .field("anonymous", &self.anonymous.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthnBuilder {
    /// An empty builder: no strategy, anonymous off, files hot-reloaded.
    pub fn new() -> Self {
        Self {
            reload: Some(ReloadOptions::default()),
            ..Self::default()
        }
    }

    /// Adds a static token file (`token,user,uid,"group1,group2"`).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_files.push(path.into());
        self
    }

    /// Adds a static password file for HTTP basic (`password,user,uid,"group1,group2"`).
    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password_files.push(path.into());
        self
    }

    /// Authenticates client certificates that verify against the CA bundle at `path`
    /// (kube-apiserver `--client-ca-file`; the file is watched like the others).
    #[cfg(feature = "x509")]
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_cas.push(CaSource::File(path.into()));
        self
    }

    /// Authenticates client certificates that verify against `bundle`.
    #[cfg(feature = "x509")]
    pub fn client_ca(mut self, bundle: kube_authn_x509::CaBundle) -> Self {
        self.client_cas.push(CaSource::Bundle(bundle));
        self
    }

    /// Trusts the identity headers of `config` from clients whose certificate verifies against
    /// the CA bundle at `path` (kube-apiserver `--requestheader-client-ca-file` and friends).
    #[cfg(feature = "x509")]
    pub fn request_header_ca_file(
        mut self,
        path: impl Into<PathBuf>,
        config: kube_authn_x509::RequestHeaderConfig,
    ) -> Self {
        self.request_header = Some((CaSource::File(path.into()), config));
        self
    }

    /// Trusts the identity headers of `config` from clients whose certificate verifies against
    /// `bundle`.
    #[cfg(feature = "x509")]
    pub fn request_header(
        mut self,
        bundle: kube_authn_x509::CaBundle,
        config: kube_authn_x509::RequestHeaderConfig,
    ) -> Self {
        self.request_header = Some((CaSource::Bundle(bundle), config));
        self
    }

    /// Adds a token authenticator (read from bearer and websocket tokens, after the token files).
    pub fn token(mut self, auth: impl AuthenticateToken) -> Self {
        self.tokens.push(Arc::new(auth));
        self
    }

    /// Adds a password authenticator (read from HTTP basic credentials).
    pub fn password(mut self, auth: impl AuthenticatePassword) -> Self {
        self.passwords.push(Arc::new(auth));
        self
    }

    /// Adds a request authenticator; request authenticators run before the token chain, in the
    /// order they were added.
    pub fn request(mut self, auth: impl AuthenticateRequest) -> Self {
        self.requests.push(Arc::new(auth));
        self
    }

    /// Enables or disables anonymous access for every path (default: disabled).
    pub fn anonymous(mut self, enabled: bool) -> Self {
        self.anonymous = enabled.then(Anonymous::new);
        self
    }

    /// Enables anonymous access only for these exact paths: the paths as the layer sees them
    /// (inside axum's `Router::nest`, without the nest's prefix; see
    /// [`Anonymous::with_paths`](crate::core::Anonymous::with_paths)).
    pub fn anonymous_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.anonymous = Some(Anonymous::with_paths(paths));
        self
    }

    /// Sets the API audiences (`--api-audiences`).
    pub fn api_audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// How files are watched; `None` loads them once without watching (default: watched with
    /// [`ReloadOptions::default`]).
    pub fn reload(mut self, options: Option<ReloadOptions>) -> Self {
        self.reload = options;
        self
    }

    /// The builder of a configuration.
    pub fn from_config(config: &AuthnConfig) -> Self {
        let mut b = Self::new();
        b.token_files.extend(config.token_auth_file.iter().cloned());
        b.password_files
            .extend(config.basic_auth_file.iter().cloned());
        if config.anonymous.enabled {
            b.anonymous = Some(Anonymous::with_paths(
                config.anonymous.conditions.iter().map(|c| c.path.clone()),
            ));
        }
        b.api_audiences = config.api_audiences.clone();
        if !config.reload.0 {
            b.reload = None;
        }
        #[cfg(feature = "x509")]
        {
            b.client_cas
                .extend(config.client_ca_file.iter().cloned().map(CaSource::File));
            if let Some(rh) = &config.request_header {
                let headers = kube_authn_x509::RequestHeaderConfig::new()
                    .username_headers(rh.username_headers.iter().cloned())
                    .uid_headers(rh.uid_headers.iter().cloned())
                    .group_headers(rh.group_headers.iter().cloned())
                    .extra_headers_prefix(rh.extra_headers_prefix.iter().cloned())
                    .allowed_names(rh.allowed_names.iter().cloned());
                b.request_header = Some((CaSource::File(rh.client_ca_file.clone()), headers));
            }
        }
        b
    }

    /// Loads the files (each must load) and assembles the chain.
    pub fn build_authenticator(self) -> Result<Authenticator, BuildError> {
        let mut tokens: Vec<Arc<dyn AuthenticateToken>> = Vec::new();
        for path in &self.token_files {
            let file = match &self.reload {
                Some(options) => TokenFile::watch(path, options.clone()),
                None => TokenFile::load(path),
            }
            .map_err(|e| BuildError::Strategy {
                strategy: "token file",
                source: Box::new(e),
            })?;
            tokens.push(Arc::new(file));
        }
        tokens.extend(self.tokens);

        let mut passwords: Vec<Arc<dyn AuthenticatePassword>> = Vec::new();
        for path in &self.password_files {
            let file = match &self.reload {
                Some(options) => PasswordFile::watch(path, options.clone()),
                None => PasswordFile::load(path),
            }
            .map_err(|e| BuildError::Strategy {
                strategy: "password file",
                source: Box::new(e),
            })?;
            passwords.push(Arc::new(file));
        }
        passwords.extend(self.passwords);

        // Kubernetes order: front proxy and custom request authenticators, basic auth, x509,
        // then the token chain (bearer, then websocket).
        let mut members: Vec<Arc<dyn AuthenticateRequest>> = Vec::new();
        #[cfg(feature = "x509")]
        let mut ca_bundles = Vec::new();
        #[cfg(feature = "x509")]
        if let Some((source, config)) = self.request_header {
            for warning in config.validate().map_err(|e| BuildError::Strategy {
                strategy: "request header",
                source: Box::new(e),
            })? {
                tracing::warn!("{warning}");
            }
            let bundle = source.bundle(
                kube_authn_x509::REQUEST_HEADER_PURPOSE,
                self.reload.as_ref(),
            )?;
            ca_bundles.push(bundle.clone());
            let proxy =
                kube_authn_x509::RequestHeaderAuthenticator::new(bundle, &config).map_err(|e| {
                    BuildError::Strategy {
                        strategy: "request header",
                        source: Box::new(e),
                    }
                })?;
            members.push(Arc::new(proxy));
        }
        members.extend(self.requests);
        for p in passwords {
            members.push(Arc::new(BasicAuth::new(p)));
        }
        #[cfg(feature = "x509")]
        for source in self.client_cas {
            let bundle = source.bundle(kube_authn_x509::CLIENT_CA_PURPOSE, self.reload.as_ref())?;
            ca_bundles.push(bundle.clone());
            members.push(Arc::new(kube_authn_x509::X509Authenticator::new(bundle)));
        }
        if !tokens.is_empty() {
            let chain: Arc<dyn AuthenticateToken> = if tokens.len() == 1 {
                tokens.remove(0)
            } else {
                Arc::new(TokenUnion::new(tokens))
            };
            members.push(Arc::new(BearerToken::new(Arc::clone(&chain))));
            members.push(Arc::new(WebSocketProtocol::new(chain)));
        }
        if members.is_empty() && self.anonymous.is_none() {
            return Err(BuildError::NothingConfigured);
        }
        let chain = AuthenticatedGroupAdder::new(Union::new(members));
        let inner = match self.anonymous {
            Some(anonymous) => Inner::Anonymous(WithAnonymous::new(chain, anonymous)),
            None => Inner::Plain(chain),
        };
        Ok(Authenticator {
            inner,
            #[cfg(feature = "x509")]
            ca_bundles,
        })
    }

    /// Answers with `WWW-Authenticate: Basic realm="kubernetes-master"`, as kube-apiserver did
    /// while it accepted basic credentials. Default: only when a password file or password
    /// authenticator is configured.
    pub fn basic_realm(mut self, realm: Option<&str>) -> Self {
        self.basic_realm = Some(realm.map(ToOwned::to_owned));
        self
    }

    /// Loads the files and builds the layer.
    pub fn build(self) -> Result<AuthnLayer, BuildError> {
        let audiences = self.api_audiences.clone();
        let has_passwords = !self.password_files.is_empty() || !self.passwords.is_empty();
        let realm = match self.basic_realm.clone() {
            Some(realm) => realm,
            None => has_passwords.then(|| "kubernetes-master".to_owned()),
        };
        let mut layer = AuthnLayer::new(self.build_authenticator()?);
        if !audiences.is_empty() {
            layer = layer.api_audiences(audiences);
        }
        if let Some(realm) = realm {
            layer = layer.basic_realm(&realm);
        }
        Ok(layer)
    }
}
