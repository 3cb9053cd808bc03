//! `plane-server bir ...`: the BIR filing calendar on the command line (plane-bir).
//!
//! Bad input (a profile, holiday or override file that does not validate, an unknown
//! form, a year without holiday data) exits 2, like a configuration error; a failure to
//! write exits 1. `bir sync` exits 75 ([`crate::bir_sync_cli::BUSY`]) when, on
//! PostgreSQL, another sync holds a project it was to sync.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};
use plane_bir::{
    Basis, Catalog, Deadline, EfpsRule, Filing, Frequency, Holidays, Override, Overrides, Profile,
};

use crate::bir_sync_cli::SyncError;

/// The override file used when neither `--overrides` nor `PLANE_BIR_OVERRIDES` names one.
pub const DEFAULT_OVERRIDES: &str = "bir-overrides.toml";

const WIDTH: usize = 80;

#[derive(Debug, Subcommand)]
pub enum BirCommand {
    /// Every deadline of a year (months and quarters of that year, and annual returns of
    /// that taxable year or due in it), or every deadline due in a range (--from, --to),
    /// whatever period or fiscal year it belongs to. Without --profile: every form,
    /// calendar year, manual filer. A date that relies on holidays not yet proclaimed is
    /// marked provisional.
    #[command(group = clap::ArgGroup::new("when").required(true).args(["year", "from"]))]
    Calendar {
        /// The year.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        year: Option<i32>,
        /// The first due date of a range, YYYY-MM-DD (with --to).
        #[arg(long, value_name = "DATE", requires = "to")]
        from: Option<NaiveDate>,
        /// The last due date of a range, YYYY-MM-DD (with --from).
        #[arg(long, value_name = "DATE", requires = "from")]
        to: Option<NaiveDate>,
        /// A taxpayer profile (TOML; see crates/plane-bir/profiles/).
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = CalendarFormat::Table)]
        format: CalendarFormat,
        #[command(flatten)]
        holidays: HolidayFiles,
        /// The override file [env: PLANE_BIR_OVERRIDES] [default: bir-overrides.toml, if it exists].
        #[arg(
            long,
            value_name = "FILE",
            env = "PLANE_BIR_OVERRIDES",
            hide_env = true
        )]
        overrides: Option<PathBuf>,
    },
    /// The holidays of a year (regular, special non-working, special working days).
    Holidays {
        /// The year.
        #[arg(long)]
        year: i32,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        #[command(flatten)]
        holidays: HolidayFiles,
    },
    /// Set the due date of one form and period (a BIR extension); it wins over the computed date.
    Override {
        /// The form, as the BIR writes it (1601-C).
        form: String,
        /// The period: 2026-07 (month), 2026-Q3 (quarter), 2026 (taxable year).
        period: String,
        /// The new filing date, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        due: NaiveDate,
        /// The new payment date if different (default: the same as --due).
        #[arg(long, value_name = "DATE")]
        payment: Option<NaiveDate>,
        /// The BIR issuance or reason (RMC 12-2026, eFPS downtime).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// The override file [env: PLANE_BIR_OVERRIDES] [default: bir-overrides.toml].
        #[arg(
            long,
            value_name = "FILE",
            env = "PLANE_BIR_OVERRIDES",
            hide_env = true
        )]
        overrides: Option<PathBuf>,
    },
    /// Create or update the deadlines as Plane work items (one listing, then only what
    /// changed); restores drift in the fields it owns. On PostgreSQL one sync at a time
    /// per project (an advisory lock). Exit 0 done; 2 on bad input or a missing project,
    /// profile or API key; 1 when Plane or the database fails; 75 when another `bir sync`
    /// is syncing a project it was to sync (PostgreSQL; it says who; --wait waits instead).
    Sync(crate::bir_sync_cli::SyncArgs),
    /// Every deadline the database (SQLite or PostgreSQL) holds, with its filing status
    /// (read-only: nothing is created or migrated).
    Status(crate::bir_sync_cli::StatusArgs),
    /// The form catalog, with the reason next to each abolished or optional form.
    Forms {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(Debug, clap::Args)]
pub struct HolidayFiles {
    /// A holiday file adding years or days (repeatable; see plane_bir::holidays).
    #[arg(long = "holidays", value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalendarFormat {
    Table,
    Json,
    Csv,
    Ics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Runs a `bir` command and prints its output; errors go to stderr with the exit code.
pub async fn run(command: BirCommand) -> ExitCode {
    let result = match command {
        BirCommand::Sync(args) => match crate::bir_sync_cli::sync(args).await {
            Ok(text) => Ok(text),
            Err(SyncError::Failed(f)) => Err(f),
            Err(SyncError::Busy(e)) => {
                eprintln!("plane-server: {e}");
                return ExitCode::from(crate::bir_sync_cli::BUSY);
            }
        },
        BirCommand::Status(args) => crate::bir_sync_cli::status(args).await,
        other => execute(other),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::BadInput(e)) => {
            eprintln!("plane-server: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("plane-server: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) enum Failure {
    BadInput(String),
    Other(String),
}

impl From<plane_bir::Error> for Failure {
    fn from(e: plane_bir::Error) -> Self {
        match e {
            plane_bir::Error::Write { .. }
            | plane_bir::Error::Store { .. }
            | plane_bir::Error::SchemaTooNew { .. }
            | plane_bir::Error::Postgres(_)
            | plane_bir::Error::Plane { .. }
            | plane_bir::Error::NoUnstartedState { .. } => Failure::Other(e.to_string()),
            other => Failure::BadInput(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Other(e.to_string())
    }
}

pub(crate) fn holidays(files: &HolidayFiles) -> Result<Holidays, Failure> {
    let mut h = Holidays::builtin();
    for f in &files.files {
        h.merge_file(f)?;
    }
    Ok(h)
}

/// The commands that need no database (`sync` and `status` are async: see [`run`]).
fn execute(command: BirCommand) -> Result<String, Failure> {
    match command {
        BirCommand::Sync(_) | BirCommand::Status(_) => Err(Failure::Other(
            "bir sync and bir status run through bir_cli::run".into(),
        )),
        BirCommand::Calendar {
            year,
            from,
            to,
            profile,
            format,
            holidays: files,
            overrides,
        } => {
            let profile = match &profile {
                Some(path) => Profile::load(path)?,
                None => Profile::whole_catalog(),
            };
            let overrides = match &overrides {
                Some(path) => Overrides::load(path)?,
                None => Overrides::load_if_exists(Path::new(DEFAULT_OVERRIDES))?,
            };
            let h = holidays(&files)?;
            let (deadlines, title) = match (year, from, to) {
                (Some(year), _, _) => (
                    plane_bir::calendar(&profile, year, &h, &overrides)?,
                    year.to_string(),
                ),
                (None, Some(from), Some(to)) => (
                    plane_bir::deadlines_between(&profile, from, to, &h, &overrides)?,
                    format!("due {from} to {to}"),
                ),
                _ => {
                    return Err(Failure::BadInput(
                        "give --year YEAR, or --from DATE and --to DATE".into(),
                    ));
                }
            };
            warn_provisional(&deadlines);
            Ok(match format {
                CalendarFormat::Json => serde_json::to_string_pretty(&deadlines)? + "\n",
                CalendarFormat::Csv => plane_bir::to_csv(&deadlines),
                CalendarFormat::Ics => plane_bir::to_ics(&deadlines, &profile, Utc::now()),
                CalendarFormat::Table => calendar_table(&profile, &title, &deadlines),
            })
        }
        BirCommand::Holidays {
            year,
            format,
            holidays: files,
        } => {
            let h = holidays(&files)?;
            let y = h.year(year);
            Ok(match format {
                ListFormat::Json => serde_json::to_string_pretty(&*y)? + "\n",
                ListFormat::Table => {
                    let mut out = format!("Philippine holidays {year} ({})\n", y.status.as_str());
                    if let Some(p) = &y.proclamation {
                        out += &wrap(&format!("proclamation: {p}"), 2);
                    }
                    if let Some(why) = y.why_provisional() {
                        out += &wrap(&format!("provisional: {why}"), 2);
                    }
                    out += &wrap(&format!("source: {}", y.source), 2);
                    if let Some(note) = &y.note {
                        out += &wrap(
                            &format!(
                                "note: {}",
                                note.split_whitespace().collect::<Vec<_>>().join(" ")
                            ),
                            2,
                        );
                    }
                    out += "\nDATE        DAY  KIND                     NAME\n";
                    for d in &y.days {
                        let line = format!(
                            "{}  {}  {:<23}  {}{}",
                            d.date,
                            d.date.format("%a"),
                            d.kind.describe(),
                            d.name,
                            if d.provisional { " (provisional)" } else { "" }
                        );
                        out += &fit(&line);
                        out.push('\n');
                    }
                    out
                }
            })
        }
        BirCommand::Override {
            form,
            period,
            due,
            payment,
            reason,
            overrides,
        } => {
            let path = overrides.unwrap_or_else(|| PathBuf::from(DEFAULT_OVERRIDES));
            let mut o = Override::new(&form, &period, due, &reason)?;
            o.payment = payment;
            let replaced = plane_bir::save_override(&path, &o)?;
            let mut out = format!(
                "{}: {} {} now due {}{} ({})\n",
                path.display(),
                o.form,
                o.period,
                o.due,
                o.payment
                    .map(|p| format!(", payment {p}"))
                    .unwrap_or_default(),
                o.reason
            );
            if let Some(old) = replaced {
                out += &format!(
                    "replaced the earlier override: due {} ({})\n",
                    old.due, old.reason
                );
            }
            Ok(out)
        }
        BirCommand::Forms { format } => Ok(match format {
            ListFormat::Json => serde_json::to_string_pretty(&forms_json())? + "\n",
            ListFormat::Table => forms_table(),
        }),
    }
}

/// Prints one warning on stderr when any deadline is provisional: the reasons, each once.
pub(crate) fn warn_provisional(deadlines: &[Deadline]) {
    let reasons = provisional_reasons(deadlines);
    if reasons.is_empty() {
        return;
    }
    let n = deadlines.iter().filter(|d| d.provisional).count();
    eprintln!(
        "plane-server: warning: {n} of {} deadlines are provisional (they may move when the \
         holidays are proclaimed; a holiday file with --holidays brings them): {}",
        deadlines.len(),
        reasons.join("; ")
    );
}

/// The distinct reasons of the provisional deadlines, in order of first use.
fn provisional_reasons(deadlines: &[Deadline]) -> Vec<&str> {
    let mut reasons: Vec<&str> = Vec::new();
    for reason in deadlines
        .iter()
        .filter_map(|d| d.provisional_reason.as_deref())
    {
        for part in reason.split("; ") {
            if !reasons.contains(&part) {
                reasons.push(part);
            }
        }
    }
    reasons
}

fn calendar_table(profile: &Profile, title: &str, deadlines: &[Deadline]) -> String {
    let mut out = String::new();
    let who = match &profile.tin {
        Some(tin) => format!("{} (TIN {tin})", profile.name),
        None => profile.name.clone(),
    };
    out += &wrap(&format!("BIR deadlines {title}: {who}"), 2);
    let filing = match profile.filing {
        Filing::Manual => "manual / eBIRForms filer".to_string(),
        Filing::Efps(g) => format!("eFPS group {g:?} (files the {}th)", g.filing_day()),
    };
    let year_text = if profile.is_fiscal() {
        format!("fiscal year ending month {}", profile.year_end_month)
    } else {
        "calendar year".into()
    };
    out += &format!("{filing}, {year_text}\n");
    if profile.is_fiscal() {
        // Fiscal quarters share labels with calendar ones (2026-Q1): say which months they are.
        let mut fiscal: Vec<String> = Vec::new();
        for d in deadlines {
            let is_fiscal_quarter = Catalog::builtin()
                .get(&d.form)
                .and_then(|f| f.schedule.as_ref())
                .is_some_and(|s| {
                    s.basis == Basis::TaxableYear && s.frequency == Frequency::Quarterly
                });
            let label = format!(
                "{} = {}..{}",
                d.period,
                d.period_start.format("%Y-%m"),
                d.period_end.format("%Y-%m")
            );
            if is_fiscal_quarter && !fiscal.contains(&label) {
                fiscal.push(label);
            }
        }
        fiscal.sort();
        out += &wrap(
            &format!("fiscal quarters (VAT, income tax): {}", fiscal.join(", ")),
            2,
        );
    }
    out += "\nFORM     PERIOD   FILE BY        PAY BY         NOTE\n";
    for d in deadlines {
        let note = match &d.overridden {
            Some(o) => format!(
                "OVERRIDE was {}: {}",
                o.computed_due_date.format("%m-%d"),
                o.reason
            ),
            None if d.moved_by.is_empty() => String::new(),
            None => {
                // Short form for the table: the holiday's name, else the weekday.
                let why: Vec<String> = d
                    .moved_by
                    .iter()
                    .map(|m| match m.why.rsplit_once(" (") {
                        Some((name, _)) => name.rsplit(", ").next().unwrap_or(name).to_string(),
                        None => m.date.format("%a").to_string(),
                    })
                    .collect();
                format!("from {}: {}", d.rule_date.format("%m-%d"), why.join(", "))
            }
        };
        let pay = d
            .payment_date
            .map(|p| p.format("%a %Y-%m-%d").to_string())
            .unwrap_or_default();
        // A provisional date is marked right after it, in the column gap.
        let line = format!(
            "{:<8} {:<8} {:<14}{}{:<14} {note}",
            d.form,
            d.period.to_string(),
            d.due_date.format("%a %Y-%m-%d").to_string(),
            if d.provisional { '*' } else { ' ' },
            pay
        );
        out += fit(&line).trim_end();
        out.push('\n');
    }
    out += &format!(
        "{} deadlines; weekends and holidays roll forward (RMC 65-2016).\n",
        deadlines.len()
    );
    let reasons = provisional_reasons(deadlines);
    if !reasons.is_empty() {
        out += &wrap(
            &format!(
                "* provisional ({} deadlines): {}",
                deadlines.iter().filter(|d| d.provisional).count(),
                reasons.join("; ")
            ),
            2,
        );
    }
    out
}

fn forms_table() -> String {
    let mut out = String::from("FORM      FREQUENCY  STATUS      DUE (manual filers) / WHY NOT\n");
    for f in Catalog::builtin().forms() {
        let (freq, detail) = match &f.schedule {
            Some(s) => {
                let mut detail = s.due.describe();
                if let Some(dec) = s.december {
                    detail += &format!("; December: {}", dec.describe());
                }
                if !s.skip_months.is_empty() {
                    detail += &format!("; none for months {:?}", s.skip_months);
                }
                if s.quarters.len() < 4 && s.frequency == Frequency::Quarterly {
                    detail += &format!("; quarters {:?} only", s.quarters);
                }
                if s.efps == EfpsRule::Staggered {
                    detail += &format!(
                        "; eFPS: filing A 15th, B 14th, C 13th, D 12th, E 11th, payment {}th",
                        s.payment_day.unwrap_or(15)
                    );
                }
                if s.basis == Basis::TaxableYear {
                    detail += "; follows a fiscal year";
                }
                let freq = match s.frequency {
                    Frequency::Monthly => "monthly",
                    Frequency::Quarterly => "quarterly",
                    Frequency::Annual => "annual",
                };
                (freq, detail)
            }
            None => ("-", f.reason.clone().unwrap_or_default()),
        };
        let head = format!("{:<9} {:<10} {:<11} ", f.code, freq, f.status.as_str());
        out += &hanging(&head, &detail);
    }
    out
}

fn forms_json() -> serde_json::Value {
    let forms: Vec<_> = Catalog::builtin()
        .forms()
        .iter()
        .map(|f| {
            serde_json::json!({
                "form": f.code,
                "name": f.name,
                "status": f.status,
                "frequency": f.schedule.as_ref().map(|s| s.frequency),
                "rule": f.schedule.as_ref().map(|s| s.due.describe()),
                "december_rule": f.schedule.as_ref().and_then(|s| s.december.map(|d| d.describe())),
                "efps": f.schedule.as_ref().map(|s| s.efps),
                "basis": f.schedule.as_ref().map(|s| s.basis),
                "applies_for": f.applies_for,
                "confidence": f.confidence,
                "note": f.note,
                "reason": f.reason,
            })
        })
        .collect();
    serde_json::Value::Array(forms)
}

/// Cuts a line to the terminal width.
fn fit(line: &str) -> String {
    if line.chars().count() <= WIDTH {
        line.to_string()
    } else {
        line.chars().take(WIDTH - 3).collect::<String>() + "..."
    }
}

/// `head` then `text` word-wrapped beside it, continuation lines aligned under `text`.
fn hanging(head: &str, text: &str) -> String {
    let indent = head.chars().count();
    let mut out = String::new();
    let mut line = head.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out += line.trim_end();
            out.push('\n');
            line = " ".repeat(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line += word;
        empty = false;
    }
    out += line.trim_end();
    out.push('\n');
    out
}

/// Word-wraps `text` to the terminal width; continuation lines are indented by `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > WIDTH {
            out += line.trim_end();
            out.push('\n');
            line = " ".repeat(indent);
        } else if len > 0 && !line.ends_with(' ') {
            line.push(' ');
        }
        line += word;
    }
    if !line.trim().is_empty() {
        out += &line;
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_and_fitting_keep_80_columns() {
        let long = "word ".repeat(60);
        for l in wrap(&long, 4).lines() {
            assert!(l.chars().count() <= WIDTH, "{l}");
        }
        assert_eq!(wrap("a b", 2), "a b\n");
        assert_eq!(fit(&"x".repeat(100)).chars().count(), WIDTH);
    }
}
