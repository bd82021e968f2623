//! Each preflight failure, with its message.

mod common;

use synchdb_core::memory::MemorySink;
use synchdb_core::{ErrorKind, SinkState, SnapshotUpdate, StateUpdate};
use synchdb_mysql::{MySqlSourceOptions, SnapshotMode};
use synchdb_types::{Position, TableId, Value};

fn private_options(server: &synchdb_testkit::MariaDb) -> MySqlSourceOptions {
    format!("{}?ssl-mode=disabled", server.url())
        .parse::<MySqlSourceOptions>()
        .unwrap()
        .tables("pf.*")
        .snapshot_mode(SnapshotMode::InitialOnly)
}

/// Server settings and a purged resume position, on a private server (they change global state).
#[tokio::test]
async fn settings_and_lost_position() {
    let server = synchdb_testkit::MariaDb::start().unwrap();
    server
        .exec("CREATE DATABASE pf; CREATE TABLE pf.t (id INT PRIMARY KEY); INSERT INTO pf.t VALUES (1);")
        .unwrap();
    let opts = private_options(&server);

    for (setting, bad, expected) in [
        ("binlog_format", "STATEMENT", "ROW"),
        ("binlog_format", "MIXED", "ROW"),
        ("binlog_row_image", "MINIMAL", "FULL"),
        ("binlog_row_metadata", "MINIMAL", "FULL"),
    ] {
        server.exec(&format!("SET GLOBAL {setting} = '{bad}'")).unwrap();
        let err = common::run("pf", opts.clone(), &MemorySink::new()).await.unwrap_err();
        server.exec(&format!("SET GLOBAL {setting} = '{expected}'")).unwrap();
        assert_eq!(err.kind(), ErrorKind::SourceSetting, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("source setting {setting} must be {expected}, but the server has {bad}")),
            "{msg}"
        );
        assert!(msg.contains(&format!("SET GLOBAL {setting} = {expected}")), "{msg}");
    }
    // Settings restored: the snapshot runs.
    let sink = MemorySink::new();
    common::run("pf", opts.clone(), &sink).await.unwrap();
    assert_eq!(sink.data().snapshot_rows[&TableId::new("pf", "t")], vec![vec![Value::Int(1)]]);

    // A configured start position in a purged file.
    let first = server
        .exec("SHOW BINARY LOGS")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    server.exec("FLUSH BINARY LOGS; FLUSH BINARY LOGS;").unwrap();
    let last = server.exec("SHOW MASTER STATUS").unwrap().split('\t').next().unwrap().to_string();
    // The server purges a file only after its binlog checkpoint: retry briefly.
    for _ in 0..100 {
        server.exec(&format!("PURGE BINARY LOGS TO '{last}'")).unwrap();
        if !server.exec("SHOW BINARY LOGS").unwrap().contains(&first) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!server.exec("SHOW BINARY LOGS").unwrap().contains(&first), "{first} was not purged");
    let lost: Position = format!("{first}:4").parse().unwrap();
    let never = opts.clone().snapshot_mode(SnapshotMode::Never).start_position(lost.clone());
    let err = common::run("pf-never", never, &MemorySink::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourcePositionLost, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "binlog file {first} of the configured start position {first}:4 is no longer on the server"
        )),
        "{msg}"
    );
    assert!(msg.contains(&format!("the server has only {last}")), "{msg}");
    assert!(msg.contains("a fresh snapshot is needed (--snapshot always"), "{msg}");

    // A stored checkpoint in a purged file (snapshot done, then follow).
    let sink = MemorySink::new();
    sink.save_state(
        "pf-stored",
        &StateUpdate {
            position: Some(lost.clone()),
            snapshot: Some(SnapshotUpdate::Finished),
            schemas: vec![],
            resync: None,
            skip_before: None,
        },
    )
    .await
    .unwrap();
    let err =
        common::run("pf-stored", opts.clone().snapshot_mode(SnapshotMode::Initial), &sink).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourcePositionLost, "{err}");
    assert!(err.to_string().contains(&format!("binlog file {first} of the stored checkpoint")), "{err}");
}

#[tokio::test]
async fn missing_replication_slave() {
    let db = common::database("pf_slave");
    let opts = common::limited_user(&db, "noslave", &["GRANT SELECT, RELOAD, BINLOG MONITOR ON *.*"]);
    let err = common::run("p", opts, &MemorySink::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourcePrivilege, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("lacks the REPLICATION SLAVE privilege, needed to read the binlog"), "{msg}");
    assert!(msg.contains("the user has: SELECT, RELOAD, BINLOG MONITOR ON *.*"), "{msg}");
    assert!(msg.contains("fix with: GRANT REPLICATION SLAVE ON *.* TO 'noslave_"), "{msg}");
}

#[tokio::test]
async fn missing_replication_client() {
    let db = common::database("pf_client");
    let opts = common::limited_user(&db, "noclient", &["GRANT SELECT, REPLICATION SLAVE ON *.*"]);
    let err = common::run("p", opts, &MemorySink::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourcePrivilege, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("lacks the BINLOG MONITOR (REPLICATION CLIENT) privilege"), "{msg}");
    assert!(msg.contains("fix with: GRANT BINLOG MONITOR ON *.*"), "{msg}");
}

#[tokio::test]
async fn missing_select() {
    let db = common::database("pf_select");
    common::server()
        .exec(&format!("CREATE TABLE `{}`.t (id INT PRIMARY KEY, secret INT)", db.name()))
        .unwrap();
    let opts = common::limited_user(&db, "nosel", &["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*"]);
    let err = common::run("p", opts, &MemorySink::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourcePrivilege, "{err}");
    assert!(
        err.to_string().contains(&format!("lacks the SELECT privilege on database {}", db.name())),
        "{err}"
    );

    // A column-level grant makes the table visible but not readable.
    let opts = common::limited_user(
        &db,
        "colsel",
        &[
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*",
            &format!("GRANT SELECT (id) ON `{}`.t", db.name()),
        ],
    );
    let err = common::run("p", opts, &MemorySink::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourcePrivilege, "{err}");
    assert!(err.to_string().contains(&format!("lacks the SELECT privilege on {}.t", db.name())), "{err}");
}

/// Without RELOAD the snapshot takes the single-connection method and still succeeds.
#[tokio::test]
async fn without_reload_single_connection_snapshot() {
    let db = common::database("pf_noreload");
    common::server()
        .exec(&format!(
            "USE `{0}`; CREATE TABLE `{0}`.t (id INT PRIMARY KEY, v VARCHAR(10));
             INSERT INTO `{0}`.t SELECT seq, CONCAT('v', seq) FROM seq_1_to_2500;",
            db.name()
        ))
        .unwrap();
    let opts = common::limited_user(
        &db,
        "noreload",
        &["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*", &format!("GRANT SELECT ON `{}`.*", db.name())],
    )
    .snapshot_workers(4)
    .chunk_rows(1000);
    let sink = MemorySink::new();
    let stats = common::run("p", opts, &sink).await.unwrap();
    assert_eq!(stats.snapshot_rows, 2500);
    assert_eq!(stats.snapshot_chunks_done, 3);
    let rows = sink.data().snapshot_rows[&TableId::new(db.name(), "t")].clone();
    let mut ids: Vec<i64> =
        rows.iter().map(|r| if let Value::Int(i) = r[0] { i } else { panic!() }).collect();
    ids.sort();
    assert_eq!(ids, (1..=2500).collect::<Vec<_>>());
}
