//! The mini API server over real TLS on 127.0.0.1: the strategies of the foundation, the 401
//! and 403 Status bodies, pods, watch and logs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use base64::Engine;
use futures_util::StreamExt;
use kube_authn_e2e::{
    KUBECTL, Server, UNAUTHORIZED, client_trusting, get_json, pod, raw_request, write_file,
};
use reqwest::StatusCode;
use serde_json::Value;

const TOKENS: &str = "token1,alice,uid-a,\"devs,qa\"\ntoken2,bob,uid-b\n";
const PASSWORDS: &str = "s3cret,carol,uid-c,\"ops\"\npa:ss,dave,uid-d\n";

fn server(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", TOKENS);
    let passwords = write_file(dir.path(), "passwords.csv", PASSWORDS);
    let mut args = vec![
        format!("--token-auth-file={tokens}"),
        format!("--basic-auth-file={passwords}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_in(dir, &args)
}

async fn whoami(s: &Server, auth: Option<&str>) -> (StatusCode, Value) {
    let mut req = s
        .client()
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            s.url()
        ))
        .header("Content-Type", "application/json")
        .body(
            r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{}}"#,
        );
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The server's log up to the refusal of a request to namespace `marker`, sent now: the log is
/// one ordered stream, so whatever was logged before it is in (negative checks of the log end
/// with this rather than a sleep).
async fn log_until_marker(s: &Server, marker: &str) -> String {
    let resp = s
        .client()
        .get(format!("{}/api/v1/namespaces/{marker}/pods", s.url()))
        .header("Authorization", "Bearer marker")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.wait_for_stderr(marker, std::time::Duration::from_secs(30))
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[tokio::test]
async fn whoami_with_token_and_basic_credentials() {
    let s = server(&[]);
    let (code, body) = whoami(&s, Some("Bearer token1")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["kind"], "SelfSubjectReview");
    assert_eq!(
        body["status"]["userInfo"],
        serde_json::json!({"username": "alice", "uid": "uid-a", "groups": ["devs", "qa", "system:authenticated"]})
    );

    let (code, body) = whoami(&s, Some(&basic("carol:s3cret"))).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["status"]["userInfo"]["username"], "carol");
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        serde_json::json!(["ops", "system:authenticated"])
    );

    // a password containing ':' (split at the first colon)
    let (code, body) = whoami(&s, Some(&basic("dave:pa:ss"))).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        serde_json::json!(["system:authenticated"])
    );
}

/// What an operator sees (the server's default log filter): every refused credential is
/// explained, never with the credential (the secret, or its base64 as sent).
#[tokio::test]
async fn refused_credentials_are_logged_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", TOKENS);
    let passwords = write_file(dir.path(), "passwords.csv", PASSWORDS);
    let s = Server::start_with_default_log(
        dir,
        &[
            &format!("--token-auth-file={tokens}"),
            &format!("--basic-auth-file={passwords}"),
        ],
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let b64url = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let ws_entry = format!(
        "base64url.bearer.authorization.k8s.io.{}",
        b64url("ws-sekrit-4242")
    );
    let c = s.client();
    let url = format!("{}/api/v1/namespaces/default/pods", s.url());
    let refused = [
        ("Authorization", "Bearer sekrit-token-4711".to_owned()),
        ("Authorization", basic("carol:pa55-sekrit-9")),
        ("Authorization", basic("sekrit-user-77:s3cret")),
    ];
    for (name, value) in &refused {
        let resp = c.get(&url).header(*name, value).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{value}");
    }
    let resp = c
        .get(&url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header(
            "Sec-WebSocket-Protocol",
            format!("{ws_entry}, base64.binary.k8s.io"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The log is one ordered stream: once the line of a last refusal is there, all are.
    let log = log_until_marker(&s, "log-marker").await;
    let explained = log
        .lines()
        .filter(|l| l.contains("unable to authenticate the request"))
        .count();
    assert!(explained >= 5, "{log}");
    for secret in [
        "sekrit-token-4711".to_owned(),
        "pa55-sekrit-9".to_owned(),
        b64("carol:pa55-sekrit-9"),
        "sekrit-user-77".to_owned(),
        b64("sekrit-user-77:s3cret"),
        "ws-sekrit-4242".to_owned(),
        b64url("ws-sekrit-4242"),
    ] {
        assert!(!log.contains(&secret), "{secret} in:\n{log}");
    }
}

#[tokio::test]
async fn bad_credentials_are_401_with_the_status_body_even_with_anonymous_on() {
    let s = server(&[]);
    for auth in [
        "Bearer nope",
        "Bearer token1x",
        &basic("carol:wrong"),
        &basic("nobody:s3cret"),
    ] {
        let resp = s
            .client()
            .get(format!("{}/healthz", s.url()))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED, "{auth}");
    }
    // curl gets the pretty body, as from kube-apiserver
    let resp = s
        .client()
        .get(format!("{}/healthz", s.url()))
        .header("Authorization", "Bearer nope")
        .header("User-Agent", "curl/8.5.0")
        .send()
        .await
        .unwrap();
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("{\n  \"kind\": \"Status\""), "{body}");
    // The body follows Accept, as kube-apiserver negotiates it: YAML when asked for; the
    // indented JSON fallback when nothing asked for can be served.
    for (accept, content_type, body) in [
        (
            "application/yaml",
            "application/yaml",
            "apiVersion: v1\ncode: 401\nkind: Status\nmessage: Unauthorized\nmetadata: {}\nreason: Unauthorized\nstatus: Failure\n",
        ),
        (
            "application/xml",
            "application/json",
            "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n  \"message\": \"Unauthorized\",\n  \"reason\": \"Unauthorized\",\n  \"code\": 401\n}",
        ),
    ] {
        let resp = s
            .client()
            .get(format!("{}/healthz", s.url()))
            .header("Authorization", "Bearer nope")
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["content-type"], content_type, "{accept}");
        assert_eq!(resp.text().await.unwrap(), body, "{accept}");
    }
}

#[tokio::test]
async fn anonymous_reads_health_but_is_forbidden_elsewhere() {
    let s = server(&[]);
    let c = s.client();
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(
            c.get(format!("{}{path}", s.url()))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let resp = c
        .get(format!("{}/api/v1/namespaces/default/pods", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
}

#[tokio::test]
async fn anonymous_off_makes_everything_401() {
    let s = server(&["--anonymous-auth=false"]);
    let resp = s
        .client()
        .get(format!("{}/healthz", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED);
    let resp = s
        .client()
        .get(format!("{}/healthz", s.url()))
        .header("Authorization", "Bearer token2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn pods_crud_watch_and_logs_over_chunked_http() {
    let s = server(&[]);
    let c = s.client();
    let base = format!("{}/api/v1/namespaces/team/pods", s.url());
    let auth = "Bearer token1";

    // watch from the current state, in the background
    let list: Value = get_json(&c, &base, auth).await;
    assert_eq!(list["kind"], "PodList");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let watch = c
        .get(format!("{base}?watch=true&resourceVersion={rv}"))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch.bytes_stream();

    let created = c
        .post(&base)
        .header("Authorization", auth)
        .json(&pod("web"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let dup = c
        .post(&base)
        .header("Authorization", auth)
        .json(&pod("web"))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let got = get_json(&c, &format!("{base}/web"), auth).await;
    assert_eq!(got["metadata"]["name"], "web");
    assert_eq!(
        c.get(format!("{base}/nope"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // logs: follow until two lines arrived
    let logs = c
        .get(format!("{base}/web/log?follow=true"))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), StatusCode::OK);
    let mut stream = logs.bytes_stream();
    let mut text = String::new();
    while text.matches('\n').count() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("web: line 1\n"), "{text}");

    assert_eq!(
        c.delete(format!("{base}/web"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let mut kinds = Vec::new();
    let mut buf = String::new();
    while kinds.len() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let ev: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(ev["object"]["metadata"]["name"], "web");
            kinds.push(ev["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn flags_of_strategies_not_built_are_refused_with_a_reason() {
    // Every kube-apiserver flag of DESIGN.md §6 for a strategy this build does not have.
    let refused: [(&str, &str); 23] = [
        (
            "--service-account-key-file=sa.pub",
            "service-account tokens",
        ),
        (
            "--service-account-issuer=https://kubernetes.default.svc",
            "service-account tokens",
        ),
        (
            "--service-account-signing-key-file=sa.key",
            "service-account tokens",
        ),
        ("--service-account-lookup", "service-account tokens"),
        ("--service-account-lookup=false", "service-account tokens"),
        ("--oidc-issuer-url=https://example.invalid", "OIDC"),
        ("--oidc-client-id=kubernetes", "OIDC"),
        ("--oidc-username-claim=email", "OIDC"),
        ("--oidc-username-prefix=oidc:", "OIDC"),
        ("--oidc-groups-claim=groups", "OIDC"),
        ("--oidc-groups-prefix=oidc:", "OIDC"),
        ("--oidc-ca-file=ca.crt", "OIDC"),
        ("--oidc-required-claim=hd=example.com", "OIDC"),
        ("--oidc-signing-algs=RS256", "OIDC"),
        ("--authentication-config=auth.yaml", "OIDC"),
        (
            "--authentication-token-webhook-config-file=wh.kubeconfig",
            "webhook token",
        ),
        (
            "--authentication-token-webhook-cache-ttl=2m",
            "webhook token",
        ),
        ("--authentication-token-webhook-version=v1", "webhook token"),
        ("--authorization-mode=RBAC", "authorization"),
        (
            "--authorization-webhook-config-file=authz.kubeconfig",
            "authorization",
        ),
        ("--authorization-rbac-file=rbac.yaml", "authorization"),
        (
            "--experimental-keystone-url=https://keystone.invalid",
            "Keystone",
        ),
        ("--experimental-keystone-ca-file=ca.crt", "Keystone"),
    ];
    for (arg, what) in refused {
        let (status, err) = Server::run_to_exit(&[arg]);
        assert!(!status.success(), "{arg} was accepted");
        let flag = arg.split('=').next().unwrap();
        assert!(
            err.contains(&format!(
                "flag {flag} is not supported by this build: {what}"
            )),
            "{arg}: {err}"
        );
    }
    let (status, err) = Server::run_to_exit(&["--token-auth-file=/nonexistent/tokens.csv"]);
    assert!(!status.success());
    assert!(err.contains("/nonexistent/tokens.csv"), "{err}");
    // A path that is not UTF-8: refused with the reason, not a panic (exit code 101).
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let mut arg = b"--token-auth-file=/nonexistent/\xff.csv".to_vec();
        let out = std::process::Command::new(kube_authn_e2e::binary("mini-apiserver"))
            .arg(format!("--cert-dir={}", dir.path().display()))
            .arg(std::ffi::OsStr::from_bytes(&std::mem::take(&mut arg)))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_ne!(out.status.code(), Some(101), "{err}");
        assert!(err.contains("/nonexistent/"), "{err}");
    }
}

#[tokio::test]
async fn a_malformed_token_file_refuses_to_start_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(
        dir.path(),
        "tokens.csv",
        "t1,u1,1\nt1,u2,2\nonly-two,columns\n",
    );
    let (status, err) = Server::run_to_exit(&[&format!("--token-auth-file={bad}")]);
    assert!(!status.success());
    let refusal = err
        .find(&format!("{bad}:3"))
        .unwrap_or_else(|| panic!("{err}"));
    // What Kubernetes says of the rows before the bad one is said first, as it reads them.
    let duplicate = err.find("duplicate token has been found in token file");
    assert!(duplicate.is_some_and(|d| d < refusal), "{err}");
}

#[tokio::test]
async fn with_no_flags_it_writes_a_demo_token_and_prints_ready_lines() {
    let s = Server::start(&[]);
    let log = s.wait_for_stderr("curl --cacert", std::time::Duration::from_secs(30));
    let line = |tool: &str| {
        log.lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(tool))
            .unwrap_or_else(|| panic!("{log}"))
            .to_owned()
    };
    let (kubectl, curl) = (line("kubectl "), line("curl "));
    // The token is read from the file by the lines, never printed.
    let token = std::fs::read_to_string(s.dir.path().join("certs/demo-tokens.csv")).unwrap();
    let token = token.split(',').next().unwrap();
    assert!(!log.contains(token), "{log}");
    // Both lines run as pasted into a shell (kubectl being the preinstalled 1.33).
    let run = |line: String| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kubectl() {{ {KUBECTL} \"$@\"; }}; {line}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{line}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let who = tokio::task::spawn_blocking(move || run(kubectl))
        .await
        .unwrap();
    assert!(
        who.contains("admin") && who.contains("[system:masters system:authenticated]"),
        "{who}"
    );
    let pods = tokio::task::spawn_blocking(move || run(curl))
        .await
        .unwrap();
    let pods: serde_json::Value = serde_json::from_str(&pods).unwrap();
    assert_eq!(pods["kind"], "PodList", "{pods}");
    let (code, body) = whoami(&s, Some(&format!("Bearer {token}"))).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["status"]["userInfo"]["username"], "admin");
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    // The file holds a system:masters token: readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.dir.path().join("certs/demo-tokens.csv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

/// The handlers of requests with a body (selfsubjectreviews, pod deletes with their
/// `DeleteOptions`) read it before they answer, as kube-apiserver decodes it: over HTTP/2 an
/// answer sent while the client is still sending ends the stream with RST_STREAM(NO_ERROR),
/// which curl 7.88 reports as error 92 (before: 12 of 30 selfsubjectreviews over HTTP/2).
#[test]
fn http2_requests_with_a_body_are_answered_after_it() {
    let s = server(&[]);
    let curl = |method: &str, path: &str, body: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--http2", "--max-time", "20", "--cacert"])
            .arg(s.ca_file())
            .args(["-H", "Authorization: Bearer token1"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-X", method, "--data", body, "-o", "/dev/null"])
            .args(["-w", "%{http_version} %{http_code}"])
            .arg(format!("{}{path}", s.url()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "curl -X {method} {path}: {stderr}");
        stdout
    };
    let review = r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}"#;
    for _ in 0..20 {
        let answer = curl(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            review,
        );
        assert_eq!(answer, "2 201");
    }
    let pods = "/api/v1/namespaces/default/pods";
    for i in 0..10 {
        let name = format!("p{i}");
        let created = curl("POST", pods, &pod(&name).to_string());
        assert_eq!(created, "2 201");
        let options =
            r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#;
        let deleted = curl("DELETE", &format!("{pods}/{name}"), options);
        assert_eq!(deleted, "2 200");
    }
}

/// A token file is read as Kubernetes reads it, and what is surprising in it is said, never a
/// token: a byte order mark (part of the first token, as Go's csv keeps it), an empty user
/// name (accepted), an empty token (skipped), a duplicate token (the last row wins), each with
/// the line and record number of the row it is about. (The parser inserts rows into its index
/// 16 at a time: `dup-tok` comes back in a later batch, `again-tok` in the same one.)
#[tokio::test]
async fn surprises_in_a_token_file_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    // Lines 5 to 24, then a blank line (no record): from line 26 on, line = record + 1.
    let fillers: String = (5..25).map(|i| format!("fill-{i},f{i},{i}\n")).collect();
    let tokens = write_file(
        dir.path(),
        "tokens.csv",
        &format!(
            "\u{feff}bomtok,u1,1\nnoname-tok,,2\n,u3,3\ndup-tok,u4,4\n{fillers}\n\
             dup-tok,u5,5\nagain-tok,a1,6\nagain-tok,a2,7\nlate-tok,,8\n"
        ),
    );
    let s = Server::start_in(dir, &[&format!("--token-auth-file={tokens}")]);
    // Said in this order, before the server listens; stderr is collected as it comes.
    let log = s.wait_for_stderr("record number '28'", std::time::Duration::from_secs(30));
    for warning in [
        "the file starts with a UTF-8 byte order mark: it is part of the first token, as in Kubernetes",
        "empty user name in token file",
        "empty token has been found in token file",
        "duplicate token has been found in token file",
    ] {
        let line = log.lines().find(|l| l.contains(warning));
        let line = line.unwrap_or_else(|| panic!("no {warning:?} in:\n{log}"));
        assert!(
            line.contains("WARN") && line.contains("tokens.csv"),
            "{line}"
        );
    }
    // Each warning names its row's line and record number, in the order of the file.
    let lines: Vec<usize> = log
        .lines()
        .filter(|l| l.contains("WARN"))
        .filter_map(|l| l.rsplit_once(" line=")?.1.parse().ok())
        .collect();
    assert_eq!(lines, [2, 3, 26, 28, 29], "{log}");
    for (line, record) in [(26, 25), (28, 27)] {
        let (warning, at) = (
            format!(
                "duplicate token has been found in token file '{tokens}', record number '{record}'"
            ),
            format!(" line={line}"),
        );
        let found = log.lines().find(|l| l.contains(&warning));
        let found = found.unwrap_or_else(|| panic!("no {warning:?} in:\n{log}"));
        assert!(found.ends_with(&at), "{found}");
    }
    for token in ["bomtok", "noname-tok", "dup-tok", "again-tok", "late-tok"] {
        assert!(!log.contains(token), "{log}");
    }
    assert_eq!(
        whoami(&s, Some("Bearer bomtok")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (code, review) = whoami(&s, Some("Bearer dup-tok")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(review["status"]["userInfo"]["username"], "u5");
    let (_, review) = whoami(&s, Some("Bearer again-tok")).await;
    assert_eq!(review["status"]["userInfo"]["username"], "a2");
    let (code, review) = whoami(&s, Some("Bearer noname-tok")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(review["status"]["userInfo"]["uid"], "2");
}

/// Large request heads, as an OIDC provider that puts many groups in its tokens may issue:
/// bearer tokens of 60 KB over HTTP/2 (curl; hyper's default header list size is 16 KiB, now
/// kube-apiserver's 1 MiB; curl sends header blocks of at most 64 KiB) and 300 KB over
/// HTTP/1.1 (hyper's read buffer, ~400 KiB).
#[tokio::test]
async fn large_tokens_are_read_over_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = ("s".repeat(60_000), "l".repeat(300_000));
    let tokens = write_file(
        dir.path(),
        "tokens.csv",
        &format!("{small},small,uid-s\n{large},large,uid-l\n"),
    );
    let header = write_file(
        dir.path(),
        "header.txt",
        &format!("Authorization: Bearer {small}\n"),
    );
    let s = Server::start_in(dir, &[&format!("--token-auth-file={tokens}")]);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "20", "--cacert"])
        .arg(s.ca_file())
        .arg("-H")
        .arg(format!("@{header}"))
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("{}/api/v1/namespaces/default/pods", s.url()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{stderr}");
    // HTTP/1.1 (curl 7.88 stalls on sending heads this large; reqwest does not).
    for (token, user) in [(&small, "small"), (&large, "large")] {
        let review = whoami(&s, Some(&format!("Bearer {token}"))).await;
        assert_eq!(review.0, StatusCode::CREATED, "{user}");
        assert_eq!(review.1["status"]["userInfo"]["username"], user);
    }
}

/// Kubernetes' `UnauthenticatedHTTP2DOSMitigation`: by default the HTTP/2 connection of an
/// anonymous user is closed once answered (the server says so in its debug log);
/// `--feature-gates=UnauthenticatedHTTP2DOSMitigation=false` keeps it.
#[tokio::test]
async fn the_http2_mitigation_follows_its_feature_gate() {
    const CLOSING: &str = "closing the connection of an unauthenticated HTTP/2 client";
    for (flags, closes) in [
        (vec![], true),
        (
            vec!["--feature-gates=UnauthenticatedHTTP2DOSMitigation=false"],
            false,
        ),
    ] {
        let s = server(&flags);
        let out = std::process::Command::new("curl")
            .args(["-sS", "--http2", "--max-time", "20", "--cacert"])
            .arg(s.ca_file())
            .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
            .arg(format!("{}/healthz", s.url()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{flags:?}");
        let log = log_until_marker(&s, "gate-marker").await;
        assert_eq!(log.contains(CLOSING), closes, "{flags:?}:\n{log}");
    }
}

/// The default `--cert-dir` is `/var/run/kubernetes`, kube-apiserver's; a user who cannot
/// write it (not root) gets the generated certificates in `./apiserver.local.config/
/// certificates`, as Kubernetes' sample API servers do, and is told so.
#[tokio::test]
async fn an_unwritable_default_cert_dir_falls_back_to_the_working_directory() {
    let s = Server::start_unprivileged_in(tempfile::tempdir().unwrap(), &[]);
    let log = s.wait_for_stderr("curl --cacert", std::time::Duration::from_secs(30));
    assert!(
        log.contains(
            "/var/run/kubernetes is not writable: using apiserver.local.config/certificates for certificates"
        ),
        "{log}"
    );
    let certs = s.dir.path().join("apiserver.local.config/certificates");
    let token = std::fs::read_to_string(certs.join("demo-tokens.csv")).unwrap();
    let token = token.split(',').next().unwrap();
    // The server serves with the certificate it generated there.
    let response = client_trusting(&certs.join("ca.crt"))
        .get(format!("{}/api/v1/namespaces/default/pods", s.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The Status bodies of 403, 404, 405 and 400 as kube-apiserver writes them: its field order,
/// compact with a final newline, pretty-printed for curl.
#[tokio::test]
async fn status_bodies_are_kube_apiservers() {
    let s = server(&[]);
    let c = s.client();
    let log = format!("{}/api/v1/namespaces/ns1/pods/p/log", s.url());
    let resp = c.get(&log).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.text().await.unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"p\\\" is forbidden: User \\\"system:anonymous\\\" cannot get resource \\\"pods/log\\\" in API group \\\"\\\" in the namespace \\\"ns1\\\"\",\"reason\":\"Forbidden\",\"details\":{\"name\":\"p\",\"kind\":\"pods\"},\"code\":403}\n"
    );
    let pretty = c
        .get(&log)
        .header("User-Agent", "curl/8.5.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pretty.starts_with("{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n")
            && pretty.ends_with("\"details\": {\n    \"name\": \"p\",\n    \"kind\": \"pods\"\n  },\n  \"code\": 403\n}"),
        "{pretty}"
    );

    let auth = "Bearer token1";
    let cases = [
        (
            reqwest::Method::GET,
            "/api/v1/nothing",
            StatusCode::NOT_FOUND,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"the server could not find the requested resource\",\"reason\":\"NotFound\",\"details\":{},\"code\":404}\n",
        ),
        (
            reqwest::Method::GET,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            StatusCode::METHOD_NOT_ALLOWED,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"the server does not allow this method on the requested resource\",\"reason\":\"MethodNotAllowed\",\"details\":{},\"code\":405}\n",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/namespaces/team/pods/nope",
            StatusCode::NOT_FOUND,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n",
        ),
    ];
    for (method, path, code, body) in cases {
        let resp = c
            .request(method, format!("{}{path}", s.url()))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), code, "{path}");
        assert_eq!(resp.text().await.unwrap(), body, "{path}");
    }
    // An invalid object is a 422 Invalid Status (kube-apiserver's field order, no details
    // here).
    let resp = c
        .post(format!("{}/api/v1/namespaces/team/pods", s.url()))
        .header("Authorization", auth)
        .json(&serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.text().await.unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Pod \\\"\\\" is invalid: metadata.name: Required value: name is required\",\"reason\":\"Invalid\",\"code\":422}\n"
    );
    // An update of a version that is not the current one: 409 Conflict, as kube-apiserver's
    // optimistic concurrency answers it (kubectl replace, read-modify-write loops).
    let url = format!("{}/api/v1/namespaces/team/pods/stale", s.url());
    let created: Value = c
        .post(format!("{}/api/v1/namespaces/team/pods", s.url()))
        .header("Authorization", auth)
        .json(&pod("stale"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for expected in [StatusCode::OK, StatusCode::CONFLICT] {
        let resp = c
            .put(&url)
            .header("Authorization", auth)
            .json(&created)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
        if expected == StatusCode::CONFLICT {
            assert_eq!(
                resp.text().await.unwrap(),
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Operation cannot be fulfilled on pods \\\"stale\\\": the object has been modified; please apply your changes to the latest version and try again\",\"reason\":\"Conflict\",\"details\":{\"name\":\"stale\",\"kind\":\"pods\"},\"code\":409}\n"
            );
        }
    }
    // A body over kube-apiserver's 3 MiB limit: 413 with its Status.
    let mut huge = pod("huge");
    huge["metadata"]["annotations"] = serde_json::json!({"a": "x".repeat(3 << 20)});
    let resp = c
        .post(format!("{}/api/v1/namespaces/team/pods", s.url()))
        .header("Authorization", auth)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        resp.text().await.unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Request entity too large: limit is 3145728\",\"reason\":\"RequestEntityTooLarge\",\"code\":413}\n"
    );
    // A query that does not parse is a 400 Status, not a plain-text error.
    let resp = c
        .get(format!(
            "{}/api/v1/namespaces/team/pods?watch=true&timeoutSeconds=abc",
            s.url()
        ))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["reason"].as_str()),
        (Some("Status"), Some("BadRequest"))
    );
}

#[tokio::test]
async fn a_pod_of_the_wrong_shape_is_a_400_and_the_server_carries_on() {
    let s = server(&[]);
    let c = s.client();
    let base = format!("{}/api/v1/namespaces/team/pods", s.url());
    let auth = "Bearer token1";
    c.post(&base)
        .header("Authorization", auth)
        .json(&pod("good"))
        .send()
        .await
        .unwrap();
    let bad = [
        (
            reqwest::Method::POST,
            base.clone(),
            serde_json::json!({"metadata": {"name": "p2"}, "status": "bogus"}),
            "string into Go struct field Pod.status of type v1.PodStatus",
        ),
        (
            reqwest::Method::PUT,
            format!("{base}/good"),
            serde_json::json!({"metadata": {"name": "good"}, "status": ["x"]}),
            "array into Go struct field Pod.status of type v1.PodStatus",
        ),
        (
            reqwest::Method::POST,
            base.clone(),
            serde_json::json!({"metadata": {"name": "p3"}, "spec": "x"}),
            "string into Go struct field Pod.spec of type v1.PodSpec",
        ),
    ];
    for (method, url, body, want) in bad {
        let resp = c
            .request(method, &url)
            .header("Authorization", auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["reason"], "BadRequest");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal "
            ) && message.ends_with(want),
            "{message}"
        );
    }
    let list: Value = get_json(&c, &base, auth).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["good"]);
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
}

/// Kubernetes' websocket handshake takes the first subprotocol the client offered that the
/// server speaks (never the token entry).
#[tokio::test]
async fn the_websocket_subprotocol_is_the_clients_first_choice() {
    let s = server(&[]);
    let c = s.client();
    c.post(format!("{}/api/v1/namespaces/team/pods", s.url()))
        .header("Authorization", "Bearer token1")
        .json(&pod("w"))
        .send()
        .await
        .unwrap();
    let token = "base64url.bearer.authorization.k8s.io.dG9rZW4x";
    for (offered, want) in [
        ("binary.k8s.io, base64.binary.k8s.io", "binary.k8s.io"),
        (
            "base64.binary.k8s.io, binary.k8s.io",
            "base64.binary.k8s.io",
        ),
        ("v4.channel.k8s.io, binary.k8s.io", "binary.k8s.io"),
        (
            &format!("{token}, binary.k8s.io, base64.binary.k8s.io"),
            "binary.k8s.io",
        ),
    ] {
        let auth = if offered.contains(token) {
            ""
        } else {
            "Authorization: Bearer token1\r\n"
        };
        let request = format!(
            "GET /api/v1/namespaces/team/pods/w/log HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {offered}\r\n\r\n"
        );
        let (status, head, _) = raw_request(&s, request.as_bytes()).await;
        assert_eq!(status, 101, "{offered}: {head}");
        let chosen: Vec<&str> = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
            .map(|(_, v)| v.trim())
            .collect();
        assert_eq!(chosen, [want], "{offered}: {head}");
    }

    // A watch, as kube-apiserver's: JSON events in the frames, the one protocol offered (any)
    // echoed, two of them a bad handshake.
    let watch = |offered: &str| {
        format!(
            "GET /api/v1/namespaces/team/pods?watch=true&timeoutSeconds=1 HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nAuthorization: Bearer token1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade, close\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {offered}\r\n\r\n"
        )
    };
    let (status, head, body) = raw_request(&s, watch("dashboard.example").as_bytes()).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: dashboard.example"),
        "{head}"
    );
    assert!(
        body.contains("{\"object\":{\"apiVersion\":\"v1\""),
        "{body:?}"
    );
    assert!(body.contains("\"type\":\"ADDED\""), "{body:?}");
    let (status, head, _) = raw_request(&s, watch("a.example, b.example").as_bytes()).await;
    assert_eq!(status, 400, "{head}");
    // Authenticated by the Authorization header, the token entry stays in the request (the
    // websocket reader did not run); it is still never echoed.
    let (status, head, _) = raw_request(&s, watch(token).as_bytes()).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
}

#[tokio::test]
async fn warning_and_www_authenticate_headers_as_kube_apiserver() {
    let s = server(&[]);
    // `Bearer  token` (two spaces) is ignored with Kubernetes' warning; the request is anonymous.
    let resp = s
        .client()
        .get(format!("{}/healthz", s.url()))
        .header("Authorization", "Bearer  token1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["warning"],
        "299 - \"the provided Authorization header contains extra space before the bearer token, and is ignored\""
    );
    // with a password file configured, a 401 names the basic realm as kube-apiserver did
    let resp = s
        .client()
        .get(format!("{}/healthz", s.url()))
        .header("Authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Basic realm=\"kubernetes-master\""
    );
    assert_eq!(resp.headers()["cache-control"], "no-cache, private");
}

#[tokio::test]
async fn a_stale_resource_version_gets_410_expired_as_a_watch_event() {
    let s = server(&[]);
    let c = s.client();
    let base = format!("{}/api/v1/namespaces/team/pods", s.url());
    // more writes than the server keeps in its watch history (one pod, updated)
    let created = c
        .post(&base)
        .header("Authorization", "Bearer token1")
        .json(&pod("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    for _ in 0..1010 {
        let updated = c
            .put(format!("{base}/p"))
            .header("Authorization", "Bearer token1")
            .json(&pod("p"))
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), StatusCode::OK);
    }
    let resp = c
        .get(format!("{base}?watch=true&resourceVersion=2"))
        .header("Authorization", "Bearer token1")
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let ev: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
}

/// `GET /healthz` with an optional `Authorization` value: the status.
async fn healthz(s: &Server, auth: Option<&str>) -> StatusCode {
    let mut req = s.client().get(format!("{}/healthz", s.url()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn with_a_config_file_anonymous_is_the_flags_default_unless_the_file_sets_it() {
    let start = |config: &str, extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let tokens = write_file(dir.path(), "tokens.csv", TOKENS);
        let yaml = config.replace("TOKENS", &tokens);
        let config = write_file(dir.path(), "authn.yaml", &yaml);
        let mut args = vec![format!("--config={config}")];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        (dir, args)
    };
    let run = |(dir, args): (tempfile::TempDir, Vec<String>)| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_in(dir, &args)
    };

    // No anonymous block: --anonymous-auth's default (true), as kube-apiserver.
    let s = run(start("tokenAuthFile: TOKENS\n", &[]));
    assert_eq!(healthz(&s, None).await, StatusCode::OK);
    let (status, v) = whoami(&s, Some("Bearer token1")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        healthz(&s, Some("Bearer wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    drop(s);

    // No anonymous block and --anonymous-auth=false: off.
    let s = run(start(
        "tokenAuthFile: TOKENS\n",
        &["--anonymous-auth=false"],
    ));
    assert_eq!(healthz(&s, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(healthz(&s, Some("Bearer token1")).await, StatusCode::OK);
    drop(s);

    // The file disables it: off.
    let s = run(start(
        "tokenAuthFile: TOKENS\nanonymous:\n  enabled: false\n",
        &[],
    ));
    assert_eq!(healthz(&s, None).await, StatusCode::UNAUTHORIZED);
    drop(s);

    // The file enables it for /healthz only.
    let s = run(start(
        "tokenAuthFile: TOKENS\nanonymous:\n  enabled: true\n  conditions:\n  - path: /healthz\n",
        &[],
    ));
    assert_eq!(healthz(&s, None).await, StatusCode::OK);
    let version = s.client().get(format!("{}/version", s.url())).send().await;
    assert_eq!(version.unwrap().status(), StatusCode::UNAUTHORIZED);
    drop(s);

    // Both the file and the flag: refused, as kube-apiserver refuses it.
    let (dir, args) = start(
        "tokenAuthFile: TOKENS\nanonymous:\n  enabled: true\n",
        &["--anonymous-auth=true"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, err) = Server::run_to_exit(&args);
    drop(dir);
    assert!(!status.success());
    assert!(
        err.contains("--anonynous-auth flag cannot be set when anonymous field is configured in authentication configuration file"),
        "{err}"
    );
}
