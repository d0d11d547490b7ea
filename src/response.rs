//! Turning a rejection into a response: RFC 6750 challenges, gRPC status, RFC 9457 bodies.
//!
//! A stage that refuses a request hands a [`Rejection`] to a [`Responder`]. Two are built in:
//!
//! - [`DefaultResponder`]: an empty body (any body type that is `Default`), the status, the
//!   `WWW-Authenticate` challenges and `Retry-After`. For gRPC requests (`content-type:
//!   application/grpc…`) it answers as gRPC does: HTTP 200, a trailers-only response with
//!   `grpc-status` and a percent-encoded `grpc-message`.
//! - [`ProblemJson`]: the same headers plus an RFC 9457 `application/problem+json` body, for
//!   body types that can be built from [`Bytes`].
//!
//! | Situation | HTTP | Challenge | gRPC |
//! |---|---|---|---|
//! | no credential | 401 | `Bearer realm="api"` | 16 |
//! | bad credential | 401 | `Bearer realm="api", error="invalid_token"` | 16 |
//! | malformed, duplicated, two methods | 400 | `…, error="invalid_request"` | 3 |
//! | scope missing | 403 | `…, error="insufficient_scope", scope="…"` | 7 |
//! | role or policy | 403 | none | 7 |
//! | rate limited | 429 | `Retry-After` | 8 |
//! | store unavailable | 503 | `Retry-After` | 14 |
//!
//! A route that accepts several schemes (an API key in `X-API-Key` or a bearer token) gets one
//! challenge per scheme, one header field each, in the order the route tries them; only the
//! scheme whose credential failed carries `error`. API keys outside `Authorization` use the
//! scheme name `ApiKey` (no scheme is registered for them; Kong uses `Key`).
//!
//! No response ever contains the credential or says which check failed; the precise reason is in
//! the [`Error`] the layer puts into the response's extensions.

use std::fmt::{self, Write as _};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CONTENT_TYPE, Entry, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::error::{BearerError, ConfigError, Error, ErrorKind};

/// How long a client is told to wait after a `503` when the failing stage gave no estimate.
pub const DEFAULT_UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An HTTP authentication scheme named in a `WWW-Authenticate` challenge.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scheme(&'static str);

impl Scheme {
    /// `Bearer` (RFC 6750): tokens in `Authorization: Bearer …` (and the `access_token` query
    /// parameter, when enabled).
    pub const BEARER: Scheme = Scheme("Bearer");
    /// `ApiKey`: API keys sent outside `Authorization` (a header such as `X-API-Key`, a query
    /// parameter, a cookie). Not a registered scheme; documented here so clients can rely on it.
    pub const API_KEY: Scheme = Scheme("ApiKey");

    /// A scheme of your own, such as `Basic` or `DPoP`.
    ///
    /// # Errors
    ///
    /// When `name` is empty or not an RFC 9110 `token`.
    pub fn custom(name: &'static str) -> Result<Self, ConfigError> {
        if !name.is_empty() && name.bytes().all(is_tchar) {
            Ok(Self(name))
        } else {
            Err(ConfigError::new(format!(
                "authentication scheme {name:?} is not an RFC 9110 token"
            )))
        }
    }

    /// The scheme name.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6750 §3: `realm`, `error` and `error_description` values use only
/// %x20-21 / %x23-5B / %x5D-7E: printable ASCII without `"` and `\`.
fn is_param_char(b: u8) -> bool {
    matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// RFC 6750 §3 `scope-token` characters: %x21 / %x23-5B / %x5D-7E.
fn is_scope_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// The challenges a route answers `401` with: a realm and the schemes it accepts, in order.
///
/// Every header value is built once, when the layer is built. The `Authenticate` layer puts its
/// `Challenges` into the request's extensions so that later stages (authorization, the
/// `Principal` extractor) challenge exactly as it does; it leaves them out when they are the
/// default (`Bearer realm="api"`), which is what later stages assume when none are present.
#[derive(Clone)]
pub struct Challenges {
    inner: Arc<ChallengesInner>,
}

struct ChallengesInner {
    realm: Box<str>,
    describe: bool,
    schemes: Box<[Scheme]>,
    plain: Box<[Challenge]>,
    invalid_request: Box<[Challenge]>,
    invalid_token: Box<[Challenge]>,
}

/// One `WWW-Authenticate` value: one of the default realm's, made from a constant at each use,
/// or one built for this configuration and cloned.
///
/// A constant costs a few stores. A clone of a header value calls through its buffer's vtable
/// (and, for a value built at run time, bumps a reference count every core shares), and
/// reading back what that call wrote stalls the copy that follows.
#[derive(Clone)]
enum Challenge {
    Known(u8),
    Built(HeaderValue),
}

impl Challenge {
    #[inline]
    fn value(&self) -> HeaderValue {
        match self {
            Self::Known(i) => known_challenge(*i),
            Self::Built(value) => value.clone(),
        }
    }
}

/// The challenges of the default realm (`KNOWN_CHALLENGES`), as constants.
#[inline]
fn known_challenge(i: u8) -> HeaderValue {
    const BEARER: HeaderValue = HeaderValue::from_static(KNOWN_CHALLENGES[0]);
    const BEARER_INVALID_REQUEST: HeaderValue = HeaderValue::from_static(KNOWN_CHALLENGES[1]);
    const BEARER_INVALID_TOKEN: HeaderValue = HeaderValue::from_static(KNOWN_CHALLENGES[2]);
    const API_KEY: HeaderValue = HeaderValue::from_static(KNOWN_CHALLENGES[3]);
    const API_KEY_INVALID_REQUEST: HeaderValue = HeaderValue::from_static(KNOWN_CHALLENGES[4]);
    const API_KEY_INVALID_TOKEN: HeaderValue = HeaderValue::from_static(KNOWN_CHALLENGES[5]);
    match i {
        0 => BEARER,
        1 => BEARER_INVALID_REQUEST,
        2 => BEARER_INVALID_TOKEN,
        3 => API_KEY,
        4 => API_KEY_INVALID_REQUEST,
        _ => API_KEY_INVALID_TOKEN,
    }
}

/// `Bearer realm="api"`, spelled out so that building it cannot fail (a test checks it equals
/// what `Challenges::new("api", &[Scheme::BEARER], false)` builds).
static DEFAULT_CHALLENGES: LazyLock<Challenges> = LazyLock::new(|| Challenges {
    inner: Arc::new(ChallengesInner {
        realm: "api".into(),
        describe: false,
        schemes: Box::new([Scheme::BEARER]),
        plain: Box::new([Challenge::Known(0)]),
        invalid_request: Box::new([Challenge::Known(1)]),
        invalid_token: Box::new([Challenge::Known(2)]),
    }),
});

/// The challenges of the default realm: made from constants at each use (see [`Challenge`]).
const KNOWN_CHALLENGES: [&str; 6] = [
    "Bearer realm=\"api\"",
    "Bearer realm=\"api\", error=\"invalid_request\"",
    "Bearer realm=\"api\", error=\"invalid_token\"",
    "ApiKey realm=\"api\"",
    "ApiKey realm=\"api\", error=\"invalid_request\"",
    "ApiKey realm=\"api\", error=\"invalid_token\"",
];

fn known_index(value: &str) -> Option<u8> {
    KNOWN_CHALLENGES
        .iter()
        .position(|known| *known == value)
        .and_then(|i| u8::try_from(i).ok())
}

impl Challenges {
    /// Challenges for `schemes` (duplicates dropped, order kept) in `realm`.
    ///
    /// `describe` adds a generic `error_description` to challenges that carry an `error`.
    ///
    /// # Errors
    ///
    /// When `realm` is empty or holds a character RFC 6750 §3 does not allow (`"`, `\`,
    /// non-ASCII, control characters), or when no scheme is given.
    pub fn new(realm: &str, schemes: &[Scheme], describe: bool) -> Result<Self, ConfigError> {
        Self::build(realm, schemes, describe)
    }

    fn build(realm: &str, schemes: &[Scheme], describe: bool) -> Result<Self, ConfigError> {
        if realm.is_empty() || !realm.bytes().all(is_param_char) {
            return Err(ConfigError::new(
                "realm must be non-empty printable ASCII without '\"' or '\\' (RFC 6750 §3)",
            ));
        }
        let mut unique: Vec<Scheme> = Vec::with_capacity(schemes.len());
        for s in schemes {
            if !unique.contains(s) {
                unique.push(*s);
            }
        }
        if unique.is_empty() {
            return Err(ConfigError::new("a route must accept at least one scheme"));
        }
        let value = |scheme: &Scheme, error: Option<BearerError>| {
            let mut v = format!("{scheme} realm=\"{realm}\"");
            if let Some(error) = error {
                let _ = write!(v, ", error=\"{error}\"");
                if describe {
                    let _ = write!(v, ", error_description=\"{}\"", description(error));
                }
            }
            match known_index(&v) {
                Some(known) => Ok(Challenge::Known(known)),
                None => HeaderValue::from_str(&v)
                    .map(Challenge::Built)
                    .map_err(|_| ConfigError::new("challenge is not a valid header value")),
            }
        };
        let per_scheme = |error: Option<BearerError>| {
            unique
                .iter()
                .map(|s| value(s, error))
                .collect::<Result<Box<[_]>, _>>()
        };
        Ok(Self {
            inner: Arc::new(ChallengesInner {
                realm: realm.into(),
                describe,
                plain: per_scheme(None)?,
                invalid_request: per_scheme(Some(BearerError::InvalidRequest))?,
                invalid_token: per_scheme(Some(BearerError::InvalidToken))?,
                schemes: unique.into_boxed_slice(),
            }),
        })
    }

    /// `true` when these are the [default](Self::default_bearer) challenges.
    #[must_use]
    pub fn is_default(&self) -> bool {
        let d = &*DEFAULT_CHALLENGES.inner;
        let me = &*self.inner;
        Arc::ptr_eq(&self.inner, &DEFAULT_CHALLENGES.inner)
            || (me.realm == d.realm && me.describe == d.describe && me.schemes == d.schemes)
    }

    /// The challenges used where no `Authenticate` layer said otherwise: `Bearer realm="api"`.
    #[must_use]
    pub fn default_bearer() -> Self {
        DEFAULT_CHALLENGES.clone()
    }

    /// The realm.
    #[must_use]
    pub fn realm(&self) -> &str {
        &self.inner.realm
    }

    /// The schemes, in the order the route tries them.
    #[must_use]
    pub fn schemes(&self) -> &[Scheme] {
        &self.inner.schemes
    }

    /// Appends the `WWW-Authenticate` fields that answer `error`, one per scheme for 400 and
    /// 401, one for `insufficient_scope`, none otherwise.
    pub fn append_to(&self, error: &Error, headers: &mut HeaderMap) {
        let inner = &*self.inner;
        let kind = error.kind();
        let failed = error
            .scheme()
            .and_then(|s| inner.schemes.iter().position(|x| x == s))
            .unwrap_or(0);
        match (kind.status().as_u16(), kind.bearer_error()) {
            (400 | 401, bearer) => {
                let errored = match bearer {
                    Some(BearerError::InvalidRequest) => Some(&inner.invalid_request),
                    Some(BearerError::InvalidToken) => Some(&inner.invalid_token),
                    _ => None,
                };
                let mut values = inner.plain.iter().enumerate().map(|(i, plain)| {
                    match errored {
                        Some(values) if i == failed => &values[i],
                        _ => plain,
                    }
                    .value()
                });
                let Some(first) = values.next() else { return };
                // One hash of the name for all the challenges.
                let mut field = match headers.entry(WWW_AUTHENTICATE) {
                    Entry::Occupied(mut field) => {
                        field.append(first);
                        field
                    }
                    Entry::Vacant(field) => field.insert_entry(first),
                };
                for value in values {
                    field.append(value);
                }
            }
            (_, Some(BearerError::InsufficientScope)) => {
                let scheme = inner.schemes.get(failed).copied().unwrap_or(Scheme::BEARER);
                let mut v = format!(
                    "{scheme} realm=\"{}\", error=\"insufficient_scope\"",
                    inner.realm
                );
                if inner.describe {
                    let _ = write!(
                        v,
                        ", error_description=\"{}\"",
                        description(BearerError::InsufficientScope)
                    );
                }
                if let Some(scope) = error.required_scope() {
                    let scope = sanitize_scope(scope);
                    if !scope.is_empty() {
                        let _ = write!(v, ", scope=\"{scope}\"");
                    }
                }
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.append(WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
    }
}

impl Default for Challenges {
    fn default() -> Self {
        Self::default_bearer()
    }
}

impl fmt::Debug for Challenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenges")
            .field("realm", &self.inner.realm)
            .field("schemes", &self.inner.schemes)
            .field("describe", &self.inner.describe)
            .finish()
    }
}

fn description(error: BearerError) -> &'static str {
    match error {
        BearerError::InvalidRequest => "The request is malformed.",
        BearerError::InvalidToken => "The credential is invalid.",
        BearerError::InsufficientScope => "The credential lacks a required scope.",
    }
}

/// Keeps only RFC 6750 `scope-token` characters, single-space separated.
fn sanitize_scope(scope: &str) -> String {
    let mut out = String::with_capacity(scope.len());
    for token in scope.split(' ') {
        let clean: String = token
            .chars()
            .filter(|c| c.is_ascii() && is_scope_char(*c as u8))
            .collect();
        if !clean.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&clean);
        }
    }
    out
}

/// Everything a [`Responder`] needs to answer one refused request.
#[derive(Debug)]
pub struct Rejection<'a> {
    error: &'a Error,
    challenges: &'a Challenges,
    grpc: bool,
}

impl<'a> Rejection<'a> {
    /// A rejection of a request whose headers were `request_headers`; those decide whether it is
    /// answered as gRPC.
    #[must_use]
    pub fn new(error: &'a Error, challenges: &'a Challenges, request_headers: &HeaderMap) -> Self {
        Self {
            error,
            challenges,
            grpc: is_grpc(request_headers),
        }
    }

    /// A response with `body` and the headers of `headers` (empty: see
    /// [`Responder::respond_in`]).
    #[inline]
    fn response_in<B>(body: B, headers: HeaderMap) -> Response<B> {
        let mut res = Response::new(body);
        *res.headers_mut() = headers;
        res
    }

    /// Why the request was refused.
    #[must_use]
    pub fn error(&self) -> &'a Error {
        self.error
    }

    /// The route's challenges.
    #[must_use]
    pub fn challenges(&self) -> &'a Challenges {
        self.challenges
    }

    /// `true` when the request was gRPC (`content-type: application/grpc…`).
    #[must_use]
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The HTTP status for a plain HTTP answer.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.error.kind().status()
    }

    /// Appends the standard headers of an HTTP answer: `WWW-Authenticate` challenges and
    /// `Retry-After` (429, 503).
    pub fn append_headers(&self, headers: &mut HeaderMap) {
        self.challenges.append_to(self.error, headers);
        let kind = self.error.kind();
        let retry = match (self.error.retry_after(), kind) {
            (Some(after), k) if k == ErrorKind::RateLimited || k.is_unavailable() => Some(after),
            (None, k) if k.is_unavailable() => Some(DEFAULT_UNAVAILABLE_RETRY_AFTER),
            _ => None,
        };
        if let Some(after) = retry {
            headers.insert(RETRY_AFTER, retry_after_value(after));
        }
    }

    /// A complete HTTP answer with an empty body.
    #[must_use]
    #[inline]
    pub fn http_response<B: Default>(&self) -> Response<B> {
        self.http_response_in(HeaderMap::new())
    }

    /// [`http_response`](Self::http_response) in `headers`.
    #[inline]
    fn http_response_in<B: Default>(&self, headers: HeaderMap) -> Response<B> {
        let mut res = Self::response_in(B::default(), headers);
        *res.status_mut() = self.status();
        self.append_headers(res.headers_mut());
        res
    }

    /// A complete gRPC answer: HTTP 200, trailers-only, `grpc-status` and `grpc-message`.
    #[must_use]
    pub fn grpc_response<B: Default>(&self) -> Response<B> {
        self.grpc_response_in(HeaderMap::new())
    }

    /// [`grpc_response`](Self::grpc_response) in `headers`.
    fn grpc_response_in<B: Default>(&self, headers: HeaderMap) -> Response<B> {
        let kind = self.error.kind();
        let mut res = Self::response_in(B::default(), headers);
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS, grpc_status_value(kind.grpc_code()));
        headers.insert(
            GRPC_MESSAGE,
            HeaderValue::from_static(grpc_message(kind.status())),
        );
        if kind == ErrorKind::RateLimited || kind.is_unavailable() {
            // gRPC has no Retry-After; clients that honour pushback read this (gRFC A6).
            let after = self
                .error
                .retry_after()
                .unwrap_or(DEFAULT_UNAVAILABLE_RETRY_AFTER);
            if let Ok(v) = HeaderValue::from_str(&after.as_millis().to_string()) {
                headers.insert(GRPC_RETRY_PUSHBACK, v);
            }
        }
        res
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_RETRY_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

fn grpc_status_value(code: i32) -> HeaderValue {
    match code {
        3 => HeaderValue::from_static("3"),
        7 => HeaderValue::from_static("7"),
        8 => HeaderValue::from_static("8"),
        14 => HeaderValue::from_static("14"),
        16 => HeaderValue::from_static("16"),
        other => HeaderValue::from(other),
    }
}

/// Generic, already percent-encoded (gRPC spec: bytes outside %x20-7E and `%` are encoded;
/// these texts contain none).
fn grpc_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "malformed credentials",
        401 => "unauthenticated",
        403 => "permission denied",
        429 => "rate limit exceeded",
        _ => "credential verification unavailable",
    }
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 protocol requires: every byte outside
/// %x20-%x7E, and `%` itself, becomes `%XX`.
#[must_use]
pub fn percent_encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn retry_after_value(after: Duration) -> HeaderValue {
    // delay-seconds, rounded up so a client never retries too early (RFC 9110 §10.2.3).
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

/// `true` when the request is gRPC: `content-type` is `application/grpc` or starts with
/// `application/grpc+` / `application/grpc;` (gRPC over HTTP/2; also grpc-web).
#[must_use]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    crate::extract::first_standard_value(headers, &CONTENT_TYPE)
        .0
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// Turns a [`Rejection`] into a response. Implement it to replace the responses entirely.
///
/// The layer inserts the [`Error`] into the response's extensions after calling the
/// responder, so a custom responder cannot hide the reason from the audit layer.
///
/// ```
/// use credentialflow::response::{Rejection, Responder};
/// use http::Response;
///
/// /// Answers every rejection with a plain-text status line, keeping the standard headers.
/// #[derive(Clone, Debug)]
/// struct PlainText;
///
/// impl Responder<String> for PlainText {
///     fn respond(&self, rejection: &Rejection<'_>) -> Response<String> {
///         let mut res = Response::new(rejection.status().to_string());
///         *res.status_mut() = rejection.status();
///         rejection.append_headers(res.headers_mut());
///         res
///     }
/// }
/// ```
pub trait Responder<B>: Send + Sync + 'static {
    /// Builds the response for one refused request.
    fn respond(&self, rejection: &Rejection<'_>) -> Response<B>;

    /// Builds the response like [`respond`](Self::respond), with its headers in `headers`: an
    /// empty map whose allocations the response may take over. The `Authenticate` layer hands
    /// over the refused request's own header map, emptied first (no field of the request is
    /// left in it), so that answering costs no allocation for the map.
    ///
    /// The default ignores `headers` and calls `respond`; the built-in responders build in it.
    fn respond_in(&self, rejection: &Rejection<'_>, headers: HeaderMap) -> Response<B> {
        drop(headers);
        self.respond(rejection)
    }
}

/// Empty body, standard headers; gRPC trailers-only for gRPC requests. The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultResponder;

impl<B: Default> Responder<B> for DefaultResponder {
    #[inline]
    fn respond(&self, rejection: &Rejection<'_>) -> Response<B> {
        self.respond_in(rejection, HeaderMap::new())
    }

    #[inline]
    fn respond_in(&self, rejection: &Rejection<'_>, headers: HeaderMap) -> Response<B> {
        if rejection.is_grpc() {
            rejection.grpc_response_in(headers)
        } else {
            rejection.http_response_in(headers)
        }
    }
}

/// RFC 9457 `application/problem+json` bodies for HTTP; gRPC requests get the gRPC answer.
///
/// The body never names the check that failed and never echoes the credential:
///
/// ```json
/// {"type":"about:blank","title":"Unauthorized","status":401,"detail":"The credential is missing or invalid."}
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemJson;

#[derive(serde::Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'static str,
}

impl<B: Default + From<Bytes>> Responder<B> for ProblemJson {
    fn respond(&self, rejection: &Rejection<'_>) -> Response<B> {
        self.respond_in(rejection, HeaderMap::new())
    }

    fn respond_in(&self, rejection: &Rejection<'_>, headers: HeaderMap) -> Response<B> {
        if rejection.is_grpc() {
            return rejection.grpc_response_in(headers);
        }
        let status = rejection.status();
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: problem_detail(status),
        };
        let Ok(body) = serde_json::to_vec(&problem) else {
            return rejection.http_response_in(headers);
        };
        let mut res = Rejection::response_in(B::from(Bytes::from(body)), headers);
        *res.status_mut() = status;
        rejection.append_headers(res.headers_mut());
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

fn problem_detail(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request's credentials are malformed.",
        401 => "The credential is missing or invalid.",
        403 => "The credential does not grant access to this resource.",
        429 => "Too many requests; retry later.",
        _ => "Credentials cannot be verified right now; retry later.",
    }
}

/// Builds the response for `error` with `responder` and records the error in its extensions.
#[cfg(any(feature = "axum", feature = "authz"))]
pub(crate) fn reject<B, R>(
    responder: &R,
    error: Error,
    challenges: &Challenges,
    request_headers: &HeaderMap,
) -> Response<B>
where
    R: Responder<B> + ?Sized,
{
    let mut res = responder.respond(&Rejection::new(&error, challenges, request_headers));
    res.extensions_mut().insert(error);
    res
}

/// [`reject`] for a request taken apart, whose maps the response reuses: the responder gets
/// its header map ([`Responder::respond_in`]; the built-in ones build in it), and the error goes
/// into its extension map unless the responder set extensions of its own. Both maps are emptied
/// first (every header and extension of the request is dropped), so nothing of the request
/// reaches the responder or the response. A refused request then costs no allocation for either
/// map, where freeing its maps and allocating the response's would cost up to five.
#[inline]
pub(crate) fn respond<B, R>(
    responder: &R,
    error: Error,
    challenges: &Challenges,
    request: &mut http::request::Parts,
) -> Response<B>
where
    R: Responder<B> + ?Sized,
{
    let grpc = is_grpc(&request.headers);
    request.headers.clear();
    let headers = std::mem::take(&mut request.headers);
    let rejection = Rejection {
        error: &error,
        challenges,
        grpc,
    };
    let mut res = responder.respond_in(&rejection, headers);
    if res.extensions().is_empty() {
        request.extensions.clear();
        std::mem::swap(res.extensions_mut(), &mut request.extensions);
    }
    res.extensions_mut().insert(error);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn a_rejection_can_be_shared_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<Rejection<'static>>();
    }

    #[test]
    fn error_goes_only_on_the_failed_scheme() {
        let c = Challenges::new("api", &[Scheme::API_KEY, Scheme::BEARER], false).unwrap();
        let mut h = HeaderMap::new();
        c.append_to(
            &Error::new(ErrorKind::RevokedCredential).with_scheme(Scheme::BEARER),
            &mut h,
        );
        assert_eq!(
            values(&h),
            [
                "ApiKey realm=\"api\"",
                "Bearer realm=\"api\", error=\"invalid_token\""
            ]
        );
    }

    #[test]
    fn challenges_follow_a_field_already_there() {
        let c = Challenges::new("api", &[Scheme::API_KEY, Scheme::BEARER], false).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"legacy\""),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        c.append_to(
            &Error::new(ErrorKind::ChecksumMismatch).with_scheme(Scheme::API_KEY),
            &mut h,
        );
        assert_eq!(
            values(&h),
            [
                "Basic realm=\"legacy\"",
                "ApiKey realm=\"api\", error=\"invalid_token\"",
                "Bearer realm=\"api\""
            ]
        );
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn the_spelled_out_default_equals_the_built_one() {
        let built = Challenges::new("api", &[Scheme::BEARER], false).unwrap();
        let default = Challenges::default_bearer();
        assert_eq!(default.realm(), built.realm());
        assert_eq!(default.schemes(), built.schemes());
        for kind in ErrorKind::ALL {
            let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
            default.append_to(&Error::new(*kind), &mut a);
            built.append_to(&Error::new(*kind), &mut b);
            assert_eq!(values(&a), values(&b), "{kind:?}");
        }
    }

    #[test]
    fn missing_credential_has_no_error_code() {
        let c = Challenges::new("shop", &[Scheme::BEARER, Scheme::BEARER], true).unwrap();
        let mut h = HeaderMap::new();
        c.append_to(&Error::new(ErrorKind::MissingCredential), &mut h);
        assert_eq!(values(&h), ["Bearer realm=\"shop\""]);
    }

    #[test]
    fn description_is_generic_when_enabled() {
        let c = Challenges::new("api", &[Scheme::BEARER], true).unwrap();
        let mut h = HeaderMap::new();
        c.append_to(&Error::new(ErrorKind::ExpiredCredential), &mut h);
        assert_eq!(
            values(&h),
            [
                "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The credential is invalid.\""
            ]
        );
    }

    #[test]
    fn insufficient_scope_carries_sanitized_scope() {
        let c = Challenges::default_bearer();
        let mut h = HeaderMap::new();
        c.append_to(
            &Error::new(ErrorKind::InsufficientScope)
                .with_required_scope("orders:write \"evil\\ x"),
            &mut h,
        );
        assert_eq!(
            values(&h),
            ["Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"orders:write evil x\""]
        );
    }

    #[test]
    fn bad_realms_are_refused() {
        for realm in ["", "a\"b", "a\\b", "caf\u{e9}", "a\nb"] {
            assert!(
                Challenges::new(realm, &[Scheme::BEARER], false).is_err(),
                "{realm:?}"
            );
        }
        assert!(Scheme::custom("Bad Scheme").is_err());
        assert!(Scheme::custom("DPoP").is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_value(Duration::from_millis(1200)), "2");
        assert_eq!(retry_after_value(Duration::from_secs(3)), "3");
        assert_eq!(retry_after_value(Duration::ZERO), "1");
    }

    #[test]
    fn grpc_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&h));
    }

    proptest! {
        #[test]
        fn sanitized_scope_is_always_a_valid_parameter(scope in any::<String>()) {
            let clean = sanitize_scope(&scope);
            prop_assert!(clean.bytes().all(|b| b == b' ' || is_scope_char(b)));
            prop_assert!(!clean.contains("  "));
            let c = Challenges::default_bearer();
            let mut h = HeaderMap::new();
            c.append_to(&Error::new(ErrorKind::InsufficientScope).with_required_scope(scope.as_str()), &mut h);
            prop_assert_eq!(h.get_all(WWW_AUTHENTICATE).iter().count(), 1);
        }

        #[test]
        fn grpc_message_encoding_is_ascii_and_reversible(msg in any::<String>()) {
            let enc = percent_encode_grpc_message(&msg);
            prop_assert!(enc.bytes().all(|b| (0x20..=0x7E).contains(&b)));
            // decode
            let bytes = enc.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            prop_assert_eq!(String::from_utf8(out).unwrap(), msg);
        }
    }
}
