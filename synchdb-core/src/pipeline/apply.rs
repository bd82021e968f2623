//! The applier: batches of whole transactions under the error policy.

use super::*;

/// The applier: one batch at a time, under the error policy.
pub(super) async fn apply_loop(ctx: Ctx, mut rx: mpsc::Receiver<ApplyItem>) -> Result<()> {
    // Inside a target transaction left open by an open batch.
    let mut streaming = false;
    while let Some(item) = rx.recv().await {
        match item {
            ApplyItem::Batch(items) if streaming || items.last().is_some_and(|c| c.partial) => {
                streaming = apply_open(&ctx, items).await?;
            }
            ApplyItem::Batch(items) => apply_items(&ctx, items).await?,
            ApplyItem::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
    Ok(())
}

/// Hand `pending` to the applier and wait until everything sent so far is applied.
pub(super) async fn drain(pending: &mut Vec<Converted>, apply_tx: &mpsc::Sender<ApplyItem>) -> Result<()> {
    let stopped = || Error::internal("the applier stopped");
    if !pending.is_empty() {
        apply_tx.send(ApplyItem::Batch(std::mem::take(pending))).await.map_err(|_| stopped())?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    apply_tx.send(ApplyItem::Barrier(tx)).await.map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())
}

/// Build a batch by moving the transactions (no copy of the rows); the
/// per-transaction schema updates are returned to rebuild the items if the
/// batch must be split.
pub(super) fn batch_of(items: Vec<Converted>) -> (ChangeBatch, Vec<Vec<SchemaUpdate>>) {
    let mut state = StateUpdate::default();
    let mut transactions = Vec::with_capacity(items.len());
    let mut schemas = Vec::with_capacity(items.len());
    let open = items.last().is_some_and(|c| c.partial);
    for c in items {
        state.schemas.extend(c.schemas.iter().cloned());
        state.position = Some(c.tx.end_position.clone());
        transactions.push(c.tx);
        schemas.push(c.schemas);
    }
    if open {
        // Stored with the last piece of the transaction, at its commit.
        state.position = None;
    }
    (ChangeBatch { transactions, state, open }, schemas)
}

/// A batch of a transaction applied in pieces (or the batch that ends it):
/// the target transaction holds the earlier pieces, so neither a retry of
/// this batch alone nor skipping events one by one can be right. Any error
/// ends the run; a restart reads the transaction again from the checkpoint.
/// Returns whether the target transaction stays open.
pub(super) async fn apply_open(ctx: &Ctx, items: Vec<Converted>) -> Result<bool> {
    let (batch, _) = batch_of(items);
    ctx.sink.apply(&ctx.id, &batch).await.map_err(|e| {
        if e.kind().is_transient() {
            e
        } else {
            e.with_context(
                "in a source transaction applied in pieces (too large to hold in memory): \
                            it cannot be retried or skipped event by event",
            )
        }
    })?;
    ctx.stats.record_batch(&batch.transactions);
    if !batch.open {
        ctx.after_durable(&batch.state).await?;
    }
    Ok(batch.open)
}

/// Queue a converted transaction or piece of one. A sink that takes no open
/// batches gets the pieces of a transaction merged (held in memory).
pub(super) fn push_piece(ctx: &Ctx, pending: &mut Vec<Converted>, piece: Converted) {
    if !ctx.sink.supports_open_batches() {
        if let Some(last) = pending.last_mut().filter(|c| c.partial) {
            last.tx.events.extend(piece.tx.events);
            last.tx.end_position = piece.tx.end_position;
            last.tx.gtid = piece.tx.gtid;
            last.tx.commit_time = piece.tx.commit_time;
            last.tx.foreign_key_checks &= piece.tx.foreign_key_checks;
            last.schemas.extend(piece.schemas);
            last.partial = piece.partial;
            return;
        }
    }
    pending.push(piece);
}

pub(super) async fn apply_items(ctx: &Ctx, items: Vec<Converted>) -> Result<()> {
    let (batch, schemas) = batch_of(items);
    match ctx.with_retry("apply batch", || ctx.sink.apply(&ctx.id, &batch)).await {
        Ok(()) => {
            ctx.stats.record_batch(&batch.transactions);
            ctx.after_durable(&batch.state).await
        }
        Err(e) if matches!(ctx.policy, ErrorPolicy::Skip(_)) && e.kind().is_per_event() => {
            warn!(error = %e, "batch failed; applying its transactions one by one to skip the failing events");
            for (tx, schemas) in batch.transactions.into_iter().zip(schemas) {
                Box::pin(apply_one_transaction(ctx, Converted { tx, schemas, partial: false })).await?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Apply one transaction; on a per-event error, apply its events one by one
/// and send the failing ones to the dead letter.
pub(super) async fn apply_one_transaction(ctx: &Ctx, item: Converted) -> Result<()> {
    let (batch, _) =
        batch_of(vec![Converted { tx: item.tx.clone(), schemas: item.schemas.clone(), partial: false }]);
    match ctx.with_retry("apply transaction", || ctx.sink.apply(&ctx.id, &batch)).await {
        Ok(()) => {
            ctx.stats.record_batch(&batch.transactions);
            return ctx.after_durable(&batch.state).await;
        }
        Err(e) if e.kind().is_per_event() => {
            if item.tx.events.len() <= 1 {
                if let Some(ev) = item.tx.events.first() {
                    ctx.sink.dead_letter(&ctx.id, ev, &e).await?;
                    ctx.stats.record_dead_letter(ev, &e);
                }
                // Move the checkpoint past the skipped transaction.
                return ctx.save_state(&batch.state).await;
            }
        }
        Err(e) => return Err(e),
    }
    let Converted { tx, schemas, .. } = item;
    let Transaction { sequence, gtid, commit_time, end_position, events, foreign_key_checks, .. } = tx;
    let last = events.len() - 1;
    for (i, ev) in events.into_iter().enumerate() {
        let single = Transaction::new(sequence, end_position.clone(), commit_time, vec![ev])
            .with_gtid(gtid.clone())
            .with_foreign_key_checks(foreign_key_checks);
        let mut state = StateUpdate::default();
        if i == last {
            state.position = Some(end_position.clone());
            state.schemas = schemas.clone();
        }
        let b = ChangeBatch { transactions: vec![single], state, open: false };
        match ctx.with_retry("apply event", || ctx.sink.apply(&ctx.id, &b)).await {
            Ok(()) => {
                ctx.stats.record_batch(&b.transactions);
                ctx.after_durable(&b.state).await?;
            }
            Err(e) if e.kind().is_per_event() => {
                ctx.sink.dead_letter(&ctx.id, &b.transactions[0].events[0], &e).await?;
                ctx.stats.record_dead_letter(&b.transactions[0].events[0], &e);
                ctx.save_state(&b.state).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
