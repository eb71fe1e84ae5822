//! keywatch finds IAM access keys that are Active, have never been used, and belong to users with a console
//! password (CIS AWS Foundations 1.11), verifies each one live, and alerts through SNS.
//!
//! Data flows one way: [`event`] → [`config`] → [`inventory`] → [`evaluate`] → [`verify`] → [`notify`] →
//! [`report`]. [`handler`] wires the steps together for one invocation.

pub mod aws;
pub mod config;
pub mod deadline;
pub mod error;
pub mod evaluate;
pub mod event;
pub mod handler;
pub mod inventory;
pub mod logging;
pub mod model;
pub mod notify;
pub mod permissions;
pub mod report;
pub mod verify;

pub use error::{Error, Result};
