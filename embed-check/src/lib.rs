//! A custom [`Source`] and [`Sink`] written against the facade alone
//! (`synchdb` with `default-features = false`: no sqlx, no mysql_async).
//! `.ci/run` checks with `cargo tree` that neither driver is compiled in.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use synchdb::prelude::*;

/// A source that sends one snapshot table, then some transactions.
pub struct VecSource {
    /// The table.
    pub table: Arc<TableSchema>,
    /// Its snapshot rows.
    pub rows: Vec<Row>,
    /// Changes after the snapshot.
    pub transactions: Vec<Transaction>,
}

#[async_trait]
impl Source for VecSource {
    fn name(&self) -> &str {
        "vec"
    }

    async fn run(&mut self, ctx: SourceContext) -> synchdb::Result<()> {
        let at = Position::new(BinlogPosition::new("vec.000001", 4));
        let done = ctx.state.as_ref().and_then(|s| s.position.clone());
        if done.is_none() {
            let chunk =
                ChunkInfo { table: self.table.id.clone(), index: 0, count: 1, lower: None, upper: None };
            let plan = SnapshotPlan {
                position: at.clone(),
                tables: vec![self.table.id.clone()],
                chunks: vec![chunk.clone()],
            };
            ctx.send(SourceMessage::SnapshotStarted {
                plan,
                tables: vec![self.table.clone()],
                restart: vec![],
                resumed: false,
            })
            .await?;
            let (sender, rows) = chunk_channel(4);
            ctx.send(SourceMessage::SnapshotChunk {
                chunk,
                table: self.table.clone(),
                read_at: at.clone(),
                rows,
            })
            .await?;
            sender.send(self.rows.clone()).await?;
            sender.finish().await?;
            ctx.send(SourceMessage::SnapshotFinished { position: at, skip_before: vec![] }).await?;
        }
        for tx in &self.transactions {
            if done.as_ref().is_some_and(|d| !tx.end_position.is_after(d)) {
                continue;
            }
            ctx.send(SourceMessage::Transaction(tx.clone())).await?;
        }
        Ok(())
    }
}

/// What [`CollectSink`] received.
#[derive(Debug, Default)]
pub struct Collected {
    /// Snapshot rows.
    pub rows: Vec<Row>,
    /// Change events applied.
    pub events: Vec<ChangeEvent>,
}

/// A sink that keeps everything in memory.
#[derive(Clone, Default)]
pub struct CollectSink {
    /// What arrived.
    pub data: Arc<Mutex<Collected>>,
}

#[async_trait]
impl Sink for CollectSink {
    fn name(&self) -> &str {
        "collect"
    }

    async fn prepare_snapshot(
        &self,
        _pipeline: &str,
        _tables: &[Arc<TableSchema>],
        _restart: &[TableId],
        _state: &StateUpdate,
    ) -> synchdb::Result<()> {
        Ok(())
    }

    async fn write_chunk(
        &self,
        _pipeline: &str,
        _table: &Arc<TableSchema>,
        _chunk: &ChunkInfo,
        _read_at: &Position,
        mut rows: RowStream<'_>,
    ) -> synchdb::Result<u64> {
        let mut n = 0;
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            n += batch.len() as u64;
            self.data.lock().expect("poisoned").rows.extend(batch);
        }
        Ok(n)
    }

    async fn finish_snapshot(
        &self,
        _pipeline: &str,
        _tables: &[Arc<TableSchema>],
        _state: &StateUpdate,
    ) -> synchdb::Result<()> {
        Ok(())
    }

    async fn apply(&self, _pipeline: &str, batch: &ChangeBatch) -> synchdb::Result<()> {
        let mut data = self.data.lock().expect("poisoned");
        for tx in &batch.transactions {
            data.events.extend(tx.events.iter().cloned());
        }
        Ok(())
    }
}

/// The guide "Writing a sink, writing a source" (`docs/writing-sources-and-sinks.md`):
/// its code blocks run as this crate's doc tests, and its sink and source
/// are compiled here too (from the same file) for the guide's last example.
#[doc = include_str!("../../docs/writing-sources-and-sinks.md")]
pub mod guide {
    include!(concat!(env!("OUT_DIR"), "/guide.rs"));
}
