//! Authorization through real axum routers (and one tonic server): scopes, roles, policies,
//! the rule table, shadow mode, and the wire answers of each refusal.
#![cfg(all(feature = "authz", feature = "axum", feature = "test-util"))]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::{any, get, post};
use credentialflow::authn::AuthenticateLayer;
use credentialflow::authz::{
    AttributeEquals, AuthorizeLayer, AuthorizeRoutesLayer, Decision, Denial, DenialReason,
    Evaluation, Match, OwnerFromPath, Policy, PolicyExt, PolicyRequest, RequireRolesLayer,
    RequireScopesLayer, Requirement, ShadowDecision, TenantFromPath, policy_fn,
};
use credentialflow::response::ProblemJson;
use credentialflow::test_support::{StaticAuthenticator, principal};
use credentialflow::{Error, ErrorKind, Principal};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Setup

/// Bearer tokens and who they stand for.
const READER: &str = "reader-token"; // orders:read, role viewer, tenant acme
const WRITER: &str = "writer-token"; // orders:read orders:write, roles viewer editor, tenant acme
const ADMIN: &str = "admin-token"; // admin:all, role admin, tenant globex, department it
const NOBODY: &str = "nobody-token"; // no scope, no role, no tenant

fn authenticator() -> StaticAuthenticator {
    StaticAuthenticator::bearer()
        .with_token(
            READER,
            principal("reader")
                .tenant("acme")
                .scopes(["orders:read"])
                .roles(["viewer"])
                .attribute("department", "sales")
                .build(),
        )
        .with_token(
            WRITER,
            principal("writer")
                .tenant("acme")
                .scopes(["orders:read", "orders:write"])
                .roles(["viewer", "editor"])
                .attribute("department", "sales")
                .attribute("projects", json!(["p1", "p2"]))
                .build(),
        )
        .with_token(
            ADMIN,
            principal("admin")
                .tenant("globex")
                .scopes(["admin:all"])
                .roles(["admin"])
                .attribute("department", "it")
                .build(),
        )
        .with_token(NOBODY, principal("nobody").build())
}

/// A router with one route per path in `paths` (any method), `layer` as route layer, behind a
/// required `Authenticate`.
fn app_with<L>(paths: &[&str], layer: L) -> Router
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<Request<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<Request<Body>>>::Response: axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<Request<Body>>>::Future: Send + 'static,
{
    let mut router = Router::new();
    for path in paths {
        router = router.route(path, any(|| async { "ok" }));
    }
    router
        .route_layer(layer)
        .layer(AuthenticateLayer::new(authenticator()))
}

fn req(method: Method, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    match app.clone().oneshot(request).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

async fn get_as(app: &Router, uri: &str, token: Option<&str>) -> Response<Body> {
    send(app, req(Method::GET, uri, token)).await
}

fn challenges<B>(res: &Response<B>) -> Vec<&str> {
    res.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn kind<B>(res: &Response<B>) -> Option<ErrorKind> {
    res.extensions().get::<Error>().map(Error::kind)
}

fn denial<B>(res: &Response<B>) -> Denial {
    let error = res.extensions().get::<Error>().expect("an Error");
    let denial = res.extensions().get::<Denial>().expect("a Denial").clone();
    // The error's source chain tells the same story, for logs.
    let source = std::error::Error::source(error).expect("a source");
    assert_eq!(source.to_string(), denial.to_string());
    denial
}

async fn body(res: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 64 * 1024)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scopes

#[tokio::test]
async fn all_scopes_present_is_allowed() {
    let app = app_with(
        &["/orders"],
        RequireScopesLayer::all(["orders:read", "orders:write"]).unwrap(),
    );
    let res = get_as(&app, "/orders", Some(WRITER)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(kind(&res).is_none());
    assert!(res.extensions().get::<ShadowDecision>().is_none());
}

#[tokio::test]
async fn a_missing_scope_is_403_with_the_exact_rfc_6750_challenge() {
    let app = app_with(
        &["/orders"],
        RequireScopesLayer::all(["orders:write"]).unwrap(),
    );
    let res = get_as(&app, "/orders", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#]
    );
    assert_eq!(kind(&res), Some(ErrorKind::InsufficientScope));
    let error = res.extensions().get::<Error>().unwrap();
    assert_eq!(error.required_scope(), Some("orders:write"));
    assert_eq!(body(res).await, "");
}

#[tokio::test]
async fn all_scopes_challenge_lists_every_required_scope_and_audit_names_the_missing_one() {
    let app = app_with(
        &["/orders"],
        RequireScopesLayer::all(["orders:read", "orders:write", "orders:read"]).unwrap(),
    );
    let res = get_as(&app, "/orders", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="insufficient_scope", scope="orders:read orders:write""#]
    );
    let d = denial(&res);
    assert_eq!(
        d.reason(),
        &DenialReason::MissingScopes {
            mode: Match::All,
            missing: "orders:write".into()
        }
    );
    assert_eq!(d.route(), Some("/orders"));
    assert_eq!(d.rule(), None);
}

#[tokio::test]
async fn any_scope_needs_one_of_them() {
    let app = app_with(
        &["/orders"],
        RequireScopesLayer::any(["orders:write", "admin:all"]).unwrap(),
    );
    assert_eq!(
        get_as(&app, "/orders", Some(WRITER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/orders", Some(ADMIN)).await.status(),
        StatusCode::OK
    );
    let res = get_as(&app, "/orders", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="insufficient_scope", scope="orders:write admin:all""#]
    );
    assert_eq!(
        denial(&res).reason(),
        &DenialReason::MissingScopes {
            mode: Match::Any,
            missing: "orders:write admin:all".into()
        }
    );
}

#[tokio::test]
async fn every_combination_of_scope_mode_and_holdings() {
    // (mode, required, token, allowed)
    let cases: &[(Match, &[&str], &str, bool)] = &[
        (Match::All, &["orders:read"], READER, true),
        (Match::All, &["orders:read"], NOBODY, false),
        (Match::All, &["orders:read", "orders:write"], WRITER, true),
        (Match::All, &["orders:read", "orders:write"], READER, false),
        (Match::All, &["orders:read", "admin:all"], WRITER, false),
        (Match::Any, &["orders:read"], READER, true),
        (Match::Any, &["orders:write", "orders:read"], READER, true),
        (Match::Any, &["orders:write", "admin:all"], READER, false),
        (Match::Any, &["orders:write", "admin:all"], NOBODY, false),
        (Match::Any, &["admin:all", "x:y", "z"], ADMIN, true),
    ];
    for (mode, required, token, allowed) in cases {
        let app = app_with(
            &["/r"],
            RequireScopesLayer::with_mode(*mode, required.iter()).unwrap(),
        );
        let res = get_as(&app, "/r", Some(token)).await;
        let expected = if *allowed {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(res.status(), expected, "{mode:?} {required:?} as {token}");
        if !allowed {
            assert_eq!(kind(&res), Some(ErrorKind::InsufficientScope));
        }
    }
}

#[test]
fn invalid_scope_lists_are_config_errors() {
    assert!(RequireScopesLayer::all(Vec::<String>::new()).is_err());
    assert!(RequireScopesLayer::all(["orders write"]).is_err());
    assert!(RequireScopesLayer::any(["a\"b"]).is_err());
    assert!(RequireScopesLayer::any(["back\\slash"]).is_err());
    assert!(RequireScopesLayer::all(["caf\u{e9}"]).is_err());
    assert!(RequireScopesLayer::all([""]).is_err());
    assert!(RequireRolesLayer::all(Vec::<String>::new()).is_err());
    assert!(RequireRolesLayer::any(["two words"]).is_err());
    let ok = RequireScopesLayer::all(["a", "b", "a"]).unwrap();
    assert_eq!(ok.names().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(ok.mode(), Match::All);
}

// ---------------------------------------------------------------------------------------------
// Roles

#[tokio::test]
async fn every_combination_of_role_mode_and_holdings() {
    let cases: &[(Match, &[&str], &str, bool)] = &[
        (Match::All, &["viewer"], READER, true),
        (Match::All, &["viewer", "editor"], WRITER, true),
        (Match::All, &["viewer", "editor"], READER, false),
        (Match::All, &["admin"], NOBODY, false),
        (Match::Any, &["editor", "admin"], WRITER, true),
        (Match::Any, &["editor", "admin"], ADMIN, true),
        (Match::Any, &["editor", "admin"], READER, false),
        (Match::Any, &["editor"], NOBODY, false),
    ];
    for (mode, required, token, allowed) in cases {
        let app = app_with(
            &["/r"],
            RequireRolesLayer::with_mode(*mode, required.iter()).unwrap(),
        );
        let res = get_as(&app, "/r", Some(token)).await;
        if *allowed {
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "{mode:?} {required:?} {token}"
            );
        } else {
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{mode:?} {required:?} {token}"
            );
            assert_eq!(kind(&res), Some(ErrorKind::InsufficientRole));
            assert!(
                challenges(&res).is_empty(),
                "a role refusal carries no challenge"
            );
        }
    }
}

#[tokio::test]
async fn a_role_refusal_names_the_missing_roles_only_in_the_audit() {
    let app = app_with(
        &["/r"],
        RequireRolesLayer::all(["viewer", "editor"])
            .unwrap()
            .responder(ProblemJson),
    );
    let res = get_as(&app, "/r", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        denial(&res).reason(),
        &DenialReason::MissingRoles {
            mode: Match::All,
            missing: "editor".into()
        }
    );
    let text = body(res).await;
    assert!(text.contains("\"status\":403"), "{text}");
    assert!(
        !text.contains("editor") && !text.contains("viewer"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unauthenticated

#[tokio::test]
async fn anonymous_principal_on_a_protected_route_is_401_with_the_routes_challenge() {
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .route_layer(RequireScopesLayer::all(["orders:read"]).unwrap())
        .layer(AuthenticateLayer::new(authenticator()).optional());
    let res = get_as(&app, "/orders", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
    assert_eq!(kind(&res), Some(ErrorKind::AuthenticationRequired));
    assert_eq!(denial(&res).reason(), &DenialReason::Unauthenticated);
}

#[tokio::test]
async fn the_401_uses_the_challenges_the_authenticate_layer_announced() {
    let api_keys = StaticAuthenticator::api_key_header().with_token("k", principal("k").build());
    let app = Router::new()
        .route("/r", get(|| async { "ok" }))
        .route_layer(RequireRolesLayer::any(["admin"]).unwrap())
        .layer(
            AuthenticateLayer::new(api_keys)
                .optional()
                .realm("shop")
                .unwrap(),
        );
    let res = get_as(&app, "/r", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"ApiKey realm="shop""#]);
}

#[tokio::test]
async fn no_principal_at_all_is_401_with_the_default_challenge() {
    // No Authenticate layer: a configuration mistake, and still no way in.
    let app = Router::new()
        .route("/r", get(|| async { "ok" }))
        .route_layer(AuthorizeLayer::new(policy_fn(|_, _| true)));
    let res = get_as(&app, "/r", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
    assert_eq!(kind(&res), Some(ErrorKind::AuthenticationRequired));
}

// ---------------------------------------------------------------------------------------------
// Policies

fn subject_is(name: &'static str) -> impl Policy + Clone {
    move |p: &Principal, _: &PolicyRequest<'_>| p.subject() == name
}

fn has_role(role: &'static str) -> impl Policy + Clone {
    move |p: &Principal, _: &PolicyRequest<'_>| p.roles().contains(role)
}

#[tokio::test]
async fn policy_combinators_through_a_router() {
    // Each policy and the tokens it admits, out of READER, WRITER, ADMIN, NOBODY.
    let everyone = [READER, WRITER, ADMIN, NOBODY];
    let check = |policy: AuthorizeLayer<_>, admitted: &'static [&'static str]| async move {
        let app = app_with(&["/p"], policy);
        for token in everyone {
            let res = get_as(&app, "/p", Some(token)).await;
            let expected = if admitted.contains(&token) {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(res.status(), expected, "{token}");
            if expected == StatusCode::FORBIDDEN {
                assert_eq!(kind(&res), Some(ErrorKind::PolicyDenied));
                assert_eq!(denial(&res).reason(), &DenialReason::PolicyDenied);
                assert!(challenges(&res).is_empty());
            }
        }
    };
    check(
        AuthorizeLayer::new(has_role("viewer").boxed()),
        &[READER, WRITER],
    )
    .await;
    check(
        AuthorizeLayer::new(has_role("viewer").and(has_role("editor")).boxed()),
        &[WRITER],
    )
    .await;
    check(
        AuthorizeLayer::new(has_role("editor").or(has_role("admin")).boxed()),
        &[WRITER, ADMIN],
    )
    .await;
    check(
        AuthorizeLayer::new(has_role("viewer").not().boxed()),
        &[ADMIN, NOBODY],
    )
    .await;
    check(
        AuthorizeLayer::new(
            has_role("viewer")
                .and(has_role("editor").not())
                .or(subject_is("admin"))
                .boxed(),
        ),
        &[READER, ADMIN],
    )
    .await;
    check(
        AuthorizeLayer::new(
            AttributeEquals::new("department", "sales")
                .and(TenantFromPath::new("missing").not())
                .boxed(),
        ),
        &[READER, WRITER],
    )
    .await;
}

/// Boxes any policy so that one closure can check many policy types.
trait Boxed: Policy + Sized {
    fn boxed(self) -> BoxedPolicy {
        BoxedPolicy(Arc::new(
            move |p: &Principal, r: &PolicyRequest<'_>| match self.evaluate(p, r) {
                Evaluation::Ready(Ok(d)) => d.is_allow(),
                _ => panic!("these policies decide synchronously"),
            },
        ))
    }
}

impl<P: Policy> Boxed for P {}

type DynPolicy = dyn Fn(&Principal, &PolicyRequest<'_>) -> bool + Send + Sync;

#[derive(Clone)]
struct BoxedPolicy(Arc<DynPolicy>);

impl Policy for BoxedPolicy {
    type Future = credentialflow::authz::ReadyDecision;

    fn evaluate(&self, p: &Principal, r: &PolicyRequest<'_>) -> Evaluation<Self::Future> {
        Evaluation::from((self.0)(p, r))
    }
}

#[tokio::test]
async fn tenant_in_the_path_must_be_the_principals_tenant() {
    let app = app_with(
        &["/tenants/{tenant}/orders"],
        AuthorizeLayer::new(TenantFromPath::new("tenant")),
    );
    let own = get_as(&app, "/tenants/acme/orders", Some(READER)).await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = get_as(&app, "/tenants/globex/orders", Some(READER)).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&other), Some(ErrorKind::PolicyDenied));
    assert_eq!(denial(&other).route(), Some("/tenants/{tenant}/orders"));
    // Percent-encoding does not get around it, nor does case.
    let encoded = get_as(&app, "/tenants/%61cme/orders", Some(READER)).await;
    assert_eq!(encoded.status(), StatusCode::OK);
    let upper = get_as(&app, "/tenants/ACME/orders", Some(READER)).await;
    assert_eq!(upper.status(), StatusCode::FORBIDDEN);
    // No tenant at all: denied.
    let tenantless = get_as(&app, "/tenants/acme/orders", Some(NOBODY)).await;
    assert_eq!(tenantless.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn owner_policies_compare_path_parameters_with_subject_or_attribute() {
    let app = Router::new()
        .route("/users/{user}", get(|| async { "ok" }))
        .route_layer(AuthorizeLayer::new(OwnerFromPath::new("user")))
        .merge(
            Router::new()
                .route("/projects/{project}", get(|| async { "ok" }))
                .route_layer(AuthorizeLayer::new(OwnerFromPath::with_attribute(
                    "project", "projects",
                ))),
        )
        .layer(AuthenticateLayer::new(authenticator()));
    assert_eq!(
        get_as(&app, "/users/reader", Some(READER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/users/writer", Some(READER)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as(&app, "/projects/p2", Some(WRITER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/projects/p3", Some(WRITER)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as(&app, "/projects/p1", Some(READER)).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_policy_sees_method_route_headers_and_path_parameters() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = {
        let seen = Arc::clone(&seen);
        move |p: &Principal, r: &PolicyRequest<'_>| {
            seen.lock().unwrap().push(format!(
                "{} {} {} {:?} {:?} {:?}",
                p.subject(),
                r.method(),
                r.path(),
                r.route(),
                r.path_param("id"),
                r.headers().get("x-request-id"),
            ));
            true
        }
    };
    let app = app_with(&["/orders/{id}"], AuthorizeLayer::new(policy));
    let mut request = req(Method::DELETE, "/orders/o-7?force=1", Some(WRITER));
    request
        .headers_mut()
        .insert("x-request-id", "r-1".parse().unwrap());
    assert_eq!(send(&app, request).await.status(), StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        [r#"writer DELETE /orders/o-7 Some("/orders/{id}") Some("o-7") Some("r-1")"#]
    );
}

/// Answers after a pause, as a remote decision service would.
#[derive(Clone)]
struct Remote {
    allow: Option<bool>,
}

impl Policy for Remote {
    type Future = Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send>>;

    fn evaluate(&self, p: &Principal, _: &PolicyRequest<'_>) -> Evaluation<Self::Future> {
        let allow = self.allow;
        let subject = p.subject().to_owned();
        Evaluation::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            match allow {
                Some(allow) => Ok(Decision::from(allow && subject != "nobody")),
                None => Err(Error::unavailable(
                    "decision service refused the connection",
                )),
            }
        }))
    }
}

#[tokio::test]
async fn an_async_policy_allows_and_denies() {
    let app = app_with(&["/r"], AuthorizeLayer::new(Remote { allow: Some(true) }));
    assert_eq!(
        get_as(&app, "/r", Some(READER)).await.status(),
        StatusCode::OK
    );
    let res = get_as(&app, "/r", Some(NOBODY)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&res), Some(ErrorKind::PolicyDenied));
}

#[tokio::test]
async fn a_failing_policy_is_503_with_retry_after_never_an_allow() {
    let layer = AuthorizeLayer::new(Remote { allow: None });
    let app = app_with(&["/r"], layer.clone());
    let res = get_as(&app, "/r", Some(ADMIN)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[RETRY_AFTER], "5");
    assert_eq!(kind(&res), Some(ErrorKind::StoreUnavailable));
    let d = denial(&res);
    assert_eq!(d.reason(), &DenialReason::PolicyFailed);
    assert_eq!(
        d.policy_error().map(Error::kind),
        Some(ErrorKind::StoreUnavailable)
    );
    // Neither `or` with a denying policy nor `not` turns the failure into an allow.
    let or_deny = Remote { allow: None }.or(policy_fn(|_, _| false));
    let app = app_with(&["/r"], AuthorizeLayer::new(or_deny));
    let res_or = get_as(&app, "/r", Some(ADMIN)).await;
    assert_eq!(res_or.status(), StatusCode::SERVICE_UNAVAILABLE);
    let app = app_with(&["/r"], AuthorizeLayer::new(Remote { allow: None }.not()));
    let res_not = get_as(&app, "/r", Some(ADMIN)).await;
    assert_eq!(res_not.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(layer.stats().rejected(ErrorKind::StoreUnavailable), 1);
    // The body says nothing of the cause.
    assert_eq!(body(res).await, "");
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn a_policy_that_never_answers_times_out_with_503() {
    struct Hang;
    impl Policy for Hang {
        type Future = std::future::Pending<Result<Decision, Error>>;
        fn evaluate(&self, _: &Principal, _: &PolicyRequest<'_>) -> Evaluation<Self::Future> {
            Evaluation::Pending(std::future::pending())
        }
    }
    let app = app_with(
        &["/r"],
        AuthorizeLayer::new(Hang.timeout(std::time::Duration::from_secs(2))),
    );
    let res = get_as(&app, "/r", Some(ADMIN)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(kind(&res), Some(ErrorKind::StoreTimeout));
    assert!(res.headers().contains_key(RETRY_AFTER));
}

#[tokio::test]
async fn insufficient_scope_answers_in_the_bearer_scheme_when_the_route_accepts_it() {
    // X-API-Key is tried first, so `ApiKey` is the first challenge of the route...
    let keys = StaticAuthenticator::api_key_header().with_token("k1", principal("k").build());
    let app = Router::new()
        .route("/r", get(|| async { "ok" }))
        .route_layer(RequireScopesLayer::all(["orders:write"]).unwrap())
        .layer(AuthenticateLayer::new(
            credentialflow::authn::AuthenticatorExt::or(keys, authenticator()),
        ));
    let unauthenticated = get_as(&app, "/r", None).await;
    assert_eq!(
        challenges(&unauthenticated),
        [r#"ApiKey realm="api""#, r#"Bearer realm="api""#]
    );
    // ...but insufficient_scope is a Bearer error code.
    let res = get_as(&app, "/r", Some(READER)).await;
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#]
    );
}

#[cfg(feature = "key")]
#[tokio::test]
async fn principals_from_real_api_keys_are_authorized_by_scope_role_and_tenant() {
    use credentialflow::key::{
        ApiKeyAuthenticator, KeyFormat, KeyHasher, KeyManager, MemoryKeyStore,
    };
    let store = MemoryKeyStore::new();
    let format = KeyFormat::new("cf_test").unwrap();
    let keys = KeyManager::new(store.clone(), format.clone(), KeyHasher::sha256());
    let acme_writer = keys
        .issue("ci-bot", |r| {
            r.tenant = Some("acme".into());
            r.scopes = vec!["orders:write".into()];
            r.roles = vec!["deployer".into()];
        })
        .await
        .unwrap();
    let globex_reader = keys
        .issue("intern", |r| {
            r.tenant = Some("globex".into());
            r.scopes = vec!["orders:read".into()];
        })
        .await
        .unwrap();

    let app = Router::new()
        .route("/tenants/{tenant}/orders", post(|| async { "created" }))
        .route_layer(RequireScopesLayer::all(["orders:write"]).unwrap())
        .route_layer(AuthorizeLayer::new(TenantFromPath::new("tenant")))
        .merge(
            Router::new()
                .route("/deploy", post(|| async { "deployed" }))
                .route_layer(RequireRolesLayer::any(["deployer"]).unwrap()),
        )
        .layer(AuthenticateLayer::new(ApiKeyAuthenticator::new(
            format,
            KeyHasher::sha256(),
            store,
        )));
    let call = |uri: &str, key: &str| {
        Request::post(uri)
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap()
    };
    let ok = send(&app, call("/tenants/acme/orders", acme_writer.key())).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let other_tenant = send(&app, call("/tenants/globex/orders", acme_writer.key())).await;
    assert_eq!(other_tenant.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&other_tenant), Some(ErrorKind::PolicyDenied));
    let no_scope = send(&app, call("/tenants/globex/orders", globex_reader.key())).await;
    assert_eq!(no_scope.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&no_scope), Some(ErrorKind::InsufficientScope));
    assert_eq!(
        send(&app, call("/deploy", acme_writer.key()))
            .await
            .status(),
        StatusCode::OK
    );
    let no_role = send(&app, call("/deploy", globex_reader.key())).await;
    assert_eq!(no_role.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&no_role), Some(ErrorKind::InsufficientRole));
}

// ---------------------------------------------------------------------------------------------
// The rule table

fn table_app(table: AuthorizeRoutesLayer) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/orders",
            get(|| async { "list" })
                .post(|| async { "created" })
                .delete(|| async { "deleted" }),
        )
        .route("/orders/{id}", get(|| async { "one" }))
        .route("/tenants/{tenant}/orders", get(|| async { "tenant" }))
        .route("/admin", get(|| async { "admin" }))
        .route_layer(table)
        .layer(AuthenticateLayer::new(authenticator()).optional())
}

fn table() -> AuthorizeRoutesLayer {
    AuthorizeRoutesLayer::builder()
        .get("/health", Requirement::public())
        .any_method("/orders", Requirement::any_scope(["orders:read"]))
        .post("/orders", Requirement::all_scopes(["orders:write"]))
        .get("/orders/{id}", Requirement::authenticated())
        .get(
            "/tenants/{tenant}/orders",
            Requirement::all_scopes(["orders:read"])
                .and(Requirement::policy(TenantFromPath::new("tenant"))),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn public_routes_work_without_credentials_but_not_with_bad_ones() {
    let app = table_app(table());
    assert_eq!(get_as(&app, "/health", None).await.status(), StatusCode::OK);
    assert_eq!(
        get_as(&app, "/health", Some(READER)).await.status(),
        StatusCode::OK
    );
    let bad = get_as(&app, "/health", Some("forged-token")).await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&bad),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    // HEAD follows the GET rule.
    let head = send(&app, req(Method::HEAD, "/health", None)).await;
    assert_eq!(head.status(), StatusCode::OK);
}

#[tokio::test]
async fn method_specific_rule_beats_the_any_method_rule() {
    let app = table_app(table());
    // GET and DELETE /orders: the any-method rule (orders:read).
    assert_eq!(
        get_as(&app, "/orders", Some(READER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, req(Method::DELETE, "/orders", Some(READER)))
            .await
            .status(),
        StatusCode::OK
    );
    // POST /orders: its own rule (orders:write), which the reader lacks...
    let post = send(&app, req(Method::POST, "/orders", Some(READER))).await;
    assert_eq!(post.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&post),
        [r#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#]
    );
    assert_eq!(denial(&post).rule(), Some("POST /orders"));
    // ...and the any-method rule does not help: the specific rule decides alone.
    let admin_post = send(&app, req(Method::POST, "/orders", Some(ADMIN))).await;
    assert_eq!(admin_post.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app, req(Method::POST, "/orders", Some(WRITER)))
            .await
            .status(),
        StatusCode::OK
    );
    let get_admin = get_as(&app, "/orders", Some(ADMIN)).await;
    assert_eq!(denial(&get_admin).rule(), Some("* /orders"));
}

#[tokio::test]
async fn a_matched_route_without_a_rule_is_denied_403_or_401() {
    let app = table_app(table());
    let authed = get_as(&app, "/admin", Some(ADMIN)).await;
    assert_eq!(authed.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&authed), Some(ErrorKind::PolicyDenied));
    assert_eq!(denial(&authed).reason(), &DenialReason::UnlistedRoute);
    assert!(challenges(&authed).is_empty());

    let anonymous = get_as(&app, "/admin", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&anonymous), Some(ErrorKind::AuthenticationRequired));
    assert_eq!(challenges(&anonymous), [r#"Bearer realm="api""#]);

    // A method the route has no rule for, though the route serves it... or not.
    let put = send(&app, req(Method::PUT, "/orders/1", Some(ADMIN))).await;
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_paths_stay_404() {
    let app = table_app(table());
    for token in [None, Some(READER)] {
        let res = get_as(&app, "/no/such/path", token).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(kind(&res).is_none());
    }
}

#[tokio::test]
async fn the_table_applies_scopes_authentication_and_policies_per_rule() {
    let app = table_app(table());
    assert_eq!(
        get_as(&app, "/orders/7", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&app, "/orders/7", Some(NOBODY)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/tenants/acme/orders", Some(READER))
            .await
            .status(),
        StatusCode::OK
    );
    let other = get_as(&app, "/tenants/globex/orders", Some(READER)).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&other), Some(ErrorKind::PolicyDenied));
    let d = denial(&other);
    assert_eq!(d.rule(), Some("GET /tenants/{tenant}/orders"));
    assert_eq!(d.route(), Some("/tenants/{tenant}/orders"));
    // Scopes are checked before the policy.
    let admin = get_as(&app, "/tenants/globex/orders", Some(ADMIN)).await;
    assert_eq!(kind(&admin), Some(ErrorKind::InsufficientScope));
}

#[tokio::test]
async fn dangerous_allow_unlisted_routes_lets_unlisted_routes_through() {
    let table = AuthorizeRoutesLayer::builder()
        .post("/orders", Requirement::all_scopes(["orders:write"]))
        .dangerous_allow_unlisted_routes()
        .build()
        .unwrap();
    let app = table_app(table);
    assert_eq!(get_as(&app, "/admin", None).await.status(), StatusCode::OK);
    assert_eq!(get_as(&app, "/orders", None).await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, req(Method::POST, "/orders", Some(READER)))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as(&app, "/nowhere", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn duplicate_and_methodless_rules_are_config_errors() {
    let dup = AuthorizeRoutesLayer::builder()
        .get("/a", Requirement::public())
        .get("/a", Requirement::authenticated())
        .build();
    assert!(dup.is_err());
    let none = AuthorizeRoutesLayer::builder()
        .rule(Vec::<Method>::new(), "/a", Requirement::public())
        .build();
    assert!(none.is_err());
    let bad_scope = AuthorizeRoutesLayer::builder()
        .get("/a", Requirement::all_scopes(["has space"]))
        .build();
    assert!(bad_scope.is_err());
}

#[tokio::test]
async fn the_table_keys_on_the_full_pattern_of_a_nested_route() {
    let api = Router::new().route("/orders/{id}", get(|| async { "one" }));
    let table = AuthorizeRoutesLayer::builder()
        .get("/api/orders/{id}", Requirement::all_scopes(["orders:read"]))
        .build()
        .unwrap();
    let app = Router::new()
        .nest("/api", api)
        .route_layer(table)
        .layer(AuthenticateLayer::new(authenticator()));
    assert_eq!(
        get_as(&app, "/api/orders/1", Some(READER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/api/orders/1", Some(NOBODY)).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn applied_with_layer_instead_of_route_layer_unknown_paths_are_refused_not_404() {
    // Documented behaviour: `layer` also wraps the fallback, which has no matched route.
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .layer(
            AuthorizeRoutesLayer::builder()
                .get("/health", Requirement::public())
                .dangerous_allow_unlisted_routes()
                .build()
                .unwrap(),
        )
        .layer(AuthenticateLayer::new(authenticator()).optional());
    assert_eq!(get_as(&app, "/health", None).await.status(), StatusCode::OK);
    let unknown = get_as(&app, "/nowhere", None).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(denial(&unknown).reason(), &DenialReason::NoMatchedRoute);
}

#[tokio::test]
async fn an_async_policy_in_the_table_fails_closed() {
    let table = AuthorizeRoutesLayer::builder()
        .get("/orders", Requirement::policy(Remote { allow: None }))
        .get(
            "/orders/{id}",
            Requirement::policy(Remote { allow: Some(true) }),
        )
        .build()
        .unwrap();
    let app = table_app(table);
    let res = get_as(&app, "/orders", Some(ADMIN)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key(RETRY_AFTER));
    assert_eq!(denial(&res).rule(), Some("GET /orders"));
    assert_eq!(
        get_as(&app, "/orders/1", Some(ADMIN)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/orders/1", Some(NOBODY)).await.status(),
        StatusCode::FORBIDDEN
    );
}

// ---------------------------------------------------------------------------------------------
// Shadow mode

fn shadow_of<B>(res: &Response<B>) -> ShadowDecision {
    res.extensions()
        .get::<ShadowDecision>()
        .expect("a ShadowDecision")
        .clone()
}

#[tokio::test]
async fn a_shadow_layer_lets_the_request_pass_and_records_what_it_would_have_done() {
    let layer = RequireScopesLayer::all(["orders:write"])
        .unwrap()
        .shadow(true);
    let app = app_with(&["/orders"], layer.clone());
    let res = get_as(&app, "/orders", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.extensions().get::<Error>().is_none(),
        "never an Error on a 200"
    );
    assert!(
        res.extensions().get::<Denial>().is_none(),
        "the denial is inside the record"
    );
    assert!(challenges(&res).is_empty());
    let shadow = shadow_of(&res);
    assert!(!shadow.allowed());
    assert_eq!(shadow.would_reject(), Some(ErrorKind::InsufficientScope));
    assert_eq!(
        shadow.denial().map(|d| d.reason().clone()),
        Some(DenialReason::MissingScopes {
            mode: Match::All,
            missing: "orders:write".into()
        })
    );

    let allowed = get_as(&app, "/orders", Some(WRITER)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(shadow_of(&allowed).allowed());

    let stats = layer.stats();
    assert_eq!(stats.shadow_rejected(ErrorKind::InsufficientScope), 1);
    assert_eq!(stats.shadow_allowed(), 1);
    assert_eq!(stats.rejected_total(), 0);
}

#[tokio::test]
async fn a_shadow_rule_passes_while_the_rest_of_the_table_enforces() {
    let table = AuthorizeRoutesLayer::builder()
        .get("/admin", Requirement::all_roles(["admin"]).shadow())
        .get("/orders", Requirement::all_roles(["admin"]))
        .build()
        .unwrap();
    let app = table_app(table.clone());
    let res = get_as(&app, "/admin", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(kind(&res).is_none());
    let shadow = shadow_of(&res);
    assert_eq!(shadow.would_reject(), Some(ErrorKind::InsufficientRole));
    assert_eq!(shadow.rule(), Some("GET /admin"));
    // Unauthenticated: would be 401, passes.
    let anon = get_as(&app, "/admin", None).await;
    assert_eq!(anon.status(), StatusCode::OK);
    assert_eq!(
        shadow_of(&anon).would_reject(),
        Some(ErrorKind::AuthenticationRequired)
    );
    // The enforcing rule still enforces.
    assert_eq!(
        get_as(&app, "/orders", Some(READER)).await.status(),
        StatusCode::FORBIDDEN
    );
    let stats = table.stats();
    assert_eq!(stats.shadow_rejected_total(), 2);
    assert_eq!(stats.rejected(ErrorKind::InsufficientRole), 1);
}

#[tokio::test]
async fn a_shadow_table_passes_everything_including_failing_policies_and_unlisted_routes() {
    let table = AuthorizeRoutesLayer::builder()
        .get("/orders", Requirement::policy(Remote { allow: None }))
        .shadow(true)
        .build()
        .unwrap();
    let app = table_app(table.clone());
    let failing = get_as(&app, "/orders", Some(ADMIN)).await;
    assert_eq!(failing.status(), StatusCode::OK);
    assert_eq!(
        shadow_of(&failing).would_reject(),
        Some(ErrorKind::StoreUnavailable)
    );
    let unlisted = get_as(&app, "/admin", Some(ADMIN)).await;
    assert_eq!(unlisted.status(), StatusCode::OK);
    assert_eq!(
        shadow_of(&unlisted).denial().map(|d| d.reason().clone()),
        Some(DenialReason::UnlistedRoute)
    );
    assert_eq!(table.stats().shadow_rejected_total(), 2);
}

#[tokio::test]
async fn an_enforcing_layer_outside_a_shadow_one_still_rejects_with_an_error() {
    let app = Router::new()
        .route("/r", get(|| async { "ok" }))
        .route_layer(RequireRolesLayer::any(["admin"]).unwrap().shadow(true))
        .route_layer(RequireScopesLayer::all(["orders:read"]).unwrap())
        .layer(AuthenticateLayer::new(authenticator()));
    let res = get_as(&app, "/r", Some(NOBODY)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(kind(&res), Some(ErrorKind::InsufficientScope));
    let res = get_as(&app, "/r", Some(READER)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        shadow_of(&res).would_reject(),
        Some(ErrorKind::InsufficientRole)
    );
}

#[test]
fn shadow_decisions_are_logged_at_info_and_rejections_at_debug_without_credentials() {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Global, not scoped: a scoped subscriber can miss events whose callsites other tests'
    // threads registered concurrently. Every test of this file then logs here too, which only
    // strengthens the last assertion.
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    runtime.block_on(async {
        let app = app_with(
            &["/orders"],
            RequireScopesLayer::all(["orders:write"])
                .unwrap()
                .shadow(true),
        );
        let res = get_as(&app, "/orders", Some(READER)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let enforcing = app_with(
            &["/orders"],
            RequireScopesLayer::all(["orders:write"]).unwrap(),
        );
        let res = get_as(&enforcing, "/orders", Some(READER)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    });
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("shadow mode"), "{log}");
    assert!(log.contains("would_reject=\"insufficient_scope\""), "{log}");
    assert!(log.contains("orders:write"), "{log}");
    assert!(log.contains("request rejected by authorization"), "{log}");
    assert!(!log.contains(READER), "no credential in logs: {log}");
}

// ---------------------------------------------------------------------------------------------
// gRPC

fn grpc(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut request = req(Method::POST, uri, token);
    request
        .headers_mut()
        .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
    request
}

#[tokio::test]
async fn grpc_requests_get_status_7_when_denied_and_16_when_unauthenticated() {
    let app = Router::new()
        .route("/pkg.Orders/Create", post(|| async { "ok" }))
        .route_layer(RequireScopesLayer::all(["orders:write"]).unwrap())
        .layer(AuthenticateLayer::new(authenticator()).optional());
    let denied = send(&app, grpc("/pkg.Orders/Create", Some(READER))).await;
    assert_eq!(denied.status(), StatusCode::OK);
    assert_eq!(denied.headers()["grpc-status"], "7");
    assert_eq!(kind(&denied), Some(ErrorKind::InsufficientScope));
    let anonymous = send(&app, grpc("/pkg.Orders/Create", None)).await;
    assert_eq!(anonymous.headers()["grpc-status"], "16");
    let failing = Router::new()
        .route("/pkg.Orders/Create", post(|| async { "ok" }))
        .route_layer(AuthorizeLayer::new(Remote { allow: None }))
        .layer(AuthenticateLayer::new(authenticator()));
    let unavailable = send(&failing, grpc("/pkg.Orders/Create", Some(READER))).await;
    assert_eq!(unavailable.headers()["grpc-status"], "14");
}

mod tonic_server {
    use super::*;
    use tokio::net::TcpListener;
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Channel, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    async fn check(
        client: &mut HealthClient<Channel>,
        token: Option<&str>,
    ) -> Result<(), tonic::Status> {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        client.check(request).await.map(|_| ())
    }

    #[tokio::test]
    async fn a_real_tonic_client_sees_permission_denied_and_unauthenticated() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .layer(AuthenticateLayer::new(authenticator()).optional())
                .layer(RequireRolesLayer::any(["admin"]).unwrap())
                .serve_with_incoming_shutdown(health, TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);

        assert_eq!(
            check(&mut client, Some(READER)).await.unwrap_err().code(),
            Code::PermissionDenied
        );
        assert_eq!(
            check(&mut client, None).await.unwrap_err().code(),
            Code::Unauthenticated
        );
        check(&mut client, Some(ADMIN)).await.unwrap();

        drop(client);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_response_future_polled_after_it_finished_stays_pending() {
    use std::task::{Context, Poll, Waker};
    use tower::{Layer, Service};
    let poll_once = |fut: &mut Pin<Box<dyn Future<Output = _> + Send>>| {
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    let inner =
        tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut svc = RequireScopesLayer::all(["orders:read"])
        .unwrap()
        .layer(inner);
    // Allowed (forwarded to the inner service), then refused (no principal: 401).
    for (who, status) in [
        (
            Some(principal("alice").scopes(["orders:read"]).build()),
            StatusCode::OK,
        ),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let mut req = Request::get("/").body(()).unwrap();
        if let Some(who) = who {
            req.extensions_mut().insert(who);
        }
        let mut fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(svc.call(req));
        match poll_once(&mut fut) {
            Poll::Ready(res) => assert_eq!(res.unwrap().status(), status),
            Poll::Pending => panic!("a ready service waited"),
        }
        assert!(poll_once(&mut fut).is_pending());
        assert!(poll_once(&mut fut).is_pending());
    }
}

// ---------------------------------------------------------------------------------------------
// Path parameters read off the path agree with axum's own.

/// Answers with the path parameters axum captured, `name=value&…`.
async fn echo_params(params: axum::extract::RawPathParams) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A route pattern and a path that may match it: the parameters a policy reads (off the path,
/// when the pattern is simple enough) must be exactly those axum hands a handler.
fn pattern_and_path() -> impl proptest::strategy::Strategy<Value = (String, String)> {
    use proptest::prelude::*;
    let segment = prop_oneof![
        // A static segment, which the path repeats or (now and then) changes.
        4 => ("[a-z]{1,6}", proptest::bool::weighted(0.9)).prop_map(|(s, same)| (s.clone(), if same { s } else { format!("{s}x") })),
        // A parameter, and what the path puts there: plain, percent-encoded, empty, odd.
        4 => (
            0u8..4,
            prop_oneof![
                6 => "[a-zA-Z0-9._~+-]{0,6}",
                1 => "%[0-9A-F]{2}|[a-z]%2[0Ff][a-z]|é",
            ]
        )
            .prop_map(|(i, v)| (format!("{{p{i}}}"), v)),
        // Forms that are not a plain whole-segment parameter.
        1 => Just(("pre-{p9}".to_owned(), "pre-x".to_owned())),
        1 => Just(("{{lit}}".to_owned(), "{lit}".to_owned())),
    ];
    (
        proptest::collection::vec(segment, 1..5),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(segments, trailing, wildcard)| {
            // Parameter names may repeat: axum accepts that, and the first one counts.
            let mut pattern = String::new();
            let mut path = String::new();
            for (p, s) in segments {
                pattern.push('/');
                pattern.push_str(&p);
                path.push('/');
                path.push_str(&s);
            }
            if wildcard {
                pattern.push_str("/{*rest}");
                path.push_str("/a/b");
            }
            if trailing {
                path.push('/');
            }
            (pattern, path)
        })
}

#[test]
fn path_parameters_a_policy_reads_are_the_ones_axum_captured() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (compared, read_off_path) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    proptest!(ProptestConfig::with_cases(400), |((pattern, path) in pattern_and_path())| {
        let seen: Arc<Mutex<Option<String>>> = Arc::default();
        let record = Arc::clone(&seen);
        let policy = move |_: &Principal, request: &PolicyRequest<'_>| {
            let params: Vec<String> = request
                .path_params()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            // The one-parameter lookup must agree with the list (the first of a name given
            // twice, which axum allows).
            let mut first = std::collections::HashMap::new();
            for (k, v) in request.path_params() {
                first.entry(k).or_insert(v);
            }
            for (k, v) in first {
                assert_eq!(request.path_param(k), Some(v), "{k}");
            }
            *record.lock().unwrap() = Some(params.join("&"));
            true
        };
        let Ok(router) = std::panic::catch_unwind(|| {
            Router::new().route(
                &pattern,
                get(echo_params),
            )
        }) else {
            // A pattern axum refuses (it panics when routes are added): nothing to compare.
            return Ok(());
        };
        let app = router
            .route_layer(AuthorizeLayer::new(policy))
            .layer(AuthenticateLayer::new(authenticator()));
        let Ok(uri) = http::Uri::try_from(path.as_str()) else { return Ok(()) };
        let req = Request::get(uri)
            .header("authorization", format!("Bearer {READER}"))
            .body(Body::empty())
            .unwrap();
        let res = runtime.block_on(app.oneshot(req)).unwrap();
        if res.status() != StatusCode::OK {
            // The path did not match the route (or axum refused a parameter): nothing read.
            return Ok(());
        }
        let axum_params = String::from_utf8(
            runtime
                .block_on(http_body_util::BodyExt::collect(res.into_body()))
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let read = seen.lock().unwrap().take().expect("the policy ran");
        prop_assert_eq!(&read, &axum_params, "{} on {}", path, pattern);
        compared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !path.contains('%') && !pattern.contains(['*', '-']) && !pattern.contains("{{") {
            read_off_path.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // Enough matched routes were compared, most of them read off the path.
    let compared = compared.into_inner();
    let read_off_path = read_off_path.into_inner();
    assert!(
        compared >= 100,
        "only {compared} of 400 cases matched their route"
    );
    assert!(
        read_off_path >= 50,
        "only {read_off_path} of {compared} read off the path"
    );
}

#[tokio::test]
async fn path_parameters_of_a_nested_router_are_axums() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = {
        let seen = Arc::clone(&seen);
        move |_: &Principal, request: &PolicyRequest<'_>| {
            let params: Vec<String> = request
                .path_params()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            seen.lock().unwrap().push(params.join("&"));
            true
        }
    };
    let inner = Router::new()
        .route("/{id}/items", get(echo_params))
        .route_layer(AuthorizeLayer::new(record));
    let app = Router::new()
        .nest("/tenants/{tenant}", inner)
        .layer(AuthenticateLayer::new(authenticator()));
    let req = Request::get("/tenants/acme/42/items")
        .header("authorization", format!("Bearer {READER}"))
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"tenant=acme&id=42");
    assert_eq!(seen.lock().unwrap().as_slice(), ["tenant=acme&id=42"]);
}
