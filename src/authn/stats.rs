//! Outcome counters.

use std::fmt;

use crate::error::ErrorKind;
use crate::stripe::Tally;

/// Where each outcome is counted in the [`Tally`]: four outcomes, then one per rejection kind.
const AUTHENTICATED: usize = 0;
const ANONYMOUS: usize = 1;
const INVALID_AS_ANONYMOUS: usize = 2;
const PREFLIGHT: usize = 3;
const REJECTED: usize = 4;
const OUTCOMES: usize = REJECTED + ErrorKind::COUNT;

/// The outcome counters of one `Authenticate` layer, kept per thread (see [`Tally`]): an
/// allowed or refused request costs no locked instruction and writes no cache line another
/// core writes, even under a flood of bad credentials.
#[derive(Default)]
pub(crate) struct Counters {
    tally: Tally<OUTCOMES>,
}

impl Counters {
    pub(crate) fn authenticated(&self) {
        self.tally.bump(AUTHENTICATED);
    }
    pub(crate) fn anonymous(&self) {
        self.tally.bump(ANONYMOUS);
    }
    pub(crate) fn invalid_as_anonymous(&self) {
        self.tally.bump(INVALID_AS_ANONYMOUS);
    }
    pub(crate) fn preflight(&self) {
        self.tally.bump(PREFLIGHT);
    }
    pub(crate) fn rejected(&self, kind: ErrorKind) {
        self.tally.bump(REJECTED + kind.index());
    }

    pub(crate) fn snapshot(&self) -> AuthStats {
        AuthStats {
            authenticated: self.tally.get(AUTHENTICATED),
            anonymous: self.tally.get(ANONYMOUS),
            invalid_as_anonymous: self.tally.get(INVALID_AS_ANONYMOUS),
            preflight: self.tally.get(PREFLIGHT),
            rejected: std::array::from_fn(|i| self.tally.get(REJECTED + i)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counters = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let counters = std::sync::Arc::clone(&counters);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        counters.authenticated();
                    }
                    counters.anonymous();
                    counters.rejected(ErrorKind::ChecksumMismatch);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = counters.snapshot();
        assert_eq!(stats.authenticated(), 40 * 100);
        assert_eq!(stats.anonymous(), 40);
        assert_eq!(stats.rejected(ErrorKind::ChecksumMismatch), 40);
        assert_eq!(stats.rejected_total(), 40);
        assert_eq!(stats.preflight() + stats.invalid_as_anonymous(), 0);
    }
}
