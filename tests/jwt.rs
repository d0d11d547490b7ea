//! JWT verification end to end, through a real axum `Router`.
//!
//! Vectors from RFC 7515/7518/7519/8725/9068 and from JWT library CVEs: algorithm confusion,
//! `alg: none`, claim type confusion (CVE-2026-25537 class), `crit`, `zip`, oversize tokens.
#![cfg(feature = "jwt")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::{
    Algorithm, ClaimPath, CryptoBackend, Issuer, JwtAuthenticator, JwtRejection, KeyLookup,
    KeyQuery, KeySource, Revocation, RevocationCheck, RevocationQuery, VerificationKey,
};
use credentialflow::{Error, ErrorKind, Principal};
use http::{Request, StatusCode};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use serde_json::{Value, json};
use tower::ServiceExt;

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn provider() -> &'static CryptoProvider {
    CryptoBackend::default_backend()
        .expect("a backend")
        .provider()
}

/// The signing key for `alg`, from the committed fixtures.
fn signing_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(HS_SECRET)
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&fixture("ec-p256-private-TEST-ONLY.pem")).unwrap()
        }
        Algorithm::ES384 => {
            EncodingKey::from_ec_pem(&fixture("ec-p384-private-TEST-ONLY.pem")).unwrap()
        }
        Algorithm::EdDSA => {
            EncodingKey::from_ed_pem(&fixture("ed25519-private-TEST-ONLY.pem")).unwrap()
        }
        _ => EncodingKey::from_rsa_pem(&fixture("rsa2048-private-TEST-ONLY.pem")).unwrap(),
    }
}

fn verification_key(alg: Algorithm) -> VerificationKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            VerificationKey::hmac(alg, HS_SECRET).unwrap()
        }
        Algorithm::ES256 => VerificationKey::ec_pem(&fixture("ec-p256-public.pem")).unwrap(),
        Algorithm::ES384 => VerificationKey::ec_pem(&fixture("ec-p384-public.pem")).unwrap(),
        Algorithm::EdDSA => VerificationKey::ed25519_pem(&fixture("ed25519-public.pem")).unwrap(),
        _ => VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), [alg]).unwrap(),
    }
}

/// Signs `header.payload` (any JSON, so tests can put wrong types in) with an explicit provider.
fn sign_with(
    provider: &CryptoProvider,
    alg: Algorithm,
    key: &EncodingKey,
    header: &Value,
    claims: &Value,
) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signer = (provider.signer_factory)(&alg, key).expect("signer");
    let sig = signer.try_sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", B64.encode(sig))
}

fn sign_header(alg: Algorithm, header: Value, claims: &Value) -> String {
    sign_with(provider(), alg, &signing_key(alg), &header, claims)
}

fn sign(alg: Algorithm, claims: &Value) -> String {
    sign_header(
        alg,
        json!({"alg": format!("{alg:?}"), "typ": "JWT"}),
        claims,
    )
}

fn clock() -> FakeClock {
    FakeClock::new()
}

fn now(clock: &FakeClock) -> u64 {
    clock.unix_seconds()
}

fn claims(clock: &FakeClock) -> Value {
    let now = now(clock);
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300,
        "scope": "orders:read orders:write profile", "realm_access": {"roles": ["admin", "ops"]},
        "jti": "token-1", "tid": "acme",
    })
}

fn issuer(alg: Algorithm) -> Issuer {
    Issuer::new(ISS)
        .audience(AUD)
        .key(verification_key(alg))
        .roles_claim(ClaimPath::new(["realm_access", "roles"]))
        .tenant_claim(ClaimPath::single("tid"))
}

fn app_with(authenticator: JwtAuthenticator<FakeClock>) -> Router {
    Router::new()
        .route(
            "/me",
            get(|p: Principal| async move {
                format!(
                    "{}|{}|{}|{}|{}",
                    p.subject(),
                    p.scopes(),
                    p.roles(),
                    p.tenant().unwrap_or("-"),
                    p.credential_id().unwrap_or("-")
                )
            }),
        )
        .layer(AuthenticateLayer::new(authenticator))
}

fn app(issuer: Issuer, clock: &FakeClock) -> Router {
    app_with(
        JwtAuthenticator::builder()
            .issuer(issuer)
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
}

struct Answer {
    status: StatusCode,
    body: String,
    challenge: Option<String>,
    kind: Option<ErrorKind>,
    reason: Option<JwtRejection>,
    retry_after: Option<String>,
}

async fn call(app: &Router, token: &str) -> Answer {
    let req = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let error = res.extensions().get::<Error>().cloned();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        challenge,
        kind: error.as_ref().map(Error::kind),
        reason: error.as_ref().and_then(JwtRejection::of),
        retry_after,
    }
}

const INVALID_TOKEN: &str = r#"Bearer realm="api", error="invalid_token""#;

#[track_caller]
fn assert_refused(answer: &Answer, reason: JwtRejection) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        answer.reason
    );
    assert_eq!(answer.challenge.as_deref(), Some(INVALID_TOKEN));
    assert_eq!(answer.reason, Some(reason));
    assert_eq!(answer.kind, Some(reason.kind()));
}

fn flip_last_signature_byte(token: &str) -> String {
    let (signed, sig) = token.rsplit_once('.').expect("jwt");
    let mut raw = B64.decode(sig).expect("base64url");
    *raw.last_mut().expect("non-empty") ^= 0x01;
    format!("{signed}.{}", B64.encode(raw))
}

const ALGS: [Algorithm; 12] = credentialflow::jwt::ALL_ALGORITHMS;

#[tokio::test]
async fn every_algorithm_verifies_and_a_flipped_signature_byte_is_refused() {
    let clock = clock();
    for alg in ALGS {
        let app = app(issuer(alg), &clock);
        let token = sign(alg, &claims(&clock));
        let ok = call(&app, &token).await;
        assert_eq!(ok.status, StatusCode::OK, "{alg:?}");
        assert_eq!(
            ok.body,
            "alice|orders:read orders:write profile|admin ops|acme|token-1"
        );
        assert_refused(
            &call(&app, &flip_last_signature_byte(&token)).await,
            JwtRejection::BadSignature,
        );
    }
}

#[tokio::test]
async fn both_backends_verify_real_tokens_in_one_run() {
    let clock = clock();
    let backends = [
        #[cfg(feature = "jwt-aws-lc-rs")]
        CryptoBackend::AwsLcRs,
        #[cfg(feature = "jwt-rust-crypto")]
        CryptoBackend::RustCrypto,
    ];
    #[cfg(all(feature = "jwt-aws-lc-rs", feature = "jwt-rust-crypto"))]
    assert_eq!(
        backends.len(),
        2,
        "an --all-features run tests both backends"
    );
    for backend in &backends {
        for signer in &backends {
            for alg in [
                Algorithm::HS256,
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
            ] {
                let auth = JwtAuthenticator::builder()
                    .issuer(issuer(alg))
                    .clock(clock.clone())
                    .backend(*backend)
                    .build()
                    .unwrap();
                let header = json!({"alg": format!("{alg:?}")});
                let token = sign_with(
                    signer.provider(),
                    alg,
                    &signing_key(alg),
                    &header,
                    &claims(&clock),
                );
                let p = auth
                    .verify(&token)
                    .await
                    .unwrap_or_else(|e| panic!("{backend:?} {alg:?}: {e:?}"));
                assert_eq!(p.subject(), "alice");
                let bad = auth
                    .verify(&flip_last_signature_byte(&token))
                    .await
                    .unwrap_err();
                assert_eq!(bad.kind(), ErrorKind::InvalidSignature);
            }
        }
    }
}

#[tokio::test]
async fn alg_none_is_refused_in_every_spelling() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let payload = B64.encode(claims(&clock).to_string());
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = B64.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        for sig in ["", "AAAA"] {
            let token = format!("{header}.{payload}.{sig}");
            assert_refused(
                &call(&app, &token).await,
                JwtRejection::UnsupportedAlgorithm,
            );
        }
    }
}

#[tokio::test]
async fn rsa_public_key_used_as_hmac_secret_is_refused() {
    // CVE-2015-9235 / CVE-2016-10555 class: the attacker signs HS256 with the public key's PEM.
    let clock = clock();
    let app = app(issuer(Algorithm::RS256), &clock);
    let pem = fixture("rsa2048-public-spki.pem");
    let token = sign_with(
        provider(),
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem),
        &json!({"alg": "HS256"}),
        &claims(&clock),
    );
    assert_refused(&call(&app, &token).await, JwtRejection::AlgorithmNotAllowed);
}

#[tokio::test]
async fn an_rsa_key_bound_to_ps256_refuses_rs256() {
    let clock = clock();
    let key =
        VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), [Algorithm::PS256]).unwrap();
    let app = app(Issuer::new(ISS).audience(AUD).key(key), &clock);
    assert_eq!(
        call(&app, &sign(Algorithm::PS256, &claims(&clock)))
            .await
            .status,
        StatusCode::OK
    );
    assert_refused(
        &call(&app, &sign(Algorithm::RS256, &claims(&clock))).await,
        JwtRejection::AlgorithmNotAllowed,
    );
}

#[tokio::test]
async fn rsa_keys_load_from_spki_and_pkcs1_pem_and_der() {
    let clock = clock();
    let token = sign(Algorithm::RS256, &claims(&clock));
    let keys = [
        VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), [Algorithm::RS256]).unwrap(),
        VerificationKey::rsa_pem(&fixture("rsa2048-public-pkcs1.pem"), [Algorithm::RS256]).unwrap(),
        VerificationKey::rsa_der(&fixture("rsa2048-public-spki.der"), [Algorithm::RS256]).unwrap(),
        VerificationKey::rsa_der(&fixture("rsa2048-public-pkcs1.der"), [Algorithm::RS256]).unwrap(),
    ];
    for key in keys {
        let app = app(Issuer::new(ISS).audience(AUD).key(key), &clock);
        assert_eq!(call(&app, &token).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn keys_load_from_jwk() {
    let clock = clock();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "oct", "alg": "HS256", "kid": "k1", "k": B64.encode(HS_SECRET)
    }))
    .unwrap();
    let key = VerificationKey::from_jwk(&jwk).unwrap();
    assert_eq!(key.kid(), Some("k1"));
    let app = app(Issuer::new(ISS).audience(AUD).key(key), &clock);
    let token = sign_header(
        Algorithm::HS256,
        json!({"alg": "HS256", "kid": "k1"}),
        &claims(&clock),
    );
    assert_eq!(call(&app, &token).await.status, StatusCode::OK);

    let no_alg: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(json!({"kty": "oct", "k": B64.encode(HS_SECRET)})).unwrap();
    assert!(VerificationKey::from_jwk(&no_alg).is_err());
    let enc: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        json!({"kty": "oct", "use": "enc", "alg": "HS256", "k": B64.encode(HS_SECRET)}),
    )
    .unwrap();
    assert!(VerificationKey::from_jwk(&enc).is_err());
    let short: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(json!({"kty": "oct", "alg": "HS256", "k": B64.encode([1u8; 16])}))
            .unwrap();
    assert!(VerificationKey::from_jwk(&short).is_err());
}

#[tokio::test]
async fn numeric_dates_of_the_wrong_json_type_are_refused() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let n = now(&clock);
    for (claim, value) in [
        ("exp", json!((n + 300).to_string())),
        ("nbf", json!((n - 10).to_string())),
        ("iat", json!(n.to_string())),
        ("exp", json!(null)),
        ("exp", json!([n + 300])),
        ("exp", json!(true)),
    ] {
        let mut c = claims(&clock);
        c[claim] = value;
        assert_refused(
            &call(&app, &sign(Algorithm::HS256, &c)).await,
            JwtRejection::WrongClaimType,
        );
    }
}

#[tokio::test]
async fn registered_claims_of_the_wrong_json_type_are_refused() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let cases = [
        ("aud", json!(42), JwtRejection::AudienceNotString),
        ("aud", json!({"a": AUD}), JwtRejection::AudienceNotString),
        ("aud", json!([AUD, 1]), JwtRejection::AudienceNotString),
        ("iss", json!([ISS]), JwtRejection::IssuerNotString),
        ("sub", json!(42), JwtRejection::WrongClaimType),
        ("jti", json!(7), JwtRejection::WrongClaimType),
        (
            "scope",
            json!(["orders:read"]),
            JwtRejection::WrongClaimType,
        ),
        (
            "realm_access",
            json!({"roles": 42}),
            JwtRejection::WrongClaimType,
        ),
        (
            "realm_access",
            json!(["roles"]),
            JwtRejection::WrongClaimType,
        ),
        (
            "realm_access",
            json!({"roles": [1]}),
            JwtRejection::WrongClaimType,
        ),
        ("tid", json!(1), JwtRejection::WrongClaimType),
    ];
    for (claim, value, reason) in cases {
        let mut c = claims(&clock);
        c[claim] = value;
        assert_refused(&call(&app, &sign(Algorithm::HS256, &c)).await, reason);
    }
}

#[tokio::test]
async fn audience_may_be_a_string_or_an_array_containing_ours() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    for (aud, ok) in [
        (json!(AUD), true),
        (json!(["other", AUD]), true),
        (json!("other"), false),
        (json!([]), false),
    ] {
        let mut c = claims(&clock);
        c["aud"] = aud;
        let answer = call(&app, &sign(Algorithm::HS256, &c)).await;
        if ok {
            assert_eq!(answer.status, StatusCode::OK);
        } else {
            assert_refused(&answer, JwtRejection::WrongAudience);
        }
    }
    let mut c = claims(&clock);
    c.as_object_mut().unwrap().remove("aud");
    assert_refused(
        &call(&app, &sign(Algorithm::HS256, &c)).await,
        JwtRejection::MissingAudience,
    );
    let any = app_with(
        JwtAuthenticator::builder()
            .issuer(
                Issuer::new(ISS)
                    .dangerous_accept_any_audience()
                    .key(verification_key(Algorithm::HS256)),
            )
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    assert_eq!(
        call(&any, &sign(Algorithm::HS256, &c)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn exp_boundaries_with_and_without_leeway() {
    let clock = clock();
    let strict = app(
        issuer(Algorithm::HS256).leeway(Duration::ZERO).unwrap(),
        &clock,
    );
    let lenient = app(issuer(Algorithm::HS256), &clock); // default 60 s
    let n = now(&clock);
    let with_exp = |exp: u64| {
        let mut c = claims(&clock);
        c["exp"] = json!(exp);
        c["iat"] = json!(n - 1000);
        sign(Algorithm::HS256, &c)
    };
    assert_refused(&call(&strict, &with_exp(n)).await, JwtRejection::Expired); // now = exp
    assert_eq!(call(&strict, &with_exp(n + 1)).await.status, StatusCode::OK);
    assert_eq!(
        call(&lenient, &with_exp(n - 59)).await.status,
        StatusCode::OK
    ); // exp + leeway − 1
    assert_refused(
        &call(&lenient, &with_exp(n - 60)).await,
        JwtRejection::Expired,
    ); // exp + leeway
    let mut c = claims(&clock);
    c.as_object_mut().unwrap().remove("exp");
    assert_refused(
        &call(&lenient, &sign(Algorithm::HS256, &c)).await,
        JwtRejection::MissingExpiry,
    );
    let no_exp = app(
        issuer(Algorithm::HS256).dangerous_allow_missing_exp(),
        &clock,
    );
    assert_eq!(
        call(&no_exp, &sign(Algorithm::HS256, &c)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn nbf_and_iat_boundaries() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock); // leeway 60 s
    let n = now(&clock);
    let with = |claim: &str, v: u64| {
        let mut c = claims(&clock);
        c["iat"] = json!(n);
        c[claim] = json!(v);
        sign(Algorithm::HS256, &c)
    };
    assert_eq!(
        call(&app, &with("nbf", n + 60)).await.status,
        StatusCode::OK
    ); // now = nbf − leeway
    assert_refused(
        &call(&app, &with("nbf", n + 61)).await,
        JwtRejection::NotYetValid,
    );
    assert_eq!(
        call(&app, &with("iat", n + 60)).await.status,
        StatusCode::OK
    );
    assert_refused(
        &call(&app, &with("iat", n + 61)).await,
        JwtRejection::IssuedInFuture,
    );
    // Time moves: the same token becomes valid.
    let later = with("nbf", n + 61);
    clock.advance(Duration::from_secs(1));
    assert_eq!(call(&app, &later).await.status, StatusCode::OK);
}

#[tokio::test]
async fn maximum_lifetime_is_enforced() {
    let clock = clock();
    let app = app(
        issuer(Algorithm::HS256)
            .max_lifetime(Duration::from_secs(300))
            .unwrap(),
        &clock,
    );
    let n = now(&clock);
    let mut c = claims(&clock);
    c["iat"] = json!(n);
    c["exp"] = json!(n + 300);
    assert_eq!(
        call(&app, &sign(Algorithm::HS256, &c)).await.status,
        StatusCode::OK
    );
    c["exp"] = json!(n + 301);
    assert_refused(
        &call(&app, &sign(Algorithm::HS256, &c)).await,
        JwtRejection::LifetimeTooLong,
    );
}

#[tokio::test]
async fn crit_zip_enc_headers_are_refused() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let c = claims(&clock);
    let cases = [
        (
            json!({"alg": "HS256", "crit": ["exp"], "exp": 1}),
            JwtRejection::CriticalHeader,
        ),
        (
            json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
            JwtRejection::CriticalHeader,
        ),
        (
            json!({"alg": "HS256", "crit": []}),
            JwtRejection::CriticalHeader,
        ),
        (
            json!({"alg": "HS256", "zip": "DEF"}),
            JwtRejection::Compressed,
        ),
        (
            json!({"alg": "HS256", "enc": "A256GCM"}),
            JwtRejection::Encrypted,
        ),
        (
            json!({"alg": "HS256", "alg2": 1, "typ": 5}),
            JwtRejection::MalformedHeader,
        ),
    ];
    for (header, reason) in cases {
        assert_refused(
            &call(&app, &sign_header(Algorithm::HS256, header, &c)).await,
            reason,
        );
    }
    // jku / x5u / x5c / jwk are never followed: the configured key decides.
    let header = json!({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/c", "x5c": ["AAAA"], "jwk": {"kty": "oct", "k": "AAAA"}});
    assert_eq!(
        call(&app, &sign_header(Algorithm::HS256, header, &c))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cnf_tokens_are_refused_unless_dangerously_accepted() {
    let clock = clock();
    let mut c = claims(&clock);
    c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let token = sign(Algorithm::HS256, &c);
    assert_refused(
        &call(&app(issuer(Algorithm::HS256), &clock), &token).await,
        JwtRejection::SenderConstrained,
    );
    let lax = app(
        issuer(Algorithm::HS256).dangerous_accept_sender_constrained_as_bearer(),
        &clock,
    );
    assert_eq!(call(&lax, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn id_token_is_refused_where_an_access_token_is_required() {
    let clock = clock();
    let app = app(issuer(Algorithm::RS256).require_access_token_type(), &clock);
    let c = claims(&clock);
    for (typ, ok) in [
        (Some("at+jwt"), true),
        (Some("application/at+JWT"), true),
        (Some("JWT"), false),
        (Some("id_token+jwt"), false),
        (None, false),
    ] {
        let header = match typ {
            Some(t) => json!({"alg": "RS256", "typ": t}),
            None => json!({"alg": "RS256"}),
        };
        let answer = call(&app, &sign_header(Algorithm::RS256, header, &c)).await;
        if ok {
            assert_eq!(answer.status, StatusCode::OK, "{typ:?}");
        } else {
            assert_refused(&answer, JwtRejection::WrongType);
        }
    }
}

#[tokio::test]
async fn required_claims_and_subject() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256).require_claim("azp"), &clock);
    let mut c = claims(&clock);
    assert_refused(
        &call(&app, &sign(Algorithm::HS256, &c)).await,
        JwtRejection::MissingRequiredClaim,
    );
    c["azp"] = json!("client");
    assert_eq!(
        call(&app, &sign(Algorithm::HS256, &c)).await.status,
        StatusCode::OK
    );
    c.as_object_mut().unwrap().remove("sub");
    assert_refused(
        &call(&app, &sign(Algorithm::HS256, &c)).await,
        JwtRejection::MissingSubject,
    );
}

#[tokio::test]
async fn oversize_tokens_are_refused_before_decoding() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let mut c = claims(&clock);
    c["pad"] = json!("x".repeat(9 * 1024));
    let answer = call(&app, &sign(Algorithm::HS256, &c)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.kind, Some(ErrorKind::OversizedCredential));
    // A 1 MiB token costs no decoding either.
    let huge = format!("{}.{}.{}", "a".repeat(1 << 19), "b".repeat(1 << 19), "c");
    assert_eq!(call(&app, &huge).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_key_of_issuer_a_never_verifies_a_token_claiming_issuer_b() {
    let clock = clock();
    let a = Issuer::new("https://a.example").audience(AUD).key(
        VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), [Algorithm::RS256]).unwrap(),
    );
    let b = Issuer::new("https://b.example").audience(AUD).key(
        VerificationKey::rsa_pem(&fixture("rsa2048-b-public-spki.pem"), [Algorithm::RS256])
            .unwrap(),
    );
    let app = app_with(
        JwtAuthenticator::builder()
            .issuer(a)
            .issuer(b)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let key_a = signing_key(Algorithm::RS256);
    let key_b = EncodingKey::from_rsa_pem(&fixture("rsa2048-b-private-TEST-ONLY.pem")).unwrap();
    let header = json!({"alg": "RS256"});
    let mut c = claims(&clock);
    c["iss"] = json!("https://a.example");
    assert_eq!(
        call(
            &app,
            &sign_with(provider(), Algorithm::RS256, &key_a, &header, &c)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_refused(
        &call(
            &app,
            &sign_with(provider(), Algorithm::RS256, &key_b, &header, &c),
        )
        .await,
        JwtRejection::BadSignature,
    );
    c["iss"] = json!("https://b.example");
    assert_eq!(
        call(
            &app,
            &sign_with(provider(), Algorithm::RS256, &key_b, &header, &c)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_refused(
        &call(
            &app,
            &sign_with(provider(), Algorithm::RS256, &key_a, &header, &c),
        )
        .await,
        JwtRejection::BadSignature,
    );
    c["iss"] = json!("https://c.example");
    assert_refused(
        &call(
            &app,
            &sign_with(provider(), Algorithm::RS256, &key_a, &header, &c),
        )
        .await,
        JwtRejection::UnknownIssuer,
    );
    c.as_object_mut().unwrap().remove("iss");
    assert_refused(
        &call(
            &app,
            &sign_with(provider(), Algorithm::RS256, &key_a, &header, &c),
        )
        .await,
        JwtRejection::MissingIssuer,
    );
}

#[tokio::test]
async fn kid_selects_the_key_and_is_required_with_several() {
    let clock = clock();
    let k1 = VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), [Algorithm::RS256])
        .unwrap()
        .with_kid("k1");
    let k2 = VerificationKey::rsa_pem(&fixture("rsa2048-b-public-spki.pem"), [Algorithm::RS256])
        .unwrap()
        .with_kid("k2");
    let app = app(Issuer::new(ISS).audience(AUD).key(k1).key(k2), &clock);
    let key_a = signing_key(Algorithm::RS256);
    let key_b = EncodingKey::from_rsa_pem(&fixture("rsa2048-b-private-TEST-ONLY.pem")).unwrap();
    let c = claims(&clock);
    let tok = |key: &EncodingKey, header: Value| {
        sign_with(provider(), Algorithm::RS256, key, &header, &c)
    };
    assert_eq!(
        call(&app, &tok(&key_a, json!({"alg": "RS256", "kid": "k1"})))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, &tok(&key_b, json!({"alg": "RS256", "kid": "k2"})))
            .await
            .status,
        StatusCode::OK
    );
    assert_refused(
        &call(&app, &tok(&key_a, json!({"alg": "RS256", "kid": "k2"}))).await,
        JwtRejection::BadSignature,
    );
    assert_refused(
        &call(&app, &tok(&key_a, json!({"alg": "RS256"}))).await,
        JwtRejection::UnknownKey,
    );
    assert_refused(
        &call(&app, &tok(&key_a, json!({"alg": "RS256", "kid": "k3"}))).await,
        JwtRejection::UnknownKey,
    );
    // Several keys without kids, or duplicate kids: refused at build time.
    let no_kid = Issuer::new(ISS)
        .audience(AUD)
        .key(verification_key(Algorithm::RS256))
        .key(verification_key(Algorithm::ES256));
    assert!(JwtAuthenticator::builder().issuer(no_kid).build().is_err());
}

#[tokio::test]
async fn configuration_mistakes_are_refused_at_build_time() {
    assert!(JwtAuthenticator::builder().build().is_err());
    assert!(
        JwtAuthenticator::builder()
            .issuer(Issuer::new(ISS).key(verification_key(Algorithm::HS256)))
            .build()
            .is_err(),
        "no audience"
    );
    assert!(
        JwtAuthenticator::builder()
            .issuer(Issuer::new(ISS).audience(AUD))
            .build()
            .is_err(),
        "no key"
    );
    assert!(
        JwtAuthenticator::builder()
            .issuer(issuer(Algorithm::HS256))
            .issuer(issuer(Algorithm::HS256))
            .build()
            .is_err(),
        "duplicate issuer"
    );
    assert!(VerificationKey::hmac(Algorithm::HS256, &[0; 31]).is_err());
    assert!(
        VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), [Algorithm::HS256]).is_err()
    );
    assert!(VerificationKey::rsa_pem(&fixture("rsa2048-public-spki.pem"), []).is_err());
    assert!(VerificationKey::ec_pem(&fixture("ed25519-public.pem")).is_err());
    assert!(Issuer::new(ISS).leeway(Duration::from_secs(3600)).is_err());
}

#[tokio::test]
async fn scopes_come_from_scope_and_scp_and_credential_id_falls_back_to_a_digest() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let mut c = claims(&clock);
    c.as_object_mut().unwrap().remove("jti");
    c["scope"] = json!("a b");
    c["scp"] = json!(["c", "a"]);
    let token = sign(Algorithm::HS256, &c);
    let answer = call(&app, &token).await;
    assert_eq!(answer.status, StatusCode::OK);
    let parts: Vec<&str> = answer.body.split('|').collect();
    assert_eq!(parts[1], "a b c");
    let id = parts[4];
    assert_eq!(id.len(), 16);
    assert!(!token.contains(id));
    c["scp"] = json!("d e"); // Entra ID sends a string
    let answer = call(&app, &sign(Algorithm::HS256, &c)).await;
    assert_eq!(answer.body.split('|').nth(1), Some("a b d e"));
}

#[tokio::test]
async fn claim_paths_with_urls_and_dots_attributes_checks_and_mapping() {
    let clock = clock();
    let issuer = Issuer::new(ISS)
        .audience(AUD)
        .key(verification_key(Algorithm::ES256))
        .roles_claim(ClaimPath::single("https://example.com/roles"))
        .tenant_claim(ClaimPath::new(["org", "id.v2"]))
        .copy_claim(ClaimPath::single("email"), "email")
        .check(|claims| match claims.string(&ClaimPath::single("email")) {
            Some(e) if e.ends_with("@example.com") => Ok(()),
            _ => Err(Error::new(ErrorKind::InvalidClaims)),
        })
        .map_principal(|claims, builder| {
            Ok(builder.plan(if claims.subject() == "alice" {
                "gold"
            } else {
                "free"
            }))
        });
    let auth = JwtAuthenticator::builder()
        .issuer(issuer)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut c = claims(&clock);
    c["https://example.com/roles"] = json!(["reader"]);
    c["org"] = json!({"id.v2": "acme-2"});
    c["email"] = json!("alice@example.com");
    let p = auth.verify(&sign(Algorithm::ES256, &c)).await.unwrap();
    assert!(p.roles().contains("reader"));
    assert_eq!(p.tenant(), Some("acme-2"));
    assert_eq!(p.attribute("email"), Some(&json!("alice@example.com")));
    assert_eq!(p.plan(), Some("gold"));
    assert_eq!(p.expires_at(), Some(now(&clock) + 300));
    c["email"] = json!("mallory@evil.example");
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, &c))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidClaims
    );
}

struct DenyList {
    jti: &'static str,
    broken: bool,
    asked: AtomicUsize,
    deferred: bool,
}

impl RevocationCheck for DenyList {
    fn check(&self, query: &RevocationQuery<'_>) -> Revocation {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let answer = if self.broken {
            Err(Error::unavailable("deny-list down"))
        } else {
            Ok(query.jti == Some(self.jti))
        };
        if self.deferred {
            Revocation::Pending(Box::pin(async move { answer }))
        } else {
            Revocation::Ready(answer)
        }
    }
}

#[tokio::test]
async fn revocation_hook_denies_and_fails_closed() {
    let clock = clock();
    for deferred in [false, true] {
        let list = Arc::new(DenyList {
            jti: "token-1",
            broken: false,
            asked: AtomicUsize::new(0),
            deferred,
        });
        let app = app_with(
            JwtAuthenticator::builder()
                .issuer(issuer(Algorithm::HS256))
                .clock(clock.clone())
                .revocation(Arc::clone(&list))
                .build()
                .unwrap(),
        );
        let mut c = claims(&clock);
        assert_refused(
            &call(&app, &sign(Algorithm::HS256, &c)).await,
            JwtRejection::Revoked,
        );
        c["jti"] = json!("token-2");
        assert_eq!(
            call(&app, &sign(Algorithm::HS256, &c)).await.status,
            StatusCode::OK
        );
        assert_eq!(list.asked.load(Ordering::SeqCst), 2);

        let broken = Arc::new(DenyList {
            jti: "x",
            broken: true,
            asked: AtomicUsize::new(0),
            deferred,
        });
        let app = app_with(
            JwtAuthenticator::builder()
                .issuer(issuer(Algorithm::HS256))
                .clock(clock.clone())
                .revocation(broken)
                .build()
                .unwrap(),
        );
        let answer = call(&app, &sign(Algorithm::HS256, &c)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.kind, Some(ErrorKind::StoreUnavailable));
        assert!(answer.retry_after.is_some(), "503 without Retry-After");
    }
}

/// A key source that answers only through a future, counting lookups.
#[derive(Debug)]
struct SlowSource {
    key: Arc<VerificationKey>,
    lookups: AtomicUsize,
    fail: bool,
}

impl KeySource for SlowSource {
    fn lookup(&self, query: &KeyQuery<'_>) -> KeyLookup {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = (query.kid == Some("slow")).then(|| Arc::clone(&self.key));
        let fail = self.fail;
        KeyLookup::Pending(Box::pin(async move {
            if fail {
                Err(Error::unavailable("jwks down"))
            } else {
                Ok(found)
            }
        }))
    }
}

#[tokio::test]
async fn a_pending_key_source_is_awaited_and_fails_closed() {
    let clock = clock();
    let source = Arc::new(SlowSource {
        key: Arc::new(verification_key(Algorithm::EdDSA)),
        lookups: AtomicUsize::new(0),
        fail: false,
    });
    let slow = app(
        Issuer::new(ISS)
            .audience(AUD)
            .key_source(Arc::clone(&source)),
        &clock,
    );
    let c = claims(&clock);
    let ok = sign_header(Algorithm::EdDSA, json!({"alg": "EdDSA", "kid": "slow"}), &c);
    assert_eq!(call(&slow, &ok).await.status, StatusCode::OK);
    assert_refused(
        &call(&slow, &flip_last_signature_byte(&ok)).await,
        JwtRejection::BadSignature,
    );
    assert_refused(
        &call(
            &slow,
            &sign_header(
                Algorithm::EdDSA,
                json!({"alg": "EdDSA", "kid": "other"}),
                &c,
            ),
        )
        .await,
        JwtRejection::UnknownKey,
    );
    assert_eq!(source.lookups.load(Ordering::SeqCst), 3);
    let down = SlowSource {
        key: Arc::new(verification_key(Algorithm::EdDSA)),
        lookups: AtomicUsize::new(0),
        fail: true,
    };
    let down = app(Issuer::new(ISS).audience(AUD).key_source(down), &clock);
    assert_eq!(
        call(&down, &ok).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn every_refusal_has_the_same_body_and_challenge() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let mut expired = claims(&clock);
    expired["exp"] = json!(now(&clock) - 3600);
    let mut wrong_aud = claims(&clock);
    wrong_aud["aud"] = json!("other");
    let tokens = [
        flip_last_signature_byte(&sign(Algorithm::HS256, &claims(&clock))),
        sign(Algorithm::HS256, &expired),
        sign(Algorithm::HS256, &wrong_aud),
        "eyJhbGciOiJub25lIn0.e30.".to_owned(),
        "a.b.c".to_owned(),
    ];
    let first = call(&app, &tokens[0]).await;
    for token in &tokens[1..] {
        let answer = call(&app, token).await;
        assert_eq!(answer.status, first.status);
        assert_eq!(answer.body, first.body);
        assert_eq!(answer.challenge, first.challenge);
        assert!(!answer.body.contains(token.as_str()));
    }
}

#[tokio::test]
async fn a_non_jwt_bearer_value_falls_through_to_the_next_authenticator() {
    let clock = clock();
    let jwt = JwtAuthenticator::builder()
        .issuer(issuer(Algorithm::HS256))
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(jwt.clone()));
    // Alone: a non-JWT bearer value is "no credential" (401 without error code).
    let answer = call(&app, "cf_live_not_a_jwt").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.kind, Some(ErrorKind::MissingCredential));
    // The authenticator itself answers "not mine", so `or` passes the value on.
    let parts = Request::get("/")
        .header("authorization", "Bearer cf_live_x")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert!(matches!(
        credentialflow::authn::Authenticator::authenticate(&jwt, &parts),
        credentialflow::authn::Attempt::NoCredential
    ));
}

#[test]
fn debug_output_holds_no_key_material() {
    let auth = JwtAuthenticator::builder()
        .issuer(issuer(Algorithm::HS256))
        .build()
        .unwrap();
    let shown = format!("{auth:?}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(shown.contains(ISS));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn compact_parser_never_panics(
        header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        sig in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        raw in "[ -~]{0,200}",
    ) {
        let auth = JwtAuthenticator::builder().issuer(issuer(Algorithm::HS256)).build().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let token = format!("{}.{}.{}", B64.encode(&header), B64.encode(&payload), B64.encode(&sig));
            proptest::prop_assert!(auth.verify(&token).await.is_err());
            let _ = auth.verify(&raw).await;
            // Valid JSON shapes with junk values.
            let json_header = format!(r#"{{"alg":"HS256","kid":{}}}"#, serde_json::to_string(&String::from_utf8_lossy(&header)).unwrap());
            let token = format!("{}.{}.{}", B64.encode(json_header), B64.encode(&payload), B64.encode(&sig));
            proptest::prop_assert!(auth.verify(&token).await.is_err());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn with_one_issuer_iss_is_checked_after_the_signature_with_the_same_reasons() {
    let clock = clock();
    let app = app(issuer(Algorithm::ES256), &clock);
    let mut c = claims(&clock);
    c["iss"] = json!("https://other.example");
    // Signed by our own key but claiming another issuer: refused once verified.
    assert_refused(
        &call(&app, &sign(Algorithm::ES256, &c)).await,
        JwtRejection::UnknownIssuer,
    );
    // Claiming another issuer with a signature that does not verify: the signature is what
    // fails first (nothing of the payload is trusted or even parsed before it).
    assert_refused(
        &call(&app, &flip_last_signature_byte(&sign(Algorithm::ES256, &c))).await,
        JwtRejection::BadSignature,
    );
    c.as_object_mut().unwrap().remove("iss");
    assert_refused(
        &call(&app, &sign(Algorithm::ES256, &c)).await,
        JwtRejection::MissingIssuer,
    );
    c["iss"] = json!(7);
    assert_refused(
        &call(&app, &sign(Algorithm::ES256, &c)).await,
        JwtRejection::IssuerNotString,
    );
    // A payload not valid JSON, validly signed.
    let input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"ES256"}"#),
        B64.encode(b"{not json")
    );
    let signer = (provider().signer_factory)(&Algorithm::ES256, &signing_key(Algorithm::ES256))
        .expect("signer");
    let sig = signer.try_sign(input.as_bytes()).expect("sign");
    assert_refused(
        &call(&app, &format!("{input}.{}", B64.encode(sig))).await,
        JwtRejection::MalformedPayload,
    );
}

#[tokio::test]
async fn large_payloads_decode_on_the_heap_and_verify_the_same() {
    let clock = clock();
    let app = app(issuer(Algorithm::HS256), &clock);
    let mut c = claims(&clock);
    // Well over the 2 KiB decoded on the stack, under the 8 KiB token limit.
    c["groups"] = json!(
        (0..200)
            .map(|i| format!("group-{i:04}"))
            .collect::<Vec<_>>()
    );
    let token = sign(Algorithm::HS256, &c);
    assert!(token.len() > 3000 && token.len() < 8192, "{}", token.len());
    let ok = call(&app, &token).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.reason);
    assert_eq!(
        ok.body,
        "alice|orders:read orders:write profile|admin ops|acme|token-1"
    );
    assert_refused(
        &call(&app, &flip_last_signature_byte(&token)).await,
        JwtRejection::BadSignature,
    );
    c["scope"] = json!(["not", "a", "string"]);
    assert_refused(
        &call(&app, &sign(Algorithm::HS256, &c)).await,
        JwtRejection::WrongClaimType,
    );
}

/// A PKCS#1 `RSAPublicKey` from its parts (lengths under 64 KiB), for malformed-key vectors.
fn pkcs1_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            len @ 0..0x80 => out.push(len as u8),
            len @ 0x80..0x100 => out.extend([0x81, len as u8]),
            len => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(contents);
        out
    }
    tlv(0x30, &[tlv(0x02, n), tlv(0x02, e)].concat())
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
    .into_bytes()
}

#[tokio::test]
async fn malformed_pkcs1_rsa_keys_are_refused_at_build_time_not_per_request() {
    let good = fixture("rsa2048-public-pkcs1.der");
    // 30 82 01 0a | 02 82 01 01 00 <256-byte modulus> | 02 03 01 00 01
    let n = &good[9..265];
    assert_eq!(pkcs1_der(&[&[0][..], n].concat(), &[1, 0, 1]), good);
    let load = |der: &[u8]| VerificationKey::rsa_der(der, [Algorithm::RS256]);
    assert!(load(&good).is_ok());

    let mut negative = good.clone();
    negative[8] = 0x80;
    let mut even_exponent = good.clone();
    *even_exponent.last_mut().unwrap() = 0x00;
    let mut long_form_length = vec![0x30, 0x83, 0x00, 0x01, 0x0a];
    long_form_length.extend_from_slice(&good[4..]);
    let cases: [(&str, Vec<u8>); 13] = [
        ("empty", Vec::new()),
        ("an empty SEQUENCE", vec![0x30, 0x00]),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("a trailing byte", [&good[..], &[0]].concat()),
        ("a non-minimal length", long_form_length),
        (
            "one INTEGER only",
            [&[0x30, 0x82, 0x01, 0x05][..], &good[4..265]].concat(),
        ),
        ("a negative modulus", negative),
        ("an even exponent", even_exponent),
        ("exponent 1", pkcs1_der(&[&[0][..], n].concat(), &[1])),
        ("a 1024-bit modulus", pkcs1_der(&n[..128], &[1, 0, 1])),
        ("a 2040-bit modulus", pkcs1_der(&n[1..], &[1, 0, 1])),
        (
            "an exponent over 64 bits",
            pkcs1_der(&[&[0][..], n].concat(), &[1; 9]),
        ),
        ("an INTEGER where the SEQUENCE belongs", good[4..].to_vec()),
    ];
    // Well-formed DER the shape check passes, but no RSA key: the backend refuses it.
    let mut even_modulus = good.clone();
    even_modulus[264] &= 0xfe;
    assert!(load(&even_modulus).is_err(), "an even modulus was accepted");
    for (what, der) in &cases {
        assert!(load(der).is_err(), "DER with {what} was accepted");
        assert!(
            VerificationKey::rsa_pem(&pem("RSA PUBLIC KEY", der), [Algorithm::RS256]).is_err(),
            "PKCS#1 PEM with {what} was accepted"
        );
    }
    // The same checks hold for a JWK's modulus and exponent.
    let jwk = |n: &[u8], e: &[u8]| -> jsonwebtoken::jwk::Jwk {
        serde_json::from_value(
            json!({"kty": "RSA", "alg": "RS256", "n": B64.encode(n), "e": B64.encode(e)}),
        )
        .unwrap()
    };
    assert!(VerificationKey::from_jwk(&jwk(n, &[1, 0, 1])).is_ok());
    assert!(VerificationKey::from_jwk(&jwk(&n[..128], &[1, 0, 1])).is_err());
    assert!(VerificationKey::from_jwk(&jwk(n, &[2])).is_err());
}

#[cfg(all(feature = "jwt-aws-lc-rs", feature = "jwt-rust-crypto"))]
#[test]
fn the_builder_asks_its_own_backend_to_load_rsa_keys() {
    // An odd 4104-bit modulus: aws-lc-rs (the default, asked when the key is made) takes it,
    // the RustCrypto backend refuses RSA keys over 4096 bits. Built with that backend, the
    // authenticator refuses to build rather than fail every request.
    let n: Vec<u8> = std::iter::once(0x80)
        .chain((0..512).map(|i| (i * 37 + 11) as u8))
        .chain(std::iter::once(0x01))
        .collect();
    let key = VerificationKey::rsa_der(
        &pkcs1_der(&[&[0][..], &n].concat(), &[1, 0, 1]),
        [Algorithm::RS256],
    )
    .expect("aws-lc-rs loads it");
    let build = |backend| {
        JwtAuthenticator::builder()
            .issuer(Issuer::new(ISS).audience(AUD).key(key.clone()))
            .backend(backend)
            .build()
    };
    assert!(build(CryptoBackend::AwsLcRs).is_ok());
    let error = build(CryptoBackend::RustCrypto).unwrap_err();
    assert!(error.to_string().contains("rust-crypto"), "{error}");
}

/// A key source that never answers: every lookup is pending forever.
#[cfg(feature = "tokio")]
#[derive(Debug)]
struct HangingSource;

#[cfg(feature = "tokio")]
impl KeySource for HangingSource {
    fn lookup(&self, _query: &KeyQuery<'_>) -> KeyLookup {
        KeyLookup::Pending(Box::pin(std::future::pending()))
    }
}

/// A deny-list that never answers.
#[cfg(feature = "tokio")]
struct HangingDenyList;

#[cfg(feature = "tokio")]
impl RevocationCheck for HangingDenyList {
    fn check(&self, _query: &RevocationQuery<'_>) -> Revocation {
        Revocation::Pending(Box::pin(std::future::pending()))
    }
}

#[cfg(feature = "tokio")]
#[track_caller]
fn assert_timed_out(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.kind, Some(ErrorKind::StoreTimeout));
    let retry: u64 = answer
        .retry_after
        .as_deref()
        .expect("503 without Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry > 0);
    assert_eq!(answer.reason, None);
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn a_hanging_key_source_or_deny_list_fails_closed_after_the_timeout() {
    let clock = clock();
    let token = sign(Algorithm::HS256, &claims(&clock));
    let timeout = Duration::from_millis(50);
    let hanging_source = app_with(
        JwtAuthenticator::builder()
            .issuer(Issuer::new(ISS).audience(AUD).key_source(HangingSource))
            .clock(clock.clone())
            .timeout(timeout)
            .unwrap()
            .build()
            .unwrap(),
    );
    let hanging_list = app_with(
        JwtAuthenticator::builder()
            .issuer(issuer(Algorithm::HS256))
            .clock(clock.clone())
            .revocation(HangingDenyList)
            .timeout(timeout)
            .unwrap()
            .build()
            .unwrap(),
    );
    for app in [&hanging_source, &hanging_list] {
        let started = tokio::time::Instant::now();
        let answer = call(app, &token).await;
        assert_timed_out(&answer);
        // Paused time: the deadline fired at exactly 50 ms, and no real time passed.
        assert_eq!(started.elapsed(), timeout);
    }
    // Tokens refused before any lookup never wait.
    let started = tokio::time::Instant::now();
    assert_refused(
        &call(&hanging_list, &flip_last_signature_byte(&token)).await,
        JwtRejection::BadSignature,
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn lookups_are_bounded_by_default() {
    let clock = clock();
    let app = app_with(
        JwtAuthenticator::builder()
            .issuer(Issuer::new(ISS).audience(AUD).key_source(HangingSource))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let started = tokio::time::Instant::now();
    let answer = call(&app, &sign(Algorithm::HS256, &claims(&clock))).await;
    assert_timed_out(&answer);
    assert_eq!(started.elapsed(), credentialflow::authn::DEFAULT_TIMEOUT);
    assert!(JwtAuthenticator::builder().timeout(Duration::ZERO).is_err());
}

#[test]
fn ec_keys_of_other_curves_are_refused_at_build_time() {
    // 65-byte uncompressed points like P-256's, on curves ES256 does not use: jsonwebtoken
    // checks only the key type, so without the curve check these verified nothing, per request.
    let secp256k1 = b"-----BEGIN PUBLIC KEY-----
MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEo1EsM+sFsBEd1y9UWvD6yg/wzH50wdCc
gBlUJAftGRjnVK6dmyVvMiGp8qbi+eb4IVXo+vELxtoLJ0xxs3DFig==
-----END PUBLIC KEY-----
";
    let brainpool_p256r1 = b"-----BEGIN PUBLIC KEY-----
MFowFAYHKoZIzj0CAQYJKyQDAwIIAQEHA0IABExw571+63IVN2lhezykq+7TQRV5
HzlFZDEBbKCoaExoCx8j51sqTSA50mI4WeFw03fNNcWq36DtIyXsA7G7yIk=
-----END PUBLIC KEY-----
";
    let compressed_p256 = b"-----BEGIN PUBLIC KEY-----
MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgADtAbZF1Zr4DArRtYOpC6YgUdls8st
zbdJB3/0DsZFsmw=
-----END PUBLIC KEY-----
";
    for (what, pem) in [
        ("secp256k1", &secp256k1[..]),
        ("brainpoolP256r1", &brainpool_p256r1[..]),
        ("a compressed P-256 point", &compressed_p256[..]),
    ] {
        assert!(VerificationKey::ec_pem(pem).is_err(), "{what} was accepted");
    }
    let der = |pem: &[u8]| {
        let text = std::str::from_utf8(pem).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    assert!(VerificationKey::ec_der(&der(secp256k1)).is_err());
    for (file, alg) in [
        ("ec-p256-public.pem", Algorithm::ES256),
        ("ec-p384-public.pem", Algorithm::ES384),
    ] {
        let pem = fixture(file);
        for key in [
            VerificationKey::ec_pem(&pem).unwrap(),
            VerificationKey::ec_der(&der(&pem)).unwrap(),
        ] {
            assert!(key.allows(alg) && key.algorithms().iter().count() == 1);
        }
    }
}
