//! The JWT authenticator: parse once, look the key up, verify, validate, map.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
#[cfg(feature = "tokio")]
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use serde_json::value::RawValue;

use super::claims::{Claims, RawObject, as_numeric_date, as_str, as_strings, lookup};
use super::crypto::CryptoBackend;
use super::key_source::{KeyFuture, KeyLookup, KeyQuery, KeySource};
use super::keys::VerificationKey;
use super::validation::{DEFAULT_MAX_TOKEN_LEN, Issuer};
use crate::authn::{Attempt, Authenticator};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, Error, ErrorKind};
use crate::extract::{CredentialExtractor, CredentialSource};
use crate::principal::{CredentialKind, NameSet, Principal};
use crate::response::Scheme;

/// The precise reason a token was refused, for audit and debug logs; the client only ever sees
/// the same `401 invalid_token`.
///
/// Carried as the source of the [`Error`] the layer puts into the response extensions; read it
/// back with [`JwtRejection::of`]:
///
/// ```
/// # use credentialflow::{Error, ErrorKind};
/// # use credentialflow::jwt::JwtRejection;
/// # let error = Error::new(ErrorKind::ExpiredCredential).with_source(JwtRejection::Expired);
/// assert_eq!(JwtRejection::of(&error), Some(JwtRejection::Expired));
/// assert_eq!(error.kind(), ErrorKind::ExpiredCredential);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum JwtRejection {
    /// Longer than the configured limit (checked before decoding).
    #[error("token too large")]
    TooLarge,
    /// Not three base64url segments, or a segment that does not decode.
    #[error("malformed token")]
    Malformed,
    /// The header is not a JSON object of the expected shape.
    #[error("malformed header")]
    MalformedHeader,
    /// The payload is not a JSON object, or repeats a member name.
    #[error("malformed payload")]
    MalformedPayload,
    /// `alg` is `none` or not a JWS algorithm jsonwebtoken implements.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The selected key is not bound to the token's `alg` (algorithm confusion).
    #[error("algorithm not allowed for this key")]
    AlgorithmNotAllowed,
    /// A `crit` header: no extension is understood, so any is refused (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    CriticalHeader,
    /// A `zip` header (compressed payload; RFC 8725 §3.6).
    #[error("compressed token")]
    Compressed,
    /// An `enc` header: an encrypted token (JWE), not a signed one.
    #[error("encrypted token")]
    Encrypted,
    /// No `iss` claim.
    #[error("missing issuer")]
    MissingIssuer,
    /// `iss` is not a JSON string.
    #[error("issuer is not a string")]
    IssuerNotString,
    /// `iss` names no configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The issuer has no key for the token's `kid` (or it has several keys and no `kid` was
    /// sent).
    #[error("unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A registered claim has the wrong JSON type (a string `exp`, a number `sub`…).
    #[error("claim of the wrong type")]
    WrongClaimType,
    /// `exp` is required and missing.
    #[error("missing exp")]
    MissingExpiry,
    /// now ≥ `exp` + leeway.
    #[error("expired")]
    Expired,
    /// now < `nbf` − leeway.
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` > now + leeway.
    #[error("issued in the future")]
    IssuedInFuture,
    /// `exp` − `iat` over the configured maximum lifetime.
    #[error("lifetime too long")]
    LifetimeTooLong,
    /// No `aud` claim.
    #[error("missing audience")]
    MissingAudience,
    /// `aud` is neither a string nor an array of strings.
    #[error("audience of the wrong type")]
    AudienceNotString,
    /// `aud` names none of our audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// No `sub` claim.
    #[error("missing subject")]
    MissingSubject,
    /// A claim listed as required is missing.
    #[error("missing required claim")]
    MissingRequiredClaim,
    /// `typ` is not one of the required types (an ID token where an access token is needed).
    #[error("wrong token type")]
    WrongType,
    /// A `cnf` claim: a sender-constrained token, refused as a bearer token.
    #[error("sender-constrained token")]
    SenderConstrained,
    /// The revocation hook says the token or its subject is revoked.
    #[error("revoked")]
    Revoked,
}

impl JwtRejection {
    /// The [`ErrorKind`] this reason is audited as; all are `401 invalid_token`.
    #[must_use]
    pub const fn kind(self) -> ErrorKind {
        match self {
            Self::TooLarge
            | Self::Malformed
            | Self::MalformedHeader
            | Self::MalformedPayload
            | Self::Encrypted => ErrorKind::InvalidCredential,
            Self::UnsupportedAlgorithm | Self::AlgorithmNotAllowed => {
                ErrorKind::UnsupportedAlgorithm
            }
            Self::MissingIssuer | Self::IssuerNotString | Self::UnknownIssuer => {
                ErrorKind::InvalidIssuer
            }
            Self::UnknownKey => ErrorKind::UnknownCredential,
            Self::BadSignature => ErrorKind::InvalidSignature,
            Self::Expired => ErrorKind::ExpiredCredential,
            Self::NotYetValid => ErrorKind::CredentialNotYetValid,
            Self::MissingAudience | Self::AudienceNotString | Self::WrongAudience => {
                ErrorKind::InvalidAudience
            }
            Self::Revoked => ErrorKind::RevokedCredential,
            Self::CriticalHeader
            | Self::Compressed
            | Self::WrongClaimType
            | Self::MissingExpiry
            | Self::IssuedInFuture
            | Self::LifetimeTooLong
            | Self::MissingSubject
            | Self::MissingRequiredClaim
            | Self::WrongType
            | Self::SenderConstrained => ErrorKind::InvalidClaims,
        }
    }

    /// The reason recorded in `error`, if a JWT authenticator refused the request.
    #[must_use]
    pub fn of(error: &Error) -> Option<Self> {
        std::error::Error::source(error)?
            .downcast_ref::<Self>()
            .copied()
    }

    fn into_error(self, scheme: Scheme) -> Error {
        tracing::debug!(reason = %self, kind = %self.kind(), "JWT refused");
        Error::new(self.kind())
            .with_scheme(scheme)
            .with_source(self)
    }
}

/// What a [`RevocationCheck`] is asked about a verified token.
#[derive(Debug)]
#[non_exhaustive]
pub struct RevocationQuery<'a> {
    /// The issuer that verified the token.
    pub issuer: &'a str,
    /// The token's `sub`.
    pub subject: &'a str,
    /// The token's `jti`, if it has one.
    pub jti: Option<&'a str>,
    /// The principal the token maps to.
    pub principal: &'a Principal,
}

/// The answer of a [`RevocationCheck`]: `Ok(true)` revoked, `Ok(false)` not revoked, `Err` the
/// deny-list cannot answer (the request is refused with `503`, never allowed).
pub enum Revocation {
    /// Answered from memory.
    Ready(Result<bool, Error>),
    /// Needs I/O.
    Pending(Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'static>>),
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Self::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// A deny-list of token ids or subjects, asked after a token verified. Fails closed: an error
/// refuses the request with `503`.
pub trait RevocationCheck: Send + Sync + 'static {
    /// Is this token revoked?
    fn check(&self, query: &RevocationQuery<'_>) -> Revocation;
}

impl<R: RevocationCheck + ?Sized> RevocationCheck for Arc<R> {
    fn check(&self, query: &RevocationQuery<'_>) -> Revocation {
        (**self).check(query)
    }
}

/// Verifies JWTs from configured [`Issuer`]s; an [`Authenticator`].
///
/// A verification answered from memory (static keys, a JWKS snapshot hit) never waits. One
/// that has to (a [`KeySource`] miss that refetches, a pending [`RevocationCheck`]) is bounded
/// by [`JwtAuthenticatorBuilder::timeout`], 2 s by default (feature `tokio`): a source that
/// hangs refuses the request with `503` and `Retry-After`, never allows it.
///
/// See the [module docs](crate::jwt) for an example.
pub struct JwtAuthenticator<C = SystemClock> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for JwtAuthenticator<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct IssuerEntry {
    rules: Issuer,
    source: Arc<dyn KeySource>,
}

struct Shared<C> {
    issuers: Box<[IssuerEntry]>,
    extractor: CredentialExtractor,
    backend: CryptoBackend,
    clock: C,
    max_len: usize,
    revocation: Option<Arc<dyn RevocationCheck>>,
    #[cfg(feature = "tokio")]
    timeout: Option<Duration>,
}

/// Builds a [`JwtAuthenticator`]. See the [module docs](crate::jwt) for an example.
#[must_use]
pub struct JwtAuthenticatorBuilder<C = SystemClock> {
    issuers: Vec<Issuer>,
    sources: Vec<CredentialSource>,
    backend: Option<CryptoBackend>,
    clock: C,
    max_len: usize,
    revocation: Option<Arc<dyn RevocationCheck>>,
    #[cfg(feature = "tokio")]
    timeout: Option<Duration>,
}

impl JwtAuthenticator {
    /// Starts a builder: `Authorization: Bearer`, the system clock, the default backend.
    pub fn builder() -> JwtAuthenticatorBuilder {
        JwtAuthenticatorBuilder {
            issuers: Vec::new(),
            sources: vec![CredentialSource::bearer()],
            backend: None,
            clock: SystemClock,
            max_len: DEFAULT_MAX_TOKEN_LEN,
            revocation: None,
            #[cfg(feature = "tokio")]
            timeout: Some(crate::authn::DEFAULT_TIMEOUT),
        }
    }
}

impl<C: Clock> JwtAuthenticatorBuilder<C> {
    /// Trusts `issuer`. Several issuers may be added; tokens are routed by their `iss`.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Reads `exp`, `nbf` and `iat` against `clock` (a [`FakeClock`](crate::clock::FakeClock)
    /// in tests). Defaults to the system clock.
    pub fn clock<C2: Clock>(self, clock: C2) -> JwtAuthenticatorBuilder<C2> {
        JwtAuthenticatorBuilder {
            issuers: self.issuers,
            sources: self.sources,
            backend: self.backend,
            clock,
            max_len: self.max_len,
            revocation: self.revocation,
            #[cfg(feature = "tokio")]
            timeout: self.timeout,
        }
    }

    /// Verifies signatures with `backend`. Defaults to
    /// [`CryptoBackend::default_backend`].
    pub fn backend(mut self, backend: CryptoBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Reads tokens from `sources`, in order, instead of `Authorization: Bearer`.
    ///
    /// # Security
    ///
    /// A [`CredentialSource::bearer_query`] puts tokens into URLs, which end up in logs.
    pub fn sources(mut self, sources: impl IntoIterator<Item = CredentialSource>) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// Limits a token's length, checked before any decoding. Defaults to 8 KiB; more lets
    /// every request cost more to parse. A longer credential is refused by the extractor with
    /// `400 invalid_request` ([`ErrorKind::OversizedCredential`]).
    ///
    /// # Errors
    ///
    /// When `max` is zero.
    pub fn max_token_len(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new("maximum token length must be positive"));
        }
        self.max_len = max;
        Ok(self)
    }

    /// Asks `check` about every verified token (a `jti` or subject deny-list).
    ///
    /// A check that answers [`Revocation::Pending`] is bounded by the
    /// [`timeout`](Self::timeout) (feature `tokio`).
    pub fn revocation(mut self, check: impl RevocationCheck) -> Self {
        self.revocation = Some(Arc::new(check));
        self
    }

    /// Bounds the waiting part of a verification: a [`KeySource`] that answers
    /// [`KeyLookup::Pending`] (a JWKS refetch) and the [`RevocationCheck`] after it, or a
    /// pending revocation check alone, under one deadline. Past it the request is refused with
    /// `503` and `Retry-After` ([`ErrorKind::StoreTimeout`]), never allowed.
    ///
    /// Defaults to [`DEFAULT_TIMEOUT`](crate::authn::DEFAULT_TIMEOUT) (2 s); more lets a
    /// hanging JWKS endpoint or deny-list hold requests (and their connections) that long, less
    /// refuses requests while a slow but working source answers. Verifications answered from
    /// memory (the usual case) never wait and never touch a timer.
    ///
    /// The deadline is a Tokio timer: it applies when the verification starts inside a Tokio
    /// runtime with timers enabled (axum, tonic and hyper servers are); elsewhere a pending
    /// lookup is awaited as long as it takes, so bound it in the source itself. Without
    /// feature `tokio` this option does not exist and nothing is bounded.
    ///
    /// # Errors
    ///
    /// When `after` is zero.
    #[cfg(feature = "tokio")]
    pub fn timeout(mut self, after: Duration) -> Result<Self, ConfigError> {
        if after.is_zero() {
            return Err(ConfigError::new("JWT lookup timeout must be positive"));
        }
        self.timeout = Some(after);
        Ok(self)
    }

    /// Finishes the authenticator.
    ///
    /// # Errors
    ///
    /// When no issuer is configured, two share an `iss`, an issuer lacks keys or an audience,
    /// no source is configured, or no crypto backend is compiled in (enable `jwt-aws-lc-rs` or
    /// `jwt-rust-crypto`).
    pub fn build(self) -> Result<JwtAuthenticator<C>, ConfigError> {
        let backend = self
            .backend
            .or(CryptoBackend::default_backend())
            .ok_or_else(|| {
                ConfigError::new(
                    "no JWT crypto backend: enable feature `jwt-aws-lc-rs` or `jwt-rust-crypto`",
                )
            })?;
        if self.issuers.is_empty() {
            return Err(ConfigError::new(
                "a JWT authenticator needs at least one issuer",
            ));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::new(
                "a JWT authenticator needs a credential source",
            ));
        }
        let mut issuers: Vec<IssuerEntry> = Vec::with_capacity(self.issuers.len());
        for issuer in self.issuers {
            if issuers.iter().any(|e| e.rules.issuer == issuer.issuer) {
                return Err(ConfigError::new(format!(
                    "issuer {:?} configured twice",
                    issuer.issuer
                )));
            }
            for key in &issuer.keys {
                key.check_backend(backend).map_err(|e| {
                    ConfigError::new(format!("issuer {:?}: {}", issuer.issuer, e.message()))
                })?;
            }
            let (rules, source) = issuer.finish()?;
            issuers.push(IssuerEntry { rules, source });
        }
        let extractor = CredentialExtractor::new(self.sources).with_max_len(self.max_len)?;
        Ok(JwtAuthenticator {
            shared: Arc::new(Shared {
                issuers: issuers.into(),
                extractor,
                backend,
                clock: self.clock,
                max_len: self.max_len,
                revocation: self.revocation,
                #[cfg(feature = "tokio")]
                timeout: self.timeout,
            }),
        })
    }
}

impl<C: fmt::Debug> fmt::Debug for JwtAuthenticatorBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JwtAuthenticatorBuilder");
        d.field("issuers", &self.issuers)
            .field("backend", &self.backend)
            .field("clock", &self.clock)
            .field("max_len", &self.max_len);
        #[cfg(feature = "tokio")]
        d.field("timeout", &self.timeout);
        d.finish_non_exhaustive()
    }
}

impl<C: fmt::Debug> fmt::Debug for JwtAuthenticator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        let mut d = f.debug_struct("JwtAuthenticator");
        d.field(
            "issuers",
            &s.issuers.iter().map(|e| &e.rules).collect::<Vec<_>>(),
        )
        .field("extractor", &s.extractor)
        .field("backend", &s.backend)
        .field("clock", &s.clock)
        .field("max_len", &s.max_len)
        .field("revocation", &s.revocation.is_some());
        #[cfg(feature = "tokio")]
        d.field("timeout", &s.timeout);
        d.finish_non_exhaustive()
    }
}

/// The three segments of a JWS compact serialization (header, payload, signature): exactly
/// two dots, a non-empty header. `None` for anything else.
fn split_jws(value: &str) -> Option<(&str, &str, &str)> {
    // `find`/`rfind` of one ASCII byte are memchr scans: a few instructions per 8 bytes.
    let first = value.find('.')?;
    let last = value.rfind('.')?;
    if first == 0 || first == last {
        return None;
    }
    let payload = value.get(first + 1..last)?;
    if payload.contains('.') {
        return None;
    }
    Some((value.get(..first)?, payload, value.get(last + 1..)?))
}

/// `true` for what may be a JWS compact serialization: exactly three segments, the first not
/// empty. Anything else is not this authenticator's kind (an API key may be).
fn looks_like_jws(value: &str) -> bool {
    split_jws(value).is_some()
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<HeaderStr<'a>>,
    #[serde(borrow, default)]
    kid: Option<HeaderStr<'a>>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    zip: bool,
    #[serde(default, deserialize_with = "present")]
    enc: bool,
}

/// A header string, borrowed unless it has escapes. (`Option<Cow<str>>` would always allocate:
/// serde borrows only a bare `Cow<str>` field.)
#[derive(Deserialize)]
struct HeaderStr<'a>(#[serde(borrow)] Cow<'a, str>);

impl RawHeader<'_> {
    fn typ(&self) -> Option<&str> {
        self.typ.as_ref().map(|s| &*s.0)
    }

    fn kid(&self) -> Option<&str> {
        self.kid.as_ref().map(|s| &*s.0)
    }
}

/// The largest header we decode, on the stack.
const MAX_HEADER: usize = 1024;

/// Payloads up to this size are decoded on the stack; longer ones (up to the token size
/// limit) on the heap.
const STACK_PAYLOAD: usize = 2048;

enum Progress {
    Verified(Verified),
    NeedKey(KeyFuture),
}

struct Verified {
    principal: Principal,
    issuer: usize,
    has_jti: bool,
}

type Reject = JwtRejection;

impl<C: Clock> Shared<C> {
    /// Everything but the revocation check. With `supplied`, that key is used instead of a
    /// lookup (the pending path, once the source answered).
    fn run(
        &self,
        token: &str,
        scheme: Scheme,
        supplied: Option<Arc<VerificationKey>>,
    ) -> Result<Progress, Error> {
        let fail = |r: Reject| r.into_error(scheme);
        if token.len() > self.max_len {
            return Err(fail(Reject::TooLarge));
        }
        // `looks_like_jws` already refused a fourth segment; a dot left in the payload (when
        // called through `verify`) fails its base64 decoding below, as `Malformed` too.
        let (header_b64, payload_b64, signature_b64) = token
            .split_once('.')
            .and_then(|(header, rest)| {
                let (payload, signature) = rest.rsplit_once('.')?;
                Some((header, payload, signature))
            })
            .filter(|(header, _, _)| !header.is_empty())
            .ok_or_else(|| fail(Reject::Malformed))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

        let mut header_buf = [0u8; MAX_HEADER];
        if header_b64.len() > MAX_HEADER / 3 * 4 {
            return Err(fail(Reject::MalformedHeader));
        }
        let header_len = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut header_buf)
            .map_err(|_| fail(Reject::Malformed))?;
        let header_text = std::str::from_utf8(&header_buf[..header_len])
            .map_err(|_| fail(Reject::MalformedHeader))?;
        let header: RawHeader<'_> =
            serde_json::from_str(header_text).map_err(|_| fail(Reject::MalformedHeader))?;
        if header.enc {
            return Err(fail(Reject::Encrypted));
        }
        let alg =
            Algorithm::from_str(&header.alg).map_err(|_| fail(Reject::UnsupportedAlgorithm))?;

        // The payload is decoded once, on the stack when it fits (almost every token); each
        // branch has its own buffer, so a token refused before it needs none.
        let token = Token {
            header: &header,
            alg,
            signing_input,
            signature_b64,
            scheme,
        };
        if self.issuers.len() > 1 {
            // With several issuers, `iss` picks the keys: the claims are parsed first, and
            // `iss` is only a lookup key until the signature verified.
            let (mut stack, mut heap) = ([0u8; STACK_PAYLOAD], Vec::new());
            let payload = decode_payload(payload_b64, &mut stack, &mut heap).map_err(fail)?;
            let claims = RawObject::parse(payload).ok_or_else(|| fail(Reject::MalformedPayload))?;
            let iss = issuer_of(&claims).map_err(fail)?;
            let index = self
                .issuers
                .iter()
                .position(|e| *e.rules.issuer == *iss)
                .ok_or_else(|| fail(Reject::UnknownIssuer))?;
            if let Some(pending) = self.verify_signature(index, &token, supplied)? {
                return Ok(Progress::NeedKey(pending));
            }
            self.accept(index, &token, &claims)
        } else {
            // With one issuer, the signature is checked first and `iss` compared after: a
            // bad signature costs no payload decoding or JSON parsing.
            if let Some(pending) = self.verify_signature(0, &token, supplied)? {
                return Ok(Progress::NeedKey(pending));
            }
            let (mut stack, mut heap) = ([0u8; STACK_PAYLOAD], Vec::new());
            let payload = decode_payload(payload_b64, &mut stack, &mut heap).map_err(fail)?;
            let claims = RawObject::parse(payload).ok_or_else(|| fail(Reject::MalformedPayload))?;
            let iss = issuer_of(&claims).map_err(fail)?;
            let entry = self
                .issuers
                .first()
                .ok_or_else(|| fail(Reject::UnknownIssuer))?;
            if *iss != *entry.rules.issuer {
                return Err(fail(Reject::UnknownIssuer));
            }
            self.accept(0, &token, &claims)
        }
    }

    /// Finds the key of issuer `index` (or takes `supplied`) and verifies the signature.
    /// `Ok(Some)` when the key source has to wait.
    fn verify_signature(
        &self,
        index: usize,
        token: &Token<'_>,
        supplied: Option<Arc<VerificationKey>>,
    ) -> Result<Option<KeyFuture>, Error> {
        let fail = |r: Reject| r.into_error(token.scheme);
        let entry = self
            .issuers
            .get(index)
            .ok_or_else(|| fail(Reject::UnknownIssuer))?;
        let key = match supplied {
            Some(key) => key,
            None => {
                let query = KeyQuery {
                    issuer: &entry.rules.issuer,
                    kid: token.header.kid(),
                    alg: token.alg,
                };
                match entry.source.lookup(&query) {
                    KeyLookup::Ready(Ok(Some(key))) => key,
                    KeyLookup::Ready(Ok(None)) => return Err(fail(Reject::UnknownKey)),
                    KeyLookup::Ready(Err(error)) => return Err(fail_closed(error, token.scheme)),
                    KeyLookup::Pending(future) => return Ok(Some(future)),
                }
            }
        };
        if !key.allows(token.alg) {
            return Err(fail(Reject::AlgorithmNotAllowed));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(token.signature_b64)
            .map_err(|_| fail(Reject::BadSignature))?;
        if !self.backend.verify(
            token.alg,
            key.decoding_key(),
            token.signing_input.as_bytes(),
            &signature,
        ) {
            return Err(fail(Reject::BadSignature));
        }
        Ok(None)
    }

    /// The rules of a verified token, then the principal.
    fn accept(
        &self,
        index: usize,
        token: &Token<'_>,
        claims: &RawObject<'_>,
    ) -> Result<Progress, Error> {
        let scheme = token.scheme;
        let fail = |r: Reject| r.into_error(scheme);
        let rules = &self
            .issuers
            .get(index)
            .ok_or_else(|| fail(Reject::UnknownIssuer))?
            .rules;
        let header = token.header;
        if header.crit {
            return Err(fail(Reject::CriticalHeader));
        }
        if header.zip {
            return Err(fail(Reject::Compressed));
        }
        if !rules.required_types.is_empty() {
            let typ = header.typ().map(|t| {
                let t = t
                    .get(..12)
                    .filter(|p| p.eq_ignore_ascii_case("application/"));
                t.map_or(0, str::len)
            });
            let ok = match (header.typ(), typ) {
                (Some(t), Some(skip)) => rules
                    .required_types
                    .iter()
                    .any(|r| t[skip..].eq_ignore_ascii_case(r)),
                _ => false,
            };
            if !ok {
                return Err(fail(Reject::WrongType));
            }
        }
        let exp = validate_claims(claims, rules, self.clock.unix_seconds()).map_err(fail)?;
        let (principal, has_jti) = map_principal(claims, rules, token.signature_b64, scheme, exp)?;
        Ok(Progress::Verified(Verified {
            principal,
            issuer: index,
            has_jti,
        }))
    }
}

/// What `run` learnt from a token before its signature verified.
struct Token<'a> {
    header: &'a RawHeader<'a>,
    alg: Algorithm,
    signing_input: &'a str,
    signature_b64: &'a str,
    scheme: Scheme,
}

/// Decodes the payload into `stack` when it fits, else into `heap`; it must be UTF-8.
fn decode_payload<'b>(
    payload_b64: &str,
    stack: &'b mut [u8; STACK_PAYLOAD],
    heap: &'b mut Vec<u8>,
) -> Result<&'b str, Reject> {
    let payload: &[u8] = if payload_b64.len() <= STACK_PAYLOAD / 3 * 4 {
        let len = URL_SAFE_NO_PAD
            .decode_slice(payload_b64, stack)
            .map_err(|_| Reject::Malformed)?;
        &stack[..len]
    } else {
        URL_SAFE_NO_PAD
            .decode_vec(payload_b64, heap)
            .map_err(|_| Reject::Malformed)?;
        heap
    };
    std::str::from_utf8(payload).map_err(|_| Reject::MalformedPayload)
}

/// The token's `iss`: present and a JSON string.
fn issuer_of<'a>(claims: &RawObject<'a>) -> Result<Cow<'a, str>, Reject> {
    let raw = claims.registered().iss.ok_or(Reject::MissingIssuer)?;
    as_str(raw).map_err(|()| Reject::IssuerNotString)
}

fn fail_closed(error: Error, scheme: Scheme) -> Error {
    let error = if error.kind().is_unavailable() {
        error
    } else {
        Error::unavailable(error)
    };
    error.with_scheme(scheme)
}

fn date(raw: Option<&RawValue>) -> Result<Option<f64>, Reject> {
    raw.map(|raw| as_numeric_date(raw).map_err(|()| Reject::WrongClaimType))
        .transpose()
}

/// Checks the time, audience and presence rules; answers `exp`, for the principal.
fn validate_claims(
    claims: &RawObject<'_>,
    rules: &Issuer,
    now: u64,
) -> Result<Option<f64>, Reject> {
    let registered = claims.registered();
    #[allow(clippy::cast_precision_loss)]
    let (now, leeway) = (now as f64, rules.leeway as f64);
    let exp = date(registered.exp)?;
    let nbf = date(registered.nbf)?;
    let iat = date(registered.iat)?;
    match exp {
        Some(exp) if now >= exp + leeway => return Err(Reject::Expired),
        None if rules.require_exp => return Err(Reject::MissingExpiry),
        _ => {}
    }
    if nbf.is_some_and(|nbf| now < nbf - leeway) {
        return Err(Reject::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now + leeway) {
        return Err(Reject::IssuedInFuture);
    }
    if let Some(max) = rules.max_lifetime {
        #[allow(clippy::cast_precision_loss)]
        let max = max as f64;
        match exp {
            Some(exp) if exp - iat.unwrap_or(now) <= max => {}
            _ => return Err(Reject::LifetimeTooLong),
        }
    }
    match registered.aud {
        None if !rules.any_audience => return Err(Reject::MissingAudience),
        None => {}
        Some(raw) => {
            let mut auds = as_strings(raw, true).map_err(|()| Reject::AudienceNotString)?;
            if !rules.any_audience && !auds.any(|a| rules.audiences.iter().any(|ours| **ours == *a))
            {
                return Err(Reject::WrongAudience);
            }
        }
    }
    if registered.cnf.is_some() && !rules.accept_cnf {
        return Err(Reject::SenderConstrained);
    }
    if rules
        .required_claims
        .iter()
        .any(|name| claims.get(name).is_none())
    {
        return Err(Reject::MissingRequiredClaim);
    }
    Ok(exp)
}

fn map_principal<'a>(
    claims: &RawObject<'a>,
    rules: &Issuer,
    signature_b64: &str,
    scheme: Scheme,
    exp: Option<f64>,
) -> Result<(Principal, bool), Error> {
    let fail = |r: Reject| r.into_error(scheme);
    let registered = claims.registered();
    let string = |raw: Option<&'a RawValue>| -> Result<Option<Cow<'a, str>>, Error> {
        raw.map(|raw| as_str(raw).map_err(|()| fail(Reject::WrongClaimType)))
            .transpose()
    };
    let subject = string(registered.sub)?.ok_or_else(|| fail(Reject::MissingSubject))?;
    let jti = string(registered.jti)?;
    let scope = string(registered.scope)?;
    // `scp` is rare (Entra ID): collected only when present, so the common case allocates
    // nothing before the set itself.
    let scp: Vec<Cow<'_, str>> = match registered.scp {
        None => Vec::new(),
        Some(raw) => as_strings(raw, true)
            .map_err(|()| fail(Reject::WrongClaimType))?
            .collect(),
    };
    let scopes: NameSet = match (&scope, scp.is_empty()) {
        // The common case, `scope` alone: the set's own one-copy parser.
        (Some(scope), true) => NameSet::from_space_delimited(scope),
        (None, true) => NameSet::default(),
        _ => scope
            .iter()
            .chain(scp.iter())
            .flat_map(|s| s.split(' '))
            .collect(),
    };
    let mut builder = Principal::builder(&*subject, CredentialKind::Jwt).scope_set(scopes);
    if let Some(path) = &rules.roles {
        let roles: NameSet = match lookup(claims, path) {
            Ok(None) => NameSet::default(),
            Ok(Some(raw)) => as_strings(raw, true)
                .map_err(|()| fail(Reject::WrongClaimType))?
                .collect(),
            Err(()) => return Err(fail(Reject::WrongClaimType)),
        };
        builder = builder.role_set(roles);
    }
    if let Some(path) = &rules.tenant {
        match lookup(claims, path) {
            Ok(None) => {}
            Ok(Some(raw)) => {
                let tenant = as_str(raw).map_err(|()| fail(Reject::WrongClaimType))?;
                builder = builder.tenant(&*tenant);
            }
            Err(()) => return Err(fail(Reject::WrongClaimType)),
        }
    }
    for (name, path) in &rules.attributes {
        if let Ok(Some(raw)) = lookup(claims, path)
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(raw.get())
        {
            builder = builder.attribute(name.as_ref(), value);
        }
    }
    let has_jti = jti.is_some();
    builder = match jti {
        Some(jti) => builder.credential_id(&*jti),
        None => builder.credential_id(signature_digest(signature_b64)),
    };
    if let Some(exp) = exp {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let exp = exp.max(0.0) as u64;
        builder = builder.expires_at(exp);
    }
    if rules.check.is_some() || rules.mapping.is_some() {
        let issuer = string(registered.iss)?.unwrap_or_default();
        let view = Claims {
            object: claims,
            subject: &subject,
            issuer: &issuer,
        };
        if let Some(check) = &rules.check {
            check(&view).map_err(|e| e.with_scheme(scheme))?;
        }
        if let Some(mapping) = &rules.mapping {
            builder = mapping(&view, builder).map_err(|e| e.with_scheme(scheme))?;
        }
    }
    Ok((builder.build(), has_jti))
}

/// The first 16 hex digits of SHA-256 over the signature segment: a stable id for a token
/// without `jti` that reveals nothing of it.
fn signature_digest(signature_b64: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(signature_b64.as_bytes());
    let mut out = String::with_capacity(16);
    for byte in &digest[..8] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

impl<C: Clock> Shared<C> {
    fn revocation_step(&self, verified: Verified, scheme: Scheme) -> RevocationStep {
        let Some(check) = &self.revocation else {
            return RevocationStep::Done(Ok(verified.principal));
        };
        let principal = verified.principal;
        let jti = if verified.has_jti {
            principal.credential_id()
        } else {
            None
        };
        let answer = check.check(&RevocationQuery {
            issuer: &self.issuers[verified.issuer].rules.issuer,
            subject: principal.subject(),
            jti,
            principal: &principal,
        });
        match answer {
            Revocation::Ready(result) => RevocationStep::Done(revoked(result, principal, scheme)),
            Revocation::Pending(future) => RevocationStep::Pending(future, principal),
        }
    }
}

fn revoked(
    result: Result<bool, Error>,
    principal: Principal,
    scheme: Scheme,
) -> Result<Principal, Error> {
    match result {
        Ok(false) => Ok(principal),
        Ok(true) => Err(JwtRejection::Revoked.into_error(scheme)),
        Err(error) => Err(fail_closed(error, scheme)),
    }
}

type BoxedVerification = Pin<Box<dyn Future<Output = Result<Principal, Error>> + Send + 'static>>;

enum Step {
    Done(Result<Principal, Error>),
    Pending(BoxedVerification),
}

type PendingRevocation = Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'static>>;

enum RevocationStep {
    Done(Result<Principal, Error>),
    Pending(PendingRevocation, Principal),
}

impl<C: Clock> JwtAuthenticator<C> {
    /// Verifies `token` as if it came in a request: the whole pipeline but extraction. For
    /// tests and benches; a pending lookup or revocation check is awaited.
    ///
    /// # Errors
    ///
    /// The same errors the layer would put into the response extensions.
    pub async fn verify(&self, token: &str) -> Result<Principal, Error> {
        match self.start(token, Scheme::BEARER) {
            Step::Done(result) => result,
            Step::Pending(future) => future.await,
        }
    }

    fn start(&self, token: &str, scheme: Scheme) -> Step {
        match self.shared.run(token, scheme, None) {
            Err(error) => Step::Done(Err(error)),
            Ok(Progress::Verified(verified)) => match self.shared.revocation_step(verified, scheme)
            {
                RevocationStep::Done(result) => Step::Done(result),
                RevocationStep::Pending(future, principal) => self.pending(
                    async move { revoked(future.await, principal, scheme) },
                    scheme,
                ),
            },
            Ok(Progress::NeedKey(future)) => {
                let shared = Arc::clone(&self.shared);
                let token: zeroize::Zeroizing<String> = zeroize::Zeroizing::new(token.to_owned());
                self.pending(
                    async move {
                        let key = match future.await {
                            Ok(Some(key)) => key,
                            Ok(None) => return Err(JwtRejection::UnknownKey.into_error(scheme)),
                            Err(error) => return Err(fail_closed(error, scheme)),
                        };
                        match shared.run(&token, scheme, Some(key))? {
                            Progress::Verified(verified) => {
                                match shared.revocation_step(verified, scheme) {
                                    RevocationStep::Done(result) => result,
                                    RevocationStep::Pending(future, principal) => {
                                        revoked(future.await, principal, scheme)
                                    }
                                }
                            }
                            Progress::NeedKey(_) => {
                                Err(JwtRejection::UnknownKey.into_error(scheme))
                            }
                        }
                    },
                    scheme,
                )
            }
        }
    }

    /// Boxes the waiting part of a verification (a key lookup and the revocation check after
    /// it, or the revocation check alone), under one deadline when a timeout applies.
    fn pending<F>(&self, future: F, scheme: Scheme) -> Step
    where
        F: Future<Output = Result<Principal, Error>> + Send + 'static,
    {
        #[cfg(feature = "tokio")]
        if let Some(after) = self.shared.timeout
            && tokio::runtime::Handle::try_current().is_ok()
        {
            return Step::Pending(Box::pin(async move {
                match tokio::time::timeout(after, future).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        tracing::debug!(?after, "JWT key lookup or revocation check timed out");
                        Err(Error::timeout(after).with_scheme(scheme))
                    }
                }
            }));
        }
        #[cfg(not(feature = "tokio"))]
        let _ = scheme;
        Step::Pending(Box::pin(future))
    }
}

impl<C: Clock> Authenticator for JwtAuthenticator<C> {
    type Future = JwtFuture;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        let credential = match self
            .shared
            .extractor
            .extract_matching(request, looks_like_jws)
        {
            Err(error) => return Attempt::Rejected(error),
            Ok(None) => return Attempt::NoCredential,
            Ok(Some(credential)) => credential,
        };
        match self.start(credential.value(), credential.scheme()) {
            Step::Done(Ok(principal)) => Attempt::Authenticated(principal),
            Step::Done(Err(error)) => Attempt::Rejected(error),
            Step::Pending(inner) => Attempt::Pending(JwtFuture { inner }),
        }
    }

    fn sources(&self) -> Vec<CredentialSource> {
        self.shared.extractor.sources().to_vec()
    }
}

/// The future of a [`JwtAuthenticator`] whose key source or revocation check has to wait.
#[must_use = "futures do nothing unless polled"]
pub struct JwtFuture {
    inner: BoxedVerification,
}

impl fmt::Debug for JwtFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtFuture").finish_non_exhaustive()
    }
}

impl Future for JwtFuture {
    type Output = Result<Principal, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _assert_send_sync() {
        fn is<T: Send + Sync>() {}
        fn send<T: Send>() {}
        is::<JwtAuthenticator>();
        send::<JwtFuture>();
    }

    #[test]
    fn jws_shape() {
        assert!(looks_like_jws("a.b.c"));
        assert!(looks_like_jws("a.b."));
        assert!(!looks_like_jws(".b.c"));
        assert!(!looks_like_jws("cf_live_abc"));
        assert!(!looks_like_jws("a.b.c.d.e"));
    }

    #[test]
    fn header_strings_borrow_and_still_accept_escapes() {
        let plain: RawHeader<'_> =
            serde_json::from_str(r#"{"alg":"RS256","typ":"at+jwt","kid":"k1"}"#).unwrap();
        assert!(matches!(
            plain.typ.as_ref().map(|s| &s.0),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!((plain.typ(), plain.kid()), (Some("at+jwt"), Some("k1")));
        let escaped: RawHeader<'_> =
            serde_json::from_str(r#"{"alg":"RS256","typ":"at\u002bjwt","kid":"k\u0031"}"#).unwrap();
        assert_eq!((escaped.typ(), escaped.kid()), (Some("at+jwt"), Some("k1")));
        let none: RawHeader<'_> = serde_json::from_str(r#"{"alg":"RS256","typ":null}"#).unwrap();
        assert_eq!((none.typ(), none.kid()), (None, None));
        assert!(serde_json::from_str::<RawHeader<'_>>(r#"{"alg":"RS256","kid":7}"#).is_err());
    }

    #[test]
    fn digest_is_16_hex() {
        let d = signature_digest("abc");
        assert_eq!(d.len(), 16);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(token in "[A-Za-z0-9_.=-]{0,300}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let auth = JwtAuthenticator::builder()
                .issuer(Issuer::new("iss").audience("a").key(
                    VerificationKey::hmac(Algorithm::HS256, &[1; 32]).unwrap()))
                .build()
                .unwrap();
            let _ = auth.start(&token, Scheme::BEARER);
            let text = String::from_utf8_lossy(&raw);
            let _ = auth.start(&text, Scheme::BEARER);
            // Valid base64 segments around arbitrary JSON-ish bytes.
            let forged = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(&raw), URL_SAFE_NO_PAD.encode(&raw), URL_SAFE_NO_PAD.encode(&raw));
            let _ = auth.start(&forged, Scheme::BEARER);
        }
    }
}
