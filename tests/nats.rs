//! Scale-out over NATS JetStream, end to end on real servers: MariaDB →
//! `replicate --target nats://` → JetStream → `replicate --source nats://`
//! appliers → PostgreSQL, through SIGKILLs, a NATS restart, a purged binlog
//! and the loss of a node of a 3-node cluster.

mod common;

use std::process::Command;
use std::time::Duration;

use common::fixtures::*;
use common::*;
use mysql_async::prelude::Queryable;
use synchdb_testkit::{NatsCluster, NatsServer};

/// `replicate` publishing `databases` of `source` to `stream`.
fn publisher(source: &str, databases: &str, stream: &str, pipeline: &str) -> Command {
    replicate(source, databases, stream, pipeline)
}

/// `replicate` applying `databases` of `stream` into `target`.
fn applier(stream: &str, databases: &str, target: &str, pipeline: &str) -> Command {
    replicate(stream, databases, target, pipeline)
}

fn schema(db: &str, extra: &str) -> Vec<String> {
    vec![
        format!("CREATE TABLE `{db}`.items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(20,6), at DATETIME(6), {extra} note TEXT)"),
        format!("CREATE TABLE `{db}`.lines (id INT AUTO_INCREMENT PRIMARY KEY, item INT, qty INT, FOREIGN KEY (item) REFERENCES `{db}`.items(id) ON DELETE CASCADE)"),
        // No key: duplicates must land exactly as often as on the source.
        format!("CREATE TABLE `{db}`.ledger (account INT, amount DECIMAL(12,2), memo VARCHAR(20))"),
    ]
}

/// One round of writes: keyed inserts/updates/deletes, duplicate keyless
/// rows, a transaction across both databases, and DDL at round 3.
fn round(a: &str, b: &str, i: u32) -> Vec<String> {
    let mut s = vec![
        format!("INSERT INTO `{a}`.items (id, name, price, at) SELECT {i} * 1000 + seq, concat('n', seq), seq / 7, now(6) FROM `{a}`.seq_1_to_40"),
        format!("INSERT INTO `{a}`.lines (item, qty) SELECT {i} * 1000 + seq, seq FROM `{a}`.seq_1_to_20"),
        format!("UPDATE `{a}`.items SET price = price * 2, name = concat(name, '!') WHERE id % 7 = {i} % 7"),
        format!("DELETE FROM `{a}`.items WHERE id % 11 = {i} % 11 AND id < {i} * 1000"),
        format!("INSERT INTO `{a}`.ledger (account, amount, memo) VALUES (1, 10.00, 'dup'), (1, 10.00, 'dup'), ({i}, -5.50, 'round')"),
        format!("DELETE FROM `{a}`.ledger WHERE memo = 'dup' LIMIT 1"),
        format!("INSERT INTO `{b}`.items (id, name, price, at) SELECT {i} * 1000 + seq, 'b', seq, now(6) FROM `{b}`.seq_1_to_30"),
        format!("INSERT INTO `{b}`.ledger (account, amount, memo) VALUES (2, 1.00, 'b'), (2, 1.00, 'b')"),
        format!(
            "BEGIN; UPDATE `{a}`.items SET note = 'both {i}' WHERE id = {i} * 1000 + 1; \
             INSERT INTO `{b}`.lines (item, qty) VALUES ({i} * 1000 + 1, {i}); \
             UPDATE `{b}`.ledger SET amount = amount + 1 WHERE account = 2 LIMIT 1; COMMIT"
        ),
    ];
    if i == 3 {
        s.push(format!("ALTER TABLE `{a}`.items ADD COLUMN grade SMALLINT DEFAULT 3"));
        s.push(format!("ALTER TABLE `{b}`.ledger ADD COLUMN tag VARCHAR(8) NOT NULL DEFAULT 'x'"));
        s.push(format!("CREATE TABLE `{b}`.later (k VARCHAR(10) PRIMARY KEY, v JSON)"));
        s.push(format!("INSERT INTO `{b}`.later VALUES ('a', '{{\"x\": [1, 2.5]}}'), ('b', NULL)"));
    }
    s
}

async fn setup(my_url: &str, a: &str, b: &str) -> mysql_async::Conn {
    let mut my = connect_my(my_url).await;
    run_workload(&mut my, &schema(a, "")).await;
    run_workload(&mut my, &schema(b, "")).await;
    run_workload(&mut my, &round(a, b, 1)).await;
    my
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliers_own_disjoint_databases_through_kills_and_a_nats_restart() {
    let mysql = synchdb_testkit::mariadb();
    let (da, db) = (mysql.create_database("js_a").unwrap(), mysql.create_database("js_b").unwrap());
    let (a, b) = (da.name().to_string(), db.name().to_string());
    let mut my = setup(&mysql.url(), &a, &b).await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/E2E", nats.url());
    let pg = synchdb_testkit::postgres();
    let (ta, tb) = (pg.create_database("js_ta").unwrap(), pg.create_database("js_tb").unwrap());
    let both = format!("{a},{b}");

    let mut publish = spawn(publisher(&mysql.url(), &both, &stream, "pub"));
    let mut apply_a = spawn(applier(&stream, &a, &ta.url(), "app_a"));
    let mut apply_b = spawn(applier(&stream, &b, &tb.url(), "app_b"));
    for i in 2..=8u32 {
        run_workload(&mut my, &round(&a, &b, i)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        match i {
            3 => {
                kill9(&mut publish);
                run_workload(&mut my, &round(&a, &b, 100 + i)).await;
                publish = spawn(publisher(&mysql.url(), &both, &stream, "pub"));
            }
            4 => {
                kill9(&mut apply_a);
                run_workload(&mut my, &round(&a, &b, 100 + i)).await;
                apply_a = spawn(applier(&stream, &a, &ta.url(), "app_a"));
            }
            5 => {
                nats.stop().unwrap();
                run_workload(&mut my, &round(&a, &b, 100 + i)).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                nats.start_again().unwrap();
            }
            6 => {
                kill9(&mut apply_b);
                kill9(&mut publish);
                run_workload(&mut my, &round(&a, &b, 100 + i)).await;
                publish = spawn(publisher(&mysql.url(), &both, &stream, "pub"));
                apply_b = spawn(applier(&stream, &b, &tb.url(), "app_b"));
            }
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Everything the source holds is published, then applied.
    kill9(&mut publish);
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    kill9(&mut apply_a);
    kill9(&mut apply_b);
    run_until_caught_up(applier(&stream, &a, &ta.url(), "app_a"));
    run_until_caught_up(applier(&stream, &b, &tb.url(), "app_b"));

    let pa = connect_pg(&ta.url()).await;
    let pb = connect_pg(&tb.url()).await;
    assert_replica_equal(&mut my, &a, &pa).await;
    assert_replica_equal(&mut my, &b, &pb).await;
    // Each applier holds its own database only.
    let foreign: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
            .bind(&b)
            .fetch_one(&pa)
            .await
            .unwrap();
    assert_eq!(foreign, 0, "applier a created tables of {b}");
    let ledger: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{a}\".ledger")))
        .fetch_one(&pa)
        .await
        .unwrap();
    let source: i64 = my.query_first(format!("SELECT count(*) FROM `{a}`.ledger")).await.unwrap().unwrap();
    assert_eq!(ledger, source, "keyless ledger rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_down_past_the_binlog_retention_catches_up_from_the_stream() {
    // A private server: its binlogs are purged.
    let mysql = synchdb_testkit::MariaDb::start().unwrap();
    let (da, db) = (mysql.create_database("ret_a").unwrap(), mysql.create_database("ret_b").unwrap());
    let (a, b) = (da.name().to_string(), db.name().to_string());
    let mut my = setup(&mysql.url(), &a, &b).await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/RET", nats.url());
    let pg = synchdb_testkit::postgres();
    let ta = pg.create_database("ret_ta").unwrap();
    let both = format!("{a},{b}");
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    run_until_caught_up(applier(&stream, &a, &ta.url(), "app"));
    // The applier is down; the source writes and purges its binlogs.
    for i in 2..=5 {
        run_workload(&mut my, &round(&a, &b, i)).await;
        run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
        my.query_drop("FLUSH BINARY LOGS").await.unwrap();
    }
    // MariaDB keeps a binlog until InnoDB has checkpointed it: purge until it went.
    let (file, _) = master_position(&mut my).await;
    let mut first = String::new();
    for _ in 0..100 {
        my.query_drop(format!("PURGE BINARY LOGS TO '{file}'")).await.unwrap();
        let row: mysql_async::Row = my.query_first("SHOW BINARY LOGS").await.unwrap().unwrap();
        first = row.get::<String, _>(0).unwrap();
        if first == file {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, file, "older binlogs purged");

    // The publisher's state, as the stream holds it.
    let mut status = publisher(&mysql.url(), &both, &stream, "pub");
    status.arg("--status");
    let out = status.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["snapshot"], "done", "{text}");
    assert!(json["position"].as_str().is_some_and(|p| p.starts_with("mysql-bin.")), "{text}");
    assert!(json["stream"]["last_sequence"].as_u64().unwrap() > 0, "{text}");
    let out = run_until_caught_up(applier(&stream, &a, &ta.url(), "app"));
    assert!(out.contains("snapshot 0 rows"), "the applier copied again: {out}");
    let pa = connect_pg(&ta.url()).await;
    assert_replica_equal(&mut my, &a, &pa).await;
}

/// The name of the node leading stream `CL`.
async fn stream_leader(cluster: &NatsCluster) -> String {
    let client = async_nats::connect(cluster.node(0).url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for _ in 0..100 {
        if let Ok(mut s) = js.get_stream("CL").await {
            if let Some(leader) = s.info().await.ok().and_then(|i| i.cluster.clone()).and_then(|c| c.leader) {
                return leader;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream CL has no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_loses_nothing_when_a_node_dies() {
    let mysql = synchdb_testkit::mariadb();
    let (da, db) = (mysql.create_database("cl_a").unwrap(), mysql.create_database("cl_b").unwrap());
    let (a, b) = (da.name().to_string(), db.name().to_string());
    let mut my = setup(&mysql.url(), &a, &b).await;
    let cluster = NatsCluster::start().unwrap();
    let servers: Vec<String> = cluster.nodes().iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
    let stream = format!("nats://{}/CL?replicas=3", servers.join(","));
    let pg = synchdb_testkit::postgres();
    let ta = pg.create_database("cl_ta").unwrap();
    let both = format!("{a},{b}");
    let mut publish = spawn(publisher(&mysql.url(), &both, &stream, "pub"));
    let mut apply = spawn(applier(&stream, &format!("{a},{b}"), &ta.url(), "app"));
    for i in 2..=6u32 {
        run_workload(&mut my, &round(&a, &b, i)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if i == 3 {
            // The worst node to lose: the stream's leader.
            let leader = stream_leader(&cluster).await;
            let node = cluster.nodes().iter().find(|n| n.name() == leader).expect("the leader is a node");
            node.kill();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut publish);
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    kill9(&mut apply);
    run_until_caught_up(applier(&stream, &format!("{a},{b}"), &ta.url(), "app"));
    let pa = connect_pg(&ta.url()).await;
    assert_replica_equal(&mut my, &a, &pa).await;
    assert_replica_equal(&mut my, &b, &pa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_json_is_published_and_refused_by_an_applier() {
    let mysql = synchdb_testkit::mariadb();
    let d = mysql.create_database("dbz").unwrap();
    let name = d.name().to_string();
    let mut my = connect_my(&mysql.url()).await;
    run_workload(
        &mut my,
        &[
            format!("CREATE TABLE `{name}`.t (id BIGINT UNSIGNED PRIMARY KEY, d DATE, ts DATETIME(6), amount DECIMAL(30,4), b VARBINARY(4), f BIT(1))"),
            format!("INSERT INTO `{name}`.t VALUES (18446744073709551615, '1970-01-11', '2024-01-02 03:04:05.678901', -1.5000, 0x00ff, b'1')"),
        ],
    )
    .await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/DBZ?format=debezium&prefix=cdc", nats.url());
    run_until_caught_up(publisher(&mysql.url(), &name, &stream, "dbz"));
    my.query_drop(format!("UPDATE `{name}`.t SET amount = 2 WHERE id > 0")).await.unwrap();
    run_until_caught_up(publisher(&mysql.url(), &name, &stream, "dbz"));

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let s = js.get_stream("DBZ").await.unwrap();
    let subject = format!("cdc.{}.t", synchdb::nats::subject::escape(&name));
    let mut bodies = Vec::new();
    for seq in 1..=20 {
        if let Ok(m) = s.get_raw_message(seq).await {
            if m.subject.as_str() == subject {
                bodies.push(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap());
            }
        }
    }
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let read = &bodies[0];
    assert_eq!(read["op"], "r");
    assert_eq!(read["after"]["id"], serde_json::json!(u64::MAX));
    assert_eq!(read["after"]["d"], 10);
    assert_eq!(read["after"]["ts"], 1_704_164_645_678_901i64);
    assert_eq!(read["after"]["amount"], "-1.5000");
    assert_eq!(read["after"]["b"], "AP8=");
    assert_eq!(read["after"]["f"], true);
    let update = &bodies[1];
    assert_eq!(update["op"], "u");
    assert_eq!(update["before"]["amount"], "-1.5000");
    assert_eq!(update["after"]["amount"], "2.0000");
    assert_eq!(update["source"]["db"], name.as_str());
    assert_eq!(update["source"]["table"], "t");

    let pg = synchdb_testkit::postgres();
    let target = pg.create_database("dbz_t").unwrap();
    let out = run_failing(applier(&stream, &name, &target.url(), "dbz_app"));
    assert!(out.contains("native format"), "{out}");
    // A subject prefix the stream does not take: a clear error, not an endless wait.
    let mut other = applier(&format!("{}/DBZ", nats.url()), &name, &target.url(), "other_app");
    other.args(["--nats-prefix", "elsewhere"]);
    let out = run_failing(other);
    assert!(out.contains("do not include elsewhere.>"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_copies_from_the_source_then_applies_the_stream_from_there() {
    let mysql = synchdb_testkit::mariadb();
    let (da, db) = (mysql.create_database("src_a").unwrap(), mysql.create_database("src_b").unwrap());
    let (a, b) = (da.name().to_string(), db.name().to_string());
    let mut my = setup(&mysql.url(), &a, &b).await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/SRC", nats.url());
    let both = format!("{a},{b}");
    run_workload(&mut my, &round(&a, &b, 2)).await;
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    run_workload(&mut my, &round(&a, &b, 3)).await;
    // A new applier copies its database straight from MariaDB ...
    let pg = synchdb_testkit::postgres();
    let ta = pg.create_database("src_ta").unwrap();
    let mut direct = replicate(&mysql.url(), &a, &ta.url(), "app");
    direct.args(["--snapshot", "initial_only"]);
    let out = direct.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // ... while the publisher goes on, and then follows the stream from its copy's position.
    run_workload(&mut my, &round(&a, &b, 4)).await;
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    let out = run_until_caught_up(applier(&stream, &a, &ta.url(), "app"));
    assert!(out.contains("snapshot 0 rows"), "{out}");
    let pa = connect_pg(&ta.url()).await;
    assert_replica_equal(&mut my, &a, &pa).await;
    run_workload(&mut my, &round(&a, &b, 5)).await;
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    run_until_caught_up(applier(&stream, &a, &ta.url(), "app"));
    assert_replica_equal(&mut my, &a, &pa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_too_large_to_hold_goes_through_in_pieces() {
    let mysql = synchdb_testkit::mariadb();
    let d = mysql.create_database("big").unwrap();
    let name = d.name().to_string();
    let mut my = connect_my(&mysql.url()).await;
    run_workload(
        &mut my,
        &[
            format!("CREATE TABLE `{name}`.t (id INT PRIMARY KEY, pad TEXT)"),
            format!("CREATE TABLE `{name}`.k (v INT)"),
        ],
    )
    .await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/BIG", nats.url());
    run_until_caught_up(publisher(&mysql.url(), &name, &stream, "pub"));
    // ~120 MB in one transaction, with a keyless table's rows around it.
    run_workload(
        &mut my,
        &[format!(
            "BEGIN; INSERT INTO `{name}`.k VALUES (1), (1); \
             INSERT INTO `{name}`.t SELECT seq, REPEAT(CHAR(65 + seq % 26), 1200) FROM `{name}`.seq_1_to_100000; \
             UPDATE `{name}`.t SET pad = 'x' WHERE id % 1000 = 0; INSERT INTO `{name}`.k VALUES (2); COMMIT"
        )],
    )
    .await;
    let mut p = publisher(&mysql.url(), &name, &stream, "pub");
    p.env("SYNCHDB_LOG", "warn,synchdb_nats=debug");
    let out = p.arg("--until-caught-up").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("large transaction: a piece published"), "published whole:\n{log}");
    let pg = synchdb_testkit::postgres();
    let target = pg.create_database("big_t").unwrap();
    let mut a = applier(&stream, &name, &target.url(), "app");
    a.env("SYNCHDB_LOG", "warn,synchdb_nats=debug");
    let out = a.arg("--until-caught-up").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("large transaction: a piece handed to the pipeline"), "applied whole:\n{log}");
    let pt = connect_pg(&target.url()).await;
    assert_replica_equal(&mut my, &name, &pt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_ddl_through_the_stream() {
    let server = synchdb_testkit::mariadb();
    let src = server.create_database("js_types").unwrap();
    let target = synchdb_testkit::postgres().create_database("js_types").unwrap();
    let mut my = connect_my(&src.url()).await;
    my.query_drop(TYPES_SCHEMA).await.unwrap();
    my.query_drop(TYPES_ROWS).await.unwrap();
    my.query_drop(OLTP_SCHEMA).await.unwrap();
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/TYPES", nats.url());
    run_until_caught_up(publisher(&server.url(), src.name(), &stream, "pub"));
    run_until_caught_up(applier(&stream, src.name(), &target.url(), "app"));
    let pg = connect_pg(&target.url()).await;
    assert_replica_equal(&mut my, src.name(), &pg).await;
    run_workload(&mut my, WORKLOAD).await;
    run_until_caught_up(publisher(&server.url(), src.name(), &stream, "pub"));
    run_until_caught_up(applier(&stream, src.name(), &target.url(), "app"));
    assert_replica_equal(&mut my, src.name(), &pg).await;
}

/// On demand (`cargo test --test nats -- --ignored`): many random SIGKILLs of
/// the publisher, the appliers and the NATS server itself under a workload
/// with DDL; every table equal at the end. `NATS_CHAOS_ROUNDS` (default 30)
/// and `NATS_CHAOS_SEED` replay a run; `NATS_CHAOS_DUP_WINDOW` shortens the
/// stream's duplicate window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn chaos_sigkills_through_the_stream() {
    let rounds: u32 = std::env::var("NATS_CHAOS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let mut seed: u64 =
        std::env::var("NATS_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
    eprintln!("chaos: {rounds} rounds, NATS_CHAOS_SEED={seed}");
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mysql = synchdb_testkit::mariadb();
    let (da, db) = (mysql.create_database("ch_a").unwrap(), mysql.create_database("ch_b").unwrap());
    let (a, b) = (da.name().to_string(), db.name().to_string());
    let mut my = setup(&mysql.url(), &a, &b).await;
    let nats = NatsServer::start().unwrap();
    // A short duplicate window (`NATS_CHAOS_DUP_WINDOW=1s`) lets re-published
    // messages into the stream, for the appliers to drop.
    let stream = match std::env::var("NATS_CHAOS_DUP_WINDOW") {
        Ok(w) => format!("{}/CHAOS?dup_window={w}", nats.url()),
        Err(_) => format!("{}/CHAOS", nats.url()),
    };
    let pg = synchdb_testkit::postgres();
    let (ta, tb) = (pg.create_database("ch_ta").unwrap(), pg.create_database("ch_tb").unwrap());
    let both = format!("{a},{b}");
    let mut publish = spawn(publisher(&mysql.url(), &both, &stream, "pub"));
    let mut apply_a = spawn(applier(&stream, &a, &ta.url(), "app_a"));
    let mut apply_b = spawn(applier(&stream, &b, &tb.url(), "app_b"));
    for i in 0..rounds {
        // Round 3 holds the DDL: halfway.
        let n = if i == rounds / 2 { 3 } else { 10 + i };
        run_workload(&mut my, &round(&a, &b, n)).await;
        tokio::time::sleep(Duration::from_millis(50 + next(600))).await;
        match next(4) {
            0 => {
                eprintln!("chaos {i}: SIGKILL publisher");
                kill9(&mut publish);
                publish = spawn(publisher(&mysql.url(), &both, &stream, "pub"));
            }
            1 => {
                eprintln!("chaos {i}: SIGKILL applier a");
                kill9(&mut apply_a);
                apply_a = spawn(applier(&stream, &a, &ta.url(), "app_a"));
            }
            2 => {
                eprintln!("chaos {i}: SIGKILL applier b");
                kill9(&mut apply_b);
                apply_b = spawn(applier(&stream, &b, &tb.url(), "app_b"));
            }
            _ => {
                eprintln!("chaos {i}: SIGKILL nats-server");
                nats.kill();
                tokio::time::sleep(Duration::from_millis(next(1000))).await;
                nats.start_again().unwrap();
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut publish);
    run_until_caught_up(publisher(&mysql.url(), &both, &stream, "pub"));
    kill9(&mut apply_a);
    kill9(&mut apply_b);
    run_until_caught_up(applier(&stream, &a, &ta.url(), "app_a"));
    run_until_caught_up(applier(&stream, &b, &tb.url(), "app_b"));
    assert_replica_equal(&mut my, &a, &connect_pg(&ta.url()).await).await;
    assert_replica_equal(&mut my, &b, &connect_pg(&tb.url()).await).await;
}

/// Statements that change rows without row events (partition DDL) make the
/// publisher copy the table again while the others follow; the applier
/// takes the copy from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_copied_again_by_the_publisher_is_copied_again_by_the_applier() {
    let mysql = synchdb_testkit::mariadb();
    let d = mysql.create_database("js_parts").unwrap();
    let name = d.name().to_string();
    let mut my = connect_my(&d.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE p (id INT PRIMARY KEY, v INT, note VARCHAR(20)) PARTITION BY RANGE (id) \
             (PARTITION p0 VALUES LESS THAN (1000), PARTITION p1 VALUES LESS THAN (2000), \
              PARTITION p3 VALUES LESS THAN MAXVALUE)",
            "INSERT INTO p SELECT seq, seq % 7, CONCAT('n', seq) FROM seq_1_to_3500",
            "CREATE TABLE q (id INT PRIMARY KEY, v INT)",
            "INSERT INTO q SELECT seq, seq FROM seq_1_to_500",
            "CREATE TABLE ledger (at INT, what VARCHAR(20))",
        ],
    )
    .await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/PARTS", nats.url());
    let pg = synchdb_testkit::postgres();
    let target = pg.create_database("js_parts_t").unwrap();
    let mut pub_cmd = publisher(&mysql.url(), &name, &stream, "pub");
    pub_cmd.args(["--heartbeat-secs", "1", "--chunk-rows", "500"]);
    let mut publish = spawn(pub_cmd);
    let mut apply = spawn(applier(&stream, &name, &target.url(), "app"));
    let mut workload: Vec<String> = Vec::new();
    for round in 0..4 {
        for i in 0..20 {
            let n = round * 20 + i;
            workload.push(format!("INSERT INTO ledger VALUES ({n}, 'tick')"));
            workload.push(format!("UPDATE q SET v = v + 1 WHERE id = {}", 1 + n % 500));
            workload.push(format!(
                "INSERT INTO p VALUES ({}, {n}, 'new') ON DUPLICATE KEY UPDATE v = v + 1",
                5 + n * 13
            ));
        }
        workload.push(
            match round {
                0 => "ALTER TABLE p TRUNCATE PARTITION p0",
                1 => "ALTER TABLE p DROP PARTITION p1",
                2 => "ALTER TABLE p TRUNCATE PARTITION p3",
                _ => "DELETE FROM q WHERE id % 10 = 0",
            }
            .to_string(),
        );
    }
    run_workload(&mut my, &workload).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Boundaries after the last copy's position, for it to join.
    for end in 0..3 {
        my.query_drop(format!("INSERT INTO ledger VALUES (-{end}, 'end')")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    kill9(&mut publish);
    run_until_caught_up(publisher(&mysql.url(), &name, &stream, "pub"));
    kill9(&mut apply);
    run_until_caught_up(applier(&stream, &name, &target.url(), "app"));
    assert_replica_equal(&mut my, &name, &connect_pg(&target.url()).await).await;
}

/// An applier killed while it copies a table again (its checkpoint already
/// past the copy's begin record, moved on by other tables' changes) reads the
/// copy from its begin record again on restart. It used to skip the copy's
/// chunk records and end with the table empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_killed_during_a_copy_again_copies_it_again() {
    let mysql = synchdb_testkit::mariadb();
    let d = mysql.create_database("js_kill_copy").unwrap();
    let name = d.name().to_string();
    let mut my = connect_my(&d.url()).await;
    run_workload(
        &mut my,
        &[
            "CREATE TABLE p (id INT PRIMARY KEY, v INT, note VARCHAR(40)) PARTITION BY RANGE (id) \
             (PARTITION p0 VALUES LESS THAN (1000), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            "INSERT INTO p SELECT seq, seq % 7, REPEAT('n', 30) FROM seq_1_to_120000",
            "CREATE TABLE ledger (id INT PRIMARY KEY, what VARCHAR(20))",
        ],
    )
    .await;
    let nats = NatsServer::start().unwrap();
    let stream = format!("{}/KILLCOPY", nats.url());
    let pg = synchdb_testkit::postgres();
    let target = pg.create_database("js_kill_copy_t").unwrap();
    let pub_cmd = || {
        let mut c = publisher(&mysql.url(), &name, &stream, "pub");
        c.args(["--chunk-rows", "500"]);
        c
    };
    run_until_caught_up(pub_cmd());
    run_until_caught_up(applier(&stream, &name, &target.url(), "app"));
    // The publisher copies p again (rows removed without row events) while
    // changes of the ledger keep coming behind the copy's begin record; it
    // has published the whole copy before the applier reads it.
    let mut work = vec!["ALTER TABLE p TRUNCATE PARTITION p0".to_string()];
    work.extend((0..400).map(|i| format!("INSERT INTO ledger VALUES ({i}, 'tick')")));
    run_workload(&mut my, &work).await;
    run_until_caught_up(pub_cmd());
    let mut apply = spawn(applier(&stream, &name, &target.url(), "app"));
    let pp = connect_pg(&target.url()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let killed_mid_copy = loop {
        assert!(std::time::Instant::now() < deadline, "the applier never stood inside the copy");
        let resync: Option<Option<String>> =
            sqlx::query_scalar("SELECT resync FROM synchdb.pipelines WHERE pipeline_id = 'app'")
                .fetch_optional(&pp)
                .await
                .unwrap();
        let at = checkpoint(&pp, "app").await;
        if let (Some(Some(r)), Some((_, at))) = (resync, at) {
            let r: synchdb::core::ResyncState = serde_json::from_str(&r).unwrap();
            if at > r.position.binlog.pos {
                kill9(&mut apply);
                // What the kill left: still inside the copy?
                break resync_active(&pp, "app").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(killed_mid_copy, "the kill must land while the copy is under way");
    run_workload(&mut my, &["INSERT INTO ledger VALUES (100000, 'end')"]).await;
    run_until_caught_up(pub_cmd());
    let out = run_until_caught_up(applier(&stream, &name, &target.url(), "app"));
    assert!(!resync_active(&pp, "app").await, "the copy joined: {out}");
    assert_replica_equal(&mut my, &name, &pp).await;
}
