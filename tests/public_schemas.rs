//! End to end on the shape of public sample databases (a film-rental store
//! in the style of MySQL's sakila, with employees- and world-style tables):
//! triggers that write a MyISAM table, views, a stored function and
//! procedure, spatial and FULLTEXT indexes, ON UPDATE CURRENT_TIMESTAMP,
//! circular foreign keys with RESTRICT / CASCADE / SET NULL, YEAR, SET,
//! ENUM, BLOB, latin1, FLOAT(M,D). The fixture is an ordinary mysql client
//! script (`tests/fixtures/rentals.sql`, with `DELIMITER`); the workload
//! (`tests/fixtures/rentals_workload.sql`) mixes DML, cascades, trigger
//! effects and DDL, and `replicate` is SIGKILLed in the middle of it. The
//! replica is compared row by row with the source after the snapshot and at
//! the end.

mod common;

use std::time::Duration;

use common::*;

const SCHEMA: &str = include_str!("fixtures/rentals.sql");
const WORKLOAD: &str = include_str!("fixtures/rentals_workload.sql");

/// Rows of one target table.
async fn count_rows(pg: &sqlx::PgPool, schema: &str, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".\"{table}\"")))
        .fetch_one(pg)
        .await
        .unwrap()
}

/// Foreign keys in one target schema.
async fn foreign_keys(pg: &sqlx::PgPool, schema: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE n.nspname = $1 AND c.contype = 'f'",
    )
    .bind(schema)
    .fetch_one(pg)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rental_store_snapshot_workload_ddl_and_kills() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("rentals").unwrap();
    let target = synchdb_testkit::postgres().create_database("rentals").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(&mut my, &split_script(SCHEMA)).await;
    let pg = connect_pg(&target.url()).await;
    let cmd = || {
        let mut c = replicate(&server.url(), src.name(), &target.url(), "rentals");
        c.args(["--heartbeat-secs", "1", "--chunk-rows", "4000"]);
        c
    };

    let out = run_until_caught_up(cmd());
    assert!(out.contains("snapshot"), "summary printed: {out}");
    assert_replica_equal(&mut my, src.name(), &pg).await;
    // The replica keeps the source's keys and indexes (the spatial one needs PostGIS).
    let fks = foreign_keys(&pg, src.name()).await;
    assert_eq!(fks, 23, "every foreign key is on the replica");
    let fulltext: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'film_text_idx_title_description'",
    )
    .bind(src.name())
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(fulltext, 1, "FULLTEXT index built as GIN");

    // Follow the workload; SIGKILL the follower twice while it runs.
    let statements = split_script(WORKLOAD);
    let thirds = statements.len() / 3;
    let mut follower = spawn(cmd());
    run_workload(&mut my, &statements[..thirds]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill9(&mut follower);
    run_workload(&mut my, &statements[thirds..2 * thirds]).await;
    let mut follower = spawn(cmd());
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill9(&mut follower);
    let mut follower = spawn(cmd());
    run_workload(&mut my, &statements[2 * thirds..]).await;
    wait_caught_up(&mut my, &pg, "rentals", &mut follower).await;
    kill9(&mut follower);
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// The same store loaded while `replicate` follows an empty database, as a dump
/// restore does: tables in name order with FOREIGN_KEY_CHECKS=0 (children
/// before their parents), triggers, routines, then the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rental_store_restored_while_following() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("restore").unwrap();
    let target = synchdb_testkit::postgres().create_database("restore").unwrap();
    let pg = connect_pg(&target.url()).await;
    let cmd = || {
        let mut c = replicate(&server.url(), src.name(), &target.url(), "restore");
        c.args(["--heartbeat-secs", "1"]);
        c
    };
    run_until_caught_up(cmd());
    let mut follower = spawn(cmd());
    let mut my = connect_my(&src.url()).await;
    run_workload(&mut my, &split_script(SCHEMA)).await;
    run_workload(&mut my, &split_script(WORKLOAD)).await;
    wait_caught_up(&mut my, &pg, "restore", &mut follower).await;
    assert_replica_equal(&mut my, src.name(), &pg).await;
    // Every foreign key the source has now, whatever the creation order.
    let source_fks: i64 = {
        use mysql_async::prelude::Queryable;
        my.exec_first(
            "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
            (src.name(),),
        )
        .await
        .unwrap()
        .unwrap()
    };
    let fks = foreign_keys(&pg, src.name()).await;
    assert_eq!(fks, source_fks, "every foreign key is on the replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_partition_stops_when_told_else_copies_the_table_again() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("parts").unwrap();
    let target = synchdb_testkit::postgres().create_database("parts").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE p (id INT PRIMARY KEY, v INT) PARTITION BY RANGE (id) \
           (PARTITION p0 VALUES LESS THAN (100), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            "INSERT INTO p VALUES (1, 1), (150, 2)",
        ],
    )
    .await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "parts"));
    // Rows removed inside the storage engine, not in the binlog: the replica cannot follow.
    run_workload(&mut my, &["ALTER TABLE p TRUNCATE PARTITION p0", "INSERT INTO p VALUES (2, 3)"]).await;
    let mut stop = replicate(&server.url(), src.name(), &target.url(), "parts");
    stop.args(["--unlogged-changes", "stop"]);
    let stderr = run_failing(stop);
    assert!(
        stderr.contains("TRUNCATE PARTITION")
            && stderr.contains(&format!("{}.p", src.name()))
            && stderr.contains("mysql-bin."),
        "the error names the statement, the table and the position: {stderr}"
    );
    // The checkpoint stays before the statement: nothing after it was applied.
    let pg = connect_pg(&target.url()).await;
    let n = count_rows(&pg, src.name(), "p").await;
    assert_eq!(n, 2);
    // The default copies the table again while following: the replica is exact.
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "parts"));
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// Dumps and bulk loads run with `FOREIGN_KEY_CHECKS=0`: InnoDB then neither
/// checks nor cascades, and the replica must do the same, whatever the batch
/// boundaries (a child row may commit long before its parent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_checks_off_loads_deletes_and_truncates() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("fkoff").unwrap();
    let target = synchdb_testkit::postgres().create_database("fkoff").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(10))",
            "CREATE TABLE child (id INT PRIMARY KEY, pid INT, \
             CONSTRAINT fk_parent FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE ON UPDATE CASCADE)",
            "INSERT INTO parent VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "INSERT INTO child VALUES (10, 1), (11, 2), (12, 3)",
            // A dangling reference already in the source: the snapshot keeps it.
            "SET FOREIGN_KEY_CHECKS = 0; INSERT INTO child VALUES (13, 99); SET FOREIGN_KEY_CHECKS = 1",
        ],
    )
    .await;
    let pg = connect_pg(&target.url()).await;
    let cmd = || {
        let mut c = replicate(&server.url(), src.name(), &target.url(), "fkoff");
        c.args(["--heartbeat-secs", "1"]);
        c
    };
    run_until_caught_up(cmd());
    assert_replica_equal(&mut my, src.name(), &pg).await;

    let mut follower = spawn(cmd());
    run_workload(&mut my, &["SET FOREIGN_KEY_CHECKS = 0", "INSERT INTO child VALUES (20, 100), (21, 100)"])
        .await;
    // The child rows are applied (and committed) before their parent exists.
    wait_until("the child rows on the replica", Duration::from_secs(30), || {
        let (pg, name) = (pg.clone(), src.name().to_string());
        async move { count_rows(&pg, &name, "child").await == 6 }
    })
    .await;
    run_workload(
        &mut my,
        &[
            "INSERT INTO parent VALUES (100, 'late')",
            // No cascade with checks off: the children stay.
            "DELETE FROM parent WHERE id = 1",
            "UPDATE parent SET id = 200 WHERE id = 2",
            "SET FOREIGN_KEY_CHECKS = 1",
            // With checks on, InnoDB cascades and so does the replica.
            "DELETE FROM parent WHERE id = 3",
            "SET FOREIGN_KEY_CHECKS = 0",
            "TRUNCATE TABLE parent",
            "INSERT INTO parent VALUES (7, 'new')",
            "SET FOREIGN_KEY_CHECKS = 1",
            "INSERT INTO child VALUES (30, 7)",
        ],
    )
    .await;
    wait_caught_up(&mut my, &pg, "fkoff", &mut follower).await;
    assert_replica_equal(&mut my, src.name(), &pg).await;
    let kept: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM \"{}\".child ORDER BY id",
        src.name()
    )))
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(kept, [10, 11, 13, 20, 21, 30], "no cascade where the source had checks off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_versioned_table_is_a_clear_error_unless_excluded() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("versioned").unwrap();
    let target = synchdb_testkit::postgres().create_database("versioned").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(&mut my, &["CREATE TABLE plain (id INT PRIMARY KEY)"]).await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "versioned"));
    run_workload(
        &mut my,
        &[
            "CREATE TABLE hist (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING",
            "INSERT INTO hist VALUES (1, 1)",
            "INSERT INTO plain VALUES (1)",
        ],
    )
    .await;
    let stderr = run_failing(replicate(&server.url(), src.name(), &target.url(), "versioned"));
    assert!(
        stderr.contains("system-versioned") && stderr.contains(&format!("{}.hist", src.name())),
        "the error names the table: {stderr}"
    );
    // Excluded, the rest replicates.
    let mut cmd = replicate(&server.url(), src.name(), &target.url(), "versioned");
    cmd.args(["--tables", &format!("!{}.hist", src.name())]);
    run_until_caught_up(cmd);
    let pg = connect_pg(&target.url()).await;
    let n = count_rows(&pg, src.name(), "plain").await;
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_based_row_changes_stop_when_told_else_copy_the_table_again() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("stmt").unwrap();
    let other = server.create_database("stmt_other").unwrap();
    let target = synchdb_testkit::postgres().create_database("stmt").unwrap();
    let mut my = connect_my(&src.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT)".to_string(),
            format!("CREATE TABLE `{}`.u (id INT PRIMARY KEY)", other.name()),
        ],
    )
    .await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "stmt"));
    // Statement-based writes to a table that is not replicated are no concern.
    run_workload(
        &mut my,
        &[
            "SET SESSION binlog_format = 'STATEMENT'".to_string(),
            format!("INSERT INTO `{}`.u VALUES (1)", other.name()),
            "SET SESSION binlog_format = 'ROW'".to_string(),
            "INSERT INTO t VALUES (1, 1)".to_string(),
        ],
    )
    .await;
    let out = run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "stmt"));
    assert!(out.contains("applied 1 transactions: 1 inserts"), "{out}");
    // To a replicated table they cannot be replayed: a typed error, the checkpoint stays.
    run_workload(
        &mut my,
        &[
            "SET SESSION binlog_format = 'STATEMENT'",
            "UPDATE t SET v = 2 WHERE id = 1",
            "SET SESSION binlog_format = 'ROW'",
        ],
    )
    .await;
    let mut stop = replicate(&server.url(), src.name(), &target.url(), "stmt");
    stop.args(["--unlogged-changes", "stop"]);
    let stderr = run_failing(stop);
    assert!(
        stderr.contains("binlog_format=ROW")
            && stderr.contains(&format!("{}.t", src.name()))
            && stderr.contains("mysql-bin."),
        "the error names the setting, the table and the position: {stderr}"
    );
    // By default the table is copied again and the replica is exact.
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "stmt"));
    let pg = connect_pg(&target.url()).await;
    assert_replica_equal(&mut my, src.name(), &pg).await;
}
