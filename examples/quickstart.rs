//! A runnable axum server with API keys on the embedded in-memory store.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It issues a fresh API key, prints it once (a demo: real services show a key to its owner
//! once and store only its digest), listens on 127.0.0.1:3000 (set `PORT` for another port;
//! `PORT=0` picks a free one) and prints the `curl` commands to try. Rejections are logged at
//! debug level with their reason, never with the key. `QUICKSTART_EXIT_AFTER_START=1` makes it
//! exit once it is listening (used by the test script).

use std::net::{Ipv4Addr, SocketAddr};

use axum::http::header;
use axum::response::IntoResponse;
use axum::{Router, routing::get};
use credentialflow::Principal;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::key::{ApiKeyAuthenticator, KeyFormat, KeyHasher, KeyManager, MemoryKeyStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };

    // Keys look like cf_live_<id>_<secret><checksum>; only their SHA-256 digest is stored.
    let format = KeyFormat::new("cf_live")?;
    let store = MemoryKeyStore::new();
    let keys = KeyManager::new(store.clone(), format.clone(), KeyHasher::sha256());
    let alice = keys
        .issue("alice", |record| {
            record.tenant = Some("acme".into());
            record.scopes = vec!["orders:read".into(), "orders:write".into()];
        })
        .await?;
    let revoked = keys.issue("mallory", |_| {}).await?;
    keys.revoke(revoked.id()).await?;

    let authenticator = ApiKeyAuthenticator::new(format, KeyHasher::sha256(), store);
    let app = Router::new()
        .route("/me", get(me))
        // `route_layer` covers only the routes added before it: `/me`.
        .route_layer(AuthenticateLayer::new(authenticator).realm("quickstart")?)
        // Added after the layer, so public.
        .route("/health", get(|| async { "ok\n" }));

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let key = alice.key();
    // One character of the secret changed: the checksum no longer matches.
    let at = key.len() - 8;
    let mut typo = key.to_owned();
    typo.replace_range(at..=at, if key.as_bytes()[at] == b'x' { "y" } else { "x" });
    let revoked_key = revoked.key();
    println!(
        "credentialflow quickstart listening on {base}
Issued API key {} for alice (shown once; only its digest is stored).

  # public: 200
  curl -i {base}/health

  # accepted: 200 with alice's subject, tenant, scopes and key id
  curl -i -H 'X-API-Key: {key}' {base}/me
  curl -i -H 'Authorization: Bearer {key}' {base}/me

  # rejected, no credential: 401, one challenge per accepted scheme
  curl -i {base}/me

  # rejected, mistyped key (checksum fails, no store lookup): 401 error=\"invalid_token\"
  curl -i -H 'X-API-Key: {typo}' {base}/me

  # rejected, revoked key: the very same 401
  curl -i -H 'X-API-Key: {revoked_key}' {base}/me

  # rejected, key sent twice: 400 error=\"invalid_request\"
  curl -i -H 'X-API-Key: {key}' -H 'Authorization: Bearer {key}' {base}/me
",
        alice.id()
    );

    if std::env::var_os("QUICKSTART_EXIT_AFTER_START").is_some() {
        return Ok(());
    }
    axum::serve(listener, app).await?;
    Ok(())
}

/// The protected handler: the `Principal` extractor answers `401` itself for anonymous callers.
async fn me(me: Principal) -> impl IntoResponse {
    let body = serde_json::json!({
        "subject": me.subject(),
        "tenant": me.tenant(),
        "key_id": me.credential_id(),
        "scopes": me.scopes().iter().collect::<Vec<_>>(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}
