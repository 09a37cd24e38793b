//! rustls server side: the client-certificate policy ([`RequestClientCert`]), the
//! hot-reloaded serving certificate ([`ServingCert`]), the `ServerConfig` builder
//! ([`TlsConfigBuilder`]), the accept loop ([`serve`]) and its connection-level half
//! ([`Acceptor`]) for servers with their own loop.

mod serve;
mod serving;
mod source;
mod verifier;

pub use serve::{Accepted, Acceptor, ConnectionService, Serve, serve};
pub use serving::{ServingCert, ServingCertError, TlsConfigBuilder};
pub use source::{ReloadingServerConfig, TlsSource};
pub use verifier::RequestClientCert;

#[cfg(test)]
mod tests;
