//! Arbitrary bytes as the JSON body of every request type veto-server takes, through the very
//! extractor its handlers use (`ApiJson` / `ApiJsonOrEmpty`, hence `extract::parse_json`). The
//! first byte picks the type. Never a panic, and a body that is refused is a 4xx (a 400 naming
//! the fix, or 413), never a 5xx.
#![no_main]

use axum::extract::FromRequest;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use veto_fuzz::{ready, refused_with_4xx, request};
use veto_server::extract::{ApiJson, ApiJsonOrEmpty};
use veto_server::routes::{admin, api_keys, keys, revocations, tenants, tokens};
use veto_server::service::{refresh, revocations as revoke, sessions, tokens as issue};

fn json<T: DeserializeOwned>(body: &[u8]) {
    refused_with_4xx(ready(ApiJson::<T>::from_request(
        request("application/json", body),
        &(),
    )));
}

fn json_or_empty<T: DeserializeOwned + Default>(body: &[u8]) {
    refused_with_4xx(ready(ApiJsonOrEmpty::<T>::from_request(
        request("application/json", body),
        &(),
    )));
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 15 {
        0 => json::<issue::IssueRequest>(body),
        1 => json::<tokens::IssueBatch>(body),
        2 => json::<tokens::VerifyRequest>(body),
        3 => json::<revoke::RevokeRequest>(body),
        4 => json::<revocations::RevokeBatch>(body),
        5 => json::<refresh::RefreshRequest>(body),
        6 => json::<tenants::CreateTenant>(body),
        7 => json::<keys::CreateKey>(body),
        8 => json::<api_keys::CreateApiKey>(body),
        9 => json::<sessions::CreateSession>(body),
        10 => json::<sessions::ValidateSession>(body),
        11 => json::<sessions::CreatePreLogin>(body),
        12 => json::<sessions::ConsumePreLogin>(body),
        13 => json_or_empty::<tenants::ReasonBody>(body),
        _ => json_or_empty::<admin::PurgeRequest>(body),
    }
});
