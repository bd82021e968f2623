//! The one MySQL-to-[`Value`] decoder, used by the snapshot and the binlog reader.
//!
//! [`decode_value`] takes a column's schema and a `mysql_async::Value` in any
//! of the shapes the two readers produce and returns the exact
//! [`synchdb_types::Value`]:
//!
//! | column type | snapshot (binary protocol, see `snapshot.rs`) | binlog (mysql_common 0.37) |
//! |---|---|---|
//! | integers | `Int` / `UInt` | `Int` / `UInt`, signedness unreliable: the column's `unsigned` flag decides (`Int(-1)` in `TINYINT UNSIGNED` is 255) |
//! | FLOAT / DOUBLE | `Float` / `Double` | same |
//! | DECIMAL | `Bytes` text | same |
//! | DATE / DATETIME | `Date(y,m,d,h,i,s,us)` | same |
//! | TIMESTAMP | `Date` in the session time zone, which the snapshot sets to `+00:00` | `Bytes` `"seconds[.micros]"` since the epoch (TIMESTAMP2) or `Int` seconds (old TIMESTAMP) |
//! | TIME | `Time(neg, days, h, m, s, us)` | same |
//! | YEAR | `Int` / `UInt` | `Bytes` `"1900+y"`, so `"1900"` is the zero year |
//! | ENUM | `Bytes` member text (column charset) | `Int` index |
//! | SET | `UInt` bitmask (the snapshot selects `col+0`) | `Bytes` little-endian bitmask |
//! | BIT | `Bytes` big-endian | same |
//! | CHAR / VARCHAR / TEXT / JSON | `Bytes` in the column charset (the snapshot sets `character_set_results = NULL`) | same |
//! | BINARY(n) | `Bytes`, n long | `Bytes`, trailing 0x00 stripped: padded back to n |
//! | GEOMETRY | `Bytes`: SRID (LE u32) + WKB | same |
//! | UUID / INET6 / INET4 | `Bytes`, the 16/16/4-byte binary form (the snapshot selects `CAST(col AS BINARY(n))`) | same, trailing 0x00 stripped: padded |
//!
//! Text-protocol shapes (`Bytes` text for numbers and temporal values) are
//! accepted too. A value of the wrong shape for its column is a
//! [`DecodeError`], never a panic.
//!
//! Zero dates: `0000-00-00`, partial zero dates (`2024-00-15`) and the zero
//! TIMESTAMP are kept as they are ([`Date`] with zero parts,
//! `Timestamp { micros: 0 }`); what the sink stores for them is the sink's
//! zero-date policy.
//!
//! Rules for ambiguous `Bytes`:
//! - SET: bytes exactly as long as the set's packed length (1, 2, 3, 4 or 8
//!   bytes) are a little-endian bitmask unless that bitmask names members the
//!   set does not have; otherwise they are the `a,b` text form.
//! - UUID: 36 or 32 bytes are the text form, up to 16 the binary form.
//! - INET6: up to 16 bytes are the binary form, longer ones the text form.
//! - INET4: up to 4 bytes are the binary form, longer ones the text form.

use std::net::{Ipv4Addr, Ipv6Addr};

use mysql_async::Value as My;
use synchdb_core::{Error, ErrorKind};
use synchdb_types::{
    Bits, ColumnSchema, ColumnType, Date, DateTime, Decimal, Geometry, IntWidth, TableId, Time, Timestamp,
    Value,
};

use crate::charset::{decode_text, CharsetError};

/// A value that does not decode for its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// What is wrong, naming the column type and the value shape.
    pub(crate) message: String,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError { message: message.into() }
    }

    /// The pipeline error: kind [`ErrorKind::SourceValue`], naming the table
    /// and column (the caller adds the binlog position when it has one).
    pub(crate) fn into_error(self, table: &TableId, column: &str) -> Error {
        Error::new(ErrorKind::SourceValue, self.message).with_table(table.clone()).with_column(column)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// A short description of a raw value for error messages (no payload dump).
fn shape(v: &My) -> String {
    match v {
        My::NULL => "NULL".into(),
        My::Bytes(b) => format!("{} bytes", b.len()),
        My::Int(i) => format!("Int({i})"),
        My::UInt(u) => format!("UInt({u})"),
        My::Float(f) => format!("Float({f})"),
        My::Double(d) => format!("Double({d})"),
        My::Date(..) => format!("Date{v:?}"),
        My::Time(..) => format!("Time{v:?}"),
    }
}

fn unexpected(column: &ColumnSchema, v: &My) -> DecodeError {
    DecodeError::new(format!("unexpected {} for a {} column", shape(v), column.column_type))
}

fn text_of(column: &ColumnSchema, bytes: Vec<u8>) -> Result<String, DecodeError> {
    let charset = column.charset.as_deref().unwrap_or("utf8mb4");
    decode_text(charset, bytes).map_err(|e| match e {
        CharsetError::Unsupported(cs) => DecodeError::new(format!(
            "character set {cs} is not supported (supported: every character set of MariaDB 10.11 and MySQL 8: \
             utf8/utf8mb3/utf8mb4, ascii, latin1 (cp1252), latin2, latin5, latin7, greek, hebrew, cp1250, cp1251, \
             cp1256, cp1257, cp850, cp852, cp866, koi8r, koi8u, macroman, macce, tis620, armscii8, dec8, geostd8, hp8, \
             keybcs2, swe7, sjis, cp932, ujis, eucjpms, gbk, gb2312, gb18030, big5, euckr, ucs2, utf16, utf16le, utf32)"
        )),
        CharsetError::Invalid(cs) => DecodeError::new(format!("bytes are not valid {cs} text")),
    })
}

/// ASCII text of a text-protocol value (numbers, dates).
fn ascii(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::new("numeric or temporal text is not ASCII"))
}

/// Decode one raw value for `column`.
pub(crate) fn decode_value(column: &ColumnSchema, value: My) -> Result<Value, DecodeError> {
    if matches!(value, My::NULL) {
        return Ok(Value::Null);
    }
    match &column.column_type {
        ColumnType::Integer { width, unsigned, .. } => decode_int(*width, *unsigned, column, value),
        ColumnType::Decimal { .. } => match value {
            My::Bytes(b) => {
                let s = ascii(&b)?;
                Decimal::parse(s).map(Value::Decimal).map_err(|e| DecodeError::new(e.to_string()))
            }
            My::Int(i) => {
                Ok(Value::Decimal(Decimal::parse(&i.to_string()).expect("integer text is a decimal")))
            }
            My::UInt(u) => {
                Ok(Value::Decimal(Decimal::parse(&u.to_string()).expect("integer text is a decimal")))
            }
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Float { .. } => match value {
            My::Float(f) => Ok(Value::Float(f)),
            My::Double(d) => Ok(Value::Float(d as f32)),
            My::Bytes(b) => ascii(&b)?
                .trim()
                .parse::<f32>()
                .map(Value::Float)
                .map_err(|_| DecodeError::new("invalid FLOAT text")),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Double { .. } => match value {
            My::Double(d) => Ok(Value::Double(d)),
            My::Float(f) => Ok(Value::Double(f64::from(f))),
            My::Bytes(b) => ascii(&b)?
                .trim()
                .parse::<f64>()
                .map(Value::Double)
                .map_err(|_| DecodeError::new("invalid DOUBLE text")),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Bit { width } => {
            let w = (*width).clamp(1, 64) as u8;
            match value {
                My::Bytes(b) if b.len() <= 8 => Ok(Value::Bit(Bits::from_be_bytes(w, &b))),
                My::Int(i) => Ok(Value::Bit(Bits::from_be_bytes(w, &i.to_be_bytes()))),
                My::UInt(u) => Ok(Value::Bit(Bits::from_be_bytes(w, &u.to_be_bytes()))),
                other => Err(unexpected(column, &other)),
            }
        }
        ColumnType::Char { .. } => match value {
            My::Bytes(b) => {
                let mut s = text_of(column, b)?;
                // CHAR values are read without their trailing pad spaces.
                let keep = s.trim_end_matches(' ').len();
                s.truncate(keep);
                Ok(Value::Text(s))
            }
            other => Err(unexpected(column, &other)),
        },
        ColumnType::VarChar { .. } | ColumnType::Text { .. } => match value {
            My::Bytes(b) => Ok(Value::Text(text_of(column, b)?)),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Json => match value {
            My::Bytes(b) => Ok(Value::Json(text_of(column, b)?)),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Binary { length } => match value {
            My::Bytes(mut b) => {
                let n = *length as usize;
                if b.len() > n {
                    return Err(DecodeError::new(format!("{} bytes for a binary({n}) column", b.len())));
                }
                b.resize(n, 0);
                Ok(Value::Bytes(b))
            }
            other => Err(unexpected(column, &other)),
        },
        ColumnType::VarBinary { .. } | ColumnType::Blob { .. } => match value {
            My::Bytes(b) => Ok(Value::Bytes(b)),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Date => decode_date(column, value),
        ColumnType::DateTime { .. } => decode_datetime(column, value),
        ColumnType::Timestamp { .. } => decode_timestamp(column, value),
        ColumnType::Time { .. } => match value {
            My::Time(neg, days, h, m, s, us) => {
                Ok(Value::Time(Time::from_parts(neg, days * 24 + u32::from(h), m, s, us)))
            }
            My::Bytes(b) => {
                ascii(&b)?.parse::<Time>().map(Value::Time).map_err(|e| DecodeError::new(e.to_string()))
            }
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Year => year(column, value).map(Value::Year),
        // Readers see two digits of the year the binlog sends whole.
        ColumnType::Year2 => year(column, value).map(|y| Value::Year(y % 100)),
        ColumnType::Enum { members } => match value {
            My::Int(i) => enum_index(members, i.max(-1) as i128, column),
            My::UInt(u) => enum_index(members, i128::from(u), column),
            My::Bytes(b) => Ok(Value::Enum(text_of(column, b)?)),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Set { members } => match value {
            My::Int(i) => set_bits(members, i as u64, column),
            My::UInt(u) => set_bits(members, u, column),
            My::Bytes(b) => decode_set_bytes(members, b, column),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Geometry { .. } => match value {
            My::Bytes(b) => Geometry::from_mysql_internal(&b)
                .map(Value::Geometry)
                .map_err(|e| DecodeError::new(e.to_string())),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Uuid => match value {
            My::Bytes(b) if b.len() == 36 || b.len() == 32 => ascii(&b)?
                .parse::<uuid::Uuid>()
                .map(Value::Uuid)
                .map_err(|_| DecodeError::new("invalid UUID text")),
            My::Bytes(b) if b.len() <= 16 => {
                let mut raw = [0u8; 16];
                raw[..b.len()].copy_from_slice(&b);
                Ok(Value::Uuid(uuid::Uuid::from_bytes(raw)))
            }
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Inet6 => match value {
            My::Bytes(b) if b.len() <= 16 => {
                let mut raw = [0u8; 16];
                raw[..b.len()].copy_from_slice(&b);
                Ok(Value::Inet6(Ipv6Addr::from(raw)))
            }
            My::Bytes(b) => ascii(&b)?
                .parse::<Ipv6Addr>()
                .map(Value::Inet6)
                .map_err(|_| DecodeError::new("invalid INET6 text")),
            other => Err(unexpected(column, &other)),
        },
        ColumnType::Inet4 => match value {
            My::Bytes(b) if b.len() <= 4 => {
                let mut raw = [0u8; 4];
                raw[..b.len()].copy_from_slice(&b);
                Ok(Value::Inet4(Ipv4Addr::from(raw)))
            }
            My::Bytes(b) => ascii(&b)?
                .parse::<Ipv4Addr>()
                .map(Value::Inet4)
                .map_err(|_| DecodeError::new("invalid INET4 text")),
            My::UInt(u) if u <= u64::from(u32::MAX) => Ok(Value::Inet4(Ipv4Addr::from(u as u32))),
            other => Err(unexpected(column, &other)),
        },
        other => Err(DecodeError::new(format!("column type {other} is not supported by the decoder"))),
    }
}

fn decode_int(
    width: IntWidth,
    unsigned: bool,
    column: &ColumnSchema,
    value: My,
) -> Result<Value, DecodeError> {
    let bits = u32::from(width.bytes()) * 8;
    let out_of_range = |v: &dyn std::fmt::Display| {
        DecodeError::new(format!("integer {v} out of range for a {} column", column.column_type))
    };
    // Normalise to the raw bit pattern of the column's width, or a text value.
    let raw: i128 = match value {
        My::Int(i) => i128::from(i),
        My::UInt(u) => i128::from(u),
        My::Bytes(b) => {
            ascii(&b)?.trim().parse::<i128>().map_err(|_| DecodeError::new("invalid integer text"))?
        }
        other => return Err(unexpected(column, &other)),
    };
    let modulus: i128 = 1i128 << bits;
    if unsigned {
        let max = modulus - 1;
        let v = if raw < 0 {
            // A negative value is the signed reading of the unsigned bit pattern.
            if raw < -(modulus / 2) {
                return Err(out_of_range(&raw));
            }
            raw + modulus
        } else {
            raw
        };
        if v > max {
            return Err(out_of_range(&raw));
        }
        Ok(Value::UInt(v as u64))
    } else {
        let (min, max) = (-(modulus / 2), modulus / 2 - 1);
        let v = if raw > max {
            // An unsigned reading of a negative value.
            if raw >= modulus {
                return Err(out_of_range(&raw));
            }
            raw - modulus
        } else {
            raw
        };
        if v < min {
            return Err(out_of_range(&raw));
        }
        Ok(Value::Int(v as i64))
    }
}

fn decode_date(column: &ColumnSchema, value: My) -> Result<Value, DecodeError> {
    match value {
        My::Date(y, m, d, 0, 0, 0, 0) => Ok(Value::Date(Date::new(y, m, d))),
        My::Bytes(b) => {
            ascii(&b)?.parse::<Date>().map(Value::Date).map_err(|e| DecodeError::new(e.to_string()))
        }
        other => Err(unexpected(column, &other)),
    }
}

fn decode_datetime(column: &ColumnSchema, value: My) -> Result<Value, DecodeError> {
    match value {
        My::Date(y, mo, d, h, mi, s, us) => {
            Ok(Value::DateTime(DateTime::new(Date::new(y, mo, d), h, mi, s, us)))
        }
        My::Bytes(b) => {
            ascii(&b)?.parse::<DateTime>().map(Value::DateTime).map_err(|e| DecodeError::new(e.to_string()))
        }
        other => Err(unexpected(column, &other)),
    }
}

fn decode_timestamp(column: &ColumnSchema, value: My) -> Result<Value, DecodeError> {
    match value {
        // Snapshot: wall clock in the session time zone, which is UTC.
        My::Date(y, mo, d, h, mi, s, us) => {
            utc_wall_clock(DateTime::new(Date::new(y, mo, d), h, mi, s, us)).map(Value::Timestamp)
        }
        // Old TIMESTAMP in the binlog: seconds since the epoch.
        My::Int(secs) => Ok(Value::Timestamp(Timestamp::from_parts(secs, 0))),
        My::UInt(secs) => Ok(Value::Timestamp(Timestamp::from_parts(secs as i64, 0))),
        My::Bytes(b) => {
            let s = ascii(&b)?.trim();
            if s.contains('-') {
                // Text protocol: a UTC wall clock.
                let dt: DateTime =
                    s.parse().map_err(|e: synchdb_types::ParseError| DecodeError::new(e.to_string()))?;
                utc_wall_clock(dt).map(Value::Timestamp)
            } else {
                // TIMESTAMP2 in the binlog: "seconds[.micros]" since the epoch.
                let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
                let secs: i64 =
                    secs.parse().map_err(|_| DecodeError::new(format!("invalid TIMESTAMP {s:?}")))?;
                let micros = if frac.is_empty() {
                    0
                } else if frac.len() <= 6 && frac.bytes().all(|c| c.is_ascii_digit()) {
                    frac.parse::<u32>().unwrap_or(0) * 10u32.pow(6 - frac.len() as u32)
                } else {
                    return Err(DecodeError::new(format!("invalid TIMESTAMP {s:?}")));
                };
                Ok(Value::Timestamp(Timestamp::from_parts(secs, micros)))
            }
        }
        other => Err(unexpected(column, &other)),
    }
}

/// A UTC wall clock to an instant; the zero datetime is the zero timestamp.
fn utc_wall_clock(dt: DateTime) -> Result<Timestamp, DecodeError> {
    if dt.is_zero() {
        return Ok(Timestamp { micros: 0 });
    }
    let naive = dt.to_chrono().ok_or_else(|| DecodeError::new(format!("invalid TIMESTAMP {dt}")))?;
    Ok(Timestamp { micros: naive.and_utc().timestamp_micros() })
}

fn enum_index(members: &[String], index: i128, column: &ColumnSchema) -> Result<Value, DecodeError> {
    match index {
        0 => Ok(Value::Enum(String::new())),
        i if i >= 1 && (i as usize) <= members.len() => Ok(Value::Enum(members[i as usize - 1].clone())),
        i => Err(DecodeError::new(format!(
            "ENUM index {i} out of range for {} ({} members)",
            column.column_type,
            members.len()
        ))),
    }
}

fn set_bits(members: &[String], mask: u64, column: &ColumnSchema) -> Result<Value, DecodeError> {
    if members.len() < 64 && mask >> members.len() != 0 {
        return Err(DecodeError::new(format!(
            "SET bitmask {mask:#x} names members that {} does not have",
            column.column_type
        )));
    }
    Ok(Value::Set(
        members
            .iter()
            .take(64)
            .enumerate()
            .filter(|(i, _)| mask & (1u64 << i) != 0)
            .map(|(_, m)| m.clone())
            .collect(),
    ))
}

/// The packed length of a SET of `n` members in the binlog.
fn set_pack_length(n: usize) -> usize {
    let len = n.div_ceil(8);
    if len > 4 {
        8
    } else {
        len.max(1)
    }
}

fn decode_set_bytes(members: &[String], bytes: Vec<u8>, column: &ColumnSchema) -> Result<Value, DecodeError> {
    if bytes.len() == set_pack_length(members.len()) {
        let mask = bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if let Ok(v) = set_bits(members, mask, column) {
            return Ok(v);
        }
    }
    let text = text_of(column, bytes)?;
    if text.is_empty() {
        return Ok(Value::Set(Vec::new()));
    }
    let given: Vec<&str> = text.split(',').collect();
    if let Some(bad) = given.iter().find(|g| !members.iter().any(|m| m == *g)) {
        return Err(DecodeError::new(format!("{bad:?} is not a member of {}", column.column_type)));
    }
    Ok(Value::Set(members.iter().filter(|m| given.contains(&m.as_str())).cloned().collect()))
}

/// A YEAR's value: the snapshot's number or text, or the binlog's text
/// `1900 + stored byte` (so `1900` is the zero year).
fn year(column: &ColumnSchema, value: My) -> Result<u16, DecodeError> {
    match value {
        My::Int(i) if (0..=2155).contains(&i) => Ok(i as u16),
        My::UInt(u) if u <= 2155 => Ok(u as u16),
        My::Bytes(b) => {
            let y: u16 = ascii(&b)?.trim().parse().map_err(|_| DecodeError::new("invalid YEAR text"))?;
            Ok(if y == 1900 { 0 } else { y })
        }
        other => Err(unexpected(column, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(t: ColumnType) -> ColumnSchema {
        ColumnSchema::new("c", t)
    }

    fn int(width: IntWidth, unsigned: bool) -> ColumnSchema {
        col(ColumnType::Integer { width, unsigned, display_width: None })
    }

    fn text(t: ColumnType, charset: &str) -> ColumnSchema {
        let mut c = col(t);
        c.charset = Some(charset.into());
        c
    }

    #[test]
    fn integers_follow_the_column_signedness() {
        let u8c = int(IntWidth::Tiny, true);
        assert_eq!(decode_value(&u8c, My::Int(-1)).unwrap(), Value::UInt(255));
        assert_eq!(decode_value(&u8c, My::UInt(255)).unwrap(), Value::UInt(255));
        assert!(decode_value(&u8c, My::Int(256)).is_err());
        let i8c = int(IntWidth::Tiny, false);
        assert_eq!(decode_value(&i8c, My::Int(-128)).unwrap(), Value::Int(-128));
        assert_eq!(decode_value(&i8c, My::UInt(255)).unwrap(), Value::Int(-1));
        // An unsigned reading of a signed column's bits (binlog without signedness metadata).
        assert_eq!(decode_value(&i8c, My::Int(128)).unwrap(), Value::Int(-128));
        assert!(decode_value(&i8c, My::Int(256)).is_err());
        assert!(decode_value(&i8c, My::Int(-129)).is_err());
        let u64c = int(IntWidth::Big, true);
        assert_eq!(decode_value(&u64c, My::Int(-1)).unwrap(), Value::UInt(u64::MAX));
        assert_eq!(decode_value(&u64c, My::UInt(u64::MAX)).unwrap(), Value::UInt(u64::MAX));
        let i64c = int(IntWidth::Big, false);
        assert_eq!(decode_value(&i64c, My::Int(i64::MIN)).unwrap(), Value::Int(i64::MIN));
        assert_eq!(decode_value(&i64c, My::UInt(u64::MAX)).unwrap(), Value::Int(-1));
        let u24 = int(IntWidth::Medium, true);
        assert_eq!(decode_value(&u24, My::Int(16_777_215)).unwrap(), Value::UInt(16_777_215));
        assert_eq!(decode_value(&u24, My::Int(-1)).unwrap(), Value::UInt(16_777_215));
        assert_eq!(decode_value(&i64c, My::Bytes(b"-42".to_vec())).unwrap(), Value::Int(-42));
        assert_eq!(decode_value(&i64c, My::NULL).unwrap(), Value::Null);
        assert!(decode_value(&i64c, My::Double(1.0)).is_err());
    }

    #[test]
    fn decimals_and_floats() {
        let d = col(ColumnType::Decimal { precision: 65, scale: 30, unsigned: false });
        let s = "-99999999999999999999999999999999999.999999999999999999999999999999";
        assert_eq!(decode_value(&d, My::Bytes(s.as_bytes().to_vec())).unwrap().to_string(), s);
        assert!(decode_value(&d, My::Bytes(b"x".to_vec())).is_err());
        let f = col(ColumnType::Float { unsigned: false });
        assert_eq!(decode_value(&f, My::Float(1.5)).unwrap(), Value::Float(1.5));
        let g = col(ColumnType::Double { unsigned: false });
        assert_eq!(decode_value(&g, My::Double(-2.25e300)).unwrap(), Value::Double(-2.25e300));
    }

    #[test]
    fn temporal_shapes() {
        let dt = col(ColumnType::DateTime { fsp: 6 });
        assert_eq!(
            decode_value(&dt, My::Date(2024, 2, 29, 23, 59, 58, 999_999)).unwrap().to_string(),
            "2024-02-29 23:59:58.999999"
        );
        assert_eq!(
            decode_value(&dt, My::Date(0, 0, 0, 0, 0, 0, 0)).unwrap().to_string(),
            "0000-00-00 00:00:00"
        );
        let d = col(ColumnType::Date);
        assert_eq!(decode_value(&d, My::Date(0, 0, 0, 0, 0, 0, 0)).unwrap(), Value::Date(Date::new(0, 0, 0)));
        assert_eq!(
            decode_value(&d, My::Bytes(b"2024-00-15".to_vec())).unwrap(),
            Value::Date(Date::new(2024, 0, 15))
        );
        let ts = col(ColumnType::Timestamp { fsp: 6 });
        let expect = Value::Timestamp(Timestamp::from_parts(1_700_000_000, 123_456));
        assert_eq!(decode_value(&ts, My::Date(2023, 11, 14, 22, 13, 20, 123_456)).unwrap(), expect);
        assert_eq!(decode_value(&ts, My::Bytes(b"1700000000.123456".to_vec())).unwrap(), expect);
        assert_eq!(decode_value(&ts, My::Bytes(b"2023-11-14 22:13:20.123456".to_vec())).unwrap(), expect);
        assert_eq!(
            decode_value(&ts, My::Int(1_700_000_000)).unwrap(),
            Value::Timestamp(Timestamp::from_parts(1_700_000_000, 0))
        );
        assert_eq!(
            decode_value(&ts, My::Bytes(b"0".to_vec())).unwrap(),
            Value::Timestamp(Timestamp { micros: 0 })
        );
        assert_eq!(
            decode_value(&ts, My::Date(0, 0, 0, 0, 0, 0, 0)).unwrap(),
            Value::Timestamp(Timestamp { micros: 0 })
        );
        let t = col(ColumnType::Time { fsp: 6 });
        assert_eq!(decode_value(&t, My::Time(true, 34, 22, 59, 59, 0)).unwrap().to_string(), "-838:59:59");
        assert_eq!(decode_value(&t, My::Time(false, 1, 1, 0, 0, 5)).unwrap().to_string(), "25:00:00.000005");
        let y = col(ColumnType::Year);
        assert_eq!(decode_value(&y, My::Int(2024)).unwrap(), Value::Year(2024));
        assert_eq!(decode_value(&y, My::Bytes(b"2155".to_vec())).unwrap(), Value::Year(2155));
        assert_eq!(decode_value(&y, My::Bytes(b"1900".to_vec())).unwrap(), Value::Year(0));
        assert_eq!(decode_value(&y, My::Int(0)).unwrap(), Value::Year(0));
        // YEAR(2): two digits from the snapshot's text and the binlog's whole year alike.
        let y2 = col(ColumnType::Year2);
        assert_eq!(decode_value(&y2, My::Bytes(b"99".to_vec())).unwrap(), Value::Year(99));
        assert_eq!(decode_value(&y2, My::Bytes(b"1999".to_vec())).unwrap(), Value::Year(99));
        assert_eq!(decode_value(&y2, My::Bytes(b"2005".to_vec())).unwrap(), Value::Year(5));
        assert_eq!(decode_value(&y2, My::Bytes(b"1900".to_vec())).unwrap(), Value::Year(0));
        assert_eq!(decode_value(&y2, My::Int(5)).unwrap(), Value::Year(5));
    }

    #[test]
    fn text_in_column_charsets() {
        let l1 = text(ColumnType::VarChar { length: 10 }, "latin1");
        assert_eq!(decode_value(&l1, My::Bytes(vec![b'c', 0xE9, 0x80])).unwrap(), Value::Text("cé€".into()));
        let u = text(ColumnType::Text { size: synchdb_types::LobSize::Normal }, "utf8mb4");
        assert_eq!(decode_value(&u, My::Bytes("😀".as_bytes().to_vec())).unwrap(), Value::Text("😀".into()));
        let e = decode_value(&u, My::Bytes(vec![0xC3])).unwrap_err();
        assert!(e.message.contains("utf8mb4"), "{e}");
        let odd = text(ColumnType::VarChar { length: 10 }, "filename");
        let e = decode_value(&odd, My::Bytes(b"a".to_vec())).unwrap_err();
        assert!(e.message.contains("character set filename is not supported"), "{e}");
        let dec8 = text(ColumnType::VarChar { length: 10 }, "dec8");
        assert_eq!(decode_value(&dec8, My::Bytes(b"a".to_vec())).unwrap(), Value::Text("a".into()));
        let ch = text(ColumnType::Char { length: 5 }, "utf8mb4");
        assert_eq!(decode_value(&ch, My::Bytes(b"ab   ".to_vec())).unwrap(), Value::Text("ab".into()));
        let j = text(ColumnType::Json, "utf8mb4");
        assert_eq!(
            decode_value(&j, My::Bytes(b"{\"a\":1}".to_vec())).unwrap(),
            Value::Json("{\"a\":1}".into())
        );
    }

    #[test]
    fn binary_is_padded() {
        let b = col(ColumnType::Binary { length: 4 });
        assert_eq!(decode_value(&b, My::Bytes(vec![1, 0])).unwrap(), Value::Bytes(vec![1, 0, 0, 0]));
        assert_eq!(decode_value(&b, My::Bytes(vec![])).unwrap(), Value::Bytes(vec![0; 4]));
        assert!(decode_value(&b, My::Bytes(vec![1; 5])).is_err());
        let vb = col(ColumnType::VarBinary { length: 4 });
        assert_eq!(decode_value(&vb, My::Bytes(vec![0, 0xFF, 0])).unwrap(), Value::Bytes(vec![0, 0xFF, 0]));
    }

    #[test]
    fn enum_set_bit() {
        let members = vec!["a".to_string(), "b".to_string(), "it's".to_string()];
        let e = text(ColumnType::Enum { members: members.clone() }, "utf8mb4");
        assert_eq!(decode_value(&e, My::Int(3)).unwrap(), Value::Enum("it's".into()));
        assert_eq!(decode_value(&e, My::Int(0)).unwrap(), Value::Enum(String::new()));
        assert_eq!(decode_value(&e, My::Bytes(b"b".to_vec())).unwrap(), Value::Enum("b".into()));
        assert!(decode_value(&e, My::Int(4)).is_err());
        let s = text(ColumnType::Set { members }, "utf8mb4");
        let ab = Value::Set(vec!["a".into(), "b".into()]);
        assert_eq!(decode_value(&s, My::UInt(3)).unwrap(), ab);
        assert_eq!(decode_value(&s, My::Bytes(vec![3])).unwrap(), ab);
        assert_eq!(decode_value(&s, My::Bytes(b"b,a".to_vec())).unwrap(), ab);
        assert_eq!(decode_value(&s, My::Bytes(vec![0])).unwrap(), Value::Set(vec![]));
        assert!(decode_value(&s, My::UInt(8)).is_err());
        assert!(decode_value(&s, My::Bytes(b"a,z".to_vec())).is_err());
        let many: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        let s20 = text(ColumnType::Set { members: many }, "utf8mb4");
        assert_eq!(
            decode_value(&s20, My::Bytes(vec![0x01, 0x00, 0x08])).unwrap(),
            Value::Set(vec!["m0".into(), "m19".into()])
        );
        let bit = col(ColumnType::Bit { width: 10 });
        assert_eq!(decode_value(&bit, My::Bytes(vec![0x02, 0x01])).unwrap().to_string(), "1000000001");
    }

    #[test]
    fn mariadb_types() {
        let u = col(ColumnType::Uuid);
        let id: uuid::Uuid = "6ccd780c-baba-1026-9564-5b8c656024db".parse().unwrap();
        assert_eq!(decode_value(&u, My::Bytes(id.as_bytes().to_vec())).unwrap(), Value::Uuid(id));
        assert_eq!(decode_value(&u, My::Bytes(id.to_string().into_bytes())).unwrap(), Value::Uuid(id));
        let tail_zero: uuid::Uuid = "123e4567-e89b-42d3-a456-426614174000".parse().unwrap();
        let stripped = tail_zero.as_bytes()[..15].to_vec();
        assert_eq!(decode_value(&u, My::Bytes(stripped)).unwrap(), Value::Uuid(tail_zero));
        let i6 = col(ColumnType::Inet6);
        let mut one = vec![0u8; 15];
        one.push(1);
        assert_eq!(decode_value(&i6, My::Bytes(one)).unwrap().to_string(), "::1");
        assert_eq!(
            decode_value(&i6, My::Bytes(vec![0x20, 0x01, 0x0d, 0xb8])).unwrap().to_string(),
            "2001:db8::"
        );
        assert_eq!(decode_value(&i6, My::Bytes(vec![])).unwrap().to_string(), "::");
        assert_eq!(
            decode_value(&i6, My::Bytes(b"2001:db8::ff00:42:8329".to_vec())).unwrap().to_string(),
            "2001:db8::ff00:42:8329"
        );
        let i4 = col(ColumnType::Inet4);
        assert_eq!(decode_value(&i4, My::Bytes(vec![1, 2, 3, 4])).unwrap().to_string(), "1.2.3.4");
        assert_eq!(decode_value(&i4, My::Bytes(b"10.0.0.1".to_vec())).unwrap().to_string(), "10.0.0.1");
    }

    #[test]
    fn geometry() {
        let g = col(ColumnType::Geometry { subtype: "point".into() });
        let mut raw = 4326u32.to_le_bytes().to_vec();
        raw.extend_from_slice(&[1, 1, 0, 0, 0]);
        raw.extend_from_slice(&1.5f64.to_le_bytes());
        raw.extend_from_slice(&2.5f64.to_le_bytes());
        let Value::Geometry(v) = decode_value(&g, My::Bytes(raw.clone())).unwrap() else { panic!() };
        assert_eq!(v.srid, 4326);
        assert_eq!(v.to_mysql_internal(), raw);
        assert!(decode_value(&g, My::Bytes(vec![1, 2])).is_err());
    }

    #[test]
    fn errors_name_table_and_column() {
        let e = DecodeError::new("bad").into_error(&TableId::new("d", "t"), "c");
        assert_eq!(e.kind(), ErrorKind::SourceValue);
        assert_eq!(e.to_string(), "source value error: bad (table d.t, column c)");
    }
}
