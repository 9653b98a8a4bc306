//! Task directories, atomic publish, DONE records with checksums, locks and gc.
//!
//! The files under a store root are the truth: a task is done exactly when its published
//! directory holds a `DONE.json` that verifies ([`done::verify`]). The database is a cache of
//! them that `mlvf db rebuild` can recreate.

pub mod done;
pub mod gc;
pub mod layout;
pub mod lock;
pub mod metrics;
pub mod publish;
pub mod spec;
pub mod sweeps;

pub use done::{DoneRecord, OutputFile, VerifyLevel};
pub use lock::StoreLock;
pub use metrics::MetricRecord;

/// Milliseconds since the Unix epoch: the one time format of DONE records and the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// This machine's host name (for attempt records and lock messages); "unknown" if unavailable.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
