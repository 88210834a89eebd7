//! A token bucket in bytes, refilled by elapsed time. The clock is a
//! parameter (`now`), so tests drive it without sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// Tokens a full bucket holds at `rate` bytes/s: 50 ms of traffic, at
/// least 16 KiB (one TLS record). Small, so a cap holds over short spans.
pub fn burst_bytes(rate: u64) -> f64 {
    (rate as f64 * 0.05).max(16_384.0)
}

/// The smallest write worth waking up for: 4 KiB (or the whole buffer,
/// or the whole burst when smaller), so a slow cap sends few large
/// writes instead of many dribbles.
const MIN_CHUNK: f64 = 4096.0;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    rate: u64,
    last: Option<Instant>,
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenBucket {
    /// An empty bucket that fills to its burst on first use.
    pub fn new() -> Self {
        Self {
            tokens: 0.0,
            rate: 0,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant, rate: u64) {
        let burst = burst_bytes(rate);
        match self.last {
            None => self.tokens = burst,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                // Tokens earned since `last` at the old rate, then clamped to
                // the new burst (a lower cap takes effect at once).
                let earned = elapsed * self.rate as f64;
                self.tokens = (self.tokens + earned).min(burst);
            }
        }
        self.rate = rate;
        self.last = Some(now);
    }

    /// How many of `want` bytes may be written at `now` under `rate`
    /// (bytes/s), or how long to wait before asking again.
    pub fn grant(&mut self, now: Instant, rate: u64, want: usize) -> Result<usize, Duration> {
        self.refill(now, rate);
        let need = (want as f64).min(MIN_CHUNK).min(burst_bytes(rate)).max(1.0);
        if self.tokens >= need {
            Ok(want.min(self.tokens.floor() as usize))
        } else {
            let missing = need - self.tokens;
            Err(Duration::from_secs_f64(missing / rate.max(1) as f64).max(Duration::from_millis(1)))
        }
    }

    /// `n` bytes were written (at most what [`Self::grant`] allowed).
    pub fn consume(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// Forget the state: the next use starts with a full burst.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the bucket like a writer that always wants `chunk` bytes and
    /// sleeps exactly as told; returns the bytes sent by `end`.
    fn send_for(bucket: &mut TokenBucket, start: Instant, end: Duration, rate: u64) -> u64 {
        let mut now = start;
        let mut sent = 0u64;
        while now < start + end {
            match bucket.grant(now, rate, 64 * 1024) {
                Ok(n) => {
                    bucket.consume(n);
                    sent += n as u64;
                }
                Err(wait) => now += wait,
            }
        }
        sent
    }

    #[test]
    fn long_run_rate_is_the_cap_plus_one_burst_at_most() {
        let rate = 500_000; // 4 Mbit/s
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        let sent = send_for(&mut b, t0, Duration::from_secs(10), rate);
        let cap = rate * 10;
        let burst = burst_bytes(rate) as u64;
        assert!(sent <= cap + burst, "sent {sent} > {cap} + burst {burst}");
        // ... and the writer is not starved: within one chunk of the cap.
        assert!(sent + 64 * 1024 >= cap, "sent {sent}, cap {cap}");
    }

    #[test]
    fn starts_with_a_small_burst_then_waits() {
        let rate = 250_000;
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        let first = b.grant(t0, rate, 1 << 20).unwrap();
        assert_eq!(first, 16_384, "burst at 2 Mbit/s is one 16 KiB record");
        b.consume(first);
        let wait = b.grant(t0, rate, 1 << 20).unwrap_err();
        // 4 KiB at 250 kB/s = 16.4 ms.
        assert!(
            (Duration::from_millis(16)..Duration::from_millis(17)).contains(&wait),
            "{wait:?}"
        );
        // After that wait, the 4 KiB are there.
        assert_eq!(b.grant(t0 + wait, rate, 1 << 20).unwrap(), 4096);
    }

    #[test]
    fn a_lower_cap_applies_at_once_and_a_higher_one_refills_faster() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        // Idle a long time at 100 MB/s: 5 MB of burst saved up.
        assert_eq!(b.grant(t0, 100_000_000, 10).unwrap(), 10);
        let t1 = t0 + Duration::from_secs(1);
        // The cap drops to 2 Mbit/s: at most its own burst goes out.
        let n = b.grant(t1, 250_000, 1 << 30).unwrap();
        assert_eq!(n, 16_384);
        b.consume(n);
        // Back to 100 MB/s: the 10 ms that passed under the low cap earned
        // 2,500 bytes only, less than a chunk; 1 ms more at the new rate
        // earns 100 kB.
        let t2 = t1 + Duration::from_millis(10);
        assert!(b.grant(t2, 100_000_000, 1 << 30).is_err());
        let t3 = t2 + Duration::from_millis(1);
        assert_eq!(b.grant(t3, 100_000_000, 1 << 30).unwrap(), 102_500);
    }

    #[test]
    fn small_writes_are_granted_whole() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        let n = b.grant(t0, 8_000, 100).unwrap();
        assert_eq!(n, 100);
    }
}
