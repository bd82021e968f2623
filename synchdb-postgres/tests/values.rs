//! Every value family round-trips through COPY and through change apply.

mod common;

use std::sync::Arc;

use common::*;
use sqlx::Row as _;
use synchdb_core::{ErrorKind, Sink, SinkState};
use synchdb_postgres::ZeroDatePolicy;
use synchdb_types::*;

fn all_types(db: &str, name: &str) -> Arc<TableSchema> {
    use ColumnType as C;
    let c = ColumnSchema::new;
    table(
        db,
        name,
        vec![
            int("id", IntWidth::Big, true),
            int("i8", IntWidth::Tiny, false),
            int("u8", IntWidth::Tiny, true),
            int("u16", IntWidth::Small, true),
            int("m", IntWidth::Medium, false),
            int("u32", IntWidth::Int, true),
            int("i64", IntWidth::Big, false),
            c("dec", C::Decimal { precision: 65, scale: 30, unsigned: false }),
            c("f", C::Float { unsigned: false }),
            c("d", C::Double { unsigned: false }),
            c("bits", C::Bit { width: 10 }),
            c("ch", C::Char { length: 5 }),
            c("vc", C::VarChar { length: 20 }),
            c("tx", C::Text { size: LobSize::Long }),
            c("bin", C::Binary { length: 4 }),
            c("blob", C::Blob { size: LobSize::Normal }),
            c("dt", C::Date),
            c("dtm", C::DateTime { fsp: 6 }),
            c("ts", C::Timestamp { fsp: 6 }),
            c("tm", C::Time { fsp: 6 }),
            c("yr", C::Year),
            c("js", C::Json),
            c("en", C::Enum { members: vec!["a".into(), "b b".into(), "it's".into()] }),
            c("st", C::Set { members: vec!["x".into(), "y".into(), "z".into()] }),
            c("geo", C::Geometry { subtype: "point".into() }),
            c("uu", C::Uuid),
            c("ip4", C::Inet4),
            c("ip6", C::Inet6),
        ],
        &["id"],
    )
}

fn point(srid: u32) -> Geometry {
    let mut wkb = vec![1, 1, 0, 0, 0];
    wkb.extend_from_slice(&1.0f64.to_le_bytes());
    wkb.extend_from_slice(&2.0f64.to_le_bytes());
    Geometry { srid, wkb }
}

fn rows() -> Vec<Row> {
    let full = vec![
        Value::UInt(u64::MAX),
        Value::Int(-128),
        Value::UInt(255),
        Value::UInt(65535),
        Value::Int(-8388608),
        Value::UInt(4294967295),
        Value::Int(i64::MIN),
        Value::Decimal(
            Decimal::parse("-12345678901234567890123456789012345.123456789012345678901234567890").unwrap(),
        ),
        Value::Float(0.1),
        Value::Double(-1.7976931348623157e308),
        Value::Bit(Bits { width: 10, value: 0b10_0000_0001 }),
        Value::Text("ab".into()),
        Value::Text("tab\there \\ \"q\" 'x'".into()),
        Value::Text("Ünïcødé latin1 ÿ\nline2 ✓".into()),
        Value::Bytes(vec![0x00, 0xFF, 0x80, 0x00]),
        Value::Bytes(vec![0x00, 0x5C, 0x0A, 0xFF]),
        Value::Date(Date::new(2024, 2, 29)),
        Value::DateTime("2024-02-29 23:59:59.123456".parse().unwrap()),
        Value::Timestamp(Timestamp::from_parts(1_700_000_000, 123_456)),
        Value::Time("838:59:59.999999".parse().unwrap()),
        Value::Year(2155),
        Value::Json(r#"{"b": null, "a": [1, 2.5, "x\ty"]}"#.into()),
        Value::Enum("it's".into()),
        Value::Set(vec!["x".into(), "z".into()]),
        Value::Geometry(point(4326)),
        Value::Uuid("3e11fa47-71ca-11e1-9e33-c80aa9429562".parse().unwrap()),
        Value::Inet4("192.168.0.1".parse().unwrap()),
        Value::Inet6("2001:db8::1".parse().unwrap()),
    ];
    let mut nulls = vec![Value::UInt(1)];
    nulls.extend(std::iter::repeat_n(Value::Null, full.len() - 1));
    let mut zero = nulls.clone();
    zero[0] = Value::UInt(2);
    zero[16] = Value::Date(Date::new(0, 0, 0));
    zero[17] = Value::DateTime("0000-00-00 00:00:00".parse().unwrap());
    zero[18] = Value::Timestamp(Timestamp { micros: 0 });
    zero[19] = Value::Time("-838:59:59.999999".parse().unwrap());
    zero[22] = Value::Enum(String::new());
    zero[23] = Value::Set(vec![]);
    zero[24] = Value::Geometry(point(0));
    zero[8] = Value::Float(f32::MAX);
    zero[9] = Value::Double(0.1);
    zero[7] = Value::Decimal(Decimal::parse("0.000000000000000000000000000001").unwrap());
    vec![full, nulls, zero]
}

const EXPECTED: &[&str] = &[
    "1||||||||||||||||||||||||||",
    "2|||||||0.000000000000000000000000000001|3.4028235e+38|0.1|||||||-infinity|-infinity|-infinity|-838:59:59.999999||||\
     |\\x0101000000000000000000f03f0000000000000040|||",
    "18446744073709551615|-128|255|65535|-8388608|4294967295|-9223372036854775808|\
     -12345678901234567890123456789012345.123456789012345678901234567890|0.1|-1.7976931348623157e+308|1000000001|ab|\
     tab\there \\ \"q\" 'x'|Ünïcødé latin1 ÿ",
];

async fn check(db: &synchdb_testkit::TestDatabase, name: &str) {
    let sql = format!("SELECT * FROM \"vals\".\"{name}\" ORDER BY id");
    let got = query(db, &sql);
    // Row 3 holds a newline inside the text: compare the whole output.
    let all = got.join("\n");
    assert!(all.starts_with(EXPECTED[0]), "{all}");
    assert!(all.contains(EXPECTED[1]), "zero/null row:\n{all}");
    assert!(all.contains(EXPECTED[2]), "full row:\n{all}");
    assert!(
        all.ends_with(
            "line2 ✓|\\x00ff8000|\\x005c0aff|2024-02-29|2024-02-29 23:59:59.123456|2023-11-14 22:13:20.123456+00|\
             838:59:59.999999|2155|{\"a\": [1, 2.5, \"x\\ty\"], \"b\": null}|it's|x,z|\
             \\x0101000020e6100000000000000000f03f0000000000000040|3e11fa47-71ca-11e1-9e33-c80aa9429562|192.168.0.1|2001:db8::1"
        ),
        "{all}"
    );
    // Typed reads.
    let sink_url = db.url();
    let pool = sqlx::PgPool::connect(&sink_url).await.unwrap();
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id::text, i8, u16, u32, i64, f, d, tx, bin, dt, dtm, ts, js, uu FROM \"vals\".\"{name}\" WHERE id = 18446744073709551615"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(r.get::<String, _>(0), u64::MAX.to_string());
    assert_eq!(r.get::<i16, _>(1), -128);
    assert_eq!(r.get::<i32, _>(2), 65535);
    assert_eq!(r.get::<i64, _>(3), 4294967295);
    assert_eq!(r.get::<i64, _>(4), i64::MIN);
    assert_eq!(r.get::<f32, _>(5), 0.1f32);
    assert_eq!(r.get::<f64, _>(6), -1.7976931348623157e308);
    assert_eq!(r.get::<String, _>(7), "Ünïcødé latin1 ÿ\nline2 ✓");
    assert_eq!(r.get::<Vec<u8>, _>(8), vec![0x00, 0xFF, 0x80, 0x00]);
    assert_eq!(r.get::<chrono::NaiveDate, _>(9), chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
    assert_eq!(
        r.get::<chrono::NaiveDateTime, _>(10),
        "2024-02-29T23:59:59.123456".parse::<chrono::NaiveDateTime>().unwrap()
    );
    assert_eq!(r.get::<chrono::DateTime<chrono::Utc>, _>(11).timestamp_micros(), 1_700_000_000_123_456);
    assert_eq!(r.get::<serde_json::Value, _>(12), serde_json::json!({"a": [1, 2.5, "x\ty"], "b": null}));
    assert_eq!(r.get::<uuid::Uuid, _>(13).to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562");
    pool.close().await;
}

#[tokio::test]
async fn every_family_round_trips_through_copy_and_apply() {
    let db = db("pg_values");
    let sink = sink(&db, |o| o).await;
    let copied = all_types("vals", "copied");
    let applied = all_types("vals", "applied");
    snapshot(&sink, "p", &[(copied.clone(), rows()), (applied.clone(), vec![])]).await;
    check(&db, "copied").await;
    let events: Vec<ChangeEvent> =
        rows().into_iter().enumerate().map(|(i, r)| ins(&applied, r, 10 + i as u64)).collect();
    sink.apply("p", &batch(100, events)).await.unwrap();
    check(&db, "applied").await;
    // Updates and deletes find rows by every family of key value they were written with.
    let r = rows();
    let mut after = r[0].clone();
    after[12] = Value::Text("changed".into());
    sink.apply(
        "p",
        &batch(101, vec![upd(&applied, r[0].clone(), after, 101), del(&applied, r[2].clone(), 101)]),
    )
    .await
    .unwrap();
    assert_eq!(
        query(&db, "SELECT id, vc FROM vals.applied ORDER BY id"),
        ["1|", "18446744073709551615|changed"]
    );
    // Enum check constraint exists and rejects other values.
    let check = one(&db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'en_enum' AND conrelid = 'vals.applied'::regclass");
    assert!(check.contains("'a'::text, 'b b'::text, 'it''s'::text, ''::text"), "{check}");
}

#[tokio::test]
async fn zero_dates_follow_the_policy_and_bad_values_are_typed_errors() {
    let db = db("pg_zero");
    let t = table(
        "z",
        "t",
        vec![
            int("id", IntWidth::Int, false),
            ColumnSchema::new("d", ColumnType::Date),
            ColumnSchema::new("n", ColumnType::Date).not_null(),
        ],
        &["id"],
    );
    let zero = Value::Date(Date::new(0, 0, 0));
    // -infinity
    let s = sink(&db, |o| o).await;
    snapshot(&s, "p1", &[(t.clone(), vec![vec![Value::Int(1), zero.clone(), zero.clone()]])]).await;
    assert_eq!(one(&db, "SELECT d, n FROM z.t"), "-infinity|-infinity");
    // NULL: fine on nullable columns, a typed error on NOT NULL ones.
    let s = sink(&db, |o| o.zero_dates(ZeroDatePolicy::Null)).await;
    s.apply(
        "p1",
        &batch(10, vec![ins(&t, vec![Value::Int(2), zero.clone(), Value::Date(Date::new(2020, 1, 2))], 10)]),
    )
    .await
    .unwrap();
    assert_eq!(one(&db, "SELECT coalesce(d::text, 'NULL'), n FROM z.t WHERE id = 2"), "NULL|2020-01-02");
    let e = s
        .apply("p1", &batch(11, vec![ins(&t, vec![Value::Int(3), zero.clone(), zero.clone()], 11)]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SinkValue);
    assert_eq!(e.column(), Some("n"));
    assert_eq!(e.table(), Some(&t.id));
    assert_eq!(e.position().map(|p| p.pos), Some(11));
    // Error policy
    let s = sink(&db, |o| o.zero_dates(ZeroDatePolicy::Error)).await;
    let e = s
        .apply(
            "p1",
            &batch(
                12,
                vec![ins(&t, vec![Value::Int(4), zero.clone(), Value::Date(Date::new(2020, 1, 2))], 12)],
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SinkValue);
    assert_eq!(e.column(), Some("d"));
    // Nothing of the failed batches was stored, and the checkpoint did not move past them.
    assert_eq!(one(&db, "SELECT count(*) FROM z.t"), "2");
    let st = s.load_state("p1").await.unwrap().unwrap();
    assert_eq!(st.position, Some(pos(10)));

    // NUL in text, and too long varchar: typed errors naming the table and column.
    let u = table("z", "u", vec![int("id", IntWidth::Int, false), varchar("v", 3)], &["id"]);
    s.apply(
        "p1",
        &batch(13, vec![ddl(SchemaChange::CreateTable { schema: (*u).clone() }, Some(u.clone()), 13)]),
    )
    .await
    .unwrap();
    let e = s
        .apply("p1", &batch(14, vec![ins(&u, vec![Value::Int(1), Value::Text("a\0".into())], 14)]))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.column()), (ErrorKind::SinkValue, Some("v")));
    let e = s
        .apply("p1", &batch(15, vec![ins(&u, vec![Value::Int(1), Value::Text("abcd".into())], 15)]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SinkValue, "{e}");
    assert_eq!(e.table(), Some(&u.id));
}

/// Rows at the edges of each family, beside `rows()`.
fn edge_rows() -> Vec<Row> {
    let row = |id: u64, f: &dyn Fn(&mut Row)| {
        let mut r = vec![Value::UInt(id)];
        r.extend(std::iter::repeat_n(Value::Null, 27));
        f(&mut r);
        r
    };
    vec![
        row(3, &|r| {
            r[1] = Value::Int(0);
            r[4] = Value::Int(8388607);
            r[6] = Value::Int(i64::MAX);
            r[7] = Value::Decimal(Decimal::parse("-1.50").unwrap());
            r[8] = Value::Float(-0.0);
            r[9] = Value::Double(5e-324);
            r[10] = Value::Bit(Bits { width: 10, value: 0 });
            r[11] = Value::Text(String::new());
            r[12] = Value::Text("x".repeat(20));
            r[14] = Value::Bytes(vec![]);
            r[16] = Value::Date(Date::new(0, 1, 1));
            r[17] = Value::DateTime("0000-06-15 12:00:00.5".parse().unwrap());
            r[18] = Value::Timestamp(Timestamp::from_parts(1, 0));
            r[19] = Value::Time("-00:00:01.5".parse().unwrap());
            r[20] = Value::Year(0);
            r[21] = Value::Json("[]".into());
            r[22] = Value::Enum(String::new());
            r[23] = Value::Set(vec![]);
            r[27] = Value::Inet6("::ffff:1.2.3.4".parse().unwrap());
        }),
        row(4, &|r| {
            r[7] = Value::Decimal(
                Decimal::parse("99999999999999999999999999999999999.000000000000000000000000000001").unwrap(),
            );
            r[8] = Value::Float(1.0e-45);
            r[9] = Value::Double(-0.0);
            r[10] = Value::Bit(Bits { width: 10, value: 0b11_1111_1111 });
            r[16] = Value::Date(Date::new(9999, 12, 31));
            r[17] = Value::DateTime("9999-12-31 23:59:59.999999".parse().unwrap());
            r[18] = Value::Timestamp(Timestamp::from_parts(2_147_483_647, 999_999));
            r[19] = Value::Time("00:00:00".parse().unwrap());
            r[21] = Value::Json(r#"{"k": "\u00e9\n", "n": 1e400}"#.into());
        }),
        row(5, &|r| {
            r[7] = Value::Decimal(Decimal::parse("0.00001").unwrap());
            r[16] = Value::Date(Date::new(2024, 2, 0));
            r[17] = Value::DateTime("2024-00-10 00:00:00".parse().unwrap());
            r[18] = Value::Timestamp(Timestamp { micros: 0 });
        }),
    ]
}

#[tokio::test]
async fn binary_and_text_copy_store_the_same_values() {
    use synchdb_postgres::CopyFormat;
    let db = db("pg_formats");
    for (zero, suffix) in [(ZeroDatePolicy::MinusInfinity, "inf"), (ZeroDatePolicy::Null, "null")] {
        let mut data = rows();
        data.extend(edge_rows());
        let text_t = all_types("vals", &format!("text_{suffix}"));
        let bin_t = all_types("vals", &format!("bin_{suffix}"));
        let text_sink = sink(&db, |o| o.copy_format(CopyFormat::Text).zero_dates(zero)).await;
        snapshot(&text_sink, &format!("t_{suffix}"), &[(text_t.clone(), data.clone())]).await;
        let bin_sink = sink(&db, |o| o.copy_format(CopyFormat::Binary).zero_dates(zero)).await;
        snapshot(&bin_sink, &format!("b_{suffix}"), &[(bin_t.clone(), data.clone())]).await;
        let as_text = query(&db, &format!("SELECT t::text FROM vals.text_{suffix} AS t ORDER BY id"));
        let as_bin = query(&db, &format!("SELECT t::text FROM vals.bin_{suffix} AS t ORDER BY id"));
        let n = one(&db, &format!("SELECT count(*) FROM vals.bin_{suffix}"));
        assert_eq!(n, data.len().to_string());
        assert_eq!(as_text, as_bin, "zero dates {zero:?}");
    }
    // The binary path makes the checks PostgreSQL's text parser made: typed errors.
    let s = sink(&db, |o| o.copy_format(CopyFormat::Binary)).await;
    let narrow = table(
        "vals",
        "narrow",
        vec![
            int("id", IntWidth::Int, false),
            ColumnSchema::new("n", ColumnType::Decimal { precision: 5, scale: 2, unsigned: false }),
        ],
        &["id"],
    );
    let bad = vec![vec![Value::Int(1), Value::Decimal(Decimal::parse("1.005").unwrap())]];
    let e = try_snapshot(&s, "narrow", &[(narrow.clone(), bad)]).await.unwrap_err();
    assert_eq!((e.kind(), e.column(), e.table()), (ErrorKind::SinkValue, Some("n"), Some(&narrow.id)), "{e}");
    assert!(e.to_string().contains("does not fit numeric(5,2)"), "{e}");
    let short = table("vals", "short", vec![int("id", IntWidth::Int, false), varchar("v", 3)], &["id"]);
    let bad = vec![vec![Value::Int(1), Value::Text("a\0".into())]];
    let e = try_snapshot(&s, "short", &[(short.clone(), bad)]).await.unwrap_err();
    assert_eq!((e.kind(), e.column()), (ErrorKind::SinkValue, Some("v")), "{e}");
    let bad = vec![vec![Value::Int(1), Value::Text("abcd".into())]];
    let e = try_snapshot(&s, "short2", &[(short.clone(), bad)]).await.unwrap_err();
    assert_eq!((e.kind(), e.table()), (ErrorKind::SinkValue, Some(&short.id)), "{e}");
}

/// prepare_snapshot + one chunk per table, returning the first error.
async fn try_snapshot(
    sink: &synchdb_postgres::PgSink,
    pipeline: &str,
    tables: &[(Arc<TableSchema>, Vec<Row>)],
) -> synchdb_core::Result<()> {
    let schemas: Vec<Arc<TableSchema>> = tables.iter().map(|(t, _)| t.clone()).collect();
    sink.prepare_snapshot(pipeline, &schemas, &[], &synchdb_core::StateUpdate::default()).await?;
    for (t, rows) in tables {
        let chunk =
            synchdb_core::ChunkInfo { table: t.id.clone(), index: 0, count: 1, lower: None, upper: None };
        sink.write_chunk(pipeline, t, &chunk, &pos(4), rows_stream(rows.clone())).await?;
    }
    Ok(())
}
