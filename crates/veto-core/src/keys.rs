//! Signing keys: their lifecycle (active → retired → gone, or revoked at any time), their stored
//! form (private material encrypted under the master key) and their loaded, ready-to-use form.
//! The master key and its sealing are in `seal`, shared with session keys and pre-login state.
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::Alg;
use crate::random;
use crate::secret::debug_fields;

// Defined in the shared modules underneath, so that session keys and pre-login state need not
// import this module; this is the path the store, the server, the CLI and the fuzz targets use.
pub use crate::encoding::b64url;
pub use crate::random::new_kid;
pub use crate::seal::{KeyError, MasterKey, SealedKind};

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

// Allow-listed, so that a `{:?}` anywhere can never print key material, even encrypted.
debug_fields!(SigningKeyRecord {
    kid,
    tenant,
    alg,
    status,
    audience,
});

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
        return Ok(Zeroizing::new(random::bytes::<64>()[..len].to_vec()));
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
    /// The public half only, from a JWK: what a verifier outside veto holds. Verifies, never signs.
    Public(ParsedPublicKey),
    /// No material at all: a key known only by its kid to be revoked. Its status answers
    /// `key_revoked` before any signature is looked at, and should it ever be asked, no
    /// signature verifies against it.
    None,
}

debug_fields!(LoadedKey {
    kid,
    tenant,
    alg,
    status
});

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

    /// A key of `tenant` from one entry of its JWKS (RFC 7517): public material only, so it
    /// verifies and never signs. For verifiers outside veto, which get no private material.
    ///
    /// The JWK must name its `kid` and its `alg` (veto's JWKS always does), and its `kty`/`crv`
    /// must be those of that alg: the alg is pinned to the key exactly as for a key veto loads
    /// from its store, so a token cannot pick another algorithm for it. HMAC algs have no
    /// public form and are refused. Status is `Active`: a key is in the JWKS exactly while it
    /// verifies (active, or retired within its retention), so whoever holds the JWKS drops the
    /// key when it leaves it; `created_at` is unknown and left at the epoch.
    pub fn from_public_jwk(tenant: &str, jwk: &serde_json::Value) -> Result<LoadedKey, KeyError> {
        let str_member = |name: &'static str| jwk.get(name).and_then(serde_json::Value::as_str);
        let kid = str_member("kid")
            .filter(|k| !k.is_empty())
            .ok_or(KeyError::BadJwk("no kid"))?;
        let alg: Alg = str_member("alg")
            .and_then(|a| a.parse().ok())
            .ok_or(KeyError::BadJwk("no alg, or one veto does not know"))?;
        if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(KeyError::BadJwk("use is not \"sig\""));
        }
        let bytes = |name: &'static str| {
            str_member(name)
                .and_then(crate::encoding::b64url_decode)
                .ok_or(KeyError::BadJwk("a key member is missing or not base64url"))
        };
        let kty = str_member("kty");
        let crv = str_member("crv");
        let bad = |_| KeyError::BadJwk("the key material does not parse");
        let parsed = match alg {
            Alg::ES256 | Alg::ES384 => {
                let (verify_alg, want_crv, coord): (&'static dyn sig::VerificationAlgorithm, _, _) =
                    if alg == Alg::ES256 {
                        (&sig::ECDSA_P256_SHA256_FIXED, "P-256", 32)
                    } else {
                        (&sig::ECDSA_P384_SHA384_FIXED, "P-384", 48)
                    };
                if kty != Some("EC") || crv != Some(want_crv) {
                    return Err(KeyError::BadJwk("kty/crv do not match the alg"));
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != coord || y.len() != coord {
                    return Err(KeyError::BadJwk("EC coordinates of the wrong length"));
                }
                // Uncompressed SEC1 point: 0x04 || X || Y, as `parse_material` builds it.
                let point = [&[4u8][..], &x, &y].concat();
                ParsedPublicKey::new(verify_alg, &point).map_err(bad)?
            }
            Alg::EdDSA => {
                if kty != Some("OKP") || crv != Some("Ed25519") {
                    return Err(KeyError::BadJwk("kty/crv do not match the alg"));
                }
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err(KeyError::BadJwk("an Ed25519 key is 32 bytes"));
                }
                ParsedPublicKey::new(&sig::ED25519, &x).map_err(bad)?
            }
            Alg::HS256 | Alg::HS384 | Alg::HS512 => {
                return Err(KeyError::BadJwk("HMAC keys have no public form"));
            }
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 => {
                if kty != Some("RSA") {
                    return Err(KeyError::BadJwk("kty does not match the alg"));
                }
                let (_, params) = rsa_params(alg).ok_or(KeyError::BadJwk("unsupported alg"))?;
                let (n, e) = (bytes("n")?, bytes("e")?);
                // The bounds `rsa_params` verifies with (RSA_*_2048_8192_*), refused here already
                // so that a JWK no token could ever verify against is not taken for a key.
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if !(2048..=8192).contains(&bits) {
                    return Err(KeyError::BadJwk("RSA modulus outside 2048 to 8192 bits"));
                }
                sig::RsaPublicKeyComponents { n: &n, e: &e }
                    .to_parsed_public_key(params)
                    .map_err(bad)?
            }
        };
        Ok(LoadedKey {
            kid: kid.to_owned(),
            tenant: tenant.to_owned(),
            alg,
            status: KeyStatus::Active,
            audience: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            retain_until: None,
            public_jwk: Some(jwk.clone()),
            material: Material::Public(parsed),
        })
    }

    /// A key known only as revoked: a verifier outside veto learns of a key revocation by kid,
    /// and the key has left the JWKS by then (or never reached this verifier). Holding it lets
    /// the verify pipeline answer `key_revoked` for its tokens, as veto does, instead of
    /// `unknown_key`. `alg` is a placeholder: the status is read before the alg, and the key
    /// has no material, so nothing verifies or signs with it.
    pub fn known_revoked(tenant: &str, kid: &str) -> LoadedKey {
        LoadedKey {
            kid: kid.to_owned(),
            tenant: tenant.to_owned(),
            alg: Alg::ES256,
            status: KeyStatus::Revoked,
            audience: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            retain_until: None,
            public_jwk: None,
            material: Material::None,
        }
    }

    /// Whether the key holds private material (a key loaded from veto's store) rather than
    /// only the public half or nothing.
    pub fn has_private(&self) -> bool {
        !matches!(self.material, Material::Public(_) | Material::None)
    }

    /// Active keys with private material sign; nothing else does.
    pub fn signs(&self) -> bool {
        self.status == KeyStatus::Active && self.has_private()
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
            Material::Public(_) | Material::None => Err(KeyError::NoPrivateKey),
        }
    }

    /// Checks a raw signature over `message`. HMAC tags are compared in constant time by
    /// aws-lc-rs; ECDSA signatures must be the JOSE fixed-width R||S form (a DER signature fails).
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(k) => aws_lc_rs::hmac::verify(k, message, signature).is_ok(),
            Material::Ec(_, p)
            | Material::Ed(_, p)
            | Material::Rsa(_, _, p)
            | Material::Public(p) => p.verify_sig(message, signature).is_ok(),
            Material::None => false,
        }
    }
}
