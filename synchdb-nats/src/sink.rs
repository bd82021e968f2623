//! [`JetStreamSink`]: publish a pipeline's snapshot and changes to a stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use synchdb_core::{
    ChangeBatch, ChunkInfo, Error, ErrorKind, PipelineState, Result, RowStream, Sink, SinkCapabilities,
    SinkState, StateUpdate,
};
use synchdb_types::{Position, Row, TableId, TableSchema, Transaction};
use tokio::sync::Mutex;

use crate::debezium;
use crate::options::{Format, JetStreamOptions};
use crate::stream::{get_header, header_position, nats_error, scan, Connection};
use crate::subject::{state_subject, table_subject};
use crate::wire::{self, header, Kind, StateMessage, StateOp, TxMessage};

const KIND: ErrorKind = ErrorKind::SinkConnection;
/// Publishes awaited at once before waiting for their acknowledgements.
const IN_FLIGHT: usize = 512;
/// How often the state bucket is rewritten at most (the stream's tail
/// covers the rest).
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// How often a position moved by heartbeats alone is published.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Publishes every change of a pipeline to a NATS JetStream stream.
///
/// Subjects are `<prefix>.<database>.<table>` ([`subject`](crate::subject)).
/// A source transaction becomes one message per run of consecutive events of
/// one table (in source order, each at most the stream's message size), the
/// last one flagged `Synchdb-Tx-Last`; a snapshot becomes the tables'
/// schemas, the chunks' rows and a record per finished chunk, before any
/// change that follows it. Every message carries `Nats-Msg-Id` derived from
/// the source position, so a re-publish after a crash is dropped by the
/// stream's duplicate window, and headers with the position, GTID and event
/// kinds ([`wire::header`]).
///
/// The sink's checkpoint is the stream itself ([`Sink::state`]): on start it
/// reads the state it last wrote to the stream `SYNCHDB_STATE_<stream>` and
/// then every message it published after that, and resumes the source after
/// the last complete transaction. A batch counts as done only when the
/// server has acknowledged every message of it.
#[derive(Clone)]
pub struct JetStreamSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSink").field("options", &self.inner.conn.options).finish_non_exhaustive()
    }
}

struct Inner {
    conn: Connection,
    stream: stream::Stream,
    kv: StateStore,
    limit: usize,
    published: Mutex<Published>,
    /// The pipeline served (set by `load_state`, the first call).
    pipeline: std::sync::OnceLock<String>,
    /// A transaction whose pieces are being published (open batches).
    open_tx: Mutex<Option<OpenTx>>,
    /// The stream sequence of the record that began the copy whose chunks
    /// are being written (a snapshot's prepare record, a resync's begin
    /// record): part of the chunk messages' ids, so that a publish retried
    /// within a copy is dropped as a duplicate but two copies never collide
    /// (a resync reading a table at the position a resumed snapshot read it
    /// at had its chunk dropped by the stream's duplicate window).
    copy: std::sync::atomic::AtomicU64,
}

/// The transaction being published in pieces: its sequence, the key its
/// messages carry (`Synchdb-Tx-Start`) and the next part number.
struct OpenTx {
    sequence: u64,
    start: String,
    next_part: usize,
}

/// What this process has published: the state it implies and where it ends.
struct Published {
    state: Option<PipelineState>,
    seq: u64,
    persisted: Option<Instant>,
    dirty: bool,
    slot: u8,
    heartbeat: Option<Instant>,
}

/// A stream's size and sequences ([`JetStreamSink::stream_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamState {
    /// The stream's name.
    pub stream: String,
    /// Messages it holds.
    pub messages: u64,
    /// Bytes it holds.
    pub bytes: u64,
    /// Its first sequence (messages before were removed by retention).
    pub first_sequence: u64,
    /// Its last sequence.
    pub last_sequence: u64,
}

/// The head entry of a pipeline's state in the bucket.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    /// The stream sequence the stored state is complete up to.
    seq: u64,
    /// Which of the two piece slots holds the state.
    slot: u8,
    /// How many pieces.
    pieces: u32,
}

impl JetStreamSink {
    /// Connect, and create the stream (and the state bucket) when missing.
    pub async fn connect(options: JetStreamOptions) -> Result<Self> {
        Self::open(options, true).await
    }

    /// Connect to a stream that exists (to read a publisher's state): an
    /// error when it does not.
    pub async fn connect_existing(options: JetStreamOptions) -> Result<Self> {
        Self::open(options, false).await
    }

    /// The state publisher `pipeline` has left in the stream (what it
    /// resumes from): position, snapshot progress, tracked schemas.
    pub async fn stored_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        self.load(pipeline).await
    }

    /// The stream's size and sequences.
    pub async fn stream_state(&self) -> Result<StreamState> {
        let mut stream = self.inner.stream.clone();
        let info = stream.info().await.map_err(|e| nats_error(KIND, "reading the stream's state", e))?;
        Ok(StreamState {
            stream: self.options().stream.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            first_sequence: info.state.first_sequence,
            last_sequence: info.state.last_sequence,
        })
    }

    async fn open(options: JetStreamOptions, create: bool) -> Result<Self> {
        let conn = Connection::open(&options, KIND).await?;
        let mut stream = conn.stream(create, KIND).await?;
        let limit = conn.payload_limit(&mut stream, KIND).await?;
        let kv = StateStore::open(&conn).await?;
        Ok(JetStreamSink {
            inner: Arc::new(Inner {
                conn,
                stream,
                kv,
                limit,
                published: Mutex::new(Published {
                    state: None,
                    seq: 0,
                    persisted: None,
                    dirty: false,
                    slot: 0,
                    heartbeat: None,
                }),
                pipeline: std::sync::OnceLock::new(),
                open_tx: Mutex::new(None),
                copy: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The options.
    pub fn options(&self) -> &JetStreamOptions {
        &self.inner.conn.options
    }

    /// The largest payload of one message.
    pub fn payload_limit(&self) -> usize {
        self.inner.limit
    }

    fn headers(&self, kind: Kind, pipeline: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::KIND, kind.as_str());
        h.insert(header::PIPELINE, pipeline);
        let format = match (kind, self.options().format) {
            (Kind::State, _) | (_, Format::Native) => wire::FORMAT_NATIVE,
            (_, Format::Debezium) => wire::FORMAT_DEBEZIUM,
        };
        h.insert(header::FORMAT, format);
        h
    }

    async fn publish_state(
        &self,
        pipeline: &str,
        op: StateOp,
        update: &StateUpdate,
        id: String,
        batch: Option<&str>,
    ) -> Result<u64> {
        let mut p = Publisher::new(self);
        self.push_state(&mut p, pipeline, op, update, id, batch).await?;
        p.finish().await
    }

    async fn push_state(
        &self,
        p: &mut Publisher<'_>,
        pipeline: &str,
        op: StateOp,
        update: &StateUpdate,
        id: String,
        batch: Option<&str>,
    ) -> Result<()> {
        let mut h = self.headers(Kind::State, pipeline);
        if let Some(pos) = &update.position {
            h.insert(header::POSITION, pos.to_string().as_str());
        }
        if let Some(b) = batch {
            h.insert(header::BATCH, b);
        }
        let payload = wire::encode(&StateMessage { op, update: update.clone() })?;
        if payload.len() > self.inner.limit {
            return Err(Error::new(
                ErrorKind::SinkValue,
                format!(
                    "a state record of {} bytes (the schemas of a snapshot's tables) is above the largest message the stream takes ({} bytes): raise the server's max_payload",
                    payload.len(),
                    self.inner.limit
                ),
            ));
        }
        p.push(state_subject(&self.options().prefix, pipeline), h, payload, id).await
    }

    /// Warn about tables whose rows can outgrow one message (such a row
    /// stops the publisher with an error naming it when it comes).
    fn check_row_sizes(&self, tables: &[Arc<TableSchema>]) {
        let limit = self.inner.limit as u64;
        for t in tables {
            match wire::max_row_bytes(t) {
                Some(max) if max > limit => tracing::warn!(
                    table = %t.id,
                    max_row_bytes = max,
                    limit,
                    "rows of this table can be larger than the largest message the stream takes: such a row stops the publisher (raise max_payload and the stream's max message size)"
                ),
                None => tracing::info!(
                    table = %t.id,
                    limit,
                    "this table has unbounded columns (LONGTEXT, LONGBLOB, JSON, spatial): a row larger than the largest message stops the publisher"
                ),
                _ => {}
            }
        }
    }

    /// Record what was published: the state it implies and its last sequence.
    async fn published(&self, pipeline: &str, update: &StateUpdate, seq: u64, force: bool) -> Result<()> {
        let mut p = self.inner.published.lock().await;
        p.state.get_or_insert_with(PipelineState::empty).apply(update);
        if seq > p.seq {
            p.seq = seq;
        }
        p.dirty = true;
        if force || p.persisted.is_none_or(|t| t.elapsed() >= PERSIST_EVERY) {
            self.persist(pipeline, &mut p).await?;
        }
        Ok(())
    }

    /// Write the state to the bucket: the pieces into the free slot, then the head.
    async fn persist(&self, pipeline: &str, p: &mut Published) -> Result<()> {
        let Some(state) = &p.state else { return Ok(()) };
        if !p.dirty {
            return Ok(());
        }
        let pipeline_key = kv_key(pipeline);
        let body = wire::encode(state)?;
        let piece = self.inner.limit.max(4096);
        let slot = 1 - p.slot;
        let mut pieces = 0u32;
        for (i, chunk) in body.chunks(piece).enumerate() {
            self.inner
                .kv
                .put(format!("{pipeline_key}.s{slot}.{i}"), bytes::Bytes::copy_from_slice(chunk))
                .await?;
            pieces += 1;
        }
        let head = wire::encode(&Head { seq: p.seq, slot, pieces })?;
        self.inner.kv.put(pipeline_key, head.into()).await?;
        p.slot = slot;
        p.dirty = false;
        p.persisted = Some(Instant::now());
        Ok(())
    }

    async fn load(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        let _ = self.inner.pipeline.set(pipeline.to_string());
        // A new run: a transaction left half published is published again whole.
        *self.inner.open_tx.lock().await = None;
        let key = kv_key(pipeline);
        let mut state: Option<PipelineState> = None;
        let mut from = 1u64;
        let mut slot = 0u8;
        if let Some(head) = self.inner.kv.get(key.clone()).await? {
            let head: Head = wire::decode(&head, &"the publisher state head")?;
            let mut body = Vec::new();
            for i in 0..head.pieces {
                let piece =
                    self.inner.kv.get(format!("{key}.s{}.{i}", head.slot)).await?.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Checkpoint,
                            format!("publisher state of {pipeline}: piece {i} is missing"),
                        )
                    })?;
                body.extend_from_slice(&piece);
            }
            state = Some(wire::decode(&body, &"the publisher state")?);
            from = head.seq + 1;
            slot = head.slot;
        }
        let mut stream = self.inner.stream.clone();
        let info = stream.info().await.map_err(|e| nats_error(KIND, "reading the stream's state", e))?;
        let last = info.state.last_sequence;
        if from > last + 1 {
            return Err(Error::new(
                ErrorKind::Checkpoint,
                format!(
                    "stream {} ends at message {last}, but pipeline {pipeline} had published up to {}: the stream was purged or re-created. Delete the key {key} of bucket SYNCHDB_STATE_{} to publish from scratch",
                    self.options().stream,
                    from - 1,
                    self.options().stream
                ),
            ));
        }
        // Everything this pipeline published after the stored state.
        let mut seen = from.saturating_sub(1);
        let mut tentative: Option<String> = None;
        let filter = format!("{}.>", self.options().prefix);
        scan(&self.inner.stream, &filter, from.max(info.state.first_sequence), last, KIND, |seq, m| {
            seen = seq;
            let headers = m.headers.as_ref();
            if get_header(headers, header::PIPELINE) != Some(pipeline) {
                return Ok(());
            }
            match get_header(headers, header::KIND).and_then(Kind::parse) {
                Some(Kind::State) => {
                    let msg: StateMessage = wire::decode(&m.payload, &format_args!("state record {seq}"))?;
                    state.get_or_insert_with(PipelineState::empty).apply(&msg.update);
                    if get_header(headers, header::BATCH).is_some() {
                        tentative = None;
                    }
                }
                Some(Kind::Tx) if get_header(headers, header::TX_LAST).is_some() => {
                    let Some(pos) = header_position(headers) else {
                        return Err(Error::new(
                            ErrorKind::Checkpoint,
                            format!("message {seq} has no position"),
                        ));
                    };
                    match get_header(headers, header::BATCH) {
                        // Its state record follows: the position counts with it.
                        Some(b) => tentative = Some(b.to_string()),
                        None if tentative.is_none() => state
                            .get_or_insert_with(PipelineState::empty)
                            .apply(&StateUpdate { position: Some(pos), ..Default::default() }),
                        None => {}
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
        if let Some(b) = tentative {
            tracing::info!(batch = %b, "the last published batch lacks its state record: it is published again");
        }
        let mut p = self.inner.published.lock().await;
        p.state = state.clone();
        p.seq = seen;
        p.slot = slot;
        p.dirty = true;
        Ok(state)
    }
}

/// Where a publisher keeps its state between runs: a stream of its own,
/// `SYNCHDB_STATE_<stream>`, keeping the last message of each subject (a
/// key-value store built on the stream calls NATS 2.9 answers).
struct StateStore {
    js: async_nats::jetstream::Context,
    stream: stream::Stream,
    base: String,
}

impl StateStore {
    async fn open(conn: &Connection) -> Result<StateStore> {
        let o = &conn.options;
        let name = format!("SYNCHDB_STATE_{}", o.stream);
        let base = format!("_synchdb_state.{}", o.stream);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{base}.>")],
            max_messages_per_subject: 1,
            num_replicas: o.replicas,
            storage: stream::StorageType::File,
            description: Some("synchdb publisher state".into()),
            ..Default::default()
        };
        let stream = conn
            .js
            .get_or_create_stream(config)
            .await
            .map_err(|e| nats_error(KIND, &format!("opening the state stream {name}"), e))?;
        Ok(StateStore { js: conn.js.clone(), stream, base })
    }

    async fn put(&self, key: String, value: bytes::Bytes) -> Result<()> {
        let subject = format!("{}.{key}", self.base);
        self.js
            .publish(subject, value)
            .await
            .map_err(|e| nats_error(KIND, "storing the publisher state", e))?
            .await
            .map_err(|e| nats_error(KIND, "storing the publisher state", e))?;
        Ok(())
    }

    async fn get(&self, key: String) -> Result<Option<bytes::Bytes>> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_last_raw_message_by_subject(&format!("{}.{key}", self.base)).await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(nats_error(KIND, "reading the publisher state", e)),
        }
    }
}

/// A KV key for a pipeline id (`[-/_=.a-zA-Z0-9]`).
fn kv_key(pipeline: &str) -> String {
    let mut out = String::from("p_");
    for b in pipeline.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Publishes messages with up to [`IN_FLIGHT`] unacknowledged.
struct Publisher<'a> {
    sink: &'a JetStreamSink,
    acks: VecDeque<PublishAckFuture>,
    last: u64,
}

impl<'a> Publisher<'a> {
    fn new(sink: &'a JetStreamSink) -> Self {
        Publisher { sink, acks: VecDeque::new(), last: 0 }
    }

    async fn push(
        &mut self,
        subject: String,
        headers: HeaderMap,
        payload: Vec<u8>,
        id: String,
    ) -> Result<()> {
        if self.acks.len() >= IN_FLIGHT {
            self.await_one().await?;
        }
        let message = PublishMessage::build().payload(payload.into()).headers(headers).message_id(id);
        let ack = self
            .sink
            .inner
            .conn
            .js
            .send_publish(subject.clone(), message)
            .await
            .map_err(|e| nats_error(KIND, &format!("publishing to {subject}"), e))?;
        self.acks.push_back(ack);
        Ok(())
    }

    async fn await_one(&mut self) -> Result<()> {
        if let Some(ack) = self.acks.pop_front() {
            let ack =
                ack.await.map_err(|e| nats_error(KIND, "waiting for the stream's acknowledgement", e))?;
            self.last = self.last.max(ack.sequence);
        }
        Ok(())
    }

    /// Wait for every acknowledgement; the last sequence acknowledged.
    async fn finish(mut self) -> Result<u64> {
        while !self.acks.is_empty() {
            self.await_one().await?;
        }
        Ok(self.last)
    }
}

fn has_more_than_position(u: &StateUpdate) -> bool {
    u.snapshot.is_some() || !u.schemas.is_empty() || u.resync.is_some() || u.skip_before.is_some()
}

fn schemas(tables: &[Arc<TableSchema>]) -> Vec<TableSchema> {
    tables.iter().map(|t| (**t).clone()).collect()
}

impl JetStreamSink {
    /// Publish `tx` (or a piece of it: `open`), continuing the part numbers
    /// of a transaction whose earlier pieces were published by earlier
    /// batches. `false` when there was nothing to publish (no event and no
    /// earlier piece).
    async fn push_tx(
        &self,
        p: &mut Publisher<'_>,
        pipeline: &str,
        tx: &Transaction,
        open: bool,
        batch: Option<&str>,
    ) -> Result<bool> {
        let mut msgs = match self.options().format {
            Format::Native => wire::tx_messages(tx, self.inner.limit)?,
            Format::Debezium => debezium::tx_messages(
                tx,
                &self.options().prefix,
                self.options().debezium_schema,
                self.inner.limit,
            )?,
        };
        let mut pending = self.inner.open_tx.lock().await;
        if msgs.is_empty() && pending.as_ref().is_none_or(|o| o.sequence != tx.sequence) {
            return Ok(false);
        }
        let (start, first) = match pending.take() {
            Some(o) if o.sequence == tx.sequence => (o.start, o.next_part),
            _ => (tx.end_position.to_string(), 0),
        };
        if msgs.is_empty() {
            if open {
                *pending = Some(OpenTx { sequence: tx.sequence, start, next_part: first });
                return Ok(true);
            }
            // The rest of a transaction sent in pieces has nothing left: its end still counts.
            let empty = TxMessage {
                sequence: tx.sequence,
                gtid: tx.gtid.clone(),
                commit_time: tx.commit_time,
                end_position: tx.end_position.clone(),
                foreign_key_checks: tx.foreign_key_checks,
                table: None,
                events: Vec::new(),
            };
            msgs.push(wire::Outgoing { table: None, payload: wire::encode(&empty)?, ops: String::new() });
        }
        let n = msgs.len();
        let position = tx.end_position.to_string();
        for (i, m) in msgs.into_iter().enumerate() {
            let part = first + i;
            let mut h = self.headers(Kind::Tx, pipeline);
            h.insert(header::POSITION, position.as_str());
            h.insert(header::TX_START, start.as_str());
            if let Some(g) = &tx.gtid {
                h.insert(header::GTID, g.as_str());
            }
            h.insert(header::PART, part.to_string().as_str());
            h.insert(header::EVENT, m.ops.as_str());
            h.insert(header::COMMIT_TIME, tx.commit_time.to_rfc3339().as_str());
            if i + 1 == n && !open {
                h.insert(header::TX_LAST, "1");
                if let Some(b) = batch {
                    h.insert(header::BATCH, b);
                }
            }
            let subject = match &m.table {
                Some(table) => table_subject(&self.options().prefix, table),
                None => state_subject(&self.options().prefix, pipeline),
            };
            p.push(subject, h, m.payload, format!("{pipeline}:tx:{start}:{part}")).await?;
        }
        if open {
            tracing::debug!(transaction = %start, parts = first + n, "large transaction: a piece published");
            *pending = Some(OpenTx { sequence: tx.sequence, start, next_part: first + n });
        }
        Ok(true)
    }
}

#[async_trait]
impl SinkState for JetStreamSink {
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        self.load(pipeline).await
    }

    async fn save_state(&self, pipeline: &str, update: &StateUpdate) -> Result<()> {
        let id = format!("{pipeline}:state:{}", nuid::next());
        let seq = self.publish_state(pipeline, StateOp::Save, update, id, None).await?;
        self.published(pipeline, update, seq, true).await
    }
}

#[async_trait]
impl Sink for JetStreamSink {
    fn name(&self) -> &str {
        "jetstream"
    }

    fn state(&self) -> Option<&dyn SinkState> {
        Some(self)
    }

    /// A transaction too large to hold is published piece by piece; its last
    /// message comes with the last piece.
    fn supports_open_batches(&self) -> bool {
        true
    }

    /// Column settings travel with the schemas: the applier's sink honours them.
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::all()
    }

    async fn prepare_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        restart: &[TableId],
        state: &StateUpdate,
    ) -> Result<()> {
        self.check_row_sizes(tables);
        let op = StateOp::PrepareSnapshot { tables: schemas(tables), restart: restart.to_vec() };
        let id = format!("{pipeline}:prepare:{}", nuid::next());
        let seq = self.publish_state(pipeline, op, state, id, None).await?;
        self.inner.copy.store(seq, std::sync::atomic::Ordering::SeqCst);
        self.published(pipeline, state, seq, true).await
    }

    async fn write_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        read_at: &Position,
        mut rows: RowStream<'_>,
    ) -> Result<u64> {
        let subject = table_subject(&self.options().prefix, &table.id);
        let read = read_at.to_string();
        let copy = self.inner.copy.load(std::sync::atomic::Ordering::SeqCst);
        let mut p = Publisher::new(self);
        let mut part = 0usize;
        let mut count = 0u64;
        let mut pending: Vec<Row> = Vec::new();
        let mut size = 0usize;
        loop {
            let next = rows.next().await;
            let end = next.is_none();
            if let Some(batch) = next {
                for row in batch? {
                    size += row.iter().map(synchdb_types::Value::approx_size).sum::<usize>();
                    count += 1;
                    pending.push(row);
                }
            }
            if (end && !pending.is_empty()) || size >= self.inner.limit / 2 {
                let payloads = match self.options().format {
                    Format::Native => {
                        wire::chunk_messages(chunk, read_at, std::mem::take(&mut pending), self.inner.limit)?
                    }
                    Format::Debezium => debezium::snapshot_messages(
                        table,
                        read_at,
                        std::mem::take(&mut pending),
                        &self.options().prefix,
                        self.options().debezium_schema,
                    )?,
                };
                size = 0;
                for payload in payloads {
                    let mut h = self.headers(Kind::Chunk, pipeline);
                    h.insert(header::POSITION, read.as_str());
                    h.insert(header::PART, part.to_string().as_str());
                    h.insert(header::CHUNK, format!("{}/{}", chunk.index, chunk.count).as_str());
                    h.insert(header::EVENT, "read");
                    let id = format!("{pipeline}:chunk:{copy}:{}:{}:{read}:{part}", table.id, chunk.index);
                    p.push(subject.clone(), h, payload, id).await?;
                    part += 1;
                }
            }
            if end {
                break;
            }
        }
        let update = StateUpdate::chunk_done(chunk, count, read_at.clone());
        let id = format!("{pipeline}:done:{copy}:{}:{}:{read}", table.id, chunk.index);
        self.push_state(&mut p, pipeline, StateOp::ChunkDone, &update, id, None).await?;
        let seq = p.finish().await?;
        self.published(pipeline, &update, seq, false).await?;
        Ok(count)
    }

    async fn finish_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let id = format!(
            "{pipeline}:finish:{}",
            state.position.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        let seq = self
            .publish_state(pipeline, StateOp::FinishSnapshot { tables: schemas(tables) }, state, id, None)
            .await?;
        self.published(pipeline, state, seq, true).await
    }

    async fn begin_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let id = format!("{pipeline}:resync:{}", nuid::next());
        let seq = self
            .publish_state(pipeline, StateOp::BeginResync { tables: schemas(tables) }, state, id, None)
            .await?;
        self.inner.copy.store(seq, std::sync::atomic::Ordering::SeqCst);
        self.published(pipeline, state, seq, true).await
    }

    async fn finish_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let id = format!("{pipeline}:resync-done:{}", nuid::next());
        let seq = self
            .publish_state(pipeline, StateOp::FinishResync { tables: schemas(tables) }, state, id, None)
            .await?;
        self.published(pipeline, state, seq, true).await
    }

    async fn join_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        referencing: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let op = StateOp::JoinResync { tables: schemas(tables), referencing: schemas(referencing) };
        let id = format!("{pipeline}:join:{}", nuid::next());
        let seq = self.publish_state(pipeline, op, state, id, None).await?;
        self.published(pipeline, state, seq, true).await
    }

    async fn apply(&self, pipeline: &str, batch: &ChangeBatch) -> Result<()> {
        let with_state = has_more_than_position(&batch.state);
        let batch_id = with_state.then(|| nuid::next().to_string());
        let mut p = Publisher::new(self);
        let mut any = false;
        let last = batch.transactions.len().saturating_sub(1);
        for (i, tx) in batch.transactions.iter().enumerate() {
            let open = batch.open && i == last;
            any |= self.push_tx(&mut p, pipeline, tx, open, batch_id.as_deref()).await?;
        }
        let heartbeat_due = {
            let mut pubd = self.inner.published.lock().await;
            let due = !any
                && batch.state.position.is_some()
                && pubd.heartbeat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY);
            if due || any {
                pubd.heartbeat = Some(Instant::now());
            }
            due
        };
        if with_state || heartbeat_due {
            let id = format!("{pipeline}:state:{}", nuid::next());
            self.push_state(
                &mut p,
                pipeline,
                StateOp::Save,
                &batch.state,
                id,
                if any { batch_id.as_deref() } else { None },
            )
            .await?;
        }
        let seq = p.finish().await?;
        self.published(pipeline, &batch.state, seq, with_state).await
    }

    async fn shutdown(&self) -> Result<()> {
        let Some(pipeline) = self.inner.pipeline.get() else { return Ok(()) };
        let mut p = self.inner.published.lock().await;
        self.persist(pipeline, &mut p).await
    }
}
