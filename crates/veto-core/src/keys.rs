//! Signing keys: their lifecycle (active → retired → gone, or revoked at any time), their stored
//! form (private material encrypted under the master key) and their loaded, ready-to-use form.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Alg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs new tokens and verifies.
    Active,
    /// Signs nothing more; verifies until `retain_until`.
    Retired,
    /// Every token it signed is rejected at once; out of the JWKS.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "retired" => Some(KeyStatus::Retired),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// A signing key as the store keeps it. `encrypted_private` is AES-256-GCM under the master key
/// with tenant and kid bound as associated data (see `MasterKey`), so a row copied to another
/// tenant or kid fails to decrypt instead of becoming a valid key there.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub tenant: String,
    pub alg: Alg,
    pub status: KeyStatus,
    /// Tokens for this audience prefer this key (contract: "binds the key to tokens for that audience").
    pub audience: Option<String>,
    pub created_at: OffsetDateTime,
    /// Set when retired: the key keeps verifying until then.
    pub retain_until: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    /// nonce || ciphertext || tag.
    pub encrypted_private: Vec<u8>,
    /// The public JWK (absent for HMAC keys), kept in clear so the JWKS needs no decryption.
    pub public_jwk: Option<serde_json::Value>,
}

// Hand-written so that a `{:?}` anywhere can never print key material, even encrypted.
impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Master key: encryption of private key material at rest.
// ---------------------------------------------------------------------------------------------

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

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

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    // Without a working system RNG no key, nonce or secret can be made safely: stopping is the
    // only correct answer, and no caller input can cause it.
    aws_lc_rs::rand::SystemRandom::new()
        .fill(b.as_mut())
        .expect("system random number generator failed");
    b
}

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
            key: random::<32>(),
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
        let nonce_bytes = random::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
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
        if blob.len() < NONCE_LEN + 16 {
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

    /// Seals a signing key's private material, bound to its tenant and kid.
    pub fn seal(&self, tenant: &str, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let context = key_context(tenant, kid).ok_or(KeyError::Encrypt)?;
        self.seal_with_context(&context, plaintext)
    }

    pub fn open(
        &self,
        tenant: &str,
        kid: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let context = key_context(tenant, kid).ok_or(KeyError::Decrypt)?;
        self.open_with_context(&context, blob)
    }
}

/// The associated data of a signing key: `veto-signing-key-v1 NUL tenant NUL kid`. It must map
/// distinct (tenant, kid) pairs to distinct strings, or a row could be moved between them and
/// still open. That holds as long as the tenant has no NUL (the first NUL after the prefix then
/// ends it): tenant ids never do (`validate_tenant_id`), and this refuses one that would, rather
/// than trusting every caller to have validated.
fn key_context(tenant: &str, kid: &str) -> Option<String> {
    (!tenant.contains('\0')).then(|| format!("veto-signing-key-v1\0{tenant}\0{kid}"))
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

    fn context(self, tenant: &str, id: &str) -> Option<String> {
        match self {
            SealedKind::SigningKey => key_context(tenant, id),
            SealedKind::SessionKey => crate::cookie::key_context(tenant, id),
            SealedKind::PreloginVerifier => crate::prelogin::context(tenant, id),
        }
    }
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new key id: a UUID v7 in hex, unique without coordination, and ordered by creation time (to the
/// millisecond, monotonic within a process), so that "the newest key" has an answer even for
/// keys created in the same second, whose `created_at` (stored in whole seconds) ties. Hex rather
/// than base64url because hex strings sort like the bytes they encode.
pub fn new_kid() -> String {
    format!("k_{}", uuid::Uuid::now_v7().simple())
}

// ---------------------------------------------------------------------------------------------
// Key generation and loading.
// ---------------------------------------------------------------------------------------------

fn ec_signing(alg: Alg) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Alg::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Alg::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn hmac_alg(alg: Alg) -> Option<(aws_lc_rs::hmac::Algorithm, usize)> {
    // Secrets as long as the hash output: at least 256 random bits (RFC 7518 §3.2).
    match alg {
        Alg::HS256 => Some((aws_lc_rs::hmac::HMAC_SHA256, 32)),
        Alg::HS384 => Some((aws_lc_rs::hmac::HMAC_SHA384, 48)),
        Alg::HS512 => Some((aws_lc_rs::hmac::HMAC_SHA512, 64)),
        _ => None,
    }
}

fn rsa_params(alg: Alg) -> Option<(&'static dyn sig::RsaEncoding, &'static sig::RsaParameters)> {
    match alg {
        Alg::RS256 => Some((&sig::RSA_PKCS1_SHA256, &sig::RSA_PKCS1_2048_8192_SHA256)),
        Alg::RS384 => Some((&sig::RSA_PKCS1_SHA384, &sig::RSA_PKCS1_2048_8192_SHA384)),
        Alg::RS512 => Some((&sig::RSA_PKCS1_SHA512, &sig::RSA_PKCS1_2048_8192_SHA512)),
        Alg::PS256 => Some((&sig::RSA_PSS_SHA256, &sig::RSA_PSS_2048_8192_SHA256)),
        _ => None,
    }
}

/// Fresh private material: PKCS#8 DER for asymmetric keys, raw bytes for HMAC.
pub fn generate_private(alg: Alg) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let fail = |_| KeyError::Generate(alg);
    if let Some((_, len)) = hmac_alg(alg) {
        return Ok(Zeroizing::new(random::<64>()[..len].to_vec()));
    }
    if let Some(ec) = ec_signing(alg) {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(ec, &rng).map_err(fail)?;
        return Ok(Zeroizing::new(doc.as_ref().to_vec()));
    }
    if alg == Alg::EdDSA {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(fail)?;
        return Ok(Zeroizing::new(doc.as_ref().to_vec()));
    }
    // RSA: 2048 bits for RS256/PS256, 3072 for the larger hashes (comparable strength).
    let size = match alg {
        Alg::RS384 | Alg::RS512 => aws_lc_rs::rsa::KeySize::Rsa3072,
        _ => aws_lc_rs::rsa::KeySize::Rsa2048,
    };
    let kp = RsaKeyPair::generate(size).map_err(fail)?;
    let der = kp.as_der().map_err(fail)?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

/// A ready-to-use key: parsed once (at start-up or after a write), then shared by every request.
pub struct LoadedKey {
    pub kid: String,
    pub tenant: String,
    pub alg: Alg,
    pub status: KeyStatus,
    pub audience: Option<String>,
    pub created_at: OffsetDateTime,
    pub retain_until: Option<OffsetDateTime>,
    pub public_jwk: Option<serde_json::Value>,
    material: Material,
}

enum Material {
    Hmac(Box<aws_lc_rs::hmac::Key>),
    Ec(EcdsaKeyPair, ParsedPublicKey),
    Ed(Ed25519KeyPair, ParsedPublicKey),
    Rsa(RsaKeyPair, &'static dyn sig::RsaEncoding, ParsedPublicKey),
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn parse_material(
    alg: Alg,
    private: &[u8],
) -> Result<(Material, Option<serde_json::Value>), KeyError> {
    let bad = |_| KeyError::BadMaterial(alg);
    if let Some((h, len)) = hmac_alg(alg) {
        // Exactly the length veto generates. The alg is not in the associated data, so without
        // this a row relabelled HS* would turn other key material (say an EC private key) into
        // an HMAC secret instead of failing to load.
        if private.len() != len {
            return Err(KeyError::BadMaterial(alg));
        }
        return Ok((
            Material::Hmac(Box::new(aws_lc_rs::hmac::Key::new(h, private))),
            None,
        ));
    }
    if let Some(ec) = ec_signing(alg) {
        let kp = EcdsaKeyPair::from_pkcs8(ec, private).map_err(bad)?;
        let (verify_alg, crv, coord): (&'static dyn sig::VerificationAlgorithm, _, _) = match alg {
            Alg::ES256 => (&sig::ECDSA_P256_SHA256_FIXED, "P-256", 32),
            _ => (&sig::ECDSA_P384_SHA384_FIXED, "P-384", 48),
        };
        let point = kp.public_key().as_ref().to_vec();
        // Uncompressed SEC1 point: 0x04 || X || Y.
        if point.len() != 1 + 2 * coord {
            return Err(KeyError::BadMaterial(alg));
        }
        let jwk = serde_json::json!({
            "kty": "EC", "crv": crv, "alg": alg.as_str(), "use": "sig",
            "x": b64url(&point[1..1 + coord]), "y": b64url(&point[1 + coord..]),
        });
        let parsed = ParsedPublicKey::new(verify_alg, &point).map_err(bad)?;
        return Ok((Material::Ec(kp, parsed), Some(jwk)));
    }
    if alg == Alg::EdDSA {
        let kp = Ed25519KeyPair::from_pkcs8(private).map_err(bad)?;
        let public = kp.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": b64url(&public),
        });
        let parsed = ParsedPublicKey::new(&sig::ED25519, &public).map_err(bad)?;
        return Ok((Material::Ed(kp, parsed), Some(jwk)));
    }
    let (encoding, params) = rsa_params(alg).ok_or(KeyError::BadMaterial(alg))?;
    let kp = RsaKeyPair::from_pkcs8(private).map_err(bad)?;
    let public = kp.public_key();
    let jwk = serde_json::json!({
        "kty": "RSA", "alg": alg.as_str(), "use": "sig",
        "n": b64url(public.modulus().big_endian_without_leading_zero()),
        "e": b64url(public.exponent().big_endian_without_leading_zero()),
    });
    let parsed = ParsedPublicKey::new(params, public.as_ref()).map_err(bad)?;
    Ok((Material::Rsa(kp, encoding, parsed), Some(jwk)))
}

fn with_kid(jwk: Option<serde_json::Value>, kid: &str) -> Option<serde_json::Value> {
    jwk.map(|mut j| {
        if let Some(o) = j.as_object_mut() {
            o.insert("kid".into(), serde_json::Value::String(kid.to_owned()));
        }
        j
    })
}

/// Generates a key for `tenant`, encrypts its private material under the master key, and
/// returns the record to store.
pub fn generate_signing_key(
    tenant: &str,
    alg: Alg,
    audience: Option<String>,
    master: &MasterKey,
    now: OffsetDateTime,
) -> Result<SigningKeyRecord, KeyError> {
    let kid = new_kid();
    let private = generate_private(alg)?;
    let (_, jwk) = parse_material(alg, &private)?;
    Ok(SigningKeyRecord {
        encrypted_private: master.seal(tenant, &kid, &private)?,
        public_jwk: with_kid(jwk, &kid),
        kid,
        tenant: tenant.to_owned(),
        alg,
        status: KeyStatus::Active,
        audience,
        created_at: now,
        retain_until: None,
        revoked_at: None,
        revoke_reason: None,
    })
}

impl LoadedKey {
    /// Decrypts and parses a stored key. Slow-ish (RSA parsing), so done once per key change.
    pub fn load(rec: &SigningKeyRecord, master: &MasterKey) -> Result<LoadedKey, KeyError> {
        let private = master.open(&rec.tenant, &rec.kid, &rec.encrypted_private)?;
        let (material, jwk) = parse_material(rec.alg, &private)?;
        Ok(LoadedKey {
            kid: rec.kid.clone(),
            tenant: rec.tenant.clone(),
            alg: rec.alg,
            status: rec.status,
            audience: rec.audience.clone(),
            created_at: rec.created_at,
            retain_until: rec.retain_until,
            public_jwk: with_kid(jwk, &rec.kid),
            material,
        })
    }

    /// Active keys sign; nothing else does.
    pub fn signs(&self) -> bool {
        self.status == KeyStatus::Active
    }

    /// Active keys verify; retired ones until their retention ends; revoked ones never.
    pub fn verifies_at(&self, now_unix: i64) -> bool {
        match self.status {
            KeyStatus::Active => true,
            KeyStatus::Retired => self
                .retain_until
                .is_some_and(|r| r.unix_timestamp() > now_unix),
            KeyStatus::Revoked => false,
        }
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.material {
            Material::Hmac(k) => Ok(aws_lc_rs::hmac::sign(k, message).as_ref().to_vec()),
            Material::Ec(kp, _) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Material::Ed(kp, _) => Ok(kp.sign(message).as_ref().to_vec()),
            Material::Rsa(kp, enc, _) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(*enc, &rng, message, &mut out)
                    .map_err(|_| KeyError::Sign)?;
                Ok(out)
            }
        }
    }

    /// Checks a raw signature over `message`. HMAC tags are compared in constant time by
    /// aws-lc-rs; ECDSA signatures must be the JOSE fixed-width R||S form (a DER signature fails).
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(k) => aws_lc_rs::hmac::verify(k, message, signature).is_ok(),
            Material::Ec(_, p) | Material::Ed(_, p) | Material::Rsa(_, _, p) => {
                p.verify_sig(message, signature).is_ok()
            }
        }
    }
}
