//! The request path of each strategy, as a ratio to the same service without authentication.
//!
//! `cargo bench -p kube-authn --bench request_path`
//!
//! Every request goes through `AuthnService::call` and its response future, polled once (the
//! strategies here are synchronous). Requests are built outside the measured closure.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use base64::Engine;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use kube_authn::{AuthnLayer, PasswordFile, TokenFile};
use tower::Layer;

mod common;
use common::{bench_calls, inner};

/// `GET /api` with this `Authorization` header.
fn get_with_authorization(value: &str) -> Request<()> {
    Request::get("/api")
        .header("authorization", value)
        .body(())
        .unwrap()
}

fn token_csv(n: usize) -> (Vec<u8>, Vec<String>) {
    let mut csv = String::with_capacity(n * 64);
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let token = format!("{:032x}{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
        csv.push_str(&format!(
            "{token},user-{i},uid-{i},\"group-a,group-{}\"\n",
            i % 100
        ));
        tokens.push(token);
    }
    (csv.into_bytes(), tokens)
}

fn password_csv(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("password-{i:08},user-{i},uid-{i},\"group-a\"\n"))
        .collect::<String>()
        .into_bytes()
}

fn request_path(c: &mut Criterion) {
    let (csv, tokens) = token_csv(100_000);
    let token_file = TokenFile::from_csv("bench-tokens.csv", &csv).unwrap();
    let passwords = PasswordFile::from_csv("bench-passwords.csv", &password_csv(10_000)).unwrap();
    let bearer: Vec<String> = tokens
        .iter()
        .step_by(97)
        .map(|t| format!("Bearer {t}"))
        .collect();
    let websocket: Vec<String> = tokens
        .iter()
        .step_by(97)
        .map(|t| {
            format!(
                "base64url.bearer.authorization.k8s.io.{}, base64.binary.k8s.io",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
            )
        })
        .collect();
    let basic: Vec<String> = (0..10_000)
        .step_by(7)
        .map(|i| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("user-{i}:password-{i:08}"))
            )
        })
        .collect();

    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));

    let mut baseline = inner();
    bench_calls(&mut group, "no_authentication", &mut baseline, || {
        Request::get("/api")
            .header("authorization", &bearer[0])
            .body(())
            .unwrap()
    });

    let mut svc = AuthnLayer::builder()
        .token(token_file.clone())
        .build()
        .unwrap()
        .layer(inner());
    let mut i = 0;
    bench_calls(&mut group, "bearer_token_file_100k", &mut svc, || {
        i = (i + 1) % bearer.len();
        get_with_authorization(&bearer[i])
    });
    bench_calls(&mut group, "bearer_unknown_token_401", &mut svc, || {
        get_with_authorization("Bearer not-a-token")
    });
    let mut i = 0;
    bench_calls(&mut group, "websocket_token_file_100k", &mut svc, || {
        i = (i + 1) % websocket.len();
        Request::get("/api")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-protocol", &websocket[i])
            .body(())
            .unwrap()
    });

    let mut svc = AuthnLayer::builder()
        .password(passwords)
        .build()
        .unwrap()
        .layer(inner());
    let mut i = 0;
    bench_calls(&mut group, "basic_password_file_10k", &mut svc, || {
        i = (i + 1) % basic.len();
        get_with_authorization(&basic[i])
    });

    let mut svc = AuthnLayer::builder()
        .token(token_file)
        .anonymous(true)
        .build()
        .unwrap()
        .layer(inner());
    bench_calls(&mut group, "anonymous", &mut svc, || {
        Request::get("/api").body(()).unwrap()
    });
    group.finish();

    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("parse_token_file_100k", |b| {
        b.iter(|| black_box(TokenFile::from_csv("bench-tokens.csv", &csv).unwrap().len()))
    });
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
