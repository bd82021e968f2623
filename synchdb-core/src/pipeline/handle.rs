//! The handle of a running pipeline: status, control, and the monitor that publishes the status.

use super::*;

/// Every second: the status into the metrics gauges and, when the sink
/// keeps it ([`Sink::publish_status`]), into the target; every 2 s the
/// source's head (for the lag in bytes). Ends after publishing the final status.
pub(super) async fn monitor(shared: Arc<Shared>, sink: Arc<dyn Sink>) {
    let mut done = shared.done.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut last_published: Option<PipelineStatus> = None;
    loop {
        let finished = tokio::select! {
            _ = tick.tick() => false,
            _ = done.wait_for(|d| *d) => true,
        };
        if n % 2 == 0 && !finished {
            if let Some(control) = &shared.source_control {
                match tokio::time::timeout(Duration::from_secs(5), control.head()).await {
                    Ok(Ok(head)) => shared.stats.set_head(head),
                    Ok(Err(e)) => debug!(error = %e, "source head not read"),
                    Err(_) => debug!("source head not read within 5 s"),
                }
            }
        }
        n += 1;
        let status = shared.stats.status(*shared.pause.borrow());
        shared.stats.publish_gauges(&status);
        let changed = last_published.as_ref().is_none_or(|l| status_changed(l, &status));
        if changed {
            match tokio::time::timeout(Duration::from_secs(5), sink.publish_status(&status)).await {
                Ok(Ok(())) => last_published = Some(status),
                Ok(Err(e)) => debug!(error = %e, "status not stored on the sink"),
                Err(_) => debug!("status not stored on the sink within 5 s"),
            }
        }
        if finished {
            return;
        }
    }
}

/// Whether a status differs from the one last stored enough to store it again.
pub(super) fn status_changed(a: &PipelineStatus, b: &PipelineStatus) -> bool {
    a.phase != b.phase
        || a.applied != b.applied
        || a.counters != b.counters
        || a.tables != b.tables
        || a.last_error != b.last_error
        || a.lag_bytes != b.lag_bytes
        || a.lag_seconds != b.lag_seconds
        || a.source != b.source
}

impl PipelineControl {
    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Current statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The whole typed status: phase, positions, lag, counters, errors.
    pub fn status(&self) -> PipelineStatus {
        self.shared.stats.status(self.is_paused())
    }

    /// Set the `metrics` gauges (lag, up, paused, progress) from the current
    /// status; the pipeline does it every second, an exporter may call it
    /// right before a scrape.
    pub fn publish_metrics(&self) {
        let status = self.status();
        self.shared.stats.publish_gauges(&status);
    }

    /// Stop applying changes (the batch in flight finishes); the source then
    /// blocks on the full channel. Nothing is applied until [`resume`](Self::resume).
    pub fn pause(&self) {
        let _ = self.shared.pause.send(true);
    }

    /// Take changes again after [`pause`](Self::pause).
    pub fn resume(&self) {
        let _ = self.shared.pause.send(false);
    }

    /// Whether the pipeline is paused.
    pub fn is_paused(&self) -> bool {
        *self.shared.pause.borrow()
    }

    /// Ask for a graceful stop: the batch in flight is applied and its
    /// checkpoint stored, then the pipeline ends. Returns at once; use
    /// [`PipelineHandle::wait`] or [`finished`](Self::finished) for the end.
    pub fn shutdown(&self) {
        if !self.is_finished() {
            self.shared.stats.set_phase(Phase::Stopping);
        }
        let _ = self.shared.shutdown.send(true);
    }

    /// Whether the pipeline has ended.
    pub fn is_finished(&self) -> bool {
        *self.shared.done.borrow()
    }

    /// Resolve when the pipeline has ended.
    pub async fn finished(&self) {
        let mut done = self.shared.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Move the pipeline to `position` (a binlog file and offset, or a GTID
    /// set): only while paused and following. The source checks the
    /// position first: a purged one ([`ErrorKind::SourcePositionLost`]) or
    /// one after the server's head ([`ErrorKind::Request`]) is refused and
    /// nothing changes. Otherwise the run restarts from there (still
    /// paused); the next batch applied after [`resume`](Self::resume) stores
    /// the new checkpoint. Changes from an earlier position are applied
    /// again: keyed tables end up exact (inserts are upserts), keyless
    /// tables get the rows again. Returns the position the pipeline will
    /// start from.
    pub async fn seek(&self, position: Position) -> Result<Position> {
        let _one = self.shared.seek_lock.lock().await;
        if !self.is_paused() {
            return Err(Error::new(ErrorKind::Request, "seek only while paused: pause the pipeline first"));
        }
        if self.is_finished() {
            return Err(Error::new(ErrorKind::Request, "the pipeline has ended"));
        }
        let stats = self.shared.stats.snapshot();
        let phase = self.shared.stats.phase();
        // A run that restarted (after a seek or a transient failure) from a
        // follow checkpoint is as good as following.
        let resumed_follow = phase == Phase::Starting
            && stats.position.is_some()
            && stats.snapshot_chunks_done >= stats.snapshot_chunks_total;
        if !(phase == Phase::Following || resumed_follow) || !stats.resyncing.is_empty() {
            return Err(Error::new(
                ErrorKind::Request,
                format!(
                    "seek only while following (the pipeline is {}{})",
                    phase,
                    if stats.resyncing.is_empty() { "" } else { ", copying tables again" }
                ),
            ));
        }
        let Some(control) = &self.shared.source_control else {
            return Err(Error::new(ErrorKind::Request, "this source cannot seek"));
        };
        let checked = control.check_position(&position).await?;
        info!(position = %checked, "seek: the pipeline restarts from this position (paused)");
        *self.shared.seek.lock().expect("seek poisoned") = Some(checked.clone());
        self.shared.restart.send_modify(|n| *n += 1);
        Ok(checked)
    }

    /// Copy `tables` (source `database.table` ids) again at a new consistent
    /// point while every other table keeps following, then follow them.
    /// `Ok(true)` when the source has taken the request, `Ok(false)` when it
    /// is queued (the source is busy: paused, snapshotting or inside a
    /// large transaction) and starts later; an error for tables that are not
    /// selected or a source without resnapshot.
    pub async fn resnapshot(&self, tables: Vec<synchdb_types::TableId>) -> Result<bool> {
        if !self.shared.supports_resnapshot {
            return Err(Error::new(ErrorKind::Request, "this source cannot copy tables again"));
        }
        if tables.is_empty() {
            return Err(Error::new(ErrorKind::Request, "resnapshot needs at least one table"));
        }
        if self.is_finished() {
            return Err(Error::new(ErrorKind::Request, "the pipeline has ended"));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.commands.push(SourceCommand::Resnapshot { tables, reply });
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(r)) => r.map(|()| true),
            Ok(Err(_)) => Err(Error::new(ErrorKind::Request, "the source dropped the request (it stopped)")),
            Err(_) => Ok(false),
        }
    }
}

impl PipelineControl {
    /// Add tables to the selection while running: each is copied at a new
    /// consistent point while the others keep following, then followed.
    /// Returns the tables that were newly selected (`Ok(None)`: queued, the
    /// source is busy). The addition lasts for this process: add the tables
    /// to the source options too (`--tables`), or a restart deselects them.
    pub async fn add_tables(
        &self,
        tables: Vec<synchdb_types::TableId>,
    ) -> Result<Option<Vec<synchdb_types::TableId>>> {
        if !self.shared.supports_resnapshot {
            return Err(Error::new(ErrorKind::Request, "this source cannot add tables while running"));
        }
        if tables.is_empty() {
            return Err(Error::new(ErrorKind::Request, "name at least one table to add"));
        }
        if self.is_finished() {
            return Err(Error::new(ErrorKind::Request, "the pipeline has ended"));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.commands.push(SourceCommand::AddTables { tables, reply });
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(r)) => r.map(Some),
            Ok(Err(_)) => Err(Error::new(ErrorKind::Request, "the source dropped the request (it stopped)")),
            Err(_) => Ok(None),
        }
    }
}

impl PipelineHandle {
    /// A clonable control of the pipeline (for an HTTP layer or other tasks).
    pub fn control(&self) -> PipelineControl {
        self.control.clone()
    }

    /// Wait for the end: `Ok` with the final statistics when the source ran
    /// out or shutdown was asked, the error otherwise.
    pub async fn wait(self) -> Result<StatsSnapshot> {
        match self.task.await {
            Ok(Ok(())) => Ok(self.control.stats()),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(Error::internal(format!("pipeline task failed: {join}"))),
        }
    }

    /// Shut down and wait.
    pub async fn stop(self) -> Result<StatsSnapshot> {
        self.control.shutdown();
        self.wait().await
    }
}
