//! CPU time actually spent on a request, measured, not sampled (issue 15's metering).
//!
//! A request's future runs inside [`metered`]: each poll reads the thread's CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`) before and after, and adds the difference to the request's
//! [`Charge`]. Work handed to other threads on the request's behalf (SQLite jobs, Argon2)
//! runs inside [`on_behalf`] with the charge taken from the task ([`current`]) when the work
//! was handed over, so it is counted too. What runs outside any request (HTTP parsing
//! before the tenant is known, background jobs) is not charged to a tenant: it is the
//! platform's unattributed overhead.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use cpu_time::ThreadTime;

/// CPU nanoseconds charged to one request; cloned into the work done for it.
#[derive(Debug, Clone, Default)]
pub struct Charge(Arc<AtomicU64>);

impl Charge {
    /// A new, empty charge.
    pub fn new() -> Self {
        Self::default()
    }

    /// The nanoseconds charged so far.
    pub fn nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

tokio::task_local! {
    static CHARGE: Charge;
}

/// The charge of the request this task serves, if any.
pub fn current() -> Option<Charge> {
    CHARGE.try_with(Charge::clone).ok()
}

/// The calling thread's CPU time in nanoseconds (`None` where the clock is unavailable:
/// nothing is charged then).
fn thread_nanos() -> Option<u64> {
    ThreadTime::try_now()
        .ok()
        .map(|t| u64::try_from(t.as_duration().as_nanos()).unwrap_or(u64::MAX))
}

/// Runs `f` on this thread and adds its CPU time to `charge` (if any).
pub fn on_behalf<T>(charge: Option<&Charge>, f: impl FnOnce() -> T) -> T {
    let Some(charge) = charge else {
        return f();
    };
    let start = thread_nanos();
    let out = f();
    if let (Some(a), Some(b)) = (start, thread_nanos()) {
        charge.add(b.saturating_sub(a));
    }
    out
}

/// Runs `fut` as a metered request: its polls' CPU time goes to `charge`, and work it hands
/// over through [`current`] + [`on_behalf`] too.
pub async fn metered<F: Future>(charge: Charge, fut: F) -> F::Output {
    CHARGE
        .scope(
            charge.clone(),
            Metered {
                inner: Box::pin(fut),
                charge,
            },
        )
        .await
}

struct Metered<F: Future> {
    inner: Pin<Box<F>>,
    charge: Charge,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = thread_nanos();
        let out = self.inner.as_mut().poll(cx);
        if let (Some(a), Some(b)) = (start, thread_nanos()) {
            self.charge.add(b.saturating_sub(a));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Burns `d` of this thread's CPU time (by its CPU clock, so a loaded machine only
    /// makes it take longer).
    fn spin(d: Duration) -> u64 {
        let start = ThreadTime::now();
        let mut x = 0u64;
        while start.elapsed() < d {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        x
    }

    #[tokio::test]
    async fn polls_and_work_on_behalf_are_charged_sleep_is_not() {
        let c = Charge::new();
        let seen = metered(c.clone(), async {
            std::hint::black_box(spin(Duration::from_millis(30)));
            // Idle time (a sleep, a database wait) costs no CPU.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let charge = current();
            std::thread::spawn(move || {
                on_behalf(charge.as_ref(), || spin(Duration::from_millis(30)))
            })
            .join()
            .ok();
            current().is_some()
        })
        .await;
        assert!(seen, "the request's tasks see its charge");
        let ms = c.nanos() / 1_000_000;
        // The 60 ms of CPU spun, plus the little the rest took; the sleep's 50 ms of wall
        // time are not in it.
        assert!((60..100).contains(&ms), "charged {ms} ms");
    }

    #[tokio::test]
    async fn outside_a_request_nothing_is_charged() {
        assert!(current().is_none());
        assert_eq!(on_behalf(None, || 7), 7);
        let a = Charge::new();
        let b = Charge::new();
        let (ra, rb) = tokio::join!(
            metered(a.clone(), async { spin(Duration::from_millis(20)) }),
            metered(b.clone(), async { 1 })
        );
        std::hint::black_box((ra, rb));
        assert!(a.nanos() > 10_000_000, "{}", a.nanos());
        assert!(b.nanos() < a.nanos() / 4, "{} vs {}", b.nanos(), a.nanos());
    }
}
