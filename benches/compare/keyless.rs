//! Workload e: updates and deletes on a table without a key, against the
//! same changes on the same table with a primary key, at two table sizes.
//!
//! Per size N: a log table of N rows (`ts`, `lvl`, `msg`, `n` with 60 rows per
//! value of `n`), copied by a snapshot; then MariaDB runs two statements
//! (3,000 rows updated, 1,980 deleted) and `replicate --until-caught-up`
//! applies them. The number of changes does not depend on N, so a flat
//! apply time means the cost does not grow with the table. The keyless table
//! runs twice: with its own index on the replica (the default) and with
//! `--no-keyless-index` (one pass over the table per run of changes).

use crate::report::{KeylessResults, KeylessRun};
use crate::tools::snapshot_then_apply;
use crate::{BenchResult, Env};

/// One run; `own_index`: the keyless table gets its own index on the replica
/// (the default; `false` runs `replicate --no-keyless-index`, the earlier way).
fn one_run(env: &Env, keyed: bool, own_index: bool, rows: u64, run: usize) -> BenchResult<KeylessRun> {
    let kind = match (keyed, own_index) {
        (true, _) => "keyed",
        (false, true) => "keyless",
        (false, false) => "keyless_noindex",
    };
    let db = format!("kl_{kind}_{rows}_{run}");
    let groups = rows / 60;
    let id = if keyed { "id BIGINT AUTO_INCREMENT PRIMARY KEY, " } else { "" };
    let setup = format!(
        "CREATE TABLE log ({id}ts DATETIME(6), lvl VARCHAR(8), msg VARCHAR(200), n INT); \
         INSERT INTO log (ts, lvl, msg, n) SELECT '2024-01-01' + INTERVAL seq SECOND, \
         IF(seq % 10 = 0, 'WARN', 'INFO'), CONCAT('message ', seq % 1000), seq % {groups} FROM seq_1_to_{rows}"
    );
    let work =
        format!("UPDATE log SET lvl = 'ERROR' WHERE n < 50; DELETE FROM log WHERE n >= {}", groups - 33);
    let (source_secs, apply_secs, rss_mb) = snapshot_then_apply(
        env,
        &db,
        &format!("kl{run}"),
        &setup,
        &work,
        if own_index { &[] } else { &["--no-keyless-index"] },
    )?;
    let target =
        env.pg.exec(&db, &format!("SELECT count(*), sum((lvl = 'ERROR')::int) FROM \"{db}\".log"))?;
    let expected = format!("{}|3000", rows - 33 * 60);
    if target.trim() != expected {
        return Err(format!("{kind} {rows}: target holds {target:?}, expected {expected}").into());
    }
    env.drop_pg_db(&db);
    env.mariadb.exec(&format!("DROP DATABASE {db}"))?;
    eprintln!(
        "    {kind} {rows} rows: source {source_secs:.2}s, apply {apply_secs:.2}s, peak RSS {rss_mb:.0} MB"
    );
    Ok(KeylessRun { keyed, own_index, rows, source_secs, apply_secs, rss_mb })
}

pub(crate) fn keyless_workload(env: &Env) -> BenchResult<KeylessResults> {
    let big = env.opts.keyless_rows();
    let sizes = [big / 10, big];
    eprintln!("==> e. keyless apply: 3000 updates + 1980 deletes on tables of {sizes:?} rows, with and without a key");
    let mut runs = Vec::new();
    for run in 0..env.opts.runs() {
        for &rows in &sizes {
            for (keyed, own_index) in [(false, true), (false, false), (true, true)] {
                runs.push(one_run(env, keyed, own_index, rows, run)?);
            }
        }
    }
    Ok(KeylessResults { sizes: sizes.to_vec(), runs })
}
