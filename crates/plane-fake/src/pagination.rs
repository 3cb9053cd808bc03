//! Plane's cursor pagination (`OffsetPaginator`): the cursor's offset is a page index.

use crate::resp::Resp;
use serde_json::{Map, Value, json};

const MAX_LIMIT: i64 = 1000;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub limit: usize,
    pub page: i64,
}

impl Page {
    pub(crate) fn offset(&self) -> usize {
        // Validated non-negative in `parse`.
        usize::try_from(self.page).unwrap_or(0) * self.limit
    }
}

/// Parses `per_page` and `cursor` like Plane, returning the error response it would send.
pub(crate) fn parse(per_page: Option<&str>, cursor: Option<&str>) -> Result<Page, Resp> {
    let limit: i64 = match per_page {
        None => MAX_LIMIT,
        Some(s) => match parse_py_int(s) {
            Some(n) => n,
            None => return Err(Resp::detail(400, "Invalid per_page parameter.")),
        },
    };
    if limit > MAX_LIMIT {
        return Err(Resp::detail(
            400,
            "Invalid per_page value. Cannot exceed 1000.",
        ));
    }
    let default_cursor = format!("{limit}:0:0");
    let cursor = cursor.unwrap_or(&default_cursor);
    let Some(page) = parse_cursor(cursor) else {
        return Err(Resp::detail(400, "Invalid cursor parameter."));
    };
    if limit <= 0 {
        // Plane divides by per_page (0) or slices with a negative bound: both end as a 500.
        return Err(Resp::server_error());
    }
    if i128::from(page) * i128::from(limit) < 0 {
        return Err(Resp::detail(400, "Error in parsing"));
    }
    Ok(Page {
        limit: usize::try_from(limit).unwrap_or(1000),
        page,
    })
}

/// Python `int(s)`: optional surrounding whitespace and sign, digits with single underscores.
fn parse_py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let n: i64 = clean.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// `value:offset:is_prev`; value int or float (ignored), offset int (the page), is_prev int.
fn parse_cursor(s: &str) -> Option<i64> {
    let bits: Vec<&str> = s.split(':').collect();
    if bits.len() != 3 {
        return None;
    }
    if bits[0].contains('.') {
        bits[0].trim().parse::<f64>().ok()?;
    } else {
        parse_py_int(bits[0])?;
    }
    let page = parse_py_int(bits[1])?;
    parse_py_int(bits[2])?;
    Some(page)
}

/// The 12-key envelope, in Plane's order.
pub(crate) fn envelope(page: Page, total: usize, results: Vec<Value>) -> Value {
    let limit = page.limit;
    let next_page_results = total > page.offset() + limit;
    let mut m = Map::new();
    m.insert("grouped_by".into(), Value::Null);
    m.insert("sub_grouped_by".into(), Value::Null);
    m.insert("total_count".into(), json!(total));
    m.insert(
        "next_cursor".into(),
        json!(format!("{limit}:{}:0", page.page + 1)),
    );
    m.insert(
        "prev_cursor".into(),
        json!(format!("{limit}:{}:1", page.page - 1)),
    );
    m.insert("next_page_results".into(), json!(next_page_results));
    m.insert("prev_page_results".into(), json!(page.page > 0));
    m.insert("count".into(), json!(results.len()));
    m.insert("total_pages".into(), json!(total.div_ceil(limit)));
    m.insert("total_results".into(), json!(total));
    m.insert("extra_stats".into(), Value::Null);
    m.insert("results".into(), Value::Array(results));
    Value::Object(m)
}

/// Paginates an already ordered list.
pub(crate) fn paginate(page: Page, all: Vec<Value>) -> Value {
    let total = all.len();
    let results = all
        .into_iter()
        .skip(page.offset())
        .take(page.limit)
        .collect();
    envelope(page, total, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_plane() {
        assert_eq!(
            parse(None, None).ok(),
            Some(Page {
                limit: 1000,
                page: 0
            })
        );
        assert_eq!(
            parse(Some("100"), Some("100:2:0")).ok(),
            Some(Page {
                limit: 100,
                page: 2
            })
        );
        assert_eq!(
            parse(Some("100"), Some("7.5:1:1")).ok(),
            Some(Page {
                limit: 100,
                page: 1
            })
        );
        assert_eq!(parse(Some("abc"), None).err().map(|r| r.status), Some(400));
        assert_eq!(parse(Some("1001"), None).err().map(|r| r.status), Some(400));
        assert_eq!(parse(Some("0"), None).err().map(|r| r.status), Some(500));
        assert_eq!(
            parse(None, Some("garbage")).err().map(|r| r.status),
            Some(400)
        );
        assert_eq!(
            parse(None, Some("1:x:0")).err().map(|r| r.status),
            Some(400)
        );
        assert_eq!(
            parse(None, Some("1000:-1:1")).err().map(|r| r.status),
            Some(400)
        );
    }
}
