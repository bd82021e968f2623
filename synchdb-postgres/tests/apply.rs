//! Change apply: keyless tables, foreign keys, set-based vs row-by-row, idempotence.

mod common;

use common::*;
use synchdb_core::{ChangeBatch, ErrorKind, Sink, SinkState, StateUpdate};
use synchdb_postgres::{ApplyMode, PgSink, PgSinkOptions};
use synchdb_types::*;

#[tokio::test]
async fn keyless_table_changes_exactly_one_identical_row() {
    let db = db("pg_keyless");
    for mode in [ApplyMode::SetBased, ApplyMode::RowByRow] {
        let s = sink(&db, |o| o.apply_mode(mode)).await;
        let name = format!("{mode:?}").to_lowercase();
        let t = table(
            "k",
            &name,
            vec![int("a", IntWidth::Int, false), varchar("b", 10), ColumnSchema::new("j", ColumnType::Json)],
            &[],
        );
        let row =
            |b: &str| vec![Value::Int(1), Value::Text(b.into()), Value::Json(r#"{"k": [1, 2]}"#.into())];
        snapshot(&s, &name, &[(t.clone(), vec![row("x"), row("x"), row("x"), row("x")])]).await;
        s.apply(&name, &batch(10, vec![del(&t, row("x"), 10)])).await.unwrap();
        assert_eq!(one(&db, &format!("SELECT count(*) FROM k.{name}")), "3");
        s.apply(&name, &batch(11, vec![upd(&t, row("x"), row("y"), 11)])).await.unwrap();
        assert_eq!(
            query(&db, &format!("SELECT b, count(*) FROM k.{name} GROUP BY b ORDER BY b")),
            ["x|2", "y|1"]
        );
        // JSON compared as jsonb: a differently spaced document still matches.
        let spaced = vec![Value::Int(1), Value::Text("y".into()), Value::Json(r#"{ "k" : [1,2] }"#.into())];
        s.apply(&name, &batch(12, vec![del(&t, spaced, 12)])).await.unwrap();
        assert_eq!(query(&db, &format!("SELECT b, count(*) FROM k.{name} GROUP BY b ORDER BY b")), ["x|2"]);
        // A NULL in the before image matches a NULL.
        let nul = vec![Value::Int(2), Value::Null, Value::Null];
        s.apply(
            &name,
            &batch(13, vec![ins(&t, nul.clone(), 13), ins(&t, nul.clone(), 13), del(&t, nul, 13)]),
        )
        .await
        .unwrap();
        assert_eq!(one(&db, &format!("SELECT count(*) FROM k.{name} WHERE a = 2")), "1");
    }
}

#[tokio::test]
async fn keyless_runs_pair_before_images_as_a_multiset_in_every_mode() {
    let db = db("pg_keyless_runs");
    let mut results = Vec::new();
    for mode in [ApplyMode::SetBased, ApplyMode::RowByRow] {
        let s = sink(&db, |o| o.apply_mode(mode)).await;
        let name = format!("{mode:?}").to_lowercase();
        let t = table(
            "kr",
            &name,
            vec![
                int("a", IntWidth::Int, false),
                varchar("b", 10),
                ColumnSchema::new("j", ColumnType::Json),
                ColumnSchema::new("f", ColumnType::Double { unsigned: false }),
            ],
            &[],
        );
        let row = |a: i64, b: Option<&str>, f: f64| {
            vec![
                Value::Int(a),
                b.map_or(Value::Null, |b| Value::Text(b.into())),
                Value::Json(r#"{"k": [1, 2]}"#.into()),
                Value::Double(f),
            ]
        };
        let x = row(1, Some("x"), 0.1);
        let nul = row(2, None, -0.0);
        let initial =
            vec![x.clone(), x.clone(), x.clone(), nul.clone(), nul.clone(), row(3, Some("w"), 1e300)];
        snapshot(&s, &name, &[(t.clone(), initial)]).await;
        let spaced = vec![
            Value::Int(3),
            Value::Text("w".into()),
            Value::Json(r#"{ "k" : [1,2] }"#.into()),
            Value::Double(1e300),
        ];
        let events = vec![
            // A run of deletes: an image twice takes two of its three rows; a NULL
            // matches a NULL; JSON compares as jsonb.
            del(&t, x.clone(), 10),
            del(&t, x.clone(), 10),
            del(&t, nul.clone(), 10),
            del(&t, spaced, 10),
            // Updates: the second matches what the first wrote (a new run), the
            // third's before image has no row (row by row: nothing changes for it).
            upd(&t, x.clone(), row(1, Some("y"), 0.1), 10),
            upd(&t, row(1, Some("y"), 0.1), row(1, Some("z"), 0.2), 10),
            upd(&t, nul.clone(), row(2, Some("n"), 2.5), 10),
            upd(&t, row(9, Some("none"), 9.0), row(9, Some("never"), 9.0), 10),
            // Then inserts and a run of deletes and updates over them.
            ins(&t, row(5, Some("v"), 5.0), 10),
            ins(&t, row(5, Some("v"), 5.0), 10),
            upd(&t, row(5, Some("v"), 5.0), row(6, Some("u"), 6.0), 10),
            upd(&t, row(5, Some("v"), 5.0), row(6, Some("u"), 6.0), 10),
            del(&t, row(6, Some("u"), 6.0), 10),
        ];
        s.apply(&name, &batch(10, events)).await.unwrap();
        let rows = query(
            &db,
            &format!("SELECT a, coalesce(b, 'NULL'), f, j::jsonb FROM kr.{name} ORDER BY a, b, f"),
        );
        results.push(rows);
    }
    let expected = ["1|z|0.2|{\"k\": [1, 2]}", "2|n|2.5|{\"k\": [1, 2]}", "6|u|6|{\"k\": [1, 2]}"];
    assert_eq!(results[0], expected, "set-based");
    assert_eq!(results[1], expected, "row by row");
}

/// A run over many identical keyless rows (a log table's `UPDATE t SET ...`
/// on rows that are all alike) pairs each before image with one row and each
/// after image with its own, in every mode, and takes rows through the probe
/// index a distinct before image at a time (it was matched against every row
/// holding the probe value, with a join of all rows against all images:
/// 131,072 such updates took minutes).
#[tokio::test]
async fn keyless_runs_over_identical_rows_pair_each_after_image_once() {
    let db = db("pg_keyless_same");
    for mode in [ApplyMode::SetBased, ApplyMode::RowByRow] {
        let s = sink(&db, |o| o.apply_mode(mode)).await;
        let name = format!("{mode:?}").to_lowercase();
        let t = table("ks", &name, vec![int("a", IntWidth::Int, false), int("b", IntWidth::Int, false)], &[]);
        let row = |a: i64, b: i64| vec![Value::Int(a), Value::Int(b)];
        let mut initial: Vec<Vec<Value>> = (0..2000).map(|_| row(4, 6)).collect();
        initial.extend((0..3).map(|_| row(5, 6)));
        snapshot(&s, &name, &[(t.clone(), initial)]).await;
        // 1,500 of the 2,000 equal rows get distinct after images; one of the
        // three (5, 6) rows is deleted, 300 of the others too.
        let mut events: Vec<_> = (0..1500).map(|i| upd(&t, row(4, 6), row(7, i), 10)).collect();
        events.push(del(&t, row(5, 6), 10));
        events.extend((0..300).map(|_| del(&t, row(4, 6), 10)));
        s.apply(&name, &batch(10, events)).await.unwrap();
        let counts = query(
            &db,
            &format!("SELECT a, count(*), count(DISTINCT b) FROM ks.{name} GROUP BY a ORDER BY a"),
        );
        assert_eq!(counts, ["4|200|1", "5|2|1", "7|1500|1500"], "{name}");
    }
}

/// Keyless tables find the rows an update or delete matches through an index
/// (the table's own `<table>_synchdb_match`, or a source index) before matching
/// every column; a run with a NULL in that column, and a sink without the
/// option, match by reading the table. Every way gives the same rows.
#[tokio::test]
async fn keyless_rows_are_found_through_an_index_or_without_one() {
    let db = db("pg_keyless_probe");
    let configs = [
        ("own_set", ApplyMode::SetBased, true, false),
        ("own_row", ApplyMode::RowByRow, true, false),
        ("none_set", ApplyMode::SetBased, false, false),
        ("source_ix", ApplyMode::SetBased, true, true),
    ];
    for (name, mode, own, source_index) in configs {
        let s = sink(&db, |o| o.apply_mode(mode).keyless_index(own)).await;
        let mut t = (*table("kp", name, vec![int("a", IntWidth::Int, false), varchar("b", 10)], &[])).clone();
        if source_index {
            t.indexes.push(IndexSchema {
                name: "by_b".into(),
                kind: IndexKind::Plain,
                columns: vec![IndexColumn::new("b")],
            });
        }
        let t = std::sync::Arc::new(t);
        let row = |a: Option<i64>, b: Option<&str>| {
            vec![a.map_or(Value::Null, Value::Int), b.map_or(Value::Null, |b| Value::Text(b.into()))]
        };
        let x = row(Some(1), Some("x"));
        let n = row(None, Some("n"));
        let initial = vec![
            x.clone(),
            x.clone(),
            x.clone(),
            n.clone(),
            n.clone(),
            row(Some(2), Some("y")),
            row(None, None),
        ];
        snapshot(&s, name, &[(t.clone(), initial)]).await;
        let indexes = query(
            &db,
            &format!("SELECT indexname FROM pg_indexes WHERE schemaname = 'kp' AND tablename = '{name}' ORDER BY 1"),
        );
        let expected: Vec<String> = match (own, source_index) {
            (_, true) => vec![format!("{name}_by_b")],
            (true, false) => vec![format!("{name}_synchdb_match")],
            (false, false) => vec![],
        };
        assert_eq!(indexes, expected, "{name}");
        // Runs whose probe values are all set.
        s.apply(
            name,
            &batch(
                10,
                vec![
                    del(&t, x.clone(), 10),
                    del(&t, x.clone(), 10),
                    upd(&t, row(Some(2), Some("y")), row(Some(2), Some("z")), 10),
                ],
            ),
        )
        .await
        .unwrap();
        // Runs with a NULL where the probe looks (column a; column b for the source index).
        s.apply(
            name,
            &batch(11, vec![del(&t, n.clone(), 11), upd(&t, row(None, None), row(Some(3), Some("w")), 11)]),
        )
        .await
        .unwrap();
        // Single rows, one of each kind.
        s.apply(name, &batch(12, vec![del(&t, x.clone(), 12)])).await.unwrap();
        s.apply(name, &batch(13, vec![upd(&t, n.clone(), row(Some(4), Some("v")), 13)])).await.unwrap();
        // A before image with no row changes nothing.
        s.apply(name, &batch(14, vec![del(&t, row(Some(1), Some("x")), 14)])).await.unwrap();
        let rows = query(
            &db,
            &format!("SELECT coalesce(a::text, 'NULL'), coalesce(b, 'NULL') FROM kp.{name} ORDER BY 1, 2"),
        );
        assert_eq!(rows, ["2|z", "3|w", "4|v"], "{name}");
    }
}

#[tokio::test]
async fn keyless_updates_keep_their_order_where_a_unique_key_could_collide() {
    let db = db("pg_keyless_unique");
    let s = sink(&db, |o| o).await;
    let mut t =
        (*table("ku", "t", vec![int("a", IntWidth::Int, false), int("b", IntWidth::Int, false)], &[]))
            .clone();
    t.indexes.push(IndexSchema {
        name: "b".into(),
        kind: IndexKind::Unique,
        columns: vec![IndexColumn { name: "b".into(), prefix_length: None, descending: false }],
    });
    let t = std::sync::Arc::new(t);
    let r = |a: i64, b: i64| vec![Value::Int(a), Value::Int(b)];
    // Stored in this order on the target; the source moved 5 → 8 first, then 2 → 5.
    snapshot(&s, "ku", &[(t.clone(), vec![r(1, 2), r(2, 5)])]).await;
    let events = vec![upd(&t, r(2, 5), r(2, 8), 10), upd(&t, r(1, 2), r(1, 5), 10)];
    s.apply("ku", &batch(10, events)).await.unwrap();
    assert_eq!(query(&db, "SELECT a, b FROM ku.t ORDER BY a"), ["1|5", "2|8"]);
}

#[tokio::test]
async fn upserts_and_deletes_keep_their_order_where_a_second_unique_key_could_collide() {
    let db = db("pg_unique_order");
    let s = sink(&db, |o| o).await;
    let mut t =
        (*table("uo", "users", vec![int("id", IntWidth::Int, false), varchar("email", 20)], &["id"])).clone();
    t.indexes.push(IndexSchema {
        name: "email".into(),
        kind: IndexKind::Unique,
        columns: vec![IndexColumn { name: "email".into(), prefix_length: None, descending: false }],
    });
    let t = std::sync::Arc::new(t);
    let plain = table("uo", "plain", vec![int("id", IntWidth::Int, false), varchar("email", 20)], &["id"]);
    let r = |id: i64, e: &str| vec![Value::Int(id), Value::Text(e.into())];
    snapshot(
        &s,
        "uo",
        &[(t.clone(), vec![r(1, "x"), r(4, "z")]), (plain.clone(), vec![r(1, "x"), r(4, "z")])],
    )
    .await;
    // Delete 4, upsert 3, delete 1, insert 2 taking 1's email: only correct in source
    // order (with the two runs of the plain table, the upserts go first).
    for tb in [&t, &plain] {
        let events = vec![
            del(tb, r(4, "z"), 10),
            ins(tb, r(3, "y"), 10),
            del(tb, r(1, "x"), 10),
            ins(tb, r(2, "x"), 10),
        ];
        s.apply("uo", &batch(10, events)).await.unwrap();
    }
    assert_eq!(query(&db, "SELECT id, email FROM uo.users ORDER BY id"), ["2|x", "3|y"]);
    assert_eq!(query(&db, "SELECT id, email FROM uo.plain ORDER BY id"), ["2|x", "3|y"]);
}

fn parent_child() -> (std::sync::Arc<TableSchema>, std::sync::Arc<TableSchema>, std::sync::Arc<TableSchema>) {
    let parent = table("fk", "parent", vec![int("id", IntWidth::Int, false), varchar("name", 10)], &["id"]);
    let mut child = (*table(
        "fk",
        "child",
        vec![int("id", IntWidth::Int, false), int("pid", IntWidth::Int, false)],
        &["id"],
    ))
    .clone();
    child.foreign_keys.push(ForeignKey {
        name: "child_parent".into(),
        columns: vec!["pid".into()],
        referenced_table: parent.id.clone(),
        referenced_columns: vec!["id".into()],
        on_update: ReferentialAction::Cascade,
        on_delete: ReferentialAction::Cascade,
    });
    let mut orphan = (*table(
        "fk",
        "orphan",
        vec![int("id", IntWidth::Int, false), int("pid", IntWidth::Int, false)],
        &["id"],
    ))
    .clone();
    orphan.foreign_keys.push(ForeignKey {
        name: "orphan_parent".into(),
        columns: vec!["pid".into()],
        referenced_table: parent.id.clone(),
        referenced_columns: vec!["id".into()],
        on_update: ReferentialAction::Restrict,
        on_delete: ReferentialAction::SetNull,
    });
    (parent, std::sync::Arc::new(child), std::sync::Arc::new(orphan))
}

#[tokio::test]
async fn foreign_keys_redo_innodb_cascades_and_never_fail_on_apply_order() {
    let db = db("pg_fk");
    let s = sink(&db, |o| o).await;
    let (parent, child, orphan) = parent_child();
    let p = |id: i64| vec![Value::Int(id), Value::Text(format!("p{id}"))];
    let c = |id: i64, pid: i64| vec![Value::Int(id), Value::Int(pid)];
    snapshot(
        &s,
        "fk",
        &[
            (parent.clone(), vec![p(1), p(2)]),
            (child.clone(), vec![c(10, 1), c(11, 1), c(12, 2)]),
            (orphan.clone(), vec![c(20, 1), c(21, 2)]),
        ],
    )
    .await;
    let defs = query(
        &db,
        "SELECT conname, condeferrable, condeferred, confupdtype, confdeltype FROM pg_constraint WHERE contype = 'f' ORDER BY conname",
    );
    assert_eq!(defs, ["child_parent|t|t|c|c", "orphan_parent|t|t|a|n"]);
    // The binlog holds only the parent's delete; PostgreSQL redoes the cascade and SET NULL.
    s.apply("fk", &batch(10, vec![del(&parent, p(1), 10)])).await.unwrap();
    assert_eq!(query(&db, "SELECT id, pid FROM fk.child ORDER BY id"), ["12|2"]);
    assert_eq!(
        query(&db, "SELECT id, coalesce(pid::text, 'NULL') FROM fk.orphan ORDER BY id"),
        ["20|NULL", "21|2"]
    );
    // Parent key change: ON UPDATE CASCADE follows (a real UPDATE, not delete + insert).
    s.apply("fk", &batch(11, vec![upd(&parent, p(2), vec![Value::Int(3), Value::Text("p2".into())], 11)]))
        .await
        .unwrap_err_or_ok_restrict();
    // Child before parent in one transaction: deferred check at commit.
    s.apply("fk", &batch(12, vec![ins(&child, c(30, 7), 12), ins(&parent, p(7), 12)])).await.unwrap();
    assert_eq!(one(&db, "SELECT pid FROM fk.child WHERE id = 30"), "7");
    // A batch that leaves a dangling reference still fails, at commit.
    let e = s.apply("fk", &batch(13, vec![ins(&child, c(31, 99), 13)])).await.unwrap_err();
    assert_eq!(e.kind(), synchdb_core::ErrorKind::SinkApply, "{e}");
}

#[tokio::test]
async fn ddl_and_truncate_after_row_changes_in_one_batch() {
    // Row changes leave deferred foreign-key checks pending; PostgreSQL refuses
    // ALTER TABLE and TRUNCATE of such a table until they have run.
    let db = db("pg_fk_ddl");
    let s = sink(&db, |o| o).await;
    let (parent, child, orphan) = parent_child();
    let p = |id: i64| vec![Value::Int(id), Value::Text(format!("p{id}"))];
    let c = |id: i64, pid: i64| vec![Value::Int(id), Value::Int(pid)];
    snapshot(
        &s,
        "fk",
        &[(parent.clone(), vec![p(1)]), (child.clone(), vec![c(10, 1)]), (orphan.clone(), vec![])],
    )
    .await;
    let add = SchemaChange::AddColumn {
        table: child.id.clone(),
        column: int("extra", IntWidth::Int, false),
        position: ColumnPosition::Last,
    };
    let b = ChangeBatch {
        transactions: vec![
            tx(20, 20, vec![ins(&child, c(11, 1), 20), upd(&child, c(10, 1), c(10, 1), 20)]),
            tx(21, 21, vec![ddl(add, None, 21)]),
            tx(22, 22, vec![ins(&orphan, c(40, 1), 22)]),
            tx(23, 23, vec![ChangeEvent::Truncate(TruncateEvent { table: orphan.clone(), meta: meta(23) })]),
            tx(24, 24, vec![ins(&orphan, c(41, 1), 24)]),
        ],
        state: StateUpdate { position: Some(pos(24)), ..Default::default() },
        open: false,
    };
    s.apply("fk", &b).await.unwrap();
    assert_eq!(query(&db, "SELECT id, coalesce(extra, -1) FROM fk.child ORDER BY id"), ["10|-1", "11|-1"]);
    assert_eq!(query(&db, "SELECT id FROM fk.orphan"), ["41"]);
}

trait RestrictExt {
    fn unwrap_err_or_ok_restrict(self);
}

impl RestrictExt for synchdb_core::Result<()> {
    /// orphan.pid references parent 2 with ON UPDATE RESTRICT (NO ACTION): changing the
    /// referenced key fails at commit, as InnoDB refuses it.
    fn unwrap_err_or_ok_restrict(self) {
        let e = self.expect_err("restricted key change must fail");
        assert_eq!(e.kind(), synchdb_core::ErrorKind::SinkApply, "{e}");
    }
}

#[tokio::test]
async fn key_changes_cascade_on_update() {
    let db = db("pg_fk_upd");
    let s = sink(&db, |o| o).await;
    let (parent, child, _) = parent_child();
    snapshot(
        &s,
        "u",
        &[
            (parent.clone(), vec![vec![Value::Int(1), Value::Text("a".into())]]),
            (child.clone(), vec![vec![Value::Int(10), Value::Int(1)]]),
        ],
    )
    .await;
    let before = vec![Value::Int(1), Value::Text("a".into())];
    let after = vec![Value::Int(5), Value::Text("b".into())];
    s.apply("u", &batch(10, vec![upd(&parent, before.clone(), after.clone(), 10)])).await.unwrap();
    assert_eq!(one(&db, "SELECT id, name FROM fk.parent"), "5|b");
    assert_eq!(one(&db, "SELECT pid FROM fk.child"), "5");
    // Replaying the same batch leaves the same tables.
    s.apply("u", &batch(10, vec![upd(&parent, before, after, 10)])).await.unwrap();
    assert_eq!(one(&db, "SELECT id, name FROM fk.parent"), "5|b");
    assert_eq!(one(&db, "SELECT id, pid FROM fk.child"), "10|5");
}

/// A random stream of changes with repeated keys, key changes and deletes, applied in
/// both modes and replayed: every table ends the same as a model of the source.
#[tokio::test]
async fn set_based_and_row_by_row_agree_with_the_model_and_replay_is_idempotent() {
    let db = db("pg_modes");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut model: std::collections::BTreeMap<i64, String> = Default::default();
    let mk = |t: &std::sync::Arc<TableSchema>| t.clone();
    let t1 = table("m", "set", vec![int("id", IntWidth::Big, false), varchar("v", 20)], &["id"]);
    let t2 = table("m", "row", vec![int("id", IntWidth::Big, false), varchar("v", 20)], &["id"]);
    let mut batches: Vec<Vec<(u8, i64, i64, String)>> = Vec::new();
    for _ in 0..20 {
        let mut ops = Vec::new();
        for _ in 0..60 {
            let id = rng.below(30) as i64;
            let v = format!("v{}", rng.below(1000));
            match (model.contains_key(&id), rng.below(10)) {
                (false, _) => {
                    model.insert(id, v.clone());
                    ops.push((0, id, id, v));
                }
                (true, 0..=1) => {
                    model.remove(&id);
                    ops.push((2, id, id, String::new()));
                }
                (true, 2) => {
                    let new = 100 + rng.below(1000) as i64;
                    if model.contains_key(&new) {
                        continue;
                    }
                    let old = model.remove(&id).unwrap();
                    model.insert(new, v.clone());
                    ops.push((3, id, new, old));
                    ops.last_mut().unwrap().3 = format!("{}>{v}", ops.last().unwrap().3);
                }
                (true, _) => {
                    let old = model.insert(id, v.clone()).unwrap();
                    ops.push((1, id, id, format!("{old}>{v}")));
                }
            }
        }
        batches.push(ops);
    }
    for (t, mode) in [(mk(&t1), ApplyMode::SetBased), (mk(&t2), ApplyMode::RowByRow)] {
        let s = sink(&db, |o| o.apply_mode(mode)).await;
        let pipeline = t.id.table.clone();
        snapshot(&s, &pipeline, &[(t.clone(), vec![])]).await;
        let row = |id: i64, v: &str| vec![Value::Int(id), Value::Text(v.into())];
        for (i, ops) in batches.iter().enumerate() {
            let n = 10 + i as u64;
            let events: Vec<ChangeEvent> = ops
                .iter()
                .map(|(op, id, new, v)| match op {
                    0 => ins(&t, row(*id, v), n),
                    2 => del(&t, row(*id, "?"), n),
                    _ => {
                        let (old, newv) = v.split_once('>').unwrap();
                        upd(&t, row(*id, old), row(*new, newv), n)
                    }
                })
                .collect();
            s.apply(&pipeline, &batch(n, events.clone())).await.unwrap();
            if i % 5 == 4 {
                // at-least-once delivery: the same batch again changes nothing
                s.apply(&pipeline, &batch(n, events)).await.unwrap();
            }
        }
        let want: Vec<String> = model.iter().map(|(k, v)| format!("{k}|{v}")).collect();
        let got = query(&db, &format!("SELECT id, v FROM m.\"{}\" ORDER BY id", t.id.table));
        assert_eq!(got, want, "{mode:?}");
        assert_eq!(s.load_state(&pipeline).await.unwrap().unwrap().position, Some(pos(29)));
    }
}

#[tokio::test]
async fn follow_mode_adds_and_drops_foreign_keys_on_tables_with_rows() {
    let db = db("pg_fk_ddl");
    let s = sink(&db, |o| o).await;
    let base =
        table("fd", "base", vec![int("id", IntWidth::Int, false), varchar("code", 10)], &["id", "code"]);
    let child = table(
        "fd",
        "child",
        vec![int("id", IntWidth::Int, false), int("base_id", IntWidth::Int, false), varchar("base_code", 10)],
        &["id"],
    );
    // A key made at snapshot time, its name longer than PostgreSQL's 63 bytes.
    let long = format!("fk_{}", "x".repeat(70));
    let mut other = (*table(
        "fd",
        "other",
        vec![int("id", IntWidth::Int, false), int("pid", IntWidth::Int, false), varchar("pcode", 10)],
        &["id"],
    ))
    .clone();
    let fk = |name: &str, columns: &[&str], to: &TableId, refs: &[&str], del, upd| ForeignKey {
        name: name.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        referenced_table: to.clone(),
        referenced_columns: refs.iter().map(|c| c.to_string()).collect(),
        on_delete: del,
        on_update: upd,
    };
    use ReferentialAction::*;
    other.foreign_keys.push(fk(&long, &["pid", "pcode"], &base.id, &["id", "code"], Cascade, Restrict));
    let b = |id: i64, code: &str| vec![Value::Int(id), Value::Text(code.into())];
    let c = |id: i64, bid: i64, code: &str| vec![Value::Int(id), Value::Int(bid), Value::Text(code.into())];
    snapshot(
        &s,
        "fd",
        &[
            (base.clone(), vec![b(1, "a"), b(2, "b"), b(3, "c")]),
            (child.clone(), vec![c(1, 1, "a"), c(2, 2, "b"), c(3, 3, "c")]),
            (std::sync::Arc::new(other.clone()), vec![]),
        ],
    )
    .await;
    let with = |t: &TableSchema, keys: Vec<ForeignKey>| {
        std::sync::Arc::new(TableSchema { foreign_keys: keys, ..t.clone() })
    };
    let named = fk("fk_child", &["base_id", "base_code"], &base.id, &["id", "code"], Cascade, SetNull);
    let unnamed =
        fk("child_ibfk_1", &["base_id", "base_code"], &base.id, &["id", "code"], Restrict, Restrict);
    let elsewhere =
        fk("fk_gone", &["base_id"], &TableId::new("not_replicated", "t"), &["id"], Cascade, Cascade);
    let keys = vec![named.clone(), unnamed.clone(), elsewhere.clone()];
    let add = |k: &ForeignKey, n| {
        ddl(
            SchemaChange::AddForeignKey { table: child.id.clone(), foreign_key: k.clone() },
            Some(with(&child, keys.clone())),
            n,
        )
    };
    s.apply("fd", &batch(10, vec![add(&named, 10), add(&unnamed, 10), add(&elsewhere, 10)])).await.unwrap();
    let defs = query(
        &db,
        "SELECT conname, condeferrable, condeferred, confupdtype, confdeltype, pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE contype = 'f' AND conrelid = 'fd.child'::regclass ORDER BY conname",
    );
    assert_eq!(
        defs,
        [
            "child_ibfk_1|t|t|a|a|FOREIGN KEY (base_id, base_code) REFERENCES fd.base(id, code) DEFERRABLE INITIALLY DEFERRED NOT VALID",
            "fk_child|t|t|n|c|FOREIGN KEY (base_id, base_code) REFERENCES fd.base(id, code) ON UPDATE SET NULL ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED NOT VALID",
        ],
        "the key to a table that is not replicated is skipped"
    );
    // InnoDB's index of a foreign key: one, named after the first key (the others,
    // on the same or leading columns, use it).
    assert_eq!(
        query(
            &db,
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'fd' AND tablename = 'child' ORDER BY 1"
        ),
        ["child_fk_child", "child_pkey"]
    );
    // Replaying the batch changes nothing.
    s.apply("fd", &batch(10, vec![add(&named, 10), add(&unnamed, 10)])).await.unwrap();
    // The binlog holds only the parent's delete: the new key redoes InnoDB's cascade
    // (child_ibfk_1's NO ACTION is checked at commit, after the cascade).
    s.apply("fd", &batch(11, vec![del(&base, b(1, "a"), 11)])).await.unwrap();
    assert_eq!(query(&db, "SELECT id FROM fd.child ORDER BY id"), ["2", "3"]);
    // DROP FOREIGN KEY: gone, and a parent delete no longer cascades; an unknown name is no error.
    let drop = |t: &TableId, name: &str, after: std::sync::Arc<TableSchema>, n| {
        ddl(SchemaChange::DropForeignKey { table: t.clone(), name: name.into() }, Some(after), n)
    };
    s.apply(
        "fd",
        &batch(
            12,
            vec![
                drop(&child.id, "fk_child", with(&child, vec![unnamed.clone()]), 12),
                drop(&child.id, "child_ibfk_1", with(&child, vec![]), 12),
                drop(&child.id, "never_there", with(&child, vec![]), 12),
            ],
        ),
    )
    .await
    .unwrap();
    s.apply("fd", &batch(13, vec![del(&base, b(2, "b"), 13)])).await.unwrap();
    assert_eq!(query(&db, "SELECT id FROM fd.child ORDER BY id"), ["2", "3"]);
    // A key the snapshot made (name cut to 63 bytes) is dropped by its source name.
    assert_eq!(
        one(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'fd.other'::regclass AND contype = 'f'"
        ),
        "1"
    );
    s.apply("fd", &batch(14, vec![drop(&other.id, &long, with(&other, vec![]), 14)])).await.unwrap();
    assert_eq!(
        one(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'fd.other'::regclass AND contype = 'f'"
        ),
        "0"
    );
    // RENAME TABLE: InnoDB renames the names it generated, and so does the sink (the
    // orphan the uncascaded delete left goes first: the new key checks existing rows).
    let gen = fk("child_ibfk_2", &["base_id", "base_code"], &base.id, &["id", "code"], Cascade, Restrict);
    s.apply("fd", &batch(15, vec![del(&child, c(2, 2, "b"), 15), add(&gen, 15)])).await.unwrap();
    let kid = TableId::new("fd", "kid");
    let renamed = std::sync::Arc::new(TableSchema { id: kid.clone(), ..(*with(&child, vec![])).clone() });
    s.apply(
        "fd",
        &batch(
            16,
            vec![ddl(
                SchemaChange::RenameTable { from: child.id.clone(), to: kid.clone() },
                Some(renamed.clone()),
                16,
            )],
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        query(&db, "SELECT conname FROM pg_constraint WHERE conrelid = 'fd.kid'::regclass AND contype = 'f'"),
        ["kid_ibfk_2"]
    );
    s.apply("fd", &batch(17, vec![drop(&kid, "kid_ibfk_2", renamed, 17)])).await.unwrap();
    assert!(query(
        &db,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'fd.kid'::regclass AND contype = 'f'"
    )
    .is_empty());
}

#[tokio::test]
async fn a_sink_on_the_services_own_pool_checks_its_time_zone() {
    let db = db("pg_with_pool");
    let opts: PgSinkOptions = db.url().parse().unwrap();
    // A pool built from the sink's connect options (TimeZone UTC) is taken...
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect_with(opts.connect_options().unwrap())
        .await
        .unwrap();
    let s = PgSink::with_pool(pool.clone(), PgSinkOptions::new()).await.unwrap();
    let t = table("wp", "t", vec![int("id", IntWidth::Int, false)], &["id"]);
    snapshot(&s, "wp", &[(t.clone(), vec![vec![Value::Int(1)]])]).await;
    s.apply("wp", &batch(10, vec![ins(&t, vec![Value::Int(2)], 10)])).await.unwrap();
    assert_eq!(s.load_state("wp").await.unwrap().unwrap().position, Some(pos(10)));
    // ... and stays the service's: open after the sink's shutdown.
    s.shutdown().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM wp.t").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 2);

    // A pool whose sessions are not in UTC is refused with a clear error.
    let berlin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute("SET TimeZone = 'Europe/Berlin'").await.map(|_| ())
            })
        })
        .connect(&db.url())
        .await
        .unwrap();
    let e = PgSink::with_pool(berlin, PgSinkOptions::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("Europe/Berlin"), "{e}");
}

/// Large batches of keyed changes go through the piped applier (statements
/// of at most 1,000 rows executed while the next is encoded): same rows as
/// the model, replay changes nothing, and an error in a statement the
/// executing side runs stops the batch with that error, nothing of it kept.
#[tokio::test]
async fn large_keyed_batches_are_piped_in_order_and_a_failing_statement_stops_them() {
    let db = db("pg_piped");
    let s = sink(&db, |o| o).await;
    let mut v = varchar("v", 20);
    v.nullable = false;
    let t = table("pp", "t", vec![int("id", IntWidth::Big, false), v], &["id"]);
    snapshot(&s, "pp", &[(t.clone(), vec![])]).await;
    let row = |id: i64, v: &str| vec![Value::Int(id), Value::Text(v.into())];
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut model: std::collections::BTreeMap<i64, String> = Default::default();
    for b in 0..3u64 {
        let n = 10 + b;
        let mut events = Vec::new();
        for _ in 0..5000 {
            let id = rng.below(2000) as i64;
            let v = format!("v{}", rng.below(100_000));
            match (model.get(&id).cloned(), rng.below(4)) {
                (None, _) => {
                    events.push(ins(&t, row(id, &v), n));
                    model.insert(id, v);
                }
                (Some(old), 0) => {
                    events.push(del(&t, row(id, &old), n));
                    model.remove(&id);
                }
                (Some(old), _) => {
                    events.push(upd(&t, row(id, &old), row(id, &v), n));
                    model.insert(id, v);
                }
            }
        }
        let bt = batch(n, events);
        s.apply("pp", &bt).await.unwrap();
        if b == 1 {
            s.apply("pp", &bt).await.unwrap();
        }
    }
    let want: Vec<String> = model.iter().map(|(k, v)| format!("{k}|{v}")).collect();
    assert_eq!(query(&db, "SELECT id, v FROM pp.t ORDER BY id"), want);

    // A NULL into the NOT NULL column in the third of four statements.
    let mut events: Vec<ChangeEvent> = (0..3500).map(|i| ins(&t, row(100_000 + i, "new"), 20)).collect();
    events[2500] = ins(&t, vec![Value::Int(200_000), Value::Null], 20);
    let err = s.apply("pp", &batch(20, events)).await.expect_err("NOT NULL violated");
    assert_eq!(err.kind(), synchdb_core::ErrorKind::SinkApply, "{err}");
    assert!(err.to_string().contains("pp.t"), "names the table: {err}");
    assert_eq!(query(&db, "SELECT count(*) FROM pp.t WHERE id >= 100000"), ["0"]);
    assert_eq!(s.load_state("pp").await.unwrap().unwrap().position, Some(pos(12)));
}
