//! The files a manifest is read from (itself and what it `extends`) and a spanned value tree.
//!
//! We parse with `toml::de::DeTable` (which keeps the byte span of every key and value) and copy
//! the result into an owned tree whose every node remembers *which file* and *where*. Merging a
//! child manifest over its parent keeps each value's own location, so an error always points at
//! the file and line that wrote the offending value.

use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where a value was written: a file (index into [`Sources`]) and a byte range in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    pub file: usize,
    pub start: usize,
    pub end: usize,
}

impl Loc {
    fn new(file: usize, span: Range<usize>) -> Loc {
        Loc {
            file,
            start: span.start,
            end: span.end,
        }
    }
}

/// One source file, with line starts for `line:column` positions.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    /// Absolute directory of the file: what relative paths inside it are resolved against.
    dir: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

/// Every file read while loading one manifest.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Registers a file's text; returns its index for [`Loc::file`].
    pub fn add(&mut self, path: PathBuf, text: String) -> usize {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let abs = std::fs::canonicalize(&path)
            .unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(&path));
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
        self.files.push(SourceFile {
            path,
            dir,
            text,
            line_starts,
        });
        self.files.len() - 1
    }

    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].path
    }

    /// Absolute directory of a file (relative paths written in it resolve against this).
    pub fn dir(&self, file: usize) -> &Path {
        &self.files[file].dir
    }

    pub fn text(&self, file: usize) -> &str {
        &self.files[file].text
    }

    /// 1-based line and column (in characters) of a location's start.
    pub fn line_col(&self, loc: &Loc) -> (usize, usize) {
        let f = &self.files[loc.file];
        let start = loc.start.min(f.text.len());
        let line = f.line_starts.partition_point(|&s| s <= start);
        let line_start = f.line_starts[line - 1];
        let col = f.text[line_start..start].chars().count() + 1;
        (line, col)
    }

    /// `path:line:column` of a location, as compilers print it.
    pub fn position(&self, loc: &Loc) -> String {
        let (line, col) = self.line_col(loc);
        format!("{}:{line}:{col}", self.files[loc.file].path.display())
    }
}

/// A TOML value with its location.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

/// TOML values (datetimes are kept as their text: no stage reads them).
#[derive(Clone, Debug)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

/// A key of a table, with where it was written.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub node: Node,
}

/// A TOML table (keys in the order the parser gives them).
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Removes and returns an entry.
    pub fn take(&mut self, key: &str) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    /// Deep merge: `over`'s keys win; tables present in both are merged recursively, anything
    /// else (scalars, arrays, arrays of tables) is replaced whole.
    pub fn merge(&mut self, over: Table) {
        for entry in over.entries {
            match self.entries.iter_mut().find(|e| e.key == entry.key) {
                Some(mine) => match (&mut mine.node.value, entry.node.value) {
                    (Value::Table(a), Value::Table(b)) => a.merge(b),
                    (_, value) => {
                        mine.node = Node {
                            value,
                            loc: entry.node.loc,
                        };
                        mine.key_loc = entry.key_loc;
                    }
                },
                None => self.entries.push(entry),
            }
        }
    }
}

impl Node {
    /// The TOML type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&Table> {
        match &self.value {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as JSON (non-finite floats, which JSON cannot hold, become `null`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::String(s) | Value::Datetime(s) => J::String(s.clone()),
            Value::Integer(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Boolean(b) => J::Bool(*b),
            Value::Array(a) => J::Array(a.iter().map(Node::to_json).collect()),
            Value::Table(t) => J::Object(
                t.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.node.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A TOML syntax error: where, and the parser's message.
#[derive(Debug)]
pub struct SyntaxError {
    pub loc: Loc,
    pub message: String,
}

/// Parses one file's text into a spanned table.
pub fn parse(file: usize, text: &str) -> Result<Table, SyntaxError> {
    let doc = DeTable::parse(text).map_err(|e| SyntaxError {
        loc: Loc::new(file, e.span().unwrap_or(0..0)),
        message: e.message().trim().to_string(),
    })?;
    Ok(convert_table(file, doc.into_inner()))
}

fn convert_table(file: usize, t: DeTable<'_>) -> Table {
    let entries = t
        .into_iter()
        .map(|(k, v)| Entry {
            key: k.get_ref().to_string(),
            key_loc: Loc::new(file, k.span()),
            node: convert(file, v),
        })
        .collect();
    Table { entries }
}

fn convert(file: usize, v: Spanned<DeValue<'_>>) -> Node {
    let loc = Loc::new(file, v.span());
    let value = match v.into_inner() {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Integer(n),
            // Out of i64 range: keep it representable; validation reports the type later.
            Err(_) => Value::Float(f64::INFINITY),
        },
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Boolean(b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => Value::Array(a.iter().cloned().map(|x| convert(file, x)).collect()),
        DeValue::Table(t) => Value::Table(convert_table(file, t)),
    };
    Node { value, loc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let mut s = Sources::default();
        let text = "[a]\nx = \"é\"\ny = 3\n";
        let f = s.add("m.toml".into(), text.to_string());
        let t = parse(f, text).unwrap();
        let a = t.get("a").unwrap().node.as_table().unwrap();
        let y = a.get("y").unwrap();
        assert_eq!(s.position(&y.node.loc), "m.toml:3:5");
        assert_eq!(s.position(&y.key_loc), "m.toml:3:1");
    }

    #[test]
    fn merge_is_deep_for_tables_and_replaces_the_rest() {
        let mut s = Sources::default();
        let p = "[g]\na = [1]\nb = 2\n[h]\nz = 1\n";
        let c = "[g]\na = [3, 4]\n";
        let fp = s.add("p".into(), p.into());
        let fc = s.add("c".into(), c.into());
        let mut parent = parse(fp, p).unwrap();
        parent.merge(parse(fc, c).unwrap());
        let g = parent.get("g").unwrap().node.as_table().unwrap();
        assert_eq!(
            g.get("a").unwrap().node.to_json(),
            serde_json::json!([3, 4])
        );
        assert_eq!(g.get("a").unwrap().node.loc.file, fc);
        assert_eq!(g.get("b").unwrap().node.to_json(), serde_json::json!(2));
        assert!(parent.get("h").is_some());
    }
}
