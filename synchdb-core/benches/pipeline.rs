//! The core runtime's hot paths without any database: a Converter chain over
//! change events, and whole pipelines (conversion, batch building, stats,
//! checkpoints) from an in-memory source into a sink that discards.
//!
//! `cargo bench -p synchdb-core --bench pipeline`
//!
//! `MemorySource` clones every transaction and snapshot row it sends; that
//! clone is part of the pipeline figures (a real source allocates its rows too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::StreamExt;
use synchdb_core::memory::MemorySource;
use synchdb_core::{
    ChangeBatch, ChunkInfo, Converter, MapRows, Pipeline, Result, RowStream, Sink, StateUpdate,
};
use synchdb_types::{
    BinlogPosition, ChangeEvent, ColumnSchema, ColumnType, DeleteEvent, EventMeta, InsertEvent, IntWidth,
    Position, Row, TableId, TableSchema, Transaction, UpdateEvent, Value,
};

const TX: usize = 200;
const TX_EVENTS: usize = 100;

struct NullSink {
    events: AtomicU64,
}

#[async_trait]
impl Sink for NullSink {
    fn name(&self) -> &str {
        "null"
    }
    async fn prepare_snapshot(
        &self,
        _: &str,
        _: &[Arc<TableSchema>],
        _: &[TableId],
        _: &StateUpdate,
    ) -> Result<()> {
        Ok(())
    }
    async fn write_chunk(
        &self,
        _: &str,
        _: &Arc<TableSchema>,
        _: &ChunkInfo,
        _: &Position,
        mut rows: RowStream<'_>,
    ) -> Result<u64> {
        let mut n = 0;
        while let Some(batch) = rows.next().await {
            n += batch?.len() as u64;
        }
        Ok(n)
    }
    async fn finish_snapshot(&self, _: &str, _: &[Arc<TableSchema>], _: &StateUpdate) -> Result<()> {
        Ok(())
    }
    async fn apply(&self, _: &str, batch: &ChangeBatch) -> Result<()> {
        self.events.fetch_add(batch.event_count() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn table() -> Arc<TableSchema> {
    let int = |w| ColumnType::Integer { width: w, unsigned: false, display_width: None };
    let mut t = TableSchema::new(
        TableId::new("bench", "f"),
        vec![
            ColumnSchema::new("id", int(IntWidth::Big)),
            ColumnSchema::new("k", int(IntWidth::Int)),
            ColumnSchema::new("v", ColumnType::VarChar { length: 64 }),
            ColumnSchema::new("note", ColumnType::VarChar { length: 255 }),
            ColumnSchema::new("score", ColumnType::Double { unsigned: false }),
            ColumnSchema::new("flag", int(IntWidth::Tiny)),
        ],
    );
    t.primary_key = vec!["id".into()];
    Arc::new(t)
}

fn row(i: i64) -> Row {
    vec![
        Value::Int(i),
        Value::Int(i % 1000),
        Value::Text(format!("v{i}")),
        Value::Text("inserted row with some payload text".into()),
        Value::Double(i as f64 / 7.0),
        Value::Int(i % 2),
    ]
}

/// 60% inserts, 30% updates, 10% deletes per 100-event transaction.
fn transactions(t: &Arc<TableSchema>) -> Vec<Transaction> {
    let commit_time = chrono::Utc::now();
    (0..TX)
        .map(|n| {
            let events = (0..TX_EVENTS)
                .map(|j| {
                    let i = (n * TX_EVENTS + j) as i64;
                    let meta = EventMeta {
                        position: BinlogPosition::new("mysql-bin.000001", 4 + i as u64 * 100),
                        commit_time,
                        tx: n as u64,
                        index: j as u32,
                    };
                    match j % 10 {
                        0..=5 => ChangeEvent::Insert(InsertEvent { table: t.clone(), row: row(i), meta }),
                        6..=8 => ChangeEvent::Update(UpdateEvent {
                            table: t.clone(),
                            before: row(i - 60),
                            after: row(i),
                            meta,
                        }),
                        _ => ChangeEvent::Delete(DeleteEvent { table: t.clone(), row: row(i - 90), meta }),
                    }
                })
                .collect();
            Transaction::new(
                n as u64,
                Position::new(BinlogPosition::new(
                    "mysql-bin.000001",
                    4 + ((n + 1) * TX_EVENTS * 100) as u64,
                )),
                commit_time,
                events,
            )
        })
        .collect()
}

fn converters() -> Vec<Arc<dyn Converter>> {
    let mask = MapRows::new("mask", |_t: &TableSchema, mut row: Row| {
        row[3] = Value::Text("***".into());
        Ok(Some(row))
    });
    let identity = MapRows::new("identity", |_t: &TableSchema, row: Row| Ok(Some(row)));
    vec![Arc::new(mask), Arc::new(identity)]
}

fn bench(c: &mut Criterion) {
    let t = table();
    let txs = transactions(&t);
    let events: Vec<ChangeEvent> = txs.iter().flat_map(|tx| tx.events.iter().cloned()).collect();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(events.len() as u64));
    let chain = converters();
    g.bench_function("converter chain (2 MapRows) over change events", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut out = Vec::with_capacity(events.len());
                for e in events {
                    let mut current = vec![e];
                    for c in &chain {
                        let mut next = Vec::with_capacity(1);
                        for e in current.drain(..) {
                            c.convert_event(e, &mut next).expect("converts");
                        }
                        current = next;
                    }
                    out.extend(current);
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    for (name, with_converters) in
        [("pipeline follow, no converters", false), ("pipeline follow, 2 converters", true)]
    {
        g.bench_function(name, |b| {
            b.iter_batched(
                || MemorySource::new(txs.clone()),
                |source| {
                    rt.block_on(async {
                        let sink = Arc::new(NullSink { events: AtomicU64::new(0) });
                        let mut builder =
                            Pipeline::builder().id("bench").source(source).sink_arc(sink.clone());
                        if with_converters {
                            for c in converters() {
                                builder = builder.converter_arc(c);
                            }
                        }
                        builder.build().expect("builds").start().wait().await.expect("runs");
                        assert_eq!(sink.events.load(Ordering::Relaxed), (TX * TX_EVENTS) as u64);
                    })
                },
                BatchSize::PerIteration,
            )
        });
    }
    let snapshot_rows: Vec<Row> = (0..100_000).map(row).collect();
    g.throughput(Throughput::Elements(snapshot_rows.len() as u64));
    g.sample_size(20);
    g.bench_function("pipeline snapshot, 100k rows in 1000-row chunks", |b| {
        b.iter_batched(
            || {
                MemorySource::new(Vec::new())
                    .with_snapshot(
                        Position::new(BinlogPosition::new("mysql-bin.000001", 4)),
                        vec![(t.clone(), snapshot_rows.clone())],
                    )
                    .chunk_rows(1000)
            },
            |source| {
                rt.block_on(async {
                    let sink = NullSink { events: AtomicU64::new(0) };
                    builder_run(source, sink).await;
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

async fn builder_run(source: MemorySource, sink: NullSink) {
    Pipeline::builder()
        .id("bench")
        .source(source)
        .sink(sink)
        .build()
        .expect("builds")
        .start()
        .wait()
        .await
        .expect("runs");
}

criterion_group!(benches, bench);
criterion_main!(benches);
