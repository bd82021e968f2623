//! [`SourceControl`] for MySQL/MariaDB: checks a position an operator
//! seeks to, and reads the server's binlog head for the lag in bytes.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use synchdb_core::{Error, ErrorKind, Result, SourceControl, SourceHead};
use synchdb_types::{BinlogPosition, GtidSet, Position};
use tokio::sync::Mutex;

use crate::binlog::binlog_files;
use crate::errors;
use crate::options::MySqlSourceOptions;

/// Seek checks and the binlog head, on a connection of its own.
pub(crate) struct MySqlControl {
    options: MySqlSourceOptions,
    conn: Mutex<Option<Conn>>,
}

impl MySqlControl {
    pub(crate) fn new(options: MySqlSourceOptions) -> Self {
        MySqlControl { options, conn: Mutex::new(None) }
    }

    /// Run `f` on the cached connection (opened on demand, dropped after an error).
    async fn with_conn<T>(
        &self,
        f: impl for<'c> FnOnce(&'c mut Conn) -> futures::future::BoxFuture<'c, Result<T>> + Send,
    ) -> Result<T> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let (_, conn) = self.options.connect_any().await?;
            *guard = Some(conn);
        }
        let conn = guard.as_mut().expect("connection just opened");
        let r = f(conn).await;
        if r.is_err() {
            *guard = None;
        }
        r
    }
}

/// Event types that sit inside a transaction: a position there is not a
/// place to start from.
fn inside_transaction(event_type: &str, info: &str) -> bool {
    let t = event_type.to_ascii_lowercase();
    t.contains("rows")
        || matches!(t.as_str(), "table_map" | "xid" | "intvar" | "user var" | "rand" | "annotate_rows")
        || (t == "query" && info.trim().eq_ignore_ascii_case("commit"))
}

fn request(message: String, at: &BinlogPosition) -> Error {
    Error::new(ErrorKind::Request, message).with_position(at.clone())
}

async fn check_file_position(conn: &mut Conn, p: &Position) -> Result<Position> {
    let at = &p.binlog;
    let files = binlog_files(conn).await?;
    let Some((_, size)) = files.iter().find(|(f, _)| f == &at.file) else {
        let listed = match (files.first(), files.last()) {
            (Some(a), Some(b)) => format!("the server has {} to {}", a.0, b.0),
            _ => "the server lists no binlog file".to_string(),
        };
        let seq = at.file_sequence();
        let first = files.first().and_then(|(f, _)| BinlogPosition::new(f.clone(), 4).file_sequence());
        let purged = matches!((seq, first), (Some(s), Some(f)) if s < f);
        return Err(if purged {
            Error::new(
                ErrorKind::SourcePositionLost,
                format!("binlog file {} is no longer on the server ({listed}; it was purged)", at.file),
            )
            .with_position(at.clone())
        } else {
            request(format!("binlog file {} is not on the server ({listed})", at.file), at)
        });
    };
    if at.pos < 4 || at.pos > *size {
        return Err(request(format!("position {at} is outside binlog file {} (4 to {size})", at.file), at));
    }
    if at.pos < *size {
        let sql = format!("SHOW BINLOG EVENTS IN '{}' FROM {} LIMIT 1", at.file.replace('\'', "''"), at.pos);
        let row: Option<mysql_async::Row> = conn.query_first(sql).await.map_err(|e| match &e {
            mysql_async::Error::Server(s) if s.code == 1220 => {
                request(format!("position {at} is not the start of a binlog event: {}", s.message), at)
            }
            _ => errors::error("SHOW BINLOG EVENTS failed", e),
        })?;
        if let Some(row) = row {
            let event_type: String = row.get(2).unwrap_or_default();
            let info: String = row.get(5).unwrap_or_default();
            if inside_transaction(&event_type, &info) {
                return Err(request(
                    format!(
                        "position {at} is inside a transaction (a {event_type} event): seek to the start of \
                         one (its GTID or BEGIN event) or to the end of one"
                    ),
                    at,
                ));
            }
        }
    }
    let mut out = Position::new(at.clone());
    out.gtid = match &p.gtid {
        Some(g) => Some(g.clone()),
        None => crate::binlog::gtid_at(conn, at).await?,
    };
    Ok(out)
}

async fn check_gtid_position(conn: &mut Conn, set: &GtidSet) -> Result<Position> {
    let at = BinlogPosition::new("", 0);
    if !matches!(set, GtidSet::MariaDb(_)) {
        return Err(Error::new(
            ErrorKind::Request,
            "seek by GTID needs a MariaDB GTID position (domain-server-sequence); for MySQL give a binlog file:offset",
        ));
    }
    let have: Option<String> = conn
        .query_first("SELECT @@global.gtid_binlog_pos")
        .await
        .map_err(|e| errors::error("cannot read @@gtid_binlog_pos", e))?;
    let head: GtidSet = have.unwrap_or_default().parse().map_err(|e| {
        Error::new(ErrorKind::SourceSetting, "cannot read the server's @@gtid_binlog_pos").with_source(e)
    })?;
    if !head.contains(set) {
        return Err(request(format!("GTID position {set} is after the server's binlog ({head})"), &at));
    }
    let files = binlog_files(conn).await?;
    if let Some((first, _)) = files.first() {
        let start = crate::binlog::gtid_at(conn, &BinlogPosition::new(first.clone(), 4)).await?;
        if let Some(start) = start.filter(|s| !s.is_empty()) {
            if !set.contains(&start) {
                return Err(Error::new(
                    ErrorKind::SourcePositionLost,
                    format!(
                        "GTID position {set} is before the oldest binlog on the server ({first} starts after \
                         {start}; older files were purged)"
                    ),
                ));
            }
        }
    }
    Ok(Position { binlog: at, gtid: Some(set.clone()) })
}

#[async_trait]
impl SourceControl for MySqlControl {
    async fn check_position(&self, position: &Position) -> Result<Position> {
        let p = position.clone();
        self.with_conn(move |conn| {
            Box::pin(async move {
                if !p.binlog.file.is_empty() {
                    return check_file_position(conn, &p).await;
                }
                match &p.gtid {
                    Some(set) if !set.is_empty() => check_gtid_position(conn, set).await,
                    _ => Err(Error::new(
                        ErrorKind::Request,
                        "a position is a binlog file:offset or a MariaDB GTID position",
                    )),
                }
            })
        })
        .await
    }

    async fn head(&self) -> Result<SourceHead> {
        self.with_conn(|conn| {
            Box::pin(async move {
                let files = binlog_files(conn).await?;
                let binlog = crate::binlog::master_position(conn).await?;
                Ok(SourceHead { position: Position::new(binlog), files })
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_boundaries() {
        assert!(!inside_transaction("Gtid", "BEGIN GTID 0-1-5"));
        assert!(!inside_transaction("Format_desc", ""));
        assert!(!inside_transaction("Query", "CREATE TABLE t (id int)"));
        assert!(inside_transaction("Table_map", "table_id: 33 (d.t)"));
        assert!(inside_transaction("Write_rows_v1", ""));
        assert!(inside_transaction("Xid", "COMMIT /* xid=5 */"));
        assert!(inside_transaction("Query", "COMMIT"));
        assert!(inside_transaction("Annotate_rows", "INSERT ..."));
    }
}
