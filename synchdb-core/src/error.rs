//! The one error type of the pipeline, with a kind that decides retryability.

use std::fmt;

use synchdb_types::{BinlogPosition, TableId};

/// A boxed error from a driver or library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by area. Decides whether the error policy may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad options or a pipeline built wrong.
    Config,
    /// The source server settings do not allow replication (preflight).
    SourceSetting,
    /// Missing privileges on the source.
    SourcePrivilege,
    /// Connection to the source lost or refused (transient).
    SourceConnection,
    /// The resume position is no longer available (binlog purged).
    SourcePositionLost,
    /// The source's history does not contain what was already applied: a
    /// server failed over to lacks transactions of the old one (GTID gap) or
    /// has others in their place.
    SourceDiverged,
    /// A source value could not be decoded.
    SourceValue,
    /// A source schema or DDL statement could not be understood.
    SourceSchema,
    /// Connection to the sink lost or refused (transient).
    SinkConnection,
    /// The sink rejected a change (constraint, type, missing table).
    SinkApply,
    /// The sink could not apply a schema change.
    SinkSchema,
    /// A value cannot be represented in the sink's type.
    SinkValue,
    /// A converter failed on an event.
    Convert,
    /// Loading or storing the checkpoint failed.
    Checkpoint,
    /// A bug: an invariant did not hold.
    Internal,
    /// An operator's request that cannot be carried out (a seek while not
    /// paused, a table that is not selected, an operation the source does
    /// not support). Nothing was changed.
    Request,
    /// The pipeline is stopping or gone, so a message could not be handed
    /// over: not a failure of the work itself (a source returns it when the
    /// pipeline stops under it).
    Stopped,
}

impl ErrorKind {
    /// Whether retrying the same work may succeed (lost connections, timeouts).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::SourceConnection | ErrorKind::SinkConnection)
    }

    /// Whether retrying can never help: settings, privileges, a lost
    /// position, bad configuration, bugs.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorKind::Config
                | ErrorKind::SourceSetting
                | ErrorKind::SourcePrivilege
                | ErrorKind::SourcePositionLost
                | ErrorKind::SourceDiverged
                | ErrorKind::Internal
                | ErrorKind::Request
        )
    }

    /// Whether the error belongs to one event, so that the `skip` policy may
    /// record that event and go on.
    pub fn is_per_event(self) -> bool {
        matches!(
            self,
            ErrorKind::SinkApply
                | ErrorKind::SinkValue
                | ErrorKind::SinkSchema
                | ErrorKind::Convert
                | ErrorKind::SourceValue
        )
    }

    /// The name in metrics labels and JSON: [`as_str`](Self::as_str) in snake case.
    pub fn label(self) -> String {
        self.as_str().replace(' ', "_")
    }

    /// Short lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "configuration",
            ErrorKind::SourceSetting => "source setting",
            ErrorKind::SourcePrivilege => "source privilege",
            ErrorKind::SourceConnection => "source connection",
            ErrorKind::SourcePositionLost => "source position lost",
            ErrorKind::SourceDiverged => "source diverged",
            ErrorKind::SourceValue => "source value",
            ErrorKind::SourceSchema => "source schema",
            ErrorKind::SinkConnection => "sink connection",
            ErrorKind::SinkApply => "sink apply",
            ErrorKind::SinkSchema => "sink schema",
            ErrorKind::SinkValue => "sink value",
            ErrorKind::Convert => "convert",
            ErrorKind::Checkpoint => "checkpoint",
            ErrorKind::Internal => "internal",
            ErrorKind::Request => "request",
            ErrorKind::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with its kind, a message and where it happened: table, column,
/// binlog position (whichever are known), and the underlying cause.
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    table: Option<TableId>,
    column: Option<String>,
    position: Option<BinlogPosition>,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            table: None,
            column: None,
            position: None,
            source: None,
        }))
    }

    /// Attach the underlying cause (kept as the `source()` chain).
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// Add to the message what the error happened in (`message (context)`).
    pub fn with_context(mut self, context: &str) -> Self {
        self.0.message = format!("{} ({context})", self.0.message);
        self
    }

    /// Name the table.
    pub fn with_table(mut self, table: TableId) -> Self {
        self.0.table = Some(table);
        self
    }

    /// Name the column.
    pub fn with_column(mut self, column: impl Into<String>) -> Self {
        self.0.column = Some(column.into());
        self
    }

    /// Name the binlog position (kept if one is already set).
    pub fn with_position(mut self, position: BinlogPosition) -> Self {
        if self.0.position.is_none() {
            self.0.position = Some(position);
        }
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The table, when known.
    pub fn table(&self) -> Option<&TableId> {
        self.0.table.as_ref()
    }

    /// The column, when known.
    pub fn column(&self) -> Option<&str> {
        self.0.column.as_deref()
    }

    /// The binlog position, when known.
    pub fn position(&self) -> Option<&BinlogPosition> {
        self.0.position.as_ref()
    }

    /// Shorthand for a [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// Shorthand for an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    /// `kind error: message (table t, column c, at file:pos): cause`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.0.kind, self.0.message)?;
        let mut ctx = Vec::new();
        if let Some(t) = &self.0.table {
            ctx.push(format!("table {t}"));
        }
        if let Some(c) = &self.0.column {
            ctx.push(format!("column {c}"));
        }
        if let Some(p) = &self.0.position {
            ctx.push(format!("at {p}"));
        }
        if !ctx.is_empty() {
            write!(f, " ({})", ctx.join(", "))?;
        }
        if let Some(s) = &self.0.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_context() {
        let e = Error::new(ErrorKind::SourceValue, "invalid date")
            .with_table(TableId::new("shop", "orders"))
            .with_column("created")
            .with_position(BinlogPosition::new("mysql-bin.000002", 77))
            .with_source(std::io::Error::other("boom"));
        assert_eq!(
            e.to_string(),
            "source value error: invalid date (table shop.orders, column created, at mysql-bin.000002:77): boom"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(!e.kind().is_transient());
        assert!(ErrorKind::SinkConnection.is_transient());
    }
}
