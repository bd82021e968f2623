//! A user-written Sink: every change as one line of JSON on stdout.
//!
//! ```text
//! cargo run --example custom_sink -- mysql://USER:PASS@HOST:PORT DB
//! ```
//! It has no durable state, so each run starts with a snapshot.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use synchdb::core::{ChangeBatch, ChunkInfo, Pipeline, Result, RowStream, Sink, StateUpdate};
use synchdb::mysql::{MySqlSource, MySqlSourceOptions};
use synchdb::types::{Position, TableId, TableSchema};

/// Writes newline-delimited JSON to stdout.
struct JsonLines;

impl JsonLines {
    fn emit(&self, value: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }
}

#[async_trait]
impl Sink for JsonLines {
    fn name(&self) -> &str {
        "json-lines"
    }

    async fn prepare_snapshot(
        &self,
        _: &str,
        tables: &[Arc<TableSchema>],
        _: &[TableId],
        _: &StateUpdate,
    ) -> Result<()> {
        for t in tables {
            self.emit(serde_json::json!({ "table": t.id.to_string(), "schema": t }));
        }
        Ok(())
    }

    async fn write_chunk(
        &self,
        _: &str,
        table: &Arc<TableSchema>,
        _: &ChunkInfo,
        _: &Position,
        mut rows: RowStream<'_>,
    ) -> Result<u64> {
        let mut n = 0;
        while let Some(batch) = rows.next().await {
            for row in batch? {
                let values: Vec<String> = row.iter().map(ToString::to_string).collect();
                self.emit(
                    serde_json::json!({ "table": table.id.to_string(), "op": "snapshot", "row": values }),
                );
                n += 1;
            }
        }
        Ok(n)
    }

    async fn finish_snapshot(&self, _: &str, _: &[Arc<TableSchema>], _: &StateUpdate) -> Result<()> {
        Ok(())
    }

    async fn apply(&self, _: &str, batch: &ChangeBatch) -> Result<()> {
        for tx in &batch.transactions {
            for event in &tx.events {
                self.emit(serde_json::json!({
                    "table": event.table_id().to_string(),
                    "op": event.operation(),
                    "position": event.meta().position.to_string(),
                    "event": event,
                }));
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "mysql://root@127.0.0.1:3306".into());
    let database = args.next().unwrap_or_else(|| "test".into());
    let options: MySqlSourceOptions = url.parse()?;
    let handle = Pipeline::builder()
        .id("json-lines")
        .source(MySqlSource::new(options.database(&database)))
        .sink(JsonLines)
        .build()?
        .start();
    // Follow until Ctrl-C, then stop gracefully.
    let _ = tokio::signal::ctrl_c().await;
    let stats = handle.stop().await?;
    eprintln!("{stats}");
    Ok(())
}
