//! The invocation's deadline. Each phase runs under it so the function returns a clear error before Lambda
//! kills it, instead of dying with a bare timeout.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{Error, Result};

/// Used when the runtime gives no deadline (a local run without one): Lambda's own maximum.
const NO_DEADLINE_GIVEN: Duration = Duration::from_secs(900);
/// 2001-09-09 (10^12 ms): any real deadline is later; a smaller value is a timeout, not a date.
const EARLIEST_REAL_DEADLINE: Duration = Duration::from_millis(1_000_000_000_000);
/// Time kept back to send the error response: a tenth of the budget, between 200 ms and 3 s.
const MIN_MARGIN: Duration = Duration::from_millis(200);
const MAX_MARGIN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// From the Lambda context's deadline, keeping a margin back for the error response.
    pub fn from_lambda(deadline: SystemTime) -> Self {
        let since_epoch = deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let budget = if since_epoch.is_zero() {
            NO_DEADLINE_GIVEN
        } else if since_epoch < EARLIEST_REAL_DEADLINE {
            // Lambda sends a date in epoch milliseconds; some emulators (cargo lambda watch) send the timeout
            // itself (600000). Read as a date, that lies in 1970 and would end every run at once.
            since_epoch
        } else {
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        };
        let margin = (budget / 10).clamp(MIN_MARGIN, MAX_MARGIN);
        Self::after(budget.saturating_sub(margin))
    }

    pub fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
        }
    }

    /// An earlier deadline that keeps `reserve` of this one back, for what must happen after a phase fails.
    pub fn reserving(&self, reserve: Duration) -> Deadline {
        let now = Instant::now();
        Deadline {
            at: self.at.checked_sub(reserve).unwrap_or(now).max(now),
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Runs one phase; past the deadline it stops and says which phase did not finish.
    pub async fn run<T>(
        &self,
        phase: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout_at(self.at, work)
            .await
            .map_err(|_| Error::Deadline { phase })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_from_the_runtime() {
        let now = SystemTime::now();
        let near = |deadline: Deadline, expected: Duration| {
            let remaining = deadline.remaining();
            assert!(
                remaining <= expected && remaining + Duration::from_millis(500) > expected,
                "{remaining:?} vs {expected:?}"
            );
        };
        // A real deadline 60 s ahead keeps 3 s back (a tenth, capped at 3 s).
        near(
            Deadline::from_lambda(now + Duration::from_secs(60)),
            Duration::from_secs(57),
        );
        // A timeout sent in place of a date (cargo lambda watch sends 600000).
        near(
            Deadline::from_lambda(SystemTime::UNIX_EPOCH + Duration::from_secs(600)),
            Duration::from_secs(597),
        );
        near(
            Deadline::from_lambda(SystemTime::UNIX_EPOCH),
            NO_DEADLINE_GIVEN - MAX_MARGIN,
        );
        // A reserve comes off the end; what a reserve eats entirely leaves nothing.
        near(
            Deadline::after(Duration::from_secs(10)).reserving(Duration::from_secs(2)),
            Duration::from_secs(8),
        );
        assert!(Deadline::after(Duration::from_secs(1))
            .reserving(Duration::from_secs(2))
            .remaining()
            .is_zero());
        // A deadline already past leaves nothing.
        assert!(Deadline::from_lambda(now - Duration::from_secs(5))
            .remaining()
            .is_zero());
    }
}
