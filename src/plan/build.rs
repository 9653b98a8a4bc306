//! Cells → tasks. Each stage's config is exactly what that stage reads, resolved before hashing:
//!
//! * `prepare`: one `{kind: "world", entry}` per distinct synthetic world that any `synth:`
//!   dataset, benchmark or model reads, and one `{kind: "model", entry}` per `synth:` model
//!   (depending on its world). `synth:` datasets and benchmarks have no task of their own: their
//!   consumers depend on the world task (see [`super::synth`] for the manifest spelling);
//! * `encode` (with `[encode] enabled`; one per encoder × dataset × image preprocessing, never
//!   per cell): `{encoder, data, image_aspect}`;
//! * `pretrain`: `{fusion, layers (resolved), encoder, llm, data, hparams, seed}`;
//! * `finetune`: its pretrain (a dep) + `{data, hparams, seed}`;
//! * `eval`: its finetune (a dep) + `{benchmark, settings}`; with `[eval] controls`, one more
//!   eval per control, `{benchmark, settings, control}`, depending on the finetune and on the
//!   with-image eval (whose score its gain metrics subtract from). The with-image eval's config
//!   is the same with or without controls, so adding controls reruns nothing published.
//!
//! Pretrain never sees the finetune data or the benchmark; finetune never sees the benchmark, so
//! each upstream task is shared by every cell that differs only downstream. Entries hash by
//! content, not name. Deps list the upstream stage first, then prepare/encode inputs.

use super::config::{
    to_json, BenchmarkSpec, DataSpec, EncodeConfig, EvalConfig, FinetuneConfig, ModelSpec,
    PrepareConfig, PretrainConfig,
};
use super::keys::{canonical_json, stage_version, task_key_canonical};
use super::synth::{self, ResolvedSynth, SynthPart};
use crate::layers::{self, Fusion, LayerSet};
use crate::manifest::entries::Source;
use crate::manifest::grid::{Axis, CellAxes, Pattern};
use crate::manifest::stages::{self, CrossAttnConfig, EvalSettings, TrainSettings};
use crate::manifest::{Diagnostics, Loc, Manifest};
use crate::task::{runtime, StageKind, Task, TaskKey};
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
/// Axes every cell must have (`layers` only for fusions other than the baseline).
const REQUIRED_AXES: [&str; 7] = [
    "fusion",
    "encoder",
    "llm",
    "pretrain_data",
    "sft",
    "benchmark",
    "seed",
];
const EVAL_AXES: [&str; 1] = ["benchmark"];

fn stage_index(s: StageKind) -> usize {
    StageKind::ALL.iter().position(|x| *x == s).unwrap()
}

/// The key-relevant content of every entry, computed once.
struct EntryInfo {
    /// The entry's spec, with a `synth:` entry's `params.world` replaced by the world's config.
    spec: Json,
    /// What a `synth:` entry resolved to (None for other entries, and for broken ones, which
    /// were reported).
    synth: Option<ResolvedSynth>,
}

struct Builder<'m> {
    m: &'m Manifest,
    /// Tasks per stage, in creation order (stage order is a topological order).
    tasks: [Vec<Task>; 5],
    by_key: HashMap<TaskKey, (usize, usize)>,
    /// Signature of the stage-relevant cell values → task, to skip re-hashing shared tasks.
    memo: HashMap<String, (usize, usize)>,
    /// Entry name → content, for `[models]`, `[data]` and `[benchmarks]`.
    entries: [HashMap<String, EntryInfo>; 3],
    /// (axis, value) → where it was written, for errors found while planning.
    locs: HashMap<(String, String), Loc>,
}

impl<'m> Builder<'m> {
    fn new(m: &'m Manifest, locs: HashMap<(String, String), Loc>, d: &mut Diagnostics) -> Self {
        // Resolves `synth:<what>` and its world; a broken entry is reported once here.
        let mut info = |section: &str,
                        name: &str,
                        spec: Json,
                        source: Option<&Source>,
                        family: Option<&str>,
                        loc: &Loc| {
            let Some(Source::Synth(what)) = source else {
                return EntryInfo { spec, synth: None };
            };
            let mut spec = spec;
            let params = spec["params"].as_object().cloned().unwrap_or_default();
            let resolved = synth::resolve(m, section, name, what, &params, family, loc, d);
            if let Some(r) = &resolved {
                spec["params"] = Json::Object(synth::resolved_params(&params, r));
            }
            EntryInfo {
                spec,
                synth: resolved,
            }
        };
        let mut entries: [HashMap<String, EntryInfo>; 3] = Default::default();
        for e in &m.models {
            let spec = to_json(&ModelSpec::from(e));
            let i = info(
                "models",
                &e.name,
                spec,
                Some(&e.source),
                Some(&e.family),
                &e.loc,
            );
            entries[0].insert(e.name.clone(), i);
        }
        for e in &m.data {
            let spec = to_json(&DataSpec::from(e));
            let i = info("data", &e.name, spec, e.source.as_ref(), None, &e.loc);
            entries[1].insert(e.name.clone(), i);
        }
        for e in &m.benchmarks {
            let spec = to_json(&BenchmarkSpec::from(e));
            let i = info("benchmarks", &e.name, spec, e.source.as_ref(), None, &e.loc);
            entries[2].insert(e.name.clone(), i);
        }
        Builder {
            m,
            tasks: Default::default(),
            by_key: HashMap::new(),
            memo: HashMap::new(),
            entries,
            locs,
        }
    }

    /// An entry's spec as the stages see it (`synth:` worlds resolved), typed.
    fn spec<T: serde::de::DeserializeOwned>(&self, section: &'static str, name: &str) -> Option<T> {
        serde_json::from_value(self.entry(section, name)?.spec.clone()).ok()
    }

    fn entry(&self, section: &'static str, name: &str) -> Option<&EntryInfo> {
        let i = match section {
            "models" => 0,
            "data" => 1,
            _ => 2,
        };
        self.entries[i].get(name)
    }

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
        let canonical = canonical_json(&config);
        self.add_canonical(stage, || config, &canonical, deps, cell, axes)
    }

    /// [`Builder::add`] with the config's canonical JSON known; the config is only built when
    /// the task is new.
    fn add_canonical(
        &mut self,
        stage: StageKind,
        config: impl FnOnce() -> Json,
        canonical: &str,
        deps: Vec<TaskKey>,
        cell: usize,
        axes: BTreeMap<String, Json>,
    ) -> (usize, usize) {
        let version = stage_version(stage);
        let key = task_key_canonical(stage, version, canonical, &deps);
        let at = match self.by_key.get(&key) {
            Some(&at) => at,
            None => {
                let s = stage_index(stage);
                self.tasks[s].push(Task {
                    key: key.clone(),
                    stage,
                    version,
                    config: config(),
                    deps,
                    cells: Vec::new(),
                    axes,
                    runtime: Default::default(),
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

    /// The prepare task an entry reads, if it is a `synth:` one: its world's task for datasets
    /// and benchmarks, its own task (which depends on the world's) for models.
    fn prepare(&mut self, section: &'static str, name: &str, cell: usize) -> Option<TaskKey> {
        let info = self.entry(section, name)?;
        let resolved = info.synth.clone()?;
        let sig = format!("prepare\u{0}{section}\u{0}{name}");
        if let Some(&at) = self.memo.get(&sig) {
            self.serve(at, cell);
            // A model's world serves this cell too.
            if let Some(dep) = self.task(at).deps.first().cloned() {
                let world = self.by_key[&dep];
                self.serve(world, cell);
            }
            return Some(self.task(at).key.clone());
        }
        let world = self.world(&resolved, cell);
        let at = match resolved.part {
            SynthPart::Model(_) => {
                let config = to_json(&PrepareConfig {
                    kind: "model".to_string(),
                    entry: self.entry(section, name)?.spec.clone(),
                });
                self.add(
                    StageKind::Prepare,
                    config,
                    vec![self.task(world).key.clone()],
                    cell,
                    BTreeMap::from([(section.to_string(), json!(name))]),
                )
            }
            _ => world,
        };
        self.memo.insert(sig, at);
        Some(self.task(at).key.clone())
    }

    /// The task that generates the world a `synth:` entry reads.
    fn world(&mut self, r: &ResolvedSynth, cell: usize) -> (usize, usize) {
        let config = to_json(&PrepareConfig {
            kind: "world".to_string(),
            entry: json!({ "source": "synth:world", "params": r.world }),
        });
        self.add(
            StageKind::Prepare,
            config,
            vec![],
            cell,
            BTreeMap::from([("world".to_string(), json!(r.world_label))]),
        )
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
            return Some(self.task(at).key.clone());
        }
        let config = to_json(&EncodeConfig {
            encoder: self.spec::<ModelSpec>("models", encoder)?,
            data: self.spec::<DataSpec>("data", data)?,
            image_aspect: aspect,
        });
        let deps: Vec<TaskKey> = [
            self.prepare("models", encoder, cell),
            self.prepare("data", data, cell),
        ]
        .into_iter()
        .flatten()
        .collect();
        let labels = BTreeMap::from([
            ("encoder".to_string(), json!(encoder)),
            ("data".to_string(), json!(data)),
            ("image_aspect".to_string(), json!(aspect.as_str())),
        ]);
        let at = self.add(StageKind::Encode, config, deps, cell, labels);
        if let Some(gb) = self.m.encode.budget_gb {
            // Bounds the run, never changes the output: a run-time option, not in the key.
            let t = &mut self.tasks[at.0][at.1];
            t.runtime
                .insert(runtime::ENCODE_BUDGET_GB.into(), json!(gb));
        }
        self.memo.insert(sig, at);
        Some(self.task(at).key.clone())
    }

    /// The inputs a training stage reads besides its upstream stage: prepared models and data,
    /// and the encoded hidden states of `data`.
    fn inputs(
        &mut self,
        enc: &str,
        llm: &str,
        data: &str,
        aspect: stages::ImageAspect,
        cell: usize,
    ) -> Vec<TaskKey> {
        [
            self.prepare("models", enc, cell),
            self.prepare("models", llm, cell),
            self.prepare("data", data, cell),
            self.encode(enc, data, aspect, cell),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A cell's seed (validated as a non-negative integer when the manifest loaded).
fn seed_of(cell: &CellAxes) -> u64 {
    cell.get("seed").and_then(Json::as_u64).unwrap_or(0)
}

/// A cell's value of an axis as a string (names, layer sets, fusion).
fn text<'c>(cell: &'c CellAxes, axis: &str) -> Option<&'c str> {
    cell.get(axis).and_then(Json::as_str)
}

/// Settings with the cell's `<section>.*` axes applied.
fn with_axes<T: serde::Serialize + serde::de::DeserializeOwned + Clone + stages::Domains>(
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
    let mut b = Builder::new(m, locs, d);
    if d.has_errors() {
        return Vec::new();
    }
    // Eval config signature → its configs: shared by every finetune's evals.
    let mut eval_configs: HashMap<String, EvalConfigs> = HashMap::new();

    // Defaults and the manifest checks give every cell these axes; should a cell still lack
    // one, say so rather than plan it partially.
    for axis in REQUIRED_AXES {
        let missing = cells.iter().filter(|c| !c.contains_key(axis)).count();
        if missing > 0 {
            d.error(
                &m.grid.loc,
                format!("{missing} of {} cells have no `{axis}`", cells.len()),
                Some(format!(
                    "add `{axis} = [...]` to [grid] (the product's cells need a value too)"
                )),
            );
        }
    }
    if d.has_errors() {
        return Vec::new();
    }

    for (ci, cell) in cells.iter().enumerate() {
        let (enc, llm) = (
            text(cell, "encoder").unwrap_or(""),
            text(cell, "llm").unwrap_or(""),
        );
        let (pt, sft) = (
            text(cell, "pretrain_data").unwrap_or(""),
            text(cell, "sft").unwrap_or(""),
        );

        // ---- pretrain
        // I_M cells also differ by their `i_m.*` axes; other paradigms ignore them and share.
        let i_m_sig = if text(cell, "fusion") == Some(Fusion::InternalModular.name()) {
            signature(cell, &[], "i_m")
        } else {
            String::new()
        };
        let sig = format!(
            "pretrain\u{0}{}\u{0}{i_m_sig}",
            signature(cell, &PRETRAIN_AXES, "pretrain")
        );
        let pretrain = match b.memo.get(&sig) {
            Some(&at) => {
                b.serve(at, ci);
                // The inputs of a shared pretrain serve this cell as well.
                let hp: TrainSettings = with_axes(&m.pretrain, cell, "pretrain");
                b.inputs(enc, llm, pt, hp.image_aspect, ci);
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
        let hp: TrainSettings = with_axes(&m.finetune, cell, "finetune");
        let mut deps = vec![b.task(pretrain).key.clone()];
        deps.extend(b.inputs(enc, llm, sft, hp.image_aspect, ci));
        let sig = format!(
            "finetune\u{0}{}\u{0}{}",
            b.task(pretrain).key,
            signature(cell, &["sft", "seed"], "finetune")
        );
        let finetune = match b.memo.get(&sig) {
            Some(&at) => {
                b.serve(at, ci);
                at
            }
            None => {
                let Some(data) = b.spec::<DataSpec>("data", sft) else {
                    continue;
                };
                let config = to_json(&FinetuneConfig {
                    data,
                    hparams: hp,
                    seed: seed_of(cell),
                });
                let at = b.add(StageKind::Finetune, config, deps, ci, BTreeMap::new());
                b.memo.insert(sig, at);
                at
            }
        };

        // ---- eval
        let bench = text(cell, "benchmark").unwrap_or("");
        let Some(bench_entry) = m.benchmark(bench) else {
            continue;
        };
        let eval_sig = format!("{bench}\u{0}{}", signature(cell, &[], "eval"));
        if !eval_configs.contains_key(&eval_sig) {
            let mut base: EvalSettings = m.eval.clone();
            if let Some(n) = bench_entry.max_new_tokens {
                base.max_new_tokens = n;
            }
            let mut settings = with_axes(&base, cell, "eval");
            // The generation batch never changes an answer: a run-time option, not in the key.
            let batch = settings.batch.take();
            let Some(benchmark) = b.spec::<BenchmarkSpec>("benchmarks", bench) else {
                continue;
            };
            let with_control = |control| {
                let config = to_json(&EvalConfig {
                    benchmark: benchmark.clone(),
                    settings: settings.clone(),
                    control,
                });
                let canonical = canonical_json(&config);
                (config, canonical)
            };
            let (config, canonical) = with_control(None);
            let controls = m
                .controls
                .iter()
                .map(|&c| {
                    let (config, canonical) = with_control(Some(c));
                    (c, config, canonical)
                })
                .collect();
            eval_configs.insert(
                eval_sig.clone(),
                EvalConfigs {
                    config,
                    canonical,
                    batch,
                    controls,
                },
            );
        }
        let mut deps = vec![b.task(finetune).key.clone()];
        deps.extend(
            [
                b.prepare("models", enc, ci),
                b.prepare("models", llm, ci),
                b.prepare("benchmarks", bench, ci),
            ]
            .into_iter()
            .flatten(),
        );
        let configs = &eval_configs[&eval_sig];
        let at = b.add_canonical(
            StageKind::Eval,
            || configs.config.clone(),
            &configs.canonical,
            deps.clone(),
            ci,
            BTreeMap::new(),
        );
        let mut evals = vec![at];
        // Each control: the same finetune and inputs, plus the with-image eval right after the
        // finetune (the upstream stage stays first: the plan's tree hangs evals off it).
        let with_image = b.task(at).key.clone();
        for (_, config, canonical) in &configs.controls {
            let mut deps = deps.clone();
            deps.insert(1, with_image.clone());
            let control = b.add_canonical(
                StageKind::Eval,
                || config.clone(),
                canonical,
                deps,
                ci,
                BTreeMap::new(),
            );
            evals.push(control);
        }
        if let Some(n) = configs.batch {
            for at in evals {
                b.tasks[at.0][at.1]
                    .runtime
                    .insert(runtime::EVAL_BATCH.into(), json!(n));
            }
        }
    }

    let mut tasks: Vec<Task> = b.tasks.into_iter().flatten().collect();
    label(&mut tasks, cells);
    tasks
}

/// The eval configs of one benchmark × eval settings, shared by every finetune's evals.
struct EvalConfigs {
    /// The with-image eval's config and its canonical JSON.
    config: Json,
    canonical: String,
    /// `[eval] batch`, a run-time option of every eval task.
    batch: Option<u64>,
    /// One (control, config, canonical JSON) per `[eval] controls` entry.
    controls: Vec<(crate::eval::Control, Json, String)>,
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
    let (enc, llm) = (m.model(enc_name)?, m.model(llm_name)?);
    m.dataset(pt_name)?;
    let set = match (fusion, text(cell, "layers")) {
        (Fusion::Baseline, _) => None,
        (_, Some(s)) => Some(LayerSet::parse(s).ok()?),
        (_, None) => {
            d.error(&b.loc_of("fusion", &json!(fusion_name)), format!("fusion `{fusion_name}` needs a layer set, but this grid gives its cells no `layers`"), Some(format!("add `layers = [\"3-18-23\"]` (one of {}) to [grid], or to a [[grid.when]] block for this fusion", LayerSet::NAMED.join(", "))));
            return None;
        }
    };
    let resolved = match layers::resolve(fusion, set.as_ref(), encoder_depth(enc)?, llm.layers?) {
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
    let deps = b.inputs(enc_name, llm_name, pt_name, hp.image_aspect, ci);
    let config = to_json(&PretrainConfig {
        fusion,
        layers: resolved,
        encoder: b.spec::<ModelSpec>("models", enc_name)?,
        llm: b.spec::<ModelSpec>("models", llm_name)?,
        data: b.spec::<DataSpec>("data", pt_name)?,
        hparams: hp,
        seed: seed_of(cell),
        i_m: (fusion == Fusion::InternalModular)
            .then(|| with_axes(&m.i_m, cell, "i_m"))
            .filter(|c| *c != CrossAttnConfig::default()),
    });
    Some(b.add(StageKind::Pretrain, config, deps, ci, BTreeMap::new()))
}

/// Fills `Task::axes` of pretrain/finetune/eval tasks: the values of the axes the stage reads,
/// one value when its cells agree, an array of the distinct values otherwise.
fn label(tasks: &mut [Task], cells: &[CellAxes]) {
    for t in tasks.iter_mut() {
        let (fixed, prefixes): (Vec<&str>, Vec<&str>) = match t.stage {
            StageKind::Pretrain => (PRETRAIN_AXES.to_vec(), vec!["pretrain.", "i_m."]),
            StageKind::Finetune => (
                [&PRETRAIN_AXES[..], &FINETUNE_AXES[..]].concat(),
                vec!["pretrain.", "i_m.", "finetune."],
            ),
            StageKind::Eval => (
                [&PRETRAIN_AXES[..], &FINETUNE_AXES[..], &EVAL_AXES[..]].concat(),
                vec!["pretrain.", "i_m.", "finetune.", "eval."],
            ),
            _ => continue,
        };
        let relevant = |k: &str| fixed.contains(&k) || prefixes.iter().any(|p| k.starts_with(p));
        // A control eval serves the cells of its with-image eval: its control tells them apart
        // (in `mlvf plan`'s tree, and when `mlvf explain` matches an old spec to a task).
        let control = t.config.get("control").cloned();
        if let [only] = t.cells[..] {
            // Most tasks (every eval of a grid without shared evals) serve one cell.
            t.axes = cells[only]
                .iter()
                .filter(|(k, _)| relevant(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            t.axes.extend(control.map(|c| ("control".to_string(), c)));
            continue;
        }
        let mut values: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for &ci in &t.cells {
            for (k, v) in &cells[ci] {
                if relevant(k) {
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
        t.axes.extend(control.map(|c| ("control".to_string(), c)));
    }
}

/// What layer resolution needs from a vision entry; `None` when it declares no depth.
fn encoder_depth(enc: &crate::manifest::ModelEntry) -> Option<layers::EncoderDepth> {
    Some(layers::EncoderDepth {
        layers: enc.depth?,
        drop_last: enc.drop_last_layer,
    })
}
