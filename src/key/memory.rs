//! The in-memory key store.

use std::collections::HashMap;
use std::fmt;
use std::future::Ready;
use std::sync::{Arc, PoisonError, RwLock};

use super::{KeyRecord, KeyStore, KeyStoreWrite, Lookup, StoreError};
use crate::error::Error;

const SHARDS: usize = 16;

type Shard = RwLock<HashMap<Box<str>, Arc<KeyRecord>>>;

/// Keys in memory: the embedded default. Clones share the same keys.
///
/// Sixteen independently locked shards: lookups take a shared read lock on one shard, so they
/// never wait for each other and no global lock serialises requests. Lookups answer
/// synchronously ([`Ready`]). Records live as long as the process: load them at start-up from
/// your configuration or database, or use it for tests and examples.
#[derive(Clone, Default)]
pub struct MemoryKeyStore {
    shards: Arc<[Shard; SHARDS]>,
}

impl MemoryKeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: &str) -> &Shard {
        let h = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        &self.shards[h as usize % SHARDS]
    }

    /// Inserts or replaces a record synchronously (for start-up loading).
    pub fn put(&self, record: KeyRecord) {
        let mut shard = self
            .shard(&record.id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.insert(record.id.clone().into_boxed_str(), Arc::new(record));
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// `true` when there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, id: &str) -> Option<Arc<KeyRecord>> {
        self.shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn modify(&self, id: &str, f: impl FnOnce(&mut KeyRecord)) -> Result<(), StoreError> {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.get_mut(id).ok_or(StoreError::NotFound)?;
        let mut record = KeyRecord::clone(entry);
        f(&mut record);
        *entry = Arc::new(record);
        Ok(())
    }
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("keys", &self.len())
            .finish()
    }
}

impl KeyStore for MemoryKeyStore {
    /// Never used: every lookup is [`Lookup::Ready`].
    type Future = Ready<Result<Option<Arc<KeyRecord>>, Error>>;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        Lookup::Ready(Ok(self.get(id)))
    }
}

impl KeyStoreWrite for MemoryKeyStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut shard = self
            .shard(&record.id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.contains_key(record.id.as_str()) {
            return Err(StoreError::Duplicate);
        }
        shard.insert(record.id.clone().into_boxed_str(), Arc::new(record));
        Ok(())
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut shard = self
            .shard(&record.id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard
            .get_mut(record.id.as_str())
            .ok_or(StoreError::NotFound)?;
        *entry = Arc::new(record);
        Ok(())
    }

    async fn revoke(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.modify(id, |r| {
            r.status = super::KeyStatus::Revoked;
            r.revoked_at.get_or_insert(at);
        })
    }

    async fn expire_by(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.modify(id, |r| {
            r.expires_at = Some(r.expires_at.map_or(at, |e| e.min(at)));
        })
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out: Vec<KeyRecord> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                shard
                    .values()
                    .filter(|r| r.owner == owner)
                    .map(|r| KeyRecord::clone(r)),
            );
        }
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    async fn record_last_use(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.modify(id, |r| {
            r.last_used_at = Some(r.last_used_at.map_or(at, |t| t.max(at)))
        })
    }
}
