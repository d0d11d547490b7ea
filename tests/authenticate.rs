//! The `Authenticate` layer in front of a real axum `Router`, driven with `oneshot` as a server
//! would drive it: every status, challenge, mode, combinator and option of issue 3.
#![cfg(all(feature = "test-util", feature = "axum"))]

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::routing::{get, options, post};
use credentialflow::authn::{
    ALSO_AUTHENTICATED_ATTRIBUTE, Authenticate, AuthenticateLayer, Authenticator, AuthenticatorExt,
    ResponseFuture,
};
use credentialflow::extract::{CredentialExtractor, CredentialSource};
use credentialflow::response::{DefaultResponder, ProblemJson, Rejection, Responder};
use credentialflow::test_support::{StaticAuthenticator, principal};
use credentialflow::{Error, ErrorKind, Principal};
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri};
use serde_json::{Value, json};

use support::*;

// ---------------------------------------------------------------------------------------------
// The application under test.
// ---------------------------------------------------------------------------------------------

/// Echoes the authenticated subject; anonymous or missing is the extractor's 401.
async fn whoami(principal: Principal) -> String {
    principal.subject().to_owned()
}

/// Echoes the subject, or `anonymous` when the request is anonymous.
async fn maybe(principal: Option<Principal>) -> String {
    principal.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
}

/// What the `And` combinator recorded.
async fn also(principal: Principal) -> String {
    let recorded = principal
        .attribute(ALSO_AUTHENTICATED_ATTRIBUTE)
        .cloned()
        .unwrap_or(Value::Null);
    json!({ "subject": principal.subject(), "also": recorded }).to_string()
}

/// Which credentials reached the handler, and whether their headers are sensitive.
async fn seen(headers: HeaderMap, uri: Uri) -> String {
    let describe = |name: &str| match headers.get(name) {
        None => "absent".to_owned(),
        Some(v) if v.is_sensitive() => format!("sensitive:{}", v.to_str().unwrap_or("?")),
        Some(v) => format!("plain:{}", v.to_str().unwrap_or("?")),
    };
    json!({
        "authorization": describe("authorization"),
        "x-api-key": describe("x-api-key"),
        "cookie": describe("cookie"),
        "query": uri.query(),
    })
    .to_string()
}

/// Answers a CORS preflight; reports whether a `Principal` was inserted.
async fn preflight(request: AxumRequest) -> String {
    match request.extensions().get::<Principal>() {
        Some(p) => format!("principal:{}", p.subject()),
        None => "no principal".to_owned(),
    }
}

/// Every route, behind `layer`.
fn app<A, R>(layer: AuthenticateLayer<A, R>) -> Router
where
    A: Authenticator,
    R: Responder<Body>,
{
    Router::new()
        .route("/me", get(whoami))
        .route("/maybe", get(maybe))
        .route("/also", get(also))
        .route("/seen", get(seen))
        .route("/cors", options(preflight).get(whoami))
        .route("/grpc.health.v1.Health/Check", post(whoami))
        .layer(layer)
}

/// The usual route: bearer tokens, required mode.
fn bearer_app() -> Router {
    app(AuthenticateLayer::new(bearer()))
}

/// A route accepting `X-API-Key` or a bearer token.
fn key_or_bearer() -> impl Authenticator + Clone {
    api_key().or(bearer())
}

fn get_req(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

fn with_bearer(uri: &str, token: &str) -> Request<Body> {
    get_req(uri)
        .header(AUTHORIZATION, bearer_header(token))
        .body(Body::empty())
        .unwrap()
}

fn bare(uri: &str) -> Request<Body> {
    get_req(uri).body(Body::empty()).unwrap()
}

async fn ok_body(res: Response<Body>) -> String {
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.headers());
    assert!(error_kind(&res).is_none());
    body_string(res.into_body()).await
}

// ---------------------------------------------------------------------------------------------
// Required mode.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_credential_is_401_with_a_bare_challenge() {
    let res = send(bearer_app(), bare("/me")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
    assert_eq!(retry_after(&res), None);
    assert_eq!(body_string(res.into_body()).await, "");
}

#[tokio::test]
async fn valid_bearer_token_reaches_the_handler_as_its_principal() {
    let res = send(bearer_app(), with_bearer("/me", ALICE_TOKEN)).await;
    assert!(challenges(&res).is_empty());
    assert_eq!(ok_body(res).await, "alice");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let req = get_req("/me")
            .header(AUTHORIZATION, format!("{scheme} {ALICE_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let res = send(bearer_app(), req).await;
        assert_eq!(ok_body(res).await, "alice", "{scheme}");
    }
}

#[tokio::test]
async fn unknown_token_is_401_invalid_token() {
    let res = send(bearer_app(), with_bearer("/me", UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));
}

#[tokio::test]
async fn another_authorization_scheme_counts_as_no_credential() {
    let req = get_req("/me")
        .header(AUTHORIZATION, "Basic YWxpY2U6cGFzcw==")
        .body(Body::empty())
        .unwrap();
    let res = send(bearer_app(), req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
}

#[tokio::test]
async fn custom_realm_is_used_in_every_challenge() {
    let layer = AuthenticateLayer::new(bearer()).realm("shop").unwrap();
    let res = send(app(layer.clone()), bare("/me")).await;
    assert_eq!(challenges(&res), [r#"Bearer realm="shop""#]);
    let res = send(app(layer), with_bearer("/me", UNKNOWN)).await;
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="shop", error="invalid_token""#]
    );
}

#[tokio::test]
async fn describe_errors_adds_a_generic_description_only_where_an_error_is_sent() {
    let layer = AuthenticateLayer::new(bearer()).describe_errors(true);
    let res = send(app(layer.clone()), with_bearer("/me", UNKNOWN)).await;
    assert_eq!(
        challenges(&res),
        [
            r#"Bearer realm="api", error="invalid_token", error_description="The credential is invalid.""#
        ]
    );
    let res = send(app(layer.clone()), with_bearer("/me", "a b")).await;
    assert_eq!(
        challenges(&res),
        [
            r#"Bearer realm="api", error="invalid_request", error_description="The request is malformed.""#
        ]
    );
    let res = send(app(layer), bare("/me")).await;
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
}

#[tokio::test]
async fn realm_and_description_settings_compose_in_either_order() {
    let a = AuthenticateLayer::new(bearer())
        .describe_errors(true)
        .realm("shop")
        .unwrap();
    let b = AuthenticateLayer::new(bearer())
        .realm("shop")
        .unwrap()
        .describe_errors(true);
    for layer in [a, b] {
        let res = send(app(layer), with_bearer("/me", UNKNOWN)).await;
        assert_eq!(
            challenges(&res),
            [
                r#"Bearer realm="shop", error="invalid_token", error_description="The credential is invalid.""#
            ]
        );
    }
}

#[test]
fn a_realm_rfc_6750_forbids_is_a_config_error() {
    for realm in ["", "a\"b", "a\\b", "caf\u{e9}", "line\nbreak"] {
        let err = AuthenticateLayer::new(bearer())
            .realm(realm)
            .expect_err(realm);
        assert!(err.message().contains("realm"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed, duplicated, oversized: 400 invalid_request.
// ---------------------------------------------------------------------------------------------

async fn assert_invalid_request(res: Response<Body>, kind: ErrorKind, challenge: &[&str]) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenges(&res), challenge);
    assert_eq!(error_kind(&res), Some(kind));
    assert_eq!(body_string(res.into_body()).await, "");
}

const BEARER_INVALID_REQUEST: &str = r#"Bearer realm="api", error="invalid_request""#;

#[tokio::test]
async fn malformed_bearer_token_is_400_invalid_request() {
    for value in [
        "Bearer a b",
        "Bearer",
        "Bearer ",
        "Bearer a=b",
        "Bearer a,b",
        "Bearer \"quoted\"",
    ] {
        let req = get_req("/me")
            .header(AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let res = send(bearer_app(), req).await;
        assert_invalid_request(
            res,
            ErrorKind::MalformedCredential,
            &[BEARER_INVALID_REQUEST],
        )
        .await;
    }
}

#[tokio::test]
async fn two_authorization_headers_are_400_even_when_both_are_valid() {
    let req = get_req("/me")
        .header(AUTHORIZATION, bearer_header(ALICE_TOKEN))
        .header(AUTHORIZATION, bearer_header(ALICE_TOKEN))
        .body(Body::empty())
        .unwrap();
    let res = send(bearer_app(), req).await;
    assert_invalid_request(
        res,
        ErrorKind::DuplicateCredential,
        &[BEARER_INVALID_REQUEST],
    )
    .await;
}

#[tokio::test]
async fn credential_over_8_kib_is_400_before_any_lookup() {
    let long = "a".repeat(8 * 1024 + 1);
    let res = send(bearer_app(), with_bearer("/me", &long)).await;
    assert_invalid_request(
        res,
        ErrorKind::OversizedCredential,
        &[BEARER_INVALID_REQUEST],
    )
    .await;

    // Exactly at the limit is a credential like any other.
    let at_limit = "a".repeat(8 * 1024);
    let res = send(bearer_app(), with_bearer("/me", &at_limit)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));
}

#[tokio::test]
async fn oversized_wins_over_malformed() {
    let long = "a b".repeat(3000);
    let res = send(bearer_app(), with_bearer("/me", &long)).await;
    assert_invalid_request(
        res,
        ErrorKind::OversizedCredential,
        &[BEARER_INVALID_REQUEST],
    )
    .await;
}

#[tokio::test]
async fn custom_length_limit_is_enforced() {
    let extractor = CredentialExtractor::new([CredentialSource::bearer()])
        .with_max_len(16)
        .unwrap();
    let authenticator = StaticAuthenticator::new(extractor)
        .with_token("exactly-16-bytes", principal("bob").build());
    let layer = AuthenticateLayer::new(authenticator);

    let res = send(app(layer.clone()), with_bearer("/me", "exactly-16-bytes")).await;
    assert_eq!(ok_body(res).await, "bob");

    let res = send(app(layer), with_bearer("/me", "seventeen-bytes-x")).await;
    assert_invalid_request(
        res,
        ErrorKind::OversizedCredential,
        &[BEARER_INVALID_REQUEST],
    )
    .await;
}

#[tokio::test]
async fn api_key_sent_twice_is_400_invalid_request() {
    let req = get_req("/me")
        .header("x-api-key", SVC_KEY)
        .header("x-api-key", SVC_KEY)
        .body(Body::empty())
        .unwrap();
    let res = send(app(AuthenticateLayer::new(api_key())), req).await;
    assert_invalid_request(
        res,
        ErrorKind::DuplicateCredential,
        &[r#"ApiKey realm="api", error="invalid_request""#],
    )
    .await;
}

#[tokio::test]
async fn malformed_api_key_is_400_invalid_request() {
    let req = get_req("/me")
        .header("x-api-key", "two words")
        .body(Body::empty())
        .unwrap();
    let res = send(app(AuthenticateLayer::new(api_key())), req).await;
    assert_invalid_request(
        res,
        ErrorKind::MalformedCredential,
        &[r#"ApiKey realm="api", error="invalid_request""#],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// `or`: an API key or a bearer token on one route.
// ---------------------------------------------------------------------------------------------

const API_KEY_PLAIN: &str = r#"ApiKey realm="api""#;
const BEARER_PLAIN: &str = r#"Bearer realm="api""#;

#[tokio::test]
async fn route_accepting_two_schemes_challenges_with_both_in_order() {
    let res = send(app(AuthenticateLayer::new(key_or_bearer())), bare("/me")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [API_KEY_PLAIN, BEARER_PLAIN]);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
}

#[tokio::test]
async fn either_credential_authenticates_on_a_two_scheme_route() {
    let layer = AuthenticateLayer::new(key_or_bearer());
    let res = send(app(layer.clone()), with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(ok_body(res).await, "alice");
    let req = get_req("/me")
        .header("x-api-key", SVC_KEY)
        .body(Body::empty())
        .unwrap();
    let res = send(app(layer), req).await;
    assert_eq!(ok_body(res).await, "svc");
}

#[tokio::test]
async fn only_the_scheme_whose_credential_failed_carries_the_error() {
    let layer = AuthenticateLayer::new(key_or_bearer());
    let res = send(app(layer.clone()), with_bearer("/me", UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [
            API_KEY_PLAIN,
            r#"Bearer realm="api", error="invalid_token""#
        ]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));

    let req = get_req("/me")
        .header("x-api-key", UNKNOWN)
        .body(Body::empty())
        .unwrap();
    let res = send(app(layer), req).await;
    assert_eq!(
        challenges(&res),
        [r#"ApiKey realm="api", error="invalid_token""#, BEARER_PLAIN]
    );
}

#[tokio::test]
async fn credentials_of_both_kinds_are_400_conflicting() {
    let req = get_req("/me")
        .header("x-api-key", SVC_KEY)
        .header(AUTHORIZATION, bearer_header(ALICE_TOKEN))
        .body(Body::empty())
        .unwrap();
    let res = send(app(AuthenticateLayer::new(key_or_bearer())), req).await;
    assert_invalid_request(
        res,
        ErrorKind::ConflictingCredentials,
        &[
            r#"ApiKey realm="api", error="invalid_request""#,
            BEARER_PLAIN,
        ],
    )
    .await;
}

#[tokio::test]
async fn credentials_of_both_kinds_are_400_whatever_their_validity_and_timing() {
    // Whether a credential is known, and whether it is checked synchronously or through a
    // future, must not change the answer to a request that used two methods.
    let sync = api_key().or(bearer());
    let deferred = api_key().deferred().or(bearer().deferred());
    for (key, token) in [
        (SVC_KEY, ALICE_TOKEN),
        (UNKNOWN, ALICE_TOKEN),
        (SVC_KEY, UNKNOWN),
        (UNKNOWN, UNKNOWN),
    ] {
        for layer in [
            AuthenticateLayer::new(sync.clone()),
            AuthenticateLayer::new(deferred.clone()),
        ] {
            let req = get_req("/me")
                .header("x-api-key", key)
                .header(AUTHORIZATION, bearer_header(token))
                .body(Body::empty())
                .unwrap();
            let res = send(app(layer), req).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{key} {token}");
            assert_eq!(
                error_kind(&res),
                Some(ErrorKind::ConflictingCredentials),
                "{key} {token}"
            );
        }
    }
}

#[tokio::test]
async fn a_malformed_credential_is_400_even_beside_an_unknown_one() {
    let req = get_req("/me")
        .header("x-api-key", UNKNOWN)
        .header(AUTHORIZATION, "Bearer a b")
        .body(Body::empty())
        .unwrap();
    let res = send(app(AuthenticateLayer::new(key_or_bearer())), req).await;
    assert_invalid_request(
        res,
        ErrorKind::MalformedCredential,
        &[API_KEY_PLAIN, BEARER_INVALID_REQUEST],
    )
    .await;
}

/// An API-key authenticator and a "JWT" authenticator both reading `Authorization: Bearer`,
/// each recognising its own format.
fn key_or_jwt() -> impl Authenticator {
    StaticAuthenticator::bearer()
        .with_prefix("cf_")
        .with_token(SVC_KEY, svc())
        .or(StaticAuthenticator::bearer()
            .with_prefix("eyJ")
            .with_token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", alice()))
}

#[tokio::test]
async fn a_credential_in_another_format_falls_through_to_the_next_authenticator() {
    let layer = AuthenticateLayer::new(key_or_jwt());
    let res = send(
        app(layer.clone()),
        with_bearer("/me", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"),
    )
    .await;
    assert_eq!(ok_body(res).await, "alice");

    let res = send(app(layer.clone()), with_bearer("/me", SVC_KEY)).await;
    assert_eq!(ok_body(res).await, "svc");

    // A recognised but bad credential stops the chain with its 401.
    let res = send(app(layer.clone()), with_bearer("/me", "cf_unknown")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));

    // A bearer token neither authenticator recognises is no credential of theirs.
    let res = send(app(layer), with_bearer("/me", "opaque-token")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [BEARER_PLAIN]);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
}

// ---------------------------------------------------------------------------------------------
// `and`: every authenticator must succeed.
// ---------------------------------------------------------------------------------------------

fn key_and_bearer() -> impl Authenticator {
    api_key().and(bearer())
}

fn both(key: &str, token: &str) -> Request<Body> {
    get_req("/also")
        .header("x-api-key", key)
        .header(AUTHORIZATION, bearer_header(token))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn and_uses_the_first_principal_and_records_the_second_credential() {
    let res = send(
        app(AuthenticateLayer::new(key_and_bearer())),
        both(SVC_KEY, ALICE_TOKEN),
    )
    .await;
    let body: Value = serde_json::from_str(&ok_body(res).await).unwrap();
    assert_eq!(
        body,
        json!({
            "subject": "svc",
            "also": [{"kind": "test", "subject": "alice", "credential_id": "test:alice"}],
        })
    );
}

#[tokio::test]
async fn and_with_deferred_authenticators_gives_the_same_principal() {
    let layer = AuthenticateLayer::new(api_key().deferred().and(bearer().deferred()));
    let res = send(app(layer), both(SVC_KEY, ALICE_TOKEN)).await;
    let body: Value = serde_json::from_str(&ok_body(res).await).unwrap();
    assert_eq!(body["subject"], "svc");
    assert_eq!(body["also"][0]["credential_id"], "test:alice");
}

#[tokio::test]
async fn and_with_only_one_credential_is_401() {
    let layer = AuthenticateLayer::new(key_and_bearer());
    let only_key = get_req("/also")
        .header("x-api-key", SVC_KEY)
        .body(Body::empty())
        .unwrap();
    let only_token = with_bearer("/also", ALICE_TOKEN);
    for req in [only_key, only_token] {
        let res = send(app(layer.clone()), req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenges(&res), [API_KEY_PLAIN, BEARER_PLAIN]);
        assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
    }
    let res = send(app(layer), bare("/also")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
}

#[tokio::test]
async fn and_with_one_bad_credential_is_401_on_that_scheme() {
    let sync = AuthenticateLayer::new(key_and_bearer());
    let deferred = AuthenticateLayer::new(api_key().deferred().and(bearer().deferred()));
    let res = send(app(sync), both(SVC_KEY, UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [
            API_KEY_PLAIN,
            r#"Bearer realm="api", error="invalid_token""#
        ]
    );
    let res = send(app(deferred), both(UNKNOWN, ALICE_TOKEN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"ApiKey realm="api", error="invalid_token""#, BEARER_PLAIN]
    );
}

// ---------------------------------------------------------------------------------------------
// Optional and dangerous modes.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn optional_mode_lets_a_request_without_credential_continue_as_anonymous() {
    let layer = AuthenticateLayer::new(bearer()).optional();
    let res = send(app(layer.clone()), bare("/maybe")).await;
    assert_eq!(ok_body(res).await, "anonymous");
    let res = send(app(layer.clone()), with_bearer("/maybe", ALICE_TOKEN)).await;
    assert_eq!(ok_body(res).await, "alice");
    assert_eq!(layer.stats().anonymous(), 1);
    assert_eq!(layer.stats().authenticated(), 1);
}

#[tokio::test]
async fn principal_extractor_refuses_an_anonymous_request_with_the_routes_challenge() {
    let layer = AuthenticateLayer::new(key_or_bearer())
        .optional()
        .realm("shop")
        .unwrap();
    let res = send(app(layer), bare("/me")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"ApiKey realm="shop""#, r#"Bearer realm="shop""#]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::AuthenticationRequired));
}

#[tokio::test]
async fn optional_mode_still_refuses_a_bad_credential() {
    let layer = AuthenticateLayer::new(bearer()).optional();
    let res = send(app(layer.clone()), with_bearer("/maybe", UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));

    let res = send(app(layer), with_bearer("/maybe", "a b")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_kind(&res), Some(ErrorKind::MalformedCredential));
}

#[tokio::test]
async fn dangerous_mode_serves_a_bad_credential_as_anonymous_and_counts_it() {
    let layer = AuthenticateLayer::new(bearer()).dangerous_invalid_as_anonymous();
    let res = send(app(layer.clone()), with_bearer("/maybe", UNKNOWN)).await;
    assert_eq!(ok_body(res).await, "anonymous");
    let res = send(app(layer.clone()), bare("/maybe")).await;
    assert_eq!(ok_body(res).await, "anonymous");
    let res = send(app(layer.clone()), with_bearer("/maybe", ALICE_TOKEN)).await;
    assert_eq!(ok_body(res).await, "alice");

    let stats = layer.stats();
    assert_eq!(stats.invalid_as_anonymous(), 1);
    assert_eq!(stats.anonymous(), 1);
    assert_eq!(stats.authenticated(), 1);
    assert_eq!(stats.rejected_total(), 0);
}

#[tokio::test]
async fn dangerous_mode_still_refuses_malformed_and_duplicated_credentials() {
    let layer = AuthenticateLayer::new(bearer()).dangerous_invalid_as_anonymous();
    let res = send(app(layer.clone()), with_bearer("/maybe", "a b")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_kind(&res), Some(ErrorKind::MalformedCredential));
    let twice = get_req("/maybe")
        .header("authorization", bearer_header(ALICE_TOKEN))
        .header("authorization", bearer_header(ALICE_TOKEN))
        .body(Body::empty())
        .unwrap();
    let res = send(app(layer.clone()), twice).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_kind(&res), Some(ErrorKind::DuplicateCredential));
    assert_eq!(layer.stats().invalid_as_anonymous(), 0);
}

#[tokio::test]
async fn dangerous_mode_still_needs_a_real_principal_for_the_principal_extractor() {
    let layer = AuthenticateLayer::new(bearer()).dangerous_invalid_as_anonymous();
    let res = send(app(layer), with_bearer("/me", UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [BEARER_PLAIN]);
    assert_eq!(error_kind(&res), Some(ErrorKind::AuthenticationRequired));
}

// ---------------------------------------------------------------------------------------------
// Unavailable backends: 503 with Retry-After in every mode.
// ---------------------------------------------------------------------------------------------

fn unavailable() -> StaticAuthenticator {
    bearer().unavailable()
}

#[tokio::test]
async fn unavailable_backend_is_503_with_retry_after_in_every_mode() {
    let layers = [
        AuthenticateLayer::new(unavailable()),
        AuthenticateLayer::new(unavailable()).optional(),
        AuthenticateLayer::new(unavailable()).dangerous_invalid_as_anonymous(),
    ];
    for layer in layers {
        for token in [ALICE_TOKEN, UNKNOWN] {
            let res = send(app(layer.clone()), with_bearer("/maybe", token)).await;
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(retry_after(&res).as_deref(), Some("5"));
            assert!(challenges(&res).is_empty());
            assert_eq!(error_kind(&res), Some(ErrorKind::StoreUnavailable));
        }
        assert_eq!(layer.stats().rejected(ErrorKind::StoreUnavailable), 2);
        assert_eq!(layer.stats().invalid_as_anonymous(), 0);
    }
}

#[tokio::test]
async fn unavailable_backend_is_503_on_the_deferred_path_too() {
    let layer = AuthenticateLayer::new(bearer().deferred().unavailable());
    let res = send(app(layer), with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&res).as_deref(), Some("5"));
}

#[tokio::test]
async fn unavailable_retry_after_is_configurable() {
    let layer =
        AuthenticateLayer::new(unavailable()).unavailable_retry_after(Duration::from_secs(30));
    let res = send(app(layer), with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&res).as_deref(), Some("30"));
}

#[tokio::test]
async fn a_definite_refusal_outranks_an_unavailable_backend_in_and() {
    // A bad key is something the client can fix; a broken backend is not.
    let layer = AuthenticateLayer::new(api_key().and(bearer().deferred().unavailable()));
    let res = send(app(layer), both(UNKNOWN, ALICE_TOKEN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn a_hanging_backend_times_out_into_503_store_timeout() {
    let authenticator = bearer().hanging().timeout(Duration::from_secs(2));
    let layer = AuthenticateLayer::new(authenticator);
    for layer in [
        layer.clone(),
        layer.clone().optional(),
        layer.dangerous_invalid_as_anonymous(),
    ] {
        let started = tokio::time::Instant::now();
        let res = send(app(layer), with_bearer("/maybe", ALICE_TOKEN)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
            "{waited:?}"
        );
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&res).as_deref(), Some("5"));
        assert_eq!(error_kind(&res), Some(ErrorKind::StoreTimeout));
    }
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn a_timeout_does_not_delay_an_answer_that_is_ready() {
    let layer = AuthenticateLayer::new(bearer().deferred().timeout(Duration::from_secs(2)));
    let started = tokio::time::Instant::now();
    let res = send(app(layer), with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(ok_body(res).await, "alice");
}

// ---------------------------------------------------------------------------------------------
// The deferred path.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deferred_verification_answers_like_the_synchronous_path() {
    for layer in [
        AuthenticateLayer::new(bearer()),
        AuthenticateLayer::new(bearer().deferred()),
    ] {
        let res = send(app(layer.clone()), with_bearer("/me", ALICE_TOKEN)).await;
        assert_eq!(ok_body(res).await, "alice");

        let res = send(app(layer.clone()), with_bearer("/me", UNKNOWN)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(&res),
            [r#"Bearer realm="api", error="invalid_token""#]
        );
        assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));

        let res = send(app(layer.clone()), bare("/me")).await;
        assert_eq!(challenges(&res), [BEARER_PLAIN]);

        let res = send(app(layer.clone()), with_bearer("/me", "a b")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);

        assert_eq!(layer.stats().authenticated(), 1);
        assert_eq!(layer.stats().rejected_total(), 3);
    }
}

#[tokio::test]
async fn deferred_optional_mode_serves_anonymous_and_refuses_bad_credentials() {
    let layer = AuthenticateLayer::new(bearer().deferred()).optional();
    let res = send(app(layer.clone()), bare("/maybe")).await;
    assert_eq!(ok_body(res).await, "anonymous");
    let res = send(app(layer.clone()), with_bearer("/maybe", UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let dangerous = AuthenticateLayer::new(bearer().deferred()).dangerous_invalid_as_anonymous();
    let res = send(app(dangerous.clone()), with_bearer("/maybe", UNKNOWN)).await;
    assert_eq!(ok_body(res).await, "anonymous");
    assert_eq!(dangerous.stats().invalid_as_anonymous(), 1);
}

// ---------------------------------------------------------------------------------------------
// gRPC.
// ---------------------------------------------------------------------------------------------

fn grpc(auth: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/grpc.health.v1.Health/Check")
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    if let Some(auth) = auth {
        req = req.header(AUTHORIZATION, auth);
    }
    req.body(Body::empty()).unwrap()
}

async fn assert_grpc_status(res: Response<Body>, code: &str, kind: ErrorKind) {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "grpc-status"), Some(code));
    assert_eq!(header(&res, "content-type"), Some("application/grpc"));
    let message = header(&res, "grpc-message").expect("grpc-message");
    assert!(!message.is_empty());
    assert!(
        message
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'%')
    );
    assert!(challenges(&res).is_empty());
    assert_eq!(error_kind(&res), Some(kind));
    assert_eq!(body_string(res.into_body()).await, "");
}

#[tokio::test]
async fn grpc_request_without_credential_gets_grpc_status_16() {
    let res = send(bearer_app(), grpc(None)).await;
    assert_eq!(header(&res, "grpc-message"), Some("unauthenticated"));
    assert_grpc_status(res, "16", ErrorKind::MissingCredential).await;
}

#[tokio::test]
async fn grpc_request_with_a_bad_credential_gets_grpc_status_16() {
    let res = send(bearer_app(), grpc(Some(&bearer_header(UNKNOWN)))).await;
    assert_grpc_status(res, "16", ErrorKind::UnknownCredential).await;
}

#[tokio::test]
async fn grpc_request_with_a_malformed_credential_gets_grpc_status_3() {
    let res = send(bearer_app(), grpc(Some("Bearer a b"))).await;
    assert_grpc_status(res, "3", ErrorKind::MalformedCredential).await;
}

#[tokio::test]
async fn grpc_request_to_an_unavailable_backend_gets_grpc_status_14_and_pushback() {
    let app = app(AuthenticateLayer::new(unavailable()));
    let res = send(app, grpc(Some(&bearer_header(ALICE_TOKEN)))).await;
    assert_eq!(header(&res, "grpc-retry-pushback-ms"), Some("5000"));
    assert_eq!(retry_after(&res), None);
    assert_grpc_status(res, "14", ErrorKind::StoreUnavailable).await;
}

#[tokio::test]
async fn grpc_request_with_a_valid_credential_reaches_the_handler() {
    let res = send(bearer_app(), grpc(Some(&bearer_header(ALICE_TOKEN)))).await;
    assert_eq!(ok_body(res).await, "alice");
}

#[tokio::test]
async fn grpc_anonymous_request_refused_by_the_extractor_gets_grpc_status_16() {
    let app = app(AuthenticateLayer::new(bearer()).optional());
    let res = send(app, grpc(None)).await;
    assert_grpc_status(res, "16", ErrorKind::AuthenticationRequired).await;
}

#[tokio::test]
async fn grpc_web_and_proto_content_types_are_answered_as_grpc() {
    for ct in ["application/grpc+proto", "application/grpc-web"] {
        let req = Request::post("/grpc.health.v1.Health/Check")
            .header(CONTENT_TYPE, ct)
            .body(Body::empty())
            .unwrap();
        let res = send(bearer_app(), req).await;
        assert_eq!(header(&res, "grpc-status"), Some("16"), "{ct}");
    }
}

#[tokio::test]
async fn problem_json_responder_still_answers_grpc_as_grpc() {
    let app = app(AuthenticateLayer::new(bearer()).responder(ProblemJson));
    let res = send(app, grpc(None)).await;
    assert_grpc_status(res, "16", ErrorKind::MissingCredential).await;
}

// ---------------------------------------------------------------------------------------------
// Responders.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn problem_json_body_is_generic_and_keeps_the_challenge() {
    let secret = "problem-json-secret-token";
    let app = app(AuthenticateLayer::new(bearer()).responder(ProblemJson));
    let res = send(app, with_bearer("/me", secret)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&res, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));
    let body = body_string(res.into_body()).await;
    assert!(!body.contains(secret));
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem,
        json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "The credential is missing or invalid.",
        })
    );
}

#[tokio::test]
async fn problem_json_status_matches_the_http_status() {
    let layer = AuthenticateLayer::new(bearer()).responder(ProblemJson);
    let cases = [
        (with_bearer("/me", "a b"), 400, "Bad Request"),
        (bare("/me"), 401, "Unauthorized"),
    ];
    for (req, status, title) in cases {
        let res = send(app(layer.clone()), req).await;
        assert_eq!(res.status().as_u16(), status);
        let problem: Value = serde_json::from_str(&body_string(res.into_body()).await).unwrap();
        assert_eq!(problem["status"], status);
        assert_eq!(problem["title"], title);
    }
    let app = app(AuthenticateLayer::new(unavailable()).responder(ProblemJson));
    let res = send(app, with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&res).as_deref(), Some("5"));
    let problem: Value = serde_json::from_str(&body_string(res.into_body()).await).unwrap();
    assert_eq!(problem["status"], 503);
}

/// Replaces every rejection with a teapot and forgets to record anything.
#[derive(Clone, Debug)]
struct Teapot;

impl Responder<Body> for Teapot {
    fn respond(&self, _rejection: &Rejection<'_>) -> Response<Body> {
        let mut res = Response::new(Body::from("short and stout"));
        *res.status_mut() = StatusCode::IM_A_TEAPOT;
        res
    }
}

#[tokio::test]
async fn a_custom_responder_replaces_the_response_but_not_the_recorded_error() {
    let app = app(AuthenticateLayer::new(bearer()).responder(Teapot));
    let res = send(app, with_bearer("/me", UNKNOWN)).await;
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    assert!(challenges(&res).is_empty());
    assert_eq!(error_kind(&res), Some(ErrorKind::UnknownCredential));
    assert_eq!(body_string(res.into_body()).await, "short and stout");
}

// ---------------------------------------------------------------------------------------------
// What reaches the inner service: stripping, sensitivity, query credentials, cookies.
// ---------------------------------------------------------------------------------------------

/// Reads a bearer token, an `X-API-Key`, the `api_key` query parameter or the `session` cookie.
fn every_source() -> impl Authenticator {
    let query = StaticAuthenticator::new(CredentialExtractor::new([CredentialSource::query(
        "api_key",
    )
    .unwrap()]))
    .with_token(SVC_KEY, svc());
    let cookie = StaticAuthenticator::new(CredentialExtractor::new([CredentialSource::cookie(
        "session",
    )
    .unwrap()]))
    .with_token(ALICE_TOKEN, alice());
    bearer().or(api_key()).or(query).or(cookie)
}

async fn seen_by_handler(
    layer: AuthenticateLayer<impl Authenticator>,
    req: Request<Body>,
) -> Value {
    let res = send(app(layer), req).await;
    serde_json::from_str(&ok_body(res).await).unwrap()
}

#[tokio::test]
async fn strip_credentials_removes_every_credential_before_the_handler() {
    let layer = AuthenticateLayer::new(every_source()).strip_credentials(true);

    let seen = seen_by_handler(layer.clone(), with_bearer("/seen?x=1", ALICE_TOKEN)).await;
    assert_eq!(seen["authorization"], "absent");
    assert_eq!(seen["query"], "x=1");

    let req = get_req("/seen")
        .header("x-api-key", SVC_KEY)
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer.clone(), req).await;
    assert_eq!(seen["x-api-key"], "absent");

    let req = bare(&format!("/seen?a=1&api_key={SVC_KEY}&b=2"));
    let seen = seen_by_handler(layer.clone(), req).await;
    assert_eq!(seen["query"], "a=1&b=2");

    let req = bare(&format!("/seen?api_key={SVC_KEY}"));
    let seen = seen_by_handler(layer.clone(), req).await;
    assert_eq!(seen["query"], Value::Null);

    let req = get_req("/seen")
        .header(
            COOKIE,
            format!("theme=dark; session={ALICE_TOKEN}; lang=en"),
        )
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer.clone(), req).await;
    assert_eq!(seen["cookie"], "sensitive:theme=dark; lang=en");

    let req = get_req("/seen")
        .header(COOKIE, format!("session={ALICE_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer, req).await;
    assert_eq!(seen["cookie"], "absent");
}

#[tokio::test]
async fn strip_credentials_also_strips_on_the_deferred_path_and_for_anonymous_requests() {
    let layer = AuthenticateLayer::new(bearer().deferred()).strip_credentials(true);
    let seen = seen_by_handler(layer, with_bearer("/seen", ALICE_TOKEN)).await;
    assert_eq!(seen["authorization"], "absent");

    let layer = AuthenticateLayer::new(bearer())
        .dangerous_invalid_as_anonymous()
        .strip_credentials(true);
    let res = send(app(layer), with_bearer("/seen", UNKNOWN)).await;
    let seen: Value = serde_json::from_str(&ok_body(res).await).unwrap();
    assert_eq!(seen["authorization"], "absent");
}

#[tokio::test]
async fn strip_credentials_leaves_another_authorization_scheme_alone() {
    let layer = AuthenticateLayer::new(api_key()).strip_credentials(true);
    let req = get_req("/seen")
        .header("x-api-key", SVC_KEY)
        .header(AUTHORIZATION, "Basic YWxpY2U6cGFzcw==")
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer, req).await;
    assert_eq!(seen["x-api-key"], "absent");
    assert_eq!(seen["authorization"], "plain:Basic YWxpY2U6cGFzcw==");
}

#[tokio::test]
async fn credentials_left_in_the_request_arrive_marked_sensitive() {
    let layer = AuthenticateLayer::new(every_source());

    let seen = seen_by_handler(layer.clone(), with_bearer("/seen", ALICE_TOKEN)).await;
    assert_eq!(
        seen["authorization"],
        format!("sensitive:Bearer {ALICE_TOKEN}")
    );

    let req = get_req("/seen")
        .header("x-api-key", SVC_KEY)
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer.clone(), req).await;
    assert_eq!(seen["x-api-key"], format!("sensitive:{SVC_KEY}"));

    let req = get_req("/seen")
        .header(COOKIE, format!("session={ALICE_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer, req).await;
    assert_eq!(seen["cookie"], format!("sensitive:session={ALICE_TOKEN}"));
}

#[tokio::test]
async fn credential_headers_are_marked_sensitive_even_for_anonymous_requests() {
    // Optional mode with another scheme in Authorization: no credential of ours, but the
    // header is still one the layer reads.
    let layer = AuthenticateLayer::new(bearer()).optional();
    let req = get_req("/seen")
        .header(AUTHORIZATION, "Basic YWxpY2U6cGFzcw==")
        .body(Body::empty())
        .unwrap();
    let seen = seen_by_handler(layer, req).await;
    assert_eq!(seen["authorization"], "sensitive:Basic YWxpY2U6cGFzcw==");
}

#[tokio::test]
async fn query_parameter_credential_works_and_the_response_is_cache_private() {
    let query = StaticAuthenticator::new(CredentialExtractor::new([CredentialSource::query(
        "api_key",
    )
    .unwrap()]))
    .with_token(SVC_KEY, svc());
    let layer = AuthenticateLayer::new(query);

    let res = send(app(layer.clone()), bare(&format!("/me?api_key={SVC_KEY}"))).await;
    assert_eq!(header(&res, "cache-control"), Some("private"));
    assert_eq!(ok_body(res).await, "svc");

    // Percent-encoded values are decoded before the lookup.
    let res = send(app(layer.clone()), bare("/me?api_key=cf%5Fsvc-api-key")).await;
    assert_eq!(ok_body(res).await, "svc");

    let res = send(app(layer.clone()), bare("/me")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [API_KEY_PLAIN]);

    let res = send(app(layer.clone()), bare(&format!("/me?api_key={UNKNOWN}"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"ApiKey realm="api", error="invalid_token""#]
    );

    let res = send(app(layer), bare("/me?api_key=a&api_key=b")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_kind(&res), Some(ErrorKind::DuplicateCredential));
}

#[tokio::test]
async fn responses_to_header_credentials_are_not_marked_cache_private() {
    let res = send(bearer_app(), with_bearer("/me", ALICE_TOKEN)).await;
    assert!(res.headers().get(CACHE_CONTROL).is_none());
}

#[tokio::test]
async fn cookie_credential_authenticates() {
    let cookie = StaticAuthenticator::new(CredentialExtractor::new([CredentialSource::cookie(
        "session",
    )
    .unwrap()]))
    .with_token(ALICE_TOKEN, alice());
    let layer = AuthenticateLayer::new(cookie);
    let req = get_req("/me")
        .header(COOKIE, format!("a=1; session={ALICE_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let res = send(app(layer.clone()), req).await;
    assert_eq!(ok_body(res).await, "alice");

    let req = get_req("/me")
        .header(COOKIE, "session=x")
        .header(COOKIE, "session=y")
        .body(Body::empty())
        .unwrap();
    let res = send(app(layer), req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        challenges(&res),
        [r#"ApiKey realm="api", error="invalid_request""#]
    );
    assert_eq!(error_kind(&res), Some(ErrorKind::DuplicateCredential));
}

// ---------------------------------------------------------------------------------------------
// CORS preflight.
// ---------------------------------------------------------------------------------------------

fn preflight_request() -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/cors")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_preflight_passes_without_credential_when_allowed() {
    let layer = AuthenticateLayer::new(bearer()).allow_cors_preflight(true);
    let res = send(app(layer.clone()), preflight_request()).await;
    assert_eq!(ok_body(res).await, "no principal");
    assert_eq!(layer.stats().preflight(), 1);
    assert_eq!(layer.stats().rejected_total(), 0);

    // The route itself is still protected.
    let res = send(app(layer), bare("/cors")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_preflight_is_authenticated_like_any_request_by_default() {
    let res = send(bearer_app(), preflight_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [BEARER_PLAIN]);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
}

#[tokio::test]
async fn options_without_preflight_headers_is_not_a_preflight() {
    let layer = AuthenticateLayer::new(bearer()).allow_cors_preflight(true);
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/cors")
        .header("origin", "https://app.example")
        .body(Body::empty())
        .unwrap();
    let res = send(app(layer), req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Statistics.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stats_count_outcomes_by_kind() {
    let layer = AuthenticateLayer::new(key_or_bearer());
    let requests = [
        with_bearer("/me", ALICE_TOKEN),
        with_bearer("/me", ALICE_TOKEN),
        bare("/me"),
        with_bearer("/me", UNKNOWN),
        with_bearer("/me", "a b"),
        get_req("/me")
            .header("x-api-key", SVC_KEY)
            .header(AUTHORIZATION, bearer_header(ALICE_TOKEN))
            .body(Body::empty())
            .unwrap(),
    ];
    for req in requests {
        let _ = send(app(layer.clone()), req).await;
    }
    let stats = layer.stats();
    assert_eq!(stats.authenticated(), 2);
    assert_eq!(stats.anonymous(), 0);
    assert_eq!(stats.rejected(ErrorKind::MissingCredential), 1);
    assert_eq!(stats.rejected(ErrorKind::UnknownCredential), 1);
    assert_eq!(stats.rejected(ErrorKind::MalformedCredential), 1);
    assert_eq!(stats.rejected(ErrorKind::ConflictingCredentials), 1);
    assert_eq!(stats.rejected(ErrorKind::StoreUnavailable), 0);
    assert_eq!(stats.rejected_total(), 4);
    assert_eq!(
        stats.rejections().collect::<Vec<_>>(),
        [
            (ErrorKind::MalformedCredential, 1),
            (ErrorKind::ConflictingCredentials, 1),
            (ErrorKind::MissingCredential, 1),
            (ErrorKind::UnknownCredential, 1),
        ]
    );
}

#[tokio::test]
async fn stats_are_shared_by_the_layer_and_every_service_it_built() {
    let layer = AuthenticateLayer::new(bearer());
    let service = Authenticate::new(Router::new().route("/me", get(whoami)), bearer());
    // A service built by `Authenticate::new` has counters of its own.
    let _ = send(service.clone(), with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(service.stats().authenticated(), 1);
    assert_eq!(layer.stats().authenticated(), 0);

    let layered = tower::Layer::layer(&layer, Router::new().route("/me", get(whoami)));
    let _ = send(layered.clone(), with_bearer("/me", ALICE_TOKEN)).await;
    let _ = send(app(layer.clone()), bare("/me")).await;
    assert_eq!(layered.stats(), layer.stats());
    assert_eq!(layer.stats().authenticated(), 1);
    assert_eq!(layer.stats().rejected(ErrorKind::MissingCredential), 1);
}

// ---------------------------------------------------------------------------------------------
// The whole router behind the layer, and compile-time guarantees.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_layer_wraps_a_whole_router_as_a_service() {
    let router = Router::new().route("/me", get(whoami));
    let service = tower::ServiceBuilder::new()
        .layer(AuthenticateLayer::new(bearer()))
        .service(router);
    let res = send(service.clone(), with_bearer("/me", ALICE_TOKEN)).await;
    assert_eq!(ok_body(res).await, "alice");
    let res = send(service, bare("/me")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_clone<T: Clone>() {}

#[test]
fn futures_services_and_principals_cross_threads() {
    type RouterFuture = ResponseFuture<Router, StaticAuthenticator, DefaultResponder, Body, Body>;
    assert_send::<RouterFuture>();
    assert_send::<
        ResponseFuture<
            axum::routing::Route,
            credentialflow::authn::Or<StaticAuthenticator, StaticAuthenticator>,
            ProblemJson,
            Body,
            Body,
        >,
    >();
    assert_send::<Authenticate<Router, StaticAuthenticator>>();
    assert_sync::<Authenticate<Router, StaticAuthenticator>>();
    assert_clone::<Authenticate<Router, StaticAuthenticator>>();
    assert_send::<AuthenticateLayer<StaticAuthenticator>>();
    assert_sync::<AuthenticateLayer<StaticAuthenticator>>();
    assert_send::<Principal>();
    assert_sync::<Principal>();
    assert_send::<Error>();
    assert_sync::<Error>();
}

#[cfg(feature = "tokio")]
#[test]
fn timeout_futures_are_send() {
    type Timed = credentialflow::authn::Timeout<StaticAuthenticator>;
    assert_send::<ResponseFuture<Router, Timed, DefaultResponder, Body, Body>>();
}

#[tokio::test]
async fn anonymous_principal_is_the_shared_anonymous_kind() {
    async fn inspect(request: AxumRequest) -> String {
        let p = request.extensions().get::<Principal>().unwrap();
        format!("{}:{}:{}", p.subject(), p.kind(), p.is_anonymous())
    }
    let app = Router::new()
        .route("/inspect", get(inspect))
        .layer(AuthenticateLayer::new(bearer()).optional());
    let res = send(app, bare("/inspect")).await;
    assert_eq!(ok_body(res).await, "anonymous:anonymous:true");
}

/// Polls `fut` once with a no-op waker.
fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test]
async fn a_response_future_polled_after_it_finished_stays_pending() {
    use tower::{Layer, Service};
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(()))
    });
    // A rejection, and an allow through an authenticator that waits (the `Verifying` state).
    for (auth, token) in [
        (StaticAuthenticator::bearer(), None),
        (
            StaticAuthenticator::bearer()
                .with_token("t0k", principal("alice").build())
                .deferred(),
            Some("Bearer t0k"),
        ),
    ] {
        let mut svc = AuthenticateLayer::new(auth).layer(inner);
        let mut req = Request::get("/");
        if let Some(token) = token {
            req = req.header(AUTHORIZATION, token);
        }
        let mut fut = Box::pin(svc.call(req.body(()).unwrap()));
        let first = loop {
            if let std::task::Poll::Ready(res) = poll_once(&mut fut) {
                break res.unwrap();
            }
            tokio::task::yield_now().await;
        };
        assert!(first.status().is_success() || first.status() == StatusCode::UNAUTHORIZED);
        assert!(poll_once(&mut fut).is_pending());
        assert!(poll_once(&mut fut).is_pending());
    }
}

// ---------------------------------------------------------------------------------------------
// A refused request's maps become its response's: nothing of the request may stay in them.
// ---------------------------------------------------------------------------------------------

/// An extension a layer in front of authentication might have put into the request.
#[derive(Clone, Debug)]
struct FromTheRequest;

#[tokio::test]
async fn a_refused_request_leaves_no_header_or_extension_in_its_response() {
    async fn never(_: Request<Body>) -> Result<Response<Body>, std::convert::Infallible> {
        panic!("a refused request never reaches the inner service")
    }
    let request = |grpc: bool, extra_headers: usize| {
        let mut builder = get_req("/me")
            .header(AUTHORIZATION, bearer_header(UNKNOWN))
            .header(COOKIE, "session=hunter2-session-secret")
            .header("x-request-secret", "hunter2-header-secret");
        for i in 0..extra_headers {
            builder = builder.header(format!("x-filler-{i}"), "filler");
        }
        if grpc {
            builder = builder.header(CONTENT_TYPE, "application/grpc");
        }
        let mut req = builder.body(Body::empty()).unwrap();
        req.extensions_mut().insert(FromTheRequest);
        req
    };
    let expected_headers = |grpc: bool, problem: bool| -> Vec<&'static str> {
        match (grpc, problem) {
            (true, _) => vec!["content-type", "grpc-message", "grpc-status"],
            (false, false) => vec!["www-authenticate"],
            (false, true) => vec!["content-type", "www-authenticate"],
        }
    };
    // Few headers (scanned) and many (probed by hash); HTTP and gRPC; both built-in responders.
    for extra_headers in [0, 20] {
        for grpc in [false, true] {
            for problem in [false, true] {
                let res: Response<Body> = if problem {
                    let layer = AuthenticateLayer::new(bearer()).responder(ProblemJson);
                    send(
                        tower::Layer::layer(&layer, tower::service_fn(never)),
                        request(grpc, extra_headers),
                    )
                    .await
                } else {
                    let layer = AuthenticateLayer::new(bearer());
                    send(
                        tower::Layer::layer(&layer, tower::service_fn(never)),
                        request(grpc, extra_headers),
                    )
                    .await
                };
                let case = format!("grpc={grpc} problem={problem} extra={extra_headers}");
                let mut names: Vec<&str> = res.headers().keys().map(|n| n.as_str()).collect();
                names.sort_unstable();
                assert_eq!(names, expected_headers(grpc, problem), "{case}");
                let dump = format!("{:?}", res.headers());
                assert!(!dump.contains("hunter2"), "{case}: {dump}");
                assert!(res.extensions().get::<FromTheRequest>().is_none(), "{case}");
                assert_eq!(res.extensions().len(), 1, "{case}: only the error");
                assert_eq!(
                    error_kind(&res),
                    Some(ErrorKind::UnknownCredential),
                    "{case}"
                );
            }
        }
    }
}
