//! Remote JWKS and OIDC discovery end to end: a real hyper HTTP/1 identity provider on
//! loopback serving documents each test controls, a real axum `Router` with the
//! `Authenticate` layer over a `JwtAuthenticator` over `JwksKeySource`, driven with `oneshot`.
//!
//! TTLs and cool-downs run on a `FakeClock` (the background schedule on paused tokio time,
//! advanced alongside); fetch timeouts are short real timeouts.
#![cfg(feature = "jwks")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::jwks::{JwksErrorKind, JwksFetcher};
use credentialflow::jwt::{
    Algorithm, CryptoBackend, Issuer, JwksError, JwksKeySource, JwtAuthenticator, KeySource,
};
use credentialflow::{Error, ErrorKind, Principal};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::EllipticCurve;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

const AUD: &str = "orders-api";

// ---------------------------------------------------------------------------------------------
// Keys and tokens

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn provider() -> &'static CryptoProvider {
    CryptoBackend::default_backend()
        .expect("a backend")
        .provider()
}

#[derive(Clone, Copy, Debug)]
enum Fixture {
    RsaA,
    RsaB,
    Ed,
    Ec,
}

impl Fixture {
    fn alg(self) -> Algorithm {
        match self {
            Self::RsaA | Self::RsaB => Algorithm::RS256,
            Self::Ed => Algorithm::EdDSA,
            Self::Ec => Algorithm::ES256,
        }
    }

    fn encoding_key(self) -> EncodingKey {
        match self {
            Self::RsaA => EncodingKey::from_rsa_pem(&fixture("rsa2048-private-TEST-ONLY.pem")),
            Self::RsaB => EncodingKey::from_rsa_pem(&fixture("rsa2048-b-private-TEST-ONLY.pem")),
            Self::Ed => EncodingKey::from_ed_pem(&fixture("ed25519-private-TEST-ONLY.pem")),
            Self::Ec => EncodingKey::from_ec_pem(&fixture("ec-p256-private-TEST-ONLY.pem")),
        }
        .expect("fixture key")
    }

    /// The public JWK, derived from the private fixture with the explicit provider.
    fn jwk(self, kid: &str) -> Value {
        let key = self.encoding_key();
        let utils = &provider().key_utils;
        match self {
            Self::RsaA | Self::RsaB => {
                let (n, e) = (utils.rsa_pub_components_from_private_key)(key.as_bytes()).unwrap();
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": B64.encode(n), "e": B64.encode(e)})
            }
            Self::Ed => {
                let x = (utils.ed_pub_components_from_private_key)(
                    key.as_bytes(),
                    &EllipticCurve::Ed25519,
                )
                .unwrap();
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64.encode(x)})
            }
            Self::Ec => {
                let (_, x, y) =
                    (utils.ec_pub_components_from_private_key)(key.as_bytes(), Algorithm::ES256)
                        .unwrap();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": B64.encode(x), "y": B64.encode(y)})
            }
        }
    }
}

fn jwks(keys: &[(Fixture, &str)]) -> String {
    json!({"keys": keys.iter().map(|(f, kid)| f.jwk(kid)).collect::<Vec<_>>()}).to_string()
}

fn now() -> u64 {
    FakeClock::new().unix_seconds()
}

/// A token of `iss` signed with `key`, naming `kid`.
fn token(iss: &str, key: Fixture, kid: &str) -> String {
    let alg = key.alg();
    let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": kid});
    let claims = json!({"iss": iss, "aud": AUD, "sub": "alice", "exp": now() + 300, "iat": now()});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signer = (provider().signer_factory)(&alg, &key.encoding_key()).expect("signer");
    let sig = signer.try_sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", B64.encode(sig))
}

/// A token naming `kid` with a junk signature: the lookup happens before any verification.
fn garbage(iss: &str, kid: &str) -> String {
    let header = json!({"alg": "RS256", "kid": kid});
    let claims = json!({"iss": iss, "aud": AUD, "sub": "mallory", "exp": now() + 300});
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode([7u8; 256])
    )
}

// ---------------------------------------------------------------------------------------------
// The identity provider on loopback

#[derive(Clone)]
enum Reply {
    Json {
        body: String,
        max_age: Option<u64>,
    },
    Status(u16),
    /// Headers never come.
    Stall,
    /// `200` with a body of this many bytes (no `Content-Length`: streamed).
    Huge(usize),
}

struct IdpState {
    jwks: Mutex<Reply>,
    discovery: Mutex<Option<Value>>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    discovery_path: Mutex<String>,
}

#[derive(Clone)]
struct Idp {
    addr: SocketAddr,
    state: Arc<IdpState>,
}

impl Idp {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState {
            jwks: Mutex::new(reply),
            discovery: Mutex::new(None),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            discovery_path: Mutex::new(String::new()),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, req.uri().path()).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn serve(&self, reply: Reply) {
        *self.state.jwks.lock().unwrap() = reply;
    }

    fn serve_keys(&self, keys: &[(Fixture, &str)]) {
        self.serve(Reply::Json {
            body: jwks(keys),
            max_age: None,
        });
    }

    fn fetches(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn answer(state: &IdpState, path: &str) -> Response<Full<Bytes>> {
    let json = |body: String, max_age: Option<u64>| {
        let mut res = Response::builder().header("content-type", "application/json");
        if let Some(age) = max_age {
            res = res.header("cache-control", format!("public, max-age={age}"));
        }
        res.body(Full::new(Bytes::from(body))).unwrap()
    };
    if path.contains("/.well-known/") {
        state.discovery_hits.fetch_add(1, Ordering::SeqCst);
        *state.discovery_path.lock().unwrap() = path.to_owned();
        let doc = state.discovery.lock().unwrap().clone();
        return match doc {
            Some(doc) => json(doc.to_string(), None),
            None => Response::builder()
                .status(404)
                .body(Full::default())
                .unwrap(),
        };
    }
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let reply = state.jwks.lock().unwrap().clone();
    match reply {
        Reply::Json { body, max_age } => json(body, max_age),
        Reply::Status(code) => Response::builder()
            .status(code)
            .body(Full::default())
            .unwrap(),
        Reply::Stall => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Huge(len) => {
            // Valid JSON prefix, then padding: only a size limit stops it.
            let mut body = br#"{"keys":[],"pad":""#.to_vec();
            body.resize(len, b' ');
            Response::new(Full::new(Bytes::from(body)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The app

fn source(idp: &Idp, clock: &FakeClock) -> JwksKeySource {
    JwksKeySource::builder(idp.url("/jwks"))
        .dangerous_allow_http()
        .clock(clock.clone())
        .fetch_timeout(Duration::from_millis(500))
        .build()
        .expect("source")
}

fn app<K: KeySource>(issuers: Vec<(&str, K)>, clock: &FakeClock) -> Router {
    let mut builder = JwtAuthenticator::builder().clock(clock.clone());
    for (iss, source) in issuers {
        builder = builder.issuer(Issuer::new(iss).audience(AUD).key_source(source));
    }
    Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(
            builder.build().expect("authenticator"),
        ))
}

async fn call(app: &Router, token: &str) -> Response<Body> {
    let request = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    match app.clone().oneshot(request).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

fn kind(res: &Response<Body>) -> Option<ErrorKind> {
    res.extensions().get::<Error>().map(Error::kind)
}

fn jwks_kind(res: &Response<Body>) -> Option<JwksErrorKind> {
    let error = res.extensions().get::<Error>()?;
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        if let Some(j) = s.downcast_ref::<JwksError>() {
            return Some(j.kind());
        }
        source = s.source();
    }
    None
}

/// Polls `cond` on real time for up to 5 s (the background task runs on its own).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Moves the fake clock and tokio's (paused for the moment) by `by`, so the background
/// schedule wakes as it would after that long.
async fn advance(clock: &FakeClock, by: Duration) {
    clock.advance(by);
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

const ISS: &str = "https://idp.example";

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn ten_requests_cost_one_fetch() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.expect("loaded");
    let app = app(vec![(ISS, keys.clone())], &clock);
    let token = token(ISS, Fixture::RsaA, "a");
    for _ in 0..10 {
        let res = call(&app, &token).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(idp.fetches(), 1);
    let stats = keys.stats();
    assert_eq!((stats.fetches(), stats.failures(), stats.keys()), (1, 0, 1));
    assert!(stats.loaded());
    assert_eq!(keys.key_ids(), ["a"]);
}

#[tokio::test]
async fn eddsa_and_es256_keys_verify_too() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[
        (Fixture::Ed, "ed"),
        (Fixture::Ec, "ec"),
        (Fixture::RsaA, "rsa"),
    ]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys)], &clock);
    for (fixture, kid) in [
        (Fixture::Ed, "ed"),
        (Fixture::Ec, "ec"),
        (Fixture::RsaA, "rsa"),
    ] {
        let res = call(&app, &token(ISS, fixture, kid)).await;
        assert_eq!(res.status(), StatusCode::OK, "{fixture:?}");
    }
    // A key under the wrong kid is a bad signature, not a refetch.
    let res = call(&app, &token(ISS, Fixture::RsaB, "rsa")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&res), Some(ErrorKind::InvalidSignature));
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn rotation_with_overlap_accepts_old_and_new_keys() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "old")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys.clone())], &clock);
    let old = token(ISS, Fixture::RsaA, "old");
    assert_eq!(call(&app, &old).await.status(), StatusCode::OK);

    // The provider publishes the new key beside the old one and starts signing with it.
    idp.serve_keys(&[(Fixture::RsaA, "old"), (Fixture::RsaB, "new")]);
    let new = token(ISS, Fixture::RsaB, "new");
    assert_eq!(call(&app, &new).await.status(), StatusCode::OK);
    assert_eq!(idp.fetches(), 2, "one refetch picked the new kid up");
    for _ in 0..5 {
        assert_eq!(call(&app, &old).await.status(), StatusCode::OK);
        assert_eq!(call(&app, &new).await.status(), StatusCode::OK);
    }
    assert_eq!(idp.fetches(), 2);
    let stats = keys.stats();
    assert_eq!(stats.unknown_kid_refetches(), 1);
    assert_eq!(stats.key_set_changes(), 2);

    // The old key is withdrawn; once the cool-down is over an unknown kid refetches again.
    idp.serve_keys(&[(Fixture::RsaB, "new")]);
    clock.advance(Duration::from_secs(31));
    let gone = token(ISS, Fixture::RsaA, "gone");
    let res = call(&app, &gone).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(idp.fetches(), 3);
    assert_eq!(call(&app, &old).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, &new).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn random_kid_flood_costs_at_most_one_fetch_per_cooldown() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys.clone())], &clock);

    // 500 at once (they share one refetch), then 500 one after another (negative cache).
    let tokens: Vec<String> = (0..1000)
        .map(|i| garbage(ISS, &format!("rnd-{i}")))
        .collect();
    let burst = futures_util::future::join_all(tokens[..500].iter().map(|t| call(&app, t))).await;
    for res in &burst {
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(kind(res), Some(ErrorKind::UnknownCredential));
    }
    for t in &tokens[500..] {
        let res = call(&app, t).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(kind(&res), Some(ErrorKind::UnknownCredential));
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    assert_eq!(idp.fetches(), 2, "the initial load and one refetch");
    assert!(keys.stats().cooldown_hits() >= 500);

    // Next cool-down: one more fetch for another 1,000.
    clock.advance(Duration::from_secs(30));
    for t in &tokens {
        assert_eq!(call(&app, t).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(idp.fetches(), 3);
    // The valid key never stopped working.
    assert_eq!(
        call(&app, &token(ISS, Fixture::RsaA, "a")).await.status(),
        StatusCode::OK
    );
    assert_eq!(idp.fetches(), 3);
}

#[tokio::test]
async fn concurrent_misses_from_many_tasks_cause_one_fetch() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys)], &clock);
    idp.serve_keys(&[(Fixture::RsaA, "a"), (Fixture::RsaB, "b")]);
    let token = token(ISS, Fixture::RsaB, "b");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let app = app.clone();
            let token = token.clone();
            tokio::spawn(async move { call(&app, &token).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_two_threads_cause_one_fetch() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a"), (Fixture::RsaB, "b")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    // No ready(): every task misses while the first load is in flight, or right after it.
    let app = app(vec![(ISS, keys)], &clock);
    let token = token(ISS, Fixture::RsaB, "b");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let app = app.clone();
            let token = token.clone();
            tokio::spawn(async move { call(&app, &token).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn never_loaded_is_503_with_retry_after() {
    let idp = Idp::start(Reply::Status(500)).await;
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    let err = keys.ready().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable);
    assert!(err.retry_after().is_some());
    let app = app(vec![(ISS, keys.clone())], &clock);
    let token = token(ISS, Fixture::RsaA, "a");
    for _ in 0..3 {
        let res = call(&app, &token).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(kind(&res), Some(ErrorKind::StoreUnavailable));
        let after: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&after), "{after}");
        assert_eq!(jwks_kind(&res), Some(JwksErrorKind::Status));
    }
    // Garbage tokens too: 503, never 401 or 500, and still bounded fetches.
    let res = call(&app, &garbage(ISS, "x")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(idp.fetches() <= 3, "{}", idp.fetches());
    assert!(!keys.stats().loaded());

    // The provider comes back: the next refetch after the cool-down loads the keys.
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    clock.advance(Duration::from_secs(30));
    assert_eq!(call(&app, &token).await.status(), StatusCode::OK);
}

async fn assert_failure_keeps_keys(reply: Reply, expected: JwksErrorKind) {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = JwksKeySource::builder(idp.url("/jwks"))
        .dangerous_allow_http()
        .clock(clock.clone())
        .fetch_timeout(Duration::from_millis(300))
        .max_response_size(64 * 1024)
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys.clone())], &clock);
    let good = token(ISS, Fixture::RsaA, "a");

    idp.serve(reply);
    // An unknown kid makes the source refetch: that fails, so the kid may be fine → 503.
    let res = call(&app, &token(ISS, Fixture::RsaB, "b")).await;
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{expected:?}"
    );
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(jwks_kind(&res), Some(expected));
    // The previous keys keep working, and the failure is counted.
    assert_eq!(call(&app, &good).await.status(), StatusCode::OK);
    let stats = keys.stats();
    assert_eq!(stats.failures(), 1, "{stats:?}");
    assert_eq!(stats.keys(), 1);
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn server_error_keeps_previous_keys() {
    assert_failure_keeps_keys(Reply::Status(500), JwksErrorKind::Status).await;
}

#[tokio::test]
async fn invalid_json_keeps_previous_keys() {
    let reply = Reply::Json {
        body: "{\"keys\": [".into(),
        max_age: None,
    };
    assert_failure_keeps_keys(reply, JwksErrorKind::InvalidDocument).await;
}

#[tokio::test]
async fn a_set_without_usable_keys_keeps_previous_keys() {
    let reply = Reply::Json {
        body:
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","kid":"b"}]}"#
                .into(),
        max_age: None,
    };
    assert_failure_keeps_keys(reply, JwksErrorKind::NoUsableKeys).await;
}

#[tokio::test]
async fn stalled_server_times_out_and_keeps_previous_keys() {
    let started = std::time::Instant::now();
    assert_failure_keeps_keys(Reply::Stall, JwksErrorKind::Timeout).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn ten_mib_body_is_cut_off_and_keeps_previous_keys() {
    assert_failure_keeps_keys(Reply::Huge(10 * 1024 * 1024), JwksErrorKind::TooLarge).await;
}

#[tokio::test]
async fn dropped_request_during_a_fetch_neither_panics_nor_fetches_twice() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys.clone())], &clock);

    idp.serve(Reply::Stall);
    let new = token(ISS, Fixture::RsaB, "b");
    // Start a request that misses, and drop it while its refetch hangs.
    let dropped = tokio::time::timeout(Duration::from_millis(50), call(&app, &new)).await;
    assert!(dropped.is_err(), "the request was still waiting");
    // The fetch goes on without it; serve the new key before it times out... it cannot: the
    // stalled connection times out. A second request joins that same fetch.
    let res = call(&app, &new).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        idp.fetches(),
        2,
        "one refetch, joined by the second request"
    );
    assert_eq!(keys.stats().failures(), 1);
    // Known keys were never affected.
    assert_eq!(
        call(&app, &token(ISS, Fixture::RsaA, "a")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_refresh_in_the_background_before_the_ttl_runs_out() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve(Reply::Json {
        body: jwks(&[(Fixture::RsaA, "a")]),
        max_age: Some(120),
    });
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys.clone())], &clock);
    let refreshes = keys.stats().refreshes();
    idp.serve(Reply::Json {
        body: jwks(&[(Fixture::RsaA, "a"), (Fixture::RsaB, "b")]),
        max_age: Some(120),
    });
    // Not yet: 80 % of 120 s is 96 s.
    advance(&clock, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(idp.fetches(), 1);
    // By 108 s the refresh has run, before the TTL ends.
    advance(&clock, Duration::from_secs(20)).await;
    eventually("background refresh", || idp.fetches() == 2).await;
    eventually("new set stored", || keys.key_ids().len() == 2).await;
    assert_eq!(
        call(&app, &token(ISS, Fixture::RsaB, "b")).await.status(),
        StatusCode::OK
    );
    assert_eq!(idp.fetches(), 2, "the new kid needed no refetch");
    assert_eq!(
        keys.stats().refreshes(),
        refreshes + 1,
        "one scheduled refresh"
    );
}

#[tokio::test]
async fn max_age_is_clamped_to_the_configured_bounds() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve(Reply::Json {
        body: jwks(&[(Fixture::RsaA, "a")]),
        max_age: Some(1),
    });
    let clock = FakeClock::new();
    let keys = JwksKeySource::builder(idp.url("/jwks"))
        .dangerous_allow_http()
        .clock(clock.clone())
        .ttl_bounds(Duration::from_secs(100), Duration::from_secs(1000))
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    // max-age=1 is raised to 100 s: nothing at 50 s, a refresh by 100 s.
    advance(&clock, Duration::from_secs(50)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(idp.fetches(), 1);
    advance(&clock, Duration::from_secs(50)).await;
    eventually("refresh", || idp.fetches() == 2).await;
}

#[tokio::test]
async fn failed_refresh_backs_off_and_stale_keys_keep_serving() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let app = app(vec![(ISS, keys.clone())], &clock);
    idp.serve(Reply::Status(503));
    // Past the default 5 min TTL: the refresh fails, then retries after 0.5-1 s, 1-2 s, ...
    advance(&clock, Duration::from_secs(300)).await;
    eventually("failed refresh", || keys.stats().failures() == 1).await;
    for expected in 2..=4 {
        advance(&clock, Duration::from_secs(1u64 << (expected - 1))).await;
        eventually("retry", || keys.stats().failures() == expected).await;
    }
    assert_eq!(idp.fetches(), 5);
    // Stale keys keep serving.
    assert_eq!(
        call(&app, &token(ISS, Fixture::RsaA, "a")).await.status(),
        StatusCode::OK
    );
    // And the provider's recovery is picked up by the next retry.
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    advance(&clock, Duration::from_secs(16)).await;
    eventually("recovered", || {
        keys.stats().failures() == 4 && idp.fetches() == 6
    })
    .await;
}

#[tokio::test]
async fn background_task_stops_when_the_source_is_dropped() {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let clock = FakeClock::new();
    let keys = source(&idp, &clock);
    keys.ready().await.unwrap();
    let weak_probe = keys.clone();
    drop(keys);
    drop(weak_probe);
    advance(&clock, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(idp.fetches(), 1, "no refresh after the drop");
}

#[tokio::test]
async fn http_is_refused_without_the_dangerous_option() {
    let err = JwksKeySource::builder("http://127.0.0.1:1/jwks")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("http"), "{err}");
    assert!(JwksKeySource::oidc("http://127.0.0.1:1").build().is_err());
    assert!(
        JwksKeySource::builder("https://127.0.0.1:1/jwks")
            .build()
            .is_ok()
    );
    assert!(JwksKeySource::builder("not a url").build().is_err());
}

#[tokio::test]
async fn two_issuers_each_with_their_own_server() {
    let (idp1, idp2) = (
        Idp::start(Reply::Status(500)).await,
        Idp::start(Reply::Status(500)).await,
    );
    idp1.serve_keys(&[(Fixture::RsaA, "k")]);
    idp2.serve_keys(&[(Fixture::Ed, "k")]);
    let clock = FakeClock::new();
    let (one, two) = ("https://one.example", "https://two.example");
    let s1 = JwksKeySource::builder(idp1.url("/jwks"))
        .issuer(one)
        .dangerous_allow_http()
        .clock(clock.clone())
        .build()
        .unwrap();
    let s2 = JwksKeySource::builder(idp2.url("/jwks"))
        .issuer(two)
        .dangerous_allow_http()
        .clock(clock.clone())
        .build()
        .unwrap();
    s1.ready().await.unwrap();
    s2.ready().await.unwrap();
    let app = app(vec![(one, s1), (two, s2)], &clock);
    assert_eq!(
        call(&app, &token(one, Fixture::RsaA, "k")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&app, &token(two, Fixture::Ed, "k")).await.status(),
        StatusCode::OK
    );
    // Same kid, other issuer's key: never crosses over.
    let res = call(&app, &token(one, Fixture::Ed, "k")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = call(&app, &token(two, Fixture::RsaA, "k")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((idp1.fetches(), idp2.fetches()), (1, 1));
}

async fn oidc_idp(issuer_in_document: Option<&str>) -> (Idp, String) {
    let idp = Idp::start(Reply::Status(500)).await;
    idp.serve_keys(&[(Fixture::RsaA, "a")]);
    let issuer = idp.url("/tenant");
    let doc = json!({
        "issuer": issuer_in_document.unwrap_or(&issuer),
        "jwks_uri": idp.url("/jwks"),
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    *idp.state.discovery.lock().unwrap() = Some(doc);
    (idp, issuer)
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks_uri() {
    let (idp, issuer) = oidc_idp(None).await;
    let clock = FakeClock::new();
    let keys = JwksKeySource::oidc(issuer.as_str())
        .dangerous_allow_http()
        .clock(clock.clone())
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    assert_eq!(keys.issuer(), Some(issuer.as_str()));
    let app = app(vec![(&issuer, keys.clone())], &clock);
    assert_eq!(
        call(&app, &token(&issuer, Fixture::RsaA, "a"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(idp.fetches(), 1);
    assert_eq!(keys.stats().discoveries(), 1);
}

#[tokio::test]
async fn rfc_8414_metadata_works_too() {
    let (idp, issuer) = oidc_idp(None).await;
    let keys = JwksKeySource::oauth_authorization_server(issuer.as_str())
        .dangerous_allow_http()
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        *idp.state.discovery_path.lock().unwrap(),
        "/.well-known/oauth-authorization-server/tenant"
    );
}

#[tokio::test]
async fn discovery_runs_again_after_a_failed_jwks_fetch() {
    let (idp, issuer) = oidc_idp(None).await;
    let clock = FakeClock::new();
    let keys = JwksKeySource::oidc(issuer.as_str())
        .dangerous_allow_http()
        .clock(clock.clone())
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    assert_eq!(
        *idp.state.discovery_path.lock().unwrap(),
        "/tenant/.well-known/openid-configuration"
    );
    let app = app(vec![(&issuer, keys.clone())], &clock);
    // The provider moves its keys: the old jwks_uri fails once, discovery then finds the new.
    idp.serve(Reply::Status(404));
    let res = call(&app, &token(&issuer, Fixture::RsaB, "b")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    idp.serve_keys(&[(Fixture::RsaA, "a"), (Fixture::RsaB, "b")]);
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        call(&app, &token(&issuer, Fixture::RsaB, "b"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), 2);
    assert_eq!(keys.stats().discoveries(), 2);
}

#[tokio::test]
async fn oidc_discovery_with_another_issuer_is_refused() {
    let (idp, issuer) = oidc_idp(Some("https://evil.example")).await;
    let clock = FakeClock::new();
    let keys = JwksKeySource::oidc(issuer.as_str())
        .dangerous_allow_http()
        .clock(clock.clone())
        .build()
        .unwrap();
    let err = keys.ready().await.unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<JwksError>());
    assert_eq!(
        source.map(JwksError::kind),
        Some(JwksErrorKind::IssuerMismatch)
    );
    assert_eq!(
        idp.fetches(),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );
    let app = app(vec![(&issuer, keys)], &clock);
    let res = call(&app, &token(&issuer, Fixture::RsaA, "a")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn discovered_http_jwks_uri_is_refused_without_the_option() {
    // An https issuer whose (fake) metadata points at http: the fetcher below answers for it.
    #[derive(Clone)]
    struct Canned;
    impl JwksFetcher for Canned {
        async fn get(&self, uri: &Uri, _max: usize) -> Result<Response<Bytes>, JwksError> {
            assert_eq!(uri.path(), "/.well-known/openid-configuration");
            let doc =
                json!({"issuer": "https://idp.example", "jwks_uri": "http://idp.example/jwks"});
            Ok(Response::new(Bytes::from(doc.to_string())))
        }
    }
    let keys = JwksKeySource::oidc("https://idp.example")
        .fetcher(Canned)
        .build()
        .unwrap();
    let err = keys.ready().await.unwrap_err();
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<JwksError>());
    assert_eq!(
        source.map(JwksError::kind),
        Some(JwksErrorKind::InsecureUrl)
    );
}

#[tokio::test]
async fn a_custom_fetcher_is_used() {
    struct InMemory(String, AtomicUsize);
    impl JwksFetcher for InMemory {
        async fn get(&self, _uri: &Uri, _max: usize) -> Result<Response<Bytes>, JwksError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(Bytes::from(self.0.clone())))
        }
    }
    let fetcher = Arc::new(InMemory(jwks(&[(Fixture::Ed, "ed")]), AtomicUsize::new(0)));
    let keys = JwksKeySource::builder("https://idp.example/jwks")
        .fetcher(Arc::clone(&fetcher))
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    let clock = FakeClock::new();
    let app = app(vec![(ISS, keys)], &clock);
    assert_eq!(
        call(&app, &token(ISS, Fixture::Ed, "ed")).await.status(),
        StatusCode::OK
    );
    assert_eq!(fetcher.1.load(Ordering::SeqCst), 1);
}
