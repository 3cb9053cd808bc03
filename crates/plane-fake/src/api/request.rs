//! Reading a request: the query string and the body, as Django and DRF parse them.

use super::ApiRequest;
use crate::resp::Resp;
use crate::store::Obj;
use serde_json::Value;

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// Django's `QueryDict.get`: the last value.
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn list(&self, k: &str) -> Vec<String> {
        self.get(k)
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub(super) fn fields(&self) -> Option<Vec<String>> {
        let f = self.list("fields");
        (!f.is_empty()).then_some(f)
    }
}

pub(super) fn python_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// DRF's request.data: JSON or form bodies; an absent body or content type is `{}`.
pub(super) fn parse_body(req: &ApiRequest<'_>) -> Result<Obj, Resp> {
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let Some(ct) = ct.filter(|c| !c.is_empty()) else {
        return Ok(Obj::new());
    };
    if req.body.is_empty() {
        return Ok(Obj::new());
    }
    if ct == "application/json" || ct.ends_with("+json") {
        match serde_json::from_slice::<Value>(req.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(Resp::non_field_error(&format!(
                "Invalid data. Expected a dictionary, but got {}.",
                python_type_name(&other)
            ))),
            Err(e) => Err(Resp::detail(400, &format!("JSON parse error - {e}"))),
        }
    } else if ct == "application/x-www-form-urlencoded" {
        let text = String::from_utf8_lossy(req.body);
        let q = Query::parse(Some(&text));
        let mut m = Obj::new();
        for (k, v) in q.0 {
            m.insert(k, Value::String(v));
        }
        Ok(m)
    } else {
        Err(Resp::detail(
            415,
            &format!("Unsupported media type \"{ct}\" in request."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("a=1&b=x%2Cy+z&a=2&fields=id,,name"));
        assert_eq!(q.get("a"), Some("2"));
        assert_eq!(q.get("b"), Some("x,y z"));
        assert_eq!(q.fields(), Some(vec!["id".to_owned(), "name".to_owned()]));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
