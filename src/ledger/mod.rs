//! The ledger: what keywatch told people about each finding, across runs. One item per finding key per
//! account, in a DynamoDB table keywatch owns (`LEDGER_TABLE`). It is what makes "days since the first alert",
//! "announced once" and "new since the last alert" true; nothing here guesses from a key's age.
//!
//! This module is pure: [`Ledger`] holds the items as read and as they will be written, and each step of a check
//! changes them ([`Ledger::reconcile`], [`Ledger::deactivated`], [`Ledger::announced`]). [`table`] reads and
//! writes them.

pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::evaluate::{Evaluation, Finding, VerifiedUser};
pub use crate::model::{Change, History, Remediated};

pub use table::Table;

/// Resolved and announced-deactivated items expire (DynamoDB TTL) this long after they stopped being open.
pub const RETENTION: Duration = Duration::days(365);

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A finding that an alert named (or will name in this run).
    Open,
    /// keywatch deactivated the key. Never announced again as resolved; a finding again only if reactivated.
    Deactivated,
    /// No longer a finding, for the item's `resolved_reason`.
    Resolved,
}

/// Why an open finding stopped being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    KeyDeleted,
    UserDeleted,
    Used,
    DeactivatedBySomeoneElse,
    PasswordRemoved,
    Exempted,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::KeyDeleted => "the key was deleted",
            Reason::UserDeleted => "the user was deleted",
            Reason::Used => "the key was used",
            Reason::DeactivatedBySomeoneElse => "someone else deactivated the key",
            Reason::PasswordRemoved => "the user's console password was removed",
            Reason::Exempted => "the user is now exempt",
        }
    }
}

/// One ledger item, as stored. Times are RFC 3339 strings, so the AWS CLI shows them as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Partition key.
    pub account_id: String,
    /// Sort key.
    pub access_key_id: String,
    pub user_name: String,
    pub state: State,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    /// When SNS first accepted an alert naming this key: the notice period counts from here.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_alerted_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_alerted_at: Option<OffsetDateTime>,
    /// Alerts SNS accepted that named this key.
    #[serde(default)]
    pub alerts: u32,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deactivated_at: Option<OffsetDateTime>,
    /// The run that deactivated the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_run: Option<String>,
    /// Whether an alert SNS accepted said keywatch deactivated it.
    #[serde(default)]
    pub deactivation_announced: bool,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_reason: Option<Reason>,
    /// DynamoDB TTL (epoch seconds): set once the item stops being open and is announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Who the alerts went to (`OWNER_TAG_KEY`), so reminders and resolutions reach the same owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A finding that stopped being one since the last alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Who the earlier alerts went to; `null` without routing.
    pub owner: Option<String>,
    pub finding_id: String,
    pub user_name: String,
    pub access_key_id: String,
    pub reason: Reason,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_alerted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub resolved_at: OffsetDateTime,
}

/// An account's items: as last stored, and as this check will leave them.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    account_id: String,
    stored: BTreeMap<String, Item>,
    items: BTreeMap<String, Item>,
}

impl Ledger {
    pub fn new(account_id: &str, stored: Vec<Item>) -> Ledger {
        let stored: BTreeMap<String, Item> = stored
            .into_iter()
            .map(|item| (item.access_key_id.clone(), item))
            .collect();
        Ledger {
            account_id: account_id.to_string(),
            items: stored.clone(),
            stored,
        }
    }

    /// Users with an open finding: each is looked at live again, so a resolution has its exact reason.
    pub fn open_users(&self) -> BTreeSet<&str> {
        self.items
            .values()
            .filter(|item| item.state == State::Open)
            .map(|item| item.user_name.as_str())
            .collect()
    }

    /// Deactivations a delivered alert never announced (a publish failed after them), oldest first.
    pub fn unannounced(&self) -> Vec<Remediated> {
        let mut out: Vec<Remediated> = self
            .items
            .values()
            .filter(|item| item.state == State::Deactivated && !item.deactivation_announced)
            .map(|item| Remediated {
                finding_id: finding_id(&self.account_id, &item.user_name, &item.access_key_id),
                user_name: item.user_name.clone(),
                access_key_id: item.access_key_id.clone(),
                action: "deactivated",
                at: item.deactivated_at.unwrap_or(item.first_seen_at),
                owner: item.owner.clone(),
            })
            .collect();
        out.sort_by_key(|r| r.at);
        out
    }

    /// Marks each finding new or open and gives it its history, and resolves every open item that is no longer a
    /// finding, with the reason the live data shows. `notice_days` is `DEACTIVATE_AFTER_DAYS` when keys are
    /// deactivated. A key that was resolved or deactivated and is a finding again starts a fresh notice period.
    pub fn reconcile(
        &mut self,
        findings: &mut [Finding],
        evaluation_rest: &Evaluation,
        users: &[VerifiedUser],
        now: OffsetDateTime,
        notice_days: Option<u32>,
    ) -> Vec<Resolved> {
        let notice = |from: OffsetDateTime| notice_days.map(|d| from + Duration::days(d.into()));
        for finding in findings.iter_mut() {
            // An owner tag changed since: reminders and resolutions go to the owner of now.
            let owner = &finding.owner;
            if let Some(item) = self
                .items
                .get_mut(&finding.access_key_id)
                .filter(|item| item.state == State::Open && item.owner != *owner)
            {
                item.owner.clone_from(owner);
            }
            let item = self
                .items
                .get(&finding.access_key_id)
                .filter(|item| item.state == State::Open);
            finding.history = match item {
                Some(item) => History {
                    change: Some(Change::Open),
                    first_seen_at: Some(item.first_seen_at),
                    first_alerted_at: item.first_alerted_at,
                    deactivate_on: notice(item.first_alerted_at.unwrap_or(now)),
                },
                None => {
                    self.items.insert(
                        finding.access_key_id.clone(),
                        Item::new(&self.account_id, finding, now),
                    );
                    History {
                        change: Some(Change::New),
                        first_seen_at: Some(now),
                        first_alerted_at: None,
                        deactivate_on: notice(now),
                    }
                }
            };
        }
        let current: BTreeSet<&str> = findings.iter().map(|f| f.access_key_id.as_str()).collect();
        let mut resolved = Vec::new();
        for item in self.items.values_mut() {
            if item.state != State::Open || current.contains(item.access_key_id.as_str()) {
                continue;
            }
            let Some(reason) = resolution(item, evaluation_rest, users) else {
                continue;
            };
            item.state = State::Resolved;
            item.resolved_at = Some(now);
            item.resolved_reason = Some(reason);
            item.expires_at = Some((now + RETENTION).unix_timestamp());
            resolved.push(Resolved {
                owner: item.owner.clone(),
                finding_id: finding_id(&self.account_id, &item.user_name, &item.access_key_id),
                user_name: item.user_name.clone(),
                access_key_id: item.access_key_id.clone(),
                reason,
                first_alerted_at: item.first_alerted_at,
                resolved_at: now,
            });
        }
        resolved
    }

    /// Records keys keywatch deactivated in `run_id`, not yet announced.
    pub fn deactivated(&mut self, remediated: &[Remediated], run_id: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for done in remediated {
            if let Some(item) = self.items.get_mut(&done.access_key_id) {
                item.state = State::Deactivated;
                item.deactivated_at = Some(done.at);
                item.deactivated_run = Some(run_id.to_string());
                item.deactivation_announced = false;
                keys.push(done.access_key_id.clone());
            }
        }
        keys
    }

    /// After SNS accepted every part of an alert at `now`: each finding it named was alerted, and each
    /// deactivation it named was announced.
    /// Returns the keys of the items it changed, and of the resolutions the alert carried: what to write.
    pub fn announced(
        &mut self,
        findings: &[Finding],
        deactivations: &[Remediated],
        resolved: &[Resolved],
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        for finding in findings {
            if let Some(item) = self.items.get_mut(&finding.access_key_id) {
                item.first_alerted_at.get_or_insert(now);
                item.last_alerted_at = Some(now);
                item.alerts = item.alerts.saturating_add(1);
                keys.push(finding.access_key_id.clone());
            }
        }
        for done in deactivations {
            if let Some(item) = self.items.get_mut(&done.access_key_id) {
                item.deactivation_announced = true;
                item.expires_at = Some((done.at + RETENTION).unix_timestamp());
                keys.push(done.access_key_id.clone());
            }
        }
        keys.extend(resolved.iter().map(|r| r.access_key_id.clone()));
        keys
    }

    /// The last time an alert SNS accepted named an open finding (of this owner, when routing by owner).
    pub fn last_alert(&self, owner: Option<&str>) -> Option<OffsetDateTime> {
        self.stored
            .values()
            .filter(|item| item.state == State::Open)
            .filter(|item| owner.is_none() || item.owner.as_deref() == owner)
            .filter_map(|item| item.last_alerted_at)
            .max()
    }

    /// Items that differ from what is stored, limited to `keys` when given: what the next write sends.
    pub fn changed(&self, keys: Option<&[String]>) -> Vec<Item> {
        self.items
            .iter()
            .filter(|(key, _)| keys.is_none_or(|keys| keys.contains(key)))
            .filter(|(key, item)| self.stored.get(*key) != Some(item))
            .map(|(_, item)| item.clone())
            .collect()
    }

    /// After a successful write: these items are what is stored now.
    pub fn stored_now(&mut self, written: &[Item]) {
        for item in written {
            self.stored.insert(item.access_key_id.clone(), item.clone());
        }
    }
}

impl Item {
    fn new(account_id: &str, finding: &Finding, now: OffsetDateTime) -> Item {
        Item {
            account_id: account_id.to_string(),
            access_key_id: finding.access_key_id.clone(),
            user_name: finding.user_name.clone(),
            state: State::Open,
            first_seen_at: now,
            first_alerted_at: None,
            last_alerted_at: None,
            alerts: 0,
            deactivated_at: None,
            deactivated_run: None,
            deactivation_announced: false,
            resolved_at: None,
            resolved_reason: None,
            expires_at: None,
            owner: finding.owner.clone(),
        }
    }
}

fn finding_id(account_id: &str, user_name: &str, key: &str) -> String {
    format!("{account_id}/{user_name}/{key}")
}

/// Why an open item is no longer a finding, from this run's live data; `None` while it is only in its grace
/// period (still open, not alerted).
fn resolution(item: &Item, evaluation: &Evaluation, users: &[VerifiedUser]) -> Option<Reason> {
    let key = item.access_key_id.as_str();
    if evaluation
        .exempted
        .iter()
        .any(|e| e.finding.access_key_id == key)
    {
        return Some(Reason::Exempted);
    }
    if evaluation
        .pending
        .iter()
        .any(|p| p.finding.access_key_id == key)
    {
        return None;
    }
    // Users with open items are always verified live; one missing was deleted.
    let Some(user) = users.iter().find(|u| u.user.name == item.user_name) else {
        return Some(Reason::UserDeleted);
    };
    let Some(live) = user.user.keys.iter().find(|k| k.id.as_deref() == Some(key)) else {
        return Some(Reason::KeyDeleted);
    };
    Some(if live.last_used.is_some() {
        Reason::Used
    } else if !live.active {
        Reason::DeactivatedBySomeoneElse
    } else if !user.user.password_enabled {
        Reason::PasswordRemoved
    } else {
        // Breaks the rule but is no finding: nothing else makes that so. Keep it open.
        return None;
    })
}

/// Days from `since` to `now`, whole.
pub fn days_between(since: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - since).whole_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Exempted, Pending};
    use crate::model::{KeySnapshot, UserSnapshot};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const ACCOUNT: &str = "123456789012";

    fn finding(user: &str, key: &str) -> Finding {
        Finding {
            finding_id: finding_id(ACCOUNT, user, key),
            rule: "r",
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            access_key_id: key.into(),
            key_created: Some(NOW - Duration::days(30)),
            key_age_days: Some(30),
            user_created: NOW - Duration::days(30),
            password_last_used: None,
            created_at_user_setup: false,
            exemption_expired_on: None,
            owner: None,
            history: History::default(),
        }
    }

    fn item(user: &str, key: &str, state: State, alerted: Option<OffsetDateTime>) -> Item {
        Item {
            first_alerted_at: alerted,
            last_alerted_at: alerted,
            alerts: u32::from(alerted.is_some()),
            state,
            ..Item::new(ACCOUNT, &finding(user, key), NOW - Duration::days(40))
        }
    }

    fn user(name: &str, password: bool, keys: &[(&str, bool, bool)]) -> VerifiedUser {
        VerifiedUser {
            user: UserSnapshot {
                name: name.into(),
                arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
                path: "/".into(),
                created: NOW - Duration::days(30),
                password_enabled: password,
                password_last_used: None,
                keys: keys
                    .iter()
                    .map(|&(id, active, used)| KeySnapshot {
                        id: Some(id.into()),
                        slot: None,
                        active,
                        created: Some(NOW - Duration::days(30)),
                        last_used: used.then_some(NOW - Duration::days(1)),
                    })
                    .collect(),
            },
            exempt_tag: None,
            owner: None,
        }
    }

    #[test]
    fn findings_are_new_or_open_from_the_ledger() {
        let alerted = NOW - Duration::days(3);
        let mut ledger = Ledger::new(
            ACCOUNT,
            vec![
                item("ann", "OPEN", State::Open, Some(alerted)),
                item("bob", "BACK", State::Resolved, Some(alerted)),
                item("cy", "REACTIVATED", State::Deactivated, Some(alerted)),
            ],
        );
        let mut findings = [
            finding("ann", "OPEN"),
            finding("dee", "NEW"),
            finding("bob", "BACK"),
            finding("cy", "REACTIVATED"),
        ];
        let resolved = ledger.reconcile(&mut findings, &Evaluation::default(), &[], NOW, Some(7));
        assert!(resolved.is_empty());
        let open = &findings[0].history;
        assert_eq!(open.change, Some(Change::Open));
        assert_eq!(open.first_alerted_at, Some(alerted));
        assert_eq!(open.deactivate_on, Some(alerted + Duration::days(7)));
        // New, and a resolved or deactivated key that is a finding again: a fresh notice period.
        for f in &findings[1..] {
            assert_eq!(f.history.change, Some(Change::New), "{}", f.access_key_id);
            assert_eq!(f.history.first_alerted_at, None);
            assert_eq!(f.history.first_seen_at, Some(NOW));
            assert_eq!(f.history.deactivate_on, Some(NOW + Duration::days(7)));
        }
        let changed: Vec<String> = ledger
            .changed(None)
            .into_iter()
            .map(|i| i.access_key_id)
            .collect();
        assert_eq!(
            changed,
            ["BACK", "NEW", "REACTIVATED"],
            "only what changed is written"
        );
    }

    #[test]
    fn open_items_that_are_no_longer_findings_resolve_with_their_reason() {
        let alerted = Some(NOW - Duration::days(2));
        let cases: &[(&str, Vec<VerifiedUser>, Evaluation, Option<Reason>)] = &[
            (
                "user gone",
                vec![],
                Evaluation::default(),
                Some(Reason::UserDeleted),
            ),
            (
                "key gone",
                vec![user("ann", true, &[("OTHER", true, false)])],
                Evaluation::default(),
                Some(Reason::KeyDeleted),
            ),
            (
                "used",
                vec![user("ann", true, &[("K", true, true)])],
                Evaluation::default(),
                Some(Reason::Used),
            ),
            (
                "inactive",
                vec![user("ann", true, &[("K", false, false)])],
                Evaluation::default(),
                Some(Reason::DeactivatedBySomeoneElse),
            ),
            (
                "no password",
                vec![user("ann", false, &[("K", true, false)])],
                Evaluation::default(),
                Some(Reason::PasswordRemoved),
            ),
            (
                "exempt",
                vec![user("ann", true, &[("K", true, false)])],
                Evaluation {
                    exempted: vec![Exempted {
                        finding: finding("ann", "K"),
                        reason: "tag".into(),
                    }],
                    ..Evaluation::default()
                },
                Some(Reason::Exempted),
            ),
            (
                "in a grace period: still open",
                vec![user("ann", true, &[("K", true, false)])],
                Evaluation {
                    pending: vec![Pending {
                        finding: finding("ann", "K"),
                        grace_ends: NOW + Duration::hours(1),
                    }],
                    ..Evaluation::default()
                },
                None,
            ),
        ];
        for (name, users, evaluation, expected) in cases {
            let mut ledger = Ledger::new(ACCOUNT, vec![item("ann", "K", State::Open, alerted)]);
            let resolved = ledger.reconcile(&mut [], evaluation, users, NOW, None);
            assert_eq!(resolved.first().map(|r| r.reason), *expected, "{name}");
            assert_eq!(ledger.changed(None).len(), resolved.len(), "{name}");
            if let Some(r) = resolved.first() {
                assert_eq!((r.first_alerted_at, r.resolved_at), (alerted, NOW));
                let stored = &ledger.changed(None)[0];
                assert_eq!(stored.state, State::Resolved);
                assert_eq!(stored.expires_at, Some((NOW + RETENTION).unix_timestamp()));
            }
        }
        // A deactivated or resolved item is never resolved (again).
        for state in [State::Deactivated, State::Resolved] {
            let mut ledger = Ledger::new(ACCOUNT, vec![item("ann", "K", state, alerted)]);
            assert!(ledger
                .reconcile(&mut [], &Evaluation::default(), &[], NOW, None)
                .is_empty());
        }
    }

    #[test]
    fn deactivations_are_stored_unannounced_until_an_alert_names_them() {
        let alerted = NOW - Duration::days(8);
        let mut ledger = Ledger::new(ACCOUNT, vec![item("ann", "K", State::Open, Some(alerted))]);
        let mut findings = [finding("ann", "K")];
        ledger.reconcile(&mut findings, &Evaluation::default(), &[], NOW, Some(7));
        let done = Remediated {
            finding_id: findings[0].finding_id.clone(),
            user_name: "ann".into(),
            access_key_id: "K".into(),
            action: "deactivated",
            at: NOW,
            owner: None,
        };
        let keys = ledger.deactivated(std::slice::from_ref(&done), "run-1");
        let written = ledger.changed(Some(&keys));
        assert_eq!(written[0].state, State::Deactivated);
        assert!(!written[0].deactivation_announced);
        ledger.stored_now(&written);
        // The publish failed: the next run reads the item and announces it.
        let mut next = Ledger::new(ACCOUNT, written);
        assert_eq!(next.unannounced(), std::slice::from_ref(&done));
        next.announced(
            &[],
            std::slice::from_ref(&done),
            &[],
            NOW + Duration::hours(1),
        );
        let stored = &next.changed(None)[0];
        assert!(stored.deactivation_announced && stored.state == State::Deactivated);
        assert!(Ledger::new(ACCOUNT, vec![stored.clone()])
            .unannounced()
            .is_empty());
    }

    #[test]
    fn an_alert_marks_first_and_last_alert() {
        let mut ledger = Ledger::new(ACCOUNT, vec![]);
        let mut findings = [finding("ann", "K")];
        ledger.reconcile(&mut findings, &Evaluation::default(), &[], NOW, None);
        let keys = ledger.announced(&findings, &[], &[], NOW);
        assert_eq!(keys, ["K"]);
        let first = ledger.changed(None).remove(0);
        assert_eq!((first.first_alerted_at, first.alerts), (Some(NOW), 1));
        ledger.stored_now(std::slice::from_ref(&first));
        assert_eq!(ledger.last_alert(None), Some(NOW));
        let later = NOW + Duration::days(1);
        let mut again = Ledger::new(ACCOUNT, vec![first]);
        let mut findings = [finding("ann", "K")];
        again.reconcile(&mut findings, &Evaluation::default(), &[], later, None);
        assert!(
            again.changed(None).is_empty(),
            "an unchanged open finding writes nothing"
        );
        again.announced(&findings, &[], &[], later);
        let second = again.changed(None).remove(0);
        assert_eq!(
            (
                second.first_alerted_at,
                second.last_alerted_at,
                second.alerts
            ),
            (Some(NOW), Some(later), 2)
        );
    }
}
