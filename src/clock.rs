//! Time, injectable so that tests never sleep.
//!
//! Every part of the crate that reads time (key expiry, token `exp`/`nbf`, rate limits, cool-downs)
//! takes a [`Clock`]. Production code uses [`SystemClock`]; tests use [`FakeClock`], whose clones
//! share one "now" so a test keeps one handle and the layer another:
//!
//! ```
//! use std::time::Duration;
//! use credentialflow::clock::{Clock, FakeClock};
//!
//! let clock = FakeClock::new();
//! let handle = clock.clone(); // give this one to the layer
//! let before = handle.unix_time();
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(handle.unix_time() - before, Duration::from_secs(30));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time: a monotonic reading for intervals and the wall clock for expiry.
///
/// Implementations must be cheap to call; both methods are on the request path.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time elapsed since an arbitrary, fixed origin. Never goes backwards.
    ///
    /// Use it for intervals: rate-limit windows, cache ages, cool-downs.
    fn monotonic(&self) -> Duration;

    /// Time since the Unix epoch, as the wall clock says.
    ///
    /// Use it for absolute instants carried in credentials (`exp`, `nbf`, key expiry).
    fn unix_time(&self) -> Duration;

    /// Whole seconds since the Unix epoch, the unit of JWT `NumericDate` claims.
    fn unix_seconds(&self) -> u64 {
        self.unix_time().as_secs()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn monotonic(&self) -> Duration {
        (**self).monotonic()
    }
    fn unix_time(&self) -> Duration {
        (**self).unix_time()
    }
}

static PROCESS_ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The real clock: [`Instant`] for monotonic time and [`SystemTime`] for the wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        PROCESS_ORIGIN.elapsed()
    }

    fn unix_time(&self) -> Duration {
        // A wall clock set before 1970 reads as the epoch itself; nothing issued after 1970 is
        // then considered expired by mistake, and nothing is valid that needs a later time.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to. Clones share one "now".
///
/// Starts at [`FakeClock::DEFAULT_START`] (2026-01-01T00:00:00Z) unless built with
/// [`FakeClock::at_unix_seconds`]; its monotonic reading starts at zero.
///
/// See the [module docs](self) for an example.
#[derive(Clone)]
pub struct FakeClock {
    inner: Arc<FakeClockInner>,
}

struct FakeClockInner {
    start_unix: Duration,
    elapsed_nanos: AtomicU64,
}

impl FakeClock {
    /// The Unix time a [`FakeClock::new`] starts at: 2026-01-01T00:00:00Z.
    pub const DEFAULT_START: Duration = Duration::from_secs(1_767_225_600);

    /// A fake clock at [`FakeClock::DEFAULT_START`].
    #[must_use]
    pub fn new() -> Self {
        Self::at_unix_time(Self::DEFAULT_START)
    }

    /// A fake clock whose wall clock reads `seconds` after the Unix epoch.
    #[must_use]
    pub fn at_unix_seconds(seconds: u64) -> Self {
        Self::at_unix_time(Duration::from_secs(seconds))
    }

    fn at_unix_time(start_unix: Duration) -> Self {
        Self {
            inner: Arc::new(FakeClockInner {
                start_unix,
                elapsed_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward for every clone of this clock.
    ///
    /// Saturates instead of overflowing after about 584 years of fake time.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .inner
            .elapsed_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(nanos))
            });
    }

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.elapsed_nanos.load(Ordering::SeqCst))
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeClock")
            .field("unix_time", &self.unix_time())
            .field("monotonic", &self.monotonic())
            .finish()
    }
}

impl Clock for FakeClock {
    fn monotonic(&self) -> Duration {
        self.elapsed()
    }

    fn unix_time(&self) -> Duration {
        self.inner.start_unix.saturating_add(self.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_now() {
        let a = FakeClock::new();
        let b = a.clone();
        a.advance(Duration::from_millis(1500));
        assert_eq!(b.monotonic(), Duration::from_millis(1500));
        assert_eq!(b.unix_seconds(), FakeClock::DEFAULT_START.as_secs() + 1);
    }

    #[test]
    fn advance_saturates() {
        let c = FakeClock::at_unix_seconds(0);
        c.advance(Duration::MAX);
        c.advance(Duration::MAX);
        assert_eq!(c.monotonic(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn system_clock_is_monotonic_and_after_2020() {
        let c = SystemClock;
        let a = c.monotonic();
        let b = c.monotonic();
        assert!(b >= a);
        assert!(c.unix_seconds() > 1_577_836_800);
    }
}
