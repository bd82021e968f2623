//! End to end: `replicate` from a real MariaDB into a real PostgreSQL,
//! snapshot then follow, with every type, an OLTP workload with DDL in the
//! middle, and SIGKILL at several points; the replica is compared row by row
//! with the source at the end.

mod common;

use std::time::Duration;

use common::fixtures::*;
use common::*;
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_follow_every_type_and_oltp_workload() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e2e_full").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_full").unwrap();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(TYPES_SCHEMA).await.unwrap();
    my.query_drop(TYPES_ROWS).await.unwrap();
    my.query_drop(OLTP_SCHEMA).await.unwrap();
    let pg = connect_pg(&target.url()).await;

    // Snapshot, then follow up to the position the source had at start.
    let out = run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "full"));
    assert!(out.contains("snapshot"), "summary printed: {out}");
    assert_replica_equal(&mut my, src.name(), &pg).await;

    // Follow while the workload runs; stop gracefully; compare.
    let mut follower = spawn({
        let mut c = replicate(&server.url(), src.name(), &target.url(), "full");
        c.args(["--heartbeat-secs", "1"]);
        c
    });
    run_workload(&mut my, WORKLOAD).await;
    wait_caught_up(&mut my, &pg, "full", &mut follower).await;
    let pid = follower.id().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = follower.wait().unwrap();
    assert!(status.success(), "graceful stop exits 0: {status}");
    assert_replica_equal(&mut my, src.name(), &pg).await;

    // Identity sequences continue past the replicated values.
    let next: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT nextval(pg_get_serial_sequence('\"{}\".\"orders\"', 'id'))",
        src.name()
    )))
    .fetch_one(&pg)
    .await
    .unwrap();
    assert!(next > 600, "orders identity restarted past the snapshot: {next}");

    // A second run after more writes applies exactly those writes.
    my.query_drop("UPDATE customers SET balance = 0 WHERE id < 50").await.unwrap();
    let updated = my.affected_rows();
    my.query_drop("DELETE FROM tags WHERE code = 'new'").await.unwrap();
    let out = run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "full"));
    assert!(
        out.contains(&format!("applied 2 transactions: 0 inserts, {updated} updates, 1 deletes")),
        "only the new writes are applied: {out}"
    );
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_snapshot_and_follow_loses_nothing() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e2e_kill").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_kill").unwrap();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, grp INT NOT NULL, name VARCHAR(64), amount DECIMAL(12,2), \
           at DATETIME(6), note TEXT, KEY (grp));
         INSERT INTO big SELECT seq, seq % 97, CONCAT('name-', seq), seq / 100, \
           '2024-01-01 00:00:00' + INTERVAL seq SECOND, REPEAT('n', seq % 200) FROM seq_1_to_150000;
         CREATE TABLE keyless (k INT, v VARCHAR(20));
         INSERT INTO keyless SELECT seq % 100, CONCAT('v', seq % 7) FROM seq_1_to_20000;
         CREATE TABLE small (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO small (v) VALUES ('a'), ('b'), ('c');",
    )
    .await
    .unwrap();
    let pg = connect_pg(&target.url()).await;
    let cmd = || {
        let mut c = replicate(&server.url(), src.name(), &target.url(), "kill");
        c.args(["--chunk-rows", "10000", "--snapshot-workers", "2", "--batch-size", "500"]);
        c
    };

    // Kill during the snapshot, once some chunks are durable.
    let mut child = spawn(cmd());
    wait_until("some durable chunks", Duration::from_secs(60), || async {
        durable_chunks(&pg, "kill").await >= 3
    })
    .await;
    kill9(&mut child);

    // Writes while nothing runs, then resume; kill again during follow with a workload running.
    my.query_drop(
        "UPDATE big SET amount = amount + 1 WHERE id % 10 = 0; DELETE FROM keyless WHERE k = 3 LIMIT 5",
    )
    .await
    .unwrap();
    let mut child = spawn(cmd());
    let writer = {
        let url = src.url();
        tokio::spawn(async move {
            let mut w = connect_my(&url).await;
            for i in 0..300u32 {
                let sql = format!(
                    "START TRANSACTION; \
                     INSERT INTO big VALUES ({id}, {g}, 'live', 1.00, NOW(6), 'x'); \
                     UPDATE big SET name = 'upd-{i}' WHERE id = {u}; \
                     DELETE FROM big WHERE id = {d}; \
                     INSERT INTO keyless VALUES ({g}, 'dup'), ({g}, 'dup'); \
                     DELETE FROM keyless WHERE k = {g} AND v = 'dup' LIMIT 1; \
                     UPDATE small SET v = 'w{i}' WHERE id = 1 + {i} % 3; COMMIT",
                    id = 1_000_000 + i,
                    g = i % 50,
                    u = 1 + i * 37,
                    d = 2 + i * 41,
                );
                w.query_drop(sql).await.unwrap();
                if i == 150 {
                    w.query_drop("ALTER TABLE small ADD COLUMN extra INT DEFAULT 7").await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    kill9(&mut child);
    let mut child = spawn(cmd());
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill9(&mut child);
    writer.await.unwrap();

    // Finish: the last run catches up; the replica equals the source, no duplicate, no loss.
    run_until_caught_up(cmd());
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// `--apply-workers 3`: batches split over three sessions and committed by
/// two-phase commit; SIGKILLs while a workload runs lose and duplicate nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_apply_through_sigkills_loses_nothing() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e2e_par").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_par").unwrap();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(
        "CREATE TABLE parent (id INT PRIMARY KEY, v INT);
         CREATE TABLE child (id INT PRIMARY KEY, pid INT, w VARCHAR(20),
           FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE);
         CREATE TABLE big (id BIGINT PRIMARY KEY, a INT, s VARCHAR(40));
         INSERT INTO big SELECT seq, seq % 13, CONCAT('s', seq) FROM seq_1_to_20000;
         CREATE TABLE keyless (k INT, v VARCHAR(20));
         CREATE TABLE uniq (id INT PRIMARY KEY, e VARCHAR(20) UNIQUE);",
    )
    .await
    .unwrap();
    let pg = connect_pg(&target.url()).await;
    let cmd = || {
        let mut c = replicate(&server.url(), src.name(), &target.url(), "par");
        c.args(["--apply-workers", "3", "--pool-size", "4"]);
        c
    };
    run_until_caught_up(cmd());
    let mut child = spawn(cmd());
    let writer = {
        let url = src.url();
        tokio::spawn(async move {
            let mut w = connect_my(&url).await;
            for t in 0..120u32 {
                let base = 100_000 + t * 100;
                let rows = |n: u32, f: &dyn Fn(u32) -> String| (0..n).map(f).collect::<Vec<_>>().join(",");
                let mut sql = vec![
                    "START TRANSACTION".to_string(),
                    format!("INSERT INTO parent VALUES {}", rows(40, &|i| format!("({},{i})", base + i))),
                    format!(
                        "INSERT INTO child VALUES {}",
                        rows(40, &|i| format!("({},{},'c{i}')", base + i, base + i))
                    ),
                    format!(
                        "INSERT INTO big VALUES {}",
                        rows(150, &|i| format!("({},{i},'n{i}')", 1_000_000 + t * 200 + i))
                    ),
                    format!(
                        "UPDATE big SET a = a + 1, s = CONCAT(s, 'u') WHERE id BETWEEN {} AND {}",
                        1 + t * 150,
                        100 + t * 150
                    ),
                    format!("DELETE FROM big WHERE id BETWEEN {} AND {}", 101 + t * 150, 130 + t * 150),
                    format!(
                        "INSERT INTO keyless VALUES {}",
                        rows(30, &|i| format!("({},'k{}')", i % 7, i % 3))
                    ),
                    format!("DELETE FROM keyless WHERE k = {} LIMIT 5", t % 7),
                    format!(
                        "INSERT INTO uniq VALUES {}",
                        rows(10, &|i| format!("({},'e{}')", base + i, base + i))
                    ),
                    format!("UPDATE uniq SET e = CONCAT('f', e) WHERE id BETWEEN {base} AND {}", base + 4),
                ];
                if t > 0 {
                    sql.push(format!("DELETE FROM parent WHERE id BETWEEN {} AND {}", base - 100, base - 90));
                }
                sql.push("COMMIT".into());
                w.query_drop(sql.join(";")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    // Kill twice while the workload runs; note whether batches went through two-phase commit.
    let mut parallel = false;
    for (i, wait_ms) in [1500u64, 1200].into_iter().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_millis(wait_ms);
        while std::time::Instant::now() < deadline {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM synchdb.prepared WHERE pipeline_id = 'par'")
                    .fetch_one(&pg)
                    .await
                    .unwrap_or(0);
            parallel |= n >= 2;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill9(&mut child);
        if i == 0 {
            child = spawn(cmd());
        }
    }
    writer.await.unwrap();
    run_until_caught_up(cmd());
    assert!(parallel, "batches were applied by several sessions");
    assert_replica_equal(&mut my, src.name(), &pg).await;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'synchdb:par:%'")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(left, 0, "no prepared transaction is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_share_one_target_database() {
    let server = synchdb_testkit::mariadb();
    let a = server.create_database("e2e_side_a").unwrap();
    let b = server.create_database("e2e_side_b").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_side").unwrap();
    for db in [&a, &b] {
        let mut my = connect_my(&db.url()).await;
        my.query_drop(
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_1_to_500;",
        )
        .await
        .unwrap();
    }
    let run = |db: String, id: &'static str| {
        let (source, target) = (server.url(), target.url());
        std::thread::spawn(move || run_until_caught_up(replicate(&source, &db, &target, id)))
    };
    let (ta, tb) = (run(a.name().to_string(), "side-a"), run(b.name().to_string(), "side-b"));
    ta.join().unwrap();
    tb.join().unwrap();
    let mut my = connect_my(&a.url()).await;
    my.query_drop(&*format!(
        "UPDATE {}.t SET v = 'a!' WHERE id < 10; DELETE FROM {}.t WHERE id > 490",
        b.name(),
        a.name()
    ))
    .await
    .unwrap();
    let (ta, tb) = (run(a.name().to_string(), "side-a"), run(b.name().to_string(), "side-b"));
    ta.join().unwrap();
    tb.join().unwrap();
    let pg = connect_pg(&target.url()).await;
    assert_replica_equal(&mut my, a.name(), &pg).await;
    assert_replica_equal(&mut my, b.name(), &pg).await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT pipeline_id FROM synchdb.pipelines ORDER BY 1")
        .fetch_all(&pg)
        .await
        .unwrap();
    assert_eq!(ids, vec!["side-a".to_string(), "side-b".to_string()]);
}

/// `ALTER TABLE ... ADD/DROP FOREIGN KEY` in follow mode: InnoDB cascades inside the
/// server and the binlog holds only the parent's delete, so the replica redoes the
/// cascade through its own key, and stops once the key is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_mode_foreign_keys_added_and_dropped_by_alter_table() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("e2e_fk").unwrap();
    let target = synchdb_testkit::postgres().create_database("e2e_fk").unwrap();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(
        "CREATE TABLE base (id INT, code VARCHAR(10), PRIMARY KEY (id, code)); \
         INSERT INTO base VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');",
    )
    .await
    .unwrap();
    let pg = connect_pg(&target.url()).await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "fk"));
    let keys = |pg: sqlx::PgPool, db: String| async move {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE contype = 'f' AND conrelid = '\"{db}\".child'::regclass ORDER BY conname"
        )))
        .fetch_all(&pg)
        .await
        .unwrap()
    };
    let children = |pg: sqlx::PgPool, db: String| async move {
        sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM \"{db}\".child ORDER BY id"
        )))
        .fetch_all(&pg)
        .await
        .unwrap()
    };

    // The reported scenario: the key arrives by ALTER TABLE, then the parent row goes.
    run_workload(
        &mut my,
        &[
            "CREATE TABLE child (id INT PRIMARY KEY, base_id INT, base_code VARCHAR(10))",
            "INSERT INTO child VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c'), (4, 4, 'd')",
            "ALTER TABLE child ADD CONSTRAINT fk_child FOREIGN KEY (base_id, base_code) REFERENCES base (id, code) ON DELETE CASCADE",
            "DELETE FROM base WHERE id = 1",
        ],
    )
    .await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "fk"));
    assert_replica_equal(&mut my, src.name(), &pg).await;
    assert_eq!(children(pg.clone(), src.name().into()).await, [2, 3, 4]);
    assert_eq!(
        keys(pg.clone(), src.name().into()).await,
        [format!(
            "fk_child FOREIGN KEY (base_id, base_code) REFERENCES {}.base(id, code) ON DELETE CASCADE \
             DEFERRABLE INITIALLY DEFERRED NOT VALID",
            src.name()
        )]
    );

    // DROP FOREIGN KEY (and the index MySQL made for the key); an unnamed key gets
    // InnoDB's generated name, which a later DROP FOREIGN KEY uses; once dropped, a
    // parent delete no longer cascades.
    run_workload(
        &mut my,
        &[
            "ALTER TABLE child DROP FOREIGN KEY fk_child",
            "ALTER TABLE child DROP INDEX fk_child",
            "ALTER TABLE child ADD FOREIGN KEY (base_id, base_code) REFERENCES base (id, code) ON DELETE CASCADE",
            "DELETE FROM base WHERE id = 2",
            "ALTER TABLE child DROP FOREIGN KEY child_ibfk_1",
            "DELETE FROM base WHERE id = 3",
        ],
    )
    .await;
    run_until_caught_up(replicate(&server.url(), src.name(), &target.url(), "fk"));
    assert_replica_equal(&mut my, src.name(), &pg).await;
    assert_eq!(children(pg.clone(), src.name().into()).await, [3, 4], "id 2 cascaded, id 3 did not");
    assert!(keys(pg.clone(), src.name().into()).await.is_empty());
}
