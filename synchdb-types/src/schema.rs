//! Table identity and schema as discovered on the source.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::target::{SqlTransform, TargetType};

/// A source table: database (schema) and table name, exact case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId {
    /// MySQL database name.
    pub database: String,
    /// Table name.
    pub table: String,
}

impl TableId {
    /// A table id from its parts.
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        TableId { database: database.into(), table: table.into() }
    }
}

impl fmt::Display for TableId {
    /// `database.table`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

impl FromStr for TableId {
    type Err = ParseError;
    /// Parses `database.table` (split at the first dot).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((d, t)) if !d.is_empty() && !t.is_empty() => Ok(TableId::new(d, t)),
            _ => Err(ParseError::new("table id", s)),
        }
    }
}

/// Integer widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntWidth {
    /// TINYINT, 1 byte.
    Tiny,
    /// SMALLINT, 2 bytes.
    Small,
    /// MEDIUMINT, 3 bytes.
    Medium,
    /// INT, 4 bytes.
    Int,
    /// BIGINT, 8 bytes.
    Big,
}

impl IntWidth {
    /// Storage size in bytes.
    pub fn bytes(self) -> u8 {
        match self {
            IntWidth::Tiny => 1,
            IntWidth::Small => 2,
            IntWidth::Medium => 3,
            IntWidth::Int => 4,
            IntWidth::Big => 8,
        }
    }
}

/// Sizes of the TEXT and BLOB families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LobSize {
    /// TINYTEXT / TINYBLOB (255 bytes).
    Tiny,
    /// TEXT / BLOB (64 KiB).
    Normal,
    /// MEDIUMTEXT / MEDIUMBLOB (16 MiB).
    Medium,
    /// LONGTEXT / LONGBLOB (4 GiB).
    Long,
}

/// The source column type, with every parameter that decides its values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ColumnType {
    /// TINYINT..BIGINT. `display_width` keeps `TINYINT(1)` recognisable.
    Integer {
        /// Storage width.
        width: IntWidth,
        /// UNSIGNED.
        unsigned: bool,
        /// Display width, when declared.
        display_width: Option<u32>,
    },
    /// DECIMAL(precision, scale).
    Decimal {
        /// Total digits, 1..=65.
        precision: u32,
        /// Digits after the point, 0..=30.
        scale: u32,
        /// UNSIGNED (deprecated but legal).
        unsigned: bool,
    },
    /// FLOAT.
    Float {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// DOUBLE / REAL.
    Double {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// BIT(width).
    Bit {
        /// 1..=64.
        width: u32,
    },
    /// CHAR(length), length in characters.
    Char {
        /// Length in characters.
        length: u32,
    },
    /// VARCHAR(length), length in characters.
    VarChar {
        /// Length in characters.
        length: u32,
    },
    /// TINYTEXT..LONGTEXT.
    Text {
        /// Size class.
        size: LobSize,
    },
    /// BINARY(length), length in bytes.
    Binary {
        /// Length in bytes.
        length: u32,
    },
    /// VARBINARY(length).
    VarBinary {
        /// Length in bytes.
        length: u32,
    },
    /// TINYBLOB..LONGBLOB.
    Blob {
        /// Size class.
        size: LobSize,
    },
    /// DATE.
    Date,
    /// DATETIME(fsp).
    DateTime {
        /// Fractional seconds precision, 0..=6.
        fsp: u8,
    },
    /// TIMESTAMP(fsp).
    Timestamp {
        /// Fractional seconds precision, 0..=6.
        fsp: u8,
    },
    /// TIME(fsp).
    Time {
        /// Fractional seconds precision, 0..=6.
        fsp: u8,
    },
    /// YEAR.
    Year,
    /// MariaDB's deprecated YEAR(2): the same stored year, but every SQL
    /// reader sees its last two digits (1999 is `99`, 2005 is `05`), and so
    /// does the replica. The binlog carries the whole year.
    Year2,
    /// JSON (MySQL binary JSON, or MariaDB's LONGTEXT alias with a JSON check).
    Json,
    /// ENUM('a', ...).
    Enum {
        /// Members in definition order (index 1 is the first).
        members: Vec<String>,
    },
    /// SET('a', ...).
    Set {
        /// Members in definition order (bit 0 is the first).
        members: Vec<String>,
    },
    /// GEOMETRY and subtypes.
    Geometry {
        /// `geometry`, `point`, `linestring`, `polygon`, `multipoint`, ...
        subtype: String,
    },
    /// MariaDB UUID.
    Uuid,
    /// MariaDB INET4.
    Inet4,
    /// MariaDB INET6.
    Inet6,
}

impl ColumnType {
    /// Whether values of this type are text in a character set.
    pub fn is_textual(&self) -> bool {
        matches!(
            self,
            ColumnType::Char { .. } | ColumnType::VarChar { .. } | ColumnType::Text { .. } | ColumnType::Json
        )
    }

    /// Whether this is an unsigned numeric type.
    pub fn is_unsigned(&self) -> bool {
        match self {
            ColumnType::Integer { unsigned, .. }
            | ColumnType::Decimal { unsigned, .. }
            | ColumnType::Float { unsigned }
            | ColumnType::Double { unsigned } => *unsigned,
            _ => false,
        }
    }
}

impl fmt::Display for ColumnType {
    /// The MySQL spelling, e.g. `bigint unsigned`, `decimal(65,30)`, `enum('a','b')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uns = |u: bool| if u { " unsigned" } else { "" };
        let lob = |s: LobSize| match s {
            LobSize::Tiny => "tiny",
            LobSize::Normal => "",
            LobSize::Medium => "medium",
            LobSize::Long => "long",
        };
        let list = |m: &[String]| {
            m.iter().map(|s| format!("'{}'", s.replace('\'', "''"))).collect::<Vec<_>>().join(",")
        };
        match self {
            ColumnType::Integer { width, unsigned, display_width } => {
                let name = match width {
                    IntWidth::Tiny => "tinyint",
                    IntWidth::Small => "smallint",
                    IntWidth::Medium => "mediumint",
                    IntWidth::Int => "int",
                    IntWidth::Big => "bigint",
                };
                match display_width {
                    Some(w) => write!(f, "{name}({w}){}", uns(*unsigned)),
                    None => write!(f, "{name}{}", uns(*unsigned)),
                }
            }
            ColumnType::Decimal { precision, scale, unsigned } => {
                write!(f, "decimal({precision},{scale}){}", uns(*unsigned))
            }
            ColumnType::Float { unsigned } => write!(f, "float{}", uns(*unsigned)),
            ColumnType::Double { unsigned } => write!(f, "double{}", uns(*unsigned)),
            ColumnType::Bit { width } => write!(f, "bit({width})"),
            ColumnType::Char { length } => write!(f, "char({length})"),
            ColumnType::VarChar { length } => write!(f, "varchar({length})"),
            ColumnType::Text { size } => write!(f, "{}text", lob(*size)),
            ColumnType::Binary { length } => write!(f, "binary({length})"),
            ColumnType::VarBinary { length } => write!(f, "varbinary({length})"),
            ColumnType::Blob { size } => write!(f, "{}blob", lob(*size)),
            ColumnType::Date => f.write_str("date"),
            ColumnType::DateTime { fsp } => fsp_type(f, "datetime", *fsp),
            ColumnType::Timestamp { fsp } => fsp_type(f, "timestamp", *fsp),
            ColumnType::Time { fsp } => fsp_type(f, "time", *fsp),
            ColumnType::Year => f.write_str("year"),
            ColumnType::Year2 => f.write_str("year(2)"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::Enum { members } => write!(f, "enum({})", list(members)),
            ColumnType::Set { members } => write!(f, "set({})", list(members)),
            ColumnType::Geometry { subtype } => f.write_str(subtype),
            ColumnType::Uuid => f.write_str("uuid"),
            ColumnType::Inet4 => f.write_str("inet4"),
            ColumnType::Inet6 => f.write_str("inet6"),
        }
    }
}

fn fsp_type(f: &mut fmt::Formatter<'_>, name: &str, fsp: u8) -> fmt::Result {
    if fsp == 0 {
        f.write_str(name)
    } else {
        write!(f, "{name}({fsp})")
    }
}

/// A column default as declared on the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ColumnDefault {
    /// `DEFAULT NULL`.
    Null,
    /// A literal, in its text form without quotes (`'abc'` is `abc`, `12` is `12`).
    Literal(String),
    /// An expression such as `current_timestamp(6)` or `uuid()`, as MySQL prints it.
    Expression(String),
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnSchema {
    /// Column name, exact case.
    pub name: String,
    /// Type with its parameters.
    pub column_type: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Declared default, if any.
    pub default: Option<ColumnDefault>,
    /// AUTO_INCREMENT.
    pub auto_increment: bool,
    /// Character set of textual columns (`utf8mb4`, `latin1`, ...).
    pub charset: Option<String>,
    /// Collation of textual columns.
    pub collation: Option<String>,
    /// `ON UPDATE CURRENT_TIMESTAMP` and similar, as MySQL prints it.
    pub on_update: Option<String>,
    /// Generation expression of a generated column.
    pub generated: Option<String>,
    /// Column comment (empty when none).
    pub comment: String,
    /// A destination type chosen by a mapping rule (e.g. [`TargetType::Boolean`]
    /// for a `tinyint(1)`); sinks use it instead of their default mapping.
    #[serde(default)]
    pub target_type: Option<TargetType>,
    /// An SQL expression computing the stored value at the destination, with
    /// `%d` standing for the value (e.g. `lower(%d)`), set by a mapping rule;
    /// sinks that support it bind the value as a parameter and wrap it.
    #[serde(default)]
    pub target_expr: Option<SqlTransform>,
    /// What to store for zero dates in this column, set by a mapping rule;
    /// `None` follows the sink's policy.
    #[serde(default)]
    pub zero_dates: Option<ZeroDates>,
    /// What to do with NUL (0x00) characters in this column's text, set by a
    /// mapping rule; `None` follows the sink's policy.
    #[serde(default)]
    pub text_nul: Option<TextNul>,
}

/// What to do with NUL (0x00) characters in text, which MySQL text may
/// contain and PostgreSQL text cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TextNul {
    /// A typed error naming table, column and position (the default).
    #[default]
    Error,
    /// Remove the NUL characters.
    Strip,
    /// Replace each NUL with U+FFFD (the replacement character).
    Replace,
}

impl FromStr for TextNul {
    type Err = ParseError;
    /// `error`, `strip`, `replace`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(TextNul::Error),
            "strip" => Ok(TextNul::Strip),
            "replace" => Ok(TextNul::Replace),
            _ => Err(ParseError::new("text NUL policy", s)),
        }
    }
}

impl fmt::Display for TextNul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextNul::Error => "error",
            TextNul::Strip => "strip",
            TextNul::Replace => "replace",
        })
    }
}

/// What to store for MySQL zero dates (`0000-00-00`, `2024-00-10`, zero
/// TIMESTAMP), which calendar types cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ZeroDates {
    /// `-infinity`.
    MinusInfinity,
    /// NULL (an error on NOT NULL columns).
    Null,
    /// A typed error.
    Error,
}

impl FromStr for ZeroDates {
    type Err = ParseError;
    /// `minus_infinity` (or `-infinity`), `null`, `error`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "minus_infinity" | "minus-infinity" | "-infinity" => Ok(ZeroDates::MinusInfinity),
            "null" => Ok(ZeroDates::Null),
            "error" => Ok(ZeroDates::Error),
            _ => Err(ParseError::new("zero-date policy", s)),
        }
    }
}

impl fmt::Display for ZeroDates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZeroDates::MinusInfinity => "minus_infinity",
            ZeroDates::Null => "null",
            ZeroDates::Error => "error",
        })
    }
}

impl ColumnSchema {
    /// A nullable column with no default, charset or comment.
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Self {
        ColumnSchema {
            name: name.into(),
            column_type,
            nullable: true,
            default: None,
            auto_increment: false,
            charset: None,
            collation: None,
            on_update: None,
            generated: None,
            comment: String::new(),
            target_type: None,
            target_expr: None,
            zero_dates: None,
            text_nul: None,
        }
    }

    /// Builder-style NOT NULL.
    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }
}

/// The kind of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum IndexKind {
    /// An ordinary (B-tree or hash) index.
    Plain,
    /// UNIQUE.
    Unique,
    /// FULLTEXT.
    FullText,
    /// SPATIAL.
    Spatial,
}

/// One column (or prefix) of an index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexColumn {
    /// Column name.
    pub name: String,
    /// Prefix length in characters or bytes, for `col(10)`.
    pub prefix_length: Option<u32>,
    /// DESC order.
    pub descending: bool,
}

impl IndexColumn {
    /// A full-column ascending index part.
    pub fn new(name: impl Into<String>) -> Self {
        IndexColumn { name: name.into(), prefix_length: None, descending: false }
    }
}

/// A secondary or unique index (the primary key is [`TableSchema::primary_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexSchema {
    /// Index name.
    pub name: String,
    /// Kind.
    pub kind: IndexKind,
    /// Columns in index order.
    pub columns: Vec<IndexColumn>,
}

/// A referential action of a foreign key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReferentialAction {
    /// RESTRICT.
    Restrict,
    /// CASCADE.
    Cascade,
    /// SET NULL.
    SetNull,
    /// NO ACTION.
    NoAction,
    /// SET DEFAULT.
    SetDefault,
}

impl ReferentialAction {
    /// Parse the information_schema spelling (`CASCADE`, `SET NULL`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "RESTRICT" => ReferentialAction::Restrict,
            "CASCADE" => ReferentialAction::Cascade,
            "SET NULL" => ReferentialAction::SetNull,
            "NO ACTION" => ReferentialAction::NoAction,
            "SET DEFAULT" => ReferentialAction::SetDefault,
            _ => return None,
        })
    }

    /// The SQL spelling.
    pub fn as_sql(self) -> &'static str {
        match self {
            ReferentialAction::Restrict => "RESTRICT",
            ReferentialAction::Cascade => "CASCADE",
            ReferentialAction::SetNull => "SET NULL",
            ReferentialAction::NoAction => "NO ACTION",
            ReferentialAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// A foreign key from this table to `referenced_table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    /// Referencing columns, in order.
    pub columns: Vec<String>,
    /// The referenced table.
    pub referenced_table: TableId,
    /// Referenced columns, in order.
    pub referenced_columns: Vec<String>,
    /// ON UPDATE.
    pub on_update: ReferentialAction,
    /// ON DELETE.
    pub on_delete: ReferentialAction,
}

/// The schema of one source table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableSchema {
    /// The table.
    pub id: TableId,
    /// Columns in ordinal order; rows are positional against this list.
    pub columns: Vec<ColumnSchema>,
    /// Primary key column names in key order (empty when the table has none).
    pub primary_key: Vec<String>,
    /// Unique and secondary indexes.
    pub indexes: Vec<IndexSchema>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Table comment.
    pub comment: String,
}

impl TableSchema {
    /// A table with the given columns and no keys.
    pub fn new(id: TableId, columns: Vec<ColumnSchema>) -> Self {
        TableSchema {
            id,
            columns,
            primary_key: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            comment: String::new(),
        }
    }

    /// Position of a column by exact name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// A column by exact name.
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Positions of the primary key columns, in key order.
    pub fn primary_key_indices(&self) -> Vec<usize> {
        self.primary_key.iter().filter_map(|n| self.column_index(n)).collect()
    }

    /// The columns that identify a row: the primary key, else the first
    /// unique index whose columns are all NOT NULL and unprefixed, else none.
    pub fn identity_columns(&self) -> Vec<usize> {
        if !self.primary_key.is_empty() {
            return self.primary_key_indices();
        }
        for ix in &self.indexes {
            if ix.kind != IndexKind::Unique || ix.columns.iter().any(|c| c.prefix_length.is_some()) {
                continue;
            }
            let pos: Vec<usize> = ix.columns.iter().filter_map(|c| self.column_index(&c.name)).collect();
            if pos.len() == ix.columns.len() && pos.iter().all(|&i| !self.columns[i].nullable) {
                return pos;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_id_round_trip() {
        let t: TableId = "shop.orders".parse().unwrap();
        assert_eq!(t, TableId::new("shop", "orders"));
        assert_eq!(t.to_string(), "shop.orders");
        assert!("noschema".parse::<TableId>().is_err());
    }

    #[test]
    fn column_type_display() {
        let t = ColumnType::Integer { width: IntWidth::Big, unsigned: true, display_width: None };
        assert_eq!(t.to_string(), "bigint unsigned");
        let t = ColumnType::Enum { members: vec!["a".into(), "it's".into()] };
        assert_eq!(t.to_string(), "enum('a','it''s')");
        assert_eq!(ColumnType::DateTime { fsp: 6 }.to_string(), "datetime(6)");
    }

    #[test]
    fn identity_falls_back_to_not_null_unique() {
        let mut t = TableSchema::new(
            TableId::new("d", "t"),
            vec![
                ColumnSchema::new("a", ColumnType::Date),
                ColumnSchema::new("b", ColumnType::Date).not_null(),
            ],
        );
        assert!(t.identity_columns().is_empty());
        t.indexes.push(IndexSchema {
            name: "u".into(),
            kind: IndexKind::Unique,
            columns: vec![IndexColumn::new("b")],
        });
        assert_eq!(t.identity_columns(), vec![1]);
        t.primary_key = vec!["a".into()];
        assert_eq!(t.identity_columns(), vec![0]);
    }
}
