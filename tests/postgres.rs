//! `PostgresKeyStore` against a real PostgreSQL server, through a real axum `Router` driven with
//! `oneshot`: issue, authenticate, every lifecycle refusal, revocation through a warm cache,
//! rotation, management operations, and fail-closed `503`s when the database is down or slow.
//!
//! `scripts/test` starts a throwaway server and exports `DATABASE_URL`; each test works in its
//! own schema, so tests run in parallel. Without `DATABASE_URL` these tests fail: they are never
//! skipped.
#![cfg(feature = "postgres")]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::key::{
    ApiKeyAuthenticator, CachingKeyStore, KeyFormat, KeyGenerator, KeyHasher, KeyManager,
    KeyRecord, KeyStatus, KeyStore, KeyStoreWrite, Lookup, PostgresFuture, PostgresKeyStore,
    StoreError,
};
use credentialflow::{Error, ErrorKind, Principal};
use http::header::RETRY_AFTER;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Setup: one schema per test, the application, request helpers.
// ---------------------------------------------------------------------------------------------

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must be set: run the suite through scripts/test")
}

/// A fresh, migrated schema of its own: connections of `pool` see only it (`search_path`).
struct TestDb {
    store: PostgresKeyStore,
    options: PgConnectOptions,
}

impl TestDb {
    async fn new(test: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let url = database_url();
        let schema = format!(
            "cf_{test}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut admin)
            .await
            .expect("create the test schema");
        admin.close().await.expect("close");

        let options = PgConnectOptions::from_str(&url)
            .expect("DATABASE_URL is a valid URL")
            .options([("search_path", schema.as_str())]);
        let pool = PostgresKeyStore::pool_options()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .expect("connect the test pool");
        let store = PostgresKeyStore::new(pool);
        store.migrate().await.expect("migrate");
        Self { store, options }
    }

    /// Another pool on the same schema, for statements beside the store's.
    async fn side_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.options.clone())
            .await
            .expect("connect a side pool")
    }
}

fn format() -> KeyFormat {
    KeyFormat::new("cf_test").expect("valid prefix")
}

fn hasher() -> KeyHasher {
    KeyHasher::sha256()
}

/// Everything the handler saw of the principal.
async fn whoami(principal: Principal) -> String {
    let mut scopes: Vec<&str> = principal.scopes().iter().collect();
    scopes.sort_unstable();
    let mut roles: Vec<&str> = principal.roles().iter().collect();
    roles.sort_unstable();
    json!({
        "subject": principal.subject(),
        "tenant": principal.tenant(),
        "scopes": scopes,
        "roles": roles,
        "plan": principal.plan(),
        "credential_id": principal.credential_id(),
        "team": principal.attribute("team"),
    })
    .to_string()
}

fn app<S, C>(authenticator: ApiKeyAuthenticator<S, C>) -> Router
where
    S: KeyStore + Clone,
    C: Clock + Clone,
{
    Router::new()
        .route("/me", get(whoami))
        .layer(AuthenticateLayer::new(authenticator))
}

/// What a client sees of a response, and the audited reason.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    kind: Option<ErrorKind>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// Status, every header and the body, byte for byte.
    fn assert_same_wire_as(&self, other: &Seen) {
        assert_eq!(self.status, other.status);
        assert_eq!(self.headers, other.headers);
        assert_eq!(self.body, other.body);
    }
}

async fn call(app: &Router, key: &str) -> Seen {
    let request = Request::get("/me")
        .header("x-api-key", key)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let kind = response.extensions().get::<Error>().map(Error::kind);
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Seen {
        status: parts.status,
        headers: parts.headers,
        body,
        kind,
    }
}

/// A well-formed key (valid checksum) whose id is in no store.
fn unknown_key() -> String {
    KeyGenerator::new(format(), hasher())
        .generate()
        .expect("CSPRNG")
        .key()
        .to_owned()
}

async fn fetch(store: &PostgresKeyStore, id: &str) -> Option<Arc<KeyRecord>> {
    store.lookup(id).resolve().await.expect("lookup")
}

// ---------------------------------------------------------------------------------------------
// The request path.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn issued_key_authenticates_with_the_records_principal() {
    let db = TestDb::new("issued").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys
        .issue("alice", |r| {
            r.tenant = Some("acme".into());
            r.name = Some("CI deploy key".into());
            r.scopes = vec!["orders:write".into(), "orders:read".into()];
            r.roles = vec!["admin".into()];
            r.plan = Some("pro".into());
            r.attributes.insert("team".into(), json!("blue"));
        })
        .await
        .expect("issue");
    let app = app(ApiKeyAuthenticator::new(
        format(),
        hasher(),
        db.store.clone(),
    ));

    let seen = call(&app, issued.key()).await;

    assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
    assert_eq!(
        seen.json(),
        json!({
            "subject": "alice",
            "tenant": "acme",
            "scopes": ["orders:read", "orders:write"],
            "roles": ["admin"],
            "plan": "pro",
            "credential_id": issued.id(),
            "team": "blue",
        })
    );
}

#[tokio::test]
async fn the_table_holds_the_digest_never_the_key() {
    let db = TestDb::new("digest_only").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");
    let secret = &issued.key()[issued.key().len() - 38..issued.key().len() - 6];

    let side = db.side_pool().await;
    let (digest_len, leaks): (i32, i64) = sqlx::query_as(
        "SELECT octet_length(digest), \
         (SELECT count(*) FROM credentialflow_api_keys t \
          WHERE row_to_json(t)::text LIKE '%' || $2 || '%' OR row_to_json(t)::text LIKE '%' || $3 || '%') \
         FROM credentialflow_api_keys WHERE id = $1",
    )
    .bind(issued.id())
    .bind(issued.key())
    .bind(secret)
    .fetch_one(&side)
    .await
    .expect("query");
    assert_eq!(digest_len, 32);
    assert_eq!(leaks, 0, "the key or its secret is stored in clear");
}

#[tokio::test]
async fn every_bad_status_gets_the_same_401_as_an_unknown_key() {
    let db = TestDb::new("bad_status").await;
    let clock = FakeClock::new();
    let keys = KeyManager::with_clock(db.store.clone(), format(), hasher(), clock.clone());
    let app = app(
        ApiKeyAuthenticator::new(format(), hasher(), db.store.clone()).with_clock(clock.clone()),
    );

    let revoked = keys.issue("alice", |_| {}).await.expect("issue");
    keys.revoke(revoked.id()).await.expect("revoke");

    let suspended = keys.issue("alice", |_| {}).await.expect("issue");
    let mut record = KeyRecord::clone(&fetch(&db.store, suspended.id()).await.expect("stored"));
    record.status = KeyStatus::Suspended;
    db.store.update(record).await.expect("update");

    let pending = keys
        .issue("alice", |r| r.status = KeyStatus::PendingApproval)
        .await
        .expect("issue");

    let marked_expired = keys
        .issue("alice", |r| r.status = KeyStatus::Expired)
        .await
        .expect("issue");

    // Expired by time: `expires_at` set in the past through `update`.
    let past = keys.issue("alice", |_| {}).await.expect("issue");
    let mut record = KeyRecord::clone(&fetch(&db.store, past.id()).await.expect("stored"));
    record.expires_at = Some(clock.unix_seconds() - 1);
    db.store.update(record).await.expect("update");

    let unknown = call(&app, &unknown_key()).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.kind, Some(ErrorKind::UnknownCredential));

    for (key, kind) in [
        (revoked.key(), ErrorKind::RevokedCredential),
        (suspended.key(), ErrorKind::SuspendedCredential),
        (pending.key(), ErrorKind::PendingCredential),
        (marked_expired.key(), ErrorKind::ExpiredCredential),
        (past.key(), ErrorKind::ExpiredCredential),
    ] {
        let seen = call(&app, key).await;
        seen.assert_same_wire_as(&unknown);
        assert_eq!(seen.kind, Some(kind));
    }
}

#[tokio::test]
async fn key_expires_when_the_fake_clock_passes_expires_at() {
    let db = TestDb::new("expiry").await;
    let clock = FakeClock::new();
    let keys = KeyManager::with_clock(db.store.clone(), format(), hasher(), clock.clone());
    let app = app(
        ApiKeyAuthenticator::new(format(), hasher(), db.store.clone()).with_clock(clock.clone()),
    );
    let issued = keys
        .issue("alice", |r| r.expires_at = Some(clock.unix_seconds() + 60))
        .await
        .expect("issue");

    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(59));
    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(1));
    let seen = call(&app, issued.key()).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.kind, Some(ErrorKind::ExpiredCredential));
}

#[tokio::test]
async fn revoke_through_the_caching_store_refuses_the_very_next_request() {
    let db = TestDb::new("cache_revoke").await;
    let cache = CachingKeyStore::new(db.store.clone());
    let keys = KeyManager::new(cache.clone(), format(), hasher());
    let app = app(ApiKeyAuthenticator::new(format(), hasher(), cache.clone()));
    let issued = keys.issue("alice", |_| {}).await.expect("issue");

    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
    assert_eq!(cache.len(), 1);

    // The cache is warm: a change made behind its back is not seen yet (30 s staleness bound)…
    let mut record = KeyRecord::clone(&fetch(&db.store, issued.id()).await.expect("stored"));
    record.status = KeyStatus::Suspended;
    db.store
        .update(record)
        .await
        .expect("update behind the cache");
    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);

    // …but a revocation through the caching handle is, on the very next request.
    keys.revoke(issued.id()).await.expect("revoke");
    let seen = call(&app, issued.key()).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.kind, Some(ErrorKind::RevokedCredential));
    let stored = fetch(&db.store, issued.id()).await.expect("stored");
    assert_eq!(stored.status, KeyStatus::Revoked);
}

#[tokio::test]
async fn rotation_keeps_both_keys_during_the_overlap_then_only_the_new_one() {
    let db = TestDb::new("rotation").await;
    let clock = FakeClock::new();
    let keys = KeyManager::with_clock(db.store.clone(), format(), hasher(), clock.clone());
    let app = app(
        ApiKeyAuthenticator::new(format(), hasher(), db.store.clone()).with_clock(clock.clone()),
    );
    let old = keys
        .issue("alice", |r| {
            r.tenant = Some("acme".into());
            r.scopes = vec!["orders:read".into()];
        })
        .await
        .expect("issue");

    let new = keys
        .rotate(old.id(), Duration::from_secs(3600))
        .await
        .expect("rotate");

    for key in [old.key(), new.key()] {
        let seen = call(&app, key).await;
        assert_eq!(seen.status, StatusCode::OK);
        assert_eq!(seen.json()["tenant"], "acme");
        assert_eq!(seen.json()["scopes"], json!(["orders:read"]));
    }
    assert_eq!(
        call(&app, new.key()).await.json()["credential_id"],
        new.id()
    );

    clock.advance(Duration::from_secs(3600));
    let seen = call(&app, old.key()).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.kind, Some(ErrorKind::ExpiredCredential));
    assert_eq!(call(&app, new.key()).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Management.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_by_owner_returns_every_field_newest_first() {
    let db = TestDb::new("list").await;
    let clock = FakeClock::new();
    let keys = KeyManager::with_clock(db.store.clone(), format(), hasher(), clock.clone());
    let first = keys
        .issue("alice", |r| {
            r.tenant = Some("acme".into());
            r.name = Some("laptop".into());
            r.scopes = vec!["a".into(), "b".into()];
            r.roles = vec!["r".into()];
            r.plan = Some("free".into());
            r.attributes
                .insert("team".into(), json!({"name": "blue", "n": 3}));
            r.expires_at = Some(clock.unix_seconds() + 86_400);
        })
        .await
        .expect("issue");
    clock.advance(Duration::from_secs(10));
    let second = keys.issue("alice", |_| {}).await.expect("issue");
    let third = keys.issue("alice", |_| {}).await.expect("issue"); // same second as `second`
    keys.issue("bob", |_| {}).await.expect("issue");

    let listed = keys.list("alice").await.expect("list");

    let mut same_second = [second.id(), third.id()];
    same_second.sort_unstable();
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [same_second[0], same_second[1], first.id()]);
    let oldest = &listed[2];
    assert_eq!(oldest.owner, "alice");
    assert_eq!(oldest.tenant.as_deref(), Some("acme"));
    assert_eq!(oldest.name.as_deref(), Some("laptop"));
    assert_eq!(oldest.scopes, ["a", "b"]);
    assert_eq!(oldest.roles, ["r"]);
    assert_eq!(oldest.plan.as_deref(), Some("free"));
    assert_eq!(oldest.attributes["team"], json!({"name": "blue", "n": 3}));
    assert_eq!(oldest.status, KeyStatus::Active);
    assert_eq!(oldest.created_at, FakeClock::DEFAULT_START.as_secs());
    assert_eq!(
        oldest.expires_at,
        Some(FakeClock::DEFAULT_START.as_secs() + 86_400)
    );
    assert_eq!(oldest.revoked_at, None);
    assert_eq!(oldest.hash, *first.hash());
    assert!(keys.list("nobody").await.expect("list").is_empty());
}

#[tokio::test]
async fn revoke_keeps_the_first_revocation_time_and_last_use_only_moves_forward() {
    let db = TestDb::new("coalesce").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");

    db.store
        .record_last_use(issued.id(), 2_000)
        .await
        .expect("use");
    db.store
        .record_last_use(issued.id(), 1_000)
        .await
        .expect("use");
    // An update from a record read before any use was recorded keeps the recorded use.
    let mut stale = KeyRecord::clone(&fetch(&db.store, issued.id()).await.expect("stored"));
    stale.last_used_at = None;
    stale.name = Some("renamed".into());
    db.store.update(stale).await.expect("update");
    db.store.revoke(issued.id(), 3_000).await.expect("revoke");
    db.store
        .revoke(issued.id(), 4_000)
        .await
        .expect("revoke again");

    let stored = fetch(&db.store, issued.id()).await.expect("stored");
    assert_eq!(stored.last_used_at, Some(2_000));
    assert_eq!(stored.revoked_at, Some(3_000));
    assert_eq!(stored.status, KeyStatus::Revoked);
    assert_eq!(stored.name.as_deref(), Some("renamed"));
}

#[tokio::test]
async fn expire_by_only_ever_shortens_a_key_and_keeps_its_revocation() {
    let db = TestDb::new("expire_by").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let open = keys.issue("alice", |_| {}).await.expect("issue");
    let soon = keys
        .issue("alice", |r| r.expires_at = Some(1_000))
        .await
        .expect("issue");
    let revoked = keys.issue("alice", |_| {}).await.expect("issue");
    db.store.revoke(revoked.id(), 500).await.expect("revoke");

    for id in [open.id(), soon.id(), revoked.id()] {
        db.store.expire_by(id, 2_000).await.expect("expire_by");
    }
    db.store.expire_by(open.id(), 3_000).await.expect("later");

    let stored = |id: &str| {
        let store = db.store.clone();
        let id = id.to_owned();
        async move { fetch(&store, &id).await.expect("stored") }
    };
    assert_eq!(stored(open.id()).await.expires_at, Some(2_000));
    assert_eq!(stored(soon.id()).await.expires_at, Some(1_000));
    let revoked = stored(revoked.id()).await;
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.revoked_at, Some(500));
    assert_eq!(revoked.expires_at, Some(2_000));
    assert!(matches!(
        db.store.expire_by("ghost0000000", 1).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn rotation_refuses_a_key_revoked_in_the_database() {
    let db = TestDb::new("rotate_revoked").await;
    let cached = CachingKeyStore::new(db.store.clone());
    let keys = KeyManager::new(cached.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");
    // Warm the cache with the active record, then revoke behind its back.
    assert!(
        cached
            .lookup(issued.id())
            .resolve()
            .await
            .expect("lookup")
            .is_some()
    );
    db.store.revoke(issued.id(), 1).await.expect("revoke");
    assert!(matches!(
        keys.rotate(issued.id(), Duration::from_secs(60)).await,
        Err(StoreError::NotActive)
    ));
    assert_eq!(keys.list("alice").await.expect("list").len(), 1);
}

#[tokio::test]
async fn duplicate_insert_and_unknown_ids_are_reported() {
    let db = TestDb::new("errors").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");
    let record = KeyRecord::clone(&fetch(&db.store, issued.id()).await.expect("stored"));

    assert!(matches!(
        db.store.insert(record.clone()).await,
        Err(StoreError::Duplicate)
    ));

    let mut ghost = record;
    ghost.id = "ghost0000000".into();
    assert!(matches!(
        db.store.update(ghost).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.store.revoke("ghost0000000", 1).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.store.record_last_use("ghost0000000", 1).await,
        Err(StoreError::NotFound)
    ));
    assert!(fetch(&db.store, "ghost0000000").await.is_none());
}

#[tokio::test]
async fn the_migration_is_idempotent() {
    let db = TestDb::new("migrate").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");

    db.store.migrate().await.expect("second run");
    db.store.migrate().await.expect("third run");

    assert!(fetch(&db.store, issued.id()).await.is_some(), "data kept");
    let side = db.side_pool().await;
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT indexname::text FROM pg_indexes \
         WHERE tablename = 'credentialflow_api_keys' AND schemaname = current_schema() \
         ORDER BY indexname",
    )
    .fetch_all(&side)
    .await
    .expect("query");
    let indexes: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
    assert_eq!(
        indexes,
        [
            "credentialflow_api_keys_owner_idx",
            "credentialflow_api_keys_pkey"
        ]
    );
}

/// A writer that counts the uses it is asked to record.
#[derive(Clone, Debug)]
struct CountingWriter {
    inner: PostgresKeyStore,
    uses: Arc<AtomicUsize>,
}

impl KeyStore for CountingWriter {
    type Future = PostgresFuture;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        self.inner.lookup(id)
    }
}

impl KeyStoreWrite for CountingWriter {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.inner.update(record).await
    }

    async fn revoke(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.inner.revoke(id, at).await
    }

    async fn expire_by(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.inner.expire_by(id, at).await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_by_owner(owner).await
    }

    async fn record_last_use(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.uses.fetch_add(1, Ordering::SeqCst);
        self.inner.record_last_use(id, at).await
    }
}

/// Waits (bounded) for the background writer to store `expected`.
async fn await_last_use(store: &PostgresKeyStore, id: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = fetch(store, id).await.expect("stored").last_used_at;
        if stored == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "last_used_at is {stored:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn last_use_is_written_at_most_once_a_minute() {
    let db = TestDb::new("last_use").await;
    let clock = FakeClock::new();
    let writer = CountingWriter {
        inner: db.store.clone(),
        uses: Arc::default(),
    };
    let keys = KeyManager::with_clock(db.store.clone(), format(), hasher(), clock.clone());
    let app = app(
        ApiKeyAuthenticator::new(format(), hasher(), db.store.clone())
            .with_clock(clock.clone())
            .track_last_use(writer.clone()),
    );
    let issued = keys.issue("alice", |_| {}).await.expect("issue");
    let start = clock.unix_seconds();

    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
    await_last_use(&db.store, issued.id(), start).await;

    clock.advance(Duration::from_secs(30));
    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(31));
    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
    await_last_use(&db.store, issued.id(), start + 61).await;

    assert_eq!(writer.uses.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// Fail closed.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unreachable_database_gets_503_with_retry_after() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed: nothing listens there now
    let pool = PostgresKeyStore::pool_options()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .expect("valid URL");
    let app = app(ApiKeyAuthenticator::new(
        format(),
        hasher(),
        PostgresKeyStore::new(pool),
    ));

    let seen = call(&app, &unknown_key()).await;

    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(seen.headers.contains_key(RETRY_AFTER), "{seen:?}");
    assert_eq!(seen.kind, Some(ErrorKind::StoreUnavailable));
}

#[tokio::test]
async fn database_slower_than_the_store_timeout_gets_503() {
    let db = TestDb::new("slow").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");
    let store = db
        .store
        .clone()
        .with_timeout(Duration::from_millis(200))
        .expect("positive");
    let app = app(ApiKeyAuthenticator::new(format(), hasher(), store));
    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);

    // Another connection locks the table: the lookup blocks until it lets go.
    let side = db.side_pool().await;
    let mut lock = side.begin().await.expect("begin");
    sqlx::query("LOCK TABLE credentialflow_api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");

    let started = Instant::now();
    let seen = call(&app, issued.key()).await;
    let took = started.elapsed();

    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(seen.headers.contains_key(RETRY_AFTER), "{seen:?}");
    assert_eq!(seen.kind, Some(ErrorKind::StoreTimeout));
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the store's timeout, not the authenticator's: {took:?}"
    );

    lock.rollback().await.expect("unlock");
    assert_eq!(call(&app, issued.key()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unreadable_record_gets_503_never_an_allow() {
    let db = TestDb::new("corrupt").await;
    let keys = KeyManager::new(db.store.clone(), format(), hasher());
    let issued = keys.issue("alice", |_| {}).await.expect("issue");
    let app = app(ApiKeyAuthenticator::new(
        format(),
        hasher(),
        db.store.clone(),
    ));

    let side = db.side_pool().await;
    sqlx::query("UPDATE credentialflow_api_keys SET hash_version = 'md5' WHERE id = $1")
        .bind(issued.id())
        .execute(&side)
        .await
        .expect("corrupt the record");

    let seen = call(&app, issued.key()).await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.kind, Some(ErrorKind::StoreUnavailable));
    assert!(matches!(
        db.store.list_by_owner("alice").await,
        Err(StoreError::Unavailable(_))
    ));
}
