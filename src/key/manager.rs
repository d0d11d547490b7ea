//! Issuing, rotating and revoking keys.

use std::time::Duration;

use super::generate::{IssuedKey, KeyGenerator};
use super::{KeyFormat, KeyHasher, KeyRecord, KeyStatus, KeyStoreWrite, StoreError};
use crate::clock::{Clock, SystemClock};

/// Issues, rotates and revokes keys in a [`KeyStoreWrite`]: the management side, off the
/// request path. See the [module docs](crate::key) for an example.
#[derive(Clone, Debug)]
pub struct KeyManager<S, C = SystemClock> {
    store: S,
    generator: KeyGenerator,
    clock: C,
}

impl<S: KeyStoreWrite> KeyManager<S> {
    /// A manager over `store`, issuing keys of `format` hashed with `hasher`.
    pub fn new(store: S, format: KeyFormat, hasher: KeyHasher) -> Self {
        Self::with_clock(store, format, hasher, SystemClock)
    }
}

impl<S: KeyStoreWrite, C: Clock> KeyManager<S, C> {
    /// The same, reading time from `clock`.
    pub fn with_clock(store: S, format: KeyFormat, hasher: KeyHasher, clock: C) -> Self {
        Self {
            store,
            generator: KeyGenerator::new(format, hasher),
            clock,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Issues a new key for `owner`; `configure` fills in scopes, roles, expiry… before it is
    /// stored. Returns the full key, to hand over once.
    ///
    /// # Errors
    ///
    /// When the random number generator or the store fails.
    pub async fn issue(
        &self,
        owner: &str,
        configure: impl FnOnce(&mut KeyRecord),
    ) -> Result<IssuedKey, StoreError> {
        let issued = self
            .generator
            .generate()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let mut record = KeyRecord::new(
            issued.id(),
            issued.hash().clone(),
            owner,
            self.clock.unix_seconds(),
        );
        configure(&mut record);
        // The id and digest are the generator's; `configure` may not change them.
        record.id = issued.id().to_owned();
        record.hash = issued.hash().clone();
        self.store.insert(record).await?;
        tracing::info!(key_id = issued.id(), owner, "API key issued");
        Ok(issued)
    }

    /// Revokes key `id` now. Through a [`CachingKeyStore`](super::CachingKeyStore) handle, the
    /// next request with the key is refused.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], or a backend failure.
    pub async fn revoke(&self, id: &str) -> Result<(), StoreError> {
        self.store.revoke(id, self.clock.unix_seconds()).await?;
        tracing::info!(key_id = id, "API key revoked");
        Ok(())
    }

    /// Rotates key `id`: issues a new key with the same owner, tenant, scopes, roles, attributes
    /// and plan, and lets the old one expire after `overlap` (both work meanwhile).
    ///
    /// The old key is read from the store itself (never from a cache) and must be usable now:
    /// a revoked, suspended, pending or expired key gets no successor. It is then retired with
    /// [`expire_by`](KeyStoreWrite::expire_by), which changes only its expiry, so a revocation
    /// made while the rotation runs is kept. The old key is read once more at the end: if it
    /// was revoked (or suspended…) meanwhile, the new key is revoked too and the rotation
    /// fails, so a revocation racing a rotation never leaves a working successor behind. A
    /// revocation of the old key after `rotate` returns applies to the old key only.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when `id` is unknown, [`StoreError::NotActive`] when the key
    /// cannot be used (before or during the rotation), or a backend failure.
    pub async fn rotate(&self, id: &str, overlap: Duration) -> Result<IssuedKey, StoreError> {
        let old = self.store.fetch(id).await?.ok_or(StoreError::NotFound)?;
        if old.check_usable(self.clock.unix_seconds()).is_err() {
            return Err(StoreError::NotActive);
        }
        let issued = self
            .issue(&old.owner, |r| {
                r.tenant.clone_from(&old.tenant);
                r.name.clone_from(&old.name);
                r.scopes.clone_from(&old.scopes);
                r.roles.clone_from(&old.roles);
                r.attributes.clone_from(&old.attributes);
                r.plan.clone_from(&old.plan);
                r.expires_at = old.expires_at;
            })
            .await?;
        let until = self.clock.unix_seconds().saturating_add(overlap.as_secs());
        // Still active once retired? A revocation (or suspension) that landed while the
        // successor was being made must not leave the successor working. Its expiry is not
        // asked about: with a short overlap the old key may have just expired, as it should.
        let retired = match self.store.expire_by(id, until).await {
            Ok(()) => self.store.fetch(id).await.map(|old| {
                old.is_some_and(|old| old.status == KeyStatus::Active && old.revoked_at.is_none())
            }),
            Err(error) => Err(error),
        };
        if !matches!(retired, Ok(true)) {
            // Nobody has the new key yet (it is dropped here), but it is not left active.
            if let Err(error) = self
                .store
                .revoke(issued.id(), self.clock.unix_seconds())
                .await
            {
                tracing::warn!(new_key_id = issued.id(), %error, "revoking an unused successor failed");
            }
            tracing::info!(
                old_key_id = id,
                new_key_id = issued.id(),
                "API key rotation undone"
            );
            return Err(retired.err().unwrap_or(StoreError::NotActive));
        }
        tracing::info!(old_key_id = id, new_key_id = issued.id(), "API key rotated");
        Ok(issued)
    }

    /// Every key of `owner`, newest first.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn list(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_by_owner(owner).await
    }
}
