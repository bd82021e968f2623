//! Throughput of the PostgreSQL sink: COPY bulk load and change apply.
//!
//! ```text
//! cargo run --release -p synchdb-postgres --example pg_bench -- copy 1000000 4
//! cargo run --release -p synchdb-postgres --example pg_bench -- apply 1000000 set
//! cargo run --release -p synchdb-postgres --example pg_bench -- apply 200000 row
//! ```
//! Starts a private PostgreSQL (synchdb-testkit) unless `SYNCHDB_BENCH_PG_URL` names a
//! database. Table: 10 mixed columns (bigint PK, int, varchar(64), decimal(12,2),
//! datetime(6), ~200-byte text, tinyint, double, json, varbinary). Apply: 60% insert,
//! 30% update, 10% delete, 100-event transactions, 50 transactions per batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use synchdb_core::{ChangeBatch, ChunkInfo, Sink, StateUpdate};
use synchdb_postgres::{ApplyMode, PgSink, PgSinkOptions};
use synchdb_types::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn schema() -> Arc<TableSchema> {
    use ColumnType as C;
    let c = ColumnSchema::new;
    let mut t = TableSchema::new(
        TableId::new("bench", "t"),
        vec![
            c("id", C::Integer { width: IntWidth::Big, unsigned: false, display_width: None }).not_null(),
            c("n", C::Integer { width: IntWidth::Int, unsigned: false, display_width: None }),
            c("name", C::VarChar { length: 64 }),
            c("amount", C::Decimal { precision: 12, scale: 2, unsigned: false }),
            c("at", C::DateTime { fsp: 6 }),
            c("body", C::Text { size: LobSize::Normal }),
            c("flag", C::Integer { width: IntWidth::Tiny, unsigned: false, display_width: None }),
            c("score", C::Double { unsigned: false }),
            c("doc", C::Json),
            c("raw", C::VarBinary { length: 32 }),
        ],
    );
    t.primary_key = vec!["id".into()];
    Arc::new(t)
}

fn row(id: i64, rng: &mut Rng) -> Row {
    let r = rng.next();
    vec![
        Value::Int(id),
        Value::Int((r % 1_000_000) as i64),
        Value::Text(format!("name-{id}-{}", r % 997)),
        Value::Decimal(Decimal::parse(&format!("{}.{:02}", r % 100_000, r % 100)).unwrap()),
        Value::DateTime(DateTime::new(
            Date::new(2024, 1 + (r % 12) as u8, 1 + (r % 28) as u8),
            12,
            30,
            45,
            (r % 1_000_000) as u32,
        )),
        Value::Text(format!("{:0>200}", r)),
        Value::Int((r % 2) as i64),
        Value::Double((r % 10_000) as f64 / 7.0),
        Value::Json(format!(r#"{{"id": {id}, "tag": "t{}", "ok": true}}"#, r % 50)),
        Value::Bytes(r.to_le_bytes().repeat(2)),
    ]
}

fn meta(n: u64) -> EventMeta {
    EventMeta {
        position: BinlogPosition::new("mysql-bin.000001", n),
        commit_time: chrono::Utc::now(),
        tx: n,
        index: 0,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("copy");
    let count: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let server;
    let url = match std::env::var("SYNCHDB_BENCH_PG_URL") {
        Ok(u) => u,
        Err(_) => {
            server = synchdb_testkit::Postgres::start().expect("start PostgreSQL");
            server.exec("postgres", "CREATE DATABASE bench").unwrap();
            server.url_for("bench")
        }
    };
    let opts: PgSinkOptions = url.parse().unwrap();
    let t = schema();
    let pos = Position::new(BinlogPosition::new("mysql-bin.000001", 4));
    match what {
        "copy" => {
            let chunks: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
            let sink = PgSink::connect(opts.pool_size(chunks as u32 + 1)).await.unwrap();
            sink.prepare_snapshot("bench", std::slice::from_ref(&t), &[], &StateUpdate::default())
                .await
                .unwrap();
            let per = count / chunks;
            let start = Instant::now();
            let writers = (0..chunks).map(|c| {
                let (sink, t, pos) = (sink.clone(), t.clone(), pos.clone());
                tokio::spawn(async move {
                    let (tx, rx) = tokio::sync::mpsc::channel::<synchdb_core::Result<Vec<Row>>>(4);
                    tokio::spawn(async move {
                        let mut rng = Rng(c + 1);
                        let mut id = (c * per) as i64;
                        let end = id + per as i64;
                        while id < end {
                            let batch: Vec<Row> =
                                (id..(id + 1000).min(end)).map(|i| row(i, &mut rng)).collect();
                            id += batch.len() as i64;
                            if tx.send(Ok(batch)).await.is_err() {
                                return;
                            }
                        }
                    });
                    let stream =
                        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
                            .boxed();
                    let chunk = ChunkInfo {
                        table: t.id.clone(),
                        index: c as u32,
                        count: chunks as u32,
                        lower: None,
                        upper: None,
                    };
                    sink.write_chunk("bench", &t, &chunk, &pos, stream).await.unwrap()
                })
            });
            let written: u64 = futures::future::join_all(writers).await.into_iter().map(|r| r.unwrap()).sum();
            let el = start.elapsed();
            println!(
                "COPY: {written} rows in {:.2} s = {:.0} rows/s ({chunks} chunks in parallel, text format, PK present)",
                el.as_secs_f64(),
                written as f64 / el.as_secs_f64()
            );
        }
        _ => {
            let mode = if args.get(3).map(String::as_str) == Some("row") {
                ApplyMode::RowByRow
            } else {
                ApplyMode::SetBased
            };
            let sink = PgSink::connect(opts.apply_mode(mode)).await.unwrap();
            sink.prepare_snapshot("bench", std::slice::from_ref(&t), &[], &StateUpdate::default())
                .await
                .unwrap();
            let done = StateUpdate { position: Some(pos.clone()), ..Default::default() };
            sink.finish_snapshot("bench", std::slice::from_ref(&t), &done).await.unwrap();
            let (btx, mut brx) = tokio::sync::mpsc::channel::<ChangeBatch>(2);
            let gen_t = t.clone();
            tokio::spawn(async move {
                let t = gen_t;
                let mut rng = Rng(42);
                let mut live: Vec<i64> = Vec::new();
                let mut next_id = 0i64;
                let mut n = 10u64;
                let mut made = 0u64;
                while made < count {
                    let mut txs = Vec::new();
                    for _ in 0..50 {
                        let mut events = Vec::with_capacity(100);
                        for _ in 0..100 {
                            let p = rng.next() % 10;
                            n += 1;
                            if p < 6 || live.len() < 100 {
                                next_id += 1;
                                live.push(next_id);
                                events.push(ChangeEvent::Insert(InsertEvent {
                                    table: t.clone(),
                                    row: row(next_id, &mut rng),
                                    meta: meta(n),
                                }));
                            } else if p < 9 {
                                let id = live[(rng.next() % live.len() as u64) as usize];
                                let before = row(id, &mut rng);
                                let after = row(id, &mut rng);
                                events.push(ChangeEvent::Update(UpdateEvent {
                                    table: t.clone(),
                                    before,
                                    after,
                                    meta: meta(n),
                                }));
                            } else {
                                let i = (rng.next() % live.len() as u64) as usize;
                                let id = live.swap_remove(i);
                                events.push(ChangeEvent::Delete(DeleteEvent {
                                    table: t.clone(),
                                    row: row(id, &mut rng),
                                    meta: meta(n),
                                }));
                            }
                        }
                        made += 100;
                        txs.push(Transaction::new(
                            n,
                            Position::new(BinlogPosition::new("mysql-bin.000001", n)),
                            chrono::Utc::now(),
                            events,
                        ));
                    }
                    let state = StateUpdate {
                        position: Some(txs.last().unwrap().end_position.clone()),
                        ..Default::default()
                    };
                    if btx.send(ChangeBatch { transactions: txs, state, open: false }).await.is_err() {
                        return;
                    }
                }
            });
            let mut in_apply = Duration::ZERO;
            let mut events = 0usize;
            let wall = Instant::now();
            while let Some(b) = brx.recv().await {
                let s = Instant::now();
                sink.apply("bench", &b).await.unwrap();
                in_apply += s.elapsed();
                events += b.event_count();
            }
            println!(
                "apply {mode:?}: {events} row changes in {:.2} s inside apply ({:.2} s wall) = {:.0} changes/s (5000-event batches of 100-event transactions)",
                in_apply.as_secs_f64(),
                wall.elapsed().as_secs_f64(),
                events as f64 / in_apply.as_secs_f64()
            );
        }
    }
}
