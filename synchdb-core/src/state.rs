//! Pipeline state: the checkpoint (resume position), snapshot progress and
//! the tracked source schemas, and the store that keeps them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use synchdb_types::{Position, Row, TableId, TableSchema};

use crate::error::Result;

/// One chunk of a table's snapshot: a primary-key range `(lower, upper]`.
/// Chunks of one table are numbered `0..count`; a table read in one piece has
/// one chunk with no bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// The source table.
    pub table: TableId,
    /// Chunk number within the table, from 0.
    pub index: u32,
    /// Number of chunks of the table.
    pub count: u32,
    /// Exclusive lower key bound (primary-key values), `None` from the start.
    pub lower: Option<Row>,
    /// Inclusive upper key bound, `None` to the end.
    pub upper: Option<Row>,
}

/// A chunk that the sink has made durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkDone {
    /// The source table.
    pub table: TableId,
    /// Chunk number.
    pub index: u32,
    /// Rows written.
    pub rows: u64,
    /// The consistent position the chunk's rows were read at.
    pub read_at: Position,
}

/// The plan of a snapshot, stored when it starts so that an interrupted
/// snapshot resumes with the same chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPlan {
    /// The consistent position of the (first) snapshot: follow mode starts here.
    pub position: Position,
    /// Every table of the snapshot.
    pub tables: Vec<TableId>,
    /// Every chunk of every table.
    pub chunks: Vec<ChunkInfo>,
}

/// Progress of a snapshot that has started and not finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The plan.
    pub plan: SnapshotPlan,
    /// Chunks made durable so far.
    pub done: Vec<ChunkDone>,
}

impl SnapshotProgress {
    /// Whether chunk `index` of `table` is done.
    pub fn is_done(&self, table: &TableId, index: u32) -> bool {
        self.done.iter().any(|d| &d.table == table && d.index == index)
    }
}

/// Where the snapshot stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SnapshotStatus {
    /// No snapshot has started.
    NotStarted,
    /// A snapshot started and was interrupted.
    InProgress(SnapshotProgress),
    /// The snapshot finished (or was skipped by the snapshot mode).
    Done,
}

/// A re-snapshot of some tables while the others keep following (a
/// *resync*): their rows are copied at `position`; their changes before it
/// are skipped; from the first transaction after it they are followed again
/// (they *join*), and until then they are not among the tracked schemas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResyncState {
    /// The tables' source schemas at `position`.
    pub tables: Vec<TableSchema>,
    /// The consistent position the rows are read at.
    pub position: Position,
    /// Whether every row is durable (then only the join is left).
    pub loaded: bool,
    /// Why the tables are copied again (for logs and status).
    pub reason: String,
}

/// A change of the resync state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResyncUpdate {
    /// A resync starts (its tables are emptied in the same transaction).
    Started(ResyncState),
    /// Every row of the resync is durable.
    Loaded,
    /// The tables are followed again; the resync is over.
    Joined,
}

/// Everything stored for one pipeline id. Non-exhaustive: start from
/// [`PipelineState::empty`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineState {
    /// The resume position: every change before it is applied, none after.
    pub position: Option<Position>,
    /// Snapshot status.
    pub snapshot: SnapshotStatus,
    /// The source schemas as tracked at `position` (for decoding the binlog after a restart).
    pub schemas: Vec<TableSchema>,
    /// A resync in progress, if any.
    #[serde(default)]
    pub resync: Option<ResyncState>,
    /// Tables whose snapshot rows were read after the position follow mode
    /// started from (keyless tables of a resumed snapshot): their row events
    /// before the given position are not applied. Kept across restarts, so
    /// a restart from a checkpoint before that position does not apply the
    /// rows twice.
    #[serde(default)]
    pub skip_before: Vec<SkipPoint>,
}

/// Row events of `table` before `position` are not applied (its snapshot
/// rows were read at `position`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkipPoint {
    /// The table.
    pub table: TableId,
    /// Where its snapshot rows were read.
    pub position: Position,
}

impl PipelineState {
    /// The state of a pipeline that has done nothing yet.
    pub fn empty() -> Self {
        PipelineState {
            position: None,
            snapshot: SnapshotStatus::NotStarted,
            schemas: Vec::new(),
            resync: None,
            skip_before: Vec::new(),
        }
    }

    /// Apply an update (what a store does on `save`). Positions never move backwards.
    pub fn apply(&mut self, update: &StateUpdate) {
        if let Some(p) = &update.position {
            if self.position.as_ref().is_none_or(|cur| !cur.is_after(p)) {
                self.position = Some(p.clone());
            }
        }
        if let Some(skips) = &update.skip_before {
            self.skip_before = skips.clone();
        }
        match &update.snapshot {
            None => {}
            Some(SnapshotUpdate::Started(plan)) => {
                self.snapshot =
                    SnapshotStatus::InProgress(SnapshotProgress { plan: plan.clone(), done: Vec::new() })
            }
            Some(SnapshotUpdate::ChunkDone(done)) => {
                if let SnapshotStatus::InProgress(p) = &mut self.snapshot {
                    if !p.is_done(&done.table, done.index) {
                        p.done.push(done.clone());
                    }
                }
            }
            Some(SnapshotUpdate::Finished) => self.snapshot = SnapshotStatus::Done,
            Some(SnapshotUpdate::Reset) => self.snapshot = SnapshotStatus::NotStarted,
        }
        match &update.resync {
            None => {}
            Some(ResyncUpdate::Started(r)) => self.resync = Some(r.clone()),
            Some(ResyncUpdate::Loaded) => {
                if let Some(r) = &mut self.resync {
                    r.loaded = true;
                }
            }
            Some(ResyncUpdate::Joined) => self.resync = None,
        }
        for s in &update.schemas {
            match s {
                SchemaUpdate::Upsert(schema) => {
                    self.schemas.retain(|t| t.id != schema.id);
                    self.schemas.push((**schema).clone());
                }
                SchemaUpdate::Drop(id) => self.schemas.retain(|t| &t.id != id),
            }
        }
    }
}

/// A change of snapshot status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SnapshotUpdate {
    /// A snapshot starts with this plan.
    Started(SnapshotPlan),
    /// A chunk is durable (stored in the same transaction as its rows).
    ChunkDone(ChunkDone),
    /// The snapshot is complete.
    Finished,
    /// Forget any snapshot progress (the next run snapshots again).
    Reset,
}

/// A change of a tracked source schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SchemaUpdate {
    /// The table's schema is now this.
    Upsert(Arc<TableSchema>),
    /// The table no longer exists.
    Drop(TableId),
}

/// What to store with a unit of work. A sink that stores state writes it in
/// the same transaction as the data it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// New resume position, if it moves.
    pub position: Option<Position>,
    /// Snapshot status change.
    pub snapshot: Option<SnapshotUpdate>,
    /// Tracked source schema changes.
    pub schemas: Vec<SchemaUpdate>,
    /// Resync state change.
    pub resync: Option<ResyncUpdate>,
    /// New skip points (replacing the stored ones), set when a snapshot finishes.
    pub skip_before: Option<Vec<SkipPoint>>,
}

impl StateUpdate {
    /// The update that marks a snapshot chunk durable: what a sink that
    /// stores state ([`Sink::state`](crate::Sink::state)) writes with the
    /// chunk's rows in [`write_chunk`](crate::Sink::write_chunk).
    pub fn chunk_done(chunk: &ChunkInfo, rows: u64, read_at: Position) -> Self {
        StateUpdate {
            snapshot: Some(SnapshotUpdate::ChunkDone(ChunkDone {
                table: chunk.table.clone(),
                index: chunk.index,
                rows,
                read_at,
            })),
            ..Default::default()
        }
    }
}

impl StateUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.position.is_none()
            && self.snapshot.is_none()
            && self.schemas.is_empty()
            && self.resync.is_none()
            && self.skip_before.is_none()
    }
}

/// Keeps [`PipelineState`] per pipeline id.
///
/// Contract: `save` is atomic; stored positions never move backwards (an
/// update with an older position leaves the position as it is); `load`
/// returns what the last successful `save` calls left.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The stored state, or `None` for an unknown pipeline.
    async fn load(&self, pipeline: &str) -> Result<Option<PipelineState>>;
    /// Apply `update` to the stored state (creating it when missing).
    async fn save(&self, pipeline: &str, update: &StateUpdate) -> Result<()>;
    /// Forget the pipeline.
    async fn clear(&self, pipeline: &str) -> Result<()>;
}

/// A [`CheckpointStore`] in memory: survives a pipeline restart within the
/// process, not a process restart. Clones share the same map.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpointStore {
    inner: Arc<Mutex<HashMap<String, PipelineState>>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `pipeline`, synchronously (for tests).
    pub fn get(&self, pipeline: &str) -> Option<PipelineState> {
        self.inner.lock().expect("checkpoint store poisoned").get(pipeline).cloned()
    }
}

#[async_trait]
impl CheckpointStore for MemoryCheckpointStore {
    async fn load(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        Ok(self.get(pipeline))
    }

    async fn save(&self, pipeline: &str, update: &StateUpdate) -> Result<()> {
        let mut map = self.inner.lock().expect("checkpoint store poisoned");
        map.entry(pipeline.to_string()).or_insert_with(PipelineState::empty).apply(update);
        Ok(())
    }

    async fn clear(&self, pipeline: &str) -> Result<()> {
        self.inner.lock().expect("checkpoint store poisoned").remove(pipeline);
        Ok(())
    }
}

/// Group chunk completions by table (a helper for sources planning a resume).
pub fn done_chunks_by_table(progress: &SnapshotProgress) -> BTreeMap<TableId, Vec<&ChunkDone>> {
    let mut map: BTreeMap<TableId, Vec<&ChunkDone>> = BTreeMap::new();
    for d in &progress.done {
        map.entry(d.table.clone()).or_default().push(d);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::BinlogPosition;

    fn pos(n: u64) -> Position {
        Position::new(BinlogPosition::new("mysql-bin.000001", n))
    }

    #[tokio::test]
    async fn positions_never_move_back() {
        let store = MemoryCheckpointStore::new();
        store.save("p", &StateUpdate { position: Some(pos(100)), ..Default::default() }).await.unwrap();
        store.save("p", &StateUpdate { position: Some(pos(50)), ..Default::default() }).await.unwrap();
        assert_eq!(store.load("p").await.unwrap().unwrap().position, Some(pos(100)));
        assert!(store.load("q").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn snapshot_progress_accumulates() {
        let store = MemoryCheckpointStore::new();
        let t = TableId::new("d", "t");
        let plan = SnapshotPlan { position: pos(4), tables: vec![t.clone()], chunks: vec![] };
        store
            .save("p", &StateUpdate { snapshot: Some(SnapshotUpdate::Started(plan)), ..Default::default() })
            .await
            .unwrap();
        let done = ChunkDone { table: t.clone(), index: 1, rows: 10, read_at: pos(4) };
        for _ in 0..2 {
            let u =
                StateUpdate { snapshot: Some(SnapshotUpdate::ChunkDone(done.clone())), ..Default::default() };
            store.save("p", &u).await.unwrap();
        }
        let SnapshotStatus::InProgress(p) = store.get("p").unwrap().snapshot else {
            panic!("not in progress")
        };
        assert_eq!(p.done.len(), 1);
        assert!(p.is_done(&t, 1));
        assert!(!p.is_done(&t, 0));
    }
}
