//! The worker's side of preemption: `--signal=B:USR1@<lead>` makes the job script forward
//! USR1 to the worker before the time limit. The worker then only raises a flag; a stage that
//! can checkpoint polls [`requested`] at safe points, saves its state in
//! `StageContext::checkpoint_dir` and returns an error, and the job script requeues the job,
//! whose next run resumes from the checkpoint. A stage that never polls simply runs on (USR1
//! no longer kills it) until it finishes or hits the limit.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the USR1 handler (idempotent). Called by `mlvf task run`.
pub fn install() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
}

/// Whether this worker was asked to checkpoint and stop (the job is near its time limit).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error a stage returns after checkpointing on request.
#[derive(Debug, thiserror::Error)]
#[error("stopped at a checkpoint before the Slurm time limit; the requeued job resumes from it")]
pub struct Preempted;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usr1_raises_the_flag_instead_of_killing() {
        install();
        assert!(!requested());
        // SAFETY: signalling ourselves; the handler is installed.
        unsafe {
            libc::raise(libc::SIGUSR1);
        }
        assert!(requested());
    }
}
