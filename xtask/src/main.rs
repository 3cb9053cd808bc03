//! `cargo xtask <task>`: repository checks run in CI.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use xtask::{Format, render, validate};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Repository checks run in CI")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Check the contracts, index, secrets registry, repo tree, MCP config,
    /// addon defaults and the secret scan; print every finding.
    ///
    /// Exit status: 0 clean, 1 findings, 2 a file could not be read.
    Validate {
        /// Output format: text (path:line: rule: message), github (annotations), json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The repository root (default: the checkout this xtask was built from).
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cargo xtask: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.task {
        Task::Validate { format, root } => {
            let root = root.unwrap_or_else(xtask::default_root);
            if !root.is_dir() {
                anyhow::bail!(
                    "--root {}: not a directory; pass the repository root",
                    root.display()
                );
            }
            let started = Instant::now();
            let findings = validate(&root);
            let mut out = std::io::stdout().lock();
            out.write_all(render(&findings, format).as_bytes())?;
            if format == Format::Text {
                writeln!(out, "({} ms)", started.elapsed().as_millis())?;
            }
            Ok(ExitCode::from(findings.exit_code()))
        }
    }
}
