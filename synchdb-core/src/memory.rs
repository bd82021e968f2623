//! In-memory [`Source`] and [`Sink`] for tests of the runtime and of
//! converters, and for trying pipelines without servers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use synchdb_types::{ChangeEvent, Position, Row, TableId, TableSchema, Transaction};

use crate::error::{Error, ErrorKind, Result};
use crate::sink::{ChangeBatch, RowStream, Sink, SinkCapabilities, SinkState};
use crate::source::{chunk_channel, Source, SourceContext, SourceMessage};
use crate::state::{
    ChunkDone, ChunkInfo, PipelineState, SnapshotPlan, SnapshotStatus, SnapshotUpdate, StateUpdate,
};

/// A table and its rows.
pub type TableRows = (Arc<TableSchema>, Vec<Row>);

/// A source that replays a fixed snapshot and list of transactions,
/// resuming after the stored position like a real source.
#[derive(Debug, Clone)]
pub struct MemorySource {
    snapshot: Option<(Position, Vec<TableRows>)>,
    transactions: Vec<Transaction>,
    follow: bool,
    chunk_rows: usize,
    sent: Arc<AtomicUsize>,
}

impl MemorySource {
    /// A source of these transactions (in order, with increasing end positions).
    pub fn new(transactions: Vec<Transaction>) -> Self {
        MemorySource { snapshot: None, transactions, follow: false, chunk_rows: 1000, sent: Arc::default() }
    }

    /// Send a snapshot of these tables first, consistent at `position`
    /// (skipped when the stored state says the snapshot is done).
    pub fn with_snapshot(mut self, position: Position, tables: Vec<TableRows>) -> Self {
        self.snapshot = Some((position, tables));
        self
    }

    /// Rows per snapshot chunk.
    pub fn chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = rows.max(1);
        self
    }

    /// After the last transaction, wait for shutdown instead of ending.
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// A counter of transactions handed to the pipeline so far (shared with clones).
    pub fn sent_counter(&self) -> Arc<AtomicUsize> {
        self.sent.clone()
    }

    async fn send_snapshot(&self, ctx: &SourceContext) -> Result<()> {
        let Some((position, tables)) = &self.snapshot else { return Ok(()) };
        let progress = match ctx.state.as_ref().map(|s| &s.snapshot) {
            Some(SnapshotStatus::Done) => return Ok(()),
            Some(SnapshotStatus::InProgress(p)) => Some(p.clone()),
            _ => None,
        };
        let mut chunks = Vec::new();
        for (t, rows) in tables {
            let count = rows.len().div_ceil(self.chunk_rows).max(1) as u32;
            for index in 0..count {
                chunks.push(ChunkInfo { table: t.id.clone(), index, count, lower: None, upper: None });
            }
        }
        let plan = match &progress {
            Some(p) => p.plan.clone(),
            None => SnapshotPlan {
                position: position.clone(),
                tables: tables.iter().map(|(t, _)| t.id.clone()).collect(),
                chunks: chunks.clone(),
            },
        };
        let resumed = progress.is_some();
        ctx.send(SourceMessage::SnapshotStarted {
            plan: plan.clone(),
            tables: tables.iter().map(|(t, _)| t.clone()).collect(),
            restart: vec![],
            resumed,
        })
        .await?;
        for chunk in plan.chunks {
            if progress.as_ref().is_some_and(|p| p.is_done(&chunk.table, chunk.index)) {
                continue;
            }
            let Some((table, rows)) = tables.iter().find(|(t, _)| t.id == chunk.table) else { continue };
            let start = chunk.index as usize * self.chunk_rows;
            let part: Vec<Row> = rows.iter().skip(start).take(self.chunk_rows).cloned().collect();
            let (tx, rx) = chunk_channel(4);
            ctx.send(SourceMessage::SnapshotChunk {
                chunk,
                table: table.clone(),
                read_at: position.clone(),
                rows: rx,
            })
            .await?;
            for piece in part.chunks(100) {
                if tx.send(piece.to_vec()).await.is_err() {
                    return Ok(());
                }
            }
            if tx.finish().await.is_err() {
                return Ok(());
            }
        }
        ctx.send(SourceMessage::SnapshotFinished { position: plan.position, skip_before: Vec::new() }).await
    }
}

#[async_trait]
impl Source for MemorySource {
    fn name(&self) -> &str {
        "memory"
    }

    async fn run(&mut self, mut ctx: SourceContext) -> Result<()> {
        self.send_snapshot(&ctx).await?;
        let after = ctx.state.as_ref().and_then(|s| s.position.clone());
        for tx in &self.transactions {
            if after.as_ref().is_some_and(|p| !tx.end_position.is_after(p)) {
                continue;
            }
            if ctx.is_shutdown() {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = ctx.shutdown.changed() => return Ok(()),
                r = ctx.sender.send(SourceMessage::Transaction(tx.clone())) => {
                    if r.is_err() { return Ok(()) }
                }
            }
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
        if self.follow {
            while !ctx.is_shutdown() {
                if ctx.shutdown.changed().await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// What a [`MemorySink`] holds.
#[derive(Debug, Clone, Default)]
pub struct MemorySinkData {
    /// Tables created by `prepare_snapshot`, by id.
    pub tables: BTreeMap<TableId, Arc<TableSchema>>,
    /// Snapshot rows per table, in arrival order.
    pub snapshot_rows: BTreeMap<TableId, Vec<Row>>,
    /// Applied transactions, in order.
    pub transactions: Vec<Transaction>,
    /// Events sent to the dead letter, with their error text.
    pub dead_letters: Vec<(ChangeEvent, String)>,
    /// Stored state per pipeline (stored with the data, atomically).
    pub state: BTreeMap<String, PipelineState>,
    /// Number of `apply` calls that succeeded.
    pub batches: usize,
    /// Whether `finish_snapshot` ran.
    pub snapshot_finished: bool,
    /// Resync calls, in order: `begin t1,t2`, `finish t1,t2`, `join t1,t2`.
    pub resyncs: Vec<String>,
}

fn ids(tables: &[Arc<TableSchema>]) -> String {
    tables.iter().map(|t| t.id.to_string()).collect::<Vec<_>>().join(",")
}

type FailFn = dyn Fn(&ChangeEvent) -> Option<Error> + Send + Sync;

/// A sink that keeps everything in memory and stores state with its data.
/// Clones share the same data. Failures and slowness can be injected.
#[derive(Clone, Default)]
pub struct MemorySink {
    data: Arc<Mutex<MemorySinkData>>,
    fail: Arc<Mutex<Option<Arc<FailFn>>>>,
    fail_times: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
    applies: Arc<AtomicUsize>,
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySink").finish_non_exhaustive()
    }
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the data.
    pub fn data(&self) -> MemorySinkData {
        self.data.lock().expect("memory sink poisoned").clone()
    }

    /// All applied change events, in order.
    pub fn events(&self) -> Vec<ChangeEvent> {
        self.data().transactions.into_iter().flat_map(|t| t.events).collect()
    }

    /// Fail any batch holding an event for which `f` returns an error.
    pub fn fail_when(&self, f: impl Fn(&ChangeEvent) -> Option<Error> + Send + Sync + 'static) {
        *self.fail.lock().expect("memory sink poisoned") = Some(Arc::new(f));
    }

    /// Fail the next `n` batches with a transient connection error.
    pub fn fail_next(&self, n: usize) {
        self.fail_times.store(n, Ordering::SeqCst);
    }

    /// Sleep this long in every `apply` (to test backpressure).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("memory sink poisoned") = delay;
    }

    /// Number of `apply` calls started.
    pub fn apply_calls(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }

    fn store(&self, data: &mut MemorySinkData, pipeline: &str, update: &StateUpdate) {
        data.state.entry(pipeline.to_string()).or_insert_with(PipelineState::empty).apply(update);
    }
}

#[async_trait]
impl SinkState for MemorySink {
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        Ok(self.data.lock().expect("memory sink poisoned").state.get(pipeline).cloned())
    }

    async fn save_state(&self, pipeline: &str, update: &StateUpdate) -> Result<()> {
        let mut data = self.data.lock().expect("memory sink poisoned");
        self.store(&mut data, pipeline, update);
        Ok(())
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }

    fn state(&self) -> Option<&dyn SinkState> {
        Some(self)
    }

    fn capabilities(&self) -> SinkCapabilities {
        // It keeps the schemas as given: column settings are recorded, not interpreted.
        SinkCapabilities::all()
    }

    async fn prepare_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        restart: &[TableId],
        state: &StateUpdate,
    ) -> Result<()> {
        let mut data = self.data.lock().expect("memory sink poisoned");
        for t in tables {
            data.tables.insert(t.id.clone(), t.clone());
        }
        for id in restart {
            data.snapshot_rows.remove(id);
        }
        self.store(&mut data, pipeline, state);
        Ok(())
    }

    async fn write_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        read_at: &Position,
        mut rows: RowStream<'_>,
    ) -> Result<u64> {
        // Buffer the chunk, then commit it with its progress marker at once.
        let mut buf = Vec::new();
        while let Some(batch) = rows.next().await {
            buf.extend(batch?);
        }
        let n = buf.len() as u64;
        let mut data = self.data.lock().expect("memory sink poisoned");
        data.snapshot_rows.entry(table.id.clone()).or_default().extend(buf);
        let update = StateUpdate {
            snapshot: Some(SnapshotUpdate::ChunkDone(ChunkDone {
                table: chunk.table.clone(),
                index: chunk.index,
                rows: n,
                read_at: read_at.clone(),
            })),
            ..Default::default()
        };
        self.store(&mut data, pipeline, &update);
        Ok(n)
    }

    async fn finish_snapshot(
        &self,
        pipeline: &str,
        _tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let mut data = self.data.lock().expect("memory sink poisoned");
        data.snapshot_finished = true;
        self.store(&mut data, pipeline, state);
        Ok(())
    }

    /// A resync empties the tables' snapshot rows (changes already applied stay
    /// in `transactions`: this sink keeps a log, not tables).
    async fn begin_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let mut data = self.data.lock().expect("memory sink poisoned");
        for t in tables {
            data.tables.insert(t.id.clone(), t.clone());
            data.snapshot_rows.remove(&t.id);
        }
        data.resyncs.push(format!("begin {}", ids(tables)));
        self.store(&mut data, pipeline, state);
        Ok(())
    }

    async fn finish_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let mut data = self.data.lock().expect("memory sink poisoned");
        data.resyncs.push(format!("finish {}", ids(tables)));
        self.store(&mut data, pipeline, state);
        Ok(())
    }

    async fn join_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        _referencing: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let mut data = self.data.lock().expect("memory sink poisoned");
        data.resyncs.push(format!("join {}", ids(tables)));
        self.store(&mut data, pipeline, state);
        Ok(())
    }

    async fn apply(&self, pipeline: &str, batch: &ChangeBatch) -> Result<()> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().expect("memory sink poisoned");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.fail_times.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::new(ErrorKind::SinkConnection, "injected connection failure"));
        }
        let fail = self.fail.lock().expect("memory sink poisoned").clone();
        if let Some(f) = fail {
            for e in batch.transactions.iter().flat_map(|t| &t.events) {
                if let Some(err) = f(e) {
                    return Err(err
                        .with_table(e.table_id().clone())
                        .with_position(e.meta().position.clone()));
                }
            }
        }
        let mut data = self.data.lock().expect("memory sink poisoned");
        data.transactions.extend(batch.transactions.iter().filter(|t| !t.events.is_empty()).cloned());
        data.batches += 1;
        self.store(&mut data, pipeline, &batch.state);
        Ok(())
    }

    async fn dead_letter(&self, _pipeline: &str, event: &ChangeEvent, error: &Error) -> Result<()> {
        self.data.lock().expect("memory sink poisoned").dead_letters.push((event.clone(), error.to_string()));
        Ok(())
    }
}
