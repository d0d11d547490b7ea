#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations, rust_2018_idioms)]

mod bytes_eq;
mod macros;

pub mod authn;
#[cfg(feature = "authz")]
pub mod authz;
pub mod clock;
pub mod error;
pub mod extract;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "key")]
pub mod key;
pub mod principal;
pub mod response;
mod stripe;

#[cfg(feature = "test-util")]
pub mod test_support;

pub use crate::error::{ConfigError, Error, ErrorKind};
pub use crate::principal::{CredentialKind, Principal};

/// Compiles the README's example as a doctest, so it cannot drift from the API.
#[cfg(all(doctest, feature = "axum", feature = "key"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
