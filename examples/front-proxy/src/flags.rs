//! Command-line flags, named as kube-apiserver names the same settings.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// An authenticating front proxy: authenticates users with kube-authn and forwards their
/// requests to a Kubernetes API server as the front-proxy client, with the user in
/// `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-*`.
#[derive(Debug, Parser)]
#[command(name = "front-proxy", version, about, long_about = None)]
pub(crate) struct Flags {
    /// The port on which to serve HTTPS.
    #[arg(long, default_value_t = 8443)]
    pub(crate) secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind_address: IpAddr,
    /// File containing the x509 certificate for HTTPS (intermediates, if any, concatenated
    /// after it). Reloaded when it changes.
    #[arg(long, required = true)]
    pub(crate) tls_cert_file: PathBuf,
    /// File containing the x509 private key matching --tls-cert-file.
    #[arg(long, required = true)]
    pub(crate) tls_private_key_file: PathBuf,

    /// Authenticates users with the bearer tokens of this file (`token,user,uid,"group1,group2"`).
    #[arg(long)]
    pub(crate) token_auth_file: Option<PathBuf>,
    /// Authenticates users with HTTP basic and the passwords of this file
    /// (`password,user,uid,"group1,group2"`).
    #[arg(long)]
    pub(crate) basic_auth_file: Option<PathBuf>,
    /// Authenticates users by a client certificate signed by one of the authorities in this
    /// file (common name: user, organizations: groups).
    #[arg(long)]
    pub(crate) client_ca_file: Option<PathBuf>,

    /// The API server to forward to (https only; a path, if any, is prepended to every request
    /// path).
    #[arg(long, default_value = "https://127.0.0.1:6443", value_parser = parse_upstream)]
    pub(crate) upstream: reqwest::Url,
    /// The CA bundle that signed the upstream's serving certificate (the only roots trusted for
    /// the upstream).
    #[arg(long, required = true)]
    pub(crate) upstream_ca_file: PathBuf,
    /// Headers the upstream trusts for identity besides the standard X-Remote-* ones (its
    /// non-standard --requestheader-username/uid/group-headers): removed from every client
    /// request, so no client can speak for itself through this proxy (not a kube-apiserver flag).
    #[arg(long, value_delimiter = ',')]
    pub(crate) strip_request_headers: Vec<String>,
    /// Header prefixes the upstream trusts for extra values besides X-Remote-Extra- (its
    /// --requestheader-extra-headers-prefix): removed from every client request.
    #[arg(long, value_delimiter = ',')]
    pub(crate) strip_request_header_prefixes: Vec<String>,
    /// Client certificate the proxy presents to the upstream: it must verify against the
    /// upstream's --requestheader-client-ca-file (and have a common name in its
    /// --requestheader-allowed-names).
    #[arg(long, required = true)]
    pub(crate) proxy_client_cert_file: PathBuf,
    /// Private key for --proxy-client-cert-file.
    #[arg(long, required = true)]
    pub(crate) proxy_client_key_file: PathBuf,
}

impl Flags {
    /// Whether any user authentication is configured.
    pub(crate) fn any_authentication(&self) -> bool {
        self.token_auth_file.is_some()
            || self.basic_auth_file.is_some()
            || self.client_ca_file.is_some()
    }
}

/// An `https` URL without credentials, query or fragment; a trailing `/` is dropped.
fn parse_upstream(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "the scheme must be https (identity headers are trusted only over mutual TLS), not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query or a fragment".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn upstream_must_be_plain_https() {
        assert!(parse_upstream("https://127.0.0.1:6443").is_ok());
        assert!(parse_upstream("https://api.example:6443/prefix/").is_ok());
        for (bad, why) in [
            ("http://127.0.0.1:6443", "scheme"),
            ("127.0.0.1:6443", "URL"),
            ("https://u:p@127.0.0.1", "credentials"),
            ("https://127.0.0.1/?a=b", "query"),
            ("nonsense", "URL"),
        ] {
            let err = parse_upstream(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn required_flags_are_required() {
        let err = Flags::try_parse_from(["front-proxy", "--token-auth-file=t.csv"]).unwrap_err();
        let text = err.to_string();
        for flag in [
            "--tls-cert-file",
            "--tls-private-key-file",
            "--upstream-ca-file",
            "--proxy-client-cert-file",
            "--proxy-client-key-file",
        ] {
            assert!(text.contains(flag), "{flag} missing from: {text}");
        }
        let flags = Flags::try_parse_from([
            "front-proxy",
            "--tls-cert-file=s.crt",
            "--tls-private-key-file=s.key",
            "--upstream-ca-file=ca.crt",
            "--proxy-client-cert-file=p.crt",
            "--proxy-client-key-file=p.key",
        ])
        .unwrap();
        assert_eq!(flags.secure_port, 8443);
        assert_eq!(flags.upstream.as_str(), "https://127.0.0.1:6443/");
        assert!(!flags.any_authentication());
    }
}
