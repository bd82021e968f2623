//! synchdb: replicate MySQL/MariaDB into PostgreSQL, embedded in your program.
//!
//! This crate re-exports the workspace's crates under one name:
//! [`types`] (the change-event model), [`core`] (the Source/Converter/Sink
//! contracts and the pipeline runtime), `mysql` (the MySQL/MariaDB source,
//! feature `mysql`), `postgres` (the PostgreSQL sink, feature `postgres`)
//! `http` (the operations API, feature `http`) and `nats` (NATS JetStream
//! publisher and applier, feature `nats`); the four features are on by
//! default. With `default-features = false` only the runtime and the
//! contracts are compiled (no sqlx, no mysql_async), for programs that bring
//! their own sources and sinks; [`prelude`] holds what they need.
//!
//! ```no_run
//! # #[cfg(all(feature = "mysql", feature = "postgres"))]
//! # mod demo {
//! use synchdb::mysql::{MySqlSource, MySqlSourceOptions};
//! use synchdb::postgres::{PgSink, PgSinkOptions};
//! use synchdb::Pipeline;
//!
//! # pub async fn main() -> synchdb::Result<()> {
//! let source: MySqlSourceOptions = "mysql://repl:secret@127.0.0.1:3306".parse()?;
//! let target: PgSinkOptions = "postgres://postgres@127.0.0.1:5432/replica".parse()?;
//! let stats = Pipeline::builder()
//!     .id("shop")
//!     .source(MySqlSource::new(source.database("shop")))
//!     .sink(PgSink::connect(target).await?)
//!     .build()?
//!     .start()
//!     .wait()
//!     .await?;
//! println!("{stats}");
//! # Ok(()) }
//! # }
//! ```
#![warn(missing_docs)]

pub use synchdb_core as core;
/// The operations API over HTTP (feature `http`).
#[cfg(feature = "http")]
pub use synchdb_http as http;
/// The MySQL/MariaDB source (feature `mysql`).
#[cfg(feature = "mysql")]
pub use synchdb_mysql as mysql;
/// NATS JetStream: publish the change stream once, apply it from many
/// processes (feature `nats`).
#[cfg(feature = "nats")]
pub use synchdb_nats as nats;
/// The PostgreSQL sink (feature `postgres`).
#[cfg(feature = "postgres")]
pub use synchdb_postgres as postgres;
pub use synchdb_types as types;

pub use synchdb_core::{Error, ErrorKind, Pipeline, PipelineControl, PipelineHandle, Result};

/// What a program that writes its own source, sink or converter needs:
/// `use synchdb::prelude::*;`.
pub mod prelude {
    pub use synchdb_core::{
        chunk_channel, ChangeBatch, ChunkInfo, ChunkSender, Converter, Error, ErrorKind, ErrorPolicy,
        MapRows, Pipeline, PipelineControl, PipelineHandle, PipelineState, PipelineStatus, Result,
        RowReceiver, RowStream, Sink, SinkCapabilities, SinkState, SnapshotPlan, Source, SourceContext,
        SourceMessage, StateUpdate, StatsSnapshot,
    };
    pub use synchdb_types::{
        BinlogPosition, ChangeEvent, ColumnSchema, ColumnType, DeleteEvent, EventMeta, InsertEvent, Position,
        Row, SqlTransform, TableId, TableSchema, TargetType, Transaction, UpdateEvent, Value,
    };
}
