//! Pipeline statistics: counts per operation, batches, snapshot progress and
//! source-to-apply latency.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synchdb_types::{ChangeEvent, Position, TableId};

use crate::error::Error;
use crate::status::{
    AppliedStatus, Counters, DeadLetterStatus, ErrorStatus, Phase, PipelineStatus, SnapshotProgressStatus,
    SourceHead, SourceStatus, TableStatus,
};

/// How many recent errors and dead letters the status keeps.
const RECENT: usize = 20;

/// Live counters, shared between the pipeline's tasks and its handle. They
/// also feed the `metrics` facade (`synchdb_*` names, labelled by pipeline).
#[derive(Debug, Default)]
pub struct Stats {
    /// The pipeline id (the `pipeline` label of the metrics).
    id: String,
    started_at: Option<DateTime<Utc>>,
    batch_events_last: AtomicU64,
    phase: Mutex<Option<Phase>>,
    live: Mutex<Live>,
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

/// The parts of the status kept under one lock.
#[derive(Debug, Default)]
struct Live {
    tables: BTreeMap<TableId, TableStatus>,
    /// Per snapshot table: chunks durable and chunks planned.
    snapshot_tables: HashMap<TableId, (u64, u64)>,
    errors: BTreeMap<String, u64>,
    recent_errors: VecDeque<ErrorStatus>,
    recent_dead_letters: VecDeque<DeadLetterStatus>,
    dead_letters: u64,
    read: Option<Position>,
    applied_at: Option<DateTime<Utc>>,
    applied_source_time: Option<DateTime<Utc>>,
    head: Option<SourceHead>,
}

fn op_name(e: &ChangeEvent) -> &'static str {
    match e {
        ChangeEvent::Insert(_) => "insert",
        ChangeEvent::Update(_) => "update",
        ChangeEvent::Delete(_) => "delete",
        ChangeEvent::Truncate(_) => "truncate",
        _ => "ddl",
    }
}

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
    /// Counters for the pipeline `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Stats { id: id.into(), started_at: Some(Utc::now()), ..Default::default() }
    }

    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Count the events of an applied batch and its latency (now minus each
    /// transaction's source commit time).
    pub fn record_batch<'a>(&self, transactions: impl IntoIterator<Item = &'a synchdb_types::Transaction>) {
        let now = chrono::Utc::now();
        let mut events = 0u64;
        let mut txs = 0u64;
        let mut last_time = None;
        let mut per_table: HashMap<(&TableId, &'static str), u64> = HashMap::new();
        {
            let mut lat = self.latency.lock().expect("stats poisoned");
            for tx in transactions {
                if !tx.events.is_empty() {
                    // Empty ones are heartbeats: they move the position and measure lag.
                    txs += 1;
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
                    *per_table.entry((e.table_id(), op_name(e))).or_default() += 1;
                }
                let ms = (now - tx.commit_time).num_milliseconds().max(0) as u64;
                lat.record(ms);
                last_time = Some(tx.commit_time);
            }
        }
        self.transactions.fetch_add(txs, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_events_max.fetch_max(events, Ordering::Relaxed);
        self.batch_events_last.store(events, Ordering::Relaxed);
        {
            let mut live = self.live.lock().expect("stats poisoned");
            live.applied_at = Some(now);
            if last_time.is_some() {
                live.applied_source_time = last_time;
            }
            for ((table, op), n) in &per_table {
                let t = live
                    .tables
                    .entry((*table).clone())
                    .or_insert_with(|| TableStatus { table: table.to_string(), ..Default::default() });
                match *op {
                    "insert" => t.inserts += n,
                    "update" => t.updates += n,
                    "delete" => t.deletes += n,
                    "truncate" => t.truncates += n,
                    _ => t.ddl += n,
                }
                t.last_applied_at = Some(now);
            }
        }
        for ((table, op), n) in per_table {
            metrics::counter!("synchdb_changes_applied_total", "pipeline" => self.id.clone(),
                "table" => table.to_string(), "op" => op)
            .increment(n);
        }
        if txs > 0 {
            metrics::counter!("synchdb_transactions_applied_total", "pipeline" => self.id.clone())
                .increment(txs);
        }
        metrics::histogram!("synchdb_batch_events", "pipeline" => self.id.clone()).record(events as f64);
    }

    /// Count a durable snapshot or resync chunk of `source` (its plan's
    /// table) that wrote `rows` into `target` (the converted table).
    pub fn record_chunk_rows(&self, source: &TableId, target: &TableId, rows: u64) {
        self.record_snapshot_rows(rows);
        self.record_snapshot_chunk();
        let table = target;
        let mut live = self.live.lock().expect("stats poisoned");
        let t = live
            .tables
            .entry(table.clone())
            .or_insert_with(|| TableStatus { table: table.to_string(), ..Default::default() });
        t.snapshot_rows += rows;
        t.last_applied_at = Some(Utc::now());
        if let Some(done) = live.snapshot_tables.get_mut(source) {
            done.0 += 1;
        }
        drop(live);
        metrics::counter!("synchdb_snapshot_rows_total", "pipeline" => self.id.clone(), "table" => table.to_string())
            .increment(rows);
    }

    /// The snapshot's chunks per table (replaces an earlier plan).
    pub fn set_snapshot_plan<'a>(&self, chunks: impl IntoIterator<Item = &'a TableId>) {
        let mut live = self.live.lock().expect("stats poisoned");
        live.snapshot_tables.clear();
        for t in chunks {
            live.snapshot_tables.entry(t.clone()).or_default().1 += 1;
        }
    }

    /// Record an error: `recovered` when the pipeline goes on (retried,
    /// restarted or skipped), else it ends the pipeline.
    pub fn record_error(&self, e: &Error, recovered: bool) {
        let kind = e.kind().label();
        let mut live = self.live.lock().expect("stats poisoned");
        *live.errors.entry(kind.clone()).or_default() += 1;
        if live.recent_errors.len() == RECENT {
            live.recent_errors.pop_front();
        }
        live.recent_errors.push_back(ErrorStatus::of(e, recovered));
        drop(live);
        metrics::counter!("synchdb_errors_total", "pipeline" => self.id.clone(), "kind" => kind).increment(1);
    }

    /// Record an event sent to the dead letter by the `skip` policy.
    pub fn record_dead_letter(&self, event: &ChangeEvent, e: &Error) {
        self.record_skip();
        self.record_error(e, true);
        let mut live = self.live.lock().expect("stats poisoned");
        live.dead_letters += 1;
        if live.recent_dead_letters.len() == RECENT {
            live.recent_dead_letters.pop_front();
        }
        live.recent_dead_letters.push_back(DeadLetterStatus {
            table: event.table_id().to_string(),
            op: op_name(event).to_string(),
            position: event.meta().position.to_string(),
            error: e.to_string(),
            at: Utc::now(),
        });
        let t = live
            .tables
            .entry(event.table_id().clone())
            .or_insert_with(|| TableStatus { table: event.table_id().to_string(), ..Default::default() });
        t.dead_letters += 1;
        drop(live);
        metrics::counter!("synchdb_dead_letters_total", "pipeline" => self.id.clone()).increment(1);
    }

    /// Record what the pipeline has received from the source.
    pub fn set_read(&self, position: &Position) {
        self.live.lock().expect("stats poisoned").read = Some(position.clone());
    }

    /// Record the source server's head (for the lag in bytes).
    pub fn set_head(&self, head: SourceHead) {
        self.live.lock().expect("stats poisoned").head = Some(head);
    }

    /// Set the phase (the status shows `paused` over a following phase when paused).
    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().expect("stats poisoned") = Some(phase);
    }

    /// The phase last set.
    pub fn phase(&self) -> Phase {
        self.phase.lock().expect("stats poisoned").unwrap_or(Phase::Starting)
    }

    /// The whole status; `paused` tells whether the pipeline is paused.
    pub fn status(&self, paused: bool) -> PipelineStatus {
        let s = self.snapshot();
        let lat = self.latency.lock().expect("stats poisoned").clone();
        let live = self.live.lock().expect("stats poisoned");
        let mut phase = self.phase();
        if !s.resyncing.is_empty() && phase == Phase::Following {
            phase = Phase::Resyncing;
        }
        if paused
            && matches!(phase, Phase::Following | Phase::Resyncing | Phase::Snapshotting | Phase::Starting)
        {
            phase = Phase::Paused;
        }
        let applied = s.position.clone();
        let lag_bytes = match (&live.head, &applied) {
            (Some(h), Some(a)) => h.bytes_behind(&a.binlog),
            _ => None,
        };
        // Everything read is applied, and the source's head (when known) too.
        let caught_up = match (&live.read, &applied) {
            (Some(r), Some(a)) => r.binlog == a.binlog,
            (None, Some(_)) => true,
            _ => false,
        } && lag_bytes.is_none_or(|b| b == 0);
        let lag_seconds = live.applied_source_time.map(|t| {
            if caught_up {
                0.0
            } else {
                ((Utc::now() - t).num_milliseconds().max(0) as f64) / 1000.0
            }
        });
        let gtid = |p: &Option<Position>| p.as_ref().and_then(|p| p.gtid.as_ref()).map(ToString::to_string);
        let tables_done =
            live.snapshot_tables.values().filter(|(done, total)| *total > 0 && done >= total).count() as u64;
        PipelineStatus {
            pipeline: self.id.clone(),
            phase,
            paused,
            started_at: self.started_at.unwrap_or_else(Utc::now),
            snapshot: SnapshotProgressStatus {
                tables_total: s.snapshot_tables_total,
                tables_done,
                chunks_total: s.snapshot_chunks_total,
                chunks_done: s.snapshot_chunks_done,
                rows: s.snapshot_rows,
                rows_total: None,
            },
            resyncing: s.resyncing.iter().map(ToString::to_string).collect(),
            source: SourceStatus {
                position: live.read.as_ref().map(|p| p.binlog.to_string()),
                gtid: gtid(&live.read),
                head: live.head.as_ref().map(|h| h.position.binlog.to_string()),
            },
            applied: AppliedStatus {
                position: applied.as_ref().map(|p| p.binlog.to_string()),
                gtid: gtid(&applied),
                at: live.applied_at,
                source_time: live.applied_source_time,
            },
            lag_seconds,
            lag_bytes,
            latency_last_ms: lat.last_ms,
            latency_p50_ms: lat.percentile(0.50),
            latency_p99_ms: lat.percentile(0.99),
            counters: Counters {
                inserts: s.inserts,
                updates: s.updates,
                deletes: s.deletes,
                truncates: s.truncates,
                ddl: s.ddl,
                transactions: s.transactions,
                batches: s.batches,
                batch_events_avg: s.batch_events_avg,
                batch_events_max: s.batch_events_max,
                batch_events_last: self.batch_events_last.load(Ordering::Relaxed),
                snapshot_rows: s.snapshot_rows,
                retries: s.retries,
                restarts: s.restarts,
                dead_letters: live.dead_letters,
                resyncs: s.resyncs,
            },
            errors: live.errors.clone(),
            last_error: live.recent_errors.back().cloned(),
            recent_errors: live.recent_errors.iter().cloned().collect(),
            recent_dead_letters: live.recent_dead_letters.iter().cloned().collect(),
            tables: live.tables.values().cloned().collect(),
        }
    }

    /// Set the gauges of the `metrics` facade from `status`.
    pub fn publish_gauges(&self, status: &PipelineStatus) {
        let up = !matches!(status.phase, Phase::Stopped | Phase::Failed);
        metrics::gauge!("synchdb_pipeline_up", "pipeline" => self.id.clone()).set(if up { 1.0 } else { 0.0 });
        if let Some(l) = status.lag_seconds {
            metrics::gauge!("synchdb_lag_seconds", "pipeline" => self.id.clone()).set(l);
        }
        if let Some(b) = status.lag_bytes {
            metrics::gauge!("synchdb_lag_bytes", "pipeline" => self.id.clone()).set(b as f64);
        }
        metrics::gauge!("synchdb_latency_seconds", "pipeline" => self.id.clone())
            .set(status.latency_last_ms as f64 / 1000.0);
        metrics::gauge!("synchdb_snapshot_chunks_done", "pipeline" => self.id.clone())
            .set(status.snapshot.chunks_done as f64);
        metrics::gauge!("synchdb_snapshot_chunks_total", "pipeline" => self.id.clone())
            .set(status.snapshot.chunks_total as f64);
        metrics::gauge!("synchdb_paused", "pipeline" => self.id.clone()).set(if status.paused {
            1.0
        } else {
            0.0
        });
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
        metrics::counter!("synchdb_restarts_total", "pipeline" => self.id.clone()).increment(1);
    }

    /// Count an event skipped by the error policy.
    pub fn record_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a retry.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("synchdb_retries_total", "pipeline" => self.id.clone()).increment(1);
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

/// A copy of the pipeline's counters at one moment (non-exhaustive: more
/// counters may come).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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
