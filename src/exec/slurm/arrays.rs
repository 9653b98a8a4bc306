//! From the tasks to submit to Slurm job arrays and the dependencies between them (pure).
//!
//! Tasks are grouped by stage (the resource class) and by depth in the DAG of tasks being
//! submitted, so no array depends on itself. A group whose every task has exactly one
//! dependency in one earlier multi-element array is laid out *aligned* with it: element `i`
//! depends on that array's element `i` only (`aftercorr`), so one failed parent cancels only its
//! own children. A parent with several children splits the group into that many aligned arrays
//! (sparse indices); past [`MAX_ALIGNED_SPLIT`] children it falls back to `afterok` on the whole
//! parent array. Dependencies on jobs of an earlier submission that are still queued or running
//! name the job's element (`afterok:123_4`).

use crate::task::{StageKind, Task, TaskKey};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most aligned arrays one group is split into before `afterok` is used instead.
pub const MAX_ALIGNED_SPLIT: usize = 16;

/// What an array waits for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    /// Element `i` waits for element `i` of the array with this index (in the submission).
    AfterCorr(usize),
    /// Every element waits for every element of the array with this index to succeed.
    AfterOk(usize),
    /// Every element waits for this already-submitted job (`123` or `123_4`) to succeed.
    AfterOkJob(String),
}

/// One job array to submit.
#[derive(Clone, Debug, PartialEq)]
pub struct ArraySpec {
    pub stage: StageKind,
    /// Unique within the submission, file-name safe: `<stage>-<n>`.
    pub name: String,
    /// (array index, index of the task in the plan), by array index.
    pub elements: Vec<(u32, usize)>,
    /// Sorted, without duplicates.
    pub deps: Vec<Dependency>,
}

impl ArraySpec {
    /// The `--array` value: indices as ranges (`0-4,7`), with `%throttle` if non-zero.
    pub fn array_arg(&self, throttle: u32) -> String {
        let mut parts = Vec::new();
        let mut i = 0;
        let idx: Vec<u32> = self.elements.iter().map(|e| e.0).collect();
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && idx[j + 1] == idx[j] + 1 {
                j += 1;
            }
            parts.push(if j == i {
                idx[i].to_string()
            } else {
                format!("{}-{}", idx[i], idx[j])
            });
            i = j + 1;
        }
        let mut s = parts.join(",");
        if throttle > 0 {
            s.push_str(&format!("%{throttle}"));
        }
        s
    }
}

/// The `--dependency` value for `deps`, given the job ids of the arrays submitted before
/// (`job_ids[k]` is array `k`'s); `None` without dependencies.
pub fn dependency_arg(deps: &[Dependency], job_ids: &[String]) -> Option<String> {
    let mut corr = Vec::new();
    let mut ok = Vec::new();
    for d in deps {
        match d {
            Dependency::AfterCorr(k) => corr.push(job_ids[*k].clone()),
            Dependency::AfterOk(k) => ok.push(job_ids[*k].clone()),
            Dependency::AfterOkJob(j) => ok.push(j.clone()),
        }
    }
    let mut parts = Vec::new();
    if !corr.is_empty() {
        parts.push(format!("aftercorr:{}", corr.join(":")));
    }
    if !ok.is_empty() {
        parts.push(format!("afterok:{}", ok.join(":")));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Lays out the tasks `submit` (indices into `tasks`, in topological order) as arrays.
/// `live` maps tasks of earlier submissions that are still queued or running to their job
/// element; every other dependency outside `submit` must be done. `max_array_size` bounds the
/// number of elements (and the highest index + 1) of one array.
pub fn group_arrays(
    tasks: &[Task],
    submit: &[usize],
    live: &HashMap<TaskKey, String>,
    max_array_size: u32,
) -> Vec<ArraySpec> {
    let max = max_array_size.max(1) as usize;
    let pos: HashMap<&TaskKey, usize> = submit
        .iter()
        .enumerate()
        .map(|(p, &i)| (&tasks[i].key, p))
        .collect();
    // Depth among submitted tasks: 0 for tasks whose deps are all done or live.
    let mut depth = vec![0usize; submit.len()];
    for (p, &i) in submit.iter().enumerate() {
        for d in &tasks[i].deps {
            if let Some(&q) = pos.get(d) {
                depth[p] = depth[p].max(depth[q] + 1);
            }
        }
    }
    let mut groups: BTreeMap<(usize, StageKind), Vec<usize>> = BTreeMap::new();
    for (p, &i) in submit.iter().enumerate() {
        groups
            .entry((depth[p], tasks[i].stage))
            .or_default()
            .push(p);
    }

    let mut arrays: Vec<ArraySpec> = Vec::new();
    // Where each submitted task landed: (array, index).
    let mut placed: Vec<Option<(usize, u32)>> = vec![None; submit.len()];
    let mut per_stage: HashMap<StageKind, usize> = HashMap::new();
    for ((_, stage), members) in groups {
        // Each member's submitted deps (as placed) and live deps.
        let internal_of: HashMap<usize, Vec<(usize, u32)>> = members
            .iter()
            .map(|&p| {
                let deps = tasks[submit[p]]
                    .deps
                    .iter()
                    .filter_map(|d| {
                        pos.get(d)
                            .map(|&q| placed[q].expect("deps are placed first"))
                    })
                    .collect();
                (p, deps)
            })
            .collect();
        let internal = |p: usize| internal_of[&p].clone();
        let external = |p: usize| -> Vec<String> {
            tasks[submit[p]]
                .deps
                .iter()
                .filter_map(|d| live.get(d).cloned())
                .collect()
        };
        // The aligned layout, if one parent array fits.
        let mut votes: HashMap<usize, usize> = HashMap::new();
        for &p in &members {
            for (a, _) in internal(p).into_iter().collect::<BTreeSet<_>>() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let parent = votes
            .into_iter()
            .filter(|&(a, n)| n == members.len() && arrays[a].elements.len() > 1)
            .map(|(a, _)| a)
            .min();
        let mut layers: Vec<Vec<(u32, usize)>> = Vec::new();
        if let Some(a) = parent {
            let mut children: HashMap<u32, usize> = HashMap::new();
            let mut ok = true;
            let mut assignment = Vec::new();
            for &p in &members {
                let in_parent: Vec<u32> = internal(p)
                    .into_iter()
                    .filter(|&(b, _)| b == a)
                    .map(|(_, i)| i)
                    .collect();
                if in_parent.len() != 1 {
                    ok = false;
                    break;
                }
                let n = children.entry(in_parent[0]).or_default();
                assignment.push((*n, in_parent[0], p));
                *n += 1;
            }
            let split = children.values().copied().max().unwrap_or(0);
            if ok && split <= MAX_ALIGNED_SPLIT {
                layers = vec![Vec::new(); split];
                for (layer, index, p) in assignment {
                    layers[layer].push((index, p));
                }
            }
        }
        let aligned = !layers.is_empty();
        if !aligned {
            // Plain arrays, indices 0.., chunked.
            for chunk in members.chunks(max) {
                layers.push(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, &p)| (i as u32, p))
                        .collect(),
                );
            }
        }
        for mut layer in layers {
            layer.sort();
            let me = arrays.len();
            let mut deps = BTreeSet::new();
            for &(_, p) in &layer {
                for (a, _) in internal(p) {
                    if aligned && Some(a) == parent {
                        deps.insert(Dependency::AfterCorr(a));
                    } else {
                        deps.insert(Dependency::AfterOk(a));
                    }
                }
                for j in external(p) {
                    deps.insert(Dependency::AfterOkJob(j));
                }
            }
            let n = per_stage.entry(stage).or_default();
            let name = format!("{stage}-{n}");
            *n += 1;
            for &(index, p) in &layer {
                placed[p] = Some((me, index));
            }
            arrays.push(ArraySpec {
                stage,
                name,
                elements: layer.into_iter().map(|(i, p)| (i, submit[p])).collect(),
                deps: deps.into_iter().collect(),
            });
        }
    }
    arrays
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(k: &str, stage: StageKind, deps: &[&str]) -> Task {
        Task {
            key: TaskKey(k.to_string()),
            stage,
            version: 1,
            config: serde_json::json!({}),
            deps: deps.iter().map(|d| TaskKey(d.to_string())).collect(),
            cells: vec![],
            axes: Default::default(),
            runtime: Default::default(),
        }
    }

    /// prepare → 3 pretrains → 2 evals each.
    fn study() -> Vec<Task> {
        let mut t = vec![task("p", StageKind::Prepare, &[])];
        for m in ["a", "b", "c"] {
            t.push(task(m, StageKind::Pretrain, &["p"]));
        }
        for m in ["a", "b", "c"] {
            for b in ["1", "2"] {
                t.push(task(&format!("{m}{b}"), StageKind::Eval, &[m]));
            }
        }
        t
    }

    #[test]
    fn whole_study_is_one_array_per_stage_and_aligned_eval_layers() {
        let t = study();
        let all: Vec<usize> = (0..t.len()).collect();
        let a = group_arrays(&t, &all, &HashMap::new(), 1000);
        let names: Vec<_> = a.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["prepare-0", "pretrain-0", "eval-0", "eval-1"]);
        // Pretrains hang off a one-element array: afterok.
        assert_eq!(a[1].deps, [Dependency::AfterOk(0)]);
        assert_eq!(a[1].array_arg(0), "0-2");
        // Each eval layer is aligned with the pretrains: eval a1 is index 0, like pretrain a.
        assert_eq!(a[2].deps, [Dependency::AfterCorr(1)]);
        assert_eq!(a[2].elements, [(0, 4), (1, 6), (2, 8)]);
        assert_eq!(a[3].elements, [(0, 5), (1, 7), (2, 9)]);
        let ids: Vec<String> = ["10", "11", "12", "13"].map(String::from).to_vec();
        assert_eq!(dependency_arg(&a[3].deps, &ids).unwrap(), "aftercorr:11");
        assert_eq!(dependency_arg(&a[0].deps, &ids), None);
    }

    #[test]
    fn partial_resubmission_uses_sparse_indices_and_live_jobs() {
        let t = study();
        // Pretrain b failed (resubmitted with its evals); pretrain c still runs as job 7_2 and
        // its eval c2 was lost; everything else is done.
        let submit = vec![2, 6, 7, 9];
        let live = HashMap::from([(TaskKey("c".into()), "7_2".to_string())]);
        let a = group_arrays(&t, &submit, &live, 1000);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].elements, [(0, 2)]);
        // Eval c2 waits on the live job; evals b1, b2 are in depth 1 (after pretrain b).
        assert_eq!(a[1].stage, StageKind::Eval);
        assert_eq!(a[1].deps, [Dependency::AfterOkJob("7_2".into())]);
        assert_eq!(a[1].elements, [(0, 9)]);
        assert_eq!(a[2].deps, [Dependency::AfterOk(0)]);
        assert_eq!(a[2].elements, [(0, 6), (1, 7)]);
    }

    #[test]
    fn big_groups_are_chunked_and_ranges_compressed() {
        let t: Vec<Task> = (0..5)
            .map(|i| task(&format!("t{i}"), StageKind::Encode, &[]))
            .collect();
        let a = group_arrays(&t, &[0, 1, 2, 3, 4], &HashMap::new(), 2);
        assert_eq!(a.len(), 3);
        assert_eq!(a[2].elements, [(0, 4)]);
        let sparse = ArraySpec {
            stage: StageKind::Eval,
            name: "eval-0".into(),
            elements: vec![(0, 0), (1, 0), (2, 0), (5, 0), (7, 0), (8, 0)],
            deps: vec![],
        };
        assert_eq!(sparse.array_arg(4), "0-2,5,7-8%4");
    }

    #[test]
    fn wide_fan_out_falls_back_to_afterok() {
        let mut t = vec![
            task("a", StageKind::Pretrain, &[]),
            task("b", StageKind::Pretrain, &[]),
        ];
        for i in 0..(MAX_ALIGNED_SPLIT + 1) {
            t.push(task(&format!("e{i}"), StageKind::Eval, &["a"]));
        }
        let all: Vec<usize> = (0..t.len()).collect();
        let a = group_arrays(&t, &all, &HashMap::new(), 1000);
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].deps, [Dependency::AfterOk(0)]);
        assert_eq!(a[1].elements.len(), MAX_ALIGNED_SPLIT + 1);
    }
}
