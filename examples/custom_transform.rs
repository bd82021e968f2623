//! A user-written Converter: drop a column and lower-case e-mail addresses
//! on their way from MySQL to PostgreSQL.
//!
//! ```text
//! cargo run --example custom_transform -- mysql://USER:PASS@HOST:PORT DB postgres://USER@HOST:PORT/DBNAME
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use synchdb::core::{Converter, Pipeline, Result};
use synchdb::mysql::{MySqlSource, MySqlSourceOptions};
use synchdb::postgres::{PgSink, PgSinkOptions};
use synchdb::types::{Row, TableId, TableSchema, Value};

/// A source schema and its converted form.
type SchemaPair = (Arc<TableSchema>, Arc<TableSchema>);

/// Removes the column `internal_notes` from every table and lower-cases every `email`.
#[derive(Default)]
struct Tidy {
    /// Converted schemas, cached per source table (converters see every event).
    cache: Mutex<HashMap<TableId, SchemaPair>>,
}

impl Converter for Tidy {
    fn name(&self) -> &str {
        "tidy"
    }

    fn convert_table(&self, table: &Arc<TableSchema>) -> Result<Option<Arc<TableSchema>>> {
        let mut cache = self.cache.lock().expect("poisoned");
        if let Some((source, converted)) = cache.get(&table.id) {
            if Arc::ptr_eq(source, table) || **source == **table {
                return Ok(Some(converted.clone()));
            }
        }
        let mut out = (**table).clone();
        out.columns.retain(|c| c.name != "internal_notes");
        let out = Arc::new(out);
        cache.insert(table.id.clone(), (table.clone(), out.clone()));
        Ok(Some(out))
    }

    fn convert_row(&self, table: &Arc<TableSchema>, row: Row) -> Result<Option<Row>> {
        let row = table
            .columns
            .iter()
            .zip(row)
            .filter(|(c, _)| c.name != "internal_notes")
            .map(|(c, v)| match v {
                Value::Text(s) if c.name == "email" => Value::Text(s.to_lowercase()),
                other => other,
            })
            .collect();
        Ok(Some(row))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let source: MySqlSourceOptions =
        args.next().unwrap_or_else(|| "mysql://root@127.0.0.1:3306".into()).parse()?;
    let database = args.next().unwrap_or_else(|| "test".into());
    let target: PgSinkOptions =
        args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into()).parse()?;
    let stats = Pipeline::builder()
        .id("tidy")
        .source(MySqlSource::new(source.database(&database).stop_at_caught_up(true)))
        .converter(Tidy::default())
        .sink(PgSink::connect(target).await?)
        .build()?
        .start()
        .wait()
        .await?;
    println!("{stats}");
    Ok(())
}
