//! Finds where a dotted key path (`listen.c2s[0].tls.mode`) is written in
//! the source, to point validation errors at a line.

use toml_edit::{Item, Table};

/// Byte offset of the key (or of its table, when the key itself is absent).
pub(super) fn key_offset(text: &str, path: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &Table = doc.as_table();
    let mut found = None;
    let segments: Vec<&str> = path.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*seg, None),
        };
        let Some((key, item)) = table.get_key_value(name) else {
            return found;
        };
        found = key.span().map(|s| s.start).or(found);
        let last = i + 1 == segments.len();
        match (item, index) {
            (Item::ArrayOfTables(arr), Some(idx)) => {
                let t = arr.get(idx)?;
                found = t.span().map(|s| s.start).or(found);
                table = t;
            }
            (Item::Table(t), None) => table = t,
            (Item::Value(toml_edit::Value::InlineTable(_)), _) | (Item::Value(_), _) if last => {}
            (Item::Value(toml_edit::Value::InlineTable(t)), None) => {
                // Dotted keys such as `tls.mode` parse as inline-like tables.
                return t
                    .get_key_value(segments.get(i + 1)?)
                    .and_then(|(k, _)| k.span().map(|s| s.start))
                    .or(found);
            }
            _ if last => {}
            _ => return found,
        }
    }
    found
}
