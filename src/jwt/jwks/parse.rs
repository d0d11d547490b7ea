//! JWK Set documents → verification keys.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::error::{JwksError, JwksErrorKind};
use crate::jwt::key_source::Striped;
use crate::jwt::keys::{AlgorithmSet, VerificationKey};

/// The most keys read from one document; later ones are skipped.
pub(crate) const MAX_KEYS: usize = 100;

#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseRules {
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) allow_symmetric: bool,
}

/// Up to this many keys, a lookup scans instead of searching.
const SCAN: usize = 8;

/// An immutable key set, replaced whole.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    /// Keys with a `kid`, sorted by `kid` (stable: document order among equal ids).
    /// (`kid`, index into `all`).
    by_kid: Box<[(Box<str>, usize)]>,
    /// Every key, in document order (for tokens without `kid`).
    all: Box<[Striped]>,
    /// SHA-256 over the accepted JWKs, to notice a changed set.
    pub(crate) digest: [u8; 32],
    /// Keys in the document that were not used (unsupported, invalid, not allowed).
    pub(crate) skipped: usize,
}

impl KeySet {
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// The key for `kid` and `alg`: among keys sharing the `kid`, the first (in document order)
    /// that allows `alg`, else the first (the authenticator then refuses the algorithm). A token
    /// without `kid` gets the one key that allows `alg`, if exactly one does.
    #[inline]
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Arc<VerificationKey>> {
        let stripe = crate::stripe::thread_stripe();
        match kid {
            Some(kid) => {
                // Few keys (the usual 1-4): a linear scan, where a length mismatch costs no
                // byte comparison. Many: binary search to the first of the equal ids.
                let same = if self.by_kid.len() <= SCAN {
                    &self.by_kid[..]
                } else {
                    let start = self.by_kid.partition_point(|(k, _)| &**k < kid);
                    let end = start + self.by_kid[start..].partition_point(|(k, _)| **k == *kid);
                    &self.by_kid[start..end]
                };
                let mut first = None;
                for (_, index) in same.iter().filter(|(k, _)| **k == *kid) {
                    let key = self.all.get(*index)?.get(stripe);
                    if key.allows(alg) {
                        return Some(key);
                    }
                    first = first.or(Some(key));
                }
                first
            }
            None => {
                let mut found = None;
                for key in self
                    .all
                    .iter()
                    .map(|k| k.get(stripe))
                    .filter(|k| k.allows(alg))
                {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(key);
                }
                found
            }
        }
    }

    pub(crate) fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.iter().map(|(k, _)| &**k)
    }
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

/// The few members read before the full JWK parse.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(default, borrow, rename = "use")]
    use_: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    kty: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

fn intersect(rules: AlgorithmSet, family: &[Algorithm]) -> AlgorithmSet {
    family
        .iter()
        .copied()
        .filter(|a| rules.contains(*a))
        .collect()
}

/// Why one key of a set was skipped (logged at debug, counted).
enum Skip {
    /// `use: enc`, or `key_ops` without `verify`: not a signature key. Not counted.
    NotForSignatures,
    /// Anything else: counted as skipped.
    Unusable(String),
}

fn one_key(raw: &RawValue, rules: ParseRules) -> Result<VerificationKey, Skip> {
    let peek: Peek<'_> =
        serde_json::from_str(raw.get()).map_err(|e| Skip::Unusable(format!("not a JWK: {e}")))?;
    if peek.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err(Skip::NotForSignatures);
    }
    if peek
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err(Skip::NotForSignatures);
    }
    if peek.kty.as_deref() == Some("oct") && !rules.allow_symmetric {
        return Err(Skip::Unusable(
            "`oct` (symmetric) keys are not allowed".into(),
        ));
    }
    let jwk: Jwk =
        serde_json::from_str(raw.get()).map_err(|e| Skip::Unusable(format!("invalid JWK: {e}")))?;
    let allowed = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => intersect(rules.algorithms, &RSA_ALGS),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => intersect(rules.algorithms, &[Algorithm::ES256]),
            EllipticCurve::P384 => intersect(rules.algorithms, &[Algorithm::ES384]),
            _ => AlgorithmSet::EMPTY,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            intersect(rules.algorithms, &[Algorithm::EdDSA])
        }
        AlgorithmParameters::OctetKey(_) if rules.allow_symmetric => {
            intersect(rules.algorithms, &HMAC_ALGS)
        }
        _ => AlgorithmSet::EMPTY,
    };
    if allowed.is_empty() {
        return Err(Skip::Unusable(
            "key type or curve not among the configured algorithms".into(),
        ));
    }
    let key = VerificationKey::from_jwk_with_algorithms(&jwk, allowed.iter())
        .map_err(|e| Skip::Unusable(e.to_string()))?;
    // Defence in depth: whatever the JWK says, the key stays within its family.
    let family_ok = key.algorithms().iter().all(|a| {
        allowed.contains(a)
            && match &jwk.algorithm {
                AlgorithmParameters::OctetKey(_) => a.family() == AlgorithmFamily::Hmac,
                _ => a.family() != AlgorithmFamily::Hmac,
            }
    });
    if !family_ok {
        return Err(Skip::Unusable("algorithm outside the key's family".into()));
    }
    Ok(key)
}

/// Parses a JWK Set (RFC 7517 §5). Unusable keys are skipped one by one; the document fails
/// only when it is not a JWK Set or leaves no usable key.
pub(crate) fn parse_key_set(body: &[u8], rules: ParseRules) -> Result<KeySet, JwksError> {
    let doc: Document<'_> = serde_json::from_slice(body).map_err(JwksError::invalid)?;
    let mut keys = Vec::with_capacity(doc.keys.len().min(MAX_KEYS));
    let mut skipped = 0;
    let mut hashes: Vec<[u8; 32]> = Vec::new();
    for (i, raw) in doc.keys.iter().enumerate() {
        if i >= MAX_KEYS {
            skipped += doc.keys.len() - MAX_KEYS;
            tracing::debug!(
                max = MAX_KEYS,
                "JWK Set holds too many keys; the rest are skipped"
            );
            break;
        }
        match one_key(raw, rules) {
            Ok(key) => {
                hashes.push(Sha256::digest(raw.get().as_bytes()).into());
                keys.push(Arc::new(key));
            }
            Err(Skip::NotForSignatures) => {}
            Err(Skip::Unusable(why)) => {
                skipped += 1;
                tracing::debug!(index = i, reason = %why, "skipping a JWK");
            }
        }
    }
    if keys.is_empty() {
        return Err(JwksError::new(JwksErrorKind::NoUsableKeys));
    }
    hashes.sort_unstable();
    let mut digest = Sha256::new();
    for h in &hashes {
        digest.update(h);
    }
    let mut by_kid: Vec<(Box<str>, usize)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.kid().map(|kid| (Box::from(kid), i)))
        .collect();
    by_kid.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(KeySet {
        by_kid: by_kid.into(),
        all: keys.iter().map(Striped::new).collect(),
        digest: digest.finalize().into(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::keys::ALL_ALGORITHMS;

    fn rules() -> ParseRules {
        ParseRules {
            algorithms: ALL_ALGORITHMS
                .into_iter()
                .filter(|a| a.family() != AlgorithmFamily::Hmac)
                .collect(),
            allow_symmetric: false,
        }
    }

    // RFC 7517 appendix A.1 public keys (P-256 and RSA), RFC 8037 A.2 (Ed25519).
    const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","kid":"ec1"}"#;
    const RSA: &str = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;
    const OKP: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed1"}"#;
    const OCT: &str = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow","alg":"HS256","kid":"hs"}"#;

    fn doc(keys: &[&str]) -> String {
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    #[test]
    fn rsa_ec_okp_are_read_with_their_algorithms() {
        let set = parse_key_set(doc(&[EC, RSA, OKP]).as_bytes(), rules()).unwrap();
        assert_eq!(set.len(), 3);
        let rsa = set.find(Some("2011-04-29"), Algorithm::RS256).unwrap();
        assert!(rsa.allows(Algorithm::RS256));
        // A JWK `alg` binds: RS256 only, not PS256.
        assert!(!rsa.allows(Algorithm::PS256));
        assert!(
            set.find(Some("ec1"), Algorithm::ES256)
                .unwrap()
                .allows(Algorithm::ES256)
        );
        assert!(
            set.find(Some("ed1"), Algorithm::EdDSA)
                .unwrap()
                .allows(Algorithm::EdDSA)
        );
        assert!(set.find(Some("nope"), Algorithm::RS256).is_none());
    }

    #[test]
    fn alg_less_rsa_gets_configured_rsa_algorithms_only() {
        let no_alg = RSA.replace(r#""alg":"RS256","#, "");
        let only_ps: AlgorithmSet = [Algorithm::PS256, Algorithm::ES256].into_iter().collect();
        let set = parse_key_set(
            doc(&[&no_alg]).as_bytes(),
            ParseRules {
                algorithms: only_ps,
                allow_symmetric: false,
            },
        )
        .unwrap();
        let key = set.find(Some("2011-04-29"), Algorithm::PS256).unwrap();
        assert_eq!(key.algorithms(), AlgorithmSet::EMPTY.with(Algorithm::PS256));
    }

    #[test]
    fn jwk_alg_outside_configuration_is_skipped() {
        let only_es: AlgorithmSet = [Algorithm::ES256].into_iter().collect();
        let set = parse_key_set(
            doc(&[RSA, EC]).as_bytes(),
            ParseRules {
                algorithms: only_es,
                allow_symmetric: false,
            },
        )
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped, 1);
    }

    #[test]
    fn enc_keys_are_ignored_and_bad_keys_do_not_poison_the_set() {
        let enc = EC
            .replace(r#""use":"sig""#, r#""use":"enc""#)
            .replace("ec1", "enc1");
        let broken = r#"{"kty":"RSA","n":"!!","e":"AQAB","kid":"bad"}"#;
        let unknown = r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"}"#;
        let weird = r#"{"kty":"XYZ","kid":"x"}"#;
        let set = parse_key_set(
            doc(&[&enc, broken, unknown, weird, "17", RSA]).as_bytes(),
            rules(),
        )
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped, 4);
        assert!(set.find(Some("enc1"), Algorithm::ES256).is_none());
    }

    #[test]
    fn oct_keys_need_explicit_permission() {
        let err = parse_key_set(doc(&[OCT]).as_bytes(), rules()).unwrap_err();
        assert_eq!(err.kind(), JwksErrorKind::NoUsableKeys);
        let hs: AlgorithmSet = [Algorithm::HS256].into_iter().collect();
        let set = parse_key_set(
            doc(&[OCT]).as_bytes(),
            ParseRules {
                algorithms: hs,
                allow_symmetric: true,
            },
        )
        .unwrap();
        assert!(set.find(Some("hs"), Algorithm::HS256).is_some());
    }

    #[test]
    fn duplicate_kids_keep_document_order_per_algorithm() {
        let ec_same = EC.replace("ec1", "same");
        let rsa_same = RSA.replace("2011-04-29", "same");
        let set = parse_key_set(doc(&[&ec_same, &rsa_same]).as_bytes(), rules()).unwrap();
        assert!(
            set.find(Some("same"), Algorithm::RS256)
                .unwrap()
                .allows(Algorithm::RS256)
        );
        assert!(
            set.find(Some("same"), Algorithm::ES256)
                .unwrap()
                .allows(Algorithm::ES256)
        );
        // No key allows PS512: the first with that kid, which the authenticator then refuses.
        assert!(
            set.find(Some("same"), Algorithm::PS512)
                .unwrap()
                .allows(Algorithm::ES256)
        );
    }

    #[test]
    fn many_keys_are_searched() {
        let keys: Vec<String> = (0..40)
            .map(|i| RSA.replace("2011-04-29", &format!("k{i:02}")))
            .collect();
        let mut refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let ec_dup = EC.replace("ec1", "k17");
        refs.push(&ec_dup);
        let set = parse_key_set(doc(&refs).as_bytes(), rules()).unwrap();
        for i in 0..40 {
            assert!(
                set.find(Some(&format!("k{i:02}")), Algorithm::RS256)
                    .is_some()
            );
        }
        assert!(
            set.find(Some("k17"), Algorithm::ES256)
                .unwrap()
                .allows(Algorithm::ES256)
        );
        assert!(set.find(Some("k40"), Algorithm::RS256).is_none());
        assert!(set.find(Some("a"), Algorithm::RS256).is_none());
        assert!(set.find(Some("z"), Algorithm::RS256).is_none());
    }

    #[test]
    fn token_without_kid_needs_a_unique_key_for_its_alg() {
        let set = parse_key_set(doc(&[EC, RSA]).as_bytes(), rules()).unwrap();
        assert!(set.find(None, Algorithm::ES256).is_some());
        let two = parse_key_set(
            doc(&[RSA, &RSA.replace("2011-04-29", "other")]).as_bytes(),
            rules(),
        )
        .unwrap();
        assert!(two.find(None, Algorithm::RS256).is_none());
    }

    #[test]
    fn invalid_documents_fail() {
        for body in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"keys":{}}"#,
            r#"{"keys":[]}"#,
            "{\"keys\":[",
        ] {
            assert!(parse_key_set(body.as_bytes(), rules()).is_err(), "{body}");
        }
    }

    #[test]
    fn digest_ignores_key_order() {
        let a = parse_key_set(doc(&[EC, RSA]).as_bytes(), rules()).unwrap();
        let b = parse_key_set(doc(&[RSA, EC]).as_bytes(), rules()).unwrap();
        let c = parse_key_set(doc(&[RSA]).as_bytes(), rules()).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_key_set(&raw, rules());
        }

        #[test]
        fn parser_never_panics_on_jwk_shaped_input(
            kty in proptest::sample::select(vec!["RSA", "EC", "OKP", "oct", "x"]),
            crv in proptest::sample::select(vec!["P-256", "P-384", "P-521", "Ed25519", "X25519", ""]),
            alg in proptest::sample::select(vec!["RS256", "ES256", "EdDSA", "HS256", "none", "RSA-OAEP", ""]),
            n in "[A-Za-z0-9_-]{0,64}",
            x in "[A-Za-z0-9_-]{0,64}",
            kid in "\\PC{0,8}",
        ) {
            let jwk = serde_json::json!({"kty": kty, "crv": crv, "alg": alg, "n": n, "e": "AQAB",
                "x": x, "y": x, "k": n, "kid": kid});
            let doc = serde_json::json!({"keys": [jwk]}).to_string();
            let _ = parse_key_set(doc.as_bytes(), rules());
            let _ = parse_key_set(doc.as_bytes(), ParseRules { algorithms: ALL_ALGORITHMS.into_iter().collect(), allow_symmetric: true });
        }
    }
}
