//! The runtime: supervision and restarts, the startup checks, one run from the stored state.

use super::*;

impl Ctx {
    /// Store state that the sink did not store itself.
    pub(super) async fn after_durable(&self, update: &StateUpdate) -> Result<()> {
        if self.sink.state().is_none() && !update.is_empty() {
            self.store.save(&self.id, update).await?;
        }
        if let Some(p) = &update.position {
            self.stats.set_position(p.clone());
            self.applied.send_replace(Some(p.clone()));
        }
        Ok(())
    }

    pub(super) async fn save_state(&self, update: &StateUpdate) -> Result<()> {
        if let Some(store) = self.sink.state() {
            store.save_state(&self.id, update).await?;
        }
        self.after_durable(update).await
    }

    /// Run `op` under the retry part of the error policy.
    pub(super) async fn with_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let Some(retry) = self.policy.retry() else { return Err(e) };
                    let retryable = e.kind().is_transient()
                        || matches!(self.policy, ErrorPolicy::Retry(_))
                            && !e.kind().is_per_event()
                            && !e.kind().is_permanent();
                    if !retryable || attempt >= retry.max_retries {
                        return Err(e);
                    }
                    attempt += 1;
                    let delay = retry.backoff(attempt);
                    warn!(error = %e, attempt, ?delay, "{what} failed, retrying");
                    self.stats.record_retry();
                    self.stats.record_error(&e, true);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Run the pipeline; after a transient failure (a lost connection, a server
/// restart) start it again from the stored state, with backoff, until it
/// ends, is shut down, or fails for good.
pub(super) async fn supervise(
    mut p: Pipeline,
    shared: Arc<Shared>,
    pause: watch::Receiver<bool>,
) -> Result<()> {
    let stats = shared.stats.clone();
    let user_stop = shared.shutdown.clone();
    let mut shutdown = user_stop.subscribe();
    let mut attempt = 0u32;
    let mut prepared = false;
    loop {
        let started = std::time::Instant::now();
        let progress = |s: &StatsSnapshot| (s.position.clone(), s.snapshot_chunks_done, s.transactions);
        let before = progress(&stats.snapshot());
        if !*shutdown.borrow() {
            stats.set_phase(Phase::Starting);
        }
        let outcome = if prepared {
            run(&mut p, &shared, pause.clone()).await
        } else {
            match prepare(&mut p).await {
                Ok(()) => {
                    prepared = true;
                    run(&mut p, &shared, pause.clone()).await
                }
                Err(e) => Err(e),
            }
        };
        let e = match outcome {
            Ok(()) if !*shutdown.borrow() && shared.seek.lock().expect("seek poisoned").is_some() => {
                continue; // a seek ended the run: start again from there
            }
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !e.kind().is_transient() || *shutdown.borrow() {
            return Err(e);
        }
        if started.elapsed() > Duration::from_secs(60) || progress(&stats.snapshot()) != before {
            // It had been running well, or got work done: a new failure starts the backoff again.
            attempt = 0;
        }
        attempt += 1;
        if p.restart.max_retries != u32::MAX && attempt > p.restart.max_retries {
            return Err(e);
        }
        let delay = p.restart.backoff(attempt);
        warn!(error = %e, attempt, ?delay, "pipeline failed with a transient error; restarting from the stored checkpoint");
        stats.record_restart();
        stats.record_error(&e, true);
        stats.set_phase(Phase::Restarting);
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The stored state: the sink's when it keeps it, else the checkpoint store's.
pub(super) async fn load_state(
    sink: &dyn Sink,
    store: &dyn CheckpointStore,
    id: &str,
) -> Result<Option<crate::state::PipelineState>> {
    match sink.state() {
        Some(own) => own.load_state(id).await,
        None => store.load(id).await,
    }
}

/// Before any data moves: when converters are configured, the tables the
/// source discovers are checked by every converter and, converted, by the
/// sink (a misspelt rule, a transform the target cannot take), so a bad
/// configuration fails at start with a clear error.
pub(super) async fn prepare(p: &mut Pipeline) -> Result<()> {
    if p.converters.is_empty() {
        return Ok(());
    }
    let Some(tables) = p.source.discover_tables().await? else { return Ok(()) };
    let state = load_state(p.sink.as_ref(), p.store.as_ref(), &p.id).await?;
    let resumed = state.is_some_and(|s| s.position.is_some());
    for c in &p.converters {
        c.check_source_tables(&tables, resumed)?;
    }
    let mut converted = Vec::new();
    for t in tables {
        if let Some(chain) = convert_chain(&p.converters, &Arc::new(t))? {
            converted.push(chain.last().expect("non-empty").clone());
        }
    }
    p.sink.capabilities().check(p.sink.name(), &converted)?;
    p.sink.check_tables(&converted).await
}

pub(super) async fn run(
    p: &mut Pipeline,
    shared: &Arc<Shared>,
    mut pause: watch::Receiver<bool>,
) -> Result<()> {
    let user_stop = &shared.shutdown;
    // This run's stop signal: the user's shutdown, a seek, or the end of the run.
    let (stop_all, shutdown) = watch::channel(*user_stop.borrow());
    let stop_all = Arc::new(stop_all);
    let forward = {
        let stop_all = stop_all.clone();
        let mut user = user_stop.subscribe();
        let mut restart = shared.restart.subscribe();
        restart.mark_unchanged();
        tokio::spawn(async move {
            tokio::select! {
                r = user.wait_for(|s| *s) => if r.is_err() { return },
                r = restart.changed() => if r.is_err() { return },
            }
            let _ = stop_all.send(true);
        })
    };
    let seek = shared.seek.lock().expect("seek poisoned").take();
    let result = run_once(p, shared.stats.clone(), &stop_all, shutdown, &mut pause, seek).await;
    forward.abort();
    result
}

pub(super) async fn run_once(
    p: &mut Pipeline,
    stats: Arc<Stats>,
    stop_all: &Arc<watch::Sender<bool>>,
    shutdown: watch::Receiver<bool>,
    pause: &mut watch::Receiver<bool>,
    seek: Option<Position>,
) -> Result<()> {
    let (applied_tx, applied_rx) = watch::channel(None);
    let ctx = Ctx {
        id: p.id.clone().into(),
        sink: p.sink.clone(),
        store: p.store.clone(),
        stats: stats.clone(),
        policy: p.error_policy.clone(),
        applied: Arc::new(applied_tx),
    };
    let mut state = load_state(p.sink.as_ref(), p.store.as_ref(), &p.id).await?;
    if let Some(to) = seek {
        info!(position = %to, "seek: following from the position asked for");
        match &mut state {
            Some(s) => s.position = Some(to),
            None => {
                state = Some(crate::state::PipelineState {
                    position: Some(to),
                    snapshot: crate::state::SnapshotStatus::Done,
                    schemas: vec![],
                    resync: None,
                    skip_before: vec![],
                })
            }
        }
    }
    if let Some(s) = &state {
        if let Some(pos) = &s.position {
            info!(position = %pos, "resuming from stored checkpoint");
            stats.set_position(pos.clone());
        }
    }

    let (src_tx, mut src_rx) = mpsc::channel(p.channel_capacity);
    let source_ctx = SourceContext {
        pipeline_id: p.id.clone(),
        state,
        sender: src_tx,
        shutdown: shutdown.clone(),
        commands: p.commands.clone(),
        applied: applied_rx,
    };
    let mut source = std::mem::replace(&mut p.source, Box::new(Taken));
    let source_name = source.name().to_string();
    let source_task = tokio::spawn(
        async move {
            let r = source.run(source_ctx).await;
            (source, r)
        }
        .instrument(info_span!("source", name = %source_name)),
    );

    // Applier stage: whole batches, one at a time, behind a bounded channel.
    let (apply_tx, apply_rx) = mpsc::channel::<ApplyItem>(1);
    let applier = tokio::spawn(apply_loop(ctx.clone(), apply_rx).instrument(info_span!("apply")));

    let converters = p.converters.clone();
    let mut snapshot = SnapshotRun::new(p.snapshot_parallelism);
    let mut pending: Vec<Converted> = Vec::new();
    let mut pending_events = 0usize;
    let mut stop = shutdown.clone();
    let mut result: Result<()> = Ok(());
    let mut source_done = false;

    loop {
        if *stop.borrow() || (source_done && pending.is_empty()) {
            break;
        }
        if *pause.borrow() && !source_done {
            tokio::select! {
                biased;
                _ = stop.changed() => continue,
                _ = pause.changed() => continue,
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => continue,
            permit = apply_tx.reserve(), if !pending.is_empty() && !holding(&ctx, &pending) => {
                match permit {
                    Ok(permit) => {
                        permit.send(ApplyItem::Batch(std::mem::take(&mut pending)));
                        pending_events = 0;
                    }
                    Err(_) => break, // the applier ended (with an error, reported below)
                }
            }
            msg = src_rx.recv(), if !source_done && (pending_events < p.batch_size || holding(&ctx, &pending)) => {
                let Some(msg) = msg else { source_done = true; continue };
                let step = handle_message(&ctx, &converters, &mut snapshot, msg, &mut pending, &apply_tx).await;
                match step {
                    Ok(n) => pending_events += n,
                    Err(e) => { result = Err(e); break; }
                }
            }
            _ = pause.changed() => {}
            else => break,
        }
    }

    let graceful = *stop.borrow() || source_done;
    if result.is_ok() && source_done && !*stop.borrow() {
        // The source ended by itself: every chunk it finished must be
        // written; a writer's failure is the pipeline's failure.
        while let Some(done) = snapshot.writers.join_next().await {
            if let Err(e) =
                done.map_err(|e| Error::internal(format!("snapshot writer failed: {e}"))).and_then(|r| r)
            {
                result = Err(e);
                break;
            }
        }
    }
    // Unfinished snapshot chunks are not durable: they are read again on resume.
    snapshot.writers.abort_all();
    if result.is_ok()
        && source_done
        && !pending.is_empty()
        && apply_tx.send(ApplyItem::Batch(std::mem::take(&mut pending))).await.is_err()
    {
        debug!("applier already stopped");
    }
    drop(apply_tx);
    let apply_result = applier.await.map_err(|e| Error::internal(format!("apply task failed: {e}")))?;
    drop(src_rx);
    // Tell the source to stop, whatever ended the pipeline.
    let _ = stop_all.send(true);
    // The source may be blocked on a full channel or mid-read; it stops on
    // the shutdown signal or the closed channel, and is kept for a restart.
    let source_result = match tokio::time::timeout(Duration::from_secs(30), source_task).await {
        Ok(Ok((source, r))) => {
            p.source = source;
            r
        }
        Ok(Err(e)) => Err(Error::internal(format!("source task failed: {e}"))),
        Err(_) => Err(Error::internal("source did not stop within 30 s")),
    };
    // An applier failure first: it is why a dispatcher waiting on it failed.
    apply_result?;
    result?;
    match source_result {
        Err(e) if !(graceful && e.kind() == ErrorKind::Stopped) => Err(e),
        _ => Ok(()),
    }
}

impl SnapshotRun {
    pub(super) fn new(parallelism: usize) -> Self {
        SnapshotRun {
            parallelism: Arc::new(Semaphore::new(parallelism)),
            writers: JoinSet::new(),
            chains: HashMap::new(),
            resync_active: false,
        }
    }
}
