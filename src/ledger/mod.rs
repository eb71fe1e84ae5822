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

use crate::evaluate::{never_used_key, Evaluation, Finding, Rule, VerifiedUser};
pub use crate::model::{Change, History, Notice, Remediated};

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
    /// Another rule's finding on the same key: keywatch deactivated it.
    DeactivatedByKeywatch,
    /// A rule about a user's keys together (two active keys) no longer holds.
    OneActiveKey,
    /// `UNUSED_DAYS` or `ROTATE_DAYS` changed, and the key no longer breaks its rule.
    SettingChanged,
    /// `RULES` no longer names the rule.
    RuleOff,
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
            Reason::DeactivatedByKeywatch => "keywatch deactivated the key",
            Reason::OneActiveKey => "the user has one active key or none",
            Reason::SettingChanged => {
                "a setting changed (UNUSED_DAYS or ROTATE_DAYS): the rule no longer applies"
            }
            Reason::RuleOff => "keywatch no longer checks this rule (RULES)",
        }
    }
}

/// One ledger item, as stored. Times are RFC 3339 strings, so the AWS CLI shows them as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Partition key.
    pub account_id: String,
    /// Sort key: the key ID for today's rule, else `user/key/rule` or `user/rule` ([`Finding::ledger_key`]).
    pub access_key_id: String,
    /// The finding's rule; absent for today's rule, as on every item written before there were others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
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
    /// Bumped by every write, and every write is conditional on the version its check read: a stale check
    /// fails instead of overwriting a newer state. Items written before versions read as 0.
    #[serde(default)]
    pub version: u64,
    /// The notice: when SNS accepted the first alert that announced this key's deactivation to `notice_owner`.
    /// Alerts sent while remediation was off announce nothing and set nothing here.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub notice_at: Option<OffsetDateTime>,
    /// The owner the notice was delivered to; a new owner gets a notice of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_owner: Option<String>,
    /// The date the delivered notice announced: the key is deactivated on or after it, never before.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deactivate_on: Option<OffsetDateTime>,
    /// `DEACTIVATE_AFTER_DAYS` when the date was announced: raising it moves the date later, lowering it never
    /// brings it forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_days: Option<u32>,
    /// Written before `UpdateAccessKey` is sent: if the key is found Inactive later and nothing else was
    /// recorded, keywatch did it (and says so, with its undo command), even when every later write failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivating_run: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deactivating_at: Option<OffsetDateTime>,
    /// For a key resolved because its user became exempt by tag: the tag as `key=value`, named once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt_tag: Option<String>,
}

/// A finding that stopped being one since the last alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Who the earlier alerts went to; `null` without routing.
    pub owner: Option<String>,
    pub finding_id: String,
    pub rule: String,
    pub user_name: String,
    /// The key the finding named (the first, for a rule about a user's keys together).
    pub access_key_id: String,
    /// The item's sort key.
    #[serde(skip)]
    pub ledger_key: String,
    pub reason: Reason,
    /// For `exempted`: the exemption tag as `key=value` (whoever may tag users may exempt them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exempt_tag: Option<String>,
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
    /// Whether an alert's delivery moves the reminder clock (`last_alerted_at`): a check of the whole account
    /// does; an event-driven check of a few users does not, so the sweep's reminders keep their cadence.
    reminder_clock: bool,
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
            reminder_clock: true,
        }
    }

    /// The ledger of an event-driven check of `users`: only their items, so nothing of another user is resolved
    /// or written, and deliveries that leave the sweep's reminder clock as it was.
    pub fn of_users(account_id: &str, stored: Vec<Item>, users: &[String]) -> Ledger {
        let mine = stored
            .into_iter()
            .filter(|item| users.contains(&item.user_name))
            .collect();
        Ledger {
            reminder_clock: false,
            ..Ledger::new(account_id, mine)
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
                finding_id: item.finding_id(&self.account_id),
                user_name: item.user_name.clone(),
                access_key_id: item.key_id().unwrap_or_default().to_string(),
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
    /// deactivated: each finding then carries the date a delivered alert announced to its owner, or the date
    /// this run's alert announces (`notice`). A key that was resolved or deactivated and is a finding again
    /// starts afresh. A key that became exempt by tag is named once, as resolved, with the tag.
    pub fn reconcile(
        &mut self,
        findings: &mut [Finding],
        evaluation_rest: &Evaluation,
        users: &[VerifiedUser],
        rules: &[&dyn Rule],
        now: OffsetDateTime,
        notice_days: Option<u32>,
    ) -> Vec<Resolved> {
        let mut resolved = Vec::new();
        // Found Inactive after keywatch recorded that it was deactivating the key: keywatch's own, to announce.
        for item in self.items.values_mut() {
            if item.state == State::Open && item.deactivating_run.is_some() {
                if live_key(item, users).is_some_and(|key| !key.active) {
                    item.state = State::Deactivated;
                    item.deactivated_at = item.deactivating_at;
                    item.deactivated_run = item.deactivating_run.take();
                    item.deactivating_at = None;
                    item.deactivation_announced = false;
                } else {
                    // The call never took effect: an open finding as before.
                    item.deactivating_run = None;
                    item.deactivating_at = None;
                }
            }
        }
        for finding in findings.iter_mut() {
            // An owner tag changed since: reminders and resolutions go to the owner of now.
            let owner = &finding.owner;
            let key = finding.ledger_key();
            if let Some(item) = self
                .items
                .get_mut(&key)
                .filter(|item| item.state == State::Open)
            {
                if item.owner != *owner {
                    item.owner.clone_from(owner);
                }
                // Alerts sent while remediation is off announce nothing: a notice is only ever one that said
                // the date, and a later switch to deactivate gives a full period again.
                if notice_days.is_none() && item.notice_at.is_some() {
                    item.notice_at = None;
                    item.notice_owner = None;
                    item.deactivate_on = None;
                    item.notice_days = None;
                }
            }
            let item = self
                .items
                .get(&key)
                .filter(|item| item.state == State::Open);
            finding.history = match item {
                Some(item) => {
                    let (deactivate_on, notice) = notice_days
                        .map(|days| item.notice_for(owner.as_deref(), days, now))
                        .unzip();
                    History {
                        change: Some(Change::Open),
                        first_seen_at: Some(item.first_seen_at),
                        first_alerted_at: item.first_alerted_at,
                        deactivate_on,
                        notice: notice.flatten(),
                    }
                }
                None => {
                    let version = self.items.get(&key).map_or(0, |old| old.version);
                    self.items.insert(
                        key.clone(),
                        Item {
                            version,
                            ..Item::new(&self.account_id, finding, now)
                        },
                    );
                    History {
                        change: Some(Change::New),
                        first_seen_at: Some(now),
                        first_alerted_at: None,
                        // Provisional: the alert that announces it dates it from its own publish.
                        deactivate_on: notice_days.map(|d| now + Duration::days(d.into())),
                        notice: notice_days.map(|_| Notice::New),
                    }
                }
            };
        }
        let current: BTreeSet<String> = findings.iter().map(Finding::ledger_key).collect();
        // Keys keywatch deactivated: another rule's item on the same key was not deactivated by someone else.
        let keywatchs: BTreeSet<String> = self
            .items
            .values()
            .filter(|item| item.state == State::Deactivated)
            .filter_map(|item| item.key_id().map(str::to_string))
            .collect();
        for item in self.items.values_mut() {
            if item.state != State::Open || current.contains(&item.access_key_id) {
                continue;
            }
            let Some(reason) = resolution(item, evaluation_rest, users, rules, &keywatchs) else {
                continue;
            };
            item.resolve(reason, now, exempt_tag(item, evaluation_rest, users));
            resolved.push(Resolved::of(&self.account_id, item, now));
        }
        // Keys that became exempt by tag without being open: named once, with the tag.
        for exempted in &evaluation_rest.exempted {
            let key = &exempted.finding.ledger_key();
            let Some(tag) = exempt_tag_of(&exempted.finding.user_name, users) else {
                continue;
            };
            if self.items.get(key).is_some_and(|item| match item.state {
                State::Open => true,
                State::Resolved => item.resolved_reason == Some(Reason::Exempted),
                // Never overwrite a deactivation still to announce.
                State::Deactivated => !item.deactivation_announced,
            }) {
                continue;
            }
            let version = self.items.get(key).map_or(0, |old| old.version);
            let mut item = Item {
                version,
                ..Item::new(&self.account_id, &exempted.finding, now)
            };
            item.resolve(Reason::Exempted, now, Some(tag));
            resolved.push(Resolved::of(&self.account_id, &item, now));
            self.items.insert(key.clone(), item);
        }
        resolved
    }

    /// Records, before any `UpdateAccessKey` is sent, that keywatch is deactivating these keys in `run_id`.
    pub fn deactivating(
        &mut self,
        due: &[&Finding],
        run_id: &str,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        for finding in due {
            let key = finding.ledger_key();
            if let Some(item) = self.items.get_mut(&key) {
                item.deactivating_run = Some(run_id.to_string());
                item.deactivating_at = Some(now);
                keys.push(key);
            }
        }
        keys
    }

    /// Records keys keywatch deactivated in `run_id`, not yet announced, and clears the intent of the others.
    pub fn deactivated(&mut self, remediated: &[Remediated], run_id: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let account_id = &self.account_id;
        for item in self.items.values_mut() {
            if item.deactivating_run.as_deref() != Some(run_id) {
                continue;
            }
            item.deactivating_run = None;
            item.deactivating_at = None;
            let id = item.finding_id(account_id);
            if let Some(done) = remediated.iter().find(|done| done.finding_id == id) {
                item.state = State::Deactivated;
                item.deactivated_at = Some(done.at);
                item.deactivated_run = Some(run_id.to_string());
                item.deactivation_announced = false;
            }
            keys.push(item.access_key_id.clone());
        }
        keys
    }

    /// After SNS accepted every part of an alert at `now`: each finding it named was alerted, each notice it
    /// carried was given (with the date it said), and each deactivation it named was announced.
    /// Returns the keys of the items it changed, and of the resolutions the alert carried: what to write.
    pub fn announced(
        &mut self,
        findings: &[Finding],
        deactivations: &[Remediated],
        resolved: &[Resolved],
        notice_days: Option<u32>,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        for finding in findings {
            let key = finding.ledger_key();
            if let Some(item) = self.items.get_mut(&key) {
                item.first_alerted_at.get_or_insert(now);
                if self.reminder_clock {
                    item.last_alerted_at = Some(now);
                }
                item.alerts = item.alerts.saturating_add(1);
                if let (Some(notice), Some(on)) =
                    (finding.history.notice, finding.history.deactivate_on)
                {
                    if notice == Notice::New {
                        item.notice_at = Some(now);
                    }
                    item.notice_owner.clone_from(&finding.owner);
                    item.deactivate_on = Some(on);
                    item.notice_days = notice_days;
                }
                keys.push(key);
            }
        }
        let account_id = &self.account_id;
        for done in deactivations {
            if let Some(item) = self
                .items
                .values_mut()
                .find(|item| item.finding_id(account_id) == done.finding_id)
            {
                item.deactivation_announced = true;
                item.expires_at = Some((done.at + RETENTION).unix_timestamp());
                keys.push(item.access_key_id.clone());
            }
        }
        keys.extend(resolved.iter().map(|r| r.ledger_key.clone()));
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

    /// After a successful write: these items, with the versions they were written under, are what is stored.
    pub fn stored_now(&mut self, written: &[Item]) {
        for item in written {
            if let Some(held) = self.items.get_mut(&item.access_key_id) {
                held.version = item.version;
            }
            self.stored.insert(item.access_key_id.clone(), item.clone());
        }
    }
}

impl Resolved {
    fn of(account_id: &str, item: &Item, now: OffsetDateTime) -> Resolved {
        Resolved {
            owner: item.owner.clone(),
            finding_id: item.finding_id(account_id),
            rule: item.rule().to_string(),
            user_name: item.user_name.clone(),
            access_key_id: item.key_id().unwrap_or_default().to_string(),
            ledger_key: item.access_key_id.clone(),
            reason: item.resolved_reason.unwrap_or(Reason::KeyDeleted),
            exempt_tag: item.exempt_tag.clone(),
            first_alerted_at: item.first_alerted_at,
            resolved_at: now,
        }
    }
}

impl Item {
    fn new(account_id: &str, finding: &Finding, now: OffsetDateTime) -> Item {
        Item {
            account_id: account_id.to_string(),
            access_key_id: finding.ledger_key(),
            rule: (finding.rule != never_used_key::ID).then(|| finding.rule.to_string()),
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
            version: 0,
            notice_at: None,
            notice_owner: None,
            deactivate_on: None,
            notice_days: None,
            deactivating_run: None,
            deactivating_at: None,
            exempt_tag: None,
        }
    }

    /// The item's rule: today's when it names none.
    pub fn rule(&self) -> &str {
        self.rule.as_deref().unwrap_or(never_used_key::ID)
    }

    /// The key the item is about: its sort key for today's rule, the middle of `user/key/rule` for another key
    /// rule; `None` for a rule about a user's keys together (`user/rule`).
    pub fn key_id(&self) -> Option<&str> {
        match self.rule {
            None => Some(&self.access_key_id),
            Some(_) => {
                let parts: Vec<&str> = self.access_key_id.split('/').collect();
                match parts[..] {
                    [_, key, _] => Some(key),
                    _ => None,
                }
            }
        }
    }

    /// The finding ID of the finding this item records ([`crate::evaluate::Finding::finding_id`]).
    pub fn finding_id(&self, account_id: &str) -> String {
        match self.rule {
            None => format!("{account_id}/{}/{}", self.user_name, self.access_key_id),
            Some(_) => format!("{account_id}/{}", self.access_key_id),
        }
    }

    fn resolve(&mut self, reason: Reason, now: OffsetDateTime, exempt_tag: Option<String>) {
        self.state = State::Resolved;
        self.resolved_at = Some(now);
        self.resolved_reason = Some(reason);
        self.exempt_tag = exempt_tag;
        self.expires_at = Some((now + RETENTION).unix_timestamp());
    }

    /// The deactivation date in force for `owner` with `days` set now, and what the alert must say of it. A
    /// notice delivered to this owner keeps its date unless `days` was raised, which moves it later; lowering
    /// `days` never brings it forward. No notice for this owner: a full period from this alert.
    fn notice_for(
        &self,
        owner: Option<&str>,
        days: u32,
        now: OffsetDateTime,
    ) -> (OffsetDateTime, Option<Notice>) {
        match (self.notice_at, self.deactivate_on) {
            (Some(at), Some(on)) if self.notice_owner.as_deref() == owner => {
                let later = at + Duration::days(days.into());
                if self.notice_days.is_some_and(|announced| days > announced) && later > on {
                    (later, Some(Notice::Later))
                } else {
                    (on, None)
                }
            }
            _ => (now + Duration::days(days.into()), Some(Notice::New)),
        }
    }
}

fn live_key<'a>(item: &Item, users: &'a [VerifiedUser]) -> Option<&'a crate::model::KeySnapshot> {
    users
        .iter()
        .find(|u| u.user.name == item.user_name)?
        .user
        .keys
        .iter()
        .find(|k| k.id.is_some() && k.id.as_deref() == item.key_id())
}

/// The exemption tag of `user`, as `key=value`, when it is what exempts them.
fn exempt_tag_of(user: &str, users: &[VerifiedUser]) -> Option<String> {
    users
        .iter()
        .find(|u| u.user.name == user)?
        .exempt_tag
        .as_ref()
        .map(|(key, value)| format!("{key}={value}"))
}

fn exempt_tag(item: &Item, evaluation: &Evaluation, users: &[VerifiedUser]) -> Option<String> {
    evaluation
        .exempted
        .iter()
        .any(|e| e.finding.ledger_key() == item.access_key_id)
        .then(|| exempt_tag_of(&item.user_name, users))
        .flatten()
}

/// Why an open item is no longer a finding, from this run's live data; `None` while it is only in its grace
/// period (still open, not alerted), or still breaks its rule. `keywatchs`: keys keywatch deactivated, under
/// another rule's item.
fn resolution(
    item: &Item,
    evaluation: &Evaluation,
    users: &[VerifiedUser],
    rules: &[&dyn Rule],
    keywatchs: &BTreeSet<String>,
) -> Option<Reason> {
    let key = item.access_key_id.as_str();
    if !rules.iter().any(|rule| rule.id() == item.rule()) {
        return Some(Reason::RuleOff);
    }
    if evaluation
        .exempted
        .iter()
        .any(|e| e.finding.ledger_key() == key)
    {
        return Some(Reason::Exempted);
    }
    if evaluation
        .pending
        .iter()
        .any(|p| p.finding.ledger_key() == key)
    {
        return None;
    }
    // Users with open items are always verified live; one missing was deleted.
    let Some(user) = users.iter().find(|u| u.user.name == item.user_name) else {
        return Some(Reason::UserDeleted);
    };
    let Some(key_id) = item.key_id() else {
        // A rule about the user's keys together: two active keys.
        let active = user.user.keys.iter().filter(|k| k.active).count();
        return (active < 2).then_some(Reason::OneActiveKey);
    };
    let Some(live) = user
        .user
        .keys
        .iter()
        .find(|k| k.id.as_deref() == Some(key_id))
    else {
        return Some(Reason::KeyDeleted);
    };
    let inactive = || {
        if keywatchs.contains(key_id) {
            Reason::DeactivatedByKeywatch
        } else {
            Reason::DeactivatedBySomeoneElse
        }
    };
    match item.rule() {
        never_used_key::ID => Some(if live.last_used.is_some() {
            Reason::Used
        } else if !live.active {
            inactive()
        } else if !user.user.password_enabled {
            Reason::PasswordRemoved
        } else {
            // Breaks the rule but is no finding: nothing else makes that so. Keep it open.
            return None;
        }),
        // The age rules: a key still Active and not counted as a finding was used, or the limit was raised.
        rule => Some(if !live.active {
            inactive()
        } else if rule == crate::evaluate::unused_key::ID && live.last_used.is_some() {
            Reason::Used
        } else {
            Reason::SettingChanged
        }),
    }
}

/// Days from `since` to `now`, whole.
pub fn days_between(since: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - since).whole_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Exempted, Pending, DEFAULT_RULES};
    use crate::model::{KeySnapshot, UserSnapshot};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const ACCOUNT: &str = "123456789012";

    fn finding_id(account_id: &str, user_name: &str, key: &str) -> String {
        format!("{account_id}/{user_name}/{key}")
    }

    fn finding(user: &str, key: &str) -> Finding {
        Finding {
            finding_id: finding_id(ACCOUNT, user, key),
            rule: never_used_key::ID,
            controls: Vec::new(),
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            access_key_id: key.into(),
            other_access_key_ids: vec![],
            key_last_used: None,
            days_counted: None,
            caused_by: None,
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
        let keys: Vec<_> = keys
            .iter()
            .map(|&(id, active, used)| (id, active, used.then_some(NOW - Duration::days(1))))
            .collect();
        user_with_keys(name, password, 30, &keys)
    }

    /// A live user whose keys were created `age_days` ago: (ID, Active, last use).
    fn user_with_keys(
        name: &str,
        password: bool,
        age_days: i64,
        keys: &[(&str, bool, Option<OffsetDateTime>)],
    ) -> VerifiedUser {
        VerifiedUser {
            user: UserSnapshot {
                name: name.into(),
                arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
                path: "/".into(),
                created: NOW - Duration::days(age_days),
                password_enabled: password,
                password_last_used: None,
                keys: keys
                    .iter()
                    .map(|&(id, active, last_used)| KeySnapshot {
                        id: Some(id.into()),
                        slot: None,
                        active,
                        created: Some(NOW - Duration::days(age_days)),
                        last_used,
                    })
                    .collect(),
            },
            exempt_tag: None,
            owner: None,
        }
    }

    /// An event-driven check of bob: ann's open item is not its to resolve, and is never written; bob's new
    /// finding, once alerted, is first alerted now, but the reminder clock (the last alert) stays the sweep's.
    #[test]
    fn an_event_driven_check_sees_only_its_users_and_leaves_the_reminder_clock() {
        let alerted = NOW - Duration::days(3);
        let mut ledger = Ledger::of_users(
            ACCOUNT,
            vec![
                item("ann", "ANN", State::Open, Some(alerted)),
                item("bob", "OLD", State::Open, Some(alerted)),
            ],
            &["bob".to_string()],
        );
        assert_eq!(ledger.open_users(), BTreeSet::from(["bob"]));
        let mut findings = [finding("bob", "OLD"), finding("bob", "NEW")];
        let users = [user(
            "bob",
            true,
            &[("OLD", true, false), ("NEW", true, false)],
        )];
        let resolved = ledger.reconcile(
            &mut findings,
            &Evaluation::default(),
            &users,
            DEFAULT_RULES,
            NOW,
            None,
        );
        assert!(resolved.is_empty(), "{resolved:?}");
        let keys = ledger.announced(&findings, &[], &[], None, NOW);
        let written = ledger.changed(Some(&keys));
        assert!(
            written.iter().all(|item| item.user_name == "bob"),
            "{written:?}"
        );
        let new = written
            .iter()
            .find(|item| item.access_key_id == "NEW")
            .expect("bob's new finding is written");
        assert_eq!(
            (new.first_alerted_at, new.last_alerted_at),
            (Some(NOW), None)
        );
        assert_eq!(ledger.last_alert(None), Some(alerted), "the sweep's clock");
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
        let resolved = ledger.reconcile(
            &mut findings,
            &Evaluation::default(),
            &[],
            DEFAULT_RULES,
            NOW,
            Some(7),
        );
        assert!(resolved.is_empty());
        let open = &findings[0].history;
        assert_eq!(open.change, Some(Change::Open));
        assert_eq!(open.first_alerted_at, Some(alerted));
        // Alerted before without a notice: this alert announces a full period.
        assert_eq!(open.deactivate_on, Some(NOW + Duration::days(7)));
        assert_eq!(open.notice, Some(Notice::New));
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
            let resolved = ledger.reconcile(&mut [], evaluation, users, DEFAULT_RULES, NOW, None);
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
                .reconcile(
                    &mut [],
                    &Evaluation::default(),
                    &[],
                    DEFAULT_RULES,
                    NOW,
                    None
                )
                .is_empty());
        }
    }

    #[test]
    fn deactivations_are_stored_unannounced_until_an_alert_names_them() {
        let alerted = NOW - Duration::days(8);
        let mut ledger = Ledger::new(ACCOUNT, vec![item("ann", "K", State::Open, Some(alerted))]);
        let mut findings = [finding("ann", "K")];
        ledger.reconcile(
            &mut findings,
            &Evaluation::default(),
            &[],
            DEFAULT_RULES,
            NOW,
            Some(7),
        );
        let done = Remediated {
            finding_id: findings[0].finding_id.clone(),
            user_name: "ann".into(),
            access_key_id: "K".into(),
            action: "deactivated",
            at: NOW,
            owner: None,
        };
        let due: Vec<&Finding> = findings.iter().collect();
        let intent = ledger.deactivating(&due, "run-1", NOW);
        let recorded = ledger.changed(Some(&intent));
        assert_eq!(recorded[0].deactivating_run.as_deref(), Some("run-1"));
        ledger.stored_now(&recorded);
        let keys = ledger.deactivated(std::slice::from_ref(&done), "run-1");
        let written = ledger.changed(Some(&keys));
        assert_eq!(written[0].deactivating_run, None);
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
            None,
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
        ledger.reconcile(
            &mut findings,
            &Evaluation::default(),
            &[],
            DEFAULT_RULES,
            NOW,
            None,
        );
        let keys = ledger.announced(&findings, &[], &[], None, NOW);
        assert_eq!(keys, ["K"]);
        let first = ledger.changed(None).remove(0);
        assert_eq!((first.first_alerted_at, first.alerts), (Some(NOW), 1));
        ledger.stored_now(std::slice::from_ref(&first));
        assert_eq!(ledger.last_alert(None), Some(NOW));
        let later = NOW + Duration::days(1);
        let mut again = Ledger::new(ACCOUNT, vec![first]);
        let mut findings = [finding("ann", "K")];
        again.reconcile(
            &mut findings,
            &Evaluation::default(),
            &[],
            DEFAULT_RULES,
            later,
            None,
        );
        assert!(
            again.changed(None).is_empty(),
            "an unchanged open finding writes nothing"
        );
        again.announced(&findings, &[], &[], None, later);
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

    /// An open item as a delivered notice left it: announced at `at` to `owner`, for `on`, with `days`.
    fn noticed(owner: Option<&str>, at: OffsetDateTime, on: OffsetDateTime, days: u32) -> Item {
        Item {
            owner: owner.map(str::to_string),
            notice_at: Some(at),
            notice_owner: owner.map(str::to_string),
            deactivate_on: Some(on),
            notice_days: Some(days),
            ..item("ann", "K", State::Open, Some(at - Duration::days(60)))
        }
    }

    #[test]
    fn the_date_in_force_is_the_one_a_delivered_notice_announced_to_the_owner_of_now() {
        let at = NOW - Duration::days(3);
        let on = at + Duration::days(30);
        let team_b = Some("team-b".to_string());
        type Case = (
            &'static str,
            Item,
            Option<String>,
            Option<u32>,
            Option<(OffsetDateTime, Option<Notice>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "alerted for 60 days with remediation off",
                item("ann", "K", State::Open, Some(NOW - Duration::days(60))),
                None,
                Some(7),
                Some((NOW + Duration::days(7), Some(Notice::New))),
            ),
            (
                "announced, unchanged",
                noticed(None, at, on, 30),
                None,
                Some(30),
                Some((on, None)),
            ),
            (
                "lowered to 0: never brought forward",
                noticed(None, at, on, 30),
                None,
                Some(0),
                Some((on, None)),
            ),
            (
                "raised to 40: later, and said",
                noticed(None, at, on, 30),
                None,
                Some(40),
                Some((at + Duration::days(40), Some(Notice::Later))),
            ),
            (
                "announced to unowned, now owned by team-b",
                noticed(Some("unowned"), at, on, 30),
                team_b.clone(),
                Some(30),
                Some((NOW + Duration::days(30), Some(Notice::New))),
            ),
            (
                "remediation off again",
                noticed(None, at, on, 30),
                None,
                None,
                None,
            ),
        ];
        for (name, stored, owner, days, expected) in cases {
            let mut ledger = Ledger::new(ACCOUNT, vec![stored]);
            let mut findings = [Finding {
                owner: owner.clone(),
                ..finding("ann", "K")
            }];
            ledger.reconcile(
                &mut findings,
                &Evaluation::default(),
                &[],
                DEFAULT_RULES,
                NOW,
                days,
            );
            let history = &findings[0].history;
            assert_eq!(
                history.deactivate_on.map(|on| (on, history.notice)),
                expected,
                "{name}"
            );
            if days.is_none() {
                let item = &ledger.changed(None)[0];
                assert!(
                    item.notice_at.is_none() && item.deactivate_on.is_none(),
                    "{name}: notice cleared"
                );
            }
        }
    }

    #[test]
    fn a_delivered_alert_records_the_notice_it_gave() {
        let delivered = NOW + Duration::seconds(2);
        let announced = |stored: Item, owner: Option<String>, days: u32| {
            let mut ledger = Ledger::new(ACCOUNT, vec![stored]);
            let mut findings = [Finding {
                owner,
                ..finding("ann", "K")
            }];
            ledger.reconcile(
                &mut findings,
                &Evaluation::default(),
                &[],
                DEFAULT_RULES,
                NOW,
                Some(days),
            );
            ledger.announced(&findings, &[], &[], Some(days), delivered);
            (findings[0].history.clone(), ledger.changed(None).remove(0))
        };
        // A first notice: dated from its delivery.
        let (history, item) = announced(item("ann", "K", State::Open, Some(NOW)), None, 7);
        assert_eq!(
            (item.notice_at, item.deactivate_on, item.notice_days),
            (Some(delivered), history.deactivate_on, Some(7))
        );
        // The date moved later: the notice keeps its first delivery, the new date and period are recorded.
        let at = NOW - Duration::days(3);
        let (history, item) = announced(noticed(None, at, at + Duration::days(7), 7), None, 14);
        assert_eq!(history.notice, Some(Notice::Later));
        assert_eq!(
            (item.notice_at, item.deactivate_on, item.notice_days),
            (Some(at), Some(at + Duration::days(14)), Some(14))
        );
        // A new owner's notice: theirs, from this delivery.
        let (_, item) = announced(
            noticed(Some("unowned"), at, at + Duration::days(7), 7),
            Some("team-b".into()),
            7,
        );
        assert_eq!(
            (item.notice_owner.as_deref(), item.notice_at),
            (Some("team-b"), Some(delivered))
        );
    }

    #[test]
    fn a_key_found_inactive_after_keywatch_recorded_its_deactivation_is_keywatchs() {
        let started = NOW - Duration::days(1);
        let intent = Item {
            deactivating_run: Some("run-0".into()),
            deactivating_at: Some(started),
            ..item("ann", "K", State::Open, Some(NOW - Duration::days(9)))
        };
        // Inactive: the call took effect, though nothing after it was recorded.
        let mut ledger = Ledger::new(ACCOUNT, vec![intent.clone()]);
        let resolved = ledger.reconcile(
            &mut [],
            &Evaluation::default(),
            &[user("ann", true, &[("K", false, false)])],
            DEFAULT_RULES,
            NOW,
            Some(7),
        );
        assert!(
            resolved.is_empty(),
            "never resolved as someone else's: {resolved:?}"
        );
        let late = ledger.unannounced();
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].access_key_id.as_str(), late[0].at), ("K", started));
        // Still Active: the call never took effect, and the finding stays open.
        let mut ledger = Ledger::new(ACCOUNT, vec![intent]);
        let mut findings = [finding("ann", "K")];
        ledger.reconcile(
            &mut findings,
            &Evaluation::default(),
            &[user("ann", true, &[("K", true, false)])],
            DEFAULT_RULES,
            NOW,
            Some(7),
        );
        assert!(ledger.unannounced().is_empty());
        assert_eq!(ledger.changed(None)[0].deactivating_run, None);
    }

    #[test]
    fn a_key_that_becomes_exempt_by_tag_is_named_once_with_the_tag() {
        let mut exempt = user("ann", true, &[("K", true, false)]);
        exempt.exempt_tag = Some(("keywatch:exempt".into(), "break-glass".into()));
        let evaluation = Evaluation {
            exempted: vec![Exempted {
                finding: finding("ann", "K"),
                reason: "tag".into(),
            }],
            ..Evaluation::default()
        };
        let users = [exempt];
        let mut ledger = Ledger::new(ACCOUNT, vec![]);
        let resolved = ledger.reconcile(&mut [], &evaluation, &users, DEFAULT_RULES, NOW, None);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (resolved[0].reason, resolved[0].exempt_tag.as_deref()),
            (Reason::Exempted, Some("keywatch:exempt=break-glass"))
        );
        let stored = ledger.changed(None);
        let mut next = Ledger::new(ACCOUNT, stored);
        assert!(
            next.reconcile(&mut [], &evaluation, &users, DEFAULT_RULES, NOW, None)
                .is_empty(),
            "named once"
        );
        // An open finding whose user becomes exempt: resolved, with the tag.
        let mut ledger = Ledger::new(ACCOUNT, vec![item("ann", "K", State::Open, Some(NOW))]);
        let resolved = ledger.reconcile(&mut [], &evaluation, &users, DEFAULT_RULES, NOW, None);
        assert_eq!(
            resolved[0].exempt_tag.as_deref(),
            Some("keywatch:exempt=break-glass")
        );
    }

    /// An item as keywatch wrote it before rules had IDs of their own (no `rule` attribute) is today's rule's:
    /// its key, its finding ID, and no second "new" for its key.
    #[test]
    fn items_written_before_rules_read_as_todays_rule() {
        let stored: Item = serde_json::from_value(serde_json::json!({
            "account_id": ACCOUNT,
            "access_key_id": "AKIAOLD",
            "user_name": "ann",
            "state": "open",
            "first_seen_at": "2026-11-01T00:00:00Z",
            "first_alerted_at": "2026-11-01T00:00:05Z",
            "last_alerted_at": "2026-11-20T00:00:05Z",
            "alerts": 3,
            "version": 4
        }))
        .expect("an item as today's code writes it");
        assert_eq!(stored.rule(), never_used_key::ID);
        assert_eq!(stored.key_id(), Some("AKIAOLD"));
        assert_eq!(stored.finding_id(ACCOUNT), format!("{ACCOUNT}/ann/AKIAOLD"));
        let mut ledger = Ledger::new(ACCOUNT, vec![stored.clone()]);
        let mut findings = [finding("ann", "AKIAOLD")];
        let resolved = ledger.reconcile(
            &mut findings,
            &Evaluation::default(),
            &[],
            DEFAULT_RULES,
            NOW,
            None,
        );
        assert!(resolved.is_empty());
        assert_eq!(
            findings[0].history.change,
            Some(Change::Open),
            "not new again"
        );
        assert_eq!(
            findings[0].history.first_alerted_at,
            stored.first_alerted_at
        );
        // Still stored under its key, with no rule written: today's code reads it back unchanged.
        let written = ledger.changed(None);
        assert!(written
            .iter()
            .all(|item| item.rule.is_none() && item.access_key_id == "AKIAOLD"));
        let json = serde_json::to_value(&stored).unwrap();
        assert!(json.get("rule").is_none(), "{json}");
    }

    /// Findings of every rule are items of their own, keyed `user/key/rule` (today's rule: the key alone), and
    /// each resolves for its own reason: a key keywatch deactivated under one rule is not "someone else's" under
    /// another, a used key leaves the never-used and unused rules, two keys down to one leaves two-active-keys,
    /// and a rule `RULES` no longer names is resolved as such.
    #[test]
    fn every_rule_has_items_of_its_own_and_resolves_for_its_own_reason() {
        use crate::config::Exemptions;
        use crate::evaluate::{classify, Policy, RULES};
        let exemptions = Exemptions::new(&[], None).unwrap();
        let policy = |rules| Policy {
            account_id: ACCOUNT,
            rules,
            context: crate::evaluate::Context::at(NOW),
            grace_period_hours: 0,
            exemptions: &exemptions,
            owners: None,
        };
        let ann =
            |keys: &[(&str, bool, Option<OffsetDateTime>)]| user_with_keys("ann", true, 100, keys);
        // One check: the rules' findings on `users` at `now`, reconciled with the ledger.
        let check = |ledger: &mut Ledger,
                     users: &[VerifiedUser],
                     rules: &'static [&'static dyn Rule],
                     now: OffsetDateTime| {
            let mut evaluation = classify(
                users,
                &Policy {
                    context: crate::evaluate::Context::at(now),
                    ..policy(rules)
                },
            );
            let mut findings = std::mem::take(&mut evaluation.findings);
            let resolved = ledger.reconcile(&mut findings, &evaluation, users, rules, now, None);
            (findings, resolved)
        };

        // Two Active keys, never used, 100 days old: every rule.
        let first = [ann(&[("K1", true, None), ("K2", true, None)])];
        let mut ledger = Ledger::new(ACCOUNT, vec![]);
        let (findings, _) = check(&mut ledger, &first, RULES, NOW);
        assert_eq!(findings.len(), 7);
        assert!(findings
            .iter()
            .all(|f| f.history.change == Some(Change::New)));
        let keys: Vec<(String, Option<String>, Option<String>)> = ledger
            .changed(None)
            .into_iter()
            .map(|i| {
                (
                    i.access_key_id.clone(),
                    i.rule.clone(),
                    i.key_id().map(str::to_string),
                )
            })
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            keys,
            [
                ("K1".into(), None, some("K1")),
                ("K2".into(), None, some("K2")),
                (
                    "ann/K1/key-not-rotated".into(),
                    some("key-not-rotated"),
                    some("K1")
                ),
                ("ann/K1/unused-key".into(), some("unused-key"), some("K1")),
                (
                    "ann/K2/key-not-rotated".into(),
                    some("key-not-rotated"),
                    some("K2")
                ),
                ("ann/K2/unused-key".into(), some("unused-key"), some("K2")),
                ("ann/two-active-keys".into(), some("two-active-keys"), None),
            ]
        );
        let ids: BTreeSet<String> = ledger
            .items
            .values()
            .map(|i| i.finding_id(ACCOUNT))
            .collect();
        let found: BTreeSet<String> = findings.iter().map(|f| f.finding_id.clone()).collect();
        assert_eq!(ids, found, "each item names its finding");
        ledger.announced(&findings, &[], &[], None, NOW);

        // keywatch deactivates K1 under today's rule; K2 is used since.
        let k1 = findings
            .iter()
            .find(|f| f.finding_id == format!("{ACCOUNT}/ann/K1"))
            .unwrap();
        ledger.deactivating(&[k1], "run-2", NOW);
        let done = Remediated {
            finding_id: k1.finding_id.clone(),
            user_name: "ann".into(),
            access_key_id: "K1".into(),
            action: "deactivated",
            at: NOW,
            owner: None,
        };
        ledger.deactivated(&[done], "run-2");
        let later = NOW + Duration::days(1);
        let second = [ann(&[
            ("K1", false, None),
            ("K2", true, Some(later - Duration::hours(1))),
        ])];
        let (findings, resolved) = check(&mut ledger, &second, RULES, later);
        let reasons: BTreeSet<(String, String)> = resolved
            .iter()
            .map(|r| {
                (
                    r.finding_id
                        .trim_start_matches(&format!("{ACCOUNT}/"))
                        .to_string(),
                    format!("{:?}", r.reason),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("ann/K2".to_string(), "Used".to_string()),
                (
                    "ann/K1/unused-key".to_string(),
                    "DeactivatedByKeywatch".to_string()
                ),
                ("ann/K2/unused-key".to_string(), "Used".to_string()),
                (
                    "ann/two-active-keys".to_string(),
                    "OneActiveKey".to_string()
                ),
                (
                    "ann/K1/key-not-rotated".to_string(),
                    "DeactivatedByKeywatch".to_string()
                ),
            ]
            .into_iter()
            .collect()
        );
        assert!(resolved.iter().all(|r| !r.rule.is_empty()));
        // K2 is still 100 days old: its rotation finding stays open.
        assert_eq!(
            findings
                .iter()
                .map(|f| (f.rule, f.history.change))
                .collect::<Vec<_>>(),
            [("key-not-rotated", Some(Change::Open))]
        );

        // RULES back to today's rule alone: the rotation finding is resolved as no longer checked.
        let (_, resolved) = check(&mut ledger, &second, DEFAULT_RULES, later);
        assert_eq!(
            resolved
                .iter()
                .map(|r| (r.rule.as_str(), r.access_key_id.as_str(), r.reason))
                .collect::<Vec<_>>(),
            [("key-not-rotated", "K2", Reason::RuleOff)]
        );
    }
}
