//! Mapping rules as data: serde (TOML and JSON files) and a builder for code.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use synchdb_types::{TableId, TextNul, ZeroDates};

use crate::error::{Error, Result};
use crate::mapping::predicate::Predicate;

/// How a column's values are masked so that the replica never holds the raw values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Mask {
    /// HMAC-SHA256 of the value's text (bytes for binary values) with the mapping's
    /// hash key, as 64 lower-case hex characters. Deterministic: equal values give
    /// equal hashes, so masked keys still find their rows and masked foreign keys
    /// still match. NULL stays NULL.
    Hash,
    /// Replace every non-NULL value by a fixed value (cast to the column type by the
    /// sink), or by NULL when `value` is absent (NOT NULL columns need a value).
    Redact {
        /// The replacement, in the column type's text form.
        #[serde(default)]
        value: Option<String>,
    },
    /// Keep the last `keep_last` characters and replace the others by `mask_char`
    /// (textual columns only; the length is kept).
    Partial {
        /// Characters kept at the end.
        keep_last: usize,
        /// The replacement character (default `*`).
        #[serde(default = "default_mask_char")]
        mask_char: char,
    },
}

fn default_mask_char() -> char {
    '*'
}

impl std::fmt::Display for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mask::Hash => f.write_str("mask hash (hmac-sha256)"),
            Mask::Redact { value: None } => f.write_str("mask redact (NULL)"),
            Mask::Redact { value: Some(v) } => write!(f, "mask redact ({v:?})"),
            Mask::Partial { keep_last, mask_char } => {
                write!(f, "mask partial (keep last {keep_last}, {mask_char:?})")
            }
        }
    }
}

/// Rules for one source column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnRule {
    /// The destination column name.
    pub rename: Option<String>,
    /// Leave the column out of the destination (schema, rows and DDL).
    pub exclude: bool,
    /// The destination type (sink syntax, e.g. `boolean`, `time`, `geometry`).
    #[serde(rename = "type")]
    pub target_type: Option<String>,
    /// An SQL expression the sink evaluates on the value, `%d` standing for it
    /// (e.g. `lower(%d)`); the value is always bound as a parameter.
    pub transform: Option<String>,
    /// A PII mask, applied in Rust before the value leaves the process.
    pub mask: Option<Mask>,
    /// What to store for zero dates in this column (overrides the sink's policy).
    pub zero_dates: Option<ZeroDates>,
    /// What to do with NUL characters in this column's text (overrides the sink's policy).
    pub text_nul: Option<TextNul>,
}

impl ColumnRule {
    /// Whether the rule changes the values or the shape of the column (everything
    /// except a rename), used to refuse a source rename that moves a column out of its rules.
    pub(crate) fn same_effect(&self, other: &ColumnRule) -> bool {
        self.exclude == other.exclude
            && self.target_type == other.target_type
            && self.transform == other.transform
            && self.mask == other.mask
            && self.zero_dates == other.zero_dates
            && self.text_nul == other.text_nul
    }

    /// Rename the column at the destination.
    pub fn rename(mut self, name: impl Into<String>) -> Self {
        self.rename = Some(name.into());
        self
    }

    /// Leave the column out.
    pub fn exclude(mut self) -> Self {
        self.exclude = true;
        self
    }

    /// Use this destination type.
    pub fn target_type(mut self, t: impl Into<String>) -> Self {
        self.target_type = Some(t.into());
        self
    }

    /// Apply an SQL expression at the destination (`%d` is the value).
    pub fn transform(mut self, expr: impl Into<String>) -> Self {
        self.transform = Some(expr.into());
        self
    }

    /// Mask the values.
    pub fn mask(mut self, mask: Mask) -> Self {
        self.mask = Some(mask);
        self
    }

    /// Per-column zero-date policy.
    pub fn zero_dates(mut self, policy: ZeroDates) -> Self {
        self.zero_dates = Some(policy);
        self
    }

    /// Per-column NUL-character policy.
    pub fn text_nul(mut self, policy: TextNul) -> Self {
        self.text_nul = Some(policy);
        self
    }
}

/// Rules for one source table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableRule {
    /// The destination table: `db.table` (any database/schema) or `table` (same database).
    pub rename: Option<String>,
    /// Leave the whole table out (schema, rows and DDL).
    pub exclude: bool,
    /// Keep only rows for which this predicate is TRUE (on source column names and raw values).
    pub filter: Option<Predicate>,
    /// Rules per source column name.
    pub columns: BTreeMap<String, ColumnRule>,
}

impl TableRule {
    /// Rename the table (`db.table` or `table`).
    pub fn rename(mut self, to: impl Into<String>) -> Self {
        self.rename = Some(to.into());
        self
    }

    /// Leave the table out.
    pub fn exclude(mut self) -> Self {
        self.exclude = true;
        self
    }

    /// Keep only the rows matching `predicate`.
    pub fn filter(mut self, predicate: Predicate) -> Self {
        self.filter = Some(predicate);
        self
    }

    /// Rules for a column.
    pub fn column(mut self, name: impl Into<String>, f: impl FnOnce(ColumnRule) -> ColumnRule) -> Self {
        let name = name.into();
        let rule = self.columns.remove(&name).unwrap_or_default();
        self.columns.insert(name, f(rule));
        self
    }
}

/// Every mapping rule of a pipeline: table and column renames, exclusions, type
/// overrides, SQL transforms, masks, zero-date policies and row filters.
///
/// ```
/// use synchdb_core::mapping::{Mask, MappingRules, Predicate};
/// let rules = MappingRules::new()
///     .hash_key("secret")
///     .source_type("tinyint(1)", "boolean")
///     .table("shop.customers", |t| {
///         t.rename("crm.clients")
///             .filter(Predicate::eq("tenant_id", 7))
///             .column("email", |c| c.mask(Mask::Hash))
///             .column("notes", |c| c.exclude())
///     });
/// let toml = r#"
/// hash_key = "secret"
/// [source_types]
/// "tinyint(1)" = "boolean"
/// [tables."shop.customers"]
/// rename = "crm.clients"
/// filter = "tenant_id = 7"
/// columns.email = { mask = { kind = "hash" } }
/// columns.notes = { exclude = true }
/// "#;
/// assert_eq!(MappingRules::from_toml_str(toml).unwrap(), rules);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MappingRules {
    /// The HMAC key of hash masks (prefer `hash_key_env`: keys do not belong in files).
    pub hash_key: Option<String>,
    /// The environment variable holding the HMAC key of hash masks.
    pub hash_key_env: Option<String>,
    /// Destination types per source type, written as synchdb prints source types
    /// (`tinyint(1)`, `time`, `geometry`); a key without parameters (`time`)
    /// matches every parameterised form (`time(6)`).
    pub source_types: BTreeMap<String, String>,
    /// Rules per source table, `db.table`.
    pub tables: BTreeMap<String, TableRule>,
}

impl MappingRules {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse TOML.
    pub fn from_toml_str(s: &str) -> Result<Self> {
        toml::from_str(s).map_err(|e| Error::config("invalid mapping (TOML)").with_source(e))
    }

    /// Parse JSON.
    pub fn from_json_str(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::config("invalid mapping (JSON)").with_source(e))
    }

    /// Load a `.toml` or `.json` file (by extension).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read mapping file {}", path.display())).with_source(e)
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let parsed = match ext.as_str() {
            "toml" => Self::from_toml_str(&text),
            "json" => Self::from_json_str(&text),
            _ => {
                return Err(Error::config(format!(
                    "mapping file {} must end in .toml or .json",
                    path.display()
                )))
            }
        };
        parsed.map_err(|e| Error::config(format!("in mapping file {}", path.display())).with_source(e))
    }

    /// The HMAC key (inline, or from the environment variable).
    pub fn hash_key(mut self, key: impl Into<String>) -> Self {
        self.hash_key = Some(key.into());
        self
    }

    /// Read the HMAC key from this environment variable.
    pub fn hash_key_env(mut self, var: impl Into<String>) -> Self {
        self.hash_key_env = Some(var.into());
        self
    }

    /// A destination type for every column of a source type.
    pub fn source_type(mut self, source: impl Into<String>, target: impl Into<String>) -> Self {
        self.source_types.insert(source.into().to_ascii_lowercase(), target.into());
        self
    }

    /// Rules for a table (`db.table`).
    pub fn table(mut self, id: impl Into<String>, f: impl FnOnce(TableRule) -> TableRule) -> Self {
        let id = id.into();
        let rule = self.tables.remove(&id).unwrap_or_default();
        self.tables.insert(id, f(rule));
        self
    }

    /// Whether any rule masks with a hash.
    pub(crate) fn uses_hash(&self) -> bool {
        self.tables.values().flat_map(|t| t.columns.values()).any(|c| c.mask == Some(Mask::Hash))
    }

    /// The destination type for a source type, from `source_types`.
    pub(crate) fn type_for_source(&self, source_type: &str) -> Option<&str> {
        let exact = source_type.to_ascii_lowercase();
        if let Some(t) = self.source_types.get(&exact) {
            return Some(t);
        }
        self.source_types.get(&strip_params(&exact)).map(String::as_str)
    }
}

/// `decimal(10,2) unsigned` → `decimal unsigned`; `time(6)` → `time`.
fn strip_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '\'' if depth > 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Parse a destination table: `db.table`, or `table` in the source's database.
pub(crate) fn parse_target(source: &TableId, s: &str) -> Result<TableId> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::config("empty table rename").with_table(source.clone()));
    }
    if s.contains('.') {
        s.parse::<TableId>().map_err(|e| Error::config(format!("invalid table rename {s:?}")).with_source(e))
    } else {
        Ok(TableId::new(source.database.clone(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_toml_agree() {
        let json = r#"{
            "hash_key_env": "KEY",
            "source_types": {"time": "time"},
            "tables": {
                "shop.users": {
                    "filter": "tenant IN (1, 2)",
                    "columns": {
                        "phone": {"mask": {"kind": "partial", "keep_last": 4}},
                        "ssn": {"mask": {"kind": "redact", "value": "xxx"}},
                        "born": {"zero_dates": "null", "type": "date"},
                        "name": {"rename": "full_name", "transform": "upper(%d)"}
                    }
                }
            }
        }"#;
        let toml = r#"
            hash_key_env = "KEY"
            source_types = { time = "time" }
            [tables."shop.users"]
            filter = "tenant IN (1, 2)"
            [tables."shop.users".columns]
            phone = { mask = { kind = "partial", keep_last = 4 } }
            ssn = { mask = { kind = "redact", value = "xxx" } }
            born = { zero_dates = "null", type = "date" }
            name = { rename = "full_name", transform = "upper(%d)" }
        "#;
        let a = MappingRules::from_json_str(json).unwrap();
        let b = MappingRules::from_toml_str(toml).unwrap();
        assert_eq!(a, b);
        let phone = &a.tables["shop.users"].columns["phone"];
        assert_eq!(phone.mask, Some(Mask::Partial { keep_last: 4, mask_char: '*' }));
        let back = MappingRules::from_json_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert_eq!(a.type_for_source("time(6)"), Some("time"));
        assert_eq!(a.type_for_source("timestamp(6)"), None);
    }

    #[test]
    fn unknown_fields_and_bad_filters_are_errors() {
        assert!(MappingRules::from_toml_str("[tables.\"a.b\"]\nrenme = \"x\"").is_err());
        assert!(MappingRules::from_toml_str("[tables.\"a.b\"]\nfilter = \"a = \"").is_err());
        assert!(
            MappingRules::from_toml_str("[tables.\"a.b\".columns.c]\nmask = { kind = \"blur\" }").is_err()
        );
    }

    #[test]
    fn targets() {
        let src = TableId::new("shop", "customers");
        assert_eq!(parse_target(&src, "crm.clients").unwrap(), TableId::new("crm", "clients"));
        assert_eq!(parse_target(&src, "clients").unwrap(), TableId::new("shop", "clients"));
        assert!(parse_target(&src, ".x").is_err());
        assert_eq!(strip_params("decimal(10,2) unsigned"), "decimal unsigned");
        assert_eq!(strip_params("enum('a(',')')"), "enum");
    }
}
