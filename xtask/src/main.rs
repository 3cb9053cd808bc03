//! `cargo xtask <task>`: repository checks run in CI.
//!
//! The governance validator (`cargo xtask validate`) is written by issue #4;
//! until then every task name is reported as unknown rather than passing silently.

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            println!(
                "usage: cargo xtask <task>\n\ntasks: (none yet; `validate` arrives with issue #4)"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("cargo xtask: unknown task {other:?} (run `cargo xtask help`)");
            ExitCode::from(2)
        }
    }
}
