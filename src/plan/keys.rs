//! Content keys: `key = blake3(canonical JSON of {stage, version, config, deps})`.
//!
//! Canonical JSON: object keys sorted (byte order) at every depth, no whitespace, strings
//! escaped as serde_json does, integers as integers, floats in their shortest round-trip form
//! (serde_json/`ryu`: `0.001`, `0.00002`, `1e-30`, `1.0`). Every float a key hashes went through a typed
//! settings struct first, so `lr = 1` and `lr = 1.0` hash the same. Keys never contain times,
//! host names or temporary paths.

use crate::task::{StageKind, TaskKey};
use serde_json::Value;

/// The code version of each stage, part of its keys: bump one when that stage's outputs change
/// meaning (every task of the stage and downstream then reruns).
pub fn stage_version(stage: StageKind) -> u32 {
    match stage {
        StageKind::Prepare => 1,
        StageKind::Encode => 1,
        StageKind::Pretrain => 1,
        StageKind::Finetune => 1,
        StageKind::Eval => 1,
    }
}

/// Writes `v` as canonical JSON (see the module doc).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialise"));
                out.push(':');
                write(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("scalars serialise")),
    }
}

/// The key's pre-image: what `mlvf explain` prints and diffs.
pub fn pre_image(stage: StageKind, version: u32, config: &Value, deps: &[TaskKey]) -> Value {
    serde_json::json!({
        "stage": stage.as_str(),
        "version": version,
        "config": config,
        "deps": deps.iter().map(|k| k.0.clone()).collect::<Vec<_>>(),
    })
}

/// The task key of a pre-image.
pub fn task_key(stage: StageKind, version: u32, config: &Value, deps: &[TaskKey]) -> TaskKey {
    task_key_canonical(stage, version, &canonical_json(config), deps)
}

/// [`task_key`] from the config's canonical JSON, which the planner caches for configs shared
/// by many tasks. Writes the same bytes as `canonical_json(&pre_image(..))`: the pre-image's
/// keys in sorted order (config, deps, stage, version).
pub fn task_key_canonical(
    stage: StageKind,
    version: u32,
    config_canonical: &str,
    deps: &[TaskKey],
) -> TaskKey {
    let mut text = String::with_capacity(config_canonical.len() + 70 * deps.len() + 48);
    text.push_str("{\"config\":");
    text.push_str(config_canonical);
    text.push_str(",\"deps\":[");
    for (i, d) in deps.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(&d.0).expect("strings serialise"));
    }
    text.push_str("],\"stage\":");
    text.push_str(&serde_json::to_string(stage.as_str()).expect("strings serialise"));
    text.push_str(",\"version\":");
    text.push_str(&version.to_string());
    text.push('}');
    TaskKey(blake3::hash(text.as_bytes()).to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"y": [1, 2.5], "x": "s"}});
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2.5]},"b":1}"#);
        assert_eq!(canonical_json(&json!(2e-5)), "0.00002");
        assert_eq!(canonical_json(&json!(1e-30)), "1e-30");
    }

    #[test]
    fn the_fast_path_hashes_the_canonical_pre_image() {
        let c = json!({"b": [1.5, "x"], "a": {"z": null}});
        let deps = [TaskKey("k1".into()), TaskKey("k2".into())];
        let slow = canonical_json(&pre_image(StageKind::Eval, 3, &c, &deps));
        let expected = TaskKey(blake3::hash(slow.as_bytes()).to_hex().to_string());
        assert_eq!(task_key(StageKind::Eval, 3, &c, &deps), expected);
    }

    #[test]
    fn keys_change_with_every_part_of_the_pre_image() {
        let c = json!({"lr": 1e-3});
        let k = task_key(StageKind::Pretrain, 1, &c, &[]);
        assert_eq!(k.0.len(), 64);
        assert_eq!(
            k,
            task_key(StageKind::Pretrain, 1, &json!({"lr": 0.001}), &[])
        );
        assert_ne!(k, task_key(StageKind::Finetune, 1, &c, &[]));
        assert_ne!(k, task_key(StageKind::Pretrain, 2, &c, &[]));
        assert_ne!(
            k,
            task_key(StageKind::Pretrain, 1, &json!({"lr": 2e-3}), &[])
        );
        assert_ne!(
            k,
            task_key(StageKind::Pretrain, 1, &c, &[TaskKey("ab".into())])
        );
    }
}
