//! Workload a: the snapshot, against pgloader and the COPY ceiling.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::report::{Run, SnapshotResults};
use crate::tools::*;
use crate::{BenchResult, Env, Watched};

pub(crate) const SNAPSHOT_DB: &str = "bench";
pub(crate) fn generate_snapshot_data(env: &Env) -> BenchResult<()> {
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
pub(crate) fn export_for_copy(env: &Env, dir: &Path) -> BenchResult<Vec<String>> {
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

pub(crate) fn pg_dump(env: &Env, db: &str, section: &str) -> BenchResult<String> {
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
pub(crate) fn check_snapshot_target(env: &Env, db: &str) -> BenchResult<()> {
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

/// synchdb's snapshot into `sdb_<r>` (`copy_format`: `binary`, the default, or `text`
/// into `sdb_text_<r>`, for the comparison row).
pub(crate) fn run_synchdb_snapshot(env: &Env, r: usize, copy_format: &str) -> BenchResult<Run> {
    let tag = if copy_format == "binary" { String::new() } else { format!("{copy_format}_") };
    let db = format!("sdb_{tag}{r}");
    env.fresh_pg_db(&db)?;
    let mut cmd = env.replicate(&db, SNAPSHOT_DB, &format!("snap_{tag}{r}"));
    cmd.args(["--snapshot", "initial_only", "--copy-format", copy_format])
        .stdout(log_file(env, &format!("synchdb_snapshot_{tag}{r}.out"))?)
        .stderr(log_file(env, &format!("synchdb_snapshot_{tag}{r}.err"))?);
    let w = Watched::spawn(&mut cmd)?;
    let perf = if r == 0 && tag.is_empty() { perf_attach(env, w.pid(), "snapshot") } else { Vec::new() };
    let res = w.wait();
    perf_stop(perf);
    let (secs, rss) = res.map_err(|e| {
        format!(
            "synchdb snapshot: {e}\n{}",
            tail(&env.work.path().join(format!("synchdb_snapshot_{tag}{r}.err")), 20)
        )
    })?;
    check_snapshot_target(env, &db)?;
    if !tag.is_empty() {
        env.drop_pg_db(&db);
    }
    Ok(Run { secs, rss_mb: rss })
}

pub(crate) fn run_pgloader(env: &Env, r: usize) -> BenchResult<Run> {
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
pub(crate) fn run_copy_ceiling(
    env: &Env,
    r: usize,
    from_db: &str,
    dir: &Path,
    tables: &[String],
) -> BenchResult<f64> {
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
        let s = run_synchdb_snapshot(env, r, "binary")?;
        eprintln!("    synchdb {:.1}s, peak RSS {:.0} MB", s.secs, s.rss_mb);
        res.synchdb.push(s);
        eprintln!("==> snapshot run {}/{}: synchdb --copy-format text", r + 1, env.opts.runs());
        let s = run_synchdb_snapshot(env, r, "text")?;
        eprintln!("    synchdb (text COPY) {:.1}s, peak RSS {:.0} MB", s.secs, s.rss_mb);
        res.synchdb_text.push(s);
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
