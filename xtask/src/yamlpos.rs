//! Line numbers for YAML values. serde_yaml's `Value` forgets positions, so the
//! rules locate a key path in the block-style text by indentation. Flow-style
//! values (`{a: 1}`, `[x, y]`) resolve to the line of their parent key.

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// One logical entry of the text: `- key: v` yields an item entry and a key entry.
#[derive(Debug)]
struct Entry<'t> {
    line: usize,
    indent: usize,
    content: &'t str,
    item: bool,
}

fn entries(text: &str) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let content = raw.trim_start();
        if content.is_empty() || content.starts_with('#') || content == "---" {
            continue;
        }
        let mut indent = raw.len() - content.len();
        let mut content = content;
        while content == "-" || content.starts_with("- ") {
            out.push(Entry {
                line: i + 1,
                indent,
                content,
                item: true,
            });
            let rest = content[1..].trim_start();
            indent += content.len() - rest.len();
            content = rest;
            if content.is_empty() {
                break;
            }
        }
        if !content.is_empty()
            && !out
                .last()
                .is_some_and(|e| e.line == i + 1 && e.content == content)
        {
            out.push(Entry {
                line: i + 1,
                indent,
                content,
                item: false,
            });
        }
    }
    out
}

/// The 1-based line of the value at `path` (as deep as it can be found; 1 for
/// an empty path or nothing found).
pub fn line_of(text: &str, path: &[Step<'_>]) -> usize {
    let entries = entries(text);
    let mut found_line = 1usize;
    let mut pos = 0usize; // first entry of the current block
    let mut parent_indent: Option<usize> = None;
    for step in path {
        let mut child_indent: Option<usize> = None;
        let mut seen = 0usize;
        let mut hit = None;
        for (idx, e) in entries.iter().enumerate().skip(pos) {
            let inside = match parent_indent {
                None => true,
                Some(p) => e.indent > p || (e.item && e.indent == p),
            };
            if !inside {
                break;
            }
            let ci = *child_indent.get_or_insert(e.indent);
            if e.indent < ci {
                break;
            }
            if e.indent != ci {
                continue;
            }
            match step {
                Step::Key(k) if !e.item && key_matches(e.content, k) => {
                    hit = Some(idx);
                    break;
                }
                Step::Index(n) if e.item => {
                    if seen == *n {
                        hit = Some(idx);
                        break;
                    }
                    seen += 1;
                }
                _ => {}
            }
        }
        let Some(idx) = hit else { break };
        found_line = entries[idx].line;
        parent_indent = Some(entries[idx].indent);
        pos = idx + 1;
    }
    found_line
}

fn key_matches(content: &str, key: &str) -> bool {
    for quote in ["", "\"", "'"] {
        let candidate = format!("{quote}{key}{quote}:");
        if let Some(rest) = content.strip_prefix(candidate.as_str())
            && (rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t'))
        {
            return true;
        }
    }
    false
}

/// The 1-based line of the first occurrence of `needle` at or after line `from`
/// (1-based), or `from` when it does not occur.
pub fn find_from(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map_or(from, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::Step::{Index, Key};
    use super::*;

    const DOC: &str = "\
# comment
version: \"1\"
secrets:
  a:
    purpose: x
    consumers:
      - env:one
      - env:two
  b:
    purpose: y
    consumers: [env:three]
modes:
  m:
    env:
      A: \"${A}\"
";

    #[test]
    fn finds_keys_and_items() {
        assert_eq!(line_of(DOC, &[Key("version")]), 2);
        assert_eq!(line_of(DOC, &[Key("secrets"), Key("a")]), 4);
        assert_eq!(
            line_of(DOC, &[Key("secrets"), Key("a"), Key("consumers")]),
            6
        );
        assert_eq!(
            line_of(DOC, &[Key("secrets"), Key("a"), Key("consumers"), Index(1)]),
            8
        );
        assert_eq!(
            line_of(DOC, &[Key("secrets"), Key("b"), Key("purpose")]),
            10
        );
        // Flow style: the parent key's line.
        assert_eq!(
            line_of(DOC, &[Key("secrets"), Key("b"), Key("consumers"), Index(0)]),
            11
        );
        assert_eq!(
            line_of(DOC, &[Key("modes"), Key("m"), Key("env"), Key("A")]),
            15
        );
        // Missing keys resolve to the deepest ancestor found.
        assert_eq!(line_of(DOC, &[Key("secrets"), Key("zz")]), 3);
    }

    #[test]
    fn list_of_mappings() {
        let doc = "items:\n  - name: a\n    value: 1\n  - name: b\n    value: 2\n";
        assert_eq!(line_of(doc, &[Key("items"), Index(1)]), 4);
        assert_eq!(line_of(doc, &[Key("items"), Index(1), Key("value")]), 5);
        assert_eq!(find_from(doc, "value", 4), 5);
    }
}
