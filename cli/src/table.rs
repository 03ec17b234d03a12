//! A small text-table renderer over JSON values (what `--format table` prints).
//!
//! Lists become column tables (nested objects flattened into dotted columns, numbers aligned
//! right); a single record becomes a key/value table, followed by a table per list of records
//! it holds (a usage report's `by_mcp` and `by_day`).

use serde_json::Value;

/// How a value reads as a table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'a> {
    /// One record: a key/value table (nested objects flattened with dots, lists of records
    /// as tables below it).
    Record,
    /// A list of records with these columns (dotted paths); empty: every column.
    Rows(&'a [&'a str]),
}

/// Renders `value` as text ending with a newline.
pub(crate) fn render(value: &Value, view: View<'_>) -> String {
    match (view, value) {
        (View::Rows(columns), Value::Array(rows)) => rows_table(rows, columns),
        (View::Record, Value::Object(_)) => record(value),
        (_, Value::Array(rows)) => rows_table(rows, &[]),
        (_, other) => format!("{}\n", cell(other)),
    }
}

/// `key  value` lines, then sub-tables for lists of records.
fn record(value: &Value) -> String {
    let mut pairs = Vec::new();
    flatten("", value, &mut pairs);
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    for (key, v) in pairs {
        match &v {
            Value::Array(items) if items.iter().any(Value::is_object) => {
                tables.push((key, rows_table(items, &[])));
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let k = if i == 0 { key.clone() } else { String::new() };
                    lines.push((k, cell(item)));
                }
            }
            _ => lines.push((key, cell(&v))),
        }
    }
    let width = lines
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in &lines {
        out.push_str(format!("{}  {v}", pad(k, width, false)).trim_end());
        out.push('\n');
    }
    for (key, table) in tables {
        out.push_str(&format!("\n{key}:\n{table}"));
    }
    out
}

/// Column table of `rows`; `columns` empty means every flattened key, in first-seen order.
fn rows_table(rows: &[Value], columns: &[&str]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let flat: Vec<Vec<(String, Value)>> = rows
        .iter()
        .map(|row| {
            let mut pairs = Vec::new();
            if row.is_object() {
                flatten("", row, &mut pairs);
            } else {
                pairs.push(("value".to_owned(), row.clone()));
            }
            pairs
        })
        .collect();
    let columns: Vec<String> = if columns.is_empty() {
        let mut seen: Vec<String> = Vec::new();
        for row in &flat {
            for (k, _) in row {
                if !seen.contains(k) {
                    seen.push(k.clone());
                }
            }
        }
        seen
    } else {
        columns.iter().map(|c| (*c).to_owned()).collect()
    };
    let grid: Vec<Vec<Value>> = rows
        .iter()
        .zip(&flat)
        .map(|(row, pairs)| {
            columns
                .iter()
                .map(|c| {
                    // A column may name a whole object (`details`): shown as compact JSON.
                    lookup(row, c)
                        .or_else(|| pairs.iter().find(|(k, _)| k == c).map(|(_, v)| v))
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect()
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| {
            grid.iter().all(|r| r[i].is_number() || r[i].is_null())
                && grid.iter().any(|r| r[i].is_number())
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let cells: Vec<Vec<String>> = grid.iter().map(|r| r.iter().map(cell).collect()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| -> String {
        let parts: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| pad(c, widths[i], numeric[i]))
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(&header);
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

/// The value at a dotted path (`membership.role`).
fn lookup<'a>(row: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(row, |v, key| v.get(key))
}

/// Nested objects become dotted keys (`limits.mcps`); everything else is a leaf.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// One cell: null is `-`, strings bare, scalar lists comma-joined, anything else compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => clean(s),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        other => clean(&other.to_string()),
    }
}

/// Control characters (newlines, tabs, escapes) would break the layout: shown as spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn pad(text: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(text.chars().count()));
    if right {
        format!("{fill}{text}")
    } else {
        format!("{text}{fill}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_align_and_flatten() {
        let rows = json!([
            {"id": "a", "n": 5, "m": {"role": "owner"}},
            {"id": "bbb", "n": 123, "m": {"role": "x\ny"}},
        ]);
        let text = render(&rows, View::Rows(&[]));
        assert_eq!(text, "ID     N  M.ROLE\na      5  owner\nbbb  123  x y\n");
        let text = render(&rows, View::Rows(&["m.role", "id"]));
        assert_eq!(text, "M.ROLE  ID\nowner   a\nx y     bbb\n");
        let text = render(&rows, View::Rows(&["id", "m"]));
        assert_eq!(
            text,
            "ID   M\na    {\"role\":\"owner\"}\nbbb  {\"role\":\"x\\ny\"}\n"
        );
        assert_eq!(render(&json!([]), View::Rows(&[])), "(none)\n");
    }

    #[test]
    fn records_list_nested_tables() {
        let v = json!({"id": "o", "limits": {"mcps": null}, "tags": ["a", "b"],
                       "by_day": [{"date": "2024-01-01", "requests": 3}]});
        let text = render(&v, View::Record);
        assert_eq!(
            text,
            "id           o\nlimits.mcps  -\ntags         a\n             b\n\nby_day:\nDATE        REQUESTS\n2024-01-01         3\n"
        );
    }
}
