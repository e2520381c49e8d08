//! The tenant's keys as a verifier holds them: the public keys of the JWKS, and placeholders for
//! the kids the stream says are revoked (so that their tokens are `key_revoked`, as at veto).
use std::collections::{HashMap, HashSet};

use serde_json::Value;
use veto_core::keyring::KeyRing;
use veto_core::keys::{KeyStatus, LoadedKey};

/// Makes `ring` hold, for `tenant`, exactly: every key of `jwks` that parses and is not revoked,
/// and a revoked placeholder for every kid of `revoked`. A revoked kid wins over the JWKS: a
/// JWKS fetched just before a revocation still lists the key, and must not bring it back.
/// Keys already held as wanted are kept as they are (RSA parsing is not free). Returns the
/// number of JWKS entries skipped because they are not keys this crate can use.
pub fn sync_ring(ring: &KeyRing, tenant: &str, jwks: &[Value], revoked: &HashSet<String>) -> usize {
    let mut wanted: HashMap<&str, Option<&Value>> = HashMap::new();
    for jwk in jwks {
        if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
            wanted.insert(kid, Some(jwk));
        }
    }
    for kid in revoked {
        wanted.insert(kid, None);
    }
    for held in ring.list(tenant) {
        let keep = match wanted.get(held.kid.as_str()) {
            None => false,
            Some(None) => held.status == KeyStatus::Revoked,
            Some(Some(jwk)) => held.public_jwk.as_ref() == Some(*jwk),
        };
        if keep {
            wanted.remove(held.kid.as_str());
        } else {
            ring.remove(tenant, &held.kid);
        }
    }
    let mut skipped = 0;
    for (kid, jwk) in wanted {
        match jwk {
            None => ring.upsert(LoadedKey::known_revoked(tenant, kid)),
            Some(jwk) => match LoadedKey::from_public_jwk(tenant, jwk) {
                Ok(key) => ring.upsert(key),
                Err(e) => {
                    tracing::warn!(tenant, kid, error = %e, "JWKS entry skipped");
                    skipped += 1;
                }
            },
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use veto_core::Alg;
    use veto_core::keys::{MasterKey, generate_signing_key};

    fn jwk(alg: Alg) -> Value {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        generate_signing_key("acme", alg, None, &MasterKey::generate(), now)
            .unwrap()
            .public_jwk
            .unwrap()
    }

    fn kids(ring: &KeyRing) -> Vec<(String, KeyStatus)> {
        let mut v: Vec<_> = ring
            .list("acme")
            .iter()
            .map(|k| (k.kid.clone(), k.status))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn the_ring_follows_the_jwks_and_revocations_win() {
        let (a, b) = (jwk(Alg::ES256), jwk(Alg::EdDSA));
        let kid = |j: &Value| j["kid"].as_str().unwrap().to_owned();
        let ring = KeyRing::new();
        let none = HashSet::new();
        assert_eq!(sync_ring(&ring, "acme", &[a.clone(), b.clone()], &none), 0);
        assert_eq!(ring.count("acme"), 2);
        let held_a = ring.get("acme", &kid(&a)).unwrap();
        // Unchanged keys are not rebuilt.
        sync_ring(&ring, "acme", &[a.clone(), b.clone()], &none);
        assert!(std::sync::Arc::ptr_eq(
            &held_a,
            &ring.get("acme", &kid(&a)).unwrap()
        ));
        // Revoked, though still in the JWKS; a key that left the JWKS leaves the ring.
        let revoked: HashSet<String> = [kid(&a), "k-gone".to_owned()].into();
        sync_ring(&ring, "acme", std::slice::from_ref(&a), &revoked);
        let mut want = vec![
            (kid(&a), KeyStatus::Revoked),
            ("k-gone".to_owned(), KeyStatus::Revoked),
        ];
        want.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(kids(&ring), want);
        // Entries that are no usable key are skipped, the others kept.
        let hs = json!({"kid": "h1", "kty": "oct", "alg": "HS256"});
        assert_eq!(sync_ring(&ring, "acme", &[hs, b.clone()], &none), 1);
        assert_eq!(kids(&ring), vec![(kid(&b), KeyStatus::Active)]);
    }
}
