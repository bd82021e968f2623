//! Row predicates as data: `column op literal`, `IN`, `IS NULL`, `AND`/`OR`/`NOT`,
//! evaluated in Rust on [`Value`]s with SQL's three-valued logic.
//!
//! In files a predicate is written as text (`tenant_id = 7 AND status IN ('paid',
//! 'shipped')`); in code it is built with the constructors ([`Predicate::eq`], ...).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use synchdb_types::{Date, DateTime, Time, Value};

use crate::error::{Error, ErrorKind, Result};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>` (also written `!=`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            CompareOp::Eq => o == Ordering::Equal,
            CompareOp::Ne => o != Ordering::Equal,
            CompareOp::Lt => o == Ordering::Less,
            CompareOp::Le => o != Ordering::Greater,
            CompareOp::Gt => o == Ordering::Greater,
            CompareOp::Ge => o != Ordering::Less,
        }
    }
}

/// A literal of a predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// `TRUE` / `FALSE` (compared as 1 / 0 with numbers).
    Bool(bool),
    /// An integer (holds every MySQL integer, signed or unsigned).
    Int(i128),
    /// A number with a fraction or exponent, kept as written for exact decimal comparison.
    Number(String),
    /// A quoted string; compared with dates and times by parsing it in the value's type.
    Text(String),
}

impl From<i64> for Literal {
    fn from(v: i64) -> Self {
        Literal::Int(v.into())
    }
}
impl From<i32> for Literal {
    fn from(v: i32) -> Self {
        Literal::Int(v.into())
    }
}
impl From<u64> for Literal {
    fn from(v: u64) -> Self {
        Literal::Int(v.into())
    }
}
impl From<bool> for Literal {
    fn from(v: bool) -> Self {
        Literal::Bool(v)
    }
}
impl From<&str> for Literal {
    fn from(v: &str) -> Self {
        Literal::Text(v.to_string())
    }
}
impl From<String> for Literal {
    fn from(v: String) -> Self {
        Literal::Text(v)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Number(n) => f.write_str(n),
            Literal::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

/// A row predicate over source column names.
///
/// ```
/// use synchdb_core::mapping::Predicate;
/// let p: Predicate = "tenant_id = 7 AND (status IN ('paid', 'shipped') OR note IS NULL)".parse().unwrap();
/// assert_eq!(p, Predicate::eq("tenant_id", 7).and(
///     Predicate::is_in("status", ["paid", "shipped"]).or(Predicate::is_null("note"))));
/// assert_eq!(p.to_string(), "tenant_id = 7 AND (status IN ('paid', 'shipped') OR note IS NULL)");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum Predicate {
    /// `column op literal`.
    Compare {
        /// Source column name.
        column: String,
        /// Operator.
        op: CompareOp,
        /// Literal.
        value: Literal,
    },
    /// `column [NOT] IN (literals)`.
    In {
        /// Source column name.
        column: String,
        /// Literals.
        values: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `column IS [NOT] NULL`.
    IsNull {
        /// Source column name.
        column: String,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// All of these.
    And(Vec<Predicate>),
    /// Any of these.
    Or(Vec<Predicate>),
    /// Not this.
    Not(Box<Predicate>),
}

impl Predicate {
    /// `column op value`.
    pub fn compare(column: impl Into<String>, op: CompareOp, value: impl Into<Literal>) -> Self {
        Predicate::Compare { column: column.into(), op, value: value.into() }
    }

    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl Into<Literal>) -> Self {
        Self::compare(column, CompareOp::Eq, value)
    }

    /// `column IN (values)`.
    pub fn is_in<L: Into<Literal>>(column: impl Into<String>, values: impl IntoIterator<Item = L>) -> Self {
        Predicate::In {
            column: column.into(),
            values: values.into_iter().map(Into::into).collect(),
            negated: false,
        }
    }

    /// `column IS NULL`.
    pub fn is_null(column: impl Into<String>) -> Self {
        Predicate::IsNull { column: column.into(), negated: false }
    }

    /// `column IS NOT NULL`.
    pub fn is_not_null(column: impl Into<String>) -> Self {
        Predicate::IsNull { column: column.into(), negated: true }
    }

    /// `self AND other`.
    pub fn and(self, other: Predicate) -> Self {
        match self {
            Predicate::And(mut v) => {
                v.push(other);
                Predicate::And(v)
            }
            s => Predicate::And(vec![s, other]),
        }
    }

    /// `self OR other`.
    pub fn or(self, other: Predicate) -> Self {
        match self {
            Predicate::Or(mut v) => {
                v.push(other);
                Predicate::Or(v)
            }
            s => Predicate::Or(vec![s, other]),
        }
    }

    /// `NOT self`.
    pub fn negate(self) -> Self {
        Predicate::Not(Box::new(self))
    }

    /// Every column the predicate reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Predicate::Compare { column, .. }
            | Predicate::In { column, .. }
            | Predicate::IsNull { column, .. } => {
                if !out.contains(&column.as_str()) {
                    out.push(column)
                }
            }
            Predicate::And(v) | Predicate::Or(v) => v.iter().for_each(|p| p.collect_columns(out)),
            Predicate::Not(p) => p.collect_columns(out),
        }
    }

    /// Whether a row passes: the predicate is TRUE (NULL and FALSE drop the row, as
    /// in SQL's `WHERE`). `get` returns a column's value by name; an unknown column
    /// or a literal that cannot be compared with the value is an error naming the column.
    pub fn matches<'v>(&self, get: &dyn Fn(&str) -> Option<&'v Value>) -> Result<bool> {
        Ok(self.eval(get)? == Some(true))
    }

    fn eval<'v>(&self, get: &dyn Fn(&str) -> Option<&'v Value>) -> Result<Option<bool>> {
        let value = |c: &str| {
            get(c).ok_or_else(|| {
                Error::new(ErrorKind::Convert, "row filter names an unknown column")
                    .with_column(c.to_string())
            })
        };
        Ok(match self {
            Predicate::Compare { column, op, value: lit } => {
                let v = value(column)?;
                compare(v, lit)
                    .map_err(|m| Error::new(ErrorKind::Convert, m).with_column(column.clone()))?
                    .map(|o| op.holds(o))
            }
            Predicate::In { column, values, negated } => {
                let v = value(column)?;
                let mut any_null = false;
                let mut found = false;
                for lit in values {
                    match compare(v, lit)
                        .map_err(|m| Error::new(ErrorKind::Convert, m).with_column(column.clone()))?
                    {
                        Some(Ordering::Equal) => {
                            found = true;
                            break;
                        }
                        Some(_) => {}
                        None => any_null = true,
                    }
                }
                let r = if found {
                    Some(true)
                } else if any_null {
                    None
                } else {
                    Some(false)
                };
                r.map(|b| b != *negated)
            }
            Predicate::IsNull { column, negated } => Some(value(column)?.is_null() != *negated),
            Predicate::And(ps) => {
                let mut unknown = false;
                for p in ps {
                    match p.eval(get)? {
                        Some(false) => return Ok(Some(false)),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(true)
                }
            }
            Predicate::Or(ps) => {
                let mut unknown = false;
                for p in ps {
                    match p.eval(get)? {
                        Some(true) => return Ok(Some(true)),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(false)
                }
            }
            Predicate::Not(p) => p.eval(get)?.map(|b| !b),
        })
    }

    fn fmt_prec(&self, f: &mut fmt::Formatter<'_>, parent: u8) -> fmt::Result {
        // Precedence: OR 1, AND 2, NOT 3, atoms 4.
        let (prec, open) = match self {
            Predicate::Or(_) => (1, parent > 1),
            Predicate::And(_) => (2, parent > 2),
            _ => (4, false),
        };
        if open {
            f.write_str("(")?;
        }
        match self {
            Predicate::Compare { column, op, value } => {
                write!(f, "{} {} {value}", ident(column), op.as_str())?
            }
            Predicate::In { column, values, negated } => {
                let list: Vec<String> = values.iter().map(ToString::to_string).collect();
                write!(f, "{} {}IN ({})", ident(column), if *negated { "NOT " } else { "" }, list.join(", "))?
            }
            Predicate::IsNull { column, negated } => {
                write!(f, "{} IS {}NULL", ident(column), if *negated { "NOT " } else { "" })?
            }
            Predicate::And(ps) | Predicate::Or(ps) => {
                let sep = if prec == 1 { " OR " } else { " AND " };
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    p.fmt_prec(f, prec + 1)?;
                }
            }
            Predicate::Not(p) => {
                f.write_str("NOT ")?;
                p.fmt_prec(f, 3)?;
            }
        }
        if open {
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !matches!(
            name.to_ascii_uppercase().as_str(),
            "AND" | "OR" | "NOT" | "IN" | "IS" | "NULL" | "TRUE" | "FALSE"
        );
    if plain {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

impl fmt::Display for Predicate {
    /// SQL-like text that [`FromStr`] parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_prec(f, 0)
    }
}

impl From<Predicate> for String {
    fn from(p: Predicate) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for Predicate {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

// ---- comparison of values with literals ----

/// Compare a value with a literal: `None` when the value is NULL, `Err` when they
/// cannot be compared.
fn compare(v: &Value, lit: &Literal) -> std::result::Result<Option<Ordering>, String> {
    let mismatch = || format!("cannot compare a {} value with {lit}", v.kind());
    let numeric_lit = || -> Option<String> {
        match lit {
            Literal::Bool(b) => Some(if *b { "1".into() } else { "0".into() }),
            Literal::Int(i) => Some(i.to_string()),
            Literal::Number(n) => Some(n.clone()),
            Literal::Text(t) => is_decimal(t.trim()).then(|| t.trim().to_string()),
        }
    };
    let float_lit = || numeric_lit().and_then(|s| s.parse::<f64>().ok());
    let text_lit = || match lit {
        Literal::Text(t) => Some(t.as_str()),
        _ => None,
    };
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Int(_) | Value::UInt(_) | Value::Decimal(_) | Value::Year(_) => {
            let l = numeric_lit().ok_or_else(mismatch)?;
            cmp_decimal(&v.to_string(), &l).ok_or_else(mismatch)?
        }
        Value::Bit(b) => {
            let l = numeric_lit().ok_or_else(mismatch)?;
            cmp_decimal(&b.value.to_string(), &l).ok_or_else(mismatch)?
        }
        Value::Float(x) => {
            f64::from(*x).partial_cmp(&float_lit().ok_or_else(mismatch)?).ok_or_else(mismatch)?
        }
        Value::Double(x) => x.partial_cmp(&float_lit().ok_or_else(mismatch)?).ok_or_else(mismatch)?,
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => s.as_str().cmp(text_lit().ok_or_else(mismatch)?),
        Value::Set(m) => m.join(",").as_str().cmp(text_lit().ok_or_else(mismatch)?),
        Value::Bytes(b) => b.as_slice().cmp(text_lit().ok_or_else(mismatch)?.as_bytes()),
        Value::Date(d) => d.cmp(&text_lit().and_then(|t| t.parse::<Date>().ok()).ok_or_else(mismatch)?),
        Value::DateTime(d) => {
            d.cmp(&text_lit().and_then(|t| t.parse::<DateTime>().ok()).ok_or_else(mismatch)?)
        }
        Value::Timestamp(ts) => {
            let l = text_lit().and_then(|t| t.parse::<DateTime>().ok()).ok_or_else(mismatch)?;
            let micros = match l.to_chrono() {
                Some(c) => c.and_utc().timestamp_micros(),
                None if l.is_zero() => 0,
                None => return Err(mismatch()),
            };
            ts.micros.cmp(&micros)
        }
        Value::Time(t) => t.cmp(&text_lit().and_then(|s| s.parse::<Time>().ok()).ok_or_else(mismatch)?),
        Value::Uuid(_) | Value::Inet4(_) | Value::Inet6(_) => {
            v.to_string().as_str().cmp(text_lit().ok_or_else(mismatch)?.to_ascii_lowercase().as_str())
        }
        _ => return Err(mismatch()),
    }))
}

fn is_decimal(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (i, f) = t.split_once('.').unwrap_or((t, ""));
    !(i.is_empty() && f.is_empty())
        && i.bytes().all(|b| b.is_ascii_digit())
        && f.bytes().all(|b| b.is_ascii_digit())
}

/// Exact comparison of two decimal numbers in text form (`-12.50`, `7`); floats in
/// exponent form fall back to `f64`.
fn cmp_decimal(a: &str, b: &str) -> Option<Ordering> {
    if !is_decimal(a) || !is_decimal(b) {
        return a.parse::<f64>().ok()?.partial_cmp(&b.parse::<f64>().ok()?);
    }
    let split = |s: &str| -> (bool, String, String) {
        let neg = s.starts_with('-');
        let t = s.trim_start_matches(['-', '+']);
        let (i, f) = t.split_once('.').unwrap_or((t, ""));
        let i = i.trim_start_matches('0').to_string();
        let f = f.trim_end_matches('0').to_string();
        let zero = i.is_empty() && f.is_empty();
        (neg && !zero, i, f)
    };
    let (na, ia, fa) = split(a);
    let (nb, ib, fb) = split(b);
    let magnitude = ia.len().cmp(&ib.len()).then_with(|| ia.cmp(&ib)).then_with(|| fa.cmp(&fb));
    Some(match (na, nb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
    })
}

// ---- parsing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> std::result::Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op("<>"));
                i += 2
            }
            '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let op = match (c, next) {
                    ('<', Some('=')) => "<=",
                    ('<', Some('>')) => "<>",
                    ('>', Some('=')) => ">=",
                    ('<', _) => "<",
                    _ => ">",
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            '\'' | '`' | '"' => {
                let q = c;
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated {q}quote")),
                        Some(&ch) if ch == q && chars.get(i + 1) == Some(&q) => {
                            v.push(q);
                            i += 2;
                        }
                        Some(&ch) if ch == q => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(if q == '\'' { Tok::Str(v) } else { Tok::Ident(v) });
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.peek_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok, what: &str) -> std::result::Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {what}, found {other:?}")),
        }
    }

    fn or(&mut self) -> std::result::Result<Predicate, String> {
        let mut items = vec![self.and()?];
        while self.eat_kw("OR") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Predicate::Or(items) })
    }

    fn and(&mut self) -> std::result::Result<Predicate, String> {
        let mut items = vec![self.not()?];
        while self.eat_kw("AND") {
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Predicate::And(items) })
    }

    fn not(&mut self) -> std::result::Result<Predicate, String> {
        if self.eat_kw("NOT") {
            return Ok(Predicate::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn literal(&mut self) -> std::result::Result<Literal, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Text(s)),
            Some(Tok::Num(n)) => match n.parse::<i128>() {
                Ok(i) => Ok(Literal::Int(i)),
                Err(_) if n.parse::<f64>().is_ok() => Ok(Literal::Number(n)),
                Err(_) => Err(format!("invalid number {n:?}")),
            },
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("TRUE") => Ok(Literal::Bool(true)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("FALSE") => Ok(Literal::Bool(false)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("NULL") => {
                Err("compare with NULL using IS NULL / IS NOT NULL".into())
            }
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }

    fn primary(&mut self) -> std::result::Result<Predicate, String> {
        if self.toks.get(self.pos) == Some(&Tok::LParen) {
            self.pos += 1;
            let p = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(p);
        }
        let column = match self.next() {
            Some(Tok::Ident(c)) => c,
            other => return Err(format!("expected a column name, found {other:?}")),
        };
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            if !self.eat_kw("NULL") {
                return Err("expected NULL after IS".into());
            }
            return Ok(Predicate::IsNull { column, negated });
        }
        let negated = self.eat_kw("NOT");
        if self.eat_kw("IN") {
            self.expect(Tok::LParen, "'(' after IN")?;
            let mut values = vec![self.literal()?];
            while self.toks.get(self.pos) == Some(&Tok::Comma) {
                self.pos += 1;
                values.push(self.literal()?);
            }
            self.expect(Tok::RParen, "')'")?;
            return Ok(Predicate::In { column, values, negated });
        }
        if negated {
            return Err("expected IN after NOT".into());
        }
        let op = match self.next() {
            Some(Tok::Op(o)) => match o {
                "=" => CompareOp::Eq,
                "<>" => CompareOp::Ne,
                "<" => CompareOp::Lt,
                "<=" => CompareOp::Le,
                ">" => CompareOp::Gt,
                _ => CompareOp::Ge,
            },
            other => return Err(format!("expected an operator after {column}, found {other:?}")),
        };
        Ok(Predicate::Compare { column, op, value: self.literal()? })
    }
}

impl FromStr for Predicate {
    type Err = Error;
    /// Parse `col = 7`, `col <> 'x'`, `col IN (1, 2)`, `col NOT IN ('a')`,
    /// `col IS [NOT] NULL`, combined with `AND`, `OR`, `NOT` and parentheses.
    /// Column names may be quoted with backquotes or double quotes.
    fn from_str(s: &str) -> Result<Self> {
        let err = |m: String| Error::config(format!("invalid row filter {s:?}: {m}"));
        let toks = tokenize(s).map_err(err)?;
        if toks.is_empty() {
            return Err(err("empty".into()));
        }
        let mut p = Parser { toks, pos: 0 };
        let pred = p.or().map_err(err)?;
        if p.pos < p.toks.len() {
            return Err(err(format!("unexpected {:?}", p.toks[p.pos])));
        }
        Ok(pred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::{Decimal, Timestamp};

    fn check(p: &str, cols: &[(&str, Value)]) -> bool {
        let p: Predicate = p.parse().unwrap();
        p.matches(&|c: &str| cols.iter().find(|(n, _)| *n == c).map(|(_, v)| v)).unwrap()
    }

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "tenant_id = 7",
            "a <> 'it''s' OR b IS NOT NULL",
            "NOT (a IN (1, 2, 3) AND b NOT IN ('x')) OR c >= -1.5",
            "`weird col` < TRUE",
        ] {
            let p: Predicate = s.parse().unwrap();
            let again: Predicate = p.to_string().parse().unwrap();
            assert_eq!(p, again, "{s}");
        }
        assert_eq!("a != 1".parse::<Predicate>().unwrap(), Predicate::compare("a", CompareOp::Ne, 1));
        for bad in ["", "a =", "a = NULL", "= 1", "a IN 1", "(a = 1", "a = 1 b", "a NOT = 1"] {
            assert!(bad.parse::<Predicate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn three_valued_logic() {
        let row = [("t", Value::Int(7)), ("n", Value::Null), ("s", Value::Text("paid".into()))];
        assert!(check("t = 7", &row));
        assert!(!check("t = 8", &row));
        assert!(!check("n = 1", &row));
        assert!(!check("NOT n = 1", &row), "NOT NULL is NULL");
        assert!(check("n IS NULL AND t IS NOT NULL", &row));
        assert!(check("n = 1 OR t = 7", &row));
        assert!(!check("t NOT IN (1, 2) AND n NOT IN (1)", &row));
        assert!(check("s IN ('new', 'paid')", &row));
        assert!(check("s > 'a' AND s < 'q'", &row));
    }

    #[test]
    fn typed_comparisons() {
        let row = [
            ("u", Value::UInt(u64::MAX)),
            ("d", Value::Decimal(Decimal::parse("-12.50").unwrap())),
            ("f", Value::Double(0.5)),
            ("day", Value::Date("2024-02-29".parse().unwrap())),
            ("ts", Value::Timestamp(Timestamp::from_parts(1_700_000_000, 0))),
            ("tm", Value::Time("-01:00:00".parse().unwrap())),
        ];
        assert!(check("u = 18446744073709551615", &row));
        assert!(check("d = -12.5 AND d < -12.49 AND d > -13", &row));
        assert!(check("f < 1 AND f >= 0.5", &row));
        assert!(check("day >= '2024-01-01' AND day < '2024-03-01'", &row));
        assert!(check("ts = '2023-11-14 22:13:20'", &row));
        assert!(check("tm < '00:00:00'", &row));
        let p: Predicate = "u = 'abc'".parse().unwrap();
        let e = p.matches(&|_: &str| row.first().map(|(_, v)| v)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Convert);
        assert_eq!(e.column(), Some("u"));
        let p: Predicate = "missing = 1".parse().unwrap();
        assert!(p.matches(&|_: &str| None).is_err());
    }

    #[test]
    fn decimal_order() {
        assert_eq!(cmp_decimal("10", "9.99"), Some(Ordering::Greater));
        assert_eq!(cmp_decimal("-0", "0.000"), Some(Ordering::Equal));
        assert_eq!(cmp_decimal("-2", "-10"), Some(Ordering::Greater));
        assert_eq!(cmp_decimal("1e3", "999"), Some(Ordering::Greater));
    }
}
