//! Authorization: may this [`Principal`] make this request?
//!
//! Behind an [`Authenticate`](crate::authn::Authenticate) layer, which puts the `Principal`
//! into the request, these layers decide:
//!
//! | Layer | Requires | Refused with |
//! |---|---|---|
//! | [`RequireScopesLayer::all`] / [`any`](RequireScopesLayer::any) | scopes | `403`, `error="insufficient_scope"`, `scope="…"` |
//! | [`RequireRolesLayer::all`] / [`any`](RequireRolesLayer::any) | roles | `403`, no challenge |
//! | [`AuthorizeLayer::new`] | a [`Policy`] | `403`; `503` + `Retry-After` when the policy fails |
//! | [`AuthorizeRoutesLayer`] | a [`Requirement`] per method × route pattern | as above; routes without a rule: denied |
//!
//! A request without an authenticated principal (none, or the anonymous one of the optional
//! mode) gets `401` with the route's challenges, before any check runs. gRPC requests get
//! `grpc-status` 16 (unauthenticated), 7 (denied) or 14 (policy unavailable). Everything a
//! check needs is prepared when the layer is built; the allow path of a scope or role check
//! does not allocate.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::{get, post}};
//! use credentialflow::authn::AuthenticateLayer;
//! use credentialflow::authz::{AuthorizeLayer, RequireScopesLayer, TenantFromPath};
//! use credentialflow::test_support::{StaticAuthenticator, principal};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reader = principal("alice").tenant("acme").scopes(["orders:read"]).build();
//! let authenticator = StaticAuthenticator::bearer().with_token("alice-token", reader);
//!
//! let app = Router::new()
//!     .route("/tenants/{tenant}/orders", get(|| async { "orders" }))
//!     .route_layer(AuthorizeLayer::new(TenantFromPath::new("tenant")))
//!     .merge(
//!         Router::new()
//!             .route("/orders", post(|| async { "created" }))
//!             .route_layer(RequireScopesLayer::all(["orders:write"])?),
//!     )
//!     .layer(AuthenticateLayer::new(authenticator));
//!
//! let request = |method: &str, uri: &str| {
//!     Request::builder().method(method).uri(uri)
//!         .header("authorization", "Bearer alice-token")
//!         .body(Body::empty())
//! };
//!
//! // Her own tenant: allowed.
//! let ok = app.clone().oneshot(request("GET", "/tenants/acme/orders")?).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! // Another tenant: 403.
//! let other = app.clone().oneshot(request("GET", "/tenants/globex/orders")?).await?;
//! assert_eq!(other.status(), StatusCode::FORBIDDEN);
//!
//! // A scope she lacks: 403 with the RFC 6750 challenge.
//! let write = app.oneshot(request("POST", "/orders")?).await?;
//! assert_eq!(write.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     write.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#,
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # A rule table
//!
//! [`AuthorizeRoutesLayer`] holds one [`Requirement`] per method and route pattern and is
//! applied once, with `route_layer`. It denies by default: a matched route without a rule is
//! `403` (`401` when unauthenticated).
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use credentialflow::authn::AuthenticateLayer;
//! use credentialflow::authz::{AuthorizeRoutesLayer, Requirement, TenantFromPath};
//! use credentialflow::test_support::{StaticAuthenticator, principal};
//! use http::{Method, Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rules = AuthorizeRoutesLayer::builder()
//!     .get("/health", Requirement::public())
//!     .any_method("/tenants/{tenant}/orders", Requirement::authenticated())
//!     .rule(
//!         [Method::POST, Method::PUT],
//!         "/tenants/{tenant}/orders",
//!         Requirement::all_scopes(["orders:write"])
//!             .and(Requirement::policy(TenantFromPath::new("tenant"))),
//!     )
//!     .build()?;
//!
//! let bob = principal("bob").tenant("acme").scopes(["orders:read"]).build();
//! let app = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/tenants/{tenant}/orders", get(|| async { "list" }).post(|| async { "created" }))
//!     .route("/admin", get(|| async { "no rule" }))
//!     .route_layer(rules)
//!     // Optional: requests without a credential continue as anonymous, so that public
//!     // routes work; a bad credential is still 401.
//!     .layer(AuthenticateLayer::new(StaticAuthenticator::bearer().with_token("bob-token", bob)).optional());
//!
//! let send = |method: Method, uri: &str, token: Option<&str>| {
//!     let mut builder = Request::builder().method(method).uri(uri);
//!     if let Some(token) = token {
//!         builder = builder.header("authorization", format!("Bearer {token}"));
//!     }
//!     app.clone().oneshot(builder.body(Body::empty()).unwrap())
//! };
//!
//! assert_eq!(send(Method::GET, "/health", None).await?.status(), StatusCode::OK);
//! assert_eq!(send(Method::GET, "/tenants/acme/orders", None).await?.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(send(Method::GET, "/tenants/acme/orders", Some("bob-token")).await?.status(), StatusCode::OK);
//! assert_eq!(send(Method::POST, "/tenants/acme/orders", Some("bob-token")).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(send(Method::GET, "/admin", Some("bob-token")).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(send(Method::GET, "/nowhere", Some("bob-token")).await?.status(), StatusCode::NOT_FOUND);
//! # Ok(())
//! # }
//! ```
//!
//! # Policies
//!
//! A [`Policy`] sees the principal and a [`PolicyRequest`]: method, URI, headers, the matched
//! route pattern and the path parameters. Closures `Fn(&Principal, &PolicyRequest<'_>) -> bool`
//! are policies; [`PolicyExt`] combines them with `and`, `or` and `not`, and bounds slow ones
//! with `timeout`. Ready-made: [`TenantFromPath`], [`AttributeEquals`], [`OwnerFromPath`].
//! A policy that fails or times out refuses the request with `503` and `Retry-After`, never
//! allows it.
//!
//! # Shadow mode
//!
//! Every layer, and every rule of a table, can run in shadow mode: the decision is computed and
//! recorded — a tracing event (target `credentialflow::authz`), the layer's [`AuthzStats`]
//! counters, and a [`ShadowDecision`] in the response's extensions — but the request passes.
//! A shadow decision is never an [`Error`](crate::Error), so an audit never shows a rejection
//! on a request that was served.
//!
//! # Audit
//!
//! A rejection puts its [`Error`](crate::Error) into the response's extensions, as every stage
//! does, and next to it a [`Denial`] that says which rule and which check (which scopes were
//! missing). The response body never says more than the standard `scope` parameter.
//!
//! # Security
//!
//! - Use `route_layer`, not `layer`, for these layers. With `route_layer`, unknown paths stay
//!   `404`; with `layer`, the rule table also sees requests that matched no route and refuses
//!   them (a scan of unknown paths then answers `401`/`403`), and single-route layers would
//!   guard the fallback too.
//! - The rule table keys on axum's `MatchedPath` (feature `axum`): the route pattern, never the
//!   raw path, so `/orders/1` and `/orders/%31` meet the same rule. A request without one is
//!   refused.
//! - Public routes need the `Authenticate` layer in
//!   [optional mode](crate::authn::AuthenticateLayer::optional) (or none in front of them):
//!   in required mode a request without a credential is `401` before the table runs.
//! - A method the route does not serve is refused like an unlisted one (`401`/`403`) instead of
//!   `405`: axum's method fallback sits behind `route_layer` too.
//!
//! [`Principal`]: crate::Principal

mod check;
mod future;
mod layer;
mod policies;
mod policy;
#[cfg(feature = "axum")]
mod rules;
mod service;

pub use self::check::{AuthzStats, Denial, DenialReason, Match, ShadowDecision};
pub use self::future::ResponseFuture;
pub use self::layer::{AuthorizeLayer, RequireRolesLayer, RequireScopesLayer};
pub use self::policies::{AttributeEquals, OwnerFromPath, TenantFromPath};
pub use self::policy::{
    And, CombineFuture, Decision, Evaluation, Not, NotFuture, Or, Policy, PolicyExt, PolicyRequest,
    ReadyDecision, policy_fn,
};
#[cfg(feature = "tokio")]
pub use self::policy::{Timeout, TimeoutFuture};
#[cfg(feature = "axum")]
pub use self::rules::{AuthorizeRoutes, AuthorizeRoutesBuilder, AuthorizeRoutesLayer, Requirement};
pub use self::service::{Authorize, RequireRoles, RequireScopes};

#[cfg(test)]
mod tests;
