//! Tenants, roles and tenant isolation on an axum router, with real API keys.
//!
//! Two tenants (`acme`, `globex`) share one API. Each key belongs to a tenant and carries
//! roles and scopes. One rule table, applied with `route_layer`, decides every route:
//!
//! - `/health` is public;
//! - a tenant's projects are readable by its own members only (the tenant in the path must be
//!   the key's tenant: no key of `acme` reads `globex`'s data, whatever its roles);
//! - creating a project needs the `projects:write` scope, deleting one the `admin` role;
//! - `/ops/tenants` is for the platform operators' role, across tenants;
//! - a new rule (`/tenants/{tenant}/audit`) runs in shadow mode: recorded, not enforced.
//!
//! Runs without a network: every request goes through the router with `oneshot`, and the
//! program prints each request with its status, then exits.
//!
//! ```text
//! cargo run --example multi_tenant
//! ```

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use credentialflow::Error;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::authz::{
    AuthorizeRoutesLayer, Denial, Requirement, ShadowDecision, TenantFromPath,
};
use credentialflow::key::{ApiKeyAuthenticator, KeyFormat, KeyHasher, KeyManager, MemoryKeyStore};
use http::{Method, Request, StatusCode};
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The authorization rules of the whole API, in one place.
fn rules() -> Result<AuthorizeRoutesLayer, credentialflow::ConfigError> {
    let own_tenant = || Requirement::policy(TenantFromPath::new("tenant"));
    AuthorizeRoutesLayer::builder()
        .get("/health", Requirement::public())
        .get(
            "/tenants/{tenant}/projects",
            Requirement::any_role(["member", "admin"]).and(own_tenant()),
        )
        .post(
            "/tenants/{tenant}/projects",
            Requirement::all_scopes(["projects:write"])
                .and(Requirement::any_role(["member", "admin"]))
                .and(own_tenant()),
        )
        .delete(
            "/tenants/{tenant}/projects/{id}",
            Requirement::all_roles(["admin"]).and(own_tenant()),
        )
        .get(
            "/ops/tenants",
            Requirement::all_roles(["platform-operator"]),
        )
        // Rolling out: only admins should read the audit log. Recorded, not yet enforced.
        .get(
            "/tenants/{tenant}/audit",
            Requirement::all_roles(["admin"]).and(own_tenant()).shadow(),
        )
        .build()
}

fn app(
    authenticate: AuthenticateLayer<ApiKeyAuthenticator<MemoryKeyStore>>,
) -> Result<Router, BoxError> {
    Ok(Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/tenants/{tenant}/projects",
            get(|Path(tenant): Path<String>| async move { format!("projects of {tenant}") })
                .post(|| async { "created" }),
        )
        .route(
            "/tenants/{tenant}/projects/{id}",
            axum::routing::delete(|| async { "deleted" }),
        )
        .route("/tenants/{tenant}/audit", get(|| async { "audit log" }))
        .route("/ops/tenants", get(|| async { "acme, globex" }))
        .route("/ops/reindex", post(|| async { "no rule for me" }))
        .route_layer(rules()?)
        // Optional: requests without a key continue as anonymous, so that public routes work;
        // the table answers 401 on every other route. A bad key is 401 everywhere.
        .layer(authenticate.optional()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // Keys, as an admin console would issue them. The full key is shown once.
    let store = MemoryKeyStore::new();
    let format = KeyFormat::new("mt_live")?;
    let keys = KeyManager::new(store.clone(), format.clone(), KeyHasher::sha256());
    let alice = keys
        .issue("alice", |k| {
            k.tenant = Some("acme".into());
            k.roles = vec!["member".into()];
            k.scopes = vec!["projects:read".into(), "projects:write".into()];
        })
        .await?;
    let bob = keys
        .issue("bob", |k| {
            k.tenant = Some("globex".into());
            k.roles = vec!["admin".into()];
            k.scopes = vec!["projects:read".into()];
        })
        .await?;
    let ops = keys
        .issue("ops-bot", |k| {
            k.roles = vec!["platform-operator".into()];
        })
        .await?;

    let app = app(AuthenticateLayer::new(ApiKeyAuthenticator::new(
        format,
        KeyHasher::sha256(),
        store,
    )))?;

    let who = [
        ("alice@acme", alice.key()),
        ("bob@globex", bob.key()),
        ("ops", ops.key()),
    ];
    let key_of = |name: &str| who.iter().find(|(n, _)| *n == name).map(|(_, k)| *k);

    // (method, path, as whom, expected status)
    let calls: &[(Method, &str, Option<&str>, StatusCode)] = &[
        (Method::GET, "/health", None, StatusCode::OK),
        (
            Method::GET,
            "/tenants/acme/projects",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/tenants/acme/projects",
            Some("alice@acme"),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/tenants/globex/projects",
            Some("alice@acme"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/tenants/globex/projects",
            Some("bob@globex"),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/tenants/acme/projects",
            Some("alice@acme"),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/tenants/globex/projects",
            Some("bob@globex"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::DELETE,
            "/tenants/acme/projects/7",
            Some("alice@acme"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::DELETE,
            "/tenants/globex/projects/7",
            Some("bob@globex"),
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/tenants/acme/projects/7",
            Some("bob@globex"),
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, "/ops/tenants", Some("ops"), StatusCode::OK),
        (
            Method::GET,
            "/ops/tenants",
            Some("bob@globex"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/ops/reindex",
            Some("ops"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/tenants/acme/audit",
            Some("alice@acme"),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/no/such/route",
            Some("ops"),
            StatusCode::NOT_FOUND,
        ),
    ];

    for (method, path, as_whom, expected) in calls {
        let mut request = Request::builder().method(method.clone()).uri(*path);
        if let Some(name) = as_whom {
            request = request.header("x-api-key", key_of(name).ok_or("unknown caller")?);
        }
        let response = app.clone().oneshot(request.body(Body::empty())?).await?;
        let status = response.status();

        // What an audit log would record: the reason stays on the server.
        let note = if let Some(denial) = response.extensions().get::<Denial>() {
            let kind = response.extensions().get::<Error>().map(Error::kind);
            format!("  ({} — {denial})", kind.map_or("?", |k| k.as_str()))
        } else if let Some(shadow) = response.extensions().get::<ShadowDecision>() {
            match shadow.denial() {
                Some(denial) => format!("  (shadow: would refuse — {denial})"),
                None => "  (shadow: would allow)".to_owned(),
            }
        } else {
            String::new()
        };
        println!(
            "{:<6} {path:<28} as {:<11} -> {}{note}",
            method.as_str(),
            as_whom.unwrap_or("anonymous"),
            status.as_u16(),
        );
        if status != *expected {
            return Err(format!("{method} {path}: expected {expected}, got {status}").into());
        }
    }
    Ok(())
}
