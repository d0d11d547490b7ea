//! The single-route services: `RequireScopes`, `RequireRoles`, `Authorize`.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::check::{AuthzStats, Refusal, authenticated};
use super::future::{ResponseFuture, Waiting, conclude};
use super::layer::{AuthorizeLayer, NameShared, PolicyShared};
use super::policy::{Evaluation, Policy, PolicyRequest, ReadyDecision};
use crate::response::{DefaultResponder, Responder};

/// Requires scopes of the request's [`Principal`](crate::Principal). Built by
/// [`RequireScopesLayer`](super::RequireScopesLayer).
///
/// See the [module docs](crate::authz) for an example.
pub struct RequireScopes<S, R = DefaultResponder> {
    inner: S,
    shared: Arc<NameShared<R>>,
}

/// Requires roles of the request's [`Principal`](crate::Principal). Built by
/// [`RequireRolesLayer`](super::RequireRolesLayer).
///
/// See the [module docs](crate::authz) for an example.
pub struct RequireRoles<S, R = DefaultResponder> {
    inner: S,
    shared: Arc<NameShared<R>>,
}

macro_rules! name_service {
    ($service:ident) => {
        impl<S, R> $service<S, R> {
            pub(crate) fn from_shared(inner: S, shared: Arc<NameShared<R>>) -> Self {
                Self { inner, shared }
            }

            crate::macros::define_inner_service_accessors!();

            /// A snapshot of the counters, shared with the layer that built this service.
            #[must_use]
            pub fn stats(&self) -> AuthzStats {
                self.shared.core.stats()
            }
        }

        impl<S: Clone, R> Clone for $service<S, R> {
            fn clone(&self) -> Self {
                Self {
                    inner: self.inner.clone(),
                    shared: Arc::clone(&self.shared),
                }
            }
        }

        impl<S: fmt::Debug, R> fmt::Debug for $service<S, R> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($service))
                    .field("inner", &self.inner)
                    .field("mode", &self.shared.check.mode)
                    .field("names", &self.shared.check.names().collect::<Vec<_>>())
                    .field("shadow", &self.shared.core.shadow)
                    .finish()
            }
        }

        impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for $service<S, R>
        where
            S: Service<Request<ReqBody>, Response = Response<ResBody>>,
            R: Responder<ResBody>,
            ResBody: Default,
        {
            type Response = Response<ResBody>;
            type Error = S::Error;
            type Future = ResponseFuture<S, ReadyDecision, R, ReqBody, ResBody>;

            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                self.inner.poll_ready(cx)
            }
            #[inline]
            fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
                let shared = &*self.shared;
                let allowed =
                    authenticated(req.extensions()).is_some_and(|p| shared.check.passes(p));
                if allowed && !shared.core.shadow {
                    // The hot path: nothing but the lookups.
                    return ResponseFuture::forward(self.inner.call(req), None);
                }
                names_slow_path(shared, &mut self.inner, req, allowed)
            }
        }
    };
}

/// Everything but an enforcing allow: a refusal, or any decision in shadow mode.
#[cold]
#[inline(never)]
fn names_slow_path<S, R, ReqBody, ResBody>(
    shared: &NameShared<R>,
    inner: &mut S,
    req: Request<ReqBody>,
    allowed: bool,
) -> ResponseFuture<S, ReadyDecision, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Responder<ResBody>,
{
    let refusal = match authenticated(req.extensions()) {
        _ if allowed => None,
        Some(p) => Some(shared.check.refusal(p)),
        None => Some(Refusal::unauthenticated()),
    };
    conclude(&shared.core, inner, req, refusal, shared.core.shadow, None)
}

name_service!(RequireScopes);
name_service!(RequireRoles);

/// Asks a [`Policy`] whether the request's [`Principal`](crate::Principal) may proceed. Built by
/// [`AuthorizeLayer`].
///
/// See the [module docs](crate::authz) for an example.
pub struct Authorize<S, P, R = DefaultResponder> {
    inner: S,
    shared: Arc<PolicyShared<P, R>>,
}

impl<S, P: Policy> Authorize<S, P> {
    /// Wraps `inner`. Use [`AuthorizeLayer`] to configure.
    pub fn new(inner: S, policy: P) -> Self {
        tower_layer::Layer::layer(&AuthorizeLayer::new(policy), inner)
    }

    /// A layer for this service: the same as [`AuthorizeLayer::new`].
    pub fn layer(policy: P) -> AuthorizeLayer<P> {
        AuthorizeLayer::new(policy)
    }
}

impl<S, P, R> Authorize<S, P, R> {
    pub(crate) fn from_shared(inner: S, shared: Arc<PolicyShared<P, R>>) -> Self {
        Self { inner, shared }
    }

    crate::macros::define_inner_service_accessors!();

    /// A snapshot of the counters, shared with the layer that built this service.
    #[must_use]
    pub fn stats(&self) -> AuthzStats {
        self.shared.core.stats()
    }
}

impl<S: Clone, P, R> Clone for Authorize<S, P, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, P, R> fmt::Debug for Authorize<S, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .field("policy", &format_args!("{}", std::any::type_name::<P>()))
            .field("shadow", &self.shared.core.shadow)
            .finish()
    }
}

impl<S, P, R, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, P, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    P: Policy,
    R: Responder<ResBody>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, P::Future, R, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let core = &shared.core;
        // A reference count: the policy view below borrows the request mutably.
        let Some(principal) = authenticated(req.extensions()).cloned() else {
            let refusal = Some(Refusal::unauthenticated());
            return conclude(core, &mut self.inner, req, refusal, core.shadow, None);
        };
        let (mut parts, body) = req.into_parts();
        let evaluation = shared
            .policy
            .evaluate(&principal, &PolicyRequest::new(&mut parts));
        drop(principal);
        let req = Request::from_parts(parts, body);
        match evaluation {
            Evaluation::Ready(result) => conclude(
                core,
                &mut self.inner,
                req,
                Refusal::policy(result),
                core.shadow,
                None,
            ),
            Evaluation::Pending(fut) => {
                // Call the service that was polled ready: move it into the future and keep a
                // fresh clone here for the next request.
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::evaluating(
                    fut,
                    Waiting {
                        req,
                        inner: ready,
                        core: core.clone(),
                        shadow: core.shadow,
                        rule: None,
                    },
                )
            }
        }
    }
}
