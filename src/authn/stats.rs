//! Outcome counters.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::ErrorKind;

#[derive(Default)]
pub(crate) struct Counters {
    authenticated: AtomicU64,
    anonymous: AtomicU64,
    invalid_as_anonymous: AtomicU64,
    preflight: AtomicU64,
    rejected: [AtomicU64; ErrorKind::COUNT],
}

impl Counters {
    pub(crate) fn authenticated(&self) {
        self.authenticated.fetch_add(1, Relaxed);
    }
    pub(crate) fn anonymous(&self) {
        self.anonymous.fetch_add(1, Relaxed);
    }
    pub(crate) fn invalid_as_anonymous(&self) {
        self.invalid_as_anonymous.fetch_add(1, Relaxed);
    }
    pub(crate) fn preflight(&self) {
        self.preflight.fetch_add(1, Relaxed);
    }
    pub(crate) fn rejected(&self, kind: ErrorKind) {
        if let Some(c) = self.rejected.get(kind.index()) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> AuthStats {
        AuthStats {
            authenticated: self.authenticated.load(Relaxed),
            anonymous: self.anonymous.load(Relaxed),
            invalid_as_anonymous: self.invalid_as_anonymous.load(Relaxed),
            preflight: self.preflight.load(Relaxed),
            rejected: std::array::from_fn(|i| self.rejected[i].load(Relaxed)),
        }
    }
}

/// A snapshot of an `Authenticate` layer's outcome counters, from
/// [`AuthenticateLayer::stats`](super::AuthenticateLayer::stats).
///
/// Each counter is read atomically; the snapshot as a whole is not a single instant.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthStats {
    authenticated: u64,
    anonymous: u64,
    invalid_as_anonymous: u64,
    preflight: u64,
    rejected: [u64; ErrorKind::COUNT],
}

impl AuthStats {
    /// Requests that carried a valid credential.
    #[must_use]
    pub fn authenticated(&self) -> u64 {
        self.authenticated
    }

    /// Requests without a credential that continued as anonymous (optional modes).
    #[must_use]
    pub fn anonymous(&self) -> u64 {
        self.anonymous
    }

    /// Requests with a bad credential that continued as anonymous (only in the
    /// `dangerous_invalid_as_anonymous` mode).
    #[must_use]
    pub fn invalid_as_anonymous(&self) -> u64 {
        self.invalid_as_anonymous
    }

    /// CORS preflight requests let through unauthenticated.
    #[must_use]
    pub fn preflight(&self) -> u64 {
        self.preflight
    }

    /// Requests rejected for `kind`.
    #[must_use]
    pub fn rejected(&self, kind: ErrorKind) -> u64 {
        self.rejected.get(kind.index()).copied().unwrap_or(0)
    }

    /// Requests rejected, all reasons together.
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Every reason with a non-zero count.
    pub fn rejections(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .zip(self.rejected.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
    }
}

impl fmt::Debug for AuthStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthStats")
            .field("authenticated", &self.authenticated)
            .field("anonymous", &self.anonymous)
            .field("invalid_as_anonymous", &self.invalid_as_anonymous)
            .field("preflight", &self.preflight)
            .field("rejected", &DebugRejections(self))
            .finish()
    }
}

struct DebugRejections<'a>(&'a AuthStats);

impl fmt::Debug for DebugRejections<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.rejections()).finish()
    }
}
