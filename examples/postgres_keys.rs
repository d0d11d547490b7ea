//! Create, use and revoke an API key kept in PostgreSQL.
//!
//! Needs a PostgreSQL server and its URL in `DATABASE_URL`:
//!
//! ```text
//! DATABASE_URL=postgres://user:password@127.0.0.1:5432/app \
//!     cargo run --example postgres_keys --features postgres
//! ```
//!
//! No server at hand? On Debian or Ubuntu, `apt-get install postgresql` and then, as the
//! `postgres` user, a throwaway one in a temporary directory (what `scripts/test` does):
//!
//! ```text
//! initdb -D /tmp/pg -U postgres --auth=trust
//! pg_ctl -D /tmp/pg -o "-p 5433 -k /tmp -c listen_addresses=127.0.0.1" -w start
//! DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres cargo run --example postgres_keys --features postgres
//! ```
//!
//! (`initdb` and `pg_ctl` live in `/usr/lib/postgresql/<version>/bin`.) The example creates the
//! table `credentialflow_api_keys` if it is missing and leaves the revoked key in it. For a
//! server that requires TLS, enable sqlx's `tls-rustls-ring` feature in your own `Cargo.toml`.

use std::process::ExitCode;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::key::{
    ApiKeyAuthenticator, CachingKeyStore, KeyFormat, KeyHasher, KeyManager, PostgresKeyStore,
};
use credentialflow::{Error, Principal};
use http::{Request, StatusCode};
use tower::ServiceExt;

async fn whoami(principal: Principal) -> String {
    format!(
        "hello {} (tenant {}, key {})",
        principal.subject(),
        principal.tenant().unwrap_or("-"),
        principal.credential_id().unwrap_or("-"),
    )
}

/// Sends `GET /me` with `key`; prints and returns the status.
async fn get_me(app: &Router, key: &str) -> Result<StatusCode, Box<dyn std::error::Error>> {
    let request = Request::get("/me")
        .header("x-api-key", key)
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let reason = response.extensions().get::<Error>().map(Error::kind);
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
    match reason {
        Some(kind) => println!("   -> {status} (audit reason: {kind:?})"),
        None => println!("   -> {status}: {}", String::from_utf8_lossy(&body)),
    }
    Ok(status)
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("1. connecting and migrating");
    let store = PostgresKeyStore::connect(url).await?;
    store.migrate().await?;
    println!("   {store:?}");

    // Lookups go through a cache; revoking through the same handle takes effect at once.
    let store = CachingKeyStore::new(store);
    let format = KeyFormat::new("cf_live")?;
    let keys = KeyManager::new(store.clone(), format.clone(), KeyHasher::sha256());
    let app = Router::new()
        .route("/me", get(whoami))
        .layer(AuthenticateLayer::new(ApiKeyAuthenticator::new(
            format,
            KeyHasher::sha256(),
            store,
        )));

    println!("2. issuing a key for alice");
    let issued = keys
        .issue("alice", |r| {
            r.tenant = Some("acme".into());
            r.name = Some("postgres_keys example".into());
            r.scopes = vec!["orders:read".into()];
        })
        .await?;
    // Shown once, here because this is a demo: a real service hands it to its owner and
    // forgets it. The table holds only its digest.
    println!("   id {}, key {}", issued.id(), issued.key());

    println!("3. GET /me with the key");
    if get_me(&app, issued.key()).await? != StatusCode::OK {
        return Err("the fresh key was refused".into());
    }

    println!("4. revoking the key");
    keys.revoke(issued.id()).await?;

    println!("5. GET /me with the revoked key");
    if get_me(&app, issued.key()).await? != StatusCode::UNAUTHORIZED {
        return Err("the revoked key was accepted".into());
    }

    let listed = keys.list("alice").await?;
    println!("6. alice has {} key(s) in the table", listed.len());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "DATABASE_URL is not set. Point it at a PostgreSQL server, e.g.\n  \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
             cargo run --example postgres_keys --features postgres\n\
             (see the comment at the top of examples/postgres_keys.rs for a throwaway server)"
        );
        return ExitCode::from(2);
    };
    match run(&url).await {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
