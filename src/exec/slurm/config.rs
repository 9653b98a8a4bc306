//! The manifest's `[executor]` table, as the Slurm executor reads it.
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

use crate::plan::StageKind;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which executor a manifest asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

impl ExecutorKind {
    /// Parses `local` / `slurm` (the `--executor` flag).
    pub fn parse(s: &str) -> anyhow::Result<ExecutorKind> {
        match s {
            "local" => Ok(ExecutorKind::Local),
            "slurm" => Ok(ExecutorKind::Slurm),
            _ => bail!("unknown executor {s:?}: use `local` or `slurm`"),
        }
    }
}

/// What one array's jobs ask Slurm for. Unset fields are left to the cluster's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time`, in any format sbatch takes (`MM`, `HH:MM:SS`, `D-HH`).
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

impl Resources {
    /// `self` with every field `over` sets replaced by `over`'s value.
    pub fn overlay(&self, over: &Resources) -> Resources {
        Resources {
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            account: over.account.clone().or_else(|| self.account.clone()),
            qos: over.qos.clone().or_else(|| self.qos.clone()),
            time: over.time.clone().or_else(|| self.time.clone()),
            cpus: over.cpus.or(self.cpus),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            gpus: over.gpus.or(self.gpus),
            extra: over.extra.clone().or_else(|| self.extra.clone()),
        }
    }

    /// The `#SBATCH` options these resources stand for, in a fixed order.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.partition {
            out.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            out.push(format!("--account={a}"));
        }
        if let Some(q) = &self.qos {
            out.push(format!("--qos={q}"));
        }
        if let Some(t) = &self.time {
            out.push(format!("--time={t}"));
        }
        if let Some(c) = self.cpus {
            out.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            out.push(format!("--mem={m}"));
        }
        if let Some(g) = self.gpus.filter(|&g| g > 0) {
            out.push(format!("--gres=gpu:{g}"));
        }
        out.extend(self.extra.iter().flatten().cloned());
        out
    }
}

/// The raw `[executor]` table (flat defaults + `[executor.stage.<kind>]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    #[serde(default)]
    kind: ExecutorKind,
    #[serde(default)]
    stage: BTreeMap<String, Resources>,
    partition: Option<String>,
    account: Option<String>,
    qos: Option<String>,
    time: Option<String>,
    cpus: Option<u32>,
    mem: Option<String>,
    gpus: Option<u32>,
    extra: Option<Vec<String>>,
    setup: Option<Vec<String>>,
    signal_lead_s: Option<u32>,
    throttle: Option<u32>,
    max_array_size: Option<u32>,
    jobs: Option<usize>,
    poll_s: Option<f64>,
    mlvf: Option<PathBuf>,
}

/// The Slurm executor's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SlurmConfig {
    /// The executor the manifest asks for (`--executor` overrides it).
    pub kind: ExecutorKind,
    /// Resources of every stage not overridden.
    pub defaults: Resources,
    /// Per-stage overrides of `defaults`.
    pub stages: BTreeMap<StageKind, Resources>,
    /// Shell lines run in each job before the worker (module loads, venvs).
    pub setup: Vec<String>,
    /// Seconds before the time limit at which the job gets USR1 (0: no signal).
    pub signal_lead_s: u32,
    /// Elements of one array running at once (0: no limit).
    pub throttle: u32,
    /// Most elements per array (indices 0..max); larger groups are split.
    pub max_array_size: u32,
    /// Seconds between squeue polls with `--wait`.
    pub poll_s: f64,
    /// The mlvf executable the jobs run (default: the controller's own).
    pub mlvf: Option<PathBuf>,
    /// Local executor: tasks at once when `--jobs` is not given (default 1).
    pub jobs: Option<usize>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            kind: ExecutorKind::Local,
            defaults: Resources::default(),
            stages: BTreeMap::new(),
            setup: Vec::new(),
            signal_lead_s: 300,
            throttle: 0,
            max_array_size: 1000,
            poll_s: 15.0,
            mlvf: None,
            jobs: None,
        }
    }
}

impl SlurmConfig {
    /// The resources of `stage`'s jobs.
    pub fn resources(&self, stage: StageKind) -> Resources {
        match self.stages.get(&stage) {
            Some(over) => self.defaults.overlay(over),
            None => self.defaults.clone(),
        }
    }

    /// Parses an `[executor]` table; `origin` names it in errors.
    pub fn from_table(table: &toml::Table, origin: &str) -> anyhow::Result<SlurmConfig> {
        let raw: RawExecutor = toml::Value::Table(table.clone())
            .try_into()
            .with_context(|| format!("{origin}: bad [executor] table"))?;
        let mut stages = BTreeMap::new();
        for (name, res) in raw.stage.clone() {
            let kind = StageKind::parse(&name).with_context(|| {
                format!(
                    "{origin}: [executor.stage.{name}]: no stage called {name:?} (stages: {})",
                    StageKind::ALL.map(|k| k.as_str()).join(", ")
                )
            })?;
            stages.insert(kind, res);
        }
        let d = raw;
        let base = SlurmConfig::default();
        let cfg = SlurmConfig {
            kind: d.kind,
            defaults: Resources {
                partition: d.partition,
                account: d.account,
                qos: d.qos,
                time: d.time,
                cpus: d.cpus,
                mem: d.mem,
                gpus: d.gpus,
                extra: d.extra,
            },
            stages,
            setup: d.setup.unwrap_or_default(),
            signal_lead_s: d.signal_lead_s.unwrap_or(base.signal_lead_s),
            throttle: d.throttle.unwrap_or(0),
            max_array_size: d.max_array_size.unwrap_or(base.max_array_size),
            poll_s: d.poll_s.unwrap_or(base.poll_s),
            mlvf: d.mlvf,
            jobs: d.jobs,
        };
        if cfg.jobs == Some(0) {
            bail!("{origin}: [executor] jobs must be at least 1");
        }
        if cfg.max_array_size == 0 {
            bail!("{origin}: [executor] max_array_size must be at least 1");
        }
        if cfg.poll_s.is_nan() || cfg.poll_s <= 0.0 {
            bail!("{origin}: [executor] poll_s must be positive");
        }
        for line in cfg.all_extra() {
            if !line.starts_with('-') || line.contains('\n') {
                bail!("{origin}: [executor] extra line {line:?} is not one sbatch option (like \"--constraint=a100\")");
            }
        }
        Ok(cfg)
    }

    fn all_extra(&self) -> impl Iterator<Item = &String> {
        self.defaults
            .extra
            .iter()
            .chain(self.stages.values().filter_map(|r| r.extra.as_ref()))
            .flatten()
    }

    /// Reads `[executor]` from a manifest file; a manifest without one (or a path that is not
    /// a file, as for hand-made plans) gives the defaults.
    pub fn from_manifest(path: &Path) -> anyhow::Result<SlurmConfig> {
        if !path.is_file() {
            return Ok(SlurmConfig::default());
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not TOML", path.display()))?;
        match doc.get("executor") {
            None => Ok(SlurmConfig::default()),
            Some(toml::Value::Table(t)) => SlurmConfig::from_table(t, &path.display().to_string()),
            Some(_) => bail!(
                "{}: `executor` must be a table ([executor])",
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<SlurmConfig> {
        let doc: toml::Table = s.parse().unwrap();
        SlurmConfig::from_table(doc["executor"].as_table().unwrap(), "m.toml")
    }

    #[test]
    fn stage_overrides_fall_back_to_defaults() {
        let c = parse(
            r#"[executor]
            kind = "slurm"
            partition = "gpu"
            time = "04:00:00"
            gpus = 1
            extra = ["--constraint=a100"]
            [executor.stage.eval]
            gpus = 0
            time = "00:30:00"
            "#,
        )
        .unwrap();
        assert_eq!(c.kind, ExecutorKind::Slurm);
        assert_eq!(
            c.resources(StageKind::Pretrain).sbatch_options(),
            [
                "--partition=gpu",
                "--time=04:00:00",
                "--gres=gpu:1",
                "--constraint=a100"
            ]
        );
        assert_eq!(
            c.resources(StageKind::Eval).sbatch_options(),
            ["--partition=gpu", "--time=00:30:00", "--constraint=a100"]
        );
    }

    #[test]
    fn typos_and_unknown_stages_are_named() {
        let err = parse("[executor]\npartiton = \"gpu\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("partiton"), "{err:#}");
        let err = parse("[executor.stage.train]\ngpus = 1\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("no stage called \"train\""),
            "{err:#}"
        );
        let err = parse("[executor]\nextra = [\"constraint=a100\"]\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("not one sbatch option"),
            "{err:#}"
        );
    }
}
