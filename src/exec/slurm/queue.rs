//! Asking Slurm where jobs stand: `squeue` for queued and running elements, `scontrol show job`
//! for finished ones (kept for `MinJobAge`), `sacct` when accounting is there. Parsers are pure
//! functions of the commands' text, so they are tested without a cluster.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::process::Command;

/// A job element's state as Slurm reports it, reduced to what the controller acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to start (any reason but a dependency that can never be met).
    Pending { reason: String },
    /// Running, completing, suspended, requeued: not to be submitted again.
    Running,
    /// Exited 0.
    Completed,
    /// Exited non-zero, timed out, out of memory, node failure, ...: `state` says which.
    Failed { state: String, exit: Option<i32> },
    /// Cancelled (by a user, or because a dependency failed).
    Cancelled { reason: String },
}

impl JobState {
    /// Whether the element is still in Slurm's hands (must not be submitted again).
    pub fn is_live(&self) -> bool {
        matches!(self, JobState::Pending { .. } | JobState::Running)
    }

    /// Maps a Slurm state name (`%T`, `JobState=`, sacct `State`) with its reason and exit code.
    pub fn from_slurm(state: &str, reason: &str, exit: Option<i32>) -> JobState {
        // sacct prints "CANCELLED by 0"; "CANCELLED+" when truncated.
        let state = state
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        match state {
            "PENDING" if reason == "DependencyNeverSatisfied" => JobState::Cancelled {
                reason: reason.to_string(),
            },
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
            | "CONFIGURING" | "RESIZING" | "SIGNALING" | "STAGE_OUT" => {
                if state == "PENDING" {
                    JobState::Pending {
                        reason: reason.to_string(),
                    }
                } else {
                    JobState::Running
                }
            }
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" => JobState::Running,
            "COMPLETED" => JobState::Completed,
            "CANCELLED" => JobState::Cancelled {
                reason: reason.to_string(),
            },
            other => JobState::Failed {
                state: other.to_string(),
                exit,
            },
        }
    }

    /// A one-line description for logs and the database.
    pub fn describe(&self) -> String {
        match self {
            JobState::Pending { reason } => format!("pending ({reason})"),
            JobState::Running => "running".into(),
            JobState::Completed => "completed".into(),
            JobState::Failed { state, exit } => match exit {
                Some(c) => format!("{state} (exit code {c})"),
                None => state.clone(),
            },
            JobState::Cancelled { reason } if reason.is_empty() || reason == "None" => {
                "cancelled".into()
            }
            JobState::Cancelled { reason } => format!("cancelled ({reason})"),
        }
    }
}

/// Parses `squeue -h -r -o '%i|%T|%r'`: element id (`123_4`, or `123` for a plain job) → state.
pub fn parse_squeue(text: &str) -> HashMap<String, JobState> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 3 || f[0].is_empty() {
            continue;
        }
        out.insert(f[0].to_string(), JobState::from_slurm(f[1], f[2], None));
    }
    out
}

/// `ExitCode=2:0` → 2 (the signal half is ignored; a signal shows as 0:9 and the state says it).
fn exit_code(s: &str) -> Option<i32> {
    s.split(':').next()?.parse().ok()
}

/// Parses `scontrol -o show job <id>...` (one line per job, `Key=Value` pairs): element id
/// (`<ArrayJobId>_<ArrayTaskId>` for array elements) → state. Compressed pending ranges
/// (`ArrayTaskId=3-5`) are expanded.
pub fn parse_scontrol(text: &str) -> HashMap<String, JobState> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let kv: HashMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let (Some(job), Some(state)) = (kv.get("JobId"), kv.get("JobState")) else {
            continue;
        };
        let reason = kv.get("Reason").copied().unwrap_or("");
        let st = JobState::from_slurm(state, reason, kv.get("ExitCode").and_then(|e| exit_code(e)));
        match (kv.get("ArrayJobId"), kv.get("ArrayTaskId")) {
            (Some(a), Some(t)) => {
                for i in expand_indices(t) {
                    out.insert(format!("{a}_{i}"), st.clone());
                }
            }
            _ => {
                out.insert(job.to_string(), st);
            }
        }
    }
    out
}

/// `0-2,5,7%2` → 0, 1, 2, 5, 7.
fn expand_indices(s: &str) -> Vec<u32> {
    let s = s.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Parses `sacct -X -n -P -o JobID,State,ExitCode`: element id → state. Pending compressed
/// array rows (`123_[4-6]`) are skipped: squeue knows those.
pub fn parse_sacct(text: &str) -> HashMap<String, JobState> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 3 || f[0].contains('[') || f[0].contains('.') {
            continue;
        }
        out.insert(
            f[0].to_string(),
            JobState::from_slurm(f[1], "", exit_code(f[2])),
        );
    }
    out
}

/// Parses `sbatch --parsable` output: `123` or `123;cluster`.
pub fn parse_sbatch(text: &str) -> anyhow::Result<String> {
    let id = text.trim().split(';').next().unwrap_or("").trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch printed {:?}, not a job id", text.trim());
    }
    Ok(id.to_string())
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {what} (is Slurm installed and on PATH?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The states of the given array jobs' elements (and plain jobs), from squeue, then scontrol
/// for what squeue no longer lists, then sacct (if accounting is on) for what scontrol has
/// forgotten. Elements none of them knows are absent from the map.
pub fn query(job_ids: &[String]) -> anyhow::Result<HashMap<String, JobState>> {
    let mut states = HashMap::new();
    if job_ids.is_empty() {
        return Ok(states);
    }
    // squeue of the whole user's queue: `-j` with one purged id fails the whole call.
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
    let mut sq = Command::new("squeue");
    sq.args(["-h", "-r", "-o", "%i|%T|%r"]);
    match &user {
        Some(u) => sq.args(["-u", u]),
        None => sq.arg("--me"),
    };
    let live = parse_squeue(&run(&mut sq, "squeue")?);
    let wanted: std::collections::HashSet<&str> = job_ids.iter().map(String::as_str).collect();
    for (id, st) in live {
        let array = id.split('_').next().unwrap_or("");
        if wanted.contains(array) {
            states.insert(id, st);
        }
    }
    for id in job_ids {
        let text = Command::new("scontrol")
            .args(["-o", "show", "job", id])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        match text {
            Some(t) => {
                for (k, v) in parse_scontrol(&t) {
                    states.entry(k).or_insert(v);
                }
            }
            None => {
                // Aged out of slurmctld: accounting, if the cluster keeps it.
                if let Ok(out) = Command::new("sacct")
                    .args(["-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", id])
                    .stderr(std::process::Stdio::null())
                    .output()
                {
                    if out.status.success() {
                        for (k, v) in parse_sacct(&String::from_utf8_lossy(&out.stdout)) {
                            states.entry(k).or_insert(v);
                        }
                    }
                }
            }
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_states() {
        let s = parse_squeue(
            "4_5|PENDING|Resources\n5_2|PENDING|DependencyNeverSatisfied\n4_0|RUNNING|None\n\n",
        );
        assert_eq!(
            s["4_5"],
            JobState::Pending {
                reason: "Resources".into()
            }
        );
        assert!(!s["5_2"].is_live());
        assert_eq!(s["4_0"], JobState::Running);
    }

    #[test]
    fn scontrol_lines_expand_arrays_and_keep_exit_codes() {
        // Real `scontrol -o show job 4` output of Slurm 22.05 (fields trimmed).
        let text = "JobId=4 ArrayJobId=4 ArrayTaskId=5 JobName=wrap JobState=RUNNING Reason=None ExitCode=0:0\n\
            JobId=9 ArrayJobId=4 ArrayTaskId=2 JobName=wrap JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0\n\
            JobId=7 ArrayJobId=5 ArrayTaskId=2 JobState=CANCELLED Reason=DependencyNeverSatisfied Dependency=aftercorr:4_*(failed) ExitCode=0:0\n\
            JobId=12 ArrayJobId=12 ArrayTaskId=3-4,6%2 JobState=PENDING Reason=Dependency ExitCode=0:0\n\
            JobId=20 JobName=x JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n";
        let s = parse_scontrol(text);
        assert_eq!(s["4_5"], JobState::Running);
        assert_eq!(
            s["4_2"],
            JobState::Failed {
                state: "FAILED".into(),
                exit: Some(1)
            }
        );
        assert_eq!(s["5_2"].describe(), "cancelled (DependencyNeverSatisfied)");
        assert!(s["12_3"].is_live() && s["12_4"].is_live() && s["12_6"].is_live());
        assert!(!s.contains_key("12_5"));
        assert_eq!(s["20"].describe(), "TIMEOUT (exit code 0)");
    }

    #[test]
    fn sacct_rows_and_sbatch_ids() {
        let s = parse_sacct("18|COMPLETED|0:0\n19|FAILED|2:0\n20_1|CANCELLED by 0|0:0\n21_[3-5]|PENDING|0:0\n18.batch|COMPLETED|0:0\n");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s["19"],
            JobState::Failed {
                state: "FAILED".into(),
                exit: Some(2)
            }
        );
        assert!(matches!(s["20_1"], JobState::Cancelled { .. }));
        assert_eq!(parse_sbatch("1234\n").unwrap(), "1234");
        assert_eq!(parse_sbatch("77;ci\n").unwrap(), "77");
        assert!(parse_sbatch("sbatch: error: Batch job submission failed").is_err());
    }
}
