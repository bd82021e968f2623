//! Values in PostgreSQL's binary COPY format (the snapshot's default path).
//!
//! PostgreSQL spends most of a text `COPY` parsing: numbers, timestamps and
//! escapes. In the binary format each field is its type's `*_recv` form, so
//! the server only copies bytes. A table is copied in binary when every
//! column has the default mapping and no SQL transform (see
//! [`BinaryKind::of`]); anything else (type overrides, transforms, PostGIS)
//! takes the text path, which accepts any type PostgreSQL can cast from text.
//!
//! The checks the text path leaves to PostgreSQL's parser are made here, with
//! the same outcome: an integer out of its type's range, a decimal with more
//! digits than `numeric(p,s)` holds, a timestamp out of range and NUL in text
//! are typed errors; the length limit of `varchar(n)`, enum CHECKs and
//! `bit(n)` widths are still checked by the server.

use std::borrow::Cow;

use synchdb_types::{Decimal, Value};

use crate::options::ZeroDatePolicy;
use crate::typemap::{ewkb, json_without_nul, without_nul, Family, PgColumn, ValueError};

/// The header of a binary COPY stream: signature, flags, header extension length.
pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The trailer: a field count of -1.
pub(crate) const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds between 1970-01-01 (Unix) and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 0001-01-01 (CE day 1) and 2000-01-01.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;

/// How one column is written in binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Bit,
    Text,
    Bytea,
    Jsonb,
    Date,
    Timestamp,
    Interval,
    Uuid,
    Inet,
}

impl BinaryKind {
    /// The binary writer of a column, or `None` when the column must go as text
    /// (type override, SQL transform, PostGIS).
    pub(crate) fn of(col: &PgColumn) -> Option<BinaryKind> {
        if !col.default_mapping || col.transform.is_some() {
            return None;
        }
        let t = col.sql_type.as_str();
        Some(match col.family {
            Family::Text => BinaryKind::Text,
            Family::Bytea => BinaryKind::Bytea,
            Family::Json => BinaryKind::Jsonb,
            Family::PostGis => return None,
            Family::Other => match t {
                "smallint" => BinaryKind::Int2,
                "integer" => BinaryKind::Int4,
                "bigint" => BinaryKind::Int8,
                "real" => BinaryKind::Float4,
                "double precision" => BinaryKind::Float8,
                "date" => BinaryKind::Date,
                "interval" => BinaryKind::Interval,
                "uuid" => BinaryKind::Uuid,
                "inet" => BinaryKind::Inet,
                _ if t.starts_with("numeric") => BinaryKind::Numeric,
                _ if t.starts_with("bit(") => BinaryKind::Bit,
                // timestamp and timestamptz share one binary form (microseconds
                // since 2000-01-01; the session runs in UTC).
                _ if t.starts_with("timestamp") => BinaryKind::Timestamp,
                _ => return None,
            },
        })
    }
}

/// Append one field: its value in binary, or -1 for NULL.
pub(crate) fn write_field(
    v: &Value,
    col: &PgColumn,
    kind: BinaryKind,
    zero: ZeroDatePolicy,
    out: &mut Vec<u8>,
) -> Result<(), ValueError> {
    if matches!(v, Value::Null) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    match write_body(v, col, kind, zero, out) {
        Ok(true) => {
            let len = i32::try_from(out.len() - at - 4)
                .map_err(|_| ValueError("value larger than 2 GiB".into()))?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Ok(false) => {
            out.truncate(at);
            out.extend_from_slice(&(-1i32).to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(at);
            Err(e)
        }
    }
}

fn mismatch(v: &Value, col: &PgColumn) -> ValueError {
    ValueError(format!("a {} value cannot be stored in a {} column", v.kind(), col.sql_type))
}

/// Write the field's bytes; `Ok(false)` stands for NULL (a zero date under the `null` policy).
fn write_body(
    v: &Value,
    col: &PgColumn,
    kind: BinaryKind,
    zero: ZeroDatePolicy,
    out: &mut Vec<u8>,
) -> Result<bool, ValueError> {
    let zero = col.zero_policy(zero);
    // A zero or invalid date: -infinity (the smallest value of the type), NULL or an error.
    let zero_date = |minus_infinity: &[u8], out: &mut Vec<u8>| match zero {
        ZeroDatePolicy::MinusInfinity => {
            out.extend_from_slice(minus_infinity);
            Ok(true)
        }
        ZeroDatePolicy::Null if col.nullable => Ok(false),
        ZeroDatePolicy::Null => {
            Err(ValueError(format!("zero or invalid date {v} into NOT NULL column (policy null)")))
        }
        ZeroDatePolicy::Error => Err(ValueError(format!("zero or invalid date {v} (policy error)"))),
    };
    match kind {
        BinaryKind::Int2 | BinaryKind::Int4 | BinaryKind::Int8 => {
            let i: i128 = match v {
                Value::Int(i) => i128::from(*i),
                Value::UInt(u) => i128::from(*u),
                Value::Year(y) => i128::from(*y),
                _ => return Err(mismatch(v, col)),
            };
            let range = |lo: i128, hi: i128| {
                if i < lo || i > hi {
                    Err(ValueError(format!("value {i} out of range for {}", col.sql_type)))
                } else {
                    Ok(())
                }
            };
            match kind {
                BinaryKind::Int2 => {
                    range(i16::MIN.into(), i16::MAX.into())?;
                    out.extend_from_slice(&(i as i16).to_be_bytes());
                }
                BinaryKind::Int4 => {
                    range(i32::MIN.into(), i32::MAX.into())?;
                    out.extend_from_slice(&(i as i32).to_be_bytes());
                }
                _ => {
                    range(i64::MIN.into(), i64::MAX.into())?;
                    out.extend_from_slice(&(i as i64).to_be_bytes());
                }
            }
        }
        BinaryKind::Numeric => {
            let mut digits = [0u8; 40];
            match v {
                Value::Int(i) => {
                    let n = u128_digits(u128::from(i.unsigned_abs()), &mut digits);
                    write_numeric(*i < 0, &digits[n..], 0, col, out)?;
                }
                Value::UInt(u) => {
                    let n = u128_digits(u128::from(*u), &mut digits);
                    write_numeric(false, &digits[n..], 0, col, out)?;
                }
                Value::Decimal(Decimal::Fixed(d)) => {
                    let n = u128_digits(d.mantissa().unsigned_abs(), &mut digits);
                    write_numeric(d.is_sign_negative(), &digits[n..], d.scale() as usize, col, out)?;
                }
                Value::Decimal(d) => {
                    let s = d.to_string();
                    let neg = s.starts_with('-');
                    let t = s.trim_start_matches(['-', '+']);
                    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
                    let all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
                    write_numeric(neg, &all, frac.len(), col, out)?;
                }
                _ => return Err(mismatch(v, col)),
            }
        }
        BinaryKind::Float4 => match v {
            Value::Float(f) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Float8 => match v {
            Value::Double(d) => out.extend_from_slice(&d.to_bits().to_be_bytes()),
            Value::Float(f) => out.extend_from_slice(&f64::from(*f).to_bits().to_be_bytes()),
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Bit => match v {
            Value::Bit(b) => {
                let width = col.bit_width.unwrap_or(u32::from(b.width)).min(64);
                if width < 64 && b.value >> width != 0 {
                    return Err(ValueError(format!("bit value {b} wider than bit({width})")));
                }
                out.extend_from_slice(&(width as i32).to_be_bytes());
                // Most significant bit first, the last byte padded with zeros.
                let mut byte = 0u8;
                for i in 0..width {
                    let bit = ((b.value >> (width - 1 - i)) & 1) as u8;
                    byte |= bit << (7 - i % 8);
                    if i % 8 == 7 {
                        out.push(byte);
                        byte = 0;
                    }
                }
                if width % 8 != 0 {
                    out.push(byte);
                }
            }
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Text => match v {
            Value::Text(s) | Value::Enum(s) | Value::Json(s) => {
                out.extend_from_slice(without_nul(s, col.nul)?.as_bytes())
            }
            Value::Set(members) => {
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(without_nul(m, col.nul)?.as_bytes());
                }
            }
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => out.extend_from_slice(without_nul(s, col.nul)?.as_bytes()),
                Err(_) => return Err(ValueError("bytes are not UTF-8 text for a text column".into())),
            },
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Bytea => match v {
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Text(s) | Value::Enum(s) | Value::Json(s) => out.extend_from_slice(s.as_bytes()),
            Value::Geometry(g) => out.extend_from_slice(&ewkb(g.srid, &g.wkb).map_err(ValueError)?),
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Jsonb => {
            let text: Cow<'_, str> = match v {
                Value::Json(s) | Value::Text(s) | Value::Enum(s) => json_without_nul(s, col.nul)?,
                Value::Bytes(b) => match std::str::from_utf8(b) {
                    Ok(s) => json_without_nul(s, col.nul)?,
                    Err(_) => return Err(ValueError("bytes are not UTF-8 text for a JSON column".into())),
                },
                _ => return Err(mismatch(v, col)),
            };
            // jsonb's binary form: format version 1, then the document's text.
            out.push(1);
            out.extend_from_slice(text.as_bytes());
        }
        BinaryKind::Date => match v {
            Value::Date(d) => match d.to_chrono() {
                Some(date) => out.extend_from_slice(&pg_days(date).to_be_bytes()),
                None => return zero_date(&i32::MIN.to_be_bytes(), out),
            },
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Timestamp => {
            let micros = match v {
                // A wall-clock value: its UTC reading (timestamptz sessions run in UTC).
                Value::DateTime(dt) => match dt.to_chrono() {
                    Some(t) => t.and_utc().timestamp_micros(),
                    None => return zero_date(&i64::MIN.to_be_bytes(), out),
                },
                Value::Date(d) => match d.to_chrono() {
                    Some(t) => t.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_micros(),
                    None => return zero_date(&i64::MIN.to_be_bytes(), out),
                },
                Value::Timestamp(ts) => {
                    if ts.is_zero() {
                        return zero_date(&i64::MIN.to_be_bytes(), out);
                    }
                    if ts.to_chrono().is_none() {
                        return Err(ValueError(format!("timestamp {} out of range", ts.micros)));
                    }
                    ts.micros
                }
                _ => return Err(mismatch(v, col)),
            };
            out.extend_from_slice(&(micros - PG_EPOCH_MICROS).to_be_bytes());
        }
        BinaryKind::Interval => match v {
            // Time of day part only (no days, no months), as `h:m:s` text input gives.
            Value::Time(t) => {
                out.extend_from_slice(&t.micros.to_be_bytes());
                out.extend_from_slice(&0i32.to_be_bytes());
                out.extend_from_slice(&0i32.to_be_bytes());
            }
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Uuid => match v {
            Value::Uuid(u) => out.extend_from_slice(u.as_bytes()),
            _ => return Err(mismatch(v, col)),
        },
        BinaryKind::Inet => {
            // inet_recv: family (2 = IPv4, 3 = IPv6), bits, is_cidr, address length, address.
            let (family, bits, addr): (u8, u8, Vec<u8>) = match v {
                Value::Inet4(a) => (2, 32, a.octets().to_vec()),
                Value::Inet6(a) => (3, 128, a.octets().to_vec()),
                _ => return Err(mismatch(v, col)),
            };
            out.extend_from_slice(&[family, bits, 0, addr.len() as u8]);
            out.extend_from_slice(&addr);
        }
    }
    Ok(true)
}

/// Days since 2000-01-01 (MySQL's year 0 is 1 BC, chrono's year 0 too).
fn pg_days(d: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE
}

/// The decimal digits of `n` (ASCII) at the end of `buf`; returns where they start.
fn u128_digits(mut n: u128, buf: &mut [u8; 40]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

/// numeric's binary form from the ASCII `digits` of a number with `scale` of
/// them after the point: ndigits, weight, sign, dscale, then base-10000 digits.
/// Fails (as the text path's check does) when the number does not fit the
/// column's `numeric(p,s)`: PostgreSQL would round the fraction silently.
fn write_numeric(
    neg: bool,
    digits: &[u8],
    scale: usize,
    col: &PgColumn,
    out: &mut Vec<u8>,
) -> Result<(), ValueError> {
    let (int, frac) = if digits.len() >= scale {
        (Cow::Borrowed(&digits[..digits.len() - scale]), Cow::Borrowed(&digits[digits.len() - scale..]))
    } else {
        let mut f = vec![b'0'; scale - digits.len()];
        f.extend_from_slice(digits);
        (Cow::Borrowed(&digits[..0]), Cow::Owned(f))
    };
    let int_start = int.iter().position(|&b| b != b'0').unwrap_or(int.len());
    let int = &int[int_start..];
    let frac_end = frac.iter().rposition(|&b| b != b'0').map_or(0, |p| p + 1);
    let frac_sig = &frac[..frac_end];
    if let Some((p, sc)) = col.decimal {
        if frac_sig.len() as u32 > sc || int.len() as u32 > p.saturating_sub(sc) {
            let text = format!(
                "{}{}.{}",
                if neg { "-" } else { "" },
                if int.is_empty() { "0" } else { std::str::from_utf8(int).unwrap_or("?") },
                std::str::from_utf8(&frac).unwrap_or("?")
            );
            return Err(ValueError(format!("decimal {text} does not fit numeric({p},{sc})")));
        }
    }
    // Base-10000 groups: the integer part padded on the left, the fraction on the right.
    let group = |chunk: &[u8]| chunk.iter().fold(0i16, |acc, &b| acc * 10 + i16::from(b - b'0'));
    let mut groups: Vec<i16> = Vec::with_capacity((int.len() + frac_sig.len()) / 4 + 2);
    let lead = (4 - int.len() % 4) % 4;
    let mut padded: Vec<u8> = vec![b'0'; lead];
    padded.extend_from_slice(int);
    groups.extend(padded.chunks(4).map(group));
    let mut weight = groups.len() as i32 - 1;
    let mut f = frac_sig.to_vec();
    f.resize(frac_sig.len().div_ceil(4) * 4, b'0');
    groups.extend(f.chunks(4).map(group));
    let first = groups.iter().position(|&g| g != 0);
    let groups: &[i16] = match first {
        None => {
            weight = 0;
            &[]
        }
        Some(first) => {
            weight -= first as i32;
            let last = groups.iter().rposition(|&g| g != 0).unwrap_or(first);
            &groups[first..=last]
        }
    };
    let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
    let dscale = u16::try_from(frac.len()).map_err(|_| ValueError("decimal scale too large".into()))?;
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::PgSinkOptions;
    use synchdb_types::{ColumnSchema, ColumnType, TableId};

    fn col(t: ColumnType) -> PgColumn {
        crate::typemap::map_column(
            &TableId::new("d", "t"),
            &ColumnSchema::new("c", t),
            &PgSinkOptions::new(),
            false,
        )
        .unwrap()
    }

    fn numeric(v: &str, p: u32, s: u32) -> Result<Vec<u8>, ValueError> {
        let c = col(ColumnType::Decimal { precision: p, scale: s, unsigned: false });
        let mut out = Vec::new();
        write_body(
            &Value::Decimal(Decimal::parse(v).unwrap()),
            &c,
            BinaryKind::Numeric,
            ZeroDatePolicy::Error,
            &mut out,
        )
        .map(|_| out)
    }

    fn words(b: &[u8]) -> Vec<i16> {
        b.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect()
    }

    #[test]
    fn numeric_groups() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(words(&numeric("12345.678", 10, 3).unwrap()), vec![3, 1, 0, 3, 1, 2345, 6780]);
        assert_eq!(words(&numeric("-0.00001", 10, 5).unwrap()), vec![1, -2, 0x4000, 5, 1000]);
        assert_eq!(words(&numeric("0.00", 10, 2).unwrap()), vec![0, 0, 0, 2]);
        assert_eq!(words(&numeric("-0.0", 10, 2).unwrap()), vec![0, 0, 0, 1]);
        assert_eq!(words(&numeric("100000000", 10, 0).unwrap()), vec![1, 2, 0, 0, 1]);
        assert_eq!(words(&numeric("10000.5", 10, 2).unwrap()), vec![3, 1, 0, 1, 1, 0, 5000]);
        let wide = "-12345678901234567890123456789012345.123456789012345678901234567890";
        assert_eq!(
            words(&numeric(wide, 65, 30).unwrap()),
            vec![
                17, 8, 0x4000, 30, 123, 4567, 8901, 2345, 6789, 123, 4567, 8901, 2345, 1234, 5678, 9012,
                3456, 7890, 1234, 5678, 9000
            ]
        );
        assert!(numeric("123.456", 6, 2).is_err(), "fraction rounded");
        assert!(numeric("12345.5", 5, 1).is_err(), "integer digits overflow");
        assert!(numeric("1234.50", 5, 1).is_ok(), "trailing zeros fit");
    }

    #[test]
    fn dates_count_from_2000() {
        let d = |y, m, dd| pg_days(chrono::NaiveDate::from_ymd_opt(y, m, dd).unwrap());
        assert_eq!(d(2000, 1, 1), 0);
        assert_eq!(d(1999, 12, 31), -1);
        assert_eq!(d(2024, 2, 29), 8825);
        // MySQL's year 0 is 1 BC: 0000-01-01 is 730,485 days before 2000-01-01.
        assert_eq!(d(0, 1, 1), -730_485);
    }

    #[test]
    fn bits_are_most_significant_first() {
        let c = col(ColumnType::Bit { width: 10 });
        let mut out = Vec::new();
        let v = Value::Bit(synchdb_types::Bits { width: 10, value: 0b10_0000_0001 });
        write_body(&v, &c, BinaryKind::Bit, ZeroDatePolicy::Error, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 10, 0b1000_0000, 0b0100_0000]);
    }

    #[test]
    fn integers_out_of_range_are_errors() {
        let c = col(ColumnType::Integer {
            width: synchdb_types::IntWidth::Tiny,
            unsigned: false,
            display_width: None,
        });
        let mut out = Vec::new();
        assert!(
            write_field(&Value::Int(70000), &c, BinaryKind::Int2, ZeroDatePolicy::Error, &mut out).is_err()
        );
        assert!(out.is_empty(), "a failed field leaves nothing behind");
        write_field(&Value::Int(-2), &c, BinaryKind::Int2, ZeroDatePolicy::Error, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 2, 0xff, 0xfe]);
    }
}
