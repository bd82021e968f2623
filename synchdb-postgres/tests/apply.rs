//! Change apply: keyless tables, foreign keys, set-based vs row-by-row, idempotence.

mod common;

use common::*;
use synchdb_core::Sink;
use synchdb_postgres::ApplyMode;
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
