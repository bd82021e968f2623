//! Killing the sink between batches and in the middle of one: table and checkpoint agree.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use synchdb_core::memory::MemorySource;
use synchdb_core::{ChunkInfo, ErrorKind, Pipeline, Sink, SinkState, SnapshotStatus};
use synchdb_postgres::PgSinkOptions;
use synchdb_types::*;

/// The pid of the sink's backend that runs a statement matching `like` (waits for it).
async fn backend(admin: &sqlx::PgPool, db: &str, like: &str) -> i32 {
    for _ in 0..500 {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'synchdb' \
             AND state = 'active' AND query LIKE $2 LIMIT 1",
        )
        .bind(db)
        .bind(like)
        .fetch_optional(admin)
        .await
        .unwrap();
        if let Some(p) = pid {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no sink backend running {like}");
}

#[tokio::test]
async fn killed_in_the_middle_of_a_batch_then_restarted() {
    let db = db("pg_crash_mid");
    let s = sink(&db, |o| o).await;
    // keyless: a double apply would show as duplicates
    let a = table("c", "a", vec![int("v", IntWidth::Int, false)], &[]);
    let b = table("c", "b", vec![int("id", IntWidth::Int, false)], &["id"]);
    snapshot(&s, "mid", &[(a.clone(), vec![]), (b.clone(), vec![])]).await;
    s.apply("mid", &batch(10, vec![ins(&a, vec![Value::Int(1)], 10)])).await.unwrap();

    // Another session holds a lock on b: the batch writes a, then waits on b; we kill it there.
    let admin = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let mut locker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE c.b IN ACCESS EXCLUSIVE MODE").execute(&mut *locker).await.unwrap();
    let events = vec![
        ins(&a, vec![Value::Int(2)], 20),
        ins(&a, vec![Value::Int(3)], 20),
        ins(&b, vec![Value::Int(1)], 20),
    ];
    let bt = batch(20, events);
    let s2 = s.clone();
    let bt2 = bt.clone();
    let running = tokio::spawn(async move { s2.apply("mid", &bt2).await });
    let pid = backend(&admin, db.name(), "INSERT INTO \"c\".\"b\"%").await;
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&admin).await.unwrap();
    assert!(killed);
    locker.rollback().await.unwrap();
    let err = running.await.unwrap().expect_err("the killed batch fails");
    assert_eq!(err.kind(), ErrorKind::SinkConnection, "{err}");
    assert!(err.kind().is_transient());
    // Nothing of the batch is there, and the checkpoint did not move.
    assert_eq!(query(&db, "SELECT v FROM c.a ORDER BY v"), ["1"]);
    drop(s);

    // Restart: a new sink resumes from the stored position and applies the batch once.
    let s = sink(&db, |o| o).await;
    let st = s.load_state("mid").await.unwrap().unwrap();
    assert_eq!(st.position, Some(pos(10)));
    s.apply("mid", &bt).await.unwrap();
    assert_eq!(query(&db, "SELECT v FROM c.a ORDER BY v"), ["1", "2", "3"]);
    assert_eq!(one(&db, "SELECT count(*) FROM c.b"), "1");
    assert_eq!(s.load_state("mid").await.unwrap().unwrap().position, Some(pos(20)));
    admin.close().await;
}

#[tokio::test]
async fn killed_in_the_middle_of_a_copy_chunk() {
    let db = db("pg_crash_copy");
    let s = sink(&db, |o| o.copy_buffer_bytes(1024)).await;
    let t = table("c", "t", vec![int("id", IntWidth::Int, false), varchar("v", 200)], &["id"]);
    let plan = synchdb_core::SnapshotPlan { position: pos(4), tables: vec![t.id.clone()], chunks: vec![] };
    let started = synchdb_core::StateUpdate {
        snapshot: Some(synchdb_core::SnapshotUpdate::Started(plan)),
        ..Default::default()
    };
    s.prepare_snapshot("cp", std::slice::from_ref(&t), &[], &started).await.unwrap();
    let rows: Vec<Row> = (0..2000).map(|i| vec![Value::Int(i), Value::Text(format!("{i:0>150}"))]).collect();
    let chunk = ChunkInfo { table: t.id.clone(), index: 0, count: 1, lower: None, upper: None };

    // The stream sends half the rows (several COPY pieces), then waits until the backend is killed.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let first: Vec<Row> = rows[..1000].to_vec();
    let second: Vec<Row> = rows[1000..].to_vec();
    let stream = futures::stream::once(async move { Ok(first) })
        .chain(futures::stream::once(async move {
            let _ = go_rx.await;
            Ok(second)
        }))
        .boxed();
    let s2 = s.clone();
    let (t2, c2) = (t.clone(), chunk.clone());
    let running = tokio::spawn(async move { s2.write_chunk("cp", &t2, &c2, &pos(4), stream).await });
    let admin = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let pid = backend(&admin, db.name(), "COPY%").await;
    let _: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&admin).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = go_tx.send(());
    let err = running.await.unwrap().expect_err("killed chunk fails");
    assert_eq!(err.kind(), ErrorKind::SinkConnection, "{err}");
    assert_eq!(one(&db, "SELECT count(*) FROM c.t"), "0");
    let st = s.load_state("cp").await.unwrap().unwrap();
    let SnapshotStatus::InProgress(p) = st.snapshot else {
        panic!("snapshot not in progress: {:?}", st.snapshot)
    };
    assert!(p.done.is_empty());

    // Retried: the rows arrive once and the chunk is recorded with its count.
    let n = s.write_chunk("cp", &t, &chunk, &pos(4), rows_stream(rows)).await.unwrap();
    assert_eq!(n, 2000);
    assert_eq!(one(&db, "SELECT count(*), count(DISTINCT id) FROM c.t"), "2000|2000");
    let SnapshotStatus::InProgress(p) = s.load_state("cp").await.unwrap().unwrap().snapshot else { panic!() };
    assert_eq!((p.done.len(), p.done[0].rows), (1, 2000));

    // The skip points of a finished snapshot are stored with it and loaded back.
    let skip = synchdb_core::SkipPoint { table: t.id.clone(), position: pos(9) };
    let done = synchdb_core::StateUpdate {
        position: Some(pos(4)),
        snapshot: Some(synchdb_core::SnapshotUpdate::Finished),
        skip_before: Some(vec![skip.clone()]),
        ..Default::default()
    };
    s.finish_snapshot("cp", std::slice::from_ref(&t), &done).await.unwrap();
    let st = s.load_state("cp").await.unwrap().unwrap();
    assert_eq!(st.snapshot, SnapshotStatus::Done);
    assert_eq!(st.skip_before, vec![skip]);
    admin.close().await;
}

fn txs(
    t: &std::sync::Arc<TableSchema>,
    k: &std::sync::Arc<TableSchema>,
    range: std::ops::Range<u64>,
) -> Vec<Transaction> {
    range
        .map(|i| {
            let n = 100 + i;
            tx(
                i,
                n,
                vec![
                    ins(t, vec![Value::Int(i as i64)], n),
                    ins(k, vec![Value::Int(i as i64), Value::Text(format!("v{i}"))], n),
                ],
            )
        })
        .collect()
}

#[tokio::test]
async fn pipeline_restarts_between_batches_without_duplicates() {
    let db = db("pg_crash_between");
    let keyless = table("p", "log", vec![int("v", IntWidth::Int, false)], &[]);
    let keyed = table("p", "kv", vec![int("id", IntWidth::Int, false), varchar("v", 10)], &["id"]);
    let snap = vec![(keyless.clone(), vec![vec![Value::Int(-1)]]), (keyed.clone(), vec![])];
    // First run: snapshot + 30 transactions, then the process "dies" (pipeline ends, sink dropped).
    let s = sink(&db, |o| o).await;
    let src = MemorySource::new(txs(&keyless, &keyed, 0..30)).with_snapshot(pos(4), snap.clone());
    Pipeline::builder()
        .id("between")
        .source(src)
        .sink(s)
        .batch_size(7)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(one(&db, "SELECT count(*) FROM p.log"), "31");
    // Second run: the source replays everything from the start; the sink's stored
    // position makes the pipeline resume after transaction 29 only.
    let s = sink(&db, |o| o).await;
    let st = s.load_state("between").await.unwrap().unwrap();
    assert_eq!(st.position, Some(pos(129)));
    assert_eq!(st.snapshot, SnapshotStatus::Done);
    assert_eq!(st.schemas.len(), 2);
    let src = MemorySource::new(txs(&keyless, &keyed, 0..50)).with_snapshot(pos(4), snap);
    Pipeline::builder()
        .id("between")
        .source(src)
        .sink(s.clone())
        .batch_size(7)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(one(&db, "SELECT count(*), count(DISTINCT v) FROM p.log"), "51|51");
    assert_eq!(one(&db, "SELECT count(*) FROM p.kv"), "50");
    assert_eq!(s.load_state("between").await.unwrap().unwrap().position, Some(pos(149)));
    // A position is stored over the one this process stored last (a seek moves it back) ...
    let back = synchdb_core::StateUpdate { position: Some(pos(5)), ..Default::default() };
    s.save_state("between", &back).await.unwrap();
    assert_eq!(s.load_state("between").await.unwrap().unwrap().position, Some(pos(5)));
    // ... and not over one changed under it (a target that lost commits, another process):
    // a transient error, and after loading the stored state again it goes on.
    let other = sink(&db, |o| o).await;
    other.load_state("between").await.unwrap();
    let ahead = synchdb_core::StateUpdate { position: Some(pos(300)), ..Default::default() };
    other.save_state("between", &ahead).await.unwrap();
    let next = synchdb_core::StateUpdate { position: Some(pos(301)), ..Default::default() };
    let e = s.save_state("between", &next).await.unwrap_err();
    assert!(e.kind().is_transient() && e.to_string().contains("another process"), "{e}");
    assert_eq!(s.load_state("between").await.unwrap().unwrap().position, Some(pos(300)));
    s.save_state("between", &next).await.unwrap();
    assert_eq!(s.load_state("between").await.unwrap().unwrap().position, Some(pos(301)));
    s.save_state("other", &back).await.unwrap();
    assert_eq!(s.load_state("other").await.unwrap().unwrap().position, Some(pos(5)));
    assert!(s.load_state("nobody").await.unwrap().is_none());
    // The dead letter keeps a skipped event.
    let e = synchdb_core::Error::new(ErrorKind::SinkApply, "boom");
    s.dead_letter("between", &ins(&keyed, vec![Value::Int(1), Value::Null], 7), &e).await.unwrap();
    assert_eq!(
        one(&db, "SELECT table_id, operation, position, event->'Insert'->'row'->0 FROM synchdb.dead_letter"),
        "p.kv|insert|mysql-bin.000001:7|{\"Int\": 1}"
    );
}

/// The prepared transactions PostgreSQL holds whose name starts with `prefix`.
fn prepared(db: &synchdb_testkit::TestDatabase, prefix: &str) -> Vec<String> {
    query(
        db,
        &format!(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, '{prefix}') \
             ORDER BY gid"
        ),
    )
}

#[tokio::test]
async fn parallel_batches_commit_together_and_a_killed_share_takes_the_others_back() {
    let db = db("pg_parallel");
    let s = sink(&db, |o| o.apply_workers(3).pool_size(4)).await;
    let a = table("p", "a", vec![int("id", IntWidth::Int, false), int("v", IntWidth::Int, false)], &["id"]);
    // keyless: each applied whole by one worker; a double apply would show as duplicates
    let b = table("p", "b", vec![int("id", IntWidth::Int, false)], &[]);
    let n = table("p", "n", vec![int("v", IntWidth::Int, false)], &[]);
    snapshot(&s, "par", &[(a.clone(), vec![]), (b.clone(), vec![]), (n.clone(), vec![])]).await;

    // 400 rows of a (spread by key over the workers), 100 of b, 100 of n: one batch.
    let mut events: Vec<ChangeEvent> =
        (0..400).map(|i| ins(&a, vec![Value::Int(i), Value::Int(0)], 10)).collect();
    events.extend((0..100).map(|i| ins(&b, vec![Value::Int(i)], 10)));
    events.extend((0..100).map(|i| ins(&n, vec![Value::Int(i % 10)], 10)));
    s.apply("par", &batch(10, events)).await.unwrap();
    assert_eq!(one(&db, "SELECT count(*), sum(id) FROM p.a"), "400|79800");
    assert_eq!(one(&db, "SELECT count(*) FROM p.b"), "100");
    assert_eq!(one(&db, "SELECT count(*) FROM p.n"), "100");
    // It went through two-phase commit: the decision names its shares, none is left prepared.
    let decided = query(&db, "SELECT gid FROM synchdb.prepared WHERE pipeline_id = 'par' ORDER BY gid");
    assert!(decided.len() >= 2, "shares of the batch: {decided:?}");
    assert!(prepared(&db, "synchdb:par:").is_empty());

    // Another session holds b: the shares without b prepare, b's share waits; killed there.
    let admin = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let mut locker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE p.b IN ACCESS EXCLUSIVE MODE").execute(&mut *locker).await.unwrap();
    let mut events: Vec<ChangeEvent> = (0..400)
        .map(|i| upd(&a, vec![Value::Int(i), Value::Int(0)], vec![Value::Int(i), Value::Int(1)], 20))
        .collect();
    events.extend((100..200).map(|i| ins(&b, vec![Value::Int(i)], 20)));
    events.extend((0..100).map(|i| ins(&n, vec![Value::Int(i % 10)], 20)));
    let bt = batch(20, events);
    let (s2, bt2) = (s.clone(), bt.clone());
    let running = tokio::spawn(async move { s2.apply("par", &bt2).await });
    let pid = backend(&admin, db.name(), "INSERT INTO \"p\".\"b\"%").await;
    // Wait until the other shares are prepared (they do not wait on b).
    for _ in 0..500 {
        if !prepared(&db, "synchdb:par:").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !prepared(&db, "synchdb:par:").is_empty(),
        "the other shares were prepared: {:?}",
        query(&db, "SELECT pid, state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity WHERE datname = current_database()")
    );
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&admin).await.unwrap();
    assert!(killed);
    locker.rollback().await.unwrap();
    let err = running.await.unwrap().expect_err("the batch with a killed share fails");
    assert!(err.kind().is_transient(), "{err}");
    // No share of it stays: not prepared, not applied; the checkpoint did not move.
    assert!(prepared(&db, "synchdb:par:").is_empty(), "the prepared shares were rolled back");
    assert_eq!(one(&db, "SELECT count(*), sum(v) FROM p.a"), "400|0");
    assert_eq!(one(&db, "SELECT count(*) FROM p.b"), "100");
    assert_eq!(one(&db, "SELECT count(*) FROM p.n"), "100");
    drop(s);

    // Restart: the batch applies once.
    let s = sink(&db, |o| o.apply_workers(3).pool_size(4)).await;
    assert_eq!(s.load_state("par").await.unwrap().unwrap().position, Some(pos(10)));
    s.apply("par", &bt).await.unwrap();
    assert_eq!(one(&db, "SELECT count(*), sum(v) FROM p.a"), "400|400");
    assert_eq!(one(&db, "SELECT count(*) FROM p.b"), "200");
    assert_eq!(one(&db, "SELECT count(*) FROM p.n"), "200");
    assert_eq!(s.load_state("par").await.unwrap().unwrap().position, Some(pos(20)));
    admin.close().await;
}

#[tokio::test]
async fn prepared_shares_a_dead_process_left_are_resolved_by_the_stored_decision() {
    let db = db("pg_prepared");
    let s = sink(&db, |o| o).await;
    let a = table("q", "a", vec![int("id", IntWidth::Int, false)], &["id"]);
    snapshot(&s, "dec", &[(a.clone(), vec![])]).await;
    drop(s);
    // A dead run's shares: one its decision committed, one it never decided;
    // and one of another pipeline, which this one leaves alone.
    let psql = |sql: &str| pg().exec(db.name(), sql).expect("psql");
    psql("BEGIN; INSERT INTO q.a VALUES (1); PREPARE TRANSACTION 'synchdb:dec:old.7.0'");
    psql("INSERT INTO synchdb.prepared (gid, pipeline_id) VALUES ('synchdb:dec:old.7.0', 'dec')");
    psql("BEGIN; INSERT INTO q.a VALUES (2); PREPARE TRANSACTION 'synchdb:dec:old.8.0'");
    psql("BEGIN; INSERT INTO q.a VALUES (3); PREPARE TRANSACTION 'synchdb:other:old.1.0'");

    let s = sink(&db, |o| o).await;
    s.load_state("dec").await.unwrap();
    assert_eq!(
        query(&db, "SELECT id FROM q.a ORDER BY id"),
        ["1"],
        "the decided share committed, the other not"
    );
    assert_eq!(prepared(&db, "synchdb:"), ["synchdb:other:old.1.0"]);
    assert!(query(&db, "SELECT gid FROM synchdb.prepared WHERE pipeline_id = 'dec'").is_empty());
    psql("ROLLBACK PREPARED 'synchdb:other:old.1.0'");
}

#[test]
fn parallel_apply_needs_a_connection_more_than_its_workers() {
    let err = PgSinkOptions::new().apply_workers(4).pool_size(4).validate().expect_err("pool too small");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("pool"), "{err}");
    let err = PgSinkOptions::new().apply_workers(0).validate().expect_err("no worker");
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = PgSinkOptions::new().apply_workers(65).pool_size(70).validate().expect_err("too many");
    assert_eq!(err.kind(), ErrorKind::Config);
    PgSinkOptions::new().apply_workers(4).pool_size(5).validate().unwrap();
}
