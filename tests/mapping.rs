//! End to end: `replicate --mapping FILE` from a real MariaDB into a real
//! PostgreSQL. Every rule kind goes through the snapshot, row changes and DDL:
//! a table renamed across schemas and then altered, excluded tables and columns,
//! type overrides (tinyint(1) → boolean, time → time), an SQL transform, hash,
//! partial and redaction masks (including a masked primary key updated and
//! deleted), a per-column zero-date policy, and a row filter with rows moving in
//! and out of it. The replica is compared with the source mapped in Rust.
//! Mapping errors are caught at startup or reported through the error policy.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use mysql_async::prelude::Queryable;
use sqlx::Row as _;
use synchdb::core::mapping::{hash_value, partial_mask};
use synchdb::types::Value;

const KEY: &str = "e2e-mask-key";

fn write_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("synchdb-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn with_mapping(mut cmd: Command, path: &PathBuf) -> Command {
    cmd.arg("--mapping").arg(path).env("SYNCHDB_TEST_MASK_KEY", KEY);
    cmd
}

fn hash(s: &str) -> Option<String> {
    match hash_value(KEY.as_bytes(), &Value::Text(s.into())) {
        Value::Text(h) => Some(h),
        other => panic!("{other:?}"),
    }
}

const SCHEMA: &str = r#"
CREATE TABLE customers (
  id INT PRIMARY KEY, tenant_id INT NOT NULL, email VARCHAR(120) NOT NULL, phone VARCHAR(20),
  notes TEXT, vip TINYINT(1) NOT NULL DEFAULT 0, name VARCHAR(40), shift TIME, born DATE
);
CREATE TABLE people (id INT PRIMARY KEY, ssn CHAR(11) NOT NULL, city VARCHAR(30));
CREATE TABLE audit (id INT PRIMARY KEY, what TEXT);
INSERT INTO customers VALUES
  (1, 7, 'ann@example.com', '555-123-4567', 'likes cats', 1, 'Ann', '08:00:00', '1990-05-01'),
  (2, 8, 'bob@example.com', '555-000-1111', 'other tenant', 0, 'Bob', '09:30:00', NULL),
  (3, 7, 'cy@example.com', NULL, NULL, 0, 'Cy', NULL, '2001-12-31'),
  (4, 8, 'dee@example.com', '555-222-3333', NULL, 1, 'Dee', '23:59:59', NULL);
SET SESSION sql_mode = '';
INSERT INTO customers VALUES (5, 7, 'eve@example.com', '12', NULL, 0, 'Eve', '00:00:00', '0000-00-00');
SET SESSION sql_mode = DEFAULT;
INSERT INTO people VALUES (1, '111-11-1111', 'Paris'), (2, '222-22-2222', 'Oslo'), (3, '333-33-3333', 'Rome');
INSERT INTO audit VALUES (1, 'boot');
"#;

fn mapping_toml(db: &str) -> String {
    format!(
        r#"
hash_key_env = "SYNCHDB_TEST_MASK_KEY"

[source_types]
"tinyint(1)" = "boolean"
"time" = "time"

[tables."{db}.customers"]
rename = "crm.clients"
filter = "tenant_id = 7"

[tables."{db}.customers".columns]
email = {{ mask = {{ kind = "hash" }} }}
phone = {{ mask = {{ kind = "partial", keep_last = 4 }} }}
notes = {{ exclude = true }}
name = {{ rename = "full_name", transform = "upper(%d)" }}
born = {{ zero_dates = "null" }}

[tables."{db}.people".columns]
id = {{ mask = {{ kind = "hash" }} }}
ssn = {{ mask = {{ kind = "redact", value = "XXX-XX-XXXX" }} }}

[tables."{db}.audit"]
exclude = true
"#
    )
}

type Rows = Vec<Vec<Option<String>>>;

async fn my_rows(my: &mut mysql_async::Conn, sql: &str) -> Rows {
    let rows: Vec<mysql_async::Row> = my.query(sql).await.unwrap();
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.get::<Option<Vec<u8>>, _>(i).flatten().map(|b| String::from_utf8_lossy(&b).into_owned())
                })
                .collect()
        })
        .collect()
}

async fn pg_rows(pg: &sqlx::PgPool, sql: &str) -> Rows {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(pg).await.unwrap();
    rows.iter().map(|r| (0..r.len()).map(|i| r.get::<Option<String>, _>(i)).collect()).collect()
}

/// The source's customers of tenant 7, mapped in Rust the way the rules say.
async fn expected_clients(my: &mut mysql_async::Conn, with_points: bool) -> Rows {
    let points = if with_points { ", CAST(points AS CHAR)" } else { "" };
    let sql = format!(
        "SELECT CAST(id AS CHAR), CAST(tenant_id AS CHAR), email, phone, CAST(vip AS CHAR), name, \
         CAST(shift AS CHAR), CAST(born AS CHAR){points} FROM customers WHERE tenant_id = 7"
    );
    let mut rows = my_rows(my, &sql).await;
    for r in &mut rows {
        r[2] = hash(r[2].as_deref().unwrap());
        r[3] = r[3].take().map(|p| match partial_mask(&Value::Text(p), 4, '*') {
            Some(Value::Text(m)) => m,
            other => panic!("{other:?}"),
        });
        r[4] = r[4].take().map(|v| if v == "0" { "false".into() } else { "true".into() });
        r[5] = r[5].take().map(|n| n.to_uppercase());
        if r[7].as_deref() == Some("0000-00-00") {
            r[7] = None;
        }
    }
    rows.sort();
    rows
}

async fn actual_clients(pg: &sqlx::PgPool, with_points: bool) -> Rows {
    let points = if with_points { ", points::text" } else { "" };
    let mut rows = pg_rows(
        pg,
        &format!(
            "SELECT id::text, tenant_id::text, email, phone, vip::text, full_name, shift::text, born::text{points} \
             FROM crm.clients"
        ),
    )
    .await;
    rows.sort();
    rows
}

async fn expected_people(my: &mut mysql_async::Conn) -> Rows {
    let mut rows = my_rows(my, "SELECT CAST(id AS CHAR), ssn, city FROM people").await;
    for r in &mut rows {
        r[0] = hash(r[0].as_deref().unwrap());
        r[1] = Some("XXX-XX-XXXX".into());
    }
    rows.sort();
    rows
}

async fn actual_people(pg: &sqlx::PgPool, db: &str) -> Rows {
    let mut rows = pg_rows(pg, &format!("SELECT id, ssn, city FROM \"{db}\".people")).await;
    rows.sort();
    rows
}

async fn columns(pg: &sqlx::PgPool, schema: &str, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY column_name",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pg)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_through_snapshot_row_changes_and_ddl() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e2e_map").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_map").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(SCHEMA).await.unwrap();
    let pg = connect_pg(&target.url()).await;
    let file = write_file("every_rule.toml", &mapping_toml(&db));
    let cmd = || with_mapping(replicate(&server.url(), &db, &target.url(), "map"), &file);

    // --explain: names, types and transforms, then exit 0 without replicating.
    let out = cmd().arg("--explain").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("{db}.customers -> crm.clients  where tenant_id = 7")), "{text}");
    assert!(text.contains(&format!("{db}.audit -> (excluded)")), "{text}");
    let line = |col: &str| {
        text.lines().find(|l| l.trim_start().starts_with(&format!("{col} "))).unwrap_or("").to_string()
    };
    assert!(line("email").contains("varchar(120)") && line("email").contains("mask hash"), "{text}");
    assert!(line("vip").contains("boolean") && line("vip").contains("0/1 to false/true"), "{text}");
    assert!(line("name").contains("-> full_name") && line("name").contains("sql upper(%d)"), "{text}");
    assert!(line("notes").contains("(excluded)"), "{text}");
    assert!(line("shift").contains("time ") || line("shift").ends_with("time"), "{text}");
    assert!(line("ssn").contains("mask redact"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("id ") && l.contains(" text") && l.contains("mask hash")),
        "{text}"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('crm', $1)",
    )
    .bind(&db)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(tables, 0, "--explain replicates nothing");

    // Snapshot.
    run_until_caught_up(cmd());
    let cols = columns(&pg, "crm", "clients").await;
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["born", "email", "full_name", "id", "phone", "shift", "tenant_id", "vip"]);
    let ty = |n: &str| cols.iter().find(|(c, _)| c == n).unwrap().1.clone();
    assert_eq!(ty("vip"), "boolean");
    assert_eq!(ty("shift"), "time without time zone");
    assert_eq!(columns(&pg, &db, "people").await.iter().find(|(c, _)| c == "id").unwrap().1, "text");
    assert!(columns(&pg, &db, "customers").await.is_empty(), "the renamed table is only in crm");
    assert!(columns(&pg, &db, "audit").await.is_empty(), "excluded table");
    let snap = actual_clients(&pg, false).await;
    assert_eq!(snap.len(), 3, "tenant 7 only");
    assert_eq!(snap, expected_clients(&mut my, false).await);
    assert!(
        snap.iter().any(|r| r[0].as_deref() == Some("5") && r[7].is_none()),
        "zero date → NULL: {snap:?}"
    );
    assert_eq!(actual_people(&pg, &db).await, expected_people(&mut my).await);

    // Row changes and DDL.
    my.query_drop(
        "INSERT INTO customers VALUES (6, 7, 'fay@example.com', '555-444-5555', 'x', 1, 'Fay', '10:00:00', NULL),
                                      (7, 8, 'gus@example.com', NULL, NULL, 0, 'Gus', NULL, NULL);
         UPDATE customers SET tenant_id = 7 WHERE id = 2;  -- moves into the filter
         UPDATE customers SET tenant_id = 8 WHERE id = 3;  -- moves out
         UPDATE customers SET email = 'ann@new.example', vip = 0 WHERE id = 1;
         UPDATE customers SET name = 'Dee2' WHERE id = 4; -- outside the filter
         DELETE FROM customers WHERE id = 5;
         DELETE FROM customers WHERE id = 7;
         UPDATE people SET id = 10 WHERE id = 1;           -- masked primary key changes
         UPDATE people SET city = 'Roma' WHERE id = 3;
         DELETE FROM people WHERE id = 2;
         INSERT INTO audit VALUES (2, 'ignored');
         ALTER TABLE customers ADD COLUMN points INT NOT NULL DEFAULT 0;
         UPDATE customers SET points = id * 10 WHERE tenant_id = 7;
         ALTER TABLE customers DROP COLUMN notes;
         ALTER TABLE customers MODIFY name VARCHAR(80);
         INSERT INTO customers (id, tenant_id, email, vip, name, points) VALUES (8, 7, 'hal@example.com', 1, REPEAT('h', 70), 3);
         ALTER TABLE audit ADD COLUMN who TEXT;",
    )
    .await
    .unwrap();
    run_until_caught_up(cmd());
    let cols = columns(&pg, "crm", "clients").await;
    assert!(
        cols.iter().any(|(c, t)| c == "points" && t == "integer"),
        "ADD COLUMN landed on the renamed table: {cols:?}"
    );
    assert!(!cols.iter().any(|(c, _)| c == "notes"));
    let len: Option<i32> = sqlx::query_scalar(
        "SELECT character_maximum_length FROM information_schema.columns \
         WHERE table_schema = 'crm' AND table_name = 'clients' AND column_name = 'full_name'",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(len, Some(80), "MODIFY of a renamed column applies to the new name");
    let rows = actual_clients(&pg, true).await;
    assert_eq!(rows, expected_clients(&mut my, true).await);
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "6", "8"]);
    assert_eq!(actual_people(&pg, &db).await, expected_people(&mut my).await);
    assert!(columns(&pg, &db, "audit").await.is_empty(), "excluded table's DDL ignored");
    std::fs::remove_file(file).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_errors_are_caught_at_startup_or_reported_with_context() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e2e_maperr").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_maperr").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, email VARCHAR(50) NOT NULL, code VARCHAR(10), shift TIME);
         INSERT INTO t VALUES (1, 'a@x', '12', '01:00:00'), (2, 'b@x', '34', '02:00:00');",
    )
    .await
    .unwrap();
    let pg = connect_pg(&target.url()).await;
    let cmd = |name: &str, toml: String| {
        let file = write_file(name, &toml);
        with_mapping(replicate(&server.url(), &db, &target.url(), name), &file)
    };
    let no_tables = || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
                .bind(&db)
                .fetch_one(&pg)
                .await
                .unwrap();
        assert_eq!(n, 0, "nothing replicated");
    };

    let out = run_failing(cmd("missing-table.toml", format!("[tables.\"{db}.nope\"]\nexclude = true\n")));
    assert!(out.contains("configuration error") && out.contains(&format!("table {db}.nope")), "{out}");
    let out = run_failing(cmd(
        "missing-column.toml",
        format!("[tables.\"{db}.t\".columns]\nemial = {{ exclude = true }}\n"),
    ));
    assert!(out.contains(&format!("table {db}.t, column emial")), "{out}");
    let out = run_failing(cmd(
        "hash-type.toml",
        format!(
            "hash_key = \"k\"\n[tables.\"{db}.t\".columns]\nemail = {{ mask = {{ kind = \"hash\" }}, type = \"varchar(20)\" }}\n"
        ),
    ));
    assert!(out.contains("cannot hold") && out.contains("column email"), "{out}");
    let out = run_failing(cmd(
        "bad-sql.toml",
        format!("[tables.\"{db}.t\".columns]\nemail = {{ transform = \"no_such_function(%d)\" }}\n"),
    ));
    assert!(
        out.contains("does not compile") && out.contains("column email") && out.contains("no_such_function"),
        "{out}"
    );
    let out = run_failing(cmd(
        "bad-type.toml",
        format!("[tables.\"{db}.t\".columns]\ncode = {{ type = \"no_such_type\" }}\n"),
    ));
    assert!(out.contains("column code") && out.contains("no_such_type"), "{out}");
    no_tables().await;

    // A type override that cannot hold a value found only while replicating: the
    // snapshot fails with the sink's typed error naming the table.
    my.query_drop("INSERT INTO t VALUES (3, 'c@x', 'abc', NULL)").await.unwrap();
    let out = run_failing(cmd(
        "int-code.toml",
        format!("[tables.\"{db}.t\".columns]\ncode = {{ type = \"integer\" }}\n"),
    ));
    assert!(out.contains("sink value error") && out.contains(&format!("table {db}.t")), "{out}");
    my.query_drop("DELETE FROM t WHERE id = 3").await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{db}\" CASCADE"))).execute(&pg).await.unwrap();

    // In follow mode a value the override cannot hold goes through the error policy
    // (skip: dead letter with table, column and position); the rest is applied.
    let toml = "[source_types]\ntime = \"time\"\n".to_string();
    run_until_caught_up(cmd("time.toml", toml.clone()));
    my.query_drop("INSERT INTO t VALUES (4, 'd@x', '56', '-01:00:00'); INSERT INTO t VALUES (5, 'e@x', '78', '05:00:00');")
        .await
        .unwrap();
    let mut c = cmd("time.toml", toml);
    c.args(["--error-policy", "skip"]);
    run_until_caught_up(c);
    let ids: Vec<i32> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM \"{db}\".t ORDER BY id")))
            .fetch_all(&pg)
            .await
            .unwrap();
    assert_eq!(ids, [1, 2, 5]);
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT error FROM synchdb.dead_letter WHERE pipeline_id = 'time.toml'")
            .fetch_all(&pg)
            .await
            .unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(
        e.contains("convert error") && e.contains(&format!("table {db}.t")) && e.contains("column shift"),
        "{e}"
    );
    assert!(e.contains(" at ") && e.contains("does not fit the destination type time"), "{e}");
}
