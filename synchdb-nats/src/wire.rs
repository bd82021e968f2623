//! The native message format: versioned MessagePack of the typed events.
//!
//! Every message starts with one version byte ([`NATIVE_VERSION`]); the rest
//! is MessagePack (`rmp-serde`, structs as maps) of [`TxMessage`],
//! [`ChunkMessage`] or [`StateMessage`]. The value model is
//! `synchdb_types::Value` as it is: every kind round-trips exactly (integers
//! to `u64::MAX`, `f32` as `f32`, 65-digit decimals as text, zero dates,
//! negative TIME, raw bytes, ...). Headers carry what a consumer needs
//! without decoding the payload (see [`header`]).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use synchdb_core::{ChunkInfo, Error, ErrorKind, Result, StateUpdate};
use synchdb_types::{
    BinlogPosition, ChangeEvent, DeleteEvent, EventMeta, InsertEvent, Position, Row, SchemaChangeEvent,
    TableId, TableSchema, Transaction, TruncateEvent, UpdateEvent,
};

/// The version byte of the native format.
pub const NATIVE_VERSION: u8 = 1;
/// `Synchdb-Format` of native messages.
pub const FORMAT_NATIVE: &str = "synchdb-native/1";
/// `Synchdb-Format` of Debezium-compatible JSON messages.
pub const FORMAT_DEBEZIUM: &str = "debezium-json/1";

/// Header names.
pub mod header {
    /// De-duplication id, derived from the source position.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// [`FORMAT_NATIVE`](super::FORMAT_NATIVE) or [`FORMAT_DEBEZIUM`](super::FORMAT_DEBEZIUM).
    pub const FORMAT: &str = "Synchdb-Format";
    /// `tx`, `chunk` or `state`.
    pub const KIND: &str = "Synchdb-Kind";
    /// The publishing pipeline's id.
    pub const PIPELINE: &str = "Synchdb-Pipeline";
    /// The source position: a transaction's end position, a chunk's read
    /// position, or the position a state record moves to.
    pub const POSITION: &str = "Synchdb-Position";
    /// The transaction's GTID, when the source has one.
    pub const GTID: &str = "Synchdb-Gtid";
    /// Ordinal of the message within its transaction or chunk, from 0.
    pub const PART: &str = "Synchdb-Part";
    /// The key of a transaction's messages: the source position of its first
    /// piece (a transaction too large to hold is published in pieces, each
    /// with the position it reached; the last carries the end position).
    pub const TX_START: &str = "Synchdb-Tx-Start";
    /// `1` on the last message of a transaction.
    pub const TX_LAST: &str = "Synchdb-Tx-Last";
    /// The operations in the message: `insert`, `update`, `delete`,
    /// `truncate`, `ddl`, comma-separated when several.
    pub const EVENT: &str = "Synchdb-Event";
    /// A chunk message's `index/count`.
    pub const CHUNK: &str = "Synchdb-Chunk";
    /// Set by a publisher on the last transaction message of a batch whose
    /// state record (schema changes) follows: the publisher counts the
    /// batch as published only with that record.
    pub const BATCH: &str = "Synchdb-Batch";
    /// Source commit time of the transaction, RFC 3339.
    pub const COMMIT_TIME: &str = "Synchdb-Commit-Time";
}

/// What a message holds (`Synchdb-Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Change events of one table of one transaction (or one DDL statement).
    Tx,
    /// Snapshot rows of one chunk.
    Chunk,
    /// A publisher state record (snapshot markers, chunk completions, positions).
    State,
}

impl Kind {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tx => "tx",
            Kind::Chunk => "chunk",
            Kind::State => "state",
        }
    }

    /// From the header value.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "tx" => Some(Kind::Tx),
            "chunk" => Some(Kind::Chunk),
            "state" => Some(Kind::State),
            _ => None,
        }
    }
}

/// One change event without its table schema (the message carries it once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum WireEvent {
    /// Row inserted.
    Insert {
        /// The row.
        row: Row,
        /// Binlog position of the event.
        position: BinlogPosition,
        /// Ordinal within the transaction.
        index: u32,
    },
    /// Row updated.
    Update {
        /// Row before.
        before: Row,
        /// Row after.
        after: Row,
        /// Binlog position of the event.
        position: BinlogPosition,
        /// Ordinal within the transaction.
        index: u32,
    },
    /// Row deleted.
    Delete {
        /// The row.
        row: Row,
        /// Binlog position of the event.
        position: BinlogPosition,
        /// Ordinal within the transaction.
        index: u32,
    },
    /// Table truncated.
    Truncate {
        /// Binlog position of the event.
        position: BinlogPosition,
        /// Ordinal within the transaction.
        index: u32,
    },
    /// Schema change, whole.
    Schema(Box<SchemaChangeEvent>),
}

/// A run of consecutive events of one table within one source transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxMessage {
    /// The transaction's ordinal in the publisher's stream.
    pub sequence: u64,
    /// Its GTID.
    pub gtid: Option<String>,
    /// Source commit time.
    pub commit_time: chrono::DateTime<chrono::Utc>,
    /// The position after the commit.
    pub end_position: Position,
    /// `FOREIGN_KEY_CHECKS` of the source session.
    pub foreign_key_checks: bool,
    /// The table's schema for the row events (`None` for a DDL message).
    pub table: Option<TableSchema>,
    /// The events, in source order.
    pub events: Vec<WireEvent>,
}

/// Rows of one snapshot chunk (one of its parts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMessage {
    /// The chunk.
    pub chunk: ChunkInfo,
    /// The consistent position its rows were read at.
    pub read_at: Position,
    /// The rows, in the table's column order.
    pub rows: Vec<Row>,
}

/// What a state record stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StateOp {
    /// A snapshot starts (or resumes): `tables` are created on the
    /// consumer's sink, `restart` emptied.
    PrepareSnapshot {
        /// The tables, as the publisher's sink got them.
        tables: Vec<TableSchema>,
        /// Tables whose earlier rows are discarded.
        restart: Vec<TableId>,
    },
    /// Every chunk is published: indexes and constraints, then follow mode.
    FinishSnapshot {
        /// The tables.
        tables: Vec<TableSchema>,
    },
    /// One chunk's rows are all published (the update's `ChunkDone`).
    ChunkDone,
    /// A resync of `tables` begins (they are emptied).
    BeginResync {
        /// The tables.
        tables: Vec<TableSchema>,
    },
    /// Every resync chunk is published.
    FinishResync {
        /// The tables.
        tables: Vec<TableSchema>,
    },
    /// The resync tables are followed again.
    JoinResync {
        /// The tables.
        tables: Vec<TableSchema>,
        /// Tables with foreign keys to them.
        referencing: Vec<TableSchema>,
    },
    /// A state change with no data (positions, schema records, deselections).
    Save,
}

/// A publisher state record: what happened and the state it implies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMessage {
    /// What happened.
    pub op: StateOp,
    /// The pipeline state change that comes with it.
    pub update: StateUpdate,
}

/// Encode a message body in the native format.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![NATIVE_VERSION];
    rmp_serde::encode::write_named(&mut out, value)
        .map_err(|e| Error::internal("encoding a stream message").with_source(e))?;
    Ok(out)
}

/// Decode a native message body; `what` names the message for the error.
pub fn decode<T: DeserializeOwned>(payload: &[u8], what: &dyn std::fmt::Display) -> Result<T> {
    match payload.split_first() {
        Some((&NATIVE_VERSION, body)) => rmp_serde::from_slice(body).map_err(|e| {
            Error::new(ErrorKind::SourceValue, format!("{what}: cannot decode the native message: {e}"))
        }),
        Some((v, _)) => Err(Error::new(
            ErrorKind::SourceValue,
            format!(
                "{what}: native format version {v} is not known here (this build reads {NATIVE_VERSION})"
            ),
        )),
        None => Err(Error::new(ErrorKind::SourceValue, format!("{what}: empty message"))),
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The table the message belongs to (its subject), `None` for state records.
    pub table: Option<TableId>,
    /// Payload.
    pub payload: Vec<u8>,
    /// `Synchdb-Event`.
    pub ops: String,
}

/// Split a transaction into messages: runs of consecutive events of one
/// table (and one schema version), DDL statements on their own, each
/// payload at most `limit` bytes. A single event larger than `limit` is an
/// error naming the table and position.
pub fn tx_messages(tx: &Transaction, limit: usize) -> Result<Vec<Outgoing>> {
    let mut out = Vec::new();
    let mut run: Vec<&ChangeEvent> = Vec::new();
    let mut run_size = 0usize;
    for event in &tx.events {
        let same = match (run.first(), event) {
            (None, _) => true,
            (Some(ChangeEvent::Schema(_)), _) | (_, ChangeEvent::Schema(_)) => false,
            (Some(first), e) => {
                row_schema(first).is_some_and(|a| row_schema(e).is_some_and(|b| same_schema(a, b)))
            }
        };
        let size = event.approx_size();
        if !same || (run_size + size > limit / 2 && !run.is_empty()) {
            encode_run(tx, &run, limit, &mut out)?;
            run.clear();
            run_size = 0;
        }
        run.push(event);
        run_size += size;
    }
    if !run.is_empty() {
        encode_run(tx, &run, limit, &mut out)?;
    }
    Ok(out)
}

fn same_schema(a: &Arc<TableSchema>, b: &Arc<TableSchema>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

fn row_schema(e: &ChangeEvent) -> Option<&Arc<TableSchema>> {
    match e {
        ChangeEvent::Insert(e) => Some(&e.table),
        ChangeEvent::Update(e) => Some(&e.table),
        ChangeEvent::Delete(e) => Some(&e.table),
        ChangeEvent::Truncate(e) => Some(&e.table),
        _ => None,
    }
}

fn to_wire(e: &ChangeEvent) -> Result<WireEvent> {
    Ok(match e {
        ChangeEvent::Insert(e) => {
            WireEvent::Insert { row: e.row.clone(), position: e.meta.position.clone(), index: e.meta.index }
        }
        ChangeEvent::Update(e) => WireEvent::Update {
            before: e.before.clone(),
            after: e.after.clone(),
            position: e.meta.position.clone(),
            index: e.meta.index,
        },
        ChangeEvent::Delete(e) => {
            WireEvent::Delete { row: e.row.clone(), position: e.meta.position.clone(), index: e.meta.index }
        }
        ChangeEvent::Truncate(e) => {
            WireEvent::Truncate { position: e.meta.position.clone(), index: e.meta.index }
        }
        ChangeEvent::Schema(s) => WireEvent::Schema(s.clone()),
        other => {
            return Err(Error::new(
                ErrorKind::SinkValue,
                format!("a {} event cannot be published by this version", other.operation()),
            ))
        }
    })
}

fn encode_run(tx: &Transaction, run: &[&ChangeEvent], limit: usize, out: &mut Vec<Outgoing>) -> Result<()> {
    let first = run[0];
    let msg = TxMessage {
        sequence: tx.sequence,
        gtid: tx.gtid.clone(),
        commit_time: tx.commit_time,
        end_position: tx.end_position.clone(),
        foreign_key_checks: tx.foreign_key_checks,
        table: row_schema(first).map(|t| (**t).clone()),
        events: run.iter().map(|e| to_wire(e)).collect::<Result<_>>()?,
    };
    let payload = encode(&msg)?;
    if payload.len() > limit {
        if run.len() == 1 {
            return Err(Error::new(
                ErrorKind::SinkValue,
                format!(
                    "a {} event of {} at {} is {} bytes encoded, above the largest message the stream takes ({limit} bytes): raise the server's max_payload and the stream's max message size",
                    first.operation(),
                    first.table_id(),
                    first.meta().position,
                    payload.len()
                ),
            )
            .with_table(first.table_id().clone()));
        }
        let (a, b) = run.split_at(run.len() / 2);
        encode_run(tx, a, limit, out)?;
        return encode_run(tx, b, limit, out);
    }
    let mut ops: Vec<&str> = Vec::new();
    for e in run {
        let op = e.operation();
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    out.push(Outgoing { table: Some(first.table_id().clone()), payload, ops: ops.join(",") });
    Ok(())
}

impl TxMessage {
    /// The change events, with their schema and metadata restored.
    pub fn into_events(self) -> Result<Vec<ChangeEvent>> {
        let table = self.table.map(Arc::new);
        let meta = |position: BinlogPosition, index: u32| EventMeta {
            position,
            commit_time: self.commit_time,
            tx: self.sequence,
            index,
        };
        let need = |what: &str| {
            table.clone().ok_or_else(|| {
                Error::new(ErrorKind::SourceValue, format!("a {what} event without its table schema"))
            })
        };
        let mut out = Vec::with_capacity(self.events.len());
        for e in self.events {
            out.push(match e {
                WireEvent::Insert { row, position, index } => ChangeEvent::Insert(InsertEvent {
                    table: need("insert")?,
                    row,
                    meta: meta(position, index),
                }),
                WireEvent::Update { before, after, position, index } => ChangeEvent::Update(UpdateEvent {
                    table: need("update")?,
                    before,
                    after,
                    meta: meta(position, index),
                }),
                WireEvent::Delete { row, position, index } => ChangeEvent::Delete(DeleteEvent {
                    table: need("delete")?,
                    row,
                    meta: meta(position, index),
                }),
                WireEvent::Truncate { position, index } => ChangeEvent::Truncate(TruncateEvent {
                    table: need("truncate")?,
                    meta: meta(position, index),
                }),
                WireEvent::Schema(s) => ChangeEvent::Schema(s),
            });
        }
        Ok(out)
    }
}

/// The largest a column's value can be, in bytes (text at 4 bytes a
/// character); `None` when unbounded for practical purposes (LONGTEXT,
/// LONGBLOB, JSON, spatial values).
pub fn max_value_bytes(t: &synchdb_types::ColumnType) -> Option<u64> {
    use synchdb_types::{ColumnType as C, LobSize};
    let lob = |s: &LobSize| match s {
        LobSize::Tiny => Some(255),
        LobSize::Normal => Some(65_535),
        LobSize::Medium => Some(16_777_215),
        LobSize::Long => None,
    };
    Some(match t {
        C::Char { length } | C::VarChar { length } => u64::from(*length) * 4,
        C::Binary { length } | C::VarBinary { length } => u64::from(*length),
        C::Text { size } => lob(size)? * 4,
        C::Blob { size } => lob(size)?,
        C::Json | C::Geometry { .. } => return None,
        C::Enum { members } => members.iter().map(|m| m.len() as u64).max().unwrap_or(0),
        C::Set { members } => members.iter().map(|m| m.len() as u64 + 1).sum(),
        C::Decimal { precision, .. } => u64::from(*precision) + 2,
        _ => 16,
    })
}

/// The largest row of `table`, in bytes before encoding overhead; `None`
/// when a column is unbounded.
pub fn max_row_bytes(table: &TableSchema) -> Option<u64> {
    table.columns.iter().map(|c| max_value_bytes(&c.column_type)).sum()
}

/// Split snapshot rows into chunk messages of at most `limit` bytes.
pub fn chunk_messages(
    chunk: &ChunkInfo,
    read_at: &Position,
    rows: Vec<Row>,
    limit: usize,
) -> Result<Vec<Vec<u8>>> {
    let msg = ChunkMessage { chunk: chunk.clone(), read_at: read_at.clone(), rows };
    let payload = encode(&msg)?;
    if payload.len() <= limit {
        return Ok(vec![payload]);
    }
    let ChunkMessage { mut rows, .. } = msg;
    if rows.len() <= 1 {
        return Err(Error::new(
            ErrorKind::SinkValue,
            format!(
                "a snapshot row of {} (chunk {}) is {} bytes encoded, above the largest message the stream takes ({limit} bytes): raise the server's max_payload and the stream's max message size",
                chunk.table,
                chunk.index,
                payload.len()
            ),
        )
        .with_table(chunk.table.clone()));
    }
    let second = rows.split_off(rows.len() / 2);
    let mut out = chunk_messages(chunk, read_at, rows, limit)?;
    out.extend(chunk_messages(chunk, read_at, second, limit)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::{
        Bits, ColumnSchema, ColumnType, Date, DateTime, Decimal, Geometry, IntWidth, SchemaChange, Time,
        Timestamp, Value,
    };

    fn every_value() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Int(i64::MIN),
            Value::Int(-1),
            Value::UInt(u64::MAX),
            Value::Float(f32::MIN_POSITIVE),
            Value::Float(-0.1),
            Value::Double(f64::MAX),
            Value::Double(1e-300),
            Value::Decimal(Decimal::parse("-1.50").unwrap()),
            Value::Decimal(
                Decimal::parse("12345678901234567890123456789012345.123456789012345678901234567890").unwrap(),
            ),
            Value::Text("naïve ☃ 😀 \u{0}".into()),
            Value::Bytes(vec![0, 0xff, 0x80, 0xfe, 0]),
            Value::Date(Date::new(0, 0, 0)),
            Value::Date(Date::new(2024, 0, 15)),
            Value::DateTime(DateTime::new(Date::new(9999, 12, 31), 23, 59, 59, 999_999)),
            Value::Timestamp(Timestamp { micros: 0 }),
            Value::Timestamp(Timestamp::from_parts(2_147_483_647, 999_999)),
            Value::Time(Time { micros: -Time::MAX_MICROS }),
            Value::Time(Time { micros: Time::MAX_MICROS }),
            Value::Year(0),
            Value::Year(2155),
            Value::Json(r#"{"a": [1, 2.50, null]}"#.into()),
            Value::Enum(String::new()),
            Value::Set(vec!["a".into(), "b,c".into()]),
            Value::Bit(Bits { width: 64, value: u64::MAX }),
            Value::Geometry(Geometry { srid: 4326, wkb: vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 240, 63] }),
            Value::Uuid(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
            Value::Inet4("10.0.0.255".parse().unwrap()),
            Value::Inet6("2001:db8::ff".parse().unwrap()),
        ]
    }

    fn table() -> TableSchema {
        let mut t = TableSchema::new(
            TableId::new("shop", "t"),
            vec![ColumnSchema::new(
                "id",
                ColumnType::Integer { width: IntWidth::Big, unsigned: true, display_width: None },
            )],
        );
        t.primary_key = vec!["id".into()];
        t
    }

    fn meta(i: u32) -> EventMeta {
        EventMeta {
            position: BinlogPosition::new("mysql-bin.000002", 100 + u64::from(i)),
            commit_time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            tx: 7,
            index: i,
        }
    }

    #[test]
    fn every_value_kind_and_event_round_trips() {
        let schema = Arc::new(table());
        let row = every_value();
        let events = vec![
            ChangeEvent::Insert(InsertEvent { table: schema.clone(), row: row.clone(), meta: meta(0) }),
            ChangeEvent::Update(UpdateEvent {
                table: schema.clone(),
                before: row.clone(),
                after: row.iter().rev().cloned().collect(),
                meta: meta(1),
            }),
            ChangeEvent::Delete(DeleteEvent { table: schema.clone(), row: row.clone(), meta: meta(2) }),
            ChangeEvent::Truncate(TruncateEvent { table: schema.clone(), meta: meta(3) }),
            ChangeEvent::Schema(Box::new(SchemaChangeEvent {
                change: SchemaChange::RenameTable {
                    from: TableId::new("shop", "t"),
                    to: TableId::new("shop", "u"),
                },
                schema_after: Some(schema.clone()),
                ddl: "RENAME TABLE t TO u".into(),
                meta: meta(4),
            })),
            ChangeEvent::Insert(InsertEvent {
                table: schema.clone(),
                row: vec![Value::UInt(1)],
                meta: meta(5),
            }),
        ];
        let tx = Transaction::new(
            7,
            "mysql-bin.000002:900 gtid=0-1-5".parse().unwrap(),
            meta(0).commit_time,
            events,
        )
        .with_gtid(Some("0-1-5".into()))
        .with_foreign_key_checks(false);
        let msgs = tx_messages(&tx, 1 << 20).unwrap();
        // Rows, then the DDL alone, then the rows after it.
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].ops, "insert,update,delete,truncate");
        assert_eq!(msgs[1].ops, "ddl");
        let mut back = Vec::new();
        for m in &msgs {
            let decoded: TxMessage = decode(&m.payload, &"test").unwrap();
            assert_eq!(decoded.end_position, tx.end_position);
            assert_eq!(decoded.gtid.as_deref(), Some("0-1-5"));
            assert!(!decoded.foreign_key_checks);
            back.extend(decoded.into_events().unwrap());
        }
        assert_eq!(back, tx.events);
        // f32 stays f32, bits exact.
        match &back[0] {
            ChangeEvent::Insert(i) => assert_eq!(i.row, every_value()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn largest_rows_are_bounded_by_their_types() {
        let mut t = table();
        assert_eq!(max_row_bytes(&t), Some(16));
        t.columns.push(ColumnSchema::new("v", ColumnType::VarChar { length: 100 }));
        t.columns.push(ColumnSchema::new("b", ColumnType::Blob { size: synchdb_types::LobSize::Medium }));
        assert_eq!(max_row_bytes(&t), Some(16 + 400 + 16_777_215));
        t.columns.push(ColumnSchema::new("j", ColumnType::Json));
        assert_eq!(max_row_bytes(&t), None);
    }

    #[test]
    fn large_transactions_split_and_oversized_rows_are_refused() {
        let schema = Arc::new(table());
        let events: Vec<ChangeEvent> = (0..2000)
            .map(|i| {
                ChangeEvent::Insert(InsertEvent {
                    table: schema.clone(),
                    row: vec![Value::UInt(i), Value::Text("x".repeat(100))],
                    meta: meta(i as u32),
                })
            })
            .collect();
        let tx = Transaction::new(7, "b.1:4".parse().unwrap(), meta(0).commit_time, events.clone());
        let msgs = tx_messages(&tx, 32 * 1024).unwrap();
        assert!(msgs.len() > 4, "{}", msgs.len());
        assert!(msgs.iter().all(|m| m.payload.len() <= 32 * 1024));
        let back: Vec<ChangeEvent> = msgs
            .iter()
            .flat_map(|m| decode::<TxMessage>(&m.payload, &"t").unwrap().into_events().unwrap())
            .collect();
        assert!(back == events, "the split transaction does not decode to the same events");
        let big = Transaction::new(
            1,
            "b.1:4".parse().unwrap(),
            meta(0).commit_time,
            vec![ChangeEvent::Insert(InsertEvent {
                table: schema.clone(),
                row: vec![Value::Bytes(vec![7; 100_000])],
                meta: meta(0),
            })],
        );
        let e = tx_messages(&big, 32 * 1024).unwrap_err();
        assert!(e.to_string().contains("shop.t"), "{e}");
        assert!(e.to_string().contains("mysql-bin.000002:100"), "{e}");
        let chunk =
            ChunkInfo { table: TableId::new("shop", "t"), index: 0, count: 1, lower: None, upper: None };
        let rows: Vec<Row> = (0..2000).map(|i| vec![Value::UInt(i), Value::Text("y".repeat(100))]).collect();
        let parts = chunk_messages(&chunk, &"b.1:4".parse().unwrap(), rows.clone(), 32 * 1024).unwrap();
        let back: Vec<Row> =
            parts.iter().flat_map(|p| decode::<ChunkMessage>(p, &"c").unwrap().rows).collect();
        assert_eq!(back, rows);
        assert!(decode::<ChunkMessage>(&[9, 1, 2], &"v").unwrap_err().to_string().contains("version 9"));
    }
}
