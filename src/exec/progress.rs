//! Progress display for the controller: one overall bar and a line of per-stage counts, drawn
//! on stderr only when it is a terminal (logs and CI output stay clean).

use crate::task::StageKind;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;

#[derive(Default, Clone, Copy)]
struct Counts {
    total: u64,
    done: u64,
    running: u64,
    failed: u64,
}

/// The controller's progress bars.
pub struct Progress {
    _multi: MultiProgress,
    overall: ProgressBar,
    stages_line: ProgressBar,
    counts: BTreeMap<StageKind, Counts>,
}

impl Progress {
    /// Bars for `totals` tasks per stage; hidden unless `enabled` and stderr is a terminal.
    pub fn new(totals: &BTreeMap<StageKind, u64>, enabled: bool) -> Progress {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let total = totals.values().sum();
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} tasks {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let stages_line = multi.add(ProgressBar::new_spinner());
        stages_line.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        let counts = totals
            .iter()
            .map(|(&k, &n)| {
                (
                    k,
                    Counts {
                        total: n,
                        ..Counts::default()
                    },
                )
            })
            .collect();
        let p = Progress {
            _multi: multi,
            overall,
            stages_line,
            counts,
        };
        p.redraw();
        p
    }

    fn redraw(&self) {
        let line = self
            .counts
            .iter()
            .map(|(k, c)| {
                let mut s = format!("{k} {}/{}", c.done, c.total);
                if c.running > 0 {
                    s.push_str(&format!(" ({} running)", c.running));
                }
                if c.failed > 0 {
                    s.push_str(&format!(" ({} failed)", c.failed));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(" · ");
        self.stages_line.set_message(line);
    }

    fn with(&mut self, stage: StageKind, f: impl FnOnce(&mut Counts)) {
        f(self.counts.entry(stage).or_default());
        self.redraw();
    }

    /// A task found already done.
    pub fn cached(&mut self, stage: StageKind) {
        self.overall.inc(1);
        self.with(stage, |c| c.done += 1);
    }

    /// A task's attempt started.
    pub fn started(&mut self, stage: StageKind) {
        self.with(stage, |c| c.running += 1);
    }

    /// A task's attempt ended; `ok` if it published, `final_failure` if it will not be retried.
    pub fn finished(&mut self, stage: StageKind, ok: bool, final_failure: bool) {
        if ok || final_failure {
            self.overall.inc(1);
        }
        self.with(stage, |c| {
            c.running = c.running.saturating_sub(1);
            if ok {
                c.done += 1;
            } else if final_failure {
                c.failed += 1;
            }
        });
    }

    /// Tasks that will not run because a dependency failed.
    pub fn blocked(&mut self, n: u64) {
        self.overall.inc(n);
    }

    /// Prints a line above the bars (or plainly when they are hidden).
    pub fn println(&self, line: &str) {
        if self.overall.is_hidden() {
            eprintln!("{line}");
        } else {
            self.overall.println(line);
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.stages_line.finish_and_clear();
        self.overall.finish_and_clear();
    }
}
