//! PostgreSQL sink of synchdb: type mapping, table and index creation, `COPY` bulk
//! load, batched idempotent change apply, and checkpoints stored in the same
//! transaction as the data they cover.
//!
//! - [`PgSinkOptions`] configures the connection (a `postgres://` URL, TLS with
//!   `sslmode`), the pool, where tables go ([`SchemaNaming`]), the zero-date policy,
//!   type overrides and the [`ApplyMode`].
//! - [`PgSink`] implements [`synchdb_core::Sink`] with `stores_state() == true`: the
//!   resume position, snapshot progress and tracked schemas live in the `synchdb`
//!   schema of the target database and are written in the transaction of each batch
//!   or chunk, so after a crash data and checkpoint always agree.
//!
//! The type mapping is documented in `TYPEMAP.md` (and in the `typemap` module).
//!
//! What the replica does about things the binlog does not say:
//! - foreign keys are created `DEFERRABLE INITIALLY DEFERRED` with the source's
//!   ON UPDATE / ON DELETE actions, so InnoDB cascades (not in the binlog) are redone by
//!   PostgreSQL, and apply order inside a batch never fails a correct batch; they are
//!   `NOT VALID`, so rows the source already holds with dangling references are kept;
//! - a source transaction run with `FOREIGN_KEY_CHECKS=0` ([`Transaction::foreign_key_checks`])
//!   is applied with `session_replication_role = replica`: no checks and no cascades, as
//!   InnoDB did (needs a superuser or `GRANT SET ON PARAMETER session_replication_role`);
//!   `TRUNCATE` of a referenced table becomes `DELETE` the same way;
//! - no triggers are created: source triggers' effects are in the binlog already.
//!
//! [`Transaction::foreign_key_checks`]: synchdb_types::Transaction::foreign_key_checks
//!
//! ```no_run
//! use synchdb_postgres::{PgSink, PgSinkOptions};
//! # async fn demo() -> synchdb_core::Result<()> {
//! let options: PgSinkOptions = "postgres://postgres@127.0.0.1:5432/replica".parse()?;
//! let sink = PgSink::connect(options.pool_size(4)).await?;
//! let pipeline = synchdb_core::Pipeline::builder()
//!     .id("orders")
//!     .source(synchdb_core::memory::MemorySource::new(vec![]))
//!     .sink(sink)
//!     .build()?;
//! pipeline.start().wait().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// `synchdb_core::Error` (the error type of every Sink method) is 152 bytes.
#![allow(clippy::result_large_err)]

mod apply;
mod binary;
mod copy;
mod ddl;
mod error;
mod options;
mod parallel;
mod sink;
mod state;
mod typemap;
mod verify;

pub use options::{
    ApplyMode, CopyFormat, PgSinkOptions, SchemaNaming, SslMode, ZeroDatePolicy, DEFAULT_ACQUIRE_TIMEOUT,
    DEFAULT_COPY_BUFFER_BYTES, DEFAULT_POOL_SIZE, DEFAULT_STATE_SCHEMA, DEFAULT_URL, MAX_IDENTIFIER_BYTES,
};
pub use sink::PgSink;
pub use typemap::pg_type_for;

#[doc(hidden)]
pub mod bench {
    //! Hot paths exposed for the micro-benchmarks (`cargo bench -p synchdb-postgres`); not a stable API.

    use synchdb_core::Result;
    use synchdb_types::{Row, TableSchema};

    /// A source table mapped with the default options, encoding rows as the sink does.
    pub struct Encoder {
        pt: crate::ddl::PgTable,
        zero: crate::ZeroDatePolicy,
        scratch: String,
    }

    impl Encoder {
        /// Map `table` with `PgSinkOptions::default()`.
        pub fn new(table: &TableSchema) -> Result<Encoder> {
            let opts = crate::PgSinkOptions::default();
            Ok(Encoder {
                pt: crate::ddl::PgTable::build(table, &opts, false)?,
                zero: crate::ZeroDatePolicy::MinusInfinity,
                scratch: String::new(),
            })
        }

        /// Append `row` as one COPY text line (the snapshot path).
        pub fn copy_row(&mut self, row: &Row, out: &mut Vec<u8>) -> Result<()> {
            crate::copy::encode_row(row, &self.pt, self.zero, &mut self.scratch, out)
        }

        /// Encode `row` as the text parameters set-based apply binds.
        pub fn params(&self, row: &Row) -> Result<Vec<Option<String>>> {
            row.iter()
                .zip(&self.pt.columns)
                .map(|(v, c)| crate::typemap::encode_param(v, c, self.zero, &self.pt.id))
                .collect()
        }

        /// Positions of the row identity (key) columns.
        pub fn key(&self) -> &[usize] {
            &self.pt.key
        }
    }
}
