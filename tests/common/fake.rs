//! Fake stages and hand-built plans for the engine's integration tests. Test binaries that
//! include this run as the mlvf CLI (with these stages) when `MLVF_TEST_AS_CLI` is set, so the
//! controller and workers they spawn are the test binary itself.
//!
//! Environment read by the fake stages (inherited from the test through the controller):
//! - `MLVF_FAKE_LOG`: file to which every run appends `start <key> <attempt>` / `end ...`;
//! - `MLVF_FAKE_SLEEP_MS`: how long each stage sleeps (default 5);
//! - `MLVF_FAKE_FAIL`: comma-separated key prefixes that always fail;
//! - `MLVF_FAKE_FAIL_ONCE`: comma-separated key prefixes that fail on attempt 1 only.
#![allow(dead_code)]

use mlvf::plan::{Cell, Plan, StageKind, Task, TaskKey};
use mlvf::stages::{Stage, StageContext, StageRegistry};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct FakeStage;

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

impl Stage for FakeStage {
    fn run(&self, task: &Task, ctx: &mut StageContext) -> anyhow::Result<()> {
        let log = std::env::var_os("MLVF_FAKE_LOG").map(PathBuf::from);
        if let Some(l) = &log {
            append(l, &format!("start {} {}", task.key, ctx.attempt));
        }
        writeln!(ctx.log(), "fake {} stage for {}", task.stage, task.key)?;
        let mut h = blake3::Hasher::new();
        h.update(serde_json::to_string(&task.config)?.as_bytes());
        for d in &ctx.deps {
            h.update(&std::fs::read(d.dir.join("out.txt"))?);
        }
        let digest = h.finalize().to_hex().to_string();
        std::fs::write(ctx.out_dir.join("out.txt"), &digest)?;
        let ms = std::env::var("MLVF_FAKE_SLEEP_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let k = &task.key.0;
        if env_list("MLVF_FAKE_FAIL")
            .iter()
            .any(|p| k.starts_with(p.as_str()))
        {
            anyhow::bail!("fake failure for {}", task.key);
        }
        if ctx.attempt == 1
            && env_list("MLVF_FAKE_FAIL_ONCE")
                .iter()
                .any(|p| k.starts_with(p.as_str()))
        {
            anyhow::bail!("fake transient failure for {}", task.key);
        }
        for step in 1..=3u64 {
            ctx.record("loss", Some(step), 1.0 / step as f64)?;
        }
        if task.stage == StageKind::Eval {
            let score = task.config["score"].as_f64().unwrap_or(0.5);
            ctx.record_primary("accuracy", score)?;
            ctx.record("f1", None, score / 2.0)?;
        } else {
            ctx.record("final_loss", None, 0.25)?;
        }
        if let Some(l) = &log {
            append(l, &format!("end {} {}", task.key, ctx.attempt));
        }
        Ok(())
    }
}

/// A registry with the fake stage for every kind.
pub fn fake_registry() -> StageRegistry {
    let mut r = StageRegistry::new();
    for k in StageKind::ALL {
        r.register(k, Box::new(FakeStage));
    }
    r
}

/// If this process was spawned as the mlvf CLI, runs it and returns its exit code.
pub fn run_as_cli_if_asked() -> Option<std::process::ExitCode> {
    std::env::var_os("MLVF_TEST_AS_CLI").map(|_| mlvf::cli::main_with(fake_registry()))
}

fn key_of(stage: StageKind, config: &serde_json::Value, deps: &[TaskKey]) -> TaskKey {
    let pre = serde_json::json!({"stage": stage, "config": config, "deps": deps});
    TaskKey(
        blake3::hash(pre.to_string().as_bytes())
            .to_hex()
            .to_string(),
    )
}

/// The score the fake eval stage reports for a cell: a known function of its axes, so result
/// tests can check exact numbers.
pub fn score(fusion: &str, layers: &str, bench: &str, seed: u64) -> f64 {
    let f = match fusion {
        "baseline" => 0.50,
        "E_D" => 0.60,
        "E_M" => 0.55,
        "I_D" => 0.65,
        _ => 0.40,
    };
    let l = if layers == "all" { 0.02 } else { 0.0 };
    let b = match bench {
        "pope" => 0.10,
        _ => 0.0,
    };
    f + l + b + 0.01 * seed as f64
}

/// A sweep shaped like the study: one prepare task; a pretrain task per (fusion, layers, seed)
/// plus a baseline per seed; an eval task per pretrain × benchmark. One cell per eval task.
pub fn fake_plan(
    store: &Path,
    sweep: &str,
    fusions: &[&str],
    layers: &[&str],
    benches: &[&str],
    seeds: &[u64],
) -> Plan {
    let mut tasks = Vec::new();
    let mut cells = Vec::new();
    let prep_cfg = serde_json::json!({"world": "synthetic"});
    let prep = Task {
        key: key_of(StageKind::Prepare, &prep_cfg, &[]),
        stage: StageKind::Prepare,
        version: 1,
        config: prep_cfg,
        deps: vec![],
        cells: vec![],
        axes: Default::default(),
        runtime: Default::default(),
    };
    tasks.push(prep.clone());
    let mut models: Vec<(String, Option<String>, u64)> = Vec::new();
    for &seed in seeds {
        models.push(("baseline".into(), None, seed));
        for f in fusions {
            for l in layers {
                models.push((f.to_string(), Some(l.to_string()), seed));
            }
        }
    }
    for (fusion, layer, seed) in models {
        let cfg = serde_json::json!({"fusion": fusion, "layers": layer, "seed": seed});
        let pt = Task {
            key: key_of(StageKind::Pretrain, &cfg, std::slice::from_ref(&prep.key)),
            stage: StageKind::Pretrain,
            version: 1,
            config: cfg,
            deps: vec![prep.key.clone()],
            cells: vec![],
            axes: Default::default(),
            runtime: Default::default(),
        };
        let pt_idx = tasks.len();
        tasks.push(pt.clone());
        for b in benches {
            let mut axes = BTreeMap::new();
            axes.insert("fusion".to_string(), serde_json::json!(fusion));
            if let Some(l) = &layer {
                axes.insert("layers".to_string(), serde_json::json!(l));
            }
            axes.insert("benchmark".to_string(), serde_json::json!(b));
            axes.insert("seed".to_string(), serde_json::json!(seed));
            let cell = cells.len();
            cells.push(Cell { axes });
            let s = score(&fusion, layer.as_deref().unwrap_or(""), b, seed);
            let cfg = serde_json::json!({"benchmark": b, "score": s});
            let ev = Task {
                key: key_of(StageKind::Eval, &cfg, std::slice::from_ref(&pt.key)),
                stage: StageKind::Eval,
                version: 1,
                config: cfg,
                deps: vec![pt.key.clone()],
                cells: vec![cell],
                axes: Default::default(),
                runtime: Default::default(),
            };
            tasks[0].cells.push(cell);
            tasks[pt_idx].cells.push(cell);
            tasks.push(ev);
        }
    }
    Plan {
        sweep: sweep.to_string(),
        manifest: PathBuf::from(format!("{sweep}.toml")),
        store: store.to_path_buf(),
        cells,
        tasks,
        executor: Default::default(),
        tables: vec![mlvf::plan::TableSpec {
            average: false,
            filter: Default::default(),
            name: "main".into(),
            rows: vec!["fusion".into(), "layers".into()],
            cols: vec!["benchmark".into()],
            metric: "primary".into(),
        }],
    }
}

/// Writes `plan` as JSON into `dir` and returns its path (for `run --plan-json`).
pub fn save_plan(dir: &Path, plan: &Plan) -> PathBuf {
    let p = dir.join(format!("{}.plan.json", plan.sweep));
    std::fs::write(&p, serde_json::to_vec(plan).unwrap()).unwrap();
    p
}

/// This test binary as the mlvf CLI (with the fake stages).
pub fn cli() -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("MLVF_TEST_AS_CLI", "1")
        .env_remove("MLVF_FAKE_FAIL")
        .env_remove("MLVF_FAKE_FAIL_ONCE");
    c
}

/// The lines of a fake log.
pub fn fake_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The database's results, without times, pids or hosts: tasks (key, stage, spec, done?,
/// primary metric) and metrics (task, seq, name, step, value).
pub fn db_results(root: &Path) -> (Vec<String>, Vec<String>) {
    let conn = rusqlite::Connection::open(root.join("mlvf.sqlite")).unwrap();
    let mut st = conn
        .prepare("SELECT key, stage, spec_json, done_attempt IS NOT NULL, primary_metric FROM tasks ORDER BY key")
        .unwrap();
    let tasks = st
        .query_map([], |r| {
            Ok(format!(
                "{} {} {} {} {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let mut st = conn
        .prepare("SELECT task, seq, name, step, value FROM metrics ORDER BY task, seq")
        .unwrap();
    let metrics = st
        .query_map([], |r| {
            Ok(format!(
                "{} {} {} {:?} {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<f64>>(4)?
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (tasks, metrics)
}
