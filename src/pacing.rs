//! Token buckets that keep each AWS API inside its quota.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `burst` calls at once, then `rate` calls a second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token now, or says how long until one is there.
    fn try_take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("bucket lock");
        let now = Instant::now();
        let refill = (now - s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.rate))
        }
    }

    /// Waits for a token (fair enough for our callers: they retry in a loop).
    pub async fn acquire(&self) {
        while let Err(wait) = self.try_take() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let b = TokenBucket::new(10.0, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            b.acquire().await;
        }
        assert_eq!(Instant::now(), t0, "the burst is free");
        for _ in 0..20 {
            b.acquire().await;
        }
        let took = Instant::now() - t0;
        assert!(
            took >= Duration::from_millis(1990) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }
}
