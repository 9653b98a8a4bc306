//! The Slurm executor's settings, built from the manifest's `[executor]`
//! ([`crate::manifest::executor`], where its keys are documented and checked).

pub use crate::manifest::executor::{ExecutorKind, Resources};
use crate::manifest::ExecutorSettings;
use crate::task::StageKind;
use anyhow::bail;
use std::collections::BTreeMap;
use std::path::PathBuf;

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

    /// The settings a manifest's `[executor]` asks for (checked when the manifest loaded),
    /// with the executor's defaults for what it leaves out.
    pub fn from_settings(e: &ExecutorSettings) -> SlurmConfig {
        let base = SlurmConfig::default();
        let stages = e
            .stage
            .iter()
            .filter_map(|(name, res)| Some((StageKind::parse(name)?, res.clone())))
            .collect();
        SlurmConfig {
            kind: e.kind,
            defaults: e.defaults(),
            stages,
            setup: e.setup.clone().unwrap_or_default(),
            signal_lead_s: e.signal_lead_s.unwrap_or(base.signal_lead_s),
            throttle: e.throttle.unwrap_or(base.throttle),
            max_array_size: e.max_array_size.unwrap_or(base.max_array_size),
            poll_s: e.poll_s.unwrap_or(base.poll_s),
            mlvf: e.mlvf.clone(),
            jobs: e.jobs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<SlurmConfig> {
        let doc: toml::Table = s.parse().unwrap();
        let e: ExecutorSettings = doc["executor"].clone().try_into()?;
        Ok(SlurmConfig::from_settings(&e))
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

    /// The manifest checks `[executor.stage.<name>]` against its own list of stage names:
    /// the plan's stages, exactly.
    #[test]
    fn the_manifests_stage_names_are_the_plans() {
        let plan: Vec<&str> = StageKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(plan, crate::manifest::executor::STAGE_NAMES);
    }
}
