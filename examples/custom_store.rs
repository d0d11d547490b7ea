//! Keeping API keys in your own storage: implementing `KeyStore` (and `KeyStoreWrite`).
//!
//! Two stores:
//!
//! - `ConfigKeyStore`: keys declared in configuration, as SHA-256 digests of their secrets
//!   (never the keys themselves), loaded into a `HashMap` at start-up. Lookups answer at once
//!   with `Lookup::Ready`: no future, no timer.
//! - `DirectoryKeyStore`: keys kept by a (simulated) remote service. Lookups take a round trip,
//!   so they return `Lookup::Pending` with a future, which the authenticator bounds with its
//!   timeout; a failure of the service is answered with `503`, never an allow. It implements
//!   `KeyStoreWrite` too, so a `KeyManager` can issue and revoke keys in it.
//!
//! Each is wired into an axum `Router` and exercised with `oneshot`; no network is used.
//!
//! ```text
//! cargo run --example custom_store
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use credentialflow::authn::AuthenticateLayer;
use credentialflow::key::{
    ApiKeyAuthenticator, HashVersion, KeyFormat, KeyGenerator, KeyHash, KeyHasher, KeyManager,
    KeyRecord, KeyStatus, KeyStore, KeyStoreWrite, Lookup, StoreError,
};
use credentialflow::{Error, Principal};
use http::{Request, StatusCode};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// 1. Keys from configuration.
// ---------------------------------------------------------------------------------------------

/// One configured key: its public id, owner, scopes and the hex SHA-256 of its secret.
///
/// A key looks like `acme_live_<12-character id>_<32-character secret><6-character checksum>`;
/// the digest is `printf %s <secret> | sha256sum`. Keep the full keys out of configuration.
struct ConfiguredKey {
    id: &'static str,
    owner: &'static str,
    scopes: &'static [&'static str],
    sha256_hex: &'static str,
}

const CONFIGURED: &[ConfiguredKey] = &[
    ConfiguredKey {
        id: "ciDeploy0001",
        owner: "ci",
        scopes: &["deploy"],
        sha256_hex: "b1f3a83c85383263317b1d229b26ff0bd8d85113a243f993bf11066a5a4305a9",
    },
    ConfiguredKey {
        id: "billingJob01",
        owner: "billing",
        scopes: &["invoices:read", "invoices:write"],
        sha256_hex: "ab6bd00f2d27b59daf3211496612f99fb20057701936945a84cf1cbae28b8148",
    },
];

/// The key handed to the CI system (its digest is the first entry above). In real life it lives
/// in the client's secret store only; it is here to send a request.
const CI_KEY: &str = "acme_live_ciDeploy0001_Xq7vT2mB9kLp4RwZ8sNc3YhJ6dFg1Ue50y1M7g";

/// Keys loaded once from configuration; clones share them.
#[derive(Clone, Debug)]
struct ConfigKeyStore {
    keys: Arc<HashMap<String, Arc<KeyRecord>>>,
}

impl ConfigKeyStore {
    fn load(entries: &[ConfiguredKey], now: u64) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for entry in entries {
            let digest = decode_hex(entry.sha256_hex)
                .ok_or_else(|| format!("key {}: sha256_hex is not 64 hex digits", entry.id))?;
            let mut record = KeyRecord::new(
                entry.id,
                KeyHash::from_parts(HashVersion::Sha256, digest),
                entry.owner,
                now,
            );
            record.scopes = entry.scopes.iter().map(|s| (*s).to_owned()).collect();
            keys.insert(entry.id.to_owned(), Arc::new(record));
        }
        Ok(Self {
            keys: Arc::new(keys),
        })
    }
}

impl KeyStore for ConfigKeyStore {
    /// Never used: every answer is `Lookup::Ready`.
    type Future = std::future::Ready<Result<Option<Arc<KeyRecord>>, Error>>;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        Lookup::Ready(Ok(self.keys.get(id).cloned()))
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// 2. Keys in a remote service (simulated), with management.
// ---------------------------------------------------------------------------------------------

/// Stands in for a directory service or a database: every call takes a few milliseconds, and
/// the service can be taken "down".
#[derive(Clone, Debug, Default)]
struct DirectoryKeyStore {
    records: Arc<Mutex<HashMap<String, KeyRecord>>>,
    down: Arc<AtomicBool>,
}

const LATENCY: Duration = Duration::from_millis(5);

impl DirectoryKeyStore {
    /// One simulated round trip: `f` runs "on the server".
    async fn round_trip<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, KeyRecord>) -> T,
    ) -> Result<T, Error> {
        tokio::time::sleep(LATENCY).await;
        if self.down.load(Ordering::SeqCst) {
            // Say what failed, never which key was presented.
            return Err(Error::unavailable("key directory unreachable"));
        }
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(f(&mut records))
    }
}

/// The lookup future. A boxed future is fine when a round trip dominates; name it so that
/// `KeyStore::Future` can.
type DirectoryLookup = Pin<Box<dyn Future<Output = Result<Option<Arc<KeyRecord>>, Error>> + Send>>;

impl KeyStore for DirectoryKeyStore {
    type Future = DirectoryLookup;

    fn lookup(&self, id: &str) -> Lookup<Self::Future> {
        // The future must be 'static: move owned copies into it.
        let store = self.clone();
        let id = id.to_owned();
        Lookup::Pending(Box::pin(async move {
            store
                .round_trip(|records| records.get(&id).cloned().map(Arc::new))
                .await
        }))
    }
}

fn unavailable(error: Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

impl KeyStoreWrite for DirectoryKeyStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.round_trip(|records| {
            if records.contains_key(&record.id) {
                return Err(StoreError::Duplicate);
            }
            records.insert(record.id.clone(), record);
            Ok(())
        })
        .await
        .map_err(unavailable)?
    }

    async fn update(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.round_trip(|records| match records.get_mut(&record.id) {
            Some(slot) => {
                *slot = record;
                Ok(())
            }
            None => Err(StoreError::NotFound),
        })
        .await
        .map_err(unavailable)?
    }

    async fn revoke(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.round_trip(|records| {
            let record = records.get_mut(id).ok_or(StoreError::NotFound)?;
            record.status = KeyStatus::Revoked;
            record.revoked_at.get_or_insert(at);
            Ok(())
        })
        .await
        .map_err(unavailable)?
    }

    async fn expire_by(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.round_trip(|records| {
            let record = records.get_mut(id).ok_or(StoreError::NotFound)?;
            record.expires_at = Some(record.expires_at.map_or(at, |e| e.min(at)));
            Ok(())
        })
        .await
        .map_err(unavailable)?
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        self.round_trip(|records| {
            let mut mine: Vec<KeyRecord> = records
                .values()
                .filter(|r| r.owner == owner)
                .cloned()
                .collect();
            mine.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
            mine
        })
        .await
        .map_err(unavailable)
    }

    async fn record_last_use(&self, id: &str, at: u64) -> Result<(), StoreError> {
        self.round_trip(|records| {
            let record = records.get_mut(id).ok_or(StoreError::NotFound)?;
            record.last_used_at = Some(record.last_used_at.map_or(at, |t| t.max(at)));
            Ok(())
        })
        .await
        .map_err(unavailable)?
    }
}

// ---------------------------------------------------------------------------------------------
// The application.
// ---------------------------------------------------------------------------------------------

async fn whoami(principal: Principal) -> String {
    let mut scopes: Vec<&str> = principal.scopes().iter().collect();
    scopes.sort_unstable();
    format!("{} (scopes: {})", principal.subject(), scopes.join(" "))
}

fn app<S: KeyStore + Clone>(store: S, format: KeyFormat) -> Router {
    Router::new()
        .route("/me", get(whoami))
        .layer(AuthenticateLayer::new(ApiKeyAuthenticator::new(
            format,
            KeyHasher::sha256(),
            store,
        )))
}

/// Sends `GET /me` with `key` and prints what came back.
async fn show(
    app: &Router,
    what: &str,
    key: &str,
) -> Result<StatusCode, Box<dyn std::error::Error>> {
    let request = Request::get("/me")
        .header("x-api-key", key)
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
    println!("  {what}: {status} {}", String::from_utf8_lossy(&body));
    Ok(status)
}

fn expect(status: StatusCode, want: StatusCode) -> Result<(), Box<dyn std::error::Error>> {
    if status == want {
        Ok(())
    } else {
        Err(format!("expected {want}, got {status}").into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = KeyFormat::new("acme_live")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();

    println!("1. Keys from configuration (Lookup::Ready):");
    let configured = ConfigKeyStore::load(CONFIGURED, now)?;
    let app1 = app(configured, format.clone());
    expect(
        show(&app1, "configured CI key", CI_KEY).await?,
        StatusCode::OK,
    )?;
    // A well-formed key of the same format that is not configured.
    let unknown = KeyGenerator::new(format.clone(), KeyHasher::sha256()).generate()?;
    expect(
        show(&app1, "unknown key", unknown.key()).await?,
        StatusCode::UNAUTHORIZED,
    )?;
    let typo = CI_KEY.replacen('X', "x", 1);
    expect(
        show(&app1, "typo'd key (checksum)", &typo).await?,
        StatusCode::UNAUTHORIZED,
    )?;

    println!("2. Keys in a remote directory (Lookup::Pending, KeyStoreWrite):");
    let directory = DirectoryKeyStore::default();
    let keys = KeyManager::new(directory.clone(), format.clone(), KeyHasher::sha256());
    let issued = keys
        .issue("reporting", |r| r.scopes = vec!["reports:read".into()])
        .await?;
    println!(
        "  issued key id {} (the full key is shown to its owner once)",
        issued.id()
    );
    let app2 = app(directory.clone(), format.clone());
    expect(
        show(&app2, "issued key", issued.key()).await?,
        StatusCode::OK,
    )?;

    directory.down.store(true, Ordering::SeqCst);
    expect(
        show(&app2, "directory down", issued.key()).await?,
        StatusCode::SERVICE_UNAVAILABLE,
    )?;
    directory.down.store(false, Ordering::SeqCst);

    keys.revoke(issued.id()).await?;
    expect(
        show(&app2, "after revoke", issued.key()).await?,
        StatusCode::UNAUTHORIZED,
    )?;
    let listed = keys.list("reporting").await?;
    println!(
        "  keys of 'reporting': {:?}",
        listed
            .iter()
            .map(|r| (r.id.as_str(), r.status.as_str()))
            .collect::<Vec<_>>()
    );

    println!("done");
    Ok(())
}
