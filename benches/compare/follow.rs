//! Workload b: follow throughput, against pg_chameleon.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqlx::PgConnection;

use crate::report::{FollowResults, FollowRun};
use crate::tools::*;
use crate::{BenchResult, Env, Watched};

pub(crate) const FOLLOW_DB: &str = "fbench";
pub(crate) fn prepare_follow_source(env: &Env) -> BenchResult<()> {
    let mut sql = format!(
        "SET SESSION sql_log_bin = 0;
         DROP DATABASE IF EXISTS {FOLLOW_DB};
         CREATE DATABASE {FOLLOW_DB} CHARACTER SET utf8mb4;
         USE {FOLLOW_DB};
         CREATE TABLE {FOLLOW_DB}.f (id BIGINT NOT NULL PRIMARY KEY, k INT NOT NULL, v VARCHAR(64) NOT NULL,
           amount DECIMAL(12,2) NOT NULL, ts DATETIME(6) NOT NULL, note VARCHAR(255), KEY idx_k (k)) ENGINE=InnoDB;
         INSERT INTO {FOLLOW_DB}.f SELECT seq, seq % 1000, CONCAT('v', seq), seq / 100, NOW(6), RPAD('n', 100, 'x')
           FROM seq_1_to_100000;"
    );
    for w in 0..env.opts.writers {
        let base = (w as u64 + 1) * 1_000_000_000;
        sql.push_str(&format!(
            "INSERT INTO {FOLLOW_DB}.f SELECT {base} + 1 + seq, seq % 1000, CONCAT('v', seq), seq / 10, NOW(6),
               'inserted row with some payload text' FROM seq_0_to_59;"
        ));
    }
    env.mariadb.exec(&sql)?;
    Ok(())
}

/// Transactions per writer so that writers x tx x 100 = the requested changes.
pub(crate) fn follow_txs(env: &Env) -> u64 {
    (env.opts.changes() / 100 / env.opts.writers as u64).max(1)
}

/// Run the write workload: each writer commits `txs` transactions of 60
/// inserts, 30 updates and 10 deletes, as fast as MariaDB takes them.
pub(crate) async fn follow_writer(url: String, writers: usize, txs: u64) -> BenchResult<()> {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..writers {
        let url = url.clone();
        set.spawn(async move {
            let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url)?).await?;
            let base = (w as u64 + 1) * 1_000_000_000;
            for i in 1..=txs {
                let lo = base + 60 * i + 1;
                let plo = base + 60 * (i - 1) + 1;
                conn.query_drop(format!(
                    "START TRANSACTION;
                     INSERT INTO {FOLLOW_DB}.f (id, k, v, amount, ts, note) SELECT {lo} + seq, seq % 1000,
                       CONCAT('v', {lo} + seq), seq / 10, NOW(6), 'inserted row with some payload text' FROM seq_0_to_59;
                     UPDATE {FOLLOW_DB}.f SET k = k + 1, amount = amount + 1, ts = NOW(6), v = CONCAT('u', id)
                       WHERE id BETWEEN {plo} AND {};
                     DELETE FROM {FOLLOW_DB}.f WHERE id BETWEEN {} AND {};
                     COMMIT",
                    plo + 29,
                    plo + 30,
                    plo + 39
                ))
                .await?;
            }
            conn.disconnect().await?;
            Ok::<(), mysql_async::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// (count, sum(k), sum(amount)) of the follow table on MariaDB.
pub(crate) fn source_digest(env: &Env) -> BenchResult<String> {
    let s = env.mariadb.exec(&format!("SELECT COUNT(*), SUM(k), SUM(amount) FROM {FOLLOW_DB}.f"))?;
    Ok(s.split_whitespace().collect::<Vec<_>>().join("|"))
}

pub(crate) async fn target_digest(conn: &mut PgConnection) -> Option<String> {
    let row: (i64, Option<String>, Option<String>) =
        sqlx::query_as("SELECT count(*), sum(k)::text, sum(amount)::text FROM fbench.f")
            .fetch_one(&mut *conn)
            .await
            .ok()?;
    Some(format!("{}|{}|{}", row.0, row.1.unwrap_or_default(), row.2.unwrap_or_default()))
}

pub(crate) fn run_synchdb_follow(env: &Env, r: usize) -> BenchResult<FollowRun> {
    prepare_follow_source(env)?;
    let db = format!("fol_{r}");
    let pipeline = format!("fol_{r}");
    env.fresh_pg_db(&db)?;
    let mut cmd = env.replicate(&db, FOLLOW_DB, &pipeline);
    cmd.stdout(log_file(env, &format!("synchdb_follow_{r}.out"))?)
        .stderr(log_file(env, &format!("synchdb_follow_{r}.err"))?);
    let mut w = Watched::spawn(&mut cmd)?;
    wait_caught_up(env, &mut w, &db, &pipeline, Duration::from_secs(300))?;
    let perf = if r == 0 { perf_attach(env, w.pid(), "follow") } else { Vec::new() };
    let txs = follow_txs(env);
    let changes = txs * env.opts.writers as u64 * 100;
    let t0 = Instant::now();
    env.rt.block_on(follow_writer(env.mariadb.url_for(FOLLOW_DB), env.opts.writers, txs))?;
    let t1 = Instant::now();
    let end = env.master_pos()?;
    let url = env.pg.url_for(&db);
    let t2 =
        env.rt.block_on(wait_checkpoint(&url, &pipeline, &end, Duration::from_secs(1800), &mut || {
            matches!(w.child.try_wait(), Ok(None))
        }))?;
    perf_stop(perf);
    let (_, rss) = w.interrupt_and_wait()?;
    let want = source_digest(env)?;
    let got = env.rt.block_on(target_digest_url(&url))?;
    if want != got {
        return Err(format!("synchdb follow: target {got} differs from source {want}").into());
    }
    env.drop_pg_db(&db);
    Ok(FollowRun {
        changes,
        write_secs: (t1 - t0).as_secs_f64(),
        apply_secs: (t2 - t0).as_secs_f64(),
        catchup_secs: (t2 - t1).as_secs_f64(),
        rss_mb: Some(rss),
    })
}

/// The follow workload's row changes as PostgreSQL SQL, writer after writer:
/// per source transaction one INSERT ... SELECT, one UPDATE and one DELETE.
fn ceiling_script(env: &Env) -> String {
    let txs = follow_txs(env);
    let mut sql = String::with_capacity(txs as usize * env.opts.writers * 420);
    for w in 0..env.opts.writers {
        let base = (w as u64 + 1) * 1_000_000_000;
        for i in 1..=txs {
            let lo = base + 60 * i + 1;
            let plo = base + 60 * (i - 1) + 1;
            sql.push_str(&format!(
                "BEGIN;\nINSERT INTO {FOLLOW_DB}.f (id, k, v, amount, ts, note) SELECT {lo} + s, s % 1000, 'v' || ({lo} + s), \
                 s / 10.0, now(), 'inserted row with some payload text' FROM generate_series(0, 59) s;\n\
                 UPDATE {FOLLOW_DB}.f SET k = k + 1, amount = amount + 1, ts = now(), v = 'u' || id WHERE id BETWEEN {plo} AND {};\n\
                 DELETE FROM {FOLLOW_DB}.f WHERE id BETWEEN {} AND {};\nCOMMIT;\n",
                plo + 29,
                plo + 30,
                plo + 39
            ));
        }
    }
    sql
}

/// The apply ceiling: the same row changes applied by PostgreSQL alone, as
/// set-based SQL in one `psql` session (the starting rows copied first, not
/// timed). Checked against the source after the source ran the workload too.
pub(crate) fn run_ceiling(env: &Env, r: usize) -> BenchResult<f64> {
    prepare_follow_source(env)?;
    let db = format!("ceil_{r}");
    env.fresh_pg_db(&db)?;
    Watched::spawn(
        env.replicate(&db, FOLLOW_DB, &format!("ceil_{r}"))
            .arg("--until-caught-up")
            .stdout(Stdio::null())
            .stderr(log_file(env, &format!("ceiling_{r}.err"))?),
    )?
    .wait()?;
    let script = ceiling_script(env);
    let t0 = Instant::now();
    env.pg.exec(&db, &script)?;
    let secs = t0.elapsed().as_secs_f64();
    env.rt.block_on(follow_writer(env.mariadb.url_for(FOLLOW_DB), env.opts.writers, follow_txs(env)))?;
    let want = source_digest(env)?;
    let got = env.rt.block_on(target_digest_url(&env.pg.url_for(&db)))?;
    if want != got {
        return Err(format!("apply ceiling: target {got} differs from source {want}").into());
    }
    env.drop_pg_db(&db);
    Ok(secs)
}

pub(crate) fn run_chameleon_follow(env: &Env, r: usize) -> BenchResult<FollowRun> {
    prepare_follow_source(env)?;
    let db = format!("cham_{r}");
    env.fresh_pg_db(&db)?;
    let home = env.work.path().join(format!("chameleon_{r}"));
    for d in [
        home.clone(),
        home.join("out"),
        home.join(".pg_chameleon/configuration"),
        home.join(".pg_chameleon/pid"),
        home.join(".pg_chameleon/logs"),
    ] {
        std::fs::create_dir_all(&d)?;
    }
    Command::new("chown").args(["-R", "postgres:postgres"]).arg(&home).status()?;
    let cfg = home.join(".pg_chameleon/configuration/bench.yml");
    std::fs::write(&cfg, chameleon_config(env, &home, &db, r))?;
    Command::new("chown").args(["postgres:postgres"]).arg(&cfg).status()?;
    let log = env.work.path().join(format!("chameleon_{r}.log"));
    chameleon_step(env, &home, &log, &["create_replica_schema", "--config", "bench"])?;
    chameleon_step(env, &home, &log, &["add_source", "--config", "bench", "--source", "mysql"])?;
    chameleon_step(env, &home, &log, &["init_replica", "--config", "bench", "--source", "mysql"])?;
    let url = env.pg.url_for(&db);
    let want0 = source_digest(env)?;
    let got0 = env.rt.block_on(target_digest_url(&url))?;
    if got0 != want0 {
        return Err(format!("pg_chameleon init_replica: target {got0:?} differs from source {want0}").into());
    }
    let mut cmd =
        as_postgres(env, &home, &["start_replica", "--config", "bench", "--source", "mysql", "--debug"]);
    cmd.stdout(Stdio::from(File::options().append(true).open(&log)?))
        .stderr(Stdio::from(File::options().append(true).open(&log)?))
        .process_group(0);
    let mut w = Watched::spawn(&mut cmd)?;
    let pgid = w.pid();
    // Let the replica process connect to the binlog and run its first loop.
    std::thread::sleep(Duration::from_secs(5));
    if !matches!(w.child.try_wait(), Ok(None)) {
        return Err(format!("pg_chameleon start_replica exited:\n{}", tail(&log, 30)).into());
    }
    let txs = follow_txs(env);
    let changes = txs * env.opts.writers as u64 * 100;
    let t0 = Instant::now();
    env.rt.block_on(follow_writer(env.mariadb.url_for(FOLLOW_DB), env.opts.writers, txs))?;
    let t1 = Instant::now();
    let want = source_digest(env)?;
    let timeout = Duration::from_secs(env.opts.chameleon_timeout);
    let outcome: BenchResult<Instant> = env.rt.block_on(async {
        let mut conn = pg_connect(&url).await?;
        loop {
            if target_digest(&mut conn).await.as_deref() == Some(want.as_str()) {
                return Ok(Instant::now());
            }
            if t1.elapsed() > timeout {
                let got = target_digest(&mut conn).await;
                return Err(format!(
                    "pg_chameleon did not catch up within {}s after the workload (target {got:?}, source {want})",
                    timeout.as_secs()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // Stop the whole process group (start_replica forks its read and replay processes).
    let _ = Command::new("kill").args(["-TERM", "--", &format!("-{pgid}")]).status();
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
    let _ = w.child.wait();
    let t2 = outcome.map_err(|e| format!("{e}\n{}", tail(&log, 20)))?;
    env.drop_pg_db(&db);
    Ok(FollowRun {
        changes,
        write_secs: (t1 - t0).as_secs_f64(),
        apply_secs: (t2 - t0).as_secs_f64(),
        catchup_secs: (t2 - t1).as_secs_f64(),
        rss_mb: None,
    })
}

pub(crate) async fn target_digest_url(url: &str) -> BenchResult<String> {
    let mut conn = pg_connect(url).await?;
    Ok(target_digest(&mut conn).await.ok_or("cannot read the target table")?)
}

pub(crate) fn follow_workload(env: &Env) -> BenchResult<FollowResults> {
    let mut res = FollowResults {
        changes: follow_txs(env) * env.opts.writers as u64 * 100,
        writers: env.opts.writers,
        chameleon_settings: CHAMELEON_SETTINGS.into(),
        ..Default::default()
    };
    let chameleon = if env.opts.no_chameleon {
        None
    } else {
        match ensure_chameleon(env) {
            Ok(v) => {
                res.chameleon_version = v;
                Some(())
            }
            Err(e) => {
                res.chameleon_error = Some(e);
                None
            }
        }
    };
    for r in 0..env.opts.runs() {
        eprintln!("==> follow run {}/{}: synchdb, {} changes", r + 1, env.opts.runs(), res.changes);
        let s = run_synchdb_follow(env, r)?;
        eprintln!(
            "    written in {:.1}s, applied in {:.1}s ({:.0} changes/s), caught up {:.2}s after, peak RSS {:.0} MB",
            s.write_secs,
            s.apply_secs,
            s.rate(),
            s.catchup_secs,
            s.rss_mb.unwrap_or(0.0)
        );
        res.synchdb.push(s);
        let ceiling = run_ceiling(env, r)?;
        eprintln!(
            "    apply ceiling (PostgreSQL alone, set-based SQL, one session): {ceiling:.1}s ({:.0} changes/s)",
            res.changes as f64 / ceiling
        );
        res.ceiling_secs.push(ceiling);
        if chameleon.is_some() && res.chameleon_error.is_none() {
            eprintln!("==> follow run {}/{}: pg_chameleon", r + 1, env.opts.runs());
            match run_chameleon_follow(env, r) {
                Ok(c) => {
                    eprintln!(
                        "    written in {:.1}s, applied in {:.1}s ({:.0} changes/s), caught up {:.1}s after",
                        c.write_secs,
                        c.apply_secs,
                        c.rate(),
                        c.catchup_secs
                    );
                    res.chameleon.push(c);
                }
                Err(e) => {
                    eprintln!("    pg_chameleon failed: {e}");
                    res.chameleon_error = Some(e.to_string());
                }
            }
        }
    }
    Ok(res)
}
