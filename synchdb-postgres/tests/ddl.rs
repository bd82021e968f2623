//! Follow-mode schema changes applied to tables holding rows, checked in the catalog.

mod common;

use std::sync::Arc;

use common::*;
use synchdb_core::Sink;
use synchdb_types::*;

fn cols(db: &synchdb_testkit::TestDatabase, schema: &str, table: &str) -> Vec<String> {
    query(
        db,
        &format!(
            "SELECT column_name, data_type, is_nullable, coalesce(column_default, '-') FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
}

#[tokio::test]
async fn every_schema_change_applies_to_a_table_with_rows() {
    let db = db("pg_ddl");
    let s = sink(&db, |o| o).await;
    let e = |m: &[&str]| ColumnType::Enum { members: m.iter().map(|s| s.to_string()).collect() };
    let base = table(
        "d",
        "t",
        vec![
            int("id", IntWidth::Int, false),
            varchar("a", 10),
            varchar("num", 10),
            int("gone", IntWidth::Int, false),
            ColumnSchema::new("e", e(&["x", "y"])),
        ],
        &["id"],
    );
    let row = |id: i64| {
        vec![
            Value::Int(id),
            Value::Text(format!("a{id}")),
            Value::Text(format!("{}", id * 10)),
            Value::Int(0),
            Value::Enum("x".into()),
        ]
    };
    snapshot(&s, "ddl", &[(base.clone(), vec![row(1), row(2)])]).await;
    let t = base.id.clone();
    let mut n = 10;
    let mut apply = |change: SchemaChange, after: Option<Arc<TableSchema>>| {
        n += 1;
        let b = batch(n, vec![ddl(change, after, n)]);
        let s = s.clone();
        async move { s.apply("ddl", &b).await.unwrap() }
    };

    // ADD COLUMN NOT NULL without default: existing rows get MySQL's implicit default.
    apply(
        SchemaChange::AddColumn {
            table: t.clone(),
            column: int("c", IntWidth::Int, false).not_null(),
            position: ColumnPosition::First,
        },
        None,
    )
    .await;
    assert_eq!(cols(&db, "d", "t").last().unwrap(), "c|integer|NO|-");
    assert_eq!(query(&db, "SELECT c FROM d.t ORDER BY id"), ["0", "0"]);
    // DROP COLUMN
    apply(SchemaChange::DropColumn { table: t.clone(), name: "gone".into() }, None).await;
    assert!(!cols(&db, "d", "t").iter().any(|c| c.starts_with("gone|")));
    // RENAME COLUMN
    apply(SchemaChange::RenameColumn { table: t.clone(), from: "a".into(), to: "b".into() }, None).await;
    assert!(cols(&db, "d", "t").iter().any(|c| c == "b|character varying|YES|-"));
    // MODIFY: varchar holding numbers -> int NOT NULL DEFAULT 5 (USING cast)
    let mut new = int("num", IntWidth::Int, false).not_null();
    new.default = Some(ColumnDefault::Literal("5".into()));
    apply(
        SchemaChange::ModifyColumn { table: t.clone(), old: varchar("num", 10), new, position: None },
        None,
    )
    .await;
    assert!(cols(&db, "d", "t").iter().any(|c| c == "num|integer|NO|5"), "{:?}", cols(&db, "d", "t"));
    assert_eq!(query(&db, "SELECT num FROM d.t ORDER BY id"), ["10", "20"]);
    // MODIFY: drop NOT NULL and default, widen to bigint
    apply(
        SchemaChange::ModifyColumn {
            table: t.clone(),
            old: {
                let mut c = int("num", IntWidth::Int, false).not_null();
                c.default = Some(ColumnDefault::Literal("5".into()));
                c
            },
            new: int("num", IntWidth::Big, false),
            position: None,
        },
        None,
    )
    .await;
    assert!(cols(&db, "d", "t").iter().any(|c| c == "num|bigint|YES|-"));
    // MODIFY (CHANGE): rename + enum members extended: the CHECK follows.
    apply(
        SchemaChange::ModifyColumn {
            table: t.clone(),
            old: ColumnSchema::new("e", e(&["x", "y"])),
            new: ColumnSchema::new("e2", e(&["x", "y", "z"])),
            position: None,
        },
        None,
    )
    .await;
    let check = one(&db, "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'd.t'::regclass AND contype = 'c'");
    assert!(check.starts_with("e2_enum CHECK") && check.contains("'z'::text"), "{check}");
    // MODIFY: SET DEFAULT on a NOT NULL column
    let mut with_default = int("c", IntWidth::Int, false).not_null();
    with_default.default = Some(ColumnDefault::Literal("7".into()));
    apply(
        SchemaChange::ModifyColumn {
            table: t.clone(),
            old: int("c", IntWidth::Int, false).not_null(),
            new: with_default,
            position: None,
        },
        None,
    )
    .await;
    assert!(cols(&db, "d", "t").iter().any(|c| c == "c|integer|NO|7"), "{:?}", cols(&db, "d", "t"));
    // CREATE INDEX (unique, prefix, fulltext) and DROP INDEX
    let mut after = (*base).clone();
    after.columns = vec![
        int("id", IntWidth::Int, false).not_null(),
        varchar("b", 10),
        ColumnSchema::new("txt", ColumnType::Text { size: LobSize::Normal }),
    ];
    apply(
        SchemaChange::AddColumn {
            table: t.clone(),
            column: ColumnSchema::new("txt", ColumnType::Text { size: LobSize::Normal }),
            position: ColumnPosition::Last,
        },
        None,
    )
    .await;
    let after = Arc::new(after);
    let ix = |name: &str, kind, c: &str, prefix| IndexSchema {
        name: name.into(),
        kind,
        columns: vec![IndexColumn { name: c.into(), prefix_length: prefix, descending: false }],
    };
    apply(
        SchemaChange::CreateIndex { table: t.clone(), index: ix("ub", IndexKind::Unique, "b", None) },
        Some(after.clone()),
    )
    .await;
    apply(
        SchemaChange::CreateIndex { table: t.clone(), index: ix("pre", IndexKind::Plain, "txt", Some(4)) },
        Some(after.clone()),
    )
    .await;
    apply(
        SchemaChange::CreateIndex { table: t.clone(), index: ix("ft", IndexKind::FullText, "txt", None) },
        Some(after.clone()),
    )
    .await;
    apply(
        SchemaChange::CreateIndex { table: t.clone(), index: ix("upre", IndexKind::Unique, "txt", Some(4)) },
        Some(after.clone()),
    )
    .await;
    let idx = query(&db, "SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'd' AND tablename = 't' ORDER BY indexname");
    assert_eq!(idx.len(), 4, "{idx:?}");
    assert!(idx[0].starts_with("t_ft ") && idx[0].contains("gin (to_tsvector('simple'"), "{idx:?}");
    assert!(idx[2].starts_with("t_pre ") && idx[2].contains("\"left\"(txt, 4)"), "{idx:?}");
    assert!(idx[3].starts_with("t_ub CREATE UNIQUE INDEX"), "{idx:?}");
    apply(SchemaChange::DropIndex { table: t.clone(), name: "ub".into() }, None).await;
    assert_eq!(
        one(&db, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'd' AND indexname = 't_ub'"),
        "0"
    );
    // PRIMARY KEY changes
    apply(SchemaChange::SetPrimaryKey { table: t.clone(), columns: vec!["id".into(), "b".into()] }, None)
        .await;
    assert_eq!(
        one(&db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'd.t'::regclass AND contype = 'p'"),
        "PRIMARY KEY (id, b)"
    );
    apply(SchemaChange::SetPrimaryKey { table: t.clone(), columns: vec![] }, None).await;
    assert_eq!(
        one(&db, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'd.t'::regclass AND contype = 'p'"),
        "0"
    );
    // RENAME TABLE within the database, then across databases (another schema)
    apply(SchemaChange::RenameTable { from: t.clone(), to: TableId::new("d", "t2") }, Some(after.clone()))
        .await;
    assert_eq!(one(&db, "SELECT count(*) FROM d.t2"), "2");
    assert!(one(
        &db,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 't2'"
    )
    .contains("t2_pre"));
    apply(SchemaChange::RenameTable { from: TableId::new("d", "t2"), to: TableId::new("other", "t3") }, None)
        .await;
    assert_eq!(one(&db, "SELECT schemaname || '.' || tablename FROM pg_tables WHERE tablename LIKE 't%' AND schemaname IN ('d', 'other')"), "other.t3");
    // TRUNCATE
    let t3 = table("other", "t3", vec![int("id", IntWidth::Int, false)], &[]);
    s.apply(
        "ddl",
        &batch(500, vec![ChangeEvent::Truncate(TruncateEvent { table: t3.clone(), meta: meta(500) })]),
    )
    .await
    .unwrap();
    assert_eq!(one(&db, "SELECT count(*) FROM other.t3"), "0");
    // CREATE TABLE (with its indexes at once) and DROP TABLE
    let mut created =
        (*table("d", "new", vec![int("id", IntWidth::Int, false), varchar("v", 5)], &["id"])).clone();
    created.indexes.push(ix("v", IndexKind::Plain, "v", None));
    apply(SchemaChange::CreateTable { schema: created.clone() }, Some(Arc::new(created))).await;
    assert_eq!(one(&db, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'd' AND tablename = 'new'"), "2");
    apply(SchemaChange::DropTable { table: TableId::new("other", "t3") }, None).await;
    assert_eq!(one(&db, "SELECT to_regclass('other.t3') IS NULL"), "t");
}

#[tokio::test]
async fn impossible_type_change_is_a_typed_schema_error() {
    let db = db("pg_ddl_err");
    let s = sink(&db, |o| o).await;
    let t = table("d", "t", vec![int("id", IntWidth::Int, false), varchar("v", 10)], &["id"]);
    snapshot(&s, "e", &[(t.clone(), vec![vec![Value::Int(1), Value::Text("abc".into())]])]).await;
    let change = SchemaChange::ModifyColumn {
        table: t.id.clone(),
        old: varchar("v", 10),
        new: int("v", IntWidth::Int, false),
        position: None,
    };
    let e = s.apply("e", &batch(10, vec![ddl(change, None, 10)])).await.unwrap_err();
    // 'abc' is not an integer: PostgreSQL refuses the USING cast (22P02, a value error).
    assert!(
        matches!(e.kind(), synchdb_core::ErrorKind::SinkValue | synchdb_core::ErrorKind::SinkSchema),
        "{e}"
    );
    assert_eq!(e.table(), Some(&t.id));
    assert_eq!(e.position().map(|p| p.pos), Some(10));
    assert_eq!(
        one(
            &db,
            "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'v'"
        ),
        "character varying"
    );
}

/// A keyless table's own index follows its shape: it moves off a column whose
/// new type is unbounded, and goes when the source gives the table an index or
/// a primary key.
#[tokio::test]
async fn keyless_own_index_follows_alter_table() {
    let db = db("pg_keyless_alter");
    let s = sink(&db, |o| o).await;
    let t = table("ka", "t", vec![int("a", IntWidth::Int, false), varchar("b", 10)], &[]);
    snapshot(&s, "ka", &[(t.clone(), vec![vec![Value::Int(1), Value::Text("x".into())]])]).await;
    let own = || {
        query(
            &db,
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = 'ka.t'::regclass AND c.relname = 't_synchdb_match'",
        )
    };
    assert_eq!(own(), ["a"]);
    // a becomes TEXT: unbounded, so the index moves to b.
    let mut t2 = (*t).clone();
    t2.columns[0] = ColumnSchema::new("a", ColumnType::Text { size: LobSize::Long });
    let t2 = std::sync::Arc::new(t2);
    let modify = SchemaChange::ModifyColumn {
        table: t.id.clone(),
        old: t.columns[0].clone(),
        new: t2.columns[0].clone(),
        position: None,
    };
    s.apply("ka", &batch(10, vec![ddl(modify, Some(t2.clone()), 10)])).await.unwrap();
    assert_eq!(own(), ["b"]);
    // Rows are still found: an update through the index on b.
    let row = |a: &str, b: &str| vec![Value::Text(a.into()), Value::Text(b.into())];
    s.apply("ka", &batch(11, vec![upd(&t2, row("1", "x"), row("2", "y"), 11)])).await.unwrap();
    assert_eq!(query(&db, "SELECT a, b FROM ka.t"), ["2|y"]);
    // A source index: the table's own index goes.
    let mut t3 = (*t2).clone();
    let index =
        IndexSchema { name: "by_b".into(), kind: IndexKind::Plain, columns: vec![IndexColumn::new("b")] };
    t3.indexes.push(index.clone());
    let create = SchemaChange::CreateIndex { table: t.id.clone(), index };
    s.apply("ka", &batch(12, vec![ddl(create, Some(std::sync::Arc::new(t3)), 12)])).await.unwrap();
    assert!(own().is_empty(), "{:?}", own());
}

/// PostgreSQL keeps tables and indexes in one namespace per schema: an index
/// named `<table>_<index>` whose name a table holds gets a free name instead
/// of nothing (`CREATE INDEX IF NOT EXISTS` would have skipped it), in the
/// snapshot and in follow mode, and `DROP INDEX` finds it there.
#[tokio::test]
async fn an_index_whose_name_a_table_holds_is_made_under_a_free_name() {
    let db = db("pg_index_name_taken");
    let s = sink(&db, |o| o).await;
    let taken = table("nt", "t_u", vec![int("id", IntWidth::Int, false)], &["id"]);
    let taken2 = table("nt", "t_v", vec![int("id", IntWidth::Int, false)], &["id"]);
    let mut t =
        (*table("nt", "t", vec![int("id", IntWidth::Int, false), int("u", IntWidth::Int, false)], &["id"]))
            .clone();
    t.indexes.push(IndexSchema {
        name: "u".into(),
        kind: IndexKind::Unique,
        columns: vec![IndexColumn::new("u")],
    });
    let t = std::sync::Arc::new(t);
    snapshot(&s, "nt", &[(taken.clone(), vec![]), (taken2.clone(), vec![]), (t.clone(), vec![])]).await;
    let indexes = || {
        query(&db, "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'nt.t'::regclass AND NOT i.indisprimary ORDER BY 1")
    };
    assert_eq!(indexes(), ["t_u_synchdb1"], "snapshot");
    // Loaded without its primary key, which the snapshot's end builds.
    let pkey = "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                WHERE i.indrelid = 'nt.t'::regclass AND i.indisprimary";
    assert_eq!(query(&db, pkey), ["t_pkey"]);
    // Follow mode: CREATE INDEX v, whose name the table t_v holds; then DROP INDEX u.
    let mut t2 = (*t).clone();
    let v = IndexSchema { name: "v".into(), kind: IndexKind::Plain, columns: vec![IndexColumn::new("u")] };
    t2.indexes.push(v.clone());
    let create = SchemaChange::CreateIndex { table: t.id.clone(), index: v };
    s.apply("nt", &batch(10, vec![ddl(create, Some(std::sync::Arc::new(t2.clone())), 10)])).await.unwrap();
    assert_eq!(indexes(), ["t_u_synchdb1", "t_v_synchdb1"], "follow");
    let mut t3 = t2.clone();
    t3.indexes.retain(|i| i.name != "u");
    let drop = SchemaChange::DropIndex { table: t.id.clone(), name: "u".into() };
    s.apply("nt", &batch(11, vec![ddl(drop, Some(std::sync::Arc::new(t3)), 11)])).await.unwrap();
    assert_eq!(indexes(), ["t_v_synchdb1"], "DROP INDEX finds the moved name");
}
