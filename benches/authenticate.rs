//! The `Authenticate` layer's own cost, against a bare service driven the same way.
//!
//! Every row clones its service and `oneshot`s one request per iteration, with the same request
//! and response body type (`()`), so `row - bare` is what the layer adds: credential extraction,
//! the authenticator, inserting the `Principal` (allow) or building the rejection (reject).
//! `allow_fixed_principal` runs an authenticator that reads nothing and always answers the same
//! `Principal`, so `allow_fixed_principal - bare` is the layer's cost alone, without credential
//! extraction and comparison.
//! Requests are built outside the timed routine (`iter_batched`, in batches of 64), and
//! responses are dropped outside it too.
//!
//! The services never wait, so each future is polled once with a no-op waker: no executor cost
//! in any row.
//!
//! Target (issue 3): allow ≤ 100 ns over `bare`, a rejection ≤ 150 ns over `bare` (medians).
//!
//! `floor_insert_principal` is tower's `MapRequest` inserting the same `Principal` and doing
//! nothing else: what inserting costs any layer, which `allow_fixed_principal` cannot go below.
//!
//! The `authenticate` group sends requests with no extensions, the worst case: the layer's
//! `Principal` insert then allocates the whole `http::Extensions` map (three allocations, freed
//! when the request is dropped). The `authenticate_routed` group sends requests that already carry
//! an extension, as requests inside an axum `Router` do.
//!
//! ```text
//! cargo bench --bench authenticate --all-features -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! On a noisy machine compare two rows in alternating batches instead (`benches/support/ab.rs`):
//!
//! ```text
//! cargo bench --bench authenticate --all-features -- --ab authenticate/bare authenticate/allow_fixed_principal
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use credentialflow::authn::{Attempt, AuthenticateLayer, Authenticator};
use credentialflow::extract::CredentialSource;
use credentialflow::test_support::{StaticAuthenticator, principal};
use credentialflow::{Error, Principal};
use criterion::{BatchSize, Criterion, criterion_group};

#[path = "support/ab.rs"]
mod ab;

/// Requests per timed batch, as in the `authz` bench: small, so that a batch's requests are
/// still in cache when they are served, as a request is when a server has just parsed it. With
/// criterion's `SmallInput` a batch holds a tenth of a sample's iterations (tens of thousands
/// of requests, megabytes), and every allocation and free in every row pays cache misses a
/// server does not: `bare` alone measured 62 ns in batches of 64 and 105 ns that way.
const BATCH: u64 = 64;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

const TOKEN: &str = "cf_bench_0123456789abcdefABCDEF";

/// What every row's inner service is: no work, an empty `Response<()>`.
async fn ok(_req: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

/// Polls a future that is ready at once (every service here is).
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a benched service waited; this bench cannot drive it"),
    }
}

fn request(authorization: Option<&'static str>) -> impl Fn() -> Request<()> + Clone + 'static {
    move || {
        let mut builder = Request::get("/orders/42");
        if let Some(value) = authorization {
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        builder.body(()).expect("valid request")
    }
}

fn authenticator() -> StaticAuthenticator {
    StaticAuthenticator::bearer().with_token(
        TOKEN,
        principal("bench-user").scopes(["orders:read"]).build(),
    )
}

/// Answers every request with the same `Principal`, reading nothing.
struct FixedPrincipal(Principal);

impl Authenticator for FixedPrincipal {
    type Future = std::future::Ready<Result<Principal, Error>>;

    fn authenticate(&self, _request: &Parts) -> Attempt<Self::Future> {
        Attempt::Authenticated(self.0.clone())
    }

    fn sources(&self) -> Vec<CredentialSource> {
        vec![CredentialSource::bearer()]
    }
}

/// Checks, outside the measurement, that a row does what its name says.
fn check<A: Authenticator>(layer: &AuthenticateLayer<A>, make: &dyn Fn() -> Request<()>) -> u16 {
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        let status = match req.extensions().get::<Principal>() {
            Some(p) if p.subject() == "bench-user" => StatusCode::OK,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut res = Response::new(());
        *res.status_mut() = status;
        Ok::<_, Infallible>(res)
    }));
    now(svc.oneshot(make()))
        .expect("infallible")
        .status()
        .as_u16()
}

/// One row: clone `svc`, `oneshot` a fresh request, keep the response out of the timing.
fn row<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    svc: S,
    make: impl Fn() -> Request<()> + Clone + 'static,
) where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + 'static,
{
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

/// A request as it reaches a layer inside an axum `Router`: routing has already put an extension
/// into it (axum inserts `MatchedPath` and the path parameters), so the extensions map exists.
#[derive(Clone, Copy)]
struct Routed;

fn routed(authorization: Option<&'static str>) -> impl Fn() -> Request<()> + Clone + 'static {
    let plain = request(authorization);
    move || {
        let mut req = plain();
        req.extensions_mut().insert(Routed);
        req
    }
}

fn bench(c: &mut Criterion) {
    let immediate = AuthenticateLayer::new(authenticator());
    let deferred = AuthenticateLayer::new(authenticator().deferred());
    let fixed = AuthenticateLayer::new(FixedPrincipal(
        principal("bench-user").scopes(["orders:read"]).build(),
    ));

    let valid = request(Some("Bearer cf_bench_0123456789abcdefABCDEF"));
    let missing = request(None);
    let unknown = request(Some("Bearer cf_bench_0123456789abcdefABCDEX"));
    let malformed = request(Some("Bearer a b"));

    assert_eq!(check(&immediate, &valid), 200, "allow");
    assert_eq!(check(&deferred, &valid), 200, "allow_deferred");
    assert_eq!(check(&fixed, &valid), 200, "allow_fixed_principal");
    assert_eq!(check(&immediate, &missing), 401, "reject_missing");
    assert_eq!(check(&immediate, &unknown), 401, "reject_invalid");
    assert_eq!(check(&immediate, &malformed), 400, "reject_malformed");

    // The floor of inserting a `Principal`: a layer that does nothing else (tower's
    // `MapRequest`). On a request with no extensions this allocates http's extensions map.
    let fixed_principal = principal("bench-user").scopes(["orders:read"]).build();
    let insert_only = tower::util::MapRequestLayer::new(move |mut req: Request<()>| {
        req.extensions_mut().insert(fixed_principal.clone());
        req
    });

    let mut group = ab::group(c, "authenticate");
    row(&mut group, "bare", service_fn(ok), valid.clone());
    row(
        &mut group,
        "floor_insert_principal",
        insert_only.layer(service_fn(ok)),
        valid.clone(),
    );
    row(
        &mut group,
        "allow",
        immediate.layer(service_fn(ok)),
        valid.clone(),
    );
    row(
        &mut group,
        "allow_deferred",
        deferred.layer(service_fn(ok)),
        valid.clone(),
    );
    row(
        &mut group,
        "allow_fixed_principal",
        fixed.layer(service_fn(ok)),
        valid.clone(),
    );
    row(
        &mut group,
        "reject_missing",
        immediate.layer(service_fn(ok)),
        missing.clone(),
    );
    row(
        &mut group,
        "reject_invalid",
        immediate.layer(service_fn(ok)),
        unknown.clone(),
    );
    row(
        &mut group,
        "reject_malformed",
        immediate.layer(service_fn(ok)),
        malformed.clone(),
    );
    group.finish();

    // The same rows for requests that already carry extensions, as routed requests do. Kept apart
    // so that each group's `bare` is its own baseline.
    let valid_routed = routed(Some("Bearer cf_bench_0123456789abcdefABCDEF"));
    let missing_routed = routed(None);
    let mut group = ab::group(c, "authenticate_routed");
    row(&mut group, "bare", service_fn(ok), valid_routed.clone());
    row(
        &mut group,
        "floor_insert_principal",
        insert_only.layer(service_fn(ok)),
        valid_routed.clone(),
    );
    row(
        &mut group,
        "allow",
        immediate.layer(service_fn(ok)),
        valid_routed.clone(),
    );
    row(
        &mut group,
        "allow_fixed_principal",
        fixed.layer(service_fn(ok)),
        valid_routed.clone(),
    );
    row(
        &mut group,
        "reject_missing",
        immediate.layer(service_fn(ok)),
        missing_routed.clone(),
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
