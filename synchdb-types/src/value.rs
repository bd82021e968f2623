//! Values: one variant per MySQL/MariaDB value family, each lossless.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;

/// One column value, as the source holds it.
///
/// Every variant keeps the source value exactly: integers keep their
/// signedness up to `u64::MAX`, temporal values keep microseconds and the
/// MySQL-only shapes (zero dates, negative and >24h TIME), DECIMAL keeps all
/// 65 digits, text is UTF-8 (converted from the column charset by the source)
/// and binary strings are raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Signed integer (TINYINT..BIGINT).
    Int(i64),
    /// Unsigned integer (TINYINT UNSIGNED..BIGINT UNSIGNED).
    UInt(u64),
    /// FLOAT, kept as single precision.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL / NUMERIC, exact.
    Decimal(Decimal),
    /// CHAR, VARCHAR, TEXT (converted to UTF-8).
    Text(String),
    /// BINARY, VARBINARY, BLOB: raw bytes (BINARY(n) padded to n).
    Bytes(Vec<u8>),
    /// DATE, including zero and partial-zero dates.
    Date(Date),
    /// DATETIME (a wall-clock value with no time zone).
    DateTime(DateTime),
    /// TIMESTAMP: an instant, in microseconds since the Unix epoch (UTC).
    Timestamp(Timestamp),
    /// TIME: a signed duration, up to ±838:59:59.999999.
    Time(Time),
    /// YEAR (0 for the zero year).
    Year(u16),
    /// JSON, as the document's text.
    Json(String),
    /// ENUM member (the empty string for MySQL's invalid-value index 0).
    Enum(String),
    /// SET members, in definition order.
    Set(Vec<String>),
    /// BIT(n).
    Bit(Bits),
    /// GEOMETRY and its subtypes.
    Geometry(Geometry),
    /// MariaDB UUID.
    Uuid(uuid::Uuid),
    /// MariaDB INET4.
    Inet4(Ipv4Addr),
    /// MariaDB INET6.
    Inet6(Ipv6Addr),
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The variant name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "int",
            Value::UInt(_) => "uint",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::DateTime(_) => "datetime",
            Value::Timestamp(_) => "timestamp",
            Value::Time(_) => "time",
            Value::Year(_) => "year",
            Value::Json(_) => "json",
            Value::Enum(_) => "enum",
            Value::Set(_) => "set",
            Value::Bit(_) => "bit",
            Value::Geometry(_) => "geometry",
            Value::Uuid(_) => "uuid",
            Value::Inet4(_) => "inet4",
            Value::Inet6(_) => "inet6",
        }
    }

    /// An approximate in-memory size in bytes, used to bound batch memory.
    pub fn approx_size(&self) -> usize {
        let heap = match self {
            Value::Text(s) | Value::Json(s) | Value::Enum(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Set(v) => v.iter().map(|s| s.len() + 24).sum(),
            Value::Geometry(g) => g.wkb.len(),
            Value::Decimal(Decimal::Wide(_)) => 48,
            _ => 0,
        };
        std::mem::size_of::<Value>() + heap
    }
}

impl fmt::Display for Value {
    /// MySQL's text form of the value (what `SELECT` prints), `NULL` for null,
    /// bytes as `0x` hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(v) => write!(f, "{v}"),
            Value::UInt(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v}"),
            Value::Decimal(v) => write!(f, "{v}"),
            Value::Text(v) | Value::Json(v) | Value::Enum(v) => f.write_str(v),
            Value::Bytes(v) => write!(f, "0x{}", hex_upper(v)),
            Value::Date(v) => write!(f, "{v}"),
            Value::DateTime(v) => write!(f, "{v}"),
            Value::Timestamp(v) => write!(f, "{v}"),
            Value::Time(v) => write!(f, "{v}"),
            Value::Year(v) => write!(f, "{v:04}"),
            Value::Set(v) => f.write_str(&v.join(",")),
            Value::Bit(v) => write!(f, "{v}"),
            Value::Geometry(v) => write!(f, "SRID={};0x{}", v.srid, hex_upper(&v.wkb)),
            Value::Uuid(v) => write!(f, "{v}"),
            Value::Inet4(v) => write!(f, "{v}"),
            Value::Inet6(v) => write!(f, "{v}"),
        }
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// An exact decimal number of up to 65 digits.
///
/// Values that fit [`rust_decimal::Decimal`] (28 significant digits) use it;
/// wider ones fall back to [`bigdecimal::BigDecimal`]. Both keep the scale as
/// written (`1.50` stays `1.50`). [`Decimal::parse`] picks the representation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Decimal {
    /// Up to 28 significant digits.
    Fixed(rust_decimal::Decimal),
    /// More digits than `rust_decimal` holds.
    Wide(bigdecimal::BigDecimal),
}

impl Decimal {
    /// Parse the decimal text form (`-12.340`), keeping the scale.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b"+-.".contains(&b)) {
            return Err(ParseError::new("decimal", s));
        }
        let digits = t.bytes().filter(u8::is_ascii_digit).count();
        if digits <= 28 {
            if let Ok(d) = rust_decimal::Decimal::from_str_exact(t) {
                return Ok(Decimal::Fixed(d));
            }
        }
        bigdecimal::BigDecimal::from_str(t).map(Decimal::Wide).map_err(|_| ParseError::new("decimal", s))
    }

    /// The number of digits after the decimal point.
    pub fn scale(&self) -> i64 {
        match self {
            Decimal::Fixed(d) => i64::from(d.scale()),
            Decimal::Wide(d) => d.fractional_digit_count(),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decimal::Fixed(d) => write!(f, "{d}"),
            Decimal::Wide(d) => write!(f, "{}", d.to_plain_string()),
        }
    }
}

impl FromStr for Decimal {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

/// A MySQL DATE. Months and days may be zero (`0000-00-00`, `2024-00-00`),
/// which no calendar type represents, so the parts are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    /// Year, 0..=9999.
    pub year: u16,
    /// Month, 0..=12 (0 only in zero dates).
    pub month: u8,
    /// Day, 0..=31 (0 only in zero dates).
    pub day: u8,
}

impl Date {
    /// A date from its parts (not validated against the calendar).
    pub const fn new(year: u16, month: u8, day: u8) -> Self {
        Date { year, month, day }
    }

    /// Whether the month or the day is zero (`0000-00-00`, `2024-00-15`, ...):
    /// such a date has no calendar equivalent and is subject to the zero-date
    /// policy. Year 0 with a month and a day (`0000-01-01`) is a calendar date:
    /// the proleptic year 0, 1 BC.
    pub fn is_zero(&self) -> bool {
        self.month == 0 || self.day == 0
    }

    /// The calendar date, or `None` for zero and invalid dates.
    pub fn to_chrono(&self) -> Option<chrono::NaiveDate> {
        if self.is_zero() {
            return None;
        }
        chrono::NaiveDate::from_ymd_opt(i32::from(self.year), u32::from(self.month), u32::from(self.day))
    }
}

impl From<chrono::NaiveDate> for Date {
    fn from(d: chrono::NaiveDate) -> Self {
        use chrono::Datelike;
        Date::new(d.year() as u16, d.month() as u8, d.day() as u8)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new("date", s);
        let mut it = s.trim().splitn(3, '-');
        let y = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let m = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let d = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        if m > 12 || d > 31 || y > 9999 {
            return Err(err());
        }
        Ok(Date::new(y, m, d))
    }
}

/// A MySQL DATETIME: a wall-clock date and time with microseconds, no zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DateTime {
    /// The date part (may be a zero date).
    pub date: Date,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=59.
    pub second: u8,
    /// Microsecond, 0..=999_999.
    pub micros: u32,
}

impl DateTime {
    /// A datetime from its parts.
    pub const fn new(date: Date, hour: u8, minute: u8, second: u8, micros: u32) -> Self {
        DateTime { date, hour, minute, second, micros }
    }

    /// Whether the date part is a zero date.
    pub fn is_zero(&self) -> bool {
        self.date.is_zero()
    }

    /// The calendar datetime, or `None` for zero dates.
    pub fn to_chrono(&self) -> Option<chrono::NaiveDateTime> {
        self.date.to_chrono()?.and_hms_micro_opt(
            u32::from(self.hour),
            u32::from(self.minute),
            u32::from(self.second),
            self.micros,
        )
    }
}

impl From<chrono::NaiveDateTime> for DateTime {
    fn from(dt: chrono::NaiveDateTime) -> Self {
        use chrono::Timelike;
        DateTime::new(
            dt.date().into(),
            dt.hour() as u8,
            dt.minute() as u8,
            dt.second() as u8,
            dt.nanosecond() / 1000,
        )
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:02}:{:02}:{:02}", self.date, self.hour, self.minute, self.second)?;
        if self.micros != 0 {
            write!(f, ".{:06}", self.micros)?;
        }
        Ok(())
    }
}

impl FromStr for DateTime {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new("datetime", s);
        let s = s.trim();
        let (d, t) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
        let date: Date = d.parse().map_err(|_| err())?;
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut it = hms.splitn(3, ':');
        let hour: u8 = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let minute: u8 = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let second: u8 = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let micros = parse_micros(frac).ok_or_else(err)?;
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err());
        }
        Ok(DateTime::new(date, hour, minute, second, micros))
    }
}

/// Parse up to six fractional digits into microseconds (`"5"` is 500000).
fn parse_micros(frac: &str) -> Option<u32> {
    if frac.is_empty() {
        return Some(0);
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u32 = frac.parse().ok()?;
    Some(v * 10u32.pow(6 - frac.len() as u32))
}

/// A MySQL TIMESTAMP: an instant, stored as microseconds since the Unix
/// epoch in UTC. MySQL's zero timestamp (`0000-00-00 00:00:00`) is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    pub micros: i64,
}

impl Timestamp {
    /// An instant from seconds and microseconds since the epoch.
    pub const fn from_parts(seconds: i64, micros: u32) -> Self {
        Timestamp { micros: seconds * 1_000_000 + micros as i64 }
    }

    /// Whether this is MySQL's zero timestamp.
    pub fn is_zero(&self) -> bool {
        self.micros == 0
    }

    /// The instant, or `None` for the zero timestamp.
    pub fn to_chrono(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.is_zero() {
            return None;
        }
        chrono::DateTime::from_timestamp_micros(self.micros)
    }
}

impl fmt::Display for Timestamp {
    /// UTC wall clock, `0000-00-00 00:00:00` for the zero timestamp.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_chrono() {
            None => f.write_str("0000-00-00 00:00:00"),
            Some(t) => write!(f, "{}", DateTime::from(t.naive_utc())),
        }
    }
}

/// A MySQL TIME: a signed duration in microseconds, up to ±838:59:59.999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time {
    /// Signed microseconds.
    pub micros: i64,
}

impl Time {
    /// MySQL's largest TIME, 838:59:59 (microseconds allowed up to .999999 on MariaDB).
    pub const MAX_MICROS: i64 = ((838 * 3600 + 59 * 60 + 59) * 1_000_000) + 999_999;

    /// A time from its parts.
    pub fn from_parts(negative: bool, hours: u32, minutes: u8, seconds: u8, micros: u32) -> Self {
        let v = (i64::from(hours) * 3600 + i64::from(minutes) * 60 + i64::from(seconds)) * 1_000_000
            + i64::from(micros);
        Time { micros: if negative { -v } else { v } }
    }

    /// `(negative, hours, minutes, seconds, micros)`.
    pub fn parts(&self) -> (bool, u64, u8, u8, u32) {
        let a = self.micros.unsigned_abs();
        let secs = a / 1_000_000;
        (self.micros < 0, secs / 3600, ((secs / 60) % 60) as u8, (secs % 60) as u8, (a % 1_000_000) as u32)
    }
}

impl fmt::Display for Time {
    /// `[-]HH:MM:SS[.ffffff]`, hours unbounded by 24.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (neg, h, m, s, us) = self.parts();
        if neg {
            f.write_str("-")?;
        }
        write!(f, "{h:02}:{m:02}:{s:02}")?;
        if us != 0 {
            write!(f, ".{us:06}")?;
        }
        Ok(())
    }
}

impl FromStr for Time {
    type Err = ParseError;
    /// Parses `[-]H:MM:SS[.ffffff]` and MySQL's `D HH:MM:SS` form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new("time", s);
        let t = s.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (days, t) = match t.split_once(' ') {
            Some((d, rest)) => (d.parse::<u32>().map_err(|_| err())?, rest),
            None => (0, t),
        };
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut it = hms.splitn(3, ':');
        let h: u32 = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let m: u8 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let sec: u8 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let us = parse_micros(frac).ok_or_else(err)?;
        if m > 59 || sec > 59 {
            return Err(err());
        }
        Ok(Time::from_parts(neg, days * 24 + h, m, sec, us))
    }
}

/// A BIT(n) value: `width` bits (1..=64), right-aligned in `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bits {
    /// The column width n.
    pub width: u8,
    /// The bits, least significant bit last in the text form.
    pub value: u64,
}

impl Bits {
    /// Bits from big-endian bytes as MySQL sends them.
    pub fn from_be_bytes(width: u8, bytes: &[u8]) -> Self {
        let value = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let value = if width >= 64 { value } else { value & ((1u64 << width) - 1) };
        Bits { width, value }
    }
}

impl fmt::Display for Bits {
    /// The bit string, `width` characters of `0`/`1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in (0..u32::from(self.width)).rev() {
            f.write_str(if (self.value >> i) & 1 == 1 { "1" } else { "0" })?;
        }
        Ok(())
    }
}

/// A spatial value: SRID and the well-known binary (WKB) of the shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Geometry {
    /// Spatial reference id (0 when unspecified).
    pub srid: u32,
    /// OGC well-known binary.
    pub wkb: Vec<u8>,
}

impl Geometry {
    /// Split MySQL's internal geometry format (4-byte little-endian SRID, then WKB).
    /// Zero bytes are the *empty value* MariaDB stores in a NOT NULL geometry
    /// column added to existing rows (not NULL, no shape): SRID 0, empty WKB.
    pub fn from_mysql_internal(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.is_empty() {
            return Ok(Geometry { srid: 0, wkb: Vec::new() });
        }
        if bytes.len() < 4 + 5 {
            return Err(ParseError::new("geometry", &format!("{} bytes", bytes.len())));
        }
        let srid = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Ok(Geometry { srid, wkb: bytes[4..].to_vec() })
    }

    /// Whether this is the empty value (see [`from_mysql_internal`](Self::from_mysql_internal)).
    pub fn is_empty_value(&self) -> bool {
        self.wkb.is_empty()
    }

    /// MySQL's internal format: SRID (LE u32) followed by the WKB; zero bytes
    /// for the empty value.
    pub fn to_mysql_internal(&self) -> Vec<u8> {
        if self.is_empty_value() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.wkb.len() + 4);
        out.extend_from_slice(&self.srid.to_le_bytes());
        out.extend_from_slice(&self.wkb);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_keeps_scale_and_wide_digits() {
        let d = Decimal::parse("1.50").unwrap();
        assert!(matches!(d, Decimal::Fixed(_)));
        assert_eq!(d.to_string(), "1.50");
        let wide = "-12345678901234567890123456789012345.123456789012345678901234567890";
        let d = Decimal::parse(wide).unwrap();
        assert!(matches!(d, Decimal::Wide(_)));
        assert_eq!(d.to_string(), wide);
        assert_eq!(d.scale(), 30);
        assert!(Decimal::parse("abc").is_err());
        assert!(Decimal::parse("").is_err());
    }

    #[test]
    fn time_round_trips_negative_and_long() {
        for s in ["-838:59:59", "838:59:59.999999", "00:00:00", "-00:00:01.000001", "123:04:05.5"] {
            let t: Time = s.parse().unwrap();
            let again: Time = t.to_string().parse().unwrap();
            assert_eq!(t, again, "{s}");
        }
        let t: Time = "-1 02:03:04".parse().unwrap();
        assert_eq!(t.to_string(), "-26:03:04");
        assert_eq!(Time::from_parts(true, 0, 0, 1, 0).micros, -1_000_000);
    }

    #[test]
    fn zero_dates_are_kept() {
        let d: Date = "0000-00-00".parse().unwrap();
        assert!(d.is_zero());
        let y0: Date = "0000-02-29".parse().unwrap();
        assert!(!y0.is_zero());
        assert_eq!(y0.to_chrono(), chrono::NaiveDate::from_ymd_opt(0, 2, 29));
        assert_eq!(d.to_chrono(), None);
        assert_eq!(d.to_string(), "0000-00-00");
        let dt: DateTime = "2024-00-15 10:11:12.000123".parse().unwrap();
        assert!(dt.is_zero());
        assert_eq!(dt.to_string(), "2024-00-15 10:11:12.000123");
        let dt: DateTime = "2024-02-29 23:59:59.5".parse().unwrap();
        assert_eq!(dt.micros, 500_000);
        assert!(dt.to_chrono().is_some());
    }

    #[test]
    fn timestamp_display_is_utc() {
        let t = Timestamp::from_parts(1_700_000_000, 123_456);
        assert_eq!(t.to_string(), "2023-11-14 22:13:20.123456");
        assert_eq!(Timestamp { micros: 0 }.to_string(), "0000-00-00 00:00:00");
    }

    #[test]
    fn bits_keep_width() {
        let b = Bits::from_be_bytes(10, &[0x02, 0x01]);
        assert_eq!(b.to_string(), "1000000001");
        let b = Bits::from_be_bytes(64, &[0xFF; 8]);
        assert_eq!(b.value, u64::MAX);
    }

    #[test]
    fn the_empty_geometry_value_round_trips_and_short_ones_are_errors() {
        let g = Geometry::from_mysql_internal(&[]).unwrap();
        assert!(g.is_empty_value());
        assert!(g.to_mysql_internal().is_empty());
        assert!(Geometry::from_mysql_internal(&[0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn geometry_internal_round_trip() {
        let mut raw = vec![0xE6, 0x10, 0, 0];
        raw.extend_from_slice(&[1, 1, 0, 0, 0]);
        raw.extend_from_slice(&[0u8; 16]);
        let g = Geometry::from_mysql_internal(&raw).unwrap();
        assert_eq!(g.srid, 4326);
        assert_eq!(g.to_mysql_internal(), raw);
    }

    #[test]
    fn values_serialize() {
        let v = vec![
            Value::UInt(u64::MAX),
            Value::Decimal(Decimal::parse("0.000000000000000000000000000000001").unwrap()),
            Value::Time("-838:59:59".parse().unwrap()),
            Value::Bytes(vec![0, 255]),
        ];
        let json = serde_json::to_string(&v).unwrap();
        let back: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(v, back);
    }
}
