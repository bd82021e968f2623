//! Change events: row changes and schema changes, grouped in source transactions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::position::{BinlogPosition, Position};
use crate::schema::{ColumnSchema, ForeignKey, IndexSchema, TableId, TableSchema};
use crate::value::Value;

/// A row: values in the column order of the event's [`TableSchema`].
pub type Row = Vec<Value>;

/// Where an event comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMeta {
    /// Position of the binlog event that carried this change.
    pub position: BinlogPosition,
    /// Source commit time of the transaction (second precision on MySQL 5.x/MariaDB).
    pub commit_time: DateTime<Utc>,
    /// Ordinal of the source transaction within this stream ([`Transaction::sequence`]).
    pub tx: u64,
    /// Ordinal of this event within its transaction, from 0.
    pub index: u32,
}

/// A row insert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsertEvent {
    /// The table's schema as of this event.
    pub table: Arc<TableSchema>,
    /// The new row.
    pub row: Row,
    /// Origin.
    pub meta: EventMeta,
}

/// A row update with full before and after images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateEvent {
    /// The table's schema as of this event.
    pub table: Arc<TableSchema>,
    /// The row before (identifies the target row; the key may change).
    pub before: Row,
    /// The row after.
    pub after: Row,
    /// Origin.
    pub meta: EventMeta,
}

/// A row delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteEvent {
    /// The table's schema as of this event.
    pub table: Arc<TableSchema>,
    /// The deleted row's full image.
    pub row: Row,
    /// Origin.
    pub meta: EventMeta,
}

/// TRUNCATE TABLE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruncateEvent {
    /// The table's schema.
    pub table: Arc<TableSchema>,
    /// Origin.
    pub meta: EventMeta,
}

/// Where an added or moved column goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ColumnPosition {
    /// At the end (the default).
    Last,
    /// `FIRST`.
    First,
    /// `AFTER name`.
    After(String),
}

/// A typed schema change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // rare events; boxing each variant buys nothing
pub enum SchemaChange {
    /// CREATE TABLE (also `CREATE TABLE ... LIKE`, resolved to the full schema).
    CreateTable {
        /// The new table.
        schema: TableSchema,
    },
    /// DROP TABLE.
    DropTable {
        /// The dropped table.
        table: TableId,
    },
    /// RENAME TABLE / ALTER TABLE ... RENAME TO.
    RenameTable {
        /// Old name.
        from: TableId,
        /// New name.
        to: TableId,
    },
    /// ALTER TABLE ... ADD COLUMN.
    AddColumn {
        /// The table.
        table: TableId,
        /// The new column.
        column: ColumnSchema,
        /// Where it goes.
        position: ColumnPosition,
    },
    /// ALTER TABLE ... DROP COLUMN.
    DropColumn {
        /// The table.
        table: TableId,
        /// The dropped column.
        name: String,
    },
    /// ALTER TABLE ... MODIFY / CHANGE / ALTER COLUMN SET|DROP DEFAULT: the column's
    /// whole definition before and after (the name may change with CHANGE).
    ModifyColumn {
        /// The table.
        table: TableId,
        /// Definition before.
        old: ColumnSchema,
        /// Definition after.
        new: ColumnSchema,
        /// A new place, when given (`FIRST` / `AFTER`).
        position: Option<ColumnPosition>,
    },
    /// ALTER TABLE ... RENAME COLUMN.
    RenameColumn {
        /// The table.
        table: TableId,
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// CREATE INDEX / ALTER TABLE ... ADD INDEX|UNIQUE|FULLTEXT|SPATIAL.
    CreateIndex {
        /// The table.
        table: TableId,
        /// The index.
        index: IndexSchema,
    },
    /// DROP INDEX / ALTER TABLE ... DROP INDEX.
    DropIndex {
        /// The table.
        table: TableId,
        /// Index name.
        name: String,
    },
    /// ALTER TABLE ... ADD PRIMARY KEY / DROP PRIMARY KEY (empty columns).
    SetPrimaryKey {
        /// The table.
        table: TableId,
        /// New key columns; empty when the key is dropped.
        columns: Vec<String>,
    },
    /// ALTER TABLE ... ADD `[CONSTRAINT [name]]` FOREIGN KEY ... REFERENCES ...
    /// (unnamed keys carry the name the source generated, e.g. `t_ibfk_1`).
    AddForeignKey {
        /// The referencing table.
        table: TableId,
        /// The new foreign key.
        foreign_key: ForeignKey,
    },
    /// ALTER TABLE ... DROP FOREIGN KEY name.
    DropForeignKey {
        /// The referencing table.
        table: TableId,
        /// Constraint name.
        name: String,
    },
}

impl SchemaChange {
    /// The table the change applies to (for a rename, the old name).
    pub fn table(&self) -> &TableId {
        match self {
            SchemaChange::CreateTable { schema } => &schema.id,
            SchemaChange::DropTable { table }
            | SchemaChange::AddColumn { table, .. }
            | SchemaChange::DropColumn { table, .. }
            | SchemaChange::ModifyColumn { table, .. }
            | SchemaChange::RenameColumn { table, .. }
            | SchemaChange::CreateIndex { table, .. }
            | SchemaChange::DropIndex { table, .. }
            | SchemaChange::SetPrimaryKey { table, .. }
            | SchemaChange::AddForeignKey { table, .. }
            | SchemaChange::DropForeignKey { table, .. } => table,
            SchemaChange::RenameTable { from, .. } => from,
        }
    }
}

/// A schema change with its context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaChangeEvent {
    /// What changed.
    pub change: SchemaChange,
    /// The table's whole schema after the change (`None` after a drop).
    pub schema_after: Option<Arc<TableSchema>>,
    /// The source statement, for logs and errors.
    pub ddl: String,
    /// Origin.
    pub meta: EventMeta,
}

/// One change from the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChangeEvent {
    /// Row inserted.
    Insert(InsertEvent),
    /// Row updated.
    Update(UpdateEvent),
    /// Row deleted.
    Delete(DeleteEvent),
    /// Table truncated.
    Truncate(TruncateEvent),
    /// Schema changed (boxed: rare and large).
    Schema(Box<SchemaChangeEvent>),
}

impl ChangeEvent {
    /// The event's origin.
    pub fn meta(&self) -> &EventMeta {
        match self {
            ChangeEvent::Insert(e) => &e.meta,
            ChangeEvent::Update(e) => &e.meta,
            ChangeEvent::Delete(e) => &e.meta,
            ChangeEvent::Truncate(e) => &e.meta,
            ChangeEvent::Schema(e) => &e.meta,
        }
    }

    /// The table the event concerns.
    pub fn table_id(&self) -> &TableId {
        match self {
            ChangeEvent::Insert(e) => &e.table.id,
            ChangeEvent::Update(e) => &e.table.id,
            ChangeEvent::Delete(e) => &e.table.id,
            ChangeEvent::Truncate(e) => &e.table.id,
            ChangeEvent::Schema(e) => e.change.table(),
        }
    }

    /// A short name of the operation: `insert`, `update`, `delete`, `truncate`, `ddl`.
    pub fn operation(&self) -> &'static str {
        match self {
            ChangeEvent::Insert(_) => "insert",
            ChangeEvent::Update(_) => "update",
            ChangeEvent::Delete(_) => "delete",
            ChangeEvent::Truncate(_) => "truncate",
            ChangeEvent::Schema(_) => "ddl",
        }
    }

    /// Approximate memory held by the event's values.
    pub fn approx_size(&self) -> usize {
        let rows: usize = match self {
            ChangeEvent::Insert(e) => e.row.iter().map(Value::approx_size).sum(),
            ChangeEvent::Update(e) => e.before.iter().chain(&e.after).map(Value::approx_size).sum(),
            ChangeEvent::Delete(e) => e.row.iter().map(Value::approx_size).sum(),
            ChangeEvent::Truncate(_) => 0,
            ChangeEvent::Schema(e) => e.ddl.len() + 512,
        };
        rows + 64
    }
}

/// One committed source transaction (or one DDL statement, which MySQL
/// commits implicitly).
///
/// Non-exhaustive: build it with [`Transaction::new`] and the `with_` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Transaction {
    /// Ordinal of the transaction within this stream, increasing.
    pub sequence: u64,
    /// The transaction's GTID, when the server assigns one (`0-1-42` or `uuid:42`).
    pub gtid: Option<String>,
    /// Source commit time.
    pub commit_time: DateTime<Utc>,
    /// The position just after the commit: where to resume after this transaction.
    pub end_position: Position,
    /// The changes, in source order.
    pub events: Vec<ChangeEvent>,
    /// `false` when the source ran the transaction with `FOREIGN_KEY_CHECKS=0`
    /// (as dumps and bulk loads do): MySQL then neither checked nor cascaded
    /// foreign keys for its changes, and a sink must apply them the same way.
    #[serde(default = "checks_on")]
    pub foreign_key_checks: bool,
}

fn checks_on() -> bool {
    true
}

impl Transaction {
    /// A transaction with no GTID, run with foreign-key checks on.
    pub fn new(
        sequence: u64,
        end_position: Position,
        commit_time: DateTime<Utc>,
        events: Vec<ChangeEvent>,
    ) -> Self {
        Transaction { sequence, gtid: None, commit_time, end_position, events, foreign_key_checks: true }
    }

    /// Set the GTID.
    pub fn with_gtid(mut self, gtid: Option<String>) -> Self {
        self.gtid = gtid;
        self
    }

    /// Set whether the source ran it with foreign-key checks (see the field).
    pub fn with_foreign_key_checks(mut self, on: bool) -> Self {
        self.foreign_key_checks = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, IntWidth};

    fn meta() -> EventMeta {
        EventMeta {
            position: BinlogPosition::new("mysql-bin.000001", 4),
            commit_time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            tx: 1,
            index: 0,
        }
    }

    #[test]
    fn events_expose_table_and_operation() {
        let schema = Arc::new(TableSchema::new(
            TableId::new("shop", "t"),
            vec![ColumnSchema::new(
                "id",
                ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None },
            )],
        ));
        let e = ChangeEvent::Insert(InsertEvent {
            table: schema.clone(),
            row: vec![Value::Int(1)],
            meta: meta(),
        });
        assert_eq!(e.operation(), "insert");
        assert_eq!(e.table_id().to_string(), "shop.t");
        let ddl = ChangeEvent::Schema(Box::new(SchemaChangeEvent {
            change: SchemaChange::RenameTable {
                from: TableId::new("shop", "t"),
                to: TableId::new("shop", "u"),
            },
            schema_after: None,
            ddl: "RENAME TABLE t TO u".into(),
            meta: meta(),
        }));
        assert_eq!(ddl.table_id().table, "t");
        let json = serde_json::to_string(&e).unwrap();
        let back: ChangeEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}
