//! `replicate --verify`: a correct replica under a continuous source workload
//! is reported equal; tampering on the target (a changed value, a deleted
//! row, an extra row, a keyless duplicate, a masked or transformed column) is
//! reported with exactly the right table and keys.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

const MASK_KEY: &str = "verify-mask-key";

fn mapping(db: &str) -> String {
    format!(
        r#"
hash_key_env = "SYNCHDB_TEST_MASK_KEY"

[tables."{db}.m".columns]
email = {{ mask = {{ kind = "hash" }} }}

[tables."{db}.x".columns]
name = {{ transform = "upper(%d)" }}

[tables."{db}.r"]
rename = "{db}.renamed"
"#
    )
}

fn verify_cmd(source: &str, db: &str, target: &str, pipeline: &str, map: &std::path::Path) -> Command {
    let mut cmd = replicate(source, db, target, pipeline);
    cmd.env("SYNCHDB_TEST_MASK_KEY", MASK_KEY).arg("--mapping").arg(map);
    cmd
}

/// Run `replicate --verify`; returns (exit code, stdout).
fn run_verify(mut cmd: Command, extra: &[&str]) -> (i32, String) {
    let out = cmd.arg("--verify").args(extra).output().expect("run replicate --verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "verify failed ({code}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn line<'a>(report: &'a str, table: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{table}:")))
        .unwrap_or_else(|| panic!("no line for {table}:\n{report}"))
}

/// The sample lines under a table's line.
fn samples<'a>(report: &'a str, table: &str) -> Vec<&'a str> {
    report
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{table}:")))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}

async fn setup(my: &mut mysql_async::Conn, db: &str) {
    let setup = format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(50), n INT, d DECIMAL(12,3), at DATETIME(6), j JSON); \
         CREATE TABLE `{db}`.ledger (n INT NOT NULL, note VARCHAR(50)); \
         CREATE TABLE `{db}`.m (id INT PRIMARY KEY, email VARCHAR(100)); \
         CREATE TABLE `{db}`.x (id INT PRIMARY KEY, name VARCHAR(50)); \
         CREATE TABLE `{db}`.s (code VARCHAR(20) PRIMARY KEY, v INT); \
         CREATE TABLE `{db}`.r (id BIGINT UNSIGNED PRIMARY KEY, b VARBINARY(20)); \
         CREATE TABLE `{db}`.gone (id INT PRIMARY KEY); \
         INSERT INTO `{db}`.t SELECT seq, CONCAT('v', seq), seq % 7, seq / 3, '2024-01-01 00:00:00' + INTERVAL seq SECOND, \
           JSON_OBJECT('k', seq) FROM seq.seq_1_to_3000; \
         INSERT INTO `{db}`.ledger SELECT seq % 50, CONCAT('n', seq % 50) FROM seq.seq_1_to_400; \
         INSERT INTO `{db}`.m SELECT seq, CONCAT('user', seq, '@example.com') FROM seq.seq_1_to_300; \
         INSERT INTO `{db}`.x SELECT seq, CONCAT('name', seq) FROM seq.seq_1_to_300; \
         INSERT INTO `{db}`.s SELECT CONCAT(IF(seq % 2, 'a', 'B'), seq), seq FROM seq.seq_1_to_300; \
         INSERT INTO `{db}`.r SELECT seq * 1000000000000, UNHEX(HEX(seq)) FROM seq.seq_1_to_300; \
         INSERT INTO `{db}`.gone VALUES (1)"
    );
    my.query_drop(setup).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_reported_with_table_and_keys() {
    let my_server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = my_server.create_database("vtamper").unwrap();
    let dst = pg_server.create_database("vtamper").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&my_server.url()).await;
    setup(&mut my, &db).await;
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("mapping.toml");
    std::fs::write(&map, mapping(&db)).unwrap();
    // Verification compares with a target that has reached the source's
    // position: the pipeline runs meanwhile (here the shared source has other
    // tests writing, so its position moves on).
    let mut follower = spawn(verify_cmd(&my_server.url(), &db, &dst.url(), "vtamper", &map));
    {
        let pg = connect_pg(&dst.url()).await;
        wait_caught_up(&mut my, &pg, "vtamper", &mut follower).await;
    }

    // A correct replica: every table equal, several chunks per keyed table.
    let (code, report) = run_verify(
        verify_cmd(&my_server.url(), &db, &dst.url(), "vtamper", &map),
        &["--verify-chunk-rows", "250"],
    );
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("7 tables, 7 equal, 0 differ"), "{report}");
    let t_line = line(&report, &format!("{db}.t"));
    assert!(t_line.contains("3000 source rows, 3000 target rows"), "{report}");
    let chunks: u32 =
        t_line.split(", ").nth(2).and_then(|c| c.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(chunks >= 10, "several chunks per keyed table:\n{report}");
    assert!(line(&report, &format!("{db}.r")).contains(&format!("target {db}.renamed")), "{report}");

    let pg = connect_pg(&dst.url()).await;
    let tamper = format!(
        "UPDATE \"{db}\".t SET v = 'tampered' WHERE id = 5; \
         UPDATE \"{db}\".t SET d = d + 0.001 WHERE id = 2600; \
         DELETE FROM \"{db}\".t WHERE id = 17; \
         INSERT INTO \"{db}\".t (id, v) VALUES (100000, 'extra'); \
         INSERT INTO \"{db}\".ledger SELECT * FROM \"{db}\".ledger WHERE n = 3 LIMIT 1; \
         UPDATE \"{db}\".m SET email = 'someone-else' WHERE id = 3; \
         UPDATE \"{db}\".x SET name = 'name4' WHERE id = 4; \
         DELETE FROM \"{db}\".s WHERE code = 'B10'; \
         UPDATE \"{db}\".renamed SET b = '\\x00' WHERE id = 7000000000000; \
         DROP TABLE \"{db}\".gone"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(tamper)).execute(&pg).await.unwrap();

    let (code, report) = run_verify(
        verify_cmd(&my_server.url(), &db, &dst.url(), "vtamper", &map),
        &["--verify-chunk-rows", "250"],
    );
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("7 tables, 0 equal, 7 differ"), "{report}");
    let t = samples(&report, &format!("{db}.t"));
    assert!(line(&report, &format!("{db}.t")).contains("4 differing rows"), "{report}");
    assert_eq!(t.len(), 4, "{report}");
    assert!(
        t.iter().any(|l| l.contains("key id=\"5\": changed: v: source \"v5\" target \"tampered\"")),
        "{report}"
    );
    assert!(
        t.iter().any(|l| l.contains("key id=\"2600\": changed: d: source \"866.667\" target \"866.668\"")),
        "{report}"
    );
    assert!(t.iter().any(|l| l.contains("key id=\"17\": missing on target")), "{report}");
    assert!(t.iter().any(|l| l.contains("key id=\"100000\": extra on target")), "{report}");
    let ledger = samples(&report, &format!("{db}.ledger"));
    assert_eq!(ledger.len(), 1, "{report}");
    assert!(
        ledger[0]
            .contains("row: extra on target: n: source NULL target \"3\"; note: source NULL target \"n3\""),
        "{report}"
    );
    // The masked column compares as masked: the target's value is not the hash of the source value.
    let m = samples(&report, &format!("{db}.m"));
    assert_eq!(m.len(), 1, "{report}");
    assert!(
        m[0].contains("key id=\"3\": changed: email:") && m[0].contains("target \"someone-else\""),
        "{report}"
    );
    assert!(!report.contains("user3@example.com"), "the unmasked value must not be printed:\n{report}");
    // The transformed column compares after the transform (upper).
    let x = samples(&report, &format!("{db}.x"));
    assert_eq!(x.len(), 1, "{report}");
    assert!(x[0].contains("key id=\"4\": changed: name: source \"NAME4\" target \"name4\""), "{report}");
    let s = samples(&report, &format!("{db}.s"));
    assert_eq!(s.len(), 1, "{report}");
    assert!(s[0].contains("key code=\"B10\": missing on target"), "{report}");
    let r = samples(&report, &format!("{db}.r"));
    assert!(r.len() == 1 && r[0].contains("key id=\"7000000000000\": changed: b:"), "{report}");
    assert!(line(&report, &format!("{db}.gone")).contains("missing"), "{report}");

    // Only some tables.
    let (code, report) = run_verify(
        verify_cmd(&my_server.url(), &db, &dst.url(), "vtamper", &map),
        &["--verify-tables", &format!("{db}.x,{db}.m"), "--verify-rechecks", "0"],
    );
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("2 tables, 0 equal, 2 differ"), "{report}");

    // --repair writes the differing chunks of keyed tables again while the
    // pipeline runs; the keyless ledger is named as not repaired.
    let (code, report) =
        run_verify(verify_cmd(&my_server.url(), &db, &dst.url(), "vtamper", &map), &["--repair"]);
    assert_eq!(code, 1, "the keyless table is left differing:\n{report}");
    assert!(report.contains(&format!("repair: {db}.ledger not repaired")), "{report}");
    assert!(report.contains("verifying them again"), "{report}");
    let (code, report) = run_verify(verify_cmd(&my_server.url(), &db, &dst.url(), "vtamper", &map), &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("7 tables, 5 equal, 2 differ"),
        "only the ledger and the dropped table differ:\n{report}"
    );
    assert!(line(&report, &format!("{db}.ledger")).contains("differs"), "{report}");
    assert!(line(&report, &format!("{db}.gone")).contains("missing"), "{report}");
    assert!(follower.try_wait().unwrap().is_none(), "the pipeline keeps running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_false_alarm_while_the_source_writes() {
    let my_server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = my_server.create_database("vbusy").unwrap();
    let dst = pg_server.create_database("vbusy").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&my_server.url()).await;
    setup(&mut my, &db).await;
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("mapping.toml");
    std::fs::write(&map, mapping(&db)).unwrap();
    let mut follower = spawn(verify_cmd(&my_server.url(), &db, &dst.url(), "vbusy", &map));
    let pg = connect_pg(&dst.url()).await;
    wait_caught_up(&mut my, &pg, "vbusy", &mut follower).await;

    // Writers change rows everywhere while the verification runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let url = my_server.url_for(&db);
        let stop = stop.clone();
        let written = written.clone();
        tokio::spawn(async move {
            let mut my = connect_my(&url).await;
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = (i * 7919) % 3000 + 1;
                let sql = format!(
                    "BEGIN; UPDATE t SET v = CONCAT('w', {i}), n = n + 1 WHERE id = {id}; \
                     INSERT INTO ledger VALUES ({}, 'w{i}'); \
                     UPDATE m SET email = CONCAT('u', {i}, '@x.org') WHERE id = {}; \
                     UPDATE x SET name = CONCAT('w', {i}) WHERE id = {}; \
                     DELETE FROM t WHERE id = {}; INSERT INTO t (id, v) VALUES ({}, 'new') ON DUPLICATE KEY UPDATE v = 'again'; \
                     COMMIT",
                    i % 50,
                    i % 300 + 1,
                    (i * 13) % 300 + 1,
                    (i * 31) % 3000 + 1,
                    (i * 31) % 3000 + 1,
                );
                my.query_drop(sql).await.unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, report) = tokio::task::spawn_blocking({
        let cmd = verify_cmd(&my_server.url(), &db, &dst.url(), "vbusy", &map);
        move || run_verify(cmd, &["--verify-chunk-rows", "200"])
    })
    .await
    .unwrap();
    let during = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(during > 20, "the source must write throughout the verification ({during} transactions)");
    assert_eq!(code, 0, "a correct replica under writes must verify equal:\n{report}");
    assert!(report.contains("7 tables, 7 equal, 0 differ"), "{report}");
    // And after the writes stop, still equal.
    wait_caught_up(&mut my, &pg, "vbusy", &mut follower).await;
    let (code, report) = run_verify(verify_cmd(&my_server.url(), &db, &dst.url(), "vbusy", &map), &[]);
    assert_eq!(code, 0, "{report}");
}
