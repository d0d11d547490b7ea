//! The response future every authorization service returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::check::{Core, Refusal, ShadowDecision};
use super::policy::Decision;
use crate::error::Error;
use crate::response::Responder;

pin_project! {
    /// The response future of [`RequireScopes`](super::RequireScopes),
    /// [`RequireRoles`](super::RequireRoles), [`Authorize`](super::Authorize) and
    /// [`AuthorizeRoutes`](super::AuthorizeRoutes).
    ///
    /// Polled again after it finished, it stays pending rather than panicking (as
    /// `futures::future::Fuse` does).
    ///
    /// `PF` is the future of a pending policy decision. The request parked while a policy
    /// decides is boxed, and so is a shadow record: both are off the common path, and keeping
    /// them inline would triple the size of every future of every layer around this one.
    pub struct ResponseFuture<S, PF, R, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, PF, R, ReqBody, ResBody>,
    }
}

/// A request parked while its policy decides.
pub(crate) struct Waiting<S, R, ReqBody> {
    pub(crate) req: Request<ReqBody>,
    pub(crate) inner: S,
    pub(crate) core: Core<R>,
    pub(crate) shadow: bool,
    pub(crate) rule: Option<Arc<str>>,
}

pin_project! {
    #[project = StateProj]
    enum State<S, PF, R, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Evaluating {
            #[pin]
            fut: PF,
            waiting: Option<Box<Waiting<S, R, ReqBody>>>,
        },
        Forward {
            #[pin]
            fut: S::Future,
            shadow: Option<Box<ShadowDecision>>,
        },
        Reject {
            res: Option<Response<ResBody>>,
        },
        // Finished: polled again, the future stays pending.
        Done,
    }
}

impl<S, PF, R, ReqBody, ResBody> ResponseFuture<S, PF, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn evaluating(fut: PF, waiting: Waiting<S, R, ReqBody>) -> Self {
        Self {
            state: State::Evaluating {
                fut,
                waiting: Some(Box::new(waiting)),
            },
        }
    }

    #[inline]
    pub(crate) fn forward(fut: S::Future, shadow: Option<Box<ShadowDecision>>) -> Self {
        Self {
            state: State::Forward { fut, shadow },
        }
    }

    fn reject(res: Response<ResBody>) -> Self {
        Self {
            state: State::Reject { res: Some(res) },
        }
    }
}

/// Forwards an allowed request, rejects a refused one, or (shadow mode) forwards a refused one
/// with its record.
#[inline]
pub(crate) fn conclude<S, PF, R, ReqBody, ResBody>(
    core: &Core<R>,
    inner: &mut S,
    req: Request<ReqBody>,
    refusal: Option<Refusal>,
    shadow: bool,
    rule: Option<&Arc<str>>,
) -> ResponseFuture<S, PF, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Responder<ResBody>,
{
    match refusal {
        None if !shadow => ResponseFuture::forward(inner.call(req), None),
        None => {
            let record = core.shadow_allow(rule);
            ResponseFuture::forward(inner.call(req), Some(Box::new(record)))
        }
        Some(refusal) => match core.refuse(&req, refusal, shadow, rule) {
            Ok(record) => ResponseFuture::forward(inner.call(req), Some(Box::new(record))),
            Err(res) => ResponseFuture::reject(res),
        },
    }
}

impl<S, PF, R, ReqBody, ResBody> Future for ResponseFuture<S, PF, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    PF: Future<Output = Result<Decision, Error>>,
    R: Responder<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Evaluating { fut, waiting } => {
                    let result = ready!(fut.poll(cx));
                    let Some(waiting) = waiting.take() else {
                        return Poll::Pending;
                    };
                    let Waiting {
                        req,
                        mut inner,
                        core,
                        shadow,
                        rule,
                    } = *waiting;
                    let next: Self = conclude(
                        &core,
                        &mut inner,
                        req,
                        Refusal::policy(result),
                        shadow,
                        rule.as_ref(),
                    );
                    state.set(next.state);
                }
                StateProj::Forward { fut, shadow } => {
                    let result = ready!(fut.poll(cx));
                    let shadow = shadow.take();
                    state.set(State::Done);
                    let mut res = result?;
                    if let Some(record) = shadow {
                        (*record).record(&mut res);
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Reject { res } => {
                    let res = res.take();
                    state.set(State::Done);
                    return match res {
                        Some(res) => Poll::Ready(Ok(res)),
                        None => Poll::Pending,
                    };
                }
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

impl<S, PF, R, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, PF, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
