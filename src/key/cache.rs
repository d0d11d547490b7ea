//! A caching wrapper over any key store.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::{KeyRecord, KeyStore, KeyStoreWrite, Lookup, StoreError, make_room};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;

const SHARDS: usize = 16;

/// What a shard knows: known keys and unknown ids apart, each with its own bound, so that a
/// flood of made-up ids (anyone can compute a valid checksum) evicts only other made-up ids,
/// never the keys real clients use.
#[derive(Default)]
struct Maps {
    /// Records, with when they were stored.
    known: HashMap<Box<str>, (Arc<KeyRecord>, Duration)>,
    /// Ids the store did not know, with when it said so.
    unknown: HashMap<Box<str>, Duration>,
}

#[derive(Default)]
struct Shard {
    maps: RwLock<Maps>,
    /// Bumped by every invalidation, so that a lookup that started before an invalidation
    /// cannot put its stale answer back.
    generation: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    ttl: Duration,
    negative_ttl: Duration,
    per_shard: usize,
    unknown_per_shard: usize,
}

/// Caches the answers of a slower store (a database): bounded size, a TTL for known keys,
/// a shorter TTL for unknown ids, and invalidation on every write made through it.
///
/// **Staleness bound:** a change made through this handle (revoke, update, insert) is seen by
/// the very next lookup. A change made elsewhere (another process, a direct SQL update) is seen
/// after at most the TTL (default 30 s) for known keys, and after at most the negative TTL
/// (default 5 s) for a key created elsewhere whose id was looked up before it existed. Errors
/// are never cached.
///
/// Clones share one cache.
pub struct CachingKeyStore<S, C = SystemClock> {
    store: S,
    clock: C,
    limits: Limits,
    shards: Arc<[Shard; SHARDS]>,
}

impl<S: KeyStore> CachingKeyStore<S> {
    /// Caches `store`: up to 10,000 keys, 30 s for known keys, 5 s for unknown ids.
    pub fn new(store: S) -> Self {
        Self::with_clock(store, SystemClock)
    }
}

impl<S: KeyStore, C: Clock> CachingKeyStore<S, C> {
    /// The same, reading time from `clock`.
    pub fn with_clock(store: S, clock: C) -> Self {
        Self {
            store,
            clock,
            limits: Limits {
                ttl: Duration::from_secs(30),
                negative_ttl: Duration::from_secs(5),
                per_shard: 10_000_usize.div_ceil(SHARDS),
                unknown_per_shard: 10_000_usize.div_ceil(SHARDS),
            },
            shards: Arc::default(),
        }
    }

    /// How long a known key's record is served from the cache. Defaults to 30 s; longer delays
    /// revocations made in other processes.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.limits.ttl = ttl;
        self
    }

    /// How long an unknown id is remembered as unknown. Defaults to 5 s; longer delays keys
    /// created in other processes, shorter lets a flood of made-up ids reach the store.
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.limits.negative_ttl = ttl;
        self
    }

    /// The most known keys kept (rounded up to a multiple of 16). Defaults to 10,000.
    ///
    /// When a part of the cache is full, its entries past their TTL make room, and if too few
    /// are, arbitrary ones, down to seven eighths of its bound.
    #[must_use]
    pub fn with_capacity(mut self, keys: usize) -> Self {
        self.limits.per_shard = keys.div_ceil(SHARDS).max(1);
        self
    }

    /// The most unknown ids kept (rounded up to a multiple of 16). Defaults to 10,000. They
    /// have a bound of their own: made-up ids never push known keys out.
    #[must_use]
    pub fn with_unknown_capacity(mut self, ids: usize) -> Self {
        self.limits.unknown_per_shard = ids.div_ceil(SHARDS).max(1);
        self
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.store
    }

    /// Forgets what the cache knows about `id`.
    pub fn invalidate(&self, id: &str) {
        let shard = shard_of(&self.shards, id);
        shard.generation.fetch_add(1, Ordering::SeqCst);
        let mut maps = shard.maps.write().unwrap_or_else(PoisonError::into_inner);
        maps.known.remove(id);
        maps.unknown.remove(id);
    }

    /// Number of cached entries (known keys and unknown ids).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let maps = s.maps.read().unwrap_or_else(PoisonError::into_inner);
                maps.known.len() + maps.unknown.len()
            })
            .sum()
    }

    /// `true` when nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn shard_of<'a>(shards: &'a [Shard; SHARDS], id: &str) -> &'a Shard {
    let h = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    &shards[h as usize % SHARDS]
}

struct Fill {
    shards: Arc<[Shard; SHARDS]>,
    id: Box<str>,
    generation: u64,
    now: Duration,
    limits: Limits,
}

impl Fill {
    fn store(&self, result: &Result<Option<Arc<KeyRecord>>, Error>) {
        let Ok(record) = result else {
            return; // errors are never cached
        };
        let shard = shard_of(&self.shards, &self.id);
        let mut maps = shard.maps.write().unwrap_or_else(PoisonError::into_inner);
        if shard.generation.load(Ordering::SeqCst) != self.generation {
            return; // invalidated while we were looking
        }
        let Maps { known, unknown } = &mut *maps;
        let (now, limits) = (self.now, self.limits);
        match record {
            Some(record) => {
                unknown.remove(&*self.id);
                if !known.contains_key(&*self.id) {
                    make_room(known, limits.per_shard, |v| {
                        now.saturating_sub(v.1) < limits.ttl
                    });
                }
                known.insert(self.id.clone(), (Arc::clone(record), now));
            }
            None => {
                known.remove(&*self.id);
                if !unknown.contains_key(&*self.id) {
                    make_room(unknown, limits.unknown_per_shard, |at| {
                        now.saturating_sub(*at) < limits.negative_ttl
                    });
                }
                unknown.insert(self.id.clone(), now);
            }
        }
    }
}

pin_project! {
    /// The future of a [`CachingKeyStore`] miss: the inner lookup, then a cache fill.
    pub struct CacheFuture<F> {
        #[pin]
        inner: F,
        fill: Option<Fill>,
    }
}

impl<F> fmt::Debug for CacheFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheFuture").finish_non_exhaustive()
    }
}

impl<F> Future for CacheFuture<F>
where
    F: Future<Output = Result<Option<Arc<KeyRecord>>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(fill) = this.fill.take() {
            fill.store(&result);
        }
        Poll::Ready(result)
    }
}

impl<S: KeyStore, C: Clock> KeyStore for CachingKeyStore<S, C> {
    type Future = CacheFuture<S::Future>;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        let now = self.clock.monotonic();
        let shard = shard_of(&self.shards, id);
        let generation = shard.generation.load(Ordering::SeqCst);
        {
            let maps = shard.maps.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((record, stored_at)) = maps.known.get(id)
                && now.saturating_sub(*stored_at) < self.limits.ttl
            {
                return Lookup::Ready(Ok(Some(Arc::clone(record))));
            }
            if let Some(stored_at) = maps.unknown.get(id)
                && now.saturating_sub(*stored_at) < self.limits.negative_ttl
            {
                return Lookup::Ready(Ok(None));
            }
        }
        let fill = Fill {
            shards: Arc::clone(&self.shards),
            id: id.into(),
            generation,
            now,
            limits: self.limits,
        };
        match self.store.lookup(id) {
            Lookup::Ready(result) => {
                fill.store(&result);
                Lookup::Ready(result)
            }
            Lookup::Pending(inner) => Lookup::Pending(CacheFuture {
                inner,
                fill: Some(fill),
            }),
        }
    }
}

impl<S: KeyStoreWrite, C: Clock> KeyStoreWrite for CachingKeyStore<S, C> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        let result = self.store.insert(record).await;
        self.invalidate(&id);
        result
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        let result = self.store.update(record).await;
        self.invalidate(&id);
        result
    }

    async fn revoke(&self, id: &str, at: u64) -> Result<(), StoreError> {
        // Invalidate on both sides of the write: no request may see the old record after
        // revoke returns, and none that started before it can re-cache it.
        self.invalidate(id);
        let result = self.store.revoke(id, at).await;
        self.invalidate(id);
        result
    }

    async fn expire_by(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.invalidate(id);
        let result = self.store.expire_by(id, at).await;
        self.invalidate(id);
        result
    }

    /// From the wrapped store, never from the cache.
    fn fetch(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        self.store.fetch(id)
    }

    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        self.store.list_by_owner(owner)
    }

    fn record_last_use(
        &self,
        id: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.record_last_use(id, at)
    }
}

impl<S: Clone, C: Clone> Clone for CachingKeyStore<S, C> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            limits: self.limits,
            shards: Arc::clone(&self.shards),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CachingKeyStore<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingKeyStore")
            .field("store", &self.store)
            .field("ttl", &self.limits.ttl)
            .field("negative_ttl", &self.limits.negative_ttl)
            .field("capacity", &(self.limits.per_shard * SHARDS))
            .field(
                "unknown_capacity",
                &(self.limits.unknown_per_shard * SHARDS),
            )
            .finish()
    }
}
