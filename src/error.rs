//! The error every stage shares: why a request was rejected, and how that maps to HTTP and gRPC.
//!
//! An [`Error`] is opaque; its [`ErrorKind`] is fine-grained so that the audit log can tell an
//! expired key from a revoked one. The responders merge kinds on the wire: every credential
//! failure becomes the same `401` with `error="invalid_token"`, so a client learns nothing about
//! which check failed. The layer that rejects a request puts the [`Error`] into the response's
//! extensions, where an audit layer (or your own middleware) can read it:
//!
//! ```
//! # use credentialflow::{Error, ErrorKind};
//! # let response = http::Response::builder().extension(Error::new(ErrorKind::RevokedCredential)).body(()).unwrap();
//! if let Some(error) = response.extensions().get::<Error>() {
//!     assert_eq!(error.kind(), ErrorKind::RevokedCredential);
//!     assert_eq!(error.kind().status(), http::StatusCode::UNAUTHORIZED);
//! }
//! ```
//!
//! [`ConfigError`] is the other error: a builder refusing a configuration at start-up.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::response::Scheme;

/// Why a request was rejected. Cheap to clone; never holds a credential.
///
/// See the [module docs](crate::error) for how it reaches the audit log.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    scheme: Option<Scheme>,
    scope: Option<Arc<str>>,
    retry_after: Option<Duration>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl StdError for Error {
    /// The cause itself (not the `Arc` around it), so `downcast_ref` on it works.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl Error {
    /// An error of this kind with no further detail.
    #[must_use]
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            scheme: None,
            scope: None,
            retry_after: None,
            source: None,
        }
    }

    /// A store, key source or policy backend could not answer: the request is refused with
    /// `503 Service Unavailable` (gRPC 14), never allowed.
    ///
    /// `source` is kept for logs and the audit trail; it must not contain a credential.
    #[must_use]
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(ErrorKind::StoreUnavailable).with_source(source)
    }

    /// A store, key source or policy backend did not answer in time: `503` (gRPC 14).
    #[must_use]
    pub fn timeout(after: Duration) -> Self {
        Self::new(ErrorKind::StoreTimeout).with_source(TimedOut(after))
    }

    /// Attaches the underlying cause, reachable through [`std::error::Error::source`].
    ///
    /// The cause must not contain a credential: it may be logged.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Records the authentication scheme whose credential failed, so that the `401` challenge
    /// for that scheme (and only that one) carries the `error` parameter.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// Records the scope a request needed, for the `scope` parameter of an
    /// `insufficient_scope` challenge (RFC 6750 §3).
    ///
    /// Space-delimited scope tokens; characters outside RFC 6750's `scope-token` set are dropped
    /// from the header rather than let through.
    #[must_use]
    pub fn with_required_scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Records when the client may retry, sent as `Retry-After` in whole seconds, rounded up.
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The scheme whose credential failed, if known.
    #[must_use]
    pub fn scheme(&self) -> Option<&Scheme> {
        self.scheme.as_ref()
    }

    /// The scope the request needed, for `insufficient_scope`.
    #[must_use]
    pub fn required_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the client may retry, if the rejecting stage said.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(scheme) = &self.scheme {
            d.field("scheme", scheme);
        }
        if let Some(scope) = &self.scope {
            d.field("required_scope", scope);
        }
        if let Some(after) = &self.retry_after {
            d.field("retry_after", after);
        }
        if let Some(source) = &self.source {
            // Display, not Debug: a source's Debug is not ours to vouch for.
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

#[derive(Debug)]
struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer within {:?}", self.0)
    }
}

impl StdError for TimedOut {}

/// The precise reason for a rejection.
///
/// Fine-grained for audit and metrics; responders merge kinds on the wire (see
/// [`ErrorKind::status`], [`ErrorKind::bearer_error`], [`ErrorKind::grpc_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    // --- 400 invalid_request: the request itself is malformed ---
    /// A credential does not match its syntax (RFC 6750 §2.1 `b64token` for bearer tokens).
    MalformedCredential,
    /// The same credential was sent more than once (two `Authorization` headers, a repeated
    /// query parameter…).
    DuplicateCredential,
    /// Credentials were sent by more than one method, or of more than one kind (RFC 6750 §2).
    ConflictingCredentials,
    /// A credential exceeds the configured size limit.
    OversizedCredential,

    // --- 401 without an error code: nothing was presented ---
    /// No credential was presented to a route that requires one.
    MissingCredential,
    /// The route needs an authenticated principal and the request is anonymous.
    AuthenticationRequired,

    // --- 401 invalid_token: a credential was presented and is not acceptable ---
    /// A credential was presented and failed verification (the generic case).
    InvalidCredential,
    /// The credential's identifier (API key id, JWT `kid`) is not known.
    UnknownCredential,
    /// An API key's checksum does not match: a typo or garbage, caught before any store lookup.
    ChecksumMismatch,
    /// The credential has expired.
    ExpiredCredential,
    /// The credential is not valid yet (JWT `nbf`, a key's start time).
    CredentialNotYetValid,
    /// The credential was revoked.
    RevokedCredential,
    /// The credential, or its owner, is suspended.
    SuspendedCredential,
    /// The credential awaits approval.
    PendingCredential,
    /// A token's signature does not verify with the key its issuer and `kid` select.
    InvalidSignature,
    /// A token's algorithm is not one the selected key may be used with (`none`, an unknown
    /// `alg`, or RS256 where only PS256 is configured: RFC 8725 §3.1).
    UnsupportedAlgorithm,
    /// A token's issuer (`iss`) is missing, not a string, or not a configured issuer.
    InvalidIssuer,
    /// A token's audience (`aud`) is missing, of the wrong JSON type, or not ours.
    InvalidAudience,
    /// A token's claims or header break a rule: a claim of the wrong JSON type, a missing
    /// required claim, `iat` in the future, a lifetime over the maximum, the wrong `typ`, an
    /// unsupported `crit`, `zip` or `cnf`, or a custom check.
    InvalidClaims,

    // --- 403: authenticated, but not allowed ---
    /// The principal lacks a required scope (RFC 6750 `insufficient_scope`).
    InsufficientScope,
    /// The principal lacks a required role.
    InsufficientRole,
    /// A policy denied the request.
    PolicyDenied,

    // --- 429 ---
    /// A rate limit was exceeded.
    RateLimited,

    // --- 503: fail closed ---
    /// A store, key source or policy backend returned an error.
    StoreUnavailable,
    /// A store, key source or policy backend did not answer in time.
    StoreTimeout,
}

/// The `error` parameter of a Bearer challenge (RFC 6750 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BearerError {
    /// `invalid_request`: malformed, duplicated or conflicting credentials (400).
    InvalidRequest,
    /// `invalid_token`: expired, revoked, malformed or otherwise invalid (401).
    InvalidToken,
    /// `insufficient_scope`: the token lacks the privileges needed (403).
    InsufficientScope,
}

impl BearerError {
    /// The parameter value as sent on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

impl fmt::Display for BearerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [ErrorKind] = &[
        Self::MalformedCredential,
        Self::DuplicateCredential,
        Self::ConflictingCredentials,
        Self::OversizedCredential,
        Self::MissingCredential,
        Self::AuthenticationRequired,
        Self::InvalidCredential,
        Self::UnknownCredential,
        Self::ChecksumMismatch,
        Self::ExpiredCredential,
        Self::CredentialNotYetValid,
        Self::RevokedCredential,
        Self::SuspendedCredential,
        Self::PendingCredential,
        Self::InvalidSignature,
        Self::UnsupportedAlgorithm,
        Self::InvalidIssuer,
        Self::InvalidAudience,
        Self::InvalidClaims,
        Self::InsufficientScope,
        Self::InsufficientRole,
        Self::PolicyDenied,
        Self::RateLimited,
        Self::StoreUnavailable,
        Self::StoreTimeout,
    ];

    pub(crate) const COUNT: usize = Self::ALL.len();

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The HTTP status a responder answers with.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::MalformedCredential
            | Self::DuplicateCredential
            | Self::ConflictingCredentials
            | Self::OversizedCredential => StatusCode::BAD_REQUEST,
            Self::MissingCredential
            | Self::AuthenticationRequired
            | Self::InvalidCredential
            | Self::UnknownCredential
            | Self::ChecksumMismatch
            | Self::ExpiredCredential
            | Self::CredentialNotYetValid
            | Self::RevokedCredential
            | Self::SuspendedCredential
            | Self::PendingCredential
            | Self::InvalidSignature
            | Self::UnsupportedAlgorithm
            | Self::InvalidIssuer
            | Self::InvalidAudience
            | Self::InvalidClaims => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::InsufficientRole | Self::PolicyDenied => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::StoreUnavailable | Self::StoreTimeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 `error` code for the challenge, if any.
    ///
    /// `None` for a missing credential (RFC 6750 §3: no error code when the request carried no
    /// authentication information) and for statuses that carry no challenge.
    #[must_use]
    pub const fn bearer_error(self) -> Option<BearerError> {
        match self {
            Self::MalformedCredential
            | Self::DuplicateCredential
            | Self::ConflictingCredentials
            | Self::OversizedCredential => Some(BearerError::InvalidRequest),
            Self::InvalidCredential
            | Self::UnknownCredential
            | Self::ChecksumMismatch
            | Self::ExpiredCredential
            | Self::CredentialNotYetValid
            | Self::RevokedCredential
            | Self::SuspendedCredential
            | Self::PendingCredential
            | Self::InvalidSignature
            | Self::UnsupportedAlgorithm
            | Self::InvalidIssuer
            | Self::InvalidAudience
            | Self::InvalidClaims => Some(BearerError::InvalidToken),
            Self::InsufficientScope => Some(BearerError::InsufficientScope),
            Self::MissingCredential
            | Self::AuthenticationRequired
            | Self::InsufficientRole
            | Self::PolicyDenied
            | Self::RateLimited
            | Self::StoreUnavailable
            | Self::StoreTimeout => None,
        }
    }

    /// The gRPC status code: 3 `INVALID_ARGUMENT`, 16 `UNAUTHENTICATED`, 7 `PERMISSION_DENIED`,
    /// 8 `RESOURCE_EXHAUSTED`, 14 `UNAVAILABLE`.
    #[must_use]
    pub const fn grpc_code(self) -> i32 {
        match self.status().as_u16() {
            400 => 3,
            401 => 16,
            403 => 7,
            429 => 8,
            _ => 14,
        }
    }

    /// `true` when a backend failed to answer (503): the request was refused without a verdict
    /// on the credential.
    #[must_use]
    pub const fn is_unavailable(self) -> bool {
        matches!(self, Self::StoreUnavailable | Self::StoreTimeout)
    }

    /// A short, stable, lower-case name for logs and metrics (`"revoked_credential"`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedCredential => "malformed_credential",
            Self::DuplicateCredential => "duplicate_credential",
            Self::ConflictingCredentials => "conflicting_credentials",
            Self::OversizedCredential => "oversized_credential",
            Self::MissingCredential => "missing_credential",
            Self::AuthenticationRequired => "authentication_required",
            Self::InvalidCredential => "invalid_credential",
            Self::UnknownCredential => "unknown_credential",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::ExpiredCredential => "expired_credential",
            Self::CredentialNotYetValid => "credential_not_yet_valid",
            Self::RevokedCredential => "revoked_credential",
            Self::SuspendedCredential => "suspended_credential",
            Self::PendingCredential => "pending_credential",
            Self::InvalidSignature => "invalid_signature",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::InvalidClaims => "invalid_claims",
            Self::InsufficientScope => "insufficient_scope",
            Self::InsufficientRole => "insufficient_role",
            Self::PolicyDenied => "policy_denied",
            Self::RateLimited => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
            Self::StoreTimeout => "store_timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration refused at start-up: a bad realm, an invalid header name, a limit of zero.
///
/// Builders return it instead of panicking, so a bad configuration never ships.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid credentialflow configuration: {message}")]
pub struct ConfigError {
    message: Cow<'static, str>,
}

impl ConfigError {
    /// A configuration error with this explanation. The text must not contain a secret.
    #[must_use]
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The explanation.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_in_index_order() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn every_401_kind_maps_to_grpc_16_and_every_503_to_14() {
        for kind in ErrorKind::ALL {
            match kind.status().as_u16() {
                400 => assert_eq!(kind.grpc_code(), 3),
                401 => assert_eq!(kind.grpc_code(), 16),
                403 => assert_eq!(kind.grpc_code(), 7),
                429 => assert_eq!(kind.grpc_code(), 8),
                503 => {
                    assert_eq!(kind.grpc_code(), 14);
                    assert!(kind.is_unavailable());
                }
                other => panic!("unexpected status {other} for {kind:?}"),
            }
        }
    }

    #[test]
    fn source_downcasts_to_the_original_cause() {
        let e =
            Error::new(ErrorKind::InvalidCredential).with_source(TimedOut(Duration::from_secs(1)));
        let src = StdError::source(&e).expect("source");
        assert!(src.downcast_ref::<TimedOut>().is_some());
    }

    #[test]
    fn source_is_chained() {
        let e = Error::unavailable("connection refused");
        let src = StdError::source(&e).expect("source");
        assert_eq!(src.to_string(), "connection refused");
        assert_eq!(e.to_string(), "store_unavailable");
    }
}
