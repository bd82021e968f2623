//! Value decoding: `mysql_async::Value` rows of the benchmark's 10-column
//! table into `synchdb_types::Value`s, as the snapshot reader and the binlog
//! reader call it (one call per value).
//!
//! `cargo bench -p synchdb-mysql --bench decode`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mysql_async::Value as My;
use synchdb_mysql::bench::decode_value;
use synchdb_types::{ColumnSchema, ColumnType, IntWidth, LobSize};

const ROWS: usize = 1_000;

fn text(name: &str, t: ColumnType) -> ColumnSchema {
    let mut c = ColumnSchema::new(name, t);
    c.charset = Some("utf8mb4".into());
    c
}

/// bigint PK, int, varchar(64), decimal(12,2), datetime(6), text, tinyint, double, json, varbinary(16).
fn columns() -> Vec<ColumnSchema> {
    vec![
        ColumnSchema::new(
            "id",
            ColumnType::Integer { width: IntWidth::Big, unsigned: false, display_width: None },
        ),
        ColumnSchema::new(
            "k",
            ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None },
        ),
        text("name", ColumnType::VarChar { length: 64 }),
        ColumnSchema::new("amount", ColumnType::Decimal { precision: 12, scale: 2, unsigned: false }),
        ColumnSchema::new("created", ColumnType::DateTime { fsp: 6 }),
        text("body", ColumnType::Text { size: LobSize::Normal }),
        ColumnSchema::new(
            "flag",
            ColumnType::Integer { width: IntWidth::Tiny, unsigned: false, display_width: None },
        ),
        ColumnSchema::new("score", ColumnType::Double { unsigned: false }),
        text("attrs", ColumnType::Json),
        ColumnSchema::new("tag", ColumnType::VarBinary { length: 16 }),
    ]
}

/// Rows in the shapes the binary protocol (snapshot) and the binlog produce.
fn rows() -> Vec<Vec<My>> {
    (1..=ROWS as i64)
        .map(|i| {
            let body =
                format!("row {i}: {}", "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(4));
            vec![
                My::Int(i),
                My::Int(i % 100_003),
                My::Bytes(format!("name-{i}-0123456789abcdef").into_bytes()),
                My::Bytes(format!("{}.{:02}", i * 7, i % 100).into_bytes()),
                My::Date(
                    2020,
                    1,
                    1 + (i % 28) as u8,
                    (i % 24) as u8,
                    (i % 60) as u8,
                    (i % 60) as u8,
                    (i % 1_000_000) as u32,
                ),
                My::Bytes(body.as_bytes()[..200].to_vec()),
                My::Int(i % 128),
                My::Double(i as f64 / 7.0),
                My::Bytes(
                    format!(r#"{{"n": {i}, "even": {}, "tag": "t{}"}}"#, i % 2 == 0, i % 97).into_bytes(),
                ),
                My::Bytes((0..16u8).map(|b| b.wrapping_mul(i as u8)).collect()),
            ]
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let cols = columns();
    let input = rows();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("10-column rows", |b| {
        b.iter_batched(
            || input.clone(),
            |rows| {
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let decoded: Vec<_> = row
                        .into_iter()
                        .zip(&cols)
                        .map(|(v, c)| decode_value(c, v).expect("decodes"))
                        .collect();
                    out.push(decoded);
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    // Per column type, to see which decoders dominate.
    for (i, col) in cols.iter().enumerate() {
        let values: Vec<My> = input.iter().map(|r| r[i].clone()).collect();
        g.bench_function(format!("column {}", col.name), |b| {
            b.iter_batched(
                || values.clone(),
                |vals| vals.into_iter().map(|v| decode_value(col, v).expect("decodes")).collect::<Vec<_>>(),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
