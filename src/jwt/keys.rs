//! Verification keys, each bound to the algorithms it may be used with.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use zeroize::Zeroizing;

use super::crypto::CryptoBackend;
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

/// One DER TLV at the start of `input`: (tag, contents, rest). Definite, minimal lengths only
/// (X.690 §10.1), as DER requires.
fn der_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    if tag & 0x1f == 0x1f {
        return Err("unexpected high tag number");
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err("unsupported length encoding");
        }
        let (bytes, after) = rest.split_at_checked(count).ok_or("truncated")?;
        rest = after;
        if bytes[0] == 0 {
            return Err("non-minimal length");
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return Err("non-minimal length");
        }
        len
    };
    let (contents, rest) = rest.split_at_checked(len).ok_or("truncated")?;
    Ok((tag, contents, rest))
}

/// A positive DER INTEGER's magnitude, without the sign octet.
fn der_positive_integer(contents: &[u8]) -> Result<&[u8], &'static str> {
    match contents {
        [] => Err("empty integer"),
        [first, ..] if first & 0x80 != 0 => Err("negative integer"),
        [0, next, ..] if next & 0x80 == 0 => Err("non-minimal integer"),
        [0, rest @ ..] => Ok(rest),
        magnitude => Ok(magnitude),
    }
}

/// The DER inside a PEM with one `-----BEGIN …-----` block (headers-free, as SPKI PEM is).
fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")?;
    let body = text.get(start..)?.split_once('\n')?.1;
    let end = body.find("-----END ")?;
    let b64: String = body
        .get(..end)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

/// The ECDSA algorithm of an EC `SubjectPublicKeyInfo` (RFC 5480): `id-ecPublicKey` with
/// the named curve P-256 or P-384, and an uncompressed point of that curve's size.
fn ec_spki_algorithm(spki: &[u8]) -> Result<Algorithm, &'static str> {
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    let (tag, body, rest) = der_tlv(spki)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err("not a SubjectPublicKeyInfo");
    }
    let (tag, algorithm, key) = der_tlv(body)?;
    let (oid_tag, oid, params) = der_tlv(algorithm).map_err(|_| "bad algorithm")?;
    if tag != 0x30 || oid_tag != 0x06 || oid != EC_PUBLIC_KEY {
        return Err("not an EC public key");
    }
    let (curve_tag, curve, rest) = der_tlv(params)?;
    if curve_tag != 0x06 || !rest.is_empty() {
        return Err("no named curve");
    }
    let (alg, point_len) = match curve {
        P256 => (Algorithm::ES256, 65),
        P384 => (Algorithm::ES384, 97),
        _ => return Err("unsupported curve"),
    };
    let (tag, bits, rest) = der_tlv(key)?;
    match bits {
        [0, 0x04, point @ ..] if tag == 0x03 && rest.is_empty() && point.len() + 1 == point_len => {
            Ok(alg)
        }
        _ => Err("not an uncompressed point of the curve"),
    }
}

/// The smallest and largest RSA moduli accepted, in bits: RFC 7518 §3.3 requires 2048 or
/// more, and the verification algorithms of aws-lc-rs refuse more than 8192.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Checks a PKCS#1 `RSAPublicKey` (RFC 8017 §A.1.1: `SEQUENCE { modulus INTEGER,
/// publicExponent INTEGER }`): strict DER, nothing trailing, a modulus of 2048 to 8192 bits, an
/// odd exponent of at least 3. Then the default crypto backend must load it (the backend an
/// authenticator is built with is asked again by its builder).
fn check_rsa_public_key(der: &[u8]) -> Result<(), ConfigError> {
    let invalid = |why: &str| ConfigError::new(format!("invalid RSA public key: {why}"));
    let (tag, body, rest) = der_tlv(der).map_err(invalid)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(invalid("not a single DER SEQUENCE"));
    }
    let (tag, n, rest) = der_tlv(body).map_err(invalid)?;
    let (tag_e, e, rest) = der_tlv(rest).map_err(invalid)?;
    if tag != 0x02 || tag_e != 0x02 || !rest.is_empty() {
        return Err(invalid(
            "not a SEQUENCE of two INTEGERs (modulus, exponent)",
        ));
    }
    check_rsa_components(
        der_positive_integer(n).map_err(invalid)?,
        der_positive_integer(e).map_err(invalid)?,
    )?;
    if let Some(backend) = CryptoBackend::default_backend() {
        backend_loads_rsa(backend, der)?;
    }
    Ok(())
}

/// Asks a built-in `backend` to load a PKCS#1 RSA public key, as it will at every
/// verification. A custom provider is not asked: its key utilities may be unimplemented.
fn backend_loads_rsa(backend: CryptoBackend, der: &[u8]) -> Result<(), ConfigError> {
    if !backend.is_built_in() {
        return Ok(());
    }
    (backend
        .provider()
        .key_utils
        .rsa_pub_components_from_public_key)(der)
    .map(drop)
    .map_err(|e| {
        ConfigError::new(format!(
            "RSA public key refused by the {} backend: {e}",
            backend.name()
        ))
    })
}

/// Checks an RSA modulus and exponent (big-endian magnitudes, no leading zero).
fn check_rsa_components(n: &[u8], e: &[u8]) -> Result<(), ConfigError> {
    let n = n.iter().position(|b| *b != 0).map_or(&[][..], |i| &n[i..]);
    let e = e.iter().position(|b| *b != 0).map_or(&[][..], |i| &e[i..]);
    let bits = n.first().map_or(0, |first| {
        n.len() * 8 - usize::try_from(first.leading_zeros()).unwrap_or(0)
    });
    if !RSA_BITS.contains(&bits) {
        return Err(ConfigError::new(format!(
            "an RSA modulus of {bits} bits: 2048 to 8192 are accepted (RFC 7518 §3.3)"
        )));
    }
    let odd = e.last().is_some_and(|last| last & 1 == 1);
    if !odd || e == [1] || e.len() > 8 {
        return Err(ConfigError::new(
            "invalid RSA public exponent: it must be odd, at least 3 and at most 64 bits",
        ));
    }
    Ok(())
}

/// Checks the RSA key material of `key`, whatever form it came in.
fn check_rsa_key(key: &DecodingKey) -> Result<(), ConfigError> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => check_rsa_public_key(der),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            check_rsa_components(n, e)?;
            check_rsa_public_key(&rsa_public_key_der(n, e))
        }
    }
}

/// DER of a PKCS#1 `RSAPublicKey` from its components, for the backends to load.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap_or(0));
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or(0));
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    fn integer(magnitude: &[u8]) -> Vec<u8> {
        let magnitude = magnitude
            .iter()
            .position(|b| *b != 0)
            .map_or(&[0u8][..], |i| &magnitude[i..]);
        let pad = magnitude[0] & 0x80 != 0;
        let mut out = vec![0x02];
        push_len(&mut out, magnitude.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(magnitude);
        out
    }
    let body = [integer(n), integer(e)].concat();
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
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
        check_rsa_key(&key)?;
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
        check_rsa_key(&key)?;
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
        // jsonwebtoken checks the key type, not the curve: read it from the SPKI, so that a
        // secp256k1 or brainpool key is refused here rather than on every request.
        let spki = pem_der(pem).ok_or_else(|| ConfigError::new("invalid EC public key PEM"))?;
        let alg = ec_spki_algorithm(&spki).map_err(|why| {
            ConfigError::new(format!("expected a P-256 or P-384 public key: {why}"))
        })?;
        let expected = if alg == Algorithm::ES256 { 65 } else { 97 };
        if key.try_get_as_bytes().map(<[u8]>::len) != Ok(expected) {
            return Err(ConfigError::new("expected a P-256 or P-384 public key"));
        }
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
                check_rsa_key(&key)?;
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

    /// Checks that a built-in `backend` loads this key (RSA keys: the RSA backends differ on
    /// the sizes they accept), so that a key it refuses fails the build, not every request.
    pub(crate) fn check_backend(&self, backend: CryptoBackend) -> Result<(), ConfigError> {
        match self.key.kind() {
            _ if self.key.family() != AlgorithmFamily::Rsa => Ok(()),
            DecodingKeyKind::SecretOrDer(der) => backend_loads_rsa(backend, der),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                backend_loads_rsa(backend, &rsa_public_key_der(n, e))
            }
        }
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

    #[test]
    fn der_lengths_must_be_definite_and_minimal() {
        assert_eq!(
            der_tlv(&[0x02, 0x01, 0x05]),
            Ok((0x02, &[5u8][..], &[][..]))
        );
        assert!(
            der_tlv(&[0x02, 0x81, 0x01, 0x05]).is_err(),
            "long form under 128"
        );
        assert!(
            der_tlv(&[0x30, 0x80, 0x00, 0x00]).is_err(),
            "indefinite length"
        );
        assert!(
            der_tlv(&[0x30, 0x82, 0x00, 0x90]).is_err(),
            "leading zero length octet"
        );
        assert!(der_tlv(&[0x1f, 0x01, 0x00]).is_err(), "high tag number");
        assert!(der_tlv(&[0x02, 0x02, 0x05]).is_err(), "truncated");
        assert!(
            der_tlv(&[0x30, 0x85, 1, 0, 0, 0, 0]).is_err(),
            "five length octets"
        );
    }

    #[test]
    fn der_integers_must_be_positive_and_minimal() {
        assert_eq!(der_positive_integer(&[0x00, 0x80]), Ok(&[0x80u8][..]));
        assert_eq!(der_positive_integer(&[0x7f]), Ok(&[0x7fu8][..]));
        assert!(der_positive_integer(&[]).is_err());
        assert!(der_positive_integer(&[0x80]).is_err());
        assert!(der_positive_integer(&[0x00, 0x7f]).is_err());
    }

    #[test]
    fn components_round_trip_through_der() {
        let n: Vec<u8> = std::iter::once(0xc1).chain([7u8; 255]).collect();
        let der = rsa_public_key_der(&n, &[1, 0, 1]);
        let (tag, body, rest) = der_tlv(&der).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (_, n_der, rest) = der_tlv(body).unwrap();
        let (_, e_der, _) = der_tlv(rest).unwrap();
        assert_eq!(der_positive_integer(n_der), Ok(&n[..]));
        assert_eq!(der_positive_integer(e_der), Ok(&[1u8, 0, 1][..]));
        assert!(check_rsa_components(&n, &[1, 0, 1]).is_ok());
        assert!(check_rsa_components(&n[1..], &[1, 0, 1]).is_err());
        assert!(check_rsa_components(&n, &[1]).is_err());
        assert!(check_rsa_components(&n, &[0, 0, 3]).is_ok());
    }
}
