//! The JWT layer against its floor, raw `jsonwebtoken::decode` with a prebuilt `Validation`.
//!
//! Driven like `benches/authenticate.rs`: clone + `oneshot`, polled once with a noop waker.
//! The floor uses jsonwebtoken's process-global provider, which this bench binary installs
//! explicitly (aws-lc-rs when compiled in) before anything else runs; the layer never uses it.
//! Tokens carry 3 scopes and 2 roles; a bad signature flips one low-order byte (STYLE §10).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::{
    Algorithm, ClaimPath, CryptoBackend, Issuer, JwtAuthenticator, VerificationKey,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{DecodingKey, EncodingKey, Validation};
use serde::Deserialize;
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a benched service waited; this bench cannot drive it"),
    }
}

async fn ok(_req: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

/// What a typical user would deserialize with raw `decode`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct UserClaims {
    sub: String,
    iss: String,
    exp: u64,
    scope: String,
    roles: Vec<String>,
    jti: String,
}

struct Case {
    alg: Algorithm,
    signing: EncodingKey,
    verification: VerificationKey,
    decoding: DecodingKey,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            alg: Algorithm::HS256,
            signing: EncodingKey::from_secret(SECRET),
            verification: VerificationKey::hmac(Algorithm::HS256, SECRET).expect("key"),
            decoding: DecodingKey::from_secret(SECRET),
        },
        Case {
            alg: Algorithm::RS256,
            signing: EncodingKey::from_rsa_pem(&fixture("rsa2048-private-TEST-ONLY.pem"))
                .expect("key"),
            verification: VerificationKey::rsa_pem(
                &fixture("rsa2048-public-spki.pem"),
                [Algorithm::RS256],
            )
            .expect("key"),
            decoding: DecodingKey::from_rsa_pem(&fixture("rsa2048-public-spki.pem")).expect("key"),
        },
        Case {
            alg: Algorithm::ES256,
            signing: EncodingKey::from_ec_pem(&fixture("ec-p256-private-TEST-ONLY.pem"))
                .expect("key"),
            verification: VerificationKey::ec_pem(&fixture("ec-p256-public.pem")).expect("key"),
            decoding: DecodingKey::from_ec_pem(&fixture("ec-p256-public.pem")).expect("key"),
        },
        Case {
            alg: Algorithm::EdDSA,
            signing: EncodingKey::from_ed_pem(&fixture("ed25519-private-TEST-ONLY.pem"))
                .expect("key"),
            verification: VerificationKey::ed25519_pem(&fixture("ed25519-public.pem"))
                .expect("key"),
            decoding: DecodingKey::from_ed_pem(&fixture("ed25519-public.pem")).expect("key"),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let backend = CryptoBackend::default_backend().expect("a crypto backend");
    // The floor's global provider, installed once, explicitly: never by the layer.
    let _ = backend.provider().install_default();
    let clock = FakeClock::new();
    let exp = clock.unix_seconds() + 3600;
    let claims = serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": "bench-user", "iat": clock.unix_seconds(), "exp": exp,
        "jti": "bench-token-1", "scope": "orders:read orders:write profile", "roles": ["admin", "ops"],
    });
    let mut group = c.benchmark_group("jwt");
    for case in cases() {
        let name = format!("{:?}", case.alg);
        let header = serde_json::json!({"alg": name, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signer = (backend.provider().signer_factory)(&case.alg, &case.signing).expect("signer");
        let sig =
            jsonwebtoken::signature::Signer::try_sign(&*signer, input.as_bytes()).expect("sign");
        let token = format!("{input}.{}", B64.encode(&sig));
        let mut bad_sig = sig.clone();
        *bad_sig.last_mut().expect("non-empty") ^= 0x01;
        let forged = format!("{input}.{}", B64.encode(&bad_sig));

        let mut validation = Validation::new(case.alg);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        validation.validate_exp = false; // as the layer: time comes from our clock, not jsonwebtoken's
        assert!(jsonwebtoken::decode::<UserClaims>(&token, &case.decoding, &validation).is_ok());
        group.bench_function(format!("{name}/jsonwebtoken_decode/valid"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<UserClaims>(black_box(&token), &case.decoding, &validation)
            })
        });
        group.bench_function(format!("{name}/jsonwebtoken_decode/bad_signature"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<UserClaims>(black_box(&forged), &case.decoding, &validation)
            })
        });

        let authenticator = JwtAuthenticator::builder()
            .issuer(
                Issuer::new(ISS)
                    .audience(AUD)
                    .key(case.verification.clone())
                    .roles_claim(ClaimPath::single("roles")),
            )
            .clock(clock.clone())
            .backend(backend)
            .build()
            .expect("authenticator");
        let service = AuthenticateLayer::new(authenticator).layer(service_fn(ok));
        for (label, token, status) in [
            ("valid", &token, StatusCode::OK),
            ("bad_signature", &forged, StatusCode::UNAUTHORIZED),
        ] {
            let value = format!("Bearer {token}");
            let request = || {
                Request::get("/orders/42")
                    .header("authorization", value.as_str())
                    .body(())
                    .expect("request")
            };
            assert_eq!(
                now(service.clone().oneshot(request()))
                    .expect("infallible")
                    .status(),
                status
            );
            group.bench_function(format!("{name}/layer/{label}"), |b| {
                b.iter_batched(
                    request,
                    |req| now(service.clone().oneshot(req)),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
