//! TLS end to end: private MariaDB and PostgreSQL servers serving certificates
//! the test kit generated, and `replicate` connecting with every verifying
//! mode, against the right CA and host name and against wrong ones.
//!
//! Both servers refuse connections without TLS (MariaDB
//! `--require-secure-transport=ON`, PostgreSQL `hostssl` lines only in
//! `pg_hba.conf`), so everything `replicate` does — the snapshot readers, the
//! binlog stream, the sink's pool — runs over TLS or fails.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use synchdb_testkit::{MariaDb, Postgres, TlsFiles};

/// A MariaDB and a PostgreSQL serving `tls`'s server certificate, refusing TCP
/// connections without TLS.
struct Servers {
    tls: TlsFiles,
    my: MariaDb,
    pg: Postgres,
}

fn start_servers(names: &[&str]) -> Servers {
    let tls = TlsFiles::generate(names).expect("generate certificates");
    let mut args = tls.mariadb_args();
    args.push("--require-secure-transport=ON".into());
    // performance_schema shows each connection's TLS cipher (status_by_thread).
    args.push("--performance-schema=ON".into());
    let my = MariaDb::start_with_args(&args).expect("private MariaDB with TLS");
    let pg = Postgres::start_with_tls(&tls, &[]).expect("private PostgreSQL with TLS");
    pg.write_hba("local all all trust\nhostssl all all 127.0.0.1/32 trust\n").expect("pg_hba.conf");
    Servers { tls, my, pg }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl Servers {
    /// The source URL (no database: `replicate --databases` names it) with TLS parameters.
    fn source(&self, params: &str) -> String {
        format!("{}?{params}", self.my.url())
    }

    /// A new target database's URL with TLS parameters, and its guard.
    fn target(&self, prefix: &str, params: &str) -> (synchdb_testkit::TestDatabase, String) {
        let db = self.pg.create_database(prefix).unwrap();
        let url = format!("{}?{params}", db.url());
        (db, url)
    }

    /// A test connection to MariaDB over TLS (certificate not checked: the
    /// test's own connection is not what is tested).
    async fn connect_my(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&self.my.url()).unwrap())
            .ssl_opts(Some(mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true)));
        let mut c = mysql_async::Conn::new(opts).await.expect("connect MariaDB over TLS");
        c.query_drop("SET NAMES utf8mb4").await.unwrap();
        c
    }
}

async fn create_source(my: &mut mysql_async::Conn, db: &str, rows: usize) {
    my.query_drop(format!(
        "CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(200), b BLOB, at DATETIME(6)); \
         CREATE TABLE `{db}`.ledger (n INT NOT NULL, note VARCHAR(50))"
    ))
    .await
    .unwrap();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(100) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, 'row {i} ✓', UNHEX('00FF{i:04X}'), '2024-01-02 03:04:05.{i:06}')"))
            .collect();
        my.query_drop(format!("INSERT INTO `{db}`.t VALUES {}", values.join(", "))).await.unwrap();
    }
}

/// Transactions of inserts, updates and deletes, plus a keyless ledger row each.
fn workload(db: &str, from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| {
            format!(
                "BEGIN; INSERT INTO `{db}`.t VALUES ({i}, 'new {i}', UNHEX('ABCD'), NOW(6)); \
                 UPDATE `{db}`.t SET v = CONCAT(v, '+'), b = NULL WHERE id = {}; \
                 DELETE FROM `{db}`.t WHERE id = {}; \
                 INSERT INTO `{db}`.ledger VALUES ({i}, 'tx {i}'); COMMIT",
                i / 3,
                i - 50
            )
        })
        .collect()
}

/// Run `replicate --until-caught-up`, killing it after `limit` (a failure
/// retried for ever would hang it); returns whether it succeeded, its output
/// and how long it took.
fn run_limited(mut cmd: Command, limit: Duration) -> (bool, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let started = Instant::now();
    let mut child = cmd
        .arg("--until-caught-up")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn replicate");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            kill9(&mut child);
            panic!(
                "replicate still running after {limit:?} (a TLS failure retried?):\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), std::fs::read_to_string(&out_path).unwrap(), started.elapsed())
}

/// `replicate --until-caught-up` must succeed within `limit`.
fn run_ok(cmd: Command, limit: Duration) {
    let (ok, text, _) = run_limited(cmd, limit);
    assert!(ok, "replicate failed:\n{text}");
}

/// `replicate --until-caught-up` must fail within `limit`; returns its output.
fn run_expecting_failure(cmd: Command, limit: Duration) -> (String, Duration) {
    let (ok, text, took) = run_limited(cmd, limit);
    assert!(!ok, "replicate should have failed:\n{text}");
    eprintln!("replicate failed in {took:?}: {}", text.trim());
    (text, took)
}

/// (a) verify_identity / verify-full with the right CA and host name: snapshot,
/// then follow changes over TLS on every connection; the replica is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_over_verified_tls() {
    let s = start_servers(&["127.0.0.1", "localhost"]);
    let ca = path(&s.tls.ca_cert());
    let mut my = s.connect_my().await;

    // Without TLS both servers refuse.
    let plain = mysql_async::Conn::from_url(format!("{}?prefer_socket=false", s.my.url())).await;
    let err = plain.expect_err("MariaDB must refuse a connection without TLS").to_string();
    eprintln!("MariaDB without TLS: {err}");
    // MariaDB 10.11 answers an insecure transport with "access denied"; the
    // same account logs in over TLS (the connection above).
    assert!(err.contains("1045"), "{err}");
    assert_eq!(s.my.exec("SELECT @@require_secure_transport").unwrap().trim(), "1");
    let (_plain_db, plain_url) = s.target("tls_plain", "sslmode=disable");
    let refused = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&plain_url).await;
    let refused = refused.expect_err("PostgreSQL must refuse a connection without TLS").to_string();
    eprintln!("PostgreSQL without TLS: {refused}");
    assert!(refused.contains("no encryption"), "{refused}");

    let db = "tls_full";
    create_source(&mut my, db, 500).await;
    let (dst, target) = s.target("tls_full", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let source = s.source(&format!("ssl-mode=verify_identity&ssl-ca={ca}"));
    let mut follower = spawn(replicate(&source, db, &target, "tlsfull"));
    let pg = connect_pg(&target).await;
    wait_caught_up(&mut my, &pg, "tlsfull", &mut follower).await;
    assert_replica_equal(&mut my, db, &pg).await;

    // Changes while following arrive through the binlog stream.
    run_workload(&mut my, &workload(db, 500, 800)).await;
    wait_caught_up(&mut my, &pg, "tlsfull", &mut follower).await;
    assert_replica_equal(&mut my, db, &pg).await;
    let ledger: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{db}\".ledger")))
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(ledger, 300);

    // The binlog dump connection itself is encrypted (MariaDB's view of it).
    let dump: Vec<(u64, String)> = my
        .query(
            "SELECT t.PROCESSLIST_ID, s.VARIABLE_VALUE FROM performance_schema.threads t \
             JOIN performance_schema.status_by_thread s ON s.THREAD_ID = t.THREAD_ID \
             WHERE t.PROCESSLIST_COMMAND LIKE 'Binlog Dump%' AND s.VARIABLE_NAME = 'Ssl_cipher'",
        )
        .await
        .unwrap();
    assert_eq!(dump.len(), 1, "one binlog dump connection: {dump:?}");
    assert!(!dump[0].1.is_empty(), "the binlog dump connection has no TLS cipher: {dump:?}");
    eprintln!("binlog dump connection {} uses {}", dump[0].0, dump[0].1);
    // And so are replicate's PostgreSQL connections.
    let (sessions, all_ssl): (i64, Option<bool>) = sqlx::query_as(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = current_database() AND a.application_name = 'synchdb'",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert!(sessions > 0, "replicate has PostgreSQL sessions");
    assert_eq!(all_ssl, Some(true), "every replicate session to PostgreSQL uses TLS");

    kill9(&mut follower);
    drop(dst);
}

/// (b) verify_ca with the right CA passes against a certificate for another
/// host name, (c) a wrong CA fails fast under both verifying modes on both
/// sides, (d) verify_identity / verify-full fail on the host name, (e)
/// required / require need no CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_and_failures() {
    // The certificate names only `localhost`; replicate connects to 127.0.0.1.
    let s = start_servers(&["localhost"]);
    let ca = path(&s.tls.ca_cert());
    let wrong = path(&s.tls.wrong_ca_cert());
    let mut my = s.connect_my().await;
    let db = "tls_modes";
    create_source(&mut my, db, 200).await;
    let host = format!("127.0.0.1:{}", s.my.port());
    let limit = Duration::from_secs(30);

    // (b) verify_ca / verify-ca: the chain is checked, the host name is not.
    let (_b, target) = s.target("tls_ca", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    let source = s.source(&format!("ssl-mode=verify_ca&ssl-ca={ca}"));
    run_ok(replicate(&source, db, &target, "tlsca"), limit);
    assert_replica_equal(&mut my, db, &connect_pg(&target).await).await;

    // (e) required / require: TLS without any certificate check.
    let (_e, target) = s.target("tls_req", "sslmode=require");
    run_ok(replicate(&s.source("ssl-mode=required"), db, &target, "tlsreq"), limit);
    assert_replica_equal(&mut my, db, &connect_pg(&target).await).await;

    let good_source_ca = s.source(&format!("ssl-mode=verify_ca&ssl-ca={ca}"));
    let (_t, good_target_ca) = s.target("tls_good", &format!("sslmode=verify-ca&sslrootcert={ca}"));

    // (c) the wrong CA: fails fast, naming the certificate, under both verifying modes.
    for mode in ["verify_ca", "verify_identity"] {
        let source = s.source(&format!("ssl-mode={mode}&ssl-ca={wrong}"));
        let (text, took) = run_expecting_failure(
            replicate(&source, db, &good_target_ca, &format!("w{}", mode.replace('-', "_"))),
            limit,
        );
        assert!(text.contains("certificate"), "source {mode}, wrong CA:\n{text}");
        assert!(text.contains(&host), "source {mode}, wrong CA: the host is named:\n{text}");
        assert!(text.contains("UnknownIssuer"), "source {mode}, wrong CA:\n{text}");
        eprintln!("source ssl-mode={mode}, wrong CA: failed in {took:?}");
    }
    for mode in ["verify-ca", "verify-full"] {
        let (_w, target) = s.target("tls_wrong", &format!("sslmode={mode}&sslrootcert={wrong}"));
        let (text, took) = run_expecting_failure(
            replicate(&good_source_ca, db, &target, &format!("w{}", mode.replace('-', "_"))),
            limit,
        );
        assert!(text.contains("certificate"), "target {mode}, wrong CA:\n{text}");
        assert!(text.contains("UnknownIssuer"), "target {mode}, wrong CA:\n{text}");
        eprintln!("target sslmode={mode}, wrong CA: failed in {took:?}");
    }

    // (d) verify_identity / verify-full with the right CA: the host name 127.0.0.1
    // is not in the certificate.
    let source = s.source(&format!("ssl-mode=verify_identity&ssl-ca={ca}"));
    let (text, took) = run_expecting_failure(replicate(&source, db, &good_target_ca, "dsrc"), limit);
    assert!(text.contains("certificate not valid for name \"127.0.0.1\""), "source verify_identity:\n{text}");
    assert!(text.contains(&host), "source verify_identity: the host is named:\n{text}");
    eprintln!("source ssl-mode=verify_identity, wrong host name: failed in {took:?}");
    let (_d, target) = s.target("tls_name", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let (text, took) = run_expecting_failure(replicate(&good_source_ca, db, &target, "dtgt"), limit);
    assert!(text.contains("certificate not valid for name \"127.0.0.1\""), "target verify-full:\n{text}");
    eprintln!("target sslmode=verify-full, wrong host name: failed in {took:?}");
}
