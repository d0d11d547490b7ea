//! The `Authenticate` response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Authenticator;
use super::layer::Shared;
use super::service::{Verdict, add_cache_private};
use crate::response::Responder;

pin_project! {
    /// The response future of [`Authenticate`](super::Authenticate).
    ///
    /// Polled again after it finished, it stays pending rather than panicking (as
    /// `futures::future::Fuse` does). The inner service's finished future is dropped with this
    /// one, not when it finishes.
    pub struct ResponseFuture<S, A, R, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        A: Authenticator,
    {
        #[pin]
        state: State<S, A, R, ReqBody, ResBody>,
    }
}

struct Waiting<S, A, R, ReqBody> {
    parts: Parts,
    body: ReqBody,
    inner: S,
    shared: Arc<Shared<A, R>>,
}

pin_project! {
    #[project = StateProj]
    enum State<S, A, R, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        A: Authenticator,
    {
        Verifying {
            #[pin]
            fut: A::Future,
            waiting: Option<Waiting<S, A, R, ReqBody>>,
        },
        Forward {
            #[pin]
            fut: S::Future,
            cache_private: bool,
            // The inner future finished: it is not polled again. A flag rather than a move to
            // another state, so that the inner poll's result is handed through untouched.
            finished: bool,
        },
        // `None` once the response is taken: polled again, the future stays pending.
        Reject {
            res: Option<Response<ResBody>>,
        },
    }
}

impl<S, A, R, ReqBody, ResBody> ResponseFuture<S, A, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    A: Authenticator,
{
    pub(crate) fn forward(fut: S::Future, cache_private: bool) -> Self {
        Self {
            state: State::Forward {
                fut,
                cache_private,
                finished: false,
            },
        }
    }

    pub(crate) fn reject(res: Response<ResBody>) -> Self {
        Self {
            state: State::Reject { res: Some(res) },
        }
    }

    pub(crate) fn verifying(
        fut: A::Future,
        parts: Parts,
        body: ReqBody,
        inner: S,
        shared: Arc<Shared<A, R>>,
    ) -> Self {
        Self {
            state: State::Verifying {
                fut,
                waiting: Some(Waiting {
                    parts,
                    body,
                    inner,
                    shared,
                }),
            },
        }
    }
}

impl<S, A, R, ReqBody, ResBody> Future for ResponseFuture<S, A, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    A: Authenticator,
    R: Responder<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Verifying { fut, waiting } => {
                    let result = ready!(fut.poll(cx));
                    let Some(Waiting {
                        parts,
                        body,
                        mut inner,
                        shared,
                    }) = waiting.take()
                    else {
                        return Poll::Pending;
                    };
                    let verdict = match result {
                        Ok(principal) => {
                            shared.counters.authenticated();
                            let (req, cache) = shared.admit(parts, body, principal);
                            Verdict::Forward(req, cache)
                        }
                        Err(error) => shared.refuse(parts, body, error),
                    };
                    match verdict {
                        Verdict::Forward(req, cache_private) => state.set(State::Forward {
                            fut: inner.call(req),
                            cache_private,
                            finished: false,
                        }),
                        Verdict::Reject(res) => state.set(State::Reject { res: Some(res) }),
                    }
                }
                StateProj::Forward {
                    fut,
                    cache_private,
                    finished,
                } => {
                    if *finished {
                        return Poll::Pending;
                    }
                    let mut out = fut.poll(cx);
                    if let Poll::Ready(result) = &mut out {
                        *finished = true;
                        if let (true, Ok(res)) = (*cache_private, result) {
                            add_cache_private(res);
                        }
                    }
                    return out;
                }
                // Taking the response leaves `None`: polled again, the future stays pending.
                StateProj::Reject { res } => {
                    return match res.take() {
                        Some(res) => Poll::Ready(Ok(res)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl<S, A, R, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, A, R, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    A: Authenticator,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
