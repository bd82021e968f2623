//! The [`Sink`] contract.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use synchdb_types::{ChangeEvent, Position, Row, TableId, TableSchema, Transaction};

use crate::error::{Error, Result};
use crate::state::{ChunkInfo, PipelineState, StateUpdate};

/// A stream of row batches of one snapshot chunk, after conversion.
pub type RowStream<'a> = BoxStream<'a, Result<Vec<Row>>>;

/// Whole source transactions to apply together, and the state to store with them.
#[derive(Debug, Clone, Default)]
pub struct ChangeBatch {
    /// Whole source transactions, in commit order (possibly none: a batch
    /// may only move the position, e.g. after heartbeats).
    pub transactions: Vec<Transaction>,
    /// The state to store with the batch: its `position` is the end position
    /// of the last transaction (or heartbeat); `None` in an open batch.
    pub state: StateUpdate,
    /// The last transaction is not complete: more of it follows in the next
    /// batch. The sink applies this batch inside its open target transaction
    /// and keeps that open; the first batch that is not `open` commits it with
    /// its state. Only sent to sinks that [support it](Sink::supports_open_batches).
    pub open: bool,
}

impl ChangeBatch {
    /// Number of change events in the batch.
    pub fn event_count(&self) -> usize {
        self.transactions.iter().map(|t| t.events.len()).sum()
    }
}

/// A destination of changes (PostgreSQL, or an in-memory sink for tests).
///
/// # Contract
/// What a sink may assume:
/// - Calls come from one pipeline at a time. `write_chunk` may run for
///   several chunks at once (hence `&self`); `apply` calls never overlap and
///   come in source order, after `finish_snapshot`.
/// - A [`ChangeBatch`] holds whole source transactions: a source transaction
///   is never split across two batches.
/// - Delivery is at least once: after a crash the pipeline resumes from the
///   last stored state, so the first batch after a restart may hold
///   transactions whose effects the sink already has if (and only if) the
///   sink does not store the state with its data. Sinks that can should
///   apply idempotently.
///
/// What a sink must do:
/// - Make each `apply` batch durable before returning `Ok`. A sink whose
///   [`stores_state`](Sink::stores_state) is `true` stores `batch.state` in
///   the *same* transaction as the batch's data, so data and checkpoint
///   always agree (exactly-once); otherwise the pipeline stores the state
///   in its [`CheckpointStore`](crate::CheckpointStore) after `Ok`.
/// - Likewise for snapshot chunks (`SnapshotUpdate::ChunkDone` with the row
///   count) and for `finish_snapshot`'s state.
/// - Return errors with the right [`ErrorKind`](crate::ErrorKind): transient
///   ones (`SinkConnection`) are retried by the error policy; per-event ones
///   (`SinkApply`, `SinkValue`, `SinkSchema`) may be skipped.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A short name for logs (`postgres`, `memory`).
    fn name(&self) -> &str;

    /// Whether the sink stores pipeline state atomically with its data.
    fn stores_state(&self) -> bool {
        false
    }

    /// Whether [`apply`](Sink::apply) takes [open batches](ChangeBatch::open),
    /// so that a source transaction too large to hold in memory is applied in
    /// pieces inside one target transaction. Sinks that do not get the whole
    /// transaction in one batch (held in memory).
    fn supports_open_batches(&self) -> bool {
        false
    }

    /// The stored state of `pipeline` (only called when `stores_state`).
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        let _ = pipeline;
        Ok(None)
    }

    /// Store a state update with no data (only called when `stores_state`).
    async fn save_state(&self, pipeline: &str, update: &StateUpdate) -> Result<()> {
        let _ = (pipeline, update);
        Ok(())
    }

    /// Create the tables of a snapshot (columns and primary keys; indexes and
    /// foreign keys wait for [`finish_snapshot`](Sink::finish_snapshot)), and
    /// empty the `restart` tables. `state` records the snapshot start.
    async fn prepare_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        restart: &[TableId],
        state: &StateUpdate,
    ) -> Result<()>;

    /// Bulk-load one chunk and return the number of rows written. A sink that
    /// stores state records the chunk as done in the same transaction.
    async fn write_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        read_at: &Position,
        rows: RowStream<'_>,
    ) -> Result<u64>;

    /// After every chunk is durable: build indexes, constraints and
    /// sequences, and store `state` (snapshot finished, follow position).
    async fn finish_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()>;

    /// Begin a resync (a re-snapshot of `tables` while the others keep
    /// following): drop the foreign keys that involve them, empty them
    /// (recreate them from `tables`, without indexes), and store `state`.
    /// Every earlier batch has been applied. The default refuses.
    async fn begin_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let _ = (pipeline, tables, state);
        Err(Error::new(
            crate::ErrorKind::Config,
            format!("sink {} cannot re-snapshot tables while following", self.name()),
        ))
    }

    /// Every chunk of the resync is durable: build the tables' indexes (not
    /// their foreign keys) and store `state`.
    async fn finish_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let _ = (pipeline, tables, state);
        Err(Error::new(crate::ErrorKind::Config, format!("sink {} cannot re-snapshot tables", self.name())))
    }

    /// The resync tables are followed again: create the foreign keys of
    /// `tables`, and those of `referencing` that point to `tables`; store
    /// `state`. Every earlier batch has been applied.
    async fn join_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        referencing: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let _ = (pipeline, tables, referencing, state);
        Err(Error::new(crate::ErrorKind::Config, format!("sink {} cannot re-snapshot tables", self.name())))
    }

    /// Apply a batch of change events and store its state (see the contract).
    async fn apply(&self, pipeline: &str, batch: &ChangeBatch) -> Result<()>;

    /// Record an event skipped by the `skip` error policy. The default logs it.
    async fn dead_letter(&self, pipeline: &str, event: &ChangeEvent, error: &Error) -> Result<()> {
        tracing::error!(
            pipeline,
            table = %event.table_id(),
            operation = event.operation(),
            position = %event.meta().position,
            %error,
            "skipped event"
        );
        Ok(())
    }

    /// Check, before any data moves, that the sink can hold these (converted)
    /// tables as the converters ask: e.g. that transforms and type overrides
    /// are valid for it and fit tables that already exist. Called at start
    /// when converters are configured. Default: nothing to check.
    async fn check_tables(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        let _ = tables;
        Ok(())
    }

    /// Keep the pipeline's status where operators look (for PostgreSQL, the
    /// `pipeline_status` and `table_stats` views). Called at most once a
    /// second while the status changes, outside the data's transactions;
    /// a failure is logged and retried with the next status. The default
    /// keeps nothing.
    async fn publish_status(&self, status: &crate::status::PipelineStatus) -> Result<()> {
        let _ = status;
        Ok(())
    }
}

#[async_trait]
impl<S: Sink + ?Sized> Sink for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn stores_state(&self) -> bool {
        (**self).stores_state()
    }
    fn supports_open_batches(&self) -> bool {
        (**self).supports_open_batches()
    }
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        (**self).load_state(pipeline).await
    }
    async fn save_state(&self, pipeline: &str, update: &StateUpdate) -> Result<()> {
        (**self).save_state(pipeline, update).await
    }
    async fn prepare_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        restart: &[TableId],
        state: &StateUpdate,
    ) -> Result<()> {
        (**self).prepare_snapshot(pipeline, tables, restart, state).await
    }
    async fn write_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        read_at: &Position,
        rows: RowStream<'_>,
    ) -> Result<u64> {
        (**self).write_chunk(pipeline, table, chunk, read_at, rows).await
    }
    async fn finish_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        (**self).finish_snapshot(pipeline, tables, state).await
    }
    async fn begin_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        (**self).begin_resync(pipeline, tables, state).await
    }
    async fn finish_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        (**self).finish_resync(pipeline, tables, state).await
    }
    async fn join_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        referencing: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        (**self).join_resync(pipeline, tables, referencing, state).await
    }
    async fn apply(&self, pipeline: &str, batch: &ChangeBatch) -> Result<()> {
        (**self).apply(pipeline, batch).await
    }
    async fn dead_letter(&self, pipeline: &str, event: &ChangeEvent, error: &Error) -> Result<()> {
        (**self).dead_letter(pipeline, event, error).await
    }
    async fn publish_status(&self, status: &crate::status::PipelineStatus) -> Result<()> {
        (**self).publish_status(status).await
    }
    async fn check_tables(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        (**self).check_tables(tables).await
    }
}
