//! The JWT layer against its floor, raw `jsonwebtoken::decode` with a prebuilt `Validation`.
//!
//! Rows, in one group: `bare` (the inner service alone, driven like the layer rows), then per
//! algorithm `jsonwebtoken_decode/{valid,bad_signature}` (the floor: the same token, decoded
//! into a claims struct holding what the layer maps, `iss` and `aud` checked, `exp` required)
//! and `layer/{valid,bad_signature}` (the `Authenticate` layer with the JWT authenticator in
//! front of the bare service: extraction, verification, claim rules, the `Principal` with 3
//! scopes and 2 roles, and the response). So `layer - jsonwebtoken_decode` includes what the
//! `Authenticate` layer and the service cost (`bare` and `benches/authenticate.rs`).
//!
//! Layer rows clone + `oneshot` a request built outside the timed routine (`iter_batched`),
//! polled once with a noop waker. The floor uses jsonwebtoken's process-global provider, which
//! this bench binary installs explicitly (aws-lc-rs when compiled in) before anything else
//! runs; the layer never uses it. A bad signature flips one low-order byte (STYLE §10).
//!
//! ```text
//! cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! # Instruction counts (callgrind)
//!
//! Wall-clock medians of RS256 move by hundreds of nanoseconds between runs on a busy VM;
//! instruction counts do not. The same binary runs one row `N` times when called with
//! `--callgrind <row> [N]` (default 1000), requests built before and responses dropped after
//! the measured function, which `--toggle-collect` isolates:
//!
//! ```text
//! cargo bench --bench jwt --no-run        # prints target/release/deps/jwt-<hash>
//! valgrind --tool=callgrind --toggle-collect='*callgrind_measured*' \
//!     --callgrind-out-file=/tmp/cg.out target/release/deps/jwt-<hash> --callgrind RS256/layer/valid 200
//! callgrind_annotate /tmp/cg.out | grep 'PROGRAM TOTALS'   # instructions / 200 = per token
//! ```
//!
//! `--callgrind ?` lists the rows.
//!
//! Recorded on the 2-core VM (aws-lc-rs backend; instructions per token, `layer − decode`):
//!
//! | row | `jsonwebtoken_decode` | `layer` | difference |
//! |---|---:|---:|---:|
//! | HS256 valid | 48,063 | 41,817 | −6,246 |
//! | HS256 bad signature | 32,767 | 30,322 | −2,445 |
//! | RS256 valid | 348,489 | 340,454 | −8,035 |
//! | RS256 bad signature | 330,303 | 325,973 | −4,330 |
//! | ES256 valid | 767,397 | 761,936 | −5,461 |
//! | ES256 bad signature | 754,316 | 752,160 | −2,156 |
//! | EdDSA valid | 511,607 | 504,836 | −6,771 |
//! | EdDSA bad signature | 496,352 | 493,426 | −2,926 |
//!
//! (`bare`: 944. ES256 rows move by about ±2,000 between runs; the others by under 100.) The
//! layer rows include the `Authenticate` layer, extraction and the service, about 9,000
//! instructions the `decode` rows do not pay.
//!
//! For wall-clock on a shared machine, `--ab <row> <row> [rounds] [batch]` alternates short
//! batches of two rows (200 × 200 iterations by default) and prints each row's median and
//! minimum batch: a neighbour's burst then slows both rows alike, unlike criterion's rows,
//! which run seconds apart. Compare `<alg>/layer/<case>` with
//! `<alg>/jsonwebtoken_decode/<case>`; `callgrind_annotate --inclusive=yes` shows where the
//! difference goes.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, FakeClock};
use credentialflow::jwt::{
    Algorithm, ClaimPath, CryptoBackend, Issuer, JwtAuthenticator, VerificationKey,
};
use criterion::{BatchSize, Criterion, criterion_group};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{DecodingKey, EncodingKey, Validation};
use serde::Deserialize;
use tower::{Layer, ServiceExt, service_fn};

#[path = "support/ab.rs"]
mod ab;
#[path = "support/rows.rs"]
mod rows;
use rows::{Routine, Row};

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

fn rows() -> Vec<Row> {
    let backend = CryptoBackend::default_backend().expect("a crypto backend");
    // The floor's global provider, installed once, explicitly: never by the layer.
    let _ = backend.provider().install_default();
    let clock = FakeClock::new();
    let exp = clock.unix_seconds() + 3600;
    let claims = serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": "bench-user", "iat": clock.unix_seconds(), "exp": exp,
        "jti": "bench-token-1", "scope": "orders:read orders:write profile", "roles": ["admin", "ops"],
    });
    let mut rows = Vec::new();
    let bare = service_fn(ok);
    let request = |value: String| {
        move || {
            Request::get("/orders/42")
                .header("authorization", value.as_str())
                .body(())
                .expect("request")
        }
    };
    rows.push(Row {
        name: "bare".to_owned(),
        routine: Routine::Service(
            Box::new(request("Bearer a.b.c".to_owned())),
            Box::new(move |req| now(bare.oneshot(req)).expect("infallible").status()),
        ),
    });
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
        let validation = Arc::new(validation);
        let decoding = Arc::new(case.decoding);
        assert!(jsonwebtoken::decode::<UserClaims>(&token, &decoding, &validation).is_ok());
        assert!(jsonwebtoken::decode::<UserClaims>(&forged, &decoding, &validation).is_err());
        for (label, token) in [("valid", token.clone()), ("bad_signature", forged.clone())] {
            let (decoding, validation) = (Arc::clone(&decoding), Arc::clone(&validation));
            rows.push(Row {
                name: format!("{name}/jsonwebtoken_decode/{label}"),
                routine: Routine::Raw(Box::new(move || {
                    black_box(jsonwebtoken::decode::<UserClaims>(
                        black_box(&token),
                        &decoding,
                        &validation,
                    ))
                    .is_ok()
                })),
            });
        }

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
            let make = request(format!("Bearer {token}"));
            let service = service.clone();
            assert_eq!(
                now(service.clone().oneshot(make()))
                    .expect("infallible")
                    .status(),
                status
            );
            rows.push(Row {
                name: format!("{name}/layer/{label}"),
                routine: Routine::Service(
                    Box::new(make),
                    Box::new(move |req| {
                        now(service.clone().oneshot(req))
                            .expect("infallible")
                            .status()
                    }),
                ),
            });
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt");
    for row in rows() {
        match &row.routine {
            Routine::Raw(run) => group.bench_function(&row.name, |b| b.iter(run)),
            Routine::Service(make, run) => group.bench_function(&row.name, |b| {
                b.iter_batched(make, run, BatchSize::SmallInput)
            }),
        };
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if rows::run_modes(rows) {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
