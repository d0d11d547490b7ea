//! The PostgreSQL key store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgQueryResult, PgRow, Postgres};
use sqlx::query::Query;

use super::{
    HashVersion, KeyHash, KeyRecord, KeyStatus, KeyStore, KeyStoreWrite, Lookup, StoreError,
};
use crate::authn::DEFAULT_TIMEOUT;
use crate::error::{ConfigError, Error};

/// The schema, shipped as a migration: `migrations/0001_credentialflow_api_keys.sql`.
const MIGRATION: &str = include_str!("../../migrations/0001_credentialflow_api_keys.sql");

/// Serialises concurrent `migrate()` calls (several replicas starting at once): an advisory
/// lock held for the migration's implicit transaction. The bytes spell `cfapi_ke`.
const MIGRATION_LOCK: i64 = 0x6366_6170_695f_6b65;

macro_rules! select_record {
    () => {
        "SELECT id, hash_version, digest, owner, tenant, name, scopes, roles, \
         attributes::text AS attributes, plan, status, created_at, expires_at, revoked_at, \
         last_used_at FROM credentialflow_api_keys "
    };
}

const LOOKUP: &str = concat!(select_record!(), "WHERE id = $1");

const LIST_BY_OWNER: &str = concat!(
    select_record!(),
    "WHERE owner = $1 ORDER BY created_at DESC, id"
);

const INSERT: &str = "INSERT INTO credentialflow_api_keys \
    (id, hash_version, digest, owner, tenant, name, scopes, roles, attributes, plan, status, \
     created_at, expires_at, revoked_at, last_used_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15)";

const UPDATE: &str = "UPDATE credentialflow_api_keys SET \
    hash_version = $2, digest = $3, owner = $4, tenant = $5, name = $6, scopes = $7, \
    roles = $8, attributes = $9::jsonb, plan = $10, status = $11, created_at = $12, \
    expires_at = $13, revoked_at = $14, last_used_at = GREATEST(last_used_at, $15) \
    WHERE id = $1";

const REVOKE: &str = "UPDATE credentialflow_api_keys \
    SET status = 'revoked', revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";

const EXPIRE_BY: &str = "UPDATE credentialflow_api_keys \
    SET expires_at = LEAST(COALESCE(expires_at, $2), $2) WHERE id = $1";

const RECORD_LAST_USE: &str = "UPDATE credentialflow_api_keys \
    SET last_used_at = GREATEST(last_used_at, $2) WHERE id = $1";

/// SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// Keys in PostgreSQL, through a [`sqlx`] connection pool.
///
/// - **Schema**: one table, `credentialflow_api_keys`, created by [`migrate`](Self::migrate)
///   from the migration shipped in the crate (`migrations/0001_credentialflow_api_keys.sql`;
///   idempotent, so run it at every start or apply the file with your own migration tool).
///   Lookups by public id use the primary key; [`list_by_owner`](KeyStoreWrite::list_by_owner)
///   an index on `owner`. Digests only: the table never holds a key.
/// - **Queries** are checked at run time: building needs no database.
/// - **Timeouts**: every statement, waiting for a pooled connection included, is bounded by
///   [`with_timeout`](Self::with_timeout) (default 2 s). A lookup that fails or runs out of
///   time refuses the request with `503` and `Retry-After`, never an allow. A connection whose
///   statement was abandoned is closed rather than returned to the pool. To also stop the
///   statement on the server, set PostgreSQL's `statement_timeout` in your connect options.
/// - **Every lookup is a round trip**: wrap the store in a
///   [`CachingKeyStore`](super::CachingKeyStore) to serve repeated keys from memory; revoke
///   through the caching handle and the next request is refused.
/// - **TLS**: this crate enables no TLS backend of sqlx. For `sslmode=require`, add sqlx 0.8 to
///   your own `Cargo.toml` with the `tls-rustls-ring` (or `tls-native-tls`) feature; cargo
///   unifies the features.
///
/// Times are stored as `bigint` Unix seconds; a time past `i64::MAX` is stored as `i64::MAX`.
/// [`update`](KeyStoreWrite::update) replaces every column but `last_used_at`, which only moves
/// forward: a record read before a use was recorded does not erase it.
/// `Debug` shows the pool's size, never the connection URL or its password.
///
/// # Example
///
/// ```no_run
/// use credentialflow::authn::AuthenticateLayer;
/// use credentialflow::key::{
///     ApiKeyAuthenticator, CachingKeyStore, KeyFormat, KeyHasher, KeyManager, PostgresKeyStore,
/// };
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresKeyStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
///
/// let store = CachingKeyStore::new(store);
/// let format = KeyFormat::new("cf_live")?;
/// let keys = KeyManager::new(store.clone(), format.clone(), KeyHasher::sha256());
/// let issued = keys.issue("alice", |record| record.scopes = vec!["orders:read".into()]).await?;
/// println!("hand this over once: {}", issued.key());
///
/// let layer = AuthenticateLayer::new(ApiKeyAuthenticator::new(format, KeyHasher::sha256(), store));
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
///
/// With your own pool settings:
///
/// ```no_run
/// # use std::time::Duration;
/// # use credentialflow::key::PostgresKeyStore;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PostgresKeyStore::pool_options()
///     .max_connections(32)
///     .connect("postgres://app@localhost/app")
///     .await?;
/// let store = PostgresKeyStore::new(pool).with_timeout(Duration::from_millis(500))?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresKeyStore {
    pool: PgPool,
    timeout: Duration,
}

impl PostgresKeyStore {
    /// The table the store reads and writes.
    pub const TABLE: &'static str = "credentialflow_api_keys";

    /// A store over `pool`, with the default statement timeout (2 s).
    ///
    /// The pool may be lazy (`connect_lazy`): nothing is sent until the first statement.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The pool settings [`connect`](Self::connect) uses, to adjust and pass to
    /// [`new`](Self::new): at most 10 connections, and 2 s to get one (past that, a lookup is
    /// refused with `503`). More connections let more lookups run at once and cost the server
    /// memory; a longer acquire timeout does not help, since each statement is bounded by the
    /// store's own timeout as well.
    #[must_use]
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(DEFAULT_TIMEOUT)
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`) with
    /// [`pool_options`](Self::pool_options). The store keeps no URL; the pool keeps the parsed
    /// options (password included) to open new connections, and the store's `Debug` never
    /// shows them.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or the first connection fails.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self::new(Self::pool_options().connect(url).await?))
    }

    /// Bounds each statement, waiting for a connection included. Defaults to 2 s; past it the
    /// lookup fails and the request is refused with `503`. Longer holds requests (and pooled
    /// connections) for as long when the database stalls; the authenticator's own timeout
    /// (also 2 s by default) applies as well.
    ///
    /// # Errors
    ///
    /// When `timeout` is zero.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("statement timeout must be positive"));
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// Creates the table and its index if they do not exist: safe to call at every start, from
    /// several processes at once.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached or refuses the statements (permissions).
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        // One simple-query message runs as one implicit transaction, which holds the
        // advisory lock until its end.
        let sql = format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK});\n{MIGRATION}");
        sqlx::raw_sql(&sql).execute(&self.pool).await?;
        Ok(())
    }

    /// The statement timeout.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl fmt::Debug for PostgresKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the pool's connect options: they hold the password.
        f.debug_struct("PostgresKeyStore")
            .field("table", &Self::TABLE)
            .field("timeout", &self.timeout)
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

type Found = Result<Option<Arc<KeyRecord>>, Error>;

/// The future of a [`PostgresKeyStore`] lookup.
pub struct PostgresFuture {
    // Boxed: the database round trip dwarfs the allocation.
    inner: Pin<Box<dyn Future<Output = Found> + Send>>,
}

impl fmt::Debug for PostgresFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresFuture").finish_non_exhaustive()
    }
}

impl Future for PostgresFuture {
    type Output = Found;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl KeyStore for PostgresKeyStore {
    type Future = PostgresFuture;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        let pool = self.pool.clone();
        let limit = self.timeout;
        let query = sqlx::query(LOOKUP).bind(id.to_owned());
        Lookup::Pending(PostgresFuture {
            inner: Box::pin(async move {
                let row = fetch_optional(&pool, limit, "looking up a key", query)
                    .await
                    .map_err(Failure::into_error)?;
                match row {
                    None => Ok(None),
                    Some(row) => decode(&row)
                        .map(|record| Some(Arc::new(record)))
                        .map_err(|e| Failure::Store(e).into_error()),
                }
            }),
        })
    }
}

impl KeyStoreWrite for PostgresKeyStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let query = bind_record(sqlx::query(INSERT), record);
        match execute(&self.pool, self.timeout, "inserting a key", query).await {
            Ok(_) => Ok(()),
            Err(failure) if failure.is_unique_violation() => Err(StoreError::Duplicate),
            Err(failure) => Err(failure.into_store_error()),
        }
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        let query = bind_record(sqlx::query(UPDATE), record);
        let done = execute(&self.pool, self.timeout, "updating a key", query)
            .await
            .map_err(Failure::into_store_error)?;
        found(&done)
    }

    async fn revoke(&self, id: &str, at: u64) -> Result<(), StoreError> {
        let query = sqlx::query(REVOKE).bind(id.to_owned()).bind(to_db(at));
        let done = execute(&self.pool, self.timeout, "revoking a key", query)
            .await
            .map_err(Failure::into_store_error)?;
        found(&done)
    }

    async fn expire_by(&self, id: &str, at: u64) -> Result<(), StoreError> {
        let query = sqlx::query(EXPIRE_BY).bind(id.to_owned()).bind(to_db(at));
        let done = execute(&self.pool, self.timeout, "shortening a key's life", query)
            .await
            .map_err(Failure::into_store_error)?;
        found(&done)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let query = sqlx::query(LIST_BY_OWNER).bind(owner.to_owned());
        let rows = fetch_all(&self.pool, self.timeout, "listing keys", query)
            .await
            .map_err(Failure::into_store_error)?;
        rows.iter()
            .map(|row| decode(row).map_err(|e| Failure::Store(e).into_store_error()))
            .collect()
    }

    async fn record_last_use(&self, id: &str, at: u64) -> Result<(), StoreError> {
        let query = sqlx::query(RECORD_LAST_USE)
            .bind(id.to_owned())
            .bind(to_db(at));
        let done = execute(&self.pool, self.timeout, "recording a key's use", query)
            .await
            .map_err(Failure::into_store_error)?;
        found(&done)
    }
}

fn found(done: &PgQueryResult) -> Result<(), StoreError> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

type PgQuery = Query<'static, Postgres, PgArguments>;

/// Binds `$1`…`$15` of [`INSERT`] and [`UPDATE`].
fn bind_record(query: PgQuery, record: KeyRecord) -> PgQuery {
    let attributes = Value::Object(record.attributes).to_string();
    query
        .bind(record.id)
        .bind(record.hash.version().to_storage_string())
        .bind(record.hash.digest().to_vec())
        .bind(record.owner)
        .bind(record.tenant)
        .bind(record.name)
        .bind(record.scopes)
        .bind(record.roles)
        .bind(attributes)
        .bind(record.plan)
        .bind(record.status.as_str())
        .bind(to_db(record.created_at))
        .bind(record.expires_at.map(to_db))
        .bind(record.revoked_at.map(to_db))
        .bind(record.last_used_at.map(to_db))
}

/// Unix seconds to `bigint`, saturating (a time past `i64::MAX` is 292 billion years away).
fn to_db(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn decode(row: &PgRow) -> Result<KeyRecord, PgStoreError> {
    let id: String = column(row, "id")?;
    let corrupt = |what: &'static str| PgStoreError::Corrupt {
        id: id.clone(),
        what,
    };
    let version: String = column(row, "hash_version")?;
    let version =
        HashVersion::from_storage_str(&version).ok_or_else(|| corrupt("unknown hash_version"))?;
    let digest: Vec<u8> = column(row, "digest")?;
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| corrupt("digest is not 32 bytes"))?;
    let status: String = column(row, "status")?;
    let status = KeyStatus::from_storage_str(&status).ok_or_else(|| corrupt("unknown status"))?;
    let attributes: String = column(row, "attributes")?;
    let attributes = match serde_json::from_str::<Value>(&attributes) {
        Ok(Value::Object(map)) => map,
        _ => return Err(corrupt("attributes are not a JSON object")),
    };
    let time = |name: &'static str| -> Result<Option<u64>, PgStoreError> {
        column::<Option<i64>>(row, name)?
            .map(|t| u64::try_from(t).map_err(|_| corrupt("negative time")))
            .transpose()
    };
    let created_at = time("created_at")?.ok_or_else(|| corrupt("created_at is null"))?;
    let expires_at = time("expires_at")?;
    let revoked_at = time("revoked_at")?;
    let last_used_at = time("last_used_at")?;

    let mut record = KeyRecord::new(
        id.clone(),
        KeyHash::from_parts(version, digest),
        column::<String>(row, "owner")?,
        created_at,
    );
    record.tenant = column(row, "tenant")?;
    record.name = column(row, "name")?;
    record.scopes = column(row, "scopes")?;
    record.roles = column(row, "roles")?;
    record.attributes = attributes;
    record.plan = column(row, "plan")?;
    record.status = status;
    record.expires_at = expires_at;
    record.revoked_at = revoked_at;
    record.last_used_at = last_used_at;
    Ok(record)
}

fn column<T>(row: &PgRow, name: &'static str) -> Result<T, PgStoreError>
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(|source| PgStoreError::Query {
        op: "reading a key record",
        source,
    })
}

/// Why the database gave no usable answer. Never holds a key or a digest; the key id is public.
#[derive(Debug, thiserror::Error)]
enum PgStoreError {
    #[error("PostgreSQL key store: {op}: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("PostgreSQL key store: the record of key {id:?} is unreadable: {what}")]
    Corrupt { id: String, what: &'static str },
}

enum Failure {
    Timeout(Duration),
    Store(PgStoreError),
}

impl Failure {
    /// On the request path: `503` either way.
    fn into_error(self) -> Error {
        match self {
            Self::Timeout(after) => Error::timeout(after),
            Self::Store(error) => Error::unavailable(error),
        }
    }

    fn into_store_error(self) -> StoreError {
        StoreError::Unavailable(Box::new(self.into_error()))
    }

    fn is_unique_violation(&self) -> bool {
        match self {
            Self::Store(PgStoreError::Query {
                source: sqlx::Error::Database(db),
                ..
            }) => db.code().as_deref() == Some(UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

/// A pooled connection that is closed, not returned to the pool, when its statement is
/// abandoned (a timeout dropped the future): its protocol state is unknown, and the pool's
/// health check would wait for the abandoned statement to finish.
struct Checkout {
    conn: PoolConnection<Postgres>,
    settled: bool,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.close_on_drop();
        }
    }
}

/// Runs `work` (acquiring a connection included) within `limit`.
async fn bounded<T>(
    limit: Duration,
    op: &'static str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(Failure::Store(PgStoreError::Query { op, source })),
        Err(_elapsed) => Err(Failure::Timeout(limit)),
    }
}

async fn fetch_optional(
    pool: &PgPool,
    limit: Duration,
    op: &'static str,
    query: PgQuery,
) -> Result<Option<PgRow>, Failure> {
    bounded(limit, op, async {
        let mut checkout = Checkout {
            conn: pool.acquire().await?,
            settled: false,
        };
        let result = query.fetch_optional(&mut *checkout.conn).await;
        checkout.settled = true;
        result
    })
    .await
}

async fn fetch_all(
    pool: &PgPool,
    limit: Duration,
    op: &'static str,
    query: PgQuery,
) -> Result<Vec<PgRow>, Failure> {
    bounded(limit, op, async {
        let mut checkout = Checkout {
            conn: pool.acquire().await?,
            settled: false,
        };
        let result = query.fetch_all(&mut *checkout.conn).await;
        checkout.settled = true;
        result
    })
    .await
}

async fn execute(
    pool: &PgPool,
    limit: Duration,
    op: &'static str,
    query: PgQuery,
) -> Result<PgQueryResult, Failure> {
    bounded(limit, op, async {
        let mut checkout = Checkout {
            conn: pool.acquire().await?,
            settled: false,
        };
        let result = query.execute(&mut *checkout.conn).await;
        checkout.settled = true;
        result
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn futures_are_send() {
        assert_send::<PostgresFuture>();
        assert_send::<PostgresKeyStore>();
    }

    #[test]
    fn times_saturate_into_bigint() {
        assert_eq!(to_db(0), 0);
        assert_eq!(to_db(1_767_225_600), 1_767_225_600);
        assert_eq!(to_db(u64::MAX), i64::MAX);
    }

    #[test]
    fn the_migration_is_idempotent_sql() {
        assert!(MIGRATION.contains("CREATE TABLE IF NOT EXISTS credentialflow_api_keys"));
        assert!(MIGRATION.contains("CREATE INDEX IF NOT EXISTS"));
        assert!(!MIGRATION.contains("BEGIN"));
        for status in [
            KeyStatus::Active,
            KeyStatus::Revoked,
            KeyStatus::Expired,
            KeyStatus::Suspended,
            KeyStatus::PendingApproval,
        ] {
            assert!(MIGRATION.contains(&format!("'{}'", status.as_str())));
        }
    }

    #[tokio::test]
    async fn debug_shows_no_password() {
        let pool = PostgresKeyStore::pool_options()
            .connect_lazy("postgres://app:hunter2-secret@127.0.0.1:1/app")
            .expect("a valid URL");
        let store = PostgresKeyStore::new(pool);
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("credentialflow_api_keys"), "{shown}");
    }

    #[test]
    fn zero_timeout_is_refused() {
        // A lazy pool needs a runtime only once used; `with_timeout` never uses it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let pool = PostgresKeyStore::pool_options()
            .connect_lazy("postgres://app@127.0.0.1:1/app")
            .expect("a valid URL");
        assert!(
            PostgresKeyStore::new(pool)
                .with_timeout(Duration::ZERO)
                .is_err()
        );
    }
}
