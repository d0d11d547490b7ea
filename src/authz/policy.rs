//! The `Policy` trait, its answers, the request view it sees, and its combinators.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Uri};
use pin_project_lite::pin_project;

use crate::error::Error;
use crate::principal::Principal;

/// A policy's verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request is refused: `403` (gRPC 7), with no challenge.
    Deny,
}

impl Decision {
    /// `true` for [`Decision::Allow`].
    #[must_use]
    pub const fn is_allow(self) -> bool {
        matches!(self, Self::Allow)
    }
}

impl From<bool> for Decision {
    /// `true` allows, `false` denies.
    fn from(allow: bool) -> Self {
        if allow { Self::Allow } else { Self::Deny }
    }
}

/// A policy's answer, decided synchronously when it can be.
///
/// [`Ready`](Self::Ready) costs nothing beyond the check itself: no future, no allocation. Return
/// [`Pending`](Self::Pending) only when the answer has to wait (a call to a decision service).
pub enum Evaluation<F> {
    /// Decided now. `Err` refuses the request with that error: use [`Error::unavailable`] or
    /// [`Error::timeout`] when a backend could not answer (`503` with `Retry-After`).
    Ready(Result<Decision, Error>),
    /// The answer needs to wait: the future decides. It must not borrow the request; copy out
    /// what it needs.
    Pending(F),
}

impl<F> Evaluation<F> {
    /// Allowed now.
    #[must_use]
    pub const fn allow() -> Self {
        Self::Ready(Ok(Decision::Allow))
    }

    /// Denied now (`403`).
    #[must_use]
    pub const fn deny() -> Self {
        Self::Ready(Ok(Decision::Deny))
    }

    /// Refused now with `error`; an unavailable backend is [`Error::unavailable`] (`503`).
    #[must_use]
    pub const fn error(error: Error) -> Self {
        Self::Ready(Err(error))
    }

    /// Maps the pending future, keeping a ready answer.
    pub fn map_future<G>(self, f: impl FnOnce(F) -> G) -> Evaluation<G> {
        match self {
            Self::Ready(result) => Evaluation::Ready(result),
            Self::Pending(fut) => Evaluation::Pending(f(fut)),
        }
    }
}

impl<F> fmt::Debug for Evaluation<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(result) => f.debug_tuple("Ready").field(result).finish(),
            Self::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

impl<F> From<bool> for Evaluation<F> {
    /// `true` allows, `false` denies, now.
    fn from(allow: bool) -> Self {
        Self::Ready(Ok(Decision::from(allow)))
    }
}

impl<F> From<Decision> for Evaluation<F> {
    fn from(decision: Decision) -> Self {
        Self::Ready(Ok(decision))
    }
}

/// The future type of a policy that always decides synchronously. It is never constructed.
pub type ReadyDecision = Ready<Result<Decision, Error>>;

/// Decides whether a [`Principal`] may make a request.
///
/// `evaluate` runs synchronously with the principal and a borrowed view of the request head
/// ([`PolicyRequest`]). Answer [`Evaluation::Ready`] whenever the decision is at hand; return
/// [`Evaluation::Pending`] with a `'static` future when it needs to wait, for example on an
/// external decision service. A future that fails ([`Error::unavailable`]) or never answers
/// (bound it with [`PolicyExt::timeout`]) refuses the request with `503`: a policy never allows
/// by accident.
///
/// Plain closures `Fn(&Principal, &PolicyRequest<'_>) -> bool` are policies (see
/// [`policy_fn`]), and [`PolicyExt`] combines policies with `and`, `or` and `not`.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use credentialflow::authz::{Decision, Evaluation, Policy, PolicyRequest};
/// use credentialflow::{Error, Principal};
///
/// /// Asks a (pretend) decision service whether the subject may use the path.
/// struct Remote;
///
/// impl Policy for Remote {
///     type Future = Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send>>;
///
///     fn evaluate(&self, principal: &Principal, request: &PolicyRequest<'_>) -> Evaluation<Self::Future> {
///         // Copy out what the future needs: it must not borrow the request.
///         let subject = principal.subject().to_owned();
///         let path = request.path().to_owned();
///         Evaluation::Pending(Box::pin(async move {
///             // let allowed = client.check(&subject, &path).await.map_err(Error::unavailable)?;
///             let allowed = subject == "alice" && path.starts_with("/reports/");
///             Ok(Decision::from(allowed))
///         }))
///     }
/// }
/// ```
pub trait Policy: Send + Sync + 'static {
    /// The future of a decision that has to wait. Use [`ReadyDecision`] for a policy that never
    /// waits.
    type Future: Future<Output = Result<Decision, Error>> + Send + 'static;

    /// Decides, or starts deciding, whether `principal` may make `request`.
    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future>;
}

/// Closures are policies: `true` allows, `false` denies.
impl<F> Policy for F
where
    F: Fn(&Principal, &PolicyRequest<'_>) -> bool + Send + Sync + 'static,
{
    type Future = ReadyDecision;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        Evaluation::Ready(Ok(Decision::from(self(principal, request))))
    }
}

/// Returns `f` unchanged; it only helps the compiler infer a closure's argument types.
///
/// ```
/// use credentialflow::authz::{AuthorizeLayer, policy_fn};
///
/// let only_get = AuthorizeLayer::new(policy_fn(|_principal, request| request.method() == http::Method::GET));
/// # let _ = only_get;
/// ```
pub fn policy_fn<F>(f: F) -> F
where
    F: Fn(&Principal, &PolicyRequest<'_>) -> bool + Send + Sync + 'static,
{
    f
}

/// What a [`Policy`] sees of a request: method, URI, headers, the matched route pattern and the
/// path parameters (from axum's `MatchedPath` and path parameters, feature `axum`), and
/// extensions on request.
///
/// It borrows the request head: nothing is copied unless a policy asks for it. Path parameters
/// are read off the path when it lines up with the matched route segment by segment (whole
/// segment parameters, nothing percent-encoded), and otherwise from axum's routing data, on
/// first use; both give the same values. Its `Debug` shows the method, path and route
/// only (headers may hold credentials).
pub struct PolicyRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: RefCell<Option<&'a mut Extensions>>,
    route: Route<'a>,
    params: Params<'a>,
}

enum Route<'a> {
    Given(Option<&'a str>),
    #[cfg(feature = "axum")]
    Lazy(OnceCell<Option<axum::extract::MatchedPath>>),
}

enum Params<'a> {
    Given(&'a [(&'a str, &'a str)]),
    Lazy(OnceCell<Option<RouteParams>>),
}

#[cfg(feature = "axum")]
type RouteParams = axum::extract::RawPathParams;

#[cfg(not(feature = "axum"))]
#[derive(Debug)]
enum RouteParams {}

impl<'a> PolicyRequest<'a> {
    /// A view of `parts`. The matched route and path parameters are read from axum's extensions
    /// when a policy asks for them.
    ///
    /// Takes `&mut` because axum only hands out path parameters through a `&mut Parts`
    /// extractor; the request is left as it was.
    pub fn new(parts: &'a mut Parts) -> Self {
        let Parts {
            method,
            uri,
            headers,
            extensions,
            ..
        } = parts;
        Self {
            method,
            uri,
            headers,
            extensions: RefCell::new(Some(extensions)),
            #[cfg(feature = "axum")]
            route: Route::Lazy(OnceCell::new()),
            #[cfg(not(feature = "axum"))]
            route: Route::Given(None),
            params: Params::Lazy(OnceCell::new()),
        }
    }

    /// Sets the matched route pattern, replacing what axum would report. For testing policies,
    /// and for frameworks other than axum.
    #[must_use]
    pub fn with_route(mut self, route: &'a str) -> Self {
        self.route = Route::Given(Some(route));
        self
    }

    /// Sets the path parameters, replacing what axum would report. For testing policies, and
    /// for frameworks other than axum.
    #[must_use]
    pub fn with_path_params(mut self, params: &'a [(&'a str, &'a str)]) -> Self {
        self.params = Params::Given(params);
        self
    }

    /// The request method.
    #[must_use]
    pub fn method(&self) -> &Method {
        self.method
    }

    /// The request URI, as the router saw it (axum strips the prefix of a nested router).
    #[must_use]
    pub fn uri(&self) -> &Uri {
        self.uri
    }

    /// The URI path.
    #[must_use]
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The request headers. They may hold credentials: never log them whole.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The route pattern the router matched (`/tenants/{tenant}/orders`), if the framework
    /// reported one (axum's `MatchedPath`, feature `axum`).
    #[must_use]
    pub fn route(&self) -> Option<&str> {
        match &self.route {
            Route::Given(route) => *route,
            #[cfg(feature = "axum")]
            Route::Lazy(cell) => cell
                .get_or_init(|| {
                    let ext = self.extensions.try_borrow().ok()?;
                    ext.as_deref()?.get::<axum::extract::MatchedPath>().cloned()
                })
                .as_ref()
                .map(axum::extract::MatchedPath::as_str),
        }
    }

    /// One path parameter, percent-decoded (`tenant` in `/tenants/{tenant}`), if the route has
    /// it.
    #[must_use]
    pub fn path_param(&self, name: &str) -> Option<&str> {
        if let Params::Lazy(_) = &self.params
            && let Some(found) = self
                .route()
                .and_then(|route| param_in_path(route, self.uri.path(), name))
        {
            return found;
        }
        self.path_params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every path parameter, in route order.
    pub fn path_params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let (given, read, loaded): (&[(&str, &str)], _, Option<&RouteParams>) = match &self.params {
            Params::Given(given) => (given, None, None),
            Params::Lazy(cell) => {
                match self
                    .route()
                    .and_then(|route| params_in_path(route, self.uri.path()))
                {
                    Some(read) => (&[], Some(read), None),
                    None => (&[], None, cell.get_or_init(|| self.load_params()).as_ref()),
                }
            }
        };
        given
            .iter()
            .copied()
            .chain(read.into_iter().flatten())
            .chain(route_params(loaded))
    }

    #[cfg(feature = "axum")]
    fn load_params(&self) -> Option<RouteParams> {
        use axum::extract::FromRequestParts;
        use futures_util::FutureExt;

        let mut slot = self.extensions.try_borrow_mut().ok()?;
        let extensions = slot.as_deref_mut()?;
        // axum only gives path parameters to a `&mut Parts` extractor: lend it the extensions
        // (a pointer move, no copy) and take them back.
        let (mut scratch, ()) = http::Request::new(()).into_parts();
        scratch.extensions = std::mem::take(extensions);
        let params = RouteParams::from_request_parts(&mut scratch, &())
            .now_or_never()
            .and_then(Result::ok);
        *extensions = std::mem::take(&mut scratch.extensions);
        params
    }

    #[cfg(not(feature = "axum"))]
    fn load_params(&self) -> Option<RouteParams> {
        None
    }

    /// A clone of the request extension of type `T`, if there is one (for example axum's
    /// `ConnectInfo`).
    #[must_use]
    pub fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let ext = self.extensions.try_borrow().ok()?;
        ext.as_deref()?.get::<T>().cloned()
    }
}

/// The parameters of `route` read off `path` segment by segment, when that gives exactly what
/// axum's router captured and so saves copying its list: every parameter is a whole segment
/// (`{name}`), there is no catch-all or escaped brace, `path` has as many segments, every
/// static segment is equal, and `path` holds no `%` (nothing to percent-decode). `None`
/// otherwise, and axum is asked. A nested router's `path` lacks its prefix, so its segments
/// never line up with the full pattern: axum is asked then too.
pub(super) fn params_in_path<'r>(
    route: &'r str,
    path: &'r str,
) -> Option<impl Iterator<Item = (&'r str, &'r str)>> {
    if path.bytes().any(|b| b == b'%') {
        return None;
    }
    let (mut pattern, mut given) = (segments(route), segments(path));
    loop {
        match (pattern.next(), given.next()) {
            (None, None) => break,
            (Some(p), Some(s)) => {
                if param_name(p).is_none()
                    && (p.bytes().any(|b| matches!(b, b'{' | b'}')) || p != s)
                {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(
        segments(route)
            .zip(segments(path))
            .filter_map(|(p, s)| Some((param_name(p)?, s))),
    )
}

/// [`params_in_path`] for one parameter, in one pass: `Some(value)` or `Some(None)` when the
/// path lines up with the route (read it off the path), `None` when axum must be asked.
fn param_in_path<'r>(route: &'r str, path: &'r str, name: &str) -> Option<Option<&'r str>> {
    let (mut pattern, mut given) = (segments(route), segments(path));
    let mut found = None;
    loop {
        match (pattern.next(), given.next()) {
            (None, None) => return Some(found),
            (Some(p), Some(s)) => {
                if s.bytes().any(|b| b == b'%') {
                    return None;
                }
                match param_name(p) {
                    // A name given twice: the first one counts, as in `path_params`.
                    Some(param) if param == name && found.is_none() => found = Some(s),
                    Some(_) => {}
                    None if p.bytes().any(|b| matches!(b, b'{' | b'}')) || p != s => {
                        return None;
                    }
                    None => {}
                }
            }
            _ => return None,
        }
    }
}

/// The name of a whole-segment parameter, `{name}`.
fn param_name(segment: &str) -> Option<&str> {
    let name = segment.strip_prefix('{')?.strip_suffix('}')?;
    (!name.is_empty() && !name.bytes().any(|b| matches!(b, b'{' | b'}' | b'*'))).then_some(name)
}

/// The `/`-separated segments of `s` (a byte scan: `str::split` with a `char` runs a general
/// searcher).
fn segments(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = current.get(i + 1..);
                current.get(..i)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(feature = "axum")]
fn route_params(params: Option<&RouteParams>) -> impl Iterator<Item = (&str, &str)> {
    params.into_iter().flat_map(|p| p.iter())
}

#[cfg(not(feature = "axum"))]
fn route_params(params: Option<&RouteParams>) -> impl Iterator<Item = (&str, &str)> {
    params.into_iter().map(|never| match *never {})
}

impl fmt::Debug for PolicyRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyRequest")
            .field("method", self.method)
            .field("path", &self.uri.path())
            .field("route", &self.route())
            .finish_non_exhaustive()
    }
}

/// Combinators for every [`Policy`].
pub trait PolicyExt: Policy + Sized {
    /// Allows only when both allow. `other` is not evaluated when `self` refuses at once.
    ///
    /// A refusal decides as soon as it is known: a `Deny` or an error from either side refuses
    /// without waiting for the other.
    fn and<B: Policy>(self, other: B) -> And<Self, B> {
        And { a: self, b: other }
    }

    /// Allows when either allows. `other` is not evaluated when `self` allows at once.
    ///
    /// When neither allows and one side failed, the request is refused with that side's error
    /// (`503`): the failed side might have allowed, so "denied" would be a guess.
    fn or<B: Policy>(self, other: B) -> Or<Self, B> {
        Or { a: self, b: other }
    }

    /// Allows when `self` denies and denies when it allows. An error stays an error: `not`
    /// never turns a failure into an allow.
    fn not(self) -> Not<Self> {
        Not { inner: self }
    }

    /// Bounds how long a pending decision may take; past `after` the request is refused with
    /// `503` ([`ErrorKind::StoreTimeout`](crate::ErrorKind::StoreTimeout)), never allowed.
    ///
    /// Needs a tokio runtime with the time driver (axum, hyper and tonic servers have one).
    #[cfg(feature = "tokio")]
    fn timeout(self, after: std::time::Duration) -> Timeout<Self> {
        Timeout { inner: self, after }
    }
}

impl<P: Policy> PolicyExt for P {}

/// Both policies must allow. See [`PolicyExt::and`].
#[derive(Clone, Debug)]
pub struct And<A, B> {
    a: A,
    b: B,
}

/// Either policy may allow. See [`PolicyExt::or`].
#[derive(Clone, Debug)]
pub struct Or<A, B> {
    a: A,
    b: B,
}

/// The negation of a policy. See [`PolicyExt::not`].
#[derive(Clone, Debug)]
pub struct Not<P> {
    inner: P,
}

fn allows(result: &Result<Decision, Error>) -> bool {
    matches!(result, Ok(Decision::Allow))
}

impl<A: Policy, B: Policy> Policy for And<A, B> {
    type Future = CombineFuture<A::Future, B::Future>;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        let a = match self.a.evaluate(principal, request) {
            Evaluation::Ready(result) if !allows(&result) => return Evaluation::Ready(result),
            other => other,
        };
        let b = self.b.evaluate(principal, request);
        CombineFuture::start(a, b, Combine::All)
    }
}

impl<A: Policy, B: Policy> Policy for Or<A, B> {
    type Future = CombineFuture<A::Future, B::Future>;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        let a = match self.a.evaluate(principal, request) {
            Evaluation::Ready(result) if allows(&result) => return Evaluation::Ready(result),
            other => other,
        };
        let b = self.b.evaluate(principal, request);
        CombineFuture::start(a, b, Combine::Any)
    }
}

fn invert(result: Result<Decision, Error>) -> Result<Decision, Error> {
    match result {
        Ok(Decision::Allow) => Ok(Decision::Deny),
        Ok(Decision::Deny) => Ok(Decision::Allow),
        Err(e) => Err(e),
    }
}

impl<P: Policy> Policy for Not<P> {
    type Future = NotFuture<P::Future>;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        match self.inner.evaluate(principal, request) {
            Evaluation::Ready(result) => Evaluation::Ready(invert(result)),
            Evaluation::Pending(fut) => Evaluation::Pending(NotFuture { fut }),
        }
    }
}

pin_project! {
    /// The future of [`Not`].
    pub struct NotFuture<F> {
        #[pin]
        fut: F,
    }
}

impl<F> fmt::Debug for NotFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotFuture").finish_non_exhaustive()
    }
}

impl<F: Future<Output = Result<Decision, Error>>> Future for NotFuture<F> {
    type Output = Result<Decision, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(invert(ready!(self.project().fut.poll(cx))))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Combine {
    /// `and`: the first non-allow decides.
    All,
    /// `or`: the first allow decides.
    Any,
}

impl Combine {
    fn decisive(self, result: &Result<Decision, Error>) -> bool {
        match self {
            Self::All => !allows(result),
            Self::Any => allows(result),
        }
    }

    /// Both sides answered and neither was decisive.
    fn finish(
        self,
        a: Option<Result<Decision, Error>>,
        b: Option<Result<Decision, Error>>,
    ) -> Result<Decision, Error> {
        match self {
            Self::All => Ok(Decision::Allow),
            Self::Any => match (a, b) {
                (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
                _ => Ok(Decision::Deny),
            },
        }
    }
}

pin_project! {
    #[project = SideProj]
    enum Side<F> {
        Pending { #[pin] fut: F },
        Done { result: Option<Result<Decision, Error>> },
    }
}

impl<F> Side<F> {
    fn from_evaluation(evaluation: Evaluation<F>) -> Self {
        match evaluation {
            Evaluation::Ready(result) => Self::Done {
                result: Some(result),
            },
            Evaluation::Pending(fut) => Self::Pending { fut },
        }
    }

    fn ready(&self) -> Option<&Result<Decision, Error>> {
        match self {
            Self::Done { result } => result.as_ref(),
            Self::Pending { .. } => None,
        }
    }

    fn take(self: Pin<&mut Self>) -> Option<Result<Decision, Error>> {
        match self.project() {
            SideProj::Done { result } => result.take(),
            SideProj::Pending { .. } => None,
        }
    }
}

pin_project! {
    /// The future of [`And`] and [`Or`]: waits for the pending sides until one decides.
    pub struct CombineFuture<FA, FB> {
        #[pin]
        a: Side<FA>,
        #[pin]
        b: Side<FB>,
        mode: Combine,
    }
}

impl<FA, FB> CombineFuture<FA, FB>
where
    FA: Future<Output = Result<Decision, Error>>,
    FB: Future<Output = Result<Decision, Error>>,
{
    fn start(a: Evaluation<FA>, b: Evaluation<FB>, mode: Combine) -> Evaluation<Self> {
        let (a, b) = (Side::from_evaluation(a), Side::from_evaluation(b));
        for side in [a.ready(), b.ready()].into_iter().flatten() {
            if mode.decisive(side) {
                return Evaluation::Ready(clone_result(side));
            }
        }
        match (a, b) {
            (Side::Done { result: ra }, Side::Done { result: rb }) => {
                Evaluation::Ready(mode.finish(ra, rb))
            }
            (a, b) => Evaluation::Pending(Self { a, b, mode }),
        }
    }
}

fn clone_result(result: &Result<Decision, Error>) -> Result<Decision, Error> {
    match result {
        Ok(d) => Ok(*d),
        Err(e) => Err(e.clone()),
    }
}

impl<FA, FB> fmt::Debug for CombineFuture<FA, FB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CombineFuture").finish_non_exhaustive()
    }
}

impl<FA, FB> Future for CombineFuture<FA, FB>
where
    FA: Future<Output = Result<Decision, Error>>,
    FB: Future<Output = Result<Decision, Error>>,
{
    type Output = Result<Decision, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mode = *this.mode;
        if let SideProj::Pending { fut } = this.a.as_mut().project()
            && let Poll::Ready(result) = fut.poll(cx)
        {
            if mode.decisive(&result) {
                return Poll::Ready(result);
            }
            this.a.set(Side::Done {
                result: Some(result),
            });
        }
        if let SideProj::Pending { fut } = this.b.as_mut().project()
            && let Poll::Ready(result) = fut.poll(cx)
        {
            if mode.decisive(&result) {
                return Poll::Ready(result);
            }
            this.b.set(Side::Done {
                result: Some(result),
            });
        }
        match (&*this.a, &*this.b) {
            (Side::Done { .. }, Side::Done { .. }) => {
                Poll::Ready(mode.finish(this.a.take(), this.b.take()))
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::timeout::{Timeout, TimeoutFuture};

#[cfg(feature = "tokio")]
mod timeout {
    use std::time::Duration;

    use super::*;

    /// Bounds pending decisions. See [`PolicyExt::timeout`].
    #[derive(Clone, Debug)]
    pub struct Timeout<P> {
        pub(super) inner: P,
        pub(super) after: Duration,
    }

    /// The future of [`Timeout`]: the same bounded future as the authenticators'.
    pub use crate::authn::TimeoutFuture;

    impl<P: Policy> Policy for Timeout<P> {
        type Future = TimeoutFuture<P::Future>;

        fn evaluate(
            &self,
            principal: &Principal,
            request: &PolicyRequest<'_>,
        ) -> Evaluation<Self::Future> {
            self.inner
                .evaluate(principal, request)
                .map_future(|fut| TimeoutFuture::new(fut, self.after))
        }
    }
}

/// A type-erased policy, for the rule table where each rule holds a different policy type.
#[cfg(feature = "axum")]
pub(crate) type BoxDecisionFuture = Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send>>;

#[cfg(feature = "axum")]
pub(crate) trait ErasedPolicy: Send + Sync + 'static {
    fn evaluate_boxed(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<BoxDecisionFuture>;
}

#[cfg(feature = "axum")]
impl<P: Policy> ErasedPolicy for P {
    fn evaluate_boxed(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<BoxDecisionFuture> {
        self.evaluate(principal, request)
            .map_future(|fut| Box::pin(fut) as BoxDecisionFuture)
    }
}
