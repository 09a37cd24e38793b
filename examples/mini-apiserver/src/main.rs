//! `mini-apiserver`: a small kube-apiserver look-alike that authenticates with kube-authn.
//!
//! It speaks enough of the Kubernetes API for real clients (kubectl, the Python client, a
//! browser websocket): discovery, `SelfSubjectReview` (`kubectl auth whoami`), pods in memory
//! with watch, and pod logs with follow, over chunked HTTP and websocket. It takes the
//! kube-apiserver flags of the strategies that are built, and refuses the others.

#![forbid(unsafe_code)]

mod api;
mod flags;
mod policy;
mod selector;
mod store;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube_authn::{AuthnBuilder, AuthnConfig, AuthnLayer};

use crate::flags::Flags;
use crate::tls::BoxError;

/// The log filter when `RUST_LOG` is not set: `info`, plus why a credential was refused (the
/// library logs those at debug level under these targets, never with the credential): a
/// request answered 401 (`kube_authn::rejected`), a client certificate (`kube_authn::x509`)
/// or a proxy certificate (`kube_authn::requestheader`) that did not verify, with the reason
/// (unknown authority, expired, not yet valid, incompatible usage).
/// How often the Prometheus recorder's histogram observations are drained into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(1);

const DEFAULT_LOG_FILTER: &str =
    "info,kube_authn::rejected=debug,kube_authn::x509=debug,kube_authn::requestheader=debug";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
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

/// Whether the YAML configuration at `path` (already read and validated) has an `anonymous`
/// block: then it, not `--anonymous-auth`, decides anonymous access.
fn sets_anonymous(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            serde_saphyr::from_str::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(
                &text,
            )
            .ok()
        })
        .is_some_and(|top| top.contains_key("anonymous"))
}

/// The demo token file written when no authentication flag is given.
fn demo_token_file(dir: &Path) -> Result<PathBuf, BoxError> {
    let path = dir.join("demo-tokens.csv");
    let existing = std::fs::read_to_string(&path).ok().is_some_and(|text| {
        text.lines()
            .next()
            .and_then(|l| l.split(',').next())
            .is_some_and(|t| !t.is_empty())
    });
    if existing {
        return Ok(path);
    }
    let mut bytes = [0u8; 24];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "unable to generate a random token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(dir)?;
    // A system:masters token: readable by its owner only, as the serving key.
    tls::write_private(
        &path,
        format!("{token},admin,admin-uid,\"system:masters\"\n").as_bytes(),
    )?;
    Ok(path)
}

/// `path` quoted for a POSIX shell.
fn shell_quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// `--cert-dir`, or when it is the default `/var/run/kubernetes` and cannot be written (not
/// root), `./apiserver.local.config/certificates` as Kubernetes' sample API servers use.
fn usable_cert_dir(dir: &Path) -> PathBuf {
    let default = Path::new(flags::DEFAULT_CERT_DIR);
    let given = flags::given("--cert-dir");
    if given || dir != default || std::fs::create_dir_all(dir).is_ok_and(|()| writable(dir)) {
        return dir.to_owned();
    }
    let fallback = PathBuf::from("apiserver.local.config/certificates");
    eprintln!(
        "{} is not writable: using {} for certificates",
        dir.display(),
        fallback.display()
    );
    fallback
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".write-test");
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

async fn run(flags: Flags) -> Result<(), BoxError> {
    if let Some((flag, why)) = flags.later.refused() {
        return Err(format!("flag {flag} is not supported by this build: {why}").into());
    }
    // The recorder first: layers take their metric handles when they are built.
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Kubernetes' buckets for its authentication histograms.
    let duration_buckets: Vec<f64> = (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect();
    let expiration_buckets = [
        0.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0, 345600.0, 604800.0,
        2592000.0, 7776000.0, 15552000.0, 31104000.0,
    ];
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("authentication_duration_seconds".into()),
            &duration_buckets,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("apiserver_client_certificate_expiration_seconds".into()),
                &expiration_buckets,
            )
        })
        .map_err(|e| format!("unable to configure the metrics recorder: {e}"))?
        .install_recorder()
        .map_err(|e| format!("unable to install the metrics recorder: {e}"))?;
    let metrics = Arc::new(metrics);
    spawn_metrics_upkeep(Arc::clone(&metrics), METRICS_UPKEEP);

    let cert_dir = usable_cert_dir(&flags.cert_dir);
    let serving = tls::serving_cert(
        flags.tls_cert_file.as_deref(),
        flags.tls_private_key_file.as_deref(),
        &cert_dir,
    )?;
    let serving_cert = kube_authn::x509::ServingCert::watch(
        &serving.cert_file,
        &serving.key_file,
        kube_authn::reload::ReloadOptions::default(),
    )
    .map_err(|e| format!("serving certificate: {e}"))?;

    let (config, file_sets_anonymous) = match &flags.config {
        Some(path) => (AuthnConfig::from_file(path)?, sets_anonymous(path)),
        None => (AuthnConfig::default(), false),
    };
    let mut builder = AuthnBuilder::from_config(&config);
    let mut demo_token = None;
    let any_strategy = flags.token_auth_file.is_some()
        || flags.basic_auth_file.is_some()
        || flags.client_ca_file.is_some()
        || flags.requestheader_client_ca_file.is_some()
        || config.client_ca_file.is_some()
        || config.request_header.is_some()
        || config.token_auth_file.is_some()
        || config.basic_auth_file.is_some();
    if let Some(path) = &flags.token_auth_file {
        builder = builder.token_file(path);
    }
    if let Some(path) = &flags.basic_auth_file {
        builder = builder.password_file(path);
    }
    if let Some(path) = &flags.client_ca_file {
        builder = builder.client_ca_file(path);
    }
    if let Some(path) = &flags.requestheader_client_ca_file {
        let headers = kube_authn::x509::RequestHeaderConfig::new()
            .username_headers(flags.requestheader_username_headers.iter().cloned())
            .uid_headers(flags.requestheader_uid_headers.iter().cloned())
            .group_headers(flags.requestheader_group_headers.iter().cloned())
            .extra_headers_prefix(flags.requestheader_extra_headers_prefix.iter().cloned())
            .allowed_names(flags.requestheader_allowed_names.iter().cloned());
        builder = builder.request_header_ca_file(path, headers);
    } else if !flags.requestheader_username_headers.is_empty()
        || !flags.requestheader_uid_headers.is_empty()
        || !flags.requestheader_group_headers.is_empty()
        || !flags.requestheader_extra_headers_prefix.is_empty()
        || !flags.requestheader_allowed_names.is_empty()
    {
        eprintln!(
            "warning: --requestheader-* flags are ignored without --requestheader-client-ca-file"
        );
    }
    if !any_strategy {
        let path = demo_token_file(&cert_dir)?;
        builder = builder.token_file(&path);
        demo_token = Some(path);
    }
    // As kube-apiserver with an authentication configuration: anonymous access is set by the
    // file or by the flag (default true), never both.
    match (file_sets_anonymous, flags.anonymous_auth_given()) {
        (true, true) => {
            // Kubernetes' message, its spelling included.
            return Err(
                "--anonynous-auth flag cannot be set when anonymous field is configured in \
                 authentication configuration file"
                    .into(),
            );
        }
        (true, false) => {}
        (false, _) => builder = builder.anonymous(flags.anonymous_auth),
    }
    if !flags.api_audiences.is_empty() {
        builder = builder.api_audiences(flags.api_audiences.clone());
    }
    let authn: AuthnLayer = builder.build()?;

    // Client certificates are requested (never required) when a certificate-based
    // authenticator is configured, as kube-apiserver does.
    let ca_bundles = authn.authenticator().ca_bundles();
    let mut tls_builder = kube_authn::x509::TlsConfigBuilder::new(serving_cert)
        .request_client_certificates(!ca_bundles.is_empty());
    for bundle in ca_bundles {
        tls_builder = tls_builder.advertise_client_ca(bundle);
    }
    let tls_config = tls_builder.build_reloading()?;

    let addr = SocketAddr::new(flags.bind_address, flags.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("unable to listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;

    let store = store::Store::new();
    store.spawn_simulator(Duration::from_millis(flags.log_line_interval_ms));
    let state = api::AppState {
        store,
        metrics,
        server_address: local.to_string(),
    };
    let app = policy::Policy::new(api::router(state), flags.disable_authentication);

    let host = match local.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let server = format!("https://{host}:{}", local.port());
    if let Some(ca) = &serving.ca_file {
        eprintln!(
            "Generated a self-signed CA: trust {} (kubectl --certificate-authority, curl --cacert)",
            ca.display()
        );
    }
    if let Some(path) = &demo_token {
        let ca = serving
            .ca_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<your CA>".into());
        // The lines read the token from the file rather than holding it: logs are kept, and a
        // system:masters token does not belong in them.
        let token = format!("$(cut -d, -f1 {})", shell_quoted(path));
        eprintln!(
            "No authentication flags: using the demo token file {} (user admin, group system:masters)",
            path.display()
        );
        eprintln!(
            "  kubectl --server {server} --certificate-authority {ca} --token \"{token}\" auth whoami"
        );
        eprintln!(
            "  curl --cacert {ca} -H \"Authorization: Bearer {token}\" {server}/api/v1/namespaces/default/pods"
        );
    }
    println!("Serving securely on {local}");
    if flags.disable_authentication {
        eprintln!("Authentication is disabled (--disable-authentication)");
        kube_authn::x509::serve(listener, tls_config, app).await?;
    } else {
        // One authentication service around the whole router (rather than `Router::layer`,
        // which wraps every route and boxes the body once more per request).
        let app = tower_layer::Layer::layer(&authn, app);
        kube_authn::x509::serve(listener, tls_config, app)
            .close_unauthenticated_http2(flags.feature_gates().unauthenticated_http2_dos_mitigation)
            .await?;
    }
    Ok(())
}

/// Drains the recorder's histogram observations every `every`.
///
/// The Prometheus recorder keeps each histogram observation until something drains it: a
/// scrape of `/metrics`, or this upkeep (`install_recorder` leaves it to the caller). The x509
/// authenticator observes `apiserver_client_certificate_expiration_seconds` on every request,
/// as Kubernetes does, so without it a server nobody scrapes grows by ~16 bytes a request
/// (measured: 8.8 to 55 MiB over 2.7 million mTLS requests).
fn spawn_metrics_upkeep(
    handle: Arc<metrics_exporter_prometheus::PrometheusHandle>,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
