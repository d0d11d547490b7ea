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
pub struct JwksStats {
    fetches: u64,
    failures: u64,
    discoveries: u64,
    refreshes: u64,
    unknown_kid_refetches: u64,
    cooldown_hits: u64,
    key_set_changes: u64,
    keys: usize,
    skipped_keys: usize,
    loaded: bool,
}

impl JwksStats {
    /// Fetch attempts (one per refresh, whatever triggered it; discovery not included).
    #[must_use]
    pub fn fetches(&self) -> u64 {
        self.fetches
    }

    /// Attempts that failed (transport, timeout, status, size, invalid document, discovery).
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Discovery documents fetched.
    #[must_use]
    pub fn discoveries(&self) -> u64 {
        self.discoveries
    }

    /// Attempts started by the background schedule (TTL, or a retry after a failure).
    #[must_use]
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }

    /// Attempts started by a token whose `kid` was not in the key set.
    #[must_use]
    pub fn unknown_kid_refetches(&self) -> u64 {
        self.unknown_kid_refetches
    }

    /// Lookups of an unknown `kid` answered from the negative cache during the cool-down,
    /// without a fetch.
    #[must_use]
    pub fn cooldown_hits(&self) -> u64 {
        self.cooldown_hits
    }

    /// Successful fetches whose key set differed from the one before (the first load counts).
    #[must_use]
    pub fn key_set_changes(&self) -> u64 {
        self.key_set_changes
    }

    /// Keys in the current set.
    #[must_use]
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Keys of the last document that were skipped (unsupported type, invalid, not allowed).
    #[must_use]
    pub fn skipped_keys(&self) -> usize {
        self.skipped_keys
    }

    /// `true` once a key set was loaded.
    #[must_use]
    pub fn loaded(&self) -> bool {
        self.loaded
    }
}
