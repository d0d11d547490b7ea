//! A tonic 0.14 service (the generated `grpc.health.v1.Health` of tonic-health, so nothing needs
//! `protoc`) behind `AuthenticateLayer`, served over loopback and called by a real tonic client.
#![cfg(feature = "test-util")]

mod support;

use std::sync::{Arc, Mutex};

use credentialflow::Principal;
use credentialflow::authn::{AuthenticateLayer, Authenticator, AuthenticatorExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::util::MapRequestLayer;

use support::*;

/// A health server behind `layer` on 127.0.0.1, and the subjects its inner service saw.
struct Running {
    client: HealthClient<Channel>,
    seen: Arc<Mutex<Vec<String>>>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    async fn start<A: Authenticator>(layer: AuthenticateLayer<A>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();

        // Records the Principal the layer put into the request, as a tonic service would read
        // it from `request.extensions()`.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = {
            let seen = Arc::clone(&seen);
            move |req: http::Request<tonic::body::Body>| {
                let subject = req
                    .extensions()
                    .get::<Principal>()
                    .map_or_else(|| "none".to_owned(), |p| p.subject().to_owned());
                seen.lock().unwrap().push(subject);
                req
            }
        };

        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .layer(layer)
                .layer(MapRequestLayer::new(record))
                .serve_with_incoming_shutdown(health, TcpIncoming::from(listener), async {
                    let _ = signal.await;
                }),
        );

        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: HealthClient::new(channel),
            seen,
            shutdown,
            server,
        }
    }

    async fn check(
        &mut self,
        metadata: &[(&'static str, &str)],
    ) -> Result<HealthCheckResponse, tonic::Status> {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        for (name, value) in metadata {
            request.metadata_mut().insert(*name, value.parse().unwrap());
        }
        self.client
            .check(request)
            .await
            .map(tonic::Response::into_inner)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    async fn stop(self) {
        drop(self.client);
        self.shutdown.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn grpc_call_without_credential_is_unauthenticated() {
    let mut server = Running::start(AuthenticateLayer::new(bearer())).await;
    let status = server.check(&[]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "unauthenticated");
    assert!(server.seen().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn grpc_call_with_an_unknown_token_is_unauthenticated() {
    let mut server = Running::start(AuthenticateLayer::new(bearer())).await;
    let status = server
        .check(&[("authorization", &bearer_header(UNKNOWN))])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(server.seen().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn grpc_call_with_a_malformed_token_is_invalid_argument() {
    let mut server = Running::start(AuthenticateLayer::new(bearer())).await;
    let status = server
        .check(&[("authorization", "Bearer a b")])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn grpc_call_with_a_valid_token_reaches_the_service_with_its_principal() {
    let mut server = Running::start(AuthenticateLayer::new(bearer())).await;
    let response = server
        .check(&[("authorization", &bearer_header(ALICE_TOKEN))])
        .await
        .unwrap();
    assert_eq!(response.status(), ServingStatus::Serving);
    assert_eq!(server.seen(), ["alice"]);
    server.stop().await;
}

#[tokio::test]
async fn grpc_call_with_an_api_key_in_metadata_is_accepted_on_a_two_scheme_route() {
    let mut server = Running::start(AuthenticateLayer::new(api_key().or(bearer()))).await;
    let response = server.check(&[("x-api-key", SVC_KEY)]).await.unwrap();
    assert_eq!(response.status(), ServingStatus::Serving);
    let status = server
        .check(&[
            ("x-api-key", SVC_KEY),
            ("authorization", &bearer_header(ALICE_TOKEN)),
        ])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(server.seen(), ["svc"]);
    server.stop().await;
}

#[tokio::test]
async fn grpc_call_to_an_unavailable_backend_is_unavailable() {
    let mut server = Running::start(AuthenticateLayer::new(bearer().unavailable())).await;
    let status = server
        .check(&[("authorization", &bearer_header(ALICE_TOKEN))])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(server.seen().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn grpc_call_through_the_deferred_path_behaves_like_the_synchronous_one() {
    let mut server = Running::start(AuthenticateLayer::new(bearer().deferred())).await;
    let status = server
        .check(&[("authorization", &bearer_header(UNKNOWN))])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let response = server
        .check(&[("authorization", &bearer_header(ALICE_TOKEN))])
        .await
        .unwrap();
    assert_eq!(response.status(), ServingStatus::Serving);
    assert_eq!(server.seen(), ["alice"]);
    server.stop().await;
}

#[tokio::test]
async fn optional_mode_lets_an_anonymous_grpc_call_reach_the_service() {
    let mut server = Running::start(AuthenticateLayer::new(bearer()).optional()).await;
    let response = server.check(&[]).await.unwrap();
    assert_eq!(response.status(), ServingStatus::Serving);
    assert_eq!(server.seen(), ["anonymous"]);
    server.stop().await;
}
