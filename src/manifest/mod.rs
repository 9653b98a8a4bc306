//! Manifest: TOML schema, loading with spans, `extends`, grid operators and validation.
//!
//! [`load`] reads a manifest (following `extends`), checks every section and returns a
//! [`Manifest`] whose grid expands into cells; or every error it found, each naming
//! `file:line:column` in the file that wrote the offending value.

pub mod controls;
pub mod diag;
pub mod entries;
pub mod executor;
pub mod grid;
mod read;
pub mod source;
pub mod stages;
pub mod table;

pub use diag::{Diag, Diagnostics};
pub use entries::{BenchmarkEntry, DataEntry, ModelEntry, ModelKind, Source};
pub use executor::{ExecutorKind, ExecutorSettings};
pub use grid::{CellAxes, GridSpec};
pub use source::{Loc, Sources};
pub use stages::{EvalSettings, ImageAspect, TrainSettings};
pub use table::TableSpec;

use serde_json::Value as Json;
use source::Table;
use std::path::{Path, PathBuf};

/// `[sweep]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub name: String,
    /// Store root, resolved against the manifest's directory.
    pub store: PathBuf,
    pub description: String,
}

/// `[encode]`: cache the frozen vision tower's hidden states once per dataset.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct EncodeSettings {
    pub enabled: bool,
    /// Disk budget for the cache in GB (None: unlimited). Not part of any key.
    pub budget_gb: Option<f64>,
}

/// A loaded, checked manifest.
#[derive(Debug)]
pub struct Manifest {
    /// The manifest file given on the command line.
    pub path: PathBuf,
    pub sweep: Sweep,
    pub models: Vec<ModelEntry>,
    pub data: Vec<DataEntry>,
    pub benchmarks: Vec<BenchmarkEntry>,
    pub grid: GridSpec,
    pub pretrain: TrainSettings,
    pub finetune: TrainSettings,
    pub eval: EvalSettings,
    /// `[eval] controls`: grounding controls each cell's eval is repeated under, as tasks of
    /// their own beside it (empty: none).
    pub controls: Vec<crate::eval::Control>,
    /// `[i_m]`: I_M's gated cross-attention sub-blocks (placement `pre` | `post` | `parallel`,
    /// visibility `full` | `causal`, `init_std`); read only by I_M cells.
    pub i_m: stages::CrossAttnConfig,
    pub encode: EncodeSettings,
    pub executor: ExecutorSettings,
    pub tables: Vec<TableSpec>,
    /// Every file read (for positions in messages).
    pub sources: Sources,
    /// Warnings found while loading (and expanding, once [`Manifest::cells`] ran).
    pub diags: Diagnostics,
}

/// A manifest that could not be loaded: every error, rendered, plus the raw diagnostics.
#[derive(Debug)]
pub struct ManifestError {
    pub rendered: String,
    pub diags: Diagnostics,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl std::error::Error for ManifestError {}

const TOP_KEYS: [&str; 13] = [
    "extends",
    "sweep",
    "models",
    "data",
    "benchmarks",
    "grid",
    "pretrain",
    "finetune",
    "eval",
    "i_m",
    "encode",
    "executor",
    "table",
];

impl Manifest {
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn dataset(&self, name: &str) -> Option<&DataEntry> {
        self.data.iter().find(|m| m.name == name)
    }

    pub fn benchmark(&self, name: &str) -> Option<&BenchmarkEntry> {
        self.benchmarks.iter().find(|m| m.name == name)
    }

    /// Expands the grid into cells (warnings land in `self.diags`).
    pub fn cells(&mut self) -> Vec<CellAxes> {
        let mut d = std::mem::take(&mut self.diags);
        let cells = self.grid.expand(&mut d);
        self.diags = d;
        cells
    }

    /// Renders the warnings collected so far, one string each.
    pub fn warnings(&self) -> Vec<String> {
        self.diags.render_warnings(&self.sources)
    }
}

/// Reads a file and the chain of files it `extends`, merging parents under children.
fn load_tree(
    path: &Path,
    from: Option<&Loc>,
    stack: &mut Vec<PathBuf>,
    sources: &mut Sources,
    d: &mut Diagnostics,
) -> Option<Table> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(i) = stack.iter().position(|p| p == &canonical) {
        let chain: Vec<String> = stack[i..]
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        d.error(
            from.expect("the first file cannot be a cycle"),
            format!("`extends` cycle: {}", chain.join(" → ")),
            Some(
                "a manifest cannot extend itself, directly or through others: remove one `extends`"
                    .into(),
            ),
        );
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            match from {
                Some(loc) => d.error(
                    loc,
                    format!("cannot read `{}`: {e}", path.display()),
                    Some("`extends` paths are relative to the manifest that writes them".into()),
                ),
                None => d.errors.push(Diag {
                    loc: None,
                    message: format!("cannot read manifest `{}`: {e}", path.display()),
                    help: None,
                }),
            }
            return None;
        }
    };
    let file = sources.add(path.to_path_buf(), text);
    let mut table = match source::parse(file, sources.text(file)) {
        Ok(t) => t,
        Err(e) => {
            d.error(&e.loc, format!("TOML syntax: {}", e.message), None);
            return None;
        }
    };
    let Some(ext) = table.take("extends") else {
        return Some(table);
    };
    let Some(rel) = ext.node.as_str() else {
        d.error(
            &ext.node.loc,
            format!(
                "`extends` must be a path (a string), found {}",
                ext.node.type_name()
            ),
            None,
        );
        return None;
    };
    let parent_path = entries::resolve_path(path.parent().unwrap_or(Path::new("")), rel);
    stack.push(canonical);
    let parent = load_tree(&parent_path, Some(&ext.node.loc), stack, sources, d);
    stack.pop();
    let mut parent = parent?;
    parent.merge(table);
    Some(parent)
}

/// Loads and checks a manifest. All errors found are returned together.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let mut sources = Sources::default();
    let mut d = Diagnostics::default();
    let tree = load_tree(path, None, &mut Vec::new(), &mut sources, &mut d);
    let manifest = tree.and_then(|t| from_tree(path, &t, &sources, &mut d));
    match manifest {
        Some(mut m) if !d.has_errors() => {
            m.sources = sources;
            m.diags = d;
            Ok(m)
        }
        _ => Err(ManifestError {
            rendered: d.render_errors(&sources),
            diags: d,
        }),
    }
}

fn section<'t>(t: &'t Table, key: &str, d: &mut Diagnostics) -> Option<(&'t Table, Loc)> {
    read::table(t, key, "the manifest", d)
}

/// A settings section applied field by field onto `base`; `elsewhere` names keys of the
/// section that another reader handles (they are skipped here, and offered as suggestions).
fn settings<T>(t: &Table, key: &str, base: T, elsewhere: &[&str], d: &mut Diagnostics) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + stages::Domains,
{
    let Some((tab, _)) = section(t, key, d) else {
        return base;
    };
    // Sections with options left out of their serialised defaults list them; every field of
    // the others is in the defaults.
    let mut fields = stages::section_fields(key);
    if fields.is_empty() {
        fields = stages::field_names(&base);
    }
    let mut refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    refs.extend(elsewhere);
    let mut cur = base;
    for e in tab
        .entries
        .iter()
        .filter(|e| !elsewhere.contains(&e.key.as_str()))
    {
        if let Some(f) = grid::non_finite(&e.node) {
            d.error(
                &e.node.loc,
                format!("[{key}] `{}` = {f}: not a finite number", e.key),
                Some("write a finite number (TOML's nan and inf are no setting's value)".into()),
            );
            continue;
        }
        match stages::with_field(&cur, &e.key, &e.node.to_json()) {
            Ok(next) => cur = next,
            Err(stages::FieldError::Unknown) => d.error(
                &e.key_loc,
                format!("unknown key `{}` in [{key}]", e.key),
                Some(diag::suggest(&e.key, &refs)),
            ),
            Err(stages::FieldError::Type(m)) => d.error(
                &e.node.loc,
                format!("[{key}] `{}` = {}: {m}", e.key, e.node.to_json()),
                diag::unquote_hint(&e.node.to_json()),
            ),
            Err(stages::FieldError::Domain(m)) => d.error(
                &e.node.loc,
                format!("[{key}] `{}` = {}: {}", e.key, e.node.to_json(), m.message),
                Some(m.hint),
            ),
        }
    }
    cur
}

fn from_tree(path: &Path, t: &Table, sources: &Sources, d: &mut Diagnostics) -> Option<Manifest> {
    read::check_keys(t, &TOP_KEYS, "the manifest", d);
    let dir = sources.dir(0).to_path_buf();
    let file_start = Loc::default();

    // [sweep]
    let sweep = match section(t, "sweep", d) {
        Some((s, loc)) => {
            read::check_keys(s, &["name", "store", "description"], "[sweep]", d);
            let name = read::string(s, "name", "[sweep]", d);
            if name.is_none() && s.get("name").is_none() {
                d.error(
                    &loc,
                    "[sweep] has no `name`",
                    Some("add `name = \"my-study\"`".into()),
                );
            }
            let store = match read::string(s, "store", "[sweep]", d) {
                Some((st, sloc)) => entries::resolve_path(&entries::base_dir(sources, &sloc), &st),
                None => entries::resolve_path(&dir, "results"),
            };
            Sweep {
                name: name.map(|n| n.0).unwrap_or_default(),
                store,
                description: read::string(s, "description", "[sweep]", d)
                    .map(|x| x.0)
                    .unwrap_or_default(),
            }
        }
        None => {
            if t.get("sweep").is_none() {
                d.error(
                    &file_start,
                    "the manifest has no [sweep] section",
                    Some(
                        "add `[sweep]` with `name = \"…\"` (and optionally `store = \"results\"`)"
                            .into(),
                    ),
                );
            }
            Sweep {
                name: String::new(),
                store: dir.join("results"),
                description: String::new(),
            }
        }
    };

    let mut models = Vec::new();
    if let Some((m, _)) = section(t, "models", d) {
        models = m
            .entries
            .iter()
            .filter_map(|e| entries::model(e, sources, d))
            .collect();
    }
    let mut data = Vec::new();
    if let Some((m, _)) = section(t, "data", d) {
        data = m
            .entries
            .iter()
            .filter_map(|e| entries::dataset(e, sources, d))
            .collect();
    }
    let mut benchmarks = Vec::new();
    if let Some((m, _)) = section(t, "benchmarks", d) {
        benchmarks = m
            .entries
            .iter()
            .filter_map(|e| entries::benchmark(e, sources, d))
            .collect();
    }

    let pretrain = settings(t, "pretrain", TrainSettings::pretrain_default(), &[], d);
    let finetune = settings(t, "finetune", TrainSettings::finetune_default(), &[], d);
    let eval = settings(t, "eval", EvalSettings::default(), &[controls::KEY], d);
    let controls = section(t, "eval", d)
        .map(|(e, _)| controls::parse(e, d))
        .unwrap_or_default();
    let i_m = settings(t, "i_m", stages::CrossAttnConfig::default(), &[], d);

    let mut encode = EncodeSettings::default();
    if let Some((e, _)) = section(t, "encode", d) {
        read::check_keys(e, &["enabled", "budget_gb"], "[encode]", d);
        encode.enabled = read::boolean(e, "enabled", "[encode]", d)
            .map(|x| x.0)
            .unwrap_or(false);
        encode.budget_gb = read::float(e, "budget_gb", "[encode]", d).map(|(gb, loc)| {
            if !(gb.is_finite() && gb > 0.0) {
                d.error(
                    &loc,
                    format!("[encode] `budget_gb` = {gb}: the cache's disk budget must be a positive number of GB"),
                    Some("leave it out for no limit".into()),
                );
            }
            gb
        });
    }

    let executor = settings(t, "executor", ExecutorSettings::default(), &[], d);

    // [grid]
    let mut grid = match section(t, "grid", d) {
        Some((g, loc)) => grid::parse(g, loc, d),
        None => {
            if t.get("grid").is_none() {
                d.error(
                    &file_start,
                    "the manifest has no [grid] section",
                    Some("add `[grid]` with at least `fusion = [\"baseline\"]`".into()),
                );
            }
            GridSpec::default()
        }
    };
    let catalog = grid::Catalog {
        vision: models
            .iter()
            .filter(|m| m.kind == ModelKind::Vision)
            .map(|m| m.name.clone())
            .collect(),
        llm: models
            .iter()
            .filter(|m| m.kind == ModelKind::Llm)
            .map(|m| m.name.clone())
            .collect(),
        data: data.iter().map(|x| x.name.clone()).collect(),
        benchmarks: benchmarks.iter().map(|x| x.name.clone()).collect(),
    };
    grid.check(&catalog, d);
    apply_default_axes(&mut grid, &catalog, d);

    // [[table]]
    let mut tables = Vec::new();
    if let Some(e) = t.get("table") {
        let items: Vec<&source::Node> = match e.node.as_array() {
            Some(a) => a.iter().collect(),
            None => vec![&e.node],
        };
        let axis_names = grid.axis_names();
        let axis_refs: Vec<&str> = axis_names.iter().map(String::as_str).collect();
        for item in items {
            let Some(tt) = item.as_table() else {
                d.error(
                    &item.loc,
                    "`[[table]]` entries are tables with name, rows, cols, metric",
                    None,
                );
                continue;
            };
            read::check_keys(
                tt,
                &["name", "rows", "cols", "metric", "average", "where"],
                "[[table]]",
                d,
            );
            let name = read::string(tt, "name", "[[table]]", d);
            if name.is_none() && tt.get("name").is_none() {
                d.error(&item.loc, "[[table]] has no `name`", None);
            }
            let axes_of = |key: &str, d: &mut Diagnostics| -> Vec<String> {
                let list = read::strings(tt, key, "[[table]]", d).unwrap_or_default();
                for (a, loc) in &list {
                    if !axis_refs.contains(&a.as_str()) {
                        d.error(
                            loc,
                            format!("[[table]] {key}: `{a}` is not an axis of this grid"),
                            Some(diag::suggest(a, &axis_refs)),
                        );
                    }
                }
                list.into_iter().map(|x| x.0).collect()
            };
            let rows = axes_of("rows", d);
            let cols = axes_of("cols", d);
            let mut filter = std::collections::BTreeMap::new();
            if let Some((w, _)) = read::table(tt, "where", "[[table]]", d) {
                for entry in &w.entries {
                    if !axis_refs.contains(&entry.key.as_str()) {
                        d.error(
                            &entry.key_loc,
                            format!(
                                "[[table]] where: `{}` is not an axis of this grid",
                                entry.key
                            ),
                            Some(diag::suggest(&entry.key, &axis_refs)),
                        );
                    }
                    let values = read::strings(w, &entry.key, "[[table]] where", d)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(v, _)| v)
                        .collect();
                    filter.insert(entry.key.clone(), values);
                }
            }
            tables.push(TableSpec {
                name: name.map(|n| n.0).unwrap_or_default(),
                rows,
                cols,
                metric: read::string(tt, "metric", "[[table]]", d)
                    .map(|x| x.0)
                    .unwrap_or_else(|| "primary".into()),
                average: read::boolean(tt, "average", "[[table]]", d)
                    .map(|x| x.0)
                    .unwrap_or(false),
                filter,
            });
        }
    }

    Some(Manifest {
        path: path.to_path_buf(),
        sweep,
        models,
        data,
        benchmarks,
        grid,
        pretrain,
        finetune,
        eval,
        controls,
        i_m,
        encode,
        executor,
        tables,
        sources: Sources::default(),
        diags: Diagnostics::default(),
    })
}

/// Fills axes the grid does not name: `seed = [0]`, `benchmark` = every benchmark, and
/// `encoder` / `llm` / `pretrain_data` / `sft` when exactly one entry can fill them.
fn apply_default_axes(grid: &mut GridSpec, cat: &grid::Catalog, d: &mut Diagnostics) {
    // Only the axes [grid] itself lists count: an axis named by include/when/ablate alone still
    // needs a value in the product's cells.
    let named: Vec<String> = grid.axes.iter().map(|a| a.name.clone()).collect();
    let has = |n: &str| named.iter().any(|x| x == n);
    if !has("seed") {
        grid.default_axis("seed", vec![Json::from(0)]);
    }
    if !has("fusion") {
        d.error(
            &grid.loc,
            "[grid] has no `fusion` axis",
            Some(format!(
                "add e.g. `fusion = [\"baseline\", \"E_D\"]` (one of {})",
                crate::layers::Fusion::NAMES.join(", ")
            )),
        );
    }
    let defaults: [(&str, &Vec<String>, &str, bool); 5] = [
        ("benchmark", &cat.benchmarks, "[benchmarks]", true),
        ("encoder", &cat.vision, "vision models in [models]", false),
        ("llm", &cat.llm, "LLMs in [models]", false),
        ("pretrain_data", &cat.data, "[data]", false),
        ("sft", &cat.data, "[data]", false),
    ];
    for (axis, names, what, all) in defaults {
        if has(axis) {
            continue;
        }
        if names.len() == 1 || (all && !names.is_empty()) {
            grid.default_axis(
                axis,
                names.iter().map(|n| Json::String(n.clone())).collect(),
            );
        } else {
            d.error(
                &grid.loc,
                format!(
                    "[grid] has no `{axis}` axis and {what} defines {} entries",
                    names.len()
                ),
                Some(format!(
                    "add `{axis} = [\"…\"]` naming {}",
                    if names.is_empty() {
                        format!("an entry you define in {what}")
                    } else {
                        names.join(", ")
                    }
                )),
            );
        }
    }
}
