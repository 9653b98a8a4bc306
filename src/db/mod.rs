//! SQLite: schema, migrations and ingestion. The controller is the only writer.
//!
//! `<root>/mlvf.sqlite` (WAL, busy timeout) caches what the store's files say: sweeps and their
//! cells, tasks and their specs, attempts, and metrics. Workers never open it; the controller
//! ingests a task's published `DONE.json` and `metrics.jsonl` after it finishes, and
//! `mlvf db rebuild` recreates the whole database from the files.

pub mod rebuild;
pub mod schema;

use crate::store::metrics::MetricRecord;
use crate::store::{layout, now_ms, DoneRecord};
use crate::task::{Plan, StageKind, Task, TaskKey};
use anyhow::{bail, Context};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// How an attempt ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptState {
    /// Started, not yet ended (or its controller died; the next controller marks it `killed`).
    Running,
    Succeeded,
    /// The stage failed or the worker exited non-zero.
    Failed,
    /// Its controller died while it ran.
    Killed,
    /// Stopped by Ctrl-C (or SIGTERM) of the controller.
    Interrupted,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Running => "running",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
            AttemptState::Killed => "killed",
            AttemptState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptState> {
        [
            AttemptState::Running,
            AttemptState::Succeeded,
            AttemptState::Failed,
            AttemptState::Killed,
            AttemptState::Interrupted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One row of `attempts`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    pub task: TaskKey,
    pub attempt: u32,
    pub state: AttemptState,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub job_id: Option<String>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub error_tail: Option<String>,
    pub log_path: Option<String>,
}

/// What the database knows about one task.
#[derive(Clone, Debug, Default)]
pub struct TaskRow {
    pub stage: Option<StageKind>,
    /// The attempt whose result is published, if the task is done.
    pub done_attempt: Option<u32>,
    pub primary_metric: Option<String>,
    /// The newest attempt, if any ran.
    pub last_attempt: Option<AttemptRow>,
}

/// The controller's database.
pub struct Db {
    conn: Connection,
}

/// The spec as stored in `tasks.spec_json` and spec files: the task without its sweep-specific
/// cell indices, so one key has one spec whichever sweep reached it first.
pub fn canonical_spec(task: &Task) -> Task {
    Task {
        cells: Vec::new(),
        ..task.clone()
    }
}

impl Db {
    /// Opens (creating if needed) the database of the store at `root`, migrated to this
    /// build's schema.
    pub fn open(root: &Path) -> anyhow::Result<Db> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating store {}", root.display()))?;
        Db::open_at(&layout::db_path(root))
    }

    /// Opens (creating if needed) the database file at `path`.
    pub fn open_at(path: &Path) -> anyhow::Result<Db> {
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // WAL lets status/results read while the controller writes.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                "{}: journal mode {mode} (WAL unavailable on this filesystem?)",
                path.display()
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn).with_context(|| format!("migrating {}", path.display()))?;
        Ok(Db { conn })
    }

    /// Closes the connection, checkpointing the WAL into the main file.
    pub fn close(self) -> anyhow::Result<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }

    /// Opens an existing database for reading (status, results); never creates one.
    pub fn open_read(root: &Path) -> anyhow::Result<Db> {
        let path = layout::db_path(root);
        if !path.exists() {
            bail!(
                "no database at {} (nothing has run in this store yet; run `mlvf run`, or `mlvf db rebuild` if task dirs exist)",
                path.display()
            );
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != schema::MIGRATIONS.len() as i64 {
            bail!(
                "{} has schema version {version}, this build expects {} (a `mlvf run` migrates it)",
                path.display(),
                schema::MIGRATIONS.len()
            );
        }
        Ok(Db { conn })
    }

    /// The raw connection, for ad-hoc reads (tests, reports).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Records a sweep: its plan, cells, tasks and the links between them. Cheap when the plan
    /// is unchanged since the last registration.
    pub fn register_sweep(&mut self, plan: &Plan) -> anyhow::Result<()> {
        self.register_sweep_json(plan, &serde_json::to_string(plan)?)
    }

    /// [`Db::register_sweep`] with the plan's JSON already at hand.
    pub fn register_sweep_json(&mut self, plan: &Plan, plan_json: &str) -> anyhow::Result<()> {
        let existing: Option<String> = self
            .conn
            .query_row(
                "SELECT plan_json FROM sweeps WHERE name = ?1",
                [&plan.sweep],
                |r| r.get(0),
            )
            .optional()?;
        if existing.as_deref() == Some(plan_json) {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM cell_tasks WHERE sweep = ?1", [&plan.sweep])?;
        tx.execute("DELETE FROM sweep_tasks WHERE sweep = ?1", [&plan.sweep])?;
        tx.execute("DELETE FROM cells WHERE sweep = ?1", [&plan.sweep])?;
        tx.execute(
            "INSERT INTO sweeps (name, manifest, plan_json, registered_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET manifest = excluded.manifest, plan_json = excluded.plan_json,
             registered_ms = excluded.registered_ms",
            params![plan.sweep, plan.manifest.to_string_lossy(), plan_json, now_ms()],
        )?;
        {
            let mut cell =
                tx.prepare("INSERT INTO cells (sweep, idx, axes_json) VALUES (?1, ?2, ?3)")?;
            for (i, c) in plan.cells.iter().enumerate() {
                cell.execute(params![
                    plan.sweep,
                    i as i64,
                    serde_json::to_string(&c.axes)?
                ])?;
            }
            let mut task = tx.prepare(
                "INSERT OR IGNORE INTO tasks (key, stage, version, spec_json) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut link =
                tx.prepare("INSERT OR IGNORE INTO sweep_tasks (sweep, task) VALUES (?1, ?2)")?;
            let mut cell_link = tx.prepare(
                "INSERT OR IGNORE INTO cell_tasks (sweep, cell, task) VALUES (?1, ?2, ?3)",
            )?;
            for t in &plan.tasks {
                task.execute(params![
                    t.key.0,
                    t.stage.as_str(),
                    t.version,
                    serde_json::to_string(&canonical_spec(t))?
                ])?;
                link.execute(params![plan.sweep, t.key.0])?;
                for &c in &t.cells {
                    if c >= plan.cells.len() {
                        bail!(
                            "task {} serves cell {c}, but the plan has {} cells",
                            t.key,
                            plan.cells.len()
                        );
                    }
                    cell_link.execute(params![plan.sweep, c as i64, t.key.0])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Inserts a task row if it is missing (tasks reached only through a spec file).
    pub fn ensure_task(&mut self, task: &Task) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO tasks (key, stage, version, spec_json) VALUES (?1, ?2, ?3, ?4)",
            params![
                task.key.0,
                task.stage.as_str(),
                task.version,
                serde_json::to_string(&canonical_spec(task))?
            ],
        )?;
        Ok(())
    }

    /// Every task, with its done state and newest attempt.
    pub fn task_rows(&self) -> anyhow::Result<HashMap<TaskKey, TaskRow>> {
        let mut out: HashMap<TaskKey, TaskRow> = HashMap::new();
        let mut st = self
            .conn
            .prepare("SELECT key, stage, done_attempt, primary_metric FROM tasks")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<u32>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (key, stage, done_attempt, primary_metric) = row?;
            out.insert(
                TaskKey(key),
                TaskRow {
                    stage: StageKind::parse(&stage),
                    done_attempt,
                    primary_metric,
                    last_attempt: None,
                },
            );
        }
        for a in self.attempts(None)? {
            let entry = out.entry(a.task.clone()).or_default();
            if entry
                .last_attempt
                .as_ref()
                .is_none_or(|b| b.attempt < a.attempt)
            {
                entry.last_attempt = Some(a);
            }
        }
        Ok(out)
    }

    /// Attempts of one task (or all), oldest first.
    pub fn attempts(&self, task: Option<&TaskKey>) -> anyhow::Result<Vec<AttemptRow>> {
        let sql = "SELECT task, attempt, state, host, pid, job_id, started_ms, ended_ms, exit_code, error_tail, log_path
                   FROM attempts WHERE (?1 IS NULL OR task = ?1) ORDER BY task, attempt";
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([task.map(|k| k.0.as_str())], |r| {
            let state: String = r.get(2)?;
            Ok(AttemptRow {
                task: TaskKey(r.get(0)?),
                attempt: r.get(1)?,
                state: AttemptState::parse(&state).unwrap_or(AttemptState::Failed),
                host: r.get(3)?,
                pid: r.get(4)?,
                job_id: r.get(5)?,
                started_ms: r.get(6)?,
                ended_ms: r.get(7)?,
                exit_code: r.get(8)?,
                error_tail: r.get(9)?,
                log_path: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest attempt number recorded for `task` (0 if none).
    pub fn max_attempt(&self, task: &TaskKey) -> anyhow::Result<u32> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(attempt), 0) FROM attempts WHERE task = ?1",
            [&task.0],
            |r| r.get(0),
        )?)
    }

    /// Records that an attempt started.
    pub fn start_attempt(
        &mut self,
        task: &TaskKey,
        attempt: u32,
        host: &str,
        pid: Option<u32>,
        job_id: Option<&str>,
        log_path: &Path,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO attempts (task, attempt, state, host, pid, job_id, started_ms, log_path)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(task, attempt) DO UPDATE SET state = 'running', host = excluded.host, pid = excluded.pid,
               job_id = excluded.job_id, started_ms = excluded.started_ms, ended_ms = NULL, exit_code = NULL,
               error_tail = NULL, log_path = excluded.log_path",
            params![task.0, attempt, host, pid, job_id, now_ms(), log_path.to_string_lossy()],
        )?;
        Ok(())
    }

    /// Records how an attempt ended.
    pub fn end_attempt(
        &mut self,
        task: &TaskKey,
        attempt: u32,
        state: AttemptState,
        exit_code: Option<i32>,
        error_tail: Option<&str>,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE attempts SET state = ?3, ended_ms = ?4, exit_code = ?5, error_tail = ?6 WHERE task = ?1 AND attempt = ?2",
            params![task.0, attempt, state.as_str(), now_ms(), exit_code, error_tail],
        )?;
        Ok(())
    }

    /// Marks attempts left `running` by a dead local controller as `killed`. Call only while
    /// holding the store lock (then no local attempt can be running).
    pub fn mark_orphans_killed(&mut self) -> anyhow::Result<usize> {
        Ok(self.conn.execute(
            "UPDATE attempts SET state = 'killed', ended_ms = ?1,
               error_tail = COALESCE(error_tail, 'the controller stopped while this attempt ran')
             WHERE state = 'running' AND job_id IS NULL",
            [now_ms()],
        )?)
    }

    /// Ingests a published task: marks it done and replaces its metrics with `metrics`.
    pub fn ingest_done(
        &mut self,
        rec: &DoneRecord,
        metrics: &[MetricRecord],
        log_path: Option<&Path>,
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET done_attempt = ?2, done_ms = ?3, primary_metric = ?4 WHERE key = ?1",
            params![rec.key.0, rec.attempt, rec.finished_ms, rec.primary_metric],
        )?;
        if n == 0 {
            bail!(
                "task {} is not in the database; register its sweep first",
                rec.key
            );
        }
        tx.execute("DELETE FROM metrics WHERE task = ?1", [&rec.key.0])?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO metrics (task, seq, name, step, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, m) in metrics.iter().enumerate() {
                let value = if m.value.is_nan() {
                    None
                } else {
                    Some(m.value)
                };
                ins.execute(params![
                    rec.key.0,
                    i as i64,
                    m.name,
                    m.step.map(|s| s as i64),
                    value
                ])?;
            }
        }
        // The attempt that published: recorded as succeeded, even if this controller did not
        // start it (a worker that outlived a killed controller, or a rebuild).
        tx.execute(
            "INSERT INTO attempts (task, attempt, state, host, pid, started_ms, ended_ms, exit_code, log_path)
             VALUES (?1, ?2, 'succeeded', ?3, ?4, ?5, ?6, 0, ?7)
             ON CONFLICT(task, attempt) DO UPDATE SET state = 'succeeded', ended_ms = excluded.ended_ms,
               exit_code = 0, error_tail = NULL",
            params![
                rec.key.0,
                rec.attempt,
                rec.host,
                rec.pid,
                rec.started_ms,
                rec.finished_ms,
                log_path.map(|p| p.to_string_lossy().into_owned())
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets that a task is done (its published result no longer verifies).
    pub fn forget_done(&mut self, task: &TaskKey) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE tasks SET done_attempt = NULL, done_ms = NULL, primary_metric = NULL WHERE key = ?1",
            [&task.0],
        )?;
        tx.execute("DELETE FROM metrics WHERE task = ?1", [&task.0])?;
        tx.commit()?;
        Ok(())
    }

    /// Final metrics (step = null) of done tasks, by task, in recording order. NaN comes back
    /// as NaN.
    pub fn final_metrics(&self) -> anyhow::Result<HashMap<TaskKey, Vec<(String, f64)>>> {
        let mut st = self.conn.prepare(
            "SELECT m.task, m.name, m.value FROM metrics m JOIN tasks t ON t.key = m.task
             WHERE m.step IS NULL AND t.done_attempt IS NOT NULL ORDER BY m.task, m.seq",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<f64>>(2)?,
            ))
        })?;
        let mut out: HashMap<TaskKey, Vec<(String, f64)>> = HashMap::new();
        for row in rows {
            let (task, name, value) = row?;
            out.entry(TaskKey(task))
                .or_default()
                .push((name, value.unwrap_or(f64::NAN)));
        }
        Ok(out)
    }

    /// The recorded plan of sweep `name`, if registered.
    pub fn sweep_plan(&self, name: &str) -> anyhow::Result<Option<Plan>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT plan_json FROM sweeps WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| serde_json::from_str(&j).context("a sweep's plan_json does not parse"))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Cell;

    pub(crate) fn tiny_plan() -> Plan {
        let task = |k: &str, stage, deps: Vec<&str>| Task {
            key: TaskKey(k.repeat(64 / k.len())),
            stage,
            version: 1,
            config: serde_json::json!({"k": k}),
            deps: deps
                .into_iter()
                .map(|d| TaskKey(d.repeat(64 / d.len())))
                .collect(),
            cells: vec![0],
            axes: Default::default(),
            runtime: Default::default(),
        };
        Plan {
            sweep: "tiny".into(),
            manifest: "tiny.toml".into(),
            store: "store".into(),
            cells: vec![Cell {
                axes: [("fusion".to_string(), serde_json::json!("E_D"))].into(),
            }],
            tasks: vec![
                task("a", StageKind::Prepare, vec![]),
                task("b", StageKind::Eval, vec!["a"]),
            ],
            tables: vec![],
            executor: Default::default(),
        }
    }

    #[test]
    fn migrations_apply_once_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open(dir.path()).unwrap());
        let db = Db::open(dir.path()).unwrap();
        let v: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::MIGRATIONS.len() as i64);
        db.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        let err = Db::open(dir.path()).err().unwrap();
        assert!(
            format!("{err:#}").contains("newer than this build"),
            "{err:#}"
        );
    }

    #[test]
    fn ingest_and_forget_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path()).unwrap();
        let plan = tiny_plan();
        db.register_sweep(&plan).unwrap();
        db.register_sweep(&plan).unwrap();
        let key = plan.tasks[1].key.clone();
        let rec = DoneRecord {
            format: 1,
            stage: StageKind::Eval,
            key: key.clone(),
            version: 1,
            attempt: 2,
            host: "h".into(),
            pid: 7,
            started_ms: 1,
            finished_ms: 2,
            outputs: vec![],
            metric_count: 2,
            final_metrics: vec![],
            primary_metric: Some("acc".into()),
        };
        let metrics = vec![
            MetricRecord {
                name: "loss".into(),
                step: Some(1),
                value: 2.0,
            },
            MetricRecord {
                name: "acc".into(),
                step: None,
                value: f64::NAN,
            },
        ];
        db.ingest_done(&rec, &metrics, None).unwrap();
        let rows = db.task_rows().unwrap();
        assert_eq!(rows[&key].done_attempt, Some(2));
        assert_eq!(
            rows[&key].last_attempt.as_ref().unwrap().state,
            AttemptState::Succeeded
        );
        let fm = db.final_metrics().unwrap();
        assert_eq!(fm[&key].len(), 1);
        assert!(fm[&key][0].1.is_nan());
        db.forget_done(&key).unwrap();
        assert!(db.final_metrics().unwrap().is_empty());
        assert_eq!(db.task_rows().unwrap()[&key].done_attempt, None);
    }
}
