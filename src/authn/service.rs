//! The `Authenticate` service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{AuthenticateLayer, Mode, Shared, debug_shared};
use super::stats::AuthStats;
use super::{Attempt, Authenticator};
use crate::error::{Error, ErrorKind};
use crate::extract::{mark_sensitive, query_present, strip_all};
use crate::principal::Principal;
use crate::response::{Responder, respond};

/// Authenticates every request and puts the [`Principal`] into its extensions.
///
/// See the [module docs](crate::authn) for an example.
pub struct Authenticate<S, A, R = crate::response::DefaultResponder> {
    inner: S,
    shared: Arc<Shared<A, R>>,
}

impl<S, A: Authenticator> Authenticate<S, A> {
    /// Wraps `inner` in required mode. Use [`AuthenticateLayer`] to configure.
    pub fn new(inner: S, authenticator: A) -> Self {
        tower_layer::Layer::layer(&AuthenticateLayer::new(authenticator), inner)
    }

    /// A layer for this service: the same as [`AuthenticateLayer::new`].
    pub fn layer(authenticator: A) -> AuthenticateLayer<A> {
        AuthenticateLayer::new(authenticator)
    }
}

impl<S, A, R> Authenticate<S, A, R> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<A, R>>) -> Self {
        Self { inner, shared }
    }

    crate::macros::define_inner_service_accessors!();

    /// A snapshot of the outcome counters, shared with the layer that built this service.
    #[must_use]
    pub fn stats(&self) -> AuthStats {
        self.shared.counters.snapshot()
    }
}

impl<S: Clone, A, R> Clone for Authenticate<S, A, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, A, R> fmt::Debug for Authenticate<S, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Authenticate");
        d.field("inner", &self.inner);
        debug_shared(&self.shared, d).finish()
    }
}

/// What to do with a request once its credential is judged.
pub(crate) enum Verdict<B, ResBody> {
    Forward(Request<B>, bool),
    Reject(Response<ResBody>),
}

impl<A, R> Shared<A, R> {
    /// A principal was established: put it into the request and forward.
    pub(crate) fn admit<B>(
        &self,
        mut parts: Parts,
        body: B,
        principal: Principal,
    ) -> (Request<B>, bool) {
        let cache_private = self.has_query_source && query_present(&parts, &self.sources);
        // Only forwarded requests are marked (or stripped): a refused request is dropped here and
        // no inner service ever sees its headers.
        if self.strip {
            strip_all(&mut parts, &self.sources);
        } else {
            mark_sensitive(&mut parts.headers, &self.sensitive);
        }
        // When no subscriber enables anything (one atomic load), there is no span to record on.
        if tracing::level_filters::LevelFilter::current()
            != tracing::level_filters::LevelFilter::OFF
        {
            let span = tracing::Span::current();
            if !span.is_disabled() {
                span.record("subject", principal.subject());
                if let Some(id) = principal.credential_id() {
                    span.record("credential_id", id);
                }
            }
        }
        if self.insert_challenges {
            parts.extensions.insert(self.challenges.clone());
        }
        parts.extensions.insert(principal);
        (Request::from_parts(parts, body), cache_private)
    }

    fn admit_anonymous<B>(&self, parts: Parts, body: B) -> (Request<B>, bool) {
        self.counters.anonymous();
        self.admit(parts, body, Principal::anonymous())
    }

    /// Verification failed: reject, or (dangerous mode) continue as anonymous.
    pub(crate) fn refuse<B, ResBody>(
        &self,
        mut parts: Parts,
        body: B,
        mut error: Error,
    ) -> Verdict<B, ResBody>
    where
        R: Responder<ResBody>,
    {
        let kind = error.kind();
        if kind.is_unavailable() {
            if error.retry_after().is_none() {
                error = error.with_retry_after(self.unavailable_retry_after);
            }
        } else if self.mode == Mode::InvalidAsAnonymous && kind.status() == StatusCode::UNAUTHORIZED
        {
            tracing::debug!(
                reason = kind.as_str(),
                "credential refused; continuing as anonymous (dangerous mode)"
            );
            self.counters.invalid_as_anonymous();
            let (req, cache) = self.admit(parts, body, Principal::anonymous());
            return Verdict::Forward(req, cache);
        }
        self.counters.rejected(kind);
        tracing::debug!(
            reason = kind.as_str(),
            status = kind.status().as_u16(),
            scheme = error.scheme().map(|s| s.as_str()),
            "request rejected by authentication"
        );
        drop(body);
        // Freed now rather than after the response is built, so the response's allocations can
        // take the memory just given back.
        drop(std::mem::take(&mut parts.uri));
        // The request is refused: its maps, emptied, become the response's (see `respond`).
        Verdict::Reject(respond(
            &*self.responder,
            error,
            &self.challenges,
            &mut parts,
        ))
    }
}

fn is_cors_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts.headers.contains_key(http::header::ORIGIN)
        && parts
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

pub(crate) fn add_cache_private<B>(res: &mut Response<B>) {
    // RFC 6750 §2.3: responses to requests that carried the token in the URI.
    res.headers_mut()
        .append(CACHE_CONTROL, HeaderValue::from_static("private"));
}

impl<S, A, R, ReqBody, ResBody> Service<Request<ReqBody>> for Authenticate<S, A, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authenticator,
    R: Responder<ResBody>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, A, R, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let (mut parts, body) = req.into_parts();

        if shared.cors_preflight && is_cors_preflight(&parts) {
            shared.counters.preflight();
            mark_sensitive(&mut parts.headers, &shared.sensitive);
            return ResponseFuture::forward(
                self.inner.call(Request::from_parts(parts, body)),
                false,
            );
        }

        let verdict = match shared.authenticator.authenticate(&parts) {
            Attempt::Authenticated(principal) => {
                shared.counters.authenticated();
                let (req, cache) = shared.admit(parts, body, principal);
                Verdict::Forward(req, cache)
            }
            Attempt::NoCredential => match shared.mode {
                Mode::Required => {
                    shared.refuse(parts, body, Error::new(ErrorKind::MissingCredential))
                }
                Mode::Optional | Mode::InvalidAsAnonymous => {
                    let (req, cache) = shared.admit_anonymous(parts, body);
                    Verdict::Forward(req, cache)
                }
            },
            Attempt::Rejected(error) => shared.refuse(parts, body, error),
            Attempt::Pending(fut) => {
                // Call the service that was polled ready: move it into the future and keep a
                // fresh clone here for the next request.
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                return ResponseFuture::verifying(
                    fut,
                    parts,
                    body,
                    ready,
                    Arc::clone(&self.shared),
                );
            }
        };
        match verdict {
            Verdict::Forward(req, cache) => ResponseFuture::forward(self.inner.call(req), cache),
            Verdict::Reject(res) => ResponseFuture::reject(res),
        }
    }
}
