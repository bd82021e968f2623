//! The [`Sink`] contract.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use synchdb_types::{ChangeEvent, Position, Row, TableId, TableSchema, TargetType, Transaction};

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
/// What a sink may assume (ordering and concurrency):
/// - Calls come from one pipeline at a time, in this order: [`check_tables`]
///   (when converters are configured), then either a snapshot
///   ([`prepare_snapshot`], any number of [`write_chunk`] calls, possibly
///   several at once — hence `&self` —, [`finish_snapshot`]) or nothing, then
///   [`apply`] calls. `apply` calls never overlap and come in source commit
///   order; a resync (`begin_resync`, `write_chunk`s, `finish_resync`,
///   `join_resync`) runs between two `apply` calls, and its `write_chunk`
///   calls may overlap each other but never an `apply`.
/// - [`publish_status`] is called from another task at any time and may
///   overlap everything else; it must not take part in the data's transactions.
/// - [`shutdown`] is called once, last, after every other call has returned
///   (whether the pipeline stopped, finished or failed).
/// - A [`ChangeBatch`] holds whole source transactions: a source transaction
///   is never split across two batches, except as [open batches](ChangeBatch::open)
///   for sinks that ask for them.
/// - Delivery is at least once: after a crash the pipeline resumes from the
///   last stored state, so the first batch after a restart may hold
///   transactions whose effects the sink already has if (and only if) the
///   sink does not store the state with its data ([`Sink::state`] is `None`).
///   Such sinks should apply idempotently.
///
/// What a sink must do:
/// - Make each `apply` batch durable before returning `Ok`. A sink whose
///   [`state`](Sink::state) is `Some` stores `batch.state` in the *same*
///   transaction as the batch's data, so data and checkpoint always agree
///   (exactly-once); otherwise the pipeline stores the state in its
///   [`CheckpointStore`](crate::CheckpointStore) after `Ok`.
/// - Likewise for snapshot chunks (`SnapshotUpdate::ChunkDone` with the row
///   count) and for `finish_snapshot`'s state.
/// - Honour what converters put on the columns of the tables it receives
///   (a destination type, an SQL transform, a zero-date or NUL-text policy,
///   see [`ColumnSchema`](synchdb_types::ColumnSchema)), or say it cannot in
///   [`capabilities`](Sink::capabilities): the pipeline then refuses to start
///   when a converter asks for it, instead of the sink silently ignoring it.
/// - Return errors with the right [`ErrorKind`](crate::ErrorKind): transient
///   ones (`SinkConnection`) are retried by the error policy; per-event ones
///   (`SinkApply`, `SinkValue`, `SinkSchema`) may be skipped.
///
/// [`check_tables`]: Sink::check_tables
/// [`prepare_snapshot`]: Sink::prepare_snapshot
/// [`write_chunk`]: Sink::write_chunk
/// [`finish_snapshot`]: Sink::finish_snapshot
/// [`apply`]: Sink::apply
/// [`publish_status`]: Sink::publish_status
/// [`shutdown`]: Sink::shutdown
#[async_trait]
pub trait Sink: Send + Sync {
    /// A short name for logs (`postgres`, `memory`).
    fn name(&self) -> &str;

    /// The sink's own state store, when it stores pipeline state atomically
    /// with its data (exactly-once). `None` (the default): the pipeline keeps
    /// the state in its [`CheckpointStore`](crate::CheckpointStore).
    fn state(&self) -> Option<&dyn SinkState> {
        None
    }

    /// What the sink can honour of the column settings converters make.
    /// The default: nothing beyond plain values.
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::default()
    }

    /// Whether [`apply`](Sink::apply) takes [open batches](ChangeBatch::open),
    /// so that a source transaction too large to hold in memory is applied in
    /// pieces inside one target transaction. Sinks that do not get the whole
    /// transaction in one batch (held in memory).
    fn supports_open_batches(&self) -> bool {
        false
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

    /// The pipeline has ended (stopped, finished or failed) and will make no
    /// other call: release what the sink holds (connections, buffers). Called
    /// once, after every other call has returned. The default does nothing.
    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }
}

/// A sink's store of pipeline state, kept with its data so that a restart
/// resumes exactly where the data stands (see the [`Sink`] contract).
/// A sink offering it implements both methods and returns itself from
/// [`Sink::state`].
#[async_trait]
pub trait SinkState: Send + Sync {
    /// The stored state of `pipeline`, `None` when nothing is stored.
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>>;

    /// Store a state update that comes with no data (e.g. the follow start
    /// after a snapshot, a position moved by heartbeats).
    async fn save_state(&self, pipeline: &str, update: &StateUpdate) -> Result<()>;
}

/// What a sink honours of the settings converters put on columns
/// ([`ColumnSchema`](synchdb_types::ColumnSchema)). Each is `false` by default;
/// the pipeline refuses to start when a converted table asks for one the
/// sink lacks, naming the table and column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkCapabilities {
    /// `target_type`: a destination type chosen by a mapping rule, one of the
    /// typed [`TargetType`](synchdb_types::TargetType)s.
    pub type_overrides: bool,
    /// `target_type` given as [`TargetType::Native`](synchdb_types::TargetType::Native):
    /// a type name in the sink's own dialect (e.g. PostgreSQL's `jsonb`).
    pub native_types: bool,
    /// `target_expr`: an SQL expression computing the stored value.
    pub sql_transforms: bool,
    /// `zero_dates`: a per-column zero-date policy.
    pub zero_date_policy: bool,
    /// `text_nul`: a per-column policy for NUL characters in text.
    pub text_nul_policy: bool,
}

impl SinkCapabilities {
    /// Nothing beyond plain values (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Every column setting.
    pub fn all() -> Self {
        Self {
            type_overrides: true,
            native_types: true,
            sql_transforms: true,
            zero_date_policy: true,
            text_nul_policy: true,
        }
    }

    /// Set [`type_overrides`](Self::type_overrides).
    pub fn with_type_overrides(mut self, yes: bool) -> Self {
        self.type_overrides = yes;
        self
    }

    /// Set [`native_types`](Self::native_types).
    pub fn with_native_types(mut self, yes: bool) -> Self {
        self.native_types = yes;
        self
    }

    /// Set [`sql_transforms`](Self::sql_transforms).
    pub fn with_sql_transforms(mut self, yes: bool) -> Self {
        self.sql_transforms = yes;
        self
    }

    /// Set [`zero_date_policy`](Self::zero_date_policy).
    pub fn with_zero_date_policy(mut self, yes: bool) -> Self {
        self.zero_date_policy = yes;
        self
    }

    /// Set [`text_nul_policy`](Self::text_nul_policy).
    pub fn with_text_nul_policy(mut self, yes: bool) -> Self {
        self.text_nul_policy = yes;
        self
    }

    /// Check that these capabilities cover every column setting of `tables`;
    /// the error names the sink, the table and the column.
    pub fn check(&self, sink: &str, tables: &[Arc<TableSchema>]) -> Result<()> {
        for t in tables {
            for c in &t.columns {
                let missing = if let (Some(ty), false) = (&c.target_type, self.type_overrides) {
                    Some(("a destination type", ty.to_string()))
                } else if let (Some(ty @ TargetType::Native(_)), false) = (&c.target_type, self.native_types)
                {
                    Some(("a destination type in the sink's own dialect", ty.to_string()))
                } else if let (Some(x), false) = (&c.target_expr, self.sql_transforms) {
                    Some(("an SQL transform", x.to_string()))
                } else if c.zero_dates.is_some() && !self.zero_date_policy {
                    Some(("a zero-date policy", format!("{:?}", c.zero_dates)))
                } else if c.text_nul.is_some() && !self.text_nul_policy {
                    Some(("a NUL-text policy", format!("{:?}", c.text_nul)))
                } else {
                    None
                };
                if let Some((what, value)) = missing {
                    return Err(Error::new(
                        crate::ErrorKind::Config,
                        format!(
                            "a converter gives {}.{} {what} ({value}) that sink {sink} cannot honour",
                            t.id, c.name
                        ),
                    )
                    .with_table(t.id.clone())
                    .with_column(c.name.clone()));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Sink + ?Sized> Sink for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn state(&self) -> Option<&dyn SinkState> {
        (**self).state()
    }
    fn capabilities(&self) -> SinkCapabilities {
        (**self).capabilities()
    }
    fn supports_open_batches(&self) -> bool {
        (**self).supports_open_batches()
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
    async fn shutdown(&self) -> Result<()> {
        (**self).shutdown().await
    }
}
