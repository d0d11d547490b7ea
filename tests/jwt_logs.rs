//! JWTs never reach the logs: one test in its own binary, so that a thread-local TRACE
//! subscriber sees every event (no other test registers callsites first).
#![cfg(all(feature = "jwt", feature = "axum"))]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use credentialflow::Principal;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::{Algorithm, CryptoBackend, Issuer, JwtAuthenticator, VerificationKey};
use http::Request;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "support/log_capture.rs"]
mod log_capture;

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn sign(header: &Value, claims: &Value) -> String {
    let provider = CryptoBackend::default_backend()
        .expect("a backend")
        .provider();
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let key = EncodingKey::from_secret(SECRET);
    let signer = (provider.signer_factory)(&Algorithm::HS256, &key).expect("signer");
    let sig = signer.try_sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", B64.encode(sig))
}

#[tokio::test]
async fn no_token_appears_in_any_log_line() {
    let (captured, _guard) = log_capture::capture();

    let clock = FakeClock::new();
    let now = clock.unix_seconds();
    let authenticator = JwtAuthenticator::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap()),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(authenticator));

    let header = json!({"alg": "HS256", "typ": "JWT"});
    let base = json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300});
    let valid = sign(&header, &base);
    let mut expired = base.clone();
    expired["exp"] = json!(now - 3600);
    let expired = sign(&header, &expired);
    let mut wrong_aud = base.clone();
    wrong_aud["aud"] = json!("someone-else");
    let wrong_aud = sign(&header, &wrong_aud);
    let mut tampered = valid.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let none_alg = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none"}).to_string()),
        B64.encode(base.to_string())
    );

    let tokens = [&valid, &expired, &wrong_aud, &tampered, &none_alg];
    for token in tokens {
        let span = tracing::info_span!(
            "request",
            subject = tracing::field::Empty,
            credential_id = tracing::field::Empty
        );
        let _entered = span.enter();
        let req = Request::get("/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        tracing::trace!(status = res.status().as_u16(), headers = ?res.headers(), "response");
    }

    let text = captured.text();
    assert!(text.contains("JWT refused"), "the capture works: {text}");
    for token in tokens {
        // Neither the whole token nor its signature segment.
        let signature = token.rsplit('.').next().unwrap_or("");
        assert!(
            !text.contains(token.as_str()),
            "a token leaked into the logs:\n{text}"
        );
        if signature.len() > 8 {
            assert!(
                !text.contains(signature),
                "a signature leaked into the logs:\n{text}"
            );
        }
    }
}
