//! The suites that need features off by default, named where those features are off, so that a
//! plain `cargo test` lists them as ignored rather than skipping them without a word. (The
//! test helpers of `test-util` are always on in the crate's own tests: `Cargo.toml` enables
//! them through a dev-dependency on the crate itself.)
//!
//! `scripts/test` (see README) runs every suite with every feature, against a PostgreSQL
//! server it starts itself.

#[cfg(not(feature = "postgres"))]
#[test]
#[ignore = "tests/postgres.rs needs `--features postgres` and a PostgreSQL server: run scripts/test"]
fn postgres_suite() {}

#[cfg(not(feature = "jwks"))]
#[test]
#[ignore = "tests/jwks.rs, jwks_logs.rs and jwks_tls.rs need `--features jwks`: run scripts/test"]
fn jwks_suites() {}

#[cfg(not(all(feature = "key", feature = "axum")))]
#[test]
#[ignore = "tests/api_key.rs and api_key_logs.rs need `--features key,axum` (default)"]
fn api_key_suites() {}

#[cfg(not(feature = "axum"))]
#[test]
#[ignore = "tests/authenticate.rs, authz.rs, proptest_layer.rs, secrets.rs, jwt_logs.rs and jwks_logs.rs need `--features axum` (default)"]
fn axum_suites() {}

#[cfg(not(feature = "authz"))]
#[test]
#[ignore = "tests/authz.rs needs `--features authz` (default)"]
fn authz_suite() {}

#[cfg(not(feature = "jwt"))]
#[test]
#[ignore = "tests/jwt.rs and jwt_logs.rs need `--features jwt` (default)"]
fn jwt_suites() {}
