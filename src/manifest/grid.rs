//! `[grid]`: axes and the operators that turn them into cells.
//!
//! Order of operations (each step documented in experiments/README.md):
//! 1. **product** of the axes (a `zip` group counts as one axis whose rows vary together), or,
//!    with `[grid.ablate]`, the baseline cell plus every cell that differs from it in exactly one
//!    axis (or one zip group);
//! 2. **when**: each `[[grid.when]]` block, in order, expands the cells its `match` selects by the
//!    product of its `axes` (overriding values the cell already has);
//! 3. **exclude**: drops every cell matching a partial assignment (one that matches nothing is a
//!    warning);
//! 4. **include**: each partial assignment adds cells: its values, times the grid's product of
//!    every axis it does not name (so `{ fusion = "baseline" }` adds a baseline for every encoder,
//!    LLM, data, benchmark and seed; in an ablation, the baseline cell's values instead), then
//!    the `when` blocks; excludes do not apply to includes;
//! 5. cells with `fusion = "baseline"` lose their `layers` value (the baseline has no layer set),
//!    and duplicate cells collapse to the first.

use super::diag::{suggest, Diagnostics};
use super::source::{Loc, Node, Table, Value};
use super::stages::{self, STAGE_SECTIONS};
use crate::layers::{Fusion, LayerSet};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashSet};

/// The axes every study has, in display order. Dotted hyper-parameter axes come after them.
pub const AXES: [&str; 8] = [
    "fusion",
    "layers",
    "encoder",
    "llm",
    "pretrain_data",
    "sft",
    "benchmark",
    "seed",
];

/// Operator keys of `[grid]`.
const OPERATORS: [&str; 5] = ["zip", "exclude", "include", "when", "ablate"];

/// One value of an axis, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisValue {
    pub value: Json,
    pub loc: Loc,
}

/// A named list of values.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub name: String,
    pub loc: Loc,
    pub values: Vec<AxisValue>,
}

/// A partial assignment: axis → one value or a list of values (any of them matches).
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub loc: Loc,
    pub entries: Vec<Axis>,
}

/// A `[[grid.when]]` block.
#[derive(Clone, Debug, PartialEq)]
pub struct When {
    pub loc: Loc,
    pub pred: Pattern,
    pub axes: Vec<Axis>,
}

/// `[grid]` as written, checked.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GridSpec {
    pub loc: Loc,
    pub axes: Vec<Axis>,
    /// Groups of axis names that vary together.
    pub zip: Vec<(Loc, Vec<String>)>,
    pub exclude: Vec<Pattern>,
    pub include: Vec<Pattern>,
    pub when: Vec<When>,
    pub ablate: Option<Pattern>,
}

/// A grid cell while expanding: axis → value.
pub type CellAxes = BTreeMap<String, Json>;

/// The names axis values may refer to.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub vision: Vec<String>,
    pub llm: Vec<String>,
    pub data: Vec<String>,
    pub benchmarks: Vec<String>,
}

/// Every dotted axis name (`pretrain.lr`, …), for suggestions.
fn dotted_names() -> Vec<String> {
    STAGE_SECTIONS
        .iter()
        .flat_map(|s| {
            stages::section_fields(s)
                .into_iter()
                .map(move |f| format!("{s}.{f}"))
        })
        .collect()
}

/// Checks an axis name; the error carries a did-you-mean.
pub fn check_axis_name(name: &str) -> Result<(), String> {
    if AXES.contains(&name) {
        return Ok(());
    }
    if name == format!("eval.{}", super::controls::KEY) {
        return Err(
            "grounding controls are not a grid axis: they add tasks to every cell instead of \
             making cells; list them in `[eval] controls = [\"blank\", \"shuffle\", \"none\"]`"
                .into(),
        );
    }
    if let Some((section, field)) = name.split_once('.') {
        if STAGE_SECTIONS.contains(&section) {
            let fields = stages::section_fields(section);
            if fields.iter().any(|f| f == field) {
                return Ok(());
            }
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            return Err(format!(
                "`{section}` has no field `{field}`: {}",
                suggest(field, &refs)
            ));
        }
    }
    let dotted = dotted_names();
    let mut all: Vec<&str> = AXES.to_vec();
    all.extend(dotted.iter().map(String::as_str));
    match super::diag::closest(name, all.iter().copied()) {
        Some(c) => Err(format!(
            "did you mean `{c}`? (axes are {}, or a dotted hyper-parameter such as `finetune.lr`)",
            AXES.join(", ")
        )),
        None => Err(format!(
            "axes are {}, or a dotted hyper-parameter such as `finetune.lr`",
            AXES.join(", ")
        )),
    }
}

fn is_scalar(n: &Node) -> bool {
    matches!(
        n.value,
        Value::String(_) | Value::Integer(_) | Value::Float(_) | Value::Boolean(_)
    )
}

/// The values of an axis: an array of scalars, or one scalar.
/// A TOML `nan` or `inf`, which JSON (what settings and keys are made of) cannot hold.
pub(crate) fn non_finite(n: &Node) -> Option<f64> {
    match n.value {
        Value::Float(f) if !f.is_finite() => Some(f),
        _ => None,
    }
}

fn values_of(name: &str, node: &Node, d: &mut Diagnostics) -> Vec<AxisValue> {
    let nodes: Vec<&Node> = match &node.value {
        Value::Array(a) => a.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for n in nodes {
        if let Some(f) = non_finite(n) {
            d.error(
                &n.loc,
                format!("axis `{name}`: {f} is not a finite number"),
                Some("write a finite number (TOML's nan and inf are no setting's value)".into()),
            );
        } else if is_scalar(n) {
            out.push(AxisValue {
                value: n.to_json(),
                loc: n.loc.clone(),
            });
        } else {
            d.error(
                &n.loc,
                format!(
                    "axis `{name}`: values must be strings or numbers, found {}",
                    n.type_name()
                ),
                None,
            );
        }
    }
    if out.is_empty() && matches!(node.value, Value::Array(ref a) if a.is_empty()) {
        d.error(
            &node.loc,
            format!("axis `{name}` has no values"),
            Some("give at least one value, or remove the axis".into()),
        );
    }
    out
}

/// Reads axes from a table, flattening `finetune.lr = […]` written as a nested table.
fn axes_of(t: &Table, what: &str, skip: &[&str], d: &mut Diagnostics) -> Vec<Axis> {
    let mut out = Vec::new();
    for e in &t.entries {
        if skip.contains(&e.key.as_str()) {
            continue;
        }
        if let (true, Some(sub)) = (STAGE_SECTIONS.contains(&e.key.as_str()), e.node.as_table()) {
            for f in &sub.entries {
                let name = format!("{}.{}", e.key, f.key);
                push_axis(&mut out, name, &f.key_loc, &f.node, what, d);
            }
            continue;
        }
        push_axis(&mut out, e.key.clone(), &e.key_loc, &e.node, what, d);
    }
    out
}

fn push_axis(
    out: &mut Vec<Axis>,
    name: String,
    key_loc: &Loc,
    node: &Node,
    what: &str,
    d: &mut Diagnostics,
) {
    if let Err(help) = check_axis_name(&name) {
        d.error(
            key_loc,
            format!("unknown axis `{name}` in {what}"),
            Some(help),
        );
        return;
    }
    let values = values_of(&name, node, d);
    out.push(Axis {
        name,
        loc: key_loc.clone(),
        values,
    });
}

fn pattern_of(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Pattern> {
    match node.as_table() {
        Some(t) => Some(Pattern {
            loc: node.loc.clone(),
            entries: axes_of(t, what, &[], d),
        }),
        None => {
            d.error(&node.loc, format!("{what} entries must be tables like {{ fusion = \"I_M\", layers = \"all\" }}, found {}", node.type_name()), None);
            None
        }
    }
}

fn patterns_of(node: &Node, what: &str, d: &mut Diagnostics) -> Vec<Pattern> {
    match node.as_array() {
        Some(items) => items
            .iter()
            .filter_map(|n| pattern_of(n, what, d))
            .collect(),
        None => pattern_of(node, what, d).into_iter().collect(),
    }
}

/// Parses `[grid]` (values are checked separately, once the catalog is known).
pub fn parse(t: &Table, loc: Loc, d: &mut Diagnostics) -> GridSpec {
    let mut spec = GridSpec {
        loc,
        axes: axes_of(t, "[grid]", &OPERATORS, d),
        ..GridSpec::default()
    };
    if let Some(e) = t.get("zip") {
        let groups: Vec<&Node> = match e.node.as_array() {
            Some(a) if a.iter().all(|x| x.as_array().is_some()) => a.iter().collect(),
            Some(a) if a.iter().all(|x| x.as_str().is_some()) => vec![&e.node],
            _ => {
                d.error(
                    &e.node.loc,
                    "`zip` must list groups of axis names, e.g. zip = [[\"encoder\", \"llm\"]]",
                    None,
                );
                vec![]
            }
        };
        for g in groups {
            let names: Vec<String> = g
                .as_array()
                .unwrap_or_default()
                .iter()
                .filter_map(|n| match n.as_str() {
                    Some(s) => Some(s.to_string()),
                    None => {
                        d.error(&n.loc, "`zip` groups list axis names (strings)", None);
                        None
                    }
                })
                .collect();
            spec.zip.push((g.loc.clone(), names));
        }
    }
    if let Some(e) = t.get("exclude") {
        spec.exclude = patterns_of(&e.node, "`exclude`", d);
    }
    if let Some(e) = t.get("include") {
        spec.include = patterns_of(&e.node, "`include`", d);
    }
    if let Some(e) = t.get("ablate") {
        match e.node.as_table() {
            Some(a) => {
                super::read::check_keys(a, &["baseline"], "[grid.ablate]", d);
                match a.get("baseline") {
                    Some(b) => spec.ablate = pattern_of(&b.node, "`ablate.baseline`", d),
                    None => d.error(
                        &e.key_loc,
                        "[grid.ablate] has no `baseline`",
                        Some(
                            "add `baseline = { fusion = \"E_D\", layers = \"3-18-23\", … }`".into(),
                        ),
                    ),
                }
            }
            None => d.error(
                &e.node.loc,
                "`ablate` must be a table with a `baseline`",
                None,
            ),
        }
    }
    if let Some(e) = t.get("when") {
        let blocks: Vec<&Node> = match e.node.as_array() {
            Some(a) => a.iter().collect(),
            None => vec![&e.node],
        };
        for b in blocks {
            let Some(bt) = b.as_table() else {
                d.error(
                    &b.loc,
                    "`[[grid.when]]` blocks are tables with `match` and `axes`",
                    None,
                );
                continue;
            };
            super::read::check_keys(bt, &["match", "axes"], "[[grid.when]]", d);
            let pred = match bt.get("match") {
                Some(m) => pattern_of(&m.node, "`when.match`", d),
                None => {
                    d.error(
                        &b.loc,
                        "[[grid.when]] has no `match`",
                        Some("add `match = { fusion = [\"I_D\", \"I_M\"] }`".into()),
                    );
                    None
                }
            };
            let axes = match bt.get("axes").map(|a| (a, a.node.as_table())) {
                Some((_, Some(at))) => axes_of(at, "`when.axes`", &[], d),
                Some((a, None)) => {
                    d.error(
                        &a.node.loc,
                        "`when.axes` must be a table of axis → values",
                        None,
                    );
                    vec![]
                }
                None => {
                    d.error(
                        &b.loc,
                        "[[grid.when]] has no `axes`",
                        Some("add `axes = { sft = [\"cambrian737k\"] }`".into()),
                    );
                    vec![]
                }
            };
            if let Some(pred) = pred {
                spec.when.push(When {
                    loc: b.loc.clone(),
                    pred,
                    axes,
                });
            }
        }
    }
    spec
}

fn name_check(
    kind: &str,
    s: &str,
    ok: &[String],
    other: Option<(&[String], &str)>,
) -> Result<(), (String, Option<String>)> {
    if ok.iter().any(|x| x == s) {
        return Ok(());
    }
    if let Some((others, what)) = other {
        if others.iter().any(|x| x == s) {
            return Err((format!("`{s}` is {what}, not {kind}"), None));
        }
    }
    let refs: Vec<&str> = ok.iter().map(String::as_str).collect();
    Err((format!("unknown {kind} `{s}`"), Some(suggest(s, &refs))))
}

/// Checks (and normalises) one axis value against the catalog and the stage structs.
pub fn check_value(axis: &str, v: &mut AxisValue, cat: &Catalog, d: &mut Diagnostics) {
    let as_str = v.value.as_str().map(str::to_string);
    let res: Result<(), (String, Option<String>)> = match axis {
        "fusion" => match as_str {
            Some(s) if Fusion::parse(&s).is_some() => Ok(()),
            Some(s) => Err((
                format!("unknown fusion `{s}`"),
                Some(suggest(&s, &Fusion::NAMES)),
            )),
            None => Err((
                "fusion must be a string".into(),
                Some(suggest("", &Fusion::NAMES)),
            )),
        },
        "layers" => {
            if let Some(i) = v.value.as_u64() {
                v.value = Json::String(i.to_string());
            }
            match v.value.as_str() {
                Some(s) => LayerSet::parse(s).map(|_| ()).map_err(|e| (e, None)),
                None => Err((
                    "a layer set is a string such as \"3-18-23\" or \"former\"".into(),
                    None,
                )),
            }
        }
        "encoder" | "llm" | "pretrain_data" | "sft" | "benchmark" => match as_str {
            None => Err((format!("`{axis}` values are entry names (strings)"), None)),
            Some(s) => match axis {
                "encoder" => {
                    name_check("vision model", &s, &cat.vision, Some((&cat.llm, "an LLM")))
                }
                "llm" => name_check("LLM", &s, &cat.llm, Some((&cat.vision, "a vision model"))),
                "benchmark" => name_check("benchmark", &s, &cat.benchmarks, None),
                _ => name_check("dataset", &s, &cat.data, None),
            },
        },
        "seed" => match v.value.as_u64() {
            Some(_) => Ok(()),
            None => Err(("a seed is a non-negative integer".into(), None)),
        },
        dotted => {
            let (section, field) = dotted.split_once('.').unwrap_or((dotted, ""));
            match stages::typed_field(section, field, &v.value) {
                Ok(j) => {
                    v.value = j;
                    Ok(())
                }
                Err(stages::FieldError::Type(m)) => {
                    Err((format!("`{dotted}` = {}: {m}", v.value), None))
                }
                Err(stages::FieldError::Domain(m)) => Err((
                    format!("`{dotted}` = {}: {}", v.value, m.message),
                    Some(m.hint),
                )),
                Err(stages::FieldError::Unknown) => {
                    Err((format!("`{section}` has no field `{field}`"), None))
                }
            }
        }
    };
    if let Err((msg, help)) = res {
        d.error(&v.loc, msg, help);
    }
}

impl GridSpec {
    /// Every axis name the grid can give a cell.
    pub fn axis_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        };
        for a in &self.axes {
            add(&a.name);
        }
        for w in &self.when {
            w.axes.iter().for_each(|a| add(&a.name));
        }
        for p in self.include.iter().chain(self.ablate.iter()) {
            p.entries.iter().for_each(|a| add(&a.name));
        }
        names
    }

    /// Checks every value written anywhere in the grid, and the zip groups.
    pub fn check(&mut self, cat: &Catalog, d: &mut Diagnostics) {
        let mut seen: HashSet<String> = HashSet::new();
        for a in &self.axes {
            if !seen.insert(a.name.clone()) {
                d.error(
                    &a.loc,
                    format!("axis `{}` is given twice", a.name),
                    Some(
                        "`finetune.lr` and `[grid.finetune] lr` name the same axis; keep one"
                            .into(),
                    ),
                );
            }
        }
        let check_all = |axes: &mut Vec<Axis>, d: &mut Diagnostics| {
            for a in axes.iter_mut() {
                for v in a.values.iter_mut() {
                    check_value(&a.name, v, cat, d);
                }
            }
        };
        check_all(&mut self.axes, d);
        for p in self
            .exclude
            .iter_mut()
            .chain(self.include.iter_mut())
            .chain(self.ablate.iter_mut())
        {
            check_all(&mut p.entries, d);
        }
        for w in self.when.iter_mut() {
            check_all(&mut w.pred.entries, d);
            check_all(&mut w.axes, d);
        }
        if let Some(b) = &self.ablate {
            for a in &b.entries {
                if a.values.len() != 1 {
                    d.error(
                        &a.loc,
                        format!(
                            "the ablation baseline gives `{}` {} values",
                            a.name,
                            a.values.len()
                        ),
                        Some("a baseline is one cell: give one value per axis".into()),
                    );
                }
            }
        }
        let mut zipped: HashSet<&str> = HashSet::new();
        for (loc, names) in &self.zip {
            let mut lens = Vec::new();
            for n in names {
                match self.axes.iter().find(|a| &a.name == n) {
                    Some(a) => lens.push(format!("`{n}` has {}", a.values.len())),
                    None => {
                        let refs: Vec<&str> = self.axes.iter().map(|a| a.name.as_str()).collect();
                        d.error(
                            loc,
                            format!("zip names `{n}`, which is not an axis of [grid]"),
                            Some(suggest(n, &refs)),
                        );
                    }
                }
                if !zipped.insert(n) {
                    d.error(
                        loc,
                        format!("axis `{n}` is in two zip groups"),
                        Some("merge the groups".into()),
                    );
                }
            }
            let counts: HashSet<usize> = names
                .iter()
                .filter_map(|n| self.axes.iter().find(|a| &a.name == n))
                .map(|a| a.values.len())
                .collect();
            if counts.len() > 1 {
                d.error(loc, format!("zip group of unequal lengths: {}", lens.join(", ")), Some("zipped axes vary together, value i with value i: give each the same number of values".into()));
            }
            if names.len() < 2 {
                d.error(loc, "a zip group needs at least two axes", None);
            }
        }
    }

    /// Adds a default axis (written nowhere: located at `[grid]`).
    pub fn default_axis(&mut self, name: &str, values: Vec<Json>) {
        let loc = self.loc.clone();
        self.axes.push(Axis {
            name: name.to_string(),
            loc: loc.clone(),
            values: values
                .into_iter()
                .map(|value| AxisValue {
                    value,
                    loc: loc.clone(),
                })
                .collect(),
        });
    }

    /// The factors of the product: single axes and zip groups, each as rows of assignments,
    /// in display order (the fixed axes first, then dotted ones as written).
    fn factors(&self) -> Vec<Vec<Vec<(String, Json)>>> {
        let mut axes: Vec<&Axis> = self.axes.iter().collect();
        axes.sort_by_key(|a| AXES.iter().position(|x| *x == a.name).unwrap_or(AXES.len()));
        let mut done: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for a in axes {
            if done.contains(a.name.as_str()) {
                continue;
            }
            match self.zip.iter().find(|(_, g)| g.contains(&a.name)) {
                Some((_, group)) => {
                    let members: Vec<&Axis> = group
                        .iter()
                        .filter_map(|n| self.axes.iter().find(|x| &x.name == n))
                        .collect();
                    let n = members.iter().map(|m| m.values.len()).min().unwrap_or(0);
                    out.push(
                        (0..n)
                            .map(|i| {
                                members
                                    .iter()
                                    .map(|m| (m.name.clone(), m.values[i].value.clone()))
                                    .collect()
                            })
                            .collect(),
                    );
                    members.iter().for_each(|m| {
                        done.insert(m.name.as_str());
                    });
                }
                None => {
                    out.push(
                        a.values
                            .iter()
                            .map(|v| vec![(a.name.clone(), v.value.clone())])
                            .collect(),
                    );
                    done.insert(a.name.as_str());
                }
            }
        }
        out
    }

    /// Expands the grid into cells (see the module doc for the order of operations).
    pub fn expand(&self, d: &mut Diagnostics) -> Vec<CellAxes> {
        let factors = self.factors();
        let mut cells: Vec<CellAxes> = match &self.ablate {
            None => product(vec![CellAxes::new()], &factors),
            Some(b) => ablate(b, &factors, d),
        };
        // What an include's unnamed axes range over: the product, or in an ablation the baseline.
        let include_base: Vec<Vec<Vec<(String, Json)>>> = match (&self.ablate, cells.first()) {
            (Some(_), Some(baseline)) => vec![vec![baseline.clone().into_iter().collect()]],
            _ => factors.clone(),
        };
        let mut when_used = vec![false; self.when.len()];
        cells = self.apply_when(cells, &mut when_used);
        for p in &self.exclude {
            let before = cells.len();
            cells.retain(|c| !matches(p, c));
            if cells.len() == before {
                d.warning(
                    &p.loc,
                    "this `exclude` matches no cell",
                    Some("check its values against the grid's axes; it has no effect".into()),
                );
            }
        }
        let mut seen: HashSet<String> = if self.include.is_empty() {
            HashSet::new()
        } else {
            cells
                .iter()
                .map(|c| cell_id(&drop_baseline_layers(c.clone())))
                .collect()
        };
        for p in &self.include {
            let named: HashSet<&str> = p.entries.iter().map(|a| a.name.as_str()).collect();
            let assignment: Vec<Vec<Vec<(String, Json)>>> = p
                .entries
                .iter()
                .map(|a| {
                    a.values
                        .iter()
                        .map(|v| vec![(a.name.clone(), v.value.clone())])
                        .collect()
                })
                .collect();
            let mut added = product(vec![CellAxes::new()], &assignment);
            let rest: Vec<Vec<Vec<(String, Json)>>> = include_base
                .iter()
                .filter(|f| {
                    f.first()
                        .is_some_and(|row| row.iter().any(|(n, _)| !named.contains(n.as_str())))
                })
                .map(|f| {
                    f.iter()
                        .map(|row| {
                            row.iter()
                                .filter(|(n, _)| !named.contains(n.as_str()))
                                .cloned()
                                .collect()
                        })
                        .collect()
                })
                .collect();
            added = product(added, &rest);
            added = self.apply_when(added, &mut when_used);
            let mut any = false;
            for c in added {
                let c = drop_baseline_layers(c);
                if seen.insert(cell_id(&c)) {
                    cells.push(c);
                    any = true;
                }
            }
            if !any {
                d.warning(
                    &p.loc,
                    "this `include` adds no cell: every cell it describes is already in the grid",
                    None,
                );
            }
        }
        for (w, used) in self.when.iter().zip(when_used) {
            if !used {
                d.warning(
                    &w.pred.loc,
                    "this `[[grid.when]]` matches no cell",
                    Some(
                        "check its `match` values against the grid's axes; it has no effect".into(),
                    ),
                );
            }
        }
        let mut out = Vec::with_capacity(cells.len());
        let mut seen = HashSet::new();
        for c in cells {
            let c = drop_baseline_layers(c);
            if seen.insert(cell_id(&c)) {
                out.push(c);
            }
        }
        out
    }

    /// Applies the `when` blocks in order; `used[i]` becomes true when block i matched a cell.
    fn apply_when(&self, mut cells: Vec<CellAxes>, used: &mut [bool]) -> Vec<CellAxes> {
        for (i, w) in self.when.iter().enumerate() {
            let factors: Vec<Vec<Vec<(String, Json)>>> = w
                .axes
                .iter()
                .map(|a| {
                    a.values
                        .iter()
                        .map(|v| vec![(a.name.clone(), v.value.clone())])
                        .collect()
                })
                .collect();
            let mut out = Vec::with_capacity(cells.len());
            for c in cells {
                if matches(&w.pred, &c) {
                    used[i] = true;
                    out.extend(product(vec![c], &factors));
                } else {
                    out.push(c);
                }
            }
            cells = out;
        }
        cells
    }
}

fn drop_baseline_layers(mut c: CellAxes) -> CellAxes {
    if c.get("fusion").and_then(Json::as_str) == Some("baseline") {
        c.remove("layers");
    }
    c
}

/// A cell's identity for de-duplication.
fn cell_id(c: &CellAxes) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

/// Whether a cell matches a partial assignment (each named axis has one of the listed values).
pub fn matches(p: &Pattern, c: &CellAxes) -> bool {
    p.entries.iter().all(|a| {
        c.get(&a.name)
            .is_some_and(|v| a.values.iter().any(|x| &x.value == v))
    })
}

/// Cells × each factor's rows (a row's values override the cell's).
fn product(mut cells: Vec<CellAxes>, factors: &[Vec<Vec<(String, Json)>>]) -> Vec<CellAxes> {
    for f in factors {
        let mut out = Vec::with_capacity(cells.len() * f.len().max(1));
        for c in &cells {
            for row in f {
                let mut n = c.clone();
                for (k, v) in row {
                    n.insert(k.clone(), v.clone());
                }
                out.push(n);
            }
        }
        cells = out;
    }
    cells
}

/// One-factor-at-a-time: the baseline, then the baseline with one factor changed at a time.
fn ablate(b: &Pattern, factors: &[Vec<Vec<(String, Json)>>], d: &mut Diagnostics) -> Vec<CellAxes> {
    let given: BTreeMap<&str, &Json> = b
        .entries
        .iter()
        .filter_map(|a| a.values.first().map(|v| (a.name.as_str(), &v.value)))
        .collect();
    let mut baseline = CellAxes::new();
    for (k, v) in &given {
        baseline.insert(k.to_string(), (*v).clone());
    }
    for f in factors {
        let names: Vec<&String> = f
            .first()
            .map(|r| r.iter().map(|(n, _)| n).collect())
            .unwrap_or_default();
        let missing: Vec<&&String> = names
            .iter()
            .filter(|n| !given.contains_key(n.as_str()))
            .collect();
        if missing.is_empty() {
            continue;
        }
        if f.len() == 1 {
            for (k, v) in &f[0] {
                baseline.insert(k.clone(), v.clone());
            }
        } else {
            d.error(
                &b.loc,
                format!(
                    "the ablation baseline gives no value for `{}`, which has {} values",
                    missing[0],
                    f.len()
                ),
                Some("name every axis with more than one value in `baseline`".into()),
            );
        }
    }
    let mut cells = vec![baseline.clone()];
    for f in factors {
        for row in f {
            if row.iter().all(|(k, v)| baseline.get(k) == Some(v)) {
                continue;
            }
            let mut c = baseline.clone();
            for (k, v) in row {
                c.insert(k.clone(), v.clone());
            }
            cells.push(c);
        }
    }
    cells
}
