//! Hot reload of the token file under concurrent requests over real TLS: in place, by rename,
//! by a Kubernetes ConfigMap-style symlink swap, and a malformed file that must not replace the
//! good one.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_authn_e2e::Server;

async fn status_of(c: &reqwest::Client, url: &str, token: &str) -> u16 {
    c.get(url)
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until `token` gets `want` (at most `limit`), returning how long it took.
async fn until(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    want: u16,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if status_of(c, url, token).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{token} did not get {want} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rows(tokens: &[&str]) -> String {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{t},user-{t},{i}\n"))
        .collect()
}

fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_reloads_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The ConfigMap layout: tokens.csv -> ..data/tokens.csv, ..data -> ..v1
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(d.join("..v1/tokens.csv"), rows(&["tok-a"])).unwrap();
    symlink("..v1", d.join("..data")).unwrap();
    symlink("..data/tokens.csv", d.join("tokens.csv")).unwrap();
    let file = d.join("tokens.csv");
    let s = Server::start_in(dir, &[&format!("--token-auth-file={}", file.display())]);
    let d = s.dir.path().to_owned();
    let c = s.client();
    let url = format!("{}/healthz", s.url());
    assert_eq!(status_of(&c, &url, "tok-a").await, 200);

    // Concurrent load with every token of the test: only 200 or 401 may ever come back, and
    // during an atomic replacement (symlink swap, rename) a token of both the old and the new
    // file (`kept`) never gets 401: no request ever sees an empty or partial table.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let kept: Arc<Mutex<Option<&'static str>>> = Arc::new(Mutex::new(None));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (c, url, stop, count, kept) = (
            c.clone(),
            url.clone(),
            stop.clone(),
            count.clone(),
            kept.clone(),
        );
        load.push(tokio::spawn(async move {
            let tokens = ["tok-a", "tok-b", "tok-c", "tok-d", "tok-e"];
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let token = tokens[i % tokens.len()];
                let must_pass = *kept.lock().unwrap() == Some(token);
                let code = status_of(&c, &url, token).await;
                assert!(
                    code == 200 || code == 401,
                    "unexpected {code} during reload"
                );
                // Kept for the whole request (the step may have ended while it was on its way).
                let still = *kept.lock().unwrap() == Some(token);
                assert!(
                    !(must_pass && still && code == 401),
                    "{token}, in both files, got 401 during an atomic replacement"
                );
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    // The load makes progress during every step.
    let mut ran = count.load(Ordering::Relaxed);
    let mut progressed = || {
        let now = count.load(Ordering::Relaxed);
        assert!(now > ran, "the load stalled");
        ran = now;
    };
    let limit = Duration::from_secs(2);

    // 1. ConfigMap symlink swap: ..data now points at ..v2
    *kept.lock().unwrap() = Some("tok-a");
    std::fs::create_dir(d.join("..v2")).unwrap();
    std::fs::write(d.join("..v2/tokens.csv"), rows(&["tok-a", "tok-b"])).unwrap();
    symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..v1")).unwrap();
    let t = until(&c, &url, "tok-b", 200, limit).await;
    eprintln!("symlink swap visible after {t:?}");
    *kept.lock().unwrap() = None;
    progressed();

    // 2. In place (through the symlink: the file is in ..v2, watched as the symlinks' target)
    std::fs::write(&file, rows(&["tok-b", "tok-c"])).unwrap();
    until(&c, &url, "tok-c", 200, limit).await;
    until(&c, &url, "tok-a", 401, limit).await;
    progressed();

    // 3. Rename over the name (replaces the symlink by a regular file)
    *kept.lock().unwrap() = Some("tok-c");
    write_atomically(&file, &rows(&["tok-c", "tok-d"]));
    until(&c, &url, "tok-d", 200, limit).await;
    until(&c, &url, "tok-b", 401, limit).await;
    *kept.lock().unwrap() = None;
    progressed();

    // 4. A malformed file keeps the old set and is reported with file and line (replaced by
    // rename: written in place, it could be read empty, a valid file of no tokens, first)
    write_atomically(&file, "tok-e,user-e,5\nbroken-line\n");
    let start = Instant::now();
    while !s.stderr().contains(&format!("{}:2", file.display())) {
        assert!(
            start.elapsed() < limit,
            "no report naming {}:2 in:\n{}",
            file.display(),
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of(&c, &url, "tok-d").await, 200, "the old set stays");
    assert_eq!(
        status_of(&c, &url, "tok-e").await,
        401,
        "nothing of the bad file is used"
    );
    // and counted in kube_authn_file_reloads_total{result="failure"}.
    let metrics = c
        .get(format!("{}/metrics", s.url()))
        .header("Authorization", "Bearer tok-d")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("kube_authn_file_reloads_total{result=\"failure\"}")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(failures >= 1.0, "{metrics}");
    progressed();

    // 5. A good file again
    write_atomically(&file, &rows(&["tok-e"]));
    until(&c, &url, "tok-e", 200, limit).await;
    until(&c, &url, "tok-d", 401, limit).await;

    progressed();
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
}

/// `reload: false` in the configuration file: the token file is read once. The control, the
/// same with `reload: true`, sees the same replacement within the test's limit.
#[tokio::test]
async fn with_reload_off_the_file_is_read_once() {
    for reload in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.csv");
        std::fs::write(&file, rows(&["tok-a"])).unwrap();
        let config = dir.path().join("authn.yaml");
        std::fs::write(
            &config,
            format!("tokenAuthFile: {}\nreload: {reload}\n", file.display()),
        )
        .unwrap();
        let s = Server::start_in(dir, &[&format!("--config={}", config.display())]);
        let c = s.client();
        let url = format!("{}/healthz", s.url());
        assert_eq!(status_of(&c, &url, "tok-a").await, 200);
        write_atomically(&file, &rows(&["tok-b"]));
        if reload {
            until(&c, &url, "tok-b", 200, Duration::from_secs(10)).await;
        } else {
            // Three times what a watched file takes at most (the 1 s re-stat) on a quiet machine.
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(status_of(&c, &url, "tok-b").await, 401, "reload: false");
            assert_eq!(status_of(&c, &url, "tok-a").await, 200, "reload: false");
        }
    }
}
