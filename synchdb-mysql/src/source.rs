//! [`MySqlSource`]: the [`Source`] implementation — preflight, then a
//! snapshot as the snapshot mode and the stored state say, then binlog
//! follow mode.
//!
//! | mode | no stored state | snapshot interrupted | snapshot done |
//! |---|---|---|---|
//! | `initial` | snapshot, follow | resume it, follow | follow from the stored position |
//! | `initial_only` | snapshot, stop | resume it, stop | stop |
//! | `no_data` | tables only at the current position, follow | same | follow from the stored position |
//! | `never` | follow from `start_position`, else the current position | follow from the stored position | same |
//! | `always` | snapshot (every table emptied first), follow | same | same |
//!
//! Follow mode resumes with the tracked schemas stored with the state; a
//! new follow start (no stored position) reads them from `information_schema`.

use async_trait::async_trait;
use synchdb_core::{PipelineState, Result, SnapshotStatus, Source, SourceContext, SourceMessage};
use synchdb_types::{Position, TableSchema};
use tracing::info;

use crate::options::{MySqlSourceOptions, SnapshotMode};
use crate::preflight::{self, ServerInfo};
use crate::snapshot::{self, SnapshotOutcome, Start};

/// A MySQL/MariaDB source: snapshot, then binlog follow mode.
///
/// See the crate docs for an example, [`MySqlSourceOptions`] for the
/// settings and [`SnapshotMode`] for when a snapshot runs.
#[derive(Debug, Clone)]
pub struct MySqlSource {
    options: MySqlSourceOptions,
}

impl MySqlSource {
    /// A source with these options.
    pub fn new(options: MySqlSourceOptions) -> Self {
        MySqlSource { options }
    }

    /// The options.
    pub fn options(&self) -> &MySqlSourceOptions {
        &self.options
    }

    /// The current schemas of the tables `options` select, read from
    /// `information_schema` (to validate or explain a mapping before replicating).
    pub async fn discover(options: &MySqlSourceOptions) -> Result<Vec<TableSchema>> {
        options.validate()?;
        let (_, mut conn) = options.connect_any().await?;
        crate::discovery::discover_tables(&mut conn, options.get_table_filter()).await
    }
}

/// What to do after preflight.
#[async_trait]
impl synchdb_core::verify::VerifySource for MySqlSource {
    async fn verify_tables(&self) -> Result<Vec<TableSchema>> {
        MySqlSource::discover(&self.options).await
    }

    async fn verify_read(
        &self,
        ctx: SourceContext,
        request: synchdb_core::verify::ReadRequest,
    ) -> Result<()> {
        let base = &self.options;
        base.validate()?;
        let (host, mut conn) = base.connect_any().await?;
        let opts = base.for_host(host);
        let info: ServerInfo = preflight::check_server(&mut conn).await?;
        drop(conn);
        snapshot::verify_read(&opts, &info, &ctx, request).await
    }
}

enum Plan {
    /// Take a snapshot (fresh or resumed); then follow unless `stop_after`.
    Snapshot { start: Start, stop_after: bool },
    /// Create the tables only, then follow.
    SchemaOnly,
    /// Follow from a position with these schemas (`None`: discover them).
    Follow { from: Option<Position>, schemas: Option<Vec<TableSchema>> },
    /// Nothing to do.
    Stop,
}

fn decide(mode: SnapshotMode, state: Option<&PipelineState>) -> Plan {
    let stored_pos = state.and_then(|s| s.position.clone());
    let snapshot = state.map(|s| &s.snapshot);
    // The stored schemas are those of the checkpoint once a snapshot finished or
    // follow mode started (even none: a database with no tables yet); a state
    // without that mark (an older `never` pipeline) had them read at each start.
    let stored_schemas =
        || state.filter(|s| matches!(s.snapshot, SnapshotStatus::Done)).map(|s| s.schemas.clone());
    let has_state =
        state.is_some_and(|s| s.position.is_some() || !matches!(s.snapshot, SnapshotStatus::NotStarted));
    match mode {
        SnapshotMode::Always => {
            Plan::Snapshot { start: Start::Fresh { restart: has_state }, stop_after: false }
        }
        SnapshotMode::Initial | SnapshotMode::InitialOnly => {
            let stop_after = mode == SnapshotMode::InitialOnly;
            match snapshot {
                Some(SnapshotStatus::InProgress(p)) => Plan::Snapshot {
                    start: Start::Resume {
                        progress: p.clone(),
                        stored: state.map(|s| s.schemas.clone()).unwrap_or_default(),
                    },
                    stop_after,
                },
                Some(SnapshotStatus::Done) if stored_pos.is_some() => {
                    if stop_after {
                        Plan::Stop
                    } else {
                        Plan::Follow { from: stored_pos, schemas: stored_schemas() }
                    }
                }
                _ => Plan::Snapshot { start: Start::Fresh { restart: has_state }, stop_after },
            }
        }
        SnapshotMode::NoData => match (snapshot, stored_pos) {
            (Some(SnapshotStatus::Done), Some(p)) => {
                Plan::Follow { from: Some(p), schemas: stored_schemas() }
            }
            _ => Plan::SchemaOnly,
        },
        SnapshotMode::Never => match stored_pos {
            Some(p) => Plan::Follow { from: Some(p), schemas: stored_schemas() },
            None => Plan::Follow { from: None, schemas: None },
        },
    }
}

#[async_trait]
impl Source for MySqlSource {
    fn name(&self) -> &str {
        "mysql"
    }

    fn control(&self) -> Option<std::sync::Arc<dyn synchdb_core::SourceControl>> {
        Some(std::sync::Arc::new(crate::control::MySqlControl::new(self.options.clone())))
    }

    fn supports_resnapshot(&self) -> bool {
        true
    }

    async fn discover_tables(&mut self) -> Result<Option<Vec<TableSchema>>> {
        MySqlSource::discover(&self.options).await.map(Some)
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        let with_id;
        let base = match self.options.get_configured_server_id() {
            Some(_) => &self.options,
            None => {
                with_id =
                    self.options.clone().server_id(crate::options::server_id_for_pipeline(&ctx.pipeline_id));
                &with_id
            }
        };
        base.validate()?;
        // With failover servers: the first that answers; the snapshot reads
        // one server (its consistent point is that server's position).
        let (host, mut conn) = base.connect_any().await?;
        let active = base.for_host(host);
        let opts = &active;
        if host > 0 {
            info!(server = %format!("{}:{}", opts.get_host(), opts.get_port()), "using a failover source server");
        }
        let info: ServerInfo = preflight::check_server(&mut conn).await?;
        preflight::check_select_databases(&info.grants, opts.get_table_filter())?;
        info!(server = %info.version, mode = %opts.get_snapshot_mode(), "mysql source preflight passed");

        match decide(opts.get_snapshot_mode(), ctx.state.as_ref()) {
            Plan::Stop => Ok(()),
            Plan::Snapshot { start, stop_after } => {
                drop(conn);
                let Some(SnapshotOutcome { position, schemas, skip_before }) =
                    snapshot::run_snapshot(opts, &ctx, &info, start).await?
                else {
                    return Ok(()); // shut down during the snapshot
                };
                if stop_after {
                    return Ok(());
                }
                let skip = skip_before.into_iter().map(|s| (s.table, s.position)).collect();
                crate::binlog::follow(base, host, &info, &ctx, position, schemas, skip, None, Vec::new())
                    .await
            }
            Plan::SchemaOnly => {
                drop(conn);
                let (tables, position) = snapshot::schemas_and_position(opts, &info).await?;
                preflight::check_select(&info.grants, &tables)?;
                ctx.send(SourceMessage::SchemaOnly {
                    tables: tables.iter().cloned().map(std::sync::Arc::new).collect(),
                    position: position.clone(),
                })
                .await?;
                crate::binlog::follow(base, host, &info, &ctx, position, tables, Vec::new(), None, Vec::new())
                    .await
            }
            Plan::Follow { from, schemas } => {
                let stored_resync = ctx.state.as_ref().and_then(|s| s.resync.clone());
                let mut requests = Vec::new();
                let from = match from {
                    Some(p) => Some((p, "stored checkpoint")),
                    None => opts.get_start_position().cloned().map(|p| (p, "configured start position")),
                };
                let (start, schemas) = match (from, schemas) {
                    (Some((p, what)), schemas) => {
                        preflight::check_position_available(&mut conn, &p, what).await?;
                        drop(conn);
                        let schemas = match schemas {
                            Some(s) => {
                                let (s, new) =
                                    reconcile_selection(opts, &ctx, s, stored_resync.as_ref()).await?;
                                if !new.is_empty() {
                                    requests.push((new, "newly selected".to_string()));
                                }
                                s
                            }
                            None => {
                                let tables = snapshot::schemas_and_position(opts, &info).await?.0;
                                ctx.send(SourceMessage::FollowStarted {
                                    tables: tables.iter().cloned().map(std::sync::Arc::new).collect(),
                                    position: p.clone(),
                                })
                                .await?;
                                tables
                            }
                        };
                        (p, schemas)
                    }
                    (None, _) => {
                        drop(conn);
                        let (tables, position) = snapshot::schemas_and_position(opts, &info).await?;
                        ctx.send(SourceMessage::FollowStarted {
                            tables: tables.iter().cloned().map(std::sync::Arc::new).collect(),
                            position: position.clone(),
                        })
                        .await?;
                        (position, tables)
                    }
                };
                info!(position = %start, tables = schemas.len(), "following the binlog");
                // Keyless tables of a resumed snapshot read after the start:
                // their earlier row events are skipped after a restart too.
                let skip: Vec<_> = ctx
                    .state
                    .as_ref()
                    .map(|s| s.skip_before.iter().filter(|p| p.position.is_after(&start)).cloned().collect())
                    .unwrap_or_default();
                let skip = skip.into_iter().map(|s: synchdb_core::SkipPoint| (s.table, s.position)).collect();
                crate::binlog::follow(base, host, &info, &ctx, start, schemas, skip, stored_resync, requests)
                    .await
            }
        }
    }
}

/// Compare the stored (tracked) tables with what the options select now: a
/// table no longer selected stops being followed (left in place on the
/// target); a selected table that is not tracked (a wider selection, or
/// created while the pipeline was stopped) is returned, to be copied while
/// the others follow. Tables of a stored resync are neither.
async fn reconcile_selection(
    opts: &MySqlSourceOptions,
    ctx: &SourceContext,
    mut stored: Vec<TableSchema>,
    resync: Option<&synchdb_core::ResyncState>,
) -> Result<(Vec<TableSchema>, Vec<synchdb_types::TableId>)> {
    let filter = opts.get_table_filter();
    let in_resync =
        |id: &synchdb_types::TableId| resync.is_some_and(|r| r.tables.iter().any(|t| &t.id == id));
    let deselected: Vec<synchdb_types::TableId> =
        stored.iter().filter(|t| !filter.matches(&t.id)).map(|t| t.id.clone()).collect();
    if !deselected.is_empty() {
        for id in &deselected {
            tracing::warn!(table = %id, "no longer selected: its changes are not applied any more; the table is left in place on the target");
        }
        stored.retain(|t| filter.matches(&t.id));
        ctx.send(SourceMessage::TablesDeselected { tables: deselected }).await?;
    }
    let mut conn = opts.connect().await?;
    let current = crate::discovery::discover_tables(&mut conn, filter).await?;
    let new: Vec<synchdb_types::TableId> = current
        .iter()
        .map(|t| t.id.clone())
        .filter(|id| !stored.iter().any(|t| &t.id == id) && !in_resync(id))
        .collect();
    for id in &new {
        info!(table = %id, "selected but not followed yet (a wider selection, or created meanwhile): copied while the others follow");
    }
    Ok((stored, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_core::{SnapshotPlan, SnapshotProgress};
    use synchdb_types::BinlogPosition;

    fn pos() -> Position {
        Position::new(BinlogPosition::new("mysql-bin.000001", 4))
    }

    fn state(snapshot: SnapshotStatus, position: Option<Position>) -> PipelineState {
        let mut s = PipelineState::empty();
        s.position = position;
        s.snapshot = snapshot;
        s
    }

    #[test]
    fn modes_decide_by_state() {
        use SnapshotMode::*;
        assert!(matches!(
            decide(Initial, None),
            Plan::Snapshot { start: Start::Fresh { restart: false }, stop_after: false }
        ));
        let done = state(SnapshotStatus::Done, Some(pos()));
        assert!(matches!(decide(Initial, Some(&done)), Plan::Follow { from: Some(_), .. }));
        assert!(matches!(decide(InitialOnly, Some(&done)), Plan::Stop));
        assert!(matches!(
            decide(Always, Some(&done)),
            Plan::Snapshot { start: Start::Fresh { restart: true }, .. }
        ));
        let progress = SnapshotProgress {
            plan: SnapshotPlan { position: pos(), tables: vec![], chunks: vec![] },
            done: vec![],
        };
        let running = state(SnapshotStatus::InProgress(progress), None);
        assert!(matches!(
            decide(Initial, Some(&running)),
            Plan::Snapshot { start: Start::Resume { .. }, .. }
        ));
        assert!(matches!(
            decide(InitialOnly, Some(&running)),
            Plan::Snapshot { start: Start::Resume { .. }, stop_after: true }
        ));
        assert!(matches!(decide(NoData, None), Plan::SchemaOnly));
        assert!(matches!(decide(NoData, Some(&done)), Plan::Follow { from: Some(_), .. }));
        assert!(matches!(decide(Never, None), Plan::Follow { from: None, schemas: None }));
        assert!(matches!(decide(Never, Some(&done)), Plan::Follow { from: Some(_), .. }));
    }
}
