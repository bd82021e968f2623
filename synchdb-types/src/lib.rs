//! The typed change-event model of synchdb: values, rows, table schemas,
//! schema changes and source positions. No I/O.
//!
//! A MySQL/MariaDB source produces [`Transaction`]s of [`ChangeEvent`]s; each
//! row event carries the table's [`TableSchema`] (shared through an `Arc`) and
//! a positional [`Row`] of [`Value`]s aligned with the schema's columns.
//!
//! ```
//! use std::sync::Arc;
//! use synchdb_types::*;
//!
//! let table = Arc::new(TableSchema::new(
//!     TableId::new("shop", "orders"),
//!     vec![
//!         ColumnSchema::new("id", ColumnType::Integer { width: IntWidth::Big, unsigned: true, display_width: None }).not_null(),
//!         ColumnSchema::new("total", ColumnType::Decimal { precision: 65, scale: 30, unsigned: false }),
//!         ColumnSchema::new("waited", ColumnType::Time { fsp: 6 }),
//!     ],
//! ));
//! let row: Row = vec![
//!     Value::UInt(u64::MAX),
//!     Value::Decimal(Decimal::parse("12345678901234567890123456789012345.5").unwrap()),
//!     Value::Time("-838:59:59.000001".parse().unwrap()),
//! ];
//! assert_eq!(row[2].to_string(), "-838:59:59.000001");
//! let position: Position = "mysql-bin.000003:1234 gtid=0-1-42".parse().unwrap();
//! assert_eq!(position.binlog.file, "mysql-bin.000003");
//! # let _ = table;
//! ```
#![warn(missing_docs)]

mod error;
mod event;
mod position;
mod schema;
mod target;
mod value;

pub use error::ParseError;
pub use event::{
    ChangeEvent, ColumnPosition, DeleteEvent, EventMeta, InsertEvent, Row, SchemaChange, SchemaChangeEvent,
    Transaction, TruncateEvent, UpdateEvent,
};
pub use position::{BinlogPosition, GtidInterval, GtidSet, MariaGtid, Position};
pub use schema::{
    ColumnDefault, ColumnSchema, ColumnType, ForeignKey, IndexColumn, IndexKind, IndexSchema, IntWidth,
    LobSize, ReferentialAction, TableId, TableSchema, TextNul, ZeroDates,
};
pub use target::{SqlTransform, TargetType};
pub use value::{Bits, Date, DateTime, Decimal, Geometry, Time, Timestamp, Value};
