//! API keys end to end, through a real axum `Router`.
#![cfg(all(feature = "key", feature = "axum"))]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use credentialflow::authn::{AuthenticateLayer, AuthenticatorExt};
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::key::{
    ApiKeyAuthenticator, CachingKeyStore, IssuedKey, KeyFormat, KeyHasher, KeyManager, KeyRecord,
    KeyStatus, KeyStore, KeyStoreWrite, Lookup, MemoryKeyStore, Pepper,
};
use credentialflow::{Error, ErrorKind, Principal};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn format() -> KeyFormat {
    KeyFormat::new("cf_test").unwrap()
}

/// The memory store, instrumented: counts the lookups that reach it and the uses recorded in
/// it; can hand out a fresh copy of a record per lookup, as a database store does; can revoke a
/// key "from another process" while the next key is inserted.
#[derive(Clone, Default)]
struct Instrumented {
    inner: MemoryKeyStore,
    lookups: Arc<AtomicUsize>,
    uses: Arc<AtomicUsize>,
    fresh_copies: bool,
    revoke_on_insert: Arc<std::sync::Mutex<Option<String>>>,
}

impl Instrumented {
    fn over(inner: &MemoryKeyStore) -> Self {
        Self {
            inner: inner.clone(),
            ..Self::default()
        }
    }
}

type StoreResult<T> = Result<T, credentialflow::key::StoreError>;

impl KeyStore for Instrumented {
    type Future = <MemoryKeyStore as KeyStore>::Future;
    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        match self.inner.lookup(id) {
            Lookup::Ready(Ok(Some(record))) if self.fresh_copies => {
                Lookup::Ready(Ok(Some(Arc::new(KeyRecord::clone(&record)))))
            }
            other => other,
        }
    }
}

impl KeyStoreWrite for Instrumented {
    async fn insert(&self, record: KeyRecord) -> StoreResult<()> {
        let victim = self.revoke_on_insert.lock().unwrap().take();
        if let Some(victim) = victim {
            self.inner.revoke(&victim, 7).await?;
        }
        self.inner.insert(record).await
    }
    async fn update(&self, record: KeyRecord) -> StoreResult<()> {
        self.inner.update(record).await
    }
    async fn revoke(&self, id: &str, at: u64) -> StoreResult<()> {
        self.inner.revoke(id, at).await
    }
    async fn expire_by(&self, id: &str, at: u64) -> StoreResult<()> {
        self.inner.expire_by(id, at).await
    }
    async fn fetch(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        self.inner.fetch(id).await
    }
    async fn list_by_owner(&self, owner: &str) -> StoreResult<Vec<KeyRecord>> {
        self.inner.list_by_owner(owner).await
    }
    async fn record_last_use(&self, id: &str, at: u64) -> StoreResult<()> {
        self.uses.fetch_add(1, Ordering::SeqCst);
        self.inner.record_last_use(id, at).await
    }
}

/// A store whose backend is down.
struct Broken;

impl KeyStore for Broken {
    type Future = std::future::Ready<Result<Option<Arc<KeyRecord>>, Error>>;
    fn lookup(&self, _id: &str) -> Lookup<Self::Future> {
        Lookup::Ready(Err(Error::unavailable("connection refused")))
    }
}

/// A store that never answers.
struct Stalled;

impl KeyStore for Stalled {
    type Future = std::future::Pending<Result<Option<Arc<KeyRecord>>, Error>>;
    fn lookup(&self, _id: &str) -> Lookup<Self::Future> {
        Lookup::Pending(std::future::pending())
    }
}

/// A store answering through a future (as a database would), from a memory store.
#[derive(Clone)]
struct Deferred(MemoryKeyStore);

impl KeyStore for Deferred {
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Option<Arc<KeyRecord>>, Error>> + Send>>;
    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        let inner = self.0.clone();
        let id = id.to_owned();
        Lookup::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            inner.lookup(&id).resolve().await
        }))
    }
}

fn app<S: KeyStore>(authenticator: ApiKeyAuthenticator<S, FakeClock>) -> Router {
    Router::new()
        .route(
            "/me",
            get(|p: Principal| async move {
                format!(
                    "{}|{}|{}|{}",
                    p.subject(),
                    p.credential_id().unwrap_or("-"),
                    p.scopes(),
                    p.tenant().unwrap_or("-")
                )
            }),
        )
        .layer(AuthenticateLayer::new(authenticator))
}

fn authenticator<S: KeyStore>(store: S, clock: &FakeClock) -> ApiKeyAuthenticator<S, FakeClock> {
    ApiKeyAuthenticator::new(format(), KeyHasher::sha256(), store).with_clock(clock.clone())
}

async fn call(app: &Router, header: &str, value: &str) -> Response<Body> {
    let req = Request::get("/me")
        .header(header, value)
        .body(Body::empty())
        .unwrap();
    match app.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

async fn body(res: Response<Body>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn kind(res: &Response<Body>) -> Option<ErrorKind> {
    res.extensions().get::<Error>().map(Error::kind)
}

struct Fixture {
    store: MemoryKeyStore,
    clock: FakeClock,
    keys: KeyManager<MemoryKeyStore, FakeClock>,
}

fn fixture() -> Fixture {
    let store = MemoryKeyStore::new();
    let clock = FakeClock::new();
    let keys = KeyManager::with_clock(store.clone(), format(), KeyHasher::sha256(), clock.clone());
    Fixture { store, clock, keys }
}

async fn issue(f: &Fixture, configure: impl FnOnce(&mut KeyRecord)) -> IssuedKey {
    f.keys.issue("alice", configure).await.unwrap()
}

#[tokio::test]
async fn a_valid_key_reaches_the_handler_as_its_owner() {
    let f = fixture();
    let key = issue(&f, |r| {
        r.scopes = vec!["orders:read".into(), "orders:write".into()];
        r.tenant = Some("acme".into());
    })
    .await;
    let app = app(authenticator(f.store.clone(), &f.clock));

    for (header, value) in [
        ("x-api-key", key.key().to_owned()),
        ("authorization", format!("Bearer {}", key.key())),
    ] {
        let res = call(&app, header, &value).await;
        assert_eq!(res.status(), StatusCode::OK, "{header}");
        assert_eq!(
            body(res).await,
            format!("alice|{}|orders:read orders:write|acme", key.id())
        );
    }
}

#[tokio::test]
async fn every_bad_key_gets_the_same_401_with_its_own_audit_reason() {
    let f = fixture();
    let revoked = issue(&f, |_| {}).await;
    f.keys.revoke(revoked.id()).await.unwrap();
    let expired = issue(&f, |r| {
        r.expires_at = Some(FakeClock::DEFAULT_START.as_secs())
    })
    .await;
    let suspended = issue(&f, |r| r.status = KeyStatus::Suspended).await;
    let pending = issue(&f, |r| r.status = KeyStatus::PendingApproval).await;
    let marked_expired = issue(&f, |r| r.status = KeyStatus::Expired).await;
    // A well-formed key (valid checksum) that was never issued.
    let unknown = KeyManager::new(MemoryKeyStore::new(), format(), KeyHasher::sha256())
        .issue("nobody", |_| {})
        .await
        .unwrap();
    // The right id with a wrong secret: re-issue under the same id is impossible, so take a real
    // key's id and another key's secret, with a correct checksum.
    let real = issue(&f, |_| {}).await;
    let other = issue(&f, |_| {}).await;
    let wrong_secret = splice(&format(), real.key(), other.key());

    let app = app(authenticator(f.store.clone(), &f.clock));
    let cases = [
        (revoked.key().to_owned(), ErrorKind::RevokedCredential),
        (expired.key().to_owned(), ErrorKind::ExpiredCredential),
        (suspended.key().to_owned(), ErrorKind::SuspendedCredential),
        (pending.key().to_owned(), ErrorKind::PendingCredential),
        (
            marked_expired.key().to_owned(),
            ErrorKind::ExpiredCredential,
        ),
        (unknown.key().to_owned(), ErrorKind::UnknownCredential),
        (wrong_secret, ErrorKind::InvalidCredential),
    ];
    let mut seen: Option<WireResponse> = None;
    for (key, expected) in cases {
        let res = call(&app, "x-api-key", &key).await;
        assert_eq!(kind(&res), Some(expected), "{expected:?}");
        let status = res.status();
        let headers: Vec<(String, Vec<u8>)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let text = body(res).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let now = (status, headers, text);
        if let Some(first) = &seen {
            assert_eq!(first, &now, "{expected:?} differs on the wire");
        }
        seen = Some(now);
    }
    let (_, headers, _) = seen.unwrap();
    assert_eq!(
        headers,
        vec![
            (
                "www-authenticate".to_owned(),
                b"ApiKey realm=\"api\", error=\"invalid_token\"".to_vec()
            ),
            (
                "www-authenticate".to_owned(),
                b"Bearer realm=\"api\"".to_vec()
            ),
            ("content-length".to_owned(), b"0".to_vec()),
        ]
    );
}

/// Status, every header (name, bytes) in order, and body.
type WireResponse = (StatusCode, Vec<(String, Vec<u8>)>, String);

/// `real`'s prefix and id with `other`'s secret, and a recomputed (valid) checksum.
fn splice(format: &KeyFormat, real: &str, other: &str) -> String {
    let id_end = format.prefix().len() + 1 + credentialflow::key::ID_LEN + 1;
    let secret_end = id_end + credentialflow::key::SECRET_LEN;
    let body = format!("{}{}", &real[..id_end], &other[id_end..secret_end]);
    // Find the checksum by trying: the format only accepts the right one.
    let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let crc = crc32(body.as_bytes());
    let mut n = u64::from(crc);
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = alphabet[(n % 62) as usize];
        n /= 62;
    }
    let key = format!("{body}{}", std::str::from_utf8(&sum).unwrap());
    assert!(
        format.parse(&key).is_ok(),
        "spliced key must be well-formed"
    );
    key
}

/// CRC-32/ISO-HDLC, bit by bit (a test oracle independent of the crate's implementation).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn a_mistyped_key_is_refused_without_any_store_lookup() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let counting = Instrumented::over(&f.store);
    let lookups = Arc::clone(&counting.lookups);
    let app = app(authenticator(counting, &f.clock));

    let mut typo = key.key().as_bytes().to_vec();
    let pos = typo.len() - 10;
    typo[pos] = if typo[pos] == b'a' { b'b' } else { b'a' };
    let res = call(&app, "x-api-key", std::str::from_utf8(&typo).unwrap()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::ChecksumMismatch));
    assert_eq!(lookups.load(Ordering::SeqCst), 0);

    // Truncated and garbage keys with the prefix: refused, still no lookup.
    for bad in [
        "cf_test_abc",
        "cf_test_0000000000000000000000000000000000000000000000000000",
    ] {
        let res = call(&app, "x-api-key", bad).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 0);

    let res = call(&app, "x-api-key", key.key()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_key_expires_when_the_clock_reaches_its_expiry() {
    let f = fixture();
    let start = FakeClock::DEFAULT_START.as_secs();
    let key = issue(&f, |r| r.expires_at = Some(start + 60)).await;
    let app = app(authenticator(f.store.clone(), &f.clock));

    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(59));
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(1));
    let res = call(&app, "x-api-key", key.key()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::ExpiredCredential));
}

#[tokio::test]
async fn revoking_through_the_caching_store_takes_effect_on_the_next_request() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let counting = Instrumented::over(&f.store);
    let lookups = Arc::clone(&counting.lookups);
    let cache = CachingKeyStore::with_clock(counting, f.clock.clone());
    let app = app(authenticator(cache.clone(), &f.clock));

    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "second request served from the cache"
    );

    // Revoke through the cache handle: the write reaches the memory store, the entry is dropped.
    cache
        .revoke(key.id(), f.clock.unix_seconds())
        .await
        .unwrap();
    let res = call(&app, "x-api-key", key.key()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::RevokedCredential));
}

#[tokio::test]
async fn a_revocation_made_elsewhere_is_seen_within_the_cache_ttl() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let cache = CachingKeyStore::with_clock(f.store.clone(), f.clock.clone())
        .with_ttl(Duration::from_secs(30));
    let app = app(authenticator(cache, &f.clock));

    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    f.keys.revoke(key.id()).await.unwrap(); // straight to the store, not through the cache
    f.clock.advance(Duration::from_secs(29));
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK,
        "stale within the TTL, as documented"
    );
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unknown_ids_are_negatively_cached() {
    let f = fixture();
    let counting = Instrumented::over(&f.store);
    let lookups = Arc::clone(&counting.lookups);
    let cache = CachingKeyStore::with_clock(counting, f.clock.clone())
        .with_negative_ttl(Duration::from_secs(5));
    let app = app(authenticator(cache, &f.clock));
    let stranger = KeyManager::new(MemoryKeyStore::new(), format(), KeyHasher::sha256())
        .issue("x", |_| {})
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            call(&app, "x-api-key", stranger.key()).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    f.clock.advance(Duration::from_secs(5));
    let _ = call(&app, "x-api-key", stranger.key()).await;
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_capacity() {
    let f = fixture();
    let cache = CachingKeyStore::with_clock(f.store.clone(), f.clock.clone())
        .with_capacity(32)
        .with_unknown_capacity(16);
    let app = app(authenticator(cache.clone(), &f.clock));
    let strangers = KeyManager::new(MemoryKeyStore::new(), format(), KeyHasher::sha256());
    for _ in 0..200 {
        let key = issue(&f, |_| {}).await;
        assert_eq!(
            call(&app, "x-api-key", key.key()).await.status(),
            StatusCode::OK
        );
        let stranger = strangers.issue("x", |_| {}).await.unwrap();
        let _ = call(&app, "x-api-key", stranger.key()).await;
    }
    assert!(cache.len() <= 32 + 16, "{} entries", cache.len());
    assert!(cache.len() >= 16, "{} entries", cache.len());
}

#[tokio::test]
async fn made_up_ids_never_push_known_keys_out_of_the_cache() {
    let f = fixture();
    let counting = Instrumented::over(&f.store);
    let lookups = Arc::clone(&counting.lookups);
    // Room for 10 keys in every shard, and for a single unknown id in each.
    let cache = CachingKeyStore::with_clock(counting, f.clock.clone())
        .with_capacity(160)
        .with_unknown_capacity(16);
    let app = app(authenticator(cache.clone(), &f.clock));
    let mut keys = Vec::new();
    for _ in 0..10 {
        let key = issue(&f, |_| {}).await;
        assert_eq!(
            call(&app, "x-api-key", key.key()).await.status(),
            StatusCode::OK
        );
        keys.push(key);
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 10);

    // A flood of well-formed keys the store does not know: each one costs a lookup.
    let strangers = KeyManager::new(MemoryKeyStore::new(), format(), KeyHasher::sha256());
    for _ in 0..500 {
        let stranger = strangers.issue("x", |_| {}).await.unwrap();
        let res = call(&app, "x-api-key", stranger.key()).await;
        assert_eq!(kind(&res), Some(ErrorKind::UnknownCredential));
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 510);
    assert!(cache.len() <= 10 + 16, "{} entries", cache.len());

    // The real keys are all still served from the cache.
    for key in &keys {
        assert_eq!(
            call(&app, "x-api-key", key.key()).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 510);
}

#[tokio::test]
async fn a_key_in_the_query_counts_only_where_a_query_source_is_configured() {
    use credentialflow::extract::CredentialSource;
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let get = |app: Router, uri: String| async move {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        match app.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    let uri = format!("/me?api_key={}", key.key());

    // By default only `X-API-Key` and `Authorization: Bearer` are read.
    let res = get(app(authenticator(f.store.clone(), &f.clock)), uri.clone()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::MissingCredential));

    let with_query = authenticator(f.store.clone(), &f.clock).with_sources([
        CredentialSource::api_key_header(),
        CredentialSource::query("api_key").unwrap(),
    ]);
    let res = get(app(with_query), uri).await;
    assert_eq!(res.status(), StatusCode::OK);
    // RFC 6750 §2.3: a response to a request with the credential in its URI is private.
    assert_eq!(res.headers()["cache-control"], "private");
    assert!(body(res).await.starts_with("alice|"));
}

#[tokio::test]
async fn a_store_that_fails_gives_503_never_an_allow() {
    let clock = FakeClock::new();
    let app = app(authenticator(Broken, &clock));
    let key = KeyManager::new(MemoryKeyStore::new(), format(), KeyHasher::sha256())
        .issue("x", |_| {})
        .await
        .unwrap();
    let res = call(&app, "x-api-key", key.key()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(kind(&res), Some(ErrorKind::StoreUnavailable));
}

#[tokio::test(start_paused = true)]
async fn a_store_that_stalls_past_its_timeout_gives_503() {
    let clock = FakeClock::new();
    let auth = authenticator(Stalled, &clock)
        .with_timeout(Duration::from_millis(300))
        .unwrap();
    let app = app(auth);
    let key = KeyManager::new(MemoryKeyStore::new(), format(), KeyHasher::sha256())
        .issue("x", |_| {})
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = call(&app, "x-api-key", key.key()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(kind(&res), Some(ErrorKind::StoreTimeout));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn a_deferred_store_behaves_like_the_memory_store() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let revoked = issue(&f, |_| {}).await;
    f.keys.revoke(revoked.id()).await.unwrap();
    let app = app(authenticator(Deferred(f.store.clone()), &f.clock));
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    let res = call(&app, "x-api-key", revoked.key()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::RevokedCredential));
}

#[tokio::test]
async fn a_key_sent_twice_is_400() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let app = app(authenticator(f.store.clone(), &f.clock));
    let twice = Request::get("/me")
        .header("x-api-key", key.key())
        .header("x-api-key", key.key())
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(twice).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(kind(&res), Some(ErrorKind::DuplicateCredential));

    let two_methods = Request::get("/me")
        .header("x-api-key", key.key())
        .header("authorization", format!("Bearer {}", key.key()))
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(two_methods).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(kind(&res), Some(ErrorKind::ConflictingCredentials));
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_request")
    );
}

#[tokio::test]
async fn credentials_of_another_kind_fall_through_to_the_next_authenticator() {
    let f = fixture();
    let jwt_like = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl";
    let bob = Principal::builder("bob", credentialflow::CredentialKind::Jwt).build();
    let other =
        credentialflow::test_support::StaticAuthenticator::bearer().with_token(jwt_like, bob);
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(
            authenticator(f.store.clone(), &f.clock).or(other),
        ));
    let res = call(&app, "authorization", &format!("Bearer {jwt_like}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "bob");

    // Another system's key is not ours either: with nothing else to read it, it is "missing".
    let only_keys = app_only_keys(&f);
    let res = call(&only_keys, "x-api-key", "sk_live_somebody_elses_key").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::MissingCredential));
}

fn app_only_keys(f: &Fixture) -> Router {
    app(authenticator(f.store.clone(), &f.clock))
}

#[tokio::test]
async fn rotation_keeps_both_keys_working_during_the_overlap() {
    let f = fixture();
    let old = issue(&f, |r| r.scopes = vec!["a".into()]).await;
    let new = f
        .keys
        .rotate(old.id(), Duration::from_secs(3600))
        .await
        .unwrap();
    let app = app(authenticator(f.store.clone(), &f.clock));
    assert_eq!(
        call(&app, "x-api-key", old.key()).await.status(),
        StatusCode::OK
    );
    let res = call(&app, "x-api-key", new.key()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(body(res).await.contains("|a|"), "scopes carried over");
    f.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        call(&app, "x-api-key", old.key()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "x-api-key", new.key()).await.status(),
        StatusCode::OK
    );
    let listed = f.keys.list("alice").await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn a_key_that_cannot_be_used_gets_no_successor() {
    use credentialflow::key::StoreError;
    let f = fixture();
    f.clock.advance(Duration::from_secs(1_000));
    type Configure = fn(&mut KeyRecord);
    let cases: [(&str, Configure); 4] = [
        ("suspended", |r| r.status = KeyStatus::Suspended),
        ("pending", |r| r.status = KeyStatus::PendingApproval),
        ("marked expired", |r| r.status = KeyStatus::Expired),
        ("past its expiry", |r| r.expires_at = Some(500)),
    ];
    for (case, configure) in cases {
        let key = issue(&f, configure).await;
        let rotated = f.keys.rotate(key.id(), Duration::from_secs(60)).await;
        assert!(matches!(rotated, Err(StoreError::NotActive)), "{case}");
    }
    let revoked = issue(&f, |_| {}).await;
    f.keys.revoke(revoked.id()).await.unwrap();
    let rotated = f.keys.rotate(revoked.id(), Duration::from_secs(60)).await;
    assert!(matches!(rotated, Err(StoreError::NotActive)), "revoked");
    // No successor was issued for any of them.
    assert_eq!(f.keys.list("alice").await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_revocation_made_during_a_rotation_is_kept_and_leaves_no_successor() {
    use credentialflow::key::StoreError;
    let clock = FakeClock::new();
    let store = Instrumented::default();
    let keys = KeyManager::with_clock(store.clone(), format(), KeyHasher::sha256(), clock.clone());
    let old = keys.issue("alice", |_| {}).await.unwrap();
    // Revoked "by another process" while the successor is inserted: after rotation read the
    // old key, before it retires it.
    *store.revoke_on_insert.lock().unwrap() = Some(old.id().to_owned());
    let rotated = keys.rotate(old.id(), Duration::from_secs(3600)).await;
    assert!(matches!(rotated, Err(StoreError::NotActive)));

    let app = app(authenticator(store.inner.clone(), &clock));
    let res = call(&app, "x-api-key", old.key()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::RevokedCredential));
    let stored = store.inner.fetch(old.id()).await.unwrap().unwrap();
    assert_eq!(stored.status, KeyStatus::Revoked);
    assert_eq!(
        stored.revoked_at,
        Some(7),
        "the revocation was not overwritten"
    );
    assert_eq!(stored.expires_at, Some(clock.unix_seconds() + 3600));
    // The successor was made, then revoked: nothing of alice's works.
    let listed = keys.list("alice").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.status == KeyStatus::Revoked));
}

#[tokio::test]
async fn a_rotation_with_no_overlap_retires_the_old_key_at_once() {
    let f = fixture();
    let old = issue(&f, |_| {}).await;
    let new = f.keys.rotate(old.id(), Duration::ZERO).await.unwrap();
    let app = app(authenticator(f.store.clone(), &f.clock));
    let res = call(&app, "x-api-key", old.key()).await;
    assert_eq!(kind(&res), Some(ErrorKind::ExpiredCredential));
    assert_eq!(
        call(&app, "x-api-key", new.key()).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn rotation_reads_the_old_key_past_the_cache() {
    use credentialflow::key::StoreError;
    let clock = FakeClock::new();
    let inner = MemoryKeyStore::new();
    let cached = CachingKeyStore::with_clock(inner.clone(), clock.clone());
    let keys = KeyManager::with_clock(cached.clone(), format(), KeyHasher::sha256(), clock.clone());
    let key = keys.issue("alice", |_| {}).await.unwrap();
    // The cache holds the key as active; then another process revokes it in the database.
    let app = app(authenticator(cached.clone(), &clock));
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    inner.revoke(key.id(), 9).await.unwrap();
    let rotated = keys.rotate(key.id(), Duration::from_secs(60)).await;
    assert!(matches!(rotated, Err(StoreError::NotActive)));
    assert_eq!(keys.list("alice").await.unwrap().len(), 1);
}

#[tokio::test]
async fn peppered_keys_verify_only_with_their_pepper() {
    let store = MemoryKeyStore::new();
    let clock = FakeClock::new();
    let peppered = KeyHasher::sha256()
        .with_pepper(Pepper::new(1, vec![7; 32]).unwrap())
        .unwrap();
    let keys = KeyManager::with_clock(store.clone(), format(), peppered.clone(), clock.clone());
    let key = keys.issue("alice", |_| {}).await.unwrap();

    let with =
        ApiKeyAuthenticator::new(format(), peppered, store.clone()).with_clock(clock.clone());
    assert_eq!(
        call(&app(with), "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );

    // A server missing the pepper cannot decide: 503, not 401 and never 200.
    let without = ApiKeyAuthenticator::new(format(), KeyHasher::sha256(), store).with_clock(clock);
    let res = call(&app(without), "x-api-key", key.key()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn last_use_is_recorded_at_most_once_a_minute() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let auth = authenticator(f.store.clone(), &f.clock).track_last_use(f.store.clone());
    let app = app(auth);
    let recorded = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        f.keys.list("alice").await.unwrap()[0].last_used_at
    };
    let t0 = f.clock.unix_seconds();
    assert_eq!(
        call(&app, "x-api-key", key.key()).await.status(),
        StatusCode::OK
    );
    assert_eq!(recorded().await, Some(t0));
    f.clock.advance(Duration::from_secs(30));
    let _ = call(&app, "x-api-key", key.key()).await;
    assert_eq!(recorded().await, Some(t0), "coalesced");
    f.clock.advance(Duration::from_secs(30));
    let _ = call(&app, "x-api-key", key.key()).await;
    assert_eq!(recorded().await, Some(t0 + 60));
}

#[tokio::test]
async fn last_use_is_written_once_a_minute_even_when_every_lookup_builds_a_fresh_record() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    // As a database store does: a fresh record per lookup, so no record's own mark stops a
    // burst whose first write has not landed yet.
    let store = Instrumented {
        fresh_copies: true,
        ..Instrumented::over(&f.store)
    };
    let app = app(authenticator(store.clone(), &f.clock).track_last_use(store.clone()));
    let writes = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        store.uses.load(Ordering::SeqCst)
    };
    for _ in 0..20 {
        assert_eq!(
            call(&app, "x-api-key", key.key()).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(writes().await, 1, "a burst is one write");
    f.clock.advance(Duration::from_secs(59));
    let _ = call(&app, "x-api-key", key.key()).await;
    assert_eq!(writes().await, 1, "still within the minute");
    f.clock.advance(Duration::from_secs(1));
    for _ in 0..5 {
        let _ = call(&app, "x-api-key", key.key()).await;
    }
    assert_eq!(writes().await, 2, "one more a minute later");
}

#[tokio::test]
async fn the_full_key_never_appears_in_debug_output_or_responses() {
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let secret_part = &key.key()[key.key().len() - 38..key.key().len() - 6];
    let auth = authenticator(f.store.clone(), &f.clock);
    let layer = AuthenticateLayer::new(auth);
    for text in [
        format!("{key:?}"),
        format!("{layer:?}"),
        format!("{:?}", f.store),
        format!("{:?}", f.keys.list("alice").await.unwrap()),
    ] {
        assert!(!text.contains(secret_part), "secret in {text}");
    }
    let app = Router::new()
        .route("/me", get(|| async { "ok" }))
        .layer(layer);
    let mut tampered = key.key().to_owned();
    tampered.replace_range(tampered.len() - 1.., "x");
    for value in [key.key(), tampered.as_str()] {
        let res = call(&app, "x-api-key", value).await;
        for (_, v) in res.headers() {
            assert!(!v.to_str().unwrap_or("").contains(secret_part));
        }
        if let Some(e) = res.extensions().get::<Error>() {
            assert!(!format!("{e} {e:?}").contains(secret_part));
        }
        assert!(!body(res).await.contains(secret_part));
    }
}

#[allow(dead_code)]
fn _infallible(_: Infallible) {}

#[tokio::test]
async fn a_finished_key_check_polled_again_stays_pending() {
    use credentialflow::authn::{Attempt, Authenticator};
    use std::task::{Context, Poll, Waker};
    let f = fixture();
    let key = issue(&f, |_| {}).await;
    let auth = authenticator(Deferred(f.store.clone()), &f.clock);
    let (parts, ()) = Request::get("/me")
        .header("x-api-key", key.key())
        .body(())
        .unwrap()
        .into_parts();
    let Attempt::Pending(fut) = auth.authenticate(&parts) else {
        panic!("a deferred store answers later");
    };
    let mut fut = Box::pin(fut);
    let principal = loop {
        if let Poll::Ready(done) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            break done.unwrap();
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(principal.subject(), "alice");
    // The store's future has finished: it is not polled again.
    for _ in 0..2 {
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
    }
}

/// What the authenticator answered, or what the reference below says it must: the outcome and
/// the audited reason with the scheme it is charged to. `Verified` is a key that parsed (only
/// the real key does here: any other change fails its checksum).
#[derive(Debug, PartialEq)]
enum Outcome {
    NoCredential,
    Refused(ErrorKind, Option<credentialflow::response::Scheme>),
    Verified,
}

fn outcome<F>(attempt: credentialflow::authn::Attempt<F>) -> Outcome {
    use credentialflow::authn::Attempt;
    match attempt {
        Attempt::NoCredential => Outcome::NoCredential,
        Attempt::Rejected(e) => Outcome::Refused(e.kind(), e.scheme().copied()),
        Attempt::Authenticated(_) | Attempt::Pending(_) => Outcome::Verified,
    }
}

/// The rules as the extractor states them, applied in their order: extract (length, syntax,
/// duplicates, conflicts), keep what has the prefix, then parse.
fn reference(parts: &http::request::Parts) -> Outcome {
    use credentialflow::extract::{CredentialExtractor, CredentialSource};
    use credentialflow::key::KeyParseError;
    let f = format();
    let extractor = CredentialExtractor::new([
        CredentialSource::api_key_header(),
        CredentialSource::bearer(),
    ]);
    match extractor.extract_matching(parts, |v| f.recognises(v)) {
        Err(e) => Outcome::Refused(e.kind(), e.scheme().copied()),
        Ok(None) => Outcome::NoCredential,
        Ok(Some(credential)) => match f.parse(credential.value()) {
            Ok(_) => Outcome::Verified,
            Err(KeyParseError::Checksum) => {
                Outcome::Refused(ErrorKind::ChecksumMismatch, Some(credential.scheme()))
            }
            Err(_) => Outcome::Refused(ErrorKind::InvalidCredential, Some(credential.scheme())),
        },
    }
}

/// A near-key: a real key, mistyped, cut, padded, or with another byte anywhere (header bytes
/// only: visible ASCII, space, tab and obs-text).
fn near_key(real: String) -> impl Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let header_byte = || prop_oneof![0x20u8..=0x7e, 0x80u8..=0xff, Just(b'\t')];
    let len = real.len();
    prop_oneof![
        Just(real.clone().into_bytes()),
        (0..len, header_byte()).prop_map({
            let real = real.clone();
            move |(at, b)| {
                let mut v = real.clone().into_bytes();
                v[at] = b;
                v
            }
        }),
        (0..len, proptest::sample::select(b"09AZaz_-.~+/=".to_vec())).prop_map({
            let real = real.clone();
            move |(at, b)| {
                let mut v = real.clone().into_bytes();
                v[at] = b;
                v
            }
        }),
        (0..len).prop_map({
            let real = real.clone();
            move |at| real.as_bytes()[..at].to_vec()
        }),
        proptest::sample::select(vec!["=", "==", "x", "_", " "]).prop_map({
            let real = real.clone();
            move |tail| format!("{real}{tail}").into_bytes()
        }),
        proptest::collection::vec(header_byte(), 0..80).prop_map(|rest| {
            let mut v = b"cf_test_".to_vec();
            v.extend(rest);
            v
        }),
        "[A-Za-z0-9._~+/=-]{0,70}".prop_map(String::into_bytes),
    ]
}

use proptest::prelude::Strategy;

#[test]
fn the_fast_path_answers_exactly_as_the_rules_in_order() {
    use credentialflow::authn::Authenticator;
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let f = fixture();
    let key = runtime.block_on(issue(&f, |_| {})).key().to_owned();
    let auth = authenticator(f.store.clone(), &f.clock);
    let placement = proptest::sample::select(vec![
        "x-api-key",
        "bearer",
        "both",
        "x-api-key twice",
        "x-api-key and basic",
        "lowercase bearer",
    ]);
    proptest!(ProptestConfig::with_cases(2000), |(value in near_key(key.clone()), other in near_key(key.clone()), place in placement)| {
        let mut builder = Request::get("/me");
        let bearer = |v: &[u8]| [b"Bearer ".as_slice(), v].concat();
        let values: Vec<(&str, Vec<u8>)> = match place {
            "x-api-key" => vec![("x-api-key", value.clone())],
            "bearer" => vec![("authorization", bearer(&value))],
            "both" => vec![("x-api-key", value.clone()), ("authorization", bearer(&other))],
            "x-api-key twice" => vec![("x-api-key", value.clone()), ("x-api-key", other.clone())],
            "x-api-key and basic" => vec![("x-api-key", value.clone()), ("authorization", b"Basic dXNlcjpwdw==".to_vec())],
            _ => vec![("authorization", [b"bearer ".as_slice(), &value].concat())],
        };
        for (name, v) in values {
            let Ok(v) = http::HeaderValue::from_bytes(&v) else { return Ok(()) };
            builder = builder.header(name, v);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        prop_assert_eq!(outcome(auth.authenticate(&parts)), reference(&parts), "{:?}", String::from_utf8_lossy(&value));
    });
}
