//! The workloads and the tools they run.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::report::{FollowResults, FollowRun, LatencyResults, LatencyRun, Run, SnapshotResults};
use crate::{output_of, signal, BenchResult, Env, Watched};

/// pgloader settings that finish here (the defaults ran out of heap on 1M rows).
pub(crate) const PGLOADER_WITH: &str =
    "workers = 4, concurrency = 1, prefetch rows = 10000, batch rows = 10000";
pub(crate) const PGLOADER_ARGS: &str = "--dynamic-space-size 4096";

const SNAPSHOT_DB: &str = "bench";
const FOLLOW_DB: &str = "fbench";
const LATENCY_DB: &str = "lbench";

fn log_file(env: &Env, name: &str) -> BenchResult<File> {
    Ok(File::create(env.work.path().join(name))?)
}

fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// Checkpoint polling (synchdb) through one PostgreSQL connection.

async fn pg_connect(url: &str) -> BenchResult<PgConnection> {
    Ok(PgConnection::connect(url).await?)
}

async fn checkpoint(conn: &mut PgConnection, pipeline: &str) -> Option<(String, u64)> {
    let pos: Option<Option<String>> =
        sqlx::query_scalar("SELECT position FROM synchdb.pipelines WHERE pipeline_id = $1")
            .bind(pipeline)
            .fetch_optional(&mut *conn)
            .await
            .ok()?;
    let pos = pos.flatten()?;
    let binlog = pos.split_whitespace().next()?;
    let (f, p) = binlog.rsplit_once(':')?;
    Some((f.to_string(), p.parse().ok()?))
}

fn reached(at: &(String, u64), target: &(String, u64)) -> bool {
    at.0 > target.0 || (at.0 == target.0 && at.1 >= target.1)
}

/// Poll synchdb's checkpoint until it reaches `target`; returns when it did.
async fn wait_checkpoint(
    url: &str,
    pipeline: &str,
    target: &(String, u64),
    timeout: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> BenchResult<Instant> {
    let deadline = Instant::now() + timeout;
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = pg_connect(url).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            if let Some(at) = checkpoint(c, pipeline).await {
                if reached(&at, target) {
                    return Ok(Instant::now());
                }
            }
        }
        if !alive() {
            return Err(format!("replicate exited before reaching {}:{}", target.0, target.1).into());
        }
        if Instant::now() > deadline {
            return Err(format!("checkpoint did not reach {}:{} in {timeout:?}", target.0, target.1).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wait_caught_up(
    env: &Env,
    w: &mut Watched,
    db: &str,
    pipeline: &str,
    timeout: Duration,
) -> BenchResult<Instant> {
    let target = env.master_pos()?;
    let url = env.pg.url_for(db);
    env.rt.block_on(wait_checkpoint(&url, pipeline, &target, timeout, &mut || {
        matches!(w.child.try_wait(), Ok(None))
    }))
}

// ---------------------------------------------------------------------------
// a. Snapshot

fn generate_snapshot_data(env: &Env) -> BenchResult<()> {
    let rows = env.opts.rows();
    let mut sql = format!(
        "SET SESSION sql_log_bin = 0;
         DROP DATABASE IF EXISTS {SNAPSHOT_DB};
         CREATE DATABASE {SNAPSHOT_DB} CHARACTER SET utf8mb4;
         USE {SNAPSHOT_DB};
         CREATE TABLE {SNAPSHOT_DB}.big (
           id BIGINT NOT NULL PRIMARY KEY,
           k INT NOT NULL,
           name VARCHAR(64) NOT NULL,
           amount DECIMAL(12,2) NOT NULL,
           created DATETIME(6) NOT NULL,
           body TEXT,
           flag TINYINT NOT NULL,
           score DOUBLE,
           attrs JSON,
           tag VARBINARY(16),
           KEY idx_k (k)
         ) ENGINE=InnoDB;"
    );
    let step = 250_000u64;
    let mut lo = 1;
    while lo <= rows {
        let hi = (lo + step - 1).min(rows);
        sql.push_str(&format!(
            "INSERT INTO {SNAPSHOT_DB}.big SELECT seq, seq % 100003, CONCAT('name-', seq, '-', LEFT(MD5(seq), 16)),
               (seq % 10000000) / 100,
               TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000000) MICROSECOND,
               RPAD(CONCAT('row ', seq, ': '), 200, 'lorem ipsum dolor sit amet, consectetur adipiscing elit '),
               seq % 128, IF(seq % 50 = 0, NULL, seq / 7e0),
               JSON_OBJECT('n', seq, 'even', seq % 2 = 0, 'tag', CONCAT('t', seq % 97)),
               IF(seq % 10 = 0, NULL, UNHEX(MD5(seq)))
             FROM seq_{lo}_to_{hi};"
        ));
        lo = hi + 1;
    }
    for t in 1..=20 {
        sql.push_str(&format!(
            "CREATE TABLE {SNAPSHOT_DB}.small_{t:02} (id INT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL,
               qty INT, price DECIMAL(10,2), created DATETIME, KEY idx_name (name)) ENGINE=InnoDB;
             INSERT INTO {SNAPSHOT_DB}.small_{t:02} SELECT seq, CONCAT('item ', seq, ' of {t}'), seq % 100,
               seq / 3, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq MINUTE FROM seq_1_to_{};",
            env.opts.small_rows
        ));
    }
    env.mariadb.exec(&sql)?;
    Ok(())
}

/// Export every table of the snapshot database into `dir/<table>.tsv` in
/// PostgreSQL's COPY text format (binary columns as `\x` hex).
fn export_for_copy(env: &Env, dir: &Path) -> BenchResult<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    let tables = env.mariadb.exec(&format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '{SNAPSHOT_DB}' ORDER BY 1"
    ))?;
    let tables: Vec<String> = tables.lines().map(str::to_string).collect();
    for t in &tables {
        let cols = env.mariadb.exec(&format!(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = '{SNAPSHOT_DB}' AND table_name = '{t}' ORDER BY ordinal_position"
        ))?;
        let list: Vec<String> = cols
            .lines()
            .map(|l| {
                let (name, ty) = l.split_once('\t').unwrap_or((l, ""));
                if ty.contains("binary") || ty.contains("blob") {
                    format!(r"CONCAT('\\x', HEX(`{name}`))")
                } else {
                    format!("`{name}`")
                }
            })
            .collect();
        let file = dir.join(format!("{t}.tsv"));
        let _ = std::fs::remove_file(&file);
        env.mariadb.exec(&format!(
            r"SELECT {} FROM {SNAPSHOT_DB}.`{t}` INTO OUTFILE '{}' CHARACTER SET utf8mb4
              FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'",
            list.join(", "),
            file.display()
        ))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(tables)
}

fn pg_dump(env: &Env, db: &str, section: &str) -> BenchResult<String> {
    let bin = ["pg_dump", "/usr/lib/postgresql/15/bin/pg_dump"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .ok_or("pg_dump not found")?;
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &env.pg.port().to_string(), "-U", "postgres", "--schema-only"])
        .arg(format!("--section={section}"))
        .args(["-n", SNAPSHOT_DB, db])
        .output()?;
    if !out.status.success() {
        return Err(format!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    // Drop psql meta-commands (`\restrict`), keep the SQL.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Row count of bench.big and the number of indexes on it, on PostgreSQL.
fn check_snapshot_target(env: &Env, db: &str) -> BenchResult<()> {
    let n: u64 = env.pg.exec(db, &format!("SELECT count(*) FROM {SNAPSHOT_DB}.big"))?.trim().parse()?;
    let ix: u64 = env
        .pg
        .exec(
            db,
            &format!(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = '{SNAPSHOT_DB}' AND tablename = 'big'"
            ),
        )?
        .trim()
        .parse()?;
    let tables: u64 = env
        .pg
        .exec(db, &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{SNAPSHOT_DB}'"))?
        .trim()
        .parse()?;
    if n != env.opts.rows() || ix < 2 || tables != 21 {
        return Err(format!(
            "{db}: bench.big has {n} rows (expected {}), {ix} indexes (expected 2), {tables} tables (expected 21)",
            env.opts.rows()
        )
        .into());
    }
    Ok(())
}

/// With `--perf DIR`: a flat cpu-clock profile of `pid` (`DIR/NAME.perf.data`) and one of the whole
/// machine (`DIR/NAME.system.perf.data`, to see the split between replicate, MariaDB and PostgreSQL).
fn perf_attach(env: &Env, pid: u32, name: &str) -> Vec<std::process::Child> {
    let Some(dir) = env.opts.perf.as_ref() else { return Vec::new() };
    if std::fs::create_dir_all(dir).is_err() {
        return Vec::new();
    }
    let record = |target: &[&str], out: PathBuf| {
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999"])
            .args(target)
            .arg("-o")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    };
    let pid = pid.to_string();
    [
        record(&["-p", &pid], dir.join(format!("{name}.perf.data"))),
        record(&["-a"], dir.join(format!("{name}.system.perf.data"))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn perf_stop(perf: Vec<std::process::Child>) {
    for mut p in perf {
        let _ = signal(p.id(), "INT");
        let _ = p.wait();
    }
}

fn run_synchdb_snapshot(env: &Env, r: usize) -> BenchResult<Run> {
    let db = format!("sdb_{r}");
    env.fresh_pg_db(&db)?;
    let mut cmd = env.replicate(&db, SNAPSHOT_DB, &format!("snap_{r}"));
    cmd.args(["--snapshot", "initial_only"])
        .stdout(log_file(env, &format!("synchdb_snapshot_{r}.out"))?)
        .stderr(log_file(env, &format!("synchdb_snapshot_{r}.err"))?);
    let w = Watched::spawn(&mut cmd)?;
    let perf = if r == 0 { perf_attach(env, w.pid(), "snapshot") } else { Vec::new() };
    let res = w.wait();
    perf_stop(perf);
    let (secs, rss) = res.map_err(|e| {
        format!(
            "synchdb snapshot: {e}\n{}",
            tail(&env.work.path().join(format!("synchdb_snapshot_{r}.err")), 20)
        )
    })?;
    check_snapshot_target(env, &db)?;
    Ok(Run { secs, rss_mb: rss })
}

fn run_pgloader(env: &Env, r: usize) -> BenchResult<Run> {
    let db = format!("pgl_{r}");
    env.fresh_pg_db(&db)?;
    let load = env.work.path().join(format!("pgloader_{r}.load"));
    std::fs::write(
        &load,
        format!(
            "LOAD DATABASE\n  FROM mysql://synchdb:synchdb@127.0.0.1:{}/{SNAPSHOT_DB}\n  INTO {}\nWITH {PGLOADER_WITH};\n",
            env.mariadb.port(),
            env.pg.url_for(&db)
        ),
    )?;
    let log = env.work.path().join(format!("pgloader_{r}.log"));
    let mut cmd = Command::new("pgloader");
    cmd.args(PGLOADER_ARGS.split(' '))
        .arg(&load)
        .current_dir(env.work.path())
        .stdout(File::create(&log)?)
        .stderr(Stdio::from(File::options().append(true).open(&log)?));
    let (secs, rss) =
        Watched::spawn(&mut cmd)?.wait().map_err(|e| format!("pgloader: {e}\n{}", tail(&log, 30)))?;
    check_snapshot_target(env, &db).map_err(|e| format!("pgloader: {e}\n{}", tail(&log, 30)))?;
    Ok(Run { secs, rss_mb: rss })
}

/// The ceiling: the same tables (DDL taken from synchdb's target) COPYed from
/// local files by the server, then the same indexes and constraints built.
fn run_copy_ceiling(env: &Env, r: usize, from_db: &str, dir: &Path, tables: &[String]) -> BenchResult<f64> {
    let db = format!("ceil_{r}");
    env.fresh_pg_db(&db)?;
    let pre = pg_dump(env, from_db, "pre-data")?;
    let post = pg_dump(env, from_db, "post-data")?;
    env.pg.exec(&db, &pre)?;
    let mut sql = String::new();
    for t in tables {
        sql.push_str(&format!(
            "COPY {SNAPSHOT_DB}.\"{t}\" FROM '{}';\n",
            dir.join(format!("{t}.tsv")).display()
        ));
    }
    sql.push_str(&post);
    let started = Instant::now();
    env.pg.exec(&db, &sql)?;
    let secs = started.elapsed().as_secs_f64();
    check_snapshot_target(env, &db)?;
    env.drop_pg_db(&db);
    Ok(secs)
}

pub(crate) fn snapshot_workload(env: &Env) -> BenchResult<SnapshotResults> {
    let mut res = SnapshotResults {
        rows: env.opts.rows(),
        small_rows: env.opts.small_rows,
        pgloader_settings: format!("pgloader {PGLOADER_ARGS} with `WITH {PGLOADER_WITH}`"),
        ..Default::default()
    };
    eprintln!("==> snapshot: generating {} rows + 20 x {} rows in MariaDB", res.rows, res.small_rows);
    let t = Instant::now();
    generate_snapshot_data(env)?;
    res.generate_secs = t.elapsed().as_secs_f64();
    let dir = env.work.path().join("export");
    let t = Instant::now();
    let tables = export_for_copy(env, &dir)?;
    res.export_secs = t.elapsed().as_secs_f64();
    eprintln!("    generated in {:.1}s, exported in {:.1}s", res.generate_secs, res.export_secs);
    let pgloader_ok = !env.opts.no_pgloader && ensure_pgloader();
    if !pgloader_ok && !env.opts.no_pgloader {
        res.pgloader_error =
            Some("pgloader is not installed and `apt-get install -y pgloader` failed".into());
    }
    for r in 0..env.opts.runs() {
        eprintln!("==> snapshot run {}/{}: synchdb", r + 1, env.opts.runs());
        let s = run_synchdb_snapshot(env, r)?;
        eprintln!("    synchdb {:.1}s, peak RSS {:.0} MB", s.secs, s.rss_mb);
        res.synchdb.push(s);
        eprintln!("==> snapshot run {}/{}: COPY ceiling", r + 1, env.opts.runs());
        let c = run_copy_ceiling(env, r, &format!("sdb_{r}"), &dir, &tables)?;
        eprintln!("    COPY {c:.1}s");
        res.copy.push(c);
        env.drop_pg_db(&format!("sdb_{r}"));
        if pgloader_ok && res.pgloader_error.is_none() {
            eprintln!("==> snapshot run {}/{}: pgloader", r + 1, env.opts.runs());
            match run_pgloader(env, r) {
                Ok(p) => {
                    eprintln!("    pgloader {:.1}s, peak RSS {:.0} MB", p.secs, p.rss_mb);
                    res.pgloader.push(p);
                }
                Err(e) => {
                    eprintln!("    pgloader failed: {e}");
                    res.pgloader_error = Some(e.to_string());
                }
            }
            env.drop_pg_db(&format!("pgl_{r}"));
        }
    }
    Ok(res)
}

fn ensure_pgloader() -> bool {
    if Command::new("pgloader").arg("--version").output().is_ok() {
        return true;
    }
    eprintln!("==> installing pgloader (apt-get)");
    Command::new("apt-get")
        .args(["install", "-y", "pgloader"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("pgloader").arg("--version").output().is_ok()
}

// ---------------------------------------------------------------------------
// b. Follow throughput

fn prepare_follow_source(env: &Env) -> BenchResult<()> {
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
fn follow_txs(env: &Env) -> u64 {
    (env.opts.changes() / 100 / env.opts.writers as u64).max(1)
}

/// Run the write workload: each writer commits `txs` transactions of 60
/// inserts, 30 updates and 10 deletes, as fast as MariaDB takes them.
async fn follow_writer(url: String, writers: usize, txs: u64) -> BenchResult<()> {
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
fn source_digest(env: &Env) -> BenchResult<String> {
    let s = env.mariadb.exec(&format!("SELECT COUNT(*), SUM(k), SUM(amount) FROM {FOLLOW_DB}.f"))?;
    Ok(s.split_whitespace().collect::<Vec<_>>().join("|"))
}

async fn target_digest(conn: &mut PgConnection) -> Option<String> {
    let row: (i64, Option<String>, Option<String>) =
        sqlx::query_as("SELECT count(*), sum(k)::text, sum(amount)::text FROM fbench.f")
            .fetch_one(&mut *conn)
            .await
            .ok()?;
    Some(format!("{}|{}|{}", row.0, row.1.unwrap_or_default(), row.2.unwrap_or_default()))
}

fn run_synchdb_follow(env: &Env, r: usize) -> BenchResult<FollowRun> {
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

fn chameleon_bin(env: &Env) -> PathBuf {
    env.opts.chameleon_venv.join("bin").join("chameleon")
}

fn ensure_chameleon(env: &Env) -> Result<String, String> {
    let bin = chameleon_bin(env);
    if !bin.exists() {
        eprintln!("==> installing pg_chameleon into {}", env.opts.chameleon_venv.display());
        let venv = env.opts.chameleon_venv.display().to_string();
        let ok =
            Command::new("/usr/bin/python3").args(["-m", "venv", &venv]).status().is_ok_and(|s| s.success())
                && Command::new(env.opts.chameleon_venv.join("bin").join("pip"))
                    .args(["install", "-q", "pg_chameleon"])
                    .status()
                    .is_ok_and(|s| s.success());
        if !ok {
            return Err("could not create the virtualenv and pip install pg_chameleon \
                        (python3 -m venv needs the python3-venv package)"
                .into());
        }
    }
    let v = output_of(&bin.display().to_string(), &["--version"]);
    Ok(v.lines().last().unwrap_or("").to_string())
}

/// A command run as the `postgres` OS user with its own HOME (pg_chameleon refuses root).
fn as_postgres(env: &Env, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(chameleon_bin(env))
        .args(args)
        .current_dir(home);
    cmd
}

fn chameleon_step(env: &Env, home: &Path, log: &Path, args: &[&str]) -> BenchResult<()> {
    let out = as_postgres(env, home, args).output()?;
    let mut f = File::options().create(true).append(true).open(log)?;
    use std::io::Write;
    writeln!(f, "$ chameleon {}", args.join(" "))?;
    f.write_all(&out.stdout)?;
    f.write_all(&out.stderr)?;
    if !out.status.success() {
        return Err(format!(
            "chameleon {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

pub(crate) fn chameleon_config(env: &Env, home: &Path, db: &str, r: usize) -> String {
    format!(
        r#"---
pid_dir: '{home}/.pg_chameleon/pid/'
log_dir: '{home}/.pg_chameleon/logs/'
log_dest: stdout
log_level: info
log_days_keep: 1
rollbar_key: ''
rollbar_env: ''
type_override:
  "tinyint(1)":
    override_to: boolean
    override_tables:
      - "*"
pg_conn:
  host: "127.0.0.1"
  port: "{pgport}"
  user: "postgres"
  password: "unused"
  database: "{db}"
  charset: "utf8"
sources:
  mysql:
    db_conn:
      host: "127.0.0.1"
      port: "{myport}"
      user: "synchdb"
      password: "synchdb"
      charset: 'utf8'
      connect_timeout: 10
    schema_mappings:
      {FOLLOW_DB}: {FOLLOW_DB}
    limit_tables:
    skip_tables:
    grant_select_to:
    lock_timeout: "120s"
    my_server_id: {server_id}
    replica_batch_size: 10000
    replay_max_rows: 10000
    batch_retention: '1 day'
    copy_max_memory: "300M"
    copy_mode: 'file'
    out_dir: {home}/out
    sleep_loop: 1
    on_error_replay: continue
    on_error_read: continue
    auto_maintenance: "disabled"
    gtid_enable: false
    type: mysql
    skip_events:
      insert:
      delete:
      update:
    keep_existing_schema: No
    net_read_timeout: 600
"#,
        home = home.display(),
        pgport = env.pg.port(),
        myport = env.mariadb.port(),
        server_id = 100 + r,
    )
}

/// The settings that matter for pg_chameleon's throughput, for the report.
pub(crate) const CHAMELEON_SETTINGS: &str = "replica_batch_size 10000, replay_max_rows 10000, sleep_loop 1, \
     copy_mode file, gtid_enable false (the settings of its example configuration, sleep_loop 1)";

fn run_chameleon_follow(env: &Env, r: usize) -> BenchResult<FollowRun> {
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

async fn target_digest_url(url: &str) -> BenchResult<String> {
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

// ---------------------------------------------------------------------------
// c. Latency

const LAT_INS: u64 = 12;
const LAT_UPD: u64 = 6;
const LAT_DEL: u64 = 2;
const LAT_TX_CHANGES: u64 = LAT_INS + LAT_UPD + LAT_DEL;

fn prepare_latency_source(env: &Env) -> BenchResult<()> {
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
async fn paced_writer(url: String, tx_per_sec: f64, txs: u64) -> BenchResult<Vec<(i64, Instant)>> {
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
async fn poll_max_id(
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// `lag p50 X ms p99 Y ms` from replicate's summary line.
fn summary_lag(out: &str) -> (Option<f64>, Option<f64>) {
    let find = |key: &str| {
        out.split(key).nth(1).and_then(|s| s.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok())
    };
    (find("lag p50 "), find(" p99 "))
}

fn run_synchdb_latency(env: &Env, r: usize) -> BenchResult<LatencyRun> {
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
    let mut lags: Vec<f64> = commits
        .iter()
        .map(|(id, committed)| {
            let i = seen.partition_point(|(_, m)| *m < *id);
            let (applied, _) = seen.get(i).copied().unwrap_or((Instant::now(), 0));
            applied.saturating_duration_since(*committed).as_secs_f64() * 1000.0
        })
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
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
