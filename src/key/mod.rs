//! API keys: a checksummed format, a generator, hashing at rest, stores, and the authenticator.
//!
//! - [`KeyFormat`]: `<prefix>_<id>_<secret><checksum>`, e.g. `cf_live_…`. The checksum rejects
//!   typos and garbage before any store lookup; the id is public and names the key in logs.
//! - [`KeyGenerator`]: new keys from the OS CSPRNG (190-bit secrets); the full key is returned
//!   once and never stored.
//! - [`KeyHasher`]: SHA-256 of the secret, or HMAC-SHA-256 with a versioned [`Pepper`];
//!   compared in constant time.
//! - [`KeyStore`] (lookup by id, on the request path) and [`KeyStoreWrite`] (insert, revoke,
//!   list, last use; off the request path): [`MemoryKeyStore`] is the embedded default;
//!   [`CachingKeyStore`] bounds the load on a remote store.
//! - [`ApiKeyAuthenticator`]: reads `X-API-Key` or `Authorization: Bearer` and produces a
//!   [`Principal`] of kind [`ApiKey`](crate::CredentialKind::ApiKey).
//!
//! Unknown, revoked, expired, suspended and pending keys and wrong secrets all get the same `401`;
//! the audit reason ([`ErrorKind`]) differs. A store that fails or times out (default 2 s) gives
//! `503`, never an allow.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use credentialflow::authn::AuthenticateLayer;
//! use credentialflow::key::{ApiKeyAuthenticator, KeyFormat, KeyHasher, KeyManager, MemoryKeyStore};
//! use credentialflow::Principal;
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryKeyStore::new();
//! let format = KeyFormat::new("cf_live")?;
//! let keys = KeyManager::new(store.clone(), format.clone(), KeyHasher::sha256());
//! let issued = keys.issue("alice", |record| record.scopes = vec!["orders:read".into()]).await?;
//!
//! let app = Router::new()
//!     .route("/me", get(|p: Principal| async move { p.subject().to_owned() }))
//!     .layer(AuthenticateLayer::new(ApiKeyAuthenticator::new(format, KeyHasher::sha256(), store)));
//!
//! let ok = app.clone()
//!     .oneshot(Request::get("/me").header("x-api-key", issued.key()).body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! keys.revoke(issued.id()).await?;
//! let revoked = app
//!     .oneshot(Request::get("/me").header("x-api-key", issued.key()).body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

mod authenticator;
mod cache;
mod format;
mod generate;
mod hash;
mod manager;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

pub use self::authenticator::{ApiKeyAuthenticator, ApiKeyFuture, DEFAULT_KEY_HEADER};
pub use self::cache::{CacheFuture, CachingKeyStore};
pub use self::format::{CHECKSUM_LEN, ID_LEN, KeyFormat, KeyParseError, ParsedKey, SECRET_LEN};
pub use self::generate::{IssuedKey, KeyGenerator};
pub use self::hash::{HashVersion, KeyHash, KeyHasher, Pepper};
pub use self::manager::KeyManager;
pub use self::memory::MemoryKeyStore;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresFuture, PostgresKeyStore};

use crate::error::{Error, ErrorKind};
use crate::principal::{CredentialKind, Principal};

/// A key's administrative status. Expiry is decided by time ([`KeyRecord::expires_at`]) as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked for good.
    Revoked,
    /// Marked expired explicitly.
    Expired,
    /// Temporarily blocked (the key or its owner).
    Suspended,
    /// Created, not yet approved.
    PendingApproval,
}

impl KeyStatus {
    /// The text form used in storage: `active`, `revoked`, `expired`, `suspended`,
    /// `pending_approval`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Suspended => "suspended",
            Self::PendingApproval => "pending_approval",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    #[must_use]
    pub fn from_storage_str(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            "suspended" => Self::Suspended,
            "pending_approval" => Self::PendingApproval,
            _ => return None,
        })
    }
}

/// What a store keeps about one key. Never the key itself: only the digest of its secret.
///
/// Times are seconds since the Unix epoch.
#[non_exhaustive]
pub struct KeyRecord {
    /// The public id (the `id` part of the key).
    pub id: String,
    /// The digest of the secret.
    pub hash: KeyHash,
    /// The owner: becomes [`Principal::subject`].
    pub owner: String,
    /// The owner's tenant.
    pub tenant: Option<String>,
    /// A human label ("CI deploy key").
    pub name: Option<String>,
    /// Scopes granted to requests made with this key.
    pub scopes: Vec<String>,
    /// Roles held by requests made with this key.
    pub roles: Vec<String>,
    /// Free-form attributes copied into the principal.
    pub attributes: Map<String, Value>,
    /// The rate-limit plan.
    pub plan: Option<String>,
    /// Administrative status.
    pub status: KeyStatus,
    /// When it was created.
    pub created_at: u64,
    /// When it stops working, if ever.
    pub expires_at: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
    /// When it was last used, as last recorded (coalesced to once a minute).
    pub last_used_at: Option<u64>,
    principal: OnceLock<Principal>,
    last_use_mark: AtomicU64,
}

impl KeyRecord {
    /// An active record for a new key.
    #[must_use]
    pub fn new(
        id: impl Into<String>,
        hash: KeyHash,
        owner: impl Into<String>,
        created_at: u64,
    ) -> Self {
        Self {
            id: id.into(),
            hash,
            owner: owner.into(),
            tenant: None,
            name: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            attributes: Map::new(),
            plan: None,
            status: KeyStatus::Active,
            created_at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            principal: OnceLock::new(),
            last_use_mark: AtomicU64::new(0),
        }
    }

    /// Whether the key may be used at `now`: `Err` with the audit reason when not.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RevokedCredential`], [`ErrorKind::ExpiredCredential`],
    /// [`ErrorKind::SuspendedCredential`] or [`ErrorKind::PendingCredential`].
    pub fn check_usable(&self, now: u64) -> Result<(), ErrorKind> {
        if self.revoked_at.is_some() || self.status == KeyStatus::Revoked {
            return Err(ErrorKind::RevokedCredential);
        }
        match self.status {
            KeyStatus::Expired => return Err(ErrorKind::ExpiredCredential),
            KeyStatus::Suspended => return Err(ErrorKind::SuspendedCredential),
            KeyStatus::PendingApproval => return Err(ErrorKind::PendingCredential),
            KeyStatus::Active | KeyStatus::Revoked => {}
        }
        if self.expires_at.is_some_and(|exp| now >= exp) {
            return Err(ErrorKind::ExpiredCredential);
        }
        Ok(())
    }

    /// The principal requests made with this key get. Built once per record and shared.
    #[must_use]
    pub fn principal(&self) -> Principal {
        self.principal
            .get_or_init(|| {
                let mut b = Principal::builder(self.owner.clone(), CredentialKind::ApiKey)
                    .credential_id(self.id.clone())
                    .scopes(&self.scopes)
                    .roles(&self.roles)
                    .attributes(self.attributes.clone());
                if let Some(t) = &self.tenant {
                    b = b.tenant(t.clone());
                }
                if let Some(p) = &self.plan {
                    b = b.plan(p.clone());
                }
                if let Some(exp) = self.expires_at {
                    b = b.expires_at(exp);
                }
                b.build()
            })
            .clone()
    }

    /// Claims the right to record a use at `now`, at most once per `interval_secs` per record.
    pub(crate) fn claim_last_use(&self, now: u64, interval_secs: u64) -> bool {
        let mark = self.last_use_mark.load(Ordering::Relaxed);
        let prev = mark.max(self.last_used_at.unwrap_or(0));
        if prev != 0 && now < prev.saturating_add(interval_secs) {
            return false;
        }
        // One winner among concurrent requests.
        self.last_use_mark
            .compare_exchange(mark, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl Clone for KeyRecord {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            hash: self.hash.clone(),
            owner: self.owner.clone(),
            tenant: self.tenant.clone(),
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            roles: self.roles.clone(),
            attributes: self.attributes.clone(),
            plan: self.plan.clone(),
            status: self.status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
            principal: OnceLock::new(),
            last_use_mark: AtomicU64::new(self.last_use_mark.load(Ordering::Relaxed)),
        }
    }
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("hash", &self.hash)
            .field("owner", &self.owner)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("plan", &self.plan)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

/// The answer of [`KeyStore::lookup`]: now, or later.
#[derive(Debug)]
pub enum Lookup<F> {
    /// Answered without waiting (memory, a cache hit). No future, no timer.
    Ready(Result<Option<Arc<KeyRecord>>, Error>),
    /// The answer needs I/O; the authenticator bounds the future with its timeout.
    Pending(F),
}

impl<F> Lookup<F>
where
    F: Future<Output = Result<Option<Arc<KeyRecord>>, Error>>,
{
    /// Waits for the answer, whichever form it takes.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn resolve(self) -> Result<Option<Arc<KeyRecord>>, Error> {
        match self {
            Self::Ready(result) => result,
            Self::Pending(fut) => fut.await,
        }
    }
}

/// Looks keys up by public id. Implement it to keep keys in your own database.
///
/// On the request path. Answer [`Lookup::Ready`] when the answer is at hand (memory, a cache);
/// otherwise return [`Lookup::Pending`] with a future, which the authenticator bounds with its
/// timeout (default 2 s). Answer `Ok(None)` for an unknown id and
/// `Err(Error::unavailable(..))` when the backend cannot answer: the request is then refused
/// with `503`, never allowed.
///
/// See `examples/custom_store.rs` for a store over your own data.
pub trait KeyStore: Send + Sync + 'static {
    /// The future of a lookup that has to wait.
    type Future: Future<Output = Result<Option<Arc<KeyRecord>>, Error>> + Send + 'static;

    /// Finds the record of key `id`.
    fn lookup(&self, id: &str) -> Lookup<Self::Future>;
}

impl<S: KeyStore + ?Sized> KeyStore for Arc<S> {
    type Future = S::Future;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        (**self).lookup(id)
    }
}

/// Key management, off the request path: create, change, revoke, list, record use.
pub trait KeyStoreWrite: KeyStore {
    /// Stores a new record.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when the id exists.
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the record with the same id (status, expiry, scopes…).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is none.
    fn update(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks key `id` revoked at `at` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is none.
    fn revoke(&self, id: &str, at: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes key `id` expire at `at` (Unix seconds) at the latest, in one write that changes
    /// nothing else: a key that expires sooner keeps its expiry, and a key revoked meanwhile
    /// stays revoked. [`KeyManager::rotate`] retires the old key with it; a read followed by
    /// [`update`](Self::update) could write back a revocation's "active".
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is none.
    fn expire_by(&self, id: &str, at: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads the record of key `id` from the store itself, never from a cache: what management
    /// decisions (such as whether a key may be rotated) are made on. The default calls
    /// [`lookup`](KeyStore::lookup); a caching store answers from the store it wraps.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the backend cannot answer.
    fn fetch(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        let lookup = self.lookup(id);
        async move {
            match lookup.resolve().await {
                Ok(found) => Ok(found.map(|record| KeyRecord::clone(&record))),
                Err(error) => Err(StoreError::Unavailable(Box::new(error))),
            }
        }
    }

    /// Every key of `owner`, newest first.
    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Records that key `id` was used at `at`. Called at most once a minute per key.
    fn record_last_use(
        &self,
        id: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key with this id exists already.
    #[error("a key with this id already exists")]
    Duplicate,
    /// No key with this id.
    #[error("no key with this id")]
    NotFound,
    /// The key is revoked, suspended, pending approval or expired, so it cannot be rotated.
    #[error("the key is not active")]
    NotActive,
    /// The backend failed.
    #[error("key store unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
}

/// How often the last use of a key is recorded at most: once a minute.
pub const LAST_USE_INTERVAL_SECS: u64 = 60;

/// Makes room for one more entry in `map` when it holds `bound` or more: drops the entries
/// `worth_keeping` refuses (expired ones), then, if that left more than seven eighths of
/// `bound`, arbitrary ones down to that. So a full scan frees at least an eighth of the bound
/// and the next one is that many insertions away, whatever the entries' ages: a flood of new
/// ids costs a constant amount per insertion, not a scan each.
pub(crate) fn make_room<V>(
    map: &mut std::collections::HashMap<Box<str>, V>,
    bound: usize,
    worth_keeping: impl Fn(&V) -> bool,
) {
    if map.len() < bound {
        return;
    }
    map.retain(|_, v| worth_keeping(v));
    let keep = bound - (bound / 8).max(1);
    if map.len() > keep {
        let victims: Vec<Box<str>> = map.keys().take(map.len() - keep).cloned().collect();
        for victim in &victims {
            map.remove(victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_room_drops_the_expired_first_and_always_an_eighth() {
        use std::collections::HashMap;
        let filled = |n: usize, age: u32| -> HashMap<Box<str>, u32> {
            (0..n).map(|i| (format!("k{i}").into(), age)).collect()
        };
        // Below the bound: nothing happens.
        let mut map = filled(15, 0);
        make_room(&mut map, 16, |_| true);
        assert_eq!(map.len(), 15);
        // Full of entries worth keeping: down to seven eighths, in one go.
        let mut map = filled(16, 0);
        make_room(&mut map, 16, |_| true);
        assert_eq!(map.len(), 14);
        // Half expired: those go, and the rest stays.
        let mut map = filled(8, 0);
        map.extend((0..8).map(|i| (format!("old{i}").into(), 99)));
        make_room(&mut map, 16, |age| *age < 50);
        assert_eq!(map.len(), 8);
        assert!(map.values().all(|age| *age == 0));
        // A bound of one leaves room for exactly one.
        let mut map = filled(1, 0);
        make_room(&mut map, 1, |_| true);
        assert!(map.is_empty());
    }

    fn record() -> KeyRecord {
        KeyRecord::new("abc", KeyHasher::sha256().hash(b"s"), "alice", 100)
    }

    #[test]
    fn lifecycle_checks() {
        let mut r = record();
        assert_eq!(r.check_usable(100), Ok(()));
        r.expires_at = Some(200);
        assert_eq!(r.check_usable(199), Ok(()));
        assert_eq!(r.check_usable(200), Err(ErrorKind::ExpiredCredential));
        for (status, kind) in [
            (KeyStatus::Revoked, ErrorKind::RevokedCredential),
            (KeyStatus::Expired, ErrorKind::ExpiredCredential),
            (KeyStatus::Suspended, ErrorKind::SuspendedCredential),
            (KeyStatus::PendingApproval, ErrorKind::PendingCredential),
        ] {
            let mut r = record();
            r.status = status;
            assert_eq!(r.check_usable(100), Err(kind));
        }
        let mut r = record();
        r.revoked_at = Some(50);
        assert_eq!(r.check_usable(100), Err(ErrorKind::RevokedCredential));
    }

    #[test]
    fn last_use_is_coalesced_per_minute() {
        let r = record();
        assert!(r.claim_last_use(1000, 60));
        assert!(!r.claim_last_use(1030, 60));
        assert!(!r.claim_last_use(1059, 60));
        assert!(r.claim_last_use(1060, 60));
    }

    #[test]
    fn principal_is_built_once_from_the_record() {
        let mut r = record();
        r.tenant = Some("acme".into());
        r.scopes = vec!["a".into(), "b".into()];
        let p1 = r.principal();
        assert_eq!(p1.subject(), "alice");
        assert_eq!(p1.credential_id(), Some("abc"));
        assert_eq!(p1.kind(), CredentialKind::ApiKey);
        assert!(p1.scopes().contains("b"));
        assert_eq!(
            format!("{:p}", p1.subject()),
            format!("{:p}", r.principal().subject())
        );
    }

    #[test]
    fn status_strings_round_trip() {
        for s in [
            KeyStatus::Active,
            KeyStatus::Revoked,
            KeyStatus::Expired,
            KeyStatus::Suspended,
            KeyStatus::PendingApproval,
        ] {
            assert_eq!(KeyStatus::from_storage_str(s.as_str()), Some(s));
        }
    }
}
