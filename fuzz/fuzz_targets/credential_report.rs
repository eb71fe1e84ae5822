//! The credential report parser takes bytes straight from `GetCredentialReport`: whatever they are, it must
//! answer `Ok` or `Err`, never panic (a panic would abort the run with no alert and no useful error).
#![no_main]

use keywatch::inventory::credential_report::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(users) = parse(data) {
        // What the rest of the pipeline relies on when parsing succeeds.
        for user in &users {
            assert_ne!(user.name, "<root_account>", "the root row is out of scope");
            assert!(!user.name.trim().is_empty() && !user.arn.trim().is_empty());
            assert!(user.keys.len() <= 2, "a report row has two key slots");
            assert!(user
                .keys
                .iter()
                .all(|k| matches!(k.slot, Some(1 | 2)) && (k.active || k.created.is_some())));
        }
    }
});
