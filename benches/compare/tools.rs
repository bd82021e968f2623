//! What the workloads share: checkpoint polling, logs, perf, and the other tools (pgloader, pg_chameleon).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::follow::FOLLOW_DB;
use crate::{output_of, signal, BenchResult, Env, Watched};

/// pgloader settings that finish here (the defaults ran out of heap on 1M rows).
pub(crate) const PGLOADER_WITH: &str =
    "workers = 4, concurrency = 1, prefetch rows = 10000, batch rows = 10000";
pub(crate) const PGLOADER_ARGS: &str = "--dynamic-space-size 4096";

pub(crate) fn log_file(env: &Env, name: &str) -> BenchResult<File> {
    Ok(File::create(env.work.path().join(name))?)
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub(crate) async fn pg_connect(url: &str) -> BenchResult<PgConnection> {
    Ok(PgConnection::connect(url).await?)
}

pub(crate) async fn checkpoint(conn: &mut PgConnection, pipeline: &str) -> Option<(String, u64)> {
    let pos: Option<Option<String>> = sqlx::query_scalar(synchdb_testkit::checkpoint::CHECKPOINT_SQL)
        .bind(pipeline)
        .fetch_optional(&mut *conn)
        .await
        .ok()?;
    synchdb_testkit::checkpoint::parse_checkpoint(&pos.flatten()?)
}

/// Poll synchdb's checkpoint until it reaches `target`; returns when it did.
pub(crate) async fn wait_checkpoint(
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
                if synchdb_testkit::checkpoint::position_reached(&at, target) {
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

pub(crate) fn wait_caught_up(
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

/// With `--perf DIR`: a flat cpu-clock profile of `pid` (`DIR/NAME.perf.data`) and one of the whole
/// machine (`DIR/NAME.system.perf.data`, to see the split between replicate, MariaDB and PostgreSQL).
pub(crate) fn perf_attach(env: &Env, pid: u32, name: &str) -> Vec<std::process::Child> {
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

pub(crate) fn perf_stop(perf: Vec<std::process::Child>) {
    for mut p in perf {
        let _ = signal(p.id(), "INT");
        let _ = p.wait();
    }
}

pub(crate) fn ensure_pgloader() -> bool {
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

pub(crate) fn chameleon_bin(env: &Env) -> PathBuf {
    env.opts.chameleon_venv.join("bin").join("chameleon")
}

pub(crate) fn ensure_chameleon(env: &Env) -> Result<String, String> {
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
pub(crate) fn as_postgres(env: &Env, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(chameleon_bin(env))
        .args(args)
        .current_dir(home);
    cmd
}

pub(crate) fn chameleon_step(env: &Env, home: &Path, log: &Path, args: &[&str]) -> BenchResult<()> {
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

/// Seconds the source took to run `work`, and seconds and peak RSS (MB) of
/// `replicate --until-caught-up` applying it, after `setup` created database
/// `db` on MariaDB and a snapshot copied it (pipeline `pipeline`).
pub(crate) fn snapshot_then_apply(
    env: &Env,
    db: &str,
    pipeline: &str,
    setup: &str,
    work: &str,
    extra: &[&str],
) -> BenchResult<(f64, f64, f64)> {
    env.mariadb.exec(&format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; USE {db}; {setup}"))?;
    env.fresh_pg_db(db)?;
    Watched::spawn(env.replicate(db, db, pipeline).args(extra).arg("--until-caught-up"))?.wait()?;
    let started = Instant::now();
    env.mariadb.exec(&format!("USE {db}; {work}"))?;
    let source_secs = started.elapsed().as_secs_f64();
    let (apply_secs, rss_mb) =
        Watched::spawn(env.replicate(db, db, pipeline).args(extra).arg("--until-caught-up"))?.wait()?;
    Ok((source_secs, apply_secs, rss_mb))
}
