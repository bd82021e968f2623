//! Entry points of the fuzz targets (`fuzz/`) and of their smoke test
//! (`tests/fuzz_smoke.rs`): thin wrappers around the crate-private parsers
//! and decoders that take raw bytes. Not a stable API.
//!
//! Every function accepts any input: garbage must come back as a typed error
//! (here mostly flattened to its text), never as a panic, a hang or an
//! unbounded allocation.
//!
//! The binlog modules are private to `binlog`, so the three files this
//! module needs (row images, MariaDB events, tracked schemas) are compiled a
//! second time in here from the same sources (`#[path]`). The module is left
//! out of the crate's own unit-test build, so their unit tests run once.
#![cfg(not(test))]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use mysql_async::binlog::events::{EventData, OptionalMetaExtractor, TableMapEvent};
use mysql_async::binlog::{BinlogVersion, EventType};
use mysql_async::consts::ColumnType as MyColumnType;
use mysql_common::binlog::EventStreamReader;
use synchdb_core::Result;
use synchdb_types::{
    BinlogPosition, ChangeEvent, ColumnSchema, EventMeta, GtidSet, Position, TableId, TableSchema,
};

use crate::ddl::{classify, dml_tables, leading_words, parse_ddl, quick_tables, QueryKind};
use crate::discovery::parse_column_type;
use crate::filter::TableFilter;
use crate::options::MySqlSourceOptions;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "binlog/mariadb_events.rs"]
mod mariadb_events;
#[allow(dead_code, unused_imports, clippy::all)]
#[path = "binlog/rows.rs"]
mod rows;
#[allow(dead_code, unused_imports, clippy::all)]
#[path = "binlog/schema.rs"]
mod schema;

use self::schema::{Applied, Lookup, Schemas};

/// The default database of the DDL statements (a query event's schema).
pub const DEFAULT_DB: &str = "db";

/// Most statements one DDL input is split into.
const MAX_STATEMENTS: usize = 32;

/// Most columns of a schema built for a rows event (MySQL's limit is 4096).
const MAX_COLUMNS: usize = 4096;

// ------------------------------------------------------------------ DDL

/// Server look-ups answered without a server: `utf8mb4` everywhere, and a
/// two-column table for any table asked for (`CREATE TABLE ... SELECT`,
/// `LIKE` an untracked table).
struct NoServer;

#[async_trait]
impl Lookup for NoServer {
    async fn default_charset(&mut self, _database: &str, _table: Option<&str>) -> Result<Option<String>> {
        Ok(Some("utf8mb4".into()))
    }

    async fn discover(&mut self, table: &TableId) -> Result<Option<TableSchema>> {
        let mut s = TableSchema::new(
            table.clone(),
            vec![
                ColumnSchema::new("id", parse_column_type("int(11)", "int").expect("a valid type"))
                    .not_null(),
                ColumnSchema::new("v", parse_column_type("varchar(10)", "varchar").expect("a valid type")),
            ],
        );
        s.columns[1].charset = Some("utf8mb4".into());
        s.primary_key = vec!["id".into()];
        Ok(Some(s))
    }
}

/// The statements every DDL input starts from: parents, children with
/// foreign keys, keys of every kind.
const TRACKED: &[&str] = &[
    "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, name VARCHAR(10), KEY ix_name (name(4)))",
    "CREATE TABLE p (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, code CHAR(3) CHARACTER SET latin1, \
     PRIMARY KEY (id), UNIQUE KEY uq_code (code)) DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE c (id INT NOT NULL, p_id BIGINT UNSIGNED, note TEXT, d DECIMAL(10,2) DEFAULT '0.00', \
     e ENUM('a','b') NOT NULL DEFAULT 'a', PRIMARY KEY (id), \
     CONSTRAINT fk_p FOREIGN KEY (p_id) REFERENCES p (id) ON DELETE CASCADE)",
    "CREATE TABLE other.x (k VARCHAR(20) NOT NULL, ts TIMESTAMP(3) NULL, j JSON, UNIQUE KEY (k))",
];

fn tracked() -> Schemas {
    static TRACKED_SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    TRACKED_SCHEMAS
        .get_or_init(|| {
            let mut s = Schemas::new(Vec::new(), TableFilter::all());
            for sql in TRACKED {
                let ddl = parse_ddl(sql, DEFAULT_DB).expect("parses").expect("is DDL");
                futures::executor::block_on(s.apply(ddl, &mut NoServer)).expect("applies");
            }
            s
        })
        .clone()
}

/// What one DDL input did.
#[derive(Debug, Default)]
pub struct DdlOutcome {
    /// Statements read.
    pub statements: usize,
    /// Statements that parsed as table DDL.
    pub parsed: usize,
    /// Statements refused with a typed error (parsing or applying).
    pub errors: Vec<String>,
    /// The schema of each table after each change applied, in order.
    pub schemas: Vec<Arc<TableSchema>>,
}

/// Follow mode's DDL path on statement text, against a few tracked tables
/// (`db.t`, `db.p`, `db.c` referencing `db.p`, `other.x`).
///
/// The input holds statements separated by NUL bytes (at most 32), decoded
/// as a query event's text is (lossy UTF-8); one starting with byte `0x01`
/// has no default database. Each goes through `classify`, the table
/// extraction of DML and of quick DDL checks, `parse_ddl`, and is applied to
/// the tracked schemas (restored after a failed statement, as the follower does).
pub fn ddl(input: &[u8]) -> DdlOutcome {
    let mut out = DdlOutcome::default();
    let mut schemas = tracked();
    for piece in input.split(|&b| b == 0).take(MAX_STATEMENTS) {
        let (db, piece) = match piece.split_first() {
            Some((1, rest)) => ("", rest),
            _ => (DEFAULT_DB, piece),
        };
        let sql = String::from_utf8_lossy(piece);
        out.statements += 1;
        let _ = leading_words(&sql, 4);
        let kind = classify(&sql);
        if kind == QueryKind::Dml {
            let _ = dml_tables(&sql, db);
        }
        if let Some(tables) = quick_tables(&sql, db) {
            let _ = schemas.concerns(&tables);
        }
        match parse_ddl(&sql, db) {
            Ok(None) => {}
            Ok(Some(mut ddl)) => {
                out.parsed += 1;
                ddl.map_tables(&|t: &mut TableId| {
                    if let Some(known) = schemas.find_ci(t) {
                        *t = known;
                    }
                });
                let _ = ddl.tables();
                let backup = schemas.clone();
                match futures::executor::block_on(schemas.apply(ddl, &mut NoServer)) {
                    Ok(applied) => {
                        for a in applied {
                            match a {
                                Applied::Schema(_, Some(s)) | Applied::Truncate(s) => out.schemas.push(s),
                                Applied::Schema(_, None) | Applied::RowsChangedUnlogged(..) => {}
                            }
                        }
                    }
                    Err(e) => {
                        schemas = backup;
                        out.errors.push(e.to_string());
                    }
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    out
}

// ------------------------------------------------------------------ rows events

/// Flag of [`rows_event`]'s first byte: fill or cut the schema to the table
/// map's column count (columns without a spec line get a type from the map).
pub const ROWS_ADAPT_SCHEMA: u8 = 0x80;
/// Flag of [`rows_event`]'s first byte: integer columns made up from the map are unsigned.
pub const ROWS_UNSIGNED: u8 = 0x40;

/// The rows event types, chosen by the low 3 bits of [`rows_event`]'s first byte.
const ROWS_EVENT_TYPES: [EventType; 7] = [
    EventType::WRITE_ROWS_EVENT,
    EventType::UPDATE_ROWS_EVENT,
    EventType::DELETE_ROWS_EVENT,
    EventType::WRITE_ROWS_EVENT_V1,
    EventType::UPDATE_ROWS_EVENT_V1,
    EventType::DELETE_ROWS_EVENT_V1,
    EventType::PARTIAL_UPDATE_ROWS_EVENT,
];

/// Frame a [`rows_event`] input.
pub fn rows_input(flags: u8, schema_spec: &str, table_map: &[u8], rows: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend((schema_spec.len() as u16).to_le_bytes());
    out.extend(&schema_spec.as_bytes()[..schema_spec.len().min(u16::MAX as usize)]);
    out.extend((table_map.len() as u16).to_le_bytes());
    out.extend(&table_map[..table_map.len().min(u16::MAX as usize)]);
    out.extend(rows);
    out
}

/// The rows event type code of a flags byte (for seed generators).
pub fn rows_event_type_index(event_type: u8) -> Option<u8> {
    ROWS_EVENT_TYPES.iter().position(|t| *t as u8 == event_type).map(|i| i as u8)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn take_u16(input: &mut &[u8]) -> Option<usize> {
    take(input, 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// A whole binlog event (19-byte v4 header, no checksum) around `data`.
fn event_bytes(event_type: u8, server_id: u32, data: &[u8]) -> Vec<u8> {
    let size = (19 + data.len()) as u32;
    let mut e = Vec::with_capacity(size as usize);
    e.extend(1_700_000_000u32.to_le_bytes());
    e.push(event_type);
    e.extend(server_id.to_le_bytes());
    e.extend(size.to_le_bytes());
    e.extend((4 + size).to_le_bytes());
    e.extend(0u16.to_le_bytes());
    e.extend(data);
    e
}

/// A column type spelling for a table map type (when the schema spec has no line for it).
fn type_for_map(ty: MyColumnType, meta: &[u8], unsigned: bool) -> String {
    use MyColumnType::*;
    let u = if unsigned { " unsigned" } else { "" };
    let m0 = meta.first().copied().unwrap_or(0);
    let m1 = meta.get(1).copied().unwrap_or(0);
    match ty {
        MYSQL_TYPE_TINY => format!("tinyint(4){u}"),
        MYSQL_TYPE_SHORT => format!("smallint(6){u}"),
        MYSQL_TYPE_INT24 => format!("mediumint(9){u}"),
        MYSQL_TYPE_LONG => format!("int(11){u}"),
        MYSQL_TYPE_LONGLONG => format!("bigint(20){u}"),
        MYSQL_TYPE_FLOAT => "float".into(),
        MYSQL_TYPE_DOUBLE => "double".into(),
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => format!("decimal({},{})", m0.max(1), m1.min(m0)),
        MYSQL_TYPE_YEAR => "year(4)".into(),
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "date".into(),
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => format!("time({})", m0.min(6)),
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => format!("datetime({})", m0.min(6)),
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => format!("timestamp({})", m0.min(6)),
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => "varchar(255)".into(),
        MYSQL_TYPE_STRING => "char(10)".into(),
        MYSQL_TYPE_ENUM => "enum('a','b','c')".into(),
        MYSQL_TYPE_SET => "set('a','b','c')".into(),
        MYSQL_TYPE_BIT => format!("bit({})", (usize::from(m1) * 8 + usize::from(m0)).clamp(1, 64)),
        MYSQL_TYPE_TINY_BLOB => "tinytext".into(),
        MYSQL_TYPE_BLOB => match m0 {
            1 => "tinyblob".into(),
            2 => "text".into(),
            3 => "mediumblob".into(),
            _ => "longtext".into(),
        },
        MYSQL_TYPE_MEDIUM_BLOB => "mediumtext".into(),
        MYSQL_TYPE_LONG_BLOB => "longblob".into(),
        MYSQL_TYPE_JSON => "json".into(),
        MYSQL_TYPE_GEOMETRY => "geometry".into(),
        _ => "varbinary(255)".into(),
    }
}

/// A column from a spec line `name<TAB>column_type[<TAB>charset]` (charset
/// `NULL` or empty for none), as `information_schema.COLUMNS` prints them.
fn spec_column(line: &str) -> std::result::Result<ColumnSchema, String> {
    let mut it = line.split('\t');
    let name = it.next().unwrap_or_default();
    let column_type = it.next().ok_or_else(|| format!("spec line {line:?} has no type"))?;
    let charset = it.next().filter(|c| !c.is_empty() && *c != "NULL");
    let t = parse_column_type(column_type, "").map_err(|e| e.to_string())?;
    let mut c = ColumnSchema::new(name, t);
    if charset.is_some() || c.column_type.is_textual() {
        c.charset = Some(charset.unwrap_or("utf8mb4").to_string());
    }
    Ok(c)
}

fn map_column(
    tme: &TableMapEvent<'_>,
    i: usize,
    unsigned: bool,
) -> std::result::Result<ColumnSchema, String> {
    let ty = match tme.get_column_type(i) {
        Ok(Some(ty)) => ty,
        _ => MyColumnType::MYSQL_TYPE_VARCHAR,
    };
    let meta = tme.get_column_metadata(i).unwrap_or(&[]);
    spec_column(&format!("c{i}\t{}", type_for_map(ty, meta, unsigned)))
}

/// Column names from the table map, as follow mode reads them (`binlog_row_metadata=FULL`).
fn column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).ok()?;
    let names: Vec<String> =
        meta.iter_column_name().filter_map(|n| n.ok().map(|n| n.name().into_owned())).collect();
    (names.len() == tme.columns_count() as usize && !names.is_empty()).then_some(names)
}

/// Follow mode's row decoding: a table map event and a rows event, read by
/// mysql_common's event stream reader as the binlog stream does, then the
/// row images decoded with the tracked schema into change events.
///
/// Input: a flags byte (low 3 bits: the rows event type, write/update/delete
/// v2, write/update/delete v1, partial update; [`ROWS_ADAPT_SCHEMA`],
/// [`ROWS_UNSIGNED`]), a u16 LE length and the schema spec (one column a
/// line, `name<TAB>column_type[<TAB>charset]`), a u16 LE length and the
/// table map event's data, then the rows event's data (both without the
/// 19-byte header, which is made here). Returns the schema and the change
/// events decoded, or the error's text.
pub fn rows_event(input: &[u8]) -> std::result::Result<(Arc<TableSchema>, Vec<ChangeEvent>), String> {
    let mut rest = input;
    let short = || "input too short".to_string();
    let flags = take(&mut rest, 1).ok_or_else(short)?[0];
    let n = take_u16(&mut rest).ok_or_else(short)?;
    let spec = String::from_utf8_lossy(take(&mut rest, n).ok_or_else(short)?).into_owned();
    let n = take_u16(&mut rest).ok_or_else(short)?;
    let table_map = take(&mut rest, n).ok_or_else(short)?;
    let rows_data = rest;

    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let tm_event = event_bytes(EventType::TABLE_MAP_EVENT as u8, 1, table_map);
    reader.read(&tm_event[..]).map_err(|e| format!("table map: {e}"))?;
    let rows_type = ROWS_EVENT_TYPES[usize::from(flags & 7) % ROWS_EVENT_TYPES.len()];
    let rows_event = event_bytes(rows_type as u8, 1, rows_data);
    let event = reader.read(&rows_event[..]).map_err(|e| format!("rows: {e}"))?.ok_or_else(short)?;
    let data = match event.read_data().map_err(|e| format!("rows: {e}"))? {
        Some(EventData::RowsEvent(d)) => d,
        _ => return Err("not a rows event".into()),
    };
    let tme = reader.get_tme(data.table_id()).ok_or_else(|| "no table map for the table id".to_string())?;
    let id = TableId::new(tme.database_name(), tme.table_name());
    let names = column_names(tme);

    let mut columns: Vec<ColumnSchema> = Vec::new();
    for line in spec.lines().take(MAX_COLUMNS) {
        columns.push(spec_column(line)?);
    }
    if flags & ROWS_ADAPT_SCHEMA != 0 {
        let count = (tme.columns_count() as usize).min(MAX_COLUMNS);
        columns.truncate(count);
        for i in columns.len()..count {
            columns.push(map_column(tme, i, flags & ROWS_UNSIGNED != 0)?);
        }
        if let Some(names) = &names {
            for (c, n) in columns.iter_mut().zip(names) {
                c.name.clone_from(n);
            }
        }
    }
    let schema = Arc::new(TableSchema::new(id, columns));
    let position = BinlogPosition::new("mysql-bin.000001", 4);
    let meta = EventMeta { position, commit_time: Default::default(), tx: 0, index: 0 };
    let mut out: Vec<ChangeEvent> = Vec::new();
    let _ = rows::rows_kind(&data);
    rows::decode_rows(&data, tme, &schema, &meta, &mut out).map_err(|e| e.to_string())?;
    Ok((schema, out))
}

// ------------------------------------------------------------------ MariaDB GTID events

/// MariaDB's own events as follow mode decodes them: the first byte picks
/// the event (`0`: GTID, `1`: GTID list, `2`: binlog checkpoint, others
/// modulo 3), the next four are the header's server id (LE), the rest is
/// the event data. A decoded GTID list goes through the text form a
/// checkpoint stores and must read back equal. Returns the decoded value as
/// text, or the error's text.
pub fn mariadb_event(input: &[u8]) -> std::result::Result<String, String> {
    let (&which, rest) = input.split_first().ok_or("empty input")?;
    let (server_id, data) = match rest.split_first_chunk::<4>() {
        Some((s, data)) => (u32::from_le_bytes(*s), data),
        None => (0, rest),
    };
    match which % 3 {
        0 => {
            let e = mariadb_events::decode_gtid(server_id, data).map_err(|e| e.to_string())?;
            let _ = e.standalone();
            let text = e.gtid.to_string();
            let back: synchdb_types::MariaGtid =
                text.parse().map_err(|e| format!("GTID {text} does not read back: {e}"))?;
            assert_eq!(back, e.gtid, "GTID text round trip");
            Ok(text)
        }
        1 => {
            let set = mariadb_events::decode_gtid_list(data).map_err(|e| e.to_string())?;
            let text = set.to_string();
            let back: GtidSet =
                text.parse().unwrap_or_else(|e| panic!("GTID set {text:?} does not read back: {e}"));
            assert_eq!(back, set, "GTID set text round trip");
            if !set.is_empty() {
                let p = Position { binlog: BinlogPosition::new("mysql-bin.000001", 4), gtid: Some(set) };
                let text = p.to_string();
                let back: Position =
                    text.parse().unwrap_or_else(|e| panic!("position {text:?} does not read back: {e}"));
                assert_eq!(back, p, "position text round trip");
            }
            Ok(text)
        }
        _ => mariadb_events::decode_binlog_checkpoint(data).map_err(|e| e.to_string()),
    }
}

// ------------------------------------------------------------------ URLs

/// The MySQL source URL parser (`mysql://user:pass@host:port/db?k=v`), then
/// what a pipeline does with parsed options: validate them, build the
/// connection options, print them (password masked), match tables.
pub fn mysql_url(input: &[u8]) -> std::result::Result<(), String> {
    let url = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let o: MySqlSourceOptions = url.parse().map_err(|e: synchdb_core::Error| e.to_string())?;
    let _ = o.validate();
    let _ = o.conn_opts();
    let _ = o.plain_conn_opts();
    let _ = format!("{o:?}");
    let _ = serde_json::to_string(&o);
    let filter = o.get_table_filter();
    for id in [TableId::new("db", "t"), TableId::new("shop", "orders"), TableId::new("mysql", "user")] {
        let _ = filter.matches(&id);
    }
    Ok(())
}
