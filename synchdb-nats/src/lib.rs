//! NATS JetStream for synchdb: publish the binlog once, apply it from many
//! processes and machines.
//!
//! * [`JetStreamSink`] publishes a pipeline's snapshot and changes to a
//!   stream, subjects `<prefix>.<database>.<table>`; its checkpoint is the
//!   stream itself.
//! * [`JetStreamSource`] applies a stream (the tables an applier owns of it)
//!   into any sink, as whole transactions; with a sink that stores its state
//!   with its data (PostgreSQL) that is exactly-once per applier.
//! * [`wire`] is the native format (versioned, lossless MessagePack of the
//!   typed events) and [`debezium`] the Debezium-compatible JSON envelope a
//!   publisher can write instead for existing Debezium consumers.
//!
//! ```no_run
//! # async fn demo() -> synchdb_core::Result<()> {
//! use synchdb_nats::{JetStreamOptions, JetStreamSink, JetStreamSource, TableSelection};
//! let options: JetStreamOptions = "nats://127.0.0.1:4222/CDC".parse()?;
//! // A publisher: any source into the stream.
//! let sink = JetStreamSink::connect(options.clone()).await?;
//! // An applier of the `shop` database: the stream into any sink.
//! let source = JetStreamSource::new(options).selection(TableSelection::all().database("shop"));
//! # let _ = (sink, source);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod debezium;
mod options;
mod sink;
mod source;
mod stream;
pub mod subject;
pub mod wire;

pub use options::{Format, JetStreamOptions};
pub use sink::{JetStreamSink, StreamState};
pub use source::{JetStreamSource, TableSelection};
