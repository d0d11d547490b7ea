//! Why a JWKS or discovery fetch failed.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why fetching or reading a key set (or a discovery document) failed.
///
/// Cheap to clone (one refcount): every request waiting on a fetch gets a copy. It becomes the
/// source of the `503` [`Error`](crate::Error) a request gets when the identity provider is
/// unreachable. It never holds a token.
#[derive(Clone)]
pub struct JwksError {
    kind: JwksErrorKind,
    detail: Option<Arc<dyn StdError + Send + Sync>>,
}

/// What kind of failure a [`JwksError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwksErrorKind {
    /// Connecting, TLS or reading the response failed.
    Transport,
    /// No complete answer within the fetch timeout.
    Timeout,
    /// The server answered with a status other than `200 OK`.
    Status,
    /// The response body exceeded the size limit; reading stopped there.
    TooLarge,
    /// The body is not a JWK Set (or a discovery document): not JSON, or no `keys` array.
    InvalidDocument,
    /// The JWK Set holds no key this source may use.
    NoUsableKeys,
    /// The discovery document names another issuer than the configured one.
    IssuerMismatch,
    /// A URL (the discovered `jwks_uri`) is not `https://` and plain HTTP was not allowed.
    InsecureUrl,
    /// No key set was ever loaded, and no fetch has finished yet.
    NotLoaded,
    /// The fetcher panicked or its task was cancelled.
    Aborted,
}

impl fmt::Display for JwksErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transport => "JWKS transport error",
            Self::Timeout => "JWKS fetch timed out",
            Self::Status => "JWKS server answered with an error status",
            Self::TooLarge => "JWKS response exceeds the size limit",
            Self::InvalidDocument => "JWKS response is not a valid document",
            Self::NoUsableKeys => "JWK Set holds no usable key",
            Self::IssuerMismatch => "discovered issuer differs from the configured one",
            Self::InsecureUrl => "refusing a plain http:// URL",
            Self::NotLoaded => "no JWK Set loaded yet",
            Self::Aborted => "JWKS fetch aborted",
        })
    }
}

impl JwksError {
    /// An error of `kind` without detail.
    #[must_use]
    pub fn new(kind: JwksErrorKind) -> Self {
        Self { kind, detail: None }
    }

    /// A transport failure (connection, TLS, I/O), for your own
    /// [`JwksFetcher`](super::JwksFetcher).
    #[must_use]
    pub fn transport(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(JwksErrorKind::Transport).with_detail(source)
    }

    /// The body is larger than the limit the fetcher was given.
    #[must_use]
    pub fn too_large(limit: usize) -> Self {
        Self::new(JwksErrorKind::TooLarge).with_detail(format!("more than {limit} bytes"))
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Self::new(JwksErrorKind::Timeout).with_detail(format!("no answer within {after:?}"))
    }

    pub(crate) fn status(status: http::StatusCode) -> Self {
        Self::new(JwksErrorKind::Status).with_detail(format!("status {}", status.as_u16()))
    }

    pub(crate) fn invalid(why: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(JwksErrorKind::InvalidDocument).with_detail(why)
    }

    /// Attaches a cause (kept for logs; must hold no secret).
    #[must_use]
    pub fn with_detail(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.detail = Some(Arc::from(source.into()));
        self
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> JwksErrorKind {
        self.kind
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{}: {detail}", self.kind),
            None => fmt::Display::fmt(&self.kind, f),
        }
    }
}

impl fmt::Debug for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JwksError");
        d.field("kind", &self.kind);
        if let Some(detail) = &self.detail {
            d.field("detail", &format_args!("{detail}"));
        }
        d.finish()
    }
}

impl StdError for JwksError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.detail
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
