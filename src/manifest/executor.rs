//! `[executor]`: which executor runs the sweep, and what a Slurm job asks for.
//!
//! ```toml
//! [executor]
//! kind = "slurm"            # or "local" (the default)
//! partition = "gpu"         # defaults for every stage ...
//! time = "04:00:00"
//! cpus = 8
//! mem = "64G"
//! gpus = 1                  # --gres=gpu:N
//! account = "proj123"
//! qos = "normal"
//! extra = ["--constraint=a100"]     # more #SBATCH lines, verbatim
//! setup = ["module load cuda/12.4"] # shell lines run before the worker
//! signal_lead_s = 300       # --signal=B:USR1@300: checkpoint and requeue before the time limit
//! throttle = 16             # at most 16 elements of an array run at once (--array=...%16)
//! max_array_size = 1000     # the cluster's MaxArraySize - 1; bigger groups are split
//! poll_s = 15               # how often `--wait` asks squeue
//! mlvf = "/shared/bin/mlvf" # the mlvf the jobs run (default: this executable)
//! jobs = 2                  # local executor: tasks at once when `--jobs` is not given
//!
//! [executor.stage.eval]     # ... overridden per stage
//! gpus = 0
//! time = "00:30:00"
//! ```
//!
//! Read once, with the rest of the manifest (an `[executor]` inherited through `extends` counts,
//! and every error has its file:line:col); the plan carries the result to the executor.

use super::stages::{DomainError, Domains};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which executor a manifest asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// The stage names `[executor.stage.<name>]` may override (the plan's stage kinds).
pub const STAGE_NAMES: [&str; 5] = ["prepare", "encode", "pretrain", "finetune", "eval"];

/// What one array's jobs ask Slurm for. Unset fields are left to the cluster's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time`, in any format sbatch takes (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
    /// `D-HH:MM:SS`).
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem` (e.g. `16G`).
    pub mem: Option<String>,
    /// GPUs per task, as `--gres=gpu:N` (0: none asked).
    pub gpus: Option<u32>,
    /// More `#SBATCH` lines, each a single option (e.g. `--constraint=a100`).
    pub extra: Option<Vec<String>>,
}

/// The `[executor]` table: flat defaults for every stage, `[executor.stage.<name>]` overrides,
/// and the executors' own options. Unset options take the executor's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    #[serde(default)]
    pub kind: ExecutorKind,
    #[serde(default)]
    pub stage: BTreeMap<String, Resources>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub time: Option<String>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    pub gpus: Option<u32>,
    pub extra: Option<Vec<String>>,
    pub setup: Option<Vec<String>>,
    pub signal_lead_s: Option<u32>,
    pub throttle: Option<u32>,
    pub max_array_size: Option<u32>,
    pub jobs: Option<usize>,
    pub poll_s: Option<f64>,
    pub mlvf: Option<PathBuf>,
}

impl ExecutorSettings {
    /// The flat per-stage defaults (`partition`, `time`, …) as one [`Resources`].
    pub fn defaults(&self) -> Resources {
        Resources {
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            time: self.time.clone(),
            cpus: self.cpus,
            mem: self.mem.clone(),
            gpus: self.gpus,
            extra: self.extra.clone(),
        }
    }
}

/// Whether `t` is a time limit sbatch accepts: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`
/// (sbatch(1), `--time`), or `UNLIMITED` / `INFINITE`.
pub fn is_slurm_time(t: &str) -> bool {
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let number = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !number(d)) {
        return false;
    }
    // Up to three colon-separated numbers either way: M[:S] or H:M:S, and after D-, H[:M[:S]].
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| number(p))
}

/// Whether `m` is a `--mem` value: a whole number with an optional unit K, M, G or T.
fn is_slurm_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    m.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn domain(message: String, hint: &str) -> Option<DomainError> {
    Some(DomainError {
        message,
        hint: hint.into(),
    })
}

/// What is wrong with one set of resources (`where_` names them in the message), if anything.
fn resources_error(r: &Resources, where_: &str) -> Option<DomainError> {
    if let Some(t) = r.time.as_deref().filter(|t| !is_slurm_time(t)) {
        return domain(
            format!("{where_}`time` = {t:?} is not a Slurm time limit"),
            "write minutes (\"90\"), \"HH:MM:SS\" (\"04:00:00\") or \"D-HH:MM:SS\" (\"1-12:00:00\"), as sbatch --time takes",
        );
    }
    if let Some(m) = r.mem.as_deref().filter(|m| !is_slurm_mem(m)) {
        return domain(
            format!("{where_}`mem` = {m:?} is not a memory size"),
            "write a whole number with an optional unit K, M, G or T, e.g. \"64G\"",
        );
    }
    if r.cpus == Some(0) {
        return domain(
            format!("{where_}`cpus` = 0: a job needs at least one CPU"),
            "set 1 or more, or leave it out for the cluster's default",
        );
    }
    for line in r.extra.iter().flatten() {
        if !line.starts_with('-') || line.contains('\n') {
            return domain(
                format!("{where_}`extra` line {line:?} is not one sbatch option"),
                "write each option as its own string, like \"--constraint=a100\"",
            );
        }
    }
    None
}

impl Domains for ExecutorSettings {
    fn domain_error(&self, field: &str) -> Option<DomainError> {
        match field {
            "jobs" if self.jobs == Some(0) => domain(
                "`jobs` = 0: the local executor runs at least one task at a time".into(),
                "set 1 or more (2 on a 2-core laptop), or leave it out for 1",
            ),
            "max_array_size" if self.max_array_size == Some(0) => domain(
                "`max_array_size` = 0: an array holds at least one job".into(),
                "set the cluster's MaxArraySize - 1 (`scontrol show config | grep MaxArraySize`)",
            ),
            "poll_s" if self.poll_s.is_some_and(|p| !(p.is_finite() && p > 0.0)) => domain(
                "`poll_s` must be a positive number of seconds".into(),
                "15 asks squeue four times a minute",
            ),
            "stage" => {
                for (name, r) in &self.stage {
                    if !STAGE_NAMES.contains(&name.as_str()) {
                        return domain(
                            format!("no stage called {name:?} in `[executor.stage.{name}]`"),
                            &format!("stages: {}", STAGE_NAMES.join(", ")),
                        );
                    }
                    if let Some(e) = resources_error(r, &format!("[executor.stage.{name}] ")) {
                        return Some(e);
                    }
                }
                None
            }
            "time" | "mem" | "cpus" | "extra" => resources_error(&self.defaults(), ""),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_formats_are_sbatchs() {
        for ok in [
            "30",
            "30:00",
            "04:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "UNLIMITED",
            "0",
        ] {
            assert!(is_slurm_time(ok), "{ok}");
        }
        for bad in ["", "4h", "04:00:00:00", "1-", "-1", "1-2-3", "12:xx", "1.5"] {
            assert!(!is_slurm_time(bad), "{bad}");
        }
    }

    #[test]
    fn memory_sizes_are_whole_numbers_with_one_unit() {
        for ok in ["64G", "500M", "1024", "2T", "16g"] {
            assert!(is_slurm_mem(ok), "{ok}");
        }
        for bad in ["", "G", "64GB", "1.5G", "-4G", "64 G"] {
            assert!(!is_slurm_mem(bad), "{bad}");
        }
    }
}
