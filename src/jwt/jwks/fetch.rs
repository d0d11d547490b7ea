//! How key sets are fetched: the [`JwksFetcher`] seam and the default [`HttpFetcher`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::JwksError;
use crate::error::ConfigError;

/// Performs the HTTP `GET`s of a [`JwksKeySource`](super::JwksKeySource): the discovery document
/// and the JWK Set.
///
/// [`HttpFetcher`] is the default. Implement this trait for a private CA, mutual TLS, a proxy
/// or a client you already have. The source applies its own timeout around each call and checks
/// the status, `Cache-Control` and the size again; a fetcher must stop reading a body beyond
/// `max_len` bytes (return [`JwksError::too_large`]) so that a hostile server cannot make it
/// buffer gigabytes. It must not follow redirects to other hosts without thought: the URLs the
/// source asks for are fixed in configuration and never come from a token.
///
/// It runs off the request path, in a background task.
///
/// # Example
///
/// A fetcher that serves a fixed document (a test double; a real one would wrap your client):
///
/// ```
/// use bytes::Bytes;
/// use credentialflow::jwt::JwksKeySource;
/// use credentialflow::jwt::jwks::{JwksError, JwksFetcher};
/// use http::{Response, Uri};
///
/// struct Fixed(&'static str);
///
/// impl JwksFetcher for Fixed {
///     async fn get(&self, _uri: &Uri, max_len: usize) -> Result<Response<Bytes>, JwksError> {
///         if self.0.len() > max_len {
///             return Err(JwksError::too_large(max_len));
///         }
///         Ok(Response::new(Bytes::from_static(self.0.as_bytes())))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // RFC 8037 A.2's Ed25519 public key.
/// let document = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1",
///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
/// let keys = JwksKeySource::builder("https://idp.example/jwks")
///     .fetcher(Fixed(document))
///     .build()?;
/// keys.ready().await?;
/// assert_eq!(keys.key_ids(), ["k1"]);
/// # Ok(())
/// # }
/// ```
pub trait JwksFetcher: Send + Sync + 'static {
    /// `GET uri`, returning the status, the headers and at most `max_len` bytes of body.
    ///
    /// # Errors
    ///
    /// [`JwksError::transport`] for I/O or TLS failures, [`JwksError::too_large`] for a body
    /// over `max_len`.
    fn get(
        &self,
        uri: &Uri,
        max_len: usize,
    ) -> impl Future<Output = Result<Response<Bytes>, JwksError>> + Send;
}

impl<F: JwksFetcher> JwksFetcher for Arc<F> {
    fn get(
        &self,
        uri: &Uri,
        max_len: usize,
    ) -> impl Future<Output = Result<Response<Bytes>, JwksError>> + Send {
        (**self).get(uri, max_len)
    }
}

/// The default fetcher: hyper-util's pooling client over rustls.
///
/// [`new`](Self::new) trusts Mozilla's root certificates as compiled in by `webpki-roots` (the
/// same everywhere, independent of the host's certificate store, so it works in minimal
/// containers) and uses rustls with the aws-lc-rs crypto provider, passed explicitly: rustls'
/// process-wide default provider is neither read nor installed. For a private CA or client
/// certificates, build a [`rustls::ClientConfig`] and use
/// [`with_tls_config`](Self::with_tls_config). HTTP/1.1 only; redirects are not followed.
///
/// It can speak plain `http://` too, but a [`JwksKeySource`](super::JwksKeySource) refuses such
/// URLs unless `dangerous_allow_http` was set.
#[derive(Clone)]
pub struct HttpFetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetcher").finish_non_exhaustive()
    }
}

impl HttpFetcher {
    /// A client trusting the `webpki-roots` certificates, with rustls on aws-lc-rs.
    ///
    /// # Errors
    ///
    /// When the crypto provider supports none of rustls' safe protocol versions (it does: this
    /// is a configuration check, not a runtime one).
    pub fn new() -> Result<Self, ConfigError> {
        let roots: rustls::RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self::with_tls_config(config))
    }

    /// A client with your own rustls configuration: private roots, client certificates for
    /// mutual TLS. Build it with an explicit provider
    /// ([`ClientConfig::builder_with_provider`](rustls::ClientConfig::builder_with_provider)).
    #[must_use]
    pub fn with_tls_config(config: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self { client }
    }
}

static AGENT: HeaderValue =
    HeaderValue::from_static(concat!("credentialflow/", env!("CARGO_PKG_VERSION")));

impl JwksFetcher for HttpFetcher {
    async fn get(&self, uri: &Uri, max_len: usize) -> Result<Response<Bytes>, JwksError> {
        let request = Request::get(uri.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, AGENT.clone())
            .body(Empty::new())
            .map_err(JwksError::transport)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(JwksError::transport)?;
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_len as u64) {
            return Err(JwksError::too_large(max_len));
        }
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_len)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    JwksError::too_large(max_len)
                } else {
                    JwksError::transport(e)
                }
            })?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}
