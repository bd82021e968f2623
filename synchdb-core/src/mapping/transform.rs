//! Converters from Rust closures: a per-column value transform and a row filter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use synchdb_types::{
    ChangeEvent, Row, SchemaChange, SchemaChangeEvent, TableId, TableSchema, TargetType, Value,
};

use crate::converter::Converter;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::engine::filtered_update;
use crate::mapping::predicate::Predicate;

/// Which tables a closure converter applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TableMatch {
    Any,
    One(TableId),
}

impl TableMatch {
    fn parse(s: &str) -> Result<Self> {
        if s == "*" {
            return Ok(TableMatch::Any);
        }
        s.parse()
            .map(TableMatch::One)
            .map_err(|e| Error::config(format!("table {s:?} is not db.table or *")).with_source(e))
    }

    fn matches(&self, id: &TableId) -> bool {
        match self {
            TableMatch::Any => true,
            TableMatch::One(t) => t == id,
        }
    }
}

/// A source schema and its converted form.
type SchemaPair = (Arc<TableSchema>, Arc<TableSchema>);

type ValueFn = dyn Fn(Value) -> Result<Value> + Send + Sync;

/// A Rust closure over one column's values (both images of updates, snapshot rows
/// alike). The table is `db.table` or `*` (every table having the column); a table
/// without the column passes unchanged.
///
/// ```
/// use synchdb_core::mapping::ColumnTransform;
/// use synchdb_core::types::Value;
/// let lower = ColumnTransform::new("shop.users", "email", |v| {
///     Ok(match v { Value::Text(s) => Value::Text(s.to_lowercase()), other => other })
/// })?;
/// # Ok::<(), synchdb_core::Error>(())
/// ```
pub struct ColumnTransform {
    name: String,
    table: TableMatch,
    column: String,
    target_type: Option<TargetType>,
    f: Box<ValueFn>,
    cache: Mutex<HashMap<TableId, SchemaPair>>,
}

impl ColumnTransform {
    /// Transform `column` of `table` (`db.table` or `*`) with `f`.
    pub fn new(
        table: &str,
        column: impl Into<String>,
        f: impl Fn(Value) -> Result<Value> + Send + Sync + 'static,
    ) -> Result<Self> {
        let column = column.into();
        Ok(ColumnTransform {
            name: format!("transform {table}.{column}"),
            table: TableMatch::parse(table)?,
            column,
            target_type: None,
            f: Box::new(f),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Set the destination type of the column (when the closure changes the kind of value).
    pub fn target_type(mut self, t: TargetType) -> Self {
        self.target_type = Some(t);
        self
    }

    /// Name the converter (for logs and errors).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl Converter for ColumnTransform {
    fn name(&self) -> &str {
        &self.name
    }

    fn convert_table(&self, table: &Arc<TableSchema>) -> Result<Option<Arc<TableSchema>>> {
        let Some(t) = &self.target_type else { return Ok(Some(table.clone())) };
        if !self.table.matches(&table.id) || table.column(&self.column).is_none() {
            return Ok(Some(table.clone()));
        }
        let mut cache = self.cache.lock().expect("transform cache poisoned");
        if let Some((source, out)) = cache.get(&table.id) {
            if Arc::ptr_eq(source, table) || **source == **table {
                return Ok(Some(out.clone()));
            }
        }
        let mut out = (**table).clone();
        for c in out.columns.iter_mut().filter(|c| c.name == self.column) {
            c.target_type = Some(t.clone());
            c.default = None;
        }
        let out = Arc::new(out);
        cache.insert(table.id.clone(), (table.clone(), out.clone()));
        Ok(Some(out))
    }

    fn convert_row(&self, table: &Arc<TableSchema>, mut row: Row) -> Result<Option<Row>> {
        if !self.table.matches(&table.id) {
            return Ok(Some(row));
        }
        if let Some(i) = table.column_index(&self.column) {
            if let Some(slot) = row.get_mut(i) {
                let v = std::mem::replace(slot, Value::Null);
                *slot = (self.f)(v).map_err(|e| {
                    Error::new(ErrorKind::Convert, format!("{} failed", self.name))
                        .with_table(table.id.clone())
                        .with_column(self.column.clone())
                        .with_source(e)
                })?;
            }
        }
        Ok(Some(row))
    }
}

type RowPredicateFn = dyn Fn(&TableSchema, &Row) -> Result<bool> + Send + Sync;

/// Keep only the rows of a table for which a predicate holds: snapshot rows are
/// dropped, inserts and deletes of other rows are dropped, and an update that
/// moves a row into the filter becomes an insert of its after image, one that moves
/// it out becomes a delete of its before image.
///
/// ```
/// use synchdb_core::mapping::{Predicate, RowFilter};
/// let typed = RowFilter::predicate("shop.orders", "tenant_id = 7".parse::<Predicate>()?)?;
/// let closure = RowFilter::new("shop.orders", |_table, row| Ok(!row.is_empty()))?;
/// # Ok::<(), synchdb_core::Error>(())
/// ```
pub struct RowFilter {
    name: String,
    table: TableMatch,
    f: Box<RowPredicateFn>,
    /// Schemas with the foreign keys to filtered tables left out, by source schema address.
    stripped: Mutex<HashMap<usize, SchemaPair>>,
}

impl RowFilter {
    /// Filter the rows of `table` (`db.table` or `*`) with a closure.
    pub fn new(
        table: &str,
        f: impl Fn(&TableSchema, &Row) -> Result<bool> + Send + Sync + 'static,
    ) -> Result<Self> {
        Ok(RowFilter {
            name: format!("filter {table}"),
            table: TableMatch::parse(table)?,
            f: Box::new(f),
            stripped: Default::default(),
        })
    }

    /// Filter the rows of `table` with a typed predicate on its column names.
    pub fn predicate(table: &str, predicate: Predicate) -> Result<Self> {
        let name = format!("filter {table}: {predicate}");
        let mut f = Self::new(table, move |t: &TableSchema, row: &Row| {
            predicate.matches(&|c: &str| t.column_index(c).and_then(|i| row.get(i)))
        })?;
        f.name = name;
        Ok(f)
    }

    fn keep(&self, table: &TableSchema, row: &Row) -> Result<bool> {
        if !self.table.matches(&table.id) {
            return Ok(true);
        }
        (self.f)(table, row).map_err(|e| e.with_table(table.id.clone()))
    }
}

impl Converter for RowFilter {
    fn name(&self) -> &str {
        &self.name
    }

    /// Foreign keys that reference a filtered table are left out: the rows
    /// the filter drops would leave references to them dangling.
    fn convert_table(&self, table: &Arc<TableSchema>) -> Result<Option<Arc<TableSchema>>> {
        if !table.foreign_keys.iter().any(|fk| self.table.matches(&fk.referenced_table)) {
            return Ok(Some(table.clone()));
        }
        let key = Arc::as_ptr(table) as usize;
        let mut cache = self.stripped.lock().expect("filter cache poisoned");
        if let Some((_, out)) = cache.get(&key) {
            return Ok(Some(out.clone()));
        }
        let mut out = (**table).clone();
        out.foreign_keys.retain(|fk| {
            let keep = !self.table.matches(&fk.referenced_table);
            if !keep {
                tracing::warn!(table = %table.id, foreign_key = %fk.name, "foreign key left out: the referenced table has a row filter");
            }
            keep
        });
        let out = Arc::new(out);
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(key, (table.clone(), out.clone()));
        Ok(Some(out))
    }

    fn convert_row(&self, table: &Arc<TableSchema>, row: Row) -> Result<Option<Row>> {
        Ok(self.keep(table, &row)?.then_some(row))
    }

    fn convert_event(&self, event: ChangeEvent, out: &mut Vec<ChangeEvent>) -> Result<()> {
        match event {
            ChangeEvent::Insert(e) => {
                if self.keep(&e.table, &e.row)? {
                    out.push(ChangeEvent::Insert(e));
                }
            }
            ChangeEvent::Delete(e) => {
                if self.keep(&e.table, &e.row)? {
                    out.push(ChangeEvent::Delete(e));
                }
            }
            ChangeEvent::Update(e) => {
                let (b, a) = (self.keep(&e.table, &e.before)?, self.keep(&e.table, &e.after)?);
                out.extend(filtered_update(e, b, a));
            }
            ChangeEvent::Schema(e) => {
                if let SchemaChange::AddForeignKey { foreign_key, .. } = &e.change {
                    if self.table.matches(&foreign_key.referenced_table) {
                        return Ok(());
                    }
                }
                let schema_after =
                    e.schema_after.as_ref().map(|t| self.convert_table(t)).transpose()?.flatten();
                let change = match e.change {
                    SchemaChange::CreateTable { mut schema } => {
                        schema.foreign_keys.retain(|fk| !self.table.matches(&fk.referenced_table));
                        SchemaChange::CreateTable { schema }
                    }
                    other => other,
                };
                out.push(ChangeEvent::Schema(Box::new(SchemaChangeEvent { change, schema_after, ..*e })));
            }
            other => out.push(other),
        }
        Ok(())
    }
}
