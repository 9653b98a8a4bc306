//! Small typed readers over a spanned [`Table`]: each reports a wrong type or an unknown key at
//! the exact value, in the file that wrote it, and carries on so several errors surface at once.

use super::diag::{suggest, Diagnostics};
use super::source::{Loc, Node, Table, Value};

/// Reports every key of `table` not in `allowed`, with a did-you-mean.
pub fn check_keys(table: &Table, allowed: &[&str], what: &str, d: &mut Diagnostics) {
    for e in &table.entries {
        if !allowed.contains(&e.key.as_str()) {
            d.error(
                &e.key_loc,
                format!("unknown key `{}` in {what}", e.key),
                Some(suggest(&e.key, allowed)),
            );
        }
    }
}

fn type_error(node: &Node, key: &str, what: &str, expected: &str, d: &mut Diagnostics) {
    d.error(
        &node.loc,
        format!(
            "`{key}` in {what} must be {expected}, found {}",
            node.type_name()
        ),
        None,
    );
}

/// A string value (None when absent or of the wrong type, which is reported).
pub fn string(table: &Table, key: &str, what: &str, d: &mut Diagnostics) -> Option<(String, Loc)> {
    let e = table.get(key)?;
    match e.node.as_str() {
        Some(s) => Some((s.to_string(), e.node.loc.clone())),
        None => {
            type_error(&e.node, key, what, "a string", d);
            None
        }
    }
}

/// A non-negative integer.
pub fn uint(table: &Table, key: &str, what: &str, d: &mut Diagnostics) -> Option<(u64, Loc)> {
    let e = table.get(key)?;
    match e.node.value {
        Value::Integer(i) if i >= 0 => Some((i as u64, e.node.loc.clone())),
        _ => {
            type_error(&e.node, key, what, "a non-negative integer", d);
            None
        }
    }
}

/// A number (integers widen).
pub fn float(table: &Table, key: &str, what: &str, d: &mut Diagnostics) -> Option<(f64, Loc)> {
    let e = table.get(key)?;
    match e.node.value {
        Value::Integer(i) => Some((i as f64, e.node.loc.clone())),
        Value::Float(f) => Some((f, e.node.loc.clone())),
        _ => {
            type_error(&e.node, key, what, "a number", d);
            None
        }
    }
}

pub fn boolean(table: &Table, key: &str, what: &str, d: &mut Diagnostics) -> Option<(bool, Loc)> {
    let e = table.get(key)?;
    match e.node.value {
        Value::Boolean(b) => Some((b, e.node.loc.clone())),
        _ => {
            type_error(&e.node, key, what, "true or false", d);
            None
        }
    }
}

pub fn table<'t>(
    table: &'t Table,
    key: &str,
    what: &str,
    d: &mut Diagnostics,
) -> Option<(&'t Table, Loc)> {
    let e = table.get(key)?;
    match e.node.as_table() {
        Some(t) => Some((t, e.node.loc.clone())),
        None => {
            type_error(&e.node, key, what, "a table", d);
            None
        }
    }
}

/// An array of strings.
pub fn strings(
    table: &Table,
    key: &str,
    what: &str,
    d: &mut Diagnostics,
) -> Option<Vec<(String, Loc)>> {
    let e = table.get(key)?;
    let Some(items) = e.node.as_array() else {
        type_error(&e.node, key, what, "an array of strings", d);
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_str() {
            Some(s) => out.push((s.to_string(), item.loc.clone())),
            None => type_error(item, key, what, "an array of strings", d),
        }
    }
    Some(out)
}

/// A `params = { … }` table as JSON (free-form settings passed to the stage that builds an entry).
pub fn params(
    table: &Table,
    what: &str,
    d: &mut Diagnostics,
) -> serde_json::Map<String, serde_json::Value> {
    match self::table(table, "params", what, d) {
        Some((t, _)) => t
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.node.to_json()))
            .collect(),
        None => serde_json::Map::new(),
    }
}
