//! A token bucket shared by every stream of one pull, so `--bwlimit` caps the total rate.
//!
//! It is a virtual-clock (GCRA) limiter: each consumed byte pushes a "theoretical arrival
//! time" forward by `1/rate`; a caller sleeps until that time. A small burst allowance
//! absorbs scheduling jitter without letting the average rate drift.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Burst allowance: how far behind schedule the bucket may fall and then catch up.
const BURST: Duration = Duration::from_millis(50);

/// Shared bandwidth limiter.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tat: Mutex<Instant>,
}

impl TokenBucket {
    /// A limiter allowing `bytes_per_sec` on average.
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec.max(1) as f64,
            tat: Mutex::new(Instant::now()),
        }
    }

    /// Accounts for `n` bytes and waits until the rate allows them.
    pub async fn consume(&self, n: u64) {
        let wake = {
            let mut tat = match self.tat.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let now = Instant::now();
            let floor = now.checked_sub(BURST).unwrap_or(now);
            let start = (*tat).max(floor);
            *tat = start + Duration::from_secs_f64(n as f64 / self.rate);
            *tat
        };
        if wake > Instant::now() {
            tokio::time::sleep_until(wake).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_faster_than_the_rate() {
        // 500 kB at 1 MB/s cannot take less than 0.5 s minus the burst allowance;
        // the upper bound is asserted over 10 s by the bandwidth integration test.
        let b = TokenBucket::new(1_000_000);
        let t0 = Instant::now();
        for _ in 0..10 {
            b.consume(50_000).await;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        assert!(elapsed >= 0.45, "{elapsed}");
    }
}
