//! The default `HttpFetcher` over real HTTPS on loopback: a rustls server (tokio-rustls, hyper
//! HTTP/1) with certificates made at run time by a test CA, a real axum `Router` with the
//! `Authenticate` layer over a `JwtAuthenticator` over `JwksKeySource`, driven with `oneshot`.
//!
//! A client configuration trusting the test CA (through `HttpFetcher::with_tls_config`) loads
//! the keys and verifies tokens; the default roots (`HttpFetcher::new`), or a certificate for
//! another host name, fail closed: `503` with `Retry-After`, never `401` or `200`.
//!
//! Both sides pass the aws-lc-rs provider explicitly; rustls' process default is never
//! installed.
#![cfg(feature = "jwks")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::clock::{Clock, SystemClock};
use credentialflow::jwt::jwks::{HttpFetcher, JwksErrorKind};
use credentialflow::jwt::{
    Algorithm, CryptoBackend, Issuer, JwksError, JwksKeySource, JwtAuthenticator,
};
use credentialflow::{Error, ErrorKind, Principal};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::CertificateError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

const ISS: &str = "https://idp.example";
const AUD: &str = "orders-api";
const KID: &str = "a";

// ---------------------------------------------------------------------------------------------
// Keys and tokens (as in tests/jwks.rs)

fn provider() -> &'static CryptoProvider {
    CryptoBackend::default_backend()
        .expect("a backend")
        .provider()
}

fn signing_key() -> EncodingKey {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa2048-private-TEST-ONLY.pem"
    ))
    .expect("fixture");
    EncodingKey::from_rsa_pem(&pem).expect("fixture key")
}

/// The JWK Set holding the fixture's public key under `KID`.
fn jwks_document() -> String {
    let key = signing_key();
    let (n, e) =
        (provider().key_utils.rsa_pub_components_from_private_key)(key.as_bytes()).expect("n, e");
    json!({"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                     "n": B64.encode(n), "e": B64.encode(e)}]})
    .to_string()
}

/// An RS256 token for `alice`, signed with the fixture key.
fn token() -> String {
    let now = SystemClock.unix_seconds();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": KID});
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 300, "iat": now});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signer = (provider().signer_factory)(&Algorithm::RS256, &signing_key()).expect("signer");
    let sig = signer.try_sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", B64.encode(sig))
}

// ---------------------------------------------------------------------------------------------
// Certificates

fn aws_lc_rs() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A self-signed CA (ECDSA P-256), made afresh for each test.
fn test_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "credentialflow test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

/// A server certificate for `names` (DNS names or IP addresses) issued by `ca`.
fn server_cert(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "credentialflow test IdP");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, ca).expect("server certificate");
    let key = PrivatePkcs8KeyDer::from(key.serialize_der());
    (cert.der().clone(), key.into())
}

/// A client configuration trusting `ca` only, on aws-lc-rs passed explicitly.
fn trusting(ca: &CertifiedIssuer<'static, KeyPair>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("CA root");
    rustls::ClientConfig::builder_with_provider(aws_lc_rs())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

// ---------------------------------------------------------------------------------------------
// The identity provider: HTTPS on loopback

#[derive(Default)]
struct Seen {
    /// TLS handshakes that completed.
    handshakes: AtomicUsize,
    /// TLS handshakes that failed (the client rejected the certificate).
    rejected: AtomicUsize,
    /// HTTP requests for the JWK Set.
    fetches: AtomicUsize,
    /// The SNI of each completed handshake.
    server_names: Mutex<Vec<Option<String>>>,
}

struct Idp {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Idp {
    /// Serves the fixture's JWK Set at `/jwks` over TLS with `cert`.
    async fn start((cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>)) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(aws_lc_rs())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Seen::default());
        let document = Bytes::from(jwks_document());
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen, document) =
                    (acceptor.clone(), Arc::clone(&shared), document.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            seen.rejected.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    seen.server_names.lock().unwrap().push(sni);
                    seen.handshakes.fetch_add(1, Ordering::SeqCst);
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let res = if req.uri().path() == "/jwks" {
                            seen.fetches.fetch_add(1, Ordering::SeqCst);
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(document.clone()))
                        } else {
                            Response::builder().status(404).body(Full::default())
                        };
                        async move { Ok::<_, Infallible>(res.expect("response")) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/jwks", self.addr.port())
    }

    fn fetches(&self) -> usize {
        self.seen.fetches.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    fn rejected(&self) -> usize {
        self.seen.rejected.load(Ordering::SeqCst)
    }

    fn last_server_name(&self) -> Option<String> {
        self.seen
            .server_names
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
    }

    /// Waits for more than `before` failed handshakes: the server may read the client's alert
    /// a moment after the client gave up.
    async fn wait_for_rejection(&self, before: usize) {
        for _ in 0..200 {
            if self.rejected() > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the server never saw a failed handshake");
    }
}

// ---------------------------------------------------------------------------------------------
// The app

fn source(url: String, fetcher: HttpFetcher) -> JwksKeySource {
    JwksKeySource::builder(url)
        .fetcher(fetcher)
        .fetch_timeout(Duration::from_secs(2))
        .build()
        .expect("source")
}

fn app(keys: JwksKeySource) -> Router {
    let authenticator = JwtAuthenticator::builder()
        .issuer(Issuer::new(ISS).audience(AUD).key_source(keys))
        .build()
        .expect("authenticator");
    Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(authenticator))
}

async fn call(app: &Router, token: &str) -> Response<Body> {
    let request = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    match app.clone().oneshot(request).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

async fn body(res: Response<Body>) -> String {
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// The error's chain, the inner error of each `io::Error` included (its `source()` skips it;
/// hyper-rustls nests the rustls error two `io::Error`s deep).
fn chain(error: &Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        out.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    out
}

/// The `JwksError` kind and the rustls error behind a response's error, if any.
fn causes(res: &Response<Body>) -> (Option<JwksErrorKind>, Option<rustls::Error>) {
    let Some(error) = res.extensions().get::<Error>() else {
        return (None, None);
    };
    let chain = chain(error);
    let jwks = chain
        .iter()
        .find_map(|e| e.downcast_ref::<JwksError>())
        .map(JwksError::kind);
    let tls = chain
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    (jwks, tls)
}

/// The fetch failed on the certificate: `ready()` fails, the token gets `503` with
/// `Retry-After` (the key may be valid: fail closed, not `401`), nothing was served, and the
/// failure is counted. Returns the rustls error the client reported.
async fn assert_fails_closed(idp: &Idp, keys: JwksKeySource) -> rustls::Error {
    let rejected = idp.rejected();
    let err = keys.ready().await.expect_err("an untrusted server");
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable);
    assert!(err.retry_after().is_some());

    let app = app(keys.clone());
    let res = call(&app, &token()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<Error>().map(Error::kind),
        Some(ErrorKind::StoreUnavailable)
    );
    let after: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&after), "{after}");
    let (jwks, tls) = causes(&res);
    assert_eq!(jwks, Some(JwksErrorKind::Transport));

    let stats = keys.stats();
    assert!(!stats.loaded());
    assert!(stats.failures() >= 1, "{stats:?}");
    assert_eq!(stats.keys(), 0);
    assert!(keys.key_ids().is_empty());

    idp.wait_for_rejection(rejected).await;
    assert_eq!(idp.handshakes(), 0);
    assert_eq!(idp.fetches(), 0, "no HTTP request reached the server");
    tls.expect("a rustls error behind the 503")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn https_with_a_trusted_ca_loads_keys_and_verifies_tokens() {
    let ca = test_ca();
    let idp = Idp::start(server_cert(&ca, &["localhost", "127.0.0.1"])).await;
    let token = token();

    // By IP address (no SNI) and by DNS name (SNI `localhost`): one source each.
    for (host, sni) in [("127.0.0.1", None), ("localhost", Some("localhost"))] {
        let before = idp.fetches();
        let keys = source(idp.url(host), HttpFetcher::with_tls_config(trusting(&ca)));
        keys.ready().await.expect("keys loaded over HTTPS");
        assert_eq!(keys.key_ids(), [KID]);
        assert_eq!(idp.last_server_name().as_deref(), sni, "{host}");

        let app = app(keys.clone());
        for _ in 0..3 {
            let res = call(&app, &token).await;
            assert_eq!(res.status(), StatusCode::OK, "{host}");
            assert_eq!(body(res).await, "alice");
        }
        assert_eq!(idp.fetches(), before + 1, "{host}: exactly one fetch");
        let stats = keys.stats();
        assert_eq!(
            (stats.fetches(), stats.failures(), stats.keys()),
            (1, 0, 1),
            "{host}"
        );
        assert!(stats.loaded());
    }
    assert_eq!(idp.rejected(), 0);
}

#[tokio::test]
async fn default_roots_do_not_trust_a_private_ca() {
    let ca = test_ca();
    let idp = Idp::start(server_cert(&ca, &["localhost", "127.0.0.1"])).await;
    // The builder's default fetcher is `HttpFetcher::new()`: webpki-roots only.
    let keys = JwksKeySource::builder(idp.url("127.0.0.1"))
        .fetch_timeout(Duration::from_secs(2))
        .build()
        .expect("source");
    let tls = assert_fails_closed(&idp, keys).await;
    assert_eq!(
        tls,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );

    // The same, with the fetcher named.
    let keys = source(idp.url("localhost"), HttpFetcher::new().expect("fetcher"));
    let tls = assert_fails_closed(&idp, keys).await;
    assert_eq!(
        tls,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_fails_closed() {
    let ca = test_ca();
    let idp = Idp::start(server_cert(&ca, &["idp.example"])).await;
    let keys = source(
        idp.url("127.0.0.1"),
        HttpFetcher::with_tls_config(trusting(&ca)),
    );
    let tls = assert_fails_closed(&idp, keys).await;
    assert!(
        matches!(
            tls,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{tls:?}"
    );
}
