//! Mapping, filters and transforms through the pipeline on the in-memory source
//! and sink: snapshot, row changes and DDL under every rule kind, masked keys,
//! rows moving in and out of a filter, closure converters in order, and errors.

use std::sync::Arc;

use synchdb_core::mapping::{ColumnTransform, Mapping, MappingRules, Mask, Predicate, RowFilter};
use synchdb_core::memory::{MemorySink, MemorySource, TableRows};
use synchdb_core::{Converter, ErrorKind, ErrorPolicy, Pipeline, RetryPolicy, SinkCapabilities};
use synchdb_types::*;

const KEY: &str = "test-key";

fn int(name: &str) -> ColumnSchema {
    ColumnSchema::new(
        name,
        ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None },
    )
}

fn customers() -> Arc<TableSchema> {
    let mut t = TableSchema::new(
        TableId::new("shop", "customers"),
        vec![
            int("id").not_null(),
            int("tenant_id").not_null(),
            ColumnSchema::new("email", ColumnType::VarChar { length: 120 }).not_null(),
            ColumnSchema::new("phone", ColumnType::VarChar { length: 20 }),
            ColumnSchema::new("notes", ColumnType::Text { size: LobSize::Normal }),
            ColumnSchema::new(
                "vip",
                ColumnType::Integer { width: IntWidth::Tiny, unsigned: false, display_width: Some(1) },
            ),
            ColumnSchema::new("name", ColumnType::VarChar { length: 40 }),
        ],
    );
    t.primary_key = vec!["id".into()];
    t.indexes = vec![IndexSchema {
        name: "ix_notes_name".into(),
        kind: IndexKind::Plain,
        columns: vec![IndexColumn::new("notes"), IndexColumn::new("name")],
    }];
    Arc::new(t)
}

fn rules() -> MappingRules {
    MappingRules::new().hash_key(KEY).source_type("tinyint(1)", "boolean").table("shop.customers", |t| {
        t.rename("crm.clients")
            .filter("tenant_id = 7".parse().unwrap())
            .column("email", |c| c.mask(Mask::Hash))
            .column("phone", |c| c.mask(Mask::Partial { keep_last: 4, mask_char: '*' }))
            .column("notes", |c| c.exclude())
            .column("name", |c| c.rename("full_name").transform("upper(%d)"))
            .column("secret", |c| c.exclude())
    })
}

fn row(id: i64, tenant: i64, email: &str, vip: i64) -> Row {
    vec![
        Value::Int(id),
        Value::Int(tenant),
        Value::Text(email.into()),
        Value::Text("555-123-4567".into()),
        Value::Text("private".into()),
        Value::Int(vip),
        Value::Text("Ann".into()),
    ]
}

fn h(v: &str) -> Value {
    synchdb_core::mapping::hash_value(KEY.as_bytes(), &Value::Text(v.into()))
}

fn meta(n: u64) -> EventMeta {
    EventMeta {
        position: BinlogPosition::new("mysql-bin.000001", n),
        commit_time: chrono::Utc::now(),
        tx: n,
        index: 0,
    }
}

fn pos(n: u64) -> Position {
    Position::new(BinlogPosition::new("mysql-bin.000001", n))
}

fn tx(n: u64, events: Vec<ChangeEvent>) -> Transaction {
    Transaction::new(n, pos(n * 100), chrono::Utc::now(), events)
}

fn ins(t: &Arc<TableSchema>, row: Row, n: u64) -> ChangeEvent {
    ChangeEvent::Insert(InsertEvent { table: t.clone(), row, meta: meta(n) })
}

fn upd(t: &Arc<TableSchema>, before: Row, after: Row, n: u64) -> ChangeEvent {
    ChangeEvent::Update(UpdateEvent { table: t.clone(), before, after, meta: meta(n) })
}

fn del(t: &Arc<TableSchema>, row: Row, n: u64) -> ChangeEvent {
    ChangeEvent::Delete(DeleteEvent { table: t.clone(), row, meta: meta(n) })
}

fn ddl(change: SchemaChange, after: Option<Arc<TableSchema>>, n: u64) -> ChangeEvent {
    ChangeEvent::Schema(Box::new(SchemaChangeEvent {
        change,
        schema_after: after,
        ddl: "ALTER".into(),
        meta: meta(n),
    }))
}

async fn run(
    mapping: impl Converter + 'static,
    snapshot: Vec<TableRows>,
    txs: Vec<Transaction>,
    policy: ErrorPolicy,
) -> (MemorySink, synchdb_core::Result<synchdb_core::StatsSnapshot>) {
    let sink = MemorySink::new();
    let r = Pipeline::builder()
        .id("mapping")
        .source(MemorySource::new(txs).with_snapshot(pos(1), snapshot))
        .converter(mapping)
        .sink(sink.clone())
        .error_policy(policy)
        .build()
        .unwrap()
        .start()
        .wait()
        .await;
    (sink, r)
}

#[tokio::test]
async fn every_rule_through_snapshot_changes_and_ddl() {
    let t = customers();
    let mapping = Mapping::new(rules()).unwrap();
    let snapshot =
        vec![(t.clone(), vec![row(1, 7, "a@x.com", 1), row(2, 8, "b@x.com", 0), row(3, 7, "c@x.com", 0)])];
    // After ADD COLUMN: a new column, one excluded by a rule.
    let mut t2 = (*t).clone();
    t2.columns.push(int("points"));
    t2.columns.push(ColumnSchema::new("secret", ColumnType::VarChar { length: 10 }));
    let t2 = Arc::new(t2);
    let mut r2 = row(1, 7, "a@x.com", 1);
    r2.extend([Value::Int(5), Value::Text("s3cr3t".into())]);
    let txs = vec![
        tx(1, vec![ins(&t, row(4, 7, "d@x.com", 0), 1), ins(&t, row(5, 8, "e@x.com", 1), 2)]),
        // 2 moves into the filter, 3 moves out, 1 stays in (its email changes).
        tx(
            2,
            vec![
                upd(&t, row(2, 8, "b@x.com", 0), row(2, 7, "b@x.com", 0), 3),
                upd(&t, row(3, 7, "c@x.com", 0), row(3, 8, "c@x.com", 0), 4),
                upd(&t, row(1, 7, "a@x.com", 1), row(1, 7, "a2@x.com", 1), 5),
                upd(&t, row(5, 8, "e@x.com", 1), row(5, 9, "e@x.com", 1), 6),
                del(&t, row(4, 7, "d@x.com", 0), 7),
                del(&t, row(5, 9, "e@x.com", 1), 8),
            ],
        ),
        tx(
            3,
            vec![ddl(
                SchemaChange::AddColumn {
                    table: t.id.clone(),
                    column: int("points"),
                    position: ColumnPosition::Last,
                },
                Some(t2.clone()),
                9,
            )],
        ),
        tx(
            4,
            vec![ddl(
                SchemaChange::AddColumn {
                    table: t.id.clone(),
                    column: ColumnSchema::new("secret", ColumnType::VarChar { length: 10 }),
                    position: ColumnPosition::After("notes".into()),
                },
                Some(t2.clone()),
                10,
            )],
        ),
        tx(
            5,
            vec![ddl(
                SchemaChange::DropColumn { table: t.id.clone(), name: "notes".into() },
                Some(t2.clone()),
                11,
            )],
        ),
        tx(
            6,
            vec![ddl(
                SchemaChange::ModifyColumn {
                    table: t.id.clone(),
                    old: ColumnSchema::new("name", ColumnType::VarChar { length: 40 }),
                    new: ColumnSchema::new("name", ColumnType::VarChar { length: 80 }),
                    position: None,
                },
                Some(t2.clone()),
                12,
            )],
        ),
        tx(7, vec![ins(&t2, r2, 13)]),
    ];
    let (sink, r) = run(mapping, snapshot, txs, ErrorPolicy::Exit).await;
    r.unwrap();
    let data = sink.data();
    let clients = TableId::new("crm", "clients");
    // Snapshot: renamed table, filtered rows, masked and dropped columns, boolean.
    let created = &data.tables[&clients];
    let names: Vec<&str> = created.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "tenant_id", "email", "phone", "vip", "full_name"]);
    assert_eq!(created.column("vip").unwrap().target_type, Some(TargetType::Boolean));
    assert_eq!(created.column("email").unwrap().target_type, None, "varchar(120) holds a hash");
    assert_eq!(
        created.column("full_name").unwrap().target_expr.as_ref().map(|x| x.template()),
        Some("upper(%d)")
    );
    assert!(created.indexes.is_empty(), "an index on an excluded column is left out");
    let rows = &data.snapshot_rows[&clients];
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        vec![
            Value::Int(1),
            Value::Int(7),
            h("a@x.com"),
            Value::Text("********4567".into()),
            Value::Text("true".into()),
            Value::Text("Ann".into())
        ]
    );
    assert!(!data.snapshot_rows.contains_key(&t.id));

    let events: Vec<ChangeEvent> = data.transactions.iter().flat_map(|t| t.events.clone()).collect();
    let ops: Vec<&str> = events.iter().map(|e| e.operation()).collect();
    // tx1: one insert kept; tx2: insert (moved in), delete (moved out), update, delete;
    // the update from tenant 8 to 9 and the delete of tenant 9 are dropped; DDL: add
    // column, (secret ignored), (notes ignored), modify; then the insert.
    assert_eq!(ops, ["insert", "insert", "delete", "update", "delete", "ddl", "ddl", "insert"]);
    for e in &events {
        assert_eq!(e.table_id(), &clients, "{e:?}");
    }
    match &events[1] {
        ChangeEvent::Insert(i) => assert_eq!(i.row[0], Value::Int(2)),
        e => panic!("{e:?}"),
    }
    match &events[2] {
        ChangeEvent::Delete(d) => assert_eq!((&d.row[0], &d.row[2]), (&Value::Int(3), &h("c@x.com"))),
        e => panic!("{e:?}"),
    }
    match &events[3] {
        ChangeEvent::Update(u) => {
            assert_eq!(u.before[2], h("a@x.com"));
            assert_eq!(u.after[2], h("a2@x.com"));
        }
        e => panic!("{e:?}"),
    }
    match &events[5] {
        ChangeEvent::Schema(s) => {
            assert!(
                matches!(&s.change, SchemaChange::AddColumn { table, column, .. } if *table == clients && column.name == "points")
            );
            let after = s.schema_after.as_ref().unwrap();
            assert_eq!(after.id, clients);
            assert!(after.column("secret").is_none() && after.column("notes").is_none());
        }
        e => panic!("{e:?}"),
    }
    match &events[6] {
        ChangeEvent::Schema(s) => match &s.change {
            SchemaChange::ModifyColumn { table, old, new, .. } => {
                assert_eq!(table, &clients);
                assert_eq!((old.name.as_str(), new.name.as_str()), ("full_name", "full_name"));
                assert_eq!(new.target_expr.as_ref().map(|x| x.template()), Some("upper(%d)"));
            }
            c => panic!("{c:?}"),
        },
        e => panic!("{e:?}"),
    }
    match &events[7] {
        ChangeEvent::Insert(i) => {
            assert_eq!(i.row.len(), 7, "secret and notes left out, points added");
            assert_eq!(i.row[6], Value::Int(5));
            assert_eq!(i.table.columns.len(), 7);
        }
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn masked_primary_key_is_updated_and_deleted() {
    let mut t = TableSchema::new(
        TableId::new("shop", "people"),
        vec![int("id").not_null(), ColumnSchema::new("ssn", ColumnType::Char { length: 11 }).not_null()],
    );
    t.primary_key = vec!["id".into(), "ssn".into()];
    let t = Arc::new(t);
    let rules = MappingRules::new().hash_key(KEY).table("shop.people", |r| {
        r.column("id", |c| c.mask(Mask::Hash)).column("ssn", |c| c.mask(Mask::Hash))
    });
    let mapping = Mapping::new(rules).unwrap();
    let converted = mapping.convert_table(&t).unwrap().unwrap();
    assert_eq!(
        converted.column("id").unwrap().target_type,
        Some(TargetType::Text),
        "an INT cannot hold a hash"
    );
    assert_eq!(converted.column("ssn").unwrap().target_type, Some(TargetType::Text));
    let r = |id: i64, ssn: &str| vec![Value::Int(id), Value::Text(ssn.into())];
    let txs = vec![tx(
        1,
        vec![upd(&t, r(1, "111-11-1111"), r(10, "111-11-1111"), 1), del(&t, r(2, "222-22-2222"), 2)],
    )];
    let (sink, res) = run(
        mapping,
        vec![(t.clone(), vec![r(1, "111-11-1111"), r(2, "222-22-2222")])],
        txs,
        ErrorPolicy::Exit,
    )
    .await;
    res.unwrap();
    let data = sink.data();
    let snap = &data.snapshot_rows[&t.id];
    let hid = |i: i64| synchdb_core::mapping::hash_value(KEY.as_bytes(), &Value::Int(i));
    assert_eq!(snap[0], vec![hid(1), h("111-11-1111")]);
    let events: Vec<ChangeEvent> = data.transactions.iter().flat_map(|t| t.events.clone()).collect();
    match &events[0] {
        ChangeEvent::Update(u) => {
            assert_eq!(u.before, snap[0], "the before image finds the snapshot row");
            assert_eq!(u.after[0], hid(10));
        }
        e => panic!("{e:?}"),
    }
    match &events[1] {
        ChangeEvent::Delete(d) => assert_eq!(d.row, snap[1]),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn closure_converters_compose_in_order() {
    let t = customers();
    let lower = ColumnTransform::new("shop.customers", "email", |v| {
        Ok(match v {
            Value::Text(s) => Value::Text(s.to_lowercase()),
            o => o,
        })
    })
    .unwrap();
    let filter = RowFilter::new("*", |t: &TableSchema, row: &Row| {
        let i = t.column_index("email").unwrap();
        Ok(matches!(&row[i], Value::Text(s) if s.ends_with("@keep.com")))
    })
    .unwrap();
    let sink = MemorySink::new();
    let rows = vec![row(1, 7, "A@KEEP.COM", 0), row(2, 7, "b@drop.com", 0)];
    let txs = vec![tx(1, vec![upd(&t, row(2, 7, "b@drop.com", 0), row(2, 7, "B@Keep.com", 0), 1)])];
    Pipeline::builder()
        .source(MemorySource::new(txs).with_snapshot(pos(1), vec![(t.clone(), rows)]))
        .converter(lower) // runs first: the filter sees lower-case addresses
        .converter(filter)
        .sink(sink.clone())
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    let data = sink.data();
    assert_eq!(data.snapshot_rows[&t.id].len(), 1);
    assert_eq!(data.snapshot_rows[&t.id][0][2], Value::Text("a@keep.com".into()));
    let events: Vec<ChangeEvent> = data.transactions.iter().flat_map(|t| t.events.clone()).collect();
    assert!(matches!(&events[..], [ChangeEvent::Insert(i)] if i.row[2] == Value::Text("b@keep.com".into())));
    // A typed predicate filter drops rows whose value is NULL (SQL semantics).
    let f = RowFilter::predicate("shop.customers", Predicate::eq("name", "Ann")).unwrap();
    let mut r = row(1, 7, "x", 0);
    assert!(f.convert_row(&t, r.clone()).unwrap().is_some());
    r[6] = Value::Null;
    assert!(f.convert_row(&t, r).unwrap().is_none());
}

#[test]
fn startup_validation_names_table_and_column() {
    let t = (*customers()).clone();
    // `rules()` names `secret`, a column added later by DDL: startup validation refuses it.
    let e = Mapping::new(rules()).unwrap().validate(std::slice::from_ref(&t)).unwrap_err();
    assert_eq!(e.column(), Some("secret"));
    let rules = || {
        let mut r = rules();
        r.tables.get_mut("shop.customers").unwrap().columns.remove("secret");
        r
    };
    Mapping::new(rules()).unwrap().validate(std::slice::from_ref(&t)).unwrap();
    let m = Mapping::new(rules().table("shop.nope", |r| r.exclude())).unwrap();
    let e = m.validate(std::slice::from_ref(&t)).unwrap_err();
    assert_eq!((e.kind(), e.table()), (ErrorKind::Config, Some(&TableId::new("shop", "nope"))));

    let m =
        Mapping::new(rules().table("shop.customers", |r| r.column("emial", |c| c.mask(Mask::Hash)))).unwrap();
    let e = m.validate(std::slice::from_ref(&t)).unwrap_err();
    assert_eq!((e.kind(), e.column()), (ErrorKind::Config, Some("emial")));

    let check = |rules: MappingRules| {
        Mapping::new(rules).and_then(|m| m.validate(std::slice::from_ref(&t))).unwrap_err()
    };
    let base = || MappingRules::new().hash_key(KEY);
    let e = check(
        base().table("shop.customers", |r| r.column("email", |c| c.mask(Mask::Redact { value: None }))),
    );
    assert!(e.message().contains("NOT NULL"), "{e}");
    let e = check(base().table("shop.customers", |r| r.column("id", |c| c.exclude())));
    assert_eq!(e.column(), Some("id"));
    let e =
        check(base().table("shop.customers", |r| {
            r.column("id", |c| c.mask(Mask::Redact { value: Some("0".into()) }))
        }));
    assert!(e.message().contains("key"), "{e}");
    let e = check(base().table("shop.customers", |r| {
        r.column("vip", |c| c.mask(Mask::Partial { keep_last: 1, mask_char: '*' }))
    }));
    assert!(e.message().contains("textual"), "{e}");
    let e =
        check(base().table("shop.customers", |r| {
            r.column("email", |c| c.mask(Mask::Hash).target_type("varchar(20)"))
        }));
    assert!(e.message().contains("cannot hold"), "{e}");
    let e = check(base().table("shop.customers", |r| r.filter("tenant = 7".parse().unwrap())));
    assert_eq!(e.column(), Some("tenant"));
    let e = check(base().table("shop.customers", |r| r.column("phone", |c| c.rename("email"))));
    assert!(e.message().contains("two columns"), "{e}");
    let e = check(base().table("shop.customers", |r| r.rename("shop.orders")).table("shop.orders", |r| r));
    assert_eq!(e.kind(), ErrorKind::Config);

    // Checks that need no schema happen at construction.
    let no_key = MappingRules::new().table("shop.customers", |r| r.column("email", |c| c.mask(Mask::Hash)));
    assert!(Mapping::new(no_key.clone()).is_err());
    assert!(Mapping::new(no_key.hash_key_env("SYNCHDB_TEST_SURELY_UNSET_VARIABLE")).is_err());
    let bad = MappingRules::new().table("shop.customers", |r| r.column("name", |c| c.transform("lower(x)")));
    assert!(Mapping::new(bad).unwrap_err().message().contains("%d"));
}

#[tokio::test]
async fn value_errors_follow_the_error_policy_with_context() {
    let t = Arc::new(TableSchema::new(
        TableId::new("shop", "shifts"),
        vec![int("id").not_null(), ColumnSchema::new("len", ColumnType::Time { fsp: 0 })],
    ));
    let mapping = Mapping::new(MappingRules::new().source_type("time", "time")).unwrap();
    let ok = vec![Value::Int(1), Value::Time("08:00:00".parse().unwrap())];
    let bad = vec![Value::Int(2), Value::Time("-01:00:00".parse().unwrap())];
    let txs = vec![tx(1, vec![ins(&t, bad.clone(), 1)]), tx(2, vec![ins(&t, ok.clone(), 2)])];
    let (sink, r) = run(
        mapping,
        vec![(t.clone(), vec![ok.clone()])],
        txs.clone(),
        ErrorPolicy::Skip(RetryPolicy::default()),
    )
    .await;
    r.unwrap();
    let data = sink.data();
    assert_eq!(data.dead_letters.len(), 1);
    let msg = &data.dead_letters[0].1;
    assert!(
        msg.contains("shop.shifts") && msg.contains("column len") && msg.contains("mysql-bin.000001:1"),
        "{msg}"
    );
    assert_eq!(data.transactions.iter().map(|t| t.events.len()).sum::<usize>(), 1);

    let mapping = Mapping::new(MappingRules::new().source_type("time", "time")).unwrap();
    let (_, r) = run(mapping, vec![], txs, ErrorPolicy::Exit).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Convert);
    assert_eq!(e.table(), Some(&t.id));
    assert!(e.to_string().contains("column len"), "{e}");
}

#[test]
fn ddl_that_would_escape_the_rules_is_an_error() {
    let t = customers();
    let m = Mapping::new(rules()).unwrap();
    let mut out = Vec::new();
    // The source renames a masked column to a name without rules: refuse rather than leak.
    let change = SchemaChange::RenameColumn { table: t.id.clone(), from: "email".into(), to: "mail".into() };
    let e = m.convert_event(ddl(change, Some(t.clone()), 1), &mut out).unwrap_err();
    assert!(e.message().contains("different mapping rules"), "{e}");
    let change = SchemaChange::RenameTable { from: t.id.clone(), to: TableId::new("shop", "old_customers") };
    assert!(m.convert_event(ddl(change, None, 2), &mut out).is_err());
    // A renamed table is dropped under its destination name; a dropped excluded column is ignored.
    m.convert_event(ddl(SchemaChange::DropTable { table: t.id.clone() }, None, 3), &mut out).unwrap();
    m.convert_event(
        ddl(SchemaChange::DropColumn { table: t.id.clone(), name: "notes".into() }, Some(t.clone()), 4),
        &mut out,
    )
    .unwrap();
    assert!(
        matches!(&out[..], [ChangeEvent::Schema(s)] if matches!(&s.change, SchemaChange::DropTable { table } if table.table == "clients"))
    );
}

#[test]
fn foreign_key_changes_follow_renames_and_exclusions() {
    let orders = Arc::new(TableSchema::new(
        TableId::new("shop", "orders"),
        vec![int("id").not_null(), int("customer_id"), int("notes_id"), int("audit_id")],
    ));
    let rules = rules()
        .table("shop.orders", |t| t.column("customer_id", |c| c.rename("client_id")))
        .table("shop.audit", |t| t.exclude())
        .table("shop.people", |t| t.rename("crm.persons"));
    let m = Mapping::new(rules).unwrap();
    let fk = |name: &str, column: &str, table: &str, referenced: &str| ForeignKey {
        name: name.into(),
        columns: vec![column.into()],
        referenced_table: TableId::new("shop", table),
        referenced_columns: vec![referenced.into()],
        on_update: ReferentialAction::Restrict,
        on_delete: ReferentialAction::Cascade,
    };
    let add = |foreign_key: ForeignKey, n: u64| {
        ddl(SchemaChange::AddForeignKey { table: orders.id.clone(), foreign_key }, Some(orders.clone()), n)
    };
    let mut out = Vec::new();
    // Both ends renamed: the referencing column, the referenced table.
    m.convert_event(add(fk("fk_cust", "customer_id", "people", "id"), 1), &mut out).unwrap();
    // The referenced table has a row filter: the key is left out.
    m.convert_event(add(fk("fk_filtered", "customer_id", "customers", "id"), 1), &mut out).unwrap();
    // An end on an excluded column, or on an excluded table: the key is left out.
    m.convert_event(add(fk("fk_notes", "notes_id", "customers", "notes"), 2), &mut out).unwrap();
    m.convert_event(add(fk("fk_audit", "audit_id", "audit", "id"), 3), &mut out).unwrap();
    let drop = SchemaChange::DropForeignKey { table: orders.id.clone(), name: "fk_cust".into() };
    m.convert_event(ddl(drop, Some(orders.clone()), 4), &mut out).unwrap();
    // Changes of the excluded table go nowhere.
    let drop = SchemaChange::DropForeignKey { table: TableId::new("shop", "audit"), name: "x".into() };
    m.convert_event(ddl(drop, None, 5), &mut out).unwrap();
    let changes: Vec<&SchemaChange> = out
        .iter()
        .map(|e| match e {
            ChangeEvent::Schema(s) => &s.change,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        changes,
        [
            &SchemaChange::AddForeignKey {
                table: orders.id.clone(),
                foreign_key: ForeignKey {
                    columns: vec!["client_id".into()],
                    referenced_table: TableId::new("crm", "persons"),
                    ..fk("fk_cust", "customer_id", "people", "id")
                },
            },
            &SchemaChange::DropForeignKey { table: orders.id.clone(), name: "fk_cust".into() },
        ]
    );
}

#[test]
fn explain_shows_names_types_and_transforms() {
    let m = Mapping::new(rules()).unwrap();
    let views = m.explain(&[(*customers()).clone()]).unwrap();
    let text = views[0].to_string();
    assert!(text.starts_with("shop.customers -> crm.clients  where tenant_id = 7"), "{text}");
    assert!(text.contains("notes      text          -> (excluded)"), "{text}");
    assert!(text.contains("mask hash (hmac-sha256)"), "{text}");
    assert!(text.contains("-> full_name"), "{text}");
    assert!(text.contains("sql upper(%d)"), "{text}");
    let vip = &views[0].columns[5];
    assert_eq!((vip.target_name(), vip.target_type.as_deref()), (Some("vip"), Some("boolean")));
    let mut v = views[0].clone();
    v.resolve_types(|_, c| Ok(c.target_type.as_ref().map_or("default".into(), ToString::to_string))).unwrap();
    assert_eq!(v.columns[0].target_type.as_deref(), Some("default"));
}

/// A source that tells its tables in advance, around a memory source.
struct Discovering(MemorySource, Vec<TableSchema>);

#[async_trait::async_trait]
impl synchdb_core::Source for Discovering {
    fn name(&self) -> &str {
        "discovering"
    }
    async fn run(&mut self, ctx: synchdb_core::SourceContext) -> synchdb_core::Result<()> {
        self.0.run(ctx).await
    }
    async fn discover_tables(&mut self) -> synchdb_core::Result<Option<Vec<TableSchema>>> {
        Ok(Some(self.1.clone()))
    }
}

#[tokio::test]
async fn the_pipeline_checks_rules_against_discovered_tables_before_any_data() {
    let t = customers();
    let rules = MappingRules::from_toml_str(&format!(
        "[tables.\"{}\".columns]\nemial = {{ exclude = true }}\n",
        t.id
    ))
    .unwrap();
    let mapping = Mapping::new(rules).unwrap();
    let sink = MemorySink::new();
    let source =
        MemorySource::new(vec![]).with_snapshot(pos(1), vec![(t.clone(), vec![row(1, 1, "a@b", 0)])]);
    let err = Pipeline::builder()
        .id("checked")
        .source(Discovering(source, vec![(*t).clone()]))
        .converter(mapping)
        .sink(sink.clone())
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .expect_err("a misspelt column must stop the pipeline at start");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("emial"), "{err}");
    assert!(sink.data().snapshot_rows.is_empty(), "no data moved before the check");
}

/// A sink that honours no column settings and counts its shutdowns,
/// around a memory sink.
struct Plain(MemorySink, Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl synchdb_core::Sink for Plain {
    fn name(&self) -> &str {
        "plain"
    }
    fn state(&self) -> Option<&dyn synchdb_core::SinkState> {
        self.0.state()
    }
    async fn prepare_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        restart: &[TableId],
        state: &synchdb_core::StateUpdate,
    ) -> synchdb_core::Result<()> {
        self.0.prepare_snapshot(pipeline, tables, restart, state).await
    }
    async fn write_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &synchdb_core::ChunkInfo,
        read_at: &Position,
        rows: synchdb_core::RowStream<'_>,
    ) -> synchdb_core::Result<u64> {
        self.0.write_chunk(pipeline, table, chunk, read_at, rows).await
    }
    async fn finish_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &synchdb_core::StateUpdate,
    ) -> synchdb_core::Result<()> {
        self.0.finish_snapshot(pipeline, tables, state).await
    }
    async fn apply(&self, pipeline: &str, batch: &synchdb_core::ChangeBatch) -> synchdb_core::Result<()> {
        self.0.apply(pipeline, batch).await
    }
    async fn shutdown(&self) -> synchdb_core::Result<()> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_column_setting_the_sink_cannot_honour_stops_the_start_and_shutdown_runs_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let t = customers();
    let snapshot =
        || MemorySource::new(vec![]).with_snapshot(pos(1), vec![(t.clone(), vec![row(1, 1, "a@b", 0)])]);
    let typed = Mapping::new(
        MappingRules::from_toml_str(&format!(
            "[tables.\"{}\".columns]\nemail = {{ type = \"text\" }}\n",
            t.id
        ))
        .unwrap(),
    )
    .unwrap();
    let memory = MemorySink::new();
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let err = Pipeline::builder()
        .id("plain")
        .source(Discovering(snapshot(), vec![(*t).clone()]))
        .converter(typed)
        .sink(Plain(memory.clone(), shutdowns.clone()))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .expect_err("a destination type the sink cannot honour must stop the start");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("shop.customers.email") && err.to_string().contains("plain"), "{err}");
    assert!(memory.data().snapshot_rows.is_empty(), "no data moved before the check");
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1, "shutdown after a failed start");

    // Rules that need nothing from the sink (a rename) run, and shutdown comes once at the end.
    let renamed = Mapping::new(
        MappingRules::from_toml_str(&format!(
            "[tables.\"{}\".columns]\nphone = {{ rename = \"tel\" }}\n",
            t.id
        ))
        .unwrap(),
    )
    .unwrap();
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let memory = MemorySink::new();
    Pipeline::builder()
        .id("plain2")
        .source(Discovering(snapshot(), vec![(*t).clone()]))
        .converter(renamed)
        .sink(Plain(memory.clone(), shutdowns.clone()))
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(memory.data().snapshot_rows.values().map(Vec::len).sum::<usize>(), 1);
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
}

#[test]
fn destination_types_are_typed_and_native_names_need_the_sink_to_read_them() {
    let t = customers();
    let rules = |ty: &str| {
        MappingRules::from_toml_str(&format!(
            "[tables.\"{}\".columns]\nemail = {{ type = \"{ty}\" }}\n",
            t.id
        ))
        .unwrap()
    };
    let err = Mapping::new(rules("varchar(x)")).expect_err("a malformed type is refused at once");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("email") && err.to_string().contains("varchar(x)"), "{err}");

    let typed = Mapping::new(rules("Character Varying(200)")).unwrap().convert_table(&t).unwrap().unwrap();
    let email = typed.column("email").unwrap();
    assert_eq!(email.target_type, Some(TargetType::VarChar { length: Some(200) }));
    let native = Mapping::new(rules("citext")).unwrap().convert_table(&t).unwrap().unwrap();
    assert_eq!(native.column("email").unwrap().target_type, Some(TargetType::Native("citext".into())));

    let portable = SinkCapabilities::none().with_type_overrides(true);
    portable.check("portable", std::slice::from_ref(&typed)).unwrap();
    let err = portable
        .check("portable", std::slice::from_ref(&native))
        .expect_err("a native name needs native_types");
    assert!(err.to_string().contains("own dialect") && err.to_string().contains("citext"), "{err}");
    portable.with_native_types(true).check("portable", &[native]).unwrap();
    SinkCapabilities::none().check("none", &[typed]).expect_err("a typed override needs type_overrides");
}
