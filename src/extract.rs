//! Where credentials are read from.
//!
//! A [`CredentialSource`] names one place: the `Authorization` header with a scheme (`Bearer`),
//! a named header (`X-API-Key`), a query parameter (off unless you add one) or a cookie.
//! A [`CredentialExtractor`] reads a request's credential from a list of sources, enforcing the
//! rules every authenticator shares, before any authenticator parses the value:
//!
//! - a credential at most [`DEFAULT_MAX_CREDENTIAL_LEN`] bytes long (8 KiB; configurable), else
//!   `400 invalid_request` ([`ErrorKind::OversizedCredential`]);
//! - RFC 6750 §2.1 `b64token` syntax (the same set as RFC 9110 `token68`):
//!   `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`, else `400`
//!   ([`ErrorKind::MalformedCredential`]);
//! - the same source twice (two `Authorization` headers, a repeated parameter or cookie) is `400`
//!   ([`ErrorKind::DuplicateCredential`]), and credentials in two sources are `400`
//!   ([`ErrorKind::ConflictingCredentials`], RFC 6750 §2: one method per request).
//!
//! `Authorization` with another scheme (`Basic …`) is not a credential of a `Bearer` source: it
//! is left to whichever authenticator reads that scheme.
//!
//! ```
//! use credentialflow::extract::{CredentialExtractor, CredentialSource};
//!
//! let extractor = CredentialExtractor::new([
//!     CredentialSource::header("x-api-key")?,
//!     CredentialSource::bearer(),
//! ]);
//! let (parts, ()) = http::Request::get("/")
//!     .header("authorization", "bearer abc.def")
//!     .body(())?
//!     .into_parts();
//! let credential = extractor.extract(&parts)?.expect("present");
//! assert_eq!(credential.value(), "abc.def");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use http::header::{AUTHORIZATION, COOKIE, Entry, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

use crate::bytes_eq::same_bytes;
use crate::error::{ConfigError, Error, ErrorKind};
use crate::response::Scheme;

/// The default limit on a credential's length: 8 KiB.
pub const DEFAULT_MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// One place a credential may be read from.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialSource {
    location: Location,
    scheme: Scheme,
}

#[derive(Clone, PartialEq, Eq)]
enum Location {
    Authorization,
    Header(HeaderName),
    Query(Box<str>),
    Cookie(Box<str>),
}

impl CredentialSource {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1). The scheme name is matched
    /// case-insensitively (RFC 9110 §11.1).
    #[must_use]
    pub fn bearer() -> Self {
        Self::authorization(Scheme::BEARER)
    }

    /// `Authorization: <scheme> <token68>` for a scheme of your own.
    #[must_use]
    pub fn authorization(scheme: Scheme) -> Self {
        Self {
            location: Location::Authorization,
            scheme,
        }
    }

    /// A header of its own, such as `X-API-Key`, challenged as [`Scheme::API_KEY`].
    ///
    /// # Errors
    ///
    /// When `name` is not a valid header name, or is `Authorization` or `Cookie` (use
    /// [`bearer`](Self::bearer) / [`cookie`](Self::cookie)).
    pub fn header(name: &str) -> Result<Self, ConfigError> {
        let name = HeaderName::try_from(name)
            .map_err(|_| ConfigError::new(format!("{name:?} is not a valid header name")))?;
        if name == AUTHORIZATION || name == COOKIE {
            return Err(ConfigError::new(
                "use CredentialSource::bearer()/authorization() or cookie() for this header",
            ));
        }
        Ok(Self {
            location: Location::Header(name),
            scheme: Scheme::API_KEY,
        })
    }

    /// The `X-API-Key` header, challenged as [`Scheme::API_KEY`]: the same as
    /// `header("x-api-key")`, with the name checked at compile time, so it cannot fail.
    ///
    /// ```
    /// use credentialflow::extract::CredentialSource;
    ///
    /// let source = CredentialSource::api_key_header();
    /// assert_eq!(source.header_name().map(|n| n.as_str()), Some("x-api-key"));
    /// ```
    #[must_use]
    pub const fn api_key_header() -> Self {
        const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
        Self {
            location: Location::Header(X_API_KEY),
            scheme: Scheme::API_KEY,
        }
    }

    /// A query parameter, challenged as [`Scheme::API_KEY`].
    ///
    /// # Security
    ///
    /// URLs end up in access logs, browser history and `Referer` headers, so credentials in them
    /// leak (RFC 6750 §2.3 and §5.3). Only add this where clients cannot send a header. The
    /// `Authenticate` layer then answers with `Cache-Control: private`, and the crate's own
    /// events and audit paths redact the query.
    ///
    /// # Errors
    ///
    /// When `name` is empty or contains `&`, `=`, `#` or a character that needs
    /// percent-encoding.
    pub fn query(name: &str) -> Result<Self, ConfigError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(ConfigError::new(format!(
                "query parameter name {name:?} must be non-empty unreserved URI characters"
            )));
        }
        Ok(Self {
            location: Location::Query(name.into()),
            scheme: Scheme::API_KEY,
        })
    }

    /// The RFC 6750 §2.3 `access_token` query parameter, challenged as `Bearer`.
    ///
    /// # Security
    ///
    /// See [`query`](Self::query).
    #[must_use]
    pub fn bearer_query() -> Self {
        Self {
            location: Location::Query("access_token".into()),
            scheme: Scheme::BEARER,
        }
    }

    /// A cookie, challenged as [`Scheme::API_KEY`].
    ///
    /// # Errors
    ///
    /// When `name` is not an RFC 6265 cookie name (an RFC 9110 `token`).
    pub fn cookie(name: &str) -> Result<Self, ConfigError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError::new(format!(
                "{name:?} is not a valid cookie name"
            )));
        }
        Ok(Self {
            location: Location::Cookie(name.into()),
            scheme: Scheme::API_KEY,
        })
    }

    /// Changes the scheme this source is challenged as in `401` responses.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The scheme this source is challenged as.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `true` for a query-parameter source.
    #[must_use]
    pub fn is_query(&self) -> bool {
        matches!(self.location, Location::Query(_))
    }

    /// The header this source reads, if it reads one (`authorization`, `cookie` or its own).
    #[must_use]
    pub fn header_name(&self) -> Option<&HeaderName> {
        match &self.location {
            Location::Authorization => Some(&AUTHORIZATION),
            Location::Header(name) => Some(name),
            Location::Cookie(_) => Some(&COOKIE),
            Location::Query(_) => None,
        }
    }

    /// Reads this source's value: `Ok(None)` when absent, `Err` when duplicated, too long or
    /// not a `b64token`.
    fn find<'a>(&self, parts: &'a Parts, max_len: usize) -> Result<Option<Cow<'a, str>>, Error> {
        match self.find_raw(parts, max_len)? {
            None => Ok(None),
            Some(Cow::Borrowed(raw)) => checked(raw, self.scheme).map(|t| Some(Cow::Borrowed(t))),
            Some(Cow::Owned(raw)) => {
                checked(&raw, self.scheme)?;
                String::from_utf8(raw)
                    .map(|t| Some(Cow::Owned(t)))
                    .map_err(|_| {
                        Error::new(ErrorKind::MalformedCredential).with_scheme(self.scheme)
                    })
            }
        }
    }

    /// Reads this source's value, checking its length but not its syntax: `Ok(None)` when
    /// absent, `Err` when duplicated or too long.
    fn find_raw<'a>(
        &self,
        parts: &'a Parts,
        max_len: usize,
    ) -> Result<Option<Cow<'a, [u8]>>, Error> {
        let fail = |kind| Err(Error::new(kind).with_scheme(self.scheme));
        let found: Cow<'a, [u8]> = match &self.location {
            Location::Authorization => {
                let (Some(first), repeated) = first_standard_value(&parts.headers, &AUTHORIZATION)
                else {
                    return Ok(None);
                };
                let Some(token) = strip_scheme(first.as_bytes(), self.scheme.as_str()) else {
                    // Another scheme: not ours (unless the header is also repeated).
                    return if repeated
                        && parts
                            .headers
                            .get_all(AUTHORIZATION)
                            .iter()
                            .any(|v| strip_scheme(v.as_bytes(), self.scheme.as_str()).is_some())
                    {
                        fail(ErrorKind::DuplicateCredential)
                    } else {
                        Ok(None)
                    };
                };
                if repeated {
                    return fail(ErrorKind::DuplicateCredential);
                }
                Cow::Borrowed(token)
            }
            Location::Header(name) => {
                let (Some(first), repeated) = first_value(&parts.headers, name) else {
                    return Ok(None);
                };
                if repeated {
                    return fail(ErrorKind::DuplicateCredential);
                }
                Cow::Borrowed(first.as_bytes())
            }
            Location::Query(name) => {
                let Some(query) = parts.uri.query() else {
                    return Ok(None);
                };
                let mut found = None;
                for pair in query.split('&') {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if key != &**name {
                        continue;
                    }
                    if found.is_some() {
                        return fail(ErrorKind::DuplicateCredential);
                    }
                    found = Some(value);
                }
                let Some(raw) = found else { return Ok(None) };
                if raw.len() > max_len.saturating_mul(3) {
                    return fail(ErrorKind::OversizedCredential);
                }
                match form_decode(raw) {
                    Some(Cow::Borrowed(value)) => Cow::Borrowed(value.as_bytes()),
                    Some(Cow::Owned(value)) => Cow::Owned(value.into_bytes()),
                    None => return fail(ErrorKind::MalformedCredential),
                }
            }
            Location::Cookie(name) => {
                let mut found = None;
                for header in parts.headers.get_all(COOKIE) {
                    for pair in header.as_bytes().split(|&b| b == b';') {
                        let pair = pair.trim_ascii();
                        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                            continue;
                        };
                        if &pair[..eq] != name.as_bytes() {
                            continue;
                        }
                        if found.is_some() {
                            return fail(ErrorKind::DuplicateCredential);
                        }
                        let mut value = &pair[eq + 1..];
                        if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                            value = &value[1..value.len() - 1];
                        }
                        found = Some(value);
                    }
                }
                let Some(value) = found else { return Ok(None) };
                Cow::Borrowed(value)
            }
        };
        if found.len() > max_len {
            return fail(ErrorKind::OversizedCredential);
        }
        Ok(Some(found))
    }

    fn strip(&self, parts: &mut Parts) {
        match &self.location {
            Location::Authorization => {
                let ours = parts
                    .headers
                    .get_all(AUTHORIZATION)
                    .iter()
                    .any(|v| strip_scheme(v.as_bytes(), self.scheme.as_str()).is_some());
                if ours {
                    parts.headers.remove(AUTHORIZATION);
                }
            }
            Location::Header(name) => {
                parts.headers.remove(name);
            }
            Location::Query(name) => {
                let Some(query) = parts.uri.query() else {
                    return;
                };
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != &**name)
                    .collect();
                let path = parts.uri.path();
                let pq = if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                let mut uri_parts = parts.uri.clone().into_parts();
                if let Ok(pq) = PathAndQuery::try_from(pq) {
                    uri_parts.path_and_query = Some(pq);
                    if let Ok(uri) = Uri::from_parts(uri_parts) {
                        parts.uri = uri;
                    }
                }
            }
            Location::Cookie(name) => {
                let mut rebuilt: Vec<u8> = Vec::new();
                for header in parts.headers.get_all(COOKIE) {
                    for pair in header.as_bytes().split(|&b| b == b';') {
                        let pair = pair.trim_ascii();
                        if pair.is_empty() {
                            continue;
                        }
                        let key = pair.split(|&b| b == b'=').next().unwrap_or(pair);
                        if key == name.as_bytes() {
                            continue;
                        }
                        if !rebuilt.is_empty() {
                            rebuilt.extend_from_slice(b"; ");
                        }
                        rebuilt.extend_from_slice(pair);
                    }
                }
                parts.headers.remove(COOKIE);
                if let (false, Ok(mut v)) = (rebuilt.is_empty(), HeaderValue::from_bytes(&rebuilt))
                {
                    // The other cookies may be secrets too: keep the header sensitive.
                    v.set_sensitive(true);
                    parts.headers.insert(COOKIE, v);
                }
            }
        }
    }
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Authorization => write!(f, "Authorization({})", self.scheme),
            Location::Header(name) => write!(f, "Header({name})"),
            Location::Query(name) => write!(f, "Query({name})"),
            Location::Cookie(name) => write!(f, "Cookie({name})"),
        }
    }
}

/// Maps of up to this many field values are scanned rather than probed by hash.
const SCAN_HEADERS: usize = 8;

/// The first value of the field `name`, and whether it has another.
///
/// A request with few fields (an API client's usual handful) is scanned: comparing each
/// field's name costs less than hashing `name` (a custom name is hashed byte by byte) and
/// probing. Larger maps are probed, so the cost never grows with the number of fields beyond
/// the first few.
#[inline]
pub(crate) fn first_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> (Option<&'a HeaderValue>, bool) {
    // Once: a standard name's text is a table lookup the compiler does not hoist itself.
    let text = name.as_str().as_bytes();
    first_value_by(headers, name, |field| {
        same_bytes(field.as_str().as_bytes(), text)
    })
}

/// [`first_value`] for a standard field name (`authorization`, `content-type`). http holds
/// such a name as a one-byte tag, so comparing it with a field is one comparison, without
/// reading either name's text: a custom field differs by its tag, another standard one by the
/// byte.
#[inline]
pub(crate) fn first_standard_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> (Option<&'a HeaderValue>, bool) {
    first_value_by(headers, name, |field| field == name)
}

#[inline]
fn first_value_by<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    is_name: impl Fn(&HeaderName) -> bool,
) -> (Option<&'a HeaderValue>, bool) {
    if headers.len() <= SCAN_HEADERS {
        if headers.len() == headers.keys_len() {
            // No name repeats, so each field is one entry and `values` yields them in the order
            // of `keys`: walk the names alone (a slice), then step to the one value wanted.
            return match headers.keys().position(is_name) {
                Some(at) => (headers.values().nth(at), false),
                None => (None, false),
            };
        }
        let mut first = None;
        for (field, value) in headers {
            if is_name(field) {
                if first.is_some() {
                    return (first, true);
                }
                first = Some(value);
            }
        }
        return (first, false);
    }
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    (first, first.is_some() && values.next().is_some())
}

/// `Authorization: <scheme> 1*SP <rest>`, scheme matched case-insensitively.
/// Returns the rest (possibly empty) when the scheme matches.
fn strip_scheme<'a>(value: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let n = scheme.len();
    if value.len() < n || !value[..n].eq_ignore_ascii_case(scheme.as_bytes()) {
        return None;
    }
    let rest = &value[n..];
    match rest.first() {
        None => Some(rest),
        Some(b' ') => Some(rest.trim_ascii_start()),
        Some(_) => None, // "Bearerx": another scheme
    }
}

/// Syntax: `b64token` (the length is checked when the value is found).
fn checked(raw: &[u8], scheme: Scheme) -> Result<&str, Error> {
    if !is_b64token(raw) {
        return Err(Error::new(ErrorKind::MalformedCredential).with_scheme(scheme));
    }
    // b64token bytes are ASCII.
    std::str::from_utf8(raw)
        .map_err(|_| Error::new(ErrorKind::MalformedCredential).with_scheme(scheme))
}

/// The bytes of a `b64token` body (everything but the trailing `=`).
static B64TOKEN_BODY: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    table
};

/// RFC 6750 §2.1 `b64token` (RFC 9110 `token68`).
#[must_use]
pub fn is_b64token(raw: &[u8]) -> bool {
    let body_len = raw.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // A branch-free fold (one table load and one `&` per byte) rather than a short-circuiting
    // `all`: credentials are short and almost always valid, so there is nothing to stop early for.
    body_len > 0
        && raw[..body_len]
            .iter()
            .fold(true, |ok, &b| ok & B64TOKEN_BODY[usize::from(b)])
}

/// `application/x-www-form-urlencoded` value decoding: `+` is a space, `%XX` a byte.
/// `None` on a bad escape or non-UTF-8 result.
fn form_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// A credential found in a request. Its `Debug` never shows the value.
pub struct Credential<'a> {
    value: Cow<'a, str>,
    source: usize,
    scheme: Scheme,
}

impl<'a> Credential<'a> {
    /// The credential as sent (query values decoded).
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Takes the value, borrowed from the request where possible.
    #[must_use]
    pub fn into_value(self) -> Cow<'a, str> {
        self.value
    }

    /// Index of the source it came from, in the extractor's list.
    #[must_use]
    pub fn source_index(&self) -> usize {
        self.source
    }

    /// The scheme of that source, for challenges.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("value", &"[redacted]")
            .field("source", &self.source)
            .field("scheme", &self.scheme)
            .finish()
    }
}

/// Reads one credential from a list of [`CredentialSource`]s.
///
/// See the [module docs](self) for the rules and an example.
#[derive(Clone, Debug)]
pub struct CredentialExtractor {
    sources: Box<[CredentialSource]>,
    max_len: usize,
}

impl CredentialExtractor {
    /// An extractor over `sources`, tried in order, with the default length limit.
    #[must_use]
    pub fn new(sources: impl IntoIterator<Item = CredentialSource>) -> Self {
        Self {
            sources: sources.into_iter().collect(),
            max_len: DEFAULT_MAX_CREDENTIAL_LEN,
        }
    }

    /// Changes the length limit. Defaults to 8 KiB; a higher limit lets clients make every
    /// request cost more to parse.
    ///
    /// # Errors
    ///
    /// When `max_len` is zero.
    pub fn with_max_len(mut self, max_len: usize) -> Result<Self, ConfigError> {
        if max_len == 0 {
            return Err(ConfigError::new("credential length limit must be positive"));
        }
        self.max_len = max_len;
        Ok(self)
    }

    /// The sources, in order.
    #[must_use]
    pub fn sources(&self) -> &[CredentialSource] {
        &self.sources
    }

    /// The length limit in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Finds the request's credential.
    ///
    /// # Errors
    ///
    /// `400`-class errors: oversized, malformed, duplicated, or present in two sources.
    pub fn extract<'a>(&self, parts: &'a Parts) -> Result<Option<Credential<'a>>, Error> {
        let mut found: Option<Credential<'a>> = None;
        for (i, source) in self.sources.iter().enumerate() {
            if let Some(value) = source.find(parts, self.max_len)? {
                if let Some(first) = &found {
                    return Err(
                        Error::new(ErrorKind::ConflictingCredentials).with_scheme(first.scheme)
                    );
                }
                found = Some(Credential {
                    value,
                    source: i,
                    scheme: source.scheme,
                });
            }
        }
        Ok(found)
    }

    /// Finds the request's credential like [`extract`](Self::extract), keeping only one that
    /// `is_mine` accepts (a key prefix, the shape of a JWT). A credential it refuses counts as
    /// absent, so another authenticator may read it.
    ///
    /// # Errors
    ///
    /// As [`extract`](Self::extract); credentials `is_mine` refuses take no part in the
    /// duplicate and conflict checks.
    pub fn extract_matching<'a>(
        &self,
        parts: &'a Parts,
        mut is_mine: impl FnMut(&str) -> bool,
    ) -> Result<Option<Credential<'a>>, Error> {
        let mut found: Option<Credential<'a>> = None;
        for (i, source) in self.sources.iter().enumerate() {
            let value = match source.find(parts, self.max_len) {
                Ok(Some(value)) => value,
                Ok(None) => continue,
                // A malformed value is ours only if it looks like ours; length and duplicate
                // errors are ours because the source is.
                Err(e) => return Err(e),
            };
            if !is_mine(&value) {
                continue;
            }
            if let Some(first) = &found {
                return Err(Error::new(ErrorKind::ConflictingCredentials).with_scheme(first.scheme));
            }
            found = Some(Credential {
                value,
                source: i,
                scheme: source.scheme,
            });
        }
        Ok(found)
    }
}

/// What [`CredentialExtractor::extract_deferred`] found.
#[cfg(feature = "key")]
pub(crate) enum Deferred<'a> {
    /// No credential of the caller's kind: no value at all, or one value the caller does not
    /// recognise and whose syntax was checked.
    Absent,
    /// One value, which the caller recognises, length-checked but not syntax-checked: the
    /// caller must refuse it as [`ErrorKind::MalformedCredential`] (`400`) if it is not a
    /// [`b64token`](is_b64token).
    Mine {
        value: Cow<'a, [u8]>,
        scheme: Scheme,
    },
    /// Anything else (several values, a duplicate, an oversized value, a malformed foreign
    /// one): [`CredentialExtractor::extract_matching`] decides.
    Full,
}

#[cfg(feature = "key")]
impl CredentialExtractor {
    /// The common case of [`extract_matching`](Self::extract_matching) without its syntax
    /// check: a request with one credential that `is_mine` recognises. An authenticator whose
    /// own grammar is stricter than `b64token` (API keys) checks the syntax only when its own
    /// parse fails, so a well-formed or merely mistyped credential is read once, not three
    /// times. Every other case is left to `extract_matching`, so the answers are the same.
    pub(crate) fn extract_deferred<'a>(
        &self,
        parts: &'a Parts,
        is_mine: impl FnOnce(&[u8]) -> bool,
    ) -> Deferred<'a> {
        let mut found = None;
        for source in &*self.sources {
            match source.find_raw(parts, self.max_len) {
                Ok(None) => {}
                Ok(Some(value)) if found.is_none() => found = Some((value, source.scheme)),
                _ => return Deferred::Full,
            }
        }
        match found {
            None => Deferred::Absent,
            Some((value, scheme)) if is_mine(&value) => Deferred::Mine { value, scheme },
            Some((value, _)) if is_b64token(&value) => Deferred::Absent,
            Some(_) => Deferred::Full,
        }
    }
}

/// Marks every header `sources` read as sensitive, so that `Debug` of the headers, tower-http's
/// tracing and HPACK indexing never expose them.
pub(crate) fn mark_sensitive(headers: &mut HeaderMap, names: &[HeaderName]) {
    // When no field name repeats (`len` counts values, `keys_len` names: both O(1)), one lookup
    // per name reaches every value; only requests with repeated fields take the slower path.
    if headers.len() == headers.keys_len() {
        for name in names {
            if let Some(value) = headers.get_mut(name) {
                value.set_sensitive(true);
            }
        }
        return;
    }
    for name in names {
        let mut values = headers.get_all(name).iter();
        match (values.next().is_some(), values.next().is_some()) {
            (false, _) => {}
            // The usual case: one field, changed in place without touching the map's layout.
            (true, false) => {
                if let Some(value) = headers.get_mut(name) {
                    value.set_sensitive(true);
                }
            }
            (true, true) => {
                if let Entry::Occupied(mut entry) = headers.entry(name) {
                    for value in entry.iter_mut() {
                        value.set_sensitive(true);
                    }
                }
            }
        }
    }
}

/// Removes every credential `sources` read from the request.
pub(crate) fn strip_all(parts: &mut Parts, sources: &[CredentialSource]) {
    for source in sources {
        source.strip(parts);
    }
}

/// `true` when any query source has a value in this request.
pub(crate) fn query_present(parts: &Parts, sources: &[CredentialSource]) -> bool {
    sources.iter().any(|s| match &s.location {
        Location::Query(name) => parts.uri.query().is_some_and(|q| {
            q.split('&')
                .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == &**name)
        }),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    fn bearer() -> CredentialExtractor {
        CredentialExtractor::new([CredentialSource::bearer()])
    }

    fn kind_of(r: Result<Option<Credential<'_>>, Error>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    #[test]
    fn the_largest_length_limit_does_not_overflow() {
        let extractor = CredentialExtractor::new([CredentialSource::query("key").unwrap()])
            .with_max_len(usize::MAX)
            .unwrap();
        let p = parts(http::Request::get("/?key=abc%2Bdef"));
        assert_eq!(extractor.extract(&p).unwrap().unwrap().value(), "abc+def");
    }

    #[test]
    fn first_value_scans_small_maps_and_probes_large_ones_alike() {
        use http::header::{ACCEPT, ACCEPT_ENCODING, HOST, USER_AGENT};
        // Both lookups, which must agree: by text, and by http's tag for standard names.
        fn both<'a>(headers: &'a HeaderMap, name: &HeaderName) -> (Option<&'a [u8]>, bool) {
            let by_text = first_value(headers, name);
            let by_tag = first_standard_value(headers, name);
            assert_eq!(by_text, by_tag, "{name}");
            (by_text.0.map(HeaderValue::as_bytes), by_text.1)
        }
        for fields in [1, 7, 8, 9, 40] {
            let mut headers = HeaderMap::new();
            // Standard and custom fields mixed, as requests have them.
            let standard = [HOST, ACCEPT, USER_AGENT, ACCEPT_ENCODING];
            for i in 0..fields {
                let name = match standard.get(i % 8) {
                    Some(name) => name.clone(),
                    None => HeaderName::try_from(format!("x-filler-{i}")).unwrap(),
                };
                headers.append(name, HeaderValue::from_static("v"));
            }
            assert_eq!(both(&headers, &AUTHORIZATION), (None, false), "{fields}");
            headers.append(AUTHORIZATION, HeaderValue::from_static("first"));
            assert_eq!(both(&headers, &AUTHORIZATION), (Some(&b"first"[..]), false));
            headers.append(AUTHORIZATION, HeaderValue::from_static("second"));
            assert_eq!(both(&headers, &AUTHORIZATION), (Some(&b"first"[..]), true));
            assert_eq!(both(&headers, &HOST).0, Some(&b"v"[..]));
            let custom = HeaderName::from_static("x-filler-4");
            assert_eq!(first_value(&headers, &custom).0.is_some(), fields > 4);
            let absent = HeaderName::from_static("x-filler-x");
            assert!(first_value(&headers, &absent).0.is_none());
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER   abc"] {
            let p = parts(http::Request::get("/").header("authorization", h));
            assert_eq!(bearer().extract(&p).unwrap().unwrap().value(), "abc", "{h}");
        }
    }

    #[test]
    fn other_schemes_are_not_ours() {
        for h in ["Basic dXNlcjpwYXNz", "Bearerabc", "Token abc"] {
            let p = parts(http::Request::get("/").header("authorization", h));
            assert!(bearer().extract(&p).unwrap().is_none(), "{h}");
        }
    }

    #[test]
    fn malformed_bearer_tokens_are_400() {
        for h in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a=b",
            "Bearer =",
            "Bearer a\"b",
            "Bearer a,b",
        ] {
            let p = parts(http::Request::get("/").header("authorization", h));
            assert_eq!(
                kind_of(bearer().extract(&p)),
                Some(ErrorKind::MalformedCredential),
                "{h:?}"
            );
        }
    }

    #[test]
    fn b64token_table_matches_the_grammar() {
        for b in 0u8..=255 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64token(&[b]), expected, "{b:#x}");
        }
    }

    #[test]
    fn repeated_credential_headers_are_all_marked_sensitive() {
        let mut h = HeaderMap::new();
        h.append("x-api-key", HeaderValue::from_static("a"));
        h.append("x-api-key", HeaderValue::from_static("b"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer c"));
        mark_sensitive(
            &mut h,
            &[HeaderName::from_static("x-api-key"), AUTHORIZATION, COOKIE],
        );
        assert!(h.get_all("x-api-key").iter().all(HeaderValue::is_sensitive));
        assert!(h[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn padding_is_allowed_only_at_the_end() {
        assert!(is_b64token(b"abc=="));
        assert!(is_b64token(b"a-b.c_d~e+f/g"));
        assert!(!is_b64token(b"ab=c"));
        assert!(!is_b64token(b"==="));
        assert!(!is_b64token(b""));
    }

    #[test]
    fn two_authorization_headers_are_400() {
        let p = parts(
            http::Request::get("/")
                .header("authorization", "Bearer a")
                .header("authorization", "Bearer b"),
        );
        assert_eq!(
            kind_of(bearer().extract(&p)),
            Some(ErrorKind::DuplicateCredential)
        );
        let p = parts(
            http::Request::get("/")
                .header("authorization", "Basic a")
                .header("authorization", "Bearer b"),
        );
        assert_eq!(
            kind_of(bearer().extract(&p)),
            Some(ErrorKind::DuplicateCredential)
        );
    }

    #[test]
    fn oversized_is_400_before_syntax() {
        let ex = bearer().with_max_len(4).unwrap();
        let p = parts(http::Request::get("/").header("authorization", "Bearer a b c d e"));
        assert_eq!(
            kind_of(ex.extract(&p)),
            Some(ErrorKind::OversizedCredential)
        );
    }

    #[test]
    fn two_sources_conflict() {
        let ex = CredentialExtractor::new([
            CredentialSource::header("x-api-key").unwrap(),
            CredentialSource::bearer(),
        ]);
        let p = parts(
            http::Request::get("/")
                .header("authorization", "Bearer a")
                .header("x-api-key", "b"),
        );
        assert_eq!(
            kind_of(ex.extract(&p)),
            Some(ErrorKind::ConflictingCredentials)
        );
    }

    #[test]
    fn query_values_are_form_decoded_and_duplicates_refused() {
        let ex = CredentialExtractor::new([CredentialSource::query("api_key").unwrap()]);
        let p = parts(http::Request::get("/x?a=1&api_key=ab%2Bc&b=2"));
        assert_eq!(ex.extract(&p).unwrap().unwrap().value(), "ab+c");
        let p = parts(http::Request::get("/x?api_key=a+b"));
        assert_eq!(
            kind_of(ex.extract(&p)),
            Some(ErrorKind::MalformedCredential)
        );
        let p = parts(http::Request::get("/x?api_key=a&api_key=b"));
        assert_eq!(
            kind_of(ex.extract(&p)),
            Some(ErrorKind::DuplicateCredential)
        );
        let p = parts(http::Request::get("/x?api_key=%zz"));
        assert_eq!(
            kind_of(ex.extract(&p)),
            Some(ErrorKind::MalformedCredential)
        );
    }

    #[test]
    fn cookies_across_headers() {
        let ex = CredentialExtractor::new([CredentialSource::cookie("session").unwrap()]);
        let p = parts(
            http::Request::get("/")
                .header("cookie", "a=1; session=\"tok\"")
                .header("cookie", "b=2"),
        );
        assert_eq!(ex.extract(&p).unwrap().unwrap().value(), "tok");
        let p = parts(
            http::Request::get("/")
                .header("cookie", "session=x")
                .header("cookie", "session=y"),
        );
        assert_eq!(
            kind_of(ex.extract(&p)),
            Some(ErrorKind::DuplicateCredential)
        );
    }

    #[test]
    fn strip_removes_each_kind() {
        let sources = [
            CredentialSource::bearer(),
            CredentialSource::header("x-api-key").unwrap(),
            CredentialSource::query("k").unwrap(),
            CredentialSource::cookie("s").unwrap(),
        ];
        let mut p = parts(
            http::Request::get("/p?a=1&k=secret&b=2")
                .header("authorization", "Bearer secret")
                .header("x-api-key", "secret")
                .header("cookie", "s=secret; other=1"),
        );
        strip_all(&mut p, &sources);
        assert_eq!(p.uri, "/p?a=1&b=2");
        assert!(p.headers.get("authorization").is_none());
        assert!(p.headers.get("x-api-key").is_none());
        assert_eq!(p.headers.get("cookie").unwrap(), "other=1");
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(CredentialSource::header("bad header").is_err());
        assert!(CredentialSource::header("authorization").is_err());
        assert!(CredentialSource::query("a&b").is_err());
        assert!(CredentialSource::cookie("a;b").is_err());
        assert!(bearer().with_max_len(0).is_err());
    }

    proptest! {
        /// Both lookups answer what `get_all` answers (the first value, and whether there is
        /// another) for any mix of standard, custom, repeated and single fields, each value
        /// unique so that a value of the wrong field cannot pass.
        #[test]
        fn first_value_agrees_with_get_all(
            fields in proptest::collection::vec(0..6usize, 0..12),
            removed in proptest::option::of(0..6usize),
        ) {
            use http::header::{ACCEPT, CONTENT_TYPE, HOST};
            let pool = [
                AUTHORIZATION,
                HOST,
                ACCEPT,
                CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("x-request-id"),
            ];
            let mut headers = HeaderMap::new();
            for (i, &name) in fields.iter().enumerate() {
                headers.append(pool[name].clone(), HeaderValue::from(i));
            }
            // A removal leaves the map's entries and extra values rearranged.
            if let Some(name) = removed {
                headers.remove(&pool[name]);
            }
            for name in &pool {
                let mut all = headers.get_all(name).iter();
                let expected = (all.next(), all.next().is_some());
                prop_assert_eq!(first_value(&headers, name), expected, "{}", name);
                prop_assert_eq!(first_standard_value(&headers, name), expected, "{}", name);
            }
        }

        #[test]
        fn authorization_parsing_never_panics(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                let mut p = parts(http::Request::get("/"));
                p.headers.insert(AUTHORIZATION, v);
                let _ = bearer().extract(&p);
            }
        }

        #[test]
        fn valid_tokens_round_trip(token in "[A-Za-z0-9._~+/-]{1,64}={0,2}", spaces in 1usize..4, scheme in "(?i)bearer") {
            let header = format!("{scheme}{}{token}", " ".repeat(spaces));
            let p = parts(http::Request::get("/").header("authorization", header));
            let got = bearer().extract(&p).unwrap().unwrap();
            prop_assert_eq!(got.value(), token.as_str());
        }

        #[test]
        fn query_and_cookie_parsing_never_panic(q in "[ -~]{0,80}", c in "[ -~]{0,80}") {
            let ex = CredentialExtractor::new([
                CredentialSource::query("k").unwrap(),
                CredentialSource::cookie("s").unwrap(),
            ]);
            let mut p = parts(http::Request::get("/"));
            if let Ok(uri) = format!("/x?{}", q.replace(['#', ' '], "")).parse() { p.uri = uri; }
            if let Ok(v) = HeaderValue::from_str(&c) { p.headers.insert(COOKIE, v); }
            let _ = ex.extract(&p);
            strip_all(&mut p, ex.sources());
        }
    }
}
