//! Cells → tasks. Each stage's config is exactly what that stage reads, resolved before hashing:
//!
//! * `prepare` (one per `synth:` model, dataset or benchmark): `{kind, entry}`;
//! * `encode` (with `[encode] enabled`; one per encoder × dataset × image preprocessing, never
//!   per cell): `{encoder, data, image_aspect}`;
//! * `pretrain`: `{fusion, layers (resolved), encoder, llm, data, hparams, seed}`;
//! * `finetune`: its pretrain (a dep) + `{data, hparams, seed}`;
//! * `eval`: its finetune (a dep) + `{benchmark, settings}`.
//!
//! Pretrain never sees the finetune data or the benchmark; finetune never sees the benchmark, so
//! each upstream task is shared by every cell that differs only downstream. Entries hash by
//! content, not name. Deps list the upstream stage first, then prepare/encode inputs.

use super::keys::{stage_version, task_key};
use super::task::{StageKind, Task, TaskKey};
use crate::layers::{self, Fusion, LayerSet};
use crate::manifest::grid::{Axis, CellAxes, Pattern};
use crate::manifest::stages::{self, EvalSettings, TrainSettings};
use crate::manifest::{Diagnostics, Loc, Manifest};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashMap};

/// Axes each stage reads (dotted `<stage>.*` axes are added by prefix).
const PRETRAIN_AXES: [&str; 6] = [
    "fusion",
    "layers",
    "encoder",
    "llm",
    "pretrain_data",
    "seed",
];
const FINETUNE_AXES: [&str; 1] = ["sft"];
const EVAL_AXES: [&str; 1] = ["benchmark"];

fn stage_index(s: StageKind) -> usize {
    StageKind::ALL.iter().position(|x| *x == s).unwrap()
}

struct Builder<'m> {
    m: &'m Manifest,
    /// Tasks per stage, in creation order (stage order is a topological order).
    tasks: [Vec<Task>; 5],
    by_key: HashMap<TaskKey, (usize, usize)>,
    /// Signature of the stage-relevant cell values → task, to skip re-hashing shared tasks.
    memo: HashMap<String, (usize, usize)>,
    /// (axis, value) → where it was written, for errors found while planning.
    locs: HashMap<(String, String), Loc>,
}

impl<'m> Builder<'m> {
    fn task(&self, at: (usize, usize)) -> &Task {
        &self.tasks[at.0][at.1]
    }

    fn serve(&mut self, at: (usize, usize), cell: usize) {
        let t = &mut self.tasks[at.0][at.1];
        if t.cells.last() != Some(&cell) {
            t.cells.push(cell);
        }
    }

    /// Adds (or finds) a task and records that it serves `cell`.
    fn add(
        &mut self,
        stage: StageKind,
        config: Json,
        deps: Vec<TaskKey>,
        cell: usize,
        axes: BTreeMap<String, Json>,
    ) -> (usize, usize) {
        let version = stage_version(stage);
        let key = task_key(stage, version, &config, &deps);
        let at = match self.by_key.get(&key) {
            Some(&at) => at,
            None => {
                let s = stage_index(stage);
                self.tasks[s].push(Task {
                    key: key.clone(),
                    stage,
                    version,
                    config,
                    deps,
                    cells: Vec::new(),
                    axes,
                });
                let at = (s, self.tasks[s].len() - 1);
                self.by_key.insert(key, at);
                at
            }
        };
        self.serve(at, cell);
        at
    }

    fn loc_of(&self, axis: &str, value: &Json) -> Loc {
        self.locs
            .get(&(axis.to_string(), value.to_string()))
            .cloned()
            .unwrap_or_else(|| self.m.grid.loc.clone())
    }

    /// The prepare task of a `synth:` entry, if it is one.
    fn prepare(
        &mut self,
        section: &str,
        name: &str,
        spec: Json,
        synth: bool,
        cell: usize,
    ) -> Option<TaskKey> {
        if !synth {
            return None;
        }
        let sig = format!("prepare\u{0}{section}\u{0}{name}");
        let at = match self.memo.get(&sig) {
            Some(&at) => {
                self.serve(at, cell);
                at
            }
            None => {
                let kind = match section {
                    "models" => "model",
                    "data" => "dataset",
                    _ => "benchmark",
                };
                let at = self.add(
                    StageKind::Prepare,
                    json!({"kind": kind, "entry": spec}),
                    vec![],
                    cell,
                    BTreeMap::from([(section.to_string(), json!(name))]),
                );
                self.memo.insert(sig, at);
                at
            }
        };
        Some(self.task(at).key.clone())
    }

    fn model_dep(&mut self, name: &str, cell: usize) -> Option<TaskKey> {
        let e = self.m.model(name)?;
        self.prepare("models", name, e.spec(), e.source.is_synth(), cell)
    }

    fn data_dep(&mut self, name: &str, cell: usize) -> Option<TaskKey> {
        let e = self.m.dataset(name)?;
        self.prepare("data", name, e.spec(), e.is_synth(), cell)
    }

    /// The encode task of (encoder, dataset, preprocessing), when encoding is enabled.
    fn encode(
        &mut self,
        encoder: &str,
        data: &str,
        aspect: stages::ImageAspect,
        cell: usize,
    ) -> Option<TaskKey> {
        if !self.m.encode.enabled {
            return None;
        }
        let sig = format!("encode\u{0}{encoder}\u{0}{data}\u{0}{}", aspect.as_str());
        if let Some(&at) = self.memo.get(&sig) {
            self.serve(at, cell);
            // Its inputs serve this cell too.
            self.model_dep(encoder, cell);
            self.data_dep(data, cell);
            return Some(self.task(at).key.clone());
        }
        let enc = self.m.model(encoder)?.spec();
        let ds = self.m.dataset(data)?.spec();
        let deps: Vec<TaskKey> = [self.model_dep(encoder, cell), self.data_dep(data, cell)]
            .into_iter()
            .flatten()
            .collect();
        let labels = BTreeMap::from([
            ("encoder".to_string(), json!(encoder)),
            ("data".to_string(), json!(data)),
            ("image_aspect".to_string(), json!(aspect.as_str())),
        ]);
        let at = self.add(
            StageKind::Encode,
            json!({"encoder": enc, "data": ds, "image_aspect": aspect.as_str()}),
            deps,
            cell,
            labels,
        );
        self.memo.insert(sig, at);
        Some(self.task(at).key.clone())
    }
}

/// A cell's value of an axis as a string (names, layer sets, fusion).
fn text<'c>(cell: &'c CellAxes, axis: &str) -> Option<&'c str> {
    cell.get(axis).and_then(Json::as_str)
}

/// Settings with the cell's `<section>.*` axes applied.
fn with_axes<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(
    base: &T,
    cell: &CellAxes,
    section: &str,
) -> T {
    let mut cur = base.clone();
    let prefix = format!("{section}.");
    for (k, v) in cell.range(prefix.clone()..) {
        let Some(field) = k.strip_prefix(&prefix) else {
            break;
        };
        // Values were type-checked when the manifest loaded.
        if let Ok(next) = stages::with_field(&cur, field, v) {
            cur = next;
        }
    }
    cur
}

/// The signature of a cell restricted to `axes` and `<prefix>.*` axes.
fn signature(cell: &CellAxes, axes: &[&str], prefix: &str) -> String {
    let mut s = String::new();
    for (k, v) in cell {
        if axes.contains(&k.as_str()) || k.strip_prefix(prefix).is_some_and(|r| r.starts_with('.'))
        {
            s.push_str(k);
            s.push('=');
            s.push_str(&v.to_string());
            s.push('\u{0}');
        }
    }
    s
}

fn collect_locs(axes: &[Axis], out: &mut HashMap<(String, String), Loc>) {
    for a in axes {
        for v in &a.values {
            out.entry((a.name.clone(), v.value.to_string()))
                .or_insert_with(|| v.loc.clone());
        }
    }
}

/// Plans every cell; errors (layer sets that do not fit an encoder, …) go to `d`.
pub fn build(m: &Manifest, cells: &[CellAxes], d: &mut Diagnostics) -> Vec<Task> {
    let mut locs = HashMap::new();
    collect_locs(&m.grid.axes, &mut locs);
    let patterns: Vec<&Pattern> = m.grid.include.iter().chain(m.grid.ablate.iter()).collect();
    for p in patterns {
        collect_locs(&p.entries, &mut locs);
    }
    for w in &m.grid.when {
        collect_locs(&w.axes, &mut locs);
    }
    let mut b = Builder {
        m,
        tasks: Default::default(),
        by_key: HashMap::new(),
        memo: HashMap::new(),
        locs,
    };

    for (ci, cell) in cells.iter().enumerate() {
        // ---- pretrain
        let sig = format!(
            "pretrain\u{0}{}",
            signature(cell, &PRETRAIN_AXES, "pretrain")
        );
        let pretrain = match b.memo.get(&sig) {
            Some(&at) => {
                b.serve(at, ci);
                // Inputs of a shared pretrain serve this cell as well.
                let (enc, llm, pt) = (
                    text(cell, "encoder").unwrap_or(""),
                    text(cell, "llm").unwrap_or(""),
                    text(cell, "pretrain_data").unwrap_or(""),
                );
                b.model_dep(enc, ci);
                b.model_dep(llm, ci);
                b.data_dep(pt, ci);
                let hp = with_axes(&m.pretrain, cell, "pretrain");
                b.encode(enc, pt, hp.image_aspect, ci);
                at
            }
            None => match plan_pretrain(&mut b, cell, ci, d) {
                Some(at) => {
                    b.memo.insert(sig, at);
                    at
                }
                None => continue,
            },
        };

        // ---- finetune
        let sig = format!(
            "finetune\u{0}{}\u{0}{}",
            b.task(pretrain).key,
            signature(cell, &["sft", "seed"], "finetune")
        );
        let (enc, llm) = (
            text(cell, "encoder").unwrap_or("").to_string(),
            text(cell, "llm").unwrap_or("").to_string(),
        );
        let sft = text(cell, "sft").unwrap_or("").to_string();
        let finetune = match b.memo.get(&sig) {
            Some(&at) => {
                b.serve(at, ci);
                b.model_dep(&enc, ci);
                b.model_dep(&llm, ci);
                b.data_dep(&sft, ci);
                let hp = with_axes(&m.finetune, cell, "finetune");
                b.encode(&enc, &sft, hp.image_aspect, ci);
                at
            }
            None => {
                let Some(data) = m.dataset(&sft) else {
                    continue;
                };
                let hp: TrainSettings = with_axes(&m.finetune, cell, "finetune");
                let mut deps = vec![b.task(pretrain).key.clone()];
                deps.extend(
                    [
                        b.model_dep(&enc, ci),
                        b.model_dep(&llm, ci),
                        b.data_dep(&sft, ci),
                        b.encode(&enc, &sft, hp.image_aspect, ci),
                    ]
                    .into_iter()
                    .flatten(),
                );
                let config = json!({"data": data.spec(), "hparams": hp, "seed": cell.get("seed")});
                let at = b.add(StageKind::Finetune, config, deps, ci, BTreeMap::new());
                b.memo.insert(sig, at);
                at
            }
        };

        // ---- eval
        let bench_name = text(cell, "benchmark").unwrap_or("").to_string();
        let sig = format!(
            "eval\u{0}{}\u{0}{}",
            b.task(finetune).key,
            signature(cell, &EVAL_AXES, "eval")
        );
        match b.memo.get(&sig) {
            Some(&at) => b.serve(at, ci),
            None => {
                let Some(bench) = m.benchmark(&bench_name) else {
                    continue;
                };
                let mut base: EvalSettings = m.eval.clone();
                if let Some(n) = bench.max_new_tokens {
                    base.max_new_tokens = n;
                }
                let settings = with_axes(&base, cell, "eval");
                let mut deps = vec![b.task(finetune).key.clone()];
                deps.extend(
                    [
                        b.model_dep(&enc, ci),
                        b.model_dep(&llm, ci),
                        b.prepare(
                            "benchmarks",
                            &bench_name,
                            bench.spec(),
                            bench.is_synth(),
                            ci,
                        ),
                    ]
                    .into_iter()
                    .flatten(),
                );
                let config = json!({"benchmark": bench.spec(), "settings": settings});
                let at = b.add(StageKind::Eval, config, deps, ci, BTreeMap::new());
                b.memo.insert(sig, at);
            }
        }
        // Shared prepare/encode inputs of a reused eval/finetune already served this cell above.
        if let Some(bench) = m.benchmark(&bench_name) {
            b.prepare(
                "benchmarks",
                &bench_name,
                bench.spec(),
                bench.is_synth(),
                ci,
            );
        }
    }

    let mut tasks: Vec<Task> = b.tasks.into_iter().flatten().collect();
    label(&mut tasks, cells);
    tasks
}

/// Plans the pretrain task of a cell (None after reporting an error).
fn plan_pretrain(
    b: &mut Builder<'_>,
    cell: &CellAxes,
    ci: usize,
    d: &mut Diagnostics,
) -> Option<(usize, usize)> {
    let m = b.m;
    let fusion_name = text(cell, "fusion")?;
    let fusion = Fusion::parse(fusion_name)?;
    let (enc_name, llm_name, pt_name) = (
        text(cell, "encoder")?,
        text(cell, "llm")?,
        text(cell, "pretrain_data")?,
    );
    let (enc, llm, pt) = (m.model(enc_name)?, m.model(llm_name)?, m.dataset(pt_name)?);
    let set = match (fusion, text(cell, "layers")) {
        (Fusion::Baseline, _) => None,
        (_, Some(s)) => Some(LayerSet::parse(s).ok()?),
        (_, None) => {
            d.error(&b.loc_of("fusion", &json!(fusion_name)), format!("fusion `{fusion_name}` needs a layer set, but this grid gives its cells no `layers`"), Some(format!("add `layers = [\"3-18-23\"]` (one of {}) to [grid], or to a [[grid.when]] block for this fusion", LayerSet::NAMED.join(", "))));
            return None;
        }
    };
    let resolved = match layers::resolve(fusion, set.as_ref(), enc.encoder_depth()?, llm.layers?) {
        Ok(r) => r,
        Err(e) => {
            let at = b.loc_of("layers", cell.get("layers").unwrap_or(&Json::Null));
            d.error(
                &at,
                format!(
                    "{fusion_name} with encoder `{enc_name}` (depth {}{}) and LLM `{llm_name}` ({} layers): {e}",
                    enc.depth.unwrap_or(0),
                    if enc.drop_last_layer { ", last layer dropped" } else { "" },
                    llm.layers.unwrap_or(0)
                ),
                Some("exclude this combination in [grid] (`exclude = [{ encoder = …, layers = … }]`) or pick a set that fits".into()),
            );
            return None;
        }
    };
    let hp: TrainSettings = with_axes(&m.pretrain, cell, "pretrain");
    let deps: Vec<TaskKey> = [
        b.model_dep(enc_name, ci),
        b.model_dep(llm_name, ci),
        b.data_dep(pt_name, ci),
        b.encode(enc_name, pt_name, hp.image_aspect, ci),
    ]
    .into_iter()
    .flatten()
    .collect();
    let config = json!({
        "fusion": fusion.name(),
        "layers": resolved,
        "encoder": enc.spec(),
        "llm": llm.spec(),
        "data": pt.spec(),
        "hparams": hp,
        "seed": cell.get("seed"),
    });
    Some(b.add(StageKind::Pretrain, config, deps, ci, BTreeMap::new()))
}

/// Fills `Task::axes` of pretrain/finetune/eval tasks: the values of the axes the stage reads,
/// one value when its cells agree, an array of the distinct values otherwise.
fn label(tasks: &mut [Task], cells: &[CellAxes]) {
    for t in tasks.iter_mut() {
        let (fixed, prefixes): (Vec<&str>, Vec<&str>) = match t.stage {
            StageKind::Pretrain => (PRETRAIN_AXES.to_vec(), vec!["pretrain."]),
            StageKind::Finetune => (
                [&PRETRAIN_AXES[..], &FINETUNE_AXES[..]].concat(),
                vec!["pretrain.", "finetune."],
            ),
            StageKind::Eval => (
                [&PRETRAIN_AXES[..], &FINETUNE_AXES[..], &EVAL_AXES[..]].concat(),
                vec!["pretrain.", "finetune.", "eval."],
            ),
            _ => continue,
        };
        let mut values: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for &ci in &t.cells {
            for (k, v) in &cells[ci] {
                if fixed.contains(&k.as_str()) || prefixes.iter().any(|p| k.starts_with(p)) {
                    let list = values.entry(k.clone()).or_default();
                    if !list.contains(v) {
                        list.push(v.clone());
                    }
                }
            }
        }
        t.axes = values
            .into_iter()
            .map(|(k, mut v)| {
                (
                    k,
                    if v.len() == 1 {
                        v.pop().unwrap()
                    } else {
                        Json::Array(v)
                    },
                )
            })
            .collect();
    }
}
