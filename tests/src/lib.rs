//! The end-to-end harness: start the example server as a process on 127.0.0.1 with real TLS,
//! and reach it with a rustls client or the real clients under `tests/peers/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A binary of the workspace, built by `cargo build --workspace --bins` before the tests run
/// (scripts/test.sh does it).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The preinstalled kubectl 1.33 (a real versioned binary, not the gcloud dispatcher).
pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// The Python of the peers' venv (scripts/install-test-deps.sh makes it).
pub fn python() -> PathBuf {
    let p = repo().join(".peers/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// The peers' folder (node scripts and their node_modules).
pub fn peers() -> PathBuf {
    let p = repo().join("tests/peers");
    assert!(
        p.join("node_modules").exists(),
        "tests/peers/node_modules is missing: run scripts/install-test-deps.sh"
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started binary that printed `Serving securely on ...`, with its stderr collected.
struct Spawned {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

/// Starts `bin` with `--secure-port=<free port>` and `args(port)` and waits until it prints
/// `Serving securely on`; retries on a port race, panics with its log otherwise.
/// `rust_log`: the `RUST_LOG` of the child; `None` removes it (the binary's default filter).
fn spawn_serving(bin: &str, rust_log: Option<&str>, args: impl Fn() -> Vec<String>) -> Spawned {
    spawn_command(bin, rust_log, args, &|| Command::new(binary(bin)))
}

/// [`spawn_serving`] with the command made by `command` (another working directory, another
/// user).
fn spawn_command(
    bin: &str,
    rust_log: Option<&str>,
    args: impl Fn() -> Vec<String>,
    command: &dyn Fn() -> Command,
) -> Spawned {
    for attempt in 0..5 {
        let port = free_port();
        let mut command = command();
        command
            .arg(format!("--secure-port={port}"))
            .args(args())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("Serving securely on") {
                    let _ = tx.send(());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => {
                return Spawned {
                    child,
                    port,
                    stderr,
                };
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = stderr.lock().unwrap().clone();
                if log.contains("Address already in use") && attempt < 4 {
                    continue;
                }
                panic!("{bin} did not start:\n{log}");
            }
        }
    }
    unreachable!()
}

/// Runs `bin` with `--secure-port=<free port>` and `args` until it exits (for refusals): its
/// exit status and stderr.
fn run_until_exit(bin: &str, args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(binary(bin))
        .arg(format!("--secure-port={}", free_port()))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{bin} did not exit with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `mini-apiserver`; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server with `args` (plus `--secure-port` and `--cert-dir` in a temp dir) and
    /// waits until it serves.
    pub fn start(args: &[&str]) -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Same, with files already written into `dir` (args may name them).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
        Self::start_logging(dir, args, Some("info,kube_authn=debug"))
    }

    /// [`Server::start_in`] without `RUST_LOG`: the server's own default log filter.
    pub fn start_with_default_log(dir: tempfile::TempDir, args: &[&str]) -> Server {
        Self::start_logging(dir, args, None)
    }

    fn start_logging(dir: tempfile::TempDir, args: &[&str], rust_log: Option<&str>) -> Server {
        let certs = dir.path().join("certs");
        let spawned = spawn_serving("mini-apiserver", rust_log, || {
            let mut all = vec![
                format!("--cert-dir={}", certs.display()),
                "--log-line-interval-ms=100".to_owned(),
            ];
            all.extend(args.iter().map(|a| (*a).to_owned()));
            all
        });
        Server {
            child: spawned.child,
            port: spawned.port,
            dir,
            stderr: spawned.stderr,
        }
    }

    /// Starts the server with `args` and no `--cert-dir` (its default, `/var/run/kubernetes`)
    /// in `dir` as working directory, as a user who cannot write the default: the current
    /// user when it is not root, else `nobody` (uid 65534, by `setpriv`), `dir` being made
    /// writable for it.
    pub fn start_unprivileged_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        if root {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let cwd = dir.path().to_owned();
        let command = move || {
            let mut command = if root {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(binary("mini-apiserver"));
                c
            } else {
                Command::new(binary("mini-apiserver"))
            };
            command.current_dir(&cwd);
            command
        };
        let spawned = spawn_command(
            "mini-apiserver",
            Some("info"),
            || args.iter().map(|a| (*a).to_owned()).collect(),
            &command,
        );
        Server {
            child: spawned.child,
            port: spawned.port,
            dir,
            stderr: spawned.stderr,
        }
    }

    /// Runs the server with `args` and returns its exit status and stderr (for refusals).
    pub fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![format!("--cert-dir={}", dir.path().display())];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run_until_exit("mini-apiserver", &all)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the server's stderr contains `needle` (at most `limit`), and returns it.
    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < limit,
                "no {needle:?} in the server's stderr within {limit:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A client that trusts the server's CA (rustls, aws-lc-rs).
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.ca_file())
    }

    /// Writes a file into the server's temp dir and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client trusting exactly `ca` (no system roots).
pub fn client_trusting(ca: &Path) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Writes `content` to `dir/name` and returns the path as a string.
pub fn write_file(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

/// The exact 401 body (compact, as API clients get it).
pub const UNAUTHORIZED: &str = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n";

/// A pod object to create.
pub fn pod(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

/// `GET url` with `Authorization: auth`, the answer's JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str, auth: &str) -> serde_json::Value {
    client
        .get(url)
        .header("Authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sends raw request bytes over TLS (HTTP/1.1, `Connection: close` expected in `head`) and
/// returns the status code, the response head and the body (de-chunked when needed).
pub async fn raw_request(server: &Server, request: &[u8]) -> (u16, String, String) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(server.ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        let mut decoded = String::new();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            decoded.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        decoded
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

// =============================================================================================
// front-proxy (examples/front-proxy) helpers, used by tests/tests/front_proxy.rs.
// Additive only: nothing above depends on this block.
// =============================================================================================

/// Writes the test PKI into `dir` with the repository's generator (`kube-authn-test-pki`, a
/// workspace binary: `<name>.crt`/`<name>.key` for every certificate of
/// `kube_authn_testing::TestPki`) and returns `dir`.
pub fn write_test_pki(dir: &Path) -> PathBuf {
    let out = Command::new(binary("kube-authn-test-pki"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kube-authn-test-pki failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_owned()
}

/// A running `front-proxy`; killed on drop.
pub struct FrontProxy {
    child: Child,
    pub port: u16,
    stderr: Arc<Mutex<String>>,
}

impl FrontProxy {
    /// Starts the proxy with `args` (plus `--secure-port`) and waits until it serves.
    pub fn start(args: &[&str]) -> FrontProxy {
        let spawned = spawn_serving(
            "front-proxy",
            Some("info,front_proxy=debug,kube_authn=debug"),
            || args.iter().map(|a| (*a).to_owned()).collect(),
        );
        FrontProxy {
            child: spawned.child,
            port: spawned.port,
            stderr: spawned.stderr,
        }
    }

    /// Runs the proxy with `args` and returns its exit status and stderr (for refusals).
    pub fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
        let all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        run_until_exit("front-proxy", &all)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// What the proxy logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rustls client configuration (aws-lc-rs) trusting exactly `ca`, presenting the
/// certificate chain and key of `identity` when given, with ALPN `alpn` (none when empty).
pub fn tls_client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((cert, key)) => {
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls
}

/// A reqwest client trusting exactly `ca` and presenting the client certificate `cert` with
/// its key `key`.
pub fn client_with_identity(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
    let tls = tls_client_config(ca, Some((cert, key)), &[b"h2", b"http/1.1"]);
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
