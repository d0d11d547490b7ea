//! The JWT layer over a warm `JwksKeySource` against the same layer over static keys, and the
//! key lookup alone: a hit, a negative-cache miss (unknown `kid` during the cool-down), and a
//! hit on one and on two threads at once.
//!
//! The source fetches from an in-memory `JwksFetcher` once, before measuring; its clock is a
//! `FakeClock` that never moves, so no refresh runs while measuring. Layer rows are driven like
//! `benches/jwt.rs`: clone + `oneshot`, polled once with a noop waker.
//!
//! The thread rows use `iter_custom`: each thread runs `iters` lookups and the row reports wall
//! time / `iters`; with no contention the two-thread row equals the one-thread row (twice the
//! throughput).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::jwks::JwksFetcher;
use credentialflow::jwt::{
    Algorithm, ClaimPath, CryptoBackend, Issuer, JwksError, JwksKeySource, JwtAuthenticator,
    KeyLookup, KeyQuery, KeySource, StaticKeys, VerificationKey,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode, Uri};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::EllipticCurve;
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";

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

/// Serves one fixed document.
struct InMemory(String);

impl JwksFetcher for InMemory {
    async fn get(&self, _uri: &Uri, _max: usize) -> Result<Response<Bytes>, JwksError> {
        Ok(Response::new(Bytes::from(self.0.clone())))
    }
}

struct Case {
    alg: Algorithm,
    signing: EncodingKey,
    jwk: serde_json::Value,
    verification: VerificationKey,
}

fn cases() -> Vec<Case> {
    let utils = &CryptoBackend::default_backend()
        .expect("backend")
        .provider()
        .key_utils;
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa2048-private-TEST-ONLY.pem")).expect("key");
    let (n, e) = (utils.rsa_pub_components_from_private_key)(rsa.as_bytes()).expect("n, e");
    let ed = EncodingKey::from_ed_pem(&fixture("ed25519-private-TEST-ONLY.pem")).expect("key");
    let x = (utils.ed_pub_components_from_private_key)(ed.as_bytes(), &EllipticCurve::Ed25519)
        .expect("x");
    vec![
        Case {
            alg: Algorithm::RS256,
            signing: rsa,
            jwk: json!({"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig",
                        "n": B64.encode(n), "e": B64.encode(e)}),
            verification: VerificationKey::rsa_pem(
                &fixture("rsa2048-public-spki.pem"),
                [Algorithm::RS256],
            )
            .expect("key")
            .with_kid("rs"),
        },
        Case {
            alg: Algorithm::EdDSA,
            signing: ed,
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
                        "x": B64.encode(x)}),
            verification: VerificationKey::ed25519_pem(&fixture("ed25519-public.pem"))
                .expect("key")
                .with_kid("ed"),
        },
    ]
}

fn kid(case: &Case) -> &str {
    case.jwk["kid"].as_str().expect("kid")
}

fn bench(c: &mut Criterion) {
    let backend = CryptoBackend::default_backend().expect("a crypto backend");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock = FakeClock::new();
    let cases = cases();
    // A realistic set: both keys plus a third, so lookups search.
    let mut keys: Vec<_> = cases.iter().map(|c| c.jwk.clone()).collect();
    let mut third = cases[0].jwk.clone();
    third["kid"] = json!("rs-previous");
    keys.push(third);
    let document = json!({ "keys": keys }).to_string();
    let source = runtime.block_on(async {
        let source = JwksKeySource::builder("https://issuer.example/jwks")
            .fetcher(InMemory(document))
            .clock(clock.clone())
            .build()
            .expect("source");
        source.ready().await.expect("warm");
        source
    });
    let statics = StaticKeys::new(cases.iter().map(|c| c.verification.clone())).expect("keys");

    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "bench-user", "iat": clock.unix_seconds(),
        "exp": clock.unix_seconds() + 3600, "jti": "bench-token-1",
        "scope": "orders:read orders:write profile", "roles": ["admin", "ops"],
    });

    let mut group = c.benchmark_group("jwks");

    // The lookup alone.
    let hit = KeyQuery::new(ISS, Some("rs"), Algorithm::RS256);
    assert!(matches!(source.lookup(&hit), KeyLookup::Ready(Ok(Some(_)))));
    group.bench_function("lookup/hit", |b| b.iter(|| source.lookup(black_box(&hit))));
    group.bench_function("lookup/static_hit", |b| {
        b.iter(|| statics.lookup(black_box(&hit)))
    });
    // One unknown kid refetches (in memory) and starts the cool-down; the rest hit the
    // negative cache.
    let miss = KeyQuery::new(ISS, Some("unknown-kid"), Algorithm::RS256);
    if let KeyLookup::Pending(future) = source.lookup(&miss) {
        assert!(runtime.block_on(future).expect("answer").is_none());
    }
    assert!(matches!(source.lookup(&miss), KeyLookup::Ready(Ok(None))));
    group.bench_function("lookup/negative_cache_miss", |b| {
        b.iter(|| source.lookup(black_box(&miss)))
    });
    for threads in [1, 2] {
        group.bench_function(format!("lookup/hit_threads/{threads}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..iters {
                                black_box(source.lookup(black_box(&hit)));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }

    // The layer over each source.
    for case in &cases {
        let name = format!("{:?}", case.alg);
        let header = json!({"alg": name, "typ": "JWT", "kid": kid(case)});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signer = (backend.provider().signer_factory)(&case.alg, &case.signing).expect("signer");
        let sig =
            jsonwebtoken::signature::Signer::try_sign(&*signer, input.as_bytes()).expect("sign");
        let value = format!("Bearer {input}.{}", B64.encode(&sig));
        let request = || {
            Request::get("/orders/42")
                .header("authorization", value.as_str())
                .body(())
                .expect("request")
        };
        let issuer = || {
            Issuer::new(ISS)
                .audience(AUD)
                .roles_claim(ClaimPath::single("roles"))
        };
        let build = |issuer: Issuer| {
            let authenticator = JwtAuthenticator::builder()
                .issuer(issuer)
                .clock(clock.clone())
                .backend(backend)
                .build()
                .expect("authenticator");
            AuthenticateLayer::new(authenticator).layer(service_fn(ok))
        };
        let over_static = build(issuer().key_source(statics.clone()));
        let over_jwks = build(issuer().key_source(source.clone()));
        for (label, service) in [("static", &over_static), ("jwks", &over_jwks)] {
            let res = now(service.clone().oneshot(request())).expect("infallible");
            assert_eq!(res.status(), StatusCode::OK, "{name} over {label}");
            group.bench_function(format!("{name}/layer/{label}"), |b| {
                b.iter_batched(
                    request,
                    |req| now(service.clone().oneshot(req)),
                    BatchSize::SmallInput,
                )
            });
        }
        group.bench_function(format!("{name}/layer_threads/jwks/2"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                std::thread::scope(|s| {
                    let handles: Vec<_> = (0..2)
                        .map(|_| {
                            s.spawn(|| {
                                let start = Instant::now();
                                for _ in 0..iters {
                                    black_box(now(over_jwks.clone().oneshot(request())).ok());
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    for h in handles {
                        total = total.max(h.join().expect("thread"));
                    }
                });
                total
            })
        });
    }
    group.finish();
    assert_eq!(source.stats().fetches, 2, "no fetch while measuring");
}

criterion_group!(benches, bench);
criterion_main!(benches);
