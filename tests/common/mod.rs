//! Shared helpers of the end-to-end tests: running `replicate`, waiting for
//! catch-up, and comparing every table row by row between MariaDB and
//! PostgreSQL, normalized through the documented type mapping.

#![allow(dead_code)]

pub mod fixtures;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqlx::Row as _;
use synchdb::types::{DateTime, Time};

/// The `replicate` example built by `cargo test` next to this test binary,
/// or the one `SYNCHDB_REPLICATE_BIN` names (long on-demand runs use a copy,
/// so that a rebuild meanwhile does not swap the binary under them).
pub fn replicate_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SYNCHDB_REPLICATE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|p| p.parent()).expect("target profile dir");
    let bin = profile_dir.join("examples").join("replicate");
    assert!(bin.exists(), "{} not built: run through `cargo test`, which builds the examples", bin.display());
    bin
}

/// A `replicate` command for one source database and target.
pub fn replicate(source_url: &str, database: &str, target_url: &str, pipeline: &str) -> Command {
    let mut cmd = Command::new(replicate_bin());
    cmd.env("SYNCHDB_SOURCE_URL", source_url)
        .env("SYNCHDB_TARGET_URL", target_url)
        .env("SYNCHDB_LOG", std::env::var("TEST_SYNCHDB_LOG").unwrap_or_else(|_| "warn".into()))
        .args(["--databases", database, "--pipeline-id", pipeline])
        .stdin(Stdio::null());
    cmd
}

/// Run `replicate ... --until-caught-up` to completion; panic with its output on failure.
pub fn run_until_caught_up(mut cmd: Command) -> String {
    let out = cmd.arg("--until-caught-up").output().expect("run replicate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replicate failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Run `replicate --until-caught-up`, expecting failure; returns stdout + stderr.
pub fn run_failing(mut cmd: Command) -> String {
    let out = cmd.arg("--until-caught-up").output().expect("run replicate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "replicate should fail:\n{text}");
    text
}

/// A `replicate` process running in the background, SIGKILLed when dropped
/// (so a failing test leaves no follower behind).
pub struct Follower(Child);

impl std::ops::Deref for Follower {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Follower {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawn `replicate` (follow mode) in the background. Its log (standard
/// output) is dropped unless `SYNCHDB_TEST_LOGS` is set (then it goes to the
/// test's output, for debugging with `--nocapture`).
pub fn spawn(mut cmd: Command) -> Follower {
    let out = if std::env::var_os("SYNCHDB_TEST_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() };
    Follower(cmd.stdout(out).stderr(Stdio::inherit()).spawn().expect("spawn replicate"))
}

/// SIGKILL a child and reap it.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A MariaDB connection speaking utf8mb4.
pub async fn connect_my(url: &str) -> mysql_async::Conn {
    // Rows may be larger than the server's max_allowed_packet (replayed tests
    // lower it): accept what a replication client accepts.
    let opts = mysql_async::Opts::from_url(url).expect("MariaDB URL");
    let opts = mysql_async::OptsBuilder::from_opts(opts).max_allowed_packet(Some(1 << 30));
    let mut c = mysql_async::Conn::new(opts).await.expect("connect MariaDB");
    c.query_drop("SET NAMES utf8mb4").await.unwrap();
    c
}

/// A small PostgreSQL pool.
pub async fn connect_pg(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(url).await.expect("connect PostgreSQL")
}

/// Run each statement (a string may hold several) in order; panic naming the one that fails.
pub async fn run_workload<S: AsRef<str>>(my: &mut mysql_async::Conn, statements: &[S]) {
    for sql in statements {
        let sql = sql.as_ref();
        my.query_drop(sql).await.unwrap_or_else(|e| panic!("workload statement failed: {sql}: {e}"));
    }
}

/// Split a mysql client script into statements, honouring `DELIMITER` lines
/// (as dumps and sample databases use for triggers and routines).
pub fn split_script(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut delimiter = ";".to_string();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if let Some(d) = trimmed.strip_prefix("DELIMITER ") {
            delimiter = d.trim().to_string();
            continue;
        }
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with("--")) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(delimiter.as_str()) {
            let stmt = current.trim_end().trim_end_matches(delimiter.as_str()).trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// Wait until the pipeline's checkpoint reaches the source's current binlog
/// position and no table is being copied again; panic if the follower exits
/// meanwhile.
pub async fn wait_caught_up(
    my: &mut mysql_async::Conn,
    pg: &sqlx::PgPool,
    pipeline: &str,
    follower: &mut Child,
) {
    let target = master_position(my).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    while checkpoint(pg, pipeline).await.is_none_or(|c| c < target) || resync_active(pg, pipeline).await {
        if let Some(status) = follower.try_wait().unwrap() {
            panic!("replicate exited while following: {status}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for the replica to reach {target:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll `f` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Number of snapshot chunks a pipeline has made durable.
pub async fn durable_chunks(pg: &sqlx::PgPool, pipeline: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM synchdb.snapshot_chunks WHERE pipeline_id = $1")
        .bind(pipeline)
        .fetch_one(pg)
        .await
        .unwrap_or(0)
}

/// A column as information_schema describes it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    data_type: String,
    column_type: String,
}

fn q_my(id: &str) -> String {
    format!("`{}`", id.replace('`', "``"))
}

fn q_pg(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

/// Source-side select expression for a column, giving canonical text.
fn my_expr(c: &Column) -> String {
    let n = q_my(&c.name);
    match c.data_type.as_str() {
        "bit" => {
            let width: String = c.column_type.chars().filter(|ch| ch.is_ascii_digit()).collect();
            format!("LPAD(BIN({n}), {width}, '0')")
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" => {
            format!("HEX({n})")
        }
        _ => format!("CAST({n} AS CHAR)"),
    }
}

/// Target-side select expression for a column of the given source type.
fn pg_expr(c: &Column) -> String {
    let n = q_pg(&c.name);
    match c.data_type.as_str() {
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" => {
            format!("upper(encode({n}, 'hex'))")
        }
        "time" => format!("extract(epoch from {n})::text"),
        // Zero dates (any zero part) are -infinity on the replica (the default policy).
        // to_char drops the era: " BC" is added back (MySQL's year 0 is 1 BC, see `normalize`).
        "datetime" => format!(
            "CASE WHEN {n} = '-infinity' THEN 'zero date' ELSE to_char({n}, 'YYYY-MM-DD HH24:MI:SS.US') \
             || CASE WHEN {n} < '0001-01-01' THEN ' BC' ELSE '' END END"
        ),
        "timestamp" => format!(
            "CASE WHEN {n} = '-infinity' THEN 'zero date' \
             ELSE to_char({n} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
             || CASE WHEN {n} AT TIME ZONE 'UTC' < '0001-01-01' THEN ' BC' ELSE '' END END"
        ),
        "date" => format!("CASE WHEN {n} = '-infinity' THEN 'zero date' ELSE {n}::text END"),
        "inet4" | "inet6" => format!("host({n})"),
        _ => format!("{n}::text"),
    }
}

/// JSON numbers as floats: `2E0` (MariaDB keeps the text) and `2` (jsonb's
/// numeric) are the same number.
fn numbers_as_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(numbers_as_floats),
        serde_json::Value::Object(o) => o.values_mut().for_each(numbers_as_floats),
        _ => {}
    }
}

/// Canonical form of one value, whichever side it comes from.
fn normalize(c: &Column, v: Option<String>, from_pg: bool) -> Option<String> {
    let v = v?;
    // Zero and invalid (ALLOW_INVALID_DATES) dates: the zero-date policy's.
    let zero_parts = |v: &str| {
        let date = v.split(' ').next().unwrap_or("");
        date.split('-').skip(1).any(|p| p == "00")
            || (date.len() == 10 && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err())
    };
    // MySQL's year 0 is PostgreSQL's 1 BC.
    let v = match v.strip_suffix(" BC").and_then(|d| d.strip_prefix("0001-")) {
        Some(rest) if from_pg => format!("0000-{rest}"),
        _ => v,
    };
    Some(match c.data_type.as_str() {
        // ZEROFILL pads the text MySQL shows, not the value.
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal"
            if c.column_type.contains("zerofill") =>
        {
            let t = v.trim_start_matches('0');
            if t.is_empty() || t.starts_with('.') {
                format!("0{t}")
            } else {
                t.to_string()
            }
        }
        "date" | "datetime" | "timestamp" if !from_pg && zero_parts(&v) => "zero date".into(),
        "year" => v.parse::<i32>().map(|y| y.to_string()).unwrap_or(v),
        // MySQL shows FLOAT with 6 significant digits (3.40282e38 for FLT_MAX).
        "float" => format!("{:.5e}", v.parse::<f32>().unwrap_or(f32::NAN)),
        "double" => format!("{:.15e}", v.parse::<f64>().unwrap_or(f64::NAN)),
        "datetime" | "timestamp" => match v.parse::<DateTime>() {
            Ok(d) => d.to_string(),
            Err(_) => v,
        },
        "time" => {
            if from_pg {
                let secs: f64 = v.parse().unwrap_or(f64::NAN);
                ((secs * 1e6).round() as i64).to_string()
            } else {
                v.parse::<Time>().map(|t| t.micros.to_string()).unwrap_or(v)
            }
        }
        "json" => match serde_json::from_str::<serde_json::Value>(&v.replace('\0', "\u{FFFD}")) {
            Ok(mut j) => {
                numbers_as_floats(&mut j);
                j.to_string().replace("\\u0000", "\u{FFFD}")
            }
            Err(_) => v,
        },
        // Text holding NUL reaches PostgreSQL only under `--text-nul replace`.
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" if !from_pg => {
            v.replace('\0', "\u{FFFD}")
        }
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection"
            if from_pg =>
        {
            ewkb_to_internal(&v)
        }
        _ => v,
    })
}

/// PostgreSQL holds geometry as EWKB (SRID embedded when non-zero); MySQL's
/// internal form is SRID (LE u32) + WKB. Convert the hex of one to the other.
fn ewkb_to_internal(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
    if bytes.len() < 5 {
        return hex.to_string();
    }
    let le = bytes[0] == 1;
    let ty = if le {
        u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
    } else {
        u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
    };
    let (srid, wkb) = if ty & 0x2000_0000 != 0 {
        let s = &bytes[5..9];
        let srid = if le {
            u32::from_le_bytes([s[0], s[1], s[2], s[3]])
        } else {
            u32::from_be_bytes([s[0], s[1], s[2], s[3]])
        };
        let mut wkb = vec![bytes[0]];
        let t = ty & !0x2000_0000;
        wkb.extend_from_slice(&if le { t.to_le_bytes() } else { t.to_be_bytes() });
        wkb.extend_from_slice(&bytes[9..]);
        (srid, wkb)
    } else {
        (0, bytes)
    };
    let mut out = srid.to_le_bytes().to_vec();
    out.extend(wkb);
    out.iter().map(|b| format!("{b:02X}")).collect()
}

/// Compare every table of `database` between the source and the target
/// schema of the same name; panics with the first differences.
pub async fn assert_replica_equal(my: &mut mysql_async::Conn, database: &str, pg: &sqlx::PgPool) {
    let problems = replica_differences(my, database, pg).await;
    assert!(problems.is_empty(), "replica differs from source:\n{}", problems.join("\n"));
}

/// The differences between every table of `database` and the target schema
/// of the same name (empty when equal), with the number of tables compared.
pub async fn replica_differences(
    my: &mut mysql_async::Conn,
    database: &str,
    pg: &sqlx::PgPool,
) -> Vec<String> {
    replica_comparison(my, database, pg).await.1
}

/// `(tables compared, differences)` between `database` and its replica.
pub async fn replica_comparison(
    my: &mut mysql_async::Conn,
    database: &str,
    pg: &sqlx::PgPool,
) -> (usize, Vec<String>) {
    my.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let tables: Vec<String> = my
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' \
             ORDER BY TABLE_NAME",
            (database,),
        )
        .await
        .unwrap();

    let pg_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(database)
    .fetch_all(pg)
    .await
    .unwrap();
    let mut sorted = tables.clone();
    sorted.sort();
    let mut pg_sorted = pg_tables.clone();
    pg_sorted.sort();
    let mut problems = Vec::new();
    if pg_sorted != sorted {
        let missing: Vec<&String> = sorted.iter().filter(|t| !pg_sorted.contains(t)).collect();
        let extra: Vec<&String> = pg_sorted.iter().filter(|t| !sorted.contains(t)).collect();
        problems
            .push(format!("table lists differ: missing on target {missing:?}, extra on target {extra:?}"));
    }
    for table in &tables {
        let cols: Vec<(String, String, String)> = my
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await
            .unwrap();
        let mut cols: Vec<Column> = cols
            .into_iter()
            .map(|(name, data_type, column_type)| Column { name, data_type, column_type })
            .collect();
        // MariaDB's JSON is LONGTEXT with a json_valid check: compare it as JSON.
        let checks: Vec<String> = my
            .exec(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                (database, table),
            )
            .await
            .unwrap_or_default();
        for c in &mut cols {
            if c.data_type == "longtext"
                && checks.iter().any(|k| k.contains(&format!("json_valid(`{}`)", c.name)))
            {
                c.data_type = "json".into();
            }
        }
        let pg_cols: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
             ORDER BY ordinal_position",
        )
        .bind(database)
        .bind(table)
        .fetch_all(pg)
        .await
        .unwrap();
        // Same names; the order may differ (PostgreSQL appends columns that
        // MySQL adds FIRST/AFTER), values are compared by name.
        let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
        let mut a = names.clone();
        a.sort();
        let mut b = pg_cols.clone();
        b.sort();
        if a != b {
            problems.push(format!("{table}: columns differ: source {names:?}, target {pg_cols:?}"));
            continue;
        }
        let my_sql = format!(
            "SELECT {} FROM {}.{}",
            cols.iter().map(my_expr).collect::<Vec<_>>().join(", "),
            q_my(database),
            q_my(table)
        );
        let my_rows: Vec<mysql_async::Row> = match my.query(my_sql).await {
            Ok(r) => r,
            // `ALTER TABLE ... DISCARD TABLESPACE` left the source table without
            // rows to read (InnoDB's import tests): nothing to compare.
            Err(mysql_async::Error::Server(e)) if e.code == 1814 => continue,
            Err(e) => {
                problems.push(format!("{table}: reading the source failed: {e}"));
                continue;
            }
        };
        let mut src: Vec<Vec<Option<String>>> = my_rows
            .into_iter()
            .map(|r| {
                cols.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let v: Option<Vec<u8>> = r.get(i).unwrap_or(None);
                        normalize(c, v.map(|b| String::from_utf8_lossy(&b).into_owned()), false)
                    })
                    .collect()
            })
            .collect();
        let pg_sql = format!(
            "SELECT {} FROM {}.{}",
            cols.iter().map(pg_expr).collect::<Vec<_>>().join(", "),
            q_pg(database),
            q_pg(table)
        );
        let pg_rows = match sqlx::query(sqlx::AssertSqlSafe(pg_sql)).fetch_all(pg).await {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{table}: reading the target failed: {e}"));
                continue;
            }
        };
        let mut dst: Vec<Vec<Option<String>>> = pg_rows
            .iter()
            .map(|r| {
                cols.iter()
                    .enumerate()
                    .map(|(i, c)| normalize(c, r.get::<Option<String>, _>(i), true))
                    .collect()
            })
            .collect();
        src.sort();
        dst.sort();
        if src != dst {
            let mut counts: BTreeMap<&Vec<Option<String>>, i64> = BTreeMap::new();
            for r in &src {
                *counts.entry(r).or_default() += 1;
            }
            for r in &dst {
                *counts.entry(r).or_default() -= 1;
            }
            let diffs: Vec<String> = counts
                .iter()
                .filter(|(_, n)| **n != 0)
                .take(6)
                .map(|(r, n)| {
                    format!("  {} {:?}", if *n > 0 { "missing on target" } else { "extra on target" }, r)
                })
                .collect();
            problems.push(format!(
                "{table}: {} source rows, {} target rows; columns {names:?}\n{}",
                src.len(),
                dst.len(),
                diffs.join("\n")
            ));
        }
    }
    (tables.len(), problems)
}

/// The source's current binlog position as `(file, pos)`.
pub async fn master_position(my: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = my.query_first("SHOW MASTER STATUS").await.unwrap().expect("binlog on");
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Whether `pipeline` is copying tables again (a resync not joined yet).
pub async fn resync_active(pg: &sqlx::PgPool, pipeline: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT resync IS NOT NULL FROM synchdb.pipelines WHERE pipeline_id = $1")
        .bind(pipeline)
        .fetch_optional(pg)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The checkpoint stored for `pipeline` as `(file, pos)`.
pub async fn checkpoint(pg: &sqlx::PgPool, pipeline: &str) -> Option<(String, u64)> {
    let pos: Option<String> = sqlx::query_scalar(synchdb_testkit::checkpoint::CHECKPOINT_SQL)
        .bind(pipeline)
        .fetch_optional(pg)
        .await
        .ok()
        .flatten()
        .flatten();
    synchdb_testkit::checkpoint::parse_checkpoint(&pos?)
}
