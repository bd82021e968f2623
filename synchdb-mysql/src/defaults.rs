//! Column defaults as MariaDB stores them.
//!
//! A `DEFAULT` clause in DDL text is a literal in any of MySQL's spellings
//! (`'1.5'` for an INT, `b'101'`, `0x1F`, `TRUE`, `'0000-00-00 01:00:00.000'`
//! for a TIME, `'c,a'` for a SET, ...). The server converts it to the
//! column's type when the table is created and keeps the converted value:
//! that is what `information_schema.COLUMNS.COLUMN_DEFAULT` shows, what a
//! snapshot reads, and what MySQL fills into existing rows when a column is
//! added. [`normalize`] performs the same conversion, so that a table created
//! in follow mode carries exactly the default a snapshot would have read
//! (the `defaults_match_information_schema` test checks it against a real
//! server for every type family).
//!
//! The conversion is the one the server applies to a statement it accepted:
//! values that do not convert cleanly (truncated strings, out-of-range
//! numbers, invalid dates) make MariaDB refuse the statement, so they never
//! reach the binlog; [`normalize`] returns an error for them rather than
//! guessing.

use bigdecimal::{BigDecimal, RoundingMode};
use synchdb_types::{ColumnDefault, ColumnType};

/// A default as written in DDL text, before conversion to the column's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawDefault {
    /// `NULL`.
    Null,
    /// A quoted string, unescaped.
    Str(String),
    /// A number as written (`-1.5`, `1e3`).
    Num(String),
    /// A bit literal's digits (`b'0101'` is `0101`).
    Bits(String),
    /// A hexadecimal literal's digits (`0x1F` and `x'1F'` are `1F`).
    Hex(String),
    /// An expression, in the form information_schema prints it.
    Expr(String),
}

impl RawDefault {
    /// The value as bytes, for string columns.
    fn bytes(&self) -> Result<Vec<u8>, String> {
        match self {
            RawDefault::Str(s) | RawDefault::Num(s) => Ok(s.as_bytes().to_vec()),
            RawDefault::Bits(b) => {
                Ok(bits_value(b)?.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect())
            }
            RawDefault::Hex(h) => hex_bytes(h),
            RawDefault::Null | RawDefault::Expr(_) => Err("not a literal".into()),
        }
    }

    /// The value as a number, for numeric columns.
    fn number(&self) -> Result<BigDecimal, String> {
        match self {
            RawDefault::Num(n) => parse_number(n),
            RawDefault::Str(s) => parse_number(s.trim_matches(' ')),
            RawDefault::Bits(b) => Ok(BigDecimal::from(bits_value(b)?)),
            RawDefault::Hex(h) => {
                let bytes = hex_bytes(h)?;
                if bytes.len() > 8 {
                    return Err("hexadecimal literal wider than 64 bits".into());
                }
                Ok(BigDecimal::from(bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))))
            }
            RawDefault::Null | RawDefault::Expr(_) => Err("not a literal".into()),
        }
    }
}

/// Convert a default to the column's type the way the server does; the
/// result has the form discovery reads from information_schema.
pub(crate) fn normalize(ty: &ColumnType, raw: &RawDefault) -> Result<ColumnDefault, String> {
    use ColumnType as C;
    let lit = ColumnDefault::Literal;
    match raw {
        RawDefault::Null => return Ok(ColumnDefault::Null),
        RawDefault::Expr(e) => return Ok(ColumnDefault::Expression(e.clone())),
        _ => {}
    }
    Ok(match ty {
        C::Integer { unsigned, .. } => {
            let n = raw.number()?.with_scale_round(0, RoundingMode::HalfUp);
            if *unsigned && n.sign() == bigdecimal::num_bigint::Sign::Minus {
                return Err("negative default of an unsigned column".into());
            }
            lit(plain(&n))
        }
        C::Decimal { scale, .. } => {
            let n = raw.number()?.with_scale_round(i64::from(*scale), RoundingMode::HalfUp);
            let text = plain(&n);
            // No negative zero.
            if n.sign() == bigdecimal::num_bigint::Sign::NoSign {
                lit(text.trim_start_matches('-').to_string())
            } else {
                lit(text)
            }
        }
        C::Float { .. } => {
            let f = to_f64(&raw.number()?)? as f32;
            if !f.is_finite() {
                return Err("FLOAT default out of range".into());
            }
            lit(format_float(f64::from(f), Some(6)))
        }
        C::Double { .. } => lit(format_float(to_f64(&raw.number()?)?, None)),
        C::Year => lit(year(raw)?),
        // Shown as its last two digits (information_schema: `99`, `05`, `00`).
        C::Year2 => lit(format!("{:02}", year(raw)?.parse::<u16>().map_err(|e| e.to_string())? % 100)),
        C::Bit { width } => {
            let v: u64 = match raw {
                RawDefault::Str(_) => raw.bytes()?.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)),
                _ => {
                    let n = raw.number()?.with_scale_round(0, RoundingMode::HalfUp);
                    plain(&n).parse::<u64>().map_err(|_| "BIT default out of range".to_string())?
                }
            };
            if *width < 64 && v >> width != 0 {
                return Err("BIT default wider than the column".into());
            }
            ColumnDefault::Expression(format!("b'{v:b}'"))
        }
        C::Char { .. } => lit(text(raw)?.trim_end_matches(' ').to_string()),
        // A binary literal of the type's width is its value (information_schema
        // shows `'00112233-...'`, `'2001:db8::1'`, `'127.0.0.1'`).
        C::Uuid | C::Inet4 | C::Inet6 if matches!(raw, RawDefault::Hex(_) | RawDefault::Bits(_)) => {
            let b = raw.bytes()?;
            let width = if matches!(ty, C::Inet4) { 4 } else { 16 };
            if b.len() != width {
                return Err(format!("a binary default of {} bytes, not {width}", b.len()));
            }
            let v = b;
            lit(match ty {
                C::Uuid => uuid::Uuid::from_slice(&v).map_err(|e| e.to_string())?.hyphenated().to_string(),
                C::Inet4 => std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(v.as_slice()).map_err(|e| e.to_string())?)
                    .to_string(),
            })
        }
        C::VarChar { .. } | C::Text { .. } | C::Json | C::Uuid | C::Inet4 | C::Inet6 => lit(text(raw)?),
        C::Binary { length } => {
            let mut b = raw.bytes()?;
            b.resize((*length as usize).max(b.len()), 0);
            lit(String::from_utf8_lossy(&b).into_owned())
        }
        C::VarBinary { .. } | C::Blob { .. } => lit(String::from_utf8_lossy(&raw.bytes()?).into_owned()),
        C::Enum { members } => {
            let v = text(raw)?;
            let m = members
                .iter()
                .find(|m| same_member(m, &v))
                .ok_or_else(|| format!("{v:?} is not a member of the ENUM"))?;
            lit(m.clone())
        }
        C::Set { members } => {
            let v = text(raw)?;
            let mut chosen = vec![false; members.len()];
            for part in v.split(',').filter(|p| !p.is_empty()) {
                let i = members
                    .iter()
                    .position(|m| same_member(m, part))
                    .ok_or_else(|| format!("{part:?} is not a member of the SET"))?;
                chosen[i] = true;
            }
            let parts: Vec<&str> =
                members.iter().zip(&chosen).filter(|(_, c)| **c).map(|(m, _)| m.as_str()).collect();
            lit(parts.join(","))
        }
        C::Date => {
            let d = datetime(raw)?;
            lit(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        }
        C::DateTime { fsp } | C::Timestamp { fsp } => {
            let d = datetime(raw)?;
            lit(format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}",
                d.year,
                d.month,
                d.day,
                d.hour,
                d.minute,
                d.second,
                fraction(d.micros, *fsp)
            ))
        }
        C::Time { fsp } => {
            let t = time(raw)?;
            let h = t.micros / 3_600_000_000;
            let m = t.micros / 60_000_000 % 60;
            let s = t.micros / 1_000_000 % 60;
            let sign = if t.negative && t.micros != 0 { "-" } else { "" };
            lit(format!("{sign}{h:02}:{m:02}:{s:02}{}", fraction((t.micros % 1_000_000) as u32, *fsp)))
        }
        other => match raw {
            RawDefault::Str(s) => lit(s.clone()),
            _ => return Err(format!("literal default of {other} not converted")),
        },
    })
}

/// ENUM/SET members compare without regard to case or trailing spaces.
fn same_member(member: &str, value: &str) -> bool {
    member.trim_end_matches(' ').to_lowercase() == value.trim_end_matches(' ').to_lowercase()
}

/// A string column's value: the literal as text (numbers as written).
fn text(raw: &RawDefault) -> Result<String, String> {
    match raw {
        RawDefault::Str(s) | RawDefault::Num(s) => Ok(s.clone()),
        _ => Ok(String::from_utf8_lossy(&raw.bytes()?).into_owned()),
    }
}

fn bits_value(b: &str) -> Result<u64, String> {
    if b.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(b, 2).map_err(|_| format!("bit literal {b:?} wider than 64 bits"))
}

fn hex_bytes(h: &str) -> Result<Vec<u8>, String> {
    let h = if h.len() % 2 == 1 { format!("0{h}") } else { h.to_string() };
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).map_err(|_| format!("bad hexadecimal {h:?}")))
        .collect()
}

fn parse_number(s: &str) -> Result<BigDecimal, String> {
    let t = s.strip_prefix('+').unwrap_or(s);
    let t = if t.starts_with('.') { format!("0{t}") } else { t.to_string() };
    t.parse::<BigDecimal>().map_err(|_| format!("{s:?} is not a number"))
}

/// A decimal without exponent notation.
fn plain(n: &BigDecimal) -> String {
    let (_, scale) = n.as_bigint_and_exponent();
    if scale >= 0 {
        n.to_plain_string()
    } else {
        n.with_scale(0).to_plain_string()
    }
}

fn to_f64(n: &BigDecimal) -> Result<f64, String> {
    let f: f64 = n.to_string().parse().map_err(|_| "number out of range".to_string())?;
    if f.is_finite() {
        Ok(if f == 0.0 { 0.0 } else { f })
    } else {
        Err("number out of range".into())
    }
}

/// MariaDB's text of a FLOAT (6 significant digits) or DOUBLE (shortest
/// round trip): positional for decimal exponents -15..=14, else `1.5e15`.
fn format_float(f: f64, digits: Option<usize>) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let sci = match digits {
        Some(d) => format!("{:.*e}", d - 1, f),
        None => format!("{f:e}"),
    };
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if negative { "-" } else { "" };
    if !(-15..15).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let m = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        return format!("{sign}{m}e{exp}");
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if (point as usize) >= digits.len() {
        format!("{sign}{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{sign}{a}.{b}")
    }
}

fn year(raw: &RawDefault) -> Result<String, String> {
    let n = raw.number()?.with_scale_round(0, RoundingMode::HalfUp);
    let v: i64 = plain(&n).parse().map_err(|_| "YEAR default out of range".to_string())?;
    let is_string = matches!(raw, RawDefault::Str(_));
    let y = match v {
        // The number 0 is the zero year; the string '0' is 2000.
        0 if !is_string => return Ok("0000".into()),
        0..=69 => 2000 + v,
        70..=99 => 1900 + v,
        1901..=2155 => v,
        _ => return Err(format!("YEAR default {v} out of range")),
    };
    Ok(y.to_string())
}

/// `.ffffff` cut to `fsp` digits (MariaDB truncates), empty for `fsp` 0.
fn fraction(micros: u32, fsp: u8) -> String {
    if fsp == 0 {
        return String::new();
    }
    let all = format!("{micros:06}");
    format!(".{}", &all[..fsp.min(6) as usize])
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Dt {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

/// Microseconds from the digits after a decimal point (extra digits cut).
fn micros_of(frac: &str) -> u32 {
    let mut d: String = frac.chars().take_while(char::is_ascii_digit).take(6).collect();
    while d.len() < 6 {
        d.push('0');
    }
    d.parse().unwrap_or(0)
}

fn two_digit_year(y: u32) -> u32 {
    if y < 70 {
        2000 + y
    } else {
        1900 + y
    }
}

/// MySQL's reading of a date or datetime literal: delimited fields
/// (`2024-1-2 3:4:5.6`, `24/01/02`, `2024-01-02T03:04:05`) or packed digits
/// (`20240102030405`, `240102`), as a string or a number.
fn datetime(raw: &RawDefault) -> Result<Dt, String> {
    let s = match raw {
        RawDefault::Str(s) | RawDefault::Num(s) => s.trim().to_string(),
        _ => return Err("not a date".into()),
    };
    let bad = || format!("{s:?} is not a date");
    let (int, frac) = match s.split_once('.') {
        Some((a, b)) if a.bytes().all(|c| c.is_ascii_digit()) => (a.to_string(), Some(b.to_string())),
        _ => (s.clone(), None),
    };
    if !int.is_empty() && int.bytes().all(|c| c.is_ascii_digit()) {
        // Packed digits.
        let n = |a: usize, b: usize| int[a..b].parse::<u32>().unwrap_or(0);
        let mut d = Dt::default();
        match int.len() {
            1 if int == "0" => return Ok(d),
            14 => {
                (d.year, d.month, d.day, d.hour, d.minute, d.second) =
                    (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14))
            }
            12 => {
                (d.year, d.month, d.day, d.hour, d.minute, d.second) =
                    (two_digit_year(n(0, 2)), n(2, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12))
            }
            8 => (d.year, d.month, d.day) = (n(0, 4), n(4, 6), n(6, 8)),
            6 => (d.year, d.month, d.day) = (two_digit_year(n(0, 2)), n(2, 4), n(4, 6)),
            _ => return Err(bad()),
        }
        d.micros = frac.as_deref().map(micros_of).unwrap_or(0);
        return check_date(d).ok_or_else(bad);
    }
    // Delimited fields: runs of digits; a '.' after the seconds starts the fraction.
    let mut fields: Vec<String> = Vec::new();
    let mut micros = 0;
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                fields.push(std::mem::take(&mut cur));
            }
            if c == '.' && fields.len() == 6 {
                let rest: String = chars[i + 1..].iter().collect();
                micros = micros_of(&rest);
                break;
            }
            if !(c.is_ascii_punctuation() || c.is_whitespace() || c == 'T') {
                return Err(bad());
            }
        }
        i += 1;
    }
    if !cur.is_empty() {
        fields.push(cur);
    }
    if fields.len() < 3 || fields.len() > 6 {
        return Err(bad());
    }
    let v: Vec<u32> = fields.iter().map(|f| f.parse().unwrap_or(u32::MAX)).collect();
    let year = if fields[0].len() <= 2 { two_digit_year(v[0]) } else { v[0] };
    let d = Dt {
        year,
        month: v[1],
        day: v[2],
        hour: v.get(3).copied().unwrap_or(0),
        minute: v.get(4).copied().unwrap_or(0),
        second: v.get(5).copied().unwrap_or(0),
        micros,
    };
    check_date(d).ok_or_else(bad)
}

/// Zero parts are allowed (the server decides by `sql_mode`); others must be in range.
fn check_date(d: Dt) -> Option<Dt> {
    let ok = d.year <= 9999 && d.month <= 12 && d.day <= 31 && d.hour < 24 && d.minute < 60 && d.second < 60;
    ok.then_some(d)
}

struct Tm {
    negative: bool,
    micros: u64,
}

/// MySQL's reading of a TIME literal: `[-][D ]HH:MM[:SS[.f]]`, packed digits
/// (`SS`, `MMSS`, `HHMMSS`, as a string or a number), or a datetime whose
/// time part is taken.
fn time(raw: &RawDefault) -> Result<Tm, String> {
    let s = match raw {
        RawDefault::Str(s) | RawDefault::Num(s) => s.trim().to_string(),
        _ => return Err("not a time".into()),
    };
    let bad = || format!("{s:?} is not a time");
    let (negative, body) = match s.strip_prefix('-') {
        Some(b) => (true, b.trim_start()),
        None => (false, s.as_str()),
    };
    let hms = |h: u64, m: u64, sec: u64, frac: &str| -> Result<Tm, String> {
        if m >= 60 || sec >= 60 {
            return Err(bad());
        }
        Ok(Tm { negative, micros: ((h * 60 + m) * 60 + sec) * 1_000_000 + u64::from(micros_of(frac)) })
    };
    // A full datetime: its time part.
    let date_like = body.matches(['-', '/']).count() >= 2
        || (body.len() >= 12
            && body.split('.').next().is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit())));
    if date_like && !negative {
        let d = datetime(raw)?;
        return hms(u64::from(d.hour), u64::from(d.minute), u64::from(d.second), &format!("{:06}", d.micros));
    }
    let (int, frac) = match body.split_once('.') {
        Some((a, b)) => (a, b),
        None => (body, ""),
    };
    if int.bytes().all(|c| c.is_ascii_digit()) && !int.is_empty() {
        let n: u64 = int.parse().map_err(|_| bad())?;
        return hms(n / 10_000, n / 100 % 100, n % 100, frac);
    }
    // [D ]HH:MM[:SS]
    let (days, clock) = match int.split_once(' ') {
        Some((d, rest)) if d.bytes().all(|c| c.is_ascii_digit()) && rest.contains(':') => {
            (d.parse::<u64>().map_err(|_| bad())?, rest.trim())
        }
        _ => (0, int),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let p: Vec<u64> = parts.iter().map(|x| x.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    hms(days * 24 + p[0], p[1], p.get(2).copied().unwrap_or(0), frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::IntWidth;

    fn n(ty: &ColumnType, raw: RawDefault) -> String {
        match normalize(ty, &raw).unwrap() {
            ColumnDefault::Literal(s) | ColumnDefault::Expression(s) => s,
            ColumnDefault::Null => "NULL".into(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn conversions_mariadb_makes() {
        use RawDefault::*;
        let int = ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None };
        assert_eq!(n(&int, Str("1.5".into())), "2");
        assert_eq!(n(&int, Str("-2.5".into())), "-3");
        assert_eq!(n(&int, Hex("1F".into())), "31");
        assert_eq!(n(&int, Bits("101".into())), "5");
        assert_eq!(n(&int, Num("1e3".into())), "1000");
        let dbl = ColumnType::Double { unsigned: false };
        for (v, want) in [
            ("1e15", "1e15"),
            ("1e14", "100000000000000"),
            ("1.5e-7", "0.00000015"),
            ("1e-16", "1e-16"),
            ("123456789012345678", "1.2345678901234568e17"),
            ("-0.0", "0"),
            ("0.1234567890123456789", "0.12345678901234568"),
        ] {
            assert_eq!(n(&dbl, Num(v.into())), want, "{v}");
        }
        let flt = ColumnType::Float { unsigned: false };
        assert_eq!(n(&flt, Num("123456789".into())), "123457000");
        assert_eq!(n(&flt, Num("0.1".into())), "0.1");
        assert_eq!(n(&flt, Num("1.5e15".into())), "1.5e15");
        assert_eq!(n(&ColumnType::Year, Num("0".into())), "0000");
        assert_eq!(n(&ColumnType::Year, Str("0".into())), "2000");
        assert_eq!(n(&ColumnType::Year, Num("69.5".into())), "1970");
        assert_eq!(n(&ColumnType::Year2, Num("2071".into())), "71");
        assert_eq!(
            n(&ColumnType::Uuid, Hex("00112233445566778899AABBCCDDEEFF".into())),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert!(normalize(&ColumnType::Uuid, &Hex("FF".into())).is_err());
        assert_eq!(n(&ColumnType::Inet6, Hex("20010db8000000000000000000000001".into())), "2001:db8::1");
        assert_eq!(n(&ColumnType::Inet4, Hex("7f000001".into())), "127.0.0.1");
        assert_eq!(n(&ColumnType::Year2, Str("05".into())), "05");
        assert_eq!(n(&ColumnType::Year2, Num("0".into())), "00");
        assert_eq!(n(&ColumnType::Bit { width: 8 }, Str("A".into())), "b'1000001'");
        assert_eq!(
            n(&ColumnType::DateTime { fsp: 0 }, Str("0000-00-00 01:00:00.000".into())),
            "0000-00-00 01:00:00"
        );
        assert_eq!(n(&ColumnType::Date, Str("1000-00-00 01:00:00.000".into())), "1000-00-00");
        assert_eq!(n(&ColumnType::Time { fsp: 0 }, Str("0000-00-00 01:00:00.000".into())), "01:00:00");
        assert_eq!(n(&ColumnType::Time { fsp: 0 }, Str("1 02:00:00".into())), "26:00:00");
        assert_eq!(n(&ColumnType::Time { fsp: 3 }, Str("-1:2:3.45678".into())), "-01:02:03.456");
        assert_eq!(n(&ColumnType::Time { fsp: 0 }, Num("123456".into())), "12:34:56");
        assert_eq!(
            n(&ColumnType::DateTime { fsp: 2 }, Num("20240102030405.129".into())),
            "2024-01-02 03:04:05.12"
        );
        assert_eq!(n(&ColumnType::DateTime { fsp: 0 }, Str("69-01-01".into())), "2069-01-01 00:00:00");
        let set = ColumnType::Set { members: vec!["Ab".into(), "b".into()] };
        assert_eq!(n(&set, Str("B,AB".into())), "Ab,b");
        assert!(normalize(&ColumnType::Date, &Str("2024-02-30x".into())).is_err());
    }
    /// Every definition in MariaDB (`sql_mode=''`): the default our DDL reading
    /// gives equals the one discovery reads back from information_schema.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn defaults_match_information_schema() {
        const DEFINITIONS: &[&str] = &[
            r#"INT DEFAULT '1.5'"#,
            r#"INT DEFAULT '1.4'"#,
            r#"INT DEFAULT '-2.5'"#,
            r#"INT DEFAULT 0x1F"#,
            r#"INT DEFAULT b'101'"#,
            r#"DECIMAL(5,2) DEFAULT '3.14159'"#,
            r#"DECIMAL(5,2) DEFAULT 3.145"#,
            r#"FLOAT DEFAULT '1e3'"#,
            r#"YEAR DEFAULT '69'"#,
            r#"YEAR DEFAULT 69"#,
            r#"YEAR DEFAULT '0'"#,
            r#"YEAR DEFAULT 0"#,
            r#"YEAR DEFAULT '00'"#,
            r#"CHAR(3) DEFAULT 'abcdef'"#,
            r#"CHAR(3) DEFAULT 'ab '"#,
            r#"BIT(4) DEFAULT 5"#,
            r#"BIT(4) DEFAULT b'11'"#,
            r#"ENUM('x','y') DEFAULT 2"#,
            r#"ENUM('x','y') DEFAULT 'Y'"#,
            r#"SET('a','b','c') DEFAULT 'c,a'"#,
            r#"SET('a','b','c') DEFAULT 5"#,
            r#"DATETIME(2) DEFAULT '2024-01-02 03:04:05.678'"#,
            r#"TIME DEFAULT '1 02:00:00'"#,
            r#"TIMESTAMP NULL DEFAULT '2024-01-01'"#,
            r#"TINYINT DEFAULT 300"#,
            r#"INT UNSIGNED DEFAULT -5"#,
            r#"VARCHAR(5) DEFAULT 12"#,
            r#"DOUBLE DEFAULT -0.0"#,
            r#"DATE DEFAULT 20240102"#,
            r#"TIME DEFAULT 123456"#,
            r#"BINARY(3) DEFAULT 'a'"#,
            r#"VARBINARY(4) DEFAULT X'41'"#,
            r#"INT DEFAULT TRUE"#,
            r#"DECIMAL(4,1) DEFAULT 1.25"#,
            r#"DATETIME DEFAULT '2024-1-2 3:4:5'"#,
            r#"BIGINT DEFAULT '  42abc'"#,
            r#"FLOAT DEFAULT 0.1"#,
            r#"FLOAT DEFAULT 3.4028235e38"#,
            r#"DOUBLE DEFAULT 1e300"#,
            r#"DOUBLE DEFAULT 0.1"#,
            r#"TIME(3) DEFAULT '-1:2:3.45678'"#,
            r#"DATETIME DEFAULT '2024-01-02T03:04:05'"#,
            r#"DATE DEFAULT '24-1-2'"#,
            r#"DATE DEFAULT '2024-01-02 10:11:12'"#,
            r#"DATETIME DEFAULT '0000-00-00 01:00:00.000'"#,
            r#"DATE DEFAULT '1000-00-00 01:00:00.000'"#,
            r#"TIME DEFAULT '0000-00-00 01:00:00.000'"#,
            r#"TIME DEFAULT '2024-01-02 01:00:00'"#,
            r#"DATETIME DEFAULT 20240102030405"#,
            r#"TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"#,
            r#"DATETIME DEFAULT NOW()"#,
            r#"DATETIME DEFAULT CURRENT_TIMESTAMP"#,
            r#"DATE DEFAULT CURDATE()"#,
            r#"INT DEFAULT (1+2)"#,
            r#"TEXT DEFAULT 'x'"#,
            r#"VARCHAR(10) DEFAULT 'a\\nb''c'"#,
            r#"VARCHAR(10) DEFAULT "dq""#,
            r#"INT DEFAULT -0"#,
            r#"DECIMAL(10,0) DEFAULT '1e3'"#,
            r#"INT DEFAULT 1e3"#,
            r#"INT DEFAULT '0x10'"#,
            r#"BIGINT UNSIGNED DEFAULT 18446744073709551615"#,
            r#"DOUBLE DEFAULT '1.0'"#,
            r#"FLOAT DEFAULT 1.0"#,
            r#"DECIMAL(6,3) DEFAULT 1"#,
            r#"DATETIME(6) DEFAULT '2024-01-02 03:04:05.1234567'"#,
            r#"TIMESTAMP NULL DEFAULT 0"#,
            r#"TIME DEFAULT '838:59:59'"#,
            r#"TIME DEFAULT '25:00'"#,
            r#"TIME DEFAULT '10'"#,
            r#"TIME DEFAULT 10.5"#,
            r#"YEAR DEFAULT 2024"#,
            r#"BOOLEAN DEFAULT TRUE"#,
            r#"BIT(8) DEFAULT 'A'"#,
            r#"UUID DEFAULT '123e4567-e89b-12d3-a456-426614174000'"#,
            r#"INET4 DEFAULT '10.0.0.1'"#,
            r#"INET6 DEFAULT '::ffff:1.2.3.4'"#,
            r#"DATE DEFAULT '2024-02-30'"#,
            r#"DATETIME DEFAULT '2024-00-00'"#,
            r#"INT DEFAULT NULL"#,
            r#"INT NOT NULL DEFAULT '7'"#,
            r#"ENUM('a','b') NOT NULL DEFAULT ''"#,
            r#"JSON DEFAULT '{"a": 1}'"#,
            r#"DOUBLE DEFAULT 123456789012345678"#,
            r#"DOUBLE DEFAULT 1e15"#,
            r#"DOUBLE DEFAULT 1.5e-7"#,
            r#"DOUBLE DEFAULT 1e-16"#,
            r#"FLOAT DEFAULT 3.14159265"#,
            r#"FLOAT DEFAULT 16777217"#,
            r#"DECIMAL(5,2) DEFAULT -0.005"#,
            r#"DECIMAL(5,2) DEFAULT -0.001"#,
            r#"DECIMAL(65,30) DEFAULT 1.5"#,
            r#"YEAR DEFAULT 70"#,
            r#"YEAR DEFAULT '69.5'"#,
            r#"TIME DEFAULT '12:34'"#,
            r#"TIME DEFAULT '1234'"#,
            r#"TIME DEFAULT 1234"#,
            r#"TIME DEFAULT '1 02:03'"#,
            r#"TIME(2) DEFAULT '00:00:01.999'"#,
            r#"TIME DEFAULT -5"#,
            r#"TIME DEFAULT '-1 02:00:00'"#,
            r#"DATETIME(6) DEFAULT '2024-01-02 03:04:05.1'"#,
            r#"DATETIME(3) DEFAULT '2024-01-02'"#,
            r#"TIMESTAMP(2) NULL DEFAULT 20240102030405.129"#,
            r#"DATETIME DEFAULT '240102030405'"#,
            r#"DATE DEFAULT '2024/01/02'"#,
            r#"DATETIME DEFAULT '2024-01-02 03.04.05'"#,
            r#"DATETIME DEFAULT '2024-01-02 03'"#,
            r#"DATE DEFAULT 0"#,
            r#"ENUM('Ab','b') DEFAULT 'ab'"#,
            r#"SET('Ab','b') DEFAULT 'B,AB'"#,
            r#"SET('a','b') DEFAULT 'a,a'"#,
            r#"VARCHAR(5) DEFAULT 0x4142"#,
            r#"VARCHAR(5) DEFAULT b'1000001'"#,
            r#"VARCHAR(5) DEFAULT TRUE"#,
            r#"CHAR(5) DEFAULT 5.50"#,
            r#"BIT(64) DEFAULT 18446744073709551615"#,
            r#"BIT(1) DEFAULT TRUE"#,
            r#"BIT(8) DEFAULT '1'"#,
            r#"INT DEFAULT 0b101"#,
        ];
        let server = synchdb_testkit::mariadb();
        let db = server.create_database("defaults").unwrap();
        let name = db.name().to_string();
        let mut accepted = Vec::new();
        for (i, def) in DEFINITIONS.iter().enumerate() {
            let sql = format!("CREATE TABLE t{i} (c {def})");
            if server.exec(&format!("SET SESSION sql_mode = ''; USE `{name}`; {sql}")).is_ok() {
                accepted.push((i, def, sql));
            }
        }
        assert!(accepted.len() > DEFINITIONS.len() * 3 / 4, "most definitions are valid");
        let opts: crate::MySqlSourceOptions = db.url().parse().unwrap();
        let mut conn = opts.connect().await.unwrap();
        let filter = crate::filter::TableFilter::all().include(&format!("{name}.*")).unwrap();
        let found = crate::discovery::discover_tables(&mut conn, &filter).await.unwrap();
        let mut wrong = Vec::new();
        for (i, def, sql) in &accepted {
            let table = found.iter().find(|t| t.id.table == format!("t{i}")).expect("discovered");
            let want = &table.columns[0].default;
            let got = match crate::ddl::parse_ddl(sql, &name) {
                Ok(Some(crate::ddl::Ddl::CreateTable { schema, .. })) => schema.columns[0].default.clone(),
                other => panic!("{sql}: {other:?}"),
            };
            if &got != want {
                wrong.push(format!("{def}: read {got:?}, server {want:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} defaults differ:\n{}",
            wrong.len(),
            accepted.len(),
            wrong.join("\n")
        );
    }
}
