//! Errors the library hands up to whoever runs it.

/// An error the user can fix (bad manifest, bad flag, unknown task): the command line prints it
/// without a backtrace, exits with code 2, and nothing is written. Library code (the planner, the
/// executors) raises it; it lives here, below them, so they need not import the command line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);
