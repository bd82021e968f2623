//! [`JetStreamSource`]: apply a published stream (or the tables this applier owns of it).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream;
use async_trait::async_trait;
use futures::StreamExt;
use synchdb_core::{
    chunk_channel, ChunkInfo, Error, ErrorKind, Result, SnapshotPlan, SnapshotStatus, SnapshotUpdate, Source,
    SourceContext, SourceMessage,
};
use synchdb_types::{BinlogPosition, Position, TableId, TableSchema, Transaction};

use crate::options::JetStreamOptions;
use crate::stream::{get_header, header_position, nats_error, Connection};
use crate::subject::subject_table;
use crate::wire::{self, header, ChunkMessage, Kind, StateMessage, StateOp, TxMessage};

const KIND: ErrorKind = ErrorKind::SourceConnection;

/// Which tables an applier owns: databases, or `db.table` patterns (`*` and
/// `?` wildcards; `!db.t*` excludes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSelection {
    databases: Vec<String>,
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
}

impl TableSelection {
    /// Every table.
    pub fn all() -> Self {
        Self::default()
    }

    /// Add a database (all its tables, unless table patterns are given).
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.databases.push(db.into());
        self
    }

    /// Add table patterns, comma-separated: `db.t*` includes, `!db.tmp_*` excludes.
    pub fn tables(mut self, patterns: &str) -> Result<Self> {
        for p in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (neg, p) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p),
            };
            let (db, t) = p
                .split_once('.')
                .ok_or_else(|| Error::config(format!("table pattern {p:?}: expected DATABASE.TABLE")))?;
            let pair = (db.to_string(), t.to_string());
            if neg {
                self.exclude.push(pair);
            } else {
                self.include.push(pair);
            }
        }
        Ok(self)
    }

    /// Whether the applier owns `table`.
    pub fn owns(&self, table: &TableId) -> bool {
        let m = |(d, t): &(String, String)| glob(d, &table.database) && glob(t, &table.table);
        if self.exclude.iter().any(m) {
            return false;
        }
        if !self.include.is_empty() {
            return self.include.iter().any(m);
        }
        self.databases.is_empty() || self.databases.iter().any(|d| d == &table.database)
    }
}

/// `*` and `?` wildcards.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Applies a stream published by [`JetStreamSink`](crate::JetStreamSink):
/// a durable pull consumer (named after the pipeline id) reads the stream
/// in order, keeps the messages of the tables this applier owns and hands
/// them to the pipeline as whole transactions (an applier's part of a
/// transaction that also changed tables other appliers own), with the
/// snapshot the stream begins with.
///
/// Positions are stream positions: the binlog file is the stream name, the
/// offset the stream sequence of the transaction's last message, the GTID
/// set the source's. The sink stores them with the data (exactly-once for
/// [`PgSink`](https://docs.rs/synchdb-postgres)), and messages are
/// acknowledged only once their position is durable; on a restart the
/// consumer is placed after the stored position, whatever it had
/// acknowledged.
#[derive(Debug, Clone)]
pub struct JetStreamSource {
    options: JetStreamOptions,
    selection: TableSelection,
    consumer: Option<String>,
    stop_at_caught_up: bool,
}

impl JetStreamSource {
    /// A source reading `options`' stream, owning every table.
    pub fn new(options: JetStreamOptions) -> Self {
        JetStreamSource {
            options,
            selection: TableSelection::all(),
            consumer: None,
            stop_at_caught_up: false,
        }
    }

    /// Stop once every message the stream held at start is applied (for
    /// batch catch-up runs and tests); by default the source follows forever.
    pub fn stop_at_caught_up(mut self, yes: bool) -> Self {
        self.stop_at_caught_up = yes;
        self
    }

    /// Own only these tables.
    pub fn selection(mut self, selection: TableSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Name the durable consumer (default: derived from the pipeline id).
    pub fn consumer_name(mut self, name: impl Into<String>) -> Self {
        self.consumer = Some(name.into());
        self
    }
}

fn consumer_name(pipeline: &str) -> String {
    let mut out = String::from("synchdb_");
    for c in pipeline.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' });
    }
    out
}

#[async_trait]
impl Source for JetStreamSource {
    fn name(&self) -> &str {
        "jetstream"
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        let conn = Connection::open(&self.options, KIND).await?;
        let mut stream = conn.stream(false, KIND).await?;
        let info =
            stream.info().await.map_err(|e| nats_error(KIND, "reading the stream's state", e))?.clone();
        let name = self.options.stream.clone();
        let first = info.state.first_sequence.max(1);
        let mut reader = Reader::new(&self.options, self.selection.clone(), stream.clone());
        let start = match ctx.state.as_ref() {
            None => first,
            Some(s) => match &s.snapshot {
                SnapshotStatus::InProgress(p) if p.plan.position.binlog.file == name => {
                    reader.resume_snapshot(p);
                    p.plan.position.binlog.pos
                }
                SnapshotStatus::InProgress(p) => {
                    return Err(Error::config(format!(
                        "this pipeline's snapshot from {} did not finish: finish it from the source (--snapshot initial_only) before applying the stream",
                        p.plan.position
                    )))
                }
                SnapshotStatus::Done => match &s.position {
                    Some(pos) if pos.binlog.file == name => {
                        reader.following = true;
                        // The source position of the last applied message, to
                        // drop what a publisher published twice.
                        if let Ok(m) = stream.get_raw_message(pos.binlog.pos).await {
                            reader.last_source = header_position(Some(&m.headers));
                        }
                        match &s.resync {
                            // A copy-again this applier had begun and not joined:
                            // its chunk records lie between its begin record and
                            // here, so read from the begin record again (the copy
                            // starts over; changes applied since are dropped as
                            // published twice).
                            Some(r) if r.position.binlog.file == name && r.position.binlog.pos <= pos.binlog.pos => {
                                tracing::info!(
                                    tables = r.tables.len(),
                                    begin = r.position.binlog.pos,
                                    "a copy-again was under way: reading it from its begin record again"
                                );
                                r.position.binlog.pos
                            }
                            _ => pos.binlog.pos + 1,
                        }
                    }
                    // Copied straight from the source: the stream from that position on.
                    Some(pos) => {
                        let seq = first_after(&stream, pos, first, info.state.last_sequence).await?;
                        tracing::info!(source_position = %pos, seq, "the tables were copied from the source: applying the stream from there");
                        reader.following = true;
                        reader.last_source = Some(pos.clone());
                        seq
                    }
                    None => first,
                },
                _ => first,
            },
        };
        if start < first {
            return Err(Error::new(
                ErrorKind::SourcePositionLost,
                format!(
                    "stream {name} now begins at message {first}, but this applier needs message {start} on: the retention limits removed what it had not applied. Copy its tables again (a new pipeline id, or an applier that snapshots from the source)"
                ),
            ));
        }
        let durable = self.consumer.clone().unwrap_or_else(|| consumer_name(&ctx.pipeline_id));
        // The stored position decides where to start, not what the consumer acknowledged.
        let _ = stream.delete_consumer(&durable).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.clone()),
                description: Some(format!("synchdb applier {}", ctx.pipeline_id)),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(600),
                max_ack_pending: 1_000_000,
                filter_subject: format!("{}.>", self.options.prefix),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error(KIND, &format!("creating consumer {durable}"), e))?;
        tracing::info!(stream = %name, consumer = %durable, start, "applying the stream");
        let end = info.state.last_sequence;
        let mut consumer = consumer;
        let pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(u64::MAX);
        if pending == 0 && start <= end {
            tracing::warn!(
                stream = %name,
                prefix = %self.options.prefix,
                "the stream holds messages from {start} on, but none under this subject prefix"
            );
        }
        if self.stop_at_caught_up && (start > end || pending == 0) {
            return Ok(());
        }
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(1000)
            .max_bytes_per_batch(8 << 20)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| nats_error(KIND, "reading the stream", e))?;

        // Acknowledge what is durable.
        let acks: Arc<Mutex<VecDeque<(u64, Acker)>>> = Arc::default();
        let ack_task = {
            let acks = acks.clone();
            let mut applied = ctx.applied.clone();
            let name = name.clone();
            tokio::spawn(async move {
                while applied.changed().await.is_ok() {
                    let Some(pos) = applied.borrow_and_update().clone() else { continue };
                    if pos.binlog.file != name {
                        continue;
                    }
                    let last = {
                        let mut q = acks.lock().expect("acks poisoned");
                        let mut last = None;
                        while q.front().is_some_and(|(s, _)| *s <= pos.binlog.pos) {
                            last = q.pop_front();
                        }
                        last
                    };
                    if let Some((_, acker)) = last {
                        if let Err(e) = acker.ack().await {
                            tracing::debug!(error = %e, "acknowledgement not sent (the next one covers it)");
                        }
                    }
                }
            })
        };
        let mut shutdown = ctx.shutdown.clone();
        let result = loop {
            if ctx.is_shutdown() {
                break Ok(());
            }
            let next = tokio::select! {
                _ = shutdown.changed() => continue,
                m = messages.next() => m,
            };
            let m = match next {
                None => break Err(Error::new(KIND, "the stream's consumer ended")),
                Some(Err(e)) => break Err(nats_error(KIND, "reading the stream", e)),
                Some(Ok(m)) => m,
            };
            let (seq, left) = match m.info() {
                Ok(i) => (i.stream_sequence, i.pending),
                Err(e) => break Err(nats_error(KIND, "reading a message's metadata", e)),
            };
            let (message, acker) = m.split();
            acks.lock().expect("acks poisoned").push_back((seq, acker));
            if let Err(e) = reader.handle(&ctx, seq, message).await {
                break Err(e);
            }
            // Caught up: past what the stream held at start (or nothing more
            // under the prefix), with no transaction or snapshot half read.
            if self.stop_at_caught_up && (seq >= end || left == 0) && reader.idle() {
                tracing::info!(seq, "caught up with the stream");
                break Ok(());
            }
        };
        // Caught up: the chunks being read are finished; otherwise abandoned.
        reader.join_fetches(result.is_err() || ctx.is_shutdown()).await;
        ack_task.abort();
        match result {
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(()),
            r => r,
        }
    }
}

/// The source position a message at `seq` or after carries (the first of
/// the next few messages that has one), with its sequence.
async fn position_at(stream: &stream::Stream, seq: u64, last: u64) -> Result<Option<(u64, Position)>> {
    for s in seq..=last.min(seq + 64) {
        match stream.get_raw_message(s).await {
            Ok(m) => {
                if let Some(p) = header_position(Some(&m.headers)) {
                    return Ok(Some((s, p)));
                }
            }
            Err(e) if matches!(e.kind(), stream::RawMessageErrorKind::NoMessageFound) => continue,
            Err(e) => return Err(nats_error(KIND, &format!("reading stream message {s}"), e)),
        }
    }
    Ok(None)
}

/// The first stream sequence whose message is after source position `pos`
/// (a binary search: the publisher writes in source order). The stream must
/// still hold a message at or before `pos`, or changes after `pos` may be
/// missing from it.
async fn first_after(stream: &stream::Stream, pos: &Position, first: u64, last: u64) -> Result<u64> {
    let Some((_, p)) = position_at(stream, first, last).await? else {
        return Ok(last + 1);
    };
    if p.is_after(pos) {
        return Err(Error::new(
            ErrorKind::SourcePositionLost,
            format!(
                "the stream begins at source position {p} (message {first}), after this pipeline's position {pos}: the changes between are not in it. Copy the tables again"
            ),
        ));
    }
    let (mut lo, mut hi) = (first, last + 1);
    // Invariant: the message at `lo` is not after `pos`; from `hi` on all are.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match position_at(stream, mid, hi - 1).await? {
            Some((_, p)) if p.is_after(pos) => hi = mid,
            Some((s, _)) => lo = s.max(mid),
            None => hi = mid,
        }
    }
    Ok(hi)
}

/// An applier reads the native format only.
fn native(seq: u64, headers: Option<&async_nats::HeaderMap>) -> Result<()> {
    if get_header(headers, header::FORMAT) != Some(wire::FORMAT_NATIVE) {
        return Err(Error::new(
            ErrorKind::SourceValue,
            format!(
                "stream message {seq} is in format {:?}: an applier reads the native format only (publish with format=native)",
                get_header(headers, header::FORMAT).unwrap_or("none")
            ),
        ));
    }
    Ok(())
}

/// A transaction being assembled.
struct TxAsm {
    /// `Synchdb-Tx-Start` (or the position) of its messages.
    key: String,
    /// Its ordinal in this run (pieces and the rest share it).
    sequence: u64,
    next_part: u32,
    msg: Option<(chrono::DateTime<chrono::Utc>, Option<String>, bool)>,
    events: Vec<synchdb_types::ChangeEvent>,
    /// Approximate memory of `events`.
    bytes: usize,
    /// Whether pieces went to the pipeline already.
    pieces_sent: bool,
}

/// The events an applier holds of one transaction before it hands the
/// pipeline a piece.
const PIECE_BYTES: usize = 32 << 20;

/// The snapshot (or resync) being read from the stream.
#[derive(Default)]
struct Snap {
    plan: Option<SnapshotPlan>,
    tables: HashMap<TableId, Arc<TableSchema>>,
    /// Chunk parts by (table, chunk, read position): part -> sequence.
    parts: HashMap<(TableId, u32, String), BTreeMap<u32, u64>>,
    /// Chunks already written: (table, chunk) -> sequence of their record.
    done: HashMap<(TableId, u32), u64>,
    resync: bool,
}

struct Reader {
    prefix: String,
    stream_name: String,
    selection: TableSelection,
    stream: stream::Stream,
    following: bool,
    snap: Option<Snap>,
    tx: Option<TxAsm>,
    last_source: Option<Position>,
    sequence: u64,
    fetches: tokio::task::JoinSet<()>,
}

impl Reader {
    fn new(options: &JetStreamOptions, selection: TableSelection, stream: stream::Stream) -> Self {
        Reader {
            prefix: options.prefix.clone(),
            stream_name: options.stream.clone(),
            selection,
            stream,
            following: false,
            snap: None,
            tx: None,
            last_source: None,
            sequence: 0,
            fetches: tokio::task::JoinSet::new(),
        }
    }

    /// No transaction or snapshot half read.
    fn idle(&self) -> bool {
        self.tx.is_none() && self.snap.is_none()
    }

    fn resume_snapshot(&mut self, progress: &synchdb_core::SnapshotProgress) {
        let mut snap = Snap::default();
        for d in &progress.done {
            snap.done.insert((d.table.clone(), d.index), d.read_at.binlog.pos);
        }
        self.snap = Some(snap);
    }

    fn position(&self, seq: u64, source: Option<&Position>) -> Position {
        Position {
            binlog: BinlogPosition::new(self.stream_name.clone(), seq),
            gtid: source.and_then(|p| p.gtid.clone()),
        }
    }

    async fn join_fetches(&mut self, abort: bool) {
        if abort {
            self.fetches.abort_all();
        }
        while self.fetches.join_next().await.is_some() {}
    }

    async fn handle(&mut self, ctx: &SourceContext, seq: u64, m: async_nats::Message) -> Result<()> {
        let headers = m.headers.as_ref();
        let kind = get_header(headers, header::KIND).and_then(Kind::parse);
        match kind {
            Some(Kind::Tx) => self.on_tx(ctx, seq, &m).await,
            Some(Kind::Chunk) => {
                native(seq, headers)?;
                self.on_chunk(seq, &m);
                Ok(())
            }
            Some(Kind::State) => {
                let msg: StateMessage = wire::decode(&m.payload, &format_args!("stream message {seq}"))?;
                self.on_state(ctx, seq, msg).await
            }
            None => {
                tracing::debug!(seq, subject = %m.subject, "not a synchdb message; skipped");
                Ok(())
            }
        }
    }

    async fn on_tx(&mut self, ctx: &SourceContext, seq: u64, m: &async_nats::Message) -> Result<()> {
        let headers = m.headers.as_ref();
        native(seq, headers)?;
        let source = header_position(headers).ok_or_else(|| {
            Error::new(ErrorKind::SourceValue, format!("stream message {seq} has no position"))
        })?;
        if !self.following {
            if self.snap.as_ref().is_some_and(|s| s.resync) {
                // Changes of the other tables keep coming during a resync.
            } else {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "stream {} holds changes (message {seq}, source position {source}) before any snapshot this applier has: it has no copy of its tables to apply them to. Republish from a snapshot, or start from an applier that copied the tables",
                        self.stream_name
                    ),
                ));
            }
        }
        if self.last_source.as_ref().is_some_and(|l| !source.is_after(l)) {
            return Ok(()); // published twice
        }
        let part: u32 = get_header(headers, header::PART).and_then(|p| p.parse().ok()).unwrap_or(0);
        let last = get_header(headers, header::TX_LAST).is_some();
        // Pieces of a large transaction carry the position they reached; the
        // key is the first piece's.
        let key =
            get_header(headers, header::TX_START).map(str::to_string).unwrap_or_else(|| source.to_string());
        match &self.tx {
            Some(t) if t.key != key => {
                return Err(Error::new(
                    ErrorKind::SourceValue,
                    format!(
                        "stream {}: the transaction {} is incomplete (part {} missing) when message {seq} starts transaction {key}",
                        self.stream_name, t.key, t.next_part
                    ),
                ));
            }
            _ => {}
        }
        if self.tx.is_none() {
            self.sequence += 1;
        }
        let sequence = self.sequence;
        let asm = self.tx.get_or_insert_with(|| TxAsm {
            key: key.clone(),
            sequence,
            next_part: 0,
            msg: None,
            events: Vec::new(),
            bytes: 0,
            pieces_sent: false,
        });
        if part < asm.next_part {
            return Ok(()); // a part published twice
        }
        if part > asm.next_part {
            return Err(Error::new(
                ErrorKind::SourceValue,
                format!(
                    "stream {}: part {} of transaction {key} is missing (message {seq} is part {part})",
                    self.stream_name, asm.next_part
                ),
            ));
        }
        asm.next_part += 1;
        let owned = subject_table(&self.prefix, &m.subject).is_some_and(|t| self.selection.owns(&t));
        if owned {
            let msg: TxMessage = wire::decode(&m.payload, &format_args!("stream message {seq}"))?;
            asm.msg = Some((msg.commit_time, msg.gtid.clone(), msg.foreign_key_checks));
            let events = msg.into_events().map_err(|e| e.with_context(&format!("stream message {seq}")))?;
            asm.bytes += events.iter().map(synchdb_types::ChangeEvent::approx_size).sum::<usize>();
            asm.events.extend(events);
        } else if asm.msg.is_none() {
            let time = get_header(headers, header::COMMIT_TIME)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(chrono::Utc::now);
            asm.msg = Some((time, get_header(headers, header::GTID).map(str::to_string), true));
        }
        if !last {
            if asm.bytes >= PIECE_BYTES {
                // Too large to hold: hand the pipeline a piece (applied with
                // the rest in one target transaction).
                let events = std::mem::take(&mut asm.events);
                asm.bytes = 0;
                asm.pieces_sent = true;
                let (time, _, fk) = asm.msg.clone().unwrap_or((chrono::Utc::now(), None, true));
                tracing::debug!(transaction = %key, events = events.len(), "large transaction: a piece handed to the pipeline");
                let piece = Transaction::new(sequence, self.position(seq, Some(&source)), time, events)
                    .with_foreign_key_checks(fk);
                return ctx.send(SourceMessage::TransactionPart(piece)).await;
            }
            return Ok(());
        }
        let asm = self.tx.take().expect("assembled above");
        let position = self.position(seq, Some(&source));
        let (time, gtid, fk) = asm.msg.unwrap_or((chrono::Utc::now(), None, true));
        self.last_source = Some(source);
        if asm.events.is_empty() && !asm.pieces_sent {
            return ctx.send(SourceMessage::Heartbeat { position, source_time: Some(time) }).await;
        }
        let tx = Transaction::new(asm.sequence, position, time, asm.events)
            .with_gtid(gtid)
            .with_foreign_key_checks(fk);
        ctx.send(SourceMessage::Transaction(tx)).await
    }

    fn on_chunk(&mut self, seq: u64, m: &async_nats::Message) {
        let Some(snap) = &mut self.snap else { return };
        let Some(table) = subject_table(&self.prefix, &m.subject) else { return };
        if !self.selection.owns(&table) {
            return;
        }
        let headers = m.headers.as_ref();
        let index = get_header(headers, header::CHUNK)
            .and_then(|c| c.split_once('/'))
            .and_then(|(i, _)| i.parse::<u32>().ok())
            .unwrap_or(0);
        let read_at = get_header(headers, header::POSITION).unwrap_or_default().to_string();
        let part: u32 = get_header(headers, header::PART).and_then(|p| p.parse().ok()).unwrap_or(0);
        snap.parts.entry((table, index, read_at)).or_default().entry(part).or_insert(seq);
    }

    async fn on_state(&mut self, ctx: &SourceContext, seq: u64, msg: StateMessage) -> Result<()> {
        let owned = |tables: &[TableSchema], sel: &TableSelection| -> Vec<Arc<TableSchema>> {
            tables.iter().filter(|t| sel.owns(&t.id)).map(|t| Arc::new(t.clone())).collect()
        };
        match msg.op {
            StateOp::PrepareSnapshot { tables, restart } => {
                if self.following {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "stream {} holds a new snapshot (message {seq}) after the one this applier copied: start a new applier (another pipeline id and an empty target) for it",
                            self.stream_name
                        ),
                    ));
                }
                let tables = owned(&tables, &self.selection);
                let resumed_run = self.snap.is_some();
                let snap = self.snap.get_or_insert_with(Snap::default);
                snap.resync = false;
                let mut empty = Vec::new();
                match (&snap.plan, &msg.update.snapshot) {
                    (None, Some(SnapshotUpdate::Started(plan))) => {
                        let ids: HashSet<TableId> = tables.iter().map(|t| t.id.clone()).collect();
                        snap.plan = Some(SnapshotPlan {
                            position: Position {
                                binlog: BinlogPosition::new(self.stream_name.clone(), seq),
                                gtid: plan.position.gtid.clone(),
                            },
                            tables: plan.tables.iter().filter(|t| ids.contains(t)).cloned().collect(),
                            chunks: plan.chunks.iter().filter(|c| ids.contains(&c.table)).cloned().collect(),
                        });
                    }
                    (None, _) => {
                        return Err(Error::new(
                            ErrorKind::Config,
                            format!(
                                "stream {} resumes a snapshot at message {seq} whose start is no longer in the stream: this applier cannot copy its tables from it",
                                self.stream_name
                            ),
                        ))
                    }
                    (Some(_), _) => {
                        // The publisher resumed its snapshot: tables it reads again
                        // whose rows this applier has not taken since are emptied.
                        for t in restart.iter().filter(|t| self.selection.owns(t)) {
                            let later = snap.done.iter().any(|((tt, _), s)| tt == t && *s > seq);
                            if !later {
                                snap.done.retain(|(tt, _), _| tt != t);
                                empty.push(t.clone());
                            }
                        }
                    }
                }
                for t in &tables {
                    snap.tables.insert(t.id.clone(), t.clone());
                }
                let plan = snap.plan.clone().expect("set above");
                ctx.send(SourceMessage::SnapshotStarted {
                    plan,
                    tables,
                    restart: empty,
                    resumed: resumed_run,
                })
                .await
            }
            StateOp::ChunkDone => {
                let Some(SnapshotUpdate::ChunkDone(done)) = &msg.update.snapshot else { return Ok(()) };
                if !self.selection.owns(&done.table) {
                    return Ok(());
                }
                let Some(snap) = &mut self.snap else { return Ok(()) };
                let key = (done.table.clone(), done.index);
                let parts = snap
                    .parts
                    .remove(&(done.table.clone(), done.index, done.read_at.to_string()))
                    .unwrap_or_default();
                if snap.done.contains_key(&key) {
                    return Ok(());
                }
                let Some(table) = snap.tables.get(&done.table).cloned() else {
                    return Err(Error::new(
                        ErrorKind::SourceValue,
                        format!(
                            "stream message {seq}: chunk {} of {} before its table's snapshot record",
                            done.index, done.table
                        ),
                    ));
                };
                let chunk =
                    match snap.plan.as_ref().and_then(|p| {
                        p.chunks.iter().find(|c| c.table == done.table && c.index == done.index)
                    }) {
                        Some(c) if !snap.resync => c.clone(),
                        _ => ChunkInfo {
                            table: done.table.clone(),
                            index: done.index,
                            count: done.index + 1,
                            lower: None,
                            upper: None,
                        },
                    };
                snap.done.insert(key, seq);
                let (tx, rows) = chunk_channel(4);
                ctx.send(SourceMessage::SnapshotChunk {
                    chunk,
                    table,
                    read_at: self.position(seq, Some(&done.read_at)),
                    rows,
                })
                .await?;
                let stream = self.stream.clone();
                let expect = done.rows;
                let what = format!("chunk {} of {}", done.index, done.table);
                self.fetches.spawn(async move {
                    let mut got = 0u64;
                    for (_, s) in parts {
                        let m = match stream.get_raw_message(s).await {
                            Ok(m) => m,
                            Err(e) => {
                                return tx
                                    .fail(nats_error(KIND, &format!("reading {what} (message {s})"), e))
                                    .await
                            }
                        };
                        let body: ChunkMessage =
                            match wire::decode(&m.payload, &format!("stream message {s}")) {
                                Ok(b) => b,
                                Err(e) => return tx.fail(e).await,
                            };
                        got += body.rows.len() as u64;
                        if tx.send(body.rows).await.is_err() {
                            return;
                        }
                    }
                    if got != expect {
                        return tx
                            .fail(Error::new(
                                ErrorKind::SourceValue,
                                format!("{what}: the stream holds {got} rows, the publisher wrote {expect}"),
                            ))
                            .await;
                    }
                    let _ = tx.finish().await;
                });
                Ok(())
            }
            StateOp::FinishSnapshot { .. } => {
                if self.following || self.snap.is_none() {
                    return Ok(());
                }
                let position = msg.update.position.clone();
                self.snap = None;
                self.following = true;
                self.last_source = position.clone();
                ctx.send(SourceMessage::SnapshotFinished {
                    position: self.position(seq, position.as_ref()),
                    skip_before: Vec::new(),
                })
                .await
            }
            StateOp::BeginResync { tables } => {
                let tables = owned(&tables, &self.selection);
                if tables.is_empty() || !self.following {
                    return Ok(());
                }
                let mut snap = Snap { resync: true, ..Default::default() };
                for t in &tables {
                    snap.tables.insert(t.id.clone(), t.clone());
                }
                self.snap = Some(snap);
                let reason = match &msg.update.resync {
                    Some(synchdb_core::ResyncUpdate::Started(r)) => r.reason.clone(),
                    _ => "the publisher copies these tables again".into(),
                };
                ctx.send(SourceMessage::ResyncStarted {
                    tables,
                    position: self.position(seq, msg.update.position.as_ref()),
                    reason,
                })
                .await
            }
            StateOp::FinishResync { tables } => {
                let tables = owned(&tables, &self.selection);
                if tables.is_empty() || !self.snap.as_ref().is_some_and(|s| s.resync) {
                    return Ok(());
                }
                ctx.send(SourceMessage::ResyncFinished {
                    tables: tables.iter().map(|t| t.id.clone()).collect(),
                })
                .await
            }
            StateOp::JoinResync { tables, referencing } => {
                let tables = owned(&tables, &self.selection);
                if tables.is_empty() || !self.snap.as_ref().is_some_and(|s| s.resync) {
                    return Ok(());
                }
                self.snap = None;
                let referencing = owned(&referencing, &self.selection);
                ctx.send(SourceMessage::ResyncJoined { tables, referencing }).await
            }
            StateOp::Save => {
                if self.following && self.tx.is_none() {
                    if let Some(p) = &msg.update.position {
                        if self.last_source.as_ref().is_none_or(|l| p.is_after(l) || p == l) {
                            return ctx
                                .send(SourceMessage::Heartbeat {
                                    position: self.position(seq, Some(p)),
                                    source_time: None,
                                })
                                .await;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_own_tables() {
        let all = TableSelection::all();
        assert!(all.owns(&TableId::new("a", "b")));
        let dbs = TableSelection::all().database("shop");
        assert!(dbs.owns(&TableId::new("shop", "t")));
        assert!(!dbs.owns(&TableId::new("crm", "t")));
        let pats = TableSelection::all().tables("shop.o*, !shop.old_*,crm.?x").unwrap();
        assert!(pats.owns(&TableId::new("shop", "orders")));
        assert!(!pats.owns(&TableId::new("shop", "old_orders")));
        assert!(!pats.owns(&TableId::new("shop", "items")));
        assert!(pats.owns(&TableId::new("crm", "ax")));
        assert!(!pats.owns(&TableId::new("crm", "abx")));
        assert!(TableSelection::all().tables("nodot").is_err());
    }
}
