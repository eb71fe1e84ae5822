//! What an exemption tag's value means. Empty or any text exempts, and the reason carries it (a ticket, say);
//! `false` does not; a date `YYYY-MM-DD` exempts through that day (UTC), so a forgotten exemption ends by itself.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagExemption {
    /// Exempt, with the reason shown in the report.
    Exempt(String),
    /// The tag's date has passed: the key is judged as if there were no tag, and the finding says so.
    Expired { on: Date },
    /// `false`: the tag is there but exempts nothing.
    NotExempt,
}

/// Reads the tag `key`=`value` at `now`.
pub fn read_tag(key: &str, value: &str, now: OffsetDateTime) -> TagExemption {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("false") {
        return TagExemption::NotExempt;
    }
    match parse_date(trimmed) {
        Some(through) if now.date() <= through => TagExemption::Exempt(format!(
            "user has tag {key}={value:?}: exempt through {through} (UTC)"
        )),
        Some(through) => TagExemption::Expired { on: through },
        None if looks_like_date(trimmed) => TagExemption::Exempt(format!(
            "user has tag {key}={value:?}, which is not a valid date, so it never expires"
        )),
        None => TagExemption::Exempt(format!("user has tag {key}={value:?}")),
    }
}

fn parse_date(value: &str) -> Option<Date> {
    Date::parse(value, format_description!("[year]-[month]-[day]")).ok()
}

/// `2026-02-30` or `2026-13-01`: meant as a date, but none.
fn looks_like_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn tag_values() {
        let now = datetime!(2026-11-30 23:59:59 UTC);
        let k = "keywatch:exempt";
        let exempt = |reason: &str| TagExemption::Exempt(reason.to_string());
        let cases = [
            ("", exempt("user has tag keywatch:exempt=\"\"")),
            ("SEC-1234", exempt("user has tag keywatch:exempt=\"SEC-1234\"")),
            ("true", exempt("user has tag keywatch:exempt=\"true\"")),
            ("false", TagExemption::NotExempt),
            ("FALSE", TagExemption::NotExempt),
            (" False ", TagExemption::NotExempt),
            (
                "2026-11-30",
                exempt("user has tag keywatch:exempt=\"2026-11-30\": exempt through 2026-11-30 (UTC)"),
            ),
            (
                "2027-01-15",
                exempt("user has tag keywatch:exempt=\"2027-01-15\": exempt through 2027-01-15 (UTC)"),
            ),
            ("2026-11-29", TagExemption::Expired { on: date!(2026 - 11 - 29) }),
            (
                "2026-02-30",
                exempt("user has tag keywatch:exempt=\"2026-02-30\", which is not a valid date, so it never expires"),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(read_tag(k, value, now), expected, "{value:?}");
        }
        // The day after, at midnight UTC, the same tag has expired.
        assert_eq!(
            read_tag(k, "2026-11-30", datetime!(2026-12-01 00:00 UTC)),
            TagExemption::Expired {
                on: date!(2026 - 11 - 30)
            }
        );
    }
}
