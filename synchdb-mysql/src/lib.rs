//! MySQL/MariaDB source of synchdb: preflight checks, schema discovery, a
//! consistent parallel resumable snapshot, then binlog follow mode.
//!
//! ```no_run
//! use synchdb_core::{memory::MemorySink, Pipeline};
//! use synchdb_mysql::{MySqlSource, MySqlSourceOptions, SnapshotMode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> synchdb_core::Result<()> {
//! let options: MySqlSourceOptions = "mysql://repl:secret@127.0.0.1:3306/shop".parse()?;
//! let options = options.tables("!shop.audit_*").snapshot_mode(SnapshotMode::InitialOnly);
//! let sink = MemorySink::new();
//! let stats = Pipeline::builder()
//!     .id("shop")
//!     .source(MySqlSource::new(options))
//!     .sink(sink.clone())
//!     .build()?
//!     .start()
//!     .wait()
//!     .await?;
//! println!("{} rows", stats.snapshot_rows);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod binlog;
mod charset;
mod charset_tables;
mod control;
mod ddl;
mod decode;
mod defaults;
mod discovery;
mod errors;
mod filter;
#[doc(hidden)]
pub mod fuzzing;
mod options;
mod preflight;
mod snapshot;
mod source;
mod table_lock;

pub use filter::TableFilter;
pub use options::{
    server_id_for_pipeline, MySqlSourceOptions, SnapshotMode, TlsMode, UnloggedChanges, DEFAULT_BATCH_ROWS,
    DEFAULT_CHUNK_ROWS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_PORT, DEFAULT_SERVER_ID,
};
pub use source::MySqlSource;

#[doc(hidden)]
pub mod bench {
    //! Hot paths exposed for the micro-benchmarks (`cargo bench -p synchdb-mysql`); not a stable API.

    /// The one value decoder (snapshot and binlog), with the error as text.
    pub fn decode_value(
        column: &synchdb_types::ColumnSchema,
        value: mysql_async::Value,
    ) -> Result<synchdb_types::Value, String> {
        crate::decode::decode_value(column, value).map_err(|e| e.message)
    }
}
