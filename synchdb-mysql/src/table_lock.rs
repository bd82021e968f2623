//! Non-transactional tables in a consistent copy.
//!
//! A consistent snapshot (`START TRANSACTION WITH CONSISTENT SNAPSHOT`) only
//! freezes transactional tables: MyISAM, Aria, MEMORY, CSV, ARCHIVE or MERGE
//! tables are read as they are when the read happens. Written during a copy,
//! such a table's rows would not match the copy's position, and the changes
//! after the position, applied by follow mode, would apply a second time (a
//! keyless table got rows twice).
//!
//! So the copy takes `LOCK TABLES ... READ` on them, on a connection of its
//! own, at its consistent point (while `FLUSH TABLES WITH READ LOCK` holds
//! every write, or before the snapshot starts without it): from then on they
//! cannot change until read, and their rows are exactly those at the copy's
//! position. Their chunks are read first and the lock is released as soon as
//! the last of them is read; writers of those tables wait meanwhile (as under
//! `mysqldump --lock-tables`). A user without the `LOCK TABLES` privilege gets
//! the previous behaviour with a warning naming the tables.
//!
//! The copy's own reads of those tables are `SELECT HIGH_PRIORITY`: with
//! table-level locking a waiting writer (blocked by the READ lock) would
//! otherwise queue every new reader behind it, and the copy would wait for a
//! writer that waits for the copy.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};
use synchdb_core::{ChunkInfo, Result};
use synchdb_types::TableId;
use tracing::{debug, info, warn};

use crate::filter::TableFilter;
use crate::options::MySqlSourceOptions;

/// The base tables of `databases` that `filter` selects and whose engine is
/// not transactional (`information_schema.ENGINES.TRANSACTIONS <> 'YES'`).
/// The query names the databases, so that a copy (which may run it inside
/// the global read lock) does not make the server open every table it has.
pub(crate) async fn non_transactional(
    conn: &mut Conn,
    filter: &TableFilter,
    databases: &[String],
) -> Result<Vec<TableId>> {
    if databases.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; databases.len()].join(",");
    let rows: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.TABLES t \
                 JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE \
                 WHERE t.TABLE_SCHEMA IN ({marks}) AND t.TABLE_TYPE = 'BASE TABLE' AND e.TRANSACTIONS <> 'YES'"
            ),
            databases.iter().map(|d| My::from(d.as_str())).collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| crate::errors::error("listing non-transactional tables", e))?;
    Ok(rows.into_iter().map(|(d, t)| TableId::new(d, t)).filter(|id| filter.matches(id)).collect())
}

/// After a copy's reader first read `id`, a table that was transactional at
/// the copy's point (not in `plain`): whether it still is. The reader's
/// metadata lock now holds the table it read until the copy ends, so this
/// names that table. A table renamed or dropped after the point and replaced
/// by a non-transactional table (or a view) of the same name is read without
/// error inside the consistent snapshot, though its rows are not those at the
/// point (InnoDB refuses a replacement of its own, error 1412); such a read
/// is a table changed under the copy (the copy starts again).
pub(crate) async fn check_still_transactional(conn: &mut Conn, id: &TableId) -> Result<()> {
    let row: Option<(String, Option<String>, Option<String>)> = conn
        .exec_first(
            "SELECT t.TABLE_TYPE, t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES t \
             LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE \
             WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?",
            (id.database.as_str(), id.table.as_str()),
        )
        .await
        .map_err(|e| crate::errors::error(format!("checking the engine of {id} after reading it"), e))?;
    let now = match row {
        Some((kind, _, _)) if kind != "BASE TABLE" => format!("a {} now", kind.to_lowercase()),
        Some((_, _, Some(t))) if t == "YES" => return Ok(()),
        Some((_, engine, _)) => {
            format!("a non-transactional {} table now", engine.as_deref().unwrap_or("(unknown engine)"))
        }
        None => "gone now".to_string(),
    };
    let cause = synchdb_core::Error::new(
        synchdb_core::ErrorKind::SourceSchema,
        format!(
            "{id} was a transactional table at the copy's point and is {now}: it was replaced after that \
             point, and the rows read are not those at it"
        ),
    )
    .with_table(id.clone());
    Err(crate::snapshot::changed_under_copy(cause))
}

fn quote(id: &TableId) -> String {
    format!("`{}`.`{}`", id.database.replace('`', "``"), id.table.replace('`', "``"))
}

/// A connection that will take a copy's READ locks, opened before the
/// consistent point so that locking adds no connection set-up to it (the
/// global read lock is held meanwhile).
pub(crate) struct Locker(Conn);

impl Locker {
    /// Open the connection.
    pub(crate) async fn open(opts: &MySqlSourceOptions) -> Result<Locker> {
        let mut conn = opts.connect().await?;
        conn.query_drop("SET SESSION lock_wait_timeout = 60")
            .await
            .map_err(|e| crate::errors::error("session setup of the table-lock connection", e))?;
        Ok(Locker(conn))
    }

    /// Lock `ids` for reading. `Ok(None)` when there is nothing to lock, or
    /// when the server refuses the lock (a missing privilege, a table gone
    /// meanwhile): then a warning says the tables are read without it.
    pub(crate) async fn lock(self, ids: Vec<TableId>) -> Result<Option<TableLock>> {
        if ids.is_empty() {
            return Ok(None);
        }
        let mut conn = self.0;
        let list = ids.iter().map(|id| format!("{} READ", quote(id))).collect::<Vec<_>>().join(", ");
        match conn.query_drop(format!("LOCK TABLES {list}")).await {
            Ok(()) => {
                debug!(tables = ids.len(), "non-transactional tables locked for reading");
                Ok(Some(TableLock {
                    conn: tokio::sync::Mutex::new(Some(conn)),
                    tables: ids.into_iter().collect(),
                    remaining: AtomicUsize::new(0),
                }))
            }
            Err(e) if crate::errors::kind_of(&e).is_transient() => {
                Err(crate::errors::error("LOCK TABLES ... READ of the non-transactional tables", e))
            }
            // Dropped or renamed since the copy listed it (no global read lock
            // held the catalog still): the copy starts again.
            Err(e) if crate::errors::table_changed(&e) => Err(crate::snapshot::changed_under_copy(
                crate::errors::error("LOCK TABLES ... READ of the non-transactional tables", e),
            )),
            Err(e) => {
                let names = ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                warn!(
                    error = %e,
                    "cannot lock the non-transactional tables {names} for the copy (grant LOCK TABLES to the \
                     source user): they are read outside the consistent snapshot, and writes to them during \
                     the copy may be applied twice"
                );
                Ok(None)
            }
        }
    }
}

/// READ locks on a copy's non-transactional tables, held until their chunks are read.
pub(crate) struct TableLock {
    conn: tokio::sync::Mutex<Option<Conn>>,
    tables: HashSet<TableId>,
    /// Chunks of the locked tables still to read.
    remaining: AtomicUsize,
}

impl TableLock {
    /// Whether `id` is locked.
    pub(crate) fn holds(&self, id: &TableId) -> bool {
        self.tables.contains(id)
    }

    /// Count the chunks of the locked tables among `chunks` (those to read)
    /// and put them first; release the lock at once when there are none.
    pub(crate) async fn plan(&self, chunks: &mut [ChunkInfo]) {
        chunks.sort_by_key(|c| !self.holds(&c.table));
        let held = chunks.iter().filter(|c| self.holds(&c.table)).count();
        self.remaining.store(held, Ordering::SeqCst);
        if held == 0 {
            self.release().await;
        }
    }

    /// One chunk of a locked table is read: release the lock after the last one.
    pub(crate) async fn chunk_read(&self) {
        let before = self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if before == Ok(1) {
            self.release().await;
        }
    }

    /// `UNLOCK TABLES` and close the connection (idempotent).
    pub(crate) async fn release(&self) {
        let Some(mut conn) = self.conn.lock().await.take() else { return };
        if let Err(e) = conn.query_drop("UNLOCK TABLES").await {
            // Closing the connection releases the locks too.
            debug!(error = %e, "UNLOCK TABLES failed; closing the connection");
        }
        let _ = conn.disconnect().await;
        info!(tables = self.tables.len(), "non-transactional tables read; their lock is released");
    }
}

impl std::fmt::Debug for TableLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableLock").field("tables", &self.tables).finish_non_exhaustive()
    }
}
