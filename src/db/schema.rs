//! The database schema, as numbered migrations. `PRAGMA user_version` holds how many have been
//! applied; [`migrate`] applies the rest in one `BEGIN IMMEDIATE` transaction, so two processes
//! opening a fresh database cannot both migrate it.

use anyhow::{bail, Context};
use rusqlite::{Connection, TransactionBehavior};

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only; never edit one
/// that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE sweeps (
        name          TEXT PRIMARY KEY,
        manifest      TEXT NOT NULL,
        plan_json     TEXT NOT NULL,
        registered_ms INTEGER NOT NULL
    );
    CREATE TABLE cells (
        sweep     TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,
        idx       INTEGER NOT NULL,
        axes_json TEXT NOT NULL,
        PRIMARY KEY (sweep, idx)
    );
    CREATE TABLE tasks (
        key            TEXT PRIMARY KEY,
        stage          TEXT NOT NULL,
        version        INTEGER NOT NULL,
        spec_json      TEXT NOT NULL,
        done_attempt   INTEGER,
        done_ms        INTEGER,
        primary_metric TEXT
    );
    CREATE TABLE sweep_tasks (
        sweep TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,
        task  TEXT NOT NULL REFERENCES tasks(key),
        PRIMARY KEY (sweep, task)
    );
    CREATE TABLE cell_tasks (
        sweep TEXT NOT NULL,
        cell  INTEGER NOT NULL,
        task  TEXT NOT NULL REFERENCES tasks(key),
        PRIMARY KEY (sweep, cell, task),
        FOREIGN KEY (sweep, cell) REFERENCES cells(sweep, idx) ON DELETE CASCADE
    );
    CREATE TABLE attempts (
        task       TEXT NOT NULL REFERENCES tasks(key),
        attempt    INTEGER NOT NULL,
        state      TEXT NOT NULL,
        host       TEXT,
        pid        INTEGER,
        job_id     TEXT,
        started_ms INTEGER,
        ended_ms   INTEGER,
        exit_code  INTEGER,
        error_tail TEXT,
        log_path   TEXT,
        PRIMARY KEY (task, attempt)
    );
    CREATE TABLE metrics (
        task  TEXT NOT NULL REFERENCES tasks(key),
        seq   INTEGER NOT NULL,
        name  TEXT NOT NULL,
        step  INTEGER,
        value REAL,
        PRIMARY KEY (task, seq)
    );
    CREATE INDEX metrics_by_name ON metrics(name, task);
    CREATE VIEW final_metrics AS SELECT task, name, value FROM metrics WHERE step IS NULL;
    "#,
];

/// Applies the missing migrations. A database newer than this build is refused.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let target = MIGRATIONS.len() as i64;
    if version > target {
        bail!(
            "the database has schema version {version}, newer than this build's {target}; use a newer mlvf (or `mlvf db rebuild`)"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .with_context(|| format!("applying database migration {}", i + 1))?;
    }
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    Ok(())
}
