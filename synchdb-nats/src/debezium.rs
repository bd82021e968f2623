//! The Debezium-compatible JSON envelope, for existing Debezium consumers.
//!
//! One message per row event, the body as Debezium's MySQL connector writes
//! it with `decimal.handling.mode=string`, `binary.handling.mode=base64` and
//! `time.precision.mode=adaptive_time_microseconds`:
//! `{"before", "after", "source", "op", "ts_ms", "transaction"}`, wrapped in
//! `{"schema", "payload"}` when the schema section is asked for. Snapshot
//! rows have `op` `r`; a TRUNCATE has `op` `t`; a DDL statement is a
//! schema-change record (`{"source", "databaseName", "ddl", "tableChanges"}`,
//! `tableChanges` holding the table's definition after the change).
//!
//! Value kinds: integers are JSON numbers (`BIGINT UNSIGNED` up to
//! `u64::MAX`); FLOAT and DOUBLE numbers; DECIMAL a string with its scale;
//! text, ENUM and JSON strings; SET the members comma-joined; binary strings
//! base64; DATE days since 1970-01-01 (`io.debezium.time.Date`); DATETIME
//! milliseconds (`fsp` 0–3, `io.debezium.time.Timestamp`) or microseconds
//! (`fsp` 4–6, `io.debezium.time.MicroTimestamp`) since the epoch, as wall
//! clock in UTC; TIMESTAMP an ISO-8601 UTC string
//! (`io.debezium.time.ZonedTimestamp`); TIME signed microseconds
//! (`io.debezium.time.MicroTime`); YEAR a number; BIT(1) a boolean, wider
//! BIT little-endian bytes in base64 (`io.debezium.data.Bits`); spatial
//! values `{"wkb", "srid"}`; UUID and INET values strings. Zero dates and the
//! zero TIMESTAMP, which no calendar holds, are `null`. This format is
//! output only: the native format is what a synchdb applier reads.

use base64::Engine;
use serde_json::{json, Map, Value as Json};
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{
    ChangeEvent, ColumnSchema, ColumnType, IntWidth, Position, Row, TableSchema, Transaction, Value,
};

use crate::wire::Outgoing;

fn b64(bytes: &[u8]) -> Json {
    Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// One value in Debezium's JSON form for its column.
pub fn value_json(column: &ColumnSchema, value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Int(v) => json!(v),
        Value::UInt(v) => json!(v),
        Value::Float(v) => {
            serde_json::Number::from_f64(f64::from(*v)).map(Json::Number).unwrap_or(json!(v.to_string()))
        }
        Value::Double(v) => {
            serde_json::Number::from_f64(*v).map(Json::Number).unwrap_or(json!(v.to_string()))
        }
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Text(s) | Value::Json(s) | Value::Enum(s) => Json::String(s.clone()),
        Value::Bytes(b) => b64(b),
        Value::Date(d) => match d.to_chrono() {
            Some(date) => {
                json!((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days())
            }
            None => Json::Null,
        },
        Value::DateTime(dt) => match dt.to_chrono() {
            Some(t) => {
                let micros = t.and_utc().timestamp_micros();
                let fsp = match column.column_type {
                    ColumnType::DateTime { fsp } => fsp,
                    _ => 6,
                };
                if fsp <= 3 {
                    json!(micros.div_euclid(1000))
                } else {
                    json!(micros)
                }
            }
            None => Json::Null,
        },
        Value::Timestamp(ts) => match ts.to_chrono() {
            Some(t) => Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => Json::Null,
        },
        Value::Time(t) => json!(t.micros),
        Value::Year(y) => json!(y),
        Value::Set(members) => Json::String(members.join(",")),
        Value::Bit(bits) => {
            if bits.width == 1 {
                Json::Bool(bits.value & 1 == 1)
            } else {
                let n = usize::from(bits.width).div_ceil(8);
                b64(&bits.value.to_le_bytes()[..n])
            }
        }
        Value::Geometry(g) => json!({ "wkb": b64(&g.wkb), "srid": g.srid }),
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::Inet4(a) => Json::String(a.to_string()),
        Value::Inet6(a) => Json::String(a.to_string()),
        other => Json::String(other.to_string()),
    }
}

fn row_json(table: &TableSchema, row: &Row) -> Json {
    let mut m = Map::with_capacity(row.len());
    for (c, v) in table.columns.iter().zip(row) {
        m.insert(c.name.clone(), value_json(c, v));
    }
    Json::Object(m)
}

/// The Kafka Connect type and semantic name of a column.
fn field_type(c: &ColumnSchema) -> (&'static str, Option<&'static str>) {
    match &c.column_type {
        ColumnType::Integer { width, unsigned, .. } => match (width, unsigned) {
            (IntWidth::Tiny, false) => ("int16", None),
            (IntWidth::Tiny, true) | (IntWidth::Small, false) => ("int16", None),
            (IntWidth::Small, true) | (IntWidth::Medium, _) | (IntWidth::Int, false) => ("int32", None),
            _ => ("int64", None),
        },
        ColumnType::Float { .. } => ("float", None),
        ColumnType::Double { .. } => ("double", None),
        ColumnType::Decimal { .. } => ("string", None),
        ColumnType::Bit { width: 1 } => ("boolean", None),
        ColumnType::Bit { .. } => ("bytes", Some("io.debezium.data.Bits")),
        ColumnType::Binary { .. } | ColumnType::VarBinary { .. } | ColumnType::Blob { .. } => ("bytes", None),
        ColumnType::Date => ("int32", Some("io.debezium.time.Date")),
        ColumnType::DateTime { fsp } if *fsp <= 3 => ("int64", Some("io.debezium.time.Timestamp")),
        ColumnType::DateTime { .. } => ("int64", Some("io.debezium.time.MicroTimestamp")),
        ColumnType::Timestamp { .. } => ("string", Some("io.debezium.time.ZonedTimestamp")),
        ColumnType::Time { .. } => ("int64", Some("io.debezium.time.MicroTime")),
        ColumnType::Year => ("int32", Some("io.debezium.time.Year")),
        ColumnType::Year2 => ("int16", None),
        ColumnType::Json => ("string", Some("io.debezium.data.Json")),
        ColumnType::Enum { .. } => ("string", Some("io.debezium.data.Enum")),
        ColumnType::Set { .. } => ("string", Some("io.debezium.data.EnumSet")),
        ColumnType::Geometry { .. } => ("struct", Some("io.debezium.data.geometry.Geometry")),
        _ => ("string", None),
    }
}

fn value_schema(prefix: &str, table: &TableSchema, name: &str) -> Json {
    let fields: Vec<Json> = table
        .columns
        .iter()
        .map(|c| {
            let (t, semantic) = field_type(c);
            let mut f = json!({ "field": c.name, "type": t, "optional": c.nullable });
            if let Some(n) = semantic {
                f["name"] = json!(n);
            }
            f
        })
        .collect();
    json!({
        "type": "struct",
        "optional": true,
        "name": format!("{prefix}.{}.{}.{name}", table.id.database, table.id.table),
        "fields": fields,
    })
}

fn envelope_schema(prefix: &str, table: &TableSchema) -> Json {
    json!({
        "type": "struct",
        "optional": false,
        "name": format!("{prefix}.{}.{}.Envelope", table.id.database, table.id.table),
        "fields": [
            { "field": "before", "optional": true, "type": "struct", "fields": value_schema(prefix, table, "Value")["fields"] },
            { "field": "after", "optional": true, "type": "struct", "fields": value_schema(prefix, table, "Value")["fields"] },
            { "field": "source", "type": "struct", "optional": false, "name": "io.debezium.connector.mysql.Source" },
            { "field": "op", "type": "string", "optional": false },
            { "field": "ts_ms", "type": "int64", "optional": true },
            { "field": "transaction", "type": "struct", "optional": true },
        ],
    })
}

fn source_json(
    prefix: &str,
    table: &synchdb_types::TableId,
    position: &synchdb_types::BinlogPosition,
    gtid: Option<&str>,
    ts_ms: i64,
    snapshot: bool,
    row: u32,
) -> Json {
    json!({
        "version": concat!("synchdb-", env!("CARGO_PKG_VERSION")),
        "connector": "mysql",
        "name": prefix,
        "ts_ms": ts_ms,
        "snapshot": if snapshot { "true" } else { "false" },
        "db": table.database,
        "table": table.table,
        "server_id": 0,
        "gtid": gtid,
        "file": position.file,
        "pos": position.pos,
        "row": row,
    })
}

fn wrap(prefix: &str, table: &TableSchema, payload: Json, with_schema: bool) -> Result<Vec<u8>> {
    let body = if with_schema {
        json!({ "schema": envelope_schema(prefix, table), "payload": payload })
    } else {
        payload
    };
    serde_json::to_vec(&body).map_err(|e| Error::internal("encoding a Debezium message").with_source(e))
}

/// Debezium's `tableChanges` of a schema change: the table's whole
/// definition after it (`CREATE`/`ALTER`), or its id (`DROP`).
fn table_changes(change: &synchdb_types::SchemaChange, after: Option<&TableSchema>) -> Json {
    use synchdb_types::SchemaChange as S;
    let id = |t: &synchdb_types::TableId| format!("\"{}\".\"{}\"", t.database, t.table);
    let kind = match change {
        S::CreateTable { .. } => "CREATE",
        S::DropTable { .. } => "DROP",
        _ => "ALTER",
    };
    let table = after.map(|t| {
        json!({
            "defaultCharsetName": t.columns.iter().find_map(|c| c.charset.clone()),
            "primaryKeyColumnNames": t.primary_key,
            "columns": t.columns.iter().enumerate().map(|(i, c)| json!({
                "name": c.name,
                "typeName": c.column_type.to_string().split('(').next().unwrap_or_default().to_ascii_uppercase(),
                "typeExpression": c.column_type.to_string(),
                "charsetName": c.charset,
                "position": i + 1,
                "optional": c.nullable,
                "autoIncremented": c.auto_increment,
                "generated": c.generated.is_some(),
                "comment": if c.comment.is_empty() { None } else { Some(&c.comment) },
            })).collect::<Vec<_>>(),
            "comment": if t.comment.is_empty() { None } else { Some(&t.comment) },
        })
    });
    let target = match (change, after) {
        (_, Some(t)) => &t.id,
        (c, None) => c.table(),
    };
    json!([{ "type": kind, "id": id(target), "table": table }])
}

/// One message per event of `tx`.
pub fn tx_messages(tx: &Transaction, prefix: &str, with_schema: bool, limit: usize) -> Result<Vec<Outgoing>> {
    let ts_ms = tx.commit_time.timestamp_millis();
    let now = chrono::Utc::now().timestamp_millis();
    let tx_id = tx.gtid.clone().unwrap_or_else(|| tx.end_position.binlog.to_string());
    let mut out = Vec::with_capacity(tx.events.len());
    for (order, e) in tx.events.iter().enumerate() {
        let meta = e.meta();
        let source = |t: &synchdb_types::TableId| {
            source_json(prefix, t, &meta.position, tx.gtid.as_deref(), ts_ms, false, meta.index)
        };
        let transaction =
            json!({ "id": tx_id, "total_order": order + 1, "data_collection_order": order + 1 });
        let (table, payload) = match e {
            ChangeEvent::Insert(i) => (
                &i.table,
                json!({
                "before": null, "after": row_json(&i.table, &i.row), "source": source(&i.table.id),
                "op": "c", "ts_ms": now, "transaction": transaction }),
            ),
            ChangeEvent::Update(u) => (
                &u.table,
                json!({
                "before": row_json(&u.table, &u.before), "after": row_json(&u.table, &u.after),
                "source": source(&u.table.id), "op": "u", "ts_ms": now, "transaction": transaction }),
            ),
            ChangeEvent::Delete(d) => (
                &d.table,
                json!({
                "before": row_json(&d.table, &d.row), "after": null, "source": source(&d.table.id),
                "op": "d", "ts_ms": now, "transaction": transaction }),
            ),
            ChangeEvent::Truncate(t) => (
                &t.table,
                json!({
                "before": null, "after": null, "source": source(&t.table.id),
                "op": "t", "ts_ms": now, "transaction": transaction }),
            ),
            ChangeEvent::Schema(s) => {
                let id = s.change.table();
                let body = json!({
                    "source": source(id),
                    "databaseName": id.database,
                    "ddl": s.ddl,
                    "tableChanges": table_changes(&s.change, s.schema_after.as_deref()),
                    "ts_ms": now,
                });
                let payload = serde_json::to_vec(&body)
                    .map_err(|e| Error::internal("encoding a Debezium message").with_source(e))?;
                out.push(Outgoing { table: Some(id.clone()), payload, ops: "ddl".into() });
                continue;
            }
            _ => continue,
        };
        let payload = wrap(prefix, table, payload, with_schema)?;
        if payload.len() > limit {
            return Err(Error::new(
                ErrorKind::SinkValue,
                format!(
                    "a {} event of {} at {} is {} bytes as Debezium JSON, above the largest message the stream takes ({limit} bytes)",
                    e.operation(),
                    table.id,
                    meta.position,
                    payload.len()
                ),
            )
            .with_table(table.id.clone()));
        }
        out.push(Outgoing { table: Some(table.id.clone()), payload, ops: e.operation().into() });
    }
    Ok(out)
}

/// One message (`op` `r`) per snapshot row.
pub fn snapshot_messages(
    table: &TableSchema,
    read_at: &Position,
    rows: Vec<Row>,
    prefix: &str,
    with_schema: bool,
) -> Result<Vec<Vec<u8>>> {
    let now = chrono::Utc::now().timestamp_millis();
    let gtid = read_at.gtid.as_ref().map(ToString::to_string);
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let payload = json!({
                "before": null,
                "after": row_json(table, row),
                "source": source_json(prefix, &table.id, &read_at.binlog, gtid.as_deref(), now, true, i as u32),
                "op": "r",
                "ts_ms": now,
                "transaction": null,
            });
            wrap(prefix, table, payload, with_schema)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::{Bits, Date, DateTime, Decimal, Time, Timestamp};

    fn col(t: ColumnType) -> ColumnSchema {
        ColumnSchema::new("c", t)
    }

    #[test]
    fn values_take_debeziums_forms() {
        let dt6 = col(ColumnType::DateTime { fsp: 6 });
        let dt0 = col(ColumnType::DateTime { fsp: 0 });
        let any = col(ColumnType::Json);
        let d = DateTime::new(Date::new(2024, 1, 2), 3, 4, 5, 678_901);
        assert_eq!(value_json(&dt6, &Value::DateTime(d)), json!(1_704_164_645_678_901i64));
        assert_eq!(value_json(&dt0, &Value::DateTime(d)), json!(1_704_164_645_678i64));
        assert_eq!(value_json(&any, &Value::Date(Date::new(1970, 1, 11))), json!(10));
        assert_eq!(value_json(&any, &Value::Date(Date::new(0, 0, 0))), Json::Null);
        assert_eq!(value_json(&any, &Value::UInt(u64::MAX)), json!(u64::MAX));
        assert_eq!(value_json(&any, &Value::Decimal(Decimal::parse("-1.50").unwrap())), json!("-1.50"));
        assert_eq!(value_json(&any, &Value::Time(Time { micros: -1_500_000 })), json!(-1_500_000));
        assert_eq!(value_json(&any, &Value::Bytes(vec![0, 255])), json!("AP8="));
        assert_eq!(value_json(&any, &Value::Bit(Bits { width: 1, value: 1 })), json!(true));
        assert_eq!(value_json(&any, &Value::Bit(Bits { width: 10, value: 0x201 })), json!("AQI="));
        assert_eq!(
            value_json(&any, &Value::Timestamp(Timestamp::from_parts(1_700_000_000, 5))),
            json!("2023-11-14T22:13:20.000005Z")
        );
        assert_eq!(value_json(&any, &Value::Set(vec!["a".into(), "b".into()])), json!("a,b"));
    }

    #[test]
    fn schema_changes_carry_the_table_after_them() {
        let mut t = TableSchema::new(
            synchdb_types::TableId::new("shop", "t"),
            vec![col(ColumnType::Decimal { precision: 10, scale: 2, unsigned: false })],
        );
        t.primary_key = vec!["c".into()];
        let add = synchdb_types::SchemaChange::AddColumn {
            table: t.id.clone(),
            column: col(ColumnType::Json),
            position: synchdb_types::ColumnPosition::Last,
        };
        let j = table_changes(&add, Some(&t));
        assert_eq!(j[0]["type"], "ALTER");
        assert_eq!(j[0]["id"], "\"shop\".\"t\"");
        assert_eq!(j[0]["table"]["primaryKeyColumnNames"], json!(["c"]));
        assert_eq!(j[0]["table"]["columns"][0]["typeName"], "DECIMAL");
        assert_eq!(j[0]["table"]["columns"][0]["typeExpression"], "decimal(10,2)");
        let drop = synchdb_types::SchemaChange::DropTable { table: t.id.clone() };
        assert_eq!(table_changes(&drop, None)[0]["type"], "DROP");
        assert_eq!(table_changes(&drop, None)[0]["table"], Json::Null);
    }
}
