//! Tokens, their signatures and the `kid`s they carry never reach the logs of the JWKS path
//! (refetch, cool-down, failure, 503): one test in its own binary, so that a thread-local TRACE
//! subscriber sees every event, including those of the source's tasks on the same thread.
#![cfg(all(feature = "jwks", feature = "axum"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use credentialflow::Principal;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::jwks::{JwksError, JwksErrorKind, JwksFetcher};
use credentialflow::jwt::{Algorithm, CryptoBackend, Issuer, JwksKeySource, JwtAuthenticator};
use http::{Request, Response, StatusCode, Uri};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::EllipticCurve;
use serde_json::json;
use tower::ServiceExt;

#[path = "support/log_capture.rs"]
mod log_capture;

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";

/// Serves `body`, or fails while `down` is set.
struct Flaky {
    body: String,
    down: Arc<AtomicBool>,
}

impl JwksFetcher for Flaky {
    async fn get(&self, _uri: &Uri, _max: usize) -> Result<Response<Bytes>, JwksError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(JwksError::new(JwksErrorKind::Transport));
        }
        Ok(Response::new(Bytes::from(self.body.clone())))
    }
}

#[tokio::test]
async fn no_token_or_token_kid_appears_in_any_log_line() {
    let (captured, _guard) = log_capture::capture();

    let provider = CryptoBackend::default_backend().unwrap().provider();
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/ed25519-private-TEST-ONLY.pem"
    ))
    .unwrap();
    let key = EncodingKey::from_ed_pem(&pem).unwrap();
    let x = (provider.key_utils.ed_pub_components_from_private_key)(
        key.as_bytes(),
        &EllipticCurve::Ed25519,
    )
    .unwrap();
    let body =
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "published", "x": B64.encode(x)}]});
    let down = Arc::new(AtomicBool::new(false));
    let clock = FakeClock::new();
    let keys = JwksKeySource::builder("https://issuer.example/jwks")
        .fetcher(Flaky {
            body: body.to_string(),
            down: Arc::clone(&down),
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    keys.ready().await.unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(
            JwtAuthenticator::builder()
                .clock(clock.clone())
                .issuer(Issuer::new(ISS).audience(AUD).key_source(keys))
                .build()
                .unwrap(),
        ));
    let sign = |kid: &str| {
        let now = clock.unix_seconds();
        let input = format!(
            "{}.{}",
            B64.encode(json!({"alg": "EdDSA", "kid": kid}).to_string()),
            B64.encode(
                json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 60}).to_string()
            )
        );
        let signer = (provider.signer_factory)(&Algorithm::EdDSA, &key).unwrap();
        format!(
            "{input}.{}",
            B64.encode(signer.try_sign(input.as_bytes()).unwrap())
        )
    };
    let call = |token: String| {
        let app = app.clone();
        async move {
            let req = Request::get("/me")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };

    let good = sign("published");
    let unknown = sign("kid-from-the-token-1");
    let cooled = sign("kid-from-the-token-2");
    let failing = sign("kid-from-the-token-3");
    assert_eq!(call(good.clone()).await, StatusCode::OK);
    assert_eq!(call(unknown.clone()).await, StatusCode::UNAUTHORIZED); // refetch
    assert_eq!(call(cooled.clone()).await, StatusCode::UNAUTHORIZED); // negative cache
    down.store(true, Ordering::SeqCst);
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(call(failing.clone()).await, StatusCode::SERVICE_UNAVAILABLE); // refetch fails
    assert_eq!(call(good.clone()).await, StatusCode::OK); // stale key serves

    let logs = captured.text();
    assert!(
        logs.contains("JWK Set changed"),
        "the JWKS path logged: {logs}"
    );
    assert!(logs.contains("fetch failed"), "{logs}");
    for token in [&good, &unknown, &cooled, &failing] {
        let (signed, signature) = token.rsplit_once('.').unwrap();
        assert!(!logs.contains(signature), "a signature reached the logs");
        assert!(!logs.contains(signed), "a token reached the logs");
    }
    assert!(
        !logs.contains("kid-from-the-token"),
        "a token's kid reached the logs"
    );
}
