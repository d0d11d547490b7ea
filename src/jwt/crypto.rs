//! The crypto backend a [`JwtAuthenticator`](super::JwtAuthenticator) verifies signatures with.

use std::fmt;

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey};

/// Which implementation of the signature algorithms to call.
///
/// jsonwebtoken's own `decode` uses a process-global provider that is fixed on first use and
/// panics when zero or two backends are compiled in (cargo feature unification turns both on
/// easily). The authenticator never touches that global: it calls the backend chosen here
/// directly, so it works whatever else in the process uses jsonwebtoken.
///
/// The default is [`AwsLcRs`](Self::AwsLcRs) when feature `jwt-aws-lc-rs` is on (about 8×
/// faster on RS256), else [`RustCrypto`](Self::RustCrypto) when `jwt-rust-crypto` is on.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum CryptoBackend {
    /// aws-lc-rs (feature `jwt-aws-lc-rs`, on by default).
    #[cfg(feature = "jwt-aws-lc-rs")]
    AwsLcRs,
    /// The RustCrypto crates, pure Rust (feature `jwt-rust-crypto`).
    #[cfg(feature = "jwt-rust-crypto")]
    RustCrypto,
    /// A jsonwebtoken [`CryptoProvider`] of your own (an HSM, a FIPS module).
    Custom(&'static CryptoProvider),
}

impl CryptoBackend {
    /// The backend used when none is configured, if any is compiled in.
    #[must_use]
    pub const fn default_backend() -> Option<Self> {
        #[cfg(feature = "jwt-aws-lc-rs")]
        {
            return Some(Self::AwsLcRs);
        }
        #[cfg(all(feature = "jwt-rust-crypto", not(feature = "jwt-aws-lc-rs")))]
        {
            return Some(Self::RustCrypto);
        }
        #[allow(unreachable_code)]
        None
    }

    /// The jsonwebtoken provider this backend calls.
    #[must_use]
    pub fn provider(self) -> &'static CryptoProvider {
        match self {
            #[cfg(feature = "jwt-aws-lc-rs")]
            Self::AwsLcRs => &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
            #[cfg(feature = "jwt-rust-crypto")]
            Self::RustCrypto => &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
            Self::Custom(provider) => provider,
        }
    }

    /// `true` for the backends this crate ships (not [`Custom`](Self::Custom)).
    pub(crate) const fn is_built_in(self) -> bool {
        !matches!(self, Self::Custom(_))
    }

    /// A short name for logs: `"aws-lc-rs"`, `"rust-crypto"` or `"custom"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "jwt-aws-lc-rs")]
            Self::AwsLcRs => "aws-lc-rs",
            #[cfg(feature = "jwt-rust-crypto")]
            Self::RustCrypto => "rust-crypto",
            Self::Custom(_) => "custom",
        }
    }

    /// Verifies `signature` over `message` with `key` and `algorithm`. `false` for any failure,
    /// including a key the backend refuses for that algorithm.
    pub(crate) fn verify(
        self,
        algorithm: Algorithm,
        key: &DecodingKey,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> bool {
        match (self.provider().verifier_factory)(&algorithm, key) {
            Ok(verifier) => verifier.verify(message, signature).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for CryptoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
