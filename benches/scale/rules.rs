//! The document's rules section: `RULES=all` against the default rule on the largest account, with every key
//! aged by the proxy (moto dates keys and uses "now"), so that each of the four rules has findings; each rule's
//! candidate rows and the calls against their bound.

use crate::measure::*;
use crate::seed::Plan;
use crate::support::proxy::{Proxy, EVERY_USER};
use crate::write::*;
use crate::CONFIGS;
use std::fmt::Write as _;
use std::path::Path;

/// How old the proxy makes every key, and how long ago every used key was last used: past `UNUSED_DAYS` (45) and
/// `ROTATE_DAYS` (90), so every Active key is a finding of `unused-key` and of `key-not-rotated`.
pub(crate) const AGED_CREATED_DAYS: i64 = 100;
pub(crate) const AGED_USED_DAYS: i64 = 50;

pub(crate) const DEFAULT_RULE: &str = "default rule (cis-1.11)";
pub(crate) const ALL_RULES: &str = "RULES=all";

/// `runs` rounds of a dry run with the default rule and one with every rule, on the account moto holds (`size`),
/// through the credential report (configuration 0).
pub(crate) async fn bench_rules(
    binary: &Path,
    proxy: &Proxy,
    size: usize,
    runs: usize,
) -> Vec<(&'static str, Run)> {
    proxy.age_user(EVERY_USER, AGED_CREATED_DAYS, AGED_USED_DAYS);
    let mut measured = Vec::new();
    for round in 1..=runs {
        for (label, rules) in [
            (DEFAULT_RULE, "cis-1.11-never-used-key-on-console-user"),
            (ALL_RULES, "all"),
        ] {
            let vars = [("DRY_RUN", "true"), ("RULES", rules)];
            let run = invoke(binary, &proxy.url, size, 0, &vars).await;
            eprintln!(
                "  rules, run {round}/{runs} {label:<24}: {:>7.2?} wall, {} IAM calls, {} candidates, {} findings",
                run.wall,
                iam_calls(&run.calls),
                run.candidates,
                run.findings
            );
            measured.push((label, run));
        }
    }
    proxy.clear_ages();
    measured
}

/// What the plan implies with every key aged: each rule's candidate rows and findings.
struct Implied {
    /// (rule, the report rows it names, its findings)
    rules: [(&'static str, &'static str, usize, usize); 4],
    candidates: usize,
    findings: usize,
    /// The bound on IAM calls of the all-rules run.
    bound: usize,
}

fn implied(plan: &Plan) -> Implied {
    let with_keys = plan.count(|u| usize::from(!u.keys.is_empty()));
    let two_keys = plan.count(|u| usize::from(u.keys.len() >= 2));
    let two_active = plan.count(|u| usize::from(u.keys.iter().filter(|k| k.active).count() >= 2));
    let active = plan.keys(None, Some(true), None);
    Implied {
        rules: [
            (
                "cis-1.11-never-used-key-on-console-user",
                "a never-used key in either slot, Active or not, password or not",
                plan.candidates(),
                plan.findings(),
            ),
            (
                "unused-key",
                "a key in either slot last used (or, never used, created) more than `UNUSED_DAYS` ago",
                with_keys,
                active,
            ),
            ("two-active-keys", "two keys, Active or not", two_keys, two_active),
            (
                "key-not-rotated",
                "a key in either slot created more than `ROTATE_DAYS` ago",
                with_keys,
                active,
            ),
        ],
        // The union: every user with a key, as every key is aged past both thresholds.
        candidates: with_keys,
        findings: plan.findings() + 2 * active + two_active,
        // The report's fixed calls, then per candidate ListAccessKeys, GetLoginProfile and ListUserTags, and a
        // live last use for every Active key (`unused-key` dates every user's; the report's use is 50 days old).
        bound: 3 + plan.users.len().div_ceil(1_000) + 3 * with_keys + active,
    }
}

pub(crate) fn render_rules(
    out: &mut String,
    bench: &Bench,
    mismatches: &mut Vec<String>,
    unmet: &mut Vec<String>,
) {
    let Some(first) = bench.rules.first().map(|(_, run)| run) else {
        return;
    };
    let Some(seeded) = bench.sizes.iter().find(|s| s.size == first.size) else {
        return;
    };
    let plan = &seeded.plan;
    let want = implied(plan);
    let of = |label: &str| -> Vec<&Run> {
        bench
            .rules
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, run)| run)
            .collect()
    };
    let _ = writeln!(
        out,
        "\n## Every rule at {} users\n\nThe release binary (`{}`, dry runs) with the default rule and with `RULES=all` \
         (`UNUSED_DAYS` 45, `ROTATE_DAYS` 90), {} rounds, on the largest account. moto dates every key and use \
         \"now\", so the test proxy makes every key {AGED_CREATED_DAYS} days old and every used key last used \
         {AGED_USED_DAYS} days ago, in ListAccessKeys, GetAccessKeyLastUsed and the credential report alike: every \
         rule then has findings, and `unused-key` and `key-not-rotated` have the most they can (every Active key).\n",
        count(first.size as f64),
        CONFIGS[first.config].name(),
        bench.rounds,
    );
    let _ = writeln!(
        out,
        "Each rule names the credential report rows that can hold its findings, given a report up to 4 hours old \
         (`Rule::may_hold`); only those rows are read live. Its candidates here, from the seed plan:\n\n\
         | Rule | Candidate rows | Candidates | Findings |\n|---|---|---|---|"
    );
    for (rule, rows, candidates, findings) in want.rules {
        let _ = writeln!(
            out,
            "| `{rule}` | {rows} | {} | {} |",
            count(candidates as f64),
            count(findings as f64)
        );
    }
    let _ = writeln!(
        out,
        "\nWith every rule the candidates are the union, here every user with a key ({}), and the IAM calls are \
         bounded by 3 + ⌈users / 1,000⌉ + 3 × candidates + the candidates' Active keys (ListAccessKeys, \
         GetLoginProfile and ListUserTags per candidate; a live last use per Active key, which `unused-key` needs \
         for every user): {} here. O(users / 1,000) + O(candidates), no per-user scan.\n",
        count(want.candidates as f64),
        count(want.bound as f64),
    );
    let _ = writeln!(
        out,
        "| Rules | Wall time, s | IAM calls | By operation (median) | Candidates | Findings | Expected candidates, findings | Verdict |\n|---|---|---|---|---|---|---|---|"
    );
    for (label, candidates, findings) in [
        (DEFAULT_RULE, plan.candidates(), plan.findings()),
        (ALL_RULES, want.candidates, want.findings),
    ] {
        let runs = of(label);
        if runs.is_empty() {
            continue;
        }
        let wall = Stat::of(runs.iter().map(|r| r.wall.as_secs_f64()));
        let calls = Stat::of(runs.iter().map(|r| iam_calls(&r.calls) as f64));
        let mut ops: Vec<String> = Vec::new();
        for op in crate::FIXED_OPS
            .iter()
            .chain(crate::PER_CANDIDATE_OPS.iter())
        {
            let n = Stat::of(runs.iter().map(|r| calls_of(&r.calls, &[op]) as f64));
            ops.push(format!(
                "{} {}",
                op.trim_start_matches("iam:"),
                count(n.median)
            ));
        }
        let exact = runs
            .iter()
            .all(|r| r.candidates == candidates && r.findings == findings);
        if !exact {
            mismatches.push(format!(
                "rules, {label}: candidates and findings {:?}, the plan implies {candidates} and {findings}",
                runs.iter()
                    .map(|r| (r.candidates, r.findings))
                    .collect::<Vec<_>>()
            ));
        }
        let within = label != ALL_RULES
            || runs
                .iter()
                .all(|r| iam_calls(&r.calls) as usize <= want.bound);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {}, {} | {} |",
            wall.show(seconds, ""),
            calls.count(),
            ops.join(", "),
            Stat::of(runs.iter().map(|r| r.candidates as f64)).count(),
            Stat::of(runs.iter().map(|r| r.findings as f64)).count(),
            count(candidates as f64),
            count(findings as f64),
            target(
                unmet,
                format!("{label}: exact findings, calls within the bound"),
                exact && within
            )
        );
    }
    let (default, all) = (of(DEFAULT_RULE), of(ALL_RULES));
    if !default.is_empty() && !all.is_empty() {
        let median = |runs: &[&Run], f: fn(&Run) -> f64| Stat::of(runs.iter().map(|r| f(r))).median;
        let calls = |r: &Run| iam_calls(&r.calls) as f64;
        let wall = |r: &Run| r.wall.as_secs_f64();
        let _ = writeln!(
            out,
            "\nAgainst the default rule, every rule costs {:.1}× the IAM calls and {:.1}× the wall time (medians): \
             the aged account makes every user with a key a candidate of `unused-key` and `key-not-rotated`, where \
             the default reads only the {} users with a never-used key. On a real account the ratio follows how \
             many users hold an old or unused key.",
            median(&all, calls) / median(&default, calls).max(1.0),
            median(&all, wall) / median(&default, wall).max(f64::EPSILON),
            count(plan.candidates() as f64),
        );
    }
}
