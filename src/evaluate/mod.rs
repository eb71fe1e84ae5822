//! Pure evaluation: which keys break a rule, and whether each is a finding, still in its grace period, or
//! exempt. No I/O here; everything is a function of the data, `now` and the settings.

pub mod exemption;
pub mod key_not_rotated;
pub mod never_used_key;
pub mod two_active_keys;
pub mod unused_key;

use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};

use exemption::{read_tag, TagExemption};

use crate::config::Exemptions;
use crate::inventory::{Freshness, Inventory, InventoryUser};
use crate::model::History;
use crate::model::{KeySnapshot, UserSnapshot};

/// A check on one user's keys: a pure function of the user, the time and the rules' settings. Adding a rule is
/// one new file implementing this, plus its line in [`RULES`].
pub trait Rule: Sync {
    /// Stable identifier, carried by every finding.
    fn id(&self) -> &'static str;
    /// What the rule finds, in a few words, for a person reading a table of findings.
    fn title(&self) -> &'static str;
    /// Whether `REMEDIATION=deactivate` may deactivate the keys it finds: only a key nothing should be using.
    fn deactivates(&self) -> bool;
    /// The keys of `user` that break the rule, each hit naming one key (or, for a rule about the user's keys
    /// together, all of them), with the controls it fails and the evidence the rule used.
    fn check(&self, user: &UserSnapshot, context: &Context) -> Vec<Hit>;
    /// Whether a credential report row, up to 4 hours older than `context.now` (IAM serves one report that
    /// long), can hold a finding of this rule now: the rows worth a live look. Since the report, a key may have been used (never
    /// un-used), deactivated, reactivated or deleted, and a password added or removed.
    fn may_hold(&self, row: &UserSnapshot, context: &Context) -> bool;
    /// Which keys' last use the rule needs read live (`GetAccessKeyLastUsed`): none unless it says.
    fn last_use(&self, _context: &Context) -> LastUseReads {
        LastUseReads::default()
    }
    /// What an alert, a report and Security Hub say of its findings.
    fn words(&self) -> &'static Words;
}

/// A rule's words, in its own file: how its findings are counted, explained and fixed.
#[derive(Debug)]
pub struct Words {
    /// Counted in a subject: one finding, several.
    pub one: &'static str,
    pub many: &'static str,
    /// Its count in a subject naming several rules, after the number ("3 unused").
    pub short: &'static str,
    /// What its findings are and why they matter: the alert's paragraph before them.
    pub why: &'static str,
    /// What to do, as the alert's lines after them.
    pub what_to_do: &'static str,
    /// The benchmark text it checks, for the alert's reference line.
    pub reference: &'static str,
    /// What a finding's line shows besides the key.
    pub evidence: Shows,
    /// The command under each finding.
    pub fix: Fix,
    /// Security Hub's title, and its remediation text before the command.
    pub hub_title: &'static str,
    pub hub_remediation: &'static str,
}

/// What a finding's line in an alert shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shows {
    /// The key's age and whether it was created at user setup (today's rule, as its alerts always said).
    AgeAtSetup,
    /// The last use, or the creation of a key never used, and the days since.
    LastUse,
    /// The creation and the days since.
    Creation,
    /// Every Active key of the user.
    Keys,
}

/// The command an alert gives for a finding's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// Delete it: nothing can depend on it.
    Delete,
    /// Deactivate it: reversible, for a key something may still use.
    Deactivate,
    /// Read each named key's last use: which one to keep is a person's call.
    CompareUse,
}

/// Which Active keys' last use a live read must fetch, and how far a use the credential report saw may stand in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastUseReads {
    /// The keys of users with a console password.
    pub console_users: bool,
    /// The keys of every user.
    pub every_user: bool,
    /// A use the report saw is the last use only if at most this many days old (a later use moves the date but
    /// never keeps it older); older, it is read again. `None`: any use serves (only whether a key was used
    /// matters).
    pub known_use_within_days: Option<u32>,
}

impl LastUseReads {
    /// What all of `rules` need.
    pub fn of(rules: &[&dyn Rule], context: &Context) -> LastUseReads {
        rules
            .iter()
            .map(|rule| rule.last_use(context))
            .fold(LastUseReads::default(), |all, one| LastUseReads {
                console_users: all.console_users || one.console_users,
                every_user: all.every_user || one.every_user,
                known_use_within_days: match (all.known_use_within_days, one.known_use_within_days)
                {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            })
    }

    /// Whether a live read must fetch the last use of an Active key, given the user's password and the use the
    /// report saw, if any.
    pub fn must_read(
        &self,
        password_enabled: bool,
        known_use: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> bool {
        let wanted = self.every_user || (self.console_users && password_enabled);
        wanted
            && match (known_use, self.known_use_within_days) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(used), Some(days)) => (now - used).whole_days() > i64::from(days),
            }
    }
}

/// A rule shows as its ID.
impl std::fmt::Debug for dyn Rule + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// What a rule reads besides the user: when the check runs, and the rules' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub now: OffsetDateTime,
    /// `UNUSED_DAYS`: a key not used for longer than this is unused.
    pub unused_days: u32,
    /// `ROTATE_DAYS`: a key created longer ago than this is due for rotation.
    pub rotate_days: u32,
}

/// `UNUSED_DAYS` unless set: CIS's 45 days (Security Hub IAM.22).
pub const DEFAULT_UNUSED_DAYS: u32 = 45;
/// `ROTATE_DAYS` unless set: CIS's 90 days (AWS Config `access-keys-rotated`).
pub const DEFAULT_ROTATE_DAYS: u32 = 90;
/// The range `UNUSED_DAYS` and `ROTATE_DAYS` accept: a day to ten years.
pub const RULE_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

impl Context {
    /// A rule's words with its settings' names replaced by their values ("UNUSED_DAYS days" → "45 days").
    pub fn fill(&self, text: &str) -> String {
        text.replace("UNUSED_DAYS", &self.unused_days.to_string())
            .replace("ROTATE_DAYS", &self.rotate_days.to_string())
    }

    /// The defaults, at `now`.
    pub fn at(now: OffsetDateTime) -> Context {
        Context {
            now,
            unused_days: DEFAULT_UNUSED_DAYS,
            rotate_days: DEFAULT_ROTATE_DAYS,
        }
    }
}

/// One rule broken: by which keys (indexes into the user's `keys`), failing which controls, on what evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub keys: Vec<usize>,
    pub controls: Vec<&'static str>,
    pub evidence: Evidence,
}

impl Hit {
    /// A hit on the key at `index`, with its dates and the days counted as evidence.
    pub fn on_key(
        index: usize,
        key: &KeySnapshot,
        controls: Vec<&'static str>,
        days: Option<i64>,
    ) -> Hit {
        Hit {
            keys: vec![index],
            controls,
            evidence: Evidence {
                key_created: key.created,
                last_used: key.last_used,
                days,
            },
        }
    }
}

/// The data a rule's verdict rests on, as a finding carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    #[serde(with = "time::serde::rfc3339::option")]
    pub key_created: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used: Option<OffsetDateTime>,
    /// The whole days the rule counted (since the last use, or the creation), when it counts days; `None` when
    /// the data lacks the date it counts from.
    pub days: Option<i64>,
}

/// Whole days from `from` to `now`; `None` without a date.
pub fn days_since(from: Option<OffsetDateTime>, now: OffsetDateTime) -> Option<i64> {
    from.map(|from| (now - from).whole_days())
}

/// The age rules' shared test: more than `limit` whole days since `since` of the key, or no such date (a key
/// that cannot be shown young counts).
pub struct Age {
    pub since: fn(&KeySnapshot) -> Option<OffsetDateTime>,
    pub limit: u32,
}

impl Age {
    /// The days counted for `key` at `now`, when over the limit or unknown.
    pub fn over(&self, key: &KeySnapshot, now: OffsetDateTime) -> Option<Option<i64>> {
        let days = days_since((self.since)(key), now);
        days.is_none_or(|days| days > i64::from(self.limit))
            .then_some(days)
    }

    /// Every Active key of `user` over the limit: (index, key, days counted).
    pub fn active_keys<'a>(
        &'a self,
        user: &'a UserSnapshot,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = (usize, &'a KeySnapshot, Option<i64>)> + 'a {
        user.keys
            .iter()
            .enumerate()
            .filter(|(_, key)| key.active)
            .filter_map(move |(index, key)| self.over(key, now).map(|days| (index, key, days)))
    }

    /// Whether a report row has a key over the limit in any slot, Active or not (it may be reactivated).
    pub fn in_any_slot(&self, row: &UserSnapshot, now: OffsetDateTime) -> bool {
        row.keys.iter().any(|key| self.over(key, now).is_some())
    }
}

/// Every rule keywatch knows, in the order findings are listed.
pub const RULES: &[&dyn Rule] = &[
    &never_used_key::NeverUsedKeyOnConsoleUser,
    &unused_key::UnusedKey,
    &two_active_keys::TwoActiveKeys,
    &key_not_rotated::KeyNotRotated,
];

/// The rules checked unless `RULES` says otherwise: CIS 1.11 alone, so a deployment from before `RULES` checks
/// what it always did.
pub const DEFAULT_RULES: &[&dyn Rule] = &[&never_used_key::NeverUsedKeyOnConsoleUser];

/// The rule of this ID, if keywatch knows it.
pub fn rule(id: &str) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|rule| rule.id() == id)
}

/// The rules a list names: rule IDs separated by commas, or `all`. An unknown ID is an error naming it and the
/// IDs there are.
pub fn select_rules(list: &str) -> Result<Vec<&'static dyn Rule>, String> {
    if list.trim().eq_ignore_ascii_case("all") {
        return Ok(RULES.to_vec());
    }
    let mut selected: Vec<&'static dyn Rule> = Vec::new();
    for id in list.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        let rule = RULES
            .iter()
            .copied()
            .find(|rule| rule.id() == id)
            .ok_or_else(|| {
                let known: Vec<&str> = RULES.iter().map(|rule| rule.id()).collect();
                format!(
                    "unknown rule {id:?}; the rules are {} (or all)",
                    known.join(", ")
                )
            })?;
        if !selected.iter().any(|chosen| chosen.id() == id) {
            selected.push(rule);
        }
    }
    if selected.is_empty() {
        return Err("no rule named; give rule IDs separated by commas, or all".to_string());
    }
    // In the order of RULES, whatever the order given.
    selected.sort_by_key(|rule| RULES.iter().position(|known| known.id() == rule.id()));
    Ok(selected)
}

/// A key within this long of its user's creation was made at user setup: the CIS audit's creation-time clause.
pub const USER_SETUP_WINDOW: Duration = Duration::minutes(10);

/// Users worth a live look for `rules`: every report row one of them says can hold a finding
/// ([`Rule::may_hold`]), and every user the report does not list. Live data is already fresh: only users with a
/// finding of one of the rules.
pub fn candidates<'a>(
    inventory: &'a Inventory,
    rules: &[&dyn Rule],
    context: &Context,
) -> Vec<&'a InventoryUser> {
    inventory
        .users
        .iter()
        .filter(|u| match u.freshness {
            Freshness::Unreported => true,
            Freshness::Report => rules.iter().any(|rule| rule.may_hold(&u.user, context)),
            Freshness::Live => rules
                .iter()
                .any(|rule| !rule.check(&u.user, context).is_empty()),
        })
        .collect()
}

/// A user after live verification, with the value of the exemption tag if the user carries it.
#[derive(Debug, Clone)]
pub struct VerifiedUser {
    pub user: UserSnapshot,
    pub exempt_tag: Option<(String, String)>,
    /// The value of the user's `OWNER_TAG_KEY` tag, trimmed; `None` when absent, empty or routing is off.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable across runs: `account/user/access_key_id`.
    pub finding_id: String,
    pub rule: &'static str,
    /// The controls this finding fails, across CIS versions (and AWS's own, where they map).
    pub controls: Vec<&'static str>,
    pub user_name: String,
    pub user_arn: String,
    pub access_key_id: String,
    /// The user's other keys the finding names (`two-active-keys`: the second Active key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_access_key_ids: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub key_created: Option<OffsetDateTime>,
    pub key_age_days: Option<i64>,
    /// The key's last use as the rule read it live; `null` if never used (or a rule that reads no last use).
    #[serde(with = "time::serde::rfc3339::option")]
    pub key_last_used: Option<OffsetDateTime>,
    /// The whole days the rule counted (since the last use, or the creation); `null` when it counts none.
    pub days_counted: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub user_created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub password_last_used: Option<OffsetDateTime>,
    pub created_at_user_setup: bool,
    /// The last day (UTC) of the user's exemption tag, when that day has passed: the key is a finding again.
    #[serde(with = "day::option")]
    pub exemption_expired_on: Option<Date>,
    /// Who owns the key (`OWNER_TAG_KEY` on the user, else on the account, else `unowned`); `null` when routing
    /// is off.
    pub owner: Option<String>,
    /// The IAM change that led an event-driven check to this user: who made it, when and from where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<crate::cloudtrail::IamChange>,
    /// What the ledger knows of it: new or open, first seen, first alerted, when it is deactivated.
    #[serde(flatten)]
    pub history: History,
}

impl Finding {
    /// The finding's sort key in the ledger: the key ID for today's rule, as its items have always been stored;
    /// for the other rules the finding ID without its account (`user/key/rule`, `user/rule`).
    pub fn ledger_key(&self) -> String {
        if self.rule == never_used_key::ID {
            return self.access_key_id.clone();
        }
        self.finding_id
            .split_once('/')
            .map_or_else(|| self.finding_id.clone(), |(_, rest)| rest.to_string())
    }
}

time::serde::format_description!(day, Date, "[year]-[month]-[day]");

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    #[serde(flatten)]
    pub finding: Finding,
    /// When the grace period ends and the key becomes a finding.
    #[serde(with = "time::serde::rfc3339")]
    pub grace_ends: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exempted {
    #[serde(flatten)]
    pub finding: Finding,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    pub pending: Vec<Pending>,
    pub exempted: Vec<Exempted>,
}

/// The policy a run applies on top of the rules.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub account_id: &'a str,
    /// The rules checked, in [`RULES`] order.
    pub rules: &'a [&'a dyn Rule],
    /// The time of the check, and the rules' settings.
    pub context: Context,
    pub grace_period_hours: u32,
    pub exemptions: &'a Exemptions,
    /// `Some` when routing by owner: the account's owner, if its tag names one.
    pub owners: Option<Option<&'a str>>,
}

/// A finding's stable ID. Today's rule keeps `account/user/key`, as the ledger and Security Hub have it; the
/// other rules add theirs: `account/user/key/rule`, or `account/user/rule` for a finding about a user's keys
/// together.
fn finding_id(account_id: &str, user: &str, key_id: &str, rule: &str, hit: &Hit) -> String {
    match (rule, hit.keys.len()) {
        (rule, _) if rule == never_used_key::ID => format!("{account_id}/{user}/{key_id}"),
        (rule, 1) => format!("{account_id}/{user}/{key_id}/{rule}"),
        (rule, _) => format!("{account_id}/{user}/{rule}"),
    }
}

/// The owner of keys whose user and account name none.
pub const UNOWNED: &str = "unowned";

/// Sorts every rule-breaking key of verified (live) users into findings, pending and exempted. Keys without an
/// ID (report data) are never reported: only live data, with its true key IDs, can become a finding.
pub fn classify(users: &[VerifiedUser], policy: &Policy) -> Evaluation {
    let mut evaluation = Evaluation::default();
    for verified in users {
        let user = &verified.user;
        let pattern = policy
            .exemptions
            .pattern_for(&user.identity())
            .map(|pattern| format!("user matches EXEMPT_USERS pattern {pattern:?}"));
        let tag = verified
            .exempt_tag
            .as_ref()
            .map(|(key, value)| read_tag(key, value, policy.context.now));
        let (exemption, exemption_expired_on) = match (pattern, tag) {
            (Some(reason), _) | (None, Some(TagExemption::Exempt(reason))) => (Some(reason), None),
            (None, Some(TagExemption::Expired { on })) => (None, Some(on)),
            (None, Some(TagExemption::NotExempt) | None) => (None, None),
        };
        let context = policy.context;
        let hits = policy.rules.iter().flat_map(|rule| {
            rule.check(user, &context)
                .into_iter()
                .map(move |hit| (rule, hit))
        });
        for (rule, hit) in hits {
            // Report data has no key IDs: only a live key, with its true ID, can become a finding.
            let Some((key, key_id)) = hit
                .keys
                .first()
                .and_then(|&index| user.keys.get(index))
                .and_then(|key| key.id.as_deref().map(|id| (key, id)))
            else {
                continue;
            };
            let finding = Finding {
                finding_id: finding_id(policy.account_id, &user.name, key_id, rule.id(), &hit),
                rule: rule.id(),
                controls: hit.controls,
                user_name: user.name.clone(),
                user_arn: user.arn.clone(),
                access_key_id: key_id.to_string(),
                other_access_key_ids: hit
                    .keys
                    .iter()
                    .skip(1)
                    .filter_map(|&index| user.keys.get(index)?.id.clone())
                    .collect(),
                key_created: key.created,
                key_last_used: hit.evidence.last_used,
                days_counted: hit.evidence.days,
                key_age_days: key
                    .created
                    .map(|created| (policy.context.now - created).whole_days()),
                user_created: user.created,
                password_last_used: user.password_last_used,
                created_at_user_setup: key
                    .created
                    .is_some_and(|c| (c - user.created).abs() <= USER_SETUP_WINDOW),
                exemption_expired_on,
                owner: policy.owners.map(|account_owner| {
                    verified
                        .owner
                        .as_deref()
                        .or(account_owner)
                        .unwrap_or(UNOWNED)
                        .to_string()
                }),
                caused_by: None,
                history: History::default(),
            };
            // Grace 0 is strict: no key is pending, even one created while the run was going.
            let grace_ends = key
                .created
                .filter(|_| policy.grace_period_hours > 0)
                .map(|c| c + Duration::hours(policy.grace_period_hours.into()));
            if let Some(reason) = &exemption {
                evaluation.exempted.push(Exempted {
                    finding,
                    reason: reason.clone(),
                });
            } else if let Some(grace_ends) = grace_ends.filter(|ends| *ends > policy.context.now) {
                evaluation.pending.push(Pending {
                    finding,
                    grace_ends,
                });
            } else {
                evaluation.findings.push(finding);
            }
        }
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
    const USER_CREATED: OffsetDateTime = datetime!(2026-11-01 09:00 UTC);

    fn key(
        id: &str,
        active: bool,
        created: OffsetDateTime,
        last_used: Option<OffsetDateTime>,
    ) -> KeySnapshot {
        KeySnapshot {
            id: Some(id.to_string()),
            slot: None,
            active,
            created: Some(created),
            last_used,
        }
    }

    fn user(name: &str, path: &str, password: bool, keys: Vec<KeySnapshot>) -> UserSnapshot {
        UserSnapshot {
            name: name.to_string(),
            arn: format!("arn:aws:iam::123456789012:user{path}{name}"),
            path: path.to_string(),
            created: USER_CREATED,
            password_enabled: password,
            password_last_used: None,
            keys,
        }
    }

    #[derive(Debug, PartialEq)]
    enum Class {
        Finding,
        Pending,
        Exempted,
    }

    fn classes(evaluation: &Evaluation) -> Vec<(String, Class)> {
        let mut out: Vec<(String, Class)> = Vec::new();
        out.extend(
            evaluation
                .findings
                .iter()
                .map(|f| (f.access_key_id.clone(), Class::Finding)),
        );
        out.extend(
            evaluation
                .pending
                .iter()
                .map(|p| (p.finding.access_key_id.clone(), Class::Pending)),
        );
        out.extend(
            evaluation
                .exempted
                .iter()
                .map(|e| (e.finding.access_key_id.clone(), Class::Exempted)),
        );
        out
    }

    #[test]
    fn classification_table() {
        let setup = USER_CREATED + Duration::minutes(2);
        let later = USER_CREATED + Duration::days(3);
        let used = Some(NOW - Duration::days(1));
        let recent = NOW - Duration::hours(2);
        type Case = (
            &'static str,
            UserSnapshot,
            Option<(String, String)>,
            u32,
            Vec<(&'static str, Class)>,
        );
        let cases: Vec<Case> = vec![
            (
                "one unused key",
                user("a", "/", true, vec![key("K1", true, setup, None)]),
                None,
                0,
                vec![("K1", Class::Finding)],
            ),
            (
                "no password",
                user("a", "/", false, vec![key("K1", true, setup, None)]),
                None,
                0,
                vec![],
            ),
            (
                "key used",
                user("a", "/", true, vec![key("K1", true, setup, used)]),
                None,
                0,
                vec![],
            ),
            (
                "inactive key",
                user("a", "/", true, vec![key("K1", false, setup, None)]),
                None,
                0,
                vec![],
            ),
            (
                "both slots unused",
                user(
                    "a",
                    "/",
                    true,
                    vec![key("K1", true, setup, None), key("K2", true, later, None)],
                ),
                None,
                0,
                vec![("K1", Class::Finding), ("K2", Class::Finding)],
            ),
            (
                "slot 1 used, slot 2 unused",
                user(
                    "a",
                    "/",
                    true,
                    vec![key("K1", true, setup, used), key("K2", true, later, None)],
                ),
                None,
                0,
                vec![("K2", Class::Finding)],
            ),
            (
                "within grace",
                user("a", "/", true, vec![key("K1", true, recent, None)]),
                None,
                24,
                vec![("K1", Class::Pending)],
            ),
            (
                "past grace",
                user("a", "/", true, vec![key("K1", true, later, None)]),
                None,
                24,
                vec![("K1", Class::Finding)],
            ),
            (
                "grace 0 is strict",
                user("a", "/", true, vec![key("K1", true, recent, None)]),
                None,
                0,
                vec![("K1", Class::Finding)],
            ),
            (
                "exempt by name",
                user("svc-ci", "/", true, vec![key("K1", true, setup, None)]),
                None,
                0,
                vec![("K1", Class::Exempted)],
            ),
            (
                "grace 0: a key created during the run is a finding, not pending",
                user(
                    "a",
                    "/",
                    true,
                    vec![key("K1", true, NOW + Duration::seconds(1), None)],
                ),
                None,
                0,
                vec![("K1", Class::Finding)],
            ),
            (
                "grace 24: a key created during the run is pending",
                user(
                    "a",
                    "/",
                    true,
                    vec![key("K1", true, NOW + Duration::seconds(1), None)],
                ),
                None,
                24,
                vec![("K1", Class::Pending)],
            ),
            (
                "exempt by name ignores case",
                user("SVC-CI", "/", true, vec![key("K1", true, setup, None)]),
                None,
                0,
                vec![("K1", Class::Exempted)],
            ),
            (
                "tag with an empty value exempts",
                user("a", "/", true, vec![key("K1", true, setup, None)]),
                Some(("keywatch:exempt".into(), "".into())),
                0,
                vec![("K1", Class::Exempted)],
            ),
            (
                "tag false does not exempt",
                user("a", "/", true, vec![key("K1", true, setup, None)]),
                Some(("keywatch:exempt".into(), "False".into())),
                0,
                vec![("K1", Class::Finding)],
            ),
            (
                "tag dated today exempts",
                user("a", "/", true, vec![key("K1", true, setup, None)]),
                Some(("keywatch:exempt".into(), "2026-11-29".into())),
                0,
                vec![("K1", Class::Exempted)],
            ),
            (
                "tag dated yesterday has expired",
                user("a", "/", true, vec![key("K1", true, setup, None)]),
                Some(("keywatch:exempt".into(), "2026-11-28".into())),
                0,
                vec![("K1", Class::Finding)],
            ),
            (
                "exempt by tag beats grace",
                user("a", "/", true, vec![key("K1", true, recent, None)]),
                Some(("keywatch:exempt".into(), "break-glass".into())),
                24,
                vec![("K1", Class::Exempted)],
            ),
            (
                "user under a path",
                user(
                    "e",
                    "/engineering/",
                    true,
                    vec![key("K1", true, setup, None)],
                ),
                None,
                0,
                vec![("K1", Class::Finding)],
            ),
            (
                "report data without key IDs",
                user(
                    "a",
                    "/",
                    true,
                    vec![KeySnapshot {
                        id: None,
                        slot: Some(1),
                        active: true,
                        created: Some(setup),
                        last_used: None,
                    }],
                ),
                None,
                0,
                vec![],
            ),
        ];
        let exemptions = Exemptions::new(&["svc-*"], Some("keywatch:exempt")).unwrap();
        for (name, user, exempt_tag, grace, expected) in cases {
            let policy = Policy {
                account_id: "123456789012",
                rules: DEFAULT_RULES,
                context: Context::at(NOW),
                grace_period_hours: grace,
                exemptions: &exemptions,
                owners: None,
            };
            let evaluation = classify(
                &[VerifiedUser {
                    user,
                    exempt_tag,
                    owner: None,
                }],
                &policy,
            );
            let expected: Vec<(String, Class)> = expected
                .into_iter()
                .map(|(k, c)| (k.to_string(), c))
                .collect();
            assert_eq!(classes(&evaluation), expected, "{name}");
        }
    }

    /// Exemptions and owners apply to every rule's findings alike: a user exempt by name or tag has every hit
    /// exempted, and each finding of an owned user carries that owner.
    #[test]
    fn exemptions_and_owners_apply_to_every_rule() {
        let exemptions = Exemptions::new(&["svc-*"], Some("keywatch:exempt")).unwrap();
        let old = NOW - Duration::days(100);
        let keys = || vec![key("AKIA1", true, old, None), key("AKIA2", true, old, None)];
        let policy = Policy {
            account_id: "123456789012",
            rules: RULES,
            context: Context::at(NOW),
            grace_period_hours: 0,
            exemptions: &exemptions,
            owners: Some(None),
        };
        let evaluation = classify(
            &[
                VerifiedUser {
                    user: user("svc-ci", "/", true, keys()),
                    exempt_tag: None,
                    owner: None,
                },
                VerifiedUser {
                    user: user("tagged", "/", true, keys()),
                    exempt_tag: Some(("keywatch:exempt".into(), "break-glass".into())),
                    owner: None,
                },
                VerifiedUser {
                    user: user("owned", "/", true, keys()),
                    exempt_tag: None,
                    owner: Some("team-a".into()),
                },
            ],
            &policy,
        );
        use std::collections::BTreeSet;
        let rules_of = |findings: Vec<&Finding>, name: &str| -> BTreeSet<&'static str> {
            findings
                .into_iter()
                .filter(|f| f.user_name == name)
                .map(|f| f.rule)
                .collect()
        };
        let every: BTreeSet<&str> = RULES.iter().map(|r| r.id()).collect();
        let exempted: Vec<&Finding> = evaluation.exempted.iter().map(|e| &e.finding).collect();
        assert_eq!(rules_of(exempted.clone(), "svc-ci"), every);
        assert_eq!(rules_of(exempted, "tagged"), every);
        let found: Vec<&Finding> = evaluation.findings.iter().collect();
        assert_eq!(rules_of(found, "owned"), every);
        assert!(evaluation.findings.iter().all(|f| f.user_name == "owned"));
        assert!(evaluation
            .findings
            .iter()
            .all(|f| f.owner.as_deref() == Some("team-a")));
    }

    /// Every rule through classify: each finding carries its rule and controls, and its ID adds the rule,
    /// except today's rule's (unchanged: the ledger and Security Hub have them) and a rule about a user's keys
    /// together (no key in it).
    #[test]
    fn every_rule_classifies_with_its_own_id_and_controls() {
        let exemptions = Exemptions::new(&[], None).unwrap();
        let policy = Policy {
            account_id: "123456789012",
            rules: RULES,
            context: Context::at(NOW),
            grace_period_hours: 0,
            exemptions: &exemptions,
            owners: None,
        };
        let old = NOW - Duration::days(100);
        let u = user(
            "alice",
            "/",
            true,
            vec![key("AKIA1", true, old, None), key("AKIA2", true, old, None)],
        );
        let evaluation = classify(
            &[VerifiedUser {
                user: u,
                exempt_tag: None,
                owner: None,
            }],
            &policy,
        );
        let got: Vec<(&str, &str, bool)> = evaluation
            .findings
            .iter()
            .map(|f| {
                (
                    f.rule,
                    f.finding_id.as_str(),
                    f.controls.contains(&"CIS AWS v7.0 2.11"),
                )
            })
            .collect();
        let cis = "cis-1.11-never-used-key-on-console-user";
        assert_eq!(
            got,
            [
                (cis, "123456789012/alice/AKIA1", true),
                (cis, "123456789012/alice/AKIA2", true),
                ("unused-key", "123456789012/alice/AKIA1/unused-key", true),
                ("unused-key", "123456789012/alice/AKIA2/unused-key", true),
                (
                    "two-active-keys",
                    "123456789012/alice/two-active-keys",
                    false
                ),
                (
                    "key-not-rotated",
                    "123456789012/alice/AKIA1/key-not-rotated",
                    false
                ),
                (
                    "key-not-rotated",
                    "123456789012/alice/AKIA2/key-not-rotated",
                    false
                ),
            ]
        );
        // Each finding carries the evidence its rule used; a finding about both keys names the second too.
        let evidence: Vec<(&str, Option<i64>, Vec<&str>)> = evaluation
            .findings
            .iter()
            .map(|f| {
                (
                    f.access_key_id.as_str(),
                    f.days_counted,
                    f.other_access_key_ids.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            evidence,
            [
                ("AKIA1", Some(100), vec![]),
                ("AKIA2", Some(100), vec![]),
                ("AKIA1", Some(100), vec![]),
                ("AKIA2", Some(100), vec![]),
                ("AKIA1", None, vec!["AKIA2"]),
                ("AKIA1", Some(100), vec![]),
                ("AKIA2", Some(100), vec![]),
            ]
        );
        // The default rules: 1.11 alone, with the controls it fails.
        let live = classify(
            &[VerifiedUser {
                user: user("bob", "/", true, vec![key("AKIA3", true, old, None)]),
                exempt_tag: None,
                owner: None,
            }],
            &Policy {
                rules: DEFAULT_RULES,
                ..policy
            },
        );
        assert_eq!(live.findings.len(), 1);
        assert_eq!(
            live.findings[0].controls[4..],
            [
                "CIS AWS v4.0.1 1.11",
                "CIS AWS v5.0 1.10",
                "CIS AWS v6.0 2.10",
                "CIS AWS v7.0 2.11"
            ]
        );
    }

    #[test]
    fn finding_fields() {
        let exemptions = Exemptions::new(&[], None).unwrap();
        let policy = Policy {
            account_id: "123456789012",
            rules: DEFAULT_RULES,
            context: Context::at(NOW),
            grace_period_hours: 0,
            exemptions: &exemptions,
            owners: None,
        };
        let u = user(
            "alice",
            "/",
            true,
            vec![
                key("AKIA1", true, USER_CREATED + Duration::minutes(10), None),
                key("AKIA2", true, USER_CREATED + Duration::minutes(11), None),
            ],
        );
        let evaluation = classify(
            &[VerifiedUser {
                user: u,
                exempt_tag: None,
                owner: None,
            }],
            &policy,
        );
        let [first, second] = &evaluation.findings[..] else {
            panic!("two findings expected")
        };
        assert_eq!(first.finding_id, "123456789012/alice/AKIA1");
        assert!(
            first.created_at_user_setup,
            "10 minutes is still user setup"
        );
        assert!(!second.created_at_user_setup, "11 minutes is not");
        assert_eq!(first.key_age_days, Some(28));
        assert_eq!(first.exemption_expired_on, None);
    }

    #[test]
    fn the_owner_is_the_users_tag_else_the_accounts_else_unowned() {
        let exemptions = Exemptions::new(&[], None).unwrap();
        type Case<'a> = (Option<Option<&'a str>>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            // (routing and the account's owner, the user's tag, the finding's owner)
            (None, Some("team-a"), None),
            (Some(Some("platform")), Some("team-a"), Some("team-a")),
            (Some(Some("platform")), None, Some("platform")),
            (Some(None), None, Some(UNOWNED)),
            (
                Some(None),
                Some("Équipe données 42"),
                Some("Équipe données 42"),
            ),
        ];
        for &(owners, tag, expected) in cases {
            let policy = Policy {
                account_id: "123456789012",
                rules: DEFAULT_RULES,
                context: Context::at(NOW),
                grace_period_hours: 0,
                exemptions: &exemptions,
                owners,
            };
            let verified = VerifiedUser {
                user: user("a", "/", true, vec![key("K1", true, USER_CREATED, None)]),
                exempt_tag: None,
                owner: tag.map(str::to_string),
            };
            let evaluation = classify(&[verified], &policy);
            assert_eq!(
                evaluation.findings[0].owner.as_deref(),
                expected,
                "{owners:?} {tag:?}"
            );
        }
    }

    #[test]
    fn an_expired_exemption_is_named_in_the_finding() {
        let exemptions = Exemptions::new(&[], Some("keywatch:exempt")).unwrap();
        let policy = Policy {
            account_id: "123456789012",
            rules: DEFAULT_RULES,
            context: Context::at(NOW),
            grace_period_hours: 0,
            exemptions: &exemptions,
            owners: None,
        };
        let verified = VerifiedUser {
            user: user("a", "/", true, vec![key("K1", true, USER_CREATED, None)]),
            exempt_tag: Some(("keywatch:exempt".into(), "2026-11-01".into())),
            owner: None,
        };
        let evaluation = classify(&[verified], &policy);
        assert_eq!(
            evaluation.findings[0].exemption_expired_on,
            Some(time::macros::date!(2026 - 11 - 01))
        );
        let json = serde_json::to_value(&evaluation.findings[0]).unwrap();
        assert_eq!(json["exemption_expired_on"], "2026-11-01");
    }

    #[test]
    fn candidates_come_from_report_rules_and_unreported_users() {
        let reported = |u: UserSnapshot| InventoryUser {
            user: u,
            freshness: Freshness::Report,
        };
        let report_key = |active, last_used| KeySnapshot {
            id: None,
            slot: Some(1),
            active,
            created: Some(USER_CREATED),
            last_used,
        };
        let live = |u: UserSnapshot| InventoryUser {
            user: u,
            freshness: Freshness::Live,
        };
        // (user, candidate?)
        let cases = [
            (
                reported(user("hit", "/", true, vec![report_key(true, None)])),
                true,
            ),
            (
                reported(user("used", "/", true, vec![report_key(true, Some(NOW))])),
                false,
            ),
            // A password may have been added since the report.
            (
                reported(user("nopw", "/", false, vec![report_key(true, None)])),
                true,
            ),
            // The key may have been reactivated since the report.
            (
                reported(user("inactive", "/", true, vec![report_key(false, None)])),
                true,
            ),
            (
                reported(user(
                    "one-of-two",
                    "/",
                    false,
                    vec![report_key(true, Some(NOW)), report_key(false, None)],
                )),
                true,
            ),
            (reported(user("nokeys", "/", true, vec![])), false),
            (
                InventoryUser {
                    user: user("new", "/", false, vec![]),
                    freshness: Freshness::Unreported,
                },
                true,
            ),
            (
                live(user("live-hit", "/", true, vec![report_key(true, None)])),
                true,
            ),
            (
                live(user("live-nopw", "/", false, vec![report_key(true, None)])),
                false,
            ),
        ];
        for (inventory_user, expected) in cases {
            let name = inventory_user.user.name.clone();
            let inventory = Inventory {
                report_generated_at: None,
                phase_ms: vec![],
                users: vec![inventory_user],
            };
            let context = Context::at(NOW);
            assert_eq!(
                candidates(&inventory, DEFAULT_RULES, &context).len() == 1,
                expected,
                "{name}"
            );
        }
    }
}

/// The rules' table tests share these: one user, keys from report-like data.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::model::{KeySnapshot, UserSnapshot};
    use time::macros::datetime;
    use time::OffsetDateTime;

    pub const NOW: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

    /// `days` before [`NOW`].
    pub fn ago(days: i64) -> Option<OffsetDateTime> {
        Some(NOW - time::Duration::days(days))
    }

    pub fn key(
        active: bool,
        created: Option<OffsetDateTime>,
        last_used: Option<OffsetDateTime>,
    ) -> KeySnapshot {
        KeySnapshot {
            id: None,
            slot: None,
            active,
            created,
            last_used,
        }
    }

    pub fn user(password: bool, keys: Vec<KeySnapshot>) -> UserSnapshot {
        UserSnapshot {
            name: "u".into(),
            arn: "arn:aws:iam::123456789012:user/u".into(),
            path: "/".into(),
            created: datetime!(2020-01-01 00:00 UTC),
            password_enabled: password,
            password_last_used: None,
            keys,
        }
    }
}

#[cfg(test)]
mod rule_list_tests {
    use super::tests_support::{ago, key, user, NOW};
    use super::*;

    /// What the rules read of a key's last use, alone and together: today's rule only whether a console user's
    /// key was used (any use the report saw serves); unused-key every user's, a seen use standing only while it
    /// is at most UNUSED_DAYS old; the others none.
    #[test]
    fn last_use_reads_by_rule() {
        let context = Context {
            unused_days: 30,
            ..Context::at(NOW)
        };
        let rules = |ids: &str| select_rules(ids).unwrap();
        let reads = |ids: &str| LastUseReads::of(&rules(ids), &context);
        let days = |d: i64| Some(NOW - Duration::days(d));
        // (rules, password, seen use, must read)
        let cases = [
            ("cis-1.11-never-used-key-on-console-user", true, None, true),
            (
                "cis-1.11-never-used-key-on-console-user",
                false,
                None,
                false,
            ),
            (
                "cis-1.11-never-used-key-on-console-user",
                true,
                days(400),
                false,
            ),
            ("unused-key", false, None, true),
            ("unused-key", false, days(30), false),
            ("unused-key", false, days(31), true),
            ("two-active-keys,key-not-rotated", true, None, false),
            ("all", true, days(10), false),
            ("all", true, days(100), true),
            ("all", false, None, true),
        ];
        for (ids, password, seen, expected) in cases {
            assert_eq!(
                reads(ids).must_read(password, seen, NOW),
                expected,
                "{ids}, password {password}, seen {seen:?}"
            );
        }
        assert_eq!(
            reads("all"),
            LastUseReads {
                console_users: true,
                every_user: true,
                known_use_within_days: Some(30)
            }
        );
    }

    /// Every report row that can hold a finding of a rule after what may have happened since the report (a key
    /// used, deactivated or reactivated, a password added or removed) is a candidate of that rule: over every
    /// row of up to two keys drawn from a grid of dates and states, and every rule at two settings.
    #[test]
    fn every_row_that_can_hold_a_finding_is_a_candidate() {
        let dates = [None, ago(0), ago(2), ago(46), ago(91), ago(400)];
        let mut slots: Vec<KeySnapshot> = Vec::new();
        for active in [true, false] {
            for created in dates {
                for last_used in dates {
                    slots.push(key(active, created, last_used));
                }
            }
        }
        let mut rows = vec![vec![]];
        rows.extend(slots.iter().map(|k| vec![k.clone()]));
        for first in slots.iter().step_by(3) {
            for second in slots.iter().step_by(5) {
                rows.push(vec![first.clone(), second.clone()]);
            }
        }
        // What each key may have become since the report: its state either way, used just now or not.
        let since = |k: &KeySnapshot| -> Vec<KeySnapshot> {
            let mut out = Vec::new();
            for active in [true, false] {
                for last_used in [k.last_used, Some(NOW - Duration::minutes(5))] {
                    out.push(KeySnapshot {
                        active,
                        last_used,
                        ..k.clone()
                    });
                }
            }
            out
        };
        let contexts = [
            Context::at(NOW),
            Context {
                unused_days: 1,
                rotate_days: 400,
                ..Context::at(NOW)
            },
        ];
        let mut checked = 0;
        for rule in RULES {
            for context in &contexts {
                for keys in &rows {
                    for password in [true, false] {
                        let row = user(password, keys.clone());
                        let mut lives: Vec<Vec<KeySnapshot>> = vec![vec![]];
                        for k in keys {
                            lives = lives
                                .into_iter()
                                .flat_map(|done| {
                                    since(k).into_iter().map(move |next| {
                                        let mut keys = done.clone();
                                        keys.push(next);
                                        keys
                                    })
                                })
                                .collect();
                        }
                        for live_keys in lives {
                            for live_password in [true, false] {
                                let live = user(live_password, live_keys.clone());
                                checked += 1;
                                if !rule.check(&live, context).is_empty() {
                                    assert!(
                                        rule.may_hold(&row, context),
                                        "{}: the row {row:?} is no candidate, yet it became {live:?}",
                                        rule.id()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    /// Each rule's candidates on report rows, and how few: a row a rule cannot flag is not read live.
    #[test]
    fn each_rule_names_only_rows_that_can_hold_its_findings() {
        let context = Context::at(NOW);
        // (rule, keys of the row, candidate?)
        let cases = [
            (
                "cis-1.11-never-used-key-on-console-user",
                vec![key(true, ago(400), ago(1))],
                false,
            ),
            (
                "cis-1.11-never-used-key-on-console-user",
                vec![key(false, ago(400), None)],
                true,
            ),
            ("unused-key", vec![key(true, ago(400), ago(1))], false),
            ("unused-key", vec![key(true, ago(40), None)], false),
            ("unused-key", vec![key(false, ago(400), ago(46))], true),
            ("two-active-keys", vec![key(true, ago(1), None)], false),
            (
                "two-active-keys",
                vec![key(false, ago(1), None), key(false, ago(1), None)],
                true,
            ),
            ("key-not-rotated", vec![key(true, ago(90), ago(0))], false),
            ("key-not-rotated", vec![key(false, ago(91), None)], true),
            ("key-not-rotated", vec![key(true, None, None)], true),
        ];
        for (id, keys, expected) in cases {
            let rule = select_rules(id).unwrap()[0];
            let row = user(false, keys);
            assert_eq!(rule.may_hold(&row, &context), expected, "{id}: {row:?}");
        }
    }

    #[test]
    fn rules_are_selected_by_id_or_all() {
        let ids = |list: &str| {
            select_rules(list).map(|rules| rules.iter().map(|r| r.id()).collect::<Vec<_>>())
        };
        let every = [
            "cis-1.11-never-used-key-on-console-user",
            "unused-key",
            "two-active-keys",
            "key-not-rotated",
        ];
        assert_eq!(ids("all").unwrap(), every);
        assert_eq!(ids(" ALL ").unwrap(), every);
        assert_eq!(
            ids("key-not-rotated, unused-key,unused-key").unwrap(),
            ["unused-key", "key-not-rotated"],
            "in the rule list's order, once each"
        );
        let error = ids("unused-key,unsued-key").unwrap_err();
        assert!(error.contains("unknown rule \"unsued-key\""), "{error}");
        assert!(
            error.contains("two-active-keys"),
            "names the rules: {error}"
        );
        assert!(ids(" , ").is_err());
        // Each rule's ID is its own.
        let mut unique: Vec<&str> = RULES.iter().map(|r| r.id()).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), RULES.len());
    }
}
