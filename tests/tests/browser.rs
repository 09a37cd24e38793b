//! Headless Chromium runs the browser snippet
//! `new WebSocket(url, ["base64url.bearer.authorization.k8s.io.<token>", "base64.binary.k8s.io"])`
//! against the mini API server and receives log lines; without a valid token it cannot open.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use kube_authn_e2e::{Server, peers, pod, write_file};
use serde_json::Value;

fn browser(url: &str, extra: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(peers().join("ws_browser.mjs"))
        .args(["--url", url, "--messages", "3", "--timeout-ms", "15000"])
        .args(
            extra
                .iter()
                .flat_map(|a| a.split_once('=').map(|(k, v)| [k, v]).unwrap_or([a, ""]))
                .filter(|a| !a.is_empty()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "harness failure: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The number of a `<time> <pod>: line <n>` log line.
fn number(line: &str) -> u64 {
    let (_, n) = line
        .trim_end()
        .rsplit_once(": line ")
        .unwrap_or_else(|| panic!("not a log line: {line:?}"));
    n.parse().unwrap()
}

/// The number of the latest line of pod `web`, read over HTTP (no follow).
async fn last_line(s: &Server) -> u64 {
    let text = s
        .client()
        .get(format!(
            "{}/api/v1/namespaces/default/pods/web/log?tailLines=1",
            s.url()
        ))
        .header("Authorization", "Bearer browser-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    number(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_follows_logs_with_the_bearer_subprotocol() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", "browser-token,alice,uid-a\n");
    let s = Server::start_in(dir, &[&format!("--token-auth-file={tokens}")]);
    let created = s
        .client()
        .post(format!("{}/api/v1/namespaces/default/pods", s.url()))
        .header("Authorization", "Bearer browser-token")
        .json(&pod("web"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let url = format!(
        "wss://127.0.0.1:{}/api/v1/namespaces/default/pods/web/log?follow=true",
        s.port
    );
    let ca = format!("--ca={}", s.ca_file().display());

    // A valid token: the socket opens with base64.binary.k8s.io (never the token entry), and
    // log lines arrive. The browser checks the server's chain against our CA (NSS db).
    let v = browser(&url, &["--token=browser-token", &ca]);
    assert_eq!(v["opened"], true, "{v}");
    assert_eq!(v["protocol"], "base64.binary.k8s.io", "{v}");
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{v}");
    assert!(
        messages
            .iter()
            .all(|m| m.as_str().unwrap().contains("web: line")),
        "{v}"
    );

    // Streamed, not only the backlog: with one line of backlog (tailLines=1), the second and
    // third messages are lines the simulator wrote after the socket opened. The first is the
    // latest line at that time: at least the last one an HTTP read saw just before.
    let seen = last_line(&s).await;
    let v = browser(
        &format!("{url}&tailLines=1"),
        &["--token=browser-token", &ca],
    );
    assert_eq!(v["opened"], true, "{v}");
    let numbers: Vec<u64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| number(m.as_str().unwrap()))
        .collect();
    assert_eq!(numbers.len(), 3, "{v}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{v}");
    assert!(numbers[0] >= seen, "{numbers:?} after line {seen}");

    // A wrong token: 401 to the upgrade (a bad credential is never anonymous), the socket
    // never opens. The page only sees 1006; Chromium's console says why ("HTTP Authentication
    // failed" for a 401, "Unexpected response code: N" for other codes).
    let v = browser(&url, &["--token=wrong-token", &ca]);
    assert_eq!(v["opened"], false, "{v}");
    assert_eq!(v["closeCode"], 1006, "{v}");
    assert!(
        v["console"]
            .to_string()
            .contains("HTTP Authentication failed"),
        "{v}"
    );

    // No token: anonymous is forbidden to read logs (403), the socket never opens.
    let v = browser(&url, &[&ca]);
    assert_eq!(v["opened"], false, "{v}");
    assert!(
        v["console"]
            .to_string()
            .contains("Unexpected response code: 403"),
        "{v}"
    );

    // A watch of pods: as kube-apiserver's watch over websocket, JSON text frames, and the one
    // subprotocol offered besides the token echoed (whatever it is).
    let watch = format!(
        "wss://127.0.0.1:{}/api/v1/namespaces/default/pods?watch=true",
        s.port
    );
    let v = browser(
        &watch,
        &[
            "--token=browser-token",
            &ca,
            "--messages=1",
            "--protocol=binary.k8s.io",
        ],
    );
    assert_eq!(v["opened"], true, "{v}");
    assert_eq!(v["protocol"], "binary.k8s.io", "{v}");
    let event: Value = serde_json::from_str(v["messages"][0].as_str().unwrap().trim()).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "web");
}
