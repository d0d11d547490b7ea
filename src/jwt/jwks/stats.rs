//! Counters of a [`JwksKeySource`](super::JwksKeySource).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fetches: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) discoveries: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) unknown_kid_refetches: AtomicU64,
    pub(crate) cooldown_hits: AtomicU64,
    pub(crate) key_set_changes: AtomicU64,
    pub(crate) keys: AtomicUsize,
    pub(crate) skipped_keys: AtomicUsize,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, loaded: bool) -> JwksStats {
        JwksStats {
            fetches: self.fetches.load(Relaxed),
            failures: self.failures.load(Relaxed),
            discoveries: self.discoveries.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            unknown_kid_refetches: self.unknown_kid_refetches.load(Relaxed),
            cooldown_hits: self.cooldown_hits.load(Relaxed),
            key_set_changes: self.key_set_changes.load(Relaxed),
            keys: self.keys.load(Relaxed),
            skipped_keys: self.skipped_keys.load(Relaxed),
            loaded,
        }
    }
}

/// A snapshot of a [`JwksKeySource`](super::JwksKeySource)'s counters, from
/// [`stats`](super::JwksKeySource::stats).
///
/// Each counter is read atomically; the snapshot as a whole is not a single instant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStats {
    /// Fetch attempts (one per refresh, whatever triggered it; discovery not included).
    pub fetches: u64,
    /// Attempts that failed (transport, timeout, status, size, invalid document, discovery).
    pub failures: u64,
    /// Discovery documents fetched.
    pub discoveries: u64,
    /// Attempts started by the background schedule (TTL or retry after a failure).
    pub refreshes: u64,
    /// Attempts started by a token whose `kid` was not in the key set.
    pub unknown_kid_refetches: u64,
    /// Lookups of an unknown `kid` answered from the negative cache during the cool-down,
    /// without a fetch.
    pub cooldown_hits: u64,
    /// Successful fetches whose key set differed from the one before (the first load counts).
    pub key_set_changes: u64,
    /// Keys in the current set.
    pub keys: usize,
    /// Keys of the last document that were skipped (unsupported type, invalid, not allowed).
    pub skipped_keys: usize,
    /// `true` once a key set was loaded.
    pub loaded: bool,
}
