//! The [`Converter`] contract: typed transforms between source and sink.

use std::sync::Arc;

use synchdb_types::{
    ChangeEvent, DeleteEvent, InsertEvent, Row, SchemaChangeEvent, TableSchema, TruncateEvent, UpdateEvent,
};

use crate::error::Result;

/// A transform applied to every table schema, snapshot row and change event
/// between the source and the sink. Converters run in the order they were
/// added to the pipeline; each sees the previous one's output.
///
/// Implement [`convert_table`](Converter::convert_table) and
/// [`convert_row`](Converter::convert_row) for per-table and per-row
/// transforms (renames, masks, type overrides); the default
/// [`convert_event`](Converter::convert_event) applies them to change events
/// (both images of an update, so keys computed from the before-image match
/// the rows the sink holds). Override `convert_event` for transforms that
/// need the whole event (row filters that turn an update into a delete).
///
/// `convert_table` is called for every event, so converters that build a
/// new schema should cache it.
pub trait Converter: Send + Sync {
    /// A short name for logs and introspection.
    fn name(&self) -> &str;

    /// Map a table's schema; `None` drops the table (and all its events).
    fn convert_table(&self, table: &Arc<TableSchema>) -> Result<Option<Arc<TableSchema>>> {
        Ok(Some(table.clone()))
    }

    /// Map one row of `table` (the schema before this converter); `None` drops it.
    fn convert_row(&self, table: &Arc<TableSchema>, row: Row) -> Result<Option<Row>> {
        let _ = table;
        Ok(Some(row))
    }

    /// Map one change event into zero or more, appended to `out`.
    fn convert_event(&self, event: ChangeEvent, out: &mut Vec<ChangeEvent>) -> Result<()> {
        default_convert_event(self, event, out)
    }

    /// Check the converter against the source's tables before any data
    /// moves (the pipeline calls it at start with the tables the source
    /// discovers, see [`Source::discover_tables`](crate::Source::discover_tables)):
    /// e.g. that every table and column a rule names exists. `resumed`: the
    /// pipeline continues from a checkpoint (a name may have been dropped
    /// since). Default: nothing to check.
    fn check_source_tables(&self, tables: &[TableSchema], resumed: bool) -> Result<()> {
        let _ = (tables, resumed);
        Ok(())
    }
}

/// The default event conversion through `convert_table` and `convert_row`,
/// callable from overriding implementations.
pub fn default_convert_event<C: Converter + ?Sized>(
    conv: &C,
    event: ChangeEvent,
    out: &mut Vec<ChangeEvent>,
) -> Result<()> {
    match event {
        ChangeEvent::Insert(e) => {
            let Some(table) = conv.convert_table(&e.table)? else { return Ok(()) };
            if let Some(row) = conv.convert_row(&e.table, e.row)? {
                out.push(ChangeEvent::Insert(InsertEvent { table, row, meta: e.meta }));
            }
        }
        ChangeEvent::Update(e) => {
            let Some(table) = conv.convert_table(&e.table)? else { return Ok(()) };
            let before = conv.convert_row(&e.table, e.before)?;
            let after = conv.convert_row(&e.table, e.after)?;
            if let (Some(before), Some(after)) = (before, after) {
                out.push(ChangeEvent::Update(UpdateEvent { table, before, after, meta: e.meta }));
            }
        }
        ChangeEvent::Delete(e) => {
            let Some(table) = conv.convert_table(&e.table)? else { return Ok(()) };
            if let Some(row) = conv.convert_row(&e.table, e.row)? {
                out.push(ChangeEvent::Delete(DeleteEvent { table, row, meta: e.meta }));
            }
        }
        ChangeEvent::Truncate(e) => {
            if let Some(table) = conv.convert_table(&e.table)? {
                out.push(ChangeEvent::Truncate(TruncateEvent { table, meta: e.meta }));
            }
        }
        ChangeEvent::Schema(e) => {
            let schema_after = match &e.schema_after {
                Some(s) => match conv.convert_table(s)? {
                    Some(t) => Some(t),
                    None => return Ok(()),
                },
                None => None,
            };
            out.push(ChangeEvent::Schema(Box::new(SchemaChangeEvent { schema_after, ..*e })));
        }
        other => out.push(other),
    }
    Ok(())
}

/// A converter from a closure over rows: `Converter::convert_row` for every
/// table, schema unchanged.
pub struct MapRows<F> {
    name: String,
    f: F,
}

impl<F> MapRows<F>
where
    F: Fn(&TableSchema, Row) -> Result<Option<Row>> + Send + Sync,
{
    /// A named row transform.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        MapRows { name: name.into(), f }
    }
}

impl<F> Converter for MapRows<F>
where
    F: Fn(&TableSchema, Row) -> Result<Option<Row>> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn convert_row(&self, table: &Arc<TableSchema>, row: Row) -> Result<Option<Row>> {
        (self.f)(table, row)
    }
}
