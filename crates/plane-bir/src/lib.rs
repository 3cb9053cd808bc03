//! Philippine BIR filing deadlines: which returns a taxpayer files, and on which exact days.
//!
//! (TOUR PLACEHOLDER)
#![deny(missing_docs)]

pub mod calendar;
pub mod catalog;
pub mod csv;
pub mod error;
pub mod holidays;
pub mod ics;
pub mod overrides;
pub mod period;
pub mod profile;

pub use calendar::{AppliedOverride, Deadline, calendar, deadline, periods, rule_date};
pub use catalog::{Basis, Catalog, DueRule, EfpsRule, Form, Frequency, Schedule, Status};
pub use csv::to_csv;
pub use error::{Error, Location, Place, Result};
pub use holidays::{Holiday, HolidayKind, HolidayYear, Holidays, Move, roll_forward};
pub use ics::to_ics;
pub use overrides::{Override, Overrides, save_override};
pub use period::Period;
pub use profile::{BusinessTax, EfpsGroup, Filing, Profile, TaxpayerKind, Tin};
