//! Operations: purge (API and CLI), health, readiness, metrics, OpenAPI, the audit trail.
mod common;
use common::*;
use serde_json::{Value, json};

const R: &str = "/v1/tenants/default/revocations";

#[tokio::test]
async fn purge_deletes_only_rows_expired_more_than_the_margin_ago() {
    let srv = Server::start().await;
    // Expired long ago; expired 10 minutes ago; still live.
    srv.revoke(
        "default",
        json!({"jti": "ancient", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke(
        "default",
        json!({"jti": "recent", "expires_at": in_seconds(-600)}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke(
        "default",
        json!({"jti": "live", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let live_token = srv.issue("default", json!({"sub": "u"})).await;
    srv.revoke("default", json!({"token": live_token["token"]}))
        .await
        .expect(StatusCode::CREATED);

    let out = srv
        .post("/v1/admin/purge", json!({"safety_margin_seconds": 3600}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(out["deleted"]["revocations"], 1, "{out}");
    assert_problem(&srv.get(&format!("{R}/ancient")).await, 404);
    assert_eq!(srv.get(&format!("{R}/recent")).await.status, StatusCode::OK);
    assert_eq!(srv.get(&format!("{R}/live")).await.status, StatusCode::OK);
    // A smaller margin reaches the row that expired 10 minutes ago.
    let out = srv
        .post("/v1/admin/purge", json!({"safety_margin_seconds": 60}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(out["deleted"]["revocations"], 1, "{out}");
    assert_problem(&srv.get(&format!("{R}/recent")).await, 404);
    // Nothing left to purge; live revocations still hold.
    let out = srv
        .post("/v1/admin/purge", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(out["deleted"]["revocations"], 0, "{out}");
    assert_eq!(srv.get(&format!("{R}/live")).await.status, StatusCode::OK);
    assert_eq!(
        srv.reason("default", &str_of(&live_token["token"]))
            .await
            .as_deref(),
        Some("revoked")
    );
}

#[tokio::test]
async fn purge_is_admin_only_and_validates_its_body() {
    let srv = Server::start().await;
    srv.revoke(
        "default",
        json!({"jti": "ancient", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let (_, tenant_key) = srv
        .create_api_key("default", &["tokens:revoke", "keys:manage", "audit:read"])
        .await;
    let r = srv
        .call(
            "POST",
            "/v1/admin/purge",
            Some(&tenant_key),
            Some(json!({})),
        )
        .await;
    assert_problem(&r, 403);
    let r = srv
        .call("POST", "/v1/admin/purge", None, Some(json!({})))
        .await;
    assert_problem(&r, 401);
    for body in [
        json!({"safety_margin_seconds": -1}),
        json!({"safety_margin_seconds": "1h"}),
        json!({"margin": 5}),
    ] {
        let r = srv.post("/v1/admin/purge", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_problem(&r, 400);
    }
    assert_eq!(
        srv.get(&format!("{R}/ancient")).await.status,
        StatusCode::OK,
        "purged anyway"
    );
}

#[tokio::test]
async fn purge_from_the_command_line() {
    let srv = Server::start().await;
    for i in 0..25 {
        srv.revoke(
            "default",
            json!({"jti": format!("old{i}"), "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    srv.revoke(
        "default",
        json!({"jti": "recent", "expires_at": in_seconds(-600)}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke("default", json!({"jti": "live"}))
        .await
        .expect(StatusCode::CREATED);
    let purge = |margin: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_veto"));
        cmd.args(["purge", "--safety-margin-seconds", margin, "--data-dir"])
            .arg(srv.data_dir())
            .env_remove("VETO_DATABASE_URL")
            .env("VETO_LOG", "warn");
        // The same store as the server's: its PostgreSQL database when it runs on one.
        if let Some(url) = srv.database_url() {
            cmd.env("VETO_DATABASE_URL", url);
        }
        let out = cmd.output().expect("run veto purge");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "veto purge failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    // The summary is the API's answer: {"deleted": {"revocations": N, ...}}.
    let summary: Value =
        serde_json::from_str(purge("3600").trim()).expect("a JSON summary on stdout");
    assert_eq!(summary["deleted"]["revocations"], 25, "{summary}");
    assert_problem(&srv.get(&format!("{R}/old3")).await, 404);
    assert_eq!(srv.get(&format!("{R}/recent")).await.status, StatusCode::OK);
    assert_eq!(srv.get(&format!("{R}/live")).await.status, StatusCode::OK);
    let summary: Value = serde_json::from_str(purge("30").trim()).expect("JSON");
    assert_eq!(summary["deleted"]["revocations"], 1, "{summary}");
    assert_eq!(srv.get(&format!("{R}/live")).await.status, StatusCode::OK);
    // A negative margin is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veto"))
        .args(["purge", "--safety-margin-seconds", "-5", "--data-dir"])
        .arg(srv.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn the_server_purges_on_its_own_schedule() {
    let srv = Server::start_with(&[("VETO_PURGE_INTERVAL", "1")]).await;
    srv.revoke(
        "default",
        json!({"jti": "ancient", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke("default", json!({"jti": "live"}))
        .await
        .expect(StatusCode::CREATED);
    // Polls (bounded) instead of assuming how soon the sweep runs.
    let mut gone = false;
    for _ in 0..100 {
        if srv.get(&format!("{R}/ancient")).await.status == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "VETO_PURGE_INTERVAL=1 never purged the expired row");
    assert_eq!(srv.get(&format!("{R}/live")).await.status, StatusCode::OK);
    let runs: f64 = prometheus_samples(&srv.metrics().await)
        .iter()
        .filter(|(n, _, _)| n.contains("purge") && n.contains("runs"))
        .map(|(_, _, v)| v)
        .sum();
    assert!(runs >= 1.0, "no purge runs counted");
}

#[tokio::test]
async fn health_and_readiness() {
    let srv = Server::start().await;
    let r = srv.get_public("/healthz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = srv.get_public("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn metrics_count_requests_checks_revocations_and_the_index() {
    let srv = Server::start().await;
    let t = srv.token("default", "u").await;
    assert_eq!(srv.reason("default", &t).await, None);
    srv.revoke("default", json!({"token": t, "reason": "logout"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(srv.reason("default", &t).await.as_deref(), Some("revoked"));
    srv.post(
        "/v1/tenants/default/tokens",
        json!({"sub": "u", "alg": "RS256"}),
    )
    .await; // fails: no key
    let r = srv.get_public("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    let samples = prometheus_samples(&r.text);
    let find = |pred: &dyn Fn(&str, &[Label]) -> bool| sum_samples(&samples, pred);
    let has = |l: &[Label], k: &str, v: &str| l.iter().any(|(a, b)| a == k && b == v);
    let label_with = |l: &[Label], needle: &str| l.iter().any(|(_, b)| b.contains(needle));
    // Requests by route and status: the verify route answered 200 twice.
    let verifies = find(&|n, l| {
        n.contains("requests")
            && n.ends_with("_total")
            && label_with(l, "tokens/verify")
            && has(l, "status", "200")
    });
    assert_eq!(
        verifies, 2.0,
        "request counter of the verify route:\n{}",
        r.text
    );
    // Latency by route.
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n.contains("duration") && label_with(l, "tokens/verify")),
        "no latency for the verify route:\n{}",
        r.text
    );
    // Tokens issued by alg, issuance failures.
    assert_eq!(
        find(&|n, l| n.contains("issued") && has(l, "alg", "ES256")),
        1.0,
        "{}",
        r.text
    );
    assert!(
        find(&|n, _| n.contains("issue") && n.contains("fail")) >= 1.0,
        "{}",
        r.text
    );
    // Checks by outcome.
    assert_eq!(
        find(&|n, l| n.contains("check") && l.iter().any(|(_, v)| v == "revoked")),
        1.0,
        "{}",
        r.text
    );
    // Revocations by reason class and kind (never by the free text itself, see e2e_hostile).
    assert_eq!(
        find(&|n, l| n.contains("revocations")
            && n.ends_with("_total")
            && has(l, "reason", "logout")
            && has(l, "kind", "permanent")),
        1.0,
        "{}",
        r.text
    );
    // The revocation index holds one jti.
    assert_eq!(
        find(&|n, _| n.contains("index") && n.contains("size")),
        1.0,
        "{}",
        r.text
    );
}

#[tokio::test]
async fn openapi_describes_the_contracts_routes() {
    let srv = Server::start().await;
    let api = srv.get_public("/openapi.json").await.expect(StatusCode::OK);
    assert!(
        api["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{}",
        api["openapi"]
    );
    let paths = api["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/v1/tenants", &["post"][..]),
        ("/v1/tenants/{tenant}", &["get"]),
        ("/v1/tenants/{tenant}/suspend", &["post"]),
        ("/v1/tenants/{tenant}/resume", &["post"]),
        ("/v1/tenants/{tenant}/revoke-all", &["post"]),
        ("/v1/tenants/{tenant}/api-keys", &["get", "post"]),
        ("/v1/tenants/{tenant}/api-keys/{id}", &["delete"]),
        ("/v1/tenants/{tenant}/keys", &["get", "post"]),
        ("/v1/tenants/{tenant}/keys/rotate", &["post"]),
        ("/v1/tenants/{tenant}/keys/{kid}/revoke", &["post"]),
        ("/v1/tenants/{tenant}/tokens", &["post"]),
        ("/v1/tenants/{tenant}/tokens/batch", &["post"]),
        ("/v1/tenants/{tenant}/tokens/verify", &["post"]),
        ("/v1/tenants/{tenant}/revocations", &["get", "post"]),
        ("/v1/tenants/{tenant}/revocations/batch", &["post"]),
        ("/v1/tenants/{tenant}/revocations/stats", &["get"]),
        ("/v1/tenants/{tenant}/revocations/{jti}", &["get", "delete"]),
        ("/v1/tenants/{tenant}/subjects/{sub}/revoke-all", &["post"]),
        ("/v1/tenants/{tenant}/audit", &["get"]),
        ("/v1/admin/purge", &["post"]),
        ("/t/{tenant}/.well-known/jwks.json", &["get"]),
        (
            "/t/{tenant}/.well-known/oauth-authorization-server",
            &["get"],
        ),
        ("/t/{tenant}/oauth2/introspect", &["post"]),
        ("/t/{tenant}/oauth2/revoke", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("openapi lacks {path}"));
        for m in methods {
            assert!(item.get(*m).is_some(), "openapi lacks {m} {path}");
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let srv = Server::start().await;
    assert_problem(&srv.get("/no/such/route").await, 404);
    let r = srv
        .call("PUT", "/v1/tenants/default", Some(ADMIN), Some(json!({})))
        .await;
    assert_problem(&r, 405);
}

/// The audit events of `tenant` (all pages, newest first).
async fn audit(srv: &Server, tenant: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let r = srv
            .get(&format!("/v1/tenants/{tenant}/audit?limit=1000{query}{c}"))
            .await;
        out.extend(r.items());
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn the_audit_trail_records_who_did_what() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (admin_key_id, admin_like) = srv
        .create_api_key("acme", &["keys:manage", "tokens:revoke"])
        .await;
    let kid = str_of(
        &srv.call(
            "POST",
            "/v1/tenants/acme/keys",
            Some(&admin_like),
            Some(json!({"alg": "EdDSA"})),
        )
        .await
        .expect(StatusCode::CREATED)["kid"],
    );
    let rotated = str_of(
        &srv.post("/v1/tenants/acme/keys/rotate", json!({"alg": "ES256"}))
            .await
            .expect(StatusCode::CREATED)["kid"],
    );
    srv.post(
        &format!("/v1/tenants/acme/keys/{kid}/revoke"),
        json!({"reason": "key leaked"}),
    )
    .await
    .expect(StatusCode::OK);
    srv.call(
        "POST",
        "/v1/tenants/acme/revocations",
        Some(&admin_like),
        Some(json!({"jti": "j1", "reason": "logout"})),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke("acme", json!({"jti": "j1", "reason": "again"}))
        .await
        .expect(StatusCode::OK);
    srv.revoke(
        "acme",
        json!({"jti": "s1", "until": "2099-01-01T00:00:00Z", "reason": "hold"}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.delete("/v1/tenants/acme/revocations/s1")
        .await
        .expect(StatusCode::NO_CONTENT);
    srv.post("/v1/tenants/acme/suspend", json!({"reason": "unpaid"}))
        .await
        .expect(StatusCode::OK);
    srv.post("/v1/tenants/acme/resume", json!({}))
        .await
        .expect(StatusCode::OK);
    let (gone_id, _) = srv.create_api_key("acme", &["tokens:issue"]).await;
    srv.delete(&format!("/v1/tenants/acme/api-keys/{gone_id}"))
        .await
        .expect(StatusCode::NO_CONTENT);

    let (_, reader) = srv.create_api_key("acme", &["audit:read"]).await;
    let r = srv
        .call("GET", "/v1/tenants/acme/audit", Some(&reader), None)
        .await;
    let items = r.items();
    for e in &items {
        for f in [
            "id", "at", "actor", "action", "target", "reason", "metadata",
        ] {
            assert!(e.get(f).is_some(), "audit event lacks {f}: {e}");
        }
        rfc3339(&e["at"]);
    }
    let all = audit(&srv, "acme", "").await;
    let on =
        |target: &str| -> Vec<&Value> { all.iter().filter(|e| e["target"] == target).collect() };
    // Key creation (by the tenant key, named as actor) and revocation (with its reason).
    let key_events = on(&kid);
    assert_eq!(key_events.len(), 2, "{key_events:?}");
    let revoke_event = key_events
        .iter()
        .find(|e| e["reason"] == "key leaked")
        .expect("key revocation event");
    let create_event = key_events
        .iter()
        .find(|e| e["reason"] != "key leaked")
        .unwrap();
    assert_eq!(
        create_event["actor"],
        admin_key_id.as_str(),
        "{create_event}"
    );
    assert_ne!(create_event["action"], revoke_event["action"]);
    assert!(!on(&rotated).is_empty(), "no event for the rotation");
    // The revocation, once: the idempotent repeat wrote no second event.
    let j1 = on("j1");
    assert_eq!(j1.len(), 1, "{j1:?}");
    assert_eq!(
        (j1[0]["reason"].clone(), j1[0]["actor"].clone()),
        (json!("logout"), json!(admin_key_id))
    );
    // The suspension and its lift.
    assert_eq!(on("s1").len(), 2, "{:?}", on("s1"));
    // Tenant suspension and resumption, api key creation and deletion.
    let tenant_events = on("acme");
    assert!(
        tenant_events.iter().any(|e| e["reason"] == "unpaid"),
        "{tenant_events:?}"
    );
    assert!(tenant_events.len() >= 2, "{tenant_events:?}");
    assert_eq!(
        on(&gone_id).len(),
        2,
        "api key create and delete: {:?}",
        on(&gone_id)
    );
    // Newest first.
    let times: Vec<_> = all.iter().map(|e| rfc3339(&e["at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "audit not newest first"
    );

    // The action filter returns exactly that action's events.
    let action = str_of(&revoke_event["action"]);
    let only = audit(&srv, "acme", &format!("&action={action}")).await;
    assert_eq!(only.len(), 1, "{only:?}");
    assert_eq!(only[0]["target"], kid.as_str());
    let none = audit(&srv, "acme", "&action=no.such.action").await;
    assert!(none.is_empty());

    // Pagination: limit=3 walks every event exactly once.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let r = srv.get(&format!("/v1/tenants/acme/audit?limit=3{c}")).await;
        let page = r.items();
        assert!(page.len() <= 3);
        ids.extend(page.iter().map(|e| e["id"].to_string()));
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let all_ids: Vec<String> = all.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids, all_ids, "paging by 3 differs from one page");
    assert!(all_ids.len() >= 10, "{all_ids:?}");

    // audit:read is needed, and only for the key's own tenant.
    let (_, no_audit) = srv.create_api_key("acme", &["tokens:revoke"]).await;
    assert_problem(
        &srv.call("GET", "/v1/tenants/acme/audit", Some(&no_audit), None)
            .await,
        403,
    );
    assert_problem(
        &srv.call("GET", "/v1/tenants/default/audit", Some(&reader), None)
            .await,
        403,
    );
    // Another tenant's trail does not hold acme's events.
    let default_events = audit(&srv, "default", "").await;
    assert!(
        !default_events.iter().any(|e| e["target"] == "j1"),
        "{default_events:?}"
    );
}
