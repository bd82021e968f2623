//! Verification of a replica: is the target still exactly the source, seen
//! through the pipeline's converters (renames, type overrides, masks,
//! transforms, row filters)?
//!
//! Database-agnostic: a [`VerifySource`] reads the selected tables at one
//! consistent source position, chunk by chunk (the snapshot's chunk planner
//! and row decoder), and a [`VerifyTarget`] compares each chunk's mapped
//! rows with the rows the target holds. [`verify`] drives them:
//!
//! 1. A chunk read at source position `P` is compared only once the
//!    target's applied position (its checkpoint, read in the same snapshot
//!    as the target rows) has reached `P`, so a lagging replica is not a
//!    difference.
//! 2. The replica keeps following while it is verified, so a row changed
//!    between `P` and the target's position shows as a difference: a chunk
//!    that differs is read again at a later position (`rechecks` times) and
//!    only differences found in every round are reported. A source writing
//!    continuously gives no false alarm on a correct replica.
//! 3. Tables without a key compare as multisets (a duplicate row more or
//!    less is a difference); tables whose key order the target cannot
//!    reproduce (strings under a collation) are compared whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use synchdb_types::{Position, TableId, TableSchema};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};

use crate::converter::Converter;
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::{convert_chain, convert_rows, tokio_stream_from};
use crate::sink::RowStream;
use crate::source::{RowReceiver, SourceContext, SourceMessage};
use crate::state::ChunkInfo;

/// What to read for one verification round.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    /// The source tables to read (every selected table when empty).
    pub tables: Vec<TableId>,
    /// Tables read as one chunk (the target cannot select their key ranges).
    pub whole: Vec<TableId>,
    /// Only these chunks (bounds as planned in an earlier round), for a re-check.
    pub chunks: Option<Vec<ChunkInfo>>,
    /// Rows per chunk (`None`: the source's own setting).
    pub chunk_rows: Option<u64>,
}

/// The source side of a verification.
#[async_trait]
pub trait VerifySource: Send + Sync {
    /// The schemas of the selected tables now.
    async fn verify_tables(&self) -> Result<Vec<TableSchema>>;

    /// Read the requested tables at one consistent position: send
    /// [`SourceMessage::ResyncStarted`] (tables and position), one
    /// [`SourceMessage::SnapshotChunk`] per chunk, then
    /// [`SourceMessage::ResyncFinished`], and return.
    async fn verify_read(&self, ctx: SourceContext, request: ReadRequest) -> Result<()>;
}

/// One chunk's comparison as the target saw it.
#[derive(Debug, Clone, Default)]
pub struct ChunkComparison {
    /// The target's applied position, read in the same snapshot as its rows.
    pub applied: Option<Position>,
    /// Rows of the chunk on the source (after the converters).
    pub source_rows: u64,
    /// Rows of the chunk on the target.
    pub target_rows: u64,
    /// Rows only the source side has (each column as the target prints it), at most the limit.
    pub only_source: Vec<Vec<Option<String>>>,
    /// Rows only the target has, at most the limit.
    pub only_target: Vec<Vec<Option<String>>>,
    /// Number of rows only the source has (all of them).
    pub only_source_count: u64,
    /// Number of rows only the target has.
    pub only_target_count: u64,
}

impl ChunkComparison {
    /// Whether the chunk is equal on both sides.
    pub fn is_equal(&self) -> bool {
        self.only_source_count == 0 && self.only_target_count == 0
    }
}

/// The target side of a verification.
#[async_trait]
pub trait VerifyTarget: Send + Sync {
    /// The position the target has applied for `pipeline` (its checkpoint).
    async fn applied_position(&self, pipeline: &str) -> Result<Option<Position>>;

    /// Whether the source's chunk bounds (key values in the source's order)
    /// select exactly the same rows of this (target) table on the target.
    fn can_compare_ranges(&self, table: &TableSchema) -> Result<bool>;

    /// Compare the target's rows of `chunk` (its key range when `ranged`,
    /// else the whole table) with `rows`, the source rows after the
    /// converters, reading the target and its applied position in one
    /// snapshot. At most `limit` differing rows per side are returned.
    async fn compare_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        ranged: bool,
        rows: RowStream<'_>,
        limit: usize,
    ) -> Result<ChunkComparison>;

    /// Repair: hold the pipeline's checkpoint (so no batch commits
    /// meanwhile), say so on `locked`, then replace each received chunk's
    /// rows on the target with the given ones, and commit. Returns the rows
    /// written. Only for keyed tables: the pipeline then applies the
    /// changes after its checkpoint again, idempotently by key.
    async fn repair(
        &self,
        pipeline: &str,
        locked: tokio::sync::oneshot::Sender<()>,
        chunks: mpsc::Receiver<RepairChunk>,
    ) -> Result<u64>;
}

/// One chunk to write again on the target ([`VerifyTarget::repair`]).
pub struct RepairChunk {
    /// The target table's schema.
    pub table: Arc<TableSchema>,
    /// The chunk (its key range, or the whole table when not `ranged`).
    pub chunk: ChunkInfo,
    /// Whether the chunk's range selects its rows on the target.
    pub ranged: bool,
    /// The source rows after the converters.
    pub rows: RowStream<'static>,
}

/// Options of [`verify`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Source tables to check (every selected table when empty).
    pub tables: Vec<TableId>,
    /// Rows per chunk (`None`: the source's snapshot setting).
    pub chunk_rows: Option<u64>,
    /// Chunks compared at once.
    pub parallelism: usize,
    /// At most this many source rows per second (`None`: no limit).
    pub rows_per_second: Option<u64>,
    /// How many times a differing chunk is read again before its
    /// differences are reported.
    pub rechecks: u32,
    /// Wait before a re-check (the replica applies what it was behind on).
    pub recheck_delay: Duration,
    /// How long to wait for the target to reach a chunk's read position.
    pub catch_up_timeout: Duration,
    /// Differing rows reported per table.
    pub max_reported: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            tables: Vec::new(),
            chunk_rows: None,
            parallelism: 2,
            rows_per_second: None,
            rechecks: 3,
            recheck_delay: Duration::from_secs(1),
            catch_up_timeout: Duration::from_secs(300),
            max_reported: 10,
        }
    }
}

/// How a table compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Every row equal.
    Equal,
    /// Some rows differ (persistently, over every re-check).
    Differs,
    /// The target table does not exist.
    Missing,
}

impl fmt::Display for TableStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableStatus::Equal => "equal",
            TableStatus::Differs => "differs",
            TableStatus::Missing => "missing",
        })
    }
}

/// What differs in one row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// The source has the row, the target does not.
    MissingOnTarget,
    /// The target has a row the source does not.
    ExtraOnTarget,
    /// Both have the key, with other values.
    Changed,
}

/// One differing row: its key (target column names and values) and the
/// columns whose values differ (source value vs target value, as the target
/// prints them; `None` is NULL). A keyless table's row has no key and all
/// its columns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowDifference {
    /// What differs.
    pub kind: DifferenceKind,
    /// Key columns and values.
    pub key: Vec<(String, Option<String>)>,
    /// `(column, source value, target value)`.
    pub columns: Vec<(String, Option<String>, Option<String>)>,
}

/// The verification of one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    /// The source table.
    pub source: TableId,
    /// The target table (after renames).
    pub target: TableId,
    /// Equal, differs or missing.
    pub status: TableStatus,
    /// Rows on the source (after filters), as of the first round.
    pub source_rows: u64,
    /// Rows on the target, as of the first round.
    pub target_rows: u64,
    /// Chunks compared in the first round.
    pub chunks: u32,
    /// Differing rows that persisted (missing + extra + changed).
    pub differences: u64,
    /// The first differing rows.
    pub samples: Vec<RowDifference>,
    /// Why the table is missing or could not be compared, if so.
    pub note: Option<String>,
    /// The chunks whose differences persisted (for [`repair`]).
    pub differing_chunks: Vec<ChunkInfo>,
    /// Whether the table has a key (only keyed tables can be repaired while
    /// the pipeline runs).
    pub keyed: bool,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Per table, in name order.
    pub tables: Vec<TableReport>,
    /// Rounds run (1 + re-checks that were needed).
    pub rounds: u32,
    /// Source rows read over all rounds.
    pub rows_read: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Whether every table is equal.
    pub fn all_equal(&self) -> bool {
        self.tables.iter().all(|t| t.status == TableStatus::Equal)
    }

    /// The tables that are not equal.
    pub fn differing(&self) -> impl Iterator<Item = &TableReport> {
        self.tables.iter().filter(|t| t.status != TableStatus::Equal)
    }
}

fn show(v: &Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(s) if s.chars().count() > 60 => format!("{:?}...", s.chars().take(60).collect::<String>()),
        Some(s) => format!("{s:?}"),
    }
}

impl fmt::Display for VerifyReport {
    /// One line per table, its first differing rows, and a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            write!(
                f,
                "{}: {} ({} source rows, {} target rows, {} chunks",
                t.source, t.status, t.source_rows, t.target_rows, t.chunks
            )?;
            if t.target != t.source {
                write!(f, "; target {}", t.target)?;
            }
            if t.differences > 0 {
                write!(f, "; {} differing rows", t.differences)?;
            }
            writeln!(f, ")")?;
            if let Some(n) = &t.note {
                writeln!(f, "  {n}")?;
            }
            for d in &t.samples {
                let key: Vec<String> = d.key.iter().map(|(c, v)| format!("{c}={}", show(v))).collect();
                let what = match d.kind {
                    DifferenceKind::MissingOnTarget => "missing on target",
                    DifferenceKind::ExtraOnTarget => "extra on target",
                    DifferenceKind::Changed => "changed",
                };
                let key = if key.is_empty() { "row".to_string() } else { format!("key {}", key.join(", ")) };
                let cols: Vec<String> = d
                    .columns
                    .iter()
                    .map(|(c, s, t)| format!("{c}: source {} target {}", show(s), show(t)))
                    .collect();
                writeln!(f, "  {key}: {what}: {}", cols.join("; "))?;
            }
        }
        let differ = self.differing().count();
        write!(
            f,
            "verify: {} tables, {} equal, {} differ; {} rows read in {} round(s), {:.1}s",
            self.tables.len(),
            self.tables.len() - differ,
            differ,
            self.rows_read,
            self.rounds,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Column values as the target prints them (`None`: NULL).
type Texts = Vec<Option<String>>;

/// A differing row as found in one round: side and column texts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Found {
    target_side: bool,
    values: Vec<Option<String>>,
}

/// One table's target schema and conversion chain.
struct Plan {
    chain: Vec<Arc<TableSchema>>,
    ranged: bool,
}

/// What one round found per table.
#[derive(Default)]
struct TableRound {
    source_rows: u64,
    target_rows: u64,
    chunks: u32,
    missing: Option<String>,
    /// Per chunk index: its bounds and the differing rows found.
    differing: BTreeMap<u32, (ChunkInfo, BTreeSet<Found>, u64)>,
}

/// Verify the pipeline `pipeline`'s tables: see the module documentation.
pub async fn verify(
    source: &dyn VerifySource,
    target: Arc<dyn VerifyTarget>,
    converters: &[Arc<dyn Converter>],
    pipeline: &str,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let discovered = source.verify_tables().await?;
    let mut whole = Vec::new();
    let mut selected = Vec::new();
    for t in discovered {
        if !options.tables.is_empty() && !options.tables.contains(&t.id) {
            continue;
        }
        let t = Arc::new(t);
        let Some(chain) = convert_chain(converters, &t)? else { continue };
        let last = chain.last().expect("non-empty");
        if last.identity_columns().is_empty() || !target.can_compare_ranges(last)? {
            whole.push(t.id.clone());
        }
        selected.push(t.id.clone());
    }
    for t in &options.tables {
        if !selected.contains(t) {
            return Err(Error::config(format!("verify: table {t} is not a replicated table of the source")));
        }
    }
    let mut report = VerifyReport::default();
    if selected.is_empty() {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let mut request = ReadRequest { tables: selected, whole, chunks: None, chunk_rows: options.chunk_rows };
    let mut first: Option<BTreeMap<TableId, (TableRound, TableId)>> = None;
    // Per (table, chunk): the differing rows found in every round so far, and
    // the last round's count of them.
    let mut persisting: BTreeMap<(TableId, u32), (BTreeSet<Found>, u64, ChunkInfo)> = BTreeMap::new();
    let mut key_names: HashMap<TableId, (Vec<usize>, Vec<String>)> = HashMap::new();
    for round in 0..=options.rechecks {
        if round > 0 {
            tokio::time::sleep(options.recheck_delay).await;
            info!(
                round,
                chunks = request.chunks.as_ref().map_or(0, Vec::len),
                "verify: re-checking differing chunks"
            );
        }
        report.rounds = round + 1;
        let (results, rows) =
            run_round(source, target.clone(), converters, pipeline, options, request.clone(), &mut key_names)
                .await?;
        report.rows_read += rows;
        let mut again = Vec::new();
        let mut next = BTreeMap::new();
        for (id, (r, _)) in &results {
            for (index, (chunk, found, n)) in &r.differing {
                let kept: BTreeSet<Found> = if round == 0 {
                    found.clone()
                } else {
                    match persisting.get(&(id.clone(), *index)) {
                        Some((before, _, _)) => found.intersection(before).cloned().collect(),
                        None => continue,
                    }
                };
                if kept.is_empty() {
                    continue; // other rows each time: changes in flight, not a difference
                }
                next.insert((id.clone(), *index), (kept, *n, chunk.clone()));
                again.push(chunk.clone());
            }
        }
        persisting = next;
        if first.is_none() {
            first = Some(results);
        }
        if again.is_empty() || round == options.rechecks {
            break;
        }
        request.chunks = Some(again);
    }
    for (id, (r, target_id)) in first.unwrap_or_default() {
        let mut t = TableReport {
            source: id.clone(),
            target: target_id,
            status: TableStatus::Equal,
            source_rows: r.source_rows,
            target_rows: r.target_rows,
            chunks: r.chunks,
            differences: 0,
            samples: Vec::new(),
            note: None,
            differing_chunks: Vec::new(),
            keyed: key_names.get(&id).is_some_and(|(k, _)| !k.is_empty()),
        };
        if let Some(m) = r.missing {
            t.status = TableStatus::Missing;
            t.note = Some(m);
        } else {
            let mut found = Vec::new();
            let mut counted = 0u64;
            for ((_, _), (kept, n, chunk)) in persisting.range((id.clone(), 0)..=(id.clone(), u32::MAX)) {
                t.differing_chunks.push(chunk.clone());
                counted += n;
                found.extend(kept.iter().cloned());
            }
            if !found.is_empty() {
                t.status = TableStatus::Differs;
                let (keys, names) = key_names.get(&id).cloned().unwrap_or_default();
                let (paired, samples) = pair_rows(found, &keys, &names, options.max_reported);
                t.differences = counted.max(paired);
                t.samples = samples;
            }
        }
        report.tables.push(t);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Repair the differing chunks of the keyed tables of `report` while the
/// pipeline may keep running: the target's checkpoint is held (the pipeline
/// waits), the chunks are read from the source at a position at or after it
/// and written over the target's, and the pipeline then applies the changes
/// after its checkpoint again, which by key converges to the source (as a
/// resumed snapshot does). Keyless tables are not repaired (their changes
/// would apply twice). Returns the tables repaired and the rows written.
pub async fn repair(
    source: &dyn VerifySource,
    target: Arc<dyn VerifyTarget>,
    converters: &[Arc<dyn Converter>],
    pipeline: &str,
    report: &VerifyReport,
) -> Result<(Vec<TableId>, u64)> {
    let chunks: Vec<ChunkInfo> = report
        .differing()
        .filter(|t| t.keyed && t.status == TableStatus::Differs)
        .flat_map(|t| t.differing_chunks.iter().cloned())
        .collect();
    if chunks.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut tables: Vec<TableId> = chunks.iter().map(|c| c.table.clone()).collect();
    tables.dedup();
    let whole: Vec<TableId> =
        chunks.iter().filter(|c| c.lower.is_none() && c.upper.is_none()).map(|c| c.table.clone()).collect();
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (chunk_tx, chunk_rx) = mpsc::channel::<RepairChunk>(1);
    let writer = {
        let target = target.clone();
        let pipeline = pipeline.to_string();
        tokio::spawn(async move { target.repair(&pipeline, locked_tx, chunk_rx).await })
    };
    if locked_rx.await.is_err() {
        return Err(writer
            .await
            .map_err(|e| Error::internal(format!("repair task failed: {e}")))?
            .err()
            .unwrap_or_else(|| Error::internal("repair stopped")));
    }
    let (tx, mut rx) = mpsc::channel(16);
    let (_stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        pipeline_id: pipeline.to_string(),
        state: None,
        sender: tx,
        shutdown,
        commands: Default::default(),
        applied: watch::channel(None).1,
    };
    let request = ReadRequest { tables: tables.clone(), whole, chunks: Some(chunks), chunk_rows: None };
    let reader = source.verify_read(ctx, request);
    let consume = async {
        let mut plans: HashMap<TableId, Vec<Arc<TableSchema>>> = HashMap::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                SourceMessage::ResyncStarted { tables, .. } => {
                    for t in tables {
                        if let Some(chain) = convert_chain(converters, &t)? {
                            plans.insert(t.id.clone(), chain);
                        }
                    }
                }
                SourceMessage::SnapshotChunk { chunk, table, rows, .. } => {
                    let Some(chain) = plans.get(&table.id).cloned() else {
                        drain(rows).await?;
                        continue;
                    };
                    let last = chain.last().expect("non-empty").clone();
                    let ranged = chunk.lower.is_some() || chunk.upper.is_some();
                    let converters = converters.to_vec();
                    let stream: RowStream<'static> = tokio_stream_from(rows)
                        .map(move |batch| convert_rows(&converters, &chain, batch?))
                        .boxed();
                    if chunk_tx.send(RepairChunk { table: last, chunk, ranged, rows: stream }).await.is_err()
                    {
                        break; // the writer failed: its error is returned below
                    }
                }
                SourceMessage::ResyncFinished { .. } => break,
                _ => {}
            }
        }
        drop(chunk_tx);
        Ok::<(), Error>(())
    };
    let (read, consumed) = tokio::join!(reader, consume);
    let written = writer.await.map_err(|e| Error::internal(format!("repair task failed: {e}")))?;
    let written = written?;
    read?;
    consumed?;
    info!(tables = tables.len(), rows = written, "repair: differing chunks written again");
    Ok((tables, written))
}

/// Pair the rows only one side has by key into differences: returns the
/// number of differing rows (a changed row counts once) and the first `max`.
fn pair_rows(found: Vec<Found>, keys: &[usize], names: &[String], max: usize) -> (u64, Vec<RowDifference>) {
    let key_of =
        |v: &[Option<String>]| -> Vec<Option<String>> { keys.iter().map(|&i| v[i].clone()).collect() };
    let mut by_key: BTreeMap<Texts, (Option<Texts>, Option<Texts>)> = BTreeMap::new();
    let mut keyless = Vec::new();
    for f in found {
        if keys.is_empty() {
            keyless.push(f);
            continue;
        }
        let e = by_key.entry(key_of(&f.values)).or_default();
        if f.target_side {
            e.1 = Some(f.values);
        } else {
            e.0 = Some(f.values);
        }
    }
    let mut out = Vec::new();
    let mut count = 0u64;
    for (key, (s, t)) in by_key {
        count += 1;
        if out.len() >= max {
            continue;
        }
        let key: Vec<(String, Option<String>)> =
            keys.iter().zip(key).map(|(&i, v)| (names.get(i).cloned().unwrap_or_default(), v)).collect();
        let (kind, columns) = match (s, t) {
            (Some(s), Some(t)) => (
                DifferenceKind::Changed,
                s.into_iter()
                    .zip(t)
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(i, (a, b))| (names.get(i).cloned().unwrap_or_default(), a, b))
                    .collect(),
            ),
            (Some(s), None) => (
                DifferenceKind::MissingOnTarget,
                s.into_iter()
                    .enumerate()
                    .map(|(i, a)| (names.get(i).cloned().unwrap_or_default(), a, None))
                    .collect(),
            ),
            (None, Some(t)) => (
                DifferenceKind::ExtraOnTarget,
                t.into_iter()
                    .enumerate()
                    .map(|(i, b)| (names.get(i).cloned().unwrap_or_default(), None, b))
                    .collect(),
            ),
            (None, None) => continue,
        };
        out.push(RowDifference { kind, key, columns });
    }
    for f in keyless {
        count += 1;
        if out.len() >= max {
            continue;
        }
        let (kind, columns) = if f.target_side {
            (
                DifferenceKind::ExtraOnTarget,
                f.values
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| (names.get(i).cloned().unwrap_or_default(), None, b))
                    .collect(),
            )
        } else {
            (
                DifferenceKind::MissingOnTarget,
                f.values
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| (names.get(i).cloned().unwrap_or_default(), a, None))
                    .collect(),
            )
        };
        out.push(RowDifference { kind, key: Vec::new(), columns });
    }
    (count, out)
}

/// One round: read the requested chunks and compare each as the target
/// reaches its read position. Returns per table its round and target id, and
/// the source rows read.
async fn run_round(
    source: &dyn VerifySource,
    target: Arc<dyn VerifyTarget>,
    converters: &[Arc<dyn Converter>],
    pipeline: &str,
    options: &VerifyOptions,
    request: ReadRequest,
    key_names: &mut HashMap<TableId, (Vec<usize>, Vec<String>)>,
) -> Result<(BTreeMap<TableId, (TableRound, TableId)>, u64)> {
    let (tx, mut rx) = mpsc::channel(16);
    let (_stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        pipeline_id: pipeline.to_string(),
        state: None,
        sender: tx,
        shutdown,
        commands: Default::default(),
        applied: watch::channel(None).1,
    };
    let whole = request.whole.clone();
    let reader = source.verify_read(ctx, request);
    let limit = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let rate = options.rows_per_second.map(|r| Arc::new(RateLimit::new(r)));
    let mut plans: HashMap<TableId, Arc<Plan>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut results: BTreeMap<TableId, (TableRound, TableId)> = BTreeMap::new();
    let rows_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let consume = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                SourceMessage::ResyncStarted { tables, position, .. } => {
                    debug!(%position, tables = tables.len(), "verify: source read position");
                    for t in tables {
                        let Some(chain) = convert_chain(converters, &t)? else { continue };
                        let last = chain.last().expect("non-empty").clone();
                        key_names.insert(
                            t.id.clone(),
                            (last.identity_columns(), last.columns.iter().map(|c| c.name.clone()).collect()),
                        );
                        results
                            .entry(t.id.clone())
                            .or_insert_with(|| (TableRound::default(), last.id.clone()));
                        let ranged = !whole.contains(&t.id);
                        plans.insert(t.id.clone(), Arc::new(Plan { chain, ranged }));
                    }
                }
                SourceMessage::SnapshotChunk { chunk, table, read_at, rows } => {
                    let Some(plan) = plans.get(&table.id).cloned() else {
                        drain(rows).await?;
                        continue;
                    };
                    let permit = limit
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| Error::internal("semaphore closed"))?;
                    let target = target.clone();
                    let converters = converters.to_vec();
                    let pipeline = pipeline.to_string();
                    let options = options.clone();
                    let rate = rate.clone();
                    let rows_read = rows_read.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        let r = compare_one(
                            &*target,
                            &converters,
                            &plan,
                            &pipeline,
                            &options,
                            &chunk,
                            &read_at,
                            rows,
                            rate,
                            &rows_read,
                        )
                        .await;
                        (table.id.clone(), chunk, r)
                    });
                }
                SourceMessage::ResyncFinished { .. } => break,
                _ => {}
            }
            while let Some(done) = tasks.try_join_next() {
                record(&mut results, done.map_err(|e| Error::internal(format!("verify task failed: {e}")))?)?;
            }
        }
        Ok::<(), Error>(())
    };
    let (read, consumed) = tokio::join!(reader, consume);
    read?;
    consumed?;
    while let Some(done) = tasks.join_next().await {
        record(&mut results, done.map_err(|e| Error::internal(format!("verify task failed: {e}")))?)?;
    }
    Ok((results, rows_read.load(std::sync::atomic::Ordering::Relaxed)))
}

fn record(
    results: &mut BTreeMap<TableId, (TableRound, TableId)>,
    (table, chunk, r): (TableId, ChunkInfo, Result<ChunkComparison>),
) -> Result<()> {
    let Some((round, _)) = results.get_mut(&table) else { return Ok(()) };
    round.chunks += 1;
    let c = match r {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::SinkSchema && e.to_string().contains("does not exist") => {
            round.missing = Some(e.to_string());
            return Ok(());
        }
        Err(e) => return Err(e.with_table(table)),
    };
    round.source_rows += c.source_rows;
    round.target_rows += c.target_rows;
    if !c.is_equal() {
        let mut found = BTreeSet::new();
        found.extend(c.only_source.into_iter().map(|values| Found { target_side: false, values }));
        found.extend(c.only_target.into_iter().map(|values| Found { target_side: true, values }));
        // A changed row is one row on each side.
        let n = c.only_source_count.max(c.only_target_count);
        round.differing.insert(chunk.index, (chunk, found, n));
    }
    Ok(())
}

async fn drain(mut rows: RowReceiver) -> Result<()> {
    while let Some(r) = rows.recv().await {
        r?;
    }
    Ok(())
}

/// Wait until the target has applied `read_at`, then compare the chunk.
#[allow(clippy::too_many_arguments)]
async fn compare_one(
    target: &dyn VerifyTarget,
    converters: &[Arc<dyn Converter>],
    plan: &Plan,
    pipeline: &str,
    options: &VerifyOptions,
    chunk: &ChunkInfo,
    read_at: &Position,
    rows: RowReceiver,
    rate: Option<Arc<RateLimit>>,
    rows_read: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<ChunkComparison> {
    let last = plan.chain.last().expect("non-empty").clone();
    let reached = |applied: &Option<Position>| applied.as_ref().is_some_and(|a| !read_at.is_after(a));
    let deadline = Instant::now() + options.catch_up_timeout;
    let mut said = false;
    loop {
        let applied = target.applied_position(pipeline).await?;
        if reached(&applied) {
            break;
        }
        if applied.is_none() {
            return Err(Error::config(format!(
                "verify: pipeline {pipeline:?} has no checkpoint on the target: nothing was replicated with this id"
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Checkpoint,
                format!(
                    "verify: the target has not applied the source position {read_at} within {:?} (applied: {}); \
                     is the pipeline running?",
                    options.catch_up_timeout,
                    applied.map(|p| p.to_string()).unwrap_or_default()
                ),
            )
            .with_table(chunk.table.clone()));
        }
        if !said {
            debug!(table = %chunk.table, %read_at, "verify: waiting for the target to reach the read position");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converters = converters.to_vec();
    let stages = plan.chain.clone();
    let counter = rows_read.clone();
    let stream: RowStream<'static> = tokio_stream_from(rows)
        .then(move |batch| {
            let rate = rate.clone();
            let converters = converters.clone();
            let stages = stages.clone();
            let counter = counter.clone();
            async move {
                let batch = batch?;
                counter.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if let Some(r) = &rate {
                    r.take(batch.len() as u64).await;
                }
                convert_rows(&converters, &stages, batch)
            }
        })
        .boxed();
    let c = target
        .compare_chunk(pipeline, &last, chunk, plan.ranged, stream, options.max_reported.max(1) * 10)
        .await?;
    if !c.is_equal() {
        warn!(
            table = %chunk.table, chunk = chunk.index, only_source = c.only_source_count,
            only_target = c.only_target_count, %read_at,
            applied = %c.applied.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            "verify: chunk differs (re-checked before it is reported)"
        );
    }
    Ok(c)
}

/// A token bucket of rows per second.
struct RateLimit {
    per_second: u64,
    started: Instant,
    taken: tokio::sync::Mutex<u64>,
}

impl RateLimit {
    fn new(per_second: u64) -> Self {
        RateLimit {
            per_second: per_second.max(1),
            started: Instant::now(),
            taken: tokio::sync::Mutex::new(0),
        }
    }

    async fn take(&self, n: u64) {
        let wait = {
            let mut taken = self.taken.lock().await;
            *taken += n;
            let due = Duration::from_secs_f64(*taken as f64 / self.per_second as f64);
            due.saturating_sub(self.started.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(target_side: bool, v: &[&str]) -> Found {
        Found { target_side, values: v.iter().map(|s| Some(s.to_string())).collect() }
    }

    #[test]
    fn rows_pair_by_key() {
        let names = vec!["id".to_string(), "v".to_string()];
        let found =
            vec![f(false, &["1", "a"]), f(true, &["1", "b"]), f(false, &["2", "x"]), f(true, &["3", "y"])];
        let (n, d) = pair_rows(found, &[0], &names, 10);
        assert_eq!(n, 3);
        assert_eq!(d[0].kind, DifferenceKind::Changed);
        assert_eq!(d[0].columns, vec![("v".into(), Some("a".into()), Some("b".into()))]);
        assert_eq!(d[1].kind, DifferenceKind::MissingOnTarget);
        assert_eq!(d[1].key, vec![("id".into(), Some("2".into()))]);
        assert_eq!(d[2].kind, DifferenceKind::ExtraOnTarget);
        let (n, d) = pair_rows(vec![f(true, &["1", "a"])], &[], &names, 0);
        assert_eq!((n, d.len()), (1, 0));
    }
}
