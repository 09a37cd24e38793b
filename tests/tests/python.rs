//! The official Python `kubernetes` client (PyPI) against the mini API server: whoami with a
//! token and with basic credentials, listing, watching pods and following logs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use kube_authn_e2e::{Server, python, repo, write_file};
use serde_json::Value;

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", "token1,alice,uid-a,\"devs,qa\"\n");
    let passwords = write_file(dir.path(), "passwords.csv", "s3cret,carol,uid-c,\"ops\"\n");
    Server::start_in(
        dir,
        &[
            &format!("--token-auth-file={tokens}"),
            &format!("--basic-auth-file={passwords}"),
        ],
    )
}

/// Runs py_client.py; returns (exit code, parsed stdout).
fn py(s: &Server, creds: &[&str], args: &[&str]) -> (i32, Value) {
    let out = Command::new(python())
        .arg(repo().join("tests/peers/py_client.py"))
        .arg(format!("--server={}", s.url()))
        .arg(format!("--ca={}", s.ca_file().display()))
        .args(creds)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn whoami_with_token_and_basic() {
    let s = server();
    let (code, v) = py(&s, &["--token=token1"], &["whoami"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["username"], "alice");
    assert_eq!(v["uid"], "uid-a");
    assert_eq!(
        v["groups"],
        serde_json::json!(["devs", "qa", "system:authenticated"])
    );

    let (code, v) = py(&s, &["--basic=carol:s3cret"], &["whoami"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["username"], "carol");

    let (code, v) = py(&s, &["--token=wrong"], &["whoami"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["status"], 401);
    assert_eq!(v["body"]["reason"], "Unauthorized");

    let (code, v) = py(&s, &[], &["version"]);
    assert_eq!(code, 0, "anonymous may read /version: {v}");
}

#[test]
fn lists_watches_and_follows_logs() {
    let s = server();
    let t = ["--token=token1"];
    assert_eq!(py(&s, &t, &["create-pod", "team", "web"]).0, 0);
    assert_eq!(py(&s, &t, &["create-pod", "team", "api"]).0, 0);
    let (code, v) = py(&s, &t, &["list-pods", "team"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["items"], serde_json::json!(["api", "web"]));

    let (code, v) = py(
        &s,
        &t,
        &["watch-pods", "team", "--max-events=2", "--timeout=10"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{v}");

    // tailLines is honoured: the last two lines so far.
    let (code, v) = py(
        &s,
        &t,
        &[
            "log",
            "web",
            "team",
            "--lines=10",
            "--tail=2",
            "--no-follow",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let tail = line_numbers(&v["lines"]);
    // (at most two: the pod may have written only one line yet)
    assert!(matches!(tail.len(), 1 | 2), "{v}");
    // follow=true with one line of backlog (tailLines=1): the second and third lines can only
    // have been streamed after the request, as the simulator wrote them.
    let (code, v) = py(
        &s,
        &t,
        &[
            "log",
            "web",
            "team",
            "--lines=3",
            "--tail=1",
            "--timeout=10",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["timedOut"], false, "{v}");
    let numbers = line_numbers(&v["lines"]);
    assert_eq!(numbers.len(), 3, "{v}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive lines, streamed: {v}"
    );
    assert!(
        numbers[0] >= tail[tail.len() - 1],
        "the backlog starts at the latest line: {v}"
    );

    // anonymous: forbidden by the default policy, with the Kubernetes message
    let (code, v) = py(&s, &[], &["list-pods", "team"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["status"], 403);
}

/// The numbers of `<time> <pod>: line <n>` log lines.
fn line_numbers(lines: &serde_json::Value) -> Vec<u64> {
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let l = l.as_str().unwrap();
            assert!(l.contains(": line "), "{l}");
            l.rsplit(' ').next().unwrap().trim().parse().unwrap()
        })
        .collect()
}
