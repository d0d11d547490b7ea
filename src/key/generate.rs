//! Generating new keys.

use std::fmt;

use zeroize::Zeroizing;

use super::format::{ID_LEN, KeyFormat, SECRET_LEN, base62_char};
use super::hash::{KeyHash, KeyHasher};
use crate::error::Error;

/// Makes new API keys: a random id and secret from the operating system's CSPRNG.
///
/// ```
/// use credentialflow::key::{KeyFormat, KeyGenerator, KeyHasher};
///
/// let generator = KeyGenerator::new(KeyFormat::new("cf_live")?, KeyHasher::sha256());
/// let issued = generator.generate()?;
/// // Show `issued.key()` to the user once; store only `issued.id()` and `issued.hash()`.
/// assert!(issued.key().starts_with("cf_live_"));
/// assert!(!format!("{issued:?}").contains(issued.key()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyGenerator {
    format: KeyFormat,
    hasher: KeyHasher,
}

impl KeyGenerator {
    /// A generator for `format`, hashing with `hasher`.
    #[must_use]
    pub fn new(format: KeyFormat, hasher: KeyHasher) -> Self {
        Self { format, hasher }
    }

    /// The key format.
    #[must_use]
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    /// The hasher.
    #[must_use]
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Draws a new key.
    ///
    /// # Errors
    ///
    /// When the operating system's random number generator fails ([`Error::unavailable`]).
    pub fn generate(&self) -> Result<IssuedKey, Error> {
        let mut id = [0u8; ID_LEN];
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        fill_base62(&mut id)?;
        fill_base62(&mut secret[..])?;
        Ok(self.issue(&id, &secret))
    }

    /// The key made of `id` and `secret` (base62), with what to store.
    fn issue(&self, id: &[u8; ID_LEN], secret: &[u8; SECRET_LEN]) -> IssuedKey {
        IssuedKey {
            id: id.iter().map(|&b| b as char).collect(),
            key: Zeroizing::new(self.format.assemble(id, secret)),
            hash: self.hasher.hash(&secret[..]),
        }
    }
}

/// Fills `out` with uniformly distributed base62 characters (rejection sampling: bytes of 248
/// and above are redrawn, so every character has probability exactly 1/62).
fn fill_base62(out: &mut [u8]) -> Result<(), Error> {
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut filled = 0;
    while filled < out.len() {
        getrandom::fill(&mut pool[..])
            .map_err(|e| Error::unavailable(format!("OS random number generator failed: {e}")))?;
        for &b in pool.iter() {
            if b < 248 && filled < out.len() {
                out[filled] = base62_char(b);
                filled += 1;
            }
        }
    }
    Ok(())
}

/// A freshly generated key: the full key (show it once, never store it) and what to store.
///
/// The full key is zeroized on drop; `Debug` shows only the id.
pub struct IssuedKey {
    id: String,
    key: Zeroizing<String>,
    hash: KeyHash,
}

impl IssuedKey {
    /// The public id, to store and to show in listings.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The full key, to hand to its owner once. Never log or store it.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The digest to store.
    #[must_use]
    pub fn hash(&self) -> &KeyHash {
        &self.hash
    }
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .field("hash", &self.hash)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn generator() -> KeyGenerator {
        KeyGenerator::new(KeyFormat::new("cf_test").unwrap(), KeyHasher::sha256())
    }

    #[test]
    fn keys_are_distinct() {
        let g = generator();
        let a = g.generate().unwrap();
        let b = g.generate().unwrap();
        assert_ne!(a.key(), b.key());
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn characters_are_roughly_uniform() {
        let mut counts = [0u32; 62];
        let mut buf = [0u8; 6200];
        fill_base62(&mut buf).unwrap();
        for b in buf {
            let i = match b {
                b'0'..=b'9' => b - b'0',
                b'A'..=b'Z' => b - b'A' + 10,
                _ => b - b'a' + 36,
            };
            counts[usize::from(i)] += 1;
        }
        // Expected 100 each; a fair draw stays well inside [40, 180].
        assert!(
            counts.iter().all(|&c| (40..=180).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn generated_keys_parse_and_verify() {
        let g = generator();
        for _ in 0..64 {
            let issued = g.generate().unwrap();
            let parsed = g.format().parse(issued.key()).unwrap();
            assert_eq!(parsed.id(), issued.id());
            assert_eq!(
                g.hasher().verify(parsed.secret().as_bytes(), issued.hash()),
                Some(true)
            );
        }
    }

    proptest! {
        /// Whatever the generator draws: any id, secret and prefix, plain or peppered.
        #[test]
        fn every_key_parses_back_and_verifies(
            prefix in "[A-Za-z][A-Za-z0-9_]{0,31}",
            id in "[0-9A-Za-z]{12}",
            secret in "[0-9A-Za-z]{32}",
            peppered in any::<bool>(),
        ) {
            let mut hasher = KeyHasher::sha256();
            if peppered {
                hasher = hasher
                    .with_pepper(crate::key::Pepper::new(3, vec![9; 32]).unwrap())
                    .unwrap();
            }
            let g = KeyGenerator::new(KeyFormat::new(&prefix).unwrap(), hasher);
            let id: [u8; ID_LEN] = id.as_bytes().try_into().unwrap();
            let secret: [u8; SECRET_LEN] = secret.as_bytes().try_into().unwrap();
            let issued = g.issue(&id, &secret);
            prop_assert_eq!(issued.key().len(), prefix.len() + 1 + ID_LEN + 1 + SECRET_LEN + 6);
            let parsed = g.format().parse(issued.key()).unwrap();
            prop_assert_eq!(parsed.id().as_bytes(), &id[..]);
            prop_assert_eq!(parsed.secret().as_bytes(), &secret[..]);
            prop_assert_eq!(g.hasher().verify(&secret, issued.hash()), Some(true));
            let mut other = secret;
            other[0] = if other[0] == b'a' { b'b' } else { b'a' };
            prop_assert_eq!(g.hasher().verify(&other, issued.hash()), Some(false));
        }
    }
}
