//! Pipeline statistics: counts per operation, batches, snapshot progress and
//! source-to-apply latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synchdb_types::{ChangeEvent, Position};

/// Live counters, shared between the pipeline's tasks and its handle.
#[derive(Debug, Default)]
pub struct Stats {
    inserts: AtomicU64,
    updates: AtomicU64,
    deletes: AtomicU64,
    truncates: AtomicU64,
    ddl: AtomicU64,
    transactions: AtomicU64,
    batches: AtomicU64,
    batch_events_max: AtomicU64,
    snapshot_rows: AtomicU64,
    snapshot_chunks: AtomicU64,
    snapshot_tables_total: AtomicU64,
    snapshot_chunks_total: AtomicU64,
    skipped: AtomicU64,
    retries: AtomicU64,
    latency: Mutex<LatencyHistogram>,
    position: Mutex<Option<Position>>,
    resyncing: Mutex<Vec<synchdb_types::TableId>>,
    resyncs: AtomicU64,
    restarts: AtomicU64,
}

/// Latency buckets in milliseconds (upper bounds); the last bucket is open.
const BUCKETS_MS: [u64; 16] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, u64::MAX];

#[derive(Debug, Default, Clone)]
struct LatencyHistogram {
    counts: [u64; 16],
    total: u64,
    sum_ms: u64,
    max_ms: u64,
    last_ms: u64,
}

impl LatencyHistogram {
    fn record(&mut self, ms: u64) {
        let i = BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(BUCKETS_MS.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.sum_ms += ms;
        self.max_ms = self.max_ms.max(ms);
        self.last_ms = ms;
    }

    fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return BUCKETS_MS[i].min(self.max_ms);
            }
        }
        self.max_ms
    }
}

impl Stats {
    /// Count the events of an applied batch and its latency (now minus each
    /// transaction's source commit time).
    pub fn record_batch<'a>(&self, transactions: impl IntoIterator<Item = &'a synchdb_types::Transaction>) {
        let now = chrono::Utc::now();
        let mut events = 0u64;
        let mut lat = self.latency.lock().expect("stats poisoned");
        for tx in transactions {
            if !tx.events.is_empty() {
                // Empty ones are heartbeats: they move the position and measure lag.
                self.transactions.fetch_add(1, Ordering::Relaxed);
            }
            for e in &tx.events {
                events += 1;
                let counter = match e {
                    ChangeEvent::Insert(_) => &self.inserts,
                    ChangeEvent::Update(_) => &self.updates,
                    ChangeEvent::Delete(_) => &self.deletes,
                    ChangeEvent::Truncate(_) => &self.truncates,
                    _ => &self.ddl,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let ms = (now - tx.commit_time).num_milliseconds().max(0) as u64;
            lat.record(ms);
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_events_max.fetch_max(events, Ordering::Relaxed);
    }

    /// Count snapshot rows written.
    pub fn record_snapshot_rows(&self, rows: u64) {
        self.snapshot_rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// Count a snapshot chunk made durable.
    pub fn record_snapshot_chunk(&self) {
        self.snapshot_chunks.fetch_add(1, Ordering::Relaxed);
    }

    /// Set the snapshot's size.
    pub fn set_snapshot_totals(&self, tables: u64, chunks: u64) {
        self.snapshot_tables_total.store(tables, Ordering::Relaxed);
        self.snapshot_chunks_total.store(chunks, Ordering::Relaxed);
    }

    /// The tables being copied again by a resync (empty: none).
    pub fn set_resync(&self, tables: Vec<synchdb_types::TableId>) {
        if !tables.is_empty() {
            self.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        *self.resyncing.lock().expect("stats poisoned") = tables;
    }

    /// Count a restart after a transient failure.
    pub fn record_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an event skipped by the error policy.
    pub fn record_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a retry.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Record the last durable position.
    pub fn set_position(&self, position: Position) {
        *self.position.lock().expect("stats poisoned") = Some(position);
    }

    /// A consistent copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let lat = self.latency.lock().expect("stats poisoned").clone();
        let batches = self.batches.load(Ordering::Relaxed);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let events = load(&self.inserts)
            + load(&self.updates)
            + load(&self.deletes)
            + load(&self.truncates)
            + load(&self.ddl);
        StatsSnapshot {
            inserts: load(&self.inserts),
            updates: load(&self.updates),
            deletes: load(&self.deletes),
            truncates: load(&self.truncates),
            ddl: load(&self.ddl),
            transactions: load(&self.transactions),
            batches,
            batch_events_avg: if batches == 0 { 0.0 } else { events as f64 / batches as f64 },
            batch_events_max: load(&self.batch_events_max),
            snapshot_rows: load(&self.snapshot_rows),
            snapshot_chunks_done: load(&self.snapshot_chunks),
            snapshot_chunks_total: load(&self.snapshot_chunks_total),
            snapshot_tables_total: load(&self.snapshot_tables_total),
            skipped: load(&self.skipped),
            retries: load(&self.retries),
            latency_last: Duration::from_millis(lat.last_ms),
            latency_avg: Duration::from_millis(lat.sum_ms.checked_div(lat.total).unwrap_or(0)),
            latency_p50: Duration::from_millis(lat.percentile(0.50)),
            latency_p99: Duration::from_millis(lat.percentile(0.99)),
            latency_max: Duration::from_millis(lat.max_ms),
            position: self.position.lock().expect("stats poisoned").clone(),
            resyncing: self.resyncing.lock().expect("stats poisoned").clone(),
            resyncs: load(&self.resyncs),
            restarts: load(&self.restarts),
        }
    }
}

/// A copy of the pipeline's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
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
    /// Rows written by the snapshot.
    pub snapshot_rows: u64,
    /// Snapshot chunks durable.
    pub snapshot_chunks_done: u64,
    /// Snapshot chunks in the plan.
    pub snapshot_chunks_total: u64,
    /// Tables in the snapshot.
    pub snapshot_tables_total: u64,
    /// Events skipped by the error policy.
    pub skipped: u64,
    /// Retries made by the error policy.
    pub retries: u64,
    /// Source commit to sink apply, last transaction.
    pub latency_last: Duration,
    /// Mean latency.
    pub latency_avg: Duration,
    /// Median latency (histogram bucket bound).
    pub latency_p50: Duration,
    /// 99th percentile latency (histogram bucket bound).
    pub latency_p99: Duration,
    /// Largest latency.
    pub latency_max: Duration,
    /// Last durable position.
    pub position: Option<Position>,
    /// Tables being copied again by a resync right now.
    pub resyncing: Vec<synchdb_types::TableId>,
    /// Resyncs started.
    pub resyncs: u64,
    /// Restarts after transient failures.
    pub restarts: u64,
}

impl StatsSnapshot {
    /// All row changes applied (inserts, updates, deletes).
    pub fn row_changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

impl std::fmt::Display for StatsSnapshot {
    /// A one-line summary.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot_rows={} inserts={} updates={} deletes={} truncates={} ddl={} transactions={} batches={} \
             avg_batch={:.1} skipped={} lag_p50={}ms lag_p99={}ms lag_max={}ms",
            self.snapshot_rows,
            self.inserts,
            self.updates,
            self.deletes,
            self.truncates,
            self.ddl,
            self.transactions,
            self.batches,
            self.batch_events_avg,
            self.skipped,
            self.latency_p50.as_millis(),
            self.latency_p99.as_millis(),
            self.latency_max.as_millis(),
        )?;
        if let Some(p) = &self.position {
            write!(f, " position={p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_buckets() {
        let mut h = LatencyHistogram::default();
        for ms in [1, 1, 1, 3, 40, 700] {
            h.record(ms);
        }
        assert_eq!(h.percentile(0.5), 1);
        assert_eq!(h.percentile(0.99), 700);
        assert_eq!(h.max_ms, 700);
    }
}
