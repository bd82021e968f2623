//! Every column type through a snapshot into the in-memory sink, every value exact.

mod common;

use synchdb_core::memory::MemorySink;
use synchdb_types::{
    Bits, ColumnDefault, ColumnType, Date, DateTime, Geometry, IndexKind, TableId, Time, Timestamp, Value,
};

const DDL: &str = "CREATE TABLE `{db}`.all_types (
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
    mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED,
    de DECIMAL(65,30), fl FLOAT, db DOUBLE,
    dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR, d DATE,
    l1 VARCHAR(20) CHARACTER SET latin1, u8 VARCHAR(20) CHARACTER SET utf8mb4, ch CHAR(5),
    vb VARBINARY(10), bn BINARY(4), bl BLOB, tx TEXT,
    js JSON, en ENUM('a','b','it''s'), st SET('x','y','z'), bt BIT(10),
    g GEOMETRY, pt POINT,
    uu UUID, i4 INET4, i6 INET6
) COMMENT 'every type'";

const COLUMNS: &str =
    "id,ti,tu,si,su,mi,mu,i,iu,bi,bu,de,fl,db,dt,ts,tm,yr,d,l1,u8,ch,vb,bn,bl,tx,js,en,st,bt,g,pt,uu,i4,i6";

fn point_wkb(x: f64, y: f64) -> Vec<u8> {
    let mut w = vec![1, 1, 0, 0, 0];
    w.extend_from_slice(&x.to_le_bytes());
    w.extend_from_slice(&y.to_le_bytes());
    w
}

fn polygon_wkb(points: &[(f64, f64)]) -> Vec<u8> {
    let mut w = vec![1, 3, 0, 0, 0];
    w.extend_from_slice(&1u32.to_le_bytes());
    w.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for (x, y) in points {
        w.extend_from_slice(&x.to_le_bytes());
        w.extend_from_slice(&y.to_le_bytes());
    }
    w
}

fn dt(s: &str) -> Value {
    Value::DateTime(s.parse::<DateTime>().unwrap())
}

fn time(s: &str) -> Value {
    Value::Time(s.parse::<Time>().unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[tokio::test]
async fn every_type_round_trips_exactly() {
    let db = common::database("types");
    let name = db.name().to_string();
    let s = common::server();
    s.exec(&DDL.replace("{db}", &name)).unwrap();
    s.exec(&format!(
        "SET time_zone = '+00:00';
         INSERT INTO `{name}`.all_types ({COLUMNS}) VALUES
         (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
          '-99999999999999999999999999999999999.999999999999999999999999999999', -3.4028234e38, -1.7976931348623157e308,
          '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '-838:59:59.000000', 1901, '1000-01-01',
          'caf\u{e9} \u{20ac}', 'caf\u{e9} \u{20ac} \u{1F600}', 'ab', x'00FF00', 'ab', x'00FF', 'plain',
          '{{\"a\": [1, 2.5, \"\u{e9}\"]}}', 'it''s', 'x,z', b'1000000001',
          ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))', 4326), ST_GeomFromText('POINT(1.5 -2.25)', 4326),
          '6ccd780c-baba-1026-9564-5b8c656024db', '192.168.0.255', '2001:db8::ff00:42:8329'),
         (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
          '99999999999999999999999999999999999.999999999999999999999999999999', 1.5, 2.2250738585072014e-308,
          '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '838:59:59.000000', 2155, '9999-12-31',
          '', '', '', x'', x'01000000', x'', '',
          '[]', 'a', '', b'0000000000',
          ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(0 0)', 4326),
          '123e4567-e89b-42d3-a456-426614174000', '0.0.0.0', '::'),
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         SET SESSION sql_mode = '';
         INSERT INTO `{name}`.all_types (id, dt, ts, d, yr, tm, de) VALUES
         (4, '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00', 0, '-00:00:01.500000', '0.000000000000000000000000000001');"
    ))
    .unwrap();

    let sink = MemorySink::new();
    let stats = common::run("types", common::options(&db), &sink).await.unwrap();
    assert_eq!(stats.snapshot_rows, 4);
    let id = TableId::new(&name, "all_types");
    let rows = common::rows_of(&sink, &id);
    assert_eq!(rows.len(), 4);

    let row1: Vec<Value> = vec![
        Value::Int(1),
        Value::Int(-128),
        Value::UInt(0),
        Value::Int(-32768),
        Value::UInt(0),
        Value::Int(-8_388_608),
        Value::UInt(0),
        Value::Int(-2_147_483_648),
        Value::UInt(0),
        Value::Int(i64::MIN),
        Value::UInt(0),
        Value::Decimal(
            "-99999999999999999999999999999999999.999999999999999999999999999999".parse().unwrap(),
        ),
        Value::Float(f32::MIN),
        Value::Double(-1.797_693_134_862_315_7e308),
        dt("1000-01-01 00:00:00"),
        Value::Timestamp(Timestamp::from_parts(1, 0)),
        time("-838:59:59"),
        Value::Year(1901),
        Value::Date(Date::new(1000, 1, 1)),
        text("café €"),
        text("café € 😀"),
        text("ab"),
        Value::Bytes(vec![0x00, 0xFF, 0x00]),
        Value::Bytes(vec![b'a', b'b', 0, 0]),
        Value::Bytes(vec![0x00, 0xFF]),
        text("plain"),
        Value::Json("{\"a\": [1, 2.5, \"é\"]}".into()),
        Value::Enum("it's".into()),
        Value::Set(vec!["x".into(), "z".into()]),
        Value::Bit(Bits { width: 10, value: 0b10_0000_0001 }),
        Value::Geometry(Geometry {
            srid: 4326,
            wkb: polygon_wkb(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0)]),
        }),
        Value::Geometry(Geometry { srid: 4326, wkb: point_wkb(1.5, -2.25) }),
        Value::Uuid("6ccd780c-baba-1026-9564-5b8c656024db".parse().unwrap()),
        Value::Inet4("192.168.0.255".parse().unwrap()),
        Value::Inet6("2001:db8::ff00:42:8329".parse().unwrap()),
    ];
    let row2: Vec<Value> = vec![
        Value::Int(2),
        Value::Int(127),
        Value::UInt(255),
        Value::Int(32767),
        Value::UInt(65535),
        Value::Int(8_388_607),
        Value::UInt(16_777_215),
        Value::Int(2_147_483_647),
        Value::UInt(4_294_967_295),
        Value::Int(i64::MAX),
        Value::UInt(u64::MAX),
        Value::Decimal("99999999999999999999999999999999999.999999999999999999999999999999".parse().unwrap()),
        Value::Float(1.5),
        Value::Double(2.225_073_858_507_201_4e-308),
        dt("9999-12-31 23:59:59.999999"),
        Value::Timestamp(Timestamp::from_parts(2_147_483_647, 999_999)),
        time("838:59:59"),
        Value::Year(2155),
        Value::Date(Date::new(9999, 12, 31)),
        text(""),
        text(""),
        text(""),
        Value::Bytes(vec![]),
        Value::Bytes(vec![1, 0, 0, 0]),
        Value::Bytes(vec![]),
        text(""),
        Value::Json("[]".into()),
        Value::Enum("a".into()),
        Value::Set(vec![]),
        Value::Bit(Bits { width: 10, value: 0 }),
        Value::Geometry(Geometry { srid: 0, wkb: point_wkb(0.0, 0.0) }),
        Value::Geometry(Geometry { srid: 4326, wkb: point_wkb(0.0, 0.0) }),
        Value::Uuid("123e4567-e89b-42d3-a456-426614174000".parse().unwrap()),
        Value::Inet4("0.0.0.0".parse().unwrap()),
        Value::Inet6("::".parse().unwrap()),
    ];
    let n = row1.len();
    for (i, (got, want)) in rows[0].iter().zip(&row1).enumerate() {
        assert_eq!(got, want, "row 1 column {}", COLUMNS.split(',').nth(i).unwrap());
    }
    for (i, (got, want)) in rows[1].iter().zip(&row2).enumerate() {
        assert_eq!(got, want, "row 2 column {}", COLUMNS.split(',').nth(i).unwrap());
    }
    assert_eq!(rows[0].len(), n);
    // Row 3: NULL everywhere but the key.
    assert_eq!(rows[2][0], Value::Int(3));
    assert!(rows[2][1..].iter().all(Value::is_null), "{:?}", rows[2]);
    // Row 4: zero dates are kept, DECIMAL keeps its 30 digits of scale.
    let r4 = &rows[3];
    let col = |c: &str| COLUMNS.split(',').position(|x| x == c).unwrap();
    assert_eq!(r4[col("d")], Value::Date(Date::new(0, 0, 0)));
    assert_eq!(r4[col("dt")], Value::DateTime(DateTime::new(Date::new(0, 0, 0), 0, 0, 0, 0)));
    assert_eq!(r4[col("ts")], Value::Timestamp(Timestamp { micros: 0 }));
    assert_eq!(r4[col("yr")], Value::Year(0));
    assert_eq!(r4[col("tm")], time("-00:00:01.5"));
    assert_eq!(r4[col("de")].to_string(), "0.000000000000000000000000000001");
    assert_eq!(
        rows[0][col("de")].to_string(),
        "-99999999999999999999999999999999999.999999999999999999999999999999"
    );

    // The schema came through discovery.
    let schema = common::schema_of(&sink, &id);
    assert_eq!(schema.comment, "every type");
    assert_eq!(schema.primary_key, vec!["id".to_string()]);
    let ty = |c: &str| schema.column(c).unwrap().column_type.clone();
    assert_eq!(ty("js"), ColumnType::Json);
    assert_eq!(ty("de"), ColumnType::Decimal { precision: 65, scale: 30, unsigned: false });
    assert_eq!(ty("en"), ColumnType::Enum { members: vec!["a".into(), "b".into(), "it's".into()] });
    assert_eq!(ty("uu"), ColumnType::Uuid);
    assert_eq!(ty("ts"), ColumnType::Timestamp { fsp: 6 });
    assert_eq!(schema.column("l1").unwrap().charset.as_deref(), Some("latin1"));
    assert_eq!(schema.column("ts").unwrap().default, Some(ColumnDefault::Null));
}

#[tokio::test]
async fn discovery_reads_keys_indexes_defaults_and_foreign_keys() {
    let db = common::database("disc");
    let name = db.name().to_string();
    common::server()
        .exec(&format!(
            "CREATE TABLE `{name}`.parent (a INT, b VARCHAR(40), PRIMARY KEY (a, b)) COMMENT 'the parent';
             CREATE TABLE `{name}`.child (
               id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
               pa INT, pb VARCHAR(40),
               body TEXT, title VARCHAR(100) NOT NULL DEFAULT 'it''s',
               created DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
               n INT DEFAULT 7, twice INT AS (n * 2) VIRTUAL,
               place POINT NOT NULL,
               UNIQUE KEY uq_title (title(20), id),
               KEY ix_created (created DESC),
               FULLTEXT KEY ft_body (body),
               SPATIAL KEY sp_place (place),
               CONSTRAINT fk_parent FOREIGN KEY (pa, pb) REFERENCES parent (a, b) ON DELETE CASCADE ON UPDATE SET NULL
             );"
        ))
        .unwrap();
    let sink = MemorySink::new();
    common::run("disc", common::options(&db), &sink).await.unwrap();
    let child = common::schema_of(&sink, &TableId::new(&name, "child"));
    let parent = common::schema_of(&sink, &TableId::new(&name, "parent"));
    assert_eq!(parent.primary_key, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(parent.comment, "the parent");
    let id = child.column("id").unwrap();
    assert!(id.auto_increment && !id.nullable);
    assert_eq!(child.column("title").unwrap().default, Some(ColumnDefault::Literal("it's".into())));
    assert_eq!(child.column("n").unwrap().default, Some(ColumnDefault::Literal("7".into())));
    let created = child.column("created").unwrap();
    assert_eq!(created.default, Some(ColumnDefault::Expression("current_timestamp(3)".into())));
    assert_eq!(created.on_update.as_deref(), Some("current_timestamp(3)"));
    assert_eq!(child.column("twice").unwrap().generated.as_deref(), Some("`n` * 2"));
    let ix = |n: &str| child.indexes.iter().find(|i| i.name == n).unwrap_or_else(|| panic!("no index {n}"));
    assert_eq!(ix("uq_title").kind, IndexKind::Unique);
    assert_eq!(ix("uq_title").columns[0].prefix_length, Some(20));
    assert_eq!(ix("uq_title").columns[1].name, "id");
    assert_eq!(ix("ft_body").kind, IndexKind::FullText);
    assert_eq!(ix("sp_place").kind, IndexKind::Spatial);
    assert!(ix("ix_created").columns[0].descending);
    let fk = &child.foreign_keys[0];
    assert_eq!(fk.name, "fk_parent");
    assert_eq!(fk.columns, vec!["pa".to_string(), "pb".to_string()]);
    assert_eq!(fk.referenced_table, TableId::new(&name, "parent"));
    assert_eq!(fk.referenced_columns, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(fk.on_delete, synchdb_types::ReferentialAction::Cascade);
    assert_eq!(fk.on_update, synchdb_types::ReferentialAction::SetNull);
}
