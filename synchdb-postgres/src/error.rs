//! Classifying sqlx errors into [`ErrorKind`]s.

use synchdb_core::{Error, ErrorKind};
use synchdb_types::{BinlogPosition, TableId};

/// Where an SQL statement ran: table, binlog position, and whether it was DDL.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    pub table: Option<TableId>,
    pub position: Option<BinlogPosition>,
    pub ddl: bool,
}

impl Context {
    pub fn schema(table: &TableId) -> Self {
        Context { table: Some(table.clone()), position: None, ddl: true }
    }

    pub fn data(table: &TableId, position: Option<&BinlogPosition>) -> Self {
        Context { table: Some(table.clone()), position: position.cloned(), ddl: false }
    }

    pub fn at(mut self, position: BinlogPosition) -> Self {
        self.position = Some(position);
        self
    }

    pub fn state() -> Self {
        Context::default()
    }
}

/// The kind of a PostgreSQL error by SQLSTATE.
pub(crate) fn kind_of_sqlstate(code: &str, ddl: bool) -> ErrorKind {
    match code {
        // a protocol violation is a message this client should not have sent
        // (retrying sends it again): permanent
        "08P01" if ddl => ErrorKind::SinkSchema,
        "08P01" => ErrorKind::SinkApply,
        // connection exceptions, admin shutdown / crash / cannot connect now,
        // serialization failure, deadlock, insufficient resources, operator intervention
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => ErrorKind::SinkConnection,
        "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01" | "55P03" => ErrorKind::SinkConnection,
        // data exceptions: a value PostgreSQL refuses (too long, out of range, bad input)
        c if c.starts_with("22") => ErrorKind::SinkValue,
        _ if ddl => ErrorKind::SinkSchema,
        // integrity constraint violations, undefined table/column, other
        _ => ErrorKind::SinkApply,
    }
}

/// Turn a sqlx error into a synchdb error with context. Lost connections, I/O errors and
/// pool timeouts are `SinkConnection` (transient: the pipeline retries).
pub(crate) fn sqlx_error(e: sqlx::Error, cx: &Context) -> Error {
    let (kind, message) = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            (kind_of_sqlstate(&code, cx.ddl), format!("PostgreSQL error {code}"))
        }
        // TLS failures retrying cannot cure (a certificate failing verification,
        // a server without TLS, a bad sslrootcert): configuration, not connection.
        sqlx::Error::Io(io) if tls_problem(io).is_some() => {
            (ErrorKind::Config, format!("PostgreSQL TLS: {}", tls_problem(io).unwrap_or_default()))
        }
        sqlx::Error::Tls(_) => (ErrorKind::Config, "PostgreSQL TLS: cannot set up TLS".to_string()),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => (ErrorKind::SinkConnection, "PostgreSQL connection failed".to_string()),
        sqlx::Error::Configuration(_) => (ErrorKind::Config, "PostgreSQL configuration".to_string()),
        _ => (if cx.ddl { ErrorKind::SinkSchema } else { ErrorKind::SinkApply }, "PostgreSQL".to_string()),
    };
    let mut err = Error::new(kind, message).with_source(e);
    if let Some(t) = &cx.table {
        err = err.with_table(t.clone());
    }
    if let Some(p) = &cx.position {
        err = err.with_position(p.clone());
    }
    err
}

/// A TLS handshake failure that retrying cannot cure, described (rustls'
/// errors come wrapped in the I/O error).
fn tls_problem(io: &std::io::Error) -> Option<String> {
    use rustls::Error as E;
    let r = io.get_ref()?.downcast_ref::<rustls::Error>()?;
    match r {
        E::InvalidCertificate(_) | E::NoCertificatesPresented | E::UnsupportedNameType => {
            Some("the server's certificate failed verification (check sslmode and sslrootcert)".into())
        }
        E::PeerIncompatible(_) => Some("the TLS handshake failed".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        assert_eq!(kind_of_sqlstate("57P01", false), ErrorKind::SinkConnection);
        assert_eq!(kind_of_sqlstate("08006", true), ErrorKind::SinkConnection);
        assert_eq!(kind_of_sqlstate("08P01", false), ErrorKind::SinkApply);
        assert_eq!(kind_of_sqlstate("23505", false), ErrorKind::SinkApply);
        assert_eq!(kind_of_sqlstate("42P01", true), ErrorKind::SinkSchema);
        assert_eq!(kind_of_sqlstate("22001", false), ErrorKind::SinkValue);
        let e = sqlx_error(sqlx::Error::PoolTimedOut, &Context::data(&TableId::new("a", "b"), None));
        assert!(e.kind().is_transient());
        assert_eq!(e.table(), Some(&TableId::new("a", "b")));
        let cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = sqlx_error(sqlx::Error::Io(cert), &Context::state());
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("certificate failed verification"), "{e}");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(sqlx_error(sqlx::Error::Io(reset), &Context::state()).kind().is_transient());
    }
}
