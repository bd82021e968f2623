//! [`Mapping`]: the converter that applies [`MappingRules`] to schemas, snapshot
//! rows, row changes and DDL alike.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use synchdb_types::{
    ChangeEvent, ColumnPosition, ColumnSchema, ColumnType, DeleteEvent, InsertEvent, Row, SchemaChange,
    SchemaChangeEvent, TableId, TableSchema, TruncateEvent, UpdateEvent, Value,
};
use tracing::warn;

use crate::converter::Converter;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::explain::{ColumnMappingView, TableMappingView};
use crate::mapping::mask::{hash_value, partial_mask};
use crate::mapping::rules::{parse_target, ColumnRule, MappingRules, Mask, TableRule};

/// One value step of a column, in order.
#[derive(Debug, Clone)]
enum Step {
    Hash,
    Redact(Value),
    Partial {
        keep_last: usize,
        mask_char: char,
    },
    /// Integer 0 / non-zero to `false` / `true` for a `boolean` destination.
    ToBool,
    /// TIME values must fit PostgreSQL's `time` (00:00:00..24:00:00).
    CheckTime,
    /// Integers must fit a narrower destination integer type.
    CheckInt {
        min: i128,
        max: i128,
        ty: &'static str,
    },
}

#[derive(Debug)]
struct ColumnPlan {
    /// The destination column, `None` when excluded.
    target: Option<ColumnSchema>,
    steps: Vec<Step>,
}

/// The mapping of one source schema (cached per schema).
#[derive(Debug)]
struct TablePlan {
    /// The destination schema, `None` when the table is excluded.
    target: Option<Arc<TableSchema>>,
    columns: Vec<ColumnPlan>,
    filter: Option<crate::mapping::Predicate>,
    /// No value step and no excluded column: row values pass unchanged (the filter still applies).
    rows_unchanged: bool,
}

/// A source schema (kept to compare by pointer, then by value) and its plan.
type CachedPlan = (Arc<TableSchema>, Arc<TablePlan>);

/// The mapping converter: table and column renames, exclusions, type overrides,
/// SQL transforms (carried to the sink in [`ColumnSchema::target_expr`]), masks,
/// per-column zero-date policies and row filters, applied consistently to the
/// snapshot, to row changes (both images of updates, so masked keys still match)
/// and to DDL (a renamed table's `ALTER TABLE` lands on the renamed table; DDL on
/// an excluded column is ignored).
///
/// Within one row the filter is evaluated first, on the source column names and
/// raw values; then masks and value adaptations run; then columns are dropped and
/// renamed. Converted schemas are cached per source schema.
///
/// ```
/// use std::sync::Arc;
/// use synchdb_core::mapping::{Mapping, MappingRules, Mask};
/// use synchdb_core::Converter;
/// use synchdb_core::types::*;
///
/// let rules = MappingRules::new().hash_key("k").table("shop.users", |t| {
///     t.rename("crm.people").column("email", |c| c.mask(Mask::Hash)).column("pw", |c| c.exclude())
/// });
/// let mapping = Mapping::new(rules)?;
/// let users = Arc::new(TableSchema::new(TableId::new("shop", "users"), vec![
///     ColumnSchema::new("email", ColumnType::VarChar { length: 100 }),
///     ColumnSchema::new("pw", ColumnType::VarChar { length: 100 }),
/// ]));
/// mapping.validate(&[(*users).clone()])?;
/// let target = mapping.convert_table(&users)?.unwrap();
/// assert_eq!(target.id, TableId::new("crm", "people"));
/// assert_eq!(target.columns.len(), 1);
/// let row = mapping.convert_row(&users, vec![Value::Text("a@b.c".into()), Value::Text("x".into())])?.unwrap();
/// assert!(matches!(&row[0], Value::Text(h) if h.len() == 64));
/// # Ok::<(), synchdb_core::Error>(())
/// ```
pub struct Mapping {
    rules: MappingRules,
    key: Option<Vec<u8>>,
    name: String,
    cache: Mutex<HashMap<TableId, CachedPlan>>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("rules", &self.rules.tables.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn cfg_err(table: &TableId, column: &str, message: impl Into<String>) -> Error {
    Error::config(message).with_table(table.clone()).with_column(column.to_string())
}

/// Whether a destination type (sink syntax) holds a 64-character hex string.
fn type_holds_hash(t: &str) -> bool {
    let l = t.trim().to_ascii_lowercase();
    if l == "text" || l == "varchar" || l == "character varying" {
        return true;
    }
    let len = |prefix: &str| -> Option<u64> {
        l.strip_prefix(prefix)?.trim().strip_prefix('(')?.strip_suffix(')')?.trim().parse().ok()
    };
    ["varchar", "character varying", "char", "character", "bpchar"]
        .iter()
        .any(|p| len(p).is_some_and(|n| n >= 64))
}

fn source_holds_hash(t: &ColumnType) -> bool {
    match t {
        ColumnType::Text { .. } => true,
        ColumnType::Char { length } | ColumnType::VarChar { length } => *length >= 64,
        _ => false,
    }
}

/// `(min, max, name)` of PostgreSQL integer types narrower than every MySQL integer.
fn int_range(t: &str) -> Option<(i128, i128, &'static str)> {
    match t.trim().to_ascii_lowercase().as_str() {
        "smallint" | "int2" => Some((i16::MIN.into(), i16::MAX.into(), "smallint")),
        "integer" | "int" | "int4" => Some((i32::MIN.into(), i32::MAX.into(), "integer")),
        "bigint" | "int8" => Some((i64::MIN.into(), i64::MAX.into(), "bigint")),
        _ => None,
    }
}

fn is_pg_time(t: &str) -> bool {
    let l = t.trim().to_ascii_lowercase();
    l == "time" || l.starts_with("time(") || l.starts_with("time without")
}

/// Check an SQL transform's shape (the sink checks that it compiles).
pub(crate) fn check_transform(table: &TableId, column: &str, expr: &str) -> Result<()> {
    if !expr.contains("%d") {
        return Err(cfg_err(table, column, format!("transform {expr:?} must contain %d (the value)")));
    }
    if expr.contains(';') {
        return Err(cfg_err(table, column, format!("transform {expr:?} must be one expression (no ';')")));
    }
    Ok(())
}

/// Whether two table rules treat columns and rows the same (everything but the table rename).
fn same_table_rules(a: Option<&TableRule>, b: Option<&TableRule>) -> bool {
    let none = TableRule::default();
    let (a, b) = (a.unwrap_or(&none), b.unwrap_or(&none));
    a.exclude == b.exclude && a.filter == b.filter && a.columns == b.columns
}

impl Mapping {
    /// A mapping converter for these rules. Checks what needs no source schema:
    /// table renames, transform shapes, and that a hash key is available when a
    /// rule hashes (from `hash_key` or the `hash_key_env` variable).
    pub fn new(rules: MappingRules) -> Result<Mapping> {
        for (id, t) in &rules.tables {
            let sid: TableId = id.parse().map_err(|e| {
                Error::config(format!("mapping rule for {id:?}: not db.table")).with_source(e)
            })?;
            if let Some(r) = &t.rename {
                parse_target(&sid, r)?;
            }
            for (c, rule) in &t.columns {
                if let Some(x) = &rule.transform {
                    check_transform(&sid, c, x)?;
                }
                if rule.rename.as_deref().is_some_and(|n| n.trim().is_empty()) {
                    return Err(cfg_err(&sid, c, "empty column rename"));
                }
                if rule.exclude && (rule.mask.is_some() || rule.transform.is_some() || rule.rename.is_some())
                {
                    return Err(cfg_err(
                        &sid,
                        c,
                        "an excluded column cannot also be renamed, masked or transformed",
                    ));
                }
            }
        }
        let key = match (&rules.hash_key, &rules.hash_key_env) {
            (Some(k), _) => Some(k.as_bytes().to_vec()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k.into_bytes()),
                _ if rules.uses_hash() => {
                    return Err(Error::config(format!(
                        "hash masks need a key: environment variable {var} is not set"
                    )))
                }
                _ => None,
            },
            (None, None) => None,
        };
        if rules.uses_hash() && key.as_ref().is_none_or(|k| k.is_empty()) {
            return Err(Error::config("hash masks need a key: set hash_key_env (or hash_key)"));
        }
        Ok(Mapping { rules, key, name: "mapping".into(), cache: Mutex::new(HashMap::new()) })
    }

    /// Name the converter (for logs and errors; default `mapping`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The rules.
    pub fn rules(&self) -> &MappingRules {
        &self.rules
    }

    fn table_rule(&self, id: &TableId) -> Option<&TableRule> {
        self.rules.tables.get(&id.to_string())
    }

    /// The destination of a source table: `None` when excluded.
    pub fn target_table(&self, id: &TableId) -> Result<Option<TableId>> {
        match self.table_rule(id) {
            Some(r) if r.exclude => Ok(None),
            Some(TableRule { rename: Some(to), .. }) => parse_target(id, to).map(Some),
            _ => Ok(Some(id.clone())),
        }
    }

    /// The destination name of a source column: `None` when excluded.
    fn column_name(&self, table: &TableId, column: &str) -> Option<String> {
        match self.table_rule(table).and_then(|t| t.columns.get(column)) {
            Some(r) if r.exclude => None,
            Some(ColumnRule { rename: Some(n), .. }) => Some(n.clone()),
            _ => Some(column.to_string()),
        }
    }

    fn column_rule(&self, table: &TableId, column: &str) -> Option<&ColumnRule> {
        self.table_rule(table).and_then(|t| t.columns.get(column))
    }

    /// Map one column: the destination column (`None` when excluded) and its value steps.
    fn map_column(
        &self,
        table: &TableId,
        col: &ColumnSchema,
        key_columns: &[&str],
    ) -> Result<(Option<ColumnSchema>, Vec<Step>)> {
        let none = ColumnRule::default();
        let rule = self.column_rule(table, &col.name).unwrap_or(&none);
        let err = |m: String| cfg_err(table, &col.name, m);
        let is_key = key_columns.contains(&col.name.as_str());
        if rule.exclude {
            if is_key {
                return Err(
                    err("cannot exclude a column of the row identity (primary or unique key)".into()),
                );
            }
            return Ok((None, Vec::new()));
        }
        let mut out = col.clone();
        if let Some(n) = &rule.rename {
            out.name = n.clone();
        }
        let explicit: Option<String> = rule
            .target_type
            .clone()
            .or_else(|| self.rules.type_for_source(&col.column_type.to_string()).map(str::to_string));
        let mut steps = Vec::new();
        match &rule.mask {
            Some(Mask::Hash) => {
                steps.push(Step::Hash);
                match &explicit {
                    Some(t) if !type_holds_hash(t) => {
                        return Err(err(format!("type {t} cannot hold the 64-character hash of a hash mask")))
                    }
                    Some(_) => {}
                    None if !source_holds_hash(&col.column_type) => out.target_type = Some("text".into()),
                    None => {}
                }
                out.default = None;
            }
            Some(Mask::Redact { value }) => {
                if is_key {
                    return Err(err(
                        "cannot redact a key column (every row would get the same key); use a hash mask"
                            .into(),
                    ));
                }
                match value {
                    None if !col.nullable => {
                        return Err(err(
                            "redacting a NOT NULL column to NULL: give the mask a fixed value".into()
                        ))
                    }
                    None => steps.push(Step::Redact(Value::Null)),
                    Some(v) => {
                        if let ColumnType::Char { length } | ColumnType::VarChar { length } = &col.column_type
                        {
                            if explicit.is_none() && v.chars().count() > *length as usize {
                                return Err(err(format!(
                                    "redaction value {v:?} is longer than {}",
                                    col.column_type
                                )));
                            }
                        }
                        if let ColumnType::Enum { members } = &col.column_type {
                            if explicit.is_none() && !v.is_empty() && !members.contains(v) {
                                return Err(err(format!(
                                    "redaction value {v:?} is not a member of the ENUM"
                                )));
                            }
                        }
                        steps.push(Step::Redact(Value::Text(v.clone())));
                    }
                }
                out.default = None;
            }
            Some(Mask::Partial { keep_last, mask_char }) => {
                match &col.column_type {
                    ColumnType::Char { .. } | ColumnType::VarChar { .. } | ColumnType::Text { .. } => {}
                    ColumnType::Enum { .. } if explicit.is_none() => out.target_type = Some("text".into()),
                    ColumnType::Enum { .. } => {}
                    other => return Err(err(format!("a partial mask needs a textual column, not {other}"))),
                }
                steps.push(Step::Partial { keep_last: *keep_last, mask_char: *mask_char });
                out.default = None;
            }
            None => {}
        }
        if let Some(t) = explicit {
            out.target_type = Some(t);
        }
        if rule.mask.is_none() {
            if let Some(t) = &out.target_type {
                let l = t.trim().to_ascii_lowercase();
                let integer = matches!(col.column_type, ColumnType::Integer { .. } | ColumnType::Year);
                if (l == "boolean" || l == "bool")
                    && (integer || matches!(col.column_type, ColumnType::Bit { .. }))
                {
                    steps.push(Step::ToBool);
                } else if is_pg_time(&l) && matches!(col.column_type, ColumnType::Time { .. }) {
                    steps.push(Step::CheckTime);
                } else if let (Some((min, max, ty)), true) = (int_range(&l), integer) {
                    steps.push(Step::CheckInt { min, max, ty });
                }
            }
        }
        if let Some(x) = &rule.transform {
            check_transform(table, &col.name, x)?;
            out.target_expr = Some(x.clone());
        }
        if let Some(z) = rule.zero_dates {
            out.zero_dates = Some(z);
        }
        if let Some(n) = rule.text_nul {
            out.text_nul = Some(n);
        }
        Ok((Some(out), steps))
    }

    fn build_plan(&self, t: &TableSchema) -> Result<TablePlan> {
        let rule = self.table_rule(&t.id);
        let Some(target_id) = self.target_table(&t.id)? else {
            return Ok(TablePlan { target: None, columns: Vec::new(), filter: None, rows_unchanged: true });
        };
        if let Some(r) = rule {
            if let Some(f) = &r.filter {
                for c in f.columns() {
                    if t.column(c).is_none() {
                        return Err(cfg_err(&t.id, c, "row filter names a column the table does not have"));
                    }
                }
            }
        }
        let key_idx = t.identity_columns();
        let key_columns: Vec<&str> = key_idx.iter().map(|&i| t.columns[i].name.as_str()).collect();
        let mut columns = Vec::with_capacity(t.columns.len());
        let mut names = HashSet::new();
        for c in &t.columns {
            let (target, steps) = self.map_column(&t.id, c, &key_columns)?;
            if let Some(tc) = &target {
                if !names.insert(tc.name.clone()) {
                    return Err(cfg_err(
                        &t.id,
                        &c.name,
                        format!("two columns map to the destination column {:?}", tc.name),
                    ));
                }
            }
            columns.push(ColumnPlan { target, steps });
        }
        let rows_unchanged = columns.iter().all(|c| c.target.is_some() && c.steps.is_empty());
        let rename = |n: &str| self.column_name(&t.id, n);
        let mut out = TableSchema::new(target_id, columns.iter().filter_map(|c| c.target.clone()).collect());
        out.comment = t.comment.clone();
        out.primary_key = t.primary_key.iter().filter_map(|n| rename(n)).collect();
        for ix in &t.indexes {
            let mut ix = ix.clone();
            let mut keep = true;
            for c in &mut ix.columns {
                match rename(&c.name) {
                    Some(n) => c.name = n,
                    None => keep = false,
                }
            }
            if keep {
                out.indexes.push(ix);
            }
        }
        for fk in &t.foreign_keys {
            if let Some(fk) = self.map_foreign_key(&t.id, fk)? {
                out.foreign_keys.push(fk);
            }
        }
        let filter = rule.and_then(|r| r.filter.clone());
        Ok(TablePlan { target: Some(Arc::new(out)), columns, filter, rows_unchanged })
    }

    /// A foreign key with both ends mapped; `None` (logged) when it is left out.
    fn map_foreign_key(
        &self,
        table: &TableId,
        fk: &synchdb_types::ForeignKey,
    ) -> Result<Option<synchdb_types::ForeignKey>> {
        Ok(match self.foreign_key_target(table, fk)? {
            Ok(fk) => Some(fk),
            Err(why) => {
                warn!(table = %table, foreign_key = %fk.name, "foreign key left out: {why}");
                None
            }
        })
    }

    /// A foreign key with both ends mapped, or why it is left out: an end is
    /// excluded, the two ends are masked differently (their values could not
    /// match), or the referenced table has a row filter (rows that leave the
    /// filter are deleted on the replica while rows referencing them stay).
    fn foreign_key_target(
        &self,
        table: &TableId,
        fk: &synchdb_types::ForeignKey,
    ) -> Result<std::result::Result<synchdb_types::ForeignKey, String>> {
        let Some(ref_table) = self.target_table(&fk.referenced_table)? else {
            return Ok(Err(format!("the referenced table {} is excluded", fk.referenced_table)));
        };
        if self.table_rule(&fk.referenced_table).is_some_and(|r| r.filter.is_some()) {
            return Ok(Err(format!(
                "the referenced table {} has a row filter, so references to filtered-out rows dangle",
                fk.referenced_table
            )));
        }
        let mut out = fk.clone();
        out.referenced_table = ref_table;
        for (i, (c, r)) in fk.columns.iter().zip(&fk.referenced_columns).enumerate() {
            let (Some(cn), Some(rn)) =
                (self.column_name(table, c), self.column_name(&fk.referenced_table, r))
            else {
                return Ok(Err("a column at one end is excluded".into()));
            };
            let mask = |t: &TableId, n: &str| self.column_rule(t, n).and_then(|r| r.mask.clone());
            if mask(table, c) != mask(&fk.referenced_table, r) {
                return Ok(Err("its columns are masked differently at both ends".into()));
            }
            out.columns[i] = cn;
            out.referenced_columns[i] = rn;
        }
        Ok(Ok(out))
    }

    fn plan(&self, table: &Arc<TableSchema>) -> Result<Arc<TablePlan>> {
        let mut cache = self.cache.lock().expect("mapping cache poisoned");
        if let Some((source, plan)) = cache.get(&table.id) {
            if Arc::ptr_eq(source, table) || **source == **table {
                return Ok(plan.clone());
            }
        }
        let plan = Arc::new(self.build_plan(table)?);
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(table.id.clone(), (table.clone(), plan.clone()));
        Ok(plan)
    }

    fn apply_step(&self, step: &Step, v: Value) -> std::result::Result<Value, String> {
        Ok(match step {
            Step::Hash => hash_value(self.key.as_deref().unwrap_or_default(), &v),
            Step::Redact(r) => {
                if v.is_null() {
                    v
                } else {
                    r.clone()
                }
            }
            Step::Partial { keep_last, mask_char } => partial_mask(&v, *keep_last, *mask_char)
                .ok_or_else(|| format!("partial mask of a {} value", v.kind()))?,
            Step::ToBool => match v {
                Value::Int(i) => Value::Text((i != 0).to_string()),
                Value::UInt(u) => Value::Text((u != 0).to_string()),
                Value::Year(y) => Value::Text((y != 0).to_string()),
                Value::Bit(b) => Value::Text((b.value != 0).to_string()),
                other => other,
            },
            Step::CheckTime => match v {
                Value::Time(t) if t.micros < 0 || t.micros > 86_400_000_000 => {
                    return Err(format!(
                        "TIME {t} does not fit the destination type time (00:00:00 to 24:00:00)"
                    ))
                }
                other => other,
            },
            Step::CheckInt { min, max, ty } => {
                let n: Option<i128> = match &v {
                    Value::Int(i) => Some((*i).into()),
                    Value::UInt(u) => Some((*u).into()),
                    _ => None,
                };
                if let Some(n) = n {
                    if n < *min || n > *max {
                        return Err(format!("{n} does not fit the destination type {ty}"));
                    }
                }
                v
            }
        })
    }

    fn map_values(&self, source: &TableSchema, plan: &TablePlan, row: Row) -> Result<Row> {
        if plan.rows_unchanged {
            return Ok(row);
        }
        if row.len() != plan.columns.len() {
            return Err(Error::new(
                ErrorKind::Convert,
                format!("row has {} values, table has {} columns", row.len(), plan.columns.len()),
            )
            .with_table(source.id.clone()));
        }
        let mut out = Vec::with_capacity(row.len());
        for ((cp, v), col) in plan.columns.iter().zip(row).zip(&source.columns) {
            if cp.target.is_none() {
                continue;
            }
            let mut v = v;
            for s in &cp.steps {
                v = self.apply_step(s, v).map_err(|m| {
                    Error::new(ErrorKind::Convert, m)
                        .with_table(source.id.clone())
                        .with_column(col.name.clone())
                })?;
            }
            out.push(v);
        }
        Ok(out)
    }

    fn keep(&self, source: &TableSchema, plan: &TablePlan, row: &Row) -> Result<bool> {
        match &plan.filter {
            None => Ok(true),
            Some(f) => f
                .matches(&|c: &str| source.column_index(c).and_then(|i| row.get(i)))
                .map_err(|e| e.with_table(source.id.clone())),
        }
    }

    /// Check the rules against the source schema before any data moves:
    /// [`check_names`](Self::check_names), then [`check_tables`](Self::check_tables).
    pub fn validate(&self, tables: &[TableSchema]) -> Result<()> {
        self.check_names(tables)?;
        self.check_tables(tables)
    }

    /// Every table and column a rule names exists in `tables` (a misspelt name in an
    /// exclusion or mask rule would otherwise let the data through). On a restart,
    /// DDL may have dropped a named table or column since the first run: callers may
    /// then treat this check's error as a warning.
    pub fn check_names(&self, tables: &[TableSchema]) -> Result<()> {
        let by_id: HashMap<&TableId, &TableSchema> = tables.iter().map(|t| (&t.id, t)).collect();
        for (id, rule) in &self.rules.tables {
            let sid: TableId =
                id.parse().map_err(|e| Error::config(format!("mapping rule {id:?}")).with_source(e))?;
            let Some(t) = by_id.get(&sid) else {
                return Err(Error::config(
                    "a mapping rule names a table the source does not have (or does not replicate)",
                )
                .with_table(sid));
            };
            for c in rule.columns.keys() {
                if t.column(c).is_none() {
                    return Err(cfg_err(&sid, c, "a mapping rule names a column the table does not have"));
                }
            }
        }
        Ok(())
    }

    /// Every table maps (types, masks, filters, renames), and no two tables or
    /// columns map to one destination.
    pub fn check_tables(&self, tables: &[TableSchema]) -> Result<()> {
        let mut targets: HashMap<TableId, TableId> = HashMap::new();
        for t in tables {
            let plan = self.build_plan(t)?;
            if let Some(target) = &plan.target {
                if let Some(other) = targets.insert(target.id.clone(), t.id.clone()) {
                    return Err(Error::config(format!(
                        "tables {other} and {} both map to {}",
                        t.id, target.id
                    ))
                    .with_table(t.id.clone()));
                }
            }
        }
        Ok(())
    }

    /// For each source table and column: the destination name, the destination type
    /// chosen by a rule (the sink's default otherwise; fill it with
    /// [`TableMappingView::resolve_types`]) and the transforms applied.
    pub fn explain(&self, tables: &[TableSchema]) -> Result<Vec<TableMappingView>> {
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            let plan = self.build_plan(t)?;
            let rule = self.table_rule(&t.id);
            let columns = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let cp = plan.columns.get(i);
                    let target = cp.and_then(|p| p.target.clone());
                    let mut transforms = Vec::new();
                    if let Some(r) = self.column_rule(&t.id, &c.name) {
                        if let Some(m) = &r.mask {
                            transforms.push(m.to_string());
                        }
                        if let Some(x) = &r.transform {
                            transforms.push(format!("sql {x}"));
                        }
                        if let Some(z) = r.zero_dates {
                            transforms.push(format!("zero dates {z}"));
                        }
                        if let Some(n) = r.text_nul {
                            transforms.push(format!("NUL characters {n}"));
                        }
                    }
                    for s in cp.map(|p| p.steps.as_slice()).unwrap_or_default() {
                        match s {
                            Step::ToBool => transforms.push("0/1 to false/true".into()),
                            Step::CheckTime => transforms.push("checked to fit time".into()),
                            Step::CheckInt { ty, .. } => transforms.push(format!("checked to fit {ty}")),
                            _ => {}
                        }
                    }
                    ColumnMappingView {
                        source: c.name.clone(),
                        source_type: c.column_type.to_string(),
                        target_type: target.as_ref().and_then(|t| t.target_type.clone()),
                        target,
                        transforms,
                    }
                })
                .collect();
            let mut left_out_foreign_keys = Vec::new();
            if plan.target.is_some() {
                for fk in &t.foreign_keys {
                    if let Err(why) = self.foreign_key_target(&t.id, fk)? {
                        left_out_foreign_keys.push((fk.name.clone(), why));
                    }
                }
            }
            out.push(TableMappingView {
                left_out_foreign_keys,
                source: t.id.clone(),
                target: plan.target.as_ref().map(|s| s.id.clone()),
                filter: rule.and_then(|r| r.filter.as_ref()).map(ToString::to_string),
                target_schema: plan.target.clone(),
                columns,
            });
        }
        Ok(out)
    }

    /// Rewrite a schema change for the destination; `None` when it is ignored
    /// (excluded table or column).
    fn map_change(&self, change: SchemaChange, after: Option<&TableSchema>) -> Result<Option<SchemaChange>> {
        let table = change.table().clone();
        let conv_err = |m: String| Error::new(ErrorKind::Convert, m).with_table(table.clone());
        let Some(target) = self.target_table(&table)? else {
            if let SchemaChange::RenameTable { to, .. } = &change {
                if self.target_table(to)?.is_some() {
                    return Err(conv_err(format!(
                        "RENAME TABLE moves an excluded table to {to}, which is not excluded"
                    )));
                }
            }
            return Ok(None);
        };
        let keys: Vec<&str> = after
            .map(|t| t.identity_columns().into_iter().map(|i| t.columns[i].name.as_str()).collect())
            .unwrap_or_default();
        let col =
            |c: &ColumnSchema| -> Result<Option<ColumnSchema>> { Ok(self.map_column(&table, c, &keys)?.0) };
        let name = |n: &str| self.column_name(&table, n);
        let position = |p: ColumnPosition| match p {
            ColumnPosition::After(n) => name(&n).map(ColumnPosition::After).unwrap_or(ColumnPosition::Last),
            other => other,
        };
        let same_column_rules = |a: &str, b: &str| {
            let none = ColumnRule::default();
            let (ra, rb) =
                (self.column_rule(&table, a).unwrap_or(&none), self.column_rule(&table, b).unwrap_or(&none));
            ra.same_effect(rb)
        };
        Ok(Some(match change {
            SchemaChange::CreateTable { schema } => {
                let plan = self.build_plan(&schema)?;
                match &plan.target {
                    Some(t) => SchemaChange::CreateTable { schema: (**t).clone() },
                    None => return Ok(None),
                }
            }
            SchemaChange::DropTable { .. } => SchemaChange::DropTable { table: target },
            SchemaChange::RenameTable { from, to } => {
                let Some(to_target) = self.target_table(&to)? else {
                    return Err(conv_err(format!("RENAME TABLE moves the table to {to}, which is excluded")));
                };
                if !same_table_rules(self.table_rule(&from), self.table_rule(&to)) {
                    return Err(conv_err(format!(
                        "RENAME TABLE {from} TO {to}: the two names have different column or filter rules; \
                         give {to} the same rules"
                    )));
                }
                if to_target == target {
                    return Ok(None);
                }
                SchemaChange::RenameTable { from: target, to: to_target }
            }
            SchemaChange::AddColumn { column, position: p, .. } => match col(&column)? {
                Some(c) => SchemaChange::AddColumn { table: target, column: c, position: position(p) },
                None => return Ok(None),
            },
            SchemaChange::DropColumn { name: n, .. } => match name(&n) {
                Some(n) => SchemaChange::DropColumn { table: target, name: n },
                None => return Ok(None),
            },
            SchemaChange::ModifyColumn { old, new, position: p, .. } => {
                if !same_column_rules(&old.name, &new.name) {
                    return Err(conv_err(format!(
                        "column {} renamed to {} on the source, and the two names have different mapping rules",
                        old.name, new.name
                    )));
                }
                match (col(&old)?, col(&new)?) {
                    (Some(o), Some(n)) => SchemaChange::ModifyColumn {
                        table: target,
                        old: o,
                        new: n,
                        position: p.map(position),
                    },
                    _ => return Ok(None),
                }
            }
            SchemaChange::RenameColumn { from, to, .. } => {
                if !same_column_rules(&from, &to) {
                    return Err(conv_err(format!(
                        "column {from} renamed to {to} on the source, and the two names have different mapping rules"
                    )));
                }
                match (name(&from), name(&to)) {
                    (Some(f), Some(t)) if f == t => return Ok(None),
                    (Some(f), Some(t)) => SchemaChange::RenameColumn { table: target, from: f, to: t },
                    _ => return Ok(None),
                }
            }
            SchemaChange::CreateIndex { mut index, .. } => {
                for c in &mut index.columns {
                    match name(&c.name) {
                        Some(n) => c.name = n,
                        None => return Ok(None),
                    }
                }
                SchemaChange::CreateIndex { table: target, index }
            }
            SchemaChange::DropIndex { name: n, .. } => SchemaChange::DropIndex { table: target, name: n },
            SchemaChange::AddForeignKey { foreign_key, .. } => {
                match self.map_foreign_key(&table, &foreign_key)? {
                    Some(foreign_key) => SchemaChange::AddForeignKey { table: target, foreign_key },
                    None => return Ok(None),
                }
            }
            SchemaChange::DropForeignKey { name: n, .. } => {
                SchemaChange::DropForeignKey { table: target, name: n }
            }
            SchemaChange::SetPrimaryKey { columns, .. } => {
                let mut out = Vec::with_capacity(columns.len());
                for c in &columns {
                    match name(c) {
                        Some(n) => out.push(n),
                        None => {
                            return Err(conv_err(format!("the new primary key uses the excluded column {c}")))
                        }
                    }
                }
                SchemaChange::SetPrimaryKey { table: target, columns: out }
            }
            other => {
                return Err(conv_err(format!("the mapping does not support this schema change: {other:?}")))
            }
        }))
    }
}

/// Turn an update into what a row filter makes of it: the update when both images
/// pass, an insert of the after image when only it passes (the row moves into the
/// filter), a delete of the before image when only it passes (the row moves out),
/// nothing otherwise.
pub(crate) fn filtered_update(e: UpdateEvent, keep_before: bool, keep_after: bool) -> Option<ChangeEvent> {
    match (keep_before, keep_after) {
        (true, true) => Some(ChangeEvent::Update(e)),
        (false, true) => {
            Some(ChangeEvent::Insert(InsertEvent { table: e.table, row: e.after, meta: e.meta }))
        }
        (true, false) => {
            Some(ChangeEvent::Delete(DeleteEvent { table: e.table, row: e.before, meta: e.meta }))
        }
        (false, false) => None,
    }
}

impl Converter for Mapping {
    fn name(&self) -> &str {
        &self.name
    }

    fn check_source_tables(&self, tables: &[TableSchema], resumed: bool) -> Result<()> {
        match self.check_names(tables) {
            // On a restart, DDL may have dropped a table or column a rule names since the first run.
            Err(e) if resumed => tracing::warn!("{e} (dropped since the first run?)"),
            r => r?,
        }
        self.check_tables(tables)
    }

    fn convert_table(&self, table: &Arc<TableSchema>) -> Result<Option<Arc<TableSchema>>> {
        Ok(self.plan(table)?.target.clone())
    }

    fn convert_row(&self, table: &Arc<TableSchema>, row: Row) -> Result<Option<Row>> {
        let plan = self.plan(table)?;
        if plan.target.is_none() || !self.keep(table, &plan, &row)? {
            return Ok(None);
        }
        self.map_values(table, &plan, row).map(Some)
    }

    fn convert_event(&self, event: ChangeEvent, out: &mut Vec<ChangeEvent>) -> Result<()> {
        match event {
            ChangeEvent::Insert(e) => {
                let plan = self.plan(&e.table)?;
                let Some(target) = plan.target.clone() else { return Ok(()) };
                if self.keep(&e.table, &plan, &e.row)? {
                    let row = self.map_values(&e.table, &plan, e.row)?;
                    out.push(ChangeEvent::Insert(InsertEvent { table: target, row, meta: e.meta }));
                }
            }
            ChangeEvent::Update(e) => {
                let plan = self.plan(&e.table)?;
                let Some(target) = plan.target.clone() else { return Ok(()) };
                let (b, a) = (self.keep(&e.table, &plan, &e.before)?, self.keep(&e.table, &plan, &e.after)?);
                let before = if b { self.map_values(&e.table, &plan, e.before)? } else { Vec::new() };
                let after = if a { self.map_values(&e.table, &plan, e.after)? } else { Vec::new() };
                let mapped = UpdateEvent { table: target, before, after, meta: e.meta };
                out.extend(filtered_update(mapped, b, a));
            }
            ChangeEvent::Delete(e) => {
                let plan = self.plan(&e.table)?;
                let Some(target) = plan.target.clone() else { return Ok(()) };
                if self.keep(&e.table, &plan, &e.row)? {
                    let row = self.map_values(&e.table, &plan, e.row)?;
                    out.push(ChangeEvent::Delete(DeleteEvent { table: target, row, meta: e.meta }));
                }
            }
            ChangeEvent::Truncate(e) => {
                if let Some(target) = self.plan(&e.table)?.target.clone() {
                    out.push(ChangeEvent::Truncate(TruncateEvent { table: target, meta: e.meta }));
                }
            }
            ChangeEvent::Schema(e) => {
                let SchemaChangeEvent { change, schema_after, ddl, meta } = *e;
                let after = match &schema_after {
                    Some(s) => match self.plan(s)?.target.clone() {
                        Some(t) => Some(t),
                        None => return Ok(()),
                    },
                    None => None,
                };
                if let Some(change) = self.map_change(change, schema_after.as_deref())? {
                    out.push(ChangeEvent::Schema(Box::new(SchemaChangeEvent {
                        change,
                        schema_after: after,
                        ddl,
                        meta,
                    })));
                }
            }
            other => out.push(other),
        }
        Ok(())
    }
}
