//! The invocation's deadline. Each phase runs under it so the function returns a clear error before Lambda
//! kills it, instead of dying with a bare timeout.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{Error, Result};

/// Used when the runtime gives no deadline (a local run without one): Lambda's own maximum.
const NO_DEADLINE_GIVEN: Duration = Duration::from_secs(900);
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
        let budget = if deadline == SystemTime::UNIX_EPOCH {
            NO_DEADLINE_GIVEN
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
