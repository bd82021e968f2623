//! Workload c: follow latency under a paced writer.

use std::fs::File;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::report::{LatencyResults, LatencyRun};
use crate::tools::*;
use crate::{BenchResult, Env, Watched};

pub(crate) const LATENCY_DB: &str = "lbench";

pub(crate) const LAT_INS: u64 = 12;
pub(crate) const LAT_UPD: u64 = 6;
pub(crate) const LAT_DEL: u64 = 2;
pub(crate) const LAT_TX_CHANGES: u64 = LAT_INS + LAT_UPD + LAT_DEL;

pub(crate) fn prepare_latency_source(env: &Env) -> BenchResult<()> {
    env.mariadb.exec(&format!(
        "SET SESSION sql_log_bin = 0;
         DROP DATABASE IF EXISTS {LATENCY_DB};
         CREATE DATABASE {LATENCY_DB} CHARACTER SET utf8mb4;
         USE {LATENCY_DB};
         CREATE TABLE {LATENCY_DB}.l (id BIGINT NOT NULL PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), ts DATETIME(6))
           ENGINE=InnoDB;
         INSERT INTO {LATENCY_DB}.l SELECT seq, seq, CONCAT('v', seq), NOW(6) FROM seq_1_to_{LAT_INS};"
    ))?;
    Ok(())
}

/// The paced writer: one connection, `tx_per_sec` transactions of 12
/// inserts, 6 updates and 2 deletes. Returns (max id of the transaction,
/// when its COMMIT returned).
pub(crate) async fn paced_writer(url: String, tx_per_sec: f64, txs: u64) -> BenchResult<Vec<(i64, Instant)>> {
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url)?).await?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / tx_per_sec));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut commits = Vec::with_capacity(txs as usize);
    for i in 1..=txs {
        ticker.tick().await;
        let lo = LAT_INS * i + 1;
        let plo = LAT_INS * (i - 1) + 1;
        conn.query_drop(format!(
            "START TRANSACTION;
             INSERT INTO {LATENCY_DB}.l (id, k, v, ts) SELECT {lo} + seq, seq, CONCAT('v', {lo} + seq), NOW(6)
               FROM seq_0_to_{};
             UPDATE {LATENCY_DB}.l SET k = k + 1, ts = NOW(6) WHERE id BETWEEN {plo} AND {};
             DELETE FROM {LATENCY_DB}.l WHERE id BETWEEN {} AND {};
             COMMIT",
            LAT_INS - 1,
            plo + LAT_UPD - 1,
            plo + LAT_UPD,
            plo + LAT_UPD + LAT_DEL - 1
        ))
        .await?;
        commits.push(((lo + LAT_INS - 1) as i64, Instant::now()));
    }
    conn.disconnect().await?;
    Ok(commits)
}

/// Poll the target's max(id) every `every`; record (when seen, max id) on change.
pub(crate) async fn poll_max_id(
    url: String,
    every: Duration,
    last_id: tokio::sync::watch::Receiver<i64>,
    deadline_after_last: Duration,
) -> BenchResult<Vec<(Instant, i64)>> {
    let mut conn = PgConnection::connect(&url).await?;
    let mut seen = Vec::new();
    let mut cur = i64::MIN;
    let mut last_set: Option<Instant> = None;
    loop {
        let m: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COALESCE(max(id), 0)::int8 FROM {LATENCY_DB}.l"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
        let now = Instant::now();
        if m != cur {
            cur = m;
            seen.push((now, m));
        }
        let target = *last_id.borrow();
        if target > 0 {
            if cur >= target {
                return Ok(seen);
            }
            let since = *last_set.get_or_insert(now);
            if since.elapsed() > deadline_after_last {
                return Err(format!("target stuck at id {cur}, expected {target}").into());
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Each transaction's lag (its COMMIT on the source to the first poll that
/// saw its rows on the target), in ms, sorted.
pub(crate) fn sorted_lags_ms(commits: &[(i64, Instant)], seen: &[(Instant, i64)]) -> Vec<f64> {
    let mut lags: Vec<f64> = commits
        .iter()
        .map(|(id, committed)| {
            let i = seen.partition_point(|(_, m)| *m < *id);
            let (applied, _) = seen.get(i).copied().unwrap_or((Instant::now(), 0));
            applied.saturating_duration_since(*committed).as_secs_f64() * 1000.0
        })
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
    lags
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// `lag p50 X ms p99 Y ms` from replicate's summary line.
pub(crate) fn summary_lag(out: &str) -> (Option<f64>, Option<f64>) {
    let find = |key: &str| {
        out.split(key).nth(1).and_then(|s| s.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok())
    };
    (find("lag p50 "), find(" p99 "))
}

pub(crate) fn run_synchdb_latency(env: &Env, r: usize) -> BenchResult<LatencyRun> {
    prepare_latency_source(env)?;
    let db = format!("lat_{r}");
    let pipeline = format!("lat_{r}");
    env.fresh_pg_db(&db)?;
    let out_path = env.work.path().join(format!("synchdb_latency_{r}.out"));
    let mut cmd = env.replicate(&db, LATENCY_DB, &pipeline);
    cmd.stdout(File::create(&out_path)?).stderr(log_file(env, &format!("synchdb_latency_{r}.err"))?);
    let mut w = Watched::spawn(&mut cmd)?;
    wait_caught_up(env, &mut w, &db, &pipeline, Duration::from_secs(120))?;
    let tx_per_sec = env.opts.latency_rate as f64 / LAT_TX_CHANGES as f64;
    let txs = (tx_per_sec * env.opts.latency_secs() as f64).round() as u64;
    let url = env.pg.url_for(&db);
    let poll_every = Duration::from_millis(2);
    let (commits, seen, write_secs) = env.rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(0i64);
        let poller = tokio::spawn(poll_max_id(url.clone(), poll_every, rx, Duration::from_secs(60)));
        let started = Instant::now();
        let commits = paced_writer(env.mariadb.url_for(LATENCY_DB), tx_per_sec, txs).await?;
        let write_secs = started.elapsed().as_secs_f64();
        let _ = tx.send(commits.last().map(|c| c.0).unwrap_or(0));
        let seen = poller.await??;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((commits, seen, write_secs))
    })?;
    let (_, rss) = w.interrupt_and_wait()?;
    let lags = sorted_lags_ms(&commits, &seen);
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let (sp50, sp99) = summary_lag(&out);
    env.drop_pg_db(&db);
    Ok(LatencyRun {
        rate: txs as f64 * LAT_TX_CHANGES as f64 / write_secs,
        seconds: write_secs,
        p50_ms: percentile(&lags, 0.50),
        p99_ms: percentile(&lags, 0.99),
        max_ms: lags.last().copied().unwrap_or(f64::NAN),
        samples: lags.len(),
        summary_p50_ms: sp50,
        summary_p99_ms: sp99,
        rss_mb: rss,
    })
}

pub(crate) fn latency_workload(env: &Env) -> BenchResult<LatencyResults> {
    let mut res = LatencyResults {
        target_rate: env.opts.latency_rate,
        seconds: env.opts.latency_secs(),
        ..Default::default()
    };
    for r in 0..env.opts.runs() {
        eprintln!(
            "==> latency run {}/{}: {} changes/s for {}s",
            r + 1,
            env.opts.runs(),
            res.target_rate,
            res.seconds
        );
        let l = run_synchdb_latency(env, r)?;
        eprintln!(
            "    achieved {:.0} changes/s; lag p50 {:.1} ms p99 {:.1} ms max {:.1} ms; replicate's own p50/p99 {:?}/{:?} ms; peak RSS {:.0} MB",
            l.rate, l.p50_ms, l.p99_ms, l.max_ms, l.summary_p50_ms, l.summary_p99_ms, l.rss_mb
        );
        res.synchdb.push(l);
    }
    Ok(res)
}
