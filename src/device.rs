//! Device selection: `--device auto|cpu|cuda:N`.
