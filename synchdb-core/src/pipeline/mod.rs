//! The pipeline builder, its runtime and the handle of a running pipeline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use synchdb_types::{ChangeEvent, Position, SchemaChange, TableId, TableSchema, Transaction};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::converter::Converter;
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{ErrorPolicy, RetryPolicy};
use crate::sink::{ChangeBatch, RowStream, Sink};
use crate::source::{
    RowReceiver, SourceCommand, SourceCommands, SourceContext, SourceControl, SourceMessage,
};
use crate::state::{
    CheckpointStore, ChunkInfo, MemoryCheckpointStore, ResyncState, ResyncUpdate, SchemaUpdate,
    SnapshotUpdate, StateUpdate,
};
use crate::stats::{Stats, StatsSnapshot};
use crate::status::{Phase, PipelineStatus};
use crate::Source;

mod apply;
mod builder;
mod dispatch;
mod handle;
mod runtime;
mod snapshot;

use apply::*;
pub(crate) use dispatch::*;
use handle::*;
use runtime::*;
use snapshot::*;

/// Default largest batch, in change events (a larger single transaction is still applied whole).
pub const DEFAULT_BATCH_SIZE: usize = 5_000;
/// Default capacity of the channel between the source and the pipeline, in messages.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 256;

/// A pipeline: a [`Source`], [`Converter`]s and a [`Sink`], ready to start.
///
/// ```
/// # use synchdb_core::{Pipeline, memory::{MemorySource, MemorySink}};
/// # async fn demo() -> synchdb_core::Result<()> {
/// let sink = MemorySink::new();
/// let handle = Pipeline::builder()
///     .id("demo")
///     .source(MemorySource::new(vec![]))
///     .sink(sink.clone())
///     .batch_size(1000)
///     .build()?
///     .start();
/// let stats = handle.wait().await?;
/// # let _ = stats; Ok(()) }
/// ```
pub struct Pipeline {
    id: String,
    source: Box<dyn Source>,
    converters: Vec<Arc<dyn Converter>>,
    sink: Arc<dyn Sink>,
    store: Arc<dyn CheckpointStore>,
    batch_size: usize,
    channel_capacity: usize,
    snapshot_parallelism: usize,
    error_policy: ErrorPolicy,
    restart: RetryPolicy,
    commands: SourceCommands,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("id", &self.id)
            .field("source", &self.source.name())
            .field("converters", &self.converters.iter().map(|c| c.name().to_string()).collect::<Vec<_>>())
            .field("sink", &self.sink.name())
            .field("batch_size", &self.batch_size)
            .field("error_policy", &self.error_policy)
            .finish()
    }
}

/// Builds a [`Pipeline`]; see [`Pipeline::builder`].
#[must_use]
pub struct PipelineBuilder {
    id: String,
    source: Option<Box<dyn Source>>,
    converters: Vec<Arc<dyn Converter>>,
    sink: Option<Arc<dyn Sink>>,
    store: Option<Arc<dyn CheckpointStore>>,
    batch_size: usize,
    channel_capacity: usize,
    snapshot_parallelism: usize,
    error_policy: ErrorPolicy,
    restart: RetryPolicy,
}

/// What the handle, its controls and the runtime share.
struct Shared {
    id: String,
    stats: Arc<Stats>,
    shutdown: Arc<watch::Sender<bool>>,
    pause: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    /// Bumped to end the current run gracefully (a seek restarts it).
    restart: watch::Sender<u64>,
    /// Where the next run starts instead of the stored checkpoint.
    seek: std::sync::Mutex<Option<Position>>,
    commands: SourceCommands,
    source_control: Option<Arc<dyn SourceControl>>,
    supports_resnapshot: bool,
    /// One seek at a time.
    seek_lock: tokio::sync::Mutex<()>,
}

/// The handle of a running pipeline: its [`PipelineControl`] (status,
/// pause, resume, seek, resnapshot, stop) and its end.
#[derive(Debug)]
pub struct PipelineHandle {
    control: PipelineControl,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// Status and control of a running pipeline; cheap to clone and shared with
/// an HTTP layer or other tasks while the [`PipelineHandle`] waits for the end.
#[derive(Clone)]
pub struct PipelineControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PipelineControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineControl").field("id", &self.shared.id).finish()
    }
}

impl std::ops::Deref for PipelineHandle {
    type Target = PipelineControl;
    fn deref(&self) -> &PipelineControl {
        &self.control
    }
}

/// Shared pieces of a running pipeline.
#[derive(Clone)]
struct Ctx {
    id: Arc<str>,
    sink: Arc<dyn Sink>,
    store: Arc<dyn CheckpointStore>,
    stats: Arc<Stats>,
    policy: ErrorPolicy,
    /// The last durable position, for the source ([`SourceContext::applied`]).
    applied: Arc<watch::Sender<Option<Position>>>,
}

/// A converted transaction with the state its source form implies.
struct Converted {
    tx: Transaction,
    schemas: Vec<SchemaUpdate>,
    /// A piece of a transaction whose rest follows ([`SourceMessage::TransactionPart`]).
    partial: bool,
}

/// A source that is being run (its owner holds it meanwhile).
struct Taken;

#[async_trait::async_trait]
impl Source for Taken {
    fn name(&self) -> &str {
        "taken"
    }
    async fn run(&mut self, _ctx: SourceContext) -> Result<()> {
        Err(Error::internal("the source is already running"))
    }
}

/// Snapshot bookkeeping of the dispatcher.
struct SnapshotRun {
    parallelism: Arc<Semaphore>,
    writers: JoinSet<Result<()>>,
    /// Converted schemas per source table: one per converter stage plus the final one.
    chains: HashMap<TableId, Vec<Arc<TableSchema>>>,
    /// A resync's chunks are being written.
    resync_active: bool,
}

/// Work for the applier.
enum ApplyItem {
    /// Transactions to apply as one batch.
    Batch(Vec<Converted>),
    /// Answer once everything before it is applied.
    Barrier(tokio::sync::oneshot::Sender<()>),
}
