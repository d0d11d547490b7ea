//! JWT verification, strict by default (RFC 7519, RFC 8725, RFC 9068).
//!
//! A [`JwtAuthenticator`] verifies `Authorization: Bearer` tokens from one or more trusted
//! [`Issuer`]s and maps their claims into a [`Principal`](crate::Principal). Plug it into the
//! [`Authenticate`](crate::authn::Authenticate) layer like any [`Authenticator`](crate::authn::Authenticator).
//!
//! # What it checks, in order
//!
//! 1. Size (8 KiB by default, before any decoding), then the compact shape: three base64url
//!    segments. A bearer value that is not three dot-separated segments is not a JWT and counts
//!    as absent, so an API key authenticator combined with [`or`](crate::authn::AuthenticatorExt::or)
//!    may take it.
//! 2. The header, once: `alg` must be a JWS algorithm (`none` is not one); `enc` (JWE) refused.
//! 3. With several issuers, the payload, once: `iss` (a string) picks the configured
//!    [`Issuer`]; `iss` and `kid` are only lookup keys at this point. With one issuer, the
//!    payload is not parsed before the signature verified, and `iss` must then equal it.
//! 4. The issuer's [`KeySource`] gives the key for (`iss`, `kid`, `alg`); the key must be bound
//!    to the token's `alg` ([`VerificationKey`]): the token never picks the key type, so an RSA
//!    public key can never be used as an HMAC secret. With several keys, `kid` is required.
//!    A lookup that has to wait (a JWKS refetch) is bounded by
//!    [`timeout`](JwtAuthenticatorBuilder::timeout) (feature `tokio`, 2 s by default): past
//!    it, `503` with `Retry-After`.
//! 5. The signature, with the configured [`CryptoBackend`] called directly: jsonwebtoken's
//!    process-global provider is never touched.
//! 6. Then the rules: unknown `crit` and `zip` refused; `typ` when required;
//!    `exp` required (now ≥ `exp` + leeway refused), `nbf` (now < `nbf` − leeway refused),
//!    `iat` not beyond now + leeway, optional maximum lifetime, all as JSON numbers; `aud` a
//!    string or array of strings containing one of ours; `sub` a string; `cnf` refused;
//!    required claims; your own [`check`](Issuer::check). `jku`, `x5u`, `x5c` and `jwk` headers
//!    are never followed.
//! 7. An optional [`RevocationCheck`] (a `jti` or subject deny-list), failing closed (`503`),
//!    under the same deadline as the key lookup.
//!
//! Keys are checked when they are built: an RSA key must be well-formed PKCS#1 of 2048 to 8192
//! bits that the crypto backend loads, an HMAC secret at least the hash size; a bad key is a
//! [`ConfigError`](crate::ConfigError), never a failure on every request.
//!
//! Per token, the layer runs fewer instructions than raw `jsonwebtoken::decode` with a prebuilt
//! `Validation`: the header and the claims are each parsed once, on the stack, without
//! `serde_json::Value` (`benches/jwt.rs`, which also counts instructions under callgrind).
//!
//! The default leeway is [60 s](DEFAULT_LEEWAY). Every refusal is the same `401` with
//! `error="invalid_token"`; the precise [`JwtRejection`] is the source of the
//! [`Error`](crate::Error) in the response extensions and in debug logs, which never contain
//! the token.
//!
//! # Claims → `Principal`
//!
//! Subject from `sub`; scopes from `scope` (space-delimited) and `scp` (array, or a string as
//! Entra ID sends it); roles from the [`roles_claim`](Issuer::roles_claim) path; tenant from
//! [`tenant_claim`](Issuer::tenant_claim); attributes by [`copy_claim`](Issuer::copy_claim);
//! expiry from `exp`; credential id from `jti`, else the first 16 hex digits of SHA-256 over the
//! signature segment (never the token). Paths are lists of member names, so names with dots or
//! URLs work ([`ClaimPath`]). [`map_principal`](Issuer::map_principal) adjusts the result. The
//! principal does not record the issuer: with several issuers whose subjects may collide, copy
//! `iss` into an attribute (`copy_claim(ClaimPath::single("iss"), "iss")`).
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use credentialflow::Principal;
//! use credentialflow::authn::AuthenticateLayer;
//! use credentialflow::jwt::{Issuer, JwtAuthenticator, VerificationKey};
//! use http::{Request, StatusCode};
//! use jsonwebtoken::Algorithm;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"an HS256 secret of at least 32 bytes!";
//! let authenticator = JwtAuthenticator::builder()
//!     .issuer(
//!         Issuer::new("https://issuer.example")
//!             .audience("orders-api")
//!             .key(VerificationKey::hmac(Algorithm::HS256, secret)?),
//!     )
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/me", get(|p: Principal| async move { p.subject().to_owned() }))
//!     .layer(AuthenticateLayer::new(authenticator));
//!
//! # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! # let claims = serde_json::json!({"iss": "https://issuer.example", "aud": "orders-api",
//! #     "sub": "alice", "exp": now + 300, "scope": "orders:read"});
//! # let token = sign(secret, &claims);
//! // `token` is an HS256 JWT for alice, minted by the issuer.
//! let ok = app.clone()
//!     .oneshot(Request::get("/me").header("authorization", format!("Bearer {token}")).body(Body::empty())?)
//!     .await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! let tampered = format!("{}x", &token[..token.len() - 1]);
//! let denied = app
//!     .oneshot(Request::get("/me").header("authorization", format!("Bearer {tampered}")).body(Body::empty())?)
//!     .await?;
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(denied.headers()["www-authenticate"], r#"Bearer realm="api", error="invalid_token""#);
//! # Ok(())
//! # }
//! # fn sign(secret: &[u8], claims: &serde_json::Value) -> String {
//! #     use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
//! #     use jsonwebtoken::signature::Signer;
//! #     let provider = credentialflow::jwt::CryptoBackend::default_backend().unwrap().provider();
//! #     let key = jsonwebtoken::EncodingKey::from_secret(secret);
//! #     let signer = (provider.signer_factory)(&Algorithm::HS256, &key).unwrap();
//! #     let input = format!("{}.{}", B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#), B64.encode(claims.to_string()));
//! #     let sig = signer.try_sign(input.as_bytes()).unwrap();
//! #     format!("{input}.{}", B64.encode(sig))
//! # }
//! ```

mod authenticator;
mod claims;
mod crypto;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod jwks;
mod key_source;
mod keys;
mod validation;

pub use self::authenticator::{
    JwtAuthenticator, JwtAuthenticatorBuilder, JwtFuture, JwtRejection, Revocation,
    RevocationCheck, RevocationQuery,
};
pub use self::claims::{ClaimPath, Claims};
pub use self::crypto::CryptoBackend;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub use self::jwks::{JwksError, JwksKeySource, JwksKeySourceBuilder, JwksStats};
pub use self::key_source::{KeyFuture, KeyLookup, KeyQuery, KeySource, StaticKeys};
pub use self::keys::{ALL_ALGORITHMS, AlgorithmSet, VerificationKey};
pub use self::validation::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LEN, Issuer};

/// jsonwebtoken's algorithm and key types, re-exported so you need not depend on it.
pub use jsonwebtoken::{Algorithm, jwk};
