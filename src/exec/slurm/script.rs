//! The text of one array's sbatch script (pure).
//!
//! Every element runs `mlvf task run --store S --attempt N KEY`: it looks its array index up in
//! the key list written next to the script (`index<TAB>key<TAB>attempt<TAB>log`), appends the
//! worker's output to the attempt's log, and forwards USR1 (sent `signal_lead_s` before the
//! time limit) to the worker, which checkpoints; an element stopped that way requeues itself and
//! its next run resumes from the task's checkpoint dir as the same attempt.

use super::arrays::ArraySpec;
use super::config::Resources;
use std::path::Path;

/// Everything one script needs besides its array.
pub struct ScriptInput<'a> {
    pub sweep: &'a str,
    pub job_name: &'a str,
    /// `--array` value.
    pub array: &'a str,
    /// `--dependency` value, if any.
    pub dependency: Option<&'a str>,
    pub resources: &'a Resources,
    /// Slurm's own output for the element (before the worker's log takes over).
    pub slurm_output: &'a Path,
    pub keys_file: &'a Path,
    pub store: &'a Path,
    pub mlvf: &'a Path,
    pub setup: &'a [String],
    pub signal_lead_s: u32,
}

/// Single-quotes `s` for bash.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Renders the sbatch script.
pub fn render(spec: &ArraySpec, inp: &ScriptInput) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |o: String| s.push_str(&format!("#SBATCH {o}\n"));
    opt(format!("--job-name={}", inp.job_name));
    opt(format!("--array={}", inp.array));
    opt(format!("--output={}", inp.slurm_output.display()));
    opt("--open-mode=append".into());
    if let Some(d) = inp.dependency {
        opt(format!("--dependency={d}"));
        opt("--kill-on-invalid-dep=yes".into());
    }
    opt("--requeue".into());
    if inp.signal_lead_s > 0 {
        opt(format!("--signal=B:USR1@{}", inp.signal_lead_s));
    }
    for o in inp.resources.sbatch_options() {
        opt(o);
    }
    s.push_str(&format!(
        "# mlvf sweep {}: {} {} task(s); element i runs the task on line i of the key list.\n",
        inp.sweep,
        spec.elements.len(),
        spec.stage
    ));
    s.push_str(&format!(
        r#"set -uo pipefail
KEYS={keys}
STORE={store}
MLVF={mlvf}
IFS=$'\t' read -r KEY ATTEMPT LOG < <(awk -F'\t' -v i="$SLURM_ARRAY_TASK_ID" '$1 == i {{ print $2 "\t" $3 "\t" $4; exit }}' "$KEYS")
if [ -z "${{KEY:-}}" ]; then
    echo "mlvf: array index $SLURM_ARRAY_TASK_ID is not in $KEYS" >&2
    exit 2
fi
mkdir -p "$(dirname "$LOG")"
echo "mlvf: slurm job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} (id $SLURM_JOB_ID, restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname)" >>"$LOG"
"#,
        keys = shell_quote(&inp.keys_file.to_string_lossy()),
        store = shell_quote(&inp.store.to_string_lossy()),
        mlvf = shell_quote(&inp.mlvf.to_string_lossy()),
    ));
    for line in inp.setup {
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(
        r#"# candle's CPU kernels run RAYON_NUM_THREADS threads: as many as this job was granted.
if [ -z "${RAYON_NUM_THREADS:-}" ] && [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export RAYON_NUM_THREADS="$SLURM_CPUS_PER_TASK"
fi
preempted=0
worker=
on_usr1() {
    preempted=1
    echo "mlvf: USR1 (time limit near): asking the worker to checkpoint" >>"$LOG"
    [ -n "$worker" ] && kill -USR1 "$worker" 2>/dev/null
}
trap on_usr1 USR1
"$MLVF" task run --store "$STORE" --attempt "$ATTEMPT" "$KEY" >>"$LOG" 2>&1 &
worker=$!
# `wait` returns early when a trapped signal arrives; wait until the worker is really gone.
while kill -0 "$worker" 2>/dev/null; do wait "$worker"; done
wait "$worker"; rc=$?
if [ "$rc" -ne 0 ] && [ "$preempted" = 1 ]; then
    echo "mlvf: requeueing job $SLURM_JOB_ID; the next run resumes from the checkpoint" >>"$LOG"
    # A requeued job waits ~2 minutes (BeginTime) unless told otherwise.
    if scontrol requeue "$SLURM_JOB_ID"; then
        scontrol update JobId="$SLURM_JOB_ID" StartTime=now 2>/dev/null
        exit 0
    fi
fi
exit "$rc"
"#,
    );
    s
}

/// The key list: one `index<TAB>key<TAB>attempt<TAB>log` line per element.
pub fn key_list(lines: &[(u32, &str, u32, &Path)]) -> String {
    let mut s = String::new();
    for (i, key, attempt, log) in lines {
        s.push_str(&format!("{i}\t{key}\t{attempt}\t{}\n", log.display()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::StageKind;

    #[test]
    fn script_has_the_options_in_order_and_quotes_paths() {
        let spec = ArraySpec {
            stage: StageKind::Eval,
            name: "eval-0".into(),
            elements: vec![(0, 0), (2, 1)],
            deps: vec![],
        };
        let res = Resources {
            partition: Some("gpu".into()),
            gpus: Some(1),
            ..Resources::default()
        };
        let text = render(
            &spec,
            &ScriptInput {
                sweep: "s",
                job_name: "mlvf-s-eval-abcd1234",
                array: "0,2%1",
                dependency: Some("aftercorr:11,afterok:12_3"),
                resources: &res,
                slurm_output: Path::new("/st/slurm/x/eval-0.%A_%a.out"),
                keys_file: Path::new("/st/slurm/x/eval-0.keys"),
                store: Path::new("/st ore/it's"),
                mlvf: Path::new("/bin/mlvf"),
                setup: &["module load cuda".to_string()],
                signal_lead_s: 120,
            },
        );
        let sbatch: Vec<&str> = text.lines().filter(|l| l.starts_with("#SBATCH")).collect();
        assert_eq!(
            sbatch,
            [
                "#SBATCH --job-name=mlvf-s-eval-abcd1234",
                "#SBATCH --array=0,2%1",
                "#SBATCH --output=/st/slurm/x/eval-0.%A_%a.out",
                "#SBATCH --open-mode=append",
                "#SBATCH --dependency=aftercorr:11,afterok:12_3",
                "#SBATCH --kill-on-invalid-dep=yes",
                "#SBATCH --requeue",
                "#SBATCH --signal=B:USR1@120",
                "#SBATCH --partition=gpu",
                "#SBATCH --gres=gpu:1",
            ]
        );
        assert!(text.contains(r"STORE='/st ore/it'\''s'"), "{text}");
        assert!(text.contains("\nmodule load cuda\n"));
        assert!(text.contains(r#""$MLVF" task run --store "$STORE" --attempt "$ATTEMPT" "$KEY""#));
        assert_eq!(
            key_list(&[(2, "ab", 3, Path::new("/l/3.log"))]),
            "2\tab\t3\t/l/3.log\n"
        );
    }
}
