//! A snapshot killed halfway resumes with the chunks not done; the result
//! has the same rows as the source, none twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use synchdb_core::memory::MemorySink;
use synchdb_core::{Error, ErrorKind, MapRows, Pipeline, SnapshotStatus};
use synchdb_mysql::MySqlSource;
use synchdb_testkit::TestDatabase;
use synchdb_types::{Row, TableId, TableSchema, Value};

fn setup(prefix: &str) -> TestDatabase {
    let db = common::database(prefix);
    common::server()
        .exec(&format!(
            "USE `{0}`;
             CREATE TABLE pk (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL);
             INSERT INTO pk SELECT seq, CONCAT('v', seq) FROM seq_1_to_100000;
             CREATE TABLE comp (a INT, b VARCHAR(10), c DOUBLE, PRIMARY KEY (a, b));
             INSERT INTO comp SELECT seq DIV 3, CONCAT('b', seq % 3), seq / 7 FROM seq_1_to_30000;
             CREATE TABLE nokey (x INT, y VARCHAR(10));
             INSERT INTO nokey SELECT seq % 100, 'dup' FROM seq_1_to_5000;
             ANALYZE TABLE pk, comp, nokey;",
            db.name()
        ))
        .unwrap();
    db
}

/// Every row of `table` on the source, as the multiset of its text form.
fn source_rows(db: &TestDatabase, table: &str) -> BTreeMap<String, usize> {
    let out = common::server().exec(&format!("SELECT * FROM `{}`.`{table}`", db.name())).unwrap();
    let mut m = BTreeMap::new();
    for line in out.lines() {
        *m.entry(line.to_string()).or_insert(0) += 1;
    }
    m
}

/// The sink's rows of `table` in the same text form as the `mariadb -B` client prints.
fn sink_rows(sink: &MemorySink, db: &TestDatabase, table: &str) -> BTreeMap<String, usize> {
    let rows: Vec<Row> =
        sink.data().snapshot_rows.get(&TableId::new(db.name(), table)).cloned().unwrap_or_default();
    let mut m = BTreeMap::new();
    for r in rows {
        let line = r.iter().map(ToString::to_string).collect::<Vec<_>>().join("\t");
        *m.entry(line).or_insert(0) += 1;
    }
    m
}

fn assert_same_rows(sink: &MemorySink, db: &TestDatabase) {
    for t in ["pk", "comp", "nokey"] {
        let want = source_rows(db, t);
        let got = sink_rows(sink, db, t);
        assert_eq!(got.values().sum::<usize>(), want.values().sum::<usize>(), "row count of {t}");
        assert!(got == want, "rows of {t} differ from the source");
    }
}

/// Fails on one row of `pk`: the pipeline stops with chunks 0..=4 of `pk` durable.
fn failing_converter(
) -> MapRows<impl Fn(&TableSchema, Row) -> synchdb_core::Result<Option<Row>> + Send + Sync> {
    MapRows::new("crash", |t: &TableSchema, row: Row| {
        if t.id.table == "pk" && row[0] == Value::Int(55_555) {
            return Err(Error::new(ErrorKind::Convert, "simulated crash"));
        }
        Ok(Some(row))
    })
}

fn options(db: &TestDatabase) -> synchdb_mysql::MySqlSourceOptions {
    common::options(db).chunk_rows(10_000).snapshot_workers(1)
}

fn progress(sink: &MemorySink, id: &str) -> synchdb_core::SnapshotProgress {
    match sink.data().state.get(id).map(|s| s.snapshot.clone()) {
        Some(SnapshotStatus::InProgress(p)) => p,
        other => panic!("snapshot not in progress: {other:?}"),
    }
}

#[tokio::test]
async fn killed_snapshot_resumes_with_the_chunks_not_done() {
    let db = setup("resume");
    let sink = MemorySink::new();
    let err = Pipeline::builder()
        .id("resume")
        .source(MySqlSource::new(options(&db)))
        .converter(failing_converter())
        .sink(sink.clone())
        .snapshot_parallelism(1)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let p = progress(&sink, "resume");
    // pk: about 10 chunks (integer ranges from the statistics), comp: 3 (walked composite key), nokey: 1.
    let count = |t: &str| p.plan.chunks.iter().filter(|c| c.table.table == t).count();
    assert!((8..=14).contains(&count("pk")), "{} chunks of pk", count("pk"));
    assert_eq!(count("comp"), 3);
    assert_eq!(count("nokey"), 1);
    // Only pk chunks below the failing row are durable, and nothing else.
    let done_rows: u64 = p.done.iter().map(|d| d.rows).sum();
    assert!(p.done.iter().all(|d| d.table.table == "pk"));
    assert!((40_000..55_555).contains(&done_rows), "{done_rows} rows durable");
    let first_position = p.plan.position.clone();
    let (total, done) = (p.plan.chunks.len() as u64, p.done.len() as u64);

    // Restart with the same sink (it kept the state): only the rest is read.
    let stats = common::run("resume", options(&db), &sink).await.unwrap();
    assert_eq!(stats.snapshot_rows, 100_000 + 30_000 + 5_000 - done_rows);
    assert_eq!(stats.snapshot_chunks_done, total - done);
    let state = sink.data().state["resume"].clone();
    assert_eq!(state.snapshot, SnapshotStatus::Done);
    assert_eq!(state.position, Some(first_position), "follow mode starts at the original snapshot position");
    assert_same_rows(&sink, &db);
}

#[tokio::test]
async fn schema_change_while_interrupted_restarts_cleanly() {
    let db = setup("restart");
    let sink = MemorySink::new();
    let _ = Pipeline::builder()
        .id("restart")
        .source(MySqlSource::new(options(&db)))
        .converter(failing_converter())
        .sink(sink.clone())
        .snapshot_parallelism(1)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap_err();
    assert!(!progress(&sink, "restart").done.is_empty());
    common::server()
        .exec(&format!("ALTER TABLE `{}`.pk ADD COLUMN z INT NOT NULL DEFAULT 7", db.name()))
        .unwrap();

    let stats = common::run("restart", options(&db), &sink).await.unwrap();
    assert_eq!(stats.snapshot_rows, 135_000, "every chunk is read again");
    assert_eq!(sink.data().tables[&TableId::new(db.name(), "pk")].columns.len(), 3);
    assert_same_rows(&sink, &db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_snapshot_then_resume() {
    let db = setup("stop");
    let sink = MemorySink::new();
    let slow = MapRows::new("slow", |_t: &TableSchema, row: Row| {
        std::thread::sleep(Duration::from_micros(30));
        Ok(Some(row))
    });
    let handle = Pipeline::builder()
        .id("stop")
        .source(MySqlSource::new(options(&db)))
        .converter(slow)
        .sink(sink.clone())
        .snapshot_parallelism(1)
        .build()
        .unwrap()
        .start();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = match sink.data().state.get("stop").map(|s| s.snapshot.clone()) {
            Some(SnapshotStatus::InProgress(p)) => p.done.len(),
            _ => 0,
        };
        if done >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop().await.unwrap();
    let p = progress(&sink, "stop");
    let (total, done) = (p.plan.chunks.len(), p.done.len());
    assert!(done >= 3 && done < total, "{done} of {total} chunks done at shutdown");

    let stats = common::run("stop", options(&db), &sink).await.unwrap();
    assert_eq!(stats.snapshot_chunks_done as usize, total - done);
    assert_same_rows(&sink, &db);
}
