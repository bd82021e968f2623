//! The sink's hot paths without a server: COPY text encoding (snapshot) and
//! building a set-based apply batch (each row encoded into text parameters,
//! gathered column-wise into the `text[]` arrays, keys tracked to keep a run
//! free of repeated keys), for the benchmark's 10-column table.
//!
//! `cargo bench -p synchdb-postgres --bench encode`

use std::collections::HashSet;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synchdb_postgres::bench::Encoder;
use synchdb_types::{
    ColumnSchema, ColumnType, Date, DateTime, Decimal, IntWidth, LobSize, Row, TableId, TableSchema, Value,
};

const ROWS: usize = 1_000;

fn table() -> TableSchema {
    let int = |w| ColumnType::Integer { width: w, unsigned: false, display_width: None };
    let mut t = TableSchema::new(
        TableId::new("bench", "big"),
        vec![
            ColumnSchema::new("id", int(IntWidth::Big)),
            ColumnSchema::new("k", int(IntWidth::Int)),
            ColumnSchema::new("name", ColumnType::VarChar { length: 64 }),
            ColumnSchema::new("amount", ColumnType::Decimal { precision: 12, scale: 2, unsigned: false }),
            ColumnSchema::new("created", ColumnType::DateTime { fsp: 6 }),
            ColumnSchema::new("body", ColumnType::Text { size: LobSize::Normal }),
            ColumnSchema::new("flag", int(IntWidth::Tiny)),
            ColumnSchema::new("score", ColumnType::Double { unsigned: false }),
            ColumnSchema::new("attrs", ColumnType::Json),
            ColumnSchema::new("tag", ColumnType::VarBinary { length: 16 }),
        ],
    );
    t.primary_key = vec!["id".into()];
    t.columns[0].nullable = false;
    t
}

fn rows() -> Vec<Row> {
    (1..=ROWS as i64)
        .map(|i| {
            let body =
                format!("row {i}: {}", "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(4));
            vec![
                Value::Int(i),
                Value::Int(i % 100_003),
                Value::Text(format!("name-{i}-0123456789abcdef")),
                Value::Decimal(Decimal::parse(&format!("{}.{:02}", i * 7, i % 100)).expect("decimal")),
                Value::DateTime(DateTime::new(
                    Date::new(2020, 1, 1 + (i % 28) as u8),
                    (i % 24) as u8,
                    (i % 60) as u8,
                    (i % 60) as u8,
                    (i % 1_000_000) as u32,
                )),
                Value::Text(body[..200].to_string()),
                Value::Int(i % 128),
                Value::Double(i as f64 / 7.0),
                Value::Json(format!(r#"{{"n": {i}, "even": {}, "tag": "t{}"}}"#, i % 2 == 0, i % 97)),
                Value::Bytes((0..16u8).map(|b| b.wrapping_mul(i as u8)).collect()),
            ]
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let t = table();
    let input = rows();
    let mut enc = Encoder::new(&t).expect("maps");
    let mut g = c.benchmark_group("sink");
    g.throughput(Throughput::Elements(ROWS as u64));
    let mut buf = Vec::with_capacity(1 << 20);
    g.bench_function("COPY text encoding, 10-column rows", |b| {
        b.iter(|| {
            buf.clear();
            for r in &input {
                enc.copy_row(r, &mut buf).expect("encodes");
            }
            buf.len()
        })
    });
    let key: Vec<usize> = enc.key().to_vec();
    g.bench_function("set-based apply batch building, 10-column upserts", |b| {
        b.iter(|| {
            let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(ROWS); t.columns.len()];
            let mut keys: HashSet<Vec<Option<String>>> = HashSet::new();
            for r in &input {
                let vals = enc.params(r).expect("encodes");
                let k: Vec<Option<String>> = key.iter().map(|&i| vals[i].clone()).collect();
                for (col, v) in columns.iter_mut().zip(vals) {
                    col.push(v);
                }
                keys.insert(k);
            }
            (columns, keys)
        })
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
