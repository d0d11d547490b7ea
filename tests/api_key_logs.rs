//! API keys never reach the logs: one test in its own binary, so that a thread-local TRACE
//! subscriber sees every event (no other test registers callsites first).
#![cfg(all(feature = "key", feature = "axum"))]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use credentialflow::Principal;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::FakeClock;
use credentialflow::extract::CredentialSource;
use credentialflow::key::{
    ApiKeyAuthenticator, CachingKeyStore, KeyFormat, KeyHasher, KeyManager, MemoryKeyStore,
};
use http::Request;
use tower::ServiceExt;

#[path = "support/log_capture.rs"]
mod log_capture;

#[tokio::test]
async fn no_api_key_secret_appears_in_any_log_line() {
    let (captured, _guard) = log_capture::capture();

    let clock = FakeClock::new();
    let store = MemoryKeyStore::new();
    let format = KeyFormat::new("cf_test").unwrap();
    let keys = KeyManager::with_clock(
        store.clone(),
        format.clone(),
        KeyHasher::sha256(),
        clock.clone(),
    );
    let good = keys.issue("alice", |_| {}).await.unwrap();
    let revoked = keys.issue("alice", |_| {}).await.unwrap();
    keys.revoke(revoked.id()).await.unwrap();
    let rotated = keys
        .rotate(good.id(), Duration::from_secs(60))
        .await
        .unwrap();

    let cache = CachingKeyStore::with_clock(store.clone(), clock.clone());
    let auth = ApiKeyAuthenticator::new(format, KeyHasher::sha256(), cache)
        .with_clock(clock.clone())
        .with_sources([
            CredentialSource::header("x-api-key").unwrap(),
            CredentialSource::bearer(),
            CredentialSource::query("api_key").unwrap(),
        ])
        .track_last_use(store.clone());
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(auth).strip_credentials(true));

    let mut typo = good.key().to_owned();
    let at = typo.len() - 9;
    typo.replace_range(at..=at, if &typo[at..=at] == "a" { "b" } else { "a" });
    let keys_sent = [good.key(), revoked.key(), rotated.key(), typo.as_str()];
    for key in keys_sent {
        let requests = [
            Request::get("/me")
                .header("x-api-key", key)
                .body(Body::empty())
                .unwrap(),
            Request::get("/me")
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
            Request::get(format!("/me?api_key={key}"))
                .body(Body::empty())
                .unwrap(),
            Request::get("/me")
                .header("x-api-key", key)
                .header("x-api-key", key)
                .body(Body::empty())
                .unwrap(),
        ];
        for req in requests {
            let span = tracing::info_span!(
                "request",
                subject = tracing::field::Empty,
                credential_id = tracing::field::Empty
            );
            let _entered = span.enter();
            let res = app.clone().oneshot(req).await.unwrap();
            tracing::trace!(status = res.status().as_u16(), headers = ?res.headers(), "response");
        }
    }
    // Let the last-use task run and log.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }

    let text = captured.text();
    assert!(text.contains("API key issued"), "the capture works: {text}");
    assert!(
        text.contains("request rejected by authentication"),
        "rejections are logged"
    );
    assert!(text.contains(good.id()), "key ids (public) are logged");
    for key in [good.key(), revoked.key(), rotated.key()] {
        // The secret part: between the id's separator and the checksum.
        let secret = &key[key.len() - 38..key.len() - 6];
        assert!(
            !text.contains(secret),
            "a key secret leaked into the logs:\n{text}"
        );
    }
    assert!(!text.contains(&typo[typo.len() - 38..typo.len() - 6]));
}
