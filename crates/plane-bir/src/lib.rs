//! Philippine BIR filing deadlines: which returns a taxpayer files, and on which exact days.
//!
//! Part 1 of the BIR domain (issue 9): the data and the date arithmetic. Part 2 (issue 10):
//! the [`store`] of deadlines, the [`sync`](mod@sync) to Plane work items, through
//! plane-core only, and the [`handler`] that marks deadlines filed, void or reopened when a
//! person moves their work items in Plane (it never writes to Plane).
//!
//! # A tour
//!
//! - [`Catalog`] (`data/forms.toml`, compiled in, readable by a person): every form in force
//!   in 2026 with its frequency, due rule, skipped months, December exception and eFPS
//!   staggering, and the abolished, optional or superseded forms (2551M, 0605, 2550M,
//!   1604-CF, 1601-E, ...) with the reason they have no deadline.
//! - [`Profile`] (a TOML file, see [`profile`]): name, [`Tin`], corporation or individual,
//!   calendar or fiscal year, eFPS and its [`EfpsGroup`], and what applies (or an explicit
//!   form list). Errors name the file, line, column, field and the allowed values.
//! - [`Holidays`] (`data/holidays.toml`, compiled in: 2025 and 2026 proclaimed, 2027 and
//!   2028 provisional), plus holiday files that add years or days. A year without data is
//!   never refused: its holidays are the ones the law fixes ([`holiday_law`]), and every
//!   deadline relying on a provisional year says so ([`Deadline::provisional`]).
//! - [`calendar()`] computes every [`Deadline`] of a year, and [`deadlines_between`] every
//!   one that falls due in a range of dates whatever its period or fiscal year: form,
//!   [`Period`], filing date,
//!   payment date where it differs (eFPS), the rule, the rule's date, and every day that
//!   moved it ([`roll_forward`]: Saturdays, Sundays, regular holidays and special
//!   non-working days, chained; RMC 65-2016), and whether the date is provisional.
//! - [`horizon`]: what a `bir sync` without `--year` covers: a rolling [`Window`] of due
//!   dates ([`Ahead`] months ahead, 12 by default) plus every open deadline synced before.
//! - [`Overrides`]: a person's date for one form and period (a BIR extension). It wins and
//!   the deadline says so ([`AppliedOverride`] keeps the computed date). Stored, for now, in
//!   a TOML file written atomically ([`save_override`]); part 2 moves them into the
//!   connector's database.
//! - Exports: [`to_ics`] (RFC 5545, stable UIDs per form and period), [`to_csv`]; a
//!   `Deadline` serialises to the JSON `plane-server bir calendar --format json` prints.
//!
//! - [`DeadlineStore`] (async): each deadline's Plane work item, the fingerprints of what
//!   was pushed and what Plane returned, and its filing status (`pending | in_progress |
//!   filed | void`, by whom, when). [`SqliteDeadlineStore`] keeps it in the deliveries'
//!   SQLite file under a migrations table of its own; [`PgDeadlineStore`] keeps the same
//!   tables in PostgreSQL (typed columns, the schema of the deliveries' tables, migrations
//!   as component `bir`), for several `plane-server` replicas sharing one database. One
//!   test suite runs against both ([`store`], [`store::postgres`]).
//! - [`sync()`]: one listing of the project (states, labels, work items at `per_page=1000`),
//!   then a create or PATCH only for what changed, keyed by `external_source = "plane-bir"`
//!   and [`external_id`](sync::external_id); drift in the owned fields (name, dates,
//!   description) is reported and restored. See [`sync`](mod@sync) for the rules.
//! - [`BirHandler`] (`plane-server serve` runs it on the webhook inbox): a work item of
//!   ours moved to a completed, cancelled, started or backlog/unstarted state makes its
//!   deadline `filed`, `void`, `in_progress` or `pending`, with the actor and Plane's time,
//!   in the same transaction that finishes the inbox item; an event is applied once, an
//!   older one changes nothing. It runs on SQLite's delivery store or PostgreSQL's
//!   ([`BirHandler::new`], [`BirHandler::postgres`]) without knowing which: the decision
//!   is written once, each backend only supplies the transaction, and across replicas an
//!   event is still applied once. It holds no Plane client. See [`handler`] for the rules.
//!
//! `plane-server bir calendar | holidays | override | forms | sync | status` is the command
//! line on top.
//!
//! # Syncing a profile
//!
//! ```no_run
//! use std::sync::Arc;
//! use plane_bir::{calendar, sync, Holidays, Overrides, Profile, SqliteDeadlineStore, SyncRequest};
//! # async fn run(project: uuid::Uuid) -> Result<(), Box<dyn std::error::Error>> {
//! let profile = Profile::load("profiles/efps-a-vat-corporation.toml".as_ref())?;
//! let deadlines = calendar(&profile, 2026, &Holidays::builtin(), &Overrides::none())?;
//! let client = plane_core::PlaneClient::from_env()?;
//! let store = Arc::new(SqliteDeadlineStore::open("plane.db")?);
//! let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
//! let request = SyncRequest { profile: &profile, deadlines: &deadlines, project, today, dry_run: false };
//! let report = sync(&client, store, &request, &mut |_progress| {}).await?;
//! println!("{} created, {} updated, {} writes", report.created, report.updated, report.writes);
//! # Ok(()) }
//! ```
//!
//! # A profile and its calendar
//!
//! `profiles/manual-individual-percentage-tax.toml`:
//!
//! ```toml
//! name = "Maria Santos (freelance architect)"
//! tin = "987654321-00000"
//! taxpayer = "individual"
//! efps = false
//!
//! [applies]
//! business_tax = "percentage"     # 2551Q
//! mixed_income = false            # purely business income: 1701A
//! ```
//!
//! `plane-server bir calendar --year 2026 --profile crates/plane-bir/profiles/manual-individual-percentage-tax.toml`:
//!
//! ```text
//! FORM     PERIOD   FILE BY        PAY BY         NOTE
//! 1701A    2025     Wed 2026-04-15
//! 2551Q    2026-Q1  Mon 2026-04-27                from 04-25: Sat, Sun
//! 1701Q    2026-Q1  Fri 2026-05-15
//! 2551Q    2026-Q2  Mon 2026-07-27                from 07-25: Sat, Sun
//! 1701Q    2026-Q2  Mon 2026-08-17                from 08-15: Sat, Sun
//! 2551Q    2026-Q3  Mon 2026-10-26                from 10-25: Sun
//! 1701Q    2026-Q3  Mon 2026-11-16                from 11-15: Sun
//! 2551Q    2026-Q4  Mon 2027-01-25
//! 1701A    2026     Thu 2027-04-15
//! ```
//!
//! The same in code (this example runs as a test):
//!
//! ```
//! use plane_bir::{calendar, Holidays, Overrides, Profile};
//! let profile = Profile::parse(
//!     include_str!("../profiles/manual-individual-percentage-tax.toml"),
//!     "manual-individual-percentage-tax.toml",
//! )?;
//! let deadlines = calendar(&profile, 2026, &Holidays::builtin(), &Overrides::none())?;
//! let rows: Vec<String> = deadlines
//!     .iter()
//!     .map(|d| format!("{} {} {}", d.form, d.period, d.due_date))
//!     .collect();
//! assert_eq!(rows, [
//!     "1701A 2025 2026-04-15", "2551Q 2026-Q1 2026-04-27", "1701Q 2026-Q1 2026-05-15",
//!     "2551Q 2026-Q2 2026-07-27", "1701Q 2026-Q2 2026-08-17", "2551Q 2026-Q3 2026-10-26",
//!     "1701Q 2026-Q3 2026-11-16", "2551Q 2026-Q4 2027-01-25", "1701A 2026 2027-04-15",
//! ]);
//! assert_eq!(deadlines[1].moved_by[0].why, "Saturday");
//! # Ok::<(), plane_bir::Error>(())
//! ```
//!
//! # Which deadlines a year holds
//!
//! `calendar(profile, 2026, ..)` lists the deadlines whose period lies in 2026 (the months
//! of 2026, quarters and taxable years labelled 2026) plus the annual returns that fall due
//! in 2026 (the 2025 taxable year's). A fiscal year is labelled by the year it ends in, as
//! the BIR's forms do ("year ended 06/2026"), and its quarters are numbered within it: for a
//! June year end, `2026-Q1` is July to September 2025 and each quarter's `months` are given.
//! Withholding returns (1601-C, 0619-E, 1601-EQ, 2307, 1604-x) always follow calendar
//! months and quarters; VAT (2550Q), percentage tax (2551Q) and income tax (1702Q, 1702-RT)
//! follow the taxable year.
//!
//! # UNVERIFIED choices, and how to override each
//!
//! The reference (`bir-domain.md`) marks some facts UNVERIFIED or leaves them open; these
//! are the choices made here. Any single date can be corrected with an override
//! (`plane-server bir override FORM PERIOD --due DATE --reason TEXT`), any holiday with a
//! holiday file (`--holidays FILE`, `replace = true` to replace a year).
//!
//! 1. **Local (city or province) holidays are ignored**; only the national list moves a
//!    deadline. Override: add the local day to a holiday file.
//! 2. **2027 holidays are derived from the rules table**, because the reference names
//!    Proclamation 1427 s. 2026 without listing its dates. Days that exist only by
//!    proclamation (All Souls' Day, Christmas Eve, other additional days) are left out, so
//!    a deadline may come a day early but never late. The year is provisional, and so is
//!    every date relying on it. Override: a 2027 holiday file with `replace = true`.
//!    **2028 and every later year** hold only the regular holidays RA 9492 fixes
//!    ([`holiday_law`]): the Eids and the special days are left out, for the same reason.
//! 3. **The 2027 Eid dates are estimates** (Eid'l Fitr Mar 9, Eid'l Adha May 16), marked
//!    provisional: they do move deadlines, and each move says "provisional". Override: a
//!    holiday file with the proclaimed dates.
//! 4. **Some 2025 holidays are not in the reference**: the Chinese New Year (Jan 29), both
//!    Eids (Apr 1, Jun 6) and Christmas Eve (Dec 24) come from a stored copy of
//!    python-holidays' Philippine data. Override: a 2025 holiday file with `replace = true`.
//! 5. **1604-C, not 1604-CF, for eFPS filers**: which form eFPS uses in 2026 is
//!    UNVERIFIED; the date (Jan 31) is the same, and 1604-CF is listed as superseded.
//! 6. **SLSP is due the 25th for everyone**: for eFPS / large taxpayers the reference says
//!    "end of the following month", 30th or last day UNVERIFIED; the 25th is never late.
//!    SLSP is only in a calendar when a profile names it (`extra_forms` or `forms`).
//!    Override: `bir override SLSP 2026-Q1 --due 2026-04-30 ...`.
//! 7. **2551Q follows fiscal quarters** for a fiscal-year corporation (the form asks for
//!    calendar or fiscal; the reference only says "quarter"). Override: per period.
//! 8. **1702-RT attachments** that eFPS filers apparently submit 15 days later are not
//!    listed (UNVERIFIED in the reference).
//! 9. **EOPT did not change any due day** (the reference: "UNVERIFIED but likely").
//! 10. **An override without a payment date moves payment too** (BIR extensions have so far
//!     covered filing and payment; UNVERIFIED as a rule). Override: `--payment DATE`.
//!     An override's date is used as given, not rolled forward.
//! 11. **1600-VT / 1600-PT, 2000 and 1602Q / 1603Q rest on a single source**; the eFPS
//!     staggering is applied only to 1601-C, 0619-E and 0619-F (VERIFIED), not to 1600-x.
//! 12. **2316 is listed on Jan 31** (to employees); the Feb 28 submission of signed copies
//!     to the BIR is named in the catalog note but is not a separate deadline.
//! 13. **An individual's annual return is 1701A** unless `mixed_income = true` (then 1701);
//!     1700 and 1702-EX / -MX only when named in `forms`.
#![deny(missing_docs)]

pub mod calendar;
pub mod catalog;
pub mod csv;
pub mod error;
pub mod handler;
pub mod holiday_law;
pub mod holidays;
pub mod horizon;
pub mod ics;
pub mod overrides;
pub mod period;
pub mod profile;
pub mod store;
pub mod sync;

pub use calendar::{
    AppliedOverride, CALENDAR_YEARS, Deadline, calendar, deadline, deadlines_between, period_of,
    periods, rule_date,
};
pub use catalog::{Basis, Catalog, DueRule, EfpsRule, Form, Frequency, Schedule, Status};
pub use csv::to_csv;
pub use error::{Error, Location, Place, Result};
pub use handler::BirHandler;
pub use holidays::{Holiday, HolidayKind, HolidayYear, Holidays, Move, YearStatus, roll_forward};
pub use horizon::{Ahead, Window};
pub use ics::to_ics;
pub use overrides::{Override, Overrides, save_override};
pub use period::Period;
pub use profile::{BusinessTax, EfpsGroup, Filing, Profile, TaxpayerKind, Tin};
pub use store::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, PgDeadlineStore, SqliteDeadlineStore,
    StatusApplied, StatusChange, SyncRun, apply_status_change,
};
pub use sync::{SyncReport, SyncRequest, sync};
