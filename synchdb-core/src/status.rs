//! The typed status of a running pipeline ([`PipelineControl::status`](crate::PipelineControl::status)),
//! what operators see through the HTTP API, the console and the state views.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synchdb_types::{BinlogPosition, Position};

use crate::error::Error;

/// What a pipeline is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Connecting, checking, loading its state.
    Starting,
    /// Copying the selected tables at one consistent position.
    Snapshotting,
    /// Applying the binlog.
    Following,
    /// Following, with some tables being copied again ([`PipelineStatus::resyncing`]).
    Resyncing,
    /// Paused by the operator: nothing is applied until resumed.
    Paused,
    /// Waiting to start again after a transient failure.
    Restarting,
    /// A stop was asked; the batch in flight is being finished.
    Stopping,
    /// Ended normally.
    Stopped,
    /// Ended with an error ([`PipelineStatus::last_error`]).
    Failed,
}

impl Phase {
    /// The name used in JSON, metrics and the state views.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Snapshotting => "snapshotting",
            Phase::Following => "following",
            Phase::Resyncing => "resyncing",
            Phase::Paused => "paused",
            Phase::Restarting => "restarting",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Snapshot progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgressStatus {
    /// Tables in the snapshot.
    pub tables_total: u64,
    /// Tables whose every chunk is durable.
    pub tables_done: u64,
    /// Chunks in the plan.
    pub chunks_total: u64,
    /// Chunks durable.
    pub chunks_done: u64,
    /// Rows written (snapshot and resyncs).
    pub rows: u64,
    /// Rows estimated on the source for the tables of the plan, when known.
    pub rows_total: Option<u64>,
}

/// Where the source is: what the pipeline has read, and the server's head.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The last position the pipeline received from the source.
    pub position: Option<String>,
    /// Its GTID set, when known.
    pub gtid: Option<String>,
    /// The source server's current position (its binlog head), when known.
    pub head: Option<String>,
}

/// What has been applied and made durable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedStatus {
    /// The checkpoint: the position after the last durable transaction.
    pub position: Option<String>,
    /// Its GTID set, when known.
    pub gtid: Option<String>,
    /// When the last batch was applied.
    pub at: Option<DateTime<Utc>>,
    /// Source commit time of the last transaction (or heartbeat) applied.
    pub source_time: Option<DateTime<Utc>>,
}

/// Pipeline-wide counters (since the process started the pipeline).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Rows inserted by change apply.
    pub inserts: u64,
    /// Rows updated.
    pub updates: u64,
    /// Rows deleted.
    pub deletes: u64,
    /// Tables truncated.
    pub truncates: u64,
    /// Schema changes applied.
    pub ddl: u64,
    /// Source transactions applied.
    pub transactions: u64,
    /// Batches applied.
    pub batches: u64,
    /// Mean events per batch.
    pub batch_events_avg: f64,
    /// Largest batch, in events.
    pub batch_events_max: u64,
    /// Events in the last batch.
    pub batch_events_last: u64,
    /// Rows written by the snapshot and resyncs.
    pub snapshot_rows: u64,
    /// Retries (error policy and transient failures).
    pub retries: u64,
    /// Restarts of the pipeline after transient failures.
    pub restarts: u64,
    /// Events sent to the dead letter by the `skip` policy.
    pub dead_letters: u64,
    /// Resyncs started (tables copied again while the others follow).
    pub resyncs: u64,
}

/// Per-table counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStatus {
    /// `database.table` on the source.
    pub table: String,
    /// Rows inserted.
    pub inserts: u64,
    /// Rows updated.
    pub updates: u64,
    /// Rows deleted.
    pub deletes: u64,
    /// Truncates.
    pub truncates: u64,
    /// Schema changes.
    pub ddl: u64,
    /// Rows copied by the snapshot or a resync.
    pub snapshot_rows: u64,
    /// Events sent to the dead letter.
    pub dead_letters: u64,
    /// When a change of this table was last applied.
    pub last_applied_at: Option<DateTime<Utc>>,
}

/// An error as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorStatus {
    /// The error kind ([`ErrorKind::label`](crate::ErrorKind::label)).
    pub kind: String,
    /// The whole message, with its causes.
    pub message: String,
    /// The table, when known.
    pub table: Option<String>,
    /// The column, when known.
    pub column: Option<String>,
    /// The source binlog position, when known.
    pub position: Option<String>,
    /// Whether the pipeline goes on (retried, or skipped into the dead letter).
    pub recovered: bool,
    /// When.
    pub at: DateTime<Utc>,
}

impl ErrorStatus {
    /// The status form of an error.
    pub fn of(e: &Error, recovered: bool) -> Self {
        ErrorStatus {
            kind: e.kind().label(),
            message: e.to_string(),
            table: e.table().map(ToString::to_string),
            column: e.column().map(ToString::to_string),
            position: e.position().map(ToString::to_string),
            recovered,
            at: Utc::now(),
        }
    }
}

/// The whole status of a pipeline at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// The pipeline id.
    pub pipeline: String,
    /// What it is doing.
    pub phase: Phase,
    /// Whether it is paused (the phase says `paused` unless it is stopping or ended).
    pub paused: bool,
    /// When this process started the pipeline.
    pub started_at: DateTime<Utc>,
    /// Snapshot progress (of the initial snapshot and of resyncs).
    pub snapshot: SnapshotProgressStatus,
    /// Tables being copied again while the others follow.
    pub resyncing: Vec<String>,
    /// The source side.
    pub source: SourceStatus,
    /// The applied side.
    pub applied: AppliedStatus,
    /// Seconds between the source commit of the last applied transaction and
    /// now, or 0 when everything read has been applied; `None` before the
    /// first transaction or heartbeat.
    pub lag_seconds: Option<f64>,
    /// Bytes of binlog between the applied position and the source's head,
    /// when the source tells its head.
    pub lag_bytes: Option<u64>,
    /// Source commit to target apply of the last transaction, in milliseconds
    /// (sub-second lag; heartbeats included).
    pub latency_last_ms: u64,
    /// Median of that latency (histogram bound).
    pub latency_p50_ms: u64,
    /// 99th percentile (histogram bound).
    pub latency_p99_ms: u64,
    /// Counters.
    pub counters: Counters,
    /// Errors by kind (retried, skipped and fatal).
    pub errors: BTreeMap<String, u64>,
    /// The last error.
    pub last_error: Option<ErrorStatus>,
    /// The last errors, newest last.
    pub recent_errors: Vec<ErrorStatus>,
    /// The last dead letters, newest last.
    pub recent_dead_letters: Vec<DeadLetterStatus>,
    /// Per-table counters, by table name.
    pub tables: Vec<TableStatus>,
}

/// An event sent to the dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterStatus {
    /// The table.
    pub table: String,
    /// The operation (`insert`, `update`, `delete`, `truncate`, `ddl`).
    pub op: String,
    /// The event's binlog position.
    pub position: String,
    /// Why.
    pub error: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A source server's binlog head and files, to measure lag in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHead {
    /// The server's current position.
    pub position: Position,
    /// Binlog files in order with their sizes.
    pub files: Vec<(String, u64)>,
}

impl SourceHead {
    /// Bytes of binlog after `applied` up to the head: the rest of the
    /// applied file and every later file. `None` when the applied file is
    /// not among the server's files (another server's history).
    pub fn bytes_behind(&self, applied: &BinlogPosition) -> Option<u64> {
        let i = self.files.iter().position(|(f, _)| f == &applied.file)?;
        let mut total = self.files[i].1.saturating_sub(applied.pos);
        for (_, size) in &self.files[i + 1..] {
            total += size;
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_behind_spans_files() {
        let head = SourceHead {
            position: Position::new(BinlogPosition::new("b.000003", 300)),
            files: vec![("b.000001".into(), 1000), ("b.000002".into(), 500), ("b.000003".into(), 300)],
        };
        assert_eq!(head.bytes_behind(&BinlogPosition::new("b.000003", 300)), Some(0));
        assert_eq!(head.bytes_behind(&BinlogPosition::new("b.000002", 100)), Some(700));
        assert_eq!(head.bytes_behind(&BinlogPosition::new("b.000001", 1000)), Some(800));
        assert_eq!(head.bytes_behind(&BinlogPosition::new("other.000001", 4)), None);
    }
}
