//! Shared setup for the integration tests: principals, authenticators, request helpers and
//! response inspectors.
//!
//! Each test file uses only part of this module.
#![allow(dead_code)]

use std::convert::Infallible;

use credentialflow::test_support::{StaticAuthenticator, principal};
use credentialflow::{Error, ErrorKind, Principal};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

/// The bearer token `alice` authenticates with.
pub const ALICE_TOKEN: &str = "alice-bearer-token";
/// The API key the `svc` service account authenticates with.
pub const SVC_KEY: &str = "cf_svc-api-key";
/// A syntactically valid credential no authenticator knows.
pub const UNKNOWN: &str = "not-a-known-token";

/// `alice`, kind `test`, credential id `test:alice`.
pub fn alice() -> Principal {
    principal("alice").build()
}

/// `svc`, kind `test`, credential id `test:svc`.
pub fn svc() -> Principal {
    principal("svc").build()
}

/// Reads `Authorization: Bearer`; knows [`ALICE_TOKEN`].
pub fn bearer() -> StaticAuthenticator {
    StaticAuthenticator::bearer().with_token(ALICE_TOKEN, alice())
}

/// Reads `X-API-Key`; knows [`SVC_KEY`].
pub fn api_key() -> StaticAuthenticator {
    StaticAuthenticator::api_key_header().with_token(SVC_KEY, svc())
}

/// `Bearer <token>`.
pub fn bearer_header(token: &str) -> String {
    format!("Bearer {token}")
}

/// Sends one request through a fresh clone of `service`, as a server would.
pub async fn send<S, B, ResBody>(service: S, request: Request<B>) -> Response<ResBody>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>,
{
    match service.oneshot(request).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

/// Every `WWW-Authenticate` field, in order.
pub fn challenges<B>(res: &Response<B>) -> Vec<String> {
    res.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("challenge is ASCII").to_owned())
        .collect()
}

/// The `Retry-After` value, if any.
pub fn retry_after<B>(res: &Response<B>) -> Option<String> {
    res.headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().expect("ASCII").to_owned())
}

/// A header's value as a string, if present.
pub fn header<'a, B>(res: &'a Response<B>, name: &str) -> Option<&'a str> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

/// The kind of the [`Error`] the layer recorded in the response's extensions.
pub fn error_kind<B>(res: &Response<B>) -> Option<ErrorKind> {
    res.extensions().get::<Error>().map(Error::kind)
}

/// Collects a body into a string.
pub async fn body_string<B>(body: B) -> String
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}
