//! Killing the sink between batches and in the middle of one: table and checkpoint agree.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use synchdb_core::memory::MemorySource;
use synchdb_core::{ChunkInfo, ErrorKind, Pipeline, Sink, SinkState, SnapshotStatus};
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
