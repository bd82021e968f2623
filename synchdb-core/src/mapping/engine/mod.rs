//! [`Mapping`]: the converter that applies [`MappingRules`] to schemas, snapshot
//! rows, row changes and DDL alike.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use synchdb_types::{
    ChangeEvent, ColumnPosition, ColumnSchema, ColumnType, DeleteEvent, InsertEvent, Row, SchemaChange,
    SchemaChangeEvent, SqlTransform, TableId, TableSchema, TargetType, TruncateEvent, UpdateEvent, Value,
};
use tracing::warn;

mod ddl;
mod plan;
mod validate;
mod values;

use validate::*;

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
    /// TIME values must fit a time of day (00:00:00..24:00:00).
    CheckTime,
    /// Integers must fit a narrower destination integer type.
    CheckInt {
        min: i128,
        max: i128,
        ty: TargetType,
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

/// Check an SQL transform's shape (the sink checks that it compiles).
pub(crate) fn check_transform(table: &TableId, column: &str, expr: &str) -> Result<SqlTransform> {
    SqlTransform::new(expr).map_err(|_| {
        cfg_err(
            table,
            column,
            format!("transform {expr:?} must be one expression (no ';') containing %d (the value)"),
        )
    })
}

/// Read a rule's destination type.
pub(crate) fn check_target_type(table: &TableId, column: &str, t: &str) -> Result<TargetType> {
    t.parse().map_err(|e| cfg_err(table, column, format!("destination type: {e}")))
}

impl Mapping {
    /// A mapping converter for these rules. Checks what needs no source schema:
    /// table renames, transform shapes, destination types, and that a hash key is available when a
    /// rule hashes (from `hash_key` or the `hash_key_env` variable).
    pub fn new(rules: MappingRules) -> Result<Mapping> {
        for (source, target) in &rules.source_types {
            target
                .parse::<TargetType>()
                .map_err(|e| Error::config(format!("source_types: destination type for {source}: {e}")))?;
        }
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
                if let Some(t) = &rule.target_type {
                    check_target_type(&sid, c, t)?;
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

    pub(super) fn table_rule(&self, id: &TableId) -> Option<&TableRule> {
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
    pub(super) fn column_name(&self, table: &TableId, column: &str) -> Option<String> {
        match self.table_rule(table).and_then(|t| t.columns.get(column)) {
            Some(r) if r.exclude => None,
            Some(ColumnRule { rename: Some(n), .. }) => Some(n.clone()),
            _ => Some(column.to_string()),
        }
    }

    pub(super) fn column_rule(&self, table: &TableId, column: &str) -> Option<&ColumnRule> {
        self.table_rule(table).and_then(|t| t.columns.get(column))
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
