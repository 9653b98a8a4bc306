//! Shared by the prepare_* tests: plan a manifest and run its prepare tasks in a temp store.
#![allow(dead_code)]

use mlvf::plan::{Plan, StageKind, Task};
use mlvf::stages::{DepDir, StageContext, StageRegistry};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A small world (Test scale sizes) and tiny models: seconds, not minutes.
pub const TINY: &str = r#"
[sweep]
name = "t"
store = "store"

[data]
world   = { source = "synth:world", params = { seed = 1, n_pretrain = 64, n_finetune = 48, n_per_benchmark = 24 } }
syn-pt  = { source = "synth:pretrain", params = { world = "world" } }
syn-sft = { source = "synth:finetune", params = { world = "world" } }

[models]
clip  = { kind = "vision", family = "clip", source = "synth:clip", depth = 2, params = { world = "world", width = 16, heads = 2, steps = 4, batch = 8, holdout = 16, checkpoint_every = 2, warmup_steps = 1 } }
llama = { kind = "llm", family = "llama", source = "synth:llama", layers = 2, params = { world = "world", hidden = 32, heads = 4, kv_heads = 2, intermediate = 64, vocab_size = 300, seq_len = 32, steps = 4, batch = 4, checkpoint_every = 2, warmup_steps = 1 } }

[benchmarks]
pope = { source = "synth:pope", params = { world = "world" } }
gqa  = { source = "synth:gqa",  params = { world = "world" } }

[grid]
fusion        = ["E_D"]
layers        = ["former"]
encoder       = ["clip"]
llm           = ["llama"]
pretrain_data = ["syn-pt"]
sft           = ["syn-sft"]
benchmark     = ["pope", "gqa"]
"#;

pub fn plan(dir: &Path, body: &str) -> Plan {
    let path = dir.join("m.toml");
    std::fs::write(&path, body).unwrap();
    mlvf::plan::load(&path, None).unwrap()
}

pub fn prepares(p: &Plan) -> Vec<&Task> {
    p.tasks
        .iter()
        .filter(|t| t.stage == StageKind::Prepare)
        .collect()
}

/// Runs `task` with the product's prepare stage; outputs go to `root/tasks/<key>`.
pub fn run_task(
    root: &Path,
    task: &Task,
    published: &HashMap<String, PathBuf>,
) -> anyhow::Result<PathBuf> {
    let out = root.join("tasks").join(&task.key.0);
    std::fs::create_dir_all(&out)?;
    let deps = task
        .deps
        .iter()
        .map(|k| DepDir {
            stage: StageKind::Prepare,
            key: k.clone(),
            dir: published[&k.0].clone(),
        })
        .collect();
    let mut ctx = StageContext::new(
        root.to_path_buf(),
        1,
        out.clone(),
        root.join("checkpoints").join(&task.key.0),
        deps,
        Box::new(std::io::sink()),
    )?;
    StageRegistry::product()
        .get(StageKind::Prepare)?
        .run(task, &mut ctx)?;
    ctx.finish()?;
    Ok(out)
}

/// Runs every prepare task of `p` in plan order; returns key → published dir.
pub fn run_prepares(root: &Path, p: &Plan) -> HashMap<String, PathBuf> {
    let mut published = HashMap::new();
    for t in prepares(p) {
        let dir = run_task(root, t, &published).unwrap();
        published.insert(t.key.0.clone(), dir);
    }
    published
}

pub fn deps_of(t: &Task, published: &HashMap<String, PathBuf>) -> Vec<DepDir> {
    t.deps
        .iter()
        .filter_map(|k| {
            published.get(&k.0).map(|dir| DepDir {
                stage: StageKind::Prepare,
                key: k.clone(),
                dir: dir.clone(),
            })
        })
        .collect()
}
