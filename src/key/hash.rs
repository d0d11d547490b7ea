//! Hashing key secrets at rest.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::ConfigError;

/// How a stored digest was computed, so that peppers can rotate without reissuing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashVersion {
    /// `SHA-256(secret)`.
    Sha256,
    /// `HMAC-SHA-256(pepper, secret)` with the pepper of this id.
    HmacSha256 {
        /// Which pepper.
        pepper_id: u32,
    },
}

impl HashVersion {
    /// A compact text form for storage: `"sha256"` or `"hmac-sha256:<pepper id>"`.
    #[must_use]
    pub fn to_storage_string(self) -> String {
        match self {
            Self::Sha256 => "sha256".to_owned(),
            Self::HmacSha256 { pepper_id } => format!("hmac-sha256:{pepper_id}"),
        }
    }

    /// Parses [`to_storage_string`](Self::to_storage_string)'s output.
    #[must_use]
    pub fn from_storage_str(s: &str) -> Option<Self> {
        match s {
            "sha256" => Some(Self::Sha256),
            _ => s
                .strip_prefix("hmac-sha256:")
                .and_then(|id| id.parse().ok())
                .map(|pepper_id| Self::HmacSha256 { pepper_id }),
        }
    }
}

/// A stored digest of a key's secret, with how it was computed. Never the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    version: HashVersion,
    digest: [u8; 32],
}

impl KeyHash {
    /// A digest read back from storage.
    #[must_use]
    pub fn from_parts(version: HashVersion, digest: [u8; 32]) -> Self {
        Self { version, digest }
    }

    /// How it was computed.
    #[must_use]
    pub fn version(&self) -> HashVersion {
        self.version
    }

    /// The 32-byte digest.
    #[must_use]
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest of a high-entropy secret reveals nothing useful, but it is credential
        // material for whoever reads logs: keep it out of them.
        f.debug_struct("KeyHash")
            .field("version", &self.version)
            .field("digest", &"[redacted]")
            .finish()
    }
}

/// A server-side secret mixed into every digest (HMAC key), so that a stolen key database is
/// useless without it. Zeroized on drop; `Debug` shows only its id.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pepper {
    #[zeroize(skip)]
    id: u32,
    bytes: Box<[u8]>,
}

impl Pepper {
    /// A pepper with an id (stored beside each digest) and at least 32 bytes of secret.
    ///
    /// # Errors
    ///
    /// When `bytes` is shorter than 32 bytes (RFC 2104 §3: a key shorter than the hash output
    /// weakens the MAC).
    pub fn new(id: u32, bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let mut bytes: Vec<u8> = bytes.into();
        if bytes.len() < 32 {
            bytes.zeroize();
            return Err(ConfigError::new(
                "a pepper needs at least 32 bytes of secret",
            ));
        }
        // Copied, not `into_boxed_slice`: shrinking a vector with spare capacity moves it and
        // frees the old buffer without zeroing it.
        let boxed: Box<[u8]> = bytes.as_slice().into();
        bytes.zeroize();
        Ok(Self { id, bytes: boxed })
    }

    /// The pepper's id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pepper")
            .field("id", &self.id)
            .field("bytes", &"[redacted]")
            .finish()
    }
}

/// Hashes new secrets and verifies presented ones.
///
/// Plain SHA-256 is the right hash for these secrets: they are 190-bit random strings, so
/// there is nothing to brute-force, and a slow password hash (Argon2, bcrypt) would only make
/// every request cost milliseconds. A [`Pepper`] adds defence in depth: with one, a copy of the
/// key table alone cannot even confirm a guessed key.
///
/// To rotate a pepper, add the new one with [`with_pepper`](Self::with_pepper) (new keys use the
/// last one added) and keep the old ones for as long as keys hashed with them live: each stored
/// [`KeyHash`] names its pepper.
#[derive(Clone, Default)]
pub struct KeyHasher {
    peppers: Arc<[Pepper]>,
}

impl KeyHasher {
    /// SHA-256 without a pepper.
    #[must_use]
    pub fn sha256() -> Self {
        Self::default()
    }

    /// Adds a pepper; the last added is used for new keys.
    ///
    /// # Errors
    ///
    /// When a pepper with the same id is already present.
    pub fn with_pepper(self, pepper: Pepper) -> Result<Self, ConfigError> {
        if self.peppers.iter().any(|p| p.id == pepper.id) {
            return Err(ConfigError::new(format!(
                "pepper id {} is used twice",
                pepper.id
            )));
        }
        let mut peppers: Vec<Pepper> = self.peppers.to_vec();
        peppers.push(pepper);
        Ok(Self {
            peppers: peppers.into(),
        })
    }

    /// The version new keys are hashed with.
    #[must_use]
    pub fn current_version(&self) -> HashVersion {
        match self.peppers.last() {
            Some(p) => HashVersion::HmacSha256 { pepper_id: p.id },
            None => HashVersion::Sha256,
        }
    }

    /// Hashes `secret` with the current version.
    #[must_use]
    pub fn hash(&self, secret: &[u8]) -> KeyHash {
        let version = self.current_version();
        // The current version is always computable.
        let digest = self.digest(version, secret).unwrap_or([0; 32]);
        KeyHash { version, digest }
    }

    fn digest(&self, version: HashVersion, secret: &[u8]) -> Option<[u8; 32]> {
        match version {
            HashVersion::Sha256 => Some(Sha256::digest(secret).into()),
            HashVersion::HmacSha256 { pepper_id } => {
                let pepper = self.peppers.iter().find(|p| p.id == pepper_id)?;
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&pepper.bytes).ok()?;
                mac.update(secret);
                Some(mac.finalize().into_bytes().into())
            }
        }
    }

    /// Checks `secret` against `stored` in constant time.
    ///
    /// `None` when `stored` names a pepper this hasher does not have: a configuration error,
    /// which the authenticator answers with `503` rather than a verdict.
    #[must_use]
    pub fn verify(&self, secret: &[u8], stored: &KeyHash) -> Option<bool> {
        let digest = self.digest(stored.version, secret)?;
        Some(digests_equal(&digest, &stored.digest))
    }
}

/// Constant-time equality of two digests, a 64-bit word at a time (four optimisation barriers
/// instead of thirty-two).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut equal = subtle::Choice::from(1u8);
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        equal &= x.ct_eq(&y);
    }
    bool::from(equal)
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher")
            .field("peppers", &self.peppers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_a_known_vector() {
        let h = KeyHasher::sha256().hash(b"abc");
        assert_eq!(h.version(), HashVersion::Sha256);
        assert_eq!(
            h.digest()[..4],
            [0xba, 0x78, 0x16, 0xbf] // SHA-256("abc") = ba7816bf...
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2_shape_and_verifies() {
        let hasher = KeyHasher::sha256()
            .with_pepper(Pepper::new(7, vec![0x0b; 32]).unwrap())
            .unwrap();
        let h = hasher.hash(b"secret");
        assert_eq!(h.version(), HashVersion::HmacSha256 { pepper_id: 7 });
        assert_eq!(hasher.verify(b"secret", &h), Some(true));
        assert_eq!(hasher.verify(b"secreT", &h), Some(false));
        // Without the pepper: no verdict.
        assert_eq!(KeyHasher::sha256().verify(b"secret", &h), None);
    }

    #[test]
    fn rotation_keeps_old_digests_verifiable() {
        let old = KeyHasher::sha256()
            .with_pepper(Pepper::new(1, vec![1; 32]).unwrap())
            .unwrap();
        let h1 = old.hash(b"k1");
        let new = old
            .with_pepper(Pepper::new(2, vec![2; 32]).unwrap())
            .unwrap();
        let h2 = new.hash(b"k2");
        assert_eq!(h2.version(), HashVersion::HmacSha256 { pepper_id: 2 });
        assert_eq!(new.verify(b"k1", &h1), Some(true));
        assert_eq!(new.verify(b"k2", &h2), Some(true));
    }

    #[test]
    fn digest_comparison_sees_every_byte() {
        let a = [7u8; 32];
        assert!(digests_equal(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!digests_equal(&a, &b), "byte {i}");
        }
    }

    #[test]
    fn short_or_duplicate_peppers_are_refused() {
        assert!(Pepper::new(1, vec![0; 31]).is_err());
        let h = KeyHasher::sha256()
            .with_pepper(Pepper::new(1, vec![0; 32]).unwrap())
            .unwrap();
        assert!(h.with_pepper(Pepper::new(1, vec![1; 32]).unwrap()).is_err());
    }

    #[test]
    fn debug_redacts() {
        let p = Pepper::new(3, b"super-secret-pepper-bytes-000000".to_vec()).unwrap();
        assert!(!format!("{p:?}").contains("super-secret"));
        let h = KeyHasher::sha256().hash(b"x");
        assert!(format!("{h:?}").contains("redacted"));
    }

    #[test]
    fn storage_strings_round_trip() {
        for v in [
            HashVersion::Sha256,
            HashVersion::HmacSha256 { pepper_id: 42 },
        ] {
            assert_eq!(
                HashVersion::from_storage_str(&v.to_storage_string()),
                Some(v)
            );
        }
        assert_eq!(HashVersion::from_storage_str("md5"), None);
    }
}
