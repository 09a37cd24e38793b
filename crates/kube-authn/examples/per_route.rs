//! Per-route policies: `/metrics` accepts only the operator token file, the API accepts any
//! configured credential or anonymous, `/healthz` is open.
//!
//! Run: `cargo run -p kube-authn --example per_route -- 127.0.0.1:8080 ops-tokens.csv tokens.csv`
//! then `curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8080/api/whoami`.

use axum::{Json, Router, routing::get};
use kube_authn::{AuthnLayer, UserInfo};

async fn whoami(user: UserInfo) -> Json<UserInfo> {
    Json(user)
}

/// The router of this example, shared with the tests.
pub(crate) fn app(ops_tokens: &str, tokens: &str) -> Result<Router, kube_authn::BuildError> {
    let ops = AuthnLayer::builder().token_file(ops_tokens).build()?;
    let api = AuthnLayer::builder()
        .token_file(tokens)
        .token_file(ops_tokens)
        .anonymous(true)
        .build()?;
    let metrics = Router::new()
        .route(
            "/metrics",
            get(|user: UserInfo| async move { format!("# metrics for {}\n", user.username) }),
        )
        .route_layer(ops);
    let api_routes = Router::new()
        .route("/api/whoami", get(whoami))
        .route_layer(api);
    Ok(Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(metrics)
        .merge(api_routes))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(ops), Some(tokens)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: per_route ADDR OPS_TOKENS_CSV TOKENS_CSV");
        std::process::exit(2);
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(&ops, &tokens)?).await?;
    Ok(())
}
