//! Resync in follow mode: copy some tables again at a new consistent point
//! while the binlog keeps being followed for the others.
//!
//! A resync of tables `T` starts at a transaction boundary `X`:
//!
//! 1. A consistent snapshot of just `T` is opened at the server's current
//!    position `P` (`P >= X`); [`SourceMessage::ResyncStarted`] goes out (the
//!    pipeline applies everything before it, then empties `T` and drops the
//!    foreign keys that involve them); a task reads `T`'s chunks and ends
//!    with [`SourceMessage::ResyncFinished`].
//! 2. The follower goes on from `X`. `T` are hidden: their row events and the
//!    statements about them before `P` are skipped (the copy holds their
//!    effect). Tables linked to `T` by foreign keys (the *blocked* set) are
//!    followed as usual before `P`.
//! 3. The first event at or after `P` that touches the blocked set waits for
//!    the copy, then [`SourceMessage::ResyncJoined`] goes out (the pipeline
//!    creates the foreign keys again) and `T` are tracked with the schemas
//!    the copy read. A boundary at or after `P` joins as soon as the copy is
//!    done, without waiting.
//!
//! The pipeline stores the resync with its data, so a restart either starts
//! the copy again (not every row was durable) or only joins.

use std::collections::HashSet;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use synchdb_core::{Error, ErrorKind, Result, ResyncState, SourceCommand, SourceMessage};
use synchdb_types::{
    BinlogPosition, ChangeEvent, EventMeta, Position, SchemaChange, SchemaChangeEvent, TableId, TableSchema,
    Transaction,
};
use tracing::{info, warn};

use super::{Flow, Follower};
use crate::snapshot;

/// Most times in a row a copy starts again because its tables changed under it.
const MAX_CHANGED_RESTARTS: u32 = 10;

/// A resync whose copy started (or finished before a restart).
pub(super) struct ActiveResync {
    /// The tables' schemas at `position`.
    pub(super) tables: Vec<TableSchema>,
    /// Where the copy reads them.
    pub(super) position: Position,
    /// The tables and those linked to them by foreign keys.
    pub(super) blocked: HashSet<TableId>,
    /// The copy; `None` when it finished in an earlier run.
    pub(super) task: Option<tokio::task::JoinHandle<Result<bool>>>,
    /// Why.
    pub(super) reason: String,
}

impl ActiveResync {
    fn ids(&self) -> Vec<TableId> {
        self.tables.iter().map(|t| t.id.clone()).collect()
    }
}

impl Follower<'_> {
    /// Set up from the stored state: a resync whose rows are durable only has
    /// to join; one whose copy was interrupted starts again.
    pub(super) fn resume_resync(&mut self, stored: Option<ResyncState>) {
        let Some(r) = stored else { return };
        let ids: Vec<TableId> = r.tables.iter().map(|t| t.id.clone()).collect();
        self.schemas.hide(&ids);
        if r.loaded {
            let blocked = self.schemas.foreign_key_closure(&ids, &r.tables);
            info!(tables = ids.len(), position = %r.position, "resync: rows copied before the restart; joining when the binlog reaches its position");
            self.resync = Some(ActiveResync {
                tables: r.tables,
                position: r.position,
                blocked,
                task: None,
                reason: r.reason,
            });
        } else {
            info!(tables = ids.len(), "resync: interrupted before every row was durable; copying again");
            self.request_resync(ids, format!("{} (started again after a restart)", r.reason));
        }
    }

    /// Take operators' requests: a resnapshot of selected tables becomes a
    /// resync, started at once when between transactions (else at the next
    /// boundary).
    pub(super) async fn take_commands(&mut self) -> Result<Flow> {
        let mut asked = false;
        for command in self.ctx.commands.take_all() {
            match command {
                SourceCommand::Resnapshot { tables, reply } => match self.check_resnapshot(tables).await {
                    Ok(ids) => {
                        info!(tables = ?ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "resnapshot asked for: the tables are copied again while the others follow");
                        self.request_resync(ids, "resnapshot asked for by an operator".into());
                        asked = true;
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                SourceCommand::AddTables { tables, reply } => match self.add_tables(tables).await {
                    Ok(new) => {
                        if !new.is_empty() {
                            info!(tables = ?new.iter().map(ToString::to_string).collect::<Vec<_>>(),
                                "added to the selection: copied while the others follow (until a restart; add them to the options to keep them)");
                            self.request_resync(new.clone(), "added to the selection".into());
                            asked = true;
                        }
                        let _ = reply.send(Ok(new));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                other => {
                    warn!(?other, "source command not supported; ignored");
                }
            }
        }
        if asked && self.tx.is_none() {
            return self.resync_at_boundary().await;
        }
        Ok(Flow::Continue)
    }

    /// Select tables that exist on the source; returns those not selected before.
    async fn add_tables(&mut self, tables: Vec<TableId>) -> Result<Vec<TableId>> {
        let mut checked = Vec::new();
        for mut id in tables {
            self.info.fold_table(&mut id, &|x| self.schemas.find_ci(x));
            if self.schemas.get(&id).is_some() || self.schemas.is_hidden(&id) || checked.contains(&id) {
                continue;
            }
            if !self.exists_on_source(&id).await? {
                return Err(Error::new(
                    ErrorKind::Request,
                    format!("table {id} does not exist on the source"),
                )
                .with_table(id));
            }
            checked.push(id);
        }
        // All or nothing: check every pattern before selecting any.
        let before = self.schemas.filter().clone();
        for id in &checked {
            if let Err(e) = self.schemas.select(id) {
                self.schemas.set_filter(before);
                return Err(e);
            }
        }
        Ok(checked)
    }

    async fn exists_on_source(&mut self, id: &TableId) -> Result<bool> {
        let conn = self.side.get().await?;
        let exists: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (id.database.clone(), id.table.clone()),
            )
            .await
            .map_err(|e| crate::errors::error("reading the source catalog failed", e))?;
        Ok(exists.is_some())
    }

    /// The tables of a resnapshot request as tracked (names matched without
    /// regard to case where the server does): followed, being copied, or
    /// selected by the options and present on the source.
    async fn check_resnapshot(&mut self, tables: Vec<TableId>) -> Result<Vec<TableId>> {
        let mut out = Vec::new();
        for mut id in tables {
            self.info.fold_table(&mut id, &|x| self.schemas.find_ci(x));
            let id = if self.schemas.get(&id).is_some() || self.schemas.is_hidden(&id) {
                id
            } else if self.schemas.filter().matches(&id) {
                if !self.exists_on_source(&id).await? {
                    return Err(Error::new(
                        ErrorKind::Request,
                        format!("table {id} does not exist on the source"),
                    )
                    .with_table(id));
                }
                id
            } else {
                return Err(Error::new(
                    ErrorKind::Request,
                    format!("table {id} is not selected by this pipeline (--databases/--tables)"),
                )
                .with_table(id));
            };
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Ask for a resync of `ids`; it starts at the next transaction boundary
    /// (after the one in progress, if any).
    pub(super) fn request_resync(&mut self, ids: Vec<TableId>, reason: String) {
        self.schemas.hide(&ids);
        self.resync_requests.push((ids, reason));
    }

    /// Whether the event at `at` of table `id` must wait for the resync to join.
    pub(super) fn must_join_before(&self, id: &TableId, at: &BinlogPosition) -> bool {
        self.resync.as_ref().is_some_and(|r| r.blocked.contains(id) && *at >= r.position.binlog)
    }

    /// At a transaction boundary: join a resync whose copy is done once the
    /// binlog reached its position, and start requested ones.
    pub(super) async fn resync_at_boundary(&mut self) -> Result<Flow> {
        loop {
            if self.resync.is_none() && !self.resync_requests.is_empty() {
                if let Flow::Stop = self.start_resync().await? {
                    return Ok(Flow::Stop);
                }
            }
            // Stopping when caught up: the resync is part of catching up.
            if let (Some(r), Some(stop)) = (&self.resync, &mut self.stop_at) {
                if r.position.binlog > *stop {
                    *stop = r.position.binlog.clone();
                }
            }
            let stopping = self.stop_at.as_ref().is_some_and(|t| self.resume.binlog >= *t);
            let ready = self.resync.as_ref().is_some_and(|r| {
                self.resume >= r.position && (stopping || r.task.as_ref().is_none_or(|t| t.is_finished()))
            });
            if !ready {
                return Ok(Flow::Continue);
            }
            if let Flow::Stop = self.join_resync().await? {
                return Ok(Flow::Stop);
            }
            if self.resync_requests.is_empty() {
                return Ok(Flow::Continue);
            }
        }
    }

    /// Start the requested resyncs as one.
    async fn start_resync(&mut self) -> Result<Flow> {
        let mut ids: Vec<TableId> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        for (tables, reason) in std::mem::take(&mut self.resync_requests) {
            for t in tables {
                if !ids.contains(&t) {
                    ids.push(t);
                }
            }
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        let reason = reasons.join("; ");
        let opts = self.side.opts.clone();
        let mut attempt = 0;
        let copy = loop {
            match snapshot::start_resync_copy(&opts, self.preflight, self.ctx, &ids, &reason).await {
                Ok(c) => break c,
                Err(e) if self.ctx.is_shutdown() => {
                    warn!(error = %e, "resync not started: shutting down");
                    return Ok(Flow::Stop);
                }
                // Dropped, renamed or altered between the copy's catalog read and its first rows.
                Err(e) if crate::errors::table_changed_in(&e) && attempt < MAX_CHANGED_RESTARTS => {
                    attempt += 1;
                    warn!(error = %e, "resync: a table changed on the source as the copy started; starting it again");
                }
                Err(e) => return Err(e),
            }
        };
        let Some(copy) = copy else {
            warn!(tables = ?ids, "resync: the tables no longer exist; dropped on the target");
            for id in &ids {
                self.schemas.unhide(id);
            }
            if let Flow::Stop = self.drop_gone(ids).await? {
                return Ok(Flow::Stop);
            }
            // A copy of these tables may have been announced before (one that
            // failed and was started again, or one resumed from the
            // checkpoint): with nothing left to copy, the stored resync ends
            // here, or the pipeline would wait for it forever.
            let ended = SourceMessage::ResyncJoined { tables: Vec::new(), referencing: Vec::new() };
            return Ok(if self.send(ended).await { Flow::Continue } else { Flow::Stop });
        };
        let gone: Vec<TableId> =
            ids.iter().filter(|id| !copy.tables.iter().any(|t| &t.id == *id)).cloned().collect();
        for id in &gone {
            warn!(table = %id, "resync: the table no longer exists; dropped on the target");
            self.schemas.unhide(id);
        }
        if let Flow::Stop = self.drop_gone(gone).await? {
            return Ok(Flow::Stop);
        }
        let copied: Vec<TableId> = copy.tables.iter().map(|t| t.id.clone()).collect();
        let blocked = self.schemas.foreign_key_closure(&copied, &copy.tables);
        self.resync = Some(ActiveResync {
            tables: copy.tables,
            position: copy.position,
            blocked,
            task: Some(copy.task),
            reason,
        });
        Ok(Flow::Continue)
    }

    /// Tables to copy again that no longer exist on the source: the replica
    /// must not keep them either (a statement applied before may have made
    /// them there). One transaction at the current position.
    async fn drop_gone(&mut self, ids: Vec<TableId>) -> Result<Flow> {
        if ids.is_empty() {
            return Ok(Flow::Continue);
        }
        self.sequence += 1;
        let time = chrono::Utc::now();
        let meta = EventMeta {
            position: self.resume.binlog.clone(),
            commit_time: time,
            tx: self.sequence,
            index: 0,
        };
        let events = ids
            .into_iter()
            .enumerate()
            .map(|(i, table)| {
                ChangeEvent::Schema(Box::new(SchemaChangeEvent {
                    change: SchemaChange::DropTable { table },
                    schema_after: None,
                    ddl: "(resync: the table no longer exists on the source)".into(),
                    meta: EventMeta { index: i as u32, ..meta.clone() },
                }))
            })
            .collect();
        let tx = Transaction::new(self.sequence, self.resume.clone(), time, events);
        if !self.send(SourceMessage::Transaction(tx)).await {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Wait for the copy (if it runs), then join: the tables are tracked
    /// again and the pipeline restores their foreign keys. A copy that failed
    /// transiently (a lost connection, its table changed under it) starts
    /// again at a new point instead, joined when the binlog reaches that.
    pub(super) async fn join_resync(&mut self) -> Result<Flow> {
        let Some(active) = self.resync.as_mut() else { return Ok(Flow::Continue) };
        if let Some(task) = active.task.as_mut() {
            let mut shutdown = self.ctx.shutdown.clone();
            let outcome = tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return Ok(Flow::Stop),
                r = task => r.map_err(|e| Error::internal(format!("resync copy task failed: {e}")))?,
            };
            active.task = None;
            match outcome {
                Ok(true) => {}
                Ok(false) => return Ok(Flow::Stop),
                Err(e) if e.kind().is_transient() => {
                    let ids = active.ids();
                    let reason = active.reason.clone();
                    if crate::errors::table_changed_in(&e) {
                        // A table that keeps changing is copied again; one
                        // that fails the same way at every new point is a bug.
                        self.resync_restarts += 1;
                        if self.resync_restarts > MAX_CHANGED_RESTARTS {
                            return Err(Error::new(
                                ErrorKind::SourceSchema,
                                format!(
                                    "resync: {} (the copy failed {MAX_CHANGED_RESTARTS} times in a row)",
                                    e.message()
                                ),
                            ));
                        }
                    }
                    warn!(error = %e, "resync copy failed; starting it again");
                    self.resync = None;
                    self.request_resync(ids, reason);
                    // The new copy reads at a later point: it joins when the binlog
                    // gets there (joining now would apply the changes between here
                    // and there a second time).
                    return self.start_resync().await;
                }
                Err(e) => return Err(e),
            }
        }
        let active = self.resync.take().expect("active resync");
        self.resync_restarts = 0;
        let ids = active.ids();
        self.schemas.reveal(&active.tables);
        let referencing: Vec<Arc<TableSchema>> =
            self.schemas.referencing(&ids).into_iter().filter(|t| !ids.contains(&t.id)).collect();
        let tables: Vec<Arc<TableSchema>> = active.tables.into_iter().map(Arc::new).collect();
        info!(tables = ids.len(), at = %self.resume, "resync: the copied tables are followed again");
        if !self.send(SourceMessage::ResyncJoined { tables, referencing }).await {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}
