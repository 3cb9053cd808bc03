//! The form catalog: which BIR returns exist, how often, and by which rule they fall due.
//!
//! The data is `data/forms.toml`, compiled in and readable by a person; this module gives
//! it types. Forms that are abolished, optional or only attachments are in the catalog
//! too, so asking for one gets its reason instead of silence.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::error::{Error, Result};

const FORMS_TOML: &str = include_str!("../data/forms.toml");

static BUILTIN: LazyLock<Catalog> = LazyLock::new(|| {
    Catalog::parse(FORMS_TOML, "plane-bir/data/forms.toml")
        .expect("the compiled-in data/forms.toml is valid (checked by catalog tests)")
});

/// Whether a form is still filed, and if not why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// In force in 2026: has deadlines.
    Required,
    /// May be filed, is not required, has no deadline (2550M).
    Optional,
    /// No longer exists (2551M, 0605).
    Abolished,
    /// Replaced by other forms (1604-CF, 1601-E).
    Superseded,
    /// Filed with another return, on its date (SAWT, QAP).
    Attachment,
}

impl Status {
    /// The word used in the catalog and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Required => "required",
            Status::Optional => "optional",
            Status::Abolished => "abolished",
            Status::Superseded => "superseded",
            Status::Attachment => "attachment",
        }
    }
}

/// How often a form is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Frequency {
    /// One return per calendar month.
    Monthly,
    /// One return per quarter.
    Quarterly,
    /// One return per (taxable) year.
    Annual,
}

/// Which years and quarters a form's periods follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Calendar months, quarters and years, whatever the taxpayer's fiscal year (withholding).
    Calendar,
    /// The taxpayer's taxable year: fiscal quarters for a fiscal-year filer.
    TaxableYear,
}

/// How eFPS filers differ from manual filers for a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EfpsRule {
    /// No difference.
    Same,
    /// Filing on the group's day (A 15th ... E 11th), payment on the form's `payment_day`.
    Staggered,
}

/// A due-date rule, counted from the last day of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueRule {
    /// Day `day` of the `months_after`th month after the period (clamped to the month's end).
    DayOfMonth {
        /// 1 = the month after the period.
        months_after: u32,
        /// Day of that month.
        day: u32,
    },
    /// The last day of the `months_after`th month after the period.
    LastDayOfMonth {
        /// 1 = the month after the period.
        months_after: u32,
    },
    /// `days` days after the period's last day.
    DaysAfter {
        /// Number of days.
        days: u32,
    },
}

impl DueRule {
    /// The rule in words, as shown in the calendar.
    ///
    /// ```
    /// use plane_bir::DueRule;
    /// assert_eq!(DueRule::DayOfMonth { months_after: 1, day: 10 }.describe(), "10th day of the month after the period");
    /// assert_eq!(DueRule::DaysAfter { days: 60 }.describe(), "60 days after the period ends");
    /// ```
    pub fn describe(&self) -> String {
        match *self {
            DueRule::DayOfMonth { months_after, day } => {
                format!("{} day of the {}", ordinal(day), month_after(months_after))
            }
            DueRule::LastDayOfMonth { months_after } => {
                format!("last day of the {}", month_after(months_after))
            }
            DueRule::DaysAfter { days } => format!("{days} days after the period ends"),
        }
    }
}

fn month_after(n: u32) -> String {
    if n == 1 {
        "month after the period".into()
    } else {
        format!("{} month after the period", ordinal(n))
    }
}

pub(crate) fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DueSpec {
    months_after: Option<u32>,
    day: Option<u32>,
    last_day: Option<bool>,
    days_after: Option<u32>,
}

impl DueSpec {
    fn rule(&self) -> Option<DueRule> {
        match (self.months_after, self.day, self.last_day, self.days_after) {
            (Some(m), Some(d), None, None) if (1..=12).contains(&m) && (1..=31).contains(&d) => {
                Some(DueRule::DayOfMonth {
                    months_after: m,
                    day: d,
                })
            }
            (Some(m), None, Some(true), None) if (1..=12).contains(&m) => {
                Some(DueRule::LastDayOfMonth { months_after: m })
            }
            (None, None, None, Some(days)) if (1..=366).contains(&days) => {
                Some(DueRule::DaysAfter { days })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    form: Vec<RawForm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForm {
    code: String,
    name: String,
    status: Status,
    frequency: Option<Frequency>,
    basis: Option<Basis>,
    due: Option<DueSpec>,
    december: Option<DueSpec>,
    #[serde(default)]
    skip_months: Vec<u32>,
    quarters: Option<Vec<u32>>,
    efps: Option<EfpsRule>,
    payment_day: Option<u32>,
    #[serde(default, rename = "for")]
    applies_for: Vec<String>,
    confidence: String,
    note: Option<String>,
    reason: Option<String>,
    page: Option<String>,
}

/// When and how often a form with deadlines falls due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// How often.
    pub frequency: Frequency,
    /// Calendar or taxable-year periods.
    pub basis: Basis,
    /// The rule for manual, eBIRForms and non-eFPS filers.
    pub due: DueRule,
    /// A different rule for the period that ends in December (manual filers), if any.
    pub december: Option<DueRule>,
    /// Calendar months without a return (monthly forms).
    pub skip_months: Vec<u32>,
    /// Quarters with a return (quarterly forms): `[1, 2, 3]` when the annual return covers Q4.
    pub quarters: Vec<u32>,
    /// How eFPS filers differ.
    pub efps: EfpsRule,
    /// eFPS payment day for staggered forms.
    pub payment_day: Option<u32>,
}

/// One form of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// The code as the BIR writes it (`1601-C`).
    pub code: String,
    /// What it is.
    pub name: String,
    /// Whether it is filed.
    pub status: Status,
    /// Its schedule; `None` for forms without deadlines of their own.
    pub schedule: Option<Schedule>,
    /// Profile traits that make it apply (`employer`, `vat`, ...).
    pub applies_for: Vec<String>,
    /// The reference's label: VERIFIED, SINGLE or UNVERIFIED.
    pub confidence: String,
    /// A note for people.
    pub note: Option<String>,
    /// Why a form without deadlines has none.
    pub reason: Option<String>,
    /// The form's page on the BIR's website (`https://…bir.gov.ph/…`), where the reference
    /// names one; `None` until then.
    pub page: Option<String>,
}

impl Form {
    /// The schedule, or [`Error::NoDeadline`] with the form's reason.
    ///
    /// ```
    /// let catalog = plane_bir::Catalog::builtin();
    /// assert!(catalog.get("1601-C").unwrap().schedule().is_ok());
    /// let err = catalog.get("2551M").unwrap().schedule().unwrap_err();
    /// assert!(err.to_string().contains("abolished from taxable year 2018"));
    /// ```
    pub fn schedule(&self) -> Result<&Schedule> {
        self.schedule.as_ref().ok_or_else(|| Error::NoDeadline {
            form: self.code.clone(),
            reason: self.reason.clone().unwrap_or_default(),
        })
    }
}

/// The catalog of forms.
#[derive(Debug, Clone)]
pub struct Catalog {
    forms: Vec<Form>,
}

/// The profile traits that forms may name in `for`.
pub const TRAITS: &[&str] = &[
    "employer",
    "expanded-withholding",
    "final-withholding",
    "vat-pt-withholding",
    "vat",
    "percentage-tax",
    "documentary-stamp-tax",
    "corporation",
    "individual",
    "individual-business-only",
    "individual-mixed-income",
];

impl Catalog {
    /// The compiled-in catalog (`data/forms.toml`).
    ///
    /// ```
    /// let catalog = plane_bir::Catalog::builtin();
    /// assert_eq!(catalog.get("2550Q").unwrap().name, "Quarterly VAT return");
    /// assert!(catalog.get("9999").is_none());
    /// ```
    pub fn builtin() -> &'static Catalog {
        &BUILTIN
    }

    /// Parses a catalog in the shape of `data/forms.toml`.
    pub fn parse(text: &str, file: &str) -> Result<Catalog> {
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| crate::error::syntax(file, text, &e))?;
        let mut seen = BTreeSet::new();
        let mut forms = Vec::with_capacity(raw.form.len());
        for f in raw.form {
            let invalid = |field: &str, problem: String, allowed: &str| Error::Invalid {
                place: crate::error::Place {
                    file: file.to_string(),
                    location: None,
                },
                field: format!("form {}: {field}", f.code),
                problem,
                allowed: allowed.to_string(),
            };
            if !seen.insert(f.code.clone()) {
                return Err(invalid("code", "appears twice".into(), "each code once"));
            }
            for t in &f.applies_for {
                if !TRAITS.contains(&t.as_str()) {
                    return Err(invalid(
                        "for",
                        format!("unknown trait {t:?}"),
                        &TRAITS.join(", "),
                    ));
                }
            }
            let schedule = if f.status == Status::Required {
                let rule = |spec: &Option<DueSpec>, field: &str| -> Result<Option<DueRule>> {
                    match spec {
                        None => Ok(None),
                        Some(s) => s.rule().map(Some).ok_or_else(|| {
                            invalid(
                                field,
                                "not a due rule".into(),
                                "{ months_after = N, day = D } | { months_after = N, last_day = true } | { days_after = N }",
                            )
                        }),
                    }
                };
                let due = rule(&f.due, "due")?
                    .ok_or_else(|| invalid("due", "missing".into(), "a due rule"))?;
                let frequency = f.frequency.ok_or_else(|| {
                    invalid("frequency", "missing".into(), "monthly, quarterly, annual")
                })?;
                let efps = f.efps.unwrap_or(EfpsRule::Same);
                if efps == EfpsRule::Staggered && f.payment_day.is_none() {
                    return Err(invalid(
                        "payment_day",
                        "missing for a staggered form".into(),
                        "a day 1-31",
                    ));
                }
                if f.skip_months.iter().any(|m| !(1..=12).contains(m)) {
                    return Err(invalid(
                        "skip_months",
                        format!("{:?}", f.skip_months),
                        "months 1-12",
                    ));
                }
                let quarters = f.quarters.unwrap_or_else(|| vec![1, 2, 3, 4]);
                if quarters.iter().any(|q| !(1..=4).contains(q)) {
                    return Err(invalid("quarters", format!("{quarters:?}"), "quarters 1-4"));
                }
                Some(Schedule {
                    frequency,
                    basis: f.basis.unwrap_or(Basis::Calendar),
                    due,
                    december: rule(&f.december, "december")?,
                    skip_months: f.skip_months,
                    quarters,
                    efps,
                    payment_day: f.payment_day,
                })
            } else {
                if f.reason.is_none() {
                    return Err(invalid(
                        "reason",
                        "missing".into(),
                        "why the form has no deadline",
                    ));
                }
                None
            };
            if let Some(page) = &f.page
                && !is_bir_page(page)
            {
                return Err(invalid(
                    "page",
                    format!("{page:?} is not a page of the BIR's website"),
                    "an https:// address on bir.gov.ph",
                ));
            }
            forms.push(Form {
                code: f.code,
                name: f.name,
                status: f.status,
                schedule,
                applies_for: f.applies_for,
                confidence: f.confidence,
                note: f.note,
                reason: f.reason,
                page: f.page,
            });
        }
        Ok(Catalog { forms })
    }

    /// Every form, in catalog order.
    pub fn forms(&self) -> &[Form] {
        &self.forms
    }

    /// A form by code (exact, as the BIR writes it; case-insensitive).
    pub fn get(&self, code: &str) -> Option<&Form> {
        self.forms
            .iter()
            .find(|f| f.code.eq_ignore_ascii_case(code.trim()))
    }

    /// A form with deadlines, or the error that says why not (unknown, or abolished and since when).
    ///
    /// ```
    /// let catalog = plane_bir::Catalog::builtin();
    /// assert_eq!(catalog.with_deadlines("0619-E").unwrap().code, "0619-E");
    /// let err = catalog.with_deadlines("0605").unwrap_err().to_string();
    /// assert!(err.starts_with("form 0605 has no deadline: the annual registration fee was abolished"), "{err}");
    /// ```
    pub fn with_deadlines(&self, code: &str) -> Result<&Form> {
        let form = self.get(code).ok_or_else(|| Error::UnknownForm {
            form: code.to_string(),
            allowed: self.codes_with_deadlines().join(", "),
        })?;
        form.schedule()?;
        Ok(form)
    }

    /// The codes of every form that has deadlines.
    pub fn codes_with_deadlines(&self) -> Vec<&str> {
        self.forms
            .iter()
            .filter(|f| f.schedule.is_some())
            .map(|f| f.code.as_str())
            .collect()
    }
}

/// An `https://` address on bir.gov.ph (or one of its subdomains): a form's page is
/// shown to people and agents as the BIR's own, so nothing else is taken.
fn is_bir_page(page: &str) -> bool {
    let Some(rest) = page.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.to_ascii_lowercase();
    (host == "bir.gov.ph" || host.ends_with(".bir.gov.ph")) && !page.contains(char::is_whitespace)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_parses_and_knows_the_abolished_forms() {
        let catalog = Catalog::parse(FORMS_TOML, "forms.toml").expect("valid");
        for code in ["2551M", "0605", "2550M", "1604-CF", "1601-E", "SAWT", "QAP"] {
            let form = catalog.get(code).expect(code);
            assert!(form.schedule.is_none(), "{code}");
            assert!(
                form.reason.as_deref().is_some_and(|r| r.len() > 20),
                "{code}"
            );
        }
        assert_eq!(
            catalog.get("2550M").map(|f| f.status),
            Some(Status::Optional)
        );
        assert_eq!(
            catalog.get("2551M").map(|f| f.status),
            Some(Status::Abolished)
        );
        let c = catalog
            .get("1601-c")
            .and_then(|f| f.schedule.clone())
            .expect("1601-C");
        assert_eq!(c.efps, EfpsRule::Staggered);
        assert_eq!(c.payment_day, Some(15));
        assert_eq!(
            c.december,
            Some(DueRule::DayOfMonth {
                months_after: 1,
                day: 15
            })
        );
    }

    #[test]
    fn a_broken_catalog_is_refused_with_the_form_and_field() {
        let text = "[[form]]\ncode = \"X\"\nname = \"x\"\nstatus = \"required\"\nfrequency = \"monthly\"\ndue = { months_after = 1 }\nconfidence = \"SINGLE\"\n";
        let err = Catalog::parse(text, "f.toml").unwrap_err().to_string();
        assert!(
            err.contains("form X: due") && err.contains("not a due rule"),
            "{err}"
        );
        let err = Catalog::parse("[[form]]\ncode = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.toml:2:8: field `form.code`"), "{err}");
    }

    #[test]
    fn a_form_page_must_be_an_https_address_on_bir_gov_ph() {
        let form = |page: &str| {
            format!(
                "[[form]]\ncode = \"X\"\nname = \"x\"\nstatus = \"abolished\"\nreason = \"gone\"\nconfidence = \"SINGLE\"\npage = {page:?}\n"
            )
        };
        let ok = Catalog::parse(&form("https://www.bir.gov.ph/bir-forms"), "f.toml").unwrap();
        assert_eq!(
            ok.get("X").and_then(|f| f.page.as_deref()),
            Some("https://www.bir.gov.ph/bir-forms")
        );
        for bad in [
            "http://www.bir.gov.ph/bir-forms",
            "https://bir.gov.ph.example.com/x",
            "https://example.com/www.bir.gov.ph",
            "www.bir.gov.ph/bir-forms",
        ] {
            let err = Catalog::parse(&form(bad), "f.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("form X: page") && err.contains("bir.gov.ph"),
                "{bad}: {err}"
            );
        }
        // The reference names no page yet; any the data gains must pass the same check.
        for f in Catalog::builtin().forms() {
            assert!(f.page.as_deref().is_none_or(is_bir_page), "{}", f.code);
        }
    }

    #[test]
    fn ordinals() {
        let words: Vec<_> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 31].map(ordinal).into();
        assert_eq!(
            words,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "31st"
            ]
        );
    }
}
