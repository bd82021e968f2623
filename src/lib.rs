//! synchdb: replicate MySQL/MariaDB into PostgreSQL, embedded in your program.
//!
//! This crate re-exports the workspace's crates under one name:
//! [`types`] (the change-event model), [`core`] (the Source/Converter/Sink
//! contracts and the pipeline runtime), [`mysql`] (the MySQL/MariaDB source)
//! and [`postgres`] (the PostgreSQL sink).
//!
//! ```no_run
//! use synchdb::core::Pipeline;
//! use synchdb::mysql::{MySqlSource, MySqlSourceOptions};
//! use synchdb::postgres::{PgSink, PgSinkOptions};
//!
//! # #[tokio::main]
//! # async fn main() -> synchdb::core::Result<()> {
//! let source: MySqlSourceOptions = "mysql://repl:secret@127.0.0.1:3306".parse()?;
//! let target: PgSinkOptions = "postgres://postgres@127.0.0.1:5432/replica".parse()?;
//! let stats = Pipeline::builder()
//!     .id("shop")
//!     .source(MySqlSource::new(source.database("shop")?))
//!     .sink(PgSink::connect(target).await?)
//!     .build()?
//!     .start()
//!     .wait()
//!     .await?;
//! println!("{stats}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use synchdb_core as core;
pub use synchdb_mysql as mysql;
pub use synchdb_postgres as postgres;
pub use synchdb_types as types;
