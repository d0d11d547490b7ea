//! A plain hyper 1 service (no axum) behind the layer: driven with `oneshot`, and once over a real
//! loopback connection with hyper's own server and client.
#![cfg(feature = "test-util")]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use credentialflow::authn::{Authenticate, AuthenticateLayer};
use credentialflow::response::ProblemJson;
use credentialflow::{ErrorKind, Principal};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service, ServiceExt};

use support::*;

/// Answers with the subject of the request's `Principal`, read from its extensions.
async fn echo<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let subject = request
        .extensions()
        .get::<Principal>()
        .map_or_else(|| "no principal".to_owned(), |p| p.subject().to_owned());
    Ok(Response::new(Full::new(Bytes::from(subject))))
}

fn service<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    AuthenticateLayer::new(bearer()).layer(tower::service_fn(echo::<B>))
}

fn request(authorization: Option<&str>) -> Request<Empty<Bytes>> {
    let mut req = Request::get("/");
    if let Some(value) = authorization {
        req = req.header(AUTHORIZATION, value);
    }
    req.body(Empty::new()).unwrap()
}

#[tokio::test]
async fn hyper_service_sees_the_principal_in_its_extensions() {
    let res = send(service(), request(Some(&bearer_header(ALICE_TOKEN)))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res.into_body()).await, "alice");
}

#[tokio::test]
async fn hyper_service_rejections_have_an_empty_full_body() {
    let res = send(service(), request(None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
    assert_eq!(error_kind(&res), Some(ErrorKind::MissingCredential));
    assert_eq!(body_string(res.into_body()).await, "");

    let res = send(service(), request(Some(&bearer_header(UNKNOWN)))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_token""#]
    );

    let res = send(service(), request(Some("Bearer a b"))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_request""#]
    );
}

#[tokio::test]
async fn hyper_service_with_an_empty_response_body_works_too() {
    let inner = tower::service_fn(|req: Request<Empty<Bytes>>| async move {
        let status = if req.extensions().get::<Principal>().is_some() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let mut res = Response::new(Empty::<Bytes>::new());
        *res.status_mut() = status;
        Ok::<_, Infallible>(res)
    });
    let svc = Authenticate::new(inner, bearer());
    let res = send(svc.clone(), request(Some(&bearer_header(ALICE_TOKEN)))).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = send(svc, request(None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hyper_service_gets_problem_json_in_a_full_body() {
    let svc = AuthenticateLayer::new(bearer())
        .responder(ProblemJson)
        .layer(tower::service_fn(echo::<Empty<Bytes>>));
    let res = send(svc, request(Some(&bearer_header(UNKNOWN)))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers().get(CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value =
        serde_json::from_str(&body_string(res.into_body()).await).unwrap();
    assert_eq!(body["status"], 401);
}

/// A service that only answers when the very instance called was polled ready, like services
/// that reserve capacity in `poll_ready` (a clone is not ready).
struct ReadyTracked {
    ready: bool,
}

impl Clone for ReadyTracked {
    fn clone(&self) -> Self {
        Self { ready: false }
    }
}

impl<B> Service<Request<B>> for ReadyTracked {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        let status = if std::mem::take(&mut self.ready) {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let mut res = Response::new(Full::default());
        *res.status_mut() = status;
        std::future::ready(Ok(res))
    }
}

#[tokio::test]
async fn the_layer_calls_the_inner_service_it_polled_ready_on_both_paths() {
    for authenticator in [bearer(), bearer().deferred()] {
        let mut svc = Authenticate::new(ReadyTracked { ready: false }, authenticator);
        // Drive it as hyper does: poll_ready, then call, several times on one service.
        for _ in 0..3 {
            let ready = ServiceExt::<Request<Empty<Bytes>>>::ready(&mut svc)
                .await
                .unwrap();
            let res = ready
                .call(request(Some(&bearer_header(ALICE_TOKEN))))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
}

/// Serves one HTTP/1.1 connection from `listener` with the layered hyper service.
async fn serve_one(listener: TcpListener) {
    let (stream, _) = listener.accept().await.unwrap();
    let svc = service::<Incoming>();
    let hyper_svc =
        hyper::service::service_fn(move |req: Request<Incoming>| svc.clone().oneshot(req));
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), hyper_svc)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_real_request_over_loopback_is_authenticated() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_one(listener));

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let client = tokio::spawn(connection);

    let res = sender
        .send_request(request(Some(&bearer_header(ALICE_TOKEN))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res.into_body()).await, "alice");

    let res = sender.send_request(request(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), [r#"Bearer realm="api""#]);
    assert_eq!(body_string(res.into_body()).await, "");

    let res = sender
        .send_request(request(Some(&bearer_header(UNKNOWN))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    assert_eq!(body_string(res.into_body()).await, "");

    // Closing the client side ends the connection, and with it the server task.
    drop(sender);
    client.await.unwrap().unwrap();
    server.await.unwrap();
}
