//! `metrics.jsonl`: the metrics a stage records, one JSON object per line, written by the
//! worker into its output directory and ingested by the controller.
//!
//! `{"name": "loss", "step": 10, "value": 2.31}`; `step` is `null` for final metrics (what
//! evaluation reports). Non-finite values, which JSON cannot hold as numbers, are written as
//! the strings `"nan"`, `"inf"` and `"-inf"`.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file name of the metrics log inside a task's output directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One recorded value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub name: String,
    /// Training step, or `None` for a final metric.
    pub step: Option<u64>,
    #[serde(with = "finite_or_tag")]
    pub value: f64,
}

mod finite_or_tag {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("nan")
        } else if *v == f64::INFINITY {
            s.serialize_str("inf")
        } else if *v == f64::NEG_INFINITY {
            s.serialize_str("-inf")
        } else {
            s.serialize_f64(*v)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Tag(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Num(v) => Ok(v),
            Raw::Tag(t) => match t.as_str() {
                "nan" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "metric value must be a number, \"nan\", \"inf\" or \"-inf\", not {other:?}"
                ))),
            },
        }
    }
}

/// Reads a metrics file; a missing file means no metrics. A malformed line is an error that
/// names the file and line.
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<MetricRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricRecord>(line) {
            Ok(m) => out.push(m),
            Err(e) => bail!(
                "{}:{}: not a metric record ({e}); expected {{\"name\": ..., \"step\": null|N, \"value\": ...}}",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_round_trip() {
        for v in [1.5, f64::INFINITY, f64::NEG_INFINITY] {
            let m = MetricRecord {
                name: "x".into(),
                step: Some(3),
                value: v,
            };
            let s = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<MetricRecord>(&s).unwrap(), m);
        }
        let m = MetricRecord {
            name: "x".into(),
            step: None,
            value: f64::NAN,
        };
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains("\"nan\""), "{s}");
        assert!(serde_json::from_str::<MetricRecord>(&s)
            .unwrap()
            .value
            .is_nan());
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(METRICS_FILE);
        std::fs::write(&p, "{\"name\":\"a\",\"step\":null,\"value\":1}\n{oops}\n").unwrap();
        let err = read_metrics(&p).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:2"), "{err}");
    }
}
