//! Measures how long a revocation on veto takes to reach a resource server's verifier: for each
//! of N tokens, revoke it over HTTP, then time until the in-process `Verifier` refuses it. Prints
//! p50, p99 and max. A benchmark, run against a running veto (scripts/bench/stream_propagation.sh
//! starts one); never a test.
//!
//! ```text
//! VETO_URL=http://127.0.0.1:8080 VETO_ADMIN_KEY=<admin key> [N=1000] [TENANT=default] \
//!     [REVOKE_URL=<another node>] cargo run --release -p veto-verify --example propagation
//! ```
//!
//! `REVOKE_URL` sends the revocations to another node of the same cluster (PostgreSQL), so the
//! figure includes the hop between nodes; by default they go to `VETO_URL`, the node streamed from.
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veto_verify::{Config, Verifier};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: Value,
) -> Result<Value, Box<dyn std::error::Error>> {
    let r = http.post(url).bearer_auth(key).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        return Err(format!("POST {url}: {status} {v}").into());
    }
    Ok(v)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = env("VETO_URL")?;
    let admin = env("VETO_ADMIN_KEY")?;
    let revoke_base = std::env::var("REVOKE_URL").unwrap_or_else(|_| base.clone());
    let tenant = std::env::var("TENANT").unwrap_or_else(|_| "default".to_owned());
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let http = reqwest::Client::new();

    let key = post(
        &http,
        &format!("{base}/v1/tenants/{tenant}/api-keys"),
        &admin,
        json!({"name": "propagation bench", "scopes": ["tokens:verify"]}),
    )
    .await?["key"]
        .as_str()
        .ok_or("no key in the answer")?
        .to_owned();
    let mut tokens = Vec::with_capacity(n);
    while tokens.len() < n {
        let requests: Vec<Value> = (tokens.len()..n.min(tokens.len() + 1000))
            .map(|i| json!({"sub": format!("bench-{i}"), "aud": "api", "ttl_seconds": 3600}))
            .collect();
        let out = post(
            &http,
            &format!("{base}/v1/tenants/{tenant}/tokens/batch"),
            &admin,
            json!({ "requests": requests }),
        )
        .await?;
        for r in out["results"].as_array().ok_or("no results")? {
            let token = r["token"].as_str().ok_or("a batch item failed")?;
            let jti = r["jti"].as_str().ok_or("no jti")?;
            tokens.push((token.to_owned(), jti.to_owned()));
        }
    }

    let verifier = Verifier::start(Config::new(base.clone(), tenant.clone(), key))?;
    if !verifier.ready(Duration::from_secs(30)).await {
        return Err("the verifier did not get a current state".into());
    }
    let revoke_url = format!("{revoke_base}/v1/tenants/{tenant}/revocations");
    let mut delays = Vec::with_capacity(n);
    for (token, jti) in &tokens {
        if verifier.check(token, None).is_err() {
            return Err("a fresh token is refused before its revocation".into());
        }
        let started = Instant::now();
        post(&http, &revoke_url, &admin, json!({"jti": jti})).await?;
        // Polled: the verifier has no per-token notification, and a 50 µs poll is far below
        // what is measured.
        while verifier.check(token, None).is_ok() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("{jti} still accepted after 30 s").into());
            }
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "propagation from revoke request to refusal in the verifier, {n} revocations: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&delays, 0.50)),
        ms(percentile(&delays, 0.99)),
        ms(delays.last().copied().unwrap_or_default()),
    );
    Ok(())
}
