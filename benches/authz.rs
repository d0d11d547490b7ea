//! The authorization layers' own cost, against a bare service driven the same way.
//!
//! Every row clones its service and `oneshot`s one request per iteration (`Request<()>` in,
//! `Response<()>` out), with requests built outside the timed routine (`iter_batched`). Each
//! request already carries what the layers in front of authorization would have put there: the
//! `Principal` (as `Authenticate` does) and axum's routing extensions (`MatchedPath` and the
//! path parameters), captured once from a real axum `Router`. So `row - bare` is what the
//! authorization layer adds. The services never wait: each future is polled once with a no-op
//! waker, no executor in any row.
//!
//! Groups:
//!
//! - `scopes`: `RequireScopesLayer::all` with 1, 10 and 100 scopes on the principal and 1 to 3
//!   required (all present: the allow path), plus the reject path (`403 insufficient_scope`).
//!   `floor_scope_check` is tower's `MapRequest` reading the `Principal` from the extensions and
//!   looking up one scope, nothing else: `held_10_require_1 - floor_scope_check` is what the
//!   layer adds to the lookup any scope check makes;
//! - `rule_table`: `AuthorizeRoutesLayer` with 50 rules (50 route patterns, mixed methods),
//!   the request hitting one in the middle: a scope rule, a public rule, a closure policy,
//!   `TenantFromPath` (reads the path parameters), an unlisted method (reject);
//! - `policy`: `AuthorizeLayer` with a closure and with `TenantFromPath`;
//! - `name_set`: building a `NameSet` from 3 and 10 space-delimited scopes (what a JWT costs),
//!   and one `contains`.
//!
//! Every group also has `noop_layer`: tower's `MapRequest` with the identity function, the
//! floor any middleware pays in this harness (one more service to clone and call, one more
//! future to move and poll).
//!
//! Targets (issue 7), as overhead over `bare` (medians): a scope check ≤ 50 ns with up to 10
//! scopes on the principal (100 reported), the 50-rule table ≤ 200 ns.
//!
//! ```text
//! cargo bench --bench authz --all-features -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! On a noisy machine compare two rows in alternating batches instead (`benches/support/ab.rs`;
//! batches of 64, as the criterion rows use):
//!
//! ```text
//! cargo bench --bench authz --all-features -- --ab scopes/bare scopes/held_10_require_1 200 64
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::Router;
use axum::routing::any;
use credentialflow::Principal;
use credentialflow::authz::{
    AuthorizeLayer, AuthorizeRoutesLayer, PolicyRequest, RequireScopesLayer, Requirement,
    TenantFromPath,
};
use credentialflow::principal::NameSet;
use credentialflow::test_support::principal;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group};

#[path = "support/ab.rs"]
mod ab;
use http::{Extensions, Method, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What every row's inner service is: no work, an empty `Response<()>`. It hands the
/// request's extensions back in the response, so that freeing them (the principal, axum's
/// routing data) happens outside the timed routine, in every row alike.
async fn ok(req: Request<()>) -> Result<Response<()>, Infallible> {
    let mut res = Response::new(());
    *res.extensions_mut() = req.into_parts().0.extensions;
    Ok(res)
}

/// Polls a future that is ready at once (every service here is).
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a benched service waited; this bench cannot drive it"),
    }
}

/// The extensions axum's router gives a request to `uri` on a route `pattern`: `MatchedPath`
/// and the path parameters, exactly as a `route_layer` sees them.
fn routed_extensions(pattern: &str, method: Method, uri: &str) -> Extensions {
    let captured: Arc<Mutex<Option<Extensions>>> = Arc::default();
    let sink = Arc::clone(&captured);
    let app: Router = Router::new().route(
        pattern,
        any(move |req: axum::extract::Request| {
            *sink.lock().expect("lock") = Some(req.extensions().clone());
            async { "captured" }
        }),
    );
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(axum::body::Body::empty())
        .expect("request");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let res = runtime.block_on(app.oneshot(request)).expect("infallible");
    assert_eq!(res.status(), StatusCode::OK, "routing {uri} on {pattern}");
    captured.lock().expect("lock").take().expect("captured")
}

/// A request factory: `method uri`, with `extensions` and `who` added as the stages in front
/// would.
fn request(
    method: Method,
    uri: &'static str,
    extensions: Extensions,
    who: Principal,
) -> impl Fn() -> Request<()> + Clone + 'static {
    move || {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(())
            .expect("request");
        *req.extensions_mut() = extensions.clone();
        req.extensions_mut().insert(who.clone());
        req
    }
}

/// The cheapest middleware there is (tower's `MapRequest` with the identity): what any layer
/// costs in this harness before it does anything (one more service to clone and call, one
/// more future to move and poll). Not a target; it helps read the other rows.
fn noop_layer() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    tower::util::MapRequestLayer::new(|req: Request<()>| req).layer(service_fn(ok))
}

/// The least a scope check can cost in this harness: tower's `MapRequest` looking up the
/// request's `Principal` and one scope, and nothing else (no shared configuration, no counters,
/// no response future of its own; a missing scope would not even be refused). Not a peer; it
/// shows how much of a check row is the lookup itself.
fn floor_scope_check(
    scope: &'static str,
) -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    tower::util::MapRequestLayer::new(move |req: Request<()>| {
        let allowed = req
            .extensions()
            .get::<Principal>()
            .is_some_and(|p| !p.is_anonymous() && p.scopes().contains(scope));
        black_box(allowed);
        req
    })
    .layer(service_fn(ok))
}

/// Requests per timed batch. Small, so that a batch's requests are still in cache when they are
/// served, as a request is when `Authenticate` has just put its `Principal` in: with thousands
/// per batch, every row but `bare` would pay a cache miss on the request's extensions that a
/// server does not.
const BATCH: u64 = 64;

/// One row: checks the status once, then times clone + `oneshot`.
fn row<S, M>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    svc: S,
    make: &M,
    expect: StatusCode,
) where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + 'static,
    M: Fn() -> Request<()> + Clone + 'static,
{
    let status = now(svc.clone().oneshot(make()))
        .expect("infallible")
        .status();
    assert_eq!(status, expect, "{name}");
    if ab::collecting() {
        let make = make.clone();
        ab::register(
            name,
            Box::new(move |n| ab::time_batch(n, &make, |req| now(svc.clone().oneshot(req)))),
        );
        return;
    }
    group.bench_function(name, |b| {
        b.iter_batched(
            make,
            |req| now(black_box(svc.clone()).oneshot(req)),
            BatchSize::NumIterations(BATCH),
        );
    });
}

fn scope_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("orders:scope{i:03}")).collect()
}

fn scopes(c: &mut Criterion) {
    let extensions = routed_extensions("/orders/{id}", Method::GET, "/orders/42");
    let mut group = ab::group(c, "scopes");
    let bare_req = request(
        Method::GET,
        "/orders/42",
        extensions.clone(),
        principal("bench").scopes(scope_names(10)).build(),
    );
    row(
        &mut group,
        "bare",
        service_fn(ok),
        &bare_req,
        StatusCode::OK,
    );
    row(
        &mut group,
        "noop_layer",
        noop_layer(),
        &bare_req,
        StatusCode::OK,
    );
    row(
        &mut group,
        "floor_scope_check",
        floor_scope_check("orders:scope005"),
        &bare_req,
        StatusCode::OK,
    );
    for held in [1_usize, 10, 100] {
        let names = scope_names(held);
        let who = principal("bench").scopes(&names).build();
        let make = request(Method::GET, "/orders/42", extensions.clone(), who);
        for required in 1..=3_usize.min(held) {
            // Spread the required scopes over the principal's set.
            let wanted: Vec<&String> = (0..required)
                .map(|k| &names[(k * held) / required + (held / required) / 2])
                .collect();
            let layer = RequireScopesLayer::all(wanted).expect("scopes");
            row(
                &mut group,
                &format!("held_{held}_require_{required}"),
                layer.layer(service_fn(ok)),
                &make,
                StatusCode::OK,
            );
        }
        if held == 1 {
            // With one scope held, 2 and 3 required cannot all be present: the any-mode
            // rows measure the same lookups.
            for required in 2..=3_usize {
                let mut wanted = vec![names[0].clone()];
                wanted.extend((1..required).map(|k| format!("other:{k}")));
                let layer = RequireScopesLayer::any(wanted).expect("scopes");
                row(
                    &mut group,
                    &format!("held_1_require_any_of_{required}"),
                    layer.layer(service_fn(ok)),
                    &make,
                    StatusCode::OK,
                );
            }
        }
    }
    let who = principal("bench").scopes(scope_names(10)).build();
    let make = request(Method::GET, "/orders/42", extensions, who);
    let layer = RequireScopesLayer::all(["orders:admin"]).expect("scopes");
    row(
        &mut group,
        "held_10_reject",
        layer.layer(service_fn(ok)),
        &make,
        StatusCode::FORBIDDEN,
    );
    group.finish();
}

fn table_of_50() -> AuthorizeRoutesLayer {
    let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
    let mut builder = AuthorizeRoutesLayer::builder();
    for i in 0..50 {
        let pattern = format!("/svc{i:02}/items/{{id}}");
        let method = methods[i % methods.len()].clone();
        builder = builder.rule(
            [method],
            &pattern,
            Requirement::all_scopes([format!("orders:scope{:03}", i % 10)]),
        );
    }
    builder
        // The routes the rows hit (replacing none of the 50 above).
        .rule(
            [Method::PATCH],
            "/svc25/items/{id}",
            Requirement::all_scopes(["orders:scope005"]),
        )
        .rule([Method::HEAD], "/svc26/items/{id}", Requirement::public())
        .rule(
            [Method::PATCH],
            "/svc27/items/{id}",
            Requirement::policy(|p: &Principal, r: &PolicyRequest<'_>| {
                p.subject() == "bench" && r.method() == Method::PATCH
            }),
        )
        .rule(
            [Method::PATCH],
            "/tenants/{tenant}/items/{id}",
            Requirement::policy(TenantFromPath::new("tenant")),
        )
        .build()
        .expect("table")
}

fn rule_table(c: &mut Criterion) {
    let table = table_of_50();
    assert_eq!(table.rules().count(), 54);
    let who = principal("bench")
        .tenant("acme")
        .scopes(scope_names(10))
        .build();
    let routed = |pattern: &str, method: Method, uri: &'static str| {
        request(
            method.clone(),
            uri,
            routed_extensions(pattern, method, uri),
            who.clone(),
        )
    };
    let scope = routed("/svc25/items/{id}", Method::PATCH, "/svc25/items/7");
    let public = routed("/svc26/items/{id}", Method::HEAD, "/svc26/items/7");
    let closure = routed("/svc27/items/{id}", Method::PATCH, "/svc27/items/7");
    let tenant = routed(
        "/tenants/{tenant}/items/{id}",
        Method::PATCH,
        "/tenants/acme/items/7",
    );
    let unlisted = routed("/svc25/items/{id}", Method::OPTIONS, "/svc25/items/7");

    let mut group = ab::group(c, "rule_table");
    row(&mut group, "bare", service_fn(ok), &scope, StatusCode::OK);
    row(
        &mut group,
        "noop_layer",
        noop_layer(),
        &scope,
        StatusCode::OK,
    );
    let svc = table.layer(service_fn(ok));
    row(
        &mut group,
        "rules_50_scope",
        svc.clone(),
        &scope,
        StatusCode::OK,
    );
    row(
        &mut group,
        "rules_50_public",
        svc.clone(),
        &public,
        StatusCode::OK,
    );
    row(
        &mut group,
        "rules_50_closure_policy",
        svc.clone(),
        &closure,
        StatusCode::OK,
    );
    row(
        &mut group,
        "rules_50_tenant_from_path",
        svc.clone(),
        &tenant,
        StatusCode::OK,
    );
    row(
        &mut group,
        "rules_50_unlisted_reject",
        svc,
        &unlisted,
        StatusCode::FORBIDDEN,
    );
    group.finish();
}

fn policy(c: &mut Criterion) {
    let who = principal("bench").tenant("acme").build();
    let pattern = "/tenants/{tenant}/items/{id}";
    let uri = "/tenants/acme/items/7";
    let make = request(
        Method::GET,
        uri,
        routed_extensions(pattern, Method::GET, uri),
        who,
    );
    let mut group = ab::group(c, "policy");
    row(&mut group, "bare", service_fn(ok), &make, StatusCode::OK);
    row(
        &mut group,
        "noop_layer",
        noop_layer(),
        &make,
        StatusCode::OK,
    );
    let closure =
        AuthorizeLayer::new(|p: &Principal, _: &PolicyRequest<'_>| p.tenant() == Some("acme"));
    row(
        &mut group,
        "closure",
        closure.layer(service_fn(ok)),
        &make,
        StatusCode::OK,
    );
    let tenant = AuthorizeLayer::new(TenantFromPath::new("tenant"));
    row(
        &mut group,
        "tenant_from_path",
        tenant.layer(service_fn(ok)),
        &make,
        StatusCode::OK,
    );
    group.finish();
}

/// What a `NameSet` costs to build from a token's `scope` claim (its drop, with the request, is
/// left out), and one lookup in it: the JWT authenticator builds one per token.
fn name_set(c: &mut Criterion) {
    let ten = "orders:read orders:write invoices:read invoices:write customers:read \
               customers:write reports:read profile email openid";
    let three = "orders:read orders:write profile";
    let mut group = ab::group(c, "name_set");
    if ab::collecting() {
        for (name, list) in [("build_3", three), ("build_10", ten)] {
            ab::register(
                name,
                Box::new(move |n| {
                    ab::time_batch(
                        n,
                        || (),
                        |()| NameSet::from_space_delimited(black_box(list)),
                    )
                }),
            );
        }
        return;
    }
    group.bench_function("build_3", |b| {
        b.iter_with_large_drop(|| NameSet::from_space_delimited(black_box(three)));
    });
    group.bench_function("build_10", |b| {
        b.iter_with_large_drop(|| NameSet::from_space_delimited(black_box(ten)));
    });
    let set = NameSet::from_space_delimited(ten);
    group.bench_function("contains_10", |b| {
        b.iter(|| black_box(&set).contains(black_box("reports:read")));
    });
    group.finish();
}

criterion_group!(benches, scopes, rule_table, policy, name_set);

fn main() {
    let all = |c: &mut Criterion| {
        scopes(c);
        rule_table(c);
        policy(c);
        name_set(c);
    };
    if let Some(request) = ab::callgrind_requested() {
        ab::callgrind_main(all, request);
        return;
    }
    if let Some(request) = ab::requested() {
        ab::main(all, request);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
