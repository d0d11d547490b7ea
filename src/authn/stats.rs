//! Outcome counters.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::ErrorKind;

/// A counter bumped by (nearly) every request: spread over cache-line-sized shards, each thread
/// bumping its own, so that cores serving requests at once do not take turns owning one line.
/// Reading sums the shards.
#[derive(Default)]
struct HotCounter {
    shards: [Shard; SHARDS],
}

const SHARDS: usize = 16;

#[derive(Default)]
#[repr(align(64))]
struct Shard(AtomicU64);

impl HotCounter {
    fn bump(&self) {
        if let Some(shard) = self.shards.get(crate::stripe::thread_stripe() % SHARDS) {
            shard.0.fetch_add(1, Relaxed);
        }
    }

    fn load(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    authenticated: HotCounter,
    anonymous: HotCounter,
    invalid_as_anonymous: AtomicU64,
    preflight: AtomicU64,
    rejected: [AtomicU64; ErrorKind::COUNT],
}

impl Counters {
    pub(crate) fn authenticated(&self) {
        self.authenticated.bump();
    }
    pub(crate) fn anonymous(&self) {
        self.anonymous.bump();
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
            authenticated: self.authenticated.load(),
            anonymous: self.anonymous.load(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_counts_from_many_threads_add_up() {
        let counters = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..2 * SHARDS + 3)
            .map(|_| {
                let counters = std::sync::Arc::clone(&counters);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        counters.authenticated();
                    }
                    counters.anonymous();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = counters.snapshot();
        assert_eq!(stats.authenticated(), (2 * SHARDS as u64 + 3) * 100);
        assert_eq!(stats.anonymous(), 2 * SHARDS as u64 + 3);
    }
}
