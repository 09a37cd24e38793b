//! rustls server side: the client-certificate policy ([`RequestClientCert`]), the
//! hot-reloaded serving certificate ([`ServingCert`]), the `ServerConfig` builder
//! ([`TlsConfigBuilder`]) and the accept loop ([`serve`]).

mod serve;
mod serving;
mod source;
mod verifier;

pub use serve::{Serve, serve};
pub use serving::{ServingCert, ServingCertError, TlsConfigBuilder};
pub use source::{ReloadingServerConfig, TlsSource};
pub use verifier::RequestClientCert;

#[cfg(test)]
mod tests;
