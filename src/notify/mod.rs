//! Delivering the report to people and machines. Rendering is pure ([`render`]); each sink is one file.

pub mod chat;
pub mod notice;
pub mod recheck;
pub mod render;
pub mod security_hub;
pub mod sns;
pub mod when;

use std::future::Future;

use crate::deadline::Deadline;
use crate::error::Result;
use crate::report::{Notification, Report};

/// Somewhere alerts go. A sink delivers every part or fails: a partly delivered alert is an error.
pub trait Sink: Send + Sync {
    fn publish(
        &self,
        report: &Report,
        kind: when::Kind,
        deadline: &Deadline,
    ) -> impl Future<Output = Result<Vec<Notification>>> + Send;
}
