//! The revocation ledger over HTTP: revoke by jti or token, idempotency, batches, reading and
//! listing, stats, temporary suspensions, and durability across `kill -9`.
mod common;
use common::*;
use serde_json::{Value, json};

const R: &str = "/v1/tenants/default/revocations";

const RECORD_FIELDS: [&str; 10] = [
    "jti",
    "tenant",
    "sub",
    "expires_at",
    "revoked_at",
    "reason",
    "revoked_by",
    "metadata",
    "until",
    "status",
];

#[tokio::test]
async fn revoke_by_jti_answers_201_then_200_with_the_original_record() {
    let srv = Server::start().await;
    let tok = srv
        .issue("default", json!({"sub": "u", "aud": "api"}))
        .await;
    let jti = str_of(&tok["jti"]);
    let expires = "2099-06-01T00:00:00Z";
    let first = srv
        .revoke(
            "default",
            json!({"jti": jti, "sub": "u", "expires_at": expires, "reason": "logout", "metadata": {"ip": "10.0.0.1", "n": 2}}),
        )
        .await
        .expect(StatusCode::CREATED);
    for f in RECORD_FIELDS {
        assert!(first.get(f).is_some(), "record lacks {f}: {first}");
    }
    assert_eq!(first["jti"], jti.as_str());
    assert_eq!(first["tenant"], "default");
    assert_eq!(first["sub"], "u");
    assert_eq!(rfc3339(&first["expires_at"]), rfc3339(&json!(expires)));
    assert_eq!(first["reason"], "logout");
    assert_eq!(first["metadata"], json!({"ip": "10.0.0.1", "n": 2}));
    assert_eq!(first["until"], json!(null));
    assert_eq!(first["status"], "revoked");
    assert!(
        first["revoked_by"].as_str().is_some_and(|s| !s.is_empty()),
        "{first}"
    );
    let age = time::OffsetDateTime::now_utc() - rfc3339(&first["revoked_at"]);
    assert!(age.whole_seconds().abs() < 300);

    // Every repeat: 200 with the original, unchanged (not the new reason or metadata).
    for body in [
        json!({"jti": jti}),
        json!({"jti": jti, "reason": "something else", "metadata": {"ip": "1.2.3.4"}}),
        json!({"token": tok["token"]}),
    ] {
        let again = srv.revoke("default", body).await.expect(StatusCode::OK);
        assert_eq!(again, first, "a repeat changed the record");
    }
    let got = srv.get(&format!("{R}/{jti}")).await.expect(StatusCode::OK);
    assert_eq!(got, first);
    // Verify names the reason and shows the record.
    let v = srv.verify("default", &str_of(&tok["token"])).await;
    assert_eq!(
        (v["active"].clone(), v["reason"].clone()),
        (json!(false), json!("revoked"))
    );
    assert_eq!(v["revocation"], first);
    assert_eq!(
        srv.introspect("default", &str_of(&tok["token"])).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn concurrent_repeats_create_exactly_one_record() {
    let srv = Server::start().await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let req = srv
            .http
            .post(srv.url(R))
            .bearer_auth(ADMIN)
            .json(&json!({"jti": "raced", "reason": format!("attempt {i}")}));
        tasks.push(tokio::spawn(async move {
            Resp::read(req.send().await.unwrap()).await
        }));
    }
    let mut created = Vec::new();
    let mut repeats = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::CREATED => created.push(r.json),
            StatusCode::OK => repeats.push(r.json),
            s => panic!("{s}: {}", r.text),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    for r in &repeats {
        assert_eq!(r, &created[0]);
    }
    assert_eq!(
        srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK)["revoked"],
        1
    );
}

#[tokio::test]
async fn revoke_by_token_takes_jti_sub_and_expiry_from_it() {
    let srv = Server::start().await;
    let tok = srv
        .issue("default", json!({"sub": "carol", "ttl_seconds": 300}))
        .await;
    let rec = srv
        .revoke(
            "default",
            json!({"token": tok["token"], "reason": "logout"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rec["jti"], tok["jti"]);
    assert_eq!(rec["sub"], "carol");
    assert_eq!(rfc3339(&rec["expires_at"]), rfc3339(&tok["expires_at"]));
    assert_eq!(rec["reason"], "logout");
    assert_eq!(
        srv.reason("default", &str_of(&tok["token"]))
            .await
            .as_deref(),
        Some("revoked")
    );
    // A token revoked by token is found by its jti.
    let got = srv
        .get(&format!("{R}/{}", str_of(&tok["jti"])))
        .await
        .expect(StatusCode::OK);
    assert_eq!(got, rec);
}

#[tokio::test]
async fn a_bare_jti_lives_for_the_maximum_token_lifetime() {
    let srv = Server::start_with(&[("VETO_MAX_TOKEN_TTL_SECONDS", "7200")]).await;
    let rec = srv
        .revoke("default", json!({"jti": "bare"}))
        .await
        .expect(StatusCode::CREATED);
    let life = rfc3339(&rec["expires_at"]) - rfc3339(&rec["revoked_at"]);
    assert!(
        (life.whole_seconds() - 7200).abs() <= 2,
        "bare jti lives {life}"
    );
    assert_eq!(rec["status"], "revoked");
}

#[tokio::test]
async fn an_expires_at_in_the_past_is_accepted() {
    let srv = Server::start().await;
    let rec = srv
        .revoke(
            "default",
            json!({"jti": "old", "expires_at": "2020-01-01T00:00:00Z", "sub": "s"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rfc3339(&rec["expires_at"]).unix_timestamp(), 1_577_836_800);
    assert_eq!(srv.get(&format!("{R}/old")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn invalid_revocations_are_400_and_write_nothing() {
    let srv = Server::start().await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    for (body, needle) in [
        (json!({}), "jti"),
        (json!({"jti": ""}), "jti"),
        (json!({"jti": 5}), "jti"),
        (json!({"jti": "x", "token": tok["token"]}), "token"),
        (json!({"jti": "x", "metadata": [1]}), "metadata"),
        (json!({"jti": "x", "metadata": "text"}), "metadata"),
        (
            json!({"jti": "x", "until": "2001-01-01T00:00:00Z"}),
            "until",
        ),
        (json!({"jti": "x", "until": "tomorrow"}), "until"),
        (json!({"jti": "x", "expires_at": "soon"}), "expires_at"),
        (json!({"jti": "x", "reason": 5}), "reason"),
        (json!({"jti": "x", "colour": "red"}), "colour"),
        (json!({"token": "garbage"}), "token"),
        (json!({"token": ""}), "token"),
    ] {
        let r = srv.revoke("default", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_problem_names(&r, 400, needle);
    }
    let req = srv
        .http
        .post(srv.url(R))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("[\"x\"]");
    assert_problem(&srv.send("array body", req).await, 400);
    assert!(
        srv.get(R).await.items().is_empty(),
        "an invalid request wrote something"
    );
    assert_problem(&srv.get(&format!("{R}/x")).await, 404);
    assert_eq!(srv.reason("default", &str_of(&tok["token"])).await, None);
}

#[tokio::test]
async fn get_of_an_unknown_jti_is_404() {
    let srv = Server::start().await;
    assert_problem(&srv.get(&format!("{R}/never-revoked")).await, 404);
}

#[tokio::test]
async fn batch_revokes_all_and_counts_created_and_existing() {
    let srv = Server::start().await;
    let toks: Vec<Value> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(srv.issue("default", json!({"sub": format!("u{i}")})).await);
        }
        v
    };
    let mut items: Vec<Value> = (0..50)
        .map(|i| json!({"jti": format!("j{i}"), "reason": "bulk", "sub": "bulk-user"}))
        .collect();
    items.push(json!({"token": toks[0]["token"]}));
    items.push(json!({"jti": toks[1]["jti"], "until": "2099-01-01T00:00:00Z"}));
    let b = srv
        .post(&format!("{R}/batch"), json!({"revocations": items}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(b, json!({"created": 52, "existing": 0}));
    assert_eq!(
        srv.reason("default", &str_of(&toks[0]["token"]))
            .await
            .as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.reason("default", &str_of(&toks[1]["token"]))
            .await
            .as_deref(),
        Some("suspended")
    );
    assert_eq!(
        srv.reason("default", &str_of(&toks[2]["token"])).await,
        None
    );
    let j7 = srv.get(&format!("{R}/j7")).await.expect(StatusCode::OK);
    assert_eq!(
        (j7["reason"].clone(), j7["sub"].clone()),
        (json!("bulk"), json!("bulk-user"))
    );
    // Repeats count as existing, and keep their original record.
    let b = srv
        .post(
            &format!("{R}/batch"),
            json!({"revocations": [{"jti": "j0", "reason": "changed"}, {"jti": "new-1"}, {"jti": "j1"}]}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(b, json!({"created": 1, "existing": 2}));
    assert_eq!(
        srv.get(&format!("{R}/j0")).await.expect(StatusCode::OK)["reason"],
        "bulk"
    );
    let stats = srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK);
    assert_eq!(
        (stats["revoked"].clone(), stats["suspended"].clone()),
        (json!(52), json!(1))
    );
}

#[tokio::test]
async fn a_batch_with_one_invalid_item_is_400_naming_its_index_and_writes_nothing() {
    let srv = Server::start().await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    for (bad_at, bad) in [
        (0, json!({"sub": "no jti"})),
        (2, json!({"jti": 5})),
        (7, json!({"jti": "x", "until": "2001-01-01T00:00:00Z"})),
        (99, json!({"jti": "x", "unknown": true})),
        (42, json!({"token": "garbage"})),
    ] {
        let mut items: Vec<Value> = (0..100)
            .map(|i| json!({"jti": format!("ok-{i}")}))
            .collect();
        items[1] = json!({"token": tok["token"]});
        items[bad_at] = bad.clone();
        let r = srv
            .post(&format!("{R}/batch"), json!({"revocations": items}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_problem(&r, 400);
        assert_eq!(r.json["index"], bad_at, "{bad}: {}", r.text);
    }
    assert!(
        srv.get(R).await.items().is_empty(),
        "a rejected batch wrote something"
    );
    assert_problem(&srv.get(&format!("{R}/ok-3")).await, 404);
    assert_eq!(srv.reason("default", &str_of(&tok["token"])).await, None);
}

#[tokio::test]
async fn a_batch_takes_at_most_10000_items() {
    let srv = Server::start_with(&[("VETO_LOG", "error")]).await;
    let too_many: Vec<_> = (0..10_001)
        .map(|i| json!({"jti": format!("{i}")}))
        .collect();
    let r = srv
        .post(&format!("{R}/batch"), json!({"revocations": too_many}))
        .await;
    assert_problem_names(&r, 400, "10000");
    assert!(srv.get(R).await.items().is_empty());
    let max: Vec<_> = (0..10_000)
        .map(|i| json!({"jti": format!("{i}")}))
        .collect();
    let b = srv
        .post(&format!("{R}/batch"), json!({"revocations": max}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(b, json!({"created": 10000, "existing": 0}));
    assert_eq!(srv.get(&format!("{R}/9999")).await.status, StatusCode::OK);
}

/// Follows `next_cursor` from `first` (a path with query) until the end; returns every page.
async fn all_pages(srv: &Server, first: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut path = first.to_owned();
    let sep = if first.contains('?') { '&' } else { '?' };
    loop {
        let r = srv.get(&path).await;
        pages.push(r.items());
        match &r.json["next_cursor"] {
            Value::String(c) => path = format!("{first}{sep}cursor={c}"),
            Value::Null => break,
            other => panic!("next_cursor {other}"),
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
    pages
}

fn jtis(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| str_of(&i["jti"])).collect()
}

#[tokio::test]
async fn the_list_pages_newest_first_and_filters() {
    let srv = Server::start().await;
    let (other_id, other_key) = srv.create_api_key("default", &["tokens:revoke"]).await;
    for i in 0..5 {
        srv.revoke(
            "default",
            json!({"jti": format!("a{i}"), "sub": "alice", "reason": "logout"}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    srv.revoke(
        "default",
        json!({"jti": "b0", "sub": "bob", "reason": "compromised"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let r = srv
        .call(
            "POST",
            R,
            Some(&other_key),
            Some(json!({"jti": "c0", "sub": "carol", "reason": "logout", "until": "2099-01-01T00:00:00Z"})),
        )
        .await;
    let c0 = r.expect(StatusCode::CREATED);

    let pages = all_pages(&srv, &format!("{R}?limit=2")).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2, 1]);
    let all: Vec<Value> = pages.concat();
    let mut seen = jtis(&all);
    // Newest first: revoked_at never increases along the pages.
    let times: Vec<_> = all.iter().map(|i| rfc3339(&i["revoked_at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {seen:?}"
    );
    assert_eq!(seen[0], "c0", "the newest record comes first");
    seen.sort();
    assert_eq!(
        seen,
        ["a0", "a1", "a2", "a3", "a4", "b0", "c0"],
        "a record missing or repeated"
    );
    // Without a limit, everything on one page.
    let one = srv.get(R).await;
    assert_eq!(one.items().len(), 7);
    assert_eq!(one.json["next_cursor"], json!(null));

    // Filters, alone, combined, and paginated.
    let alice = all_pages(&srv, &format!("{R}?sub=alice&limit=2"))
        .await
        .concat();
    let mut a = jtis(&alice);
    a.sort();
    assert_eq!(a, ["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(
        jtis(&srv.get(&format!("{R}?reason=compromised")).await.items()),
        ["b0"]
    );
    let logout = srv.get(&format!("{R}?reason=logout")).await.items();
    assert_eq!(logout.len(), 6);
    assert_eq!(
        c0["revoked_by"],
        other_id.as_str(),
        "revoked_by names the API key"
    );
    let by_other = srv.get(&format!("{R}?revoked_by={other_id}")).await.items();
    assert_eq!(jtis(&by_other), ["c0"]);
    let admin_id = srv.get(&format!("{R}/a0")).await.expect(StatusCode::OK)["revoked_by"].clone();
    assert_ne!(admin_id, json!(other_id));
    let by_admin = srv
        .get(&format!("{R}?revoked_by={}", str_of(&admin_id)))
        .await
        .items();
    assert_eq!(by_admin.len(), 6);
    assert!(
        srv.get(&format!("{R}?sub=alice&reason=compromised"))
            .await
            .items()
            .is_empty()
    );
    assert_eq!(
        jtis(
            &srv.get(&format!("{R}?sub=carol&reason=logout"))
                .await
                .items()
        ),
        ["c0"]
    );
    assert!(srv.get(&format!("{R}?sub=nobody")).await.items().is_empty());

    // Bad paging parameters.
    for q in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=x",
        "cursor=not-a-cursor",
    ] {
        let r = srv.get(&format!("{R}?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert_problem(&r, 400);
    }
    assert_eq!(srv.get(&format!("{R}?limit=1000")).await.items().len(), 7);
}

#[tokio::test]
async fn reading_revocations_is_allowed_with_audit_read() {
    let srv = Server::start().await;
    srv.revoke("default", json!({"jti": "j", "reason": "logout"}))
        .await
        .expect(StatusCode::CREATED);
    let (_, auditor) = srv.create_api_key("default", &["audit:read"]).await;
    for path in [R.to_owned(), format!("{R}/j"), format!("{R}/stats")] {
        let r = srv.call("GET", &path, Some(&auditor), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    // But it does not revoke.
    let r = srv
        .call("POST", R, Some(&auditor), Some(json!({"jti": "k"})))
        .await;
    assert_problem(&r, 403);
}

#[tokio::test]
async fn stats_count_permanent_and_suspended_records() {
    let srv = Server::start().await;
    let empty = srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK);
    assert_eq!(
        (
            empty["revoked"].clone(),
            empty["suspended"].clone(),
            empty["last_24h"].clone()
        ),
        (json!(0), json!(0), json!(0))
    );
    for (jti, reason) in [("p1", "logout"), ("p2", "logout"), ("p3", "fraud")] {
        srv.revoke("default", json!({"jti": jti, "reason": reason}))
            .await
            .expect(StatusCode::CREATED);
    }
    srv.revoke(
        "default",
        json!({"jti": "s1", "reason": "investigation", "until": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let s = srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK);
    assert_eq!(s["revoked"], 3, "{s}");
    assert_eq!(s["suspended"], 1, "{s}");
    assert_eq!(s["by_reason"]["logout"], 2, "{s}");
    assert_eq!(s["by_reason"]["fraud"], 1, "{s}");
    assert_eq!(s["last_24h"], 4, "{s}");
    // A lifted suspension is no longer in force.
    srv.delete(&format!("{R}/s1")).await;
    let s = srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK);
    assert_eq!(
        (s["revoked"].clone(), s["suspended"].clone()),
        (json!(3), json!(0)),
        "{s}"
    );
    // Another tenant's stats are its own.
    srv.create_tenant("acme").await;
    let a = srv
        .get("/v1/tenants/acme/revocations/stats")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (a["revoked"].clone(), a["suspended"].clone()),
        (json!(0), json!(0))
    );
}

#[tokio::test]
async fn a_suspension_lifts_early_with_delete() {
    let srv = Server::start().await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    let token = str_of(&tok["token"]);
    let jti = str_of(&tok["jti"]);
    let rec = srv
        .revoke(
            "default",
            json!({"jti": jti, "until": "2099-01-01T00:00:00Z", "reason": "investigation"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rec["status"], "suspended");
    assert_eq!(rfc3339(&rec["until"]).year(), 2099);
    let v = srv.verify("default", &token).await;
    assert_eq!(
        (v["active"].clone(), v["reason"].clone()),
        (json!(false), json!("suspended"))
    );
    assert_eq!(v["revocation"]["status"], "suspended");
    assert_eq!(v["revocation"]["jti"], jti.as_str());
    assert_eq!(
        srv.introspect("default", &token).await,
        json!({"active": false})
    );
    let r = srv.delete(&format!("{R}/{jti}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty());
    assert_eq!(srv.reason("default", &token).await, None);
    assert_eq!(srv.introspect("default", &token).await["active"], true);
}

#[tokio::test]
async fn a_suspension_lifts_by_itself_at_until() {
    let srv = Server::start().await;
    let short = srv.issue("default", json!({"sub": "u"})).await;
    let long = srv.issue("default", json!({"sub": "u"})).await;
    srv.revoke(
        "default",
        json!({"jti": short["jti"], "until": in_seconds(3)}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke(
        "default",
        json!({"jti": long["jti"], "until": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(
        srv.reason("default", &str_of(&short["token"]))
            .await
            .as_deref(),
        Some("suspended")
    );
    tokio::time::sleep(std::time::Duration::from_millis(4200)).await;
    assert_eq!(
        srv.reason("default", &str_of(&short["token"])).await,
        None,
        "still suspended after until"
    );
    assert_eq!(
        srv.reason("default", &str_of(&long["token"]))
            .await
            .as_deref(),
        Some("suspended")
    );
    let s = srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK);
    assert_eq!(
        s["suspended"], 1,
        "a lapsed suspension is not in force: {s}"
    );
}

#[tokio::test]
async fn a_permanent_revocation_cannot_be_lifted() {
    let srv = Server::start().await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    let jti = str_of(&tok["jti"]);
    srv.revoke("default", json!({"jti": jti}))
        .await
        .expect(StatusCode::CREATED);
    assert_problem(&srv.delete(&format!("{R}/{jti}")).await, 409);
    assert_eq!(
        srv.reason("default", &str_of(&tok["token"]))
            .await
            .as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.get(&format!("{R}/{jti}")).await.expect(StatusCode::OK)["status"],
        "revoked"
    );
    assert_problem(&srv.delete(&format!("{R}/never-revoked")).await, 404);
    // Lifting needs tokens:revoke.
    let (_, reader) = srv.create_api_key("default", &["audit:read"]).await;
    srv.revoke(
        "default",
        json!({"jti": "sus", "until": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let r = srv
        .call("DELETE", &format!("{R}/sus"), Some(&reader), None)
        .await;
    assert_problem(&r, 403);
    assert_eq!(
        srv.get(&format!("{R}/sus")).await.expect(StatusCode::OK)["status"],
        "suspended"
    );
}

#[tokio::test]
async fn revocations_survive_kill_9() {
    let mut srv = Server::start().await;
    let by_token = srv.issue("default", json!({"sub": "u"})).await;
    let by_jti = srv.issue("default", json!({"sub": "u"})).await;
    let in_batch = srv.issue("default", json!({"sub": "bulk"})).await;
    let suspended = srv.issue("default", json!({"sub": "u"})).await;
    let lifted = srv.issue("default", json!({"sub": "u"})).await;
    let untouched = srv.issue("default", json!({"sub": "u"})).await;
    let mallory = srv.token("default", "mallory").await;

    let rec = srv
        .revoke(
            "default",
            json!({"token": by_token["token"], "reason": "logout"}),
        )
        .await
        .expect(StatusCode::CREATED);
    srv.revoke("default", json!({"jti": by_jti["jti"]}))
        .await
        .expect(StatusCode::CREATED);
    srv.post(
        &format!("{R}/batch"),
        json!({"revocations": [{"jti": in_batch["jti"]}]}),
    )
    .await
    .expect(StatusCode::OK);
    srv.revoke(
        "default",
        json!({"jti": suspended["jti"], "until": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.revoke(
        "default",
        json!({"jti": lifted["jti"], "until": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    srv.delete(&format!("{R}/{}", str_of(&lifted["jti"])))
        .await
        .expect(StatusCode::NO_CONTENT);
    srv.post(
        "/v1/tenants/default/subjects/mallory/revoke-all",
        json!({"reason": "x"}),
    )
    .await
    .expect(StatusCode::OK);
    // Acknowledged means durable: kill -9 right away.
    srv.crash_and_restart();

    let t = |v: &Value| str_of(&v["token"]);
    assert_eq!(
        srv.reason("default", &t(&by_token)).await.as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.reason("default", &t(&by_jti)).await.as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.reason("default", &t(&in_batch)).await.as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.reason("default", &t(&suspended)).await.as_deref(),
        Some("suspended")
    );
    assert_eq!(srv.reason("default", &t(&lifted)).await, None);
    assert_eq!(srv.reason("default", &t(&untouched)).await, None);
    assert_eq!(
        srv.reason("default", &mallory).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(
        srv.introspect("default", &t(&by_token)).await,
        json!({"active": false})
    );
    let got = srv
        .get(&format!("{R}/{}", str_of(&by_token["jti"])))
        .await
        .expect(StatusCode::OK);
    assert_eq!(got, rec);
    // Re-revoking after the restart is still idempotent.
    let again = srv
        .revoke("default", json!({"token": by_token["token"]}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again, rec);
    // And a second crash changes nothing.
    srv.crash_and_restart();
    assert_eq!(
        srv.reason("default", &t(&by_jti)).await.as_deref(),
        Some("revoked")
    );
    let s = srv.get(&format!("{R}/stats")).await.expect(StatusCode::OK);
    assert_eq!(
        (s["revoked"].clone(), s["suspended"].clone()),
        (json!(3), json!(1)),
        "{s}"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413_and_write_nothing() {
    let srv = Server::start().await;
    let big = "x".repeat(1024 * 1024 + 10);
    let r = srv
        .revoke("default", json!({"jti": "j", "reason": big}))
        .await;
    assert_problem(&r, 413);
    assert_problem(&srv.get(&format!("{R}/j")).await, 404);
    // A client that is still sending when the server answers: use its own connection here
    // (the next test checks what happens to the connection).
    let items: Vec<_> = (0..40_000)
        .map(|i| json!({"jti": format!("jti-{i:030}")}))
        .collect();
    let req = client()
        .post(srv.url(&format!("{R}/batch")))
        .bearer_auth(ADMIN)
        .json(&json!({"revocations": items}));
    assert_problem(&srv.send("oversized batch", req).await, 413);
    assert!(srv.get(R).await.items().is_empty());
}

#[tokio::test]
async fn a_413_does_not_break_the_clients_next_request() {
    // The server refuses a body before reading it to the end. Either it drains the rest and
    // keeps the connection, or it closes it and says so (`Connection: close`, RFC 9112 §9.6).
    // Closing silently makes a keep-alive client send its next request into a dead connection.
    // Raw TCP, so that the outcome does not depend on a client pool's timing.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start().await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let items: Vec<_> = (0..200_000)
        .map(|i| json!({"jti": format!("jti-{i:030}")}))
        .collect();
    let body = json!({"revocations": items}).to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {R}/batch HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        // The server may stop reading (and reset) half-way: that is its right.
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(body.as_bytes()).await;
        wr
    });
    let first = read_response(&mut rd)
        .await
        .expect("a response to the oversized request");
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    let mut wr = writer.await.unwrap();
    let closes = first
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "connection:close");
    if !closes {
        let _ = wr
            .write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await;
        let second = read_response(&mut rd).await;
        assert!(
            second
                .as_deref()
                .is_some_and(|r| r.starts_with("HTTP/1.1 200")),
            "413 without `Connection: close`, and the connection then failed the next \
             request: {second:?}"
        );
    }

    /// Reads one response (head and a content-length body); `None` on EOF or error.
    async fn read_response(rd: &mut tokio::net::tcp::OwnedReadHalf) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return Some(head);
                }
            }
            match tokio::time::timeout(std::time::Duration::from_secs(10), rd.read(&mut chunk))
                .await
            {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }
}
