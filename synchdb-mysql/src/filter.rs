//! Which tables to replicate: include and exclude patterns over
//! `database.table`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use synchdb_types::TableId;

/// Databases that are never replicated unless an include pattern names them
/// literally (`mysql.user`, not `*.user`).
pub const SYSTEM_DATABASES: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// One `database.table` pattern; `*` matches any run of characters and `?`
/// one character. A pattern without a dot names a whole database (`shop`
/// is `shop.*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pattern {
    database: String,
    table: String,
}

impl Pattern {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty table pattern".into());
        }
        let (database, table) = s.split_once('.').unwrap_or((s, "*"));
        if database.is_empty() || table.is_empty() {
            return Err(format!("table pattern {s:?} must look like `database.table`"));
        }
        Ok(Pattern { database: database.to_string(), table: table.to_string() })
    }

    fn matches(&self, id: &TableId) -> bool {
        glob_match(&self.database, &id.database) && glob_match(&self.table, &id.table)
    }

    /// Whether the database part has no wildcard.
    fn literal_database(&self) -> Option<&str> {
        (!self.database.contains(['*', '?'])).then_some(self.database.as_str())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Match `text` against a glob of `*` (any run, possibly empty) and `?`
/// (one character). Case-sensitive, like table names on Linux servers.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Include and exclude patterns over `database.table`.
///
/// A table is selected when it matches an include pattern (or there is no
/// include pattern at all) and no exclude pattern. Patterns are written
/// `shop.*`, `shop.orders`, `*.audit_?`; a leading `!` makes an exclude
/// (`!shop.audit_*`); a bare database name `shop` means `shop.*`. The
/// system databases (`mysql`, `information_schema`, `performance_schema`,
/// `sys`) are only selected by an include pattern that names them without
/// a wildcard in the database part.
///
/// ```
/// use synchdb_mysql::TableFilter;
/// use synchdb_types::TableId;
///
/// let f: TableFilter = "shop.*, !shop.audit_*".parse().unwrap();
/// assert!(f.matches(&TableId::new("shop", "orders")));
/// assert!(!f.matches(&TableId::new("shop", "audit_2024")));
/// assert!(!f.matches(&TableId::new("crm", "users")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TableFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl TableFilter {
    /// A filter that selects every table of every non-system database.
    pub fn all() -> Self {
        TableFilter::default()
    }

    /// Add one pattern (`shop.*`, `!shop.audit_*`, `shop`).
    pub fn pattern(mut self, pattern: &str) -> Result<Self, String> {
        self.add(pattern)?;
        Ok(self)
    }

    /// Add an include pattern.
    pub fn include(mut self, pattern: &str) -> Result<Self, String> {
        self.include.push(Pattern::parse(pattern)?);
        Ok(self)
    }

    /// Add an exclude pattern.
    pub fn exclude(mut self, pattern: &str) -> Result<Self, String> {
        self.exclude.push(Pattern::parse(pattern)?);
        Ok(self)
    }

    fn add(&mut self, pattern: &str) -> Result<(), String> {
        let pattern = pattern.trim();
        match pattern.strip_prefix('!') {
            Some(rest) => self.exclude.push(Pattern::parse(rest)?),
            None => self.include.push(Pattern::parse(pattern)?),
        }
        Ok(())
    }

    /// Whether the filter has no include pattern (selects all non-system databases).
    pub fn is_all(&self) -> bool {
        self.include.is_empty()
    }

    /// Whether `table` is selected.
    pub fn matches(&self, table: &TableId) -> bool {
        if self.exclude.iter().any(|p| p.matches(table)) {
            return false;
        }
        if SYSTEM_DATABASES.contains(&table.database.as_str()) {
            return self
                .include
                .iter()
                .any(|p| p.literal_database() == Some(&table.database) && p.matches(table));
        }
        self.include.is_empty() || self.include.iter().any(|p| p.matches(table))
    }

    /// Whether any table of `database` may be selected (used to skip
    /// whole databases early, e.g. for DDL statements).
    pub fn matches_database(&self, database: &str) -> bool {
        if SYSTEM_DATABASES.contains(&database) {
            return self.include.iter().any(|p| p.literal_database() == Some(database));
        }
        self.include.is_empty() || self.include.iter().any(|p| glob_match(&p.database, database))
    }

    /// The databases named by the include patterns, when every include
    /// pattern names its database literally (lets discovery query only
    /// those); `None` when some pattern has a wildcard database or there is
    /// no include pattern.
    pub fn literal_databases(&self) -> Option<Vec<String>> {
        if self.include.is_empty() {
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        for p in &self.include {
            let db = p.literal_database()?.to_string();
            if !out.contains(&db) {
                out.push(db);
            }
        }
        Some(out)
    }
}

impl fmt::Display for TableFilter {
    /// The patterns, comma-separated, excludes with `!`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .include
            .iter()
            .map(ToString::to_string)
            .chain(self.exclude.iter().map(|p| format!("!{p}")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for TableFilter {
    type Err = String;
    /// Comma-separated patterns: `shop.*,!shop.audit_*`. The empty string selects everything.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = TableFilter::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            f.add(part)?;
        }
        Ok(f)
    }
}

impl Serialize for TableFilter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let parts: Vec<String> = self
            .include
            .iter()
            .map(ToString::to_string)
            .chain(self.exclude.iter().map(|p| format!("!{p}")))
            .collect();
        parts.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TableFilter {
    /// A list of patterns, or one comma-separated string.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            List(Vec<String>),
            One(String),
        }
        let mut f = TableFilter::default();
        match Repr::deserialize(deserializer)? {
            Repr::List(v) => {
                for p in v {
                    f.add(&p).map_err(serde::de::Error::custom)?;
                }
            }
            Repr::One(s) => f = s.parse().map_err(serde::de::Error::custom)?,
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TableId {
        s.parse().unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("audit_*", "audit_2024"));
        assert!(!glob_match("audit_*", "xaudit_2024"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*_log_*", "app_log_2024"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(!glob_match("Orders", "orders"));
    }

    #[test]
    fn include_and_exclude() {
        let f: TableFilter = "shop.*, !shop.audit_*, crm.users".parse().unwrap();
        assert!(f.matches(&t("shop.orders")));
        assert!(!f.matches(&t("shop.audit_1")));
        assert!(f.matches(&t("crm.users")));
        assert!(!f.matches(&t("crm.leads")));
        assert!(f.matches_database("crm"));
        assert!(!f.matches_database("other"));
        assert_eq!(f.literal_databases(), Some(vec!["shop".to_string(), "crm".to_string()]));
        assert_eq!(f.to_string(), "shop.*,crm.users,!shop.audit_*");
    }

    #[test]
    fn bare_database_and_exclude_only() {
        let f: TableFilter = "shop".parse().unwrap();
        assert!(f.matches(&t("shop.x")));
        assert!(!f.matches(&t("shopx.x")));
        let f: TableFilter = "!*.tmp_*".parse().unwrap();
        assert!(f.is_all());
        assert!(f.matches(&t("a.b")));
        assert!(!f.matches(&t("a.tmp_1")));
        assert_eq!(f.literal_databases(), None);
    }

    #[test]
    fn system_databases_need_a_literal_include() {
        let all = TableFilter::all();
        assert!(!all.matches(&t("mysql.user")));
        assert!(!all.matches_database("information_schema"));
        let f: TableFilter = "*.user".parse().unwrap();
        assert!(!f.matches(&t("mysql.user")));
        let f: TableFilter = "mysql.user".parse().unwrap();
        assert!(f.matches(&t("mysql.user")));
    }

    #[test]
    fn bad_patterns() {
        assert!("shop.".parse::<TableFilter>().is_err());
        assert!(".x".parse::<TableFilter>().is_err());
        assert!("!".parse::<TableFilter>().is_err());
    }

    #[test]
    fn serde_forms() {
        let f: TableFilter = serde_json::from_str(r#"["shop.*","!shop.audit_*"]"#).unwrap();
        assert!(!f.matches(&t("shop.audit_x")));
        let g: TableFilter = serde_json::from_str(r#""shop.*,!shop.audit_*""#).unwrap();
        assert_eq!(f, g);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"["shop.*","!shop.audit_*"]"#);
    }
}
