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

impl Pipeline {
    /// A builder with the defaults: id `default`, batches of
    /// [`DEFAULT_BATCH_SIZE`] events, the `exit` error policy, one snapshot
    /// writer per core.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            id: "default".into(),
            source: None,
            converters: Vec::new(),
            sink: None,
            store: None,
            batch_size: DEFAULT_BATCH_SIZE,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            snapshot_parallelism: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            error_policy: ErrorPolicy::Exit,
            restart: RetryPolicy::forever(),
        }
    }

    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Start the pipeline on the current tokio runtime.
    pub fn start(self) -> PipelineHandle {
        let stats = Arc::new(Stats::new(self.id.clone()));
        stats.set_phase(Phase::Starting);
        let (shutdown_tx, _) = watch::channel(false);
        let shutdown_tx = Arc::new(shutdown_tx);
        let (pause_tx, pause_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let (restart_tx, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            id: self.id.clone(),
            stats: stats.clone(),
            shutdown: shutdown_tx.clone(),
            pause: pause_tx,
            done: done_rx,
            restart: restart_tx,
            seek: std::sync::Mutex::new(None),
            commands: self.commands.clone(),
            source_control: self.source.control(),
            supports_resnapshot: self.source.supports_resnapshot(),
            seek_lock: tokio::sync::Mutex::new(()),
        });
        let span = info_span!("pipeline", id = %self.id);
        let sink = self.sink.clone();
        let last_sink = self.sink.clone();
        let run = supervise(self, shared.clone(), pause_rx);
        let monitor = tokio::spawn(monitor(shared.clone(), sink).instrument(span.clone()));
        let task_stats = stats.clone();
        let task = tokio::spawn(
            async move {
                let result = run.await;
                match &result {
                    Ok(()) => task_stats.set_phase(Phase::Stopped),
                    Err(e) => {
                        task_stats.record_error(e, false);
                        task_stats.set_phase(Phase::Failed);
                    }
                }
                // The monitor publishes the final status, then ends.
                let _ = done_tx.send(true);
                let _ = monitor.await;
                if let Err(e) = last_sink.shutdown().await {
                    warn!(error = %e, "sink shutdown failed");
                }
                result
            }
            .instrument(span),
        );
        PipelineHandle { control: PipelineControl { shared }, task }
    }
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

/// Every second: the status into the metrics gauges and, when the sink
/// keeps it ([`Sink::publish_status`]), into the target; every 2 s the
/// source's head (for the lag in bytes). Ends after publishing the final status.
async fn monitor(shared: Arc<Shared>, sink: Arc<dyn Sink>) {
    let mut done = shared.done.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut last_published: Option<PipelineStatus> = None;
    loop {
        let finished = tokio::select! {
            _ = tick.tick() => false,
            _ = done.wait_for(|d| *d) => true,
        };
        if n % 2 == 0 && !finished {
            if let Some(control) = &shared.source_control {
                match tokio::time::timeout(Duration::from_secs(5), control.head()).await {
                    Ok(Ok(head)) => shared.stats.set_head(head),
                    Ok(Err(e)) => debug!(error = %e, "source head not read"),
                    Err(_) => debug!("source head not read within 5 s"),
                }
            }
        }
        n += 1;
        let status = shared.stats.status(*shared.pause.borrow());
        shared.stats.publish_gauges(&status);
        let changed = last_published.as_ref().is_none_or(|l| status_changed(l, &status));
        if changed {
            match tokio::time::timeout(Duration::from_secs(5), sink.publish_status(&status)).await {
                Ok(Ok(())) => last_published = Some(status),
                Ok(Err(e)) => debug!(error = %e, "status not stored on the sink"),
                Err(_) => debug!("status not stored on the sink within 5 s"),
            }
        }
        if finished {
            return;
        }
    }
}

/// Whether a status differs from the one last stored enough to store it again.
fn status_changed(a: &PipelineStatus, b: &PipelineStatus) -> bool {
    a.phase != b.phase
        || a.applied != b.applied
        || a.counters != b.counters
        || a.tables != b.tables
        || a.last_error != b.last_error
        || a.lag_bytes != b.lag_bytes
        || a.lag_seconds != b.lag_seconds
        || a.source != b.source
}

impl PipelineBuilder {
    /// The pipeline id: names its stored state.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The source.
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Add a converter; converters run in the order they are added.
    pub fn converter(mut self, converter: impl Converter + 'static) -> Self {
        self.converters.push(Arc::new(converter));
        self
    }

    /// Add a shared converter.
    pub fn converter_arc(mut self, converter: Arc<dyn Converter>) -> Self {
        self.converters.push(converter);
        self
    }

    /// The sink.
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// A shared sink.
    pub fn sink_arc(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Where to keep state when the sink does not store it itself
    /// (default: in memory, lost with the process).
    pub fn checkpoint_store(mut self, store: impl CheckpointStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Largest batch in change events (whole transactions; one larger
    /// transaction forms a batch of its own).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// Capacity of the bounded channel after the source, in messages.
    pub fn channel_capacity(mut self, messages: usize) -> Self {
        self.channel_capacity = messages;
        self
    }

    /// How many snapshot chunks are written at once.
    pub fn snapshot_parallelism(mut self, n: usize) -> Self {
        self.snapshot_parallelism = n;
        self
    }

    /// The error policy.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// How the pipeline restarts after a transient failure (a lost or refused
    /// connection, a server restart): from its stored state, after a backoff.
    /// The default retries for ever (`max_retries` of `u32::MAX`), every 200 ms
    /// doubling up to 30 s; a run that lasted a minute resets the backoff.
    pub fn restart_policy(mut self, policy: RetryPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Check the settings and build the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let source = self.source.ok_or_else(|| Error::config("pipeline has no source"))?;
        let sink = self.sink.ok_or_else(|| Error::config("pipeline has no sink"))?;
        if self.id.is_empty() || self.id.len() > 128 {
            return Err(Error::config("pipeline id must be 1 to 128 characters"));
        }
        if self.batch_size == 0 || self.channel_capacity == 0 || self.snapshot_parallelism == 0 {
            return Err(Error::config(
                "batch size, channel capacity and snapshot parallelism must be at least 1",
            ));
        }
        Ok(Pipeline {
            id: self.id,
            source,
            converters: self.converters,
            sink,
            store: self.store.unwrap_or_else(|| Arc::new(MemoryCheckpointStore::new())),
            batch_size: self.batch_size,
            channel_capacity: self.channel_capacity,
            snapshot_parallelism: self.snapshot_parallelism,
            error_policy: self.error_policy,
            restart: self.restart,
            commands: SourceCommands::default(),
        })
    }
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

impl PipelineControl {
    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Current statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The whole typed status: phase, positions, lag, counters, errors.
    pub fn status(&self) -> PipelineStatus {
        self.shared.stats.status(self.is_paused())
    }

    /// Set the `metrics` gauges (lag, up, paused, progress) from the current
    /// status; the pipeline does it every second, an exporter may call it
    /// right before a scrape.
    pub fn publish_metrics(&self) {
        let status = self.status();
        self.shared.stats.publish_gauges(&status);
    }

    /// Stop applying changes (the batch in flight finishes); the source then
    /// blocks on the full channel. Nothing is applied until [`resume`](Self::resume).
    pub fn pause(&self) {
        let _ = self.shared.pause.send(true);
    }

    /// Take changes again after [`pause`](Self::pause).
    pub fn resume(&self) {
        let _ = self.shared.pause.send(false);
    }

    /// Whether the pipeline is paused.
    pub fn is_paused(&self) -> bool {
        *self.shared.pause.borrow()
    }

    /// Ask for a graceful stop: the batch in flight is applied and its
    /// checkpoint stored, then the pipeline ends. Returns at once; use
    /// [`PipelineHandle::wait`] or [`finished`](Self::finished) for the end.
    pub fn shutdown(&self) {
        if !self.is_finished() {
            self.shared.stats.set_phase(Phase::Stopping);
        }
        let _ = self.shared.shutdown.send(true);
    }

    /// Whether the pipeline has ended.
    pub fn is_finished(&self) -> bool {
        *self.shared.done.borrow()
    }

    /// Resolve when the pipeline has ended.
    pub async fn finished(&self) {
        let mut done = self.shared.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Move the pipeline to `position` (a binlog file and offset, or a GTID
    /// set): only while paused and following. The source checks the
    /// position first: a purged one ([`ErrorKind::SourcePositionLost`]) or
    /// one after the server's head ([`ErrorKind::Request`]) is refused and
    /// nothing changes. Otherwise the run restarts from there (still
    /// paused); the next batch applied after [`resume`](Self::resume) stores
    /// the new checkpoint. Changes from an earlier position are applied
    /// again: keyed tables end up exact (inserts are upserts), keyless
    /// tables get the rows again. Returns the position the pipeline will
    /// start from.
    pub async fn seek(&self, position: Position) -> Result<Position> {
        let _one = self.shared.seek_lock.lock().await;
        if !self.is_paused() {
            return Err(Error::new(ErrorKind::Request, "seek only while paused: pause the pipeline first"));
        }
        if self.is_finished() {
            return Err(Error::new(ErrorKind::Request, "the pipeline has ended"));
        }
        let stats = self.shared.stats.snapshot();
        let phase = self.shared.stats.phase();
        // A run that restarted (after a seek or a transient failure) from a
        // follow checkpoint is as good as following.
        let resumed_follow = phase == Phase::Starting
            && stats.position.is_some()
            && stats.snapshot_chunks_done >= stats.snapshot_chunks_total;
        if !(phase == Phase::Following || resumed_follow) || !stats.resyncing.is_empty() {
            return Err(Error::new(
                ErrorKind::Request,
                format!(
                    "seek only while following (the pipeline is {}{})",
                    phase,
                    if stats.resyncing.is_empty() { "" } else { ", copying tables again" }
                ),
            ));
        }
        let Some(control) = &self.shared.source_control else {
            return Err(Error::new(ErrorKind::Request, "this source cannot seek"));
        };
        let checked = control.check_position(&position).await?;
        info!(position = %checked, "seek: the pipeline restarts from this position (paused)");
        *self.shared.seek.lock().expect("seek poisoned") = Some(checked.clone());
        self.shared.restart.send_modify(|n| *n += 1);
        Ok(checked)
    }

    /// Copy `tables` (source `database.table` ids) again at a new consistent
    /// point while every other table keeps following, then follow them.
    /// `Ok(true)` when the source has taken the request, `Ok(false)` when it
    /// is queued (the source is busy: paused, snapshotting or inside a
    /// large transaction) and starts later; an error for tables that are not
    /// selected or a source without resnapshot.
    pub async fn resnapshot(&self, tables: Vec<synchdb_types::TableId>) -> Result<bool> {
        if !self.shared.supports_resnapshot {
            return Err(Error::new(ErrorKind::Request, "this source cannot copy tables again"));
        }
        if tables.is_empty() {
            return Err(Error::new(ErrorKind::Request, "resnapshot needs at least one table"));
        }
        if self.is_finished() {
            return Err(Error::new(ErrorKind::Request, "the pipeline has ended"));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.commands.push(SourceCommand::Resnapshot { tables, reply });
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(r)) => r.map(|()| true),
            Ok(Err(_)) => Err(Error::new(ErrorKind::Request, "the source dropped the request (it stopped)")),
            Err(_) => Ok(false),
        }
    }
}

impl PipelineControl {
    /// Add tables to the selection while running: each is copied at a new
    /// consistent point while the others keep following, then followed.
    /// Returns the tables that were newly selected (`Ok(None)`: queued, the
    /// source is busy). The addition lasts for this process: add the tables
    /// to the source options too (`--tables`), or a restart deselects them.
    pub async fn add_tables(
        &self,
        tables: Vec<synchdb_types::TableId>,
    ) -> Result<Option<Vec<synchdb_types::TableId>>> {
        if !self.shared.supports_resnapshot {
            return Err(Error::new(ErrorKind::Request, "this source cannot add tables while running"));
        }
        if tables.is_empty() {
            return Err(Error::new(ErrorKind::Request, "name at least one table to add"));
        }
        if self.is_finished() {
            return Err(Error::new(ErrorKind::Request, "the pipeline has ended"));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.commands.push(SourceCommand::AddTables { tables, reply });
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(r)) => r.map(Some),
            Ok(Err(_)) => Err(Error::new(ErrorKind::Request, "the source dropped the request (it stopped)")),
            Err(_) => Ok(None),
        }
    }
}

impl PipelineHandle {
    /// A clonable control of the pipeline (for an HTTP layer or other tasks).
    pub fn control(&self) -> PipelineControl {
        self.control.clone()
    }

    /// Wait for the end: `Ok` with the final statistics when the source ran
    /// out or shutdown was asked, the error otherwise.
    pub async fn wait(self) -> Result<StatsSnapshot> {
        match self.task.await {
            Ok(Ok(())) => Ok(self.control.stats()),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(Error::internal(format!("pipeline task failed: {join}"))),
        }
    }

    /// Shut down and wait.
    pub async fn stop(self) -> Result<StatsSnapshot> {
        self.control.shutdown();
        self.wait().await
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
}

impl Ctx {
    /// Store state that the sink did not store itself.
    async fn after_durable(&self, update: &StateUpdate) -> Result<()> {
        if self.sink.state().is_none() && !update.is_empty() {
            self.store.save(&self.id, update).await?;
        }
        if let Some(p) = &update.position {
            self.stats.set_position(p.clone());
        }
        Ok(())
    }

    async fn save_state(&self, update: &StateUpdate) -> Result<()> {
        if let Some(store) = self.sink.state() {
            store.save_state(&self.id, update).await?;
        }
        self.after_durable(update).await
    }

    /// Run `op` under the retry part of the error policy.
    async fn with_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let Some(retry) = self.policy.retry() else { return Err(e) };
                    let retryable = e.kind().is_transient()
                        || matches!(self.policy, ErrorPolicy::Retry(_))
                            && !e.kind().is_per_event()
                            && !e.kind().is_permanent();
                    if !retryable || attempt >= retry.max_retries {
                        return Err(e);
                    }
                    attempt += 1;
                    let delay = retry.backoff(attempt);
                    warn!(error = %e, attempt, ?delay, "{what} failed, retrying");
                    self.stats.record_retry();
                    self.stats.record_error(&e, true);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
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

/// Run the pipeline; after a transient failure (a lost connection, a server
/// restart) start it again from the stored state, with backoff, until it
/// ends, is shut down, or fails for good.
async fn supervise(mut p: Pipeline, shared: Arc<Shared>, pause: watch::Receiver<bool>) -> Result<()> {
    let stats = shared.stats.clone();
    let user_stop = shared.shutdown.clone();
    let mut shutdown = user_stop.subscribe();
    let mut attempt = 0u32;
    let mut prepared = false;
    loop {
        let started = std::time::Instant::now();
        let progress = |s: &StatsSnapshot| (s.position.clone(), s.snapshot_chunks_done, s.transactions);
        let before = progress(&stats.snapshot());
        if !*shutdown.borrow() {
            stats.set_phase(Phase::Starting);
        }
        let outcome = if prepared {
            run(&mut p, &shared, pause.clone()).await
        } else {
            match prepare(&mut p).await {
                Ok(()) => {
                    prepared = true;
                    run(&mut p, &shared, pause.clone()).await
                }
                Err(e) => Err(e),
            }
        };
        let e = match outcome {
            Ok(()) if !*shutdown.borrow() && shared.seek.lock().expect("seek poisoned").is_some() => {
                continue; // a seek ended the run: start again from there
            }
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !e.kind().is_transient() || *shutdown.borrow() {
            return Err(e);
        }
        if started.elapsed() > Duration::from_secs(60) || progress(&stats.snapshot()) != before {
            // It had been running well, or got work done: a new failure starts the backoff again.
            attempt = 0;
        }
        attempt += 1;
        if p.restart.max_retries != u32::MAX && attempt > p.restart.max_retries {
            return Err(e);
        }
        let delay = p.restart.backoff(attempt);
        warn!(error = %e, attempt, ?delay, "pipeline failed with a transient error; restarting from the stored checkpoint");
        stats.record_restart();
        stats.record_error(&e, true);
        stats.set_phase(Phase::Restarting);
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The stored state: the sink's when it keeps it, else the checkpoint store's.
async fn load_state(
    sink: &dyn Sink,
    store: &dyn CheckpointStore,
    id: &str,
) -> Result<Option<crate::state::PipelineState>> {
    match sink.state() {
        Some(own) => own.load_state(id).await,
        None => store.load(id).await,
    }
}

/// Before any data moves: when converters are configured, the tables the
/// source discovers are checked by every converter and, converted, by the
/// sink (a misspelt rule, a transform the target cannot take), so a bad
/// configuration fails at start with a clear error.
async fn prepare(p: &mut Pipeline) -> Result<()> {
    if p.converters.is_empty() {
        return Ok(());
    }
    let Some(tables) = p.source.discover_tables().await? else { return Ok(()) };
    let state = load_state(p.sink.as_ref(), p.store.as_ref(), &p.id).await?;
    let resumed = state.is_some_and(|s| s.position.is_some());
    for c in &p.converters {
        c.check_source_tables(&tables, resumed)?;
    }
    let mut converted = Vec::new();
    for t in tables {
        if let Some(chain) = convert_chain(&p.converters, &Arc::new(t))? {
            converted.push(chain.last().expect("non-empty").clone());
        }
    }
    p.sink.capabilities().check(p.sink.name(), &converted)?;
    p.sink.check_tables(&converted).await
}

async fn run(p: &mut Pipeline, shared: &Arc<Shared>, mut pause: watch::Receiver<bool>) -> Result<()> {
    let user_stop = &shared.shutdown;
    // This run's stop signal: the user's shutdown, a seek, or the end of the run.
    let (stop_all, shutdown) = watch::channel(*user_stop.borrow());
    let stop_all = Arc::new(stop_all);
    let forward = {
        let stop_all = stop_all.clone();
        let mut user = user_stop.subscribe();
        let mut restart = shared.restart.subscribe();
        restart.mark_unchanged();
        tokio::spawn(async move {
            tokio::select! {
                r = user.wait_for(|s| *s) => if r.is_err() { return },
                r = restart.changed() => if r.is_err() { return },
            }
            let _ = stop_all.send(true);
        })
    };
    let seek = shared.seek.lock().expect("seek poisoned").take();
    let result = run_once(p, shared.stats.clone(), &stop_all, shutdown, &mut pause, seek).await;
    forward.abort();
    result
}

async fn run_once(
    p: &mut Pipeline,
    stats: Arc<Stats>,
    stop_all: &Arc<watch::Sender<bool>>,
    shutdown: watch::Receiver<bool>,
    pause: &mut watch::Receiver<bool>,
    seek: Option<Position>,
) -> Result<()> {
    let ctx = Ctx {
        id: p.id.clone().into(),
        sink: p.sink.clone(),
        store: p.store.clone(),
        stats: stats.clone(),
        policy: p.error_policy.clone(),
    };
    let mut state = load_state(p.sink.as_ref(), p.store.as_ref(), &p.id).await?;
    if let Some(to) = seek {
        info!(position = %to, "seek: following from the position asked for");
        match &mut state {
            Some(s) => s.position = Some(to),
            None => {
                state = Some(crate::state::PipelineState {
                    position: Some(to),
                    snapshot: crate::state::SnapshotStatus::Done,
                    schemas: vec![],
                    resync: None,
                    skip_before: vec![],
                })
            }
        }
    }
    if let Some(s) = &state {
        if let Some(pos) = &s.position {
            info!(position = %pos, "resuming from stored checkpoint");
            stats.set_position(pos.clone());
        }
    }

    let (src_tx, mut src_rx) = mpsc::channel(p.channel_capacity);
    let source_ctx = SourceContext {
        pipeline_id: p.id.clone(),
        state,
        sender: src_tx,
        shutdown: shutdown.clone(),
        commands: p.commands.clone(),
    };
    let mut source = std::mem::replace(&mut p.source, Box::new(Taken));
    let source_name = source.name().to_string();
    let source_task = tokio::spawn(
        async move {
            let r = source.run(source_ctx).await;
            (source, r)
        }
        .instrument(info_span!("source", name = %source_name)),
    );

    // Applier stage: whole batches, one at a time, behind a bounded channel.
    let (apply_tx, apply_rx) = mpsc::channel::<ApplyItem>(1);
    let applier = tokio::spawn(apply_loop(ctx.clone(), apply_rx).instrument(info_span!("apply")));

    let converters = p.converters.clone();
    let mut snapshot = SnapshotRun::new(p.snapshot_parallelism);
    let mut pending: Vec<Converted> = Vec::new();
    let mut pending_events = 0usize;
    let mut stop = shutdown.clone();
    let mut result: Result<()> = Ok(());
    let mut source_done = false;

    loop {
        if *stop.borrow() || (source_done && pending.is_empty()) {
            break;
        }
        if *pause.borrow() && !source_done {
            tokio::select! {
                biased;
                _ = stop.changed() => continue,
                _ = pause.changed() => continue,
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => continue,
            permit = apply_tx.reserve(), if !pending.is_empty() && !holding(&ctx, &pending) => {
                match permit {
                    Ok(permit) => {
                        permit.send(ApplyItem::Batch(std::mem::take(&mut pending)));
                        pending_events = 0;
                    }
                    Err(_) => break, // the applier ended (with an error, reported below)
                }
            }
            msg = src_rx.recv(), if !source_done && (pending_events < p.batch_size || holding(&ctx, &pending)) => {
                let Some(msg) = msg else { source_done = true; continue };
                let step = handle_message(&ctx, &converters, &mut snapshot, msg, &mut pending, &apply_tx).await;
                match step {
                    Ok(n) => pending_events += n,
                    Err(e) => { result = Err(e); break; }
                }
            }
            _ = pause.changed() => {}
            else => break,
        }
    }

    let graceful = *stop.borrow() || source_done;
    if result.is_ok() && source_done && !*stop.borrow() {
        // The source ended by itself: every chunk it finished must be
        // written; a writer's failure is the pipeline's failure.
        while let Some(done) = snapshot.writers.join_next().await {
            if let Err(e) =
                done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}"))).and_then(|r| r)
            {
                result = Err(e);
                break;
            }
        }
    }
    // Unfinished snapshot chunks are not durable: they are read again on resume.
    snapshot.writers.abort_all();
    if result.is_ok()
        && source_done
        && !pending.is_empty()
        && apply_tx.send(ApplyItem::Batch(std::mem::take(&mut pending))).await.is_err()
    {
        debug!("applier already stopped");
    }
    drop(apply_tx);
    let apply_result = applier.await.map_err(|e| Error::internal(format!("apply task failed: {e}")))?;
    drop(src_rx);
    // Tell the source to stop, whatever ended the pipeline.
    let _ = stop_all.send(true);
    // The source may be blocked on a full channel or mid-read; it stops on
    // the shutdown signal or the closed channel, and is kept for a restart.
    let source_result = match tokio::time::timeout(Duration::from_secs(30), source_task).await {
        Ok(Ok((source, r))) => {
            p.source = source;
            r
        }
        Ok(Err(e)) => Err(Error::internal(format!("source task failed: {e}"))),
        Err(_) => Err(Error::internal("source did not stop within 30 s")),
    };
    // An applier failure first: it is why a dispatcher waiting on it failed.
    apply_result?;
    result?;
    match source_result {
        Err(e) if !(graceful && e.kind() == ErrorKind::Stopped) => Err(e),
        _ => Ok(()),
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

impl SnapshotRun {
    fn new(parallelism: usize) -> Self {
        SnapshotRun {
            parallelism: Arc::new(Semaphore::new(parallelism)),
            writers: JoinSet::new(),
            chains: HashMap::new(),
            resync_active: false,
        }
    }
}

/// Convert a table through every converter: the schema at each stage, or
/// `None` when a converter drops it.
pub(crate) fn convert_chain(
    converters: &[Arc<dyn Converter>],
    table: &Arc<TableSchema>,
) -> Result<Option<Vec<Arc<TableSchema>>>> {
    let mut chain = vec![table.clone()];
    for c in converters {
        let last = chain.last().expect("chain starts non-empty");
        match c.convert_table(last).map_err(|e| e.with_table(table.id.clone()))? {
            Some(next) => chain.push(next),
            None => return Ok(None),
        }
    }
    Ok(Some(chain))
}

/// Handle one source message; returns how many events it added to `pending`.
async fn handle_message(
    ctx: &Ctx,
    converters: &[Arc<dyn Converter>],
    snap: &mut SnapshotRun,
    msg: SourceMessage,
    pending: &mut Vec<Converted>,
    apply_tx: &mpsc::Sender<ApplyItem>,
) -> Result<usize> {
    match msg {
        SourceMessage::SnapshotStarted { plan, tables, restart, resumed } => {
            info!(tables = tables.len(), chunks = plan.chunks.len(), position = %plan.position, resumed, "snapshot starts");
            ctx.stats.set_snapshot_totals(tables.len() as u64, plan.chunks.len() as u64);
            ctx.stats.set_snapshot_plan(plan.chunks.iter().map(|c| &c.table));
            ctx.stats.set_phase(Phase::Snapshotting);
            let mut out = Vec::new();
            for t in &tables {
                if let Some(chain) = convert_chain(converters, t)? {
                    out.push(chain.last().expect("non-empty").clone());
                    snap.chains.insert(t.id.clone(), chain);
                }
            }
            let restart: Vec<TableId> = restart
                .iter()
                .filter_map(|id| snap.chains.get(id).map(|c| c.last().expect("non-empty").id.clone()))
                .collect();
            let update = StateUpdate {
                position: None,
                snapshot: if resumed { None } else { Some(SnapshotUpdate::Started(plan)) },
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("prepare snapshot", || {
                ctx.sink.prepare_snapshot(&ctx.id, &out, &restart, &update)
            })
            .await?;
            ctx.after_durable(&update).await?;
            Ok(0)
        }
        SourceMessage::SnapshotChunk { chunk, table, read_at, rows } => {
            // Fail fast if an earlier chunk failed; a resync whose source connection
            // failed is started again by the source.
            while let Some(done) = snap.writers.try_join_next() {
                match done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}")))? {
                    Err(e) if snap.resync_active && e.kind() == ErrorKind::SourceConnection => {
                        warn!(error = %e, "resync chunk lost with the source connection; the source starts the resync again");
                    }
                    r => r?,
                }
            }
            let chain = match snap.chains.get(&table.id) {
                Some(c) => Some(c.clone()),
                None => convert_chain(converters, &table)?,
            };
            let permit = snap
                .parallelism
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("semaphore closed"))?;
            let ctx = ctx.clone();
            let converters = converters.to_vec();
            snap.writers.spawn(
                async move {
                    let _permit = permit;
                    write_chunk(&ctx, &converters, chain, chunk, read_at, rows).await
                }
                .instrument(info_span!("snapshot_chunk", table = %table.id)),
            );
            Ok(0)
        }
        SourceMessage::SnapshotFinished { position, skip_before } => {
            while let Some(done) = snap.writers.join_next().await {
                done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}")))??;
            }
            let tables: Vec<Arc<TableSchema>> =
                snap.chains.values().map(|c| c.last().expect("non-empty").clone()).collect();
            let update = StateUpdate {
                position: Some(position.clone()),
                snapshot: Some(SnapshotUpdate::Finished),
                schemas: vec![],
                resync: None,
                skip_before: Some(skip_before),
            };
            ctx.with_retry("finish snapshot", || ctx.sink.finish_snapshot(&ctx.id, &tables, &update)).await?;
            ctx.after_durable(&update).await?;
            info!(%position, rows = ctx.stats.snapshot().snapshot_rows, "snapshot finished");
            ctx.stats.set_read(&position);
            ctx.stats.set_phase(Phase::Following);
            Ok(0)
        }
        SourceMessage::SchemaOnly { tables, position } => {
            let mut out = Vec::new();
            for t in &tables {
                if let Some(chain) = convert_chain(converters, t)? {
                    out.push(chain.last().expect("non-empty").clone());
                }
            }
            let update = StateUpdate {
                position: None,
                snapshot: None,
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("create tables", || ctx.sink.prepare_snapshot(&ctx.id, &out, &[], &update))
                .await?;
            ctx.after_durable(&update).await?;
            let done = StateUpdate {
                position: Some(position),
                snapshot: Some(SnapshotUpdate::Finished),
                schemas: vec![],
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("finish schema", || ctx.sink.finish_snapshot(&ctx.id, &out, &done)).await?;
            ctx.after_durable(&done).await?;
            ctx.stats.set_phase(Phase::Following);
            Ok(0)
        }
        SourceMessage::ResyncStarted { tables, position, reason } => {
            // A resync that did not finish (its copy failed) is superseded by this one.
            snap.writers.abort_all();
            while snap.writers.join_next().await.is_some() {}
            snap.resync_active = true;
            drain(pending, apply_tx).await?;
            info!(tables = %table_list(&tables), %position, reason, "resync: copying tables again while the others follow");
            let out = convert_tables(converters, snap, &tables)?;
            let update = StateUpdate {
                resync: Some(ResyncUpdate::Started(ResyncState {
                    tables: tables.iter().map(|t| (**t).clone()).collect(),
                    position,
                    loaded: false,
                    reason,
                })),
                // Until they join, the tables are not followed.
                schemas: tables.iter().map(|t| SchemaUpdate::Drop(t.id.clone())).collect(),
                ..Default::default()
            };
            ctx.with_retry("begin resync", || ctx.sink.begin_resync(&ctx.id, &out, &update)).await?;
            ctx.after_durable(&update).await?;
            ctx.stats.set_resync(tables.iter().map(|t| t.id.clone()).collect());
            Ok(0)
        }
        SourceMessage::ResyncFinished { tables } => {
            snap.resync_active = false;
            while let Some(done) = snap.writers.join_next().await {
                done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}")))??;
            }
            let out: Vec<Arc<TableSchema>> = tables
                .iter()
                .filter_map(|id| snap.chains.get(id).map(|c| c.last().expect("non-empty").clone()))
                .collect();
            let update = StateUpdate { resync: Some(ResyncUpdate::Loaded), ..Default::default() };
            ctx.with_retry("finish resync", || ctx.sink.finish_resync(&ctx.id, &out, &update)).await?;
            ctx.after_durable(&update).await?;
            info!(tables = tables.len(), "resync: rows copied and indexed");
            Ok(0)
        }
        SourceMessage::ResyncJoined { tables, referencing } => {
            drain(pending, apply_tx).await?;
            let out = convert_tables(converters, snap, &tables)?;
            let mut refs = Vec::new();
            for t in &referencing {
                if let Some(chain) = convert_chain(converters, t)? {
                    refs.push(chain.last().expect("non-empty").clone());
                }
            }
            let update = StateUpdate {
                resync: Some(ResyncUpdate::Joined),
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                ..Default::default()
            };
            ctx.with_retry("join resync", || ctx.sink.join_resync(&ctx.id, &out, &refs, &update)).await?;
            ctx.after_durable(&update).await?;
            ctx.stats.set_resync(Vec::new());
            info!(tables = %table_list(&tables), "resync: tables followed again");
            Ok(0)
        }
        SourceMessage::TablesDeselected { tables } => {
            let update = StateUpdate {
                schemas: tables.iter().map(|t| SchemaUpdate::Drop(t.clone())).collect(),
                ..Default::default()
            };
            ctx.with_retry("store the deselected tables", || ctx.save_state(&update)).await?;
            Ok(0)
        }
        SourceMessage::FollowStarted { tables, position } => {
            let update = StateUpdate {
                position: Some(position),
                snapshot: Some(SnapshotUpdate::Finished),
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("store the follow start", || ctx.save_state(&update)).await?;
            ctx.stats.set_phase(Phase::Following);
            Ok(0)
        }
        SourceMessage::Transaction(tx) => {
            following(ctx, &tx.end_position);
            let schemas = schema_updates(&tx);
            let converted = convert_transaction(ctx, converters, tx).await?;
            let n = converted.events.len().max(1);
            push_piece(ctx, pending, Converted { tx: converted, schemas, partial: false });
            Ok(n)
        }
        SourceMessage::TransactionPart(tx) => {
            following(ctx, &tx.end_position);
            let schemas = schema_updates(&tx);
            let converted = convert_transaction(ctx, converters, tx).await?;
            let n = converted.events.len().max(1);
            push_piece(ctx, pending, Converted { tx: converted, schemas, partial: true });
            Ok(n)
        }
        SourceMessage::Heartbeat { position, source_time } => {
            following(ctx, &position);
            // An empty transaction moves the checkpoint; merge consecutive ones.
            if let Some(last) = pending.last_mut() {
                if last.tx.events.is_empty() && last.schemas.is_empty() {
                    last.tx.end_position = position;
                    if let Some(t) = source_time {
                        last.tx.commit_time = t;
                    }
                    return Ok(0);
                }
            }
            let tx = Transaction::new(0, position, source_time.unwrap_or_else(chrono::Utc::now), vec![]);
            pending.push(Converted { tx, schemas: vec![], partial: false });
            Ok(1)
        }
    }
}

/// A change or heartbeat arrived: the pipeline follows, and has read up to `position`.
fn following(ctx: &Ctx, position: &Position) {
    ctx.stats.set_read(position);
    if ctx.stats.phase() == Phase::Starting {
        ctx.stats.set_phase(Phase::Following);
    }
}

/// Whether `pending` ends with a piece of a transaction that must be merged
/// with the rest before it is applied (the sink takes no open batches).
fn holding(ctx: &Ctx, pending: &[Converted]) -> bool {
    !ctx.sink.supports_open_batches() && pending.last().is_some_and(|c| c.partial)
}

/// Stream one chunk's rows through the converters into the sink.
async fn write_chunk(
    ctx: &Ctx,
    converters: &[Arc<dyn Converter>],
    chain: Option<Vec<Arc<TableSchema>>>,
    chunk: ChunkInfo,
    read_at: Position,
    rows: RowReceiver,
) -> Result<()> {
    let Some(chain) = chain else {
        // The table is filtered out: drain the rows, record the chunk.
        let mut rows = rows;
        while let Some(r) = rows.recv().await {
            r?;
        }
        let update = StateUpdate::chunk_done(&chunk, 0, read_at);
        return ctx.save_state(&update).await;
    };
    let target = chain.last().expect("non-empty").clone();
    let converters = converters.to_vec();
    let stages = chain.clone();
    let stream: RowStream<'static> =
        tokio_stream_from(rows).map(move |batch| convert_rows(&converters, &stages, batch?)).boxed();
    let written = ctx.sink.write_chunk(&ctx.id, &target, &chunk, &read_at, stream).await?;
    ctx.stats.record_chunk_rows(&chunk.table, &target.id, written);
    let update = StateUpdate::chunk_done(&chunk, written, read_at);
    ctx.after_durable(&update).await?;
    debug!(table = %chunk.table, chunk = chunk.index, rows = written, "chunk durable");
    Ok(())
}

fn table_list(tables: &[Arc<TableSchema>]) -> String {
    tables.iter().map(|t| t.id.to_string()).collect::<Vec<_>>().join(", ")
}

/// A batch of snapshot rows through the converters (`stages`: each
/// converter's input schema); rows a converter filters out are dropped.
pub(crate) fn convert_rows(
    converters: &[Arc<dyn Converter>],
    stages: &[Arc<TableSchema>],
    batch: Vec<synchdb_types::Row>,
) -> Result<Vec<synchdb_types::Row>> {
    let mut out = Vec::with_capacity(batch.len());
    'rows: for row in batch {
        let mut row = row;
        for (c, schema) in converters.iter().zip(stages) {
            match c.convert_row(schema, row)? {
                Some(r) => row = r,
                None => continue 'rows,
            }
        }
        out.push(row);
    }
    Ok(out)
}

pub(crate) fn tokio_stream_from(
    rx: RowReceiver,
) -> impl futures::Stream<Item = Result<Vec<synchdb_types::Row>>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// The tracked-schema changes a source transaction implies.
fn schema_updates(tx: &Transaction) -> Vec<SchemaUpdate> {
    let mut out = Vec::new();
    for e in &tx.events {
        if let ChangeEvent::Schema(s) = e {
            match &s.change {
                SchemaChange::DropTable { table } => out.push(SchemaUpdate::Drop(table.clone())),
                SchemaChange::RenameTable { from, .. } => {
                    out.push(SchemaUpdate::Drop(from.clone()));
                    if let Some(after) = &s.schema_after {
                        out.push(SchemaUpdate::Upsert(after.clone()));
                    }
                }
                _ => {
                    if let Some(after) = &s.schema_after {
                        out.push(SchemaUpdate::Upsert(after.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Run every event of a transaction through the converters. A converter
/// error follows the error policy: `skip` records the event and drops it.
async fn convert_transaction(
    ctx: &Ctx,
    converters: &[Arc<dyn Converter>],
    tx: Transaction,
) -> Result<Transaction> {
    if converters.is_empty() {
        return Ok(tx);
    }
    let Transaction { sequence, gtid, commit_time, end_position, events, foreign_key_checks, .. } = tx;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let original = matches!(ctx.policy, ErrorPolicy::Skip(_)).then(|| event.clone());
        let mut current = vec![event];
        let mut failed = None;
        for c in converters {
            let mut next = Vec::with_capacity(current.len());
            for e in current.drain(..) {
                let meta = e.meta().clone();
                let table = e.table_id().clone();
                if let Err(err) = c.convert_event(e, &mut next) {
                    let mut wrapped =
                        Error::new(ErrorKind::Convert, format!("converter {} failed", c.name()))
                            .with_table(table)
                            .with_position(meta.position);
                    if let Some(column) = err.column() {
                        wrapped = wrapped.with_column(column.to_string());
                    }
                    failed = Some(wrapped.with_source(err));
                    break;
                }
            }
            if failed.is_some() {
                break;
            }
            current = next;
        }
        match (failed, original) {
            (None, _) => {
                for e in &current {
                    if let ChangeEvent::Schema(s) = e {
                        if let Some(after) = &s.schema_after {
                            ctx.sink
                                .capabilities()
                                .check(ctx.sink.name(), std::slice::from_ref(after))
                                .map_err(|err| err.with_position(e.meta().position.clone()))?;
                        }
                    }
                }
                out.extend(current)
            }
            (Some(err), Some(original)) => {
                ctx.sink.dead_letter(&ctx.id, &original, &err).await?;
                ctx.stats.record_dead_letter(&original, &err);
            }
            (Some(err), None) => return Err(err),
        }
    }
    Ok(Transaction::new(sequence, end_position, commit_time, out)
        .with_gtid(gtid)
        .with_foreign_key_checks(foreign_key_checks))
}

/// The applier: one batch at a time, under the error policy.
async fn apply_loop(ctx: Ctx, mut rx: mpsc::Receiver<ApplyItem>) -> Result<()> {
    // Inside a target transaction left open by an open batch.
    let mut streaming = false;
    while let Some(item) = rx.recv().await {
        match item {
            ApplyItem::Batch(items) if streaming || items.last().is_some_and(|c| c.partial) => {
                streaming = apply_open(&ctx, items).await?;
            }
            ApplyItem::Batch(items) => apply_items(&ctx, items).await?,
            ApplyItem::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
    Ok(())
}

/// Work for the applier.
enum ApplyItem {
    /// Transactions to apply as one batch.
    Batch(Vec<Converted>),
    /// Answer once everything before it is applied.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Hand `pending` to the applier and wait until everything sent so far is applied.
async fn drain(pending: &mut Vec<Converted>, apply_tx: &mpsc::Sender<ApplyItem>) -> Result<()> {
    let stopped = || Error::internal("the applier stopped");
    if !pending.is_empty() {
        apply_tx.send(ApplyItem::Batch(std::mem::take(pending))).await.map_err(|_| stopped())?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    apply_tx.send(ApplyItem::Barrier(tx)).await.map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())
}

/// The converted (final) schemas of `tables`, skipping those a converter drops.
fn convert_tables(
    converters: &[Arc<dyn Converter>],
    snap: &mut SnapshotRun,
    tables: &[Arc<TableSchema>],
) -> Result<Vec<Arc<TableSchema>>> {
    let mut out = Vec::new();
    for t in tables {
        if let Some(chain) = convert_chain(converters, t)? {
            out.push(chain.last().expect("non-empty").clone());
            snap.chains.insert(t.id.clone(), chain);
        }
    }
    Ok(out)
}

/// Build a batch by moving the transactions (no copy of the rows); the
/// per-transaction schema updates are returned to rebuild the items if the
/// batch must be split.
fn batch_of(items: Vec<Converted>) -> (ChangeBatch, Vec<Vec<SchemaUpdate>>) {
    let mut state = StateUpdate::default();
    let mut transactions = Vec::with_capacity(items.len());
    let mut schemas = Vec::with_capacity(items.len());
    let open = items.last().is_some_and(|c| c.partial);
    for c in items {
        state.schemas.extend(c.schemas.iter().cloned());
        state.position = Some(c.tx.end_position.clone());
        transactions.push(c.tx);
        schemas.push(c.schemas);
    }
    if open {
        // Stored with the last piece of the transaction, at its commit.
        state.position = None;
    }
    (ChangeBatch { transactions, state, open }, schemas)
}

/// A batch of a transaction applied in pieces (or the batch that ends it):
/// the target transaction holds the earlier pieces, so neither a retry of
/// this batch alone nor skipping events one by one can be right. Any error
/// ends the run; a restart reads the transaction again from the checkpoint.
/// Returns whether the target transaction stays open.
async fn apply_open(ctx: &Ctx, items: Vec<Converted>) -> Result<bool> {
    let (batch, _) = batch_of(items);
    ctx.sink.apply(&ctx.id, &batch).await.map_err(|e| {
        if e.kind().is_transient() {
            e
        } else {
            e.with_context(
                "in a source transaction applied in pieces (too large to hold in memory): \
                            it cannot be retried or skipped event by event",
            )
        }
    })?;
    ctx.stats.record_batch(&batch.transactions);
    if !batch.open {
        ctx.after_durable(&batch.state).await?;
    }
    Ok(batch.open)
}

/// Queue a converted transaction or piece of one. A sink that takes no open
/// batches gets the pieces of a transaction merged (held in memory).
fn push_piece(ctx: &Ctx, pending: &mut Vec<Converted>, piece: Converted) {
    if !ctx.sink.supports_open_batches() {
        if let Some(last) = pending.last_mut().filter(|c| c.partial) {
            last.tx.events.extend(piece.tx.events);
            last.tx.end_position = piece.tx.end_position;
            last.tx.gtid = piece.tx.gtid;
            last.tx.commit_time = piece.tx.commit_time;
            last.tx.foreign_key_checks &= piece.tx.foreign_key_checks;
            last.schemas.extend(piece.schemas);
            last.partial = piece.partial;
            return;
        }
    }
    pending.push(piece);
}

async fn apply_items(ctx: &Ctx, items: Vec<Converted>) -> Result<()> {
    let (batch, schemas) = batch_of(items);
    match ctx.with_retry("apply batch", || ctx.sink.apply(&ctx.id, &batch)).await {
        Ok(()) => {
            ctx.stats.record_batch(&batch.transactions);
            ctx.after_durable(&batch.state).await
        }
        Err(e) if matches!(ctx.policy, ErrorPolicy::Skip(_)) && e.kind().is_per_event() => {
            warn!(error = %e, "batch failed; applying its transactions one by one to skip the failing events");
            for (tx, schemas) in batch.transactions.into_iter().zip(schemas) {
                Box::pin(apply_one_transaction(ctx, Converted { tx, schemas, partial: false })).await?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Apply one transaction; on a per-event error, apply its events one by one
/// and send the failing ones to the dead letter.
async fn apply_one_transaction(ctx: &Ctx, item: Converted) -> Result<()> {
    let (batch, _) =
        batch_of(vec![Converted { tx: item.tx.clone(), schemas: item.schemas.clone(), partial: false }]);
    match ctx.with_retry("apply transaction", || ctx.sink.apply(&ctx.id, &batch)).await {
        Ok(()) => {
            ctx.stats.record_batch(&batch.transactions);
            return ctx.after_durable(&batch.state).await;
        }
        Err(e) if e.kind().is_per_event() => {
            if item.tx.events.len() <= 1 {
                if let Some(ev) = item.tx.events.first() {
                    ctx.sink.dead_letter(&ctx.id, ev, &e).await?;
                    ctx.stats.record_dead_letter(ev, &e);
                }
                // Move the checkpoint past the skipped transaction.
                return ctx.save_state(&batch.state).await;
            }
        }
        Err(e) => return Err(e),
    }
    let Converted { tx, schemas, .. } = item;
    let Transaction { sequence, gtid, commit_time, end_position, events, foreign_key_checks, .. } = tx;
    let last = events.len() - 1;
    for (i, ev) in events.into_iter().enumerate() {
        let single = Transaction::new(sequence, end_position.clone(), commit_time, vec![ev])
            .with_gtid(gtid.clone())
            .with_foreign_key_checks(foreign_key_checks);
        let mut state = StateUpdate::default();
        if i == last {
            state.position = Some(end_position.clone());
            state.schemas = schemas.clone();
        }
        let b = ChangeBatch { transactions: vec![single], state, open: false };
        match ctx.with_retry("apply event", || ctx.sink.apply(&ctx.id, &b)).await {
            Ok(()) => {
                ctx.stats.record_batch(&b.transactions);
                ctx.after_durable(&b.state).await?;
            }
            Err(e) if e.kind().is_per_event() => {
                ctx.sink.dead_letter(&ctx.id, &b.transactions[0].events[0], &e).await?;
                ctx.stats.record_dead_letter(&b.transactions[0].events[0], &e);
                ctx.save_state(&b.state).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
