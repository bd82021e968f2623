//! Chaos at scale: `replicate` (follow mode) is SIGKILLed at random moments, again and
//! again, across its startup, the initial snapshot and follow mode, while a writer runs
//! mixed transactions (inserts, updates, deletes, primary-key changes, multi-table and
//! bulk transactions, now and then an `ALTER TABLE ... ADD COLUMN` or a `CREATE TABLE`)
//! on the source, and every tenth round MariaDB is restarted or PostgreSQL is
//! crash-restarted (immediate mode), while `replicate` runs or between two runs. At the
//! end the writer stops, one `replicate --until-caught-up` finishes, and every table is
//! compared row by row; the keyless `ledger` (one row with a unique `tx` per source
//! transaction) must hold each transaction exactly once.
//!
//! The servers are private (`MariaDb::start`, `Postgres::start`): the restarts disturb no
//! other test.
//!
//! - `chaos_at_scale` (ignored; run on demand): `CHAOS_KILLS` kills (default 100) on a
//!   source with a 1,000,000-row table (about 200 snapshot chunks, so the first ~15 kills
//!   land in the snapshot). `CHAOS_SNAPSHOT_IN_PEACE=1`: the initial snapshot runs
//!   uninterrupted, every kill lands in follow mode.
//!   `cargo build --example replicate && cargo test --test chaos -- --ignored --nocapture`
//!   (`cargo test --test chaos` alone does not rebuild the example.)
//! - `chaos_smoke`: 6 kills in follow mode and one restart of each server on a smaller
//!   source, in the normal suite (about 25 s).
//! - `snapshot_restarted_after_a_schema_change_loads_the_new_shape`: the deterministic
//!   regression test of the first bug the chaos run found.
//!
//! The kill moments and the workload come from a seed printed by each test; set
//! `CHAOS_SEED` to replay one (the interleaving with the servers still varies).
//! `replicate`'s stderr of every run goes to a log file whose path is printed
//! (`CHAOS_LOG` sets the log filter, default `warn,synchdb=info`); it is removed after
//! a successful run unless `CHAOS_KEEP_LOG` is set.

mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

/// Random numbers for the kill moments and the workload (SplitMix64).
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The size of one chaos run.
struct Config {
    name: &'static str,
    kills: usize,
    /// Rows of the big table (its snapshot spans many chunks).
    big_rows: u64,
    /// A server restart every this many rounds.
    restart_every: usize,
    /// Let the first run finish the initial snapshot before it is killed (no kill
    /// lands in the snapshot).
    snapshot_in_peace: bool,
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{test}: CHAOS_SEED={seed}");
    seed
}

fn schema(big_rows: u64) -> String {
    format!(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, grp INT NOT NULL, name VARCHAR(64), amount DECIMAL(12,2), \
           note TEXT, at DATETIME(6), KEY (grp));
         INSERT INTO big SELECT seq, seq % 97, CONCAT('name-', seq), seq / 100, REPEAT('n', seq % 200), \
           '2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_{big_rows};
         CREATE TABLE accounts (code VARCHAR(32) PRIMARY KEY, balance BIGINT NOT NULL, currency CHAR(3), \
           status ENUM('open', 'frozen', 'closed') NOT NULL DEFAULT 'open', updated TIMESTAMP(3) NULL, \
           flags SET('a', 'b', 'c'));
         INSERT INTO accounts SELECT CONCAT('acc-', LPAD(seq, 6, '0')), seq * 10, 'EUR', 'open', \
           '2024-02-01 10:00:00.123', IF(seq % 3 = 0, 'a,c', '') FROM seq_1_to_3000;
         CREATE TABLE pairs (a INT NOT NULL, b VARCHAR(20) NOT NULL, d DATE, v JSON, PRIMARY KEY (a, b));
         INSERT INTO pairs SELECT seq % 1000, CONCAT('b', seq), '2024-03-01' + INTERVAL (seq % 300) DAY, \
           JSON_OBJECT('seq', seq) FROM seq_1_to_30000;
         CREATE TABLE blobs (id BINARY(16) PRIMARY KEY, data BLOB, ratio DOUBLE, small TINYINT UNSIGNED);
         INSERT INTO blobs SELECT UNHEX(MD5(seq)), UNHEX(SHA2(seq, 256)), seq / 8, seq % 256 FROM seq_1_to_5000;
         CREATE TABLE ledger (tx BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, note VARCHAR(64));
         INSERT INTO ledger SELECT -seq, 'initial', NULL FROM seq_1_to_1000;"
    )
}

/// One step of the writer: a transaction (its ledger row has `tx`) or a DDL statement.
struct Step {
    sql: String,
    /// The ledger `tx` of a transaction; `None` for DDL (idempotent: `IF NOT EXISTS`).
    tx: Option<u64>,
}

/// The writer's state: what exists, to aim updates and deletes.
struct Workload {
    rng: Rng,
    big_rows: u64,
    /// Tables created by the workload (`t_new1`, ...).
    new_tables: u64,
    ddl: u64,
    next_ddl: Instant,
}

impl Workload {
    fn step(&mut self, i: u64) -> Step {
        let r = &mut self.rng;
        if Instant::now() >= self.next_ddl {
            self.next_ddl = Instant::now() + r.millis(20_000, 45_000);
            self.ddl += 1;
            let n = self.ddl;
            let sql = match n % 5 {
                1 => format!("ALTER TABLE accounts ADD COLUMN IF NOT EXISTS c{n} INT DEFAULT {n}"),
                2 => format!("ALTER TABLE pairs ADD COLUMN IF NOT EXISTS note{n} VARCHAR(30) DEFAULT 'd{n}'"),
                3 => {
                    self.new_tables += 1;
                    format!(
                        "CREATE TABLE IF NOT EXISTS t_new{} (id INT PRIMARY KEY, v VARCHAR(40), at DATETIME)",
                        self.new_tables
                    )
                }
                4 => format!("ALTER TABLE big ADD COLUMN IF NOT EXISTS extra{n} INT NULL"),
                _ => format!("ALTER TABLE blobs ADD COLUMN IF NOT EXISTS tag{n} VARCHAR(10) DEFAULT 't{n}'"),
            };
            return Step { sql, tx: None };
        }
        let big = self.big_rows;
        let kind = r.next() % 100;
        let (name, body) = match kind {
            0..=29 => (
                "big",
                format!(
                    "INSERT INTO big (id, grp, name, amount, note, at) VALUES ({new}, {g}, 'live {i}', {i}.25, \
                       'x', NOW(6)); \
                     UPDATE big SET amount = amount + 1, name = 'w{i}' WHERE id = {u}; \
                     DELETE FROM big WHERE id = {d};",
                    new = big + 1 + 2 * i,
                    g = i % 97,
                    u = r.range(1, big),
                    d = r.range(1, big),
                ),
            ),
            30..=49 => (
                "accounts",
                format!(
                    "INSERT INTO accounts (code, balance, currency, status, updated, flags) \
                       VALUES ('new-{i}', {i}, 'USD', 'frozen', NOW(3), 'b'); \
                     UPDATE accounts SET balance = balance - {k}, updated = NOW(3), status = '{st}', \
                       flags = flags | 2 WHERE code = 'acc-{acc:06}'; \
                     DELETE FROM accounts WHERE code = 'new-{old}';",
                    k = r.range(1, 50),
                    st = ["open", "frozen", "closed"][(r.next() % 3) as usize],
                    acc = r.range(1, 3000),
                    old = r.range(0, i),
                ),
            ),
            50..=69 => {
                let mut body = format!(
                    "UPDATE pairs SET v = JSON_OBJECT('tx', {i}, 's', 'ü'), d = d + INTERVAL 1 DAY \
                       WHERE a = {a}; \
                     INSERT INTO blobs (id, data, ratio, small) VALUES (UNHEX(MD5('w{i}')), \
                       UNHEX(SHA2('w{i}', 224)), {i} / 4, {s}); \
                     DELETE FROM blobs WHERE id = UNHEX(MD5({del})); \
                     UPDATE accounts SET balance = balance + 1 WHERE code = 'acc-{acc:06}'; \
                     UPDATE big SET note = CONCAT(IFNULL(note, ''), 'm') WHERE id = {u};",
                    a = r.range(0, 999),
                    s = i % 256,
                    del = r.range(1, 5000),
                    acc = r.range(1, 3000),
                    u = r.range(1, big),
                );
                if self.new_tables > 0 {
                    let t = r.range(1, self.new_tables);
                    let _ = write!(
                        body,
                        " INSERT INTO t_new{t} VALUES ({id}, 'v{i}', NOW()) ON DUPLICATE KEY UPDATE v = 'again {i}';\
                          DELETE FROM t_new{t} WHERE id = {del};",
                        id = r.range(1, 400),
                        del = r.range(1, 400),
                    );
                }
                ("multi", body)
            }
            70..=79 => (
                "pk-change",
                format!(
                    "UPDATE big SET id = {new} WHERE id = {old}; \
                     UPDATE pairs SET b = CONCAT(b, 'x') WHERE a = {a} AND b LIKE 'b%' ORDER BY b LIMIT 1; \
                     UPDATE blobs SET id = UNHEX(MD5('moved {i}')) WHERE id = UNHEX(MD5({m}));",
                    new = big + 2 + 2 * i,
                    old = r.range(1, big),
                    a = r.range(0, 999),
                    m = r.range(1, 5000),
                ),
            ),
            80..=94 => {
                let from = r.range(1, big);
                (
                    "bulk",
                    format!(
                        "UPDATE big SET note = 'bulk {i}', amount = amount * 2 WHERE id BETWEEN {from} AND {to}; \
                         INSERT INTO pairs (a, b, d, v) SELECT 1000 + {i} % 500, CONCAT('bulk{i}-', seq), \
                           CURDATE(), NULL FROM seq_1_to_40;",
                        to = from + 300,
                    ),
                )
            }
            _ => {
                let from = r.range(1, big);
                (
                    "delete-range",
                    format!(
                        "DELETE FROM big WHERE id BETWEEN {from} AND {to}; \
                         DELETE FROM pairs WHERE a = {a};",
                        to = from + 100,
                        a = r.range(0, 999),
                    ),
                )
            }
        };
        Step {
            sql: format!(
                "START TRANSACTION; {body} INSERT INTO ledger (tx, kind, note) VALUES ({i}, '{name}', 'tx {i}'); \
                 COMMIT"
            ),
            tx: Some(i),
        }
    }
}

/// A server error that means the connection is going away (a restart), not a bad statement.
fn transient(e: &mysql_async::Error) -> bool {
    match e {
        // Server shutdown in progress, connection killed, server gone away, lost connection.
        mysql_async::Error::Server(s) => matches!(s.code, 1053 | 1927 | 2006 | 2013 | 1317),
        _ => true,
    }
}

/// Writer totals.
#[derive(Debug, Default)]
struct Written {
    transactions: u64,
    ddl: u64,
    retried: u64,
}

/// The writer: runs steps until `stop`, riding out MariaDB restarts. After a lost
/// connection a transaction is run again only if its ledger row is not there (a lost
/// COMMIT reply may have committed it).
fn start_writer(
    url: String,
    seed: u64,
    big_rows: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Written> {
    tokio::spawn(async move {
        let mut w = Workload {
            rng: Rng(seed ^ 0x005E_ED0F_C4A0),
            big_rows,
            new_tables: 0,
            ddl: 0,
            next_ddl: Instant::now() + Duration::from_secs(3),
        };
        let mut conn: Option<mysql_async::Conn> = None;
        let mut out = Written::default();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let step = w.step(i);
            loop {
                if conn.is_none() {
                    match mysql_async::Conn::from_url(url.as_str()).await {
                        Ok(mut c) => {
                            if c.query_drop("SET NAMES utf8mb4").await.is_err() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                            conn = Some(c);
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                    // Reconnected after a failure: did the transaction commit?
                    if let Some(tx) = step.tx {
                        let found: Result<Option<i64>, _> = conn
                            .as_mut()
                            .unwrap()
                            .exec_first("SELECT COUNT(*) FROM ledger WHERE tx = ?", (tx,))
                            .await;
                        match found {
                            Ok(Some(1)) => break,
                            Ok(Some(0)) => {}
                            Ok(n) => panic!("ledger tx {tx} found {n:?} times on the source"),
                            Err(_) => {
                                conn = None;
                                continue;
                            }
                        }
                    }
                }
                match conn.as_mut().unwrap().query_drop(step.sql.as_str()).await {
                    Ok(()) => break,
                    Err(e) if transient(&e) => {
                        out.retried += 1;
                        conn = None;
                    }
                    Err(e) => panic!("writer step failed: {}: {e}", step.sql),
                }
            }
            match step.tx {
                Some(_) => {
                    i += 1;
                    out.transactions += 1;
                    done.store(i, Ordering::Relaxed);
                }
                None => out.ddl += 1,
            }
            tokio::time::sleep(Duration::from_millis(w.rng.range(2, 15))).await;
        }
        out
    })
}

/// Where the pipeline is: `None` when PostgreSQL cannot be asked now.
async fn phase(target_url: &str, pipeline: &str) -> Option<&'static str> {
    use sqlx::Connection as _;
    let mut c = sqlx::PgConnection::connect(target_url).await.ok()?;
    let row: Option<(Option<String>, i64)> = sqlx::query_as(
        "SELECT p.position, (SELECT count(*) FROM synchdb.snapshot_chunks c WHERE c.pipeline_id = $1) \
         FROM synchdb.pipelines p WHERE p.pipeline_id = $1",
    )
    .bind(pipeline)
    .fetch_optional(&mut c)
    .await
    .unwrap_or(None);
    let _ = c.close().await;
    Some(match row {
        Some((Some(_), _)) => "follow",
        Some((None, n)) if n > 0 => "snapshot",
        _ => "startup",
    })
}

/// A `replicate` run, SIGKILLed if the test fails while it runs.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

fn append_log(path: &Path, line: &str) -> File {
    let mut f = File::options().create(true).append(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
    f
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn chaos(cfg: Config) {
    let started = Instant::now();
    let seed = seed(cfg.name);
    let mut rng = Rng(seed);
    let my_server = synchdb_testkit::MariaDb::start().expect("private MariaDB");
    let pg_server = synchdb_testkit::Postgres::start().expect("private PostgreSQL");
    let src = my_server.create_database("chaos").unwrap();
    let dst = pg_server.create_database("chaos").unwrap();
    let db = src.name().to_string();
    let log: PathBuf = std::env::temp_dir().join(format!("synchdb-chaos-{}-{seed}.log", std::process::id()));
    eprintln!("{}: replicate logs in {}", cfg.name, log.display());
    {
        let mut my = connect_my(&src.url()).await;
        my.query_drop(schema(cfg.big_rows)).await.unwrap();
    }
    let pipeline = "chaos";
    let cmd = || {
        let mut c = replicate(&my_server.url(), &db, &dst.url(), pipeline);
        c.env("SYNCHDB_LOG", std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn,synchdb=info".into()))
            .args(["--chunk-rows", "5000", "--snapshot-workers", "2", "--heartbeat-secs", "1"]);
        c
    };

    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = start_writer(src.url(), seed, cfg.big_rows, stop.clone(), done.clone());

    let (mut kills, mut my_restarts, mut pg_restarts) = (0usize, 0usize, 0usize);
    let mut phases: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let mut unexpected: Vec<String> = Vec::new();
    let mut last_phase = "startup";
    for round in 0..cfg.kills {
        if writer.is_finished() {
            break; // it failed: its panic surfaces below
        }
        let restart = (round % cfg.restart_every == cfg.restart_every - 1).then(|| {
            // Alternate the servers; restart while replicate runs or between two runs.
            let mariadb = (round / cfg.restart_every) % 2 == 0;
            (mariadb, rng.chance(50))
        });
        // While the snapshot has not finished, short runs: the kills land in the
        // startup and in the middle of the chunks. Then mostly short, now and then long.
        let run_for = if last_phase != "follow" {
            rng.millis(300, 2500)
        } else if rng.chance(15) {
            rng.millis(3000, 8000)
        } else {
            rng.millis(100, 3000)
        };
        let f = append_log(
            &log,
            &format!(
                "===== round {round}: run for {run_for:?}, restart {restart:?} (mariadb?, during?) ====="
            ),
        );
        let mut child =
            KillOnDrop(cmd().stdout(Stdio::null()).stderr(Stdio::from(f)).spawn().expect("spawn replicate"));
        if round == 0 && cfg.snapshot_in_peace {
            let deadline = Instant::now() + Duration::from_secs(120);
            while phase(&dst.url(), pipeline).await != Some("follow") {
                assert!(child.0.try_wait().unwrap().is_none(), "replicate exited during the snapshot");
                assert!(Instant::now() < deadline, "the snapshot did not finish");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let restart_server = |mariadb: bool| {
            let t = Instant::now();
            if mariadb {
                tokio::task::block_in_place(|| my_server.restart()).expect("restart MariaDB");
            } else {
                tokio::task::block_in_place(|| pg_server.crash_restart()).expect("crash-restart PostgreSQL");
            }
            let what = if mariadb { "MariaDB restarted" } else { "PostgreSQL crash-restarted" };
            append_log(&log, &format!("----- {what} in {:?} -----", t.elapsed()));
        };
        match restart {
            Some((mariadb, true)) => {
                let before = Duration::from_millis(rng.range(0, run_for.as_millis() as u64));
                tokio::time::sleep(before).await;
                restart_server(mariadb);
                tokio::time::sleep(run_for - before).await;
            }
            _ => tokio::time::sleep(run_for).await,
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            unexpected.push(format!("round {round}: replicate exited by itself ({status})"));
            eprintln!("round {round}: replicate exited by itself ({status}):\n{}", log_tail(&log, 30));
        }
        kill9(&mut child.0);
        kills += 1;
        let ph = phase(&dst.url(), pipeline).await.unwrap_or("unknown");
        *phases.entry(ph).or_default() += 1;
        last_phase = ph;
        append_log(&log, &format!("----- killed in {ph} -----"));
        if let Some((mariadb, false)) = restart {
            restart_server(mariadb);
        }
        if let Some((mariadb, _)) = restart {
            if mariadb {
                my_restarts += 1;
            } else {
                pg_restarts += 1;
            }
        }
        if round % 10 == 9 {
            eprintln!(
                "{}: {} kills ({phases:?}), {} transactions so far, {:?}",
                cfg.name,
                kills,
                done.load(Ordering::Relaxed),
                started.elapsed()
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();

    // One last run to completion.
    let f = append_log(&log, "===== final run --until-caught-up =====");
    let mut last =
        cmd().arg("--until-caught-up").stdout(Stdio::null()).stderr(Stdio::from(f)).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = last.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            kill9(&mut last);
            panic!("the final run did not catch up in 600 s:\n{}", log_tail(&log, 40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "the final run failed ({status}):\n{}", log_tail(&log, 40));

    // Compare everything.
    let mut my = connect_my(&src.url()).await;
    let pg = connect_pg(&dst.url()).await;
    let (tables, mut differences) = replica_comparison(&mut my, &db, &pg).await;
    let names: Vec<String> = my
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
            (&db,),
        )
        .await
        .unwrap();
    let mut rows = 0i64;
    for t in &names {
        let n: Option<i64> = my.query_first(format!("SELECT COUNT(*) FROM `{db}`.`{t}`")).await.unwrap();
        rows += n.unwrap();
    }
    // The ledger: every transaction exactly once on both sides.
    let src_ledger: Option<(i64, i64)> =
        my.query_first("SELECT COUNT(*), COUNT(DISTINCT tx) FROM ledger WHERE tx >= 0").await.unwrap();
    let (src_n, src_distinct) = src_ledger.unwrap();
    let (dst_n, dst_distinct): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), count(DISTINCT tx) FROM \"{db}\".ledger WHERE tx >= 0"
    )))
    .fetch_one(&pg)
    .await
    .unwrap();
    if src_n != written.transactions as i64 || src_distinct != src_n {
        differences.push(format!(
            "source ledger: {src_n} rows, {src_distinct} distinct, {} transactions written",
            written.transactions
        ));
    }
    if dst_n != src_n || dst_distinct != dst_n {
        let dups: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT tx, count(*) FROM \"{db}\".ledger GROUP BY tx HAVING count(*) > 1 ORDER BY tx LIMIT 10"
        )))
        .fetch_all(&pg)
        .await
        .unwrap();
        differences.push(format!(
            "target ledger: {dst_n} rows, {dst_distinct} distinct (source {src_n}); duplicated tx (first 10): {dups:?}"
        ));
    }
    let in_process_restarts = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("restarting from the stored checkpoint")
        .count();
    eprintln!(
        "{}: seed {seed}: kills {kills} (by phase {phases:?}), MariaDB restarts {my_restarts}, PostgreSQL \
         crash-restarts {pg_restarts}, pipeline restarts after transient errors {in_process_restarts}, {} transactions + {} DDL written ({} retried after a restart), \
         tables compared {tables}, rows compared {rows}, unexpected exits {}, differences: {}, in {:.0?}",
        cfg.name,
        written.transactions,
        written.ddl,
        written.retried,
        unexpected.len(),
        differences.len(),
        started.elapsed()
    );
    assert!(
        unexpected.is_empty(),
        "replicate exited by itself (log {}):\n{}",
        log.display(),
        unexpected.join("\n")
    );
    assert!(
        differences.is_empty(),
        "replica differs (seed {seed}, log {}):\n{}",
        log.display(),
        differences.join("\n")
    );
    if cfg.kills >= 20 && !cfg.snapshot_in_peace {
        assert!(
            phases.get("snapshot").copied().unwrap_or(0) >= 1,
            "some kills landed in the snapshot: {phases:?}"
        );
    }
    if std::env::var_os("CHAOS_KEEP_LOG").is_none() {
        let _ = std::fs::remove_file(&log);
    }
}

/// 100 kills (`CHAOS_KILLS`), a restart every tenth round. With `CHAOS_SNAPSHOT_IN_PEACE`
/// set, the first run finishes the initial snapshot before the kills start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes minutes; run on demand with --ignored"]
async fn chaos_at_scale() {
    let kills = std::env::var("CHAOS_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let snapshot_in_peace = std::env::var_os("CHAOS_SNAPSHOT_IN_PEACE").is_some();
    chaos(Config {
        name: "chaos_at_scale",
        kills,
        big_rows: 1_000_000,
        restart_every: 10,
        snapshot_in_peace,
    })
    .await;
}

/// A few kills in follow mode and one restart of each server, for the normal suite.
/// The initial snapshot is not interrupted: a kill or a transient error soon after a
/// *resumed* snapshot can duplicate rows of keyless tables (the known limit described in
/// synchdb-mysql's snapshot module), which `chaos_at_scale` exercises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_smoke() {
    chaos(Config {
        name: "chaos_smoke",
        kills: 6,
        big_rows: 60_000,
        restart_every: 3,
        snapshot_in_peace: true,
    })
    .await;
}

/// A snapshot killed half-way, then a source table changed (a column added, one widened):
/// the next run restarts the snapshot from scratch and must load the tables in their new
/// shape (the target tables of the interrupted plan are created anew, not just emptied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restarted_after_a_schema_change_loads_the_new_shape() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("chaos_reshape").unwrap();
    let target = synchdb_testkit::postgres().create_database("chaos_reshape").unwrap();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, note VARCHAR(200));
         INSERT INTO big SELECT seq, REPEAT('n', seq % 200) FROM seq_1_to_300000;
         CREATE TABLE small (id INT PRIMARY KEY, v VARCHAR(10));
         INSERT INTO small SELECT seq, CONCAT('v', seq) FROM seq_1_to_100;",
    )
    .await
    .unwrap();
    let pg = connect_pg(&target.url()).await;
    let pipeline = "reshape";
    let cmd = || {
        let mut c = replicate(&server.url(), src.name(), &target.url(), pipeline);
        c.args(["--chunk-rows", "2000", "--snapshot-workers", "1"]);
        c
    };
    let mut run = spawn(cmd());
    wait_until("a durable chunk", Duration::from_secs(60), || async {
        durable_chunks(&pg, pipeline).await >= 1
    })
    .await;
    kill9(&mut run);
    assert!(checkpoint(&pg, pipeline).await.is_none(), "killed during the snapshot");
    my.query_drop(
        "ALTER TABLE small ADD COLUMN c INT DEFAULT 5, MODIFY v VARCHAR(100);
         UPDATE small SET v = REPEAT('x', 50) WHERE id % 2 = 0;",
    )
    .await
    .unwrap();
    run_until_caught_up(cmd());
    assert_replica_equal(&mut my, src.name(), &pg).await;
}
