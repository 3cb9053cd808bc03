//! Taxpayer profiles: who files, how (eFPS or not), and which forms apply.
//!
//! A profile is a TOML file:
//!
//! ```toml
//! name = "Bayanihan Builders Corp."
//! tin = "123-456-789-000"        # 9 digits + a 3-5 digit branch code, dashes optional
//! taxpayer = "corporation"       # corporation | individual
//! year_end_month = 12            # 12 = calendar year; 1-11 = fiscal year (corporations)
//! efps = true                    # eFPS filer (default false)
//! efps_group = "A"               # A-E, only with efps = true
//!
//! [applies]                      # what applies; or instead a list: forms = ["1601-C", ...]
//! employer = true                # 1601-C, 1604-C, 2316
//! withholding_on_suppliers = true  # 0619-E, 1601-EQ, 2307, 1604-E
//! final_withholding = false      # 0619-F, 1601-FQ, 1604-F
//! business_tax = "vat"           # vat (2550Q) | percentage (2551Q) | none
//! ```
//!
//! Every mistake is reported with the file, line, column, field and what is allowed.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::catalog::{Catalog, Form};
use crate::error::{Error, Place, Result};

/// A Taxpayer Identification Number: 9 digits and a 3-5 digit branch code.
///
/// ```
/// use plane_bir::Tin;
/// let tin: Tin = "123456789000".parse().unwrap();
/// assert_eq!(tin.to_string(), "123-456-789-000");
/// assert_eq!("123-456-789-00000".parse::<Tin>().unwrap().branch(), "00000");
/// assert!("123-45-6789".parse::<Tin>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tin {
    digits: String,
}

/// What a TIN must look like (shown in errors).
pub const TIN_ALLOWED: &str = "9 digits and a 3 to 5 digit branch code, dashes optional (123-456-789-000, 123456789000, 123-456-789-00000)";

impl Tin {
    /// The 9-digit taxpayer number.
    pub fn number(&self) -> &str {
        self.digits.get(..9).unwrap_or_default()
    }
    /// The branch code (3 to 5 digits; `000` is the head office).
    pub fn branch(&self) -> &str {
        self.digits.get(9..).unwrap_or_default()
    }
    /// Only the digits, no dashes.
    pub fn digits(&self) -> &str {
        &self.digits
    }
}

impl std::str::FromStr for Tin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        // Dashes are optional, but only where the BIR prints them: after the 3rd, 6th and
        // 9th digit.
        let mut digits = String::new();
        let mut last_dash = false;
        for c in text.trim().chars() {
            match c {
                '0'..='9' => {
                    digits.push(c);
                    last_dash = false;
                }
                '-' if !last_dash && [3, 6, 9].contains(&digits.len()) => last_dash = true,
                _ => return Err(format!("{text:?} is not a TIN")),
            }
        }
        if (12..=14).contains(&digits.len()) && !last_dash {
            Ok(Tin { digits })
        } else {
            Err(format!("{text:?} is not a TIN"))
        }
    }
}

impl std::fmt::Display for Tin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.digits;
        write!(
            f,
            "{}-{}-{}-{}",
            d.get(..3).unwrap_or_default(),
            d.get(3..6).unwrap_or_default(),
            d.get(6..9).unwrap_or_default(),
            self.branch()
        )
    }
}

impl serde::Serialize for Tin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Corporation (or other non-individual) or individual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaxpayerKind {
    /// Corporations, partnerships, other non-individuals (1702 family).
    Corporation,
    /// Self-employed or mixed-income individuals (1701 family).
    Individual,
}

/// An eFPS industry group (RR 26-2002): the day of the month staggered returns are filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EfpsGroup {
    /// 15th: banking, insurance, construction, water and land transport, hotels...
    A,
    /// 14th: manufacturing, mining and quarrying.
    B,
    /// 13th: retail and wholesale trade, motor vehicles, water, computer activities, real estate.
    C,
    /// 12th: air transport, utilities, telecoms, publishing, recreation...
    D,
    /// 11th: membership organisations, health, education, public administration, agriculture...
    E,
}

impl EfpsGroup {
    /// The filing day of the month for this group.
    pub fn filing_day(self) -> u32 {
        match self {
            EfpsGroup::A => 15,
            EfpsGroup::B => 14,
            EfpsGroup::C => 13,
            EfpsGroup::D => 12,
            EfpsGroup::E => 11,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "A" | "a" => Some(EfpsGroup::A),
            "B" | "b" => Some(EfpsGroup::B),
            "C" | "c" => Some(EfpsGroup::C),
            "D" | "d" => Some(EfpsGroup::D),
            "E" | "e" => Some(EfpsGroup::E),
            _ => None,
        }
    }
}

/// How the taxpayer files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    /// Manual, eBIRForms or any non-eFPS filing.
    Manual,
    /// eFPS, in an industry group.
    Efps(EfpsGroup),
}

/// VAT, percentage tax, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusinessTax {
    /// VAT-registered: 2550Q.
    Vat,
    /// Non-VAT, percentage tax: 2551Q.
    Percentage,
    /// Neither (exempt).
    None,
}

/// A validated taxpayer profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The taxpayer's name.
    pub name: String,
    /// Its TIN (`None` only for the whole-catalog listing).
    pub tin: Option<Tin>,
    /// Corporation or individual.
    pub taxpayer: TaxpayerKind,
    /// Manual or eFPS with its group.
    pub filing: Filing,
    /// The month the taxable year ends in (12 = calendar year).
    pub year_end_month: u32,
    /// The forms filed, in catalog order.
    pub forms: Vec<&'static Form>,
    /// The file it was read from.
    pub file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    tin: Spanned<String>,
    taxpayer: TaxpayerKind,
    year_end_month: Option<Spanned<u32>>,
    #[serde(default)]
    efps: bool,
    efps_group: Option<Spanned<String>>,
    applies: Option<Spanned<RawApplies>>,
    forms: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApplies {
    #[serde(default)]
    employer: bool,
    #[serde(default)]
    withholding_on_suppliers: bool,
    #[serde(default)]
    final_withholding: bool,
    #[serde(default)]
    withholds_vat_or_percentage_tax: bool,
    business_tax: Option<BusinessTax>,
    #[serde(default)]
    documentary_stamp_tax: bool,
    #[serde(default)]
    mixed_income: bool,
    #[serde(default)]
    extra_forms: Vec<Spanned<String>>,
}

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::parse(&text, &path.display().to_string())
    }

    /// Validates profile text; `file` names it in errors.
    ///
    /// ```
    /// let p = plane_bir::Profile::parse(r#"
    /// name = "Juan dela Cruz"
    /// tin = "123-456-789-000"
    /// taxpayer = "individual"
    /// [applies]
    /// business_tax = "percentage"
    /// "#, "juan.toml").unwrap();
    /// let codes: Vec<_> = p.forms.iter().map(|f| f.code.as_str()).collect();
    /// assert_eq!(codes, ["2551Q", "1701Q", "1701A"]);
    ///
    /// let err = plane_bir::Profile::parse("name = \"x\"\ntin = \"123\"\ntaxpayer = \"individual\"\n", "x.toml").unwrap_err();
    /// assert!(err.to_string().starts_with("x.toml:2:7: field `tin`: \"123\" is not a TIN; allowed: 9 digits"));
    /// ```
    pub fn parse(text: &str, file: &str) -> Result<Profile> {
        let raw: RawProfile =
            toml::from_str(text).map_err(|e| crate::error::syntax(file, text, &e))?;
        let at = |span: std::ops::Range<usize>| Place::at(file, text, span);
        let tin: Tin = raw
            .tin
            .get_ref()
            .parse()
            .map_err(|problem| Error::Invalid {
                place: at(raw.tin.span()),
                field: "tin".into(),
                problem,
                allowed: TIN_ALLOWED.into(),
            })?;
        let year_end_month = match &raw.year_end_month {
            None => 12,
            Some(m) => {
                let month = *m.get_ref();
                if !(1..=12).contains(&month) {
                    return Err(Error::Invalid {
                        place: at(m.span()),
                        field: "year_end_month".into(),
                        problem: format!("{month} is not a month"),
                        allowed:
                            "12 for a calendar year, 1-11 for a fiscal year ending in that month"
                                .into(),
                    });
                }
                if month != 12 && raw.taxpayer == TaxpayerKind::Individual {
                    return Err(Error::Invalid {
                        place: at(m.span()),
                        field: "year_end_month".into(),
                        problem: format!(
                            "an individual's taxable year is the calendar year, not one ending in month {month}"
                        ),
                        allowed: "12 (or leave it out) for taxpayer = \"individual\"".into(),
                    });
                }
                month
            }
        };
        let filing = match (&raw.efps, &raw.efps_group) {
            (false, None) => Filing::Manual,
            (false, Some(g)) => {
                return Err(Error::Invalid {
                    place: at(g.span()),
                    field: "efps_group".into(),
                    problem: format!("efps_group = {:?} is set but efps is false: only eFPS filers have a group", g.get_ref()),
                    allowed: "efps = true with efps_group = \"A\"..\"E\", or no efps_group".into(),
                });
            }
            (true, None) => {
                return Err(Error::Invalid {
                    place: Place { file: file.into(), location: None },
                    field: "efps_group".into(),
                    problem: "missing: an eFPS filer needs its industry group (RR 26-2002)".into(),
                    allowed: "\"A\" (files the 15th), \"B\" (14th), \"C\" (13th), \"D\" (12th), \"E\" (11th)".into(),
                });
            }
            (true, Some(g)) => Filing::Efps(EfpsGroup::parse(g.get_ref()).ok_or_else(|| Error::Invalid {
                place: at(g.span()),
                field: "efps_group".into(),
                problem: format!("{:?} is not an eFPS group", g.get_ref()),
                allowed: "\"A\" (files the 15th), \"B\" (14th), \"C\" (13th), \"D\" (12th), \"E\" (11th)".into(),
            })?),
        };

        let catalog = Catalog::builtin();
        let lookup = |code: &Spanned<String>, field: String| -> Result<&'static Form> {
            match catalog.get(code.get_ref()) {
                None => Err(Error::Invalid {
                    place: at(code.span()),
                    field,
                    problem: format!("unknown form {:?}", code.get_ref()),
                    allowed: catalog.codes_with_deadlines().join(", "),
                }),
                Some(form) if form.schedule.is_none() => Err(Error::Invalid {
                    place: at(code.span()),
                    field,
                    problem: format!(
                        "form {} has no deadline: {}",
                        form.code,
                        form.reason.as_deref().unwrap_or("")
                    ),
                    allowed: catalog.codes_with_deadlines().join(", "),
                }),
                Some(form) => Ok(form),
            }
        };

        let mut chosen: Vec<&'static Form> = Vec::new();
        match (raw.forms, raw.applies) {
            (Some(forms), Some(applies)) => {
                let (a, b) = (forms.span(), applies.span());
                return Err(Error::Invalid {
                    place: at(a.start.min(b.start)..a.end),
                    field: "forms".into(),
                    problem: "both `forms` and `[applies]` are set".into(),
                    allowed: "either an explicit `forms = [...]` list or an `[applies]` table"
                        .into(),
                });
            }
            (Some(forms), None) => {
                for (i, code) in forms.get_ref().iter().enumerate() {
                    chosen.push(lookup(code, format!("forms[{i}]"))?);
                }
                if chosen.is_empty() {
                    return Err(Error::Invalid {
                        place: at(forms.span()),
                        field: "forms".into(),
                        problem: "the list is empty".into(),
                        allowed: catalog.codes_with_deadlines().join(", "),
                    });
                }
            }
            (None, applies) => {
                let applies = applies.map(Spanned::into_inner).unwrap_or_default();
                let mut traits = vec![match raw.taxpayer {
                    TaxpayerKind::Corporation => "corporation",
                    TaxpayerKind::Individual => "individual",
                }];
                let flags = [
                    (applies.employer, "employer"),
                    (applies.withholding_on_suppliers, "expanded-withholding"),
                    (applies.final_withholding, "final-withholding"),
                    (
                        applies.withholds_vat_or_percentage_tax,
                        "vat-pt-withholding",
                    ),
                    (applies.documentary_stamp_tax, "documentary-stamp-tax"),
                    (applies.business_tax == Some(BusinessTax::Vat), "vat"),
                    (
                        applies.business_tax == Some(BusinessTax::Percentage),
                        "percentage-tax",
                    ),
                ];
                traits.extend(flags.iter().filter(|(on, _)| *on).map(|(_, t)| *t));
                if raw.taxpayer == TaxpayerKind::Individual {
                    traits.push(if applies.mixed_income {
                        "individual-mixed-income"
                    } else {
                        "individual-business-only"
                    });
                }
                chosen.extend(
                    catalog
                        .forms()
                        .iter()
                        .filter(|f| f.applies_for.iter().any(|t| traits.contains(&t.as_str()))),
                );
                for (i, code) in applies.extra_forms.iter().enumerate() {
                    chosen.push(lookup(code, format!("applies.extra_forms[{i}]"))?);
                }
            }
        }
        // Catalog order, each form once.
        let order = |f: &Form| catalog.forms().iter().position(|c| c.code == f.code);
        chosen.sort_by_key(|f| order(f));
        chosen.dedup_by(|a, b| a.code == b.code);
        Ok(Profile {
            name: raw.name,
            tin: Some(tin),
            taxpayer: raw.taxpayer,
            filing,
            year_end_month,
            forms: chosen,
            file: Some(file.to_string()),
        })
    }

    /// Every form with deadlines in the catalog, for a calendar-year manual filer: what
    /// `plane-server bir calendar` shows without `--profile`.
    pub fn whole_catalog() -> Profile {
        Profile {
            name: "every form in the catalog (calendar year, manual filer)".into(),
            tin: None,
            taxpayer: TaxpayerKind::Corporation,
            filing: Filing::Manual,
            year_end_month: 12,
            forms: Catalog::builtin()
                .forms()
                .iter()
                .filter(|f| f.schedule.is_some())
                .collect(),
            file: None,
        }
    }

    /// Whether the taxable year is a fiscal year (not ending in December).
    pub fn is_fiscal(&self) -> bool {
        self.year_end_month != 12
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn codes(p: &Profile) -> Vec<&str> {
        p.forms.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn tins() {
        for ok in [
            "123-456-789-000",
            "123456789000",
            "123-456-789-0000",
            "12345678900000",
        ] {
            assert!(ok.parse::<Tin>().is_ok(), "{ok}");
        }
        for bad in [
            "123-456-789",
            "123456789",
            "123-456-789-00",
            "1234-56-789-000",
            "123-456-789-000000",
            "12345678900a",
            "123--456789000",
        ] {
            assert!(bad.parse::<Tin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_forms_and_errors() {
        let base = "name = \"x\"\ntin = \"123-456-789-000\"\ntaxpayer = \"corporation\"\n";
        let p = Profile::parse(
            &format!("{base}forms = [\"2550Q\", \"1601-C\"]\n"),
            "p.toml",
        )
        .expect("valid");
        assert_eq!(codes(&p), ["1601-C", "2550Q"]);
        let err = Profile::parse(
            &format!("{base}forms = [\"1601-C\", \"2551M\"]\n"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.toml:4:20: field `forms[1]`: form 2551M has no deadline: abolished from taxable year 2018"), "{err}");
        let err = Profile::parse(&format!("{base}forms = []\n"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `forms`: the list is empty"), "{err}");
        let err = Profile::parse(
            &format!("{base}forms = [\"2550Q\"]\n[applies]\nemployer = true\n"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("both `forms` and `[applies]` are set"),
            "{err}"
        );
        let err = Profile::parse(
            &format!("{base}efps = true\nefps_group = \"F\"\n"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.toml:5:14: field `efps_group`: \"F\" is not an eFPS group; allowed: \"A\" (files the 15th)"), "{err}");
        let err = Profile::parse(&format!("{base}efps = true\n"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml: field `efps_group`: missing"),
            "{err}"
        );
        let err = Profile::parse(&format!("{base}year_end_month = 13\n"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:4:18: field `year_end_month`: 13 is not a month"),
            "{err}"
        );
        let err = Profile::parse(
            &format!("{base}[applies]\nbusiness_tax = \"sales\"\n"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.toml:5:16: field `applies.business_tax`: unknown variant `sales`, expected one of `vat`, `percentage`, `none`"), "{err}");
        let err = Profile::parse(&format!("{base}[applies]\nemployees = true\n"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "p.toml:5:1: field `applies.employees`: unknown field `employees`, expected one of"
            ),
            "{err}"
        );
    }
}
