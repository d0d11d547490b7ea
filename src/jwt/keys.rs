//! Verification keys, each bound to the algorithms it may be used with.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// Every JWS algorithm jsonwebtoken implements, in a fixed order.
pub const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const fn bit(alg: Algorithm) -> u16 {
    // An algorithm a later jsonwebtoken adds has no bit: no key is ever bound to it.
    #[allow(unreachable_patterns)]
    let shift = match alg {
        Algorithm::HS256 => 0,
        Algorithm::HS384 => 1,
        Algorithm::HS512 => 2,
        Algorithm::RS256 => 3,
        Algorithm::RS384 => 4,
        Algorithm::RS512 => 5,
        Algorithm::PS256 => 6,
        Algorithm::PS384 => 7,
        Algorithm::PS512 => 8,
        Algorithm::ES256 => 9,
        Algorithm::ES384 => 10,
        Algorithm::EdDSA => 11,
        _ => return 0,
    };
    1 << shift
}

/// A set of algorithms: a bit per algorithm, `Copy`, checked in one instruction.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// No algorithm.
    pub const EMPTY: Self = Self(0);

    /// `true` when `alg` is in the set.
    #[must_use]
    pub const fn contains(self, alg: Algorithm) -> bool {
        self.0 & bit(alg) != 0
    }

    /// `true` when the set holds no algorithm.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `alg` added.
    #[must_use]
    pub const fn with(self, alg: Algorithm) -> Self {
        Self(self.0 | bit(alg))
    }

    /// The algorithms, in [`ALL_ALGORITHMS`] order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALL_ALGORITHMS
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        iter.into_iter().fold(Self::EMPTY, Self::with)
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A public key (or HMAC secret) and exactly the algorithms it may verify.
///
/// The token's `alg` never chooses the key type (RFC 8725 §2.1, §3.1): the authenticator looks
/// the key up by issuer and `kid`, then refuses any `alg` the key is not bound to. An RSA key is
/// bound to the RSA algorithms you name (RS256 *or* PS256…), an HMAC secret to one HS
/// algorithm, an EC key to the one algorithm of its curve, an Ed25519 key to EdDSA. `none` is
/// not an algorithm here at all.
///
/// HMAC secrets are zeroized when the key is dropped. `Debug` shows the `kid`, the family and
/// the algorithms, never key material.
///
/// See the [module docs](crate::jwt) for an example.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<Box<str>>,
    algorithms: AlgorithmSet,
    key: DecodingKey,
}

fn check_algorithms(
    family: AlgorithmFamily,
    algorithms: impl IntoIterator<Item = Algorithm>,
) -> Result<AlgorithmSet, ConfigError> {
    let mut set = AlgorithmSet::EMPTY;
    for alg in algorithms {
        if alg.family() != family {
            return Err(ConfigError::new(format!(
                "algorithm {alg:?} cannot be used with a {family:?} key"
            )));
        }
        set = set.with(alg);
    }
    if set.is_empty() {
        return Err(ConfigError::new(
            "a verification key needs at least one algorithm",
        ));
    }
    Ok(set)
}

fn pem_of(der: &[u8], label: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    ))
}

fn bad_key(what: &'static str) -> impl FnOnce(jsonwebtoken::errors::Error) -> ConfigError {
    move |e| ConfigError::new(format!("invalid {what}: {e}"))
}

/// The minimum HMAC secret length for `alg`: the hash size (RFC 7518 §3.2, RFC 8725 §3.5).
const fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

impl VerificationKey {
    fn new(key: DecodingKey, algorithms: AlgorithmSet) -> Self {
        Self {
            kid: None,
            algorithms,
            key,
        }
    }

    /// An HMAC secret for exactly one of HS256, HS384, HS512.
    ///
    /// # Errors
    ///
    /// When `algorithm` is not an HS algorithm, or `secret` is shorter than the hash size
    /// (32, 48 or 64 bytes: RFC 7518 §3.2; a short secret can be brute-forced offline from one
    /// token).
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        let set = check_algorithms(AlgorithmFamily::Hmac, [algorithm])?;
        if secret.len() < hmac_min_len(algorithm) {
            return Err(ConfigError::new(format!(
                "an {algorithm:?} secret needs at least {} bytes",
                hmac_min_len(algorithm)
            )));
        }
        Ok(Self::new(DecodingKey::from_secret(secret), set))
    }

    /// An RSA public key in PEM, SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`), for the RS
    /// and PS algorithms listed.
    ///
    /// # Errors
    ///
    /// When the PEM is not an RSA public key, or `algorithms` is empty or names a non-RSA
    /// algorithm.
    pub fn rsa_pem(
        pem: &[u8],
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Result<Self, ConfigError> {
        let set = check_algorithms(AlgorithmFamily::Rsa, algorithms)?;
        if !std::str::from_utf8(pem).is_ok_and(|p| p.contains("PUBLIC KEY-----")) {
            return Err(ConfigError::new("expected an RSA public key PEM"));
        }
        let key = DecodingKey::from_rsa_pem(pem).map_err(bad_key("RSA public key PEM"))?;
        Ok(Self::new(key, set))
    }

    /// An RSA public key in DER, SPKI or PKCS#1 (`RSAPublicKey`), for the algorithms listed.
    ///
    /// # Errors
    ///
    /// As [`rsa_pem`](Self::rsa_pem).
    pub fn rsa_der(
        der: &[u8],
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Result<Self, ConfigError> {
        let set = check_algorithms(AlgorithmFamily::Rsa, algorithms)?;
        let spki = DecodingKey::from_rsa_pem(pem_of(der, "PUBLIC KEY").as_bytes());
        let key = match spki {
            Ok(key) => key,
            Err(_) if der.first() == Some(&0x30) => DecodingKey::from_rsa_der(der),
            Err(e) => return Err(bad_key("RSA public key DER")(e)),
        };
        Ok(Self::new(key, set))
    }

    /// An EC public key in SPKI PEM; the algorithm follows from the curve: P-256 → ES256,
    /// P-384 → ES384.
    ///
    /// # Errors
    ///
    /// When the PEM is not a P-256 or P-384 public key.
    pub fn ec_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(bad_key("EC public key PEM"))?;
        let alg = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => Algorithm::ES256,
            Ok(97) => Algorithm::ES384,
            _ => return Err(ConfigError::new("expected a P-256 or P-384 public key")),
        };
        Ok(Self::new(key, AlgorithmSet::EMPTY.with(alg)))
    }

    /// An EC public key in SPKI DER. See [`ec_pem`](Self::ec_pem).
    ///
    /// # Errors
    ///
    /// As [`ec_pem`](Self::ec_pem).
    pub fn ec_der(der: &[u8]) -> Result<Self, ConfigError> {
        Self::ec_pem(pem_of(der, "PUBLIC KEY").as_bytes())
    }

    /// An Ed25519 public key in SPKI PEM, for EdDSA.
    ///
    /// # Errors
    ///
    /// When the PEM is not an Ed25519 public key.
    pub fn ed25519_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(bad_key("Ed25519 public key PEM"))?;
        if key.try_get_as_bytes().map(<[u8]>::len) != Ok(32) {
            return Err(ConfigError::new("expected an Ed25519 public key"));
        }
        Ok(Self::new(key, AlgorithmSet::EMPTY.with(Algorithm::EdDSA)))
    }

    /// An Ed25519 public key in SPKI DER, for EdDSA.
    ///
    /// # Errors
    ///
    /// As [`ed25519_pem`](Self::ed25519_pem).
    pub fn ed25519_der(der: &[u8]) -> Result<Self, ConfigError> {
        Self::ed25519_pem(pem_of(der, "PUBLIC KEY").as_bytes())
    }

    /// A JWK (RFC 7517) whose `alg` names its algorithm; its `kid` becomes the key's.
    ///
    /// # Errors
    ///
    /// When the JWK has no `alg` (use [`from_jwk_with_algorithms`](Self::from_jwk_with_algorithms)),
    /// is meant for encryption (`use: enc`), or is not a valid key for its algorithm.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        Self::from_jwk_with_algorithms(jwk, [])
    }

    /// A JWK, bound to its own `alg` when it has one (which must then be among `algorithms`
    /// when `algorithms` is not empty), else to `algorithms`.
    ///
    /// An `oct` JWK is an HMAC secret and gets the same length check as
    /// [`hmac`](Self::hmac).
    ///
    /// # Errors
    ///
    /// As [`from_jwk`](Self::from_jwk); also when neither the JWK nor `algorithms` names an
    /// algorithm, or they disagree.
    pub fn from_jwk_with_algorithms(
        jwk: &Jwk,
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Result<Self, ConfigError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(ConfigError::new(
                "a JWK with `use: enc` cannot verify signatures",
            ));
        }
        let allowed: AlgorithmSet = algorithms.into_iter().collect();
        let own = match jwk.common.key_algorithm {
            Some(alg) => Some(Algorithm::from_str(&format!("{alg:?}")).map_err(|_| {
                ConfigError::new(format!("JWK `alg` {alg:?} is not a JWS algorithm"))
            })?),
            None => None,
        };
        let set = match own {
            Some(alg) if allowed.is_empty() || allowed.contains(alg) => {
                AlgorithmSet::EMPTY.with(alg)
            }
            Some(alg) => {
                return Err(ConfigError::new(format!(
                    "JWK `alg` {alg:?} is not among the configured algorithms"
                )));
            }
            None if allowed.is_empty() => {
                return Err(ConfigError::new(
                    "the JWK has no `alg`: name the algorithms it may be used with",
                ));
            }
            None => allowed,
        };
        let mut key = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => {
                let key = DecodingKey::from_jwk(jwk).map_err(bad_key("RSA JWK"))?;
                Self::new(key, check_algorithms(AlgorithmFamily::Rsa, set.iter())?)
            }
            AlgorithmParameters::EllipticCurve(params) => {
                let (alg, len) = match params.curve {
                    EllipticCurve::P256 => (Algorithm::ES256, 32),
                    EllipticCurve::P384 => (Algorithm::ES384, 48),
                    _ => return Err(ConfigError::new("unsupported JWK curve")),
                };
                if set != AlgorithmSet::EMPTY.with(alg) {
                    return Err(ConfigError::new(
                        "the JWK's curve does not match its algorithm",
                    ));
                }
                let key = DecodingKey::from_jwk(jwk).map_err(bad_key("EC JWK"))?;
                if key.try_get_as_bytes().map(<[u8]>::len) != Ok(1 + 2 * len) {
                    return Err(ConfigError::new("invalid EC JWK coordinates"));
                }
                Self::new(key, set)
            }
            AlgorithmParameters::OctetKeyPair(params) => {
                if params.curve != EllipticCurve::Ed25519
                    || set != AlgorithmSet::EMPTY.with(Algorithm::EdDSA)
                {
                    return Err(ConfigError::new(
                        "only Ed25519 OKP JWKs with EdDSA are supported",
                    ));
                }
                let key = DecodingKey::from_jwk(jwk).map_err(bad_key("OKP JWK"))?;
                if key.try_get_as_bytes().map(<[u8]>::len) != Ok(32) {
                    return Err(ConfigError::new("invalid Ed25519 JWK"));
                }
                Self::new(key, set)
            }
            AlgorithmParameters::OctetKey(_) => {
                let mut algs = set.iter();
                let (Some(alg), None) = (algs.next(), algs.next()) else {
                    return Err(ConfigError::new(
                        "an `oct` JWK needs exactly one HS algorithm",
                    ));
                };
                let decoded = DecodingKey::from_jwk(jwk).map_err(bad_key("oct JWK"))?;
                let secret = decoded.try_get_as_bytes().map_err(bad_key("oct JWK"))?;
                Self::hmac(alg, secret)?
            }
            _ => return Err(ConfigError::new("unsupported JWK key type")),
        };
        if let Some(kid) = &jwk.common.key_id {
            key = key.with_kid(kid.as_str());
        }
        Ok(key)
    }

    /// Sets the key id the token's `kid` header must name. Required when an issuer has more than
    /// one key.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Box<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if set.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify.
    #[must_use]
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }

    /// `true` when this key may verify a token signed with `alg`.
    #[must_use]
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(alg)
    }

    /// The key material, for a [`CryptoBackend`](super::CryptoBackend).
    #[must_use]
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.key.family())
            .field("algorithms", &self.algorithms)
            .field("key", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(VerificationKey::hmac(Algorithm::HS256, &[7; 31]).is_err());
        assert!(VerificationKey::hmac(Algorithm::HS256, &[7; 32]).is_ok());
        assert!(VerificationKey::hmac(Algorithm::HS384, &[7; 47]).is_err());
        assert!(VerificationKey::hmac(Algorithm::HS512, &[7; 63]).is_err());
        assert!(VerificationKey::hmac(Algorithm::HS512, &[7; 64]).is_ok());
        assert!(VerificationKey::hmac(Algorithm::RS256, &[7; 64]).is_err());
    }

    #[test]
    fn algorithm_set_is_exact() {
        let set: AlgorithmSet = [Algorithm::RS256, Algorithm::PS256].into_iter().collect();
        assert!(set.contains(Algorithm::RS256));
        assert!(!set.contains(Algorithm::RS384));
        assert_eq!(set.iter().count(), 2);
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = VerificationKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef")
            .unwrap()
            .with_kid("k1");
        let shown = format!("{key:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("k1"));
    }
}
