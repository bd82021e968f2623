//! The one place that decides what a MySQL/MariaDB driver error means.
//!
//! Every query of this crate maps its `mysql_async` errors through
//! [`kind_of`]: a lost or refused connection, a server going down, too many
//! connections, a killed session, deadlocks, lock waits and "table definition
//! changed" are transient ([`ErrorKind::SourceConnection`]: retried by
//! reconnecting, or by restarting the pipeline from its checkpoint); missing
//! privileges are [`ErrorKind::SourcePrivilege`]; a purged binlog is
//! [`ErrorKind::SourcePositionLost`]; any other server error is about the
//! statement, i.e. the schema ([`ErrorKind::SourceSchema`]), unless the
//! caller knows better ([`kind_or`]).

use synchdb_core::{Error, ErrorKind};

/// Server error codes after which retrying (with a new connection or a new
/// transaction) can succeed.
const TRANSIENT: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1077, 1078, 1079, 1080, // normal shutdown, got signal, shutdown complete, forcing close
    1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160,
    1161, // aborted connection, network read/write errors
    1205, // lock wait timeout
    1213, // deadlock
    1317, // query execution was interrupted (KILL QUERY)
    1412, // table definition has changed, please retry transaction
    1927, // connection was killed (MariaDB)
    1969, // statement timeout (max_statement_time)
    2002, 2003, 2006, 2013, 2026,
    2055, // client: cannot connect, gone away, lost, SSL, lost at handshake
    4031, // disconnected by the server because of inactivity (MySQL 8)
    4052, // a binlog client with this server id is still connected: the server drops
          // a dead one (a killed earlier run) once it notices, so this passes
];

/// Server error codes of missing privileges or wrong credentials.
const PRIVILEGE: &[u16] = &[1044, 1045, 1142, 1143, 1227, 1370, 3530];

/// Server error codes of a statement about a table that changed under it: no
/// such table (dropped or renamed), unknown column or key (altered), table
/// definition changed (rebuilt after the reading transaction started).
const TABLE_CHANGED: &[u16] = &[1054, 1146, 1176, 1412];

/// Whether `e` says the table read changed on the source meanwhile.
pub(crate) fn table_changed(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if TABLE_CHANGED.contains(&s.code))
}

/// The cause of an error a copy met because its table changed on the source
/// while it read (see `snapshot::changed_under_copy`).
#[derive(Debug)]
pub(crate) struct ChangedUnderCopy(pub(crate) Error);

impl std::fmt::Display for ChangedUnderCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the table changed on the source during the copy: {}", self.0)
    }
}

impl std::error::Error for ChangedUnderCopy {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether a cause of `e` says the table read changed on the source meanwhile
/// (a server error of [`TABLE_CHANGED`], or a copy's [`ChangedUnderCopy`]).
pub(crate) fn table_changed_in(e: &Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<ChangedUnderCopy>() || c.downcast_ref::<mysql_async::Error>().is_some_and(table_changed) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The kind of a driver error; other server errors are `SourceSchema`.
pub(crate) fn kind_of(e: &mysql_async::Error) -> ErrorKind {
    kind_or(e, ErrorKind::SourceSchema)
}

/// The kind of a driver error, `other` for server errors this module does
/// not classify.
pub(crate) fn kind_or(e: &mysql_async::Error, other: ErrorKind) -> ErrorKind {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            1236 => ErrorKind::SourcePositionLost,
            c if PRIVILEGE.contains(&c) => ErrorKind::SourcePrivilege,
            c if TRANSIENT.contains(&c) => ErrorKind::SourceConnection,
            _ => other,
        },
        // I/O, protocol and driver errors: the connection is gone or unusable.
        _ => ErrorKind::SourceConnection,
    }
}

/// `what` failed: an error of the driver error's kind, with it as the cause.
pub(crate) fn error(what: impl Into<String>, e: mysql_async::Error) -> Error {
    Error::new(kind_of(&e), what).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "x".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn a_table_changed_under_a_copy_is_told_through_the_causes() {
        let direct = Error::new(ErrorKind::SourceSchema, "read").with_source(server(1146));
        assert!(table_changed_in(&direct));
        assert!(!table_changed_in(&Error::new(ErrorKind::SourceSchema, "read").with_source(server(1064))));
        let value = Error::new(ErrorKind::SourceValue, "unexpected Date for an int column");
        assert!(!table_changed_in(&value));
        let marked = Error::new(ErrorKind::SourceConnection, "copy").with_source(ChangedUnderCopy(value));
        assert!(table_changed_in(&marked));
        let wrapped = Error::new(ErrorKind::SourceConnection, "again").with_source(marked);
        assert!(table_changed_in(&wrapped));
    }

    #[test]
    fn one_table_of_codes() {
        assert_eq!(kind_of(&server(1053)), ErrorKind::SourceConnection);
        assert_eq!(kind_of(&server(1213)), ErrorKind::SourceConnection);
        assert_eq!(kind_of(&server(1412)), ErrorKind::SourceConnection);
        assert_eq!(kind_of(&server(1927)), ErrorKind::SourceConnection);
        assert_eq!(kind_or(&server(4052), ErrorKind::SourceSetting), ErrorKind::SourceConnection);
        assert_eq!(kind_of(&server(1045)), ErrorKind::SourcePrivilege);
        assert_eq!(kind_of(&server(1236)), ErrorKind::SourcePositionLost);
        assert_eq!(kind_of(&server(1146)), ErrorKind::SourceSchema);
        assert_eq!(kind_or(&server(1193), ErrorKind::SourceSetting), ErrorKind::SourceSetting);
        assert_eq!(
            kind_of(&mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::other("reset")))),
            ErrorKind::SourceConnection
        );
    }
}
