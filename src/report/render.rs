//! Writing tables: CSV (via polars: a plain header, numeric columns numeric, loadable by
//! pandas/polars as is), Markdown (best per column in bold, `mean ± std`), JSON and text.

use crate::report::long::LongTable;
use crate::report::pivot::WideTable;
use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};
use serde_json::json;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Md,
    Json,
    Text,
}

/// The long table as a polars frame: one string column per axis, then `metric`, `value`
/// (f64, null if missing), `state` and `task`.
pub fn long_frame(t: &LongTable) -> anyhow::Result<DataFrame> {
    let mut cols: Vec<Column> = Vec::new();
    for (i, a) in t.axes.iter().enumerate() {
        let v: Vec<Option<String>> = t.rows.iter().map(|r| r.axes[i].clone()).collect();
        cols.push(Column::new(a.as_str().into(), v));
    }
    cols.push(Column::new(
        "metric".into(),
        t.rows.iter().map(|r| r.metric.clone()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "value".into(),
        t.rows.iter().map(|r| r.value).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "state".into(),
        t.rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "task".into(),
        t.rows.iter().map(|r| r.task.0.clone()).collect::<Vec<_>>(),
    ));
    DataFrame::new(t.rows.len(), cols).map_err(|e| anyhow::anyhow!("building the long table: {e}"))
}

/// The pivoted table as a polars frame: row-axis columns, one f64 column per table column
/// (the mean), a `<col>_std` column each when seeds were aggregated, and `best_in`: the
/// columns (';'-separated) in which this row holds the best value.
pub fn wide_frame(t: &WideTable) -> anyhow::Result<DataFrame> {
    let mut cols: Vec<Column> = Vec::new();
    for (i, a) in t.row_axes.iter().enumerate() {
        cols.push(Column::new(
            a.as_str().into(),
            t.rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>(),
        ));
    }
    let std = t.has_std();
    for (c, name) in t.cols.iter().enumerate() {
        cols.push(Column::new(
            name.as_str().into(),
            t.cells
                .iter()
                .map(|r| r[c].map(|a| a.mean))
                .collect::<Vec<_>>(),
        ));
        if std {
            cols.push(Column::new(
                format!("{name}_std").as_str().into(),
                t.cells
                    .iter()
                    .map(|r| r[c].and_then(|a| a.std))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    let best: Vec<String> = t
        .best
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|(_, b)| **b)
                .map(|(c, _)| t.cols[c].clone())
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect();
    cols.push(Column::new("best_in".into(), best));
    DataFrame::new(t.rows.len(), cols)
        .map_err(|e| anyhow::anyhow!("building the pivoted table: {e}"))
}

fn csv(mut df: DataFrame) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(&mut df)
        .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    Ok(String::from_utf8(buf)?)
}

fn num(v: f64, signed: bool) -> String {
    if signed {
        format!("{v:+.4}")
    } else {
        format!("{v:.4}")
    }
}

fn aligned(header: &[String], rows: &[Vec<String>], markdown: bool) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        if markdown {
            format!("| {} |", padded.join(" | "))
        } else {
            padded.join("  ").trim_end().to_string()
        }
    };
    let mut out = line(header);
    out.push('\n');
    let rule: Vec<String> = width.iter().map(|w| "-".repeat((*w).max(3))).collect();
    if markdown {
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
    } else {
        out.push_str(&rule.join("  "));
        out.push('\n');
    }
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// Renders the long table.
pub fn render_long(t: &LongTable, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Csv => csv(long_frame(t)?),
        Format::Json => {
            let rows: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|r| {
                    let mut o = serde_json::Map::new();
                    for (a, v) in t.axes.iter().zip(&r.axes) {
                        o.insert(a.clone(), json!(v));
                    }
                    o.insert("metric".into(), json!(r.metric));
                    o.insert("value".into(), json!(r.value.filter(|v| v.is_finite())));
                    o.insert("state".into(), json!(r.state.as_str()));
                    o.insert("task".into(), json!(r.task.0));
                    serde_json::Value::Object(o)
                })
                .collect();
            Ok(serde_json::to_string_pretty(&rows)? + "\n")
        }
        Format::Md | Format::Text => {
            let mut header = t.axes.clone();
            header.extend(["metric", "value", "state", "task"].map(String::from));
            let rows: Vec<Vec<String>> = t
                .rows
                .iter()
                .map(|r| {
                    let mut v: Vec<String> = r
                        .axes
                        .iter()
                        .map(|a| a.clone().unwrap_or_else(|| "-".into()))
                        .collect();
                    v.push(r.metric.clone());
                    v.push(r.value.map(|x| num(x, false)).unwrap_or_default());
                    v.push(r.state.as_str().into());
                    v.push(r.task.short().into());
                    v
                })
                .collect();
            Ok(aligned(&header, &rows, format == Format::Md))
        }
    }
}

/// Renders a pivoted table; Markdown and text end with the list of gaps (missing or failed
/// cells), which CSV cannot carry (`mlvf results` prints them on stderr).
pub fn render_wide(t: &WideTable, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Csv => csv(wide_frame(t)?),
        Format::Json => {
            let rows: Vec<serde_json::Value> = t
                .rows
                .iter()
                .enumerate()
                .map(|(r, labels)| {
                    let mut o = serde_json::Map::new();
                    for (a, v) in t.row_axes.iter().zip(labels) {
                        o.insert(a.clone(), json!(v));
                    }
                    for (c, name) in t.cols.iter().enumerate() {
                        let cell = t.cells[r][c].map(|a| {
                            json!({"mean": a.mean, "std": a.std, "n": a.n, "best": t.best[r][c]})
                        });
                        o.insert(name.clone(), cell.unwrap_or(serde_json::Value::Null));
                    }
                    serde_json::Value::Object(o)
                })
                .collect();
            let doc = json!({
                "metric": t.metric,
                "baseline_delta": t.baseline_delta,
                "rows": rows,
                "gaps": t.gaps,
            });
            Ok(serde_json::to_string_pretty(&doc)? + "\n")
        }
        Format::Md | Format::Text => {
            let md = format == Format::Md;
            let mut header = t.row_axes.clone();
            header.extend(t.cols.iter().cloned());
            let rows: Vec<Vec<String>> = t
                .rows
                .iter()
                .enumerate()
                .map(|(r, labels)| {
                    let mut v = labels.clone();
                    for c in 0..t.cols.len() {
                        v.push(match t.cells[r][c] {
                            None => "—".into(),
                            Some(a) => {
                                let mut s = num(a.mean, t.baseline_delta);
                                if let Some(sd) = a.std {
                                    s = format!("{s} ± {}", num(sd, false));
                                }
                                match (t.best[r][c], md) {
                                    (true, true) => format!("**{s}**"),
                                    (true, false) => format!("{s} *"),
                                    _ => s,
                                }
                            }
                        });
                    }
                    v
                })
                .collect();
            let mut out = aligned(&header, &rows, md);
            if !t.gaps.is_empty() {
                out.push_str(&format!("\n{} cell(s) without a value:\n", t.gaps.len()));
                for g in &t.gaps {
                    out.push_str(&format!("- {g}\n"));
                }
            }
            Ok(out)
        }
    }
}
