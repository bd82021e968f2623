//! Source messages to sink work: snapshot messages, converted transactions, schema updates.

use super::*;

/// Convert a table through every converter: the schema at each stage, or
/// `None` when a converter drops it.
pub(crate) fn convert_chain(
    converters: &[Arc<dyn Converter>],
    table: &Arc<TableSchema>,
) -> Result<Option<Vec<Arc<TableSchema>>>> {
    let mut chain = vec![table.clone()];
    for c in converters {
        let last = chain.last().expect("chain starts non-empty");
        match c.convert_table(last).map_err(|e| e.with_table(table.id.clone()))? {
            Some(next) => chain.push(next),
            None => return Ok(None),
        }
    }
    Ok(Some(chain))
}

/// Handle one source message; returns how many events it added to `pending`.
pub(super) async fn handle_message(
    ctx: &Ctx,
    converters: &[Arc<dyn Converter>],
    snap: &mut SnapshotRun,
    msg: SourceMessage,
    pending: &mut Vec<Converted>,
    apply_tx: &mpsc::Sender<ApplyItem>,
) -> Result<usize> {
    match msg {
        SourceMessage::SnapshotStarted { plan, tables, restart, resumed } => {
            info!(tables = tables.len(), chunks = plan.chunks.len(), position = %plan.position, resumed, "snapshot starts");
            ctx.stats.set_snapshot_totals(tables.len() as u64, plan.chunks.len() as u64);
            ctx.stats.set_snapshot_plan(plan.chunks.iter().map(|c| &c.table));
            ctx.stats.set_phase(Phase::Snapshotting);
            // A snapshot the source gave up (a table changed under its copy) is
            // superseded by this one, which empties its tables again.
            snap.writers.abort_all();
            while snap.writers.join_next().await.is_some() {}
            let mut out = Vec::new();
            for t in &tables {
                if let Some(chain) = convert_chain(converters, t)? {
                    out.push(chain.last().expect("non-empty").clone());
                    snap.chains.insert(t.id.clone(), chain);
                }
            }
            let restart: Vec<TableId> = restart
                .iter()
                .filter_map(|id| snap.chains.get(id).map(|c| c.last().expect("non-empty").id.clone()))
                .collect();
            let update = StateUpdate {
                position: None,
                snapshot: if resumed { None } else { Some(SnapshotUpdate::Started(plan)) },
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("prepare snapshot", || {
                ctx.sink.prepare_snapshot(&ctx.id, &out, &restart, &update)
            })
            .await?;
            ctx.after_durable(&update).await?;
            Ok(0)
        }
        SourceMessage::SnapshotChunk { chunk, table, read_at, rows } => {
            // Fail fast if an earlier chunk failed. A chunk the source failed (its
            // connection lost, its table changed under the copy) is the source's
            // to report or to start again (a resync, a snapshot from scratch).
            while let Some(done) = snap.writers.try_join_next() {
                match done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}")))? {
                    Err(e) if e.kind() == ErrorKind::SourceConnection => {
                        warn!(error = %e, resync = snap.resync_active, "chunk lost with the source's read; the source reports it or copies again");
                    }
                    r => r?,
                }
            }
            let chain = match snap.chains.get(&table.id) {
                Some(c) => Some(c.clone()),
                None => convert_chain(converters, &table)?,
            };
            let permit = snap
                .parallelism
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("semaphore closed"))?;
            let ctx = ctx.clone();
            let converters = converters.to_vec();
            snap.writers.spawn(
                async move {
                    let _permit = permit;
                    write_chunk(&ctx, &converters, chain, chunk, read_at, rows).await
                }
                .instrument(info_span!("snapshot_chunk", table = %table.id)),
            );
            Ok(0)
        }
        SourceMessage::SnapshotFinished { position, skip_before } => {
            while let Some(done) = snap.writers.join_next().await {
                done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}")))??;
            }
            let tables: Vec<Arc<TableSchema>> =
                snap.chains.values().map(|c| c.last().expect("non-empty").clone()).collect();
            let update = StateUpdate {
                position: Some(position.clone()),
                snapshot: Some(SnapshotUpdate::Finished),
                schemas: vec![],
                resync: None,
                skip_before: Some(skip_before),
            };
            ctx.with_retry("finish snapshot", || ctx.sink.finish_snapshot(&ctx.id, &tables, &update)).await?;
            ctx.after_durable(&update).await?;
            info!(%position, rows = ctx.stats.snapshot().snapshot_rows, "snapshot finished");
            ctx.stats.set_read(&position);
            ctx.stats.set_phase(Phase::Following);
            Ok(0)
        }
        SourceMessage::SchemaOnly { tables, position } => {
            let mut out = Vec::new();
            for t in &tables {
                if let Some(chain) = convert_chain(converters, t)? {
                    out.push(chain.last().expect("non-empty").clone());
                }
            }
            let update = StateUpdate {
                position: None,
                snapshot: None,
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("create tables", || ctx.sink.prepare_snapshot(&ctx.id, &out, &[], &update))
                .await?;
            ctx.after_durable(&update).await?;
            let done = StateUpdate {
                position: Some(position),
                snapshot: Some(SnapshotUpdate::Finished),
                schemas: vec![],
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("finish schema", || ctx.sink.finish_snapshot(&ctx.id, &out, &done)).await?;
            ctx.after_durable(&done).await?;
            ctx.stats.set_phase(Phase::Following);
            Ok(0)
        }
        SourceMessage::ResyncStarted { tables, position, reason } => {
            // A resync that did not finish (its copy failed) is superseded by this one.
            snap.writers.abort_all();
            while snap.writers.join_next().await.is_some() {}
            snap.resync_active = true;
            drain(pending, apply_tx).await?;
            info!(tables = %table_list(&tables), %position, reason, "resync: copying tables again while the others follow");
            let out = convert_tables(converters, snap, &tables)?;
            let update = StateUpdate {
                resync: Some(ResyncUpdate::Started(ResyncState {
                    tables: tables.iter().map(|t| (**t).clone()).collect(),
                    position,
                    loaded: false,
                    reason,
                })),
                // Until they join, the tables are not followed.
                schemas: tables.iter().map(|t| SchemaUpdate::Drop(t.id.clone())).collect(),
                ..Default::default()
            };
            ctx.with_retry("begin resync", || ctx.sink.begin_resync(&ctx.id, &out, &update)).await?;
            ctx.after_durable(&update).await?;
            ctx.stats.set_resync(tables.iter().map(|t| t.id.clone()).collect());
            Ok(0)
        }
        SourceMessage::ResyncFinished { tables } => {
            snap.resync_active = false;
            while let Some(done) = snap.writers.join_next().await {
                done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}")))??;
            }
            let out: Vec<Arc<TableSchema>> = tables
                .iter()
                .filter_map(|id| snap.chains.get(id).map(|c| c.last().expect("non-empty").clone()))
                .collect();
            let update = StateUpdate { resync: Some(ResyncUpdate::Loaded), ..Default::default() };
            ctx.with_retry("finish resync", || ctx.sink.finish_resync(&ctx.id, &out, &update)).await?;
            ctx.after_durable(&update).await?;
            info!(tables = tables.len(), "resync: rows copied and indexed");
            Ok(0)
        }
        SourceMessage::ResyncJoined { tables, referencing } => {
            drain(pending, apply_tx).await?;
            let out = convert_tables(converters, snap, &tables)?;
            let mut refs = Vec::new();
            for t in &referencing {
                if let Some(chain) = convert_chain(converters, t)? {
                    refs.push(chain.last().expect("non-empty").clone());
                }
            }
            let update = StateUpdate {
                resync: Some(ResyncUpdate::Joined),
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                ..Default::default()
            };
            ctx.with_retry("join resync", || ctx.sink.join_resync(&ctx.id, &out, &refs, &update)).await?;
            ctx.after_durable(&update).await?;
            ctx.stats.set_resync(Vec::new());
            if tables.is_empty() {
                info!("resync ended: none of its tables is left to copy");
            } else {
                info!(tables = %table_list(&tables), "resync: tables followed again");
            }
            Ok(0)
        }
        SourceMessage::TablesDeselected { tables } => {
            let update = StateUpdate {
                schemas: tables.iter().map(|t| SchemaUpdate::Drop(t.clone())).collect(),
                ..Default::default()
            };
            ctx.with_retry("store the deselected tables", || ctx.save_state(&update)).await?;
            Ok(0)
        }
        SourceMessage::FollowStarted { tables, position } => {
            let update = StateUpdate {
                position: Some(position),
                snapshot: Some(SnapshotUpdate::Finished),
                schemas: tables.iter().map(|t| SchemaUpdate::Upsert(t.clone())).collect(),
                resync: None,
                skip_before: None,
            };
            ctx.with_retry("store the follow start", || ctx.save_state(&update)).await?;
            ctx.stats.set_phase(Phase::Following);
            Ok(0)
        }
        SourceMessage::Transaction(tx) => {
            following(ctx, &tx.end_position);
            let schemas = schema_updates(&tx);
            let converted = convert_transaction(ctx, converters, tx).await?;
            let n = converted.events.len().max(1);
            push_piece(ctx, pending, Converted { tx: converted, schemas, partial: false });
            Ok(n)
        }
        SourceMessage::TransactionPart(tx) => {
            following(ctx, &tx.end_position);
            let schemas = schema_updates(&tx);
            let converted = convert_transaction(ctx, converters, tx).await?;
            let n = converted.events.len().max(1);
            push_piece(ctx, pending, Converted { tx: converted, schemas, partial: true });
            Ok(n)
        }
        SourceMessage::Heartbeat { position, source_time } => {
            following(ctx, &position);
            // An empty transaction moves the checkpoint; merge consecutive ones.
            if let Some(last) = pending.last_mut() {
                if last.tx.events.is_empty() && last.schemas.is_empty() {
                    last.tx.end_position = position;
                    if let Some(t) = source_time {
                        last.tx.commit_time = t;
                    }
                    return Ok(0);
                }
            }
            let tx = Transaction::new(0, position, source_time.unwrap_or_else(chrono::Utc::now), vec![]);
            pending.push(Converted { tx, schemas: vec![], partial: false });
            Ok(1)
        }
    }
}

/// A change or heartbeat arrived: the pipeline follows, and has read up to `position`.
pub(super) fn following(ctx: &Ctx, position: &Position) {
    ctx.stats.set_read(position);
    if ctx.stats.phase() == Phase::Starting {
        ctx.stats.set_phase(Phase::Following);
    }
}

/// Whether `pending` ends with a piece of a transaction that must be merged
/// with the rest before it is applied (the sink takes no open batches).
pub(super) fn holding(ctx: &Ctx, pending: &[Converted]) -> bool {
    !ctx.sink.supports_open_batches() && pending.last().is_some_and(|c| c.partial)
}

/// A batch of snapshot rows through the converters (`stages`: each
/// converter's input schema); rows a converter filters out are dropped.
pub(crate) fn convert_rows(
    converters: &[Arc<dyn Converter>],
    stages: &[Arc<TableSchema>],
    batch: Vec<synchdb_types::Row>,
) -> Result<Vec<synchdb_types::Row>> {
    let mut out = Vec::with_capacity(batch.len());
    'rows: for row in batch {
        let mut row = row;
        for (c, schema) in converters.iter().zip(stages) {
            match c.convert_row(schema, row)? {
                Some(r) => row = r,
                None => continue 'rows,
            }
        }
        out.push(row);
    }
    Ok(out)
}

pub(crate) fn tokio_stream_from(
    rx: RowReceiver,
) -> impl futures::Stream<Item = Result<Vec<synchdb_types::Row>>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// The tracked-schema changes a source transaction implies.
pub(super) fn schema_updates(tx: &Transaction) -> Vec<SchemaUpdate> {
    let mut out = Vec::new();
    for e in &tx.events {
        if let ChangeEvent::Schema(s) = e {
            match &s.change {
                SchemaChange::DropTable { table } => out.push(SchemaUpdate::Drop(table.clone())),
                SchemaChange::RenameTable { from, .. } => {
                    out.push(SchemaUpdate::Drop(from.clone()));
                    if let Some(after) = &s.schema_after {
                        out.push(SchemaUpdate::Upsert(after.clone()));
                    }
                }
                _ => {
                    if let Some(after) = &s.schema_after {
                        out.push(SchemaUpdate::Upsert(after.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Run every event of a transaction through the converters. A converter
/// error follows the error policy: `skip` records the event and drops it.
pub(super) async fn convert_transaction(
    ctx: &Ctx,
    converters: &[Arc<dyn Converter>],
    tx: Transaction,
) -> Result<Transaction> {
    if converters.is_empty() {
        return Ok(tx);
    }
    let Transaction { sequence, gtid, commit_time, end_position, events, foreign_key_checks, .. } = tx;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let original = matches!(ctx.policy, ErrorPolicy::Skip(_)).then(|| event.clone());
        let mut current = vec![event];
        let mut failed = None;
        for c in converters {
            let mut next = Vec::with_capacity(current.len());
            for e in current.drain(..) {
                let meta = e.meta().clone();
                let table = e.table_id().clone();
                if let Err(err) = c.convert_event(e, &mut next) {
                    let mut wrapped =
                        Error::new(ErrorKind::Convert, format!("converter {} failed", c.name()))
                            .with_table(table)
                            .with_position(meta.position);
                    if let Some(column) = err.column() {
                        wrapped = wrapped.with_column(column.to_string());
                    }
                    failed = Some(wrapped.with_source(err));
                    break;
                }
            }
            if failed.is_some() {
                break;
            }
            current = next;
        }
        match (failed, original) {
            (None, _) => {
                for e in &current {
                    if let ChangeEvent::Schema(s) = e {
                        if let Some(after) = &s.schema_after {
                            ctx.sink
                                .capabilities()
                                .check(ctx.sink.name(), std::slice::from_ref(after))
                                .map_err(|err| err.with_position(e.meta().position.clone()))?;
                        }
                    }
                }
                out.extend(current)
            }
            (Some(err), Some(original)) => {
                ctx.sink.dead_letter(&ctx.id, &original, &err).await?;
                ctx.stats.record_dead_letter(&original, &err);
            }
            (Some(err), None) => return Err(err),
        }
    }
    Ok(Transaction::new(sequence, end_position, commit_time, out)
        .with_gtid(gtid)
        .with_foreign_key_checks(foreign_key_checks))
}

/// The converted (final) schemas of `tables`, skipping those a converter drops.
pub(super) fn convert_tables(
    converters: &[Arc<dyn Converter>],
    snap: &mut SnapshotRun,
    tables: &[Arc<TableSchema>],
) -> Result<Vec<Arc<TableSchema>>> {
    let mut out = Vec::new();
    for t in tables {
        if let Some(chain) = convert_chain(converters, t)? {
            out.push(chain.last().expect("non-empty").clone());
            snap.chains.insert(t.id.clone(), chain);
        }
    }
    Ok(out)
}
