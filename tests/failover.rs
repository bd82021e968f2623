//! Source failover: a MariaDB primary with a GTID replica (`log_slave_updates`).
//! `replicate` follows the primary; the primary dies and the replica is
//! promoted; `replicate` continues on the new primary from its GTID position
//! with nothing lost and nothing doubled (a keyless ledger table catches a
//! transaction applied twice). A new primary that lacks transactions already
//! applied is refused with an error naming both positions.
//!
//! Each test has its own pair of servers (the shared ones serve the others).

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use synchdb_testkit::MariaDb;

/// Keyed changes and a ledger row per transaction.
fn workload(from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| {
            format!(
                "BEGIN; INSERT INTO t (id, v) VALUES ({i}, 'v{i}'); UPDATE t SET v = CONCAT(v, '+') WHERE id = {}; \
                 DELETE FROM t WHERE id = {}; INSERT INTO ledger (n, note) VALUES ({i}, 'tx {i}'); COMMIT",
                i / 2,
                i.saturating_sub(7)
            )
        })
        .collect()
}

/// A primary and a replica of it (GTID, `log_slave_updates`), replicating.
struct Pair {
    primary: MariaDb,
    replica: MariaDb,
}

impl Pair {
    fn start() -> Pair {
        let primary = MariaDb::start().expect("primary");
        let replica = MariaDb::start_with_args(&["--log-slave-updates=ON"]).expect("replica");
        replica
            .exec(&format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='synchdb', \
                 MASTER_PASSWORD='synchdb', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE",
                primary.port()
            ))
            .expect("start replication");
        Pair { primary, replica }
    }

    /// Wait until the replica has applied everything the primary logged.
    async fn wait_replica(&self) {
        let want = gtid_pos(&self.primary);
        wait_until("the replica to catch up", Duration::from_secs(60), || {
            let have = gtid_pos(&self.replica);
            let done = have == want;
            async move { done }
        })
        .await;
    }

    /// The primary dies; the replica becomes the primary.
    fn fail_over(&self) {
        self.primary.stop().expect("stop the primary");
        self.replica
            .exec("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
            .expect("promote the replica");
    }
}

fn gtid_pos(server: &MariaDb) -> String {
    server.exec("SELECT @@global.gtid_binlog_pos").expect("gtid_binlog_pos").trim().to_string()
}

async fn setup(my: &mut mysql_async::Conn, db: &str) {
    my.query_drop(format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(200)); \
         CREATE TABLE `{db}`.ledger (n INT NOT NULL, note VARCHAR(50))"
    ))
    .await
    .unwrap();
    my.query_drop(format!("USE `{db}`")).await.unwrap();
}

async fn ledger_rows(pg: &sqlx::PgPool, db: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM \"{db}\".ledger");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pg).await.unwrap()
}

/// The GTID part of the stored checkpoint.
async fn checkpoint_gtid(pg: &sqlx::PgPool, pipeline: &str) -> Option<String> {
    let pos: Option<String> = sqlx::query_scalar(synchdb_testkit::checkpoint::CHECKPOINT_SQL)
        .bind(pipeline)
        .fetch_optional(pg)
        .await
        .ok()
        .flatten()
        .flatten();
    pos?.split_once(" gtid=").map(|(_, g)| g.trim().to_string())
}

/// Wait until the checkpoint holds the server's GTID position (binlog
/// positions of two servers do not compare).
async fn wait_gtid(server: &MariaDb, pg: &sqlx::PgPool, pipeline: &str, follower: &mut Follower) {
    let want = gtid_pos(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if checkpoint_gtid(pg, pipeline).await.as_deref() == Some(want.as_str()) {
            return;
        }
        if let Some(status) = follower.try_wait().unwrap() {
            panic!("replicate exited while following: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the checkpoint to reach GTID {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_promoted_replica_from_its_gtid_position() {
    let pair = Pair::start();
    let pg_server = synchdb_testkit::postgres();
    let src = pair.primary.create_database("failover").unwrap();
    let db = src.name().to_string();
    let dst = pg_server.create_database("failover").unwrap();
    let mut my = connect_my(&pair.primary.url()).await;
    setup(&mut my, &db).await;
    run_workload(&mut my, &workload(0, 40)).await;

    // Both servers given: the first is followed, the second is the failover.
    let source = format!("{},{}", pair.primary.url(), pair.replica.url());
    let mut follower = spawn(replicate(&source, &db, &dst.url(), "failover"));
    let pg = connect_pg(&dst.url()).await;
    wait_gtid(&pair.primary, &pg, "failover", &mut follower).await;
    run_workload(&mut my, &workload(40, 80)).await;
    wait_gtid(&pair.primary, &pg, "failover", &mut follower).await;
    pair.wait_replica().await;
    drop(my);

    pair.fail_over();
    let mut new_primary = connect_my(&pair.replica.url_for(&db)).await;
    run_workload(&mut new_primary, &workload(80, 140)).await;
    wait_gtid(&pair.replica, &pg, "failover", &mut follower).await;
    assert_replica_equal(&mut new_primary, &db, &pg).await;
    let ledger = ledger_rows(&pg, &db).await;
    assert_eq!(ledger, 140, "every transaction applied exactly once");

    // A restart keeps following the new primary (the old one stays down).
    drop(follower);
    let mut follower = spawn(replicate(&source, &db, &dst.url(), "failover"));
    run_workload(&mut new_primary, &workload(140, 160)).await;
    wait_gtid(&pair.replica, &pg, "failover", &mut follower).await;
    assert_replica_equal(&mut new_primary, &db, &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repointed_url_continues_from_the_gtid_position() {
    let pair = Pair::start();
    let pg_server = synchdb_testkit::postgres();
    let src = pair.primary.create_database("repoint").unwrap();
    let db = src.name().to_string();
    let dst = pg_server.create_database("repoint").unwrap();
    let mut my = connect_my(&pair.primary.url()).await;
    setup(&mut my, &db).await;
    run_workload(&mut my, &workload(0, 30)).await;
    // Only the primary is known at first.
    run_until_caught_up(replicate(&pair.primary.url(), &db, &dst.url(), "repoint"));
    run_workload(&mut my, &workload(30, 60)).await;
    run_until_caught_up(replicate(&pair.primary.url(), &db, &dst.url(), "repoint"));
    pair.wait_replica().await;
    drop(my);

    pair.fail_over();
    let mut new_primary = connect_my(&pair.replica.url_for(&db)).await;
    run_workload(&mut new_primary, &workload(60, 100)).await;
    // The operator points the pipeline at the new primary: its stored binlog
    // position names the old server's files, the GTID position carries on.
    run_until_caught_up(replicate(&pair.replica.url(), &db, &dst.url(), "repoint"));
    let pg = connect_pg(&dst.url()).await;
    assert_replica_equal(&mut new_primary, &db, &pg).await;
    let ledger = ledger_rows(&pg, &db).await;
    assert_eq!(ledger, 100, "every transaction applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_primary_lacking_applied_transactions_is_refused() {
    let pair = Pair::start();
    let pg_server = synchdb_testkit::postgres();
    let src = pair.primary.create_database("gap").unwrap();
    let db = src.name().to_string();
    let dst = pg_server.create_database("gap").unwrap();
    let mut my = connect_my(&pair.primary.url()).await;
    setup(&mut my, &db).await;
    run_workload(&mut my, &workload(0, 20)).await;
    pair.wait_replica().await;
    // The replica falls behind: what follows never reaches it.
    pair.replica.exec("STOP SLAVE").unwrap();
    run_workload(&mut my, &workload(20, 30)).await;
    let applied = gtid_pos(&pair.primary);
    run_until_caught_up(replicate(&pair.primary.url(), &db, &dst.url(), "gap"));
    drop(my);

    pair.fail_over();
    let mut new_primary = connect_my(&pair.replica.url_for(&db)).await;
    run_workload(&mut new_primary, &workload(100, 105)).await;
    let have = gtid_pos(&pair.replica);

    let source = format!("{},{}", pair.primary.url(), pair.replica.url());
    let mut cmd = replicate(&source, &db, &dst.url(), "gap");
    cmd.env("SYNCHDB_LOG", "warn").arg("--until-caught-up");
    let out = cmd.output().expect("run replicate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "replicate must refuse the diverged server:\n{text}");
    assert!(text.contains("GTID gap"), "{text}");
    assert!(
        text.contains(&applied) && text.contains(&have),
        "both positions named ({applied}, {have}):\n{text}"
    );
    // The new primary writes on past the applied sequence numbers: its
    // history has other transactions in their place, which the server's own
    // GTID check (strict mode) refuses.
    run_workload(&mut new_primary, &workload(105, 125)).await;
    let mut cmd = replicate(&source, &db, &dst.url(), "gap");
    cmd.env("SYNCHDB_LOG", "warn").arg("--until-caught-up");
    let out = cmd.output().expect("run replicate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "replicate must refuse the diverged server:\n{text}");
    assert!(text.contains("source diverged"), "{text}");
    assert!(text.contains(&applied), "{text}");
    // Nothing of the new primary's diverged history was applied.
    let pg = connect_pg(&dst.url()).await;
    let ledger = ledger_rows(&pg, &db).await;
    assert_eq!(ledger, 30);
}
