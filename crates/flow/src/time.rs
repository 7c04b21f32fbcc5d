//! Time in Caracal: Unix seconds, 15 s buckets aligned to multiples of 15 s, and the `Clock`
//! through which every stage reads "now" so logic is tested with chosen times and never sleeps.

/// Width of an aggregation bucket in seconds.
pub const BUCKET_SECONDS: i64 = 15;

/// Start of the bucket that contains `unix_seconds` (floor to a multiple of 15, also below 0).
pub fn bucket_start(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS
}

/// A source of the current time in Unix seconds.
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix seconds.
    fn now(&self) -> i64;
}

/// The system's wall clock, for binaries and for tests that run against real time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock set by hand, for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock that reads `now` until changed.
    pub fn new(now: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(now))
    }
    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, std::sync::atomic::Ordering::SeqCst);
    }
    /// Moves the time forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_fifteen_seconds_also_before_the_epoch() {
        assert_eq!(bucket_start(0), 0);
        assert_eq!(bucket_start(14), 0);
        assert_eq!(bucket_start(15), 15);
        assert_eq!(bucket_start(1_700_000_007), 1_699_999_995);
        assert_eq!(bucket_start(-1), -15);
    }
}
