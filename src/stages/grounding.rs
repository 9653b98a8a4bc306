//! What an eval under a grounding control records (`[eval] controls`; the controls themselves
//! are [`crate::eval::control`]).
//!
//! A control eval serves the same cell as its with-image eval, so its metrics share the cell's
//! rows in the result tables: everything it scores is recorded under `<control>/…`
//! (`blank/primary_score`, `blank/exact_match`, `blank/acc/<type>`) so no name collides with the
//! with-image eval's, and it marks nothing primary (`--metric primary` stays the with-image
//! score). Its one headline is the gain the images are worth, on the benchmark's reporting scale:
//!
//! `<gain> = S_v − S_control`, with S_v the with-image eval's `primary_score`, read from that
//! task's published metrics (it is a dependency: data flows with-image eval → control eval →
//! tables, and a recorded metric needs no formula at report time). `<gain>` is `mg` for blank,
//! `mg_none` for none (MMStar's S_v − S_wv) and `mg_shuffle` for shuffle; per question type,
//! `<gain>/<type>` from the two evals' `acc/<type>` (0–100), where the with-image eval has them.

use super::eval::PRIMARY_SCORE;
use super::StageContext;
use crate::eval::{Control, ScoreReport};
use crate::store::metrics::{read_metrics, METRICS_FILE};
use crate::task::StageKind;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// Metric counting the samples the shuffle control could not give another image.
pub const SHUFFLE_UNCHANGED: &str = "shuffle/unchanged";

/// The final metrics of a control eval's with-image eval (its eval dependency), read before
/// anything is generated so a control planned without one fails at once.
pub struct WithImage(HashMap<String, f64>);

impl WithImage {
    pub fn read(ctx: &StageContext) -> Result<WithImage> {
        let dir = ctx.dep(StageKind::Eval).context(
            "a control eval needs its with-image eval task among the deps (re-plan the sweep)",
        )?;
        let finals: HashMap<String, f64> = read_metrics(&dir.join(METRICS_FILE))?
            .into_iter()
            .filter(|m| m.step.is_none())
            .map(|m| (m.name, m.value))
            .collect();
        if !finals.contains_key(PRIMARY_SCORE) {
            bail!(
                "the with-image eval {} recorded no `{PRIMARY_SCORE}` (re-plan the sweep)",
                dir.display()
            );
        }
        Ok(WithImage(finals))
    }
}

/// Records a control eval's metrics; `score` is its primary metric on the reporting scale.
pub fn record(
    ctx: &mut StageContext,
    control: Control,
    with_image: &WithImage,
    report: &ScoreReport,
    score: f64,
    unchanged: usize,
) -> Result<()> {
    let c = control.name();
    for (name, value) in &report.metrics {
        if value.is_finite() {
            ctx.record(&format!("{c}/{name}"), None, *value)?;
        }
    }
    ctx.record(&format!("{c}/{PRIMARY_SCORE}"), None, score)?;
    // The majority baselines do not depend on the images: the with-image eval records them.
    for (t, s) in &report.breakdown.types {
        ctx.record(&format!("{c}/acc/{t}"), None, s.acc)?;
    }
    if control == Control::Shuffle {
        ctx.record(SHUFFLE_UNCHANGED, None, unchanged as f64)?;
    }

    let s_v = with_image.0[PRIMARY_SCORE];
    let gain = control.gain_metric();
    ctx.record(gain, None, s_v - score)?;
    for (t, s) in &report.breakdown.types {
        // Evals published before per-type accuracies existed have none: no per-type gain then.
        if let Some(v) = with_image.0.get(&format!("acc/{t}")) {
            ctx.record(&format!("{gain}/{t}"), None, v - s.acc)?;
        }
    }
    writeln!(
        ctx.log(),
        "{}: {gain} = {s_v:.4} (with images) − {score:.4} (control {c}) = {:.4}",
        report.task,
        s_v - score
    )?;
    Ok(())
}
