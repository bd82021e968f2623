//! What a converter asks of the destination for one column, described so that
//! any sink can read it: a destination type ([`TargetType`]) and an SQL
//! transform ([`SqlTransform`]). The sink decides how to honour them (the
//! PostgreSQL sink renders the type as its own type name) and declares which it
//! supports, so that a pipeline refuses to start rather than ignore one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// A destination type chosen by a mapping rule or a transform.
///
/// The common SQL types are typed variants any sink can map; a name outside
/// them (PostgreSQL's `jsonb`, `citext`, `inet`, a domain, `timetz`, ...) is
/// [`TargetType::Native`], read by the sink in its own dialect (sinks declare
/// whether they accept such names). Parsed from text by [`FromStr`]
/// (case-insensitive, SQL spellings and the usual short forms: `bool`, `int`,
/// `int2/4/8`, `float4/8`, `double`, `decimal`, `character varying`,
/// `timestamptz`, `bytea`), serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum TargetType {
    /// `boolean`.
    Boolean,
    /// A 16-bit integer (`smallint`).
    SmallInt,
    /// A 32-bit integer (`integer`).
    Integer,
    /// A 64-bit integer (`bigint`).
    BigInt,
    /// A 32-bit float (`real`).
    Real,
    /// A 64-bit float (`double precision`).
    Double,
    /// An exact decimal (`numeric(p, s)`); `None` where not given.
    Numeric {
        /// Total digits.
        precision: Option<u32>,
        /// Digits after the point.
        scale: Option<u32>,
    },
    /// Text of any length.
    Text,
    /// Text of at most `length` characters (`varchar(n)`); no limit when `None`.
    VarChar {
        /// The limit in characters.
        length: Option<u32>,
    },
    /// Blank-padded text of `length` characters (`char(n)`).
    Char {
        /// The length in characters.
        length: u32,
    },
    /// A byte string (`bytea`, `varbinary`, `blob`).
    Bytes,
    /// A calendar date.
    Date,
    /// A time of day without time zone.
    Time {
        /// Fractional-second digits, `None` for the sink's default.
        precision: Option<u8>,
    },
    /// A date and time.
    Timestamp {
        /// Fractional-second digits, `None` for the sink's default.
        precision: Option<u8>,
        /// With time zone (`timestamptz`).
        time_zone: bool,
    },
    /// JSON text.
    Json,
    /// A UUID.
    Uuid,
    /// A type named in the sink's own dialect, passed to it as written.
    Native(String),
}

impl TargetType {
    /// The range of an integer type, `None` for other types.
    pub fn integer_range(&self) -> Option<(i128, i128)> {
        match self {
            TargetType::SmallInt => Some((i16::MIN.into(), i16::MAX.into())),
            TargetType::Integer => Some((i32::MIN.into(), i32::MAX.into())),
            TargetType::BigInt => Some((i64::MIN.into(), i64::MAX.into())),
            _ => None,
        }
    }

    /// Whether every text of `chars` characters fits (text types long enough).
    /// A [`Native`](TargetType::Native) type is not known to.
    pub fn holds_text_of(&self, chars: u32) -> bool {
        match self {
            TargetType::Text | TargetType::VarChar { length: None } => true,
            TargetType::VarChar { length: Some(n) } | TargetType::Char { length: n } => *n >= chars,
            _ => false,
        }
    }

    /// Whether this is a name in the sink's own dialect.
    pub fn is_native(&self) -> bool {
        matches!(self, TargetType::Native(_))
    }
}

/// Parse `(a)` or `(a, b)`: the numbers, or an error.
fn numbers(args: &str, what: &'static str, full: &str) -> Result<Vec<u32>, ParseError> {
    args.split(',').map(|a| a.trim().parse::<u32>().map_err(|_| ParseError::new(what, full))).collect()
}

impl FromStr for TargetType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let written = s.trim();
        if written.is_empty() {
            return Err(ParseError::new("destination type", s));
        }
        let norm = written.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        // name [ (args) ] [ with[out] time zone ]
        let (head, args, tail) = match (norm.find('('), norm.rfind(')')) {
            (Some(o), Some(c)) if o < c => (norm[..o].trim(), Some(&norm[o + 1..c]), norm[c + 1..].trim()),
            (None, None) => (norm.as_str(), None, ""),
            _ => return Err(ParseError::new("destination type", s)),
        };
        let (head, tail) =
            match (head.strip_suffix(" with time zone"), head.strip_suffix(" without time zone")) {
                (Some(h), _) if tail.is_empty() => (h, "with time zone"),
                (_, Some(h)) if tail.is_empty() => (h, "without time zone"),
                _ => (head, tail),
            };
        let zone = match tail {
            "" | "without time zone" => Some(false),
            "with time zone" => Some(true),
            _ => None,
        };
        let nums = |what: &'static str| args.map(|a| numbers(a, what, written)).transpose();
        let one = |what: &'static str| -> Result<Option<u32>, ParseError> {
            match nums(what)? {
                None => Ok(None),
                Some(v) if v.len() == 1 => Ok(Some(v[0])),
                Some(_) => Err(ParseError::new(what, written)),
            }
        };
        let fsp = |what: &'static str| -> Result<Option<u8>, ParseError> {
            match one(what)? {
                Some(p) if p <= 6 => Ok(Some(p as u8)),
                Some(_) => Err(ParseError::new(what, written)),
                None => Ok(None),
            }
        };
        let plain = |t: TargetType| if args.is_none() && tail.is_empty() { Some(t) } else { None };
        let typed = match (head, zone) {
            ("boolean" | "bool", _) => plain(TargetType::Boolean),
            ("smallint" | "int2", _) => plain(TargetType::SmallInt),
            ("integer" | "int" | "int4", _) => plain(TargetType::Integer),
            ("bigint" | "int8", _) => plain(TargetType::BigInt),
            ("real" | "float4", _) => plain(TargetType::Real),
            ("double precision" | "double" | "float8", _) => plain(TargetType::Double),
            ("text", _) => plain(TargetType::Text),
            ("bytea" | "bytes" | "varbinary" | "blob", _) => plain(TargetType::Bytes),
            ("date", _) => plain(TargetType::Date),
            ("json", _) => plain(TargetType::Json),
            ("uuid", _) => plain(TargetType::Uuid),
            ("numeric" | "decimal", _) if tail.is_empty() => match nums("numeric precision and scale")? {
                None => Some(TargetType::Numeric { precision: None, scale: None }),
                Some(v) if v.len() == 1 => Some(TargetType::Numeric { precision: Some(v[0]), scale: None }),
                Some(v) if v.len() == 2 && v[1] <= v[0] => {
                    Some(TargetType::Numeric { precision: Some(v[0]), scale: Some(v[1]) })
                }
                Some(_) => return Err(ParseError::new("numeric precision and scale", written)),
            },
            ("varchar" | "character varying", _) if tail.is_empty() => {
                Some(TargetType::VarChar { length: one("varchar length")? })
            }
            ("char" | "character", _) if tail.is_empty() => {
                Some(TargetType::Char { length: one("char length")?.unwrap_or(1) })
            }
            ("time", Some(false)) => Some(TargetType::Time { precision: fsp("time precision")? }),
            ("timestamp", Some(time_zone)) => {
                Some(TargetType::Timestamp { precision: fsp("timestamp precision")?, time_zone })
            }
            ("timestamptz", _) if tail.is_empty() => {
                Some(TargetType::Timestamp { precision: fsp("timestamp precision")?, time_zone: true })
            }
            _ => None,
        };
        Ok(typed.unwrap_or_else(|| TargetType::Native(written.to_string())))
    }
}

impl TryFrom<String> for TargetType {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TargetType> for String {
    fn from(t: TargetType) -> String {
        t.to_string()
    }
}

impl fmt::Display for TargetType {
    /// The SQL spelling (`varchar(20)`, `timestamp(3) with time zone`); a
    /// native name as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |p: &Option<u8>| p.map(|p| format!("({p})")).unwrap_or_default();
        match self {
            TargetType::Boolean => f.write_str("boolean"),
            TargetType::SmallInt => f.write_str("smallint"),
            TargetType::Integer => f.write_str("integer"),
            TargetType::BigInt => f.write_str("bigint"),
            TargetType::Real => f.write_str("real"),
            TargetType::Double => f.write_str("double precision"),
            TargetType::Numeric { precision: None, .. } => f.write_str("numeric"),
            TargetType::Numeric { precision: Some(p), scale: None } => write!(f, "numeric({p})"),
            TargetType::Numeric { precision: Some(p), scale: Some(s) } => write!(f, "numeric({p},{s})"),
            TargetType::Text => f.write_str("text"),
            TargetType::VarChar { length: None } => f.write_str("varchar"),
            TargetType::VarChar { length: Some(n) } => write!(f, "varchar({n})"),
            TargetType::Char { length } => write!(f, "char({length})"),
            TargetType::Bytes => f.write_str("bytes"),
            TargetType::Date => f.write_str("date"),
            TargetType::Time { precision } => write!(f, "time{}", p(precision)),
            TargetType::Timestamp { precision, time_zone: false } => write!(f, "timestamp{}", p(precision)),
            TargetType::Timestamp { precision, time_zone: true } => {
                write!(f, "timestamp{} with time zone", p(precision))
            }
            TargetType::Json => f.write_str("json"),
            TargetType::Uuid => f.write_str("uuid"),
            TargetType::Native(s) => f.write_str(s),
        }
    }
}

/// An SQL expression the sink evaluates to compute the stored value, `%d`
/// standing for the value (`lower(%d)`, `%d * 100`). The value itself is bound
/// as a parameter by sinks that support it, never spliced into the text.
/// Built by [`SqlTransform::new`], which checks its shape; serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SqlTransform(String);

impl SqlTransform {
    /// The placeholder standing for the value.
    pub const PLACEHOLDER: &'static str = "%d";

    /// A transform from its text: one expression (no `;`) using `%d` at least once.
    pub fn new(expr: impl Into<String>) -> Result<Self, ParseError> {
        let expr = expr.into();
        if !expr.contains(Self::PLACEHOLDER) || expr.contains(';') {
            return Err(ParseError::new("SQL transform (one expression using %d)", &expr));
        }
        Ok(SqlTransform(expr))
    }

    /// The expression as written, with its `%d` placeholders.
    pub fn template(&self) -> &str {
        &self.0
    }

    /// The expression with every `%d` replaced by `value` (an expression of
    /// the sink's own, such as a bound parameter `$1`).
    pub fn apply(&self, value: &str) -> String {
        self.0.replace(Self::PLACEHOLDER, value)
    }
}

impl TryFrom<String> for SqlTransform {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SqlTransform::new(s)
    }
}

impl From<SqlTransform> for String {
    fn from(t: SqlTransform) -> String {
        t.0
    }
}

impl fmt::Display for SqlTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TargetType {
        s.parse().unwrap()
    }

    #[test]
    fn sql_spellings_and_short_forms_are_typed() {
        assert_eq!(t(" BOOL "), TargetType::Boolean);
        assert_eq!(t("int4"), TargetType::Integer);
        assert_eq!(t("Double   Precision"), TargetType::Double);
        assert_eq!(t("numeric(10, 2)"), TargetType::Numeric { precision: Some(10), scale: Some(2) });
        assert_eq!(t("decimal"), TargetType::Numeric { precision: None, scale: None });
        assert_eq!(t("character varying(20)"), TargetType::VarChar { length: Some(20) });
        assert_eq!(t("char"), TargetType::Char { length: 1 });
        assert_eq!(t("time(3) without time zone"), TargetType::Time { precision: Some(3) });
        assert_eq!(t("timestamptz(6)"), TargetType::Timestamp { precision: Some(6), time_zone: true });
        assert_eq!(t("timestamp with time zone"), TargetType::Timestamp { precision: None, time_zone: true });
        assert_eq!(t("bytea"), TargetType::Bytes);
    }

    #[test]
    fn other_names_are_native_and_kept_as_written() {
        for s in ["jsonb", "citext", "time with time zone", "geometry(Point,4326)", "int[]", "bpchar(64)"] {
            assert_eq!(t(s), TargetType::Native(s.into()), "{s}");
        }
    }

    #[test]
    fn malformed_parameters_are_errors() {
        for s in ["", "varchar(x)", "numeric(2,5)", "time(9)", "char(1,2)", "int(", "text)"] {
            assert!(s.parse::<TargetType>().is_err(), "{s}");
        }
    }

    #[test]
    fn text_round_trips() {
        for s in [
            "boolean",
            "numeric(10,2)",
            "varchar(64)",
            "timestamp(3) with time zone",
            "time",
            "bytes",
            "jsonb",
        ] {
            assert_eq!(t(s).to_string(), s);
            let json = serde_json::to_string(&t(s)).unwrap();
            assert_eq!(serde_json::from_str::<TargetType>(&json).unwrap(), t(s));
        }
    }

    #[test]
    fn ranges_and_text_widths() {
        assert_eq!(TargetType::SmallInt.integer_range(), Some((-32768, 32767)));
        assert!(t("varchar(64)").holds_text_of(64));
        assert!(!t("char(63)").holds_text_of(64));
        assert!(!t("citext").holds_text_of(64));
    }

    #[test]
    fn transforms_need_the_placeholder_and_one_expression() {
        assert_eq!(SqlTransform::new("abs(%d) + %d").unwrap().apply("$1"), "abs($1) + $1");
        assert!(SqlTransform::new("lower(x)").is_err());
        assert!(SqlTransform::new("%d; drop table t").is_err());
        assert!(serde_json::from_str::<SqlTransform>("\"upper(x)\"").is_err());
    }
}
