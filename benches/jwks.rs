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
//!
//! # Instruction counts (callgrind)
//!
//! Wall-clock medians move by hundreds of nanoseconds on a busy VM; instruction counts do not.
//! `--ab <row> <row> [rounds] [batch]` compares two rows in alternating batches
//! (`benches/support/ab.rs`), for wall clock on a noisy machine.
//!
//! `--callgrind <row> [N]` runs one row `N` times (default 1000) in a function callgrind's
//! `--toggle-collect` isolates, as in `benches/jwt.rs`:
//!
//! ```text
//! cargo bench --features jwks --bench jwks --no-run   # prints target/release/deps/jwks-<hash>
//! valgrind --tool=callgrind --toggle-collect='*callgrind_measured*' \
//!     --callgrind-out-file=/tmp/cg.out target/release/deps/jwks-<hash> --callgrind RS256/layer/jwks 200
//! callgrind_annotate /tmp/cg.out | grep 'PROGRAM TOTALS'   # instructions / 200 = per token
//! ```
//!
//! Compare `<alg>/layer/jwks` with `<alg>/layer/static`, and `lookup/hit` with
//! `lookup/static_hit`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

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
use criterion::{BatchSize, Criterion, criterion_group};
use http::{Request, Response, StatusCode, Uri};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::EllipticCurve;
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};

#[path = "support/ab.rs"]
mod ab;
#[path = "support/rows.rs"]
mod rows;
use rows::{Routine, Row};

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

/// Everything the rows share, built once: the warm source, the static keys, the runtime that
/// owns the source's background task.
struct Setup {
    _runtime: tokio::runtime::Runtime,
    source: JwksKeySource<InMemory>,
    statics: StaticKeys,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
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
            .clock(FakeClock::new())
            .build()
            .expect("source");
        source.ready().await.expect("warm");
        // One unknown kid refetches (in memory) and starts the cool-down; later unknown kids
        // hit the negative cache.
        let miss = KeyQuery::new(ISS, Some("unknown-kid"), Algorithm::RS256);
        if let KeyLookup::Pending(future) = source.lookup(&miss) {
            assert!(future.await.expect("answer").is_none());
        }
        source
    });
    let statics = StaticKeys::new(cases.iter().map(|c| c.verification.clone())).expect("keys");
    Setup {
        _runtime: runtime,
        source,
        statics,
    }
}

fn rows(setup: &Setup) -> Vec<Row> {
    let backend = CryptoBackend::default_backend().expect("a crypto backend");
    let clock = FakeClock::new();
    let mut rows = Vec::new();

    let hit = KeyQuery::new(ISS, Some("rs"), Algorithm::RS256);
    let miss = KeyQuery::new(ISS, Some("unknown-kid"), Algorithm::RS256);
    assert!(matches!(
        setup.source.lookup(&hit),
        KeyLookup::Ready(Ok(Some(_)))
    ));
    assert!(matches!(
        setup.source.lookup(&miss),
        KeyLookup::Ready(Ok(None))
    ));
    let source = setup.source.clone();
    rows.push(Row {
        name: "lookup/hit".into(),
        routine: Routine::Raw(Box::new(move || {
            matches!(
                source.lookup(black_box(&hit)),
                KeyLookup::Ready(Ok(Some(_)))
            )
        })),
    });
    let statics = setup.statics.clone();
    rows.push(Row {
        name: "lookup/static_hit".into(),
        routine: Routine::Raw(Box::new(move || {
            matches!(
                statics.lookup(black_box(&hit)),
                KeyLookup::Ready(Ok(Some(_)))
            )
        })),
    });
    let source = setup.source.clone();
    rows.push(Row {
        name: "lookup/negative_cache_miss".into(),
        routine: Routine::Raw(Box::new(move || {
            matches!(source.lookup(black_box(&miss)), KeyLookup::Ready(Ok(None)))
        })),
    });

    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "bench-user", "iat": clock.unix_seconds(),
        "exp": clock.unix_seconds() + 3600, "jti": "bench-token-1",
        "scope": "orders:read orders:write profile", "roles": ["admin", "ops"],
    });
    for case in cases() {
        let name = format!("{:?}", case.alg);
        let header = json!({"alg": name, "typ": "JWT", "kid": kid(&case)});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signer = (backend.provider().signer_factory)(&case.alg, &case.signing).expect("signer");
        let sig =
            jsonwebtoken::signature::Signer::try_sign(&*signer, input.as_bytes()).expect("sign");
        let value: Arc<str> = format!("Bearer {input}.{}", B64.encode(&sig)).into();
        let build = |keys: Issuer| {
            let authenticator = JwtAuthenticator::builder()
                .issuer(keys.audience(AUD).roles_claim(ClaimPath::single("roles")))
                .clock(clock.clone())
                .backend(backend)
                .build()
                .expect("authenticator");
            AuthenticateLayer::new(authenticator).layer(service_fn(ok))
        };
        let over_static = build(Issuer::new(ISS).key_source(setup.statics.clone()));
        let over_jwks = build(Issuer::new(ISS).key_source(setup.source.clone()));
        for (label, service) in [("static", over_static), ("jwks", over_jwks)] {
            let value = Arc::clone(&value);
            let make = move || {
                Request::get("/orders/42")
                    .header("authorization", &*value)
                    .body(())
                    .expect("request")
            };
            let run = move |req| {
                now(service.clone().oneshot(req))
                    .expect("infallible")
                    .status()
            };
            assert_eq!(run(make()), StatusCode::OK, "{name} over {label}");
            rows.push(Row {
                name: format!("{name}/layer/{label}"),
                routine: Routine::Service(Box::new(make), Box::new(run)),
            });
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    let setup = setup();
    let mut group = c.benchmark_group("jwks");
    for row in rows(&setup) {
        match &row.routine {
            Routine::Raw(run) => group.bench_function(&row.name, |b| b.iter(run)),
            Routine::Service(make, run) => group.bench_function(&row.name, |b| {
                b.iter_batched(make, run, BatchSize::SmallInput)
            }),
        };
    }
    // The read path on one and on two threads at once: each thread runs `iters` lookups.
    let hit = KeyQuery::new(ISS, Some("rs"), Algorithm::RS256);
    for (label, source) in [
        ("jwks", &setup.source as &dyn KeySource),
        ("static", &setup.statics),
    ] {
        for threads in [1, 2] {
            group.bench_function(format!("lookup/hit_threads/{label}/{threads}"), |b| {
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
    }
    group.finish();
    assert_eq!(
        setup.source.stats().fetches(),
        2,
        "no fetch while measuring"
    );
}

/// CPU time of the calling thread (user + system) from `/proc/thread-self/stat`, in clock
/// ticks (usually 10 ms); `None` off Linux.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `--cpu-time [N]`: N hit lookups on each of one and then two threads, printing wall time and
/// each thread's CPU time per lookup. CPU time ignores the time a thread waits for a core, so
/// on a busy machine it still shows whether the threads slow each other down (contended cache
/// lines stall the CPU and count) when the wall clock cannot.
fn cpu_time(iterations: u64) {
    let setup = setup();
    let hit = KeyQuery::new(ISS, Some("rs"), Algorithm::RS256);
    for (label, source) in [
        ("jwks", &setup.source as &dyn KeySource),
        ("static", &setup.statics),
    ] {
        for threads in [1, 2] {
            let start = Instant::now();
            let ticks: Vec<Option<u64>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            let before = thread_cpu_ticks();
                            for _ in 0..iterations {
                                black_box(source.lookup(black_box(&hit)));
                            }
                            Some(thread_cpu_ticks()? - before?)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("thread"))
                    .collect()
            });
            let wall = start.elapsed();
            #[allow(clippy::cast_precision_loss)]
            let per = |d: f64| d / iterations as f64;
            let cpu: Vec<String> = ticks
                .iter()
                .map(|t| t.map_or("?".into(), |t| format!("{:.1} ns", per(t as f64 * 1e7))))
                .collect();
            println!(
                "{label}/{threads} thread(s): wall {:.1} ns per lookup per thread, CPU per lookup {}",
                per(wall.as_nanos() as f64),
                cpu.join(", ")
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--cpu-time") {
        cpu_time(
            args.get(i + 1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(100_000_000),
        );
        return;
    }
    // The setup (a runtime, a warm source) lives until the process exits.
    if rows::run_modes(|| rows(Box::leak(Box::new(setup())))) {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
