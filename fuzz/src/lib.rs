//! The fuzz targets' bodies, shared by the cargo-fuzz binaries
//! (`fuzz_targets/*.rs`) and by the smoke test of the normal test suite
//! (`tests/fuzz_smoke.rs`, which includes this file), so both run the same
//! code. Each takes any bytes; a panic is a bug.

use synchdb_postgres::PgSinkOptions;
use synchdb_types::{ChangeEvent, TableId};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target: name (its corpus directory under `fuzz/corpus/`) and body.
pub const TARGETS: &[(&str, Target)] = &[
    ("ddl", ddl),
    ("rows", rows),
    ("mariadb_gtid", mariadb_gtid),
    ("mysql_url", mysql_url),
    ("pg_url", pg_url),
];

/// DDL statement text (NUL-separated statements) → parsed and applied to
/// tracked schemas → schema changes or typed errors; every schema after a
/// change is then mapped to PostgreSQL as the sink does.
pub fn ddl(data: &[u8]) {
    let outcome = synchdb_mysql::fuzzing::ddl(data);
    let options = PgSinkOptions::default();
    for schema in &outcome.schemas {
        let _ = synchdb_postgres::bench::Encoder::new(schema);
        for column in &schema.columns {
            let _ = synchdb_postgres::pg_type_for(&schema.id, column, &options);
        }
    }
}

/// Binlog row images: table map event + rows event bytes → change events or
/// typed errors; decoded rows are then encoded as the PostgreSQL sink does
/// (COPY text and bound parameters).
pub fn rows(data: &[u8]) {
    let Ok((schema, events)) = synchdb_mysql::fuzzing::rows_event(data) else { return };
    let Ok(mut encoder) = synchdb_postgres::bench::Encoder::new(&schema) else { return };
    let mut out = Vec::new();
    for event in &events {
        let rows = match event {
            ChangeEvent::Insert(e) => vec![&e.row],
            ChangeEvent::Update(e) => vec![&e.before, &e.after],
            ChangeEvent::Delete(e) => vec![&e.row],
            _ => vec![],
        };
        for row in rows {
            let _ = encoder.copy_row(row, &mut out);
            let _ = encoder.params(row);
        }
    }
}

/// MariaDB GTID (162), GTID list (163) and binlog checkpoint (161) event
/// data → decoded values (GTID sets round-tripping through their stored
/// text) or typed errors.
pub fn mariadb_gtid(data: &[u8]) {
    let _ = synchdb_mysql::fuzzing::mariadb_event(data);
}

/// MySQL source URLs (`mysql://user:pass@host:port/db?param=value`) →
/// options or typed errors; parsed options are validated, turned into
/// connection options and printed.
pub fn mysql_url(data: &[u8]) {
    let _ = synchdb_mysql::fuzzing::mysql_url(data);
}

/// PostgreSQL sink URLs (`postgres://user:pass@host:port/db?sslmode=...`) →
/// options or typed errors; parsed options are validated, turned into
/// connection options, printed and serialized.
pub fn pg_url(data: &[u8]) {
    let Ok(url) = std::str::from_utf8(data) else { return };
    let Ok(options) = url.parse::<PgSinkOptions>() else { return };
    let _ = options.validate();
    let _ = options.connect_options();
    let _ = options.target_schema(&TableId::new("shop", "orders"));
    let _ = format!("{options:?}");
    if let Ok(json) = serde_json::to_string(&options) {
        let _ = serde_json::from_str::<PgSinkOptions>(&json);
    }
}
