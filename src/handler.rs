//! The function as Lambda holds it between invocations: settings and base clients, built once at cold start.
//! [`crate::route`] decides what an event asks for; [`crate::account`] checks one account.

use tokio::sync::OnceCell;

use crate::aws::{aws_error, Clients};
use crate::config::Settings;
use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// Built once at cold start and shared by every invocation of the container.
pub struct Keywatch {
    pub(crate) settings: Settings,
    pub(crate) clients: Clients,
    own_account: OnceCell<String>,
}

impl Keywatch {
    pub fn new(settings: Settings, clients: Clients) -> Self {
        Keywatch {
            settings,
            clients,
            own_account: OnceCell::new(),
        }
    }

    /// The function's own account, asked once per container (`sts:GetCallerIdentity` needs no permission).
    pub(crate) async fn own_account(&self, clients: &Clients, deadline: &Deadline) -> Result<&str> {
        let account = self
            .own_account
            .get_or_try_init(|| {
                deadline.run("identifying the account", async {
                    let identity = clients.sts.get_caller_identity().send().await;
                    let identity = identity.map_err(|e| aws_error("sts:GetCallerIdentity", e))?;
                    // An error is not cached: the next invocation asks again.
                    identity
                        .account
                        .filter(|account| !account.is_empty())
                        .ok_or(Error::IncompleteResponse {
                            action: "sts:GetCallerIdentity",
                            missing: "an account ID",
                            context: None,
                        })
                })
            })
            .await?;
        Ok(account.as_str())
    }
}
