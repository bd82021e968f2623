//! The contracts and the runtime of synchdb.
//!
//! A pipeline moves changes from a [`Source`] through [`Converter`]s into a
//! [`Sink`]:
//!
//! - the source sends a snapshot (tables, then chunks of rows, consistent
//!   at one position) and then whole source transactions
//!   ([`SourceMessage`]);
//! - converters map schemas, rows and events in the order they were added;
//! - the sink bulk-loads the snapshot chunks (several at once) and applies
//!   batches of whole transactions, storing the pipeline state (checkpoint,
//!   snapshot progress, tracked source schemas) in the same transaction when
//!   it can ([`Sink::state`]), so that a restart resumes with nothing
//!   lost and nothing applied twice.
//!
//! Stages are joined by bounded channels: a slow sink slows the source down
//! instead of growing memory. The [`ErrorPolicy`] decides what a failed batch
//! does (exit, retry with backoff, or skip the failing event into the dead
//! letter), and [`Stats`] count operations, batches and latency.
//!
//! ```
//! use std::sync::Arc;
//! use synchdb_core::memory::{MemorySink, MemorySource};
//! use synchdb_core::{MapRows, Pipeline};
//! use synchdb_types::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synchdb_core::Result<()> {
//! let table = Arc::new(TableSchema::new(
//!     TableId::new("shop", "users"),
//!     vec![ColumnSchema::new("email", ColumnType::VarChar { length: 100 })],
//! ));
//! let position = Position::new(BinlogPosition::new("mysql-bin.000001", 4));
//! let rows = vec![vec![Value::Text("Ann@Example.com".into())]];
//! let sink = MemorySink::new();
//! let stats = Pipeline::builder()
//!     .id("example")
//!     .source(MemorySource::new(vec![]).with_snapshot(position, vec![(table.clone(), rows)]))
//!     .converter(MapRows::new("lowercase", |_table: &TableSchema, row: Row| {
//!         Ok(Some(row.into_iter().map(|v| match v {
//!             Value::Text(s) => Value::Text(s.to_lowercase()),
//!             other => other,
//!         }).collect()))
//!     }))
//!     .sink(sink.clone())
//!     .build()?
//!     .start()
//!     .wait()
//!     .await?;
//! assert_eq!(stats.snapshot_rows, 1);
//! assert_eq!(sink.data().snapshot_rows[&table.id][0][0], Value::Text("ann@example.com".into()));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod converter;
mod error;
pub mod mapping;
pub mod memory;
mod pipeline;
mod policy;
mod sink;
mod source;
mod state;
mod stats;
pub mod status;
pub mod verify;

pub use converter::{default_convert_event, Converter, MapRows};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use pipeline::{
    Pipeline, PipelineBuilder, PipelineControl, PipelineHandle, DEFAULT_BATCH_SIZE, DEFAULT_CHANNEL_CAPACITY,
};
pub use policy::{retry_transient, ErrorPolicy, RetryPolicy};
pub use sink::{ChangeBatch, RowStream, Sink, SinkCapabilities, SinkState};
pub use source::{
    chunk_channel, ChunkSender, RowReceiver, Source, SourceCommand, SourceCommands, SourceContext,
    SourceControl, SourceMessage,
};
pub use state::{
    done_chunks_by_table, CheckpointStore, ChunkDone, ChunkInfo, MemoryCheckpointStore, PipelineState,
    ResyncState, ResyncUpdate, SchemaUpdate, SkipPoint, SnapshotPlan, SnapshotProgress, SnapshotStatus,
    SnapshotUpdate, StateUpdate,
};
pub use stats::{Stats, StatsSnapshot};
pub use status::{Phase, PipelineStatus, SourceHead};

/// Re-export of the event model.
pub use synchdb_types as types;
