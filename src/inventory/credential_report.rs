//! The cheap inventory: one credential report for the whole account, plus one paginated `ListUsers` to catch
//! users created after the report. IAM calls stay O(1) whatever the number of users.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_iam::types::ReportStateType;
use aws_sdk_iam::Client as IamClient;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{elapsed_ms, list_users, Freshness, Inventory, InventoryUser};
use crate::aws::{aws_error, error_code};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::model::{from_smithy, path_from_arn, KeySnapshot, UserIdentity, UserSnapshot};

const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(4);

pub async fn collect(iam: &IamClient, deadline: &Deadline) -> Result<Inventory> {
    let start = Instant::now();
    let (csv, generated_at) = deadline
        .run("credential report generation", fetch(iam, deadline))
        .await?;
    let generation_ms = elapsed_ms(start);
    let start = Instant::now();
    let reported = parse(&csv)?;
    // The raw CSV is not needed past parsing; free it before the live phase.
    drop(csv);
    let parse_ms = elapsed_ms(start);
    let start = Instant::now();
    let listed = deadline.run("ListUsers", list_users(iam)).await?;
    Ok(Inventory {
        report_generated_at: Some(generated_at),
        users: merge(reported, listed),
        phase_ms: vec![
            ("report_generation", generation_ms),
            ("report_parse", parse_ms),
            ("list_users", elapsed_ms(start)),
        ],
    })
}

/// Generates the report if needed and downloads it, polling with bounded exponential backoff. Throttling is
/// retried by the SDK; the states IAM reports as errors (`LimitExceeded`, `ReportInProgress`, ...) here.
async fn fetch(iam: &IamClient, deadline: &Deadline) -> Result<(Vec<u8>, OffsetDateTime)> {
    let mut wait = FIRST_POLL;
    let mut attempts = 0;
    let mut last_state;
    loop {
        attempts += 1;
        last_state = match iam.generate_credential_report().send().await {
            Ok(out) if out.state == Some(ReportStateType::Complete) => {
                match iam.get_credential_report().send().await {
                    Ok(report) => {
                        // Without its time, staleness cannot be judged; without a body, nothing was read.
                        let generated_at =
                            report.generated_time.as_ref().and_then(from_smithy).ok_or(
                                Error::ReportIncomplete {
                                    missing: "GeneratedTime",
                                },
                            )?;
                        let content = report
                            .content
                            .map(|blob| blob.into_inner())
                            .filter(|content| !content.is_empty())
                            .ok_or(Error::ReportIncomplete { missing: "Content" })?;
                        return Ok((content, generated_at));
                    }
                    // The report vanished or aged out between the two calls: generate it again.
                    Err(e)
                        if matches!(
                            error_code(&e),
                            Some("ReportInProgress" | "ReportNotPresent" | "ReportExpired")
                        ) =>
                    {
                        error_code(&e).unwrap_or_default().to_string()
                    }
                    Err(e) => return Err(aws_error("iam:GetCredentialReport", e)),
                }
            }
            Ok(out) => out
                .state
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "unknown".to_string()),
            Err(e) if error_code(&e) == Some("LimitExceeded") => "LimitExceeded".to_string(),
            Err(e) => return Err(aws_error("iam:GenerateCredentialReport", e)),
        };
        if deadline.remaining() <= wait {
            return Err(Error::ReportNotReady {
                attempts,
                last_state,
            });
        }
        tracing::debug!(attempts, state = %last_state, wait_ms = wait.as_millis() as u64, "credential report not ready");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_POLL);
    }
}

/// The report's user columns that keywatch reads (key columns: [`KEY_SLOTS`]). Others are ignored, so new AWS
/// columns do not break parsing.
const USER_COLUMNS: [&str; 5] = [
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
];

/// Parses the report CSV into users, matching columns by header name. The root row is skipped (root keys are a
/// different CIS control). Values are case-insensitive; `N/A`, `no_information` and `not_supported` mean none.
pub fn parse(csv: &[u8]) -> Result<Vec<UserSnapshot>> {
    let csv = csv.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(csv);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
    let headers = reader.headers().map_err(|e| malformed_csv(1, e))?.clone();
    let mut index = HashMap::new();
    for column in USER_COLUMNS
        .into_iter()
        .chain(KEY_SLOTS.into_iter().flatten())
    {
        let position = headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(column))
            .ok_or_else(|| Error::ReportMalformed {
                row: 1,
                column: column.to_string(),
                reason: "the header has no such column".to_string(),
            })?;
        index.insert(column, position);
    }

    let mut users = Vec::new();
    // Rows are numbered as records with the header as row 1: csv's own line numbers lag behind with CRLF.
    for (number, record) in (2u64..).zip(reader.records()) {
        let record = record.map_err(|e| malformed_csv(number, e))?;
        let row = Row {
            record: &record,
            index: &index,
            line: number,
        };
        let name = row.text("user")?;
        if name == "<root_account>" {
            continue;
        }
        let arn = row.text("arn")?.to_string();
        let mut keys = Vec::new();
        for (slot, [active, rotated, last_used]) in (1u8..).zip(KEY_SLOTS) {
            let active = row.boolean(active)?;
            let created = row.date(rotated)?;
            // An empty slot reads `false` with no rotation date; it holds no key.
            if active || created.is_some() {
                let last_used = row.date(last_used)?;
                keys.push(KeySnapshot {
                    id: None,
                    slot: Some(slot),
                    active,
                    created,
                    last_used,
                });
            }
        }
        users.push(UserSnapshot {
            name: name.to_string(),
            path: path_from_arn(&arn),
            arn,
            created: row
                .date("user_creation_time")?
                .ok_or_else(|| row.error("user_creation_time", "is empty"))?,
            password_enabled: row.boolean("password_enabled")?,
            password_last_used: row.date("password_last_used")?,
            keys,
        });
    }
    Ok(users)
}

/// Per key slot: whether it is active, when it was created (rotated), and when it was last used.
const KEY_SLOTS: [[&str; 3]; 2] = [
    [
        "access_key_1_active",
        "access_key_1_last_rotated",
        "access_key_1_last_used_date",
    ],
    [
        "access_key_2_active",
        "access_key_2_last_rotated",
        "access_key_2_last_used_date",
    ],
];

fn malformed_csv(line: u64, error: csv::Error) -> Error {
    let reason = match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "it is not valid UTF-8".to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("the row has {len} fields but the header has {expected_len} (a truncated or corrupted row)")
        }
        _ => error.to_string(),
    };
    Error::ReportMalformed {
        row: line,
        column: "(whole row)".to_string(),
        reason,
    }
}

struct Row<'a> {
    record: &'a csv::StringRecord,
    index: &'a HashMap<&'static str, usize>,
    line: u64,
}

impl Row<'_> {
    fn error(&self, column: &str, reason: &str) -> Error {
        Error::ReportMalformed {
            row: self.line,
            column: column.to_string(),
            reason: reason.to_string(),
        }
    }

    fn text(&self, column: &'static str) -> Result<&str> {
        let value = self
            .index
            .get(column)
            .and_then(|&i| self.record.get(i))
            .map(str::trim);
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.error(column, "is empty"))
    }

    /// `None` for the report's spellings of "no value".
    fn optional(&self, column: &'static str) -> Option<&str> {
        let value = self
            .index
            .get(column)
            .and_then(|&i| self.record.get(i))
            .map(str::trim)
            .unwrap_or("");
        let none = value.is_empty()
            || ["N/A", "no_information", "not_supported"]
                .iter()
                .any(|n| value.eq_ignore_ascii_case(n));
        (!none).then_some(value)
    }

    fn boolean(&self, column: &'static str) -> Result<bool> {
        match self.optional(column) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self.error(column, &format!("{v:?} is not true or false"))),
        }
    }

    fn date(&self, column: &'static str) -> Result<Option<OffsetDateTime>> {
        self.optional(column)
            .map(|v| {
                OffsetDateTime::parse(v, &Rfc3339)
                    .map_err(|e| self.error(column, &format!("{v:?} is not a date: {e}")))
            })
            .transpose()
    }
}

/// Joins the report with `ListUsers`: users deleted since the report drop out, and users created after it
/// (or deleted and re-created under the same name) are marked for a live lookup.
pub fn merge(reported: Vec<UserSnapshot>, listed: Vec<UserIdentity>) -> Vec<InventoryUser> {
    let mut by_arn: HashMap<String, UserSnapshot> =
        reported.into_iter().map(|u| (u.arn.clone(), u)).collect();
    listed
        .into_iter()
        .map(|identity| match by_arn.remove(&identity.arn) {
            // The report stores whole seconds; a later creation time means the name was re-used.
            Some(mut user)
                if identity.created.unix_timestamp() <= user.created.unix_timestamp() =>
            {
                // ListUsers is live; the report may be hours old.
                user.password_last_used = identity.password_last_used.or(user.password_last_used);
                InventoryUser {
                    user,
                    freshness: Freshness::Report,
                }
            }
            _ => InventoryUser::unread(identity),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const FIXTURE: &str = include_str!("../../tests/fixtures/credential-report-aws-shapes.csv");

    fn by_name(users: &[UserSnapshot], name: &str) -> UserSnapshot {
        users
            .iter()
            .find(|u| u.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no user {name}"))
    }

    #[test]
    fn parses_real_aws_shapes() {
        let users = parse(FIXTURE.as_bytes()).unwrap();
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "alice",
                "bob",
                "carol",
                "dave",
                "erin",
                "frank",
                "o'neil.m+ops@corp"
            ],
            "root row skipped"
        );

        let alice = by_name(&users, "alice");
        assert!(alice.password_enabled);
        assert_eq!(alice.password_last_used, None, "no_information is no value");
        assert_eq!(alice.keys.len(), 1, "an empty slot 2 holds no key");
        assert_eq!(
            alice.keys[0].created,
            Some(datetime!(2026-10-01 12:00:03 UTC))
        );

        let dave = by_name(&users, "dave");
        assert_eq!(
            dave.keys[0].last_used,
            Some(datetime!(2026-11-27 03:00:00 UTC)),
            "region N/A, service s3"
        );
        assert_eq!(dave.keys[1].last_used, None);

        let frank = by_name(&users, "frank");
        assert!(
            frank.password_enabled && frank.keys.iter().all(|k| k.active),
            "upper-case TRUE"
        );
        assert_eq!(frank.path, "/ops/");

        assert!(!by_name(&users, "bob").password_enabled);
        assert!(!by_name(&users, "erin").keys[0].active);
    }

    #[test]
    fn header_columns_are_matched_by_name_with_bom_and_crlf() {
        let reordered = "\u{feff}arn,user,extra,user_creation_time,password_enabled,password_last_used,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date\r\n\
            \"arn:aws:iam::1:user/x,y\",x,?,2026-01-01T00:00:00+00:00,true,N/A,false,N/A,N/A,true,2026-01-01T00:00:05+00:00,N/A\r\n";
        let users = parse(reordered.as_bytes()).unwrap();
        assert_eq!(users[0].name, "x");
        assert_eq!(users[0].arn, "arn:aws:iam::1:user/x,y");
        assert_eq!(users[0].keys.len(), 1);
        assert_eq!(users[0].keys[0].slot, Some(1));
    }

    #[test]
    fn empty_report_has_no_users() {
        let header = FIXTURE.lines().next().unwrap();
        assert!(parse(header.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn malformed_reports_name_row_and_column() {
        let header = FIXTURE.lines().next().unwrap();
        let alice = FIXTURE.lines().nth(2).unwrap();
        let cases = [
            (
                header.replace("password_enabled", "pw"),
                1,
                "password_enabled",
            ),
            (
                format!(
                    "{header}\n{}",
                    alice.replace("2026-10-01T12:00:00+00:00", "yesterday")
                ),
                2,
                "user_creation_time",
            ),
            (
                format!("{header}\n{}", alice.replacen(",true,", ",maybe,", 1)),
                2,
                "password_enabled",
            ),
            (
                format!("{header}\n{alice}\n{}", &alice[..40]),
                3,
                "(whole row)",
            ),
        ];
        for (csv, row, column) in cases {
            match parse(csv.as_bytes()) {
                Err(Error::ReportMalformed {
                    row: r, column: c, ..
                }) => assert_eq!((r, c.as_str()), (row, column)),
                other => panic!("expected ReportMalformed at {row}/{column}, got {other:?}"),
            }
        }
        let mut invalid_utf8 = format!("{header}\n").into_bytes();
        invalid_utf8.extend_from_slice(b"\xff\xfe,arn\n");
        assert!(matches!(
            parse(&invalid_utf8),
            Err(Error::ReportMalformed { row: 2, .. })
        ));
    }

    #[test]
    fn merge_marks_new_and_recreated_users_for_live_lookup() {
        let users = parse(FIXTURE.as_bytes()).unwrap();
        let identity = |u: &UserSnapshot| u.identity();
        let alice = by_name(&users, "alice");
        let mut signed_in_alice = identity(&alice);
        signed_in_alice.password_last_used = Some(datetime!(2026-11-29 14:00:00 UTC));
        let mut recreated_bob = identity(&by_name(&users, "bob"));
        recreated_bob.created = datetime!(2026-11-29 12:00:00 UTC);
        let newcomer = UserIdentity {
            name: "newcomer".into(),
            arn: "arn:aws:iam::123456789012:user/newcomer".into(),
            path: "/".into(),
            created: datetime!(2026-11-29 13:00:00 UTC),
            password_last_used: None,
        };
        let merged = merge(
            users.clone(),
            vec![signed_in_alice, recreated_bob, newcomer],
        );
        assert_eq!(
            merged[0].user.password_last_used,
            Some(datetime!(2026-11-29 14:00:00 UTC)),
            "ListUsers is fresher than the report"
        );
        let mut remembered = by_name(&users, "alice");
        remembered.password_last_used = Some(datetime!(2026-11-02 00:00:00 UTC));
        let kept = merge(vec![remembered.clone()], vec![identity(&alice)]);
        assert_eq!(
            kept[0].user.password_last_used, remembered.password_last_used,
            "without a ListUsers value the report's stays"
        );
        let freshness: Vec<(&str, Freshness)> = merged
            .iter()
            .map(|u| (u.user.name.as_str(), u.freshness))
            .collect();
        assert_eq!(
            freshness,
            [
                ("alice", Freshness::Report),
                ("bob", Freshness::Unreported),
                ("newcomer", Freshness::Unreported)
            ],
            "users missing from ListUsers (deleted) drop out"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    /// A report row in any of the shapes AWS writes: booleans in either case, dates or the "no value" words, and
    /// key slots that are empty (`false`, no rotation date). With the password flag and the keys it holds, in
    /// slot order: (active, used).
    fn row() -> impl Strategy<Value = (String, bool, Vec<(bool, bool)>)> {
        let name = "[A-Za-z0-9+=,.@_-]{1,64}";
        let boolean = prop_oneof![
            Just("true"),
            Just("TRUE"),
            Just("True"),
            Just("false"),
            Just("FALSE")
        ];
        let key = prop::option::weighted(
            0.75,
            (boolean.clone(), prop_oneof![Just(true), Just(false)]),
        );
        (name, boolean, key.clone(), key).prop_map(|(name, password, k1, k2)| {
            let slot = |key: Option<(&str, bool)>| match key {
                // An empty slot, as AWS writes it for a user with fewer than two keys.
                None => "false,N/A,N/A,N/A,N/A".to_string(),
                Some((active, used)) => {
                    let last_used = if used { "2026-11-01T00:00:00+00:00" } else { "N/A" };
                    format!("{active},2026-01-01T00:00:00+00:00,{last_used},N/A,N/A")
                }
            };
            let line = format!(
                "\"{name}\",\"arn:aws:iam::123456789012:user/{name}\",2026-01-01T00:00:00+00:00,{password},no_information,N/A,not_supported,false,{},{},false,N/A,false,N/A",
                slot(k1),
                slot(k2)
            );
            let on = |s: &str| s.eq_ignore_ascii_case("true");
            let keys = [k1, k2]
                .into_iter()
                .flatten()
                .map(|(active, used)| (on(active), used))
                .collect();
            (line, on(password), keys)
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn mangled_real_reports_parse_or_name_the_row(cut in 0usize..FIXTURE_LEN, junk in "[,\"\\r\\n a-z0-9:]{0,16}") {
            let fixture = include_str!("../../tests/fixtures/credential-report-aws-shapes.csv");
            let cut = (0..=cut).rev().find(|&i| fixture.is_char_boundary(i)).unwrap_or(0);
            let mangled = format!("{}{junk}{}", &fixture[..cut], &fixture[cut..]);
            let original = parse(fixture.as_bytes()).unwrap();
            match parse(mangled.as_bytes()) {
                Err(error) => prop_assert!(matches!(error, Error::ReportMalformed { .. }), "{error:?}"),
                // A success must not be a mis-parse: junk that opens no field, quote or row changes at most the
                // one field it landed in, never the number of users or another user. (Junk in `<root_account>`
                // renames that row, which then reads as a user: the one field changed, and kept apart here.)
                Ok(users) if !junk.contains([',', '"', '\r', '\n']) => {
                    let (renamed_root, users): (Vec<_>, Vec<_>) =
                        users.into_iter().partition(|u| u.arn.ends_with(":root"));
                    prop_assert!(renamed_root.len() <= 1, "{:?}", renamed_root);
                    prop_assert_eq!(users.len(), original.len());
                    let changed = users.iter().zip(&original).filter(|(a, b)| a != b).count();
                    prop_assert!(changed <= 1, "{} users changed by one insertion", changed);
                }
                // Junk that splits fields or rows: never more users than rows of text after the header.
                Ok(users) => {
                    let rows = mangled.lines().filter(|l| !l.trim().is_empty()).count().saturating_sub(1);
                    prop_assert!(users.len() <= rows, "{} users from {} rows", users.len(), rows);
                }
            }
        }

        #[test]
        fn a_row_past_the_header_is_named(rows in prop::collection::vec(row(), 1..20), pick in any::<prop::sample::Index>()) {
            let extra = pick.index(rows.len());
            let lines: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| if i == extra { format!("{},extra", r.0) } else { r.0.clone() })
                .collect();
            let csv = std::iter::once(HEADER.to_string()).chain(lines).collect::<Vec<_>>().join("\r\n");
            match parse(csv.as_bytes()) {
                Err(Error::ReportMalformed { row, .. }) => prop_assert_eq!(row, extra as u64 + 2),
                other => prop_assert!(false, "a row with a field past the header must fail: {:?}", other.map(|u| u.len())),
            }
        }

        #[test]
        fn generated_rows_parse_to_the_right_keys(rows in prop::collection::vec(row(), 0..40)) {
            let csv = std::iter::once(HEADER.to_string()).chain(rows.iter().map(|r| r.0.clone())).collect::<Vec<_>>().join("\r\n");
            let users = parse(csv.as_bytes()).unwrap();
            prop_assert_eq!(users.len(), rows.len());
            for (user, (_, password, slots)) in users.iter().zip(&rows) {
                prop_assert_eq!(user.password_enabled, *password);
                // Empty slots hold no key; the whole list is compared.
                let keys: Vec<(bool, bool)> =
                    user.keys.iter().map(|k| (k.active, k.last_used.is_some())).collect();
                prop_assert_eq!(&keys, slots);
            }
        }
    }

    const FIXTURE_LEN: usize =
        include_str!("../../tests/fixtures/credential-report-aws-shapes.csv").len();

    #[test]
    fn a_5000_row_report_parses() {
        let rows = (0..5_000).map(|i| FIXTURE_ROW.replacen("alice", &format!("user{i}"), 2));
        let csv = std::iter::once(HEADER.to_string())
            .chain(rows)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(csv.as_bytes()).unwrap().len(), 5_000);
    }

    #[test]
    fn unequal_rows_name_their_line_with_crlf() {
        let csv = format!("{HEADER}\r\n{FIXTURE_ROW}\r\n{FIXTURE_ROW},extra\r\n");
        let result = parse(csv.as_bytes());
        assert!(
            matches!(result, Err(Error::ReportMalformed { row: 3, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn extra_and_unknown_columns_are_ignored() {
        let csv = format!("{HEADER},new_aws_column\n{},extra\n", FIXTURE_ROW);
        assert_eq!(parse(csv.as_bytes()).unwrap()[0].name, "alice");
    }

    const FIXTURE_ROW: &str = "alice,arn:aws:iam::123456789012:user/alice,2026-10-01T12:00:00+00:00,true,no_information,2026-10-01T12:00:02+00:00,N/A,false,true,2026-10-01T12:00:03+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";
}
