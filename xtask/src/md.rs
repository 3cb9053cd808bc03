//! The parts of a Markdown document the rules look at: headings, tables (with
//! the section they sit in), inline code spans and bold `**Key**: value` lines,
//! each with its line number.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::findings::Lines;

/// A heading.
#[derive(Debug, Clone)]
pub struct Heading {
    /// 1 for `#`, 2 for `##`...
    pub level: u8,
    /// The heading's plain text.
    pub text: String,
    pub line: usize,
}

/// One table cell: its plain text, and the links and code spans inside it.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub links: Vec<String>,
    pub code: Vec<String>,
}

/// A table row.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<Cell>,
}

impl Row {
    /// The trimmed text of cell `i` ("" when the row is short).
    pub fn text(&self, i: usize) -> &str {
        self.cells.get(i).map_or("", |c| c.text.trim())
    }
}

/// A table.
#[derive(Debug, Clone)]
pub struct Table {
    pub line: usize,
    /// The text of the nearest heading above it, if any.
    pub section: Option<String>,
    pub header: Row,
    pub rows: Vec<Row>,
}

impl Table {
    /// The header cells' trimmed text.
    pub fn columns(&self) -> Vec<&str> {
        self.header.cells.iter().map(|c| c.text.trim()).collect()
    }
}

/// An inline code span.
#[derive(Debug, Clone)]
pub struct Code {
    pub text: String,
    pub line: usize,
    /// The nearest heading above it.
    pub section: Option<String>,
}

/// A bold key-value line `**Key**: value` (or `**Key:** value`).
#[derive(Debug, Clone)]
pub struct Field {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A parsed document.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub headings: Vec<Heading>,
    pub tables: Vec<Table>,
    pub code: Vec<Code>,
    pub links: Vec<(String, usize)>,
    pub fields: Vec<Field>,
}

impl Doc {
    /// Parses `text`.
    pub fn parse(text: &str) -> Self {
        let lines = Lines::new(text);
        let mut doc = Doc {
            fields: fields(text),
            ..Doc::default()
        };
        let mut section: Option<String> = None;
        let mut heading: Option<Heading> = None;
        let mut table: Option<Table> = None;
        let mut row: Option<Row> = None;
        let mut cell: Option<Cell> = None;
        let mut in_head = false;
        let parser = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH);
        for (event, range) in parser.into_offset_iter() {
            let line = lines.line_of(range.start);
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    heading = Some(Heading {
                        level: heading_level(level),
                        text: String::new(),
                        line,
                    });
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some(mut h) = heading.take() {
                        h.text = h.text.trim().to_owned();
                        section = Some(h.text.clone());
                        doc.headings.push(h);
                    }
                }
                Event::Start(Tag::Table(_)) => {
                    table = Some(Table {
                        line,
                        section: section.clone(),
                        header: Row {
                            line,
                            cells: Vec::new(),
                        },
                        rows: Vec::new(),
                    });
                }
                Event::End(TagEnd::Table) => {
                    if let Some(t) = table.take() {
                        doc.tables.push(t);
                    }
                }
                Event::Start(Tag::TableHead) => {
                    in_head = true;
                    row = Some(Row {
                        line,
                        cells: Vec::new(),
                    });
                }
                Event::Start(Tag::TableRow) => {
                    row = Some(Row {
                        line,
                        cells: Vec::new(),
                    });
                }
                Event::End(TagEnd::TableHead) | Event::End(TagEnd::TableRow) => {
                    if let (Some(t), Some(r)) = (table.as_mut(), row.take()) {
                        if in_head {
                            t.header = r;
                        } else {
                            t.rows.push(r);
                        }
                    }
                    in_head = false;
                }
                Event::Start(Tag::TableCell) => cell = Some(Cell::default()),
                Event::End(TagEnd::TableCell) => {
                    if let (Some(r), Some(c)) = (row.as_mut(), cell.take()) {
                        r.cells.push(c);
                    }
                }
                Event::Start(Tag::Link { dest_url, .. }) => {
                    doc.links.push((dest_url.to_string(), line));
                    if let Some(c) = cell.as_mut() {
                        c.links.push(dest_url.to_string());
                    }
                }
                Event::Text(t) => {
                    if let Some(h) = heading.as_mut() {
                        h.text.push_str(&t);
                    }
                    if let Some(c) = cell.as_mut() {
                        c.text.push_str(&t);
                    }
                }
                Event::Code(t) => {
                    if let Some(h) = heading.as_mut() {
                        h.text.push_str(&t);
                    }
                    if let Some(c) = cell.as_mut() {
                        c.text.push_str(&t);
                        c.code.push(t.to_string());
                    }
                    doc.code.push(Code {
                        text: t.to_string(),
                        line,
                        section: section.clone(),
                    });
                }
                _ => {}
            }
        }
        doc
    }

    /// The first table whose header is exactly `columns`.
    pub fn table_with(&self, columns: &[&str]) -> Option<&Table> {
        self.tables.iter().find(|t| t.columns() == columns)
    }

    /// The first field named `key` (case-insensitive).
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.key.eq_ignore_ascii_case(key))
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Bold key-value lines before the first `## ` heading.
fn fields(text: &str) -> Vec<Field> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("## ") {
            break;
        }
        let Some(rest) = line.strip_prefix("**") else {
            continue;
        };
        let Some(end) = rest.find("**") else {
            continue;
        };
        let key = rest[..end].trim();
        let after = &rest[end + 2..];
        let (key, value) = if let Some(k) = key.strip_suffix(':') {
            (k.trim(), after.trim())
        } else if let Some(v) = after.strip_prefix(':') {
            (key, v.trim())
        } else {
            continue;
        };
        out.push(Field {
            key: key.to_owned(),
            value: value.trim_end_matches("  ").trim().to_owned(),
            line: i + 1,
        });
    }
    out
}

/// Drops leading emoji, symbols and spaces: `"⚠️ Partial"` -> `"Partial"`.
pub fn status_word(cell: &str) -> &str {
    cell.trim()
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .trim()
}

/// Strips one pair of surrounding backticks.
pub fn unquote(cell: &str) -> &str {
    let c = cell.trim();
    c.strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tables_headings_fields() {
        let text = "# T\n\n**Contract ID**: C-18\n**Owner:** me\n\n## Index\n\n| # | Contract |\n|---|---|\n| C-18 | [X](X.md) `code` |\n";
        let doc = Doc::parse(text);
        assert_eq!(doc.headings.len(), 2);
        assert_eq!(doc.headings[1].line, 6);
        assert_eq!(
            doc.field("contract id").map(|f| f.value.as_str()),
            Some("C-18")
        );
        assert_eq!(doc.field("Owner").map(|f| f.line), Some(4));
        let t = doc.table_with(&["#", "Contract"]);
        assert!(t.is_some());
        if let Some(t) = t {
            assert_eq!(t.rows[0].line, 10);
            assert_eq!(t.rows[0].cells[1].links, vec!["X.md".to_owned()]);
            assert_eq!(t.section.as_deref(), Some("Index"));
        }
        assert_eq!(status_word("⚠️ Partial"), "Partial");
        assert_eq!(unquote("`a/**`"), "a/**");
    }
}
