//! Master key rotation primitives: a key that also opens what its previous key sealed, and
//! re-sealing a blob from the previous key to the current one.
use veto_core::keys::{MasterKey, SealedKind};

fn keys() -> (MasterKey, MasterKey) {
    (MasterKey::generate(), MasterKey::generate())
}

#[test]
fn with_previous_opens_both_and_seals_under_the_current_key_only() {
    let (old, new) = keys();
    let during = new.clone().with_previous(&old);
    let by_old = old.seal("acme", "k1", b"secret").unwrap();
    assert_eq!(&*during.open("acme", "k1", &by_old).unwrap(), b"secret");
    let by_during = during.seal("acme", "k1", b"secret").unwrap();
    assert!(old.open("acme", "k1", &by_during).is_err());
    assert_eq!(&*new.open("acme", "k1", &by_during).unwrap(), b"secret");
    // Without the previous key, the old blob does not open.
    assert!(during.current().open("acme", "k1", &by_old).is_err());
    // The context still binds under either key.
    assert!(during.open("acme", "k2", &by_old).is_err());
}

#[test]
fn reseal_moves_a_blob_to_the_current_key_once() {
    let (old, new) = keys();
    let blob = old.seal("acme", "k1", b"private").unwrap();
    let kind = SealedKind::SigningKey;
    let moved = new
        .reseal(&old, kind, "acme", "k1", &blob)
        .unwrap()
        .expect("re-sealed");
    assert_eq!(&*new.open("acme", "k1", &moved).unwrap(), b"private");
    assert!(old.open("acme", "k1", &moved).is_err());
    // Already under the new key: nothing to do.
    assert_eq!(new.reseal(&old, kind, "acme", "k1", &moved).unwrap(), None);
    // Under neither key, or bound to another row: an error, never a guess.
    let stranger = MasterKey::generate().seal("acme", "k1", b"x").unwrap();
    assert!(new.reseal(&old, kind, "acme", "k1", &stranger).is_err());
    assert!(new.reseal(&old, kind, "acme", "k2", &blob).is_err());
    // Each kind has its own associated data: a signing key blob is not a session key.
    assert!(
        new.reseal(&old, SealedKind::SessionKey, "acme", "k1", &blob)
            .is_err()
    );
}
