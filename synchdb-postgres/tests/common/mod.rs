//! Shared helpers for the PostgreSQL sink tests.
#![allow(dead_code)]

use std::sync::Arc;

use futures::StreamExt;
use synchdb_core::{ChangeBatch, ChunkInfo, RowStream, Sink, StateUpdate};
use synchdb_postgres::{PgSink, PgSinkOptions};
use synchdb_testkit::TestDatabase;
use synchdb_types::*;

pub fn pg() -> &'static synchdb_testkit::Postgres {
    synchdb_testkit::postgres()
}

pub fn db(prefix: &str) -> TestDatabase {
    pg().create_database(prefix).expect("create database")
}

pub async fn sink(db: &TestDatabase, f: impl FnOnce(PgSinkOptions) -> PgSinkOptions) -> PgSink {
    let opts: PgSinkOptions = db.url().parse().expect("url");
    PgSink::connect(f(opts.pool_size(3))).await.expect("connect")
}

/// Run SQL through psql (TimeZone UTC) and return its rows.
pub fn query(db: &TestDatabase, sql: &str) -> Vec<String> {
    let out = pg().exec(db.name(), &format!("SET TimeZone = 'UTC'; {sql}")).expect("psql");
    out.lines().map(str::to_string).collect()
}

pub fn one(db: &TestDatabase, sql: &str) -> String {
    query(db, sql).join("\n")
}

pub fn pos(n: u64) -> Position {
    Position::new(BinlogPosition::new("mysql-bin.000001", n))
}

pub fn meta(n: u64) -> EventMeta {
    EventMeta {
        position: BinlogPosition::new("mysql-bin.000001", n),
        commit_time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        tx: n,
        index: 0,
    }
}

pub fn int(name: &str, width: IntWidth, unsigned: bool) -> ColumnSchema {
    ColumnSchema::new(name, ColumnType::Integer { width, unsigned, display_width: None })
}

pub fn varchar(name: &str, n: u32) -> ColumnSchema {
    ColumnSchema::new(name, ColumnType::VarChar { length: n })
}

pub fn table(db: &str, name: &str, columns: Vec<ColumnSchema>, pk: &[&str]) -> Arc<TableSchema> {
    let mut t = TableSchema::new(TableId::new(db, name), columns);
    t.primary_key = pk.iter().map(|s| s.to_string()).collect();
    for c in &mut t.columns {
        if t.primary_key.contains(&c.name) {
            c.nullable = false;
        }
    }
    Arc::new(t)
}

pub fn ins(t: &Arc<TableSchema>, row: Row, n: u64) -> ChangeEvent {
    ChangeEvent::Insert(InsertEvent { table: t.clone(), row, meta: meta(n) })
}

pub fn upd(t: &Arc<TableSchema>, before: Row, after: Row, n: u64) -> ChangeEvent {
    ChangeEvent::Update(UpdateEvent { table: t.clone(), before, after, meta: meta(n) })
}

pub fn del(t: &Arc<TableSchema>, row: Row, n: u64) -> ChangeEvent {
    ChangeEvent::Delete(DeleteEvent { table: t.clone(), row, meta: meta(n) })
}

pub fn ddl(change: SchemaChange, after: Option<Arc<TableSchema>>, n: u64) -> ChangeEvent {
    ChangeEvent::Schema(Box::new(SchemaChangeEvent {
        change,
        schema_after: after,
        ddl: String::new(),
        meta: meta(n),
    }))
}

pub fn tx(seq: u64, end: u64, events: Vec<ChangeEvent>) -> Transaction {
    Transaction::new(seq, pos(end), chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(), events)
}

/// A batch of one transaction ending at `end`, storing that position.
pub fn batch(end: u64, events: Vec<ChangeEvent>) -> ChangeBatch {
    ChangeBatch {
        transactions: vec![tx(end, end, events)],
        state: StateUpdate { position: Some(pos(end)), ..Default::default() },
        open: false,
    }
}

pub fn rows_stream(rows: Vec<Row>) -> RowStream<'static> {
    let pieces: Vec<synchdb_core::Result<Vec<Row>>> = rows.chunks(7).map(|c| Ok(c.to_vec())).collect();
    futures::stream::iter(pieces).boxed()
}

/// prepare_snapshot + one chunk per table + finish_snapshot.
pub async fn snapshot(sink: &PgSink, pipeline: &str, tables: &[(Arc<TableSchema>, Vec<Row>)]) {
    let schemas: Vec<Arc<TableSchema>> = tables.iter().map(|(t, _)| t.clone()).collect();
    sink.prepare_snapshot(pipeline, &schemas, &[], &StateUpdate::default()).await.expect("prepare");
    for (t, rows) in tables {
        let chunk = ChunkInfo { table: t.id.clone(), index: 0, count: 1, lower: None, upper: None };
        let n =
            sink.write_chunk(pipeline, t, &chunk, &pos(4), rows_stream(rows.clone())).await.expect("chunk");
        assert_eq!(n, rows.len() as u64);
    }
    let done = StateUpdate {
        position: Some(pos(4)),
        snapshot: Some(synchdb_core::SnapshotUpdate::Finished),
        ..Default::default()
    };
    sink.finish_snapshot(pipeline, &schemas, &done).await.expect("finish");
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
