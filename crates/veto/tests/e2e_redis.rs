//! Optional Redis: notifications between nodes and a mirror of revocations. Redis is never the
//! source of truth: flushed, restarted or down, it never makes a revoked token valid and veto
//! keeps working. Each test runs its own `redis-server` (installed by scripts/test.sh) so that it
//! can flush, restart and kill it.
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use redis::AsyncCommands;
use serde_json::json;

struct Redis {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run ./scripts/test.sh, which installs it");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(15), check).await
}

fn jti(token: &str) -> String {
    decode(token).1["jti"].as_str().unwrap().to_owned()
}

/// Sum of a counter over all its label sets matching `filter`.
fn counter(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn two_nodes(redis: &Redis) -> (Server, Server) {
    let a = Server::start_with(&[("VETO_REDIS_URL", &redis.url())]).await;
    let b = a.start_node(&[("VETO_REDIS_URL", &redis.url())]).await;
    (a, b)
}

#[tokio::test]
async fn revocations_are_mirrored_and_announced() {
    let redis = Redis::start();
    let (a, b) = two_nodes(&redis).await;
    let mut r = redis.conn().await;
    let tok = a.token("default", "alice").await;
    // Wait until A is connected (it connects in the background).
    eventually("A mirrors revocations", || {
        let a = &a;
        let tok = tok.clone();
        let mut r = r.clone();
        async move {
            let _ = a
                .revoke("default", json!({"token": tok, "reason": "logout"}))
                .await;
            r.exists::<_, bool>(format!("veto:revoked:default:{}", jti(&tok)))
                .await
                .unwrap_or(false)
        }
    })
    .await;
    let key = format!("veto:revoked:default:{}", jti(&tok));
    let value: String = r.get(&key).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(v["reason"], "logout");
    assert!(v["until"].is_null());
    let ttl: i64 = r.ttl(&key).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 900,
        "TTL = remaining token lifetime, got {ttl}"
    );

    // B is woken through Redis pub/sub (counted), and rejects.
    eventually("B rejects", || async {
        b.reason("default", &tok).await.as_deref() == Some("revoked")
    })
    .await;
    eventually("B woken by Redis", || async {
        counter(&b.metrics().await, "veto_feed_wakeups_total", "redis") > 0.0
    })
    .await;

    // A subject cutoff is mirrored too.
    a.post(
        "/v1/tenants/default/subjects/alice/revoke-all",
        json!({"reason": "x"}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("cutoff mirrored", || {
        let mut r = r.clone();
        async move {
            r.exists::<_, bool>("veto:cutoff:default:sub:alice")
                .await
                .unwrap_or(false)
        }
    })
    .await;
}

#[tokio::test]
async fn a_redis_flush_or_restart_never_revalidates_a_token() {
    let mut redis = Redis::start();
    let (a, b) = two_nodes(&redis).await;
    let tok = a.token("default", "bob").await;
    a.revoke("default", json!({"token": tok}))
        .await
        .expect(StatusCode::CREATED);
    eventually("B rejects", || async {
        b.reason("default", &tok).await.as_deref() == Some("revoked")
    })
    .await;

    let mut r = redis.conn().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut r).await.unwrap();
    for node in [&a, &b] {
        assert_eq!(
            node.reason("default", &tok).await.as_deref(),
            Some("revoked")
        );
        assert_eq!(
            node.introspect("default", &tok).await,
            json!({"active": false})
        );
    }

    // Restart Redis on the same port (empty): still rejected, and writes still propagate.
    let port = redis.port;
    redis.stop();
    redis = Redis::start_on(port);
    let tok2 = a.token("default", "bob2").await;
    a.revoke("default", json!({"token": tok2}))
        .await
        .expect(StatusCode::CREATED);
    for node in [&a, &b] {
        assert_eq!(
            node.reason("default", &tok).await.as_deref(),
            Some("revoked")
        );
        eventually("rejects the new revocation", || async {
            node.reason("default", &tok2).await.as_deref() == Some("revoked")
        })
        .await;
    }
    drop(redis);
}

#[tokio::test]
async fn veto_keeps_working_with_redis_down() {
    let mut redis = Redis::start();
    let (a, b) = two_nodes(&redis).await;
    redis.stop();
    let tok = a.token("default", "carol").await;
    a.revoke("default", json!({"token": tok}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(a.reason("default", &tok).await.as_deref(), Some("revoked"));
    eventually("B rejects without Redis", || async {
        b.reason("default", &tok).await.as_deref() == Some("revoked")
    })
    .await;
    let other = a.token("default", "dan").await;
    assert_eq!(b.reason("default", &other).await, None);
    assert_eq!(a.get("/readyz").await.status, StatusCode::OK);

    // A node started while Redis is down starts and serves too.
    let c = a.start_node(&[("VETO_REDIS_URL", &redis.url())]).await;
    assert_eq!(c.reason("default", &tok).await.as_deref(), Some("revoked"));
    assert_eq!(c.reason("default", &other).await, None);
}
