//! Row events (write/update/delete, v1 and v2) into change events.
//!
//! The row images are walked here with the table map; each value is parsed
//! by mysql_common's `BinlogValue` and then goes through the one decoder,
//! `crate::decode::decode_value`, with the tracked column schema. MySQL 8's
//! binary JSON arrives as `BinlogValue::Jsonb` and is turned into its JSON
//! text here first.

use std::sync::Arc;

use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType as MyColumnType;
use mysql_common::io::ParseBuf;
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{
    BinlogPosition, ChangeEvent, ColumnType, DeleteEvent, EventMeta, InsertEvent, Row, TableSchema,
    UpdateEvent, Value,
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
///
/// The row images are walked here rather than through mysql_common's
/// `BinlogRow`, which builds a full `Column` (five owned byte strings) and
/// re-reads the table map's optional metadata for every column of every
/// row; that was the largest cost of following a busy binlog. Each value
/// still goes through mysql_common's `BinlogValue` parser, with the column
/// types and metadata read once per event.
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
    let layout = Layout::new(data, tme, schema, pos)?;
    // How many columns each image holds (all of them with binlog_row_image=FULL).
    let before = data.columns_before_image().map(|b| b.count_ones());
    let after = data.columns_after_image().map(|b| b.count_ones());
    let mut buf = ParseBuf(data.rows_data());
    while !buf.is_empty() {
        let mut m = meta.clone();
        m.index = out.len() as u32;
        let event = match kind {
            RowsKind::Write => ChangeEvent::Insert(InsertEvent {
                table: schema.clone(),
                row: layout.image(&mut buf, after, schema, pos)?,
                meta: m,
            }),
            RowsKind::Delete => ChangeEvent::Delete(DeleteEvent {
                table: schema.clone(),
                row: layout.image(&mut buf, before, schema, pos)?,
                meta: m,
            }),
            RowsKind::Update => {
                let before = layout.image(&mut buf, before, schema, pos)?;
                let after = layout.image(&mut buf, after, schema, pos)?;
                ChangeEvent::Update(UpdateEvent { table: schema.clone(), before, after, meta: m })
            }
        };
        out.push(event);
    }
    Ok(())
}

/// One column of a rows event's table: its binlog type, table-map metadata
/// (at most two bytes), signedness, and whether MariaDB stores it compressed.
#[derive(Clone, Copy)]
struct Col {
    ty: MyColumnType,
    meta: [u8; 2],
    meta_len: usize,
    unsigned: bool,
    compressed: bool,
}

impl Col {
    fn meta(&self) -> &[u8] {
        &self.meta[..self.meta_len]
    }
}

/// MariaDB's binlog types of compressed columns (`VARCHAR ... COMPRESSED`,
/// `BLOB|TEXT ... COMPRESSED`), unknown to mysql_common.
const VARCHAR_COMPRESSED: u8 = 141;
const BLOB_COMPRESSED: u8 = 140;

/// Column types and metadata straight from a table map's bytes, for a table
/// with compressed columns (which mysql_common's accessors cannot walk past):
/// `(type, metadata, compressed)` per column.
fn raw_columns(tme: &TableMapEvent<'_>) -> std::result::Result<Vec<(MyColumnType, Vec<u8>, bool)>, String> {
    use mysql_common::proto::MySerialize;
    let mut bytes = Vec::new();
    tme.serialize(&mut bytes);
    let mut r = Reader { bytes: &bytes, at: 0 };
    // table id (6), flags (2), then the names, each with its length and a NUL.
    r.take(8)?;
    for _ in 0..2 {
        let n = r.take(1)?[0];
        r.take(usize::from(n) + 1)?;
    }
    let count = r.lenenc()?;
    let types = r.take(count)?;
    let len = r.lenenc()?;
    let meta = r.take(len)?;
    let mut out = Vec::with_capacity(types.len());
    let mut at = 0usize;
    for (i, &t) in types.iter().enumerate() {
        let (ty, n, compressed) = match t {
            VARCHAR_COMPRESSED => (MyColumnType::MYSQL_TYPE_VARCHAR, 2, true),
            BLOB_COMPRESSED => (MyColumnType::MYSQL_TYPE_BLOB, 1, true),
            t => {
                let ty =
                    MyColumnType::try_from(t).map_err(|_| format!("column {i} has the unknown type {t}"))?;
                (
                    ty,
                    table_map_metadata_len(ty).ok_or_else(|| format!("column {i} has the type {ty:?}"))?,
                    false,
                )
            }
        };
        let m = meta.get(at..at + n).ok_or_else(|| format!("the metadata of column {i} is cut short"))?;
        out.push((ty, m.to_vec(), compressed));
        at += n;
    }
    Ok(out)
}

/// A cursor over a serialized table map.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> std::result::Result<&'b [u8], String> {
        let s = self.bytes.get(self.at..self.at + n).ok_or("the table map ends early")?;
        self.at += n;
        Ok(s)
    }

    /// A length-encoded integer.
    fn lenenc(&mut self) -> std::result::Result<usize, String> {
        let n = match self.take(1)?[0] {
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            b if b < 0xfb => return Ok(usize::from(b)),
            _ => return Err("a malformed length in the table map".into()),
        };
        Ok(self.take(n)?.iter().rev().fold(0usize, |v, b| (v << 8) | usize::from(*b)))
    }
}

/// How many metadata bytes a column type has in a table map (MySQL's
/// `Table_map_log_event` layout); `None` for a typed array.
fn table_map_metadata_len(ty: MyColumnType) -> Option<usize> {
    use MyColumnType::*;
    Some(match ty {
        MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_DOUBLE
        | MYSQL_TYPE_FLOAT
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_VECTOR => 1,
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_BIT => 2,
        MYSQL_TYPE_TYPED_ARRAY => return None,
        _ => 0,
    })
}

/// A MariaDB compressed column's stored bytes as the value: a header byte
/// (high nibble: the method, 0 for stored as is, 8 for zlib; for zlib, bits
/// 0-2: how many bytes of original length follow, big-endian, and bit 3: a
/// raw deflate stream without the zlib wrapper), then the data.
fn inflate_column(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let Some((&header, rest)) = stored.split_first() else { return Ok(Vec::new()) };
    match header >> 4 {
        0 => Ok(rest.to_vec()),
        8 => {
            let n = usize::from(header & 0x07);
            if rest.len() < n {
                return Err("a compressed value shorter than its header".into());
            }
            let length = rest[..n].iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
            let data = &rest[n..];
            let mut out = Vec::with_capacity(length.min(64 << 20));
            let read = if header & 0x08 != 0 {
                flate2::read::DeflateDecoder::new(data).take(length as u64 + 1).read_to_end(&mut out)
            } else {
                flate2::read::ZlibDecoder::new(data).take(length as u64 + 1).read_to_end(&mut out)
            };
            read.map_err(|e| format!("a compressed value does not inflate: {e}"))?;
            if out.len() != length {
                return Err(format!(
                    "a compressed value inflates to {} bytes, its header says {length}",
                    out.len()
                ));
            }
            Ok(out)
        }
        m => Err(format!("a compressed value with the unknown method {m}")),
    }
}

/// The column types and metadata of one rows event's table, read once.
struct Layout {
    columns: Vec<Col>,
}

impl Layout {
    fn new(
        data: &RowsEventData<'_>,
        tme: &TableMapEvent<'_>,
        schema: &TableSchema,
        pos: &BinlogPosition,
    ) -> Result<Self> {
        let fail = |message: String| {
            Error::new(ErrorKind::SourceValue, message)
                .with_table(schema.id.clone())
                .with_position(pos.clone())
        };
        let count = data.num_columns() as usize;
        // MariaDB's hidden hash columns of long UNIQUE keys (`DB_ROW_HASH_n`,
        // BIGINT) follow the table's own columns in the binlog; the table map
        // check has matched them by name. Their values are read and dropped.
        let hidden_only = (schema.columns.len()..count)
            .all(|i| matches!(tme.get_column_type(i), Ok(Some(MyColumnType::MYSQL_TYPE_LONGLONG))));
        if count < schema.columns.len() || !hidden_only || tme.columns_count() as usize != count {
            return Err(Error::new(
                ErrorKind::SourceSchema,
                format!(
                    "the rows event has {count} columns, its table map {}, the tracked schema {}",
                    tme.columns_count(),
                    schema.columns.len()
                ),
            )
            .with_table(schema.id.clone())
            .with_position(pos.clone()));
        }
        if count == 0 {
            // Row images of no columns take no bytes: the rows would never end.
            return Err(fail("the rows event has no columns".into()));
        }
        // A table with compressed columns: types and metadata from the raw bytes.
        let raw = if (0..count).any(|i| tme.get_column_type(i).is_err()) {
            Some(raw_columns(tme).map_err(|why| fail(format!("the table map: {why}")))?)
        } else {
            None
        };
        let mut columns = Vec::with_capacity(count);
        for i in 0..count {
            let column = schema.columns.get(i);
            let (ty, meta, compressed): (MyColumnType, &[u8], bool) = match &raw {
                Some(r) => {
                    let (ty, m, c) =
                        r.get(i).ok_or_else(|| fail(format!("the table map has no type for column {i}")))?;
                    (*ty, m.as_slice(), *c)
                }
                None => {
                    let ty = match tme.get_column_type(i) {
                        Ok(Some(ty)) => ty,
                        Ok(None) => return Err(fail(format!("the table map has no type for column {i}"))),
                        Err(e) => {
                            let err = fail(format!("the table map's type of column {i}: {e}"));
                            return Err(match column {
                                Some(c) => err.with_column(c.name.clone()),
                                None => err,
                            });
                        }
                    };
                    // mysql_common's value parser indexes the metadata without checking its length.
                    (ty, tme.get_column_metadata(i).unwrap_or(&[]), false)
                }
            };
            // A DECIMAL's scale above its precision: mysql_common computes the size in `usize` (`p - s`).
            let bad_decimal =
                ty == MyColumnType::MYSQL_TYPE_NEWDECIMAL && meta.len() >= 2 && meta[1] > meta[0];
            if ty == MyColumnType::MYSQL_TYPE_TYPED_ARRAY
                || meta.len() < metadata_len(ty)
                || meta.len() > 2
                || bad_decimal
            {
                return Err(fail(format!("the table map's metadata of column {i} ({ty:?}) is malformed")));
            }
            let unsigned =
                column.is_none_or(|c| matches!(c.column_type, ColumnType::Integer { unsigned: true, .. }));
            let mut m = [0u8; 2];
            m[..meta.len()].copy_from_slice(meta);
            columns.push(Col { ty, meta: m, meta_len: meta.len(), unsigned, compressed });
        }
        Ok(Layout { columns })
    }

    /// Read one row image (null bitmap, then the present columns' values).
    fn image<'a>(
        &self,
        buf: &mut ParseBuf<'a>,
        present: Option<usize>,
        schema: &TableSchema,
        pos: &BinlogPosition,
    ) -> Result<Row> {
        let fail = |column: Option<&str>, message: String| {
            let e = Error::new(ErrorKind::SourceValue, message)
                .with_table(schema.id.clone())
                .with_position(pos.clone());
            match column {
                Some(c) => e.with_column(c.to_string()),
                None => e,
            }
        };
        let in_image =
            present.ok_or_else(|| fail(None, "rows event without the expected row image".into()))?;
        let count = self.columns.len();
        if in_image != count {
            return Err(Error::new(
                ErrorKind::SourceSetting,
                format!(
                    "row image has {in_image} of {count} columns: the source must run with binlog_row_image=FULL"
                ),
            )
            .with_table(schema.id.clone())
            .with_position(pos.clone()));
        }
        let nulls: &[u8] = buf
            .parse(count.div_ceil(8))
            .map_err(|e| fail(None, format!("cannot read a row image's null bitmap: {e}")))?;
        let mut row = Vec::with_capacity(count);
        for (i, (col, column)) in self.columns.iter().zip(&schema.columns).enumerate() {
            let (ty, meta, unsigned) = (&col.ty, col.meta(), &col.unsigned);
            if nulls[i / 8] & (1 << (i % 8)) != 0 {
                row.push(Value::Null);
                continue;
            }
            let read_error = |e: std::io::Error| {
                fail(Some(&column.name), format!("cannot read the value from the row image: {e}"))
            };
            let value: BinlogValue<'_> =
                if *ty == MyColumnType::MYSQL_TYPE_TIME2 && matches!(meta.first(), Some(1 | 2)) {
                    BinlogValue::Value(time2_hundredths(buf.parse(4).map_err(read_error)?))
                } else if let Some(why) = malformed_value(*ty, meta, buf.0) {
                    return Err(fail(Some(&column.name), why.into()));
                } else {
                    // The parser's context borrows the metadata as long as the bytes it
                    // reads: a cursor of the shorter lifetime, then `buf` moved past.
                    let mut sub = ParseBuf(buf.0);
                    let v: BinlogValue<'_> = sub.parse((*ty, meta, *unsigned, false)).map_err(read_error)?;
                    let used = buf.0.len() - sub.0.len();
                    buf.0 = &buf.0[used..];
                    v
                };
            let value = match value {
                BinlogValue::Value(mysql_async::Value::Bytes(stored)) if col.compressed => {
                    mysql_async::Value::Bytes(
                        inflate_column(&stored).map_err(|why| fail(Some(&column.name), why))?,
                    )
                }
                BinlogValue::Value(v) => v,
                BinlogValue::Jsonb(j) => mysql_async::Value::Bytes(
                    jsonb_text(j)
                        .map_err(|e| {
                            fail(Some(&column.name), format!("binary JSON does not convert to text: {e}"))
                        })?
                        .into_bytes(),
                ),
                BinlogValue::JsonDiff(_) => {
                    return Err(fail(
                        Some(&column.name),
                        "partial JSON update (JSON diff) not supported".into(),
                    ))
                }
            };
            let v = decode_value(column, value)
                .map_err(|e| e.into_error(&schema.id, &column.name).with_position(pos.clone()))?;
            row.push(v);
        }
        // Hidden hash columns (see `new`): BIGINT values, read past.
        for i in schema.columns.len()..count {
            if nulls[i / 8] & (1 << (i % 8)) == 0 {
                buf.parse::<&[u8]>(8)
                    .map_err(|e| fail(None, format!("cannot read a hidden hash column: {e}")))?;
            }
        }
        Ok(row)
    }
}

/// How many metadata bytes a column type has in a table map (what
/// mysql_common's `BinlogValue` parser reads).
fn metadata_len(ty: MyColumnType) -> usize {
    use MyColumnType::*;
    match ty {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING => 2,
        MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR => 1,
        _ => 0,
    }
}

/// Values only a corrupt row image holds, which mysql_common decodes with an
/// arithmetic overflow (a panic with overflow checks, a wrong value without):
/// a DATETIME2 before year 0, a DECIMAL digit group of 10^digits or more.
fn malformed_value(ty: MyColumnType, meta: &[u8], bytes: &[u8]) -> Option<&'static str> {
    match ty {
        MyColumnType::MYSQL_TYPE_DATETIME2 => {
            bytes.first().is_some_and(|b| b & 0x80 == 0).then_some("malformed DATETIME value (negative)")
        }
        MyColumnType::MYSQL_TYPE_NEWDECIMAL => {
            // Groups of 9 digits in 4 bytes, the leading and trailing ones shorter
            // (MySQL's decimal2bin); the first bit is the sign, negative values inverted.
            const BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
            let (precision, scale) = (usize::from(meta[0]), usize::from(meta[1]));
            let intg = precision - scale;
            let mut groups = Vec::with_capacity(precision / 9 + 2);
            groups.push(intg % 9);
            groups.extend(std::iter::repeat_n(9, intg / 9 + scale / 9));
            groups.push(scale % 9);
            let size: usize = groups.iter().map(|&d| BYTES[d]).sum();
            let raw = bytes.get(..size)?; // too short: mysql_common's read fails
            let negative = raw.first().is_some_and(|b| b & 0x80 == 0);
            let mut at = 0;
            for digits in groups {
                let mut v = 0u64;
                for (k, &b) in raw.iter().enumerate().skip(at).take(BYTES[digits]) {
                    let b = if k == 0 { b ^ 0x80 } else { b };
                    v = v << 8 | u64::from(if negative { !b } else { b });
                }
                if v >= 10u64.pow(digits as u32) {
                    return Some("malformed DECIMAL value");
                }
                at += BYTES[digits];
            }
            None
        }
        _ => None,
    }
}

/// A TIME(1) or TIME(2) value of a row image (3 bytes of offset-binary
/// `hh:mm:ss`, 1 byte of hundredths).
///
/// Decoded here because mysql_common 0.37 computes the negative fraction in
/// a `u32` (`frac -= 0x100`), which wraps: `-12:30:00.5` arrived as
/// `612:34:19.277216` (and panics in builds with overflow checks).
fn time2_hundredths(b: &[u8]) -> mysql_async::Value {
    let mut int_part = (i64::from(b[0]) << 16 | i64::from(b[1]) << 8 | i64::from(b[2])) - 0x80_0000;
    let mut frac = i64::from(b[3]);
    if int_part < 0 && frac > 0 {
        // A negative value with a fraction: the integer part was rounded down.
        int_part += 1;
        frac -= 0x100;
    }
    mysql_common::binlog::misc::time_from_packed(int_part * (1 << 24) + frac * 10_000)
}

/// MySQL's binary JSON as JSON text.
pub(crate) fn jsonb_text(value: mysql_async::binlog::jsonb::Value<'_>) -> Result<String, String> {
    serde_json::Value::try_from(value).map(|j| j.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {

    #[test]
    fn compressed_values_inflate() {
        use std::io::Write;
        assert_eq!(super::inflate_column(&[]).unwrap(), b"");
        assert_eq!(super::inflate_column(b"\x00abc").unwrap(), b"abc");
        let plain = b"abcabcabcabcabcabcabcabc".repeat(20);
        for (wrap, header) in [(false, 0x8a), (true, 0x82)] {
            let mut data = vec![header, (plain.len() >> 8) as u8, plain.len() as u8];
            if wrap {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(&plain).unwrap();
                data.extend(z.finish().unwrap());
            } else {
                let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(&plain).unwrap();
                data.extend(z.finish().unwrap());
            }
            assert_eq!(super::inflate_column(&data).unwrap(), plain);
            // A wrong original length, garbage, an unknown method: errors, not panics.
            let mut wrong = data.clone();
            wrong[2] ^= 1;
            assert!(super::inflate_column(&wrong).is_err());
            assert!(super::inflate_column(&[header, 0, 5, 1, 2, 3]).is_err());
        }
        assert!(super::inflate_column(&[0x30, 1]).is_err());
        assert!(super::inflate_column(&[0x83, 1]).is_err());
    }

    use super::*;

    fn parse(bytes: &[u8]) -> mysql_async::binlog::jsonb::Value<'_> {
        ParseBuf(bytes).parse(()).unwrap()
    }

    /// The bytes MySQL writes for TIME(2) (`my_time_packed_to_binary`).
    fn time2_bytes(negative: bool, h: i64, m: i64, s: i64, hundredths: i64) -> [u8; 4] {
        let hms = (h << 12) | (m << 6) | s;
        let (mut int_part, mut frac) = if negative { (-hms, -hundredths) } else { (hms, hundredths) };
        if int_part <= 0 && frac < 0 {
            int_part -= 1;
            frac += 0x100;
        }
        let v = (int_part + 0x80_0000) as u32;
        [(v >> 16) as u8, (v >> 8) as u8, v as u8, frac as u8]
    }

    #[test]
    fn time2_with_hundredths_keeps_negative_fractions() {
        use mysql_async::Value::Time;
        let cases = [
            ((true, 12, 30, 0, 50), Time(true, 0, 12, 30, 0, 500_000)),
            ((true, 0, 0, 0, 1), Time(true, 0, 0, 0, 0, 10_000)),
            ((true, 838, 59, 59, 99), Time(true, 34, 22, 59, 59, 990_000)),
            ((true, 1, 0, 0, 0), Time(true, 0, 1, 0, 0, 0)),
            ((false, 100, 0, 0, 25), Time(false, 4, 4, 0, 0, 250_000)),
            ((false, 0, 0, 0, 0), Time(false, 0, 0, 0, 0, 0)),
        ];
        for ((neg, h, m, s, f), want) in cases {
            assert_eq!(time2_hundredths(&time2_bytes(neg, h, m, s, f)), want, "{neg} {h}:{m}:{s}.{f}");
        }
    }

    #[test]
    fn corrupt_values_are_errors() {
        use MyColumnType::*;
        // DECIMAL(5,2): 123.45 and -123.45 as MySQL writes them; a fraction group of 100.
        assert_eq!(malformed_value(MYSQL_TYPE_NEWDECIMAL, &[5, 2], &[0x80, 0x7B, 0x2D]), None);
        assert_eq!(malformed_value(MYSQL_TYPE_NEWDECIMAL, &[5, 2], &[0x7F, 0x84, 0xD2]), None);
        assert!(malformed_value(MYSQL_TYPE_NEWDECIMAL, &[5, 2], &[0x80, 0x7B, 0x64]).is_some());
        // DECIMAL(10,1): a one-digit fraction of 22 overflowed mysql_common's `x * 10^8`.
        // (9 integer digits in 4 bytes, the one-digit fraction in 1 byte.)
        assert!(malformed_value(MYSQL_TYPE_NEWDECIMAL, &[10, 1], &[0x80, 0, 0, 1, 22]).is_some());
        assert_eq!(malformed_value(MYSQL_TYPE_NEWDECIMAL, &[10, 1], &[0x80, 0, 0, 1, 9]), None);
        // DATETIME2: year 0 is the smallest; a negative packed value overflowed.
        assert_eq!(malformed_value(MYSQL_TYPE_DATETIME2, &[0], &[0x80, 0, 0, 0, 0]), None);
        assert!(malformed_value(MYSQL_TYPE_DATETIME2, &[0], &[0, 0, 0, 0, 0]).is_some());
        assert_eq!(metadata_len(MYSQL_TYPE_VARCHAR), 2);
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
