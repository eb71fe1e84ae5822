//! The document's ledger section: what `LEDGER_TABLE` adds to a run, against its bound.

use crate::measure::*;
use crate::write::*;
use crate::CONFIGS;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub(crate) fn render_ledger(
    out: &mut String,
    bench: &Bench,
    mismatches: &mut Vec<String>,
    unmet: &mut Vec<String>,
) {
    let (routing, runs): (Vec<_>, Vec<_>) = bench
        .ledger
        .iter()
        .partition(|(label, _)| [ROUTING_ON, ROUTING_OFF].contains(label));
    let Some((_, first)) = runs.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n## The ledger at {} users\n\nThe release binary with `LEDGER_TABLE` and `ALERTS=changes` \
         (`{}`), publishing and writing, twice on the largest account: a first run, and a second run with nothing \
         changed. The bound is what the ledger may add to a run: a conditional put per finding, ⌈findings / 100⌉ + 1 \
         queries, and the account's lease (a put and a delete): findings + ⌈findings / 100⌉ + 3 calls.\n",
        count(first.size as f64),
        CONFIGS[first.config].name(),
    );
    let _ = writeln!(
        out,
        "| Run | Findings | Alert parts published | `dynamodb:Query` | `dynamodb:PutItem` + `DeleteItem` | Ledger calls | Bound | IAM calls | Verdict |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (label, run) in &runs {
        let query = calls_of(&run.calls, &["dynamodb:Query"]);
        let writes = calls_of(&run.calls, &["dynamodb:PutItem", "dynamodb:DeleteItem"]);
        let f = run.findings as u64;
        let bound = f + f.div_ceil(100) + 3;
        // Every run reads the ledger: a count that is missing is a failure, never a zero that passes.
        let ok = query >= 1 && query + writes <= bound;
        if !ok {
            mismatches.push(format!(
                "ledger, {label}: {query} Query and {writes} PutItem and DeleteItem calls; at least 1 Query and at most \
                 {bound} calls in all"
            ));
        }
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {query} | {writes} | {} | {bound} | {} | {} |",
            run.findings,
            run.notifications,
            query + writes,
            iam_calls(&run.calls),
            target(
                unmet,
                "ledger calls within their bound, first run".into(),
                ok
            )
        );
    }
    if let [(_, first), (_, second)] = runs[..] {
        let quiet = second.notifications == 0
            // The lease alone: one put and one delete.
            && calls_of(&second.calls, &["dynamodb:PutItem"]) == 1
            && first.notifications > 0;
        if !quiet {
            mismatches.push(
                "ledger: the first run must publish and the unchanged second run must neither publish nor write"
                    .to_string(),
            );
        }
        let _ = writeln!(
            out,
            "\nThe unchanged second run published nothing and wrote nothing: {}.",
            target(unmet, "ledger quiet on an unchanged run".into(), quiet)
        );
    }
    // Routing by owner reads the owner from the tags the exemption already reads: no IAM call of its own.
    if let [(_, on), (_, off)] = routing[..] {
        let iam = |run: &Run| -> BTreeMap<String, u64> {
            run.calls
                .iter()
                .filter(|(op, _)| op.starts_with("iam:"))
                .map(|(op, n)| (op.clone(), *n))
                .collect()
        };
        let same = iam(on) == iam(off) && !iam(on).is_empty();
        if !same {
            mismatches.push(format!(
                "routing by owner changed the IAM calls: {:?} with it, {:?} without",
                iam(on),
                iam(off)
            ));
        }
        let _ = writeln!(
            out,
            "\nRouting by owner (`OWNER_TAG_KEY`) adds no IAM call: two dry runs back to back on this account \
             ({}), {} IAM calls with routing on and {} with it off, the same by operation: {}.",
            CONFIGS[on.config].name(),
            iam_calls(&on.calls),
            iam_calls(&off.calls),
            target(unmet, "ledger adds no IAM call".into(), same)
        );
    }
}
