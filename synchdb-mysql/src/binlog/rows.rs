//! Row events (write/update/delete, v1 and v2) into change events.
//!
//! mysql_common parses the row images with the table map; every value then
//! goes through the one decoder, `crate::decode::decode_value`, with the
//! tracked column schema. MySQL 8's binary JSON arrives as
//! `BinlogValue::Jsonb` and is turned into its JSON text here first.

use std::sync::Arc;

use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{
    BinlogPosition, ChangeEvent, DeleteEvent, EventMeta, InsertEvent, Row, TableSchema, UpdateEvent,
};

use crate::decode::decode_value;

/// The kind of a rows event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowsKind {
    Write,
    Update,
    Delete,
}

/// The kind of a rows event, `None` for partial JSON updates (unsupported).
pub(crate) fn rows_kind(data: &RowsEventData<'_>) -> Option<RowsKind> {
    Some(match data {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => RowsKind::Write,
        RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => RowsKind::Update,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => RowsKind::Delete,
        _ => return None,
    })
}

/// Decode every row of a rows event into `out`; `meta` is the template
/// (its `index` is set per event from `out.len()`).
pub(crate) fn decode_rows(
    data: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    schema: &Arc<TableSchema>,
    meta: &EventMeta,
    out: &mut Vec<ChangeEvent>,
) -> Result<()> {
    let kind = rows_kind(data).ok_or_else(|| {
        Error::new(ErrorKind::SourceValue, "partial JSON update rows events are not supported")
            .with_table(schema.id.clone())
            .with_position(meta.position.clone())
    })?;
    let pos = &meta.position;
    for item in data.rows(tme) {
        let (before, after) = item.map_err(|e| {
            Error::new(ErrorKind::SourceValue, "cannot read a row image")
                .with_table(schema.id.clone())
                .with_position(pos.clone())
                .with_source(e)
        })?;
        let mut m = meta.clone();
        m.index = out.len() as u32;
        let event = match kind {
            RowsKind::Write => ChangeEvent::Insert(InsertEvent {
                table: schema.clone(),
                row: to_row(image(after, schema, pos)?, schema, pos)?,
                meta: m,
            }),
            RowsKind::Delete => ChangeEvent::Delete(DeleteEvent {
                table: schema.clone(),
                row: to_row(image(before, schema, pos)?, schema, pos)?,
                meta: m,
            }),
            RowsKind::Update => ChangeEvent::Update(UpdateEvent {
                table: schema.clone(),
                before: to_row(image(before, schema, pos)?, schema, pos)?,
                after: to_row(image(after, schema, pos)?, schema, pos)?,
                meta: m,
            }),
        };
        out.push(event);
    }
    Ok(())
}

fn image(row: Option<BinlogRow>, schema: &TableSchema, pos: &BinlogPosition) -> Result<BinlogRow> {
    row.ok_or_else(|| {
        Error::new(ErrorKind::SourceValue, "rows event without the expected row image")
            .with_table(schema.id.clone())
            .with_position(pos.clone())
    })
}

/// One row image into a [`Row`] aligned with the schema's columns.
fn to_row(mut row: BinlogRow, schema: &TableSchema, pos: &BinlogPosition) -> Result<Row> {
    if row.len() != schema.columns.len() {
        return Err(Error::new(
            ErrorKind::SourceSetting,
            format!(
                "row image has {} of {} columns: the source must run with binlog_row_image=FULL",
                row.len(),
                schema.columns.len()
            ),
        )
        .with_table(schema.id.clone())
        .with_position(pos.clone()));
    }
    let mut out = Vec::with_capacity(schema.columns.len());
    for (i, column) in schema.columns.iter().enumerate() {
        let fail = |message: String| {
            Error::new(ErrorKind::SourceValue, message)
                .with_table(schema.id.clone())
                .with_column(column.name.clone())
                .with_position(pos.clone())
        };
        let value = match row.take(i) {
            Some(BinlogValue::Value(v)) => v,
            Some(BinlogValue::Jsonb(j)) => mysql_async::Value::Bytes(
                jsonb_text(j)
                    .map_err(|e| fail(format!("binary JSON does not convert to text: {e}")))?
                    .into_bytes(),
            ),
            Some(BinlogValue::JsonDiff(_)) => {
                return Err(fail("partial JSON update (JSON diff) not supported".into()))
            }
            None => return Err(fail("value missing from the row image".into())),
        };
        let v = decode_value(column, value)
            .map_err(|e| e.into_error(&schema.id, &column.name).with_position(pos.clone()))?;
        out.push(v);
    }
    Ok(out)
}

/// MySQL's binary JSON as JSON text.
pub(crate) fn jsonb_text(value: mysql_async::binlog::jsonb::Value<'_>) -> Result<String, String> {
    serde_json::Value::try_from(value).map(|j| j.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::io::ParseBuf;

    fn parse(bytes: &[u8]) -> mysql_async::binlog::jsonb::Value<'_> {
        ParseBuf(bytes).parse(()).unwrap()
    }

    #[test]
    fn binary_json_to_text() {
        // Built by hand after MySQL's binary JSON layout (sql-common/json_binary.h).
        // {"a": 1}: small object (0x00), count 1, size 12, key at 11 len 1, int16 (0x05) 1 inlined, "a".
        let obj = [0x00, 0x01, 0x00, 0x0C, 0x00, 0x0B, 0x00, 0x01, 0x00, 0x05, 0x01, 0x00, b'a'];
        assert_eq!(jsonb_text(parse(&obj)).unwrap(), r#"{"a":1}"#);
        // ["x", true, null]: small array of 3: a string (offset), two inlined literals.
        let mut arr = vec![0x02, 0x03, 0x00, 0x0F, 0x00];
        arr.extend([0x0C, 0x0D, 0x00]); // string at offset 13
        arr.extend([0x04, 0x01, 0x00]); // literal true
        arr.extend([0x04, 0x00, 0x00]); // literal null
        arr.extend([0x01, b'x']); // length 1, "x"
        arr[3] = arr.len() as u8 - 1;
        assert_eq!(jsonb_text(parse(&arr)).unwrap(), r#"["x",true,null]"#);
        // A scalar string document.
        let s = [0x0C, 0x03, b'a', b'b', b'c'];
        assert_eq!(jsonb_text(parse(&s)).unwrap(), r#""abc""#);
    }
}
