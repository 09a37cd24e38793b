//! `front-proxy`: an authenticating front proxy built on kube-authn.
//!
//! The chain, as Kubernetes runs it with an authenticating proxy in front of kube-apiserver:
//!
//! ```text
//! client ──TLS──> front-proxy ──mutual TLS (front-proxy client cert)──> API server
//!   Authorization: Bearer …     X-Remote-User: alice
//!   (or basic, or a client      X-Remote-Group: devs
//!    certificate)               X-Remote-Group: system:authenticated
//!                               X-Remote-Extra-<key>: <value>
//! ```
//!
//! 1. The proxy serves TLS ([`kube_authn::x509::serve`]) and authenticates every request with
//!    an [`AuthnLayer`] built from `--token-auth-file`, `--basic-auth-file` and/or
//!    `--client-ca-file` (anonymous access is off: a request nobody vouches for is `401` with
//!    the Kubernetes `Status` body, and never reaches the upstream).
//! 2. It forwards the request to `--upstream` with the same method, path, query and body, and
//!    the client's end-to-end headers, except `Authorization` (the credential was for the
//!    proxy) and every `X-Remote-*` header the client sent (a client never speaks for itself).
//! 3. It adds the authenticated user as Kubernetes' `SetAuthProxyHeaders` does:
//!    `X-Remote-User`, `X-Remote-Uid` (when the user has one), one `X-Remote-Group` per group,
//!    and one `X-Remote-Extra-<key>` per extra value (the key lower-cased and escaped as
//!    client-go's `headerKeyEscape` does, which the API server undoes with `url.PathUnescape`).
//! 4. It connects upstream with `--proxy-client-cert-file`/`--proxy-client-key-file`, trusting
//!    only `--upstream-ca-file`. The API server believes the headers only because that
//!    certificate verifies against its `--requestheader-client-ca-file` and its common name is
//!    in `--requestheader-allowed-names`; for anyone else it ignores and strips them.
//! 5. Responses stream back as they arrive, so `?watch=true` and `log?follow=true` work through
//!    the proxy. HTTP/1.1 upgrade requests (websocket, SPDY: exec, attach, port-forward) are
//!    forwarded over HTTP/1.1 and, once the upstream switches protocols, joined byte for byte
//!    (HTTP/2 extended `CONNECT` is answered `501`); an unreachable or failing upstream is
//!    `502`, both with a `Status` body.
//!
//! ```text
//! mini-apiserver --tls-cert-file=serving.crt --tls-private-key-file=serving.key \
//!   --anonymous-auth=false \
//!   --requestheader-client-ca-file=front-proxy-ca.crt \
//!   --requestheader-allowed-names=front-proxy-client \
//!   --requestheader-username-headers=X-Remote-User \
//!   --requestheader-group-headers=X-Remote-Group \
//!   --requestheader-extra-headers-prefix=X-Remote-Extra-
//! front-proxy --tls-cert-file=serving.crt --tls-private-key-file=serving.key --secure-port=8443 \
//!   --token-auth-file=tokens.csv \
//!   --upstream=https://127.0.0.1:6443 --upstream-ca-file=root-ca.crt \
//!   --proxy-client-cert-file=front-proxy-client.crt \
//!   --proxy-client-key-file=front-proxy-client.key
//! kubectl --server=https://127.0.0.1:8443 --certificate-authority=root-ca.crt \
//!   --token=<token> auth whoami
//! ```
//!
//! The serving certificate and the token, password and CA files are reloaded when they change;
//! the proxy client certificate is read at start.

#![forbid(unsafe_code)]

mod flags;
mod headers;
mod proxy;

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use clap::Parser;
use kube_authn::AuthnLayer;
use kube_authn::reload::ReloadOptions;
use kube_authn::x509::{ServingCert, TlsConfigBuilder};

use crate::flags::Flags;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: unable to start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> Result<(), BoxError> {
    if !flags.any_authentication() {
        return Err(
            "no way to authenticate users: give --token-auth-file, --basic-auth-file \
                    and/or --client-ca-file"
                .into(),
        );
    }
    let serving = ServingCert::watch(
        &flags.tls_cert_file,
        &flags.tls_private_key_file,
        ReloadOptions::default(),
    )
    .map_err(|e| format!("serving certificate: {e}"))?;

    let mut builder = AuthnLayer::builder().anonymous(false);
    if let Some(path) = &flags.token_auth_file {
        builder = builder.token_file(path);
    }
    if let Some(path) = &flags.basic_auth_file {
        builder = builder.password_file(path);
    }
    if let Some(path) = &flags.client_ca_file {
        builder = builder.client_ca_file(path);
    }
    let authn: AuthnLayer = builder.build()?;
    let strip = headers::Strip::new(
        &flags.strip_request_headers,
        &flags.strip_request_header_prefixes,
    )?;

    let clients = proxy::upstream_clients(
        &flags.upstream_ca_file,
        &flags.proxy_client_cert_file,
        &flags.proxy_client_key_file,
    )?;

    // Client certificates are requested (never required) only with --client-ca-file.
    let ca_bundles = authn.authenticator().ca_bundles();
    let mut tls =
        TlsConfigBuilder::new(serving).request_client_certificates(!ca_bundles.is_empty());
    for bundle in ca_bundles {
        tls = tls.advertise_client_ca(bundle);
    }
    let tls = tls.build_reloading()?;

    let app = Router::new()
        .fallback(proxy::forward)
        .with_state(proxy::Proxy::new(clients, &flags.upstream, strip))
        .layer(authn);

    let addr = SocketAddr::new(flags.bind_address, flags.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("unable to listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    eprintln!("Forwarding authenticated requests to {}", flags.upstream);
    println!("Serving securely on {local}");
    kube_authn::x509::serve(listener, tls, app).await?;
    Ok(())
}
