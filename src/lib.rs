//! keywatch finds IAM access keys that are Active, have never been used, and belong to users with a console
//! password (CIS AWS Foundations 1.11), verifies each one live, and alerts through SNS.
//!
//! Data flows one way: [`route`] (scheduled | SQS | manual) → [`dispatch`] | [`account`] (check one account) →
//! [`inventory`] → [`evaluate`] → [`verify`] → [`ledger`] (what was said before) → [`remediate`] (opt-in) → [`notify`] →
//! [`report`]. [`handler`] holds what a Lambda container
//! keeps between invocations; [`event`] and [`config`] read what comes in. [`audit`] is the offline
//! `keywatch-audit`: the rules on a downloaded credential report, with no AWS access.

pub mod account;
pub mod audit;
pub mod aws;
pub mod cloudtrail;
pub mod config;
pub mod deadline;
pub mod dispatch;
pub mod error;
pub mod evaluate;
pub mod event;
pub mod handler;
pub mod inventory;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod permissions;
pub mod remediate;
pub mod report;
pub mod route;
pub mod verify;

pub use error::{Error, Result};
