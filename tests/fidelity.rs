//! End to end: the fidelity classes found by replaying real-world MySQL
//! scripts. Each script runs two ways through `replicate` — before a snapshot
//! (snapshot path) and while following (follow path) — and every table is
//! compared with MariaDB afterwards.

mod common;

use common::*;
use mysql_async::prelude::Queryable;

/// Run statements on one session; a statement written `?SQL` may fail (the
/// server logs some failed DDL, which the replica must follow too).
async fn run_script(my: &mut mysql_async::Conn, statements: &[&str]) {
    for sql in statements {
        match sql.strip_prefix('?') {
            Some(sql) => {
                let _ = my.query_drop(sql).await;
            }
            None => run_workload(my, &[sql]).await,
        }
    }
}

/// Run `setup` then `script` on one source session and replicate it both
/// ways into fresh databases; the replica must equal the source each time.
async fn both_paths(prefix: &str, setup: &[&str], script: &[&str]) {
    let server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    // Snapshot path: everything first, then one run.
    {
        let src = server.create_database(&format!("{prefix}_s")).unwrap();
        let target = pg_server.create_database(&format!("{prefix}_s")).unwrap();
        let mut my = connect_my(&src.url()).await;
        run_workload(&mut my, setup).await;
        run_script(&mut my, script).await;
        run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), prefix));
        let pg = connect_pg(&target.url()).await;
        assert_replica_equal(&mut connect_my(&src.url()).await, src.name(), &pg).await;
    }
    // Follow path: the setup is snapshotted, the script is followed.
    {
        let src = server.create_database(&format!("{prefix}_f")).unwrap();
        let target = pg_server.create_database(&format!("{prefix}_f")).unwrap();
        let mut my = connect_my(&src.url()).await;
        run_workload(&mut my, setup).await;
        run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), prefix));
        run_script(&mut my, script).await;
        run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), prefix));
        let pg = connect_pg(&target.url()).await;
        assert_replica_equal(&mut connect_my(&src.url()).await, src.name(), &pg).await;
    }
    // Live path: the script runs while `replicate` follows (tables created
    // while it was stopped are copied at its start; these are read from the
    // binlog's statements).
    {
        let src = server.create_database(&format!("{prefix}_l")).unwrap();
        let target = pg_server.create_database(&format!("{prefix}_l")).unwrap();
        let mut my = connect_my(&src.url()).await;
        run_workload(&mut my, setup).await;
        let mut follower = spawn(replicate(&server.url(), src.name(), &target.url(), prefix));
        let pg = connect_pg(&target.url()).await;
        wait_caught_up(&mut my, &pg, prefix, &mut follower).await;
        run_script(&mut my, script).await;
        wait_caught_up(&mut my, &pg, prefix, &mut follower).await;
        drop(follower);
        assert_replica_equal(&mut connect_my(&src.url()).await, src.name(), &pg).await;
    }
}

/// Item 1: CREATE TABLE statements that sqlparser does not read as written
/// (national types, double-quoted comments) or at all (`PERIOD FOR`), in a
/// database that had no tables when the pipeline started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_table_in_unparsed_forms_is_created() {
    both_paths(
        "unparsed",
        &[],
        &[
            "CREATE TABLE b (id INT PRIMARY KEY, v NATIONAL VARCHAR(10))",
            "INSERT INTO b VALUES (1, 'y')",
            "CREATE TABLE n (id INT PRIMARY KEY, a NCHAR VARCHAR(5), b NATIONAL CHARACTER VARYING(5), \
             c NCHAR(2), d NVARCHAR(3)) ENGINE=MyISAM COMMENT=\"national\" CHARSET=latin1",
            "INSERT INTO n VALUES (1, 'é', 'ü', 'ß', '€')",
            "CREATE TABLE p (id INT PRIMARY KEY, s DATE, e DATE, v INT, PERIOD FOR valid(s, e))",
            "INSERT INTO p VALUES (1, '2024-01-01', '2024-12-31', 7)",
            "CREATE TABLE quiet (id INT PRIMARY KEY) COMMENT 'no rows ever'",
        ],
    )
    .await;
}

/// Item 1, the issue's reproduction as given: an empty database replicated
/// with `--until-caught-up`, then a table created and filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_created_after_an_empty_start() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e1").unwrap();
    let target = synchdb_testkit::postgres().create_database("e1").unwrap();
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "e1"));
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &["CREATE TABLE b (id INT PRIMARY KEY, v NATIONAL VARCHAR(10))", "INSERT INTO b VALUES (1,'y')"],
    )
    .await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "e1"));
    let pg = connect_pg(&target.url()).await;
    assert_replica_equal(&mut my, src.name(), &pg).await;
    // Restarting again changes nothing and keeps following.
    my.query_drop("INSERT INTO b VALUES (2, 'z')").await.unwrap();
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "e1"));
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// Item 2: identifiers named in another case than their definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_names_in_another_case() {
    both_paths(
        "idcase",
        &["CREATE TABLE parent (Id INT NOT NULL, Code VARCHAR(5), PRIMARY KEY (ID), UNIQUE KEY (CODE))"],
        &[
            "INSERT INTO parent VALUES (1, 'a'), (2, 'b')",
            "CREATE TABLE T (id INT NOT NULL, v INT, Name VARCHAR(10), PRIMARY KEY (ID), KEY kv (V, NAME))",
            "INSERT INTO T VALUES (1, 2, 'x')",
            "UPDATE T SET v = 3 WHERE id = 1",
            "ALTER TABLE T CHANGE V w INT",
            "ALTER TABLE T MODIFY W BIGINT, ALTER COLUMN NAME SET DEFAULT 'anon'",
            "CREATE INDEX ix ON T (W)",
            "ALTER TABLE T ADD COLUMN p INT AFTER NAME",
            "ALTER TABLE T RENAME COLUMN NAME TO full_name",
            "INSERT INTO T (id, w, p) VALUES (2, 5, 1)",
            "CREATE TABLE child (ID INT PRIMARY KEY, PARENT_ID INT, \
             CONSTRAINT fk_p FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE)",
            "INSERT INTO child VALUES (10, 1), (20, 2)",
            "DELETE FROM parent WHERE id = 1",
            "ALTER TABLE T DROP COLUMN P, DROP INDEX IX",
            "UPDATE T SET full_name = 'y' WHERE ID = 2",
        ],
    )
    .await;
}

/// Item 3: literal defaults in MySQL's other spellings are stored as the
/// server converts them, including the values MySQL fills into existing rows
/// when a column is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_defaults_as_the_server_converts_them() {
    both_paths(
        "defaults",
        &["CREATE TABLE base (id INT PRIMARY KEY)", "INSERT INTO base SELECT seq FROM seq_1_to_5"],
        &[
            "SET SESSION sql_mode = ''",
            "CREATE TABLE d (id INT PRIMARY KEY, C DATETIME DEFAULT '0000-00-00 01:00:00.000', \
             E DATE DEFAULT '1000-00-00 01:00:00.000', G TIME DEFAULT '0000-00-00 01:00:00.000')",
            "INSERT INTO d (id) VALUES (1)",
            "ALTER TABLE base ADD COLUMN i INT NOT NULL DEFAULT '1.5', ADD COLUMN h INT DEFAULT 0x1F, \
             ADD COLUMN b INT DEFAULT b'101', ADD COLUMN dc DECIMAL(5,2) DEFAULT '3.14159', \
             ADD COLUMN y YEAR DEFAULT '69', ADD COLUMN y0 YEAR DEFAULT 0, ADD COLUMN t TIME DEFAULT '1 02:00:00', \
             ADD COLUMN tn TIME(3) DEFAULT '-1:2:3.45678', ADD COLUMN dt DATETIME(2) DEFAULT '2024-01-02 03:04:05.678', \
             ADD COLUMN dd DATE DEFAULT 20240102, ADD COLUMN s SET('a','b','c') DEFAULT 'c,a', \
             ADD COLUMN e ENUM('Xy','z') DEFAULT 'xy', ADD COLUMN c CHAR(4) DEFAULT 'ab  ', \
             ADD COLUMN f FLOAT DEFAULT '1e3', ADD COLUMN db DOUBLE DEFAULT 1.5e-7, ADD COLUMN bt BIT(8) DEFAULT 'A'",
            "ALTER TABLE base ALTER COLUMN i SET DEFAULT '7.5'",
            "INSERT INTO base (id) VALUES (6)",
            "ALTER TABLE base ADD COLUMN late TIME NOT NULL DEFAULT 123456",
            "SET SESSION sql_mode = DEFAULT",
        ],
    )
    .await;
}

/// Item 5: a row filter on a referenced table leaves out the foreign keys
/// that point to it (said by `--explain`), so rows leaving the filter never
/// stop the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_filter_on_a_referenced_table_drops_its_foreign_keys() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("fkfilter").unwrap();
    let target = synchdb_testkit::postgres().create_database("fkfilter").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE customer (customer_id INT PRIMARY KEY, store_id INT NOT NULL, active TINYINT NOT NULL)",
            "CREATE TABLE rental (rental_id INT PRIMARY KEY, customer_id INT NOT NULL, \
             CONSTRAINT fk_rental_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id) \
             ON DELETE RESTRICT ON UPDATE CASCADE)",
            "INSERT INTO customer VALUES (1, 1, 1), (2, 1, 1), (3, 2, 1)",
            "INSERT INTO rental VALUES (10, 1), (20, 2), (30, 3)",
        ],
    )
    .await;
    let mapping = std::env::temp_dir().join(format!("synchdb-fkfilter-{}.toml", std::process::id()));
    std::fs::write(
        &mapping,
        format!("[tables.\"{db}.customer\"]\nfilter = \"store_id = 1 AND active = 1\"\n"),
    )
    .unwrap();
    let cmd = || {
        let mut c = replicate(&server.url(), &db, &target.url(), "fkfilter");
        c.arg("--mapping").arg(&mapping);
        c
    };
    let mut explain = cmd();
    explain.arg("--explain");
    let out = explain.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("foreign key fk_rental_customer left out"), "{text}");
    run_until_caught_up(cmd());
    run_workload(
        &mut my,
        &[
            "UPDATE customer SET active = 0 WHERE customer_id = 1",
            "INSERT INTO rental VALUES (40, 1)",
            "CREATE TABLE payment (payment_id INT PRIMARY KEY, customer_id INT, \
             FOREIGN KEY (customer_id) REFERENCES customer (customer_id))",
            "INSERT INTO payment VALUES (100, 1), (200, 3)",
            "ALTER TABLE rental ADD CONSTRAINT fk2 FOREIGN KEY (customer_id) REFERENCES customer (customer_id)",
            "INSERT INTO customer VALUES (4, 1, 1)",
            "DELETE FROM customer WHERE customer_id = 4",
            "UPDATE customer SET active = 0 WHERE customer_id = 2",
        ],
    )
    .await;
    run_until_caught_up(cmd());
    let pg = connect_pg(&target.url()).await;
    let fks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE c.contype = 'f' AND n.nspname = $1",
    )
    .bind(&db)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(fks, 0, "no foreign key to the filtered table");
    let customers: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT customer_id FROM \"{db}\".customer ORDER BY 1"
    )))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(customers, Vec::<i32>::new(), "1 and 2 left the filter, 4 was deleted, 3 never passed it");
    let rentals: Vec<i32> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT rental_id FROM \"{db}\".rental ORDER BY 1")))
            .fetch_all(&pg)
            .await
            .unwrap();
    let source: Vec<i32> = my.query("SELECT rental_id FROM rental ORDER BY 1").await.unwrap();
    assert_eq!(rentals, source);
    let _ = std::fs::remove_file(&mapping);
}

type TextRow = (i32, Option<String>, Option<String>, Option<String>);

/// Item 6: NUL characters in text. With the default policy the pipeline
/// stops with a clear error; `--error-policy skip` records the event in the
/// dead letter (losslessly) and goes on; `--text-nul strip|replace` and the
/// per-column `text_nul` rule store the text, in the snapshot and in follow mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_in_text() {
    let server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let setup = [
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), w TEXT, j JSON)",
        "INSERT INTO t VALUES (1, CONCAT('a', CHAR(0), 'b'), CONCAT(CHAR(0), 'x'), '{\"k\": \"a\\\\u0000b\"}')",
    ];
    let follow = [
        "INSERT INTO t VALUES (2, CONCAT('a', CHAR(0), 'b'), 'plain', NULL)",
        "INSERT INTO t VALUES (3, 'fine', 'fine', '[1]')",
        "UPDATE t SET w = CONCAT('y', CHAR(0)) WHERE id = 3",
    ];
    // Default policy: a clear error naming table, column and position; skip records and goes on.
    let src = server.create_database("nul_skip").unwrap();
    let target = pg_server.create_database("nul_skip").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(&mut my, &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"]).await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "nul"));
    run_workload(
        &mut my,
        &["INSERT INTO t VALUES (2, CONCAT('a', CHAR(0), 'b'))", "INSERT INTO t VALUES (3, 'after')"],
    )
    .await;
    let text = run_failing(replicate(&server.url(), src.name(), &target.url(), "nul"));
    assert!(
        text.contains("NUL")
            && text.contains(&format!("table {}.t", src.name()))
            && text.contains("column v"),
        "{text}"
    );
    let mut skip = replicate(&server.url(), src.name(), &target.url(), "nul");
    skip.args(["--error-policy", "skip"]);
    run_until_caught_up(skip);
    let pg = connect_pg(&target.url()).await;
    let ids: Vec<i32> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM \"{}\".t ORDER BY 1", src.name())))
            .fetch_all(&pg)
            .await
            .unwrap();
    assert_eq!(ids, vec![3], "the NUL row is skipped, the next one applied");
    let (event, event_text): (Option<serde_json::Value>, String) = sqlx::query_as(
        "SELECT event, event_text FROM synchdb.dead_letter WHERE pipeline_id = 'nul' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert!(event.is_none(), "jsonb cannot hold the NUL");
    let back: synchdb::types::ChangeEvent = serde_json::from_str(&event_text).unwrap();
    let synchdb::types::ChangeEvent::Insert(ins) = back else { panic!("{event_text}") };
    assert_eq!(
        ins.row[1],
        synchdb::types::Value::Text("a\0b".into()),
        "the dead letter keeps the value exactly"
    );

    // strip and replace, as the pipeline policy (column v) and as the other
    // columns' rule (the opposite one, which wins), snapshot and follow.
    for (name, policy, rule) in [("nul_strip", "strip", "replace"), ("nul_replace", "replace", "strip")] {
        let src = server.create_database(name).unwrap();
        let target = pg_server.create_database(name).unwrap();
        let mut my = connect_my(&src.url()).await;
        run_workload(&mut my, &setup).await;
        let mapping = std::env::temp_dir().join(format!("synchdb-{name}-{}.toml", std::process::id()));
        std::fs::write(
            &mapping,
            format!(
                "[tables.\"{}.t\".columns]\nw = {{ text_nul = \"{rule}\" }}\nj = {{ text_nul = \"{rule}\" }}\n",
                src.name()
            ),
        )
        .unwrap();
        let cmd = || {
            let mut c = replicate(&server.url(), src.name(), &target.url(), name);
            c.args(["--text-nul", policy]).arg("--mapping").arg(&mapping);
            c
        };
        run_until_caught_up(cmd());
        run_workload(&mut my, &follow).await;
        run_until_caught_up(cmd());
        let pg = connect_pg(&target.url()).await;
        let rows: Vec<TextRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, v, w, j::text FROM \"{}\".t ORDER BY 1",
            src.name()
        )))
        .fetch_all(&pg)
        .await
        .unwrap();
        let sub = |p: &str| if p == "strip" { "" } else { "\u{FFFD}" };
        let (p, r) = (sub(policy), sub(rule));
        let j = format!(r#"{{"k": "a{r}b"}}"#);
        assert_eq!(
            rows,
            vec![
                (1, Some(format!("a{p}b")), Some(format!("{r}x")), Some(j)),
                (2, Some(format!("a{p}b")), Some("plain".into()), None),
                (3, Some("fine".into()), Some(format!("y{r}")), Some("[1]".into())),
            ]
        );
        let _ = std::fs::remove_file(&mapping);
    }
}

/// Item 4: partition DDL that removes or swaps rows while `replicate`
/// follows a workload: the tables concerned are copied again at a new
/// consistent point while the others keep following; the replica ends
/// exact (a keyless ledger catches duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_ddl_while_following_copies_the_tables_again() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("parts_follow").unwrap();
    let target = synchdb_testkit::postgres().create_database("parts_follow").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE p (id INT PRIMARY KEY, v INT, note VARCHAR(20)) PARTITION BY RANGE (id) \
             (PARTITION p0 VALUES LESS THAN (1000), PARTITION p1 VALUES LESS THAN (2000), \
              PARTITION p2 VALUES LESS THAN (3000), PARTITION p3 VALUES LESS THAN MAXVALUE)",
            "INSERT INTO p SELECT seq, seq % 7, CONCAT('n', seq) FROM seq_1_to_3500",
            "CREATE TABLE e (id INT PRIMARY KEY, v INT, note VARCHAR(20))",
            "INSERT INTO e SELECT seq, -seq, 'swapped' FROM seq_1000_to_1100",
            "CREATE TABLE q (id INT PRIMARY KEY, v INT)",
            "INSERT INTO q SELECT seq, seq FROM seq_1_to_500",
            "CREATE TABLE ledger (at INT, what VARCHAR(20))",
        ],
    )
    .await;
    let mut cmd = replicate(&server.url(), src.name(), &target.url(), "parts_follow");
    cmd.args(["--heartbeat-secs", "1", "--chunk-rows", "500"]);
    let mut follower = spawn(cmd);
    let pg = connect_pg(&target.url()).await;
    let mut workload: Vec<String> = Vec::new();
    for round in 0..6 {
        for i in 0..20 {
            let n = round * 20 + i;
            workload.push(format!("INSERT INTO ledger VALUES ({n}, 'tick')"));
            workload.push(format!("UPDATE q SET v = v + 1 WHERE id = {}", 1 + n % 500));
            workload.push(format!(
                "INSERT INTO p VALUES ({}, {n}, 'new') ON DUPLICATE KEY UPDATE v = v + 1",
                5 + n * 13
            ));
            workload.push(format!("UPDATE p SET note = 'upd' WHERE id = {}", 1500 + n));
        }
        workload.push(
            match round {
                0 => "ALTER TABLE p TRUNCATE PARTITION p0",
                1 => "ALTER TABLE p EXCHANGE PARTITION p1 WITH TABLE e",
                2 => "ALTER TABLE p DROP PARTITION p2",
                3 => "ALTER TABLE p TRUNCATE PARTITION p0, p3",
                4 => "ALTER TABLE p REORGANIZE PARTITION p3 INTO (PARTITION p3a VALUES LESS THAN (5000), PARTITION p3b VALUES LESS THAN MAXVALUE)",
                _ => "DELETE FROM q WHERE id % 10 = 0",
            }
            .to_string(),
        );
    }
    run_workload(&mut my, &workload).await;
    wait_caught_up(&mut my, &pg, "parts_follow", &mut follower).await;
    // The last resync joins at a boundary after its position; make one.
    my.query_drop("INSERT INTO ledger VALUES (-1, 'end')").await.unwrap();
    wait_caught_up(&mut my, &pg, "parts_follow", &mut follower).await;
    wait_until("the resync to join", std::time::Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT resync IS NULL FROM synchdb.pipelines WHERE pipeline_id = 'parts_follow'",
        )
        .fetch_one(&pg)
        .await
        .unwrap_or(false)
    })
    .await;
    assert_replica_equal(&mut my, src.name(), &pg).await;
    kill9(&mut follower);
}

/// A wider table selection on restart (and tables created while the pipeline
/// was stopped): the tables not followed yet are copied while the others
/// follow, foreign keys between them and the followed tables included; a
/// table dropped from the selection is left in place and no longer applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newly_selected_tables_are_copied_then_followed() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("widen").unwrap();
    let target = synchdb_testkit::postgres().create_database("widen").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY, v INT)",
            "INSERT INTO a SELECT seq, seq FROM seq_1_to_100",
            "CREATE TABLE b (id INT PRIMARY KEY, a_id INT, FOREIGN KEY (a_id) REFERENCES a (id) ON DELETE CASCADE)",
            "INSERT INTO b SELECT seq, seq FROM seq_1_to_50",
            "CREATE TABLE c (id INT PRIMARY KEY)",
            "INSERT INTO c VALUES (1)",
        ],
    )
    .await;
    let run = |tables: &str| {
        let mut c = replicate(&server.url(), &db, &target.url(), "widen");
        c.args(["--tables", tables]);
        run_until_caught_up(c)
    };
    run(&format!("{db}.a,{db}.c"));
    run_workload(
        &mut my,
        &[
            "UPDATE a SET v = v + 1",
            "INSERT INTO b VALUES (51, 51)",
            "CREATE TABLE d (id INT PRIMARY KEY, b_id INT, FOREIGN KEY (b_id) REFERENCES b (id) ON DELETE CASCADE)",
            "INSERT INTO d VALUES (1, 1), (2, 51)",
            "INSERT INTO c VALUES (2)",
        ],
    )
    .await;
    // b and d are selected now; c is not.
    run(&format!("{db}.a,{db}.b,{db}.d"));
    let pg = connect_pg(&target.url()).await;
    let count = |t: &str| {
        let pg = pg.clone();
        let sql = format!("SELECT count(*) FROM \"{db}\".\"{t}\"");
        async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&pg).await.unwrap() }
    };
    assert_eq!((count("a").await, count("b").await, count("d").await), (100, 51, 2));
    // The cascade a -> b -> d runs on the replica: the foreign keys were made at the join.
    run_workload(&mut my, &["DELETE FROM a WHERE id = 1", "INSERT INTO c VALUES (3)"]).await;
    run(&format!("{db}.a,{db}.b,{db}.d"));
    assert_eq!((count("a").await, count("b").await, count("d").await), (99, 50, 1));
    assert_eq!(count("c").await, 1, "c stays as it was when it left the selection");
    let fks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE c.contype = 'f' AND n.nspname = $1",
    )
    .bind(&db)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(fks, 2);
}

/// MariaDB's long UNIQUE keys (on TEXT/BLOB, or longer than an index allows)
/// add a hidden `DB_ROW_HASH_n` column that the binlog carries after the
/// table's own columns; follow mode reads past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_unique_keys_hidden_hash_columns() {
    both_paths(
        "longuniq",
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, b TEXT, UNIQUE (b))",
            "INSERT INTO t VALUES (1, 'a'), (2, NULL)",
        ],
        &[
            "INSERT INTO t VALUES (3, 'b'), (4, NULL)",
            "UPDATE t SET b = 'c' WHERE id = 1",
            "DELETE FROM t WHERE id = 2",
            "ALTER TABLE t ADD COLUMN c BLOB, ADD UNIQUE (c)",
            "INSERT INTO t VALUES (5, 'd', 'e')",
            "UPDATE t SET c = 'f', b = 'g' WHERE id = 5",
            "CREATE TABLE u (a VARCHAR(2000), b TEXT, n INT, UNIQUE (a, b))",
            "INSERT INTO u VALUES ('x', 'y', 1), (NULL, 'y', 2)",
            "DELETE FROM u WHERE n = 2",
        ],
    )
    .await;
}

/// `CREATE TABLE t LIKE other.m` where `other` is outside the selection and
/// `other.m` is dropped before the pipeline reads the statement: the new table
/// is read as it is, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_table_like_an_untracked_table_dropped_since() {
    let server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = server.create_database("like_src").unwrap();
    let other = server.create_database("like_other").unwrap();
    let target = pg_server.create_database("like").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(&mut my, &["CREATE TABLE seed (id INT PRIMARY KEY)", "INSERT INTO seed VALUES (1)"]).await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "like"));
    let m = format!("{}.m", other.name());
    let script = [
        format!("CREATE TABLE {m} (id INT PRIMARY KEY, v VARCHAR(5) NOT NULL DEFAULT 'x', KEY (v))"),
        format!("CREATE TABLE t LIKE {m}"),
        "INSERT INTO t VALUES (1, 'a'), (2, DEFAULT)".to_string(),
        format!("DROP TABLE {m}"),
        "INSERT INTO t VALUES (3, 'c')".to_string(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    // One follower reads the statements (a restart would copy `t` as a newly selected table).
    let pg = connect_pg(&target.url()).await;
    let mut follower = spawn(replicate(&server.url(), src.name(), &target.url(), "like"));
    // Following for sure: a change made now has been applied.
    run_workload(&mut my, &["INSERT INTO seed VALUES (2)"]).await;
    wait_caught_up(&mut my, &pg, "like", &mut follower).await;
    // Held still while the script runs, so that it reads the CREATE ... LIKE after the DROP.
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &follower.id().to_string()]).status();
        assert!(ok.unwrap().success());
    };
    signal("-STOP");
    run_workload(&mut my, &script).await;
    signal("-CONT");
    wait_caught_up(&mut my, &pg, "like", &mut follower).await;
    drop(follower);
    assert_replica_equal(&mut connect_my(&src.url()).await, src.name(), &pg).await;
    let n: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{}\".t", src.name())))
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(n, 3);
}

/// A row larger than the server's `max_allowed_packet` (lowered after the row
/// was written) is read by the snapshot and from the binlog all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_larger_than_the_servers_max_allowed_packet() {
    let server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = server.create_database("bigpacket").unwrap();
    let target = pg_server.create_database("bigpacket").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE b (id INT PRIMARY KEY, v LONGBLOB)",
            "INSERT INTO b VALUES (1, REPEAT('x', 3 * 1024 * 1024))",
        ],
    )
    .await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "bigpacket"));
    run_workload(&mut my, &["INSERT INTO b VALUES (2, REPEAT('y', 3 * 1024 * 1024))"]).await;
    let before: u64 = my.query_first("SELECT @@global.max_allowed_packet").await.unwrap().unwrap();
    my.query_drop("SET GLOBAL max_allowed_packet = 1048576").await.unwrap();
    // Both paths: the row in the binlog, and a fresh copy of the table.
    let follow =
        replicate(&server.url(), src.name(), &target.url(), "bigpacket").arg("--until-caught-up").output();
    let copy_target = pg_server.create_database("bigpacket_copy").unwrap();
    let copy = replicate(&server.url(), src.name(), &copy_target.url(), "bigpacket")
        .arg("--until-caught-up")
        .output();
    my.query_drop(format!("SET GLOBAL max_allowed_packet = {before}")).await.unwrap();
    for out in [follow.unwrap(), copy.unwrap()] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for t in [&target, &copy_target] {
        let pg = connect_pg(&t.url()).await;
        assert_replica_equal(&mut connect_my(&src.url()).await, src.name(), &pg).await;
    }
}

/// Statements the corpus found: ALTER IGNORE deleting duplicates without row
/// events, DDL under ANSI_QUOTES, column swaps in one ALTER, CREATE OR
/// REPLACE ... LIKE over an existing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_ignore_ansi_quotes_swaps_and_replace_like() {
    both_paths(
        "corpusfound",
        &["CREATE TABLE seed (id INT PRIMARY KEY)"],
        &[
            "CREATE TABLE d (pk INT PRIMARY KEY, b VARCHAR(10))",
            "INSERT INTO d VALUES (1, 'foo'), (2, 'foo'), (3, 'bar')",
            "ALTER IGNORE TABLE d ADD UNIQUE (b)",
            "INSERT INTO d VALUES (4, 'baz')",
            "SET SESSION sql_mode = 'ANSI_QUOTES'",
            r#"CREATE TABLE "q t" ("""blah"" - 1" BIGINT, "x" INT DEFAULT 3)"#,
            r#"INSERT INTO "q t" VALUES (1, 2)"#,
            r#"ALTER TABLE "q t" ADD COLUMN "y" TEXT"#,
            "SET SESSION sql_mode = DEFAULT",
            "CREATE TABLE w (a INT PRIMARY KEY, b VARCHAR(10), c VARCHAR(10))",
            "INSERT INTO w VALUES (1, 'b', 'c')",
            "ALTER TABLE w CHANGE b c VARCHAR(20), CHANGE c b VARCHAR(20)",
            "ALTER TABLE w RENAME COLUMN a TO a, RENAME COLUMN IF EXISTS nope TO x",
            "INSERT INTO w VALUES (2, 'c2', 'b2')",
            "CREATE TABLE m (k INT PRIMARY KEY, v TEXT)",
            "CREATE TABLE r (z INT)",
            "CREATE OR REPLACE TABLE r LIKE m",
            "INSERT INTO r VALUES (1, 'v')",
            // A keyless table with a unique key, updated in an order that matters.
            // (MariaDB's long_unique_update.test.)
            "CREATE TABLE u (a BLOB UNIQUE, b BLOB UNIQUE, c BLOB UNIQUE)",
            "INSERT INTO u VALUES (1,1,1),(2,2,2),(3,3,3),(4,4,4),(5,5,5),(6,6,6),(7,7,7)",
            "UPDATE IGNORE u SET b = 3 WHERE a = 2",
            "UPDATE IGNORE u SET b = 4 WHERE b = 3",
            "UPDATE IGNORE u SET b = 5 WHERE c = 3",
            "UPDATE IGNORE u SET b = b + 3 WHERE a > 1 OR b > 1 OR c > 1",
        ],
    )
    .await;
}

/// Columns added to a table with rows whose values the server computes for
/// those rows without row events (a generated column, a default expression
/// evaluated at the ALTER, an AUTO_INCREMENT numbering): the table is copied
/// again, so the existing rows hold the source's values (they were NULL, the
/// target's own clock, or "" before). Found replaying the employees and sakila
/// sample databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_columns_the_server_fills_are_copied() {
    both_paths(
        "addfill",
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10))",
            "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'w')",
            "CREATE TABLE k (a VARCHAR(10), b INT)",
            "INSERT INTO k VALUES ('p', 1), ('q', 2)",
        ],
        &[
            "ALTER TABLE t ADD COLUMN v VARCHAR(20) AS (CONCAT(a, '!')) VIRTUAL",
            "ALTER TABLE t ADD COLUMN s INT AS (LENGTH(a)) STORED",
            "UPDATE t SET a = 'zz' WHERE id = 2",
            "ALTER TABLE t ADD COLUMN created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
            "ALTER TABLE t ADD COLUMN token CHAR(36) NOT NULL DEFAULT (UUID())",
            "ALTER TABLE t ADD COLUMN r DOUBLE NOT NULL DEFAULT (RAND())",
            "INSERT INTO t (id, a) VALUES (4, 'new')",
            "ALTER TABLE k ADD COLUMN n INT NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST",
            "INSERT INTO k (a, b) VALUES ('r', 3)",
        ],
    )
    .await;
}

/// A parent table renamed while `replicate` is stopped: its new name is copied
/// (newly selected) and the rename read from the binlog afterwards; the
/// child's foreign key is made again against the new name (it was lost: the
/// old table was dropped with CASCADE). Found replaying sakila and Chinook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_renamed_while_stopped_keeps_the_childs_foreign_key() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("rnparent").unwrap();
    let target = synchdb_testkit::postgres().create_database("rnparent").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE p (id INT PRIMARY KEY)",
            "INSERT INTO p VALUES (1), (2)",
            "CREATE TABLE c (id INT PRIMARY KEY, pid INT, KEY (pid), \
             CONSTRAINT fk_c FOREIGN KEY (pid) REFERENCES p (id) ON DELETE CASCADE)",
            "INSERT INTO c VALUES (10, 1), (20, 2)",
        ],
    )
    .await;
    let run = || run_until_caught_up(replicate(&server.url(), &db, &target.url(), "rnparent"));
    run();
    run_workload(&mut my, &["RENAME TABLE p TO parent", "INSERT INTO parent VALUES (3)"]).await;
    run();
    let pg = connect_pg(&target.url()).await;
    let fks: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' AND conrelid = to_regclass($1)",
    )
    .bind(format!("\"{db}\".\"c\""))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(fks.len(), 1, "{fks:?}");
    assert!(fks[0].contains(&format!("REFERENCES {db}.parent(id)")), "{fks:?}");
    // The cascade runs on the replica.
    run_workload(&mut my, &["DELETE FROM parent WHERE id = 1"]).await;
    run();
    assert_replica_equal(&mut my, &db, &pg).await;
}

/// Column types and attributes sqlparser does not read (`SERIAL`, `LONG
/// VARCHAR`, `ASCII`, `UNICODE`, `BYTE`, `COMPRESSED`, `SERIAL DEFAULT
/// VALUE`) and YEAR(2), created and then altered while following: the
/// tables' shapes come from the statements (information_schema, read later,
/// already holds the altered table), and YEAR(2) holds the two digits every
/// reader of the source sees (the binlog carries the whole year).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_spellings_and_attributes_created_then_altered_while_following() {
    both_paths(
        "attrs",
        &["CREATE TABLE y (id INT PRIMARY KEY, a YEAR(2), b YEAR)", "INSERT INTO y VALUES (1, 99, 99), (2, 5, 5)"],
        &[
            "CREATE TABLE s (id SERIAL, a CHAR(3) ASCII, b VARCHAR(3) UNICODE, c CHAR(2) BYTE, d LONG VARCHAR, \
             e LONG VARBINARY, f LONG, j LONG CHAR VARYING, k CHAR(2) ASCII BINARY, l CHAR(2) BINARY ASCII)",
            "INSERT INTO s (a, b, c, d, e, f, j, k, l) VALUES ('é', 'ü', 'ab', 'long', x'00ff', 'f', 'j', 'k', 'l')",
            // MariaDB keeps NULLs in a nullable AUTO_INCREMENT column with a UNIQUE key.
            "CREATE TABLE an (c1 TINYINT AUTO_INCREMENT NULL UNIQUE KEY)",
            "INSERT INTO an VALUES (NULL), (NULL), (5)",
            "CREATE TABLE ud (id INT PRIMARY KEY, a UUID DEFAULT 0x00112233445566778899AABBCCDDEEFF, \
             b INET6 DEFAULT X'20010db8000000000000000000000001', c INET4 DEFAULT 0x7f000001)",
            "INSERT INTO ud (id) VALUES (1)",
            "CREATE TABLE bin (id INT PRIMARY KEY, c CHAR(2), v VARCHAR(5), t TEXT) CHARACTER SET = binary",
            "INSERT INTO bin VALUES (1, 'a', x'00ff', 'c')",
            "CREATE TABLE s2 (g INT SERIAL DEFAULT VALUE, v INT, y2 YEAR(2) DEFAULT 71)",
            "INSERT INTO s2 (v) VALUES (1), (2)",
            "INSERT INTO y VALUES (3, 0, 0), (4, 2069, 2069), (5, 70, 70)",
            "UPDATE y SET a = 1998 WHERE id = 1",
            // Altered afterwards: a shape read from information_schema at the
            // CREATE would already have these columns.
            "ALTER TABLE s ADD COLUMN z INT NOT NULL DEFAULT 7, DROP COLUMN f",
            "ALTER TABLE s2 ADD COLUMN w VARCHAR(5) DEFAULT 'w' FIRST",
            "INSERT INTO s (a, z) VALUES ('x', 8)",
            "INSERT INTO s2 (v, w) VALUES (3, 'ww')",
        ],
    )
    .await;
}

/// Statements the server runs with conversions the binlog does not list:
/// a nullable column made NOT NULL outside strict mode (each NULL becomes the
/// type's implicit default), and MariaDB's `SET STATEMENT ... FOR ALTER`
/// (it was not read as an ALTER at all: the replica kept the old type). Both
/// copy the table again. In strict mode the same ALTER converts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversions_outside_strict_mode_and_set_statement() {
    both_paths(
        "nonstrict",
        &[
            "CREATE TABLE n (id INT PRIMARY KEY, i INT, s VARCHAR(5), d DATE)",
            "INSERT INTO n VALUES (1, NULL, NULL, NULL), (2, 5, 'x', '2024-01-02')",
            "CREATE TABLE y (id INT PRIMARY KEY, a DECIMAL(10,1))",
            "INSERT INTO y VALUES (1, -0.1), (2, 1999.0)",
            "CREATE TABLE k (id INT PRIMARY KEY, v INT)",
            "INSERT INTO k VALUES (1, 1)",
        ],
        &[
            "SET SESSION sql_mode = ''",
            "ALTER TABLE n MODIFY i INT NOT NULL, MODIFY s VARCHAR(5) NOT NULL, MODIFY d DATE NOT NULL",
            "INSERT INTO n VALUES (3, 7, 'z', '2024-03-04')",
            "SET SESSION sql_mode = DEFAULT",
            "SET STATEMENT sql_mode = 'NO_ENGINE_SUBSTITUTION' FOR ALTER TABLE y MODIFY a YEAR",
            "INSERT INTO y VALUES (3, 2001)",
            "ALTER TABLE k MODIFY v INT NOT NULL",
            "INSERT INTO k VALUES (2, 2)",
        ],
    )
    .await;
}

/// MariaDB's compressed columns (binlog types 140 and 141): values under the
/// compression threshold are stored as they are, longer ones deflated; both
/// arrive in follow mode as the text and bytes the source holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_columns_are_decoded() {
    both_paths(
        "compressed",
        &[
            "CREATE TABLE c (id INT PRIMARY KEY, v VARCHAR(2000) COMPRESSED, t TEXT COMPRESSED, \
             b BLOB COMPRESSED, n INT, l LONGTEXT COMPRESSED=zlib CHARACTER SET latin1)",
            "INSERT INTO c VALUES (1, 'short', 'tiny', x'00ff', 1, 'é')",
        ],
        &[
            "INSERT INTO c VALUES (2, REPEAT('abc', 500), REPEAT('été ', 3000), REPEAT(x'00ff10', 4000), 2, REPEAT('ü', 70000))",
            "INSERT INTO c VALUES (3, '', '', x'', 3, NULL), (4, NULL, NULL, NULL, 4, '')",
            "UPDATE c SET v = CONCAT(v, REPEAT('z', 300)), n = n + 10",
            "DELETE FROM c WHERE id = 3",
            "SET SESSION column_compression_zlib_wrap = ON",
            "INSERT INTO c VALUES (5, REPEAT('wrapped ', 100), REPEAT('x', 5000), REPEAT(x'01', 500), 5, REPEAT('q', 1000))",
        ],
    )
    .await;
}

/// DDL the server logs although it failed part-way: a CREATE OR REPLACE whose
/// new definition is refused has dropped the old table (MariaDB logs it with
/// its error code). The replica dropped nothing and kept the old table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_or_replace_drops_the_old_table() {
    both_paths(
        "failedddl",
        &[
            "CREATE TABLE f (id INT PRIMARY KEY)",
            "INSERT INTO f VALUES (1)",
            "CREATE TABLE k (id INT PRIMARY KEY)",
        ],
        &[
            "SET time_zone = '+00:00'",
            "?CREATE OR REPLACE TABLE f (d DATETIME(6)) PARTITION BY RANGE (UNIX_TIMESTAMP(d)) \
             (PARTITION p0 VALUES LESS THAN (1), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            "INSERT INTO k VALUES (1)",
        ],
    )
    .await;
}

/// Non-transactional tables (MyISAM, Aria) are outside a consistent
/// snapshot's read view: written while the snapshot copies other tables,
/// their rows used to be read after the snapshot's position and the same
/// writes then applied again from the binlog (a keyless table got them
/// twice). They are now read under a READ lock taken at the consistent point,
/// and the resync copy (a partition truncated) takes the same lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_transactional_tables_written_during_a_copy_keep_the_copys_position() {
    let server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = server.create_database("myisamcopy").unwrap();
    let target = pg_server.create_database("myisamcopy").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE a_big (id INT PRIMARY KEY, v VARCHAR(60)) ENGINE=InnoDB",
            "INSERT INTO a_big SELECT seq, REPEAT('b', 50) FROM seq_1_to_150000",
            "CREATE TABLE z_log (at INT, what VARCHAR(20)) ENGINE=MyISAM",
            "INSERT INTO z_log SELECT seq, 'seed' FROM seq_1_to_1000",
            "CREATE TABLE z_aria (id INT PRIMARY KEY, n INT) ENGINE=Aria",
            "INSERT INTO z_aria SELECT seq, 0 FROM seq_1_to_100",
            "CREATE TABLE z_parts (at INT, what VARCHAR(20)) ENGINE=MyISAM \
             PARTITION BY RANGE (at) (PARTITION p0 VALUES LESS THAN (0), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            "INSERT INTO z_parts SELECT -seq, 'old' FROM seq_1_to_500",
        ],
    )
    .await;
    // A writer keeps writing the non-transactional tables through the copies.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (src.url(), stop.clone());
        tokio::spawn(async move {
            let mut w = connect_my(&url).await;
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                w.query_drop(format!(
                    "INSERT INTO z_log VALUES ({i}, 'w'), ({i}, 'w'); UPDATE z_aria SET n = n + 1 WHERE id = {}; \
                     INSERT INTO z_parts VALUES ({i}, 'w')",
                    1 + i % 100
                ))
                .await
                .unwrap();
            }
            i
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut follower = spawn(replicate(&server.url(), src.name(), &target.url(), "myisamcopy"));
    let pg = connect_pg(&target.url()).await;
    wait_caught_up(&mut my, &pg, "myisamcopy", &mut follower).await;
    // A resync copy of the partitioned MyISAM table, written meanwhile.
    my.query_drop("ALTER TABLE z_parts TRUNCATE PARTITION p0").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.await.unwrap();
    assert!(writes > 10, "the writer ran during the copies ({writes} rounds)");
    wait_caught_up(&mut my, &pg, "myisamcopy", &mut follower).await;
    kill9(&mut follower);
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// A NOT NULL geometry column added to a table with rows holds MariaDB's
/// empty geometry value (zero bytes, not NULL): copied and followed as empty
/// bytes (it stopped the snapshot with "invalid geometry: 0 bytes", naming
/// no table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_geometry_values_of_an_added_not_null_column() {
    both_paths(
        "geoempty",
        &["CREATE TABLE seed (id INT PRIMARY KEY)"],
        &[
            "CREATE TABLE g (id INT PRIMARY KEY, n INT)",
            "INSERT INTO g VALUES (1, 1), (2, 2)",
            "ALTER TABLE g ADD COLUMN p POINT NOT NULL",
            "INSERT INTO g VALUES (3, 3, POINT(1, 2))",
            "UPDATE g SET n = n + 10",
            "DELETE FROM g WHERE id = 2",
        ],
    )
    .await;
}

/// A table replaced on the source (renamed away, a new table of the same
/// name created) after a snapshot's consistent point but before its reader
/// got to it (a keyless table: planning the chunks does not read it, so no
/// reader holds it) is read in the consistent snapshot by name, i.e. as the
/// new table. InnoDB refuses a replacement of its own (error 1412), but one by
/// a MyISAM table was read without error, its rows taken as those at the
/// point, and the RENAME applied after them moved them to the old name
/// (`t1_old` held the new table's row; seen replaying MariaDB's
/// `ctype_utf8mb4.test`). Now the reader checks a table it read is still the
/// transactional table the copy listed, and the snapshot starts again from
/// scratch at a new point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_replaced_after_the_snapshots_point_are_not_read_as_of_it() {
    let server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = server.create_database("replaced").unwrap();
    let target = pg_server.create_database("replaced").unwrap();
    let mut my = connect_my(&src.url()).await;
    let big_rows: i64 = 400_000;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE a_big (id INT PRIMARY KEY, v VARCHAR(60)) ENGINE=InnoDB".to_string(),
            format!("INSERT INTO a_big SELECT seq, REPEAT('b', 50) FROM seq_1_to_{big_rows}"),
            "CREATE TABLE t1 (id INT, v VARCHAR(20)) ENGINE=InnoDB".into(),
            "INSERT INTO t1 VALUES (1, 'old'), (2, 'old'), (3, 'old')".into(),
        ],
    )
    .await;
    // One reader, small chunks: a_big is read first, t1 after it.
    let mut cmd = replicate(&server.url(), src.name(), &target.url(), "replaced");
    cmd.args(["--snapshot-workers", "1", "--chunk-rows", "10000"]);
    let mut follower = spawn(cmd);
    let pg = connect_pg(&target.url()).await;
    // Hold the snapshot's writers (and so its one reader, a few chunks on)
    // in a_big: lock the target table as soon as it exists.
    let a_big = format!("\"{}\".a_big", src.name());
    wait_until("the snapshot's tables on the target", std::time::Duration::from_secs(120), || async {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
            .bind(&a_big)
            .fetch_one(&pg)
            .await
            .unwrap()
    })
    .await;
    let mut hold = pg.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {a_big} IN ACCESS EXCLUSIVE MODE")))
        .execute(&mut *hold)
        .await
        .unwrap();
    let copied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {a_big}")))
        .fetch_one(&mut *hold)
        .await
        .unwrap();
    assert!(
        copied <= big_rows / 2,
        "the snapshot is held in a_big, far from t1 ({copied} of {big_rows} rows copied): the test's timing holds"
    );
    run_workload(
        &mut my,
        &[
            "RENAME TABLE t1 TO t1_old",
            "CREATE TABLE t1 (id INT, v VARCHAR(20)) ENGINE=MyISAM",
            "INSERT INTO t1 VALUES (1, 'new')",
        ],
    )
    .await;
    hold.commit().await.unwrap();
    wait_caught_up(&mut my, &pg, "replaced", &mut follower).await;
    kill9(&mut follower);
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// ALTER TABLE statements of MariaDB's InnoDB suite that stopped follow mode:
/// keys naming columns by the names the same statement gives them
/// (`innodb-table-online.test`), a primary key over a column the statement
/// adds, which the server fills with 0 (`innodb-index.test`: 23502 on the
/// target), a nullable TIMESTAMP made NOT NULL, which the server fills with
/// the current time even in strict mode (`innodb-alter-timestamp.test`), and
/// a table named like another table's index on the replica (`<table>_<index>`;
/// `innodb_bug48024.test`: the table was never created, the pipeline stopped
/// at its rename).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_column_and_key_order_and_names_shared_with_indexes() {
    both_paths(
        "altkeys",
        &["CREATE TABLE seed (id INT PRIMARY KEY)"],
        &[
            "CREATE TABLE t1 (c1 INT NOT NULL, c2 INT NOT NULL, c3 CHAR(20), UNIQUE KEY u (c1))",
            "INSERT INTO t1 VALUES (1, 10, 'a'), (2, 20, 'b')",
            "ALTER TABLE t1 ADD PRIMARY KEY (c22f), CHANGE c2 c22f INT",
            "INSERT INTO t1 VALUES (3, 30, 'c')",
            "ALTER TABLE t1 DROP PRIMARY KEY, ADD PRIMARY KEY (c22f, c1), ADD KEY k (c3x), CHANGE c3 c3x CHAR(20)",
            "UPDATE t1 SET c3x = 'z' WHERE c1 = 2",
            "CREATE TABLE t2 (f1 INT NOT NULL, f5 INT NOT NULL, PRIMARY KEY (f1, f5))",
            "INSERT INTO t2 VALUES (1, 1), (2, 2)",
            "ALTER TABLE t2 ADD COLUMN f2n INT AFTER f1, DROP PRIMARY KEY, ADD PRIMARY KEY (f1, f5, f2n)",
            "INSERT INTO t2 VALUES (3, 3, 3)",
            "CREATE TABLE t3 (i1 INT NOT NULL, d1 TIMESTAMP NULL)",
            "INSERT INTO t3 (i1) VALUES (1), (2)",
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE'",
            "ALTER TABLE t3 CHANGE d1 d1 TIMESTAMP NOT NULL DEFAULT '2017-05-08 16:32:54'",
            "SET SESSION sql_mode = DEFAULT",
            "INSERT INTO t3 (i1) VALUES (3)",
            "CREATE TABLE p (a INT PRIMARY KEY, b INT NOT NULL, KEY (b))",
            "CREATE TABLE p_b (b INT PRIMARY KEY)",
            "INSERT INTO p_b VALUES (1)",
            "INSERT INTO p VALUES (1, 1)",
            "ALTER TABLE p DROP INDEX b",
            "RENAME TABLE p_b TO p_c",
            "INSERT INTO p_c VALUES (2)",
        ],
    )
    .await;
}
