//! "Why will this rerun?": a task's key pre-image, and a field-by-field diff between a task the
//! store knows (its spec) and the task the current manifest plans for the same cells.

use super::keys::pre_image;
use crate::task::{Plan, Task, TaskKey};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// One difference between two pre-images, at a dotted path (`config.hparams.lr`).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub path: String,
    pub old: Option<Json>,
    pub new: Option<Json>,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Json>| v.as_ref().map_or("(absent)".to_string(), |v| v.to_string());
        write!(
            f,
            "{}: {} → {}",
            self.path,
            show(&self.old),
            show(&self.new)
        )
    }
}

fn flatten(prefix: &str, v: &Json, out: &mut BTreeMap<String, Json>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Field-by-field differences between two tasks' pre-images (stage, version, config, deps).
pub fn diff(old: &Task, new: &Task) -> Vec<FieldChange> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(
        "",
        &pre_image(old.stage, old.version, &old.config, &old.deps),
        &mut a,
    );
    flatten(
        "",
        &pre_image(new.stage, new.version, &new.config, &new.deps),
        &mut b,
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| FieldChange {
            path: k.trim_start_matches('.').to_string(),
            old: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

/// Whether two label values describe overlapping cells (an array lists several values, as when
/// `3-18` and `3-18-23` share one external-fusion pretrain).
fn agree(a: &Json, b: &Json) -> bool {
    let as_list = |v: &Json| match v {
        Json::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let (la, lb) = (as_list(a), as_list(b));
    a == b || la.iter().any(|x| lb.contains(x))
}

/// How well a planned task's labels match an old task's: (all axes agree, count that agree).
fn affinity(old: &Task, new: &Task) -> (bool, usize) {
    let same = old
        .axes
        .iter()
        .filter(|(k, v)| new.axes.get(*k).is_some_and(|w| agree(v, w)))
        .count();
    let keys_equal =
        old.axes.len() == new.axes.len() && old.axes.keys().all(|k| new.axes.contains_key(k));
    (same == old.axes.len() && keys_equal, same)
}

/// The planned task that replaces `old`: same stage and same axis values, or else the one of
/// that stage sharing the most axis values (None if the plan has no task of that stage).
pub fn counterpart<'p>(old: &Task, plan: &'p Plan) -> Option<(&'p Task, bool)> {
    plan.tasks
        .iter()
        .filter(|t| t.stage == old.stage)
        .map(|t| (t, affinity(old, t)))
        .max_by_key(|(_, (exact, n))| (*exact, *n))
        .map(|(t, (exact, _))| (t, exact))
}

/// Explains why `old` (a stored spec) is not in `plan`: the changed fields, recursing into
/// changed upstream tasks whose old specs `read_old` still finds (the store's, in `mlvf
/// explain`). Lines are indented by depth.
pub fn why_rerun(
    old: &Task,
    plan: &Plan,
    read_old: &dyn Fn(&TaskKey) -> Option<Task>,
    depth: usize,
    out: &mut Vec<String>,
) {
    let pad = "  ".repeat(depth);
    let Some((new, exact)) = counterpart(old, plan) else {
        out.push(format!(
            "{pad}the manifest no longer plans any {} task",
            old.stage
        ));
        return;
    };
    if !exact {
        let mut keys: Vec<&String> = old.axes.keys().chain(new.axes.keys()).collect();
        keys.sort();
        keys.dedup();
        let show = |v: Option<&Json>| v.map_or("(absent)".to_string(), |v| v.to_string());
        let differs: Vec<String> = keys
            .into_iter()
            .filter(|k| old.axes.get(*k) != new.axes.get(*k))
            .map(|k| format!("{k}: {} → {}", show(old.axes.get(k)), show(new.axes.get(k))))
            .collect();
        out.push(format!(
            "{pad}no planned {} has the same axis values; the closest, {} {}, differs in {}:",
            old.stage,
            new.stage,
            new.key.short(),
            differs.join(", ")
        ));
    } else {
        out.push(format!(
            "{pad}the same cells now plan {} {}:",
            new.stage,
            new.key.short()
        ));
    }
    for c in diff(old, new) {
        if c.path.starts_with("deps") {
            continue;
        }
        out.push(format!("{pad}  {c}"));
    }
    for (i, (a, b)) in old.deps.iter().zip(&new.deps).enumerate() {
        if a == b {
            continue;
        }
        out.push(format!(
            "{pad}  deps[{i}]: {} → {} (an upstream task changed)",
            a.short(),
            b.short()
        ));
        if let Some(old_dep) = read_old(a) {
            why_rerun(&old_dep, plan, read_old, depth + 2, out);
        }
    }
    if old.deps.len() != new.deps.len() {
        out.push(format!(
            "{pad}  deps: {} → {} upstream tasks",
            old.deps.len(),
            new.deps.len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StageKind;
    use serde_json::json;

    fn task(config: Json, deps: Vec<&str>) -> Task {
        Task {
            key: TaskKey("k".into()),
            stage: StageKind::Finetune,
            version: 1,
            config,
            deps: deps.into_iter().map(|d| TaskKey(d.into())).collect(),
            cells: vec![],
            axes: BTreeMap::new(),
            runtime: Default::default(),
        }
    }

    #[test]
    fn labels_agree_when_their_cells_overlap() {
        assert!(agree(&json!(["3-18", "3-18-23"]), &json!("3-18")));
        assert!(agree(&json!("E_D"), &json!("E_D")));
        assert!(!agree(&json!(["3-18", "3-18-23"]), &json!("all")));
    }

    #[test]
    fn diff_names_each_changed_leaf() {
        let a = task(
            json!({"hparams": {"lr": 2e-5, "epochs": 1}, "seed": 0}),
            vec!["p1"],
        );
        let b = task(
            json!({"hparams": {"lr": 1e-5, "epochs": 1}, "seed": 0}),
            vec!["p2"],
        );
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].path, "config.hparams.lr");
        assert_eq!(d[0].to_string(), "config.hparams.lr: 0.00002 → 0.00001");
        assert_eq!(d[1].path, "deps");
    }
}
