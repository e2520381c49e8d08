//! A resource server that checks veto's tokens itself: one protected route, `GET /me`, that
//! answers the token's `sub`.
//!
//! ```text
//! VETO_URL=http://127.0.0.1:8080 VETO_TENANT=default VETO_API_KEY=<key with tokens:verify> \
//!     cargo run -p veto-verify --example resource_server
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/me
//! ```
//!
//! `LISTEN` (default `127.0.0.1:3000`), `AUDIENCE` (tokens must name it in `aud`) and
//! `RUST_LOG` (e.g. `veto_verify=info`: stream connections and JWKS fetches) are optional.
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use veto_verify::{Config, VerifiedToken, Verifier, VerifyLayer};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

async fn me(Extension(token): Extension<VerifiedToken>) -> String {
    token.sub.unwrap_or_default().into()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = Config::new(env("VETO_URL")?, env("VETO_TENANT")?, env("VETO_API_KEY")?);
    let verifier = Verifier::start(config)?;
    if !verifier.ready(Duration::from_secs(10)).await {
        // Not fatal: the verifier keeps trying, and refuses every token (index_stale) until
        // it has a current state.
        eprintln!("veto's revocation state is not here yet; refusing tokens until it is");
    }
    let mut layer = VerifyLayer::new(verifier);
    if let Ok(audience) = std::env::var("AUDIENCE") {
        layer = layer.audience(audience);
    }
    let app = Router::new().route("/me", get(me)).layer(layer);
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
