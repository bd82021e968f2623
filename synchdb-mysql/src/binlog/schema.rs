//! The tracked source schemas and how DDL changes them.
//!
//! The follower keeps the schema of every selected table as of the binlog
//! position it has read, applies each parsed [`Ddl`] at its exact position
//! and emits the typed [`SchemaChange`]s with the table's schema after each.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{
    ColumnDefault, ColumnPosition, ColumnSchema, IndexSchema, IntWidth, LobSize, SchemaChange, TableId,
    TableSchema,
};

use crate::ddl::{
    add_foreign_key, add_key, column_spelling, find_column, generated_fk_number, AlterOp, Ddl, IndexDef,
};
use crate::filter::TableFilter;

/// What applying a statement produced, in order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, one per schema change
pub(crate) enum Applied {
    /// A schema change and the table's schema after it (`None` after a drop).
    Schema(SchemaChange, Option<Arc<TableSchema>>),
    /// TRUNCATE of a tracked table.
    Truncate(Arc<TableSchema>),
    /// The statement changed the table's rows without row events (partition
    /// DDL): the table must be copied again, or the pipeline stop. The text
    /// says what did it.
    RowsChangedUnlogged(TableId, String),
}

/// Server look-ups DDL application may need.
#[async_trait]
pub(crate) trait Lookup: Send {
    /// The default character set of a table (`Some(table)`), else of the database.
    async fn default_charset(&mut self, database: &str, table: Option<&str>) -> Result<Option<String>>;
    /// The table's current schema from information_schema.
    async fn discover(&mut self, table: &TableId) -> Result<Option<TableSchema>>;
}

/// The tracked schemas of the selected tables.
#[derive(Debug, Clone)]
pub(crate) struct Schemas {
    tables: HashMap<TableId, Arc<TableSchema>>,
    filter: TableFilter,
    /// Tables being copied again (a resync): not tracked, and statements about
    /// them are ignored until they join with the schema the copy read.
    hidden: std::collections::HashSet<TableId>,
    /// Whether the statement being applied ran in strict mode (an ALTER then
    /// fails rather than converting a NULL to a NOT NULL column's implicit default).
    strict: bool,
}

/// Why a column added to a table with rows gets values there that the
/// binlog does not carry and the target cannot compute the same way: a
/// generated column (computed at the ALTER), a default computed per row or at
/// the ALTER's time (`CURRENT_TIMESTAMP`, `UUID()`, `RAND()`), or an
/// AUTO_INCREMENT numbering the rows in the server's order. `None`: a constant
/// default (or none) that the target's `ADD COLUMN` fills in alike.
fn fills_rows_unlogged(column: &ColumnSchema) -> Option<&'static str> {
    if column.generated.is_some() {
        Some("a generated column: existing rows get its computed values")
    } else if column.auto_increment {
        Some("AUTO_INCREMENT: existing rows are numbered by the server")
    } else if matches!(column.default, Some(ColumnDefault::Expression(_))) {
        Some("a default expression evaluated for the existing rows at the ALTER")
    } else {
        None
    }
}

fn schema_error(message: String, table: &TableId) -> Error {
    Error::new(ErrorKind::SourceSchema, message).with_table(table.clone())
}

impl Schemas {
    pub(crate) fn new(schemas: Vec<TableSchema>, filter: TableFilter) -> Self {
        let tables = schemas.into_iter().map(|s| (s.id.clone(), Arc::new(s))).collect();
        Schemas { tables, filter, hidden: Default::default(), strict: true }
    }

    /// The sql_mode of the statement about to be applied: strict (the
    /// default) or not (an `ALTER IGNORE` counts as not strict).
    pub(crate) fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// Stop tracking `ids` and ignore statements about them (a resync starts).
    pub(crate) fn hide(&mut self, ids: &[TableId]) {
        for id in ids {
            self.tables.remove(id);
            self.hidden.insert(id.clone());
        }
    }

    /// Track these tables again, with these schemas (a resync joins).
    pub(crate) fn reveal(&mut self, schemas: &[TableSchema]) {
        for s in schemas {
            self.hidden.remove(&s.id);
            self.tables.insert(s.id.clone(), Arc::new(s.clone()));
        }
    }

    /// Ignore statements about `id` no more, without tracking it (its copy found it gone).
    pub(crate) fn unhide(&mut self, id: &TableId) {
        self.hidden.remove(id);
    }

    /// Tracked tables with a foreign key to one of `ids`.
    pub(crate) fn referencing(&self, ids: &[TableId]) -> Vec<Arc<TableSchema>> {
        let mut out: Vec<Arc<TableSchema>> = self
            .tables
            .values()
            .filter(|t| t.foreign_keys.iter().any(|fk| ids.contains(&fk.referenced_table)))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// `ids` and every tracked table linked to them by foreign keys, in
    /// either direction, transitively (`extra` are the schemas of `ids`
    /// when they are not tracked).
    pub(crate) fn foreign_key_closure(
        &self,
        ids: &[TableId],
        extra: &[TableSchema],
    ) -> std::collections::HashSet<TableId> {
        let all: Vec<&TableSchema> = self.tables.values().map(|t| &**t).chain(extra.iter()).collect();
        let mut out: std::collections::HashSet<TableId> = ids.iter().cloned().collect();
        loop {
            let before = out.len();
            for t in &all {
                for fk in &t.foreign_keys {
                    if out.contains(&t.id) || out.contains(&fk.referenced_table) {
                        out.insert(t.id.clone());
                        out.insert(fk.referenced_table.clone());
                    }
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// The tracked schema of a table.
    pub(crate) fn get(&self, id: &TableId) -> Option<&Arc<TableSchema>> {
        self.tables.get(id)
    }

    /// The tracked table named `id` without regard to case (`lower_case_table_names=2`).
    pub(crate) fn find_ci(&self, id: &TableId) -> Option<TableId> {
        let (db, t) = (id.database.to_lowercase(), id.table.to_lowercase());
        self.tables.keys().find(|k| k.database.to_lowercase() == db && k.table.to_lowercase() == t).cloned()
    }

    /// Whether the table is being copied again (hidden until its resync joins).
    pub(crate) fn is_hidden(&self, id: &TableId) -> bool {
        self.hidden.contains(id)
    }

    /// Select `id` too (a table added while running); an error when an
    /// exclude pattern still excludes it.
    pub(crate) fn select(&mut self, id: &TableId) -> Result<()> {
        let pattern = format!("{}.{}", id.database, id.table);
        let filter = self.filter.clone().include(&pattern).map_err(|e| {
            Error::new(ErrorKind::Request, format!("table {id} cannot be selected: {e}"))
                .with_table(id.clone())
        })?;
        if !filter.matches(id) {
            return Err(Error::new(
                ErrorKind::Request,
                format!("table {id} is excluded by a pattern of the selection (--tables '!...')"),
            )
            .with_table(id.clone()));
        }
        self.filter = filter;
        Ok(())
    }

    /// Put back an earlier filter.
    pub(crate) fn set_filter(&mut self, filter: TableFilter) {
        self.filter = filter;
    }

    /// The table filter of the options.
    pub(crate) fn filter(&self) -> &TableFilter {
        &self.filter
    }

    /// Whether rows of this table are replicated.
    pub(crate) fn is_selected(&self, id: &TableId) -> bool {
        self.tables.contains_key(id)
    }

    /// Whether a statement about these tables concerns the replication:
    /// a tracked table, or a new name that matches the filter.
    pub(crate) fn concerns(&self, tables: &[TableId]) -> bool {
        tables
            .iter()
            .any(|t| !self.hidden.contains(t) && (self.tables.contains_key(t) || self.filter.matches(t)))
    }

    /// Whether a database holds tracked tables.
    pub(crate) fn tracks_database(&self, db: &str) -> bool {
        self.tables.keys().any(|t| t.database == db)
    }

    /// Apply a statement; returns what it changed, in order.
    pub(crate) async fn apply(&mut self, ddl: Ddl, lookup: &mut dyn Lookup) -> Result<Vec<Applied>> {
        let mut out = Vec::new();
        match ddl {
            Ddl::CreateTable { mut schema, default_charset, if_not_exists, or_replace } => {
                if !self.filter.matches(&schema.id) || self.hidden.contains(&schema.id) {
                    return Ok(out);
                }
                if self.tables.contains_key(&schema.id) {
                    if if_not_exists {
                        return Ok(out);
                    }
                    if or_replace {
                        self.drop_table(&schema.id, &mut out);
                    }
                }
                if schema.columns.iter().any(needs_charset) {
                    let cs = match default_charset {
                        Some(c) => Some(c),
                        None => lookup.default_charset(&schema.id.database, None).await?,
                    };
                    fill_charset(&mut schema.columns, cs.as_deref());
                }
                self.create(schema, &mut out);
            }
            Ddl::CreateTableLike { table, like, if_not_exists } => {
                if !self.filter.matches(&table)
                    || self.hidden.contains(&table)
                    || (if_not_exists && self.tables.contains_key(&table))
                {
                    return Ok(out);
                }
                let source = match self.tables.get(&like) {
                    Some(s) => Some((**s).clone()),
                    None => lookup.discover(&like).await?,
                };
                let schema = match source {
                    Some(mut schema) => {
                        schema.id = table;
                        schema.foreign_keys.clear();
                        schema
                    }
                    // The model table is neither tracked nor there any more (outside
                    // the selection and dropped since): the new table as it is now.
                    None => match lookup.discover(&table).await? {
                        Some(schema) => schema,
                        None => {
                            // Both gone by now (the model a temporary table, the new one
                            // dropped or renamed further on): as for an unparsed CREATE of a
                            // table that is gone, its rows until then are not needed, and a
                            // later RENAME into the selection copies it again.
                            tracing::warn!(table = %table, like = %like,
                                "CREATE TABLE ... LIKE: neither table is tracked or in information_schema                                  any more; not created (a later rename copies it again under its new name)");
                            return Ok(out);
                        }
                    },
                };
                // Not IF NOT EXISTS, and it succeeded over a table that existed:
                // CREATE OR REPLACE ... LIKE.
                self.drop_table(&schema.id, &mut out);
                self.create(schema, &mut out);
            }
            Ddl::CreateTableSelect { table, .. } => {
                if !self.filter.matches(&table) || self.hidden.contains(&table) {
                    return Ok(out);
                }
                let Some(schema) = lookup.discover(&table).await? else {
                    // Gone by now (dropped or renamed further on in the binlog): its
                    // rows until then are not needed; a later RENAME into the
                    // selection copies it under its new name.
                    tracing::warn!(%table, "CREATE TABLE ... SELECT: the table is gone from information_schema; not created");
                    return Ok(out);
                };
                self.create(schema, &mut out);
            }
            Ddl::DropTables { tables } => {
                for t in &tables {
                    self.drop_table(t, &mut out);
                }
            }
            Ddl::DropDatabase { database } => {
                let mut ids: Vec<TableId> =
                    self.tables.keys().filter(|t| t.database == database).cloned().collect();
                ids.sort();
                for t in &ids {
                    self.drop_table(t, &mut out);
                }
            }
            Ddl::RenameTables { pairs } => {
                for (from, to) in pairs {
                    self.rename(from, to, lookup, &mut out).await?;
                }
            }
            Ddl::Truncate { table } => {
                if let Some(s) = self.tables.get(&table) {
                    out.push(Applied::Truncate(s.clone()));
                }
            }
            Ddl::AlterTable { table, ops } => self.alter(table, ops, lookup, &mut out).await?,
        }
        Ok(out)
    }

    /// Name a foreign key's referenced columns as the tracked referenced table spells them.
    fn spell_referenced(&self, fk: &mut synchdb_types::ForeignKey) {
        if let Some(parent) = self.tables.get(&fk.referenced_table) {
            for c in &mut fk.referenced_columns {
                *c = column_spelling(parent, c);
            }
        }
    }

    fn create(&mut self, mut schema: TableSchema, out: &mut Vec<Applied>) {
        let mut fks = std::mem::take(&mut schema.foreign_keys);
        for fk in &mut fks {
            self.spell_referenced(fk);
        }
        schema.foreign_keys = fks;
        let a = Arc::new(schema);
        self.tables.insert(a.id.clone(), a.clone());
        out.push(Applied::Schema(SchemaChange::CreateTable { schema: (*a).clone() }, Some(a.clone())));
        // Tables created before the one they reference (dumps create them in name order
        // with FOREIGN_KEY_CHECKS=0): their keys could not be made then; they can now.
        let mut waiting: Vec<&Arc<TableSchema>> = self.tables.values().filter(|t| t.id != a.id).collect();
        waiting.sort_by(|x, y| x.id.cmp(&y.id));
        for t in waiting {
            for fk in t.foreign_keys.iter().filter(|fk| fk.referenced_table == a.id) {
                out.push(Applied::Schema(
                    SchemaChange::AddForeignKey { table: t.id.clone(), foreign_key: fk.clone() },
                    Some(t.clone()),
                ));
            }
        }
    }

    fn drop_table(&mut self, id: &TableId, out: &mut Vec<Applied>) {
        if self.tables.remove(id).is_some() {
            out.push(Applied::Schema(SchemaChange::DropTable { table: id.clone() }, None));
        }
    }

    async fn rename(
        &mut self,
        from: TableId,
        to: TableId,
        lookup: &mut dyn Lookup,
        out: &mut Vec<Applied>,
    ) -> Result<()> {
        if self.tables.contains_key(&from) {
            self.repoint_references(&from, &to);
        }
        match self.tables.remove(&from) {
            Some(s) if self.filter.matches(&to) && !self.hidden.contains(&to) => {
                let mut s = (*s).clone();
                s.id = to.clone();
                for fk in &mut s.foreign_keys {
                    if fk.referenced_table == from {
                        fk.referenced_table = to.clone();
                    }
                    // InnoDB renames the names it generated: `<old>_ibfk_<n>` becomes `<new>_ibfk_<n>`.
                    if let Some(n) = generated_fk_number(&fk.name, &from.table) {
                        fk.name = format!("{}_ibfk_{n}", to.table);
                    }
                }
                let a = Arc::new(s);
                self.tables.insert(to.clone(), a.clone());
                out.push(Applied::Schema(SchemaChange::RenameTable { from, to }, Some(a)));
            }
            Some(_) => out.push(Applied::Schema(SchemaChange::DropTable { table: from }, None)),
            None if self.filter.matches(&to) && !self.hidden.contains(&to) => {
                // A table enters the selection under its new name, with rows the
                // binlog did not list for it: copied (a resync).
                let _ = lookup;
                out.push(Applied::RowsChangedUnlogged(to, format!("RENAME of {from} into the selection")));
            }
            None => {}
        }
        Ok(())
    }

    /// InnoDB points the foreign keys of other tables that reference a renamed
    /// table at its new name. The replica's constraints follow a rename by
    /// themselves; the tracked schemas must too, so that a copy that joins
    /// later (the new name being copied again) or a child copied again makes
    /// them against the right table.
    fn repoint_references(&mut self, from: &TableId, to: &TableId) {
        for t in self.tables.values_mut() {
            if t.id == *from || !t.foreign_keys.iter().any(|fk| fk.referenced_table == *from) {
                continue;
            }
            let mut s = (**t).clone();
            for fk in &mut s.foreign_keys {
                if fk.referenced_table == *from {
                    fk.referenced_table = to.clone();
                }
            }
            *t = Arc::new(s);
        }
    }

    async fn alter(
        &mut self,
        table: TableId,
        ops: Vec<AlterOp>,
        lookup: &mut dyn Lookup,
        out: &mut Vec<Applied>,
    ) -> Result<()> {
        let Some(current) = self.tables.get(&table) else { return Ok(()) };
        let mut s: TableSchema = (**current).clone();
        let needs_cs = ops.iter().any(|op| match op {
            AlterOp::AddColumn { column, .. } | AlterOp::ModifyColumn { column, .. } => needs_charset(column),
            _ => false,
        });
        let table_cs = if needs_cs {
            match lookup.default_charset(&table.database, Some(&table.table)).await? {
                Some(c) => Some(c),
                None => lookup.default_charset(&table.database, None).await?,
            }
        } else {
            None
        };
        let mut rename_to = None;
        let mut unlogged: Vec<(TableId, String)> = Vec::new();
        let mut changes: Vec<SchemaChange> = Vec::new();
        let mut snapshots: Vec<Arc<TableSchema>> = Vec::new();
        let missing =
            |what: &str, name: &str| schema_error(format!("ALTER TABLE: no {what} {name:?}"), &table);
        let mut ops = key_ops_around_columns(ops);
        self.primary_key_columns_not_null(&s, &table, &mut ops, &mut unlogged);
        let ops = untangle_renames(&mut s, ops, &mut changes, &mut snapshots);
        for op in ops {
            let before = changes.len();
            match op {
                AlterOp::AddColumn { mut column, position, if_not_exists, keys } => {
                    if find_column(&s, &column.name).is_some() {
                        if if_not_exists {
                            continue;
                        }
                        return Err(schema_error(
                            format!("ALTER TABLE: column {:?} already exists", column.name),
                            &table,
                        ));
                    }
                    fill_charset(std::slice::from_mut(&mut column), table_cs.as_deref());
                    let position = spell_position(&s, position);
                    let at = insert_at(&s, &position)
                        .ok_or_else(|| missing("column", &format!("{position:?}")))?;
                    s.columns.insert(at, column.clone());
                    if let Some(why) = fills_rows_unlogged(&column) {
                        // The server wrote the existing rows' values, without row events.
                        unlogged.push((
                            table.clone(),
                            format!("ALTER TABLE adding column {} ({why})", column.name),
                        ));
                    }
                    changes.push(SchemaChange::AddColumn { table: table.clone(), column, position });
                    snapshots.push(Arc::new(s.clone()));
                    self.keys(&mut s, &table, keys, &mut changes, &mut snapshots);
                    continue;
                }
                AlterOp::DropColumn { name, if_exists } => {
                    let Some(i) = find_column(&s, &name) else {
                        if if_exists {
                            continue;
                        }
                        return Err(missing("column", &name));
                    };
                    let name = s.columns.remove(i).name;
                    s.primary_key.retain(|c| *c != name);
                    for ix in &mut s.indexes {
                        ix.columns.retain(|c| c.name != name);
                    }
                    s.indexes.retain(|ix| !ix.columns.is_empty());
                    s.foreign_keys.retain(|fk| !fk.columns.contains(&name));
                    changes.push(SchemaChange::DropColumn { table: table.clone(), name });
                }
                AlterOp::ModifyColumn { old_name, mut column, position, keys } => {
                    let i = find_column(&s, &old_name).ok_or_else(|| missing("column", &old_name))?;
                    let old = s.columns[i].clone();
                    let old_name = old.name.clone();
                    fill_charset(std::slice::from_mut(&mut column), table_cs.as_deref());
                    if s.primary_key.contains(&old_name) {
                        column.nullable = false;
                    }
                    column.target_type = old.target_type.clone();
                    s.columns.remove(i);
                    let position = position.map(|p| spell_position(&s, p));
                    let at = match &position {
                        Some(p) => insert_at(&s, p).ok_or_else(|| missing("column", &format!("{p:?}")))?,
                        None => i,
                    };
                    s.columns.insert(at, column.clone());
                    rename_in_keys(&mut s, &old_name, &column.name);
                    // A NOT NULL TIMESTAMP takes the current time for a NULL even in
                    // strict mode (innodb-alter-timestamp.test).
                    let timestamp = matches!(column.column_type, synchdb_types::ColumnType::Timestamp { .. });
                    let nulls_converted = old.nullable && !column.nullable && (!self.strict || timestamp);
                    let kept = if nulls_converted {
                        // Outside strict mode the server stores the type's implicit
                        // default (0, '', the zero date, the first ENUM member) in
                        // place of each NULL.
                        Err("its NULLs become the column's implicit default")
                    } else {
                        keeps_values(&old, &column)
                    };
                    if let Err(why) = kept {
                        // The server converted the stored values, without row events.
                        unlogged.push((
                            table.clone(),
                            format!(
                                "ALTER TABLE changing column {} from {} to {} ({why})",
                                old.name, old.column_type, column.column_type
                            ),
                        ));
                    }
                    changes.push(SchemaChange::ModifyColumn {
                        table: table.clone(),
                        old,
                        new: column,
                        position,
                    });
                    snapshots.push(Arc::new(s.clone()));
                    self.keys(&mut s, &table, keys, &mut changes, &mut snapshots);
                    continue;
                }
                AlterOp::RenameColumn { from, to, if_exists } => {
                    let Some(i) = find_column(&s, &from) else {
                        if if_exists {
                            continue;
                        }
                        return Err(missing("column", &from));
                    };
                    let from = std::mem::replace(&mut s.columns[i].name, to.clone());
                    // `RENAME COLUMN a TO a` is a no-op on MySQL; PostgreSQL refuses it.
                    if from == to {
                        continue;
                    }
                    rename_in_keys(&mut s, &from, &to);
                    changes.push(SchemaChange::RenameColumn { table: table.clone(), from, to });
                }
                AlterOp::SetDefault { column, default } => {
                    let i = find_column(&s, &column).ok_or_else(|| missing("column", &column))?;
                    let old = s.columns[i].clone();
                    s.columns[i].default = match default {
                        None => None,
                        Some(raw) => {
                            Some(crate::defaults::normalize(&old.column_type, &raw).map_err(|why| {
                                schema_error(
                                    format!("default {raw:?} of column {:?}: {why}", old.name),
                                    &table,
                                )
                            })?)
                        }
                    };
                    let new = s.columns[i].clone();
                    changes.push(SchemaChange::ModifyColumn {
                        table: table.clone(),
                        old,
                        new,
                        position: None,
                    });
                }
                AlterOp::AddIndex(def) => {
                    self.keys(&mut s, &table, vec![def], &mut changes, &mut snapshots);
                    continue;
                }
                AlterOp::DropIndex { name, if_exists } => {
                    if name.eq_ignore_ascii_case("PRIMARY") {
                        s.primary_key.clear();
                        changes.push(SchemaChange::SetPrimaryKey { table: table.clone(), columns: vec![] });
                    } else if let Some(i) =
                        s.indexes.iter().position(|ix| ix.name.eq_ignore_ascii_case(&name))
                    {
                        let ix = s.indexes.remove(i);
                        changes.push(SchemaChange::DropIndex { table: table.clone(), name: ix.name });
                    } else if !if_exists {
                        // Not tracked (e.g. a foreign key's implicit index): still pass it on.
                        tracing::debug!(%table, index = %name, "DROP INDEX of an index not tracked");
                        changes.push(SchemaChange::DropIndex { table: table.clone(), name });
                    }
                }
                AlterOp::DropPrimaryKey => {
                    s.primary_key.clear();
                    changes.push(SchemaChange::SetPrimaryKey { table: table.clone(), columns: vec![] });
                }
                AlterOp::RenameIndex { from, to, if_exists } => {
                    let Some(i) = s.indexes.iter().position(|ix| ix.name.eq_ignore_ascii_case(&from)) else {
                        if if_exists {
                            continue;
                        }
                        return Err(missing("index", &from));
                    };
                    let old = s.indexes.remove(i);
                    changes.push(SchemaChange::DropIndex { table: table.clone(), name: old.name.clone() });
                    snapshots.push(Arc::new(s.clone()));
                    let new = IndexSchema { name: to, ..old };
                    s.indexes.insert(i, new.clone());
                    changes.push(SchemaChange::CreateIndex { table: table.clone(), index: new });
                }
                AlterOp::AddForeignKey { foreign_key, if_not_exists } => {
                    let same = |k: &synchdb_types::ForeignKey| k.name.eq_ignore_ascii_case(&foreign_key.name);
                    if !foreign_key.name.is_empty() && s.foreign_keys.iter().any(same) {
                        if if_not_exists {
                            continue;
                        }
                        // The source accepted the name: the tracked key is stale.
                        s.foreign_keys.retain(|k| !same(k));
                    }
                    let mut foreign_key = add_foreign_key(&mut s, foreign_key);
                    self.spell_referenced(&mut foreign_key);
                    if let Some(k) = s.foreign_keys.iter_mut().find(|k| k.name == foreign_key.name) {
                        *k = foreign_key.clone();
                    }
                    changes.push(SchemaChange::AddForeignKey { table: table.clone(), foreign_key });
                }
                AlterOp::DropForeignKey { name, if_exists } => {
                    if let Some(i) = s.foreign_keys.iter().position(|k| k.name.eq_ignore_ascii_case(&name)) {
                        let fk = s.foreign_keys.remove(i);
                        changes.push(SchemaChange::DropForeignKey { table: table.clone(), name: fk.name });
                    } else if !if_exists {
                        // Not tracked (e.g. inline REFERENCES of a CREATE TABLE): still pass it on.
                        tracing::debug!(%table, foreign_key = %name, "DROP FOREIGN KEY of a key not tracked");
                        changes.push(SchemaChange::DropForeignKey { table: table.clone(), name });
                    }
                }
                AlterOp::RenameTable { to } => {
                    rename_to = Some(to);
                }
                AlterOp::DropsRows { clause, other, other_goes } => {
                    let what = format!("ALTER TABLE {table} {clause}");
                    unlogged.push((table.clone(), what.clone()));
                    match other {
                        Some(o) if other_goes => self.drop_table(&o, out),
                        Some(o) if self.tables.contains_key(&o) || self.filter.matches(&o) => {
                            unlogged.push((o, what))
                        }
                        _ => {}
                    }
                }
                AlterOp::ConvertCharset { charset, collation } => {
                    for i in 0..s.columns.len() {
                        if !s.columns[i].column_type.is_textual()
                            || s.columns[i].column_type == synchdb_types::ColumnType::Json
                        {
                            continue;
                        }
                        let old = s.columns[i].clone();
                        s.columns[i].charset = Some(charset.clone());
                        s.columns[i].collation = collation.clone();
                        let new = s.columns[i].clone();
                        if new != old {
                            changes.push(SchemaChange::ModifyColumn {
                                table: table.clone(),
                                old,
                                new,
                                position: None,
                            });
                            snapshots.push(Arc::new(s.clone()));
                        }
                    }
                    continue;
                }
            }
            if changes.len() > before {
                snapshots.push(Arc::new(s.clone()));
            }
        }
        if unlogged.iter().any(|(t, _)| *t == table) {
            // Copied again with the schema it has now: the target's table is made
            // anew, so the statement's own changes are not applied to it (a unique
            // key added by ALTER IGNORE would meet the duplicates it removed).
            changes.clear();
            snapshots.clear();
        }
        let last = Arc::new(s);
        self.tables.insert(table.clone(), last.clone());
        out.extend(changes.into_iter().zip(snapshots).map(|(c, a)| Applied::Schema(c, Some(a))));
        for (t, what) in unlogged {
            // Copied under the name the statement leaves it with.
            let t = match &rename_to {
                Some(to) if t == table => to.clone(),
                _ => t,
            };
            out.push(Applied::RowsChangedUnlogged(t, what));
        }
        if let Some(to) = rename_to {
            if to != table {
                self.rename(table, to, lookup, out).await?;
            }
        }
        Ok(())
    }

    /// A primary key added by an ALTER makes its columns NOT NULL. A column
    /// the same statement adds gets the type's implicit default in every
    /// row (as if declared NOT NULL; `ADD COLUMN f2n INT, ADD PRIMARY KEY (f1,
    /// f2n)`); an existing nullable column's NULLs become that default
    /// outside strict mode without row events, so the table is copied again
    /// (in strict mode the server refuses NULLs there).
    fn primary_key_columns_not_null(
        &self,
        s: &TableSchema,
        table: &TableId,
        ops: &mut [AlterOp],
        unlogged: &mut Vec<(TableId, String)>,
    ) {
        let pk: Vec<String> = ops
            .iter()
            .filter_map(|op| match op {
                AlterOp::AddIndex(IndexDef::Primary(cols)) => Some(cols.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        for name in &pk {
            // A column the statement adds or changes is NOT NULL (the change's own
            // check sees NULLs converted outside strict mode).
            let mut in_statement = false;
            for op in ops.iter_mut() {
                if let AlterOp::AddColumn { column, .. } | AlterOp::ModifyColumn { column, .. } = op {
                    if column.name.eq_ignore_ascii_case(name) {
                        column.nullable = false;
                        in_statement = true;
                    }
                }
            }
            if in_statement || self.strict {
                continue;
            }
            if find_column(s, name).is_some_and(|i| s.columns[i].nullable) {
                unlogged.push((
                    table.clone(),
                    format!("ALTER TABLE adding a primary key over nullable column {name} (its NULLs become the column's implicit default)"),
                ));
            }
        }
    }

    fn keys(
        &self,
        s: &mut TableSchema,
        table: &TableId,
        keys: Vec<IndexDef>,
        changes: &mut Vec<SchemaChange>,
        snapshots: &mut Vec<Arc<TableSchema>>,
    ) {
        for k in keys {
            let primary = matches!(k, IndexDef::Primary(_));
            let added = add_key(s, k);
            if primary {
                changes.push(SchemaChange::SetPrimaryKey {
                    table: table.clone(),
                    columns: s.primary_key.clone(),
                });
            } else if let Some(index) = added {
                changes.push(SchemaChange::CreateIndex { table: table.clone(), index });
            }
            snapshots.push(Arc::new(s.clone()));
        }
    }
}

fn needs_charset(c: &ColumnSchema) -> bool {
    c.charset.is_none()
        && (c.column_type.is_textual()
            || matches!(
                c.column_type,
                synchdb_types::ColumnType::Enum { .. } | synchdb_types::ColumnType::Set { .. }
            ))
}

fn fill_charset(columns: &mut [ColumnSchema], charset: Option<&str>) {
    let Some(cs) = charset else { return };
    for c in columns.iter_mut().filter(|c| needs_charset(c)) {
        c.charset = Some(cs.to_string());
        // A table in the binary character set: its text columns are binary types.
        crate::ddl::binary_charset_types(c);
    }
}

fn spell_position(s: &TableSchema, p: ColumnPosition) -> ColumnPosition {
    match p {
        ColumnPosition::After(c) => ColumnPosition::After(column_spelling(s, &c)),
        other => other,
    }
}

fn insert_at(s: &TableSchema, p: &ColumnPosition) -> Option<usize> {
    match p {
        ColumnPosition::First => Some(0),
        ColumnPosition::After(c) => find_column(s, c).map(|i| i + 1),
        _ => Some(s.columns.len()),
    }
}

/// Whether changing a column from `old` to `new` keeps every stored value as
/// it is, so that the target can change its column type alone; `Err(why)`
/// when the server may have converted values (the table is then copied again).
pub(crate) fn keeps_values(old: &ColumnSchema, new: &ColumnSchema) -> std::result::Result<(), &'static str> {
    use synchdb_types::ColumnType as C;
    if old.generated != new.generated && new.generated.is_some() {
        return Err("a generated column is computed again");
    }
    if old.column_type.is_textual() && new.column_type.is_textual() {
        let cs = |c: &ColumnSchema| c.charset.as_deref().unwrap_or("").to_ascii_lowercase();
        let (a, b) = (cs(old), cs(new));
        if a != b && !matches!(b.as_str(), "utf8mb4" | "utf8" | "utf8mb3" | "") && a != "ascii" {
            return Err("the character set changes");
        }
    }
    let int_range = |w: IntWidth, unsigned: bool| -> (i128, i128) {
        let bits = u32::from(w.bytes()) * 8;
        if unsigned {
            (0, (1i128 << bits) - 1)
        } else {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        }
    };
    let lob = |s: LobSize| -> u64 {
        match s {
            LobSize::Tiny => 255,
            LobSize::Normal => 65_535,
            LobSize::Medium => 16_777_215,
            LobSize::Long => u64::from(u32::MAX),
        }
    };
    let ok = match (&old.column_type, &new.column_type) {
        (a, b) if a == b => true,
        (C::Integer { width: w1, unsigned: u1, .. }, C::Integer { width: w2, unsigned: u2, .. }) => {
            let (a, b) = (int_range(*w1, *u1), int_range(*w2, *u2));
            b.0 <= a.0 && a.1 <= b.1
        }
        (C::Integer { width, unsigned, .. }, C::Decimal { precision, scale, unsigned: du }) => {
            let (lo, hi) = int_range(*width, *unsigned);
            let digits = hi.max(-lo).to_string().len() as u32;
            digits <= precision.saturating_sub(*scale) && (*unsigned || !du)
        }
        (
            C::Decimal { precision: p1, scale: s1, unsigned: u1 },
            C::Decimal { precision: p2, scale: s2, unsigned: u2 },
        ) => s2 >= s1 && p2 - s2 >= p1 - s1 && (*u1 || !u2),
        (C::Float { unsigned: u1 } | C::Double { unsigned: u1 }, C::Double { unsigned: u2 }) => *u1 || !u2,
        (C::Char { length: a }, C::Char { length: b } | C::VarChar { length: b }) => b >= a,
        (C::VarChar { length: a }, C::VarChar { length: b }) => b >= a,
        (C::Char { length: a } | C::VarChar { length: a }, C::Text { size }) => {
            u64::from(*a) * 4 <= lob(*size)
        }
        (C::Text { size: a }, C::Text { size: b }) => lob(*a) <= lob(*b),
        (C::Binary { length: a }, C::VarBinary { length: b })
        | (C::VarBinary { length: a }, C::VarBinary { length: b }) => b >= a,
        (C::Binary { length: a } | C::VarBinary { length: a }, C::Blob { size }) => {
            u64::from(*a) <= lob(*size)
        }
        (C::Blob { size: a }, C::Blob { size: b }) => lob(*a) <= lob(*b),
        (C::Date, C::DateTime { .. }) => true,
        (C::DateTime { fsp: a }, C::DateTime { fsp: b })
        | (C::Timestamp { fsp: a }, C::Timestamp { fsp: b })
        | (C::Time { fsp: a }, C::Time { fsp: b }) => b >= a,
        (C::Enum { members: a }, C::Enum { members: b }) | (C::Set { members: a }, C::Set { members: b }) => {
            a.iter().all(|m| b.contains(m))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("the server converts the stored values")
    }
}

/// The server applies an ALTER TABLE's column changes before its key
/// changes: the keys and foreign keys it adds name the columns by their new
/// names (`ADD PRIMARY KEY (c22f), CHANGE c2 c22f INT`; the old name is
/// refused), whatever the order written. So: the key and foreign-key drops
/// and renames (by key name) first, then the column operations in their
/// order, then the keys and foreign keys added, then a rename of the table.
fn key_ops_around_columns(ops: Vec<AlterOp>) -> Vec<AlterOp> {
    let rank = |op: &AlterOp| match op {
        AlterOp::DropIndex { .. }
        | AlterOp::DropPrimaryKey
        | AlterOp::RenameIndex { .. }
        | AlterOp::DropForeignKey { .. } => 0,
        AlterOp::AddIndex(_) | AlterOp::AddForeignKey { .. } => 2,
        AlterOp::RenameTable { .. } => 3,
        _ => 1,
    };
    let mut ops = ops;
    ops.sort_by_key(rank);
    ops
}

/// MySQL reads the columns an ALTER renames in the table as it was before the
/// statement, so `CHANGE b c .., CHANGE c b ..` swaps two names. Applied one
/// after another, a rename would collide with a column renamed later in the
/// same statement: such columns first get temporary names (recorded as renames,
/// so the target follows), and the operations name them by those. A column
/// dropped by the statement frees its name for the others: such drops go first
/// (`CHANGE e d .., DROP COLUMN d`).
fn untangle_renames(
    s: &mut TableSchema,
    mut ops: Vec<AlterOp>,
    changes: &mut Vec<SchemaChange>,
    snapshots: &mut Vec<Arc<TableSchema>>,
) -> Vec<AlterOp> {
    let targets: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            AlterOp::ModifyColumn { column, .. } => Some(column.name.to_lowercase()),
            AlterOp::RenameColumn { to, .. } => Some(to.to_lowercase()),
            _ => None,
        })
        .collect();
    let frees_a_target = |op: &AlterOp| matches!(op, AlterOp::DropColumn { name, .. } if targets.contains(&name.to_lowercase()));
    if ops.iter().any(frees_a_target) {
        let (first, rest): (Vec<AlterOp>, Vec<AlterOp>) = ops.into_iter().partition(frees_a_target);
        ops = first.into_iter().chain(rest).collect();
    }
    let renamed: Vec<(usize, String, String)> = ops
        .iter()
        .enumerate()
        .filter_map(|(k, op)| match op {
            AlterOp::ModifyColumn { old_name, column, .. } => {
                Some((k, old_name.clone(), column.name.clone()))
            }
            AlterOp::RenameColumn { from, to, .. } => Some((k, from.clone(), to.clone())),
            _ => None,
        })
        .filter_map(|(k, from, to)| {
            let i = find_column(s, &from)?;
            (s.columns[i].name.to_lowercase() != to.to_lowercase())
                .then(|| (k, s.columns[i].name.clone(), to))
        })
        .collect();
    let taken = |to: &str, own: &str| {
        renamed.iter().any(|(_, from, _)| from != own && from.to_lowercase() == to.to_lowercase())
    };
    if !renamed.iter().any(|(_, from, to)| taken(to, from)) {
        return ops;
    }
    for (n, (k, from, _)) in renamed.iter().enumerate() {
        let mut tmp = format!("synchdb_swap_{n}");
        while find_column(s, &tmp).is_some() {
            tmp.push('_');
        }
        let Some(i) = find_column(s, from) else { continue };
        s.columns[i].name = tmp.clone();
        rename_in_keys(s, from, &tmp);
        changes.push(SchemaChange::RenameColumn { table: s.id.clone(), from: from.clone(), to: tmp.clone() });
        snapshots.push(Arc::new(s.clone()));
        match &mut ops[*k] {
            AlterOp::ModifyColumn { old_name, .. } => *old_name = tmp,
            AlterOp::RenameColumn { from, .. } => *from = tmp,
            _ => {}
        }
    }
    ops
}

fn rename_in_keys(s: &mut TableSchema, from: &str, to: &str) {
    if from == to {
        return;
    }
    for c in &mut s.primary_key {
        if c == from {
            *c = to.to_string();
        }
    }
    for ix in &mut s.indexes {
        for c in &mut ix.columns {
            if c.name == from {
                c.name = to.to_string();
            }
        }
    }
    for fk in &mut s.foreign_keys {
        for c in &mut fk.columns {
            if c == from {
                *c = to.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::parse_ddl;
    use synchdb_types::{ColumnType, IntWidth};

    struct NoServer;

    #[async_trait]
    impl Lookup for NoServer {
        async fn default_charset(&mut self, _db: &str, _t: Option<&str>) -> Result<Option<String>> {
            Ok(Some("utf8mb4".into()))
        }
        async fn discover(&mut self, _t: &TableId) -> Result<Option<TableSchema>> {
            Ok(None)
        }
    }

    fn tracked() -> Schemas {
        let mut t = TableSchema::new(
            TableId::new("db", "t"),
            vec![
                ColumnSchema::new(
                    "id",
                    ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: Some(11) },
                )
                .not_null(),
                ColumnSchema::new("name", ColumnType::VarChar { length: 10 }),
            ],
        );
        t.primary_key = vec!["id".into()];
        Schemas::new(vec![t], TableFilter::all().include("db.*").unwrap())
    }

    async fn run(s: &mut Schemas, sql: &str) -> Vec<Applied> {
        let ddl = parse_ddl(sql, "db").unwrap().unwrap();
        s.apply(ddl, &mut NoServer).await.unwrap()
    }

    fn names(s: &Schemas, t: &str) -> Vec<String> {
        s.get(&TableId::new("db", t)).unwrap().columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Keys added by an ALTER name columns by their new names, wherever the
    /// column change is written (innodb-table-online.test, innodb-index.test).
    #[tokio::test]
    async fn keys_added_by_an_alter_name_the_columns_it_changes_by_their_new_names() {
        let mut s = tracked();
        let out = run(
            &mut s,
            "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (full_name), ADD KEY k (full_name, id), \
             CHANGE name full_name VARCHAR(10) NOT NULL",
        )
        .await;
        let t = s.get(&TableId::new("db", "t")).unwrap();
        assert_eq!(t.primary_key, vec!["full_name".to_string()]);
        assert_eq!(
            t.indexes[0].columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["full_name", "id"]
        );
        // The target gets the column renamed before the keys that name it.
        let renamed = out
            .iter()
            .position(|a| matches!(a, Applied::Schema(SchemaChange::ModifyColumn { .. }, _)))
            .unwrap();
        let keyed = out
            .iter()
            .position(|a| match a {
                Applied::Schema(SchemaChange::CreateIndex { .. }, _) => true,
                Applied::Schema(SchemaChange::SetPrimaryKey { columns, .. }, _) => !columns.is_empty(),
                _ => false,
            })
            .unwrap();
        assert!(renamed < keyed, "{out:?}");
    }

    #[tokio::test]
    async fn alter_sequence_updates_the_tracked_schema() {
        let mut s = tracked();
        let out = run(&mut s, "ALTER TABLE t ADD COLUMN a INT FIRST, ADD b TEXT AFTER id, CHANGE name full_name VARCHAR(20) NOT NULL, ADD UNIQUE KEY (b(4))").await;
        assert_eq!(out.len(), 4);
        assert_eq!(names(&s, "t"), vec!["a", "id", "b", "full_name"]);
        let b = s.get(&TableId::new("db", "t")).unwrap().column("b").unwrap().clone();
        assert_eq!(b.charset.as_deref(), Some("utf8mb4"));
        let Applied::Schema(SchemaChange::ModifyColumn { old, new, .. }, Some(after)) = &out[2] else {
            panic!()
        };
        assert_eq!((old.name.as_str(), new.name.as_str()), ("name", "full_name"));
        assert_eq!(after.columns.len(), 4);
        let Applied::Schema(SchemaChange::CreateIndex { index, .. }, _) = &out[3] else { panic!() };
        assert_eq!(index.name, "b");
        let out = run(
            &mut s,
            "ALTER TABLE t DROP COLUMN b, DROP PRIMARY KEY, ADD PRIMARY KEY (z, id), RENAME COLUMN a TO z",
        )
        .await;
        assert_eq!(out.len(), 4);
        let t = s.get(&TableId::new("db", "t")).unwrap();
        assert_eq!(t.primary_key, vec!["z".to_string(), "id".to_string()]);
        assert!(t.indexes.is_empty(), "index on a dropped column goes");
        assert!(!t.column("z").unwrap().nullable);
        // Failing operations are typed errors.
        let ddl = parse_ddl("ALTER TABLE t DROP COLUMN nope", "db").unwrap().unwrap();
        let e = s.apply(ddl, &mut NoServer).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SourceSchema);
        let ddl = parse_ddl("ALTER TABLE t DROP COLUMN IF EXISTS nope", "db").unwrap().unwrap();
        assert!(s.apply(ddl, &mut NoServer).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn renaming_a_parent_repoints_its_childrens_foreign_keys() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE p (id INT PRIMARY KEY)").await;
        run(&mut s, "CREATE TABLE c (id INT PRIMARY KEY, pid INT, CONSTRAINT fk_c FOREIGN KEY (pid) REFERENCES p (id))")
            .await;
        run(&mut s, "RENAME TABLE p TO parent").await;
        let c = s.get(&TableId::new("db", "c")).unwrap();
        assert_eq!(c.foreign_keys[0].referenced_table, TableId::new("db", "parent"));
        run(&mut s, "ALTER TABLE parent RENAME TO p2").await;
        let c = s.get(&TableId::new("db", "c")).unwrap();
        assert_eq!(c.foreign_keys[0].referenced_table, TableId::new("db", "p2"));
    }

    #[tokio::test]
    async fn adding_a_column_the_server_fills_per_row_copies_the_table_again() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE f (pk INT PRIMARY KEY, a VARCHAR(10))").await;
        let unlogged = |out: &[Applied]| {
            out.iter().any(|a| matches!(a, Applied::RowsChangedUnlogged(t, _) if t.table == "f"))
        };
        for ddl in [
            "ALTER TABLE f ADD COLUMN v VARCHAR(20) AS (CONCAT(a, '!')) VIRTUAL",
            "ALTER TABLE f ADD COLUMN s INT AS (LENGTH(a)) STORED",
            "ALTER TABLE f ADD COLUMN c TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
            "ALTER TABLE f ADD COLUMN u CHAR(36) NOT NULL DEFAULT (UUID())",
            "ALTER TABLE f ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE",
        ] {
            let out = run(&mut s, ddl).await;
            assert!(unlogged(&out), "{ddl}: {out:?}");
            let name = ddl.split_whitespace().nth(5).unwrap();
            assert!(s.get(&TableId::new("db", "f")).unwrap().column(name).is_some(), "{ddl}: tracked");
        }
        for ddl in ["ALTER TABLE f ADD COLUMN k INT NOT NULL DEFAULT 7", "ALTER TABLE f ADD COLUMN m TEXT"] {
            let out = run(&mut s, ddl).await;
            assert!(!unlogged(&out), "{ddl}: a constant default is filled alike: {out:?}");
        }
    }

    #[tokio::test]
    async fn alter_ignore_adding_a_unique_key_copies_the_table_again() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE g (pk INT PRIMARY KEY, b BLOB)").await;
        let out = run(&mut s, "ALTER IGNORE TABLE g ADD UNIQUE (b)").await;
        assert!(
            matches!(out.as_slice(), [Applied::RowsChangedUnlogged(t, _)] if t.table == "g"),
            "only a copy, no index for the duplicates the server removed: {out:?}"
        );
        assert_eq!(s.get(&TableId::new("db", "g")).unwrap().indexes.len(), 1, "tracked with its new key");
        let out = run(&mut s, "ALTER IGNORE TABLE g ADD KEY kb (pk)").await;
        assert!(matches!(&out[0], Applied::Schema(SchemaChange::CreateIndex { .. }, _)), "{out:?}");
        let out = run(&mut s, "ALTER TABLE g ADD UNIQUE (pk)").await;
        assert!(matches!(&out[0], Applied::Schema(SchemaChange::CreateIndex { .. }, _)), "{out:?}");
    }

    #[tokio::test]
    async fn create_or_replace_like_replaces_the_table() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE m (a INT PRIMARY KEY)").await;
        run(&mut s, "CREATE TABLE r (b INT)").await;
        let out = run(&mut s, "CREATE OR REPLACE TABLE r LIKE m").await;
        assert!(matches!(&out[0], Applied::Schema(SchemaChange::DropTable { .. }, _)), "{out:?}");
        assert!(matches!(&out[1], Applied::Schema(SchemaChange::CreateTable { .. }, _)), "{out:?}");
        assert_eq!(s.get(&TableId::new("db", "r")).unwrap().columns[0].name, "a");
        assert!(run(&mut s, "CREATE TABLE IF NOT EXISTS r LIKE t").await.is_empty());
    }

    #[tokio::test]
    async fn columns_swapped_in_one_alter() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE w (a INT, b VARCHAR(10), c VARCHAR(10), d VARCHAR(10), KEY kb (b))").await;
        run(&mut s, "ALTER TABLE w CHANGE b c VARCHAR(200), CHANGE c b VARCHAR(200)").await;
        run(&mut s, "ALTER TABLE w CHANGE b c VARCHAR(20), CHANGE c d VARCHAR(20), CHANGE d b VARCHAR(20)")
            .await;
        let out = run(&mut s, "ALTER TABLE w RENAME COLUMN a TO b, RENAME COLUMN b TO a").await;
        let t = s.get(&TableId::new("db", "w")).unwrap();
        let cols: Vec<String> = t.columns.iter().map(|c| format!("{} {}", c.name, c.column_type)).collect();
        // As MariaDB 10.11 leaves it (checked there): positions kept, names swapped.
        assert_eq!(cols, ["b int(11)", "d varchar(20)", "c varchar(20)", "a varchar(20)"]);
        assert_eq!(t.indexes[0].columns[0].name, "d", "the key follows its column");
        let renames =
            out.iter().filter(|a| matches!(a, Applied::Schema(SchemaChange::RenameColumn { .. }, _))).count();
        assert_eq!(renames, 4, "two to temporary names, two to the final ones: {out:?}");
        run(&mut s, "ALTER TABLE w CHANGE b e INT, CHANGE d x VARCHAR(20), CHANGE c d VARCHAR(20)").await;
        run(&mut s, "ALTER TABLE w CHANGE e d INT, DROP COLUMN d").await;
        let t = s.get(&TableId::new("db", "w")).unwrap();
        let cols: Vec<String> = t.columns.iter().map(|c| format!("{} {}", c.name, c.column_type)).collect();
        assert_eq!(cols, ["d int(11)", "x varchar(20)", "a varchar(20)"]);
    }

    #[tokio::test]
    async fn renaming_a_column_to_its_own_name_changes_nothing() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE r (a INT, B INT)").await;
        assert!(run(&mut s, "ALTER TABLE r RENAME COLUMN a TO a").await.is_empty());
        assert!(run(&mut s, "ALTER TABLE r RENAME COLUMN b TO B").await.is_empty());
        assert!(run(&mut s, "ALTER TABLE r RENAME COLUMN IF EXISTS nope TO x").await.is_empty());
        let out = run(&mut s, "ALTER TABLE r RENAME COLUMN IF EXISTS b TO c").await;
        assert!(matches!(&out[0], Applied::Schema(SchemaChange::RenameColumn { .. }, _)), "{out:?}");
        let out = run(&mut s, "ALTER TABLE r RENAME COLUMN a TO A").await;
        let Applied::Schema(SchemaChange::RenameColumn { from, to, .. }, _) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((from.as_str(), to.as_str()), ("a", "A"), "a new spelling is a rename on PostgreSQL");
    }

    #[tokio::test]
    async fn column_names_resolve_without_regard_to_case() {
        let mut s = tracked();
        let out = run(&mut s, "CREATE TABLE T (id INT NOT NULL, v INT, PRIMARY KEY (ID), KEY kv (V))").await;
        let Applied::Schema(SchemaChange::CreateTable { schema }, _) = &out[0] else { panic!() };
        assert_eq!(schema.primary_key, vec!["id".to_string()]);
        assert!(!schema.columns[0].nullable);
        assert_eq!(schema.indexes[0].columns[0].name, "v");
        run(&mut s, "ALTER TABLE T CHANGE V w INT, ADD COLUMN x INT AFTER ID").await;
        let out =
            run(&mut s, "ALTER TABLE T MODIFY W BIGINT, ALTER COLUMN X SET DEFAULT 3, RENAME COLUMN X TO y")
                .await;
        let Applied::Schema(SchemaChange::ModifyColumn { old, new, .. }, _) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((old.name.as_str(), new.name.as_str()), ("w", "W"), "MODIFY names the column anew");
        let Applied::Schema(SchemaChange::RenameColumn { from, to, .. }, _) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!((from.as_str(), to.as_str()), ("x", "y"));
        let t = s.get(&TableId::new("db", "T")).unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "y", "W"]);
        assert_eq!(t.indexes[0].columns[0].name, "W", "the index follows the column's spelling");
        let out = run(&mut s, "CREATE INDEX iy ON T (Y)").await;
        let Applied::Schema(SchemaChange::CreateIndex { index, .. }, _) = &out[0] else { panic!() };
        assert_eq!(index.columns[0].name, "y");
        let out = run(
            &mut s,
            "CREATE TABLE c (ID INT PRIMARY KEY, T_ID INT, CONSTRAINT fk FOREIGN KEY (t_id) REFERENCES T (ID))",
        )
        .await;
        let Applied::Schema(SchemaChange::CreateTable { schema }, _) = &out[0] else { panic!() };
        assert_eq!(schema.primary_key, vec!["ID".to_string()]);
        assert_eq!(schema.foreign_keys[0].columns, vec!["T_ID".to_string()]);
        assert_eq!(schema.foreign_keys[0].referenced_columns, vec!["id".to_string()]);
        let out = run(&mut s, "ALTER TABLE T DROP COLUMN Y").await;
        assert!(matches!(&out[0], Applied::Schema(SchemaChange::DropColumn { name, .. }, _) if name == "y"));
    }

    #[tokio::test]
    async fn a_table_created_after_its_referencing_tables_gets_their_keys() {
        // mysqldump order with FOREIGN_KEY_CHECKS=0: the child first, its parent later.
        let mut s = tracked();
        let out = run(
            &mut s,
            "CREATE TABLE a_child (id INT PRIMARY KEY, p_id INT, CONSTRAINT fk_p FOREIGN KEY (p_id) REFERENCES p (id))",
        )
        .await;
        assert_eq!(out.len(), 1, "no parent yet: {out:?}");
        let out = run(&mut s, "CREATE TABLE p (id INT PRIMARY KEY)").await;
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[0], Applied::Schema(SchemaChange::CreateTable { schema }, _) if schema.id.table == "p")
        );
        let Applied::Schema(SchemaChange::AddForeignKey { table, foreign_key }, Some(after)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!((table.table.as_str(), foreign_key.name.as_str()), ("a_child", "fk_p"));
        assert_eq!(after.id.table, "a_child");
    }

    #[tokio::test]
    async fn foreign_keys_are_tracked_added_dropped_and_renamed() {
        let mut s = tracked();
        run(&mut s, "CREATE TABLE c (id INT PRIMARY KEY, t_id INT, FOREIGN KEY (t_id) REFERENCES t (id))")
            .await;
        let out = run(
            &mut s,
            "ALTER TABLE c ADD CONSTRAINT fk_named FOREIGN KEY (t_id) REFERENCES t (id) ON DELETE CASCADE, \
             ADD FOREIGN KEY (t_id) REFERENCES t (id) ON DELETE SET NULL",
        )
        .await;
        assert_eq!(out.len(), 2);
        let Applied::Schema(SchemaChange::AddForeignKey { table, foreign_key }, Some(after)) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((table.table.as_str(), foreign_key.name.as_str()), ("c", "fk_named"));
        assert_eq!(foreign_key.referenced_table, TableId::new("db", "t"));
        assert_eq!(after.foreign_keys.len(), 2, "schema_after holds the key");
        let Applied::Schema(SchemaChange::AddForeignKey { foreign_key, .. }, Some(after)) = &out[1] else {
            panic!()
        };
        assert_eq!(foreign_key.name, "c_ibfk_2");
        assert_eq!(after.foreign_keys.len(), 3);
        let out =
            run(&mut s, "ALTER TABLE c DROP FOREIGN KEY c_ibfk_1, DROP FOREIGN KEY IF EXISTS nope").await;
        let [Applied::Schema(SchemaChange::DropForeignKey { name, .. }, Some(after))] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(name, "c_ibfk_1");
        assert_eq!(after.foreign_keys.len(), 2);
        // Not tracked: passed on, the sink drops it if it exists.
        let out = run(&mut s, "ALTER TABLE c DROP FOREIGN KEY untracked").await;
        assert!(
            matches!(&out[0], Applied::Schema(SchemaChange::DropForeignKey { name, .. }, _) if name == "untracked")
        );
        // A DROP INDEX of the implicit index MySQL made for a key does not fail.
        let out = run(&mut s, "ALTER TABLE c DROP INDEX fk_named").await;
        assert!(matches!(&out[0], Applied::Schema(SchemaChange::DropIndex { .. }, _)));
        // InnoDB renames the names it generated with the table.
        run(&mut s, "RENAME TABLE c TO d").await;
        let names: Vec<String> =
            s.get(&TableId::new("db", "d")).unwrap().foreign_keys.iter().map(|k| k.name.clone()).collect();
        assert_eq!(names, ["fk_named", "d_ibfk_2"]);
        let out = run(&mut s, "ALTER TABLE d ADD FOREIGN KEY (t_id) REFERENCES t (id)").await;
        assert!(
            matches!(&out[0], Applied::Schema(SchemaChange::AddForeignKey { foreign_key, .. }, _) if foreign_key.name == "d_ibfk_3")
        );
    }

    #[tokio::test]
    async fn create_like_rename_drop_and_filter() {
        let mut s = tracked();
        let out = run(&mut s, "CREATE TABLE t2 LIKE t").await;
        assert!(
            matches!(&out[0], Applied::Schema(SchemaChange::CreateTable { schema }, _) if schema.id.table == "t2" && schema.primary_key == vec!["id".to_string()])
        );
        assert!(run(&mut s, "CREATE TABLE other.x (a INT)").await.is_empty(), "not selected");
        assert!(!s.is_selected(&TableId::new("other", "x")));
        let out = run(&mut s, "RENAME TABLE t2 TO t3, t3 TO other.t4").await;
        assert!(
            matches!(&out[0], Applied::Schema(SchemaChange::RenameTable { .. }, Some(a)) if a.id.table == "t3")
        );
        assert!(
            matches!(&out[1], Applied::Schema(SchemaChange::DropTable { table }, None) if table.table == "t3")
        );
        let out = run(&mut s, "ALTER TABLE t ADD c INT, RENAME TO u").await;
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[1], Applied::Schema(SchemaChange::RenameTable { to, .. }, Some(a)) if to.table == "u" && a.columns.len() == 3)
        );
        assert!(matches!(&run(&mut s, "TRUNCATE u").await[0], Applied::Truncate(t) if t.id.table == "u"));
        let out = run(&mut s, "CREATE TABLE n (id INT PRIMARY KEY, s VARCHAR(3))").await;
        let Applied::Schema(SchemaChange::CreateTable { schema }, _) = &out[0] else { panic!() };
        assert_eq!(schema.columns[1].charset.as_deref(), Some("utf8mb4"));
        assert_eq!(run(&mut s, "DROP TABLE IF EXISTS n, nothere").await.len(), 1);
        assert_eq!(run(&mut s, "DROP DATABASE db").await.len(), 1);
        assert!(!s.tracks_database("db"));
    }

    #[test]
    fn type_changes_that_keep_values() {
        use synchdb_types::ColumnType as C;
        let col = |t: C| ColumnSchema::new("c", t);
        let int = |w, u| C::Integer { width: w, unsigned: u, display_width: None };
        let ok = |a: C, b: C| keeps_values(&col(a), &col(b)).is_ok();
        assert!(ok(int(IntWidth::Int, false), int(IntWidth::Big, false)));
        assert!(ok(int(IntWidth::Int, true), int(IntWidth::Big, false)));
        assert!(!ok(int(IntWidth::Int, true), int(IntWidth::Int, false)));
        assert!(!ok(int(IntWidth::Int, false), C::DateTime { fsp: 0 }));
        assert!(ok(int(IntWidth::Small, false), C::Decimal { precision: 7, scale: 2, unsigned: false }));
        assert!(!ok(int(IntWidth::Int, false), C::Decimal { precision: 7, scale: 2, unsigned: false }));
        assert!(ok(C::VarChar { length: 10 }, C::VarChar { length: 20 }));
        assert!(!ok(C::VarChar { length: 20 }, C::VarChar { length: 10 }));
        assert!(!ok(C::VarChar { length: 20 }, C::Char { length: 20 }));
        assert!(ok(C::VarChar { length: 20 }, C::Text { size: LobSize::Normal }));
        assert!(!ok(C::Binary { length: 4 }, C::Binary { length: 8 }));
        assert!(ok(C::Enum { members: vec!["a".into()] }, C::Enum { members: vec!["a".into(), "b".into()] }));
        assert!(!ok(
            C::Enum { members: vec!["a".into(), "b".into()] },
            C::Enum { members: vec!["a".into()] }
        ));
        assert!(!ok(C::DateTime { fsp: 6 }, C::DateTime { fsp: 0 }));
        assert!(!ok(C::Bit { width: 3 }, C::Bit { width: 8 }));
        let mut latin1 = col(C::VarChar { length: 10 });
        latin1.charset = Some("latin1".into());
        let mut utf8 = latin1.clone();
        utf8.charset = Some("utf8mb4".into());
        assert!(keeps_values(&latin1, &utf8).is_ok());
        assert!(keeps_values(&utf8, &latin1).is_err());
    }
}
