//! The [`Source`] contract and the messages a source sends.

use std::sync::Arc;

use async_trait::async_trait;
use synchdb_types::{Position, Row, TableId, TableSchema, Transaction};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, ErrorKind, Result};
use crate::state::{ChunkInfo, PipelineState, SnapshotPlan};

enum ChunkItem {
    Rows(Vec<Row>),
    Failed(Error),
    End,
}

/// Creates the channel of one snapshot chunk: the source keeps the
/// [`ChunkSender`], the pipeline gets the [`RowReceiver`] in
/// [`SourceMessage::SnapshotChunk`]. `capacity` bounds the batches in flight.
pub fn chunk_channel(capacity: usize) -> (ChunkSender, RowReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ChunkSender { tx }, RowReceiver { rx, ended: false })
}

/// The source's end of a chunk channel. A chunk is complete only when the
/// source calls [`finish`](ChunkSender::finish): a sender dropped without it
/// (a reader that stopped, failed or was shut down midway) makes the
/// receiver yield an error, so a partial chunk is never recorded as done.
#[derive(Debug)]
pub struct ChunkSender {
    tx: mpsc::Sender<ChunkItem>,
}

impl std::fmt::Debug for ChunkItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkItem::Rows(r) => write!(f, "Rows({})", r.len()),
            ChunkItem::Failed(e) => write!(f, "Failed({e})"),
            ChunkItem::End => f.write_str("End"),
        }
    }
}

impl ChunkSender {
    /// Send a batch of rows; waits while the writer is behind. Fails when the
    /// pipeline no longer takes the chunk.
    pub async fn send(&self, rows: Vec<Row>) -> Result<()> {
        self.tx.send(ChunkItem::Rows(rows)).await.map_err(|_| closed())
    }

    /// Abort the chunk with an error (the writer rolls it back).
    pub async fn fail(self, error: Error) {
        let _ = self.tx.send(ChunkItem::Failed(error)).await;
    }

    /// Mark the chunk complete: every row has been sent.
    pub async fn finish(self) -> Result<()> {
        self.tx.send(ChunkItem::End).await.map_err(|_| closed())
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Stopped, "pipeline stopped")
}

/// The pipeline's end of a chunk channel: row batches until the source
/// finishes the chunk.
#[derive(Debug)]
pub struct RowReceiver {
    rx: mpsc::Receiver<ChunkItem>,
    ended: bool,
}

impl RowReceiver {
    /// The next batch; `None` once the source has finished the chunk; an
    /// error when the source failed it or stopped before finishing it.
    pub async fn recv(&mut self) -> Option<Result<Vec<Row>>> {
        if self.ended {
            return None;
        }
        match self.rx.recv().await {
            Some(ChunkItem::Rows(rows)) => Some(Ok(rows)),
            Some(ChunkItem::Failed(e)) => {
                self.ended = true;
                Some(Err(e))
            }
            Some(ChunkItem::End) => {
                self.ended = true;
                None
            }
            None => {
                self.ended = true;
                Some(Err(Error::new(
                    ErrorKind::SourceConnection,
                    "the source stopped before the snapshot chunk was complete",
                )))
            }
        }
    }
}

/// What a source sends to the pipeline, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceMessage {
    /// A snapshot begins. `tables` holds every table's schema (created on the
    /// sink before any rows); `restart` lists tables whose earlier partial
    /// snapshot must be discarded (their chunks are read again).
    SnapshotStarted {
        /// The plan: consistent position, tables and chunks.
        plan: SnapshotPlan,
        /// Schemas of the snapshot tables.
        tables: Vec<Arc<TableSchema>>,
        /// Tables to empty before their chunks are written again.
        restart: Vec<TableId>,
        /// Whether this snapshot resumes an interrupted one.
        resumed: bool,
    },
    /// The rows of one chunk, streamed. Chunks of different tables (and of one
    /// table) may be in flight at once; each is written and made durable on
    /// its own.
    SnapshotChunk {
        /// Which chunk.
        chunk: ChunkInfo,
        /// The schema of the chunk's table.
        table: Arc<TableSchema>,
        /// The consistent position the rows are read at.
        read_at: Position,
        /// The rows.
        rows: RowReceiver,
    },
    /// Every chunk has been sent; once they are durable the sink builds
    /// indexes and constraints and follow mode starts from `position`.
    SnapshotFinished {
        /// Where follow mode starts.
        position: Position,
        /// Tables read after `position` whose earlier row events must not be
        /// applied (stored with the state, see [`PipelineState::skip_before`](crate::PipelineState)).
        skip_before: Vec<crate::state::SkipPoint>,
    },
    /// Schema only (snapshot mode `no_data`): create these tables, no rows.
    SchemaOnly {
        /// The tables.
        tables: Vec<Arc<TableSchema>>,
        /// Where follow mode starts.
        position: Position,
    },
    /// Follow mode starts at `position` without a snapshot (snapshot mode
    /// `never` on a pipeline with no stored state): the pipeline stores these
    /// source schemas and the position, so that a restart decodes the binlog
    /// with the schemas of its checkpoint. No table is created.
    FollowStarted {
        /// The tracked source tables at `position`.
        tables: Vec<Arc<TableSchema>>,
        /// Where follow mode starts.
        position: Position,
    },
    /// A resync begins (see [`ResyncState`](crate::ResyncState)): every
    /// earlier message is applied first; then `tables` are emptied (created
    /// anew) on the sink and their chunks follow as
    /// [`SnapshotChunk`](SourceMessage::SnapshotChunk)s, while transactions
    /// of other tables keep coming. The source sends no change of these
    /// tables before [`ResyncJoined`](SourceMessage::ResyncJoined).
    ResyncStarted {
        /// The tables' schemas at `position`.
        tables: Vec<Arc<TableSchema>>,
        /// Where their rows are read.
        position: Position,
        /// Why (for logs and status).
        reason: String,
    },
    /// Every chunk of the resync has been sent: once durable, the sink builds
    /// the tables' indexes.
    ResyncFinished {
        /// The tables.
        tables: Vec<TableId>,
    },
    /// The resync tables are followed again from here: the sink creates the
    /// foreign keys of `tables` and those of `referencing` that point to them.
    /// With no tables, a resync announced before ends with nothing to copy
    /// (its tables are gone from the source).
    ResyncJoined {
        /// The resynced tables (schemas at the resync position).
        tables: Vec<Arc<TableSchema>>,
        /// Tracked tables with foreign keys to them.
        referencing: Vec<Arc<TableSchema>>,
    },
    /// These tables are no longer selected: their stored schemas go (the
    /// tables stay on the sink, no longer applied).
    TablesDeselected {
        /// The tables.
        tables: Vec<TableId>,
    },
    /// One committed source transaction (or the rest of one whose first
    /// pieces came as [`TransactionPart`](SourceMessage::TransactionPart)s).
    Transaction(Transaction),
    /// A piece of a source transaction too large to hold in memory: its
    /// events so far, in order. More parts or the final
    /// [`Transaction`](SourceMessage::Transaction) (same `sequence`) follow
    /// before anything else; they are applied atomically together.
    TransactionPart(Transaction),
    /// No change, but the source has read up to here (keeps the checkpoint and lag current).
    Heartbeat {
        /// The position reached.
        position: Position,
        /// Source time of the heartbeat, when known.
        source_time: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Everything a source gets when the pipeline starts it.
#[derive(Debug)]
pub struct SourceContext {
    /// The pipeline id.
    pub pipeline_id: String,
    /// The stored state (`None` for a new pipeline).
    pub state: Option<PipelineState>,
    /// Where to send messages. `send` waits when the pipeline is behind:
    /// this is the backpressure.
    pub sender: mpsc::Sender<SourceMessage>,
    /// Becomes `true` when the pipeline shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Operators' requests for the source ([`SourceCommand`]); they outlive
    /// a restart of the run. A source that takes none leaves them queued.
    pub commands: SourceCommands,
    /// The last position the sink has made durable (with its data), for
    /// sources that acknowledge upstream only what is safe (a message
    /// broker's consumer). `None` until something is applied in this run.
    pub applied: watch::Receiver<Option<Position>>,
}

/// A request for a running source.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceCommand {
    /// Copy these tables again at a new consistent point while the others
    /// keep following ([`SourceMessage::ResyncStarted`]), then follow them.
    /// `reply` gets `Ok` once the source has taken the request, or why not.
    Resnapshot {
        /// The source tables.
        tables: Vec<TableId>,
        /// The answer.
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
    /// Add these tables to the selection: they are copied while the others
    /// keep following, then followed. `reply` gets the tables that were
    /// not selected before (already selected ones are left as they are).
    AddTables {
        /// The source tables.
        tables: Vec<TableId>,
        /// The answer.
        reply: tokio::sync::oneshot::Sender<Result<Vec<TableId>>>,
    },
}

/// The queue of [`SourceCommand`]s of one pipeline (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct SourceCommands {
    inner: Arc<CommandsInner>,
}

#[derive(Debug, Default)]
struct CommandsInner {
    queue: std::sync::Mutex<std::collections::VecDeque<SourceCommand>>,
    notify: tokio::sync::Notify,
}

impl SourceCommands {
    /// Queue a command and wake the source.
    pub fn push(&self, command: SourceCommand) {
        self.inner.queue.lock().expect("commands poisoned").push_back(command);
        self.inner.notify.notify_one();
    }

    /// Take every queued command.
    pub fn take_all(&self) -> Vec<SourceCommand> {
        self.inner.queue.lock().expect("commands poisoned").drain(..).collect()
    }

    /// Resolve when a command may have been queued since the last call.
    pub async fn notified(&self) {
        self.inner.notify.notified().await
    }
}

/// Operations on the source server beside the running stream, used by the
/// pipeline's handle and its monitor ([`Source::control`]).
#[async_trait]
pub trait SourceControl: Send + Sync {
    /// Check that following can start at `position`: it must be on the
    /// server (not purged) and not after its head. Returns the position to
    /// start from (completed, e.g. with the GTID set at a file position).
    async fn check_position(&self, position: &Position) -> Result<Position>;

    /// The server's current position and binlog files with their sizes.
    async fn head(&self) -> Result<crate::status::SourceHead>;
}

impl SourceContext {
    /// Send a message; fails with an internal error when the pipeline has
    /// gone away (the source should then return).
    pub async fn send(&self, message: SourceMessage) -> Result<()> {
        self.sender.send(message).await.map_err(|_| Error::new(ErrorKind::Stopped, "pipeline stopped"))
    }

    /// Whether shutdown has been requested.
    pub fn is_shutdown(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A source of changes (a MySQL/MariaDB server, or an in-memory source for tests).
///
/// # Contract
/// - `run` resumes from `ctx.state`: when it holds a position, the first
///   transaction sent is the first one that ends after it. Nothing before
///   the stored position is sent again, nothing after it is skipped.
/// - Transactions are sent whole and in commit order, each with the
///   position just after its commit ([`Transaction::end_position`]).
/// - A snapshot is sent as `SnapshotStarted`, then chunks, then
///   `SnapshotFinished`, before any transaction.
/// - `run` returns `Ok(())` when it has nothing more to send (a bounded
///   source, or a stop condition such as "caught up"), or when shutdown is
///   requested; it handles transient failures itself (reconnect) and returns
///   `Err` only for failures it cannot get past.
#[async_trait]
pub trait Source: Send {
    /// A short name for logs (`mysql`, `memory`).
    fn name(&self) -> &str;

    /// Produce messages until done, shut down or failed.
    async fn run(&mut self, ctx: SourceContext) -> Result<()>;

    /// Operations on the source server beside the stream (seek validation,
    /// the server's head for the lag in bytes); `None` when the source has
    /// none (the default).
    fn control(&self) -> Option<Arc<dyn SourceControl>> {
        None
    }

    /// Whether the source takes [`SourceCommand::Resnapshot`] (default: no).
    fn supports_resnapshot(&self) -> bool {
        false
    }

    /// The schemas of the tables the source would replicate now, read
    /// before the pipeline starts so that converters and the sink can check
    /// them ([`Converter::check_source_tables`](crate::Converter::check_source_tables),
    /// [`Sink::check_tables`](crate::Sink::check_tables)); `None` (the
    /// default) when the source cannot tell in advance.
    async fn discover_tables(&mut self) -> Result<Option<Vec<TableSchema>>> {
        Ok(None)
    }
}

#[async_trait]
impl<S: Source + ?Sized> Source for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        (**self).run(ctx).await
    }

    fn control(&self) -> Option<Arc<dyn SourceControl>> {
        (**self).control()
    }

    fn supports_resnapshot(&self) -> bool {
        (**self).supports_resnapshot()
    }

    async fn discover_tables(&mut self) -> Result<Option<Vec<TableSchema>>> {
        (**self).discover_tables().await
    }
}
