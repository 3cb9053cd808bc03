//! Prints a profile's deadlines for a year.
//!
//! ```sh
//! cargo run -p plane-bir --example calendar -- crates/plane-bir/profiles/fiscal-june-corporation.toml 2026
//! ```

use std::path::PathBuf;

use plane_bir::{Holidays, Overrides, Profile, calendar};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles/efps-a-vat-corporation.toml")
    });
    let year: i32 = args.next().map(|y| y.parse()).transpose()?.unwrap_or(2026);
    let profile = Profile::load(&path)?;
    println!("{} ({} forms), {year}:", profile.name, profile.forms.len());
    for d in calendar(&profile, year, &Holidays::builtin(), &Overrides::none())? {
        let pay = d
            .payment_date
            .map(|p| format!(", pay by {p}"))
            .unwrap_or_default();
        let moved = if d.moved_by.is_empty() {
            String::new()
        } else {
            format!(
                " (rule date {}, moved by {} day(s))",
                d.rule_date,
                d.moved_by.len()
            )
        };
        println!(
            "  {:<8} {:<8} file by {}{pay}{moved}",
            d.form,
            d.period.to_string(),
            d.due_date
        );
    }
    Ok(())
}
