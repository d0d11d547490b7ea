//! An axum API that verifies the JWTs of an OpenID Connect issuer found by discovery.
//!
//! ```sh
//! cargo run --example axum_oidc --features jwks
//! ```
//!
//! So that it runs on a machine with no network, it first starts its own tiny identity provider
//! on loopback: a discovery document, a JWK Set and a `/token` endpoint that mints RS256 tokens
//! with a test-only fixture key (a demo: a real IdP authenticates the client first). The API
//! then finds the IdP's keys by OIDC discovery, exactly as it would for a real issuer, waits for
//! them (`ready()`), listens on 127.0.0.1:3000 (`PORT` for another port, `PORT=0` for a free one)
//! and prints `curl` lines to try. `QUICKSTART_EXIT_AFTER_START=1` makes it exit once it is
//! listening, after checking one token in-process (used by the test script).
//!
//! Against a real provider, drop the IdP half and `dangerous_allow_http()`:
//! `JwksKeySource::oidc("https://login.example.com").build()?`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::{Router, routing::get};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use credentialflow::Principal;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::jwt::{Algorithm, CryptoBackend, Issuer, JwksKeySource, JwtAuthenticator};
use jsonwebtoken::EncodingKey;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

const AUDIENCE: &str = "orders-api";
const KID: &str = "demo-2026";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };

    // 1. The identity provider (a stand-in for Keycloak, Auth0, Entra ID, ...).
    let idp = Idp::start().await?;
    let issuer = idp.issuer.clone();

    // 2. The API: keys by OIDC discovery of `issuer`; `issuer` in the discovery document must
    //    equal it exactly. Plain http only because the IdP is on loopback.
    let keys = JwksKeySource::oidc(issuer.as_str())
        .dangerous_allow_http()
        .algorithms([Algorithm::RS256])
        .build()?;
    keys.ready().await?; // serve nothing before the first key set is in
    let authenticator = JwtAuthenticator::builder()
        .issuer(
            Issuer::new(issuer.as_str())
                .audience(AUDIENCE)
                .key_source(keys.clone()),
        )
        .build()?;
    let app = Router::new()
        .route("/me", get(me))
        .route_layer(AuthenticateLayer::new(authenticator).realm("orders")?)
        .route("/health", get(|| async { "ok\n" }));

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let token = idp.mint("alice", "orders:read")?;
    println!(
        "credentialflow axum_oidc listening on {base}
Identity provider (demo, loopback): {issuer}
  discovery: {issuer}/.well-known/openid-configuration
  keys:      {kids:?} ({stats:?})

  # a token for alice, minted by the demo IdP (valid 1 hour)
  TOKEN=$(curl -s '{issuer}/token?sub=alice&scope=orders:read')

  # accepted: 200 with alice's subject and scopes
  curl -i -H \"Authorization: Bearer $TOKEN\" {base}/me
  curl -i -H 'Authorization: Bearer {token}' {base}/me

  # rejected, no token: 401
  curl -i {base}/me

  # rejected, tampered token: 401 error=\"invalid_token\"
  curl -i -H \"Authorization: Bearer ${{TOKEN%?}}x\" {base}/me
",
        kids = keys.key_ids(),
        stats = keys.stats(),
    );

    if std::env::var_os("QUICKSTART_EXIT_AFTER_START").is_some() {
        let request = axum::http::Request::get("/me")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())?;
        let response = app.oneshot(request).await?;
        println!(
            "self-check: GET /me with alice's token → {}",
            response.status()
        );
        return if response.status().is_success() {
            Ok(())
        } else {
            Err("self-check failed".into())
        };
    }
    axum::serve(listener, app).await?;
    Ok(())
}

/// The protected handler.
async fn me(me: Principal) -> impl IntoResponse {
    as_json(&json!({
        "subject": me.subject(),
        "scopes": me.scopes().iter().collect::<Vec<_>>(),
        "credential_id": me.credential_id(),
    }))
}

fn as_json(value: &Value) -> impl IntoResponse + use<> {
    ([(CONTENT_TYPE, "application/json")], value.to_string())
}

/// A minimal OpenID provider: discovery, JWKS, and a token endpoint for the demo.
#[derive(Clone)]
struct Idp {
    issuer: String,
    key: Arc<EncodingKey>,
}

impl Idp {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt/rsa2048-private-TEST-ONLY.pem"
        ))?;
        let key = Arc::new(EncodingKey::from_rsa_pem(&pem)?);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let idp = Self {
            issuer: format!("http://{}", listener.local_addr()?),
            key,
        };
        let jwks = idp.jwks()?;
        let discovery = json!({
            "issuer": idp.issuer,
            "jwks_uri": format!("{}/jwks", idp.issuer),
            "token_endpoint": format!("{}/token", idp.issuer),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let routes = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { as_json(&discovery) }),
            )
            .route("/jwks", get(move || async move { as_json(&jwks) }))
            .route("/token", get(token))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, routes).await });
        Ok(idp)
    }

    /// The public half of the signing key as a JWK Set.
    fn jwks(&self) -> Result<Value, Box<dyn std::error::Error>> {
        let provider = CryptoBackend::default_backend()
            .ok_or("no crypto backend")?
            .provider();
        let (n, e) = (provider.key_utils.rsa_pub_components_from_private_key)(self.key.as_bytes())?;
        Ok(json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
            "n": B64.encode(n), "e": B64.encode(e),
        }]}))
    }

    fn mint(&self, sub: &str, scope: &str) -> Result<String, Box<dyn std::error::Error>> {
        let provider = CryptoBackend::default_backend()
            .ok_or("no crypto backend")?
            .provider();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": KID});
        let claims = json!({"iss": self.issuer, "aud": AUDIENCE, "sub": sub, "scope": scope,
                            "iat": now, "exp": now + 3600});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signer = (provider.signer_factory)(&Algorithm::RS256, &self.key)?;
        let signature = jsonwebtoken::signature::Signer::try_sign(&*signer, input.as_bytes())?;
        Ok(format!("{input}.{}", B64.encode(signature)))
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    sub: Option<String>,
    scope: Option<String>,
}

async fn token(State(idp): State<Idp>, Query(q): Query<TokenQuery>) -> impl IntoResponse {
    let sub = q.sub.as_deref().unwrap_or("alice");
    let scope = q.scope.as_deref().unwrap_or("orders:read");
    match idp.mint(sub, scope) {
        Ok(token) => (axum::http::StatusCode::OK, token),
        Err(_) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    }
}
