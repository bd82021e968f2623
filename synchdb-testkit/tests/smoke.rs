//! Smoke tests against real private servers.

use std::process::Command;

use synchdb_testkit::{mariadb, postgres, MariaDb, Postgres};

#[test]
fn mariadb_roundtrip() {
    let my = mariadb();
    let db = my.create_database("Smoke-Test").unwrap();
    assert!(db.name().starts_with("smoke_test_"), "{}", db.name());
    assert_eq!(db.url(), format!("mysql://synchdb:synchdb@127.0.0.1:{}/{}", my.port(), db.name()));
    my.exec(&format!(
        "CREATE TABLE `{0}`.t (id INT PRIMARY KEY, s VARCHAR(20));
         INSERT INTO `{0}`.t VALUES (1, 'one'), (2, 'snow ☃ 🦀'), (3, NULL);",
        db.name()
    ))
    .unwrap();
    let out = my.exec(&format!("SELECT id, s FROM `{}`.t ORDER BY id", db.name())).unwrap();
    assert_eq!(out, "1\tone\n2\tsnow ☃ 🦀\n3\tNULL\n");
}

#[test]
fn mariadb_binlog_settings() {
    let out = mariadb()
        .exec("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@character_set_server")
        .unwrap();
    assert_eq!(out.trim(), "1\tROW\tFULL\tFULL\tutf8mb4");
}

#[test]
fn mariadb_sql_error_reports_stderr() {
    let err = mariadb().exec("SELECT * FROM no_such_db.no_such_table").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no_such_db"), "{msg}");
}

#[test]
fn mariadb_synchdb_user_over_tcp() {
    let my = mariadb();
    assert_eq!(my.host(), "127.0.0.1");
    assert_eq!(my.url(), format!("mysql://synchdb:synchdb@127.0.0.1:{}", my.port()));
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P"])
        .arg(my.port().to_string())
        .args(["-u", "synchdb", "-psynchdb", "-N", "-B", "-e", "SELECT CURRENT_USER()"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "synchdb@127.0.0.1");
}

#[test]
fn mariadb_database_dropped_with_guard() {
    let my = mariadb();
    let db = my.create_database("dropme").unwrap();
    let name = db.name().to_string();
    let exists = |name: &str| !my.exec(&format!("SHOW DATABASES LIKE '{name}'")).unwrap().trim().is_empty();
    assert!(exists(&name));
    drop(db);
    assert!(!exists(&name));
}

#[test]
fn mariadb_restart_keeps_data_and_binlogs() {
    let my = MariaDb::start().unwrap();
    assert_ne!(my.server_id(), mariadb().server_id());
    let db = my.create_database("restart").unwrap();
    my.exec(&format!(
        "CREATE TABLE `{0}`.t (id INT PRIMARY KEY); INSERT INTO `{0}`.t VALUES (1), (2);",
        db.name()
    ))
    .unwrap();
    let logs_before: Vec<String> = binlog_names(&my);
    assert!(!logs_before.is_empty());

    my.restart().unwrap();

    let logs_after = binlog_names(&my);
    assert!(logs_after.len() > logs_before.len(), "{logs_before:?} -> {logs_after:?}");
    assert!(logs_before.iter().all(|l| logs_after.contains(l)), "{logs_before:?} -> {logs_after:?}");
    assert_eq!(my.exec(&format!("SELECT COUNT(*) FROM `{}`.t", db.name())).unwrap().trim(), "2");

    my.stop().unwrap();
    assert!(my.exec("SELECT 1").is_err());
    my.start_again().unwrap();
    assert_eq!(my.exec("SELECT 1").unwrap().trim(), "1");

    let dir = my.data_dir().parent().unwrap().to_path_buf();
    drop(db);
    drop(my);
    assert_removed(&dir);
}

fn binlog_names(my: &MariaDb) -> Vec<String> {
    my.exec("SHOW BINARY LOGS").unwrap().lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

#[test]
fn postgres_roundtrip() {
    let pg = postgres();
    let db = pg.create_database("smoke").unwrap();
    assert_eq!(db.url(), format!("postgres://postgres@127.0.0.1:{}/{}", pg.port(), db.name()));
    assert_eq!(pg.url(), format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port()));
    pg.exec(
        db.name(),
        "CREATE TABLE t (id int PRIMARY KEY, s text);
         INSERT INTO t VALUES (1, 'one'), (2, 'snow ☃ 🦀'), (3, NULL);",
    )
    .unwrap();
    let out = pg.exec(db.name(), "SELECT id, s FROM t ORDER BY id").unwrap();
    assert_eq!(out, "1|one\n2|snow ☃ 🦀\n3|\n");
    assert_eq!(pg.exec(db.name(), "SHOW server_encoding").unwrap().trim(), "UTF8");

    let err = pg.exec(db.name(), "SELECT * FROM no_such_table").unwrap_err().to_string();
    assert!(err.contains("no_such_table"), "{err}");

    // The URL works over TCP.
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM t"])
        .arg(db.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");

    let name = db.name().to_string();
    drop(db);
    let left =
        pg.exec("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")).unwrap();
    assert_eq!(left.trim(), "0");
}

#[test]
fn postgres_private_restart_and_cleanup() {
    let pg = Postgres::start().unwrap();
    assert_ne!(pg.port(), postgres().port());
    pg.exec("postgres", "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42);").unwrap();
    pg.restart().unwrap();
    assert_eq!(pg.exec("postgres", "SELECT x FROM kept").unwrap().trim(), "42");
    let dir = pg.socket_dir().to_path_buf();
    drop(pg);
    assert_removed(&dir);
}

fn assert_removed(dir: &std::path::Path) {
    if std::env::var_os("SYNCHDB_TESTKIT_KEEP").is_none() {
        assert!(!dir.exists(), "{} should be removed on drop", dir.display());
    }
}
