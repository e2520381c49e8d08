//! HTTP caching of the public documents (a tenant's JWKS and its RFC 8414 metadata): a strong
//! `ETag` computed from the body, a `Last-Modified`, and `304 Not Modified` for a client whose
//! `If-None-Match` names the current version (RFC 9110 §8.8, §13.1.2).
//!
//! The ETag is a hash of the bytes served, so every node of a version serving the same keys
//! gives the same tag, and a key that leaves the JWKS without any write (a retired key whose
//! retention ends) changes it at once. `Last-Modified` is the moment this node first served
//! the current body: no write records when a JWKS last changed (a retention window ends by
//! itself), and a time no earlier than the change is what RFC 9110 §8.8.2 asks of it. Because
//! nodes see a change at slightly different moments, `If-Modified-Since` is not evaluated (RFC
//! 9110 §13.1.3 lets a server ignore it): the ETag is the validator, and browsers and HTTP
//! caches send `If-None-Match` whenever they hold one.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use time::OffsetDateTime;
use time::macros::format_description;

/// Which public document of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    Jwks,
    Metadata,
}

/// Per tenant and document, the hash of the body last served and since when. At most two
/// entries per tenant (unknown tenants are answered 404 before they get here).
#[derive(Default)]
pub struct Versions(Mutex<HashMap<(String, Document), (u128, OffsetDateTime)>>);

impl Versions {
    /// The version of `body`: its hash, and when this node first served it (now, when the
    /// body differs from the one served before).
    fn of(&self, tenant: &str, doc: Document, body: &[u8], now: OffsetDateTime) -> Version {
        let hash = xxhash_rust::xxh3::xxh3_128(body);
        // A poisoned lock only means another request panicked between two statements that
        // replace one whole entry: the map is still consistent.
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let since = match map.get(&(tenant.to_owned(), doc)) {
            Some((h, since)) if *h == hash => *since,
            _ => {
                map.insert((tenant.to_owned(), doc), (hash, now));
                now
            }
        };
        Version { hash, since }
    }
}

struct Version {
    hash: u128,
    since: OffsetDateTime,
}

impl Version {
    fn etag(&self) -> String {
        format!("\"{:032x}\"", self.hash)
    }
}

/// `Cache-Control` of the public documents. Resource servers poll them; a minute keeps that
/// cheap while a revoked key still disappears within a minute for caches that honour it, and
/// the ETag makes the poll after that a 304 unless something changed.
const CACHE_CONTROL: &str = "public, max-age=60";

/// The response for a public document: `200` with the JSON body, or `304` when the request's
/// `If-None-Match` names this version. Both carry `ETag`, `Last-Modified` and `Cache-Control`
/// (RFC 9110 §15.4.5: a 304 carries the headers the 200 would have for caching).
pub fn respond(
    versions: &Arc<Versions>,
    tenant: &str,
    doc: Document,
    request: &HeaderMap,
    body: &serde_json::Value,
) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let version = versions.of(tenant, doc, &bytes, veto_core::timeutil::now());
    let mut resp = conditional(
        request,
        &version.etag(),
        CACHE_CONTROL,
        "application/json",
        bytes.into(),
    );
    let h = resp.headers_mut();
    if let Some(v) = http_date(version.since).and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    resp
}

/// `200` with `body` of `content_type`, or `304` with no body when the request's
/// `If-None-Match` names `etag`; both with `ETag` and `Cache-Control`.
pub(crate) fn conditional(
    request: &HeaderMap,
    etag: &str,
    cache_control: &str,
    content_type: &'static str,
    body: Body,
) -> Response {
    let not_modified = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match_hits(v, etag));
    let mut resp = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(cache_control) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// Whether an `If-None-Match` field value names `etag` (RFC 9110 §13.1.2: `*`, or a list of
/// entity tags compared weakly, so `W/"x"` matches `"x"`).
fn none_match_hits(field: &str, etag: &str) -> bool {
    field.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// An IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: OffsetDateTime) -> Option<String> {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(fmt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        let tag = "\"abc\"";
        assert!(none_match_hits("\"abc\"", tag));
        assert!(none_match_hits("W/\"abc\"", tag));
        assert!(none_match_hits("\"x\", \"abc\"", tag));
        assert!(none_match_hits("*", tag));
        assert!(!none_match_hits("\"abcd\"", tag));
        assert!(!none_match_hits("abc", tag));
        assert!(!none_match_hits("", tag));
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        let t = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(t).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn a_version_keeps_its_first_time_until_the_body_changes() {
        let v = Versions::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let t1 = OffsetDateTime::from_unix_timestamp(2_000).unwrap();
        let a = v.of("t", Document::Jwks, b"one", t0);
        let again = v.of("t", Document::Jwks, b"one", t1);
        assert_eq!((again.hash, again.since), (a.hash, t0));
        let other_doc = v.of("t", Document::Metadata, b"one", t1);
        assert_eq!(other_doc.since, t1);
        let changed = v.of("t", Document::Jwks, b"two", t1);
        assert_ne!(changed.hash, a.hash);
        assert_eq!(changed.since, t1);
    }
}
