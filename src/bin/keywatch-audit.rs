//! `keywatch-audit`: keywatch's rules on a downloaded credential report, offline (see `keywatch::audit`).

use std::io::{Read, Write};
use std::process::ExitCode;

use keywatch::audit::{self, Command, Format, Options, USAGE};
use time::OffsetDateTime;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1), OffsetDateTime::now_utc()) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("keywatch-audit: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut csv = Vec::new();
    let read = match options.report.as_str() {
        "-" => std::io::stdin().read_to_end(&mut csv).map(|_| ()),
        path => std::fs::read(path).map(|bytes| csv = bytes),
    };
    if let Err(error) = read {
        eprintln!("keywatch-audit: cannot read {}: {error}", options.report);
        return ExitCode::from(1);
    }
    let audit = match audit::audit(&csv, &options) {
        Ok(audit) => audit,
        Err(error) => {
            eprintln!("keywatch-audit: {}: {error}", options.report);
            return ExitCode::from(1);
        }
    };
    let out = match options.format {
        Format::Table => audit::table(&audit),
        Format::Json => match serde_json::to_string_pretty(&audit) {
            Ok(json) => json + "\n",
            Err(error) => {
                eprintln!("keywatch-audit: the document did not serialize: {error}");
                return ExitCode::from(1);
            }
        },
    };
    if let Err(error) = std::io::stdout().write_all(out.as_bytes()) {
        eprintln!("keywatch-audit: cannot write the result: {error}");
        return ExitCode::from(1);
    }
    // Like other compliance checkers, a distinct status when something fails a rule.
    if audit.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
