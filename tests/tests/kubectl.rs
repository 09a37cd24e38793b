//! The real kubectl 1.33 against the mini API server: `auth whoami` with a token and with a
//! user name and password, `get pods`, `get pods -w` and `logs -f`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kube_authn_e2e::{KUBECTL, Server, pod, write_file};

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

fn kubectl(s: &Server, home: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(KUBECTL);
    c.env("HOME", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .arg(format!("--server={}", s.url()))
        .arg(format!("--certificate-authority={}", s.ca_file().display()))
        .arg("--request-timeout=20s")
        .args(args);
    c
}

/// Starts a kubectl that streams (`get -w`, `logs -f`): the child and its output lines.
fn streaming(
    s: &Server,
    home: &std::path::Path,
    args: &[&str],
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = kubectl(s, home, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn run(s: &Server, home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = kubectl(s, home, args)
        .output()
        .expect("kubectl 1.33 is preinstalled on this machine");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn auth_whoami_with_token_and_with_basic() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(
        &s,
        home.path(),
        &["--token=token1", "auth", "whoami", "-o", "json"],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "qa", "system:authenticated"])
    );

    let (ok, out, err) = run(
        &s,
        home.path(),
        &["--username=carol", "--password=s3cret", "auth", "whoami"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("carol"), "{out}");
    assert!(out.contains("[ops system:authenticated]"), "{out}");

    let (ok, _, err) = run(&s, home.path(), &["--token=wrong", "auth", "whoami"]);
    assert!(!ok);
    assert!(err.contains("Unauthorized"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_watch_and_follow_logs() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let c = s.client();
    let base = format!("{}/api/v1/namespaces/team/pods", s.url());
    c.post(&base)
        .header("Authorization", "Bearer token1")
        .json(&pod("web"))
        .send()
        .await
        .unwrap();

    let (ok, out, err) = run(
        &s,
        home.path(),
        &["--token=token1", "-n", "team", "get", "pods"],
    );
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.starts_with("web ")), "{out}");

    // get -w: a pod created after the watch started shows up
    let (mut watch, rx) = streaming(
        &s,
        home.path(),
        &[
            "--token=token1",
            "-n",
            "team",
            "get",
            "pods",
            "-w",
            "-o",
            "name",
        ],
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "pod/web");
    c.post(&base)
        .header("Authorization", "Bearer token1")
        .json(&pod("api"))
        .send()
        .await
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "pod/api");
    let _ = watch.kill();
    let _ = watch.wait();

    // logs --tail=2: tailLines is honoured.
    let out = kubectl(
        &s,
        home.path(),
        &["--token=token1", "-n", "team", "logs", "--tail=2", "web"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let tail: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    // (at most two: the pod may have written only one line yet)
    assert!(matches!(tail.len(), 1 | 2), "{out:?}");

    // logs -f with one line of backlog (--tail=1): the next lines can only come from the
    // stream, as the simulator writes them.
    let (mut logs, rx) = streaming(
        &s,
        home.path(),
        &[
            "--token=token1",
            "-n",
            "team",
            "logs",
            "-f",
            "--tail=1",
            "web",
        ],
    );
    let mut numbers = Vec::new();
    while numbers.len() < 3 {
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        numbers.push(n);
    }
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive lines: {numbers:?}"
    );
    assert!(
        numbers[0] >= tail[tail.len() - 1],
        "the backlog starts at the latest line: {numbers:?} after {tail:?}"
    );
    // The pod goes: the follow ends (kubectl exits), while other pods go on writing.
    let resp = c
        .delete(format!("{base}/web"))
        .header("Authorization", "Bearer token1")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let start = std::time::Instant::now();
    while logs.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "logs -f still running after the pod was deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Selectors as kube-apiserver applies them: `get pods -l`, `--field-selector`, and
/// `get pod NAME -w` (a watch with `fieldSelector=metadata.name=NAME`) sees that pod only.
/// `kubectl get pods -A` (`GET /api/v1/pods`) lists the pods of every namespace, and
/// `-A -w` watches them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_of_all_namespaces_and_watch_them() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let c = s.client();
    let create = |ns: &str, name: &str| {
        let request = c
            .post(format!("{}/api/v1/namespaces/{ns}/pods", s.url()))
            .header("Authorization", "Bearer token1")
            .json(&pod(name));
        async move { assert!(request.send().await.unwrap().status().is_success()) }
    };
    create("team", "web").await;
    create("ops", "db").await;
    let (ok, out, err) = run(&s, home.path(), &["--token=token1", "get", "pods", "-A"]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(rows, [["ops", "db"], ["team", "web"]], "{out}");

    let (mut watch, rx) = streaming(
        &s,
        home.path(),
        &["--token=token1", "get", "pods", "-A", "-w", "-o", "name"],
    );
    let mut seen: Vec<String> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, ["pod/db", "pod/web"]);
    create("dev", "cache").await;
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        "pod/cache"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_the_watch_of_one_pod() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let c = s.client();
    let base = format!("{}/api/v1/namespaces/team/pods", s.url());
    let labelled = |name: &str, app: &str| {
        let mut p = pod(name);
        p["metadata"]["labels"] = serde_json::json!({ "app": app });
        p
    };
    for (name, app) in [("web", "web"), ("db", "db")] {
        let resp = c
            .post(&base)
            .header("Authorization", "Bearer token1")
            .json(&labelled(name, app))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    let names = |args: &[&str]| {
        let mut all = vec!["--token=token1", "-n", "team", "get", "pods", "-o", "name"];
        all.extend_from_slice(args);
        let (ok, out, err) = run(&s, home.path(), &all);
        assert!(ok, "{err}");
        out.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(names(&["-l", "app=web"]), ["pod/web"]);
    assert_eq!(names(&["-l", "app in (db)"]), ["pod/db"]);
    assert_eq!(names(&["--field-selector", "metadata.name=db"]), ["pod/db"]);
    assert_eq!(names(&["-l", "app!=web,app!=db"]), Vec::<String>::new());

    let (mut watch, rx) = streaming(
        &s,
        home.path(),
        &[
            "--token=token1",
            "-n",
            "team",
            "get",
            "pod",
            "web",
            "-w",
            "-o",
            "name",
        ],
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "pod/web");
    // Another pod, then a change of web: the watch shows web's change only (events come in
    // order, so the other pod would have come first).
    c.post(&base)
        .header("Authorization", "Bearer token1")
        .json(&labelled("other", "web"))
        .send()
        .await
        .unwrap();
    c.put(format!("{base}/web"))
        .header("Authorization", "Bearer token1")
        .json(&labelled("web", "web-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "pod/web");
    let _ = watch.kill();
    let _ = watch.wait();
}
