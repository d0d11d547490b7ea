//! Whatever a client sends in `Authorization`, `X-API-Key`, `Cookie` or the query string, the whole
//! layer never panics and answers 200, 400 or 401 (never 5xx with a healthy authenticator); and
//! every valid token, however it is sent, reaches the authenticator unchanged.
#![cfg(all(feature = "test-util", feature = "axum"))]

mod support;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use credentialflow::authn::{AuthenticateLayer, Authenticator, AuthenticatorExt};
use credentialflow::extract::{CredentialExtractor, CredentialSource};
use credentialflow::test_support::{StaticAuthenticator, principal};
use credentialflow::{Error, Principal};
use http::header::{AUTHORIZATION, COOKIE, HeaderValue};
use http::{Request, StatusCode, Uri};
use proptest::prelude::*;

use support::*;

async fn maybe(principal: Option<Principal>) -> String {
    principal.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
}

async fn whoami(principal: Principal) -> String {
    principal.subject().to_owned()
}

fn query_source() -> CredentialSource {
    CredentialSource::query("api_key").unwrap()
}

fn cookie_source() -> CredentialSource {
    CredentialSource::cookie("session").unwrap()
}

/// Every source, each knowing `token` (or the usual tokens), answering as `adjust` says.
fn every_source(
    token: &str,
    adjust: impl Fn(StaticAuthenticator) -> StaticAuthenticator,
) -> impl Authenticator {
    let known = |a: StaticAuthenticator, who: &str| {
        adjust(
            a.with_token(token, principal(who).build())
                .with_token(ALICE_TOKEN, alice())
                .with_token(SVC_KEY, svc()),
        )
    };
    known(StaticAuthenticator::bearer(), "bearer")
        .or(known(StaticAuthenticator::api_key_header(), "header"))
        .or(known(
            StaticAuthenticator::new(CredentialExtractor::new([query_source()])),
            "query",
        ))
        .or(known(
            StaticAuthenticator::new(CredentialExtractor::new([cookie_source()])),
            "cookie",
        ))
}

fn app(mode: u8, deferred: bool, token: &str) -> Router {
    let adjust = move |a: StaticAuthenticator| if deferred { a.deferred() } else { a };
    let layer = AuthenticateLayer::new(every_source(token, adjust));
    let layer = match mode {
        0 => layer,
        1 => layer.optional(),
        _ => layer.dangerous_invalid_as_anonymous(),
    };
    Router::new()
        .route("/maybe", get(maybe))
        .route("/me", get(whoami))
        .layer(layer)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Keeps only bytes a `HeaderValue` can hold (visible ASCII, space, tab, obs-text).
fn header_value(mut bytes: Vec<u8>) -> HeaderValue {
    bytes.retain(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    HeaderValue::from_bytes(&bytes).expect("filtered to valid header bytes")
}

/// A query string from arbitrary bytes: URI-safe bytes kept (including raw `%`, `&`, `=` and
/// `+`, so that bad escapes and repeated parameters occur), the rest percent-encoded.
fn query_string(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Header values that are arbitrary, or close to something the parsers look for.
fn credential_header(prefixes: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<u8>>> {
    let near = (proptest::sample::select(prefixes), bytes(40)).prop_map(|(prefix, rest)| {
        let mut v = prefix.as_bytes().to_vec();
        v.extend(rest);
        v
    });
    prop_oneof![
        2 => Just(None),
        3 => bytes(120).prop_map(Some),
        3 => near.prop_map(Some),
        1 => proptest::sample::select(vec![ALICE_TOKEN, SVC_KEY, UNKNOWN])
            .prop_map(|t| Some(t.as_bytes().to_vec())),
    ]
}

fn query() -> impl Strategy<Value = Option<Vec<u8>>> {
    let near = (
        proptest::sample::select(vec![
            "api_key=",
            "a=1&api_key=",
            "api_key=x&api_key=",
            "api_key",
        ]),
        bytes(40),
    )
        .prop_map(|(prefix, rest)| {
            let mut v = prefix.as_bytes().to_vec();
            v.extend(rest);
            v
        });
    prop_oneof![
        2 => Just(None),
        3 => bytes(120).prop_map(Some),
        3 => near.prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
struct Arbitrary {
    authorization: Vec<Option<Vec<u8>>>,
    api_key: Option<Vec<u8>>,
    cookie: Option<Vec<u8>>,
    query: Option<Vec<u8>>,
    mode: u8,
    deferred: bool,
    route: &'static str,
}

fn arbitrary_request() -> impl Strategy<Value = Arbitrary> {
    (
        proptest::collection::vec(
            credential_header(&["Bearer ", "bearer", "BEARER  ", "Basic ", "Bearer a="]),
            0..3,
        ),
        credential_header(&["", "cf_", "\"", "a b"]),
        credential_header(&["session=", "a=1; session=", "session=\"", "session"]),
        query(),
        0u8..3,
        any::<bool>(),
        proptest::sample::select(vec!["/maybe", "/me"]),
    )
        .prop_map(
            |(authorization, api_key, cookie, query, mode, deferred, route)| Arbitrary {
                authorization,
                api_key,
                cookie,
                query,
                mode,
                deferred,
                route,
            },
        )
}

#[test]
fn arbitrary_credentials_never_panic_and_never_give_5xx() {
    let rt = runtime();
    proptest!(|(input in arbitrary_request())| {
        let uri = match &input.query {
            Some(q) => format!("{}?{}", input.route, query_string(q)),
            None => input.route.to_owned(),
        };
        let uri: Uri = uri.parse().expect("percent-encoded query parses");
        let mut req = Request::get(uri).body(Body::empty()).unwrap();
        let headers = req.headers_mut();
        for value in input.authorization.iter().flatten() {
            headers.append(AUTHORIZATION, header_value(value.clone()));
        }
        if let Some(v) = &input.api_key {
            headers.append("x-api-key", header_value(v.clone()));
        }
        if let Some(v) = &input.cookie {
            headers.append(COOKIE, header_value(v.clone()));
        }

        let res = rt.block_on(send(app(input.mode, input.deferred, UNKNOWN), req));
        let status = res.status();
        prop_assert!(
            [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(&status),
            "status {status}"
        );
        match status {
            StatusCode::OK => prop_assert!(res.extensions().get::<Error>().is_none()),
            _ => {
                // Every refusal carries at least one challenge, and records a reason whose
                // status is the response's.
                prop_assert!(!challenges(&res).is_empty());
                let error = res.extensions().get::<Error>().expect("reason recorded");
                prop_assert_eq!(error.kind().status(), status);
            }
        }
        if input.mode == 0 && input.route == "/maybe" && status == StatusCode::OK {
            let body = rt.block_on(body_string(res.into_body()));
            prop_assert_ne!(body, "anonymous");
        }
    });
}

/// `b64token`, the RFC 6750 §2.1 syntax.
const B64TOKEN: &str = "[A-Za-z0-9._~+/-]{1,64}={0,2}";

#[test]
fn valid_tokens_round_trip_through_the_layer_however_they_are_sent() {
    let rt = runtime();
    proptest!(|(
        token in B64TOKEN,
        scheme in "(?i)bearer",
        spaces in 1usize..4,
        deferred in any::<bool>(),
    )| {
        let app = app(0, deferred, &token);
        let encoded: String = token.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        let requests = [
            ("bearer", Request::get("/me").header(AUTHORIZATION, format!("{scheme}{}{token}", " ".repeat(spaces)))),
            ("header", Request::get("/me").header("x-api-key", token.as_str())),
            ("query", Request::get(format!("/me?api_key={encoded}"))),
            ("cookie", Request::get("/me").header(COOKIE, format!("other=1; session={token}"))),
        ];
        for (expected, builder) in requests {
            let res = rt.block_on(send(app.clone(), builder.body(Body::empty()).unwrap()));
            prop_assert_eq!(res.status(), StatusCode::OK, "{}", expected);
            let body = rt.block_on(body_string(res.into_body()));
            prop_assert_eq!(body, expected);
        }
    });
}
