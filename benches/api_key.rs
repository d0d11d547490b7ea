//! The API-key layer over the in-memory store, against a bare service and a plain static compare.
//!
//! Every row clones its service and `oneshot`s one request per iteration (`Request<()>` in,
//! `Response<()>` out), requests built outside the timed routine. Rows:
//!
//! - `bare`: the inner service alone (the baseline);
//! - `static_compare`: what tower-http's deprecated bearer check does — compare the header with
//!   one fixed key using `==` (variable time, no hashing, no principal): a floor, not a peer;
//! - `valid`: parse, checksum, memory-store lookup, SHA-256, constant-time compare, lifecycle
//!   check, `Principal` into the extensions;
//! - `valid_peppered`: the same with HMAC-SHA-256;
//! - `floor_401`: no layer; a service that drops the request and answers the same `401` (same
//!   two challenges, the audit `Error` in the extensions) from prebuilt values, in fresh maps:
//!   what a rejection costs built the plain way. The layer builds its `401` in the refused
//!   request's own header map instead (two allocations and two frees fewer), so
//!   `checksum_rejected - floor_401` is less than the key check itself costs;
//! - `floor_layer_401`: the same `Authenticate` layer over an authenticator that refuses every
//!   request at once with the checksum error, reading nothing: what any refusal costs through
//!   the layer (the `401` in the recycled maps, the audit `Error`, the layer's clone and
//!   counters). `checksum_rejected - floor_layer_401` is the API-key check itself;
//! - `checksum_rejected`: a mistyped key, refused before any lookup;
//! - `unknown_id`: a well-formed key the store does not know.
//!
//! The `api_key_routed` group repeats `bare`, `valid` and `checksum_rejected` with requests that
//! already carry an extension, as requests inside an axum `Router` do: the refused request's
//! extension map then holds the audit `Error`, so the `401` allocates two maps fewer.
//!
//! The `api_key_typical` group repeats `bare`, `valid`, `floor_layer_401` and
//! `checksum_rejected` with the fields a real client sends besides its key (`host`,
//! `user-agent`, `accept`, `accept-encoding`, `x-request-id`): every lookup then walks six
//! fields, and a refusal empties six.
//!
//! Targets (issue 4), as overhead over `bare`: `valid` ≤ 1 µs, `checksum_rejected` ≤ 150 ns.
//!
//! ```text
//! cargo bench --bench api_key --all-features -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! On a noisy machine compare two rows in alternating batches instead (`benches/support/ab.rs`):
//!
//! ```text
//! cargo bench --bench api_key --all-features -- --ab api_key/bare api_key/checksum_rejected
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use credentialflow::authn::{Attempt, AuthenticateLayer, Authenticator};
use credentialflow::extract::CredentialSource;
use credentialflow::key::{
    ApiKeyAuthenticator, KeyFormat, KeyHasher, KeyManager, MemoryKeyStore, Pepper,
};
use credentialflow::response::Scheme;
use credentialflow::{Error, ErrorKind, Principal};
use criterion::{BatchSize, Criterion, criterion_group};

#[path = "support/ab.rs"]
mod ab;

/// Requests per timed batch, as in the `authz` bench: small, so that a batch's requests are
/// still in cache when they are served, as a request is when a server has just parsed it. With
/// criterion's `SmallInput` a batch holds a tenth of a sample's iterations (tens of thousands
/// of requests, megabytes), and every allocation and free in every row pays cache misses a
/// server does not: `bare` alone measured 62 ns in batches of 64 and 105 ns that way.
const BATCH: u64 = 64;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

async fn ok(_req: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a benched service waited; this bench cannot drive it"),
    }
}

fn request(key: String) -> impl Fn() -> Request<()> + Clone + 'static {
    move || {
        Request::get("/orders/42")
            .header("x-api-key", key.as_str())
            .body(())
            .expect("valid request")
    }
}

/// A request with the fields a client such as curl or a browser-side `fetch` sends with it.
fn typical(key: String) -> impl Fn() -> Request<()> + Clone + 'static {
    move || {
        Request::get("/orders/42")
            .header("host", "api.example.com")
            .header("user-agent", "curl/8.5.0")
            .header("accept", "application/json")
            .header("accept-encoding", "gzip, br")
            .header("x-request-id", "7f3c9a2e-4b1d-4c8e-9f0a-1d2e3f4a5b6c")
            .header("x-api-key", key.as_str())
            .body(())
            .expect("valid request")
    }
}

/// A request as it reaches a layer inside an axum `Router`: routing has already put an extension
/// into it (axum inserts `MatchedPath` and the path parameters), so its extension map exists.
#[derive(Clone, Copy)]
struct Routed;

fn routed(key: String) -> impl Fn() -> Request<()> + Clone + 'static {
    let plain = request(key);
    move || {
        let mut req = plain();
        req.extensions_mut().insert(Routed);
        req
    }
}

fn row<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    svc: S,
    make: impl Fn() -> Request<()> + Clone + 'static,
    expect: StatusCode,
) where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + 'static,
{
    let status = now(svc.clone().oneshot(make()))
        .expect("infallible")
        .status();
    assert_eq!(status, expect, "{name}");
    if ab::collecting() {
        ab::register(
            name,
            Box::new(move |n| ab::time_batch(n, &make, |req| now(svc.clone().oneshot(req)))),
        );
        return;
    }
    group.bench_function(name, |b| {
        b.iter_batched(
            &make,
            |req| now(black_box(svc.clone()).oneshot(req)),
            BatchSize::NumIterations(BATCH),
        );
    });
}

/// Refuses every request at once, as the API-key authenticator refuses a mistyped key, without
/// reading it; it reports the same sources, so the layer answers with the same `401`.
struct RefuseAtOnce;

impl Authenticator for RefuseAtOnce {
    type Future = std::future::Ready<Result<Principal, Error>>;

    fn authenticate(&self, _request: &http::request::Parts) -> Attempt<Self::Future> {
        Attempt::Rejected(Error::new(ErrorKind::ChecksumMismatch).with_scheme(Scheme::API_KEY))
    }

    fn sources(&self) -> Vec<CredentialSource> {
        vec![
            CredentialSource::api_key_header(),
            CredentialSource::bearer(),
        ]
    }
}

fn issue(store: &MemoryKeyStore, hasher: KeyHasher, owner: &str) -> String {
    let keys = KeyManager::new(
        store.clone(),
        KeyFormat::new("cf_live").expect("prefix"),
        hasher,
    );
    let issued = now(keys.issue(owner, |r| {
        r.scopes = vec![
            "orders:read".into(),
            "orders:write".into(),
            "users:read".into(),
        ];
        r.tenant = Some("acme".into());
    }))
    .expect("issue");
    issued.key().to_owned()
}

fn bench(c: &mut Criterion) {
    let format = KeyFormat::new("cf_live").expect("prefix");
    let store = MemoryKeyStore::new();
    // A store of realistic size: 10,000 keys.
    for i in 0..10_000 {
        let _ = issue(&store, KeyHasher::sha256(), &format!("user-{i}"));
    }
    let valid = issue(&store, KeyHasher::sha256(), "alice");
    let pepper = KeyHasher::sha256()
        .with_pepper(Pepper::new(1, vec![0x5a; 32]).expect("pepper"))
        .expect("hasher");
    let peppered_store = MemoryKeyStore::new();
    let peppered = issue(&peppered_store, pepper.clone(), "alice");

    let mut typo = valid.clone().into_bytes();
    let at = typo.len() - 12;
    typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    let (valid_key, typo_key) = (valid.clone(), typo.clone());
    let unknown = issue(&MemoryKeyStore::new(), KeyHasher::sha256(), "nobody");

    let layer = AuthenticateLayer::new(ApiKeyAuthenticator::new(
        format.clone(),
        KeyHasher::sha256(),
        store,
    ));
    let peppered_layer =
        AuthenticateLayer::new(ApiKeyAuthenticator::new(format, pepper, peppered_store));

    let fixed: &'static str = Box::leak(valid.clone().into_boxed_str());
    let static_compare = service_fn(move |req: Request<()>| {
        let allowed = req
            .headers()
            .get("x-api-key")
            .is_some_and(|v| v.as_bytes() == fixed.as_bytes());
        async move {
            let mut res = Response::new(());
            if !allowed {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok::<_, Infallible>(res)
        }
    });

    // The same 401 with the same two RFC 6750 challenges and the audit `Error` in the response
    // extensions, built the plain way: the request dropped, then fresh maps filled from
    // prebuilt values.
    let challenges = [
        HeaderValue::from_static("ApiKey realm=\"api\", error=\"invalid_token\""),
        HeaderValue::from_static("Bearer realm=\"api\""),
    ];
    let floor_401 = service_fn(move |req: Request<()>| {
        drop(req);
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        for value in &challenges {
            res.headers_mut().append(WWW_AUTHENTICATE, value.clone());
        }
        res.extensions_mut()
            .insert(Error::new(ErrorKind::ChecksumMismatch).with_scheme(Scheme::API_KEY));
        async move { Ok::<_, Infallible>(res) }
    });

    // Both floors answer exactly as the layer does for a mistyped key.
    let answer = |res: Result<Response<()>, Infallible>| {
        let res = res.expect("infallible");
        let kind = res.extensions().get::<Error>().map(Error::kind);
        (res.status(), res.headers().clone(), kind)
    };
    let mistyped = answer(now(layer
        .layer(service_fn(ok))
        .oneshot(request(typo.clone())())));
    assert_eq!(
        answer(now(floor_401.clone().oneshot(request(typo.clone())()))),
        mistyped,
        "floor_401 answers like checksum_rejected"
    );
    assert_eq!(
        answer(now(AuthenticateLayer::new(RefuseAtOnce)
            .layer(service_fn(ok))
            .oneshot(request(typo.clone())()))),
        mistyped,
        "floor_layer_401 answers like checksum_rejected"
    );

    let mut group = ab::group(c, "api_key");
    row(
        &mut group,
        "bare",
        service_fn(ok),
        request(valid.clone()),
        StatusCode::OK,
    );
    row(
        &mut group,
        "static_compare",
        static_compare,
        request(valid.clone()),
        StatusCode::OK,
    );
    row(
        &mut group,
        "valid",
        layer.layer(service_fn(ok)),
        request(valid),
        StatusCode::OK,
    );
    row(
        &mut group,
        "valid_peppered",
        peppered_layer.layer(service_fn(ok)),
        request(peppered),
        StatusCode::OK,
    );
    row(
        &mut group,
        "floor_401",
        floor_401,
        request(typo.clone()),
        StatusCode::UNAUTHORIZED,
    );
    row(
        &mut group,
        "floor_layer_401",
        AuthenticateLayer::new(RefuseAtOnce).layer(service_fn(ok)),
        request(typo.clone()),
        StatusCode::UNAUTHORIZED,
    );
    row(
        &mut group,
        "checksum_rejected",
        layer.layer(service_fn(ok)),
        request(typo),
        StatusCode::UNAUTHORIZED,
    );
    row(
        &mut group,
        "unknown_id",
        layer.layer(service_fn(ok)),
        request(unknown),
        StatusCode::UNAUTHORIZED,
    );
    group.finish();

    // The same rows inside a router: the refused request's extension map carries the audit
    // error, so the `401` allocates less than the plain `floor_401` does.
    let mut group = ab::group(c, "api_key_routed");
    row(
        &mut group,
        "bare",
        service_fn(ok),
        routed(valid_key.clone()),
        StatusCode::OK,
    );
    row(
        &mut group,
        "valid",
        layer.layer(service_fn(ok)),
        routed(valid_key.clone()),
        StatusCode::OK,
    );
    row(
        &mut group,
        "checksum_rejected",
        layer.layer(service_fn(ok)),
        routed(typo_key.clone()),
        StatusCode::UNAUTHORIZED,
    );
    group.finish();

    // The same rows for a request with a client's usual fields.
    let mut group = ab::group(c, "api_key_typical");
    row(
        &mut group,
        "bare",
        service_fn(ok),
        typical(valid_key.clone()),
        StatusCode::OK,
    );
    row(
        &mut group,
        "valid",
        layer.layer(service_fn(ok)),
        typical(valid_key),
        StatusCode::OK,
    );
    row(
        &mut group,
        "floor_layer_401",
        AuthenticateLayer::new(RefuseAtOnce).layer(service_fn(ok)),
        typical(typo_key.clone()),
        StatusCode::UNAUTHORIZED,
    );
    row(
        &mut group,
        "checksum_rejected",
        layer.layer(service_fn(ok)),
        typical(typo_key),
        StatusCode::UNAUTHORIZED,
    );
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Some(request) = ab::callgrind_requested() {
        ab::callgrind_main(bench, request);
        return;
    }
    if let Some(request) = ab::requested() {
        ab::main(bench, request);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
