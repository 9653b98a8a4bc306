//! Task directories, atomic publish, DONE records with checksums, locks and gc.

pub mod layout;
