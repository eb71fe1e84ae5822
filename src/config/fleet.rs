//! Which accounts one deployment checks, and how it reaches them: `ACCOUNTS`, `EXCLUDE_ACCOUNTS`,
//! `MEMBER_ROLE_NAME`, `WORK_QUEUE_URL` and `MAX_RECEIVE_COUNT`.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// `ACCOUNTS`: the function's own account, every ACTIVE account of the organization, or a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Own,
    Organization,
    Listed(Vec<String>),
}

/// The role keywatch assumes in every account but its own, e.g. `keywatch-member` or `security/keywatch-member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole(String);

impl MemberRole {
    pub const DEFAULT: &'static str = "keywatch-member";

    pub fn arn(&self, partition: &str, account_id: &str) -> String {
        format!("arn:{partition}:iam::{account_id}:role/{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub scope: Scope,
    pub exclude: BTreeSet<String>,
    pub member_role: MemberRole,
    /// Where dispatch sends one message per account; required unless the scope is the own account.
    pub work_queue_url: Option<String>,
    /// The work queue's redrive `maxReceiveCount`: the receive on which a failed check is its last attempt.
    pub max_receive_count: u32,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            scope: Scope::Own,
            exclude: BTreeSet::new(),
            member_role: MemberRole(MemberRole::DEFAULT.to_string()),
            work_queue_url: None,
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
        }
    }
}

pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 3;

impl Fleet {
    /// Reads the fleet variables through `var` (trimmed, empty as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let scope = match var("ACCOUNTS") {
            None => Scope::Own,
            Some(value) if value.eq_ignore_ascii_case("self") => Scope::Own,
            Some(value) if value.eq_ignore_ascii_case("organization") => Scope::Organization,
            Some(value) => Scope::Listed(account_list("ACCOUNTS", &value)?.into_iter().collect()),
        };
        let exclude = match var("EXCLUDE_ACCOUNTS") {
            None => BTreeSet::new(),
            Some(value) => account_list("EXCLUDE_ACCOUNTS", &value)?,
        };
        let member_role = match var("MEMBER_ROLE_NAME") {
            None => MemberRole(MemberRole::DEFAULT.to_string()),
            Some(name) => MemberRole(role_name(&name)?),
        };
        let work_queue_url = var("WORK_QUEUE_URL");
        if let Some(url) = &work_queue_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(
                    "WORK_QUEUE_URL",
                    format!("{url:?} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT_ID/NAME)"),
                ));
            }
        }
        if scope != Scope::Own && work_queue_url.is_none() {
            return Err(invalid(
                "WORK_QUEUE_URL",
                "not set; it is required when ACCOUNTS is not self (the template creates the queue)".to_string(),
            ));
        }
        let max_receive_count = match var("MAX_RECEIVE_COUNT") {
            None => DEFAULT_MAX_RECEIVE_COUNT,
            Some(value) => match value.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "MAX_RECEIVE_COUNT",
                        format!("{value:?} is not a whole number from 1 to 1000"),
                    ))
                }
            },
        };
        Ok(Fleet {
            scope,
            exclude,
            member_role,
            work_queue_url,
            max_receive_count,
        })
    }
}

/// A 12-digit AWS account ID.
pub fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

fn account_list(variable: &'static str, value: &str) -> Result<BTreeSet<String>> {
    let mut accounts = BTreeSet::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if !is_account_id(entry) {
            return Err(invalid(
                variable,
                format!("{entry:?} is not a 12-digit account ID (expected self, organization or IDs separated by commas)"),
            ));
        }
        accounts.insert(entry.to_string());
    }
    if accounts.is_empty() {
        return Err(invalid(variable, "lists no account ID".to_string()));
    }
    Ok(accounts)
}

/// A role name with an optional path, as IAM allows them: `name` or `path/to/name`.
fn role_name(value: &str) -> Result<String> {
    let value = value.trim_matches('/');
    let name = value.rsplit('/').next().unwrap_or("");
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b);
    let valid = !name.is_empty()
        && name.len() <= 64
        && value.len() <= 512
        && value
            .split('/')
            .all(|part| !part.is_empty() && part.bytes().all(allowed));
    if valid {
        Ok(value.to_string())
    } else {
        Err(invalid(
            "MEMBER_ROLE_NAME",
            format!("{value:?} is not an IAM role name (letters, digits and +=,.@_-, at most 64; a path may come first: security/keywatch-member)"),
        ))
    }
}

fn invalid(variable: &'static str, reason: String) -> Error {
    Error::Config { variable, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(vars: &[(&str, &str)]) -> Result<Fleet> {
        Fleet::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111122223333/keywatch-work";

    #[test]
    fn accepted() {
        assert_eq!(fleet(&[]).unwrap(), Fleet::default());
        let org = fleet(&[("ACCOUNTS", "Organization"), ("WORK_QUEUE_URL", QUEUE)]).unwrap();
        assert_eq!(org.scope, Scope::Organization);
        let listed = fleet(&[
            ("ACCOUNTS", "222233334444, 111122223333,111122223333"),
            ("EXCLUDE_ACCOUNTS", "999988887777"),
            ("MEMBER_ROLE_NAME", "/security/keywatch-member/"),
            ("WORK_QUEUE_URL", QUEUE),
            ("MAX_RECEIVE_COUNT", "5"),
        ])
        .unwrap();
        assert_eq!(
            listed.scope,
            Scope::Listed(vec!["111122223333".into(), "222233334444".into()])
        );
        assert!(listed.exclude.contains("999988887777"));
        assert_eq!(
            listed.member_role.arn("aws", "111122223333"),
            "arn:aws:iam::111122223333:role/security/keywatch-member"
        );
        assert_eq!(listed.max_receive_count, 5);
        assert_eq!(
            Fleet::default().member_role.arn("aws-cn", "111122223333"),
            "arn:aws-cn:iam::111122223333:role/keywatch-member"
        );
    }

    #[test]
    fn rejected_values_name_their_variable() {
        for (vars, variable) in [
            (&[("ACCOUNTS", "organisation")][..], "ACCOUNTS"),
            (
                &[("ACCOUNTS", "12345"), ("WORK_QUEUE_URL", QUEUE)],
                "ACCOUNTS",
            ),
            (&[("ACCOUNTS", ",")], "ACCOUNTS"),
            (&[("ACCOUNTS", "organization")], "WORK_QUEUE_URL"),
            (&[("ACCOUNTS", "111122223333")], "WORK_QUEUE_URL"),
            (&[("WORK_QUEUE_URL", "keywatch-work")], "WORK_QUEUE_URL"),
            (&[("EXCLUDE_ACCOUNTS", "me")], "EXCLUDE_ACCOUNTS"),
            (
                &[("MEMBER_ROLE_NAME", "keywatch member")],
                "MEMBER_ROLE_NAME",
            ),
            (&[("MEMBER_ROLE_NAME", "a//b")], "MEMBER_ROLE_NAME"),
            (&[("MAX_RECEIVE_COUNT", "0")], "MAX_RECEIVE_COUNT"),
        ] {
            match fleet(vars) {
                Err(Error::Config { variable: v, .. }) => assert_eq!(v, variable, "{vars:?}"),
                other => panic!("{vars:?}: expected a config error, got {other:?}"),
            }
        }
    }
}
