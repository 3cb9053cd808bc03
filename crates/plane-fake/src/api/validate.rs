//! DRF-like field validation: a [`Form`] reads the request body field by field, collects
//! errors under each field's name in DRF's words, and keeps the validated values.

use super::request::python_type_name;
use crate::resp::Resp;
use crate::store::{Obj, format_ts};
use serde_json::{Value, json};
use uuid::Uuid;

const DATETIME_FORMATS: &str = "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";

/// The options of a DRF CharField that matter here (strings are trimmed, numbers accepted).
#[derive(Debug, Clone, Copy)]
pub(super) struct Char {
    required: bool,
    allow_blank: bool,
    allow_null: bool,
    max: usize,
}

impl Char {
    /// Not blank, not null; required when `required`.
    pub(super) const fn filled(required: bool, max: usize) -> Char {
        Char {
            required,
            allow_blank: false,
            allow_null: false,
            max,
        }
    }

    /// Optional, may be blank, not null.
    pub(super) const fn optional(max: usize) -> Char {
        Char {
            required: false,
            allow_blank: true,
            allow_null: false,
            max,
        }
    }

    /// Optional, may be blank or null.
    pub(super) const fn nullable(max: usize) -> Char {
        Char {
            allow_null: true,
            ..Char::optional(max)
        }
    }
}

/// A serializer's validation of one request body.
#[derive(Debug)]
pub(super) struct Form<'a> {
    body: &'a Obj,
    /// Field → list of messages, in the order DRF reports them.
    errors: Obj,
    out: Obj,
}

impl<'a> Form<'a> {
    pub(super) fn new(body: &'a Obj) -> Form<'a> {
        Form {
            body,
            errors: Obj::new(),
            out: Obj::new(),
        }
    }

    pub(super) fn error(&mut self, field: &str, msg: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_insert_with(|| json!([]));
        if let Some(Value::Array(a)) = self.errors.get_mut(field) {
            a.push(Value::String(msg.into()));
        }
    }

    pub(super) fn set(&mut self, k: &str, v: Value) {
        self.out.insert(k.into(), v);
    }

    /// A value validated so far.
    pub(super) fn value(&self, k: &str) -> Option<&Value> {
        self.out.get(k)
    }

    /// The validated values, or a 400 with every field's errors.
    pub(super) fn finish(self) -> Result<Obj, Resp> {
        if self.errors.is_empty() {
            Ok(self.out)
        } else {
            Err(Resp::json(400, &Value::Object(self.errors)))
        }
    }

    pub(super) fn char(&mut self, k: &str, spec: Char) {
        let Char {
            required,
            allow_blank,
            allow_null,
            max,
        } = spec;
        match self.body.get(k) {
            None => {
                if required {
                    self.error(k, "This field is required.");
                }
            }
            Some(Value::Null) => {
                if allow_null {
                    self.set(k, Value::Null);
                } else {
                    self.error(k, "This field may not be null.");
                }
            }
            Some(v) => {
                let s = match v {
                    Value::String(s) => s.trim().to_owned(),
                    Value::Number(n) => n.to_string(),
                    _ => return self.error(k, "Not a valid string."),
                };
                if s.is_empty() && !allow_blank {
                    self.error(k, "This field may not be blank.");
                } else if s.chars().count() > max {
                    self.error(
                        k,
                        format!("Ensure this field has no more than {max} characters."),
                    );
                } else {
                    self.set(k, Value::String(s));
                }
            }
        }
    }

    /// `external_source` and `external_id`, which every Plane model with them validates alike.
    pub(super) fn external(&mut self) {
        self.char("external_source", Char::nullable(255));
        self.char("external_id", Char::nullable(255));
    }

    /// A ChoiceField; a wrong value is quoted as Python shows it.
    pub(super) fn choice(&mut self, k: &str, choices: &[&str]) {
        match self.body.get(k) {
            None => {}
            Some(Value::String(v)) if choices.contains(&v.as_str()) => self.set(k, json!(v)),
            Some(v) => {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                self.error(k, format!("\"{shown}\" is not a valid choice."));
            }
        }
    }

    pub(super) fn date(&mut self, k: &str) {
        match self.body.get(k) {
            None => {}
            Some(Value::Null) => self.set(k, Value::Null),
            Some(Value::String(s)) if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => {
                self.set(k, Value::String(s.clone()));
            }
            Some(_) => self.error(
                k,
                "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
            ),
        }
    }

    /// An RFC 3339 datetime, stored in Plane's format; `date_ok` also takes a bare date as
    /// its midnight UTC (cycle dates).
    pub(super) fn datetime(&mut self, k: &str, date_ok: bool) {
        match self.body.get(k) {
            None => {}
            Some(Value::Null) => self.set(k, Value::Null),
            Some(Value::String(v)) => {
                if let Ok(d) = chrono::DateTime::parse_from_rfc3339(v) {
                    let micros = d.with_timezone(&chrono::Utc).timestamp_micros();
                    self.set(k, json!(format_ts(micros)));
                } else if date_ok && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
                    self.set(k, json!(format!("{v}T00:00:00Z")));
                } else {
                    self.error(k, DATETIME_FORMATS);
                }
            }
            Some(_) => self.error(k, "Datetime has wrong format."),
        }
    }

    pub(super) fn bool(&mut self, k: &str) {
        let v = match self.body.get(k) {
            None => return,
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            Some(Value::String(s)) => match s.as_str() {
                "true" | "True" | "TRUE" | "1" | "yes" | "on" => Some(true),
                "false" | "False" | "FALSE" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            Some(_) => None,
        };
        match v {
            Some(b) => self.set(k, Value::Bool(b)),
            None => self.error(k, "Must be a valid boolean."),
        }
    }

    pub(super) fn number(&mut self, k: &str) {
        match self.body.get(k) {
            None => {}
            Some(Value::Number(n)) => self.set(k, json!(n.as_f64().unwrap_or(0.0))),
            Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
                self.set(k, json!(s.trim().parse::<f64>().unwrap_or(0.0)));
            }
            Some(_) => self.error(k, "A valid number is required."),
        }
    }

    /// A primary-key field: a UUID of an object `exists` knows.
    pub(super) fn pk(&mut self, k: &str, exists: impl Fn(&str) -> bool) {
        match self.body.get(k) {
            None => {}
            Some(Value::Null) => self.set(k, Value::Null),
            Some(Value::String(s)) => match Uuid::parse_str(s) {
                Ok(u) if exists(&u.to_string()) => self.set(k, json!(u.to_string())),
                Ok(_) => self.error(k, format!("Invalid pk \"{s}\" - object does not exist.")),
                Err(_) => self.error(k, format!("\u{201c}{s}\u{201d} is not a valid UUID.")),
            },
            Some(v) => self.error(
                k,
                format!(
                    "Incorrect type. Expected pk value, received {}.",
                    python_type_name(v)
                ),
            ),
        }
    }

    /// A list of ids; like Plane's serializer, ids not valid for the project are dropped.
    pub(super) fn id_list(&mut self, k: &str, keep: impl Fn(&str) -> bool) {
        match self.body.get(k) {
            None => {}
            Some(Value::Array(items)) => {
                let mut ids: Vec<Value> = Vec::new();
                for v in items {
                    if let Some(u) = v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                        let u = json!(u.to_string());
                        if u.as_str().is_some_and(&keep) && !ids.contains(&u) {
                            ids.push(u);
                        }
                    }
                }
                self.set(k, Value::Array(ids));
            }
            Some(v) => self.error(
                k,
                format!(
                    "Expected a list of items but got type \"{}\".",
                    python_type_name(v)
                ),
            ),
        }
    }
}

/// The object-level date check of Plane's serializers: `start` may not be after `end`.
pub(super) fn dates_in_order(o: &Obj, start: &str, end: &str, msg: &str) -> Result<(), Resp> {
    match (o.get(start), o.get(end)) {
        (Some(Value::String(a)), Some(Value::String(b))) if a > b => {
            Err(Resp::non_field_error(msg))
        }
        _ => Ok(()),
    }
}
