//! Client certificates and the authenticating proxy for kube-authn, and the rustls server
//! helpers they need.
//!
//! - [`X509Authenticator`] mirrors kube-apiserver's `--client-ca-file` (Kubernetes
//!   `pkg/authentication/request/x509`): the client certificate chain must verify against the
//!   authenticator's own CA pool with the client-auth usage; the common name is the user, each
//!   organization a group.
//! - [`RequestHeaderAuthenticator`] mirrors `--requestheader-*` (the authenticating proxy,
//!   `headerrequest` behind `x509.Verifier`): identity headers trusted only from a connection
//!   that proved a certificate of the request-header CA (and an allowed common name).
//! - [`CaBundle`]: CA files that hot-reload (a bad bundle keeps the pool in force).
//! - TLS: [`RequestClientCert`] (request, do not require, a client certificate; prove key
//!   possession; leave chain verification to the authenticators), [`ServingCert`]
//!   (hot-reloaded serving certificate), [`TlsConfigBuilder`] and [`serve`], an accept loop
//!   that puts [`PeerCertificates`] and the peer address into every request; [`Acceptor`] is
//!   its connection-level half for servers that run their own accept loop.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use kube_authn_core::{AuthnLayer, UserInfo};
//! use kube_authn_x509::{CaBundle, PeerCertificates, X509Authenticator};
//! use kube_authn_testing::TestPki;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let pki = TestPki::shared();
//! // In a server: CaBundle::watch("/etc/kubernetes/pki/ca.crt", ReloadOptions::default())?
//! let ca = CaBundle::from_pem("ca.crt", pki.client_ca.cert_pem().as_bytes())?;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(AuthnLayer::new(X509Authenticator::new(ca)))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<UserInfo>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(user.username.clone()))
//!     }));
//!
//! // `serve` inserts the connection's chain into each request; here it is done by hand.
//! let mut req = Request::get("/").body(String::new()).unwrap();
//! req.extensions_mut().insert(PeerCertificates::new(pki.jbeda.chain()));
//! let ok = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! let mut req = Request::get("/").body(String::new()).unwrap();
//! req.extensions_mut().insert(PeerCertificates::new(pki.other_ca_client.chain()));
//! let denied = svc.oneshot(req).await.unwrap();
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! # });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security
//! - Each authenticator verifies chains against its own pool: a certificate of the client CA
//!   is not a proxy certificate, and a proxy certificate is not a user certificate (unless the
//!   operator uses the same CA for both, which Kubernetes warns against).
//! - The TLS layer proves the client holds the leaf's private key; it does not judge the
//!   chain. Never use [`RequestClientCert`] without an authenticator that verifies chains.
//! - A chain is verified once per connection and CA generation; validity dates are checked on
//!   every request, so a certificate that expires during a long connection stops working.
//! - Authenticating-proxy headers are removed from every request the
//!   [`RequestHeaderAuthenticator`] sees, whether or not the connection proved the proxy
//!   certificate; wrap a chain without it in [`ClearAuthenticationHeaders`].
//! - Verification is rustls-webpki's, with Go's extended key usage rules; see
//!   [`X509Authenticator`] for the differences from Go.

#![forbid(unsafe_code)]

mod der;
mod identity;
mod peer;
mod pool;
mod request_header;
mod tls;
mod verify;
mod x509;

#[cfg(test)]
mod testing;

pub use identity::credential_id;
pub use peer::PeerCertificates;
pub use pool::{CLIENT_CA_PURPOSE, CaBundle, CaBundleError, CaPool, REQUEST_HEADER_PURPOSE};
pub use request_header::{
    ClearAuthenticationHeaders, RequestHeaderAuthenticator, RequestHeaderConfig,
    RequestHeaderConfigError, RequestHeaderConfigWarning, STANDARD_EXTRA_PREFIX,
    STANDARD_GROUP_HEADER, STANDARD_UID_HEADER, STANDARD_USERNAME_HEADER,
};
pub use tls::{
    Accepted, Acceptor, ConnectionService, ReloadingServerConfig, RequestClientCert, Serve,
    ServingCert, ServingCertError, TlsConfigBuilder, TlsSource, serve,
};
pub use verify::RequiredUsage;
pub use x509::{Clock, X509Authenticator};
