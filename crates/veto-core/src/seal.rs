//! The master key: AES-256-GCM encryption at rest of every secret the store keeps (signing keys'
//! private material, session key secrets, PKCE verifiers), and the associated data that binds
//! each sealed blob to the row it belongs to.
//!
//! The associated data of every [`SealedKind`] is defined here, next to the sealing, rather than
//! by the modules that own those rows: they all seal through this module, so it must not depend
//! on any of them, and keeping the labels side by side is what makes it visible that no two
//! kinds share one. The bytes are part of the stored format: changing a label, or the layout,
//! makes every existing row fail to open.
//!
//! [`KeyError`] lives here too, as the lowest module that reports key failures; `keys`
//! re-exports it (and the rest of this module's public items) at its historical path.
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::Alg;
use crate::random;
use crate::secret::debug_fields;

/// AES-GCM's tag, appended to every ciphertext.
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("VETO_MASTER_KEY must be 32 random bytes in base64 (e.g. from `veto gen-master-key`)")]
    BadMasterKey,
    #[error("key material cannot be decrypted: wrong master key, or the row was altered or moved")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("key generation failed for {0}")]
    Generate(Alg),
    #[error("stored key material for {0} is not a valid key")]
    BadMaterial(Alg),
    #[error("signing failed")]
    Sign,
    /// A key built from a public JWK (or known only as revoked) holds no private material.
    #[error("this key holds no private material (built from a public JWK): it cannot sign")]
    NoPrivateKey,
    #[error("public JWK is not a usable verification key: {0}")]
    BadJwk(&'static str),
}

/// The kinds of blob sealed under the master key, each in its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedKind {
    /// `signing_keys.encrypted_private`, by (tenant, kid).
    SigningKey,
    /// `session_keys.encrypted_secret`, by (tenant, kid).
    SessionKey,
    /// `prelogin.encrypted_pkce_verifier`, by (tenant, id).
    PreloginVerifier,
}

impl SealedKind {
    pub const ALL: [SealedKind; 3] = [
        SealedKind::SigningKey,
        SealedKind::SessionKey,
        SealedKind::PreloginVerifier,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SealedKind::SigningKey => "signing keys",
            SealedKind::SessionKey => "session keys",
            SealedKind::PreloginVerifier => "pre-login verifiers",
        }
    }

    /// Distinct for each kind, so a blob can never be moved from one table to another and
    /// still open.
    fn label(self) -> &'static str {
        match self {
            SealedKind::SigningKey => "veto-signing-key-v1",
            SealedKind::SessionKey => "veto-session-key-v1",
            SealedKind::PreloginVerifier => "veto-prelogin-pkce-v1",
        }
    }

    /// The associated data of the blob of this kind for (`tenant`, `id`):
    /// `label NUL tenant NUL id`. It must map distinct rows to distinct strings, or a blob could
    /// be moved between them and still open. That holds as long as the tenant has no NUL (the
    /// first NUL after the label then ends it): tenant ids never do (`validate_tenant_id`), and
    /// this refuses one that would rather than trusting every caller to have validated.
    fn context(self, tenant: &str, id: &str) -> Option<String> {
        (!tenant.contains('\0')).then(|| format!("{}\0{tenant}\0{id}", self.label()))
    }
}

/// The key that encrypts every private key at rest. 32 bytes, wiped on drop, never printed.
///
/// During a master key rotation it also holds the previous key: it seals under the current key
/// only, and opens what either sealed (current first), so a node serves rows sealed before and
/// after `veto master-key rotate` rewrote them.
#[derive(Clone)]
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
}

debug_fields!(MasterKey);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey {
            key: Zeroizing::new(bytes),
            previous: None,
        }
    }

    /// This key, also opening what `previous` sealed.
    pub fn with_previous(mut self, previous: &MasterKey) -> Self {
        self.previous = Some(previous.key.clone());
        self
    }

    /// This key alone, without any previous one.
    pub fn current(&self) -> MasterKey {
        MasterKey {
            key: self.key.clone(),
            previous: None,
        }
    }

    /// Re-seals a blob of `kind` for (`tenant`, `id`) under this key: `Ok(None)` when it
    /// already opens under it (so re-running a rotation changes nothing), the new blob when it
    /// opens under `previous`, and an error when it opens under neither.
    pub fn reseal(
        &self,
        previous: &MasterKey,
        kind: SealedKind,
        tenant: &str,
        id: &str,
        blob: &[u8],
    ) -> Result<Option<Vec<u8>>, KeyError> {
        let context = kind.context(tenant, id).ok_or(KeyError::Decrypt)?;
        let current = self.current();
        if current.open_with_context(&context, blob).is_ok() {
            return Ok(None);
        }
        let plain = previous.current().open_with_context(&context, blob)?;
        current.seal_with_context(&context, &plain).map(Some)
    }

    pub fn from_base64(b64: &str) -> Result<Self, KeyError> {
        let raw = Zeroizing::new(
            STANDARD
                .decode(b64.trim())
                .map_err(|_| KeyError::BadMasterKey)?,
        );
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadMasterKey)?;
        Ok(MasterKey::from_bytes(arr))
    }

    pub fn generate() -> Self {
        MasterKey {
            key: random::bytes::<32>(),
            previous: None,
        }
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.as_ref()))
    }

    fn aead(&self) -> Result<LessSafeKey, KeyError> {
        Self::aead_of(&self.key)
    }

    fn aead_of(key: &[u8; 32]) -> Result<LessSafeKey, KeyError> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(LessSafeKey::new)
            .map_err(|_| KeyError::Encrypt)
    }

    /// AES-256-GCM with a random 96-bit nonce; output is nonce || ciphertext || tag. `context`
    /// is bound as associated data: a blob only opens under the exact context it was sealed with.
    pub fn seal_with_context(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let nonce_bytes = random::bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(nonce_bytes.as_ref());
        // Zeroizing: on the error path this buffer still holds the plaintext.
        let mut body = Zeroizing::new(plaintext.to_vec());
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(*nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut *body,
            )
            .map_err(|_| KeyError::Encrypt)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn open_with_context(
        &self,
        context: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(KeyError::Decrypt);
        }
        let (nonce, body) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Decrypt)?;
        let mut result = Self::open_under(&self.key, nonce, context, body);
        if let (Err(_), Some(previous)) = (&result, &self.previous) {
            result = Self::open_under(previous, nonce, context, body);
        }
        result
    }

    fn open_under(
        key: &[u8; 32],
        nonce: [u8; NONCE_LEN],
        context: &str,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let mut buf = Zeroizing::new(body.to_vec());
        let len = Self::aead_of(key)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Seals the secret of the row of `kind` identified by (`tenant`, `id`): it opens only with
    /// [`open_for`](Self::open_for) and the same three values.
    pub fn seal_for(
        &self,
        kind: SealedKind,
        tenant: &str,
        id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let context = kind.context(tenant, id).ok_or(KeyError::Encrypt)?;
        self.seal_with_context(&context, plaintext)
    }

    pub fn open_for(
        &self,
        kind: SealedKind,
        tenant: &str,
        id: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let context = kind.context(tenant, id).ok_or(KeyError::Decrypt)?;
        self.open_with_context(&context, blob)
    }

    /// Seals a signing key's private material, bound to its tenant and kid.
    pub fn seal(&self, tenant: &str, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.seal_for(SealedKind::SigningKey, tenant, kid, plaintext)
    }

    pub fn open(
        &self,
        tenant: &str,
        kid: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.open_for(SealedKind::SigningKey, tenant, kid, blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The associated data is part of the stored format: rows sealed by earlier versions open
    /// only if these bytes never change.
    #[test]
    fn contexts_are_the_stored_format() {
        let ctx = |kind: SealedKind| kind.context("acme", "k1").unwrap();
        assert_eq!(ctx(SealedKind::SigningKey), "veto-signing-key-v1\0acme\0k1");
        assert_eq!(ctx(SealedKind::SessionKey), "veto-session-key-v1\0acme\0k1");
        assert_eq!(
            ctx(SealedKind::PreloginVerifier),
            "veto-prelogin-pkce-v1\0acme\0k1"
        );
        assert_eq!(SealedKind::SigningKey.context("ac\0me", "k1"), None);
    }

    #[test]
    fn kinds_open_only_their_own_blobs() {
        let m = MasterKey::generate();
        for kind in SealedKind::ALL {
            let blob = m.seal_for(kind, "acme", "k1", b"secret").unwrap();
            for other in SealedKind::ALL {
                let opened = m.open_for(other, "acme", "k1", &blob);
                assert_eq!(opened.is_ok(), other == kind, "{kind:?} as {other:?}");
            }
            let by_context = m
                .open_with_context(&kind.context("acme", "k1").unwrap(), &blob)
                .unwrap();
            assert_eq!(by_context.as_slice(), b"secret");
        }
    }
}
