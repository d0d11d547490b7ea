//! STYLE §9: a known secret, sent every way a client can send it, through layers in every mode,
//! must appear in no log line (captured at TRACE), no response (headers and body), no recorded
//! `Error`, and no `Debug` output of the crate's public types.
//!
//! Current-thread `#[tokio::test]`s with a thread-local subscriber: every event is seen.
#![cfg(all(feature = "test-util", feature = "axum"))]

mod support;

use std::fmt::Debug;
use std::io;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::routing::{get, post};
use credentialflow::authn::{Authenticate, AuthenticateLayer, Authenticator, AuthenticatorExt};
use credentialflow::extract::{CredentialExtractor, CredentialSource};
use credentialflow::response::{Challenges, ProblemJson, Rejection, Responder};
use credentialflow::test_support::{StaticAuthenticator, principal};
use credentialflow::{Error, ErrorKind, Principal};
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use http::{Request, Response};
use tracing::Instrument;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

use support::*;

/// The secret. Every credential below contains it.
const SECRET: &str = "Zq9sEcReTmArKeR4x7";

/// Log output, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs a TRACE subscriber for this thread, printing span fields on span close.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_writer(captured.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the secret leaked into {what}: {text}"
    );
}

fn assert_debug_clean(what: &str, value: &impl Debug) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value:#?}"));
}

// ---------------------------------------------------------------------------------------------
// The application.
// ---------------------------------------------------------------------------------------------

/// Logs and echoes what it was handed, as a careless handler (or tower-http's `TraceLayer`)
/// would: the request headers and the `Principal`.
async fn dump(request: AxumRequest) -> String {
    let headers = request.headers();
    let principal = request.extensions().get::<Principal>();
    tracing::debug!(?headers, ?principal, "handler saw the request");
    format!("{headers:?} {principal:?}")
}

fn router() -> Router {
    Router::new()
        .route("/dump", get(dump))
        .route("/grpc.health.v1.Health/Check", post(dump))
}

/// Reads the secret from a bearer token, `X-API-Key`, the `api_key` query parameter or the
/// `session` cookie, each answering as `adjust` says.
fn authenticator(
    adjust: impl Fn(StaticAuthenticator) -> StaticAuthenticator,
) -> impl Authenticator + Debug {
    let query = StaticAuthenticator::new(CredentialExtractor::new([CredentialSource::query(
        "api_key",
    )
    .unwrap()]));
    let cookie = StaticAuthenticator::new(CredentialExtractor::new([CredentialSource::cookie(
        "session",
    )
    .unwrap()]));
    let with_secret =
        |a: StaticAuthenticator, who: &str| adjust(a.with_token(SECRET, principal(who).build()));
    with_secret(StaticAuthenticator::bearer(), "alice")
        .or(with_secret(StaticAuthenticator::api_key_header(), "svc"))
        .or(with_secret(query, "query-user"))
        .or(with_secret(cookie, "cookie-user"))
}

/// Every way the secret is sent: valid, invalid, malformed, duplicated, oversized, by two
/// methods; over HTTP and gRPC.
fn requests() -> Vec<(String, Request<Body>)> {
    let wrong = format!("{SECRET}-wrong");
    let oversized = SECRET.repeat(8 * 1024 / SECRET.len() + 1);
    let mut cases: Vec<(String, http::request::Builder)> = Vec::new();
    for (label, token) in [("valid", SECRET), ("invalid", wrong.as_str())] {
        cases.push((
            format!("{label} bearer"),
            Request::get("/dump").header(AUTHORIZATION, bearer_header(token)),
        ));
        cases.push((
            format!("{label} api key"),
            Request::get("/dump").header("x-api-key", token),
        ));
        cases.push((
            format!("{label} query"),
            Request::get(format!("/dump?x=1&api_key={token}")),
        ));
        cases.push((
            format!("{label} cookie"),
            Request::get("/dump").header(COOKIE, format!("theme=dark; session={token}")),
        ));
        cases.push((
            format!("{label} grpc"),
            Request::post("/grpc.health.v1.Health/Check")
                .header(CONTENT_TYPE, "application/grpc")
                .header(AUTHORIZATION, bearer_header(token)),
        ));
    }
    cases.push((
        "malformed bearer".into(),
        Request::get("/dump").header(AUTHORIZATION, format!("Bearer {SECRET} {SECRET}")),
    ));
    cases.push((
        "malformed api key".into(),
        Request::get("/dump").header("x-api-key", format!("\"{SECRET}\"")),
    ));
    cases.push((
        "malformed query".into(),
        Request::get(format!("/dump?api_key={SECRET}%zz")),
    ));
    cases.push((
        "duplicate bearer".into(),
        Request::get("/dump")
            .header(AUTHORIZATION, bearer_header(SECRET))
            .header(AUTHORIZATION, bearer_header(SECRET)),
    ));
    cases.push((
        "duplicate cookie".into(),
        Request::get("/dump").header(COOKIE, format!("session={SECRET}; session={SECRET}")),
    ));
    cases.push((
        "oversized bearer".into(),
        Request::get("/dump").header(AUTHORIZATION, bearer_header(&oversized)),
    ));
    cases.push((
        "two methods".into(),
        Request::get(format!("/dump?api_key={SECRET}"))
            .header(AUTHORIZATION, bearer_header(SECRET))
            .header("x-api-key", SECRET),
    ));
    cases.push((
        "malformed grpc".into(),
        Request::post("/grpc.health.v1.Health/Check")
            .header(CONTENT_TYPE, "application/grpc")
            .header(AUTHORIZATION, format!("Bearer {SECRET} x")),
    ));
    cases
        .into_iter()
        .map(|(label, builder)| (label, builder.body(Body::empty()).unwrap()))
        .collect()
}

/// Sends every request through `layer` inside a span that records the principal, and checks
/// every response.
async fn exercise<A, R>(name: &str, layer: AuthenticateLayer<A, R>)
where
    A: Authenticator,
    R: Responder<Body> + Debug,
{
    let app = router().layer(layer.clone());
    for (label, request) in requests() {
        let what = format!("{name}, {label}");
        let sensitive_sent = request.headers().contains_key(AUTHORIZATION)
            || request.headers().contains_key(COOKIE)
            || request.headers().contains_key("x-api-key");
        let span = tracing::info_span!(
            "request",
            case = %what,
            subject = tracing::field::Empty,
            credential_id = tracing::field::Empty,
        );
        let res: Response<Body> = send(app.clone(), request).instrument(span).await;
        check_response(&what, res, sensitive_sent).await;
    }
    assert_debug_clean(&format!("{name}: the layer"), &layer);
    assert_debug_clean(&format!("{name}: stats"), &layer.stats());
    assert_debug_clean(&format!("{name}: challenges"), layer.challenges());
    let service = tower::Layer::layer(&layer, router());
    assert_debug_clean(&format!("{name}: the service"), &service);
}

async fn check_response(what: &str, res: Response<Body>, sensitive_sent: bool) {
    for (name, value) in res.headers() {
        assert_clean(
            &format!("{what}: response header {name}"),
            &String::from_utf8_lossy(value.as_bytes()),
        );
    }
    assert_debug_clean(&format!("{what}: the response"), &res);
    if let Some(error) = res.extensions().get::<Error>() {
        assert_clean(&format!("{what}: Error Display"), &error.to_string());
        assert_debug_clean(&format!("{what}: Error Debug"), error);
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            assert_clean(&format!("{what}: Error source"), &cause.to_string());
            source = cause.source();
        }
    }
    let ok = res.status().is_success() && res.headers().get("grpc-status").is_none();
    let body = body_string(res.into_body()).await;
    assert_clean(&format!("{what}: the body"), &body);
    if ok && sensitive_sent {
        // The handler's Debug of the headers shows every credential header it still has as
        // sensitive (a stripping layer leaves none, or only the other cookies).
        for name in ["authorization", "x-api-key", "cookie"] {
            if body.contains(&format!("\"{name}\"")) {
                assert!(
                    body.contains(&format!("\"{name}\": Sensitive")),
                    "{what}: {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn secret_appears_in_no_log_response_error_or_debug_output() {
    let (logs, _guard) = capture();

    let plain = || authenticator(|a| a);
    exercise("required", AuthenticateLayer::new(plain())).await;
    exercise(
        "required, described",
        AuthenticateLayer::new(plain())
            .describe_errors(true)
            .realm("shop")
            .unwrap(),
    )
    .await;
    exercise(
        "required, problem+json",
        AuthenticateLayer::new(plain()).responder(ProblemJson),
    )
    .await;
    exercise("optional", AuthenticateLayer::new(plain()).optional()).await;
    exercise(
        "optional, problem+json",
        AuthenticateLayer::new(plain())
            .optional()
            .responder(ProblemJson),
    )
    .await;
    exercise(
        "dangerous",
        AuthenticateLayer::new(plain()).dangerous_invalid_as_anonymous(),
    )
    .await;
    exercise(
        "required, stripped",
        AuthenticateLayer::new(plain()).strip_credentials(true),
    )
    .await;
    exercise(
        "deferred",
        AuthenticateLayer::new(authenticator(StaticAuthenticator::deferred)),
    )
    .await;
    exercise(
        "deferred, optional, problem+json",
        AuthenticateLayer::new(authenticator(StaticAuthenticator::deferred))
            .optional()
            .responder(ProblemJson),
    )
    .await;
    exercise(
        "unavailable",
        AuthenticateLayer::new(authenticator(StaticAuthenticator::unavailable)),
    )
    .await;
    exercise(
        "unavailable, dangerous, problem+json",
        AuthenticateLayer::new(authenticator(StaticAuthenticator::unavailable))
            .dangerous_invalid_as_anonymous()
            .responder(ProblemJson),
    )
    .await;
    exercise(
        "and",
        AuthenticateLayer::new(
            StaticAuthenticator::bearer()
                .with_token(SECRET, principal("alice").build())
                .and(
                    StaticAuthenticator::api_key_header()
                        .with_token(SECRET, principal("svc").build()),
                ),
        ),
    )
    .await;

    let logs = logs.text();
    // The capture works: the crate's own events and the recorded principal are there...
    assert!(
        logs.contains("request rejected by authentication"),
        "{logs}"
    );
    assert!(logs.contains("continuing as anonymous"), "{logs}");
    assert!(logs.contains("handler saw the request"), "{logs}");
    assert!(
        logs.contains("subject=\"alice\"") || logs.contains("subject=alice"),
        "{logs}"
    );
    assert!(
        logs.contains("credential_id=\"test:alice\"") || logs.contains("credential_id=test:alice"),
        "{logs}"
    );
    // ...and the secret is not.
    for line in logs.lines() {
        assert_clean("a log line", line);
    }
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn secret_appears_in_no_output_when_the_backend_times_out() {
    let (logs, _guard) = capture();
    let hanging =
        authenticator(StaticAuthenticator::hanging).timeout(std::time::Duration::from_secs(2));
    assert_debug_clean("the timeout authenticator", &hanging);
    exercise("timeout", AuthenticateLayer::new(hanging)).await;
    let logs = logs.text();
    assert!(logs.contains("store_timeout"), "{logs}");
    assert_clean("the logs", &logs);
}

#[test]
fn secret_appears_in_no_debug_output_of_the_public_types() {
    let alice = principal("alice")
        .tenant("acme")
        .scopes(["orders:read"])
        .roles(["admin"])
        .attribute("session", SECRET)
        .plan("gold")
        .build();
    assert_debug_clean("the Principal", &alice);
    assert_debug_clean("the PrincipalBuilder", &alice.clone().into_builder());
    assert_debug_clean("the anonymous Principal", &Principal::anonymous());

    let authenticator = StaticAuthenticator::bearer()
        .with_prefix("Zq9")
        .with_token(SECRET, alice);
    assert_debug_clean("the StaticAuthenticator", &authenticator);
    let combined = authenticator.clone().or(api_key()).and(bearer());
    assert_debug_clean("the combinators", &combined);
    let layer = AuthenticateLayer::new(authenticator.clone());
    assert_debug_clean("the layer", &layer);
    assert_debug_clean("the service", &Authenticate::new(router(), authenticator));

    let extractor = CredentialExtractor::new([
        CredentialSource::bearer(),
        CredentialSource::header("x-api-key").unwrap(),
        CredentialSource::query("api_key").unwrap(),
        CredentialSource::cookie("session").unwrap(),
    ]);
    assert_debug_clean("the extractor", &extractor);
    for builder in [
        Request::get("/").header(AUTHORIZATION, bearer_header(SECRET)),
        Request::get("/").header("x-api-key", SECRET),
        Request::get(format!("/?api_key={SECRET}")),
        Request::get("/").header(COOKIE, format!("session={SECRET}")),
    ] {
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let credential = extractor.extract(&parts).unwrap().expect("present");
        // It really is the secret...
        assert_eq!(credential.value(), SECRET);
        // ...and Debug does not show it.
        assert_debug_clean("the Credential", &credential);
    }

    let error = Error::new(ErrorKind::UnknownCredential);
    let challenges = Challenges::default_bearer();
    let (parts, ()) = Request::get("/")
        .header(AUTHORIZATION, bearer_header(SECRET))
        .body(())
        .unwrap()
        .into_parts();
    let rejection = Rejection::new(&error, &challenges, &parts.headers);
    assert_debug_clean("the Rejection", &rejection);
    assert_debug_clean("the Error", &error);
}

#[tokio::test]
async fn sensitive_credential_headers_debug_as_sensitive_after_the_layer() {
    let app = router().layer(AuthenticateLayer::new(authenticator(|a| a)));
    let req = Request::get("/dump")
        .header(AUTHORIZATION, bearer_header(SECRET))
        .header("x-request-id", "visible-request-id")
        .body(Body::empty())
        .unwrap();
    let res = send(app, req).await;
    let body = body_string(res.into_body()).await;
    assert!(body.contains(r#""authorization": Sensitive"#), "{body}");
    assert!(body.contains("visible-request-id"), "{body}");
    assert_clean("the handler's view of the headers", &body);
}
