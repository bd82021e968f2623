//! Workload g: through NATS JetStream. The follow workload (b) and the paced
//! latency workload (c) run once directly (MariaDB → PostgreSQL) and once
//! through a private `nats-server -js` (MariaDB → publisher → JetStream →
//! applier → PostgreSQL), on the same servers.

use std::time::{Duration, Instant};

use crate::follow::{
    follow_txs, follow_writer, prepare_follow_source, run_synchdb_follow, source_digest, FOLLOW_DB,
};
use crate::latency::{
    paced_writer, percentile, poll_max_id, prepare_latency_source, run_synchdb_latency, sorted_lags_ms,
    LATENCY_DB, LAT_TX_CHANGES,
};
use crate::report::{NatsResults, NatsRun};
use crate::tools::*;
use crate::{BenchResult, Env, Watched};
use synchdb_testkit::NatsServer;

/// The last source position the stream holds (`Synchdb-Position` of its last message).
async fn stream_position(url: &str, stream: &str) -> BenchResult<Option<(String, u64)>> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await?;
    let last = s.info().await?.state.last_sequence;
    if last == 0 {
        return Ok(None);
    }
    let m = s.get_raw_message(last).await?;
    let pos = m.headers.get("Synchdb-Position").map(|v| v.as_str().to_string());
    Ok(pos.and_then(|p| {
        let p: synchdb::types::Position = p.parse().ok()?;
        Some((p.binlog.file, p.binlog.pos))
    }))
}

fn pos_reached(have: &(String, u64), want: &(String, u64)) -> bool {
    let n = |f: &str| f.rsplit('.').next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (n(&have.0), have.1) >= (n(&want.0), want.1)
}

/// Publisher and applier processes for `database` through `nats`.
fn start_pair(
    env: &Env,
    nats: &NatsServer,
    stream: &str,
    database: &str,
    db: &str,
    tag: &str,
) -> BenchResult<(Watched, Watched)> {
    let url = format!("{}/{stream}", nats.url());
    let mut publish = env.replicate(db, database, &format!("{tag}_pub"));
    publish
        .env("SYNCHDB_TARGET_URL", &url)
        .stdout(log_file(env, &format!("{tag}_pub.out"))?)
        .stderr(log_file(env, &format!("{tag}_pub.err"))?);
    let mut apply = env.replicate(db, database, &format!("{tag}_app"));
    apply
        .env("SYNCHDB_SOURCE_URL", &url)
        .stdout(log_file(env, &format!("{tag}_app.out"))?)
        .stderr(log_file(env, &format!("{tag}_app.err"))?);
    Ok((Watched::spawn(&mut publish)?, Watched::spawn(&mut apply)?))
}

async fn wait_digest(
    url: &str,
    want: &str,
    timeout: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> BenchResult<Instant> {
    let started = Instant::now();
    loop {
        if let Ok(got) = crate::follow::target_digest_url(url).await {
            if got == want {
                return Ok(Instant::now());
            }
        }
        if !alive() {
            return Err("a replicate process exited".into());
        }
        if started.elapsed() > timeout {
            return Err(format!("target did not reach {want} in {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn nats_follow(env: &Env, r: usize) -> BenchResult<NatsRun> {
    prepare_follow_source(env)?;
    let nats = NatsServer::start()?;
    let db = format!("nfol_{r}");
    env.fresh_pg_db(&db)?;
    let (mut publish, mut apply) = start_pair(env, &nats, "BENCH", FOLLOW_DB, &db, &format!("nfol{r}"))?;
    let url = env.pg.url_for(&db);
    let want0 = source_digest(env)?;
    env.rt.block_on(wait_digest(&url, &want0, Duration::from_secs(300), &mut || {
        matches!(publish.child.try_wait(), Ok(None)) && matches!(apply.child.try_wait(), Ok(None))
    }))?;
    let txs = follow_txs(env);
    let changes = txs * env.opts.writers as u64 * 100;
    let t0 = Instant::now();
    env.rt.block_on(follow_writer(env.mariadb.url_for(FOLLOW_DB), env.opts.writers, txs))?;
    let t1 = Instant::now();
    let end = env.master_pos()?;
    let want = source_digest(env)?;
    let nats_url = nats.url();
    let (t_pub, t_apply) = env.rt.block_on(async {
        let mut t_pub = None;
        loop {
            if t_pub.is_none() {
                if let Some(p) = stream_position(&nats_url, "BENCH").await? {
                    if pos_reached(&p, &end) {
                        t_pub = Some(Instant::now());
                    }
                }
            }
            if crate::follow::target_digest_url(&url).await.ok().as_deref() == Some(want.as_str()) {
                let now = Instant::now();
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>((t_pub.unwrap_or(now), now));
            }
            if t0.elapsed() > Duration::from_secs(1800) {
                return Err("through NATS: not applied in 30 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let (_, pub_rss) = publish.interrupt_and_wait()?;
    let (_, app_rss) = apply.interrupt_and_wait()?;
    env.drop_pg_db(&db);
    Ok(NatsRun {
        changes,
        write_secs: (t1 - t0).as_secs_f64(),
        publish_secs: (t_pub - t0).as_secs_f64(),
        apply_secs: (t_apply - t0).as_secs_f64(),
        publisher_rss_mb: pub_rss,
        applier_rss_mb: app_rss,
        ..Default::default()
    })
}

fn nats_latency(env: &Env, r: usize) -> BenchResult<(f64, f64, f64)> {
    prepare_latency_source(env)?;
    let nats = NatsServer::start()?;
    let db = format!("nlat_{r}");
    env.fresh_pg_db(&db)?;
    let (publish, apply) = start_pair(env, &nats, "LAT", LATENCY_DB, &db, &format!("nlat{r}"))?;
    let url = env.pg.url_for(&db);
    // Caught up: the initial rows are on the target.
    env.rt.block_on(async {
        let started = Instant::now();
        loop {
            let n = env.pg.exec(&db, &format!("SELECT count(*) FROM {LATENCY_DB}.l")).unwrap_or_default();
            if n.trim() == crate::latency::LAT_INS.to_string() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                    "latency through NATS: no snapshot".into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })?;
    let tx_per_sec = env.opts.latency_rate as f64 / LAT_TX_CHANGES as f64;
    let txs = (tx_per_sec * env.opts.latency_secs() as f64).round() as u64;
    let (commits, seen, write_secs) = env.rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(0i64);
        let poller =
            tokio::spawn(poll_max_id(url.clone(), Duration::from_millis(2), rx, Duration::from_secs(60)));
        let started = Instant::now();
        let commits = paced_writer(env.mariadb.url_for(LATENCY_DB), tx_per_sec, txs).await?;
        let write_secs = started.elapsed().as_secs_f64();
        let _ = tx.send(commits.last().map(|c| c.0).unwrap_or(0));
        let seen = poller.await??;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((commits, seen, write_secs))
    })?;
    let _ = publish.interrupt_and_wait()?;
    let _ = apply.interrupt_and_wait()?;
    let lags = sorted_lags_ms(&commits, &seen);
    env.drop_pg_db(&db);
    Ok((txs as f64 * LAT_TX_CHANGES as f64 / write_secs, percentile(&lags, 0.5), percentile(&lags, 0.99)))
}

pub(crate) fn nats_workload(env: &Env) -> BenchResult<NatsResults> {
    let mut res = NatsResults { latency_rate: env.opts.latency_rate, ..Default::default() };
    for r in 0..env.opts.runs() {
        eprintln!(
            "==> nats run {}/{}: follow workload direct, then through JetStream",
            r + 1,
            env.opts.runs()
        );
        let direct = run_synchdb_follow(env, 100 + r)?;
        let mut n = nats_follow(env, r)?;
        n.direct_apply_secs = direct.apply_secs;
        let d = run_synchdb_latency(env, 100 + r)?;
        n.direct_p50_ms = d.p50_ms;
        n.direct_p99_ms = d.p99_ms;
        let (rate, p50, p99) = nats_latency(env, r)?;
        n.latency_achieved = rate;
        n.p50_ms = p50;
        n.p99_ms = p99;
        eprintln!(
            "    {} changes: published in {:.1}s ({:.0}/s), applied through NATS in {:.1}s ({:.0}/s), direct {:.1}s ({:.0}/s); \
             latency at {:.0}/s p50 {:.1} ms p99 {:.1} ms (direct {:.1} / {:.1} ms)",
            n.changes,
            n.publish_secs,
            n.changes as f64 / n.publish_secs,
            n.apply_secs,
            n.changes as f64 / n.apply_secs,
            n.direct_apply_secs,
            n.changes as f64 / n.direct_apply_secs,
            rate,
            p50,
            p99,
            n.direct_p50_ms,
            n.direct_p99_ms
        );
        res.runs.push(n);
    }
    Ok(res)
}
