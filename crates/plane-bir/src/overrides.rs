//! Overrides: a person's date for one form and period (a BIR extension), which wins over
//! the computed date.
//!
//! Until part 2 moves them into the connector's database, overrides live in a TOML file
//! (`plane-server bir` uses `bir-overrides.toml` in the working directory unless told
//! otherwise):
//!
//! ```toml
//! [[override]]
//! form = "1601-C"
//! period = "2026-07"
//! due = "2026-08-20"
//! reason = "RR 13-2024 (Typhoon Carina)"
//! # payment = "2026-08-20"   # optional; without it, payment moves with the filing date
//! ```
//!
//! [`save_override`] adds or replaces one entry without losing the others (or the file's
//! comments), writing a temporary file and renaming it over the old one, so a crash
//! leaves either the old file or the new one. A file that does not parse is refused,
//! never overwritten.

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;
use toml::Spanned;

use crate::catalog::{Catalog, Frequency};
use crate::error::{Error, Place, Result};
use crate::period::Period;

/// One override.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Override {
    /// The form (as the catalog writes it).
    pub form: String,
    /// The period label (`2026-07`, `2026-Q2`, `2025`).
    pub period: String,
    /// The new filing date.
    pub due: NaiveDate,
    /// The new payment date, if different from `due`.
    pub payment: Option<NaiveDate>,
    /// The reason or issuance number.
    pub reason: String,
}

impl Override {
    /// Checks the form (known, with deadlines), the period's shape and the reason, and
    /// normalises the form code and period label.
    ///
    /// ```
    /// use plane_bir::Override;
    /// let o = Override::new("1601-c", "2026-7", "2026-08-20".parse().unwrap(), "RMC 1-2026");
    /// assert_eq!(o.unwrap_err().to_string(),
    ///     "period \"2026-7\" does not fit form 1601-C: expected a month, YYYY-MM (2026-03)");
    /// ```
    pub fn new(form: &str, period: &str, due: NaiveDate, reason: &str) -> Result<Override> {
        let catalog_form = Catalog::builtin().with_deadlines(form)?;
        let schedule = catalog_form.schedule()?;
        let bad_period = |expected: String| Error::BadPeriod {
            form: catalog_form.code.clone(),
            period: period.to_string(),
            expected,
        };
        let label = Period::check_label(period, schedule.frequency)
            .map_err(|expected| bad_period(expected.to_string()))?;
        // A period the form never has would be stored and never apply.
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let part = |i: usize| label.get(i..).and_then(|s| s.parse::<u32>().ok());
        match schedule.frequency {
            Frequency::Monthly if part(5).is_some_and(|m| schedule.skip_months.contains(&m)) => {
                return Err(bad_period(format!(
                    "a month, YYYY-MM, other than months {} (the form has no return for them)",
                    list(&schedule.skip_months)
                )));
            }
            Frequency::Quarterly if part(6).is_some_and(|q| !schedule.quarters.contains(&q)) => {
                return Err(bad_period(format!(
                    "a quarter, YYYY-Qn, of quarters {} (the form has no return for the others)",
                    list(&schedule.quarters)
                )));
            }
            _ => {}
        }
        let period = label;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::Invalid {
                place: Place {
                    file: "the override".into(),
                    location: None,
                },
                field: "reason".into(),
                problem: "empty".into(),
                allowed: "the BIR issuance or a reason (\"RMC 12-2026\", \"eFPS downtime\")".into(),
            });
        }
        Ok(Override {
            form: catalog_form.code.clone(),
            period,
            due,
            payment: None,
            reason: reason.to_string(),
        })
    }
}

/// A set of overrides, at most one per form and period.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<Override>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, rename = "override")]
    entries: Vec<Spanned<RawOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    form: Spanned<String>,
    period: Spanned<String>,
    due: Spanned<String>,
    payment: Option<Spanned<String>>,
    reason: Spanned<String>,
}

impl Overrides {
    /// No overrides.
    pub fn none() -> Self {
        Overrides::default()
    }

    /// Reads an override file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Overrides::parse(&text, &path.display().to_string())
    }

    /// Reads an override file, or returns none if it does not exist.
    pub fn load_if_exists(path: &Path) -> Result<Self> {
        if path.exists() {
            Overrides::load(path)
        } else {
            Ok(Overrides::none())
        }
    }

    /// Parses and checks override text; `file` names it in errors.
    ///
    /// ```
    /// let err = plane_bir::Overrides::parse("[[override]]\nform = \"2551M\"\nperiod = \"2026-01\"\ndue = \"2026-02-20\"\nreason = \"x\"\n", "o.toml");
    /// assert!(err.unwrap_err().to_string().starts_with("o.toml:2:8: field `override.form`: form 2551M has no deadline: abolished"));
    /// ```
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| crate::error::syntax(file, text, &e))?;
        let mut entries: Vec<Override> = Vec::new();
        for entry in raw.entries {
            let r = entry.get_ref();
            let invalid = |span: std::ops::Range<usize>,
                           field: &str,
                           problem: String,
                           allowed: String| Error::Invalid {
                place: Place::at(file, text, span),
                field: format!("override.{field}"),
                problem,
                allowed,
            };
            let date = |s: &Spanned<String>, field: &str| -> Result<NaiveDate> {
                s.get_ref().trim().parse().map_err(|_| {
                    invalid(
                        s.span(),
                        field,
                        format!("{:?} is not a date", s.get_ref()),
                        "YYYY-MM-DD".into(),
                    )
                })
            };
            let due = date(&r.due, "due")?;
            let payment = r.payment.as_ref().map(|p| date(p, "payment")).transpose()?;
            let o = Override::new(
                r.form.get_ref(),
                r.period.get_ref(),
                due,
                r.reason.get_ref(),
            )
            .map_err(|e| match e {
                Error::UnknownForm { form, allowed } => invalid(
                    r.form.span(),
                    "form",
                    format!("unknown form {form:?}"),
                    allowed,
                ),
                Error::NoDeadline { form, reason } => invalid(
                    r.form.span(),
                    "form",
                    format!("form {form} has no deadline: {reason}"),
                    Catalog::builtin().codes_with_deadlines().join(", "),
                ),
                Error::BadPeriod {
                    period, expected, ..
                } => invalid(
                    r.period.span(),
                    "period",
                    format!("{period:?} does not fit the form"),
                    expected,
                ),
                Error::Invalid {
                    problem, allowed, ..
                } => invalid(r.reason.span(), "reason", problem, allowed),
                other => other,
            })?;
            if entries
                .iter()
                .any(|e| e.form == o.form && e.period == o.period)
            {
                return Err(invalid(
                    entry.span(),
                    "period",
                    format!("a second override for {} {}", o.form, o.period),
                    "one override per form and period".into(),
                ));
            }
            entries.push(Override { payment, ..o });
        }
        Ok(Overrides { entries })
    }

    /// The override for a form and period label, if any.
    pub fn get(&self, form: &str, period: &str) -> Option<&Override> {
        self.entries
            .iter()
            .find(|o| o.form.eq_ignore_ascii_case(form) && o.period == period)
    }

    /// Every override, in file order.
    pub fn entries(&self) -> &[Override] {
        &self.entries
    }

    /// Adds or replaces (same form and period) an override in memory.
    pub fn insert(&mut self, o: Override) -> Option<Override> {
        match self
            .entries
            .iter_mut()
            .find(|e| e.form == o.form && e.period == o.period)
        {
            Some(existing) => Some(std::mem::replace(existing, o)),
            None => {
                self.entries.push(o);
                None
            }
        }
    }
}

const NEW_FILE_HEADER: &str = "# BIR deadline overrides (extensions), kept by `plane-server bir override`.\n# Each entry wins over the computed date for its form and period.\n";

/// Adds `o` to the override file at `path` (creating it), or replaces the entry for the
/// same form and period, keeping every other entry and comment. Returns the entry it
/// replaced. The existing file is checked first: if it does not parse, nothing is written.
pub fn save_override(path: &Path, o: &Override) -> Result<Option<Override>> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NEW_FILE_HEADER.to_string(),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut existing = Overrides::parse(&text, &file)?;
    let replaced = existing.insert(o.clone());

    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| Error::Syntax {
                place: Place {
                    file: file.clone(),
                    location: None,
                },
                field: None,
                message: e.to_string(),
            })?;
    let mut table = toml_edit::Table::new();
    table["form"] = toml_edit::value(o.form.as_str());
    table["period"] = toml_edit::value(o.period.as_str());
    table["due"] = toml_edit::value(o.due.to_string());
    if let Some(p) = o.payment {
        table["payment"] = toml_edit::value(p.to_string());
    }
    table["reason"] = toml_edit::value(o.reason.as_str());
    let array = doc
        .entry("override")
        .or_insert(toml_edit::Item::ArrayOfTables(
            toml_edit::ArrayOfTables::new(),
        ))
        .as_array_of_tables_mut()
        .ok_or_else(|| Error::Syntax {
            place: Place {
                file: file.clone(),
                location: None,
            },
            field: Some("override".into()),
            message: "`override` must be an array of tables ([[override]])".into(),
        })?;
    let same = |t: &toml_edit::Table| {
        let get = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .map(str::to_string)
        };
        let form_matches = get("form").is_some_and(|f| f.eq_ignore_ascii_case(&o.form));
        let period_matches = get("period")
            .and_then(|p| {
                Period::check_label(
                    &p,
                    crate::catalog::Catalog::builtin()
                        .get(&o.form)
                        .and_then(|f| f.schedule.as_ref())
                        .map(|s| s.frequency)?,
                )
                .ok()
            })
            .is_some_and(|p| p == o.period);
        form_matches && period_matches
    };
    let position = array.iter().position(same);
    match position.and_then(|i| array.get_mut(i)) {
        Some(t) => {
            let decor = t.decor().clone();
            *t = table;
            *t.decor_mut() = decor;
        }
        None => array.push(table),
    }
    write_atomically(path, doc.to_string().as_bytes())?;
    Ok(replaced)
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, and renames it
/// over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
