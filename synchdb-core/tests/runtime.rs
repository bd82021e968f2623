//! Runtime tests on the in-memory source and sink: ordering, backpressure,
//! each error policy, pause/resume, shutdown with checkpoint, snapshot.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use synchdb_core::memory::{MemorySink, MemorySource};
use synchdb_core::{Error, ErrorKind, ErrorPolicy, MapRows, Pipeline, RetryPolicy, SnapshotStatus};
use synchdb_types::*;

fn table() -> Arc<TableSchema> {
    let mut t = TableSchema::new(
        TableId::new("shop", "items"),
        vec![
            ColumnSchema::new(
                "id",
                ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None },
            )
            .not_null(),
            ColumnSchema::new("name", ColumnType::VarChar { length: 20 }),
        ],
    );
    t.primary_key = vec!["id".into()];
    Arc::new(t)
}

fn pos(n: u64) -> Position {
    Position::new(BinlogPosition::new("mysql-bin.000001", n))
}

/// Transaction `i` inserts rows `i*per .. i*per+per`.
fn transactions(count: u64, per: u64) -> Vec<Transaction> {
    let t = table();
    (1..=count)
        .map(|i| {
            Transaction::new(
                i,
                pos(i * 1000),
                chrono::Utc::now(),
                (0..per)
                    .map(|k| {
                        ChangeEvent::Insert(InsertEvent {
                            table: t.clone(),
                            row: vec![Value::Int((i * per + k) as i64), Value::Text(format!("item {i}/{k}"))],
                            meta: EventMeta {
                                position: BinlogPosition::new("mysql-bin.000001", i * 1000 - 100 + k),
                                commit_time: chrono::Utc::now(),
                                tx: i,
                                index: k as u32,
                            },
                        })
                    })
                    .collect(),
            )
        })
        .collect()
}

fn ids(events: &[ChangeEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| match e {
            ChangeEvent::Insert(i) => match i.row[0] {
                Value::Int(v) => v,
                _ => panic!("unexpected value"),
            },
            _ => panic!("unexpected event"),
        })
        .collect()
}

fn stored_position(sink: &MemorySink, id: &str) -> Option<Position> {
    sink.data().state.get(id).and_then(|s| s.position.clone())
}

#[tokio::test]
async fn applies_in_order_without_splitting_transactions() {
    let txs = transactions(200, 7);
    let sink = MemorySink::new();
    let stats = Pipeline::builder()
        .id("order")
        .source(MemorySource::new(txs.clone()))
        .sink(sink.clone())
        .batch_size(50)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    let expected: Vec<i64> = txs.iter().flat_map(|t| ids(&t.events)).collect();
    assert_eq!(ids(&sink.events()), expected);
    // Whole transactions arrive: every applied transaction equals its source.
    assert_eq!(sink.data().transactions, txs);
    assert_eq!(stats.inserts, 1400);
    assert_eq!(stats.transactions, 200);
    assert!(stats.batch_events_max >= 7, "a batch holds at least one whole transaction");
    assert!(stats.batches < 200, "transactions are grouped into batches: {}", stats.batches);
    assert_eq!(stored_position(&sink, "order"), Some(pos(200_000)));
}

#[tokio::test]
async fn slow_sink_slows_the_source() {
    let source = MemorySource::new(transactions(10_000, 1)).follow(true);
    let sent = source.sent_counter();
    let sink = MemorySink::new();
    sink.set_delay(Duration::from_millis(50));
    let handle = Pipeline::builder()
        .id("bp")
        .source(source)
        .sink(sink.clone())
        .batch_size(10)
        .channel_capacity(4)
        .build()
        .unwrap()
        .start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied = sink.events().len();
    let in_flight = sent.load(Ordering::SeqCst) - applied;
    // channel (4) + the batch being gathered (10) + one queued batch (10) + the one applying (10).
    assert!(in_flight <= 40, "source ran ahead of a slow sink: {in_flight} in flight");
    assert!((10..200).contains(&applied), "pipeline made slow progress: {applied}");
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn exit_policy_stops_at_last_good_batch() {
    let sink = MemorySink::new();
    sink.fail_when(|e| match e {
        ChangeEvent::Insert(i) if i.row[0] == Value::Int(30) => {
            Some(Error::new(ErrorKind::SinkApply, "duplicate key"))
        }
        _ => None,
    });
    let err = Pipeline::builder()
        .id("exit")
        .source(MemorySource::new(transactions(50, 1)))
        .sink(sink.clone())
        .batch_size(1)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SinkApply);
    assert_eq!(err.table().map(ToString::to_string).as_deref(), Some("shop.items"));
    assert!(err.position().is_some(), "error names the binlog position: {err}");
    let applied = ids(&sink.events());
    assert_eq!(applied, (1..30).collect::<Vec<_>>());
    assert_eq!(stored_position(&sink, "exit"), Some(pos(29_000)));
}

#[tokio::test]
async fn retry_policy_recovers_from_transient_errors_then_gives_up() {
    let fast = RetryPolicy::default()
        .with_max_retries(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5));
    let sink = MemorySink::new();
    sink.fail_next(2);
    let stats = Pipeline::builder()
        .id("retry")
        .source(MemorySource::new(transactions(20, 2)))
        .sink(sink.clone())
        .error_policy(ErrorPolicy::Retry(fast.clone()))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(stats.retries, 2);
    assert_eq!(ids(&sink.events()).len(), 40);

    // With restarts turned off, the policy's retries are all there is.
    let sink = MemorySink::new();
    sink.fail_next(100);
    let err = Pipeline::builder()
        .id("retry")
        .source(MemorySource::new(transactions(20, 2)))
        .sink(sink.clone())
        .error_policy(ErrorPolicy::Retry(fast.clone()))
        .restart_policy(fast.with_max_retries(0))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SinkConnection);
    assert_eq!(sink.apply_calls(), 4, "one attempt and three retries");
    assert!(sink.events().is_empty());
    assert_eq!(stored_position(&sink, "retry"), None);
}

/// Transient failures beyond the error policy's retries (here the `exit`
/// policy, which retries nothing) restart the pipeline from its stored
/// state: every transaction is applied exactly once.
#[tokio::test]
async fn transient_failures_restart_the_pipeline_under_every_policy() {
    let sink = MemorySink::new();
    sink.fail_next(5);
    let stats = Pipeline::builder()
        .id("restart")
        .source(MemorySource::new(transactions(20, 2)))
        .sink(sink.clone())
        .batch_size(4)
        .restart_policy(
            RetryPolicy::default()
                .with_max_retries(u32::MAX)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5)),
        )
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(stats.restarts, 5);
    assert_eq!(ids(&sink.events()), (2..42).collect::<Vec<_>>(), "each row once, in order");
}

#[tokio::test]
async fn skip_policy_dead_letters_only_the_failing_event() {
    let sink = MemorySink::new();
    sink.fail_when(|e| match e {
        ChangeEvent::Insert(i) if i.row[0] == Value::Int(52) => {
            Some(Error::new(ErrorKind::SinkValue, "bad value"))
        }
        _ => None,
    });
    let stats = Pipeline::builder()
        .id("skip")
        .source(MemorySource::new(transactions(30, 5)))
        .sink(sink.clone())
        .batch_size(100)
        .error_policy(ErrorPolicy::Skip(RetryPolicy::default()))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    let expected: Vec<i64> = (5..155).filter(|v| *v != 52).collect();
    assert_eq!(ids(&sink.events()), expected);
    let data = sink.data();
    assert_eq!(data.dead_letters.len(), 1);
    assert_eq!(ids(&[data.dead_letters[0].0.clone()]), vec![52]);
    assert!(data.dead_letters[0].1.contains("bad value"));
    assert_eq!(stats.skipped, 1);
    assert_eq!(stored_position(&sink, "skip"), Some(pos(30_000)));
}

#[tokio::test]
async fn converter_errors_follow_the_policy() {
    let failing = || {
        MapRows::new("reject-13", |_t: &TableSchema, row: Row| {
            if row[0] == Value::Int(13) {
                Err(Error::new(ErrorKind::Convert, "cannot convert").with_column("id"))
            } else {
                Ok(Some(row))
            }
        })
    };
    let sink = MemorySink::new();
    let err = Pipeline::builder()
        .id("conv")
        .source(MemorySource::new(transactions(20, 1)))
        .converter(failing())
        .sink(sink.clone())
        .batch_size(1)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Convert);
    assert!(err.to_string().contains("shop.items"), "{err}");
    assert_eq!(err.column(), Some("id"), "the converter's column is kept");
    assert!(ids(&sink.events()).iter().all(|v| *v < 13));

    let sink = MemorySink::new();
    Pipeline::builder()
        .id("conv")
        .source(MemorySource::new(transactions(20, 1)))
        .converter(failing())
        .sink(sink.clone())
        .error_policy(ErrorPolicy::Skip(RetryPolicy::default()))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(ids(&sink.events()), (1..=20).filter(|v| *v != 13).collect::<Vec<_>>());
    assert_eq!(sink.data().dead_letters.len(), 1);
}

#[tokio::test]
async fn pause_holds_and_resume_continues() {
    let sink = MemorySink::new();
    sink.set_delay(Duration::from_millis(2));
    let handle = Pipeline::builder()
        .id("pause")
        .source(MemorySource::new(transactions(2000, 1)).follow(true))
        .sink(sink.clone())
        .batch_size(5)
        .build()
        .unwrap()
        .start();
    tokio::time::sleep(Duration::from_millis(30)).await;
    handle.pause();
    assert!(handle.is_paused());
    // Let the batch in flight (and one queued) finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let frozen = sink.events().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.events().len(), frozen, "nothing applied while paused");
    assert!(frozen < 2000);
    handle.resume();
    for _ in 0..500 {
        if sink.events().len() == 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.events().len(), 2000);
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_stores_checkpoint_and_restart_resumes_exactly() {
    let txs = transactions(3000, 2);
    let sink = MemorySink::new();
    sink.set_delay(Duration::from_millis(5));
    let handle = Pipeline::builder()
        .id("resume")
        .source(MemorySource::new(txs.clone()).follow(true))
        .sink(sink.clone())
        .batch_size(20)
        .build()
        .unwrap()
        .start();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stats = handle.stop().await.unwrap();
    let first = sink.data().transactions;
    assert!(!first.is_empty() && first.len() < 3000, "stopped midway: {}", first.len());
    // The checkpoint is exactly the end of the last applied transaction.
    let last = first.last().unwrap().end_position.clone();
    assert_eq!(stored_position(&sink, "resume"), Some(last.clone()));
    assert_eq!(stats.position, Some(last));

    sink.set_delay(Duration::ZERO);
    Pipeline::builder()
        .id("resume")
        .source(MemorySource::new(txs.clone()))
        .sink(sink.clone())
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(sink.data().transactions, txs, "each transaction exactly once, in order");
}

#[tokio::test]
async fn snapshot_then_follow_with_converter() {
    let t = table();
    let rows: Vec<Row> = (0..2500).map(|i| vec![Value::Int(i), Value::Text(format!("Row {i}"))]).collect();
    let upper = MapRows::new("upper", |_t: &TableSchema, mut row: Row| {
        if let Value::Text(s) = &row[1] {
            row[1] = Value::Text(s.to_uppercase());
        }
        Ok(Some(row))
    });
    let sink = MemorySink::new();
    let source = MemorySource::new(transactions(3, 1))
        .with_snapshot(pos(500), vec![(t.clone(), rows)])
        .chunk_rows(1000);
    let stats = Pipeline::builder()
        .id("snap")
        .source(source)
        .converter(upper)
        .sink(sink.clone())
        .snapshot_parallelism(2)
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    let data = sink.data();
    assert!(data.snapshot_finished);
    let mut snap = data.snapshot_rows[&t.id].clone();
    snap.sort_by_key(|r| match r[0] {
        Value::Int(v) => v,
        _ => 0,
    });
    assert_eq!(snap.len(), 2500);
    assert_eq!(snap[7][1], Value::Text("ROW 7".into()));
    assert_eq!(stats.snapshot_rows, 2500);
    assert_eq!(stats.snapshot_chunks_done, 3);
    let state = &data.state["snap"];
    assert_eq!(state.snapshot, SnapshotStatus::Done);
    assert_eq!(state.schemas.len(), 1, "tracked source schema stored");
    match &data.transactions[0].events[0] {
        ChangeEvent::Insert(i) => assert_eq!(i.row[1], Value::Text("ITEM 1/0".into())),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(state.position, Some(pos(3000)));

    // A second run finds the snapshot done and nothing new.
    let again = Pipeline::builder()
        .id("snap")
        .source(MemorySource::new(transactions(3, 1)).with_snapshot(pos(500), vec![(t, vec![])]))
        .sink(sink.clone())
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(again.snapshot_rows, 0);
    assert_eq!(again.inserts, 0);
}

#[test]
fn builder_rejects_missing_parts() {
    let err = Pipeline::builder().sink(MemorySink::new()).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = Pipeline::builder().source(MemorySource::new(vec![])).build().unwrap_err();
    assert!(err.to_string().contains("no sink"));
    let err = Pipeline::builder()
        .source(MemorySource::new(vec![]))
        .sink(MemorySink::new())
        .batch_size(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn boxed_source_and_sink_are_accepted() {
    let source: Box<dyn synchdb_core::Source> = Box::new(MemorySource::new(transactions(3, 1)));
    let sink = MemorySink::new();
    let boxed: Box<dyn synchdb_core::Sink> = Box::new(sink.clone());
    Pipeline::builder().source(source).sink(boxed).build().unwrap().start().wait().await.unwrap();
    assert_eq!(sink.events().len(), 3);
}

/// A source whose reader stops in the middle of a chunk (it drops the
/// sender without finishing it).
struct HalfChunkSource;

#[async_trait::async_trait]
impl synchdb_core::Source for HalfChunkSource {
    fn name(&self) -> &str {
        "half-chunk"
    }

    async fn run(&mut self, ctx: synchdb_core::SourceContext) -> synchdb_core::Result<()> {
        let t = table();
        let plan = synchdb_core::SnapshotPlan {
            position: pos(4),
            tables: vec![t.id.clone()],
            chunks: vec![synchdb_core::ChunkInfo {
                table: t.id.clone(),
                index: 0,
                count: 1,
                lower: None,
                upper: None,
            }],
        };
        ctx.send(synchdb_core::SourceMessage::SnapshotStarted {
            plan: plan.clone(),
            tables: vec![t.clone()],
            restart: vec![],
            resumed: false,
        })
        .await?;
        let (tx, rx) = synchdb_core::chunk_channel(2);
        ctx.send(synchdb_core::SourceMessage::SnapshotChunk {
            chunk: plan.chunks[0].clone(),
            table: t,
            read_at: pos(4),
            rows: rx,
        })
        .await?;
        tx.send(vec![vec![Value::Int(1), Value::Null]]).await?;
        drop(tx); // the reader died: no finish()
        Ok(())
    }
}

#[tokio::test]
async fn a_chunk_the_source_did_not_finish_is_never_recorded_done() {
    let sink = MemorySink::new();
    let err = Pipeline::builder()
        .id("half")
        .source(HalfChunkSource)
        .sink(sink.clone())
        // The error is transient (the source went away): see it instead of restarting.
        .restart_policy(RetryPolicy::default().with_max_retries(0))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("before the snapshot chunk was complete"), "{err}");
    let data = sink.data();
    assert!(data.snapshot_rows.is_empty(), "no partial chunk written");
    match &data.state["half"].snapshot {
        SnapshotStatus::InProgress(p) => assert!(p.done.is_empty()),
        other => panic!("unexpected snapshot status {other:?}"),
    }
}
