//! Unit tests of the policy combinators and the request view.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use super::*;
use crate::error::{Error, ErrorKind};
use crate::principal::{CredentialKind, Principal};

fn who() -> Principal {
    Principal::builder("u", CredentialKind::ApiKey).build()
}

/// A policy with a fixed answer, now or after `polls` pending polls.
#[derive(Clone)]
struct Fixed {
    answer: Result<Decision, ErrorKind>,
    pending_polls: Option<u32>,
}

fn ready(answer: Result<Decision, ErrorKind>) -> Fixed {
    Fixed {
        answer,
        pending_polls: None,
    }
}

fn later(answer: Result<Decision, ErrorKind>, polls: u32) -> Fixed {
    Fixed {
        answer,
        pending_polls: Some(polls),
    }
}

struct Countdown {
    left: u32,
    answer: Result<Decision, ErrorKind>,
}

impl Future for Countdown {
    type Output = Result<Decision, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(self.answer.map_err(Error::new));
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Policy for Fixed {
    type Future = Countdown;

    fn evaluate(&self, _: &Principal, _: &PolicyRequest<'_>) -> Evaluation<Self::Future> {
        match self.pending_polls {
            None => Evaluation::Ready(self.answer.map_err(Error::new)),
            Some(left) => Evaluation::Pending(Countdown {
                left,
                answer: self.answer,
            }),
        }
    }
}

/// Evaluates and drives to completion; `(result, was_pending)`.
fn run<P: Policy>(policy: &P) -> (Result<Decision, ErrorKind>, bool) {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    let evaluation = policy.evaluate(&who(), &PolicyRequest::new(&mut parts));
    match evaluation {
        Evaluation::Ready(r) => (r.map_err(|e| e.kind()), false),
        Evaluation::Pending(fut) => {
            let mut fut = pin!(fut);
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..100 {
                if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                    return (r.map_err(|e| e.kind()), true);
                }
            }
            panic!("never finished");
        }
    }
}

const ALLOW: Result<Decision, ErrorKind> = Ok(Decision::Allow);
const DENY: Result<Decision, ErrorKind> = Ok(Decision::Deny);
const DOWN: Result<Decision, ErrorKind> = Err(ErrorKind::StoreUnavailable);

fn variants(answer: Result<Decision, ErrorKind>) -> [Fixed; 3] {
    [ready(answer), later(answer, 1), later(answer, 3)]
}

fn expected_and(
    a: Result<Decision, ErrorKind>,
    b: Result<Decision, ErrorKind>,
) -> [Result<Decision, ErrorKind>; 2] {
    // A refusal decides; which one may depend on timing when both refuse differently.
    match (a, b) {
        (ALLOW, ALLOW) => [ALLOW, ALLOW],
        (ALLOW, x) | (x, ALLOW) => [x, x],
        (x, y) => [x, y],
    }
}

fn expected_or(
    a: Result<Decision, ErrorKind>,
    b: Result<Decision, ErrorKind>,
) -> [Result<Decision, ErrorKind>; 2] {
    match (a, b) {
        (ALLOW, _) | (_, ALLOW) => [ALLOW, ALLOW],
        (DENY, DENY) => [DENY, DENY],
        // Neither allowed and one failed: the failure, since it might have allowed.
        _ => [DOWN, DOWN],
    }
}

#[test]
fn and_or_over_every_answer_and_timing() {
    let answers = [ALLOW, DENY, DOWN];
    for a in answers {
        for b in answers {
            for pa in variants(a) {
                for pb in variants(b) {
                    let (and, _) = run(&pa.clone().and(pb.clone()));
                    assert!(
                        expected_and(a, b).contains(&and),
                        "{a:?} and {b:?} gave {and:?}"
                    );
                    let (or, _) = run(&pa.clone().or(pb.clone()));
                    assert!(
                        expected_or(a, b).contains(&or),
                        "{a:?} or {b:?} gave {or:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn not_inverts_decisions_and_keeps_errors() {
    for (input, expected) in [(ALLOW, DENY), (DENY, ALLOW), (DOWN, DOWN)] {
        for p in variants(input) {
            assert_eq!(run(&p.not()).0, expected);
        }
    }
    assert_eq!(run(&ready(ALLOW).not().not()).0, ALLOW);
}

#[test]
fn short_circuits_do_not_wait() {
    // A synchronous refusal on the left of `and` never starts the right.
    let (r, pending) = run(&ready(DENY).and(later(ALLOW, 1)));
    assert_eq!((r, pending), (DENY, false));
    // A synchronous refusal on the right drops the pending left.
    let (r, pending) = run(&later(ALLOW, 1).and(ready(DENY)));
    assert_eq!((r, pending), (DENY, false));
    // A synchronous allow on either side of `or` decides at once.
    assert_eq!(run(&ready(ALLOW).or(later(DENY, 1))), (ALLOW, false));
    assert_eq!(run(&later(DENY, 1).or(ready(ALLOW))), (ALLOW, false));
    // Both ready: no future.
    assert_eq!(run(&ready(ALLOW).and(ready(ALLOW))), (ALLOW, false));
    assert_eq!(run(&ready(DENY).or(ready(DENY))), (DENY, false));
}

#[test]
fn closures_are_policies() {
    let only_alice = policy_fn(|p, _| p.subject() == "alice");
    assert_eq!(run(&only_alice).0, DENY);
    let anyone = |_: &Principal, _: &PolicyRequest<'_>| true;
    assert_eq!(run(&anyone).0, ALLOW);
    assert_eq!(run(&only_alice.or(anyone)).0, ALLOW);
}

#[test]
fn policy_request_reads_method_path_headers_and_given_params() {
    let (mut parts, ()) = http::Request::post("/t/acme/orders?x=1")
        .header("x-trace", "abc")
        .extension(42_u32)
        .body(())
        .unwrap()
        .into_parts();
    let params = [("tenant", "acme")];
    let request = PolicyRequest::new(&mut parts)
        .with_route("/t/{tenant}/orders")
        .with_path_params(&params);
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.path(), "/t/acme/orders");
    assert_eq!(request.uri().query(), Some("x=1"));
    assert_eq!(request.headers()["x-trace"], "abc");
    assert_eq!(request.route(), Some("/t/{tenant}/orders"));
    assert_eq!(request.path_param("tenant"), Some("acme"));
    assert_eq!(request.path_param("other"), None);
    assert_eq!(request.extension::<u32>(), Some(42));
    let dbg = format!("{request:?}");
    assert!(
        dbg.contains("/t/acme/orders") && !dbg.contains("abc"),
        "{dbg}"
    );
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "current_thread")]
async fn policy_request_reads_axum_route_and_params_and_leaves_the_request_intact() {
    use axum::Router;
    use axum::extract::{MatchedPath, Path};
    use axum::routing::get;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = {
        let seen = Arc::clone(&seen);
        move |_: &Principal, r: &PolicyRequest<'_>| {
            let mut seen = seen.lock().unwrap();
            seen.push(format!("{:?}", r.route()));
            seen.push(format!("{:?}", r.path_params().collect::<Vec<_>>()));
            seen.push(format!("{:?}", r.path_param("id")));
            true
        }
    };
    let app = Router::new()
        .route(
            "/t/{tenant}/orders/{id}",
            get(
                |Path((t, id)): Path<(String, String)>, m: MatchedPath| async move {
                    format!("{t}/{id}@{}", m.as_str())
                },
            ),
        )
        .route_layer(AuthorizeLayer::new(record))
        .layer(axum::middleware::from_fn(
            |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
                req.extensions_mut().insert(who());
                next.run(req).await
            },
        ));
    let res = app
        .oneshot(
            http::Request::get("/t/acme/orders/o%201")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    // The handler still extracts its path parameters and matched path.
    assert_eq!(&body[..], b"acme/o 1@/t/{tenant}/orders/{id}");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Some(\"/t/{tenant}/orders/{id}\")",
            "[(\"tenant\", \"acme\"), (\"id\", \"o 1\")]",
            "Some(\"o 1\")",
        ]
    );
}

#[test]
fn futures_and_services_are_send() {
    fn send<T: Send>() {}
    type Svc = tower::util::BoxCloneService<
        http::Request<()>,
        http::Response<()>,
        std::convert::Infallible,
    >;
    send::<ResponseFuture<Svc, ReadyDecision, crate::response::DefaultResponder, (), ()>>();
    send::<RequireScopes<Svc>>();
    send::<RequireRoles<Svc>>();
    send::<Authorize<Svc, TenantFromPath>>();
    send::<CombineFuture<ReadyDecision, NotFuture<ReadyDecision>>>();
    #[cfg(feature = "axum")]
    send::<AuthorizeRoutes<Svc>>();
    #[cfg(feature = "axum")]
    send::<<AuthorizeRoutes<Svc> as tower_service::Service<http::Request<()>>>::Future>();
    send::<<Authorize<Svc, TenantFromPath> as tower_service::Service<http::Request<()>>>::Future>();
}

#[test]
fn path_parameters_are_read_off_the_path_only_when_it_lines_up_with_the_route() {
    let read = |route: &str, path: &str| {
        super::policy::params_in_path(route, path).map(|params| {
            params
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
    };
    assert_eq!(
        read("/t/{tenant}/orders/{id}", "/t/acme/orders/42").as_deref(),
        Some("tenant=acme&id=42")
    );
    assert_eq!(read("/t/{tenant}", "/t/").as_deref(), Some("tenant="));
    assert_eq!(read("/", "/").as_deref(), Some(""));
    assert_eq!(read("/{a}/{a}", "/x/y").as_deref(), Some("a=x&a=y"));
    // Left to axum: anything to decode, catch-alls, escaped braces, prefixed parameters.
    assert_eq!(read("/t/{tenant}", "/t/a%20b"), None);
    assert_eq!(read("/t/{*rest}", "/t/a/b"), None);
    assert_eq!(read("/t/{{lit}}/{id}", "/t/{lit}/1"), None);
    assert_eq!(read("/t/pre-{id}", "/t/pre-1"), None);
    // A route that does not describe this path (a nested router's stripped path, a route a
    // caller set by hand): a static segment differs, or the segments do not line up.
    assert_eq!(read("/t/{tenant}/orders", "/t/acme/invoices"), None);
    assert_eq!(read("/n/{t}/{id}/x", "/A/x"), None);
    assert_eq!(read("/t/{tenant}", "/t/acme/"), None);
    assert_eq!(read("/t/{tenant}/", "/t/acme"), None);
}
