#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations, rust_2018_idioms)]

mod macros;

pub mod authn;
pub mod clock;
pub mod error;
pub mod extract;
#[cfg(feature = "key")]
pub mod key;
pub mod principal;
pub mod response;

#[cfg(feature = "test-util")]
pub mod test_support;

pub use crate::error::{ConfigError, Error, ErrorKind};
pub use crate::principal::{CredentialKind, Principal};
