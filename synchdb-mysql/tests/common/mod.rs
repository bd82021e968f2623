//! Shared helpers of the synchdb-mysql integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use synchdb_core::memory::MemorySink;
use synchdb_core::{Pipeline, Result, StatsSnapshot};
use synchdb_mysql::{MySqlSource, MySqlSourceOptions, SnapshotMode};
use synchdb_testkit::{MariaDb, TestDatabase};
use synchdb_types::{Row, TableId, TableSchema};

/// The shared server.
pub fn server() -> &'static MariaDb {
    synchdb_testkit::mariadb()
}

/// A fresh database on the shared server.
pub fn database(prefix: &str) -> TestDatabase {
    server().create_database(prefix).expect("create database")
}

/// Source options for every table of `db`, TLS off, snapshot and stop.
pub fn options(db: &TestDatabase) -> MySqlSourceOptions {
    format!("{}?ssl-mode=disabled", db.url())
        .parse::<MySqlSourceOptions>()
        .expect("options")
        .snapshot_mode(SnapshotMode::InitialOnly)
}

/// Run a pipeline with `opts` into `sink` until the source ends.
pub async fn run(id: &str, opts: MySqlSourceOptions, sink: &MemorySink) -> Result<StatsSnapshot> {
    Pipeline::builder().id(id).source(MySqlSource::new(opts)).sink(sink.clone()).build()?.start().wait().await
}

/// Snapshot rows of `table`, sorted by their first column's text form.
pub fn rows_of(sink: &MemorySink, table: &TableId) -> Vec<Row> {
    let mut rows = sink.data().snapshot_rows.get(table).cloned().unwrap_or_default();
    rows.sort_by_key(|r| r[0].to_string());
    rows
}

/// The schema the sink got for `table`.
pub fn schema_of(sink: &MemorySink, table: &TableId) -> Arc<TableSchema> {
    sink.data().tables.get(table).cloned().unwrap_or_else(|| panic!("no table {table} in the sink"))
}

/// Create a user on the shared server with `grants` (each `GRANT x ON y`),
/// returning its options for `db`.
pub fn limited_user(db: &TestDatabase, name: &str, grants: &[&str]) -> MySqlSourceOptions {
    let s = server();
    let user = format!("{name}_{}", db.name());
    let user: String = user.chars().take(80).collect();
    let mut sql = format!("DROP USER IF EXISTS '{user}'@'%'; CREATE USER '{user}'@'%' IDENTIFIED BY 'pw';");
    for g in grants {
        sql.push_str(&format!("{g} TO '{user}'@'%';"));
    }
    s.exec(&sql).expect("create user");
    format!("mysql://{user}:pw@{}:{}/{}?ssl-mode=disabled", s.host(), s.port(), db.name())
        .parse::<MySqlSourceOptions>()
        .expect("options")
        .snapshot_mode(SnapshotMode::InitialOnly)
}
