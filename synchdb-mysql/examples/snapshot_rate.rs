//! Snapshot read rate and peak memory for a 10-column mixed table.
//!
//! ```text
//! cargo run --release -p synchdb-mysql --example snapshot_rate [-- ROWS]
//! ```
//!
//! Starts a private MariaDB (synchdb-testkit), fills `bench.mixed` with ROWS
//! rows (default 1,000,000), then snapshots it twice: into a sink that counts
//! and drops the rows (the source's own memory), then into the in-memory sink
//! (which keeps every row). Prints rows/s and the peak RSS (VmHWM) after each.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use synchdb_core::memory::MemorySink;
use synchdb_core::{ChangeBatch, ChunkInfo, Pipeline, Result, RowStream, Sink, StateUpdate};
use synchdb_mysql::{MySqlSource, MySqlSourceOptions, SnapshotMode};
use synchdb_types::{Position, TableId, TableSchema};

/// Counts snapshot rows and keeps nothing.
struct CountingSink;

#[async_trait]
impl Sink for CountingSink {
    fn name(&self) -> &str {
        "counting"
    }
    async fn prepare_snapshot(
        &self,
        _: &str,
        _: &[Arc<TableSchema>],
        _: &[TableId],
        _: &StateUpdate,
    ) -> Result<()> {
        Ok(())
    }
    async fn write_chunk(
        &self,
        _: &str,
        _: &Arc<TableSchema>,
        _: &ChunkInfo,
        _: &Position,
        mut rows: RowStream<'_>,
    ) -> Result<u64> {
        let mut n = 0;
        while let Some(batch) = rows.next().await {
            n += batch?.len() as u64;
        }
        Ok(n)
    }
    async fn finish_snapshot(&self, _: &str, _: &[Arc<TableSchema>], _: &StateUpdate) -> Result<()> {
        Ok(())
    }
    async fn apply(&self, _: &str, _: &ChangeBatch) -> Result<()> {
        Ok(())
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let server = synchdb_testkit::MariaDb::start().expect("start MariaDB");
    let t = Instant::now();
    server
        .exec(&format!(
            "CREATE DATABASE bench; USE bench;
             CREATE TABLE mixed (
               id BIGINT PRIMARY KEY, qty INT NOT NULL, flags INT UNSIGNED, price DECIMAL(12,2),
               ratio DOUBLE, name VARCHAR(40), note TEXT, created DATETIME(6), updated TIMESTAMP(6) NULL,
               state ENUM('new','paid','shipped'));
             INSERT INTO mixed SELECT seq, seq % 1000, seq * 7 % 65536, seq / 100, seq / 7,
               CONCAT('customer-', seq), REPEAT('x', seq % 50),
               '2024-01-01 00:00:00' + INTERVAL seq SECOND, '2024-01-01 00:00:00' + INTERVAL seq MICROSECOND,
               ELT(1 + seq % 3, 'new', 'paid', 'shipped')
             FROM seq_1_to_{rows};
             ANALYZE TABLE mixed;"
        ))
        .expect("fill table");
    eprintln!("filled {rows} rows in {:.1?}", t.elapsed());
    let opts: MySqlSourceOptions = format!("{}/bench?ssl-mode=disabled", server.url()).parse()?;
    let opts = opts.snapshot_mode(SnapshotMode::InitialOnly);
    println!(
        "snapshot of {rows} rows x 10 columns, {} readers, chunks of {} rows",
        opts.get_snapshot_workers(),
        opts.get_chunk_rows()
    );

    let t = Instant::now();
    let stats = Pipeline::builder()
        .id("count")
        .source(MySqlSource::new(opts.clone()))
        .sink(CountingSink)
        .build()?
        .start()
        .wait()
        .await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "counting sink: {} rows in {secs:.2} s = {:.0} rows/s, peak RSS {:.0} MiB",
        stats.snapshot_rows,
        stats.snapshot_rows as f64 / secs,
        peak_rss_mib()
    );

    let sink = MemorySink::new();
    let t = Instant::now();
    let stats = Pipeline::builder()
        .id("memory")
        .source(MySqlSource::new(opts))
        .sink(sink.clone())
        .build()?
        .start()
        .wait()
        .await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "memory sink:   {} rows in {secs:.2} s = {:.0} rows/s, peak RSS {:.0} MiB (the sink holds every row)",
        stats.snapshot_rows,
        stats.snapshot_rows as f64 / secs,
        peak_rss_mib()
    );
    Ok(())
}
