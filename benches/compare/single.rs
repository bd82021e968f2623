//! Workload f: one source connection writing as fast as it can, and the time
//! `replicate` needs to apply the same changes (issue 17's apply/source ratio).
//!
//! A 100,000-row table is copied by a snapshot; then one MariaDB client
//! session commits 2,000 transactions of 60 inserts, 30 updates and 10
//! deletes (one multi-row statement each), timed; then `replicate
//! --until-caught-up` applies the 200,000 changes, timed (process start
//! included). The ratio apply / source is what the target (≤ 0.5) is about.

use std::fmt::Write as _;

use crate::report::{SingleResults, SingleRun};
use crate::tools::snapshot_then_apply;
use crate::{BenchResult, Env};

const BASE_ROWS: u64 = 100_000;
const TXS: u64 = 2_000;

/// The source's workload as one SQL script (deterministic).
fn script() -> String {
    let mut s = String::new();
    for i in 0..TXS {
        s.push_str("BEGIN;\nINSERT INTO t (id, a, b, c) VALUES ");
        for k in 0..60 {
            let id = BASE_ROWS + i * 60 + k + 1;
            let sep = if k == 0 { "" } else { "," };
            let _ = write!(s, "{sep}({id}, {}, 'new row {id}', '2024-01-01 00:00:00.123456')", id % 977);
        }
        s.push_str(";\nUPDATE t SET a = a + 1, b = CONCAT('updated ', id) WHERE id IN (");
        for k in 0..30 {
            let sep = if k == 0 { "" } else { "," };
            let _ = write!(s, "{sep}{}", i * 30 + k + 1);
        }
        s.push_str(");\nDELETE FROM t WHERE id IN (");
        for k in 0..10 {
            let sep = if k == 0 { "" } else { "," };
            let _ = write!(s, "{sep}{}", 60_000 + i * 10 + k + 1);
        }
        s.push_str(");\nCOMMIT;\n");
    }
    s
}

/// Sessions `--apply-workers` gives the second apply of each round.
pub(crate) const PARALLEL_WORKERS: u32 = 2;

fn one_run(env: &Env, run: usize, workers: u32) -> BenchResult<SingleRun> {
    let db = format!("sw_{run}_{workers}");
    let setup = format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(64), c DATETIME(6)); \
         INSERT INTO t SELECT seq, seq % 977, CONCAT('row ', seq), '2024-01-01' + INTERVAL seq SECOND \
         FROM seq_1_to_{BASE_ROWS}"
    );
    let (source_secs, apply_secs, rss_mb) = snapshot_then_apply(
        env,
        &db,
        &format!("sw{run}_{workers}"),
        &setup,
        &script(),
        &["--apply-workers", &workers.to_string()],
    )?;
    let expected = env.mariadb.exec(&format!("SELECT COUNT(*), SUM(a) FROM {db}.t"))?;
    let target = env.pg.exec(&db, &format!("SELECT count(*), sum(a) FROM \"{db}\".t"))?;
    let expected = expected.split_whitespace().collect::<Vec<_>>().join("|");
    if target.trim() != expected {
        return Err(format!("single writer: target holds {target:?}, source {expected:?}").into());
    }
    env.drop_pg_db(&db);
    env.mariadb.exec(&format!("DROP DATABASE {db}"))?;
    eprintln!(
        "    --apply-workers {workers}: source {source_secs:.2}s, apply {apply_secs:.2}s ({:.2}x), peak RSS {rss_mb:.0} MB",
        apply_secs / source_secs
    );
    Ok(SingleRun { source_secs, apply_secs, rss_mb })
}

pub(crate) fn single_writer_workload(env: &Env) -> BenchResult<SingleResults> {
    eprintln!(
        "==> f. single writer: {TXS} transactions of 60 inserts + 30 updates + 10 deletes on one connection"
    );
    // Interleaved: one session, then PARALLEL_WORKERS sessions, each round.
    let mut runs = Vec::new();
    let mut parallel = Vec::new();
    for r in 0..env.opts.runs() {
        runs.push(one_run(env, r, 1)?);
        parallel.push(one_run(env, r, PARALLEL_WORKERS)?);
    }
    Ok(SingleResults { runs, parallel })
}
