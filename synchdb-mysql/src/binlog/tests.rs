//! Follow mode against private MariaDB servers (synchdb-testkit), through a
//! hand-made [`SourceContext`].

use std::collections::HashMap;
use std::time::Duration;

use synchdb_core::{SourceContext, SourceMessage};
use synchdb_testkit::MariaDb;
use synchdb_types::{BinlogPosition, ChangeEvent, Position, SchemaChange, TableId, TableSchema, Transaction};
use tokio::sync::{mpsc, watch};

use crate::options::MySqlSourceOptions;

fn master_status(db: &MariaDb) -> Position {
    let out = db.exec("SHOW MASTER STATUS").unwrap();
    let mut it = out.split('\t');
    let file = it.next().unwrap().trim().to_string();
    let pos = it.next().unwrap().trim().parse().unwrap();
    Position::new(BinlogPosition::new(file, pos))
}

fn options(url: &str, server_id: u32) -> MySqlSourceOptions {
    url.parse::<MySqlSourceOptions>()
        .unwrap()
        .server_id(server_id)
        .heartbeat_interval(Duration::from_millis(300))
        .tls_mode(crate::options::TlsMode::Disabled)
}

async fn schemas(opts: &MySqlSourceOptions) -> Vec<TableSchema> {
    let mut conn = opts.connect().await.unwrap();
    crate::discovery::discover_tables(&mut conn, opts.get_table_filter()).await.unwrap()
}

/// A running follower and what it sent.
struct Reader {
    rx: mpsc::Receiver<SourceMessage>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<synchdb_core::Result<()>>,
}

async fn preflight_info(opts: &MySqlSourceOptions) -> crate::preflight::ServerInfo {
    let mut conn = opts.connect().await.unwrap();
    crate::preflight::check_server(&mut conn).await.unwrap()
}

fn start_reader(opts: MySqlSourceOptions, start: Position, schemas: Vec<TableSchema>) -> Reader {
    let (tx, rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move {
        let ctx = SourceContext {
            pipeline_id: "test".into(),
            state: None,
            sender: tx,
            shutdown,
            commands: Default::default(),
            applied: watch::channel(None).1,
        };
        let info = preflight_info(&opts).await;
        super::follow(&opts, 0, &info, &ctx, start, schemas, Vec::new(), None, Vec::new()).await
    });
    Reader { rx, stop, task }
}

impl Reader {
    /// Receive transactions until one satisfies `done` (heartbeats are checked for order).
    async fn until(&mut self, got: &mut Vec<Transaction>, done: impl Fn(&Transaction) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.rx.recv()).await.expect("timed out waiting");
            match msg.expect("follower ended early") {
                SourceMessage::Transaction(t) => {
                    let finished = done(&t);
                    got.push(t);
                    if finished {
                        return;
                    }
                }
                SourceMessage::Heartbeat { position, .. } => {
                    if let Some(last) = got.last() {
                        assert!(
                            position >= last.end_position,
                            "heartbeat moved back: {position} < {}",
                            last.end_position
                        );
                    }
                }
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    async fn stop(self) -> synchdb_core::Result<()> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("follower did not stop")
            .unwrap()
    }
}

fn summary(e: &ChangeEvent) -> String {
    let row = |r: &[synchdb_types::Value]| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("|");
    match e {
        ChangeEvent::Insert(x) => format!("insert {} {}", x.table.id.table, row(&x.row)),
        ChangeEvent::Update(x) => {
            format!("update {} {} -> {}", x.table.id.table, row(&x.before), row(&x.after))
        }
        ChangeEvent::Delete(x) => format!("delete {} {}", x.table.id.table, row(&x.row)),
        ChangeEvent::Truncate(x) => format!("truncate {}", x.table.id.table),
        ChangeEvent::Schema(x) => {
            let c = match &x.change {
                SchemaChange::CreateTable { schema } => format!("create {}", schema.id.table),
                SchemaChange::DropTable { table } => format!("drop {}", table.table),
                SchemaChange::RenameTable { from, to } => format!("rename {} {}", from.table, to.table),
                SchemaChange::AddColumn { table, column, .. } => {
                    format!("add {} {}", table.table, column.name)
                }
                SchemaChange::DropColumn { table, name } => format!("dropcol {} {name}", table.table),
                SchemaChange::ModifyColumn { table, old, new, .. } => {
                    format!("modify {} {}->{} {}", table.table, old.name, new.name, new.column_type)
                }
                SchemaChange::RenameColumn { table, from, to } => {
                    format!("renamecol {} {from} {to}", table.table)
                }
                SchemaChange::CreateIndex { table, index } => format!("index {} {}", table.table, index.name),
                SchemaChange::DropIndex { table, name } => format!("dropindex {} {name}", table.table),
                SchemaChange::SetPrimaryKey { table, columns } => {
                    format!("pk {} {}", table.table, columns.join(","))
                }
                other => format!("{other:?}"),
            };
            let cols = x
                .schema_after
                .as_ref()
                .map(|s| s.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","));
            format!("ddl {c} [{}]", cols.unwrap_or_default())
        }
        other => format!("{other:?}"),
    }
}

fn summaries(txs: &[Transaction]) -> Vec<String> {
    txs.iter().flat_map(|t| t.events.iter().map(summary)).collect()
}

const TYPES_TABLE: &str = "CREATE TABLE types (id INT PRIMARY KEY, u BIGINT UNSIGNED, d DECIMAL(65,30), \
    dt DATETIME(6), tm TIME(6), l VARCHAR(10) CHARACTER SET latin1, vb VARBINARY(4), b4 BINARY(4), \
    e ENUM('x','y','z'), s SET('a','b','c'), bt BIT(10), uu UUID, i6 INET6, j JSON)";

fn workload(db: &str) -> Vec<(String, Vec<&'static str>)> {
    // (SQL, expected event summaries)
    let w: Vec<(&str, Vec<&'static str>)> = vec![
        ("INSERT INTO t VALUES (1,'a'),(2,'b')", vec!["insert t 1|a", "insert t 2|b"]),
        ("UPDATE t SET v='bb' WHERE id=2", vec!["update t 2|b -> 2|bb"]),
        ("UPDATE t SET id=3 WHERE id=1", vec!["update t 1|a -> 3|a"]),
        (
            "BEGIN; INSERT INTO t VALUES (10,'x'); INSERT INTO k VALUES ('p'),('p'); UPDATE t SET v='y' WHERE id=10; COMMIT",
            vec!["insert t 10|x", "insert k p", "insert k p", "update t 10|x -> 10|y"],
        ),
        ("BEGIN; INSERT INTO t VALUES (99,'rolled'); ROLLBACK", vec![]),
        ("DELETE FROM t WHERE id=2", vec!["delete t 2|bb"]),
        ("DELETE FROM k LIMIT 1", vec!["delete k p"]),
        (
            "INSERT INTO types VALUES (1, 18446744073709551615, '-12345678901234567890123456789012345.123456789012345678901234567890', \
             '2024-02-29 23:59:59.123456', '-838:59:59.000001', 'é', 0x00FF, 0x01, 'y', 'a,c', b'1000000001', \
             '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1', '{\"k\": [1, 2]}')",
            vec!["insert types 1|18446744073709551615|-12345678901234567890123456789012345.123456789012345678901234567890|2024-02-29 23:59:59.123456|-838:59:59.000001|é|0x00FF|0x01000000|y|a,c|1000000001|123e4567-e89b-12d3-a456-426614174000|2001:db8::1|{\"k\": [1, 2]}"],
        ),
        ("ALTER TABLE t ADD COLUMN c INT DEFAULT 7 AFTER id", vec!["ddl add t c [id,c,v]"]),
        ("INSERT INTO t VALUES (20, 5, 'new')", vec!["insert t 20|5|new"]),
        ("ALTER TABLE t MODIFY v VARCHAR(40) NOT NULL", vec!["ddl modify t v->v varchar(40) [id,c,v]"]),
        ("ALTER TABLE t CHANGE c c2 BIGINT", vec!["ddl modify t c->c2 bigint(20) [id,c2,v]"]),
        ("ALTER TABLE t RENAME COLUMN c2 TO c3", vec!["ddl renamecol t c2 c3 [id,c3,v]"]),
        ("ALTER TABLE t ALTER COLUMN c3 SET DEFAULT 9", vec!["ddl modify t c3->c3 bigint(20) [id,c3,v]"]),
        ("ALTER TABLE t ALTER c3 DROP DEFAULT", vec!["ddl modify t c3->c3 bigint(20) [id,c3,v]"]),
        ("ALTER TABLE t ADD INDEX ix_v (v)", vec!["ddl index t ix_v [id,c3,v]"]),
        ("CREATE INDEX ix_c3 ON t (c3)", vec!["ddl index t ix_c3 [id,c3,v]"]),
        ("ALTER TABLE t ADD UNIQUE KEY uq (c3, v)", vec!["ddl index t uq [id,c3,v]"]),
        ("ALTER TABLE t DROP INDEX ix_v, DROP KEY uq", vec!["ddl dropindex t ix_v [id,c3,v]", "ddl dropindex t uq [id,c3,v]"]),
        ("DROP INDEX ix_c3 ON t", vec!["ddl dropindex t ix_c3 [id,c3,v]"]),
        ("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, c3)", vec!["ddl pk t  [id,c3,v]", "ddl pk t id,c3 [id,c3,v]"]),
        ("ALTER TABLE t DROP PRIMARY KEY, DROP COLUMN c3, ADD PRIMARY KEY (id)", vec!["ddl pk t  [id,c3,v]", "ddl dropcol t c3 [id,v]", "ddl pk t id [id,v]"]),
        ("INSERT INTO t VALUES (21, 'after')", vec!["insert t 21|after"]),
        ("CREATE TABLE n1 (id INT PRIMARY KEY, s VARCHAR(5))", vec!["ddl create n1 [id,s]"]),
        ("CREATE TABLE n2 LIKE n1", vec!["ddl create n2 [id,s]"]),
        ("INSERT INTO n2 VALUES (1,'q')", vec!["insert n2 1|q"]),
        ("RENAME TABLE n1 TO n3, n2 TO n4", vec!["ddl rename n1 n3 [id,s]", "ddl rename n2 n4 [id,s]"]),
        ("ALTER TABLE n3 RENAME TO n5", vec!["ddl rename n3 n5 [id,s]"]),
        ("INSERT INTO n4 VALUES (2,'r')", vec!["insert n4 2|r"]),
        ("TRUNCATE n4", vec!["truncate n4"]),
        ("TRUNCATE TABLE n5", vec!["truncate n5"]),
        ("DROP TABLE n4, n5", vec!["ddl drop n4 []", "ddl drop n5 []"]),
        ("INSERT INTO t VALUES (30,'end')", vec!["insert t 30|end"]),
    ];
    w.into_iter().map(|(sql, ev)| (format!("USE `{db}`; {sql}"), ev)).collect()
}

/// The End_log_pos of every transaction end (Xid, COMMIT and DDL Query
/// events) in the server's binlog files.
fn commit_positions(db: &MariaDb) -> std::collections::HashSet<(String, u64)> {
    let files = db.exec("SHOW BINARY LOGS").unwrap();
    let mut out = std::collections::HashSet::new();
    for line in files.lines() {
        let file = line.split('\t').next().unwrap();
        let events = db.exec(&format!("SHOW BINLOG EVENTS IN '{file}'")).unwrap();
        for e in events.lines() {
            let f: Vec<&str> = e.split('\t').collect();
            if f.len() >= 6 && (f[2] == "Xid" || f[2] == "Query") {
                out.insert((file.to_string(), f[4].parse().unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_workload_with_every_ddl_in_order() {
    let server = synchdb_testkit::mariadb();
    let db = server.create_database("follow").unwrap();
    let other = server.create_database("follow_other").unwrap();
    let name = db.name().to_string();
    server
        .exec(&format!(
            "USE `{name}`; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); CREATE TABLE k (v VARCHAR(5)); {TYPES_TABLE}; \
             CREATE TABLE `{}`.o (id INT PRIMARY KEY)",
            other.name()
        ))
        .unwrap();
    let opts = options(&db.url(), 9101);
    let start = master_status(server);
    let mut reader = start_reader(opts.clone(), start.clone(), schemas(&opts).await);
    let work = workload(&name);
    for (sql, _) in &work {
        server.exec(sql).unwrap();
        // Changes to an unselected database must not appear.
        server.exec(&format!("INSERT INTO `{}`.o VALUES ({})", other.name(), rand_id())).unwrap();
    }
    let mut got = Vec::new();
    reader
        .until(&mut got, |t| summaries(std::slice::from_ref(t)).iter().any(|s| s == "insert t 30|end"))
        .await;
    reader.stop().await.unwrap();
    let expected: Vec<String> = work.iter().flat_map(|(_, e)| e.iter().map(|s| s.to_string())).collect();
    assert_eq!(summaries(&got), expected);
    // Positions: increasing, every end is a real commit, events before it; GTIDs in the set.
    let commits = commit_positions(server);
    let mut prev = start;
    for t in &got {
        assert!(t.end_position > prev, "{} after {}", t.end_position, prev);
        assert!(
            commits.contains(&(t.end_position.binlog.file.clone(), t.end_position.binlog.pos)),
            "{}",
            t.end_position
        );
        let gtid: synchdb_types::GtidSet = t.gtid.as_deref().expect("MariaDB assigns GTIDs").parse().unwrap();
        assert!(t.end_position.gtid.as_ref().expect("gtid set").contains(&gtid));
        for (i, e) in t.events.iter().enumerate() {
            let m = e.meta();
            assert!(m.position < t.end_position.binlog && m.position >= prev.binlog);
            assert_eq!((m.tx, m.index as usize), (t.sequence, i));
            assert_eq!(m.commit_time, t.commit_time);
        }
        prev = t.end_position.clone();
    }
    // The DDL's schema is the one later rows decode with.
    let ddl_add = got.iter().flat_map(|t| &t.events).find_map(|e| match e {
        ChangeEvent::Schema(s) if matches!(s.change, SchemaChange::AddColumn { .. }) => {
            s.schema_after.clone()
        }
        _ => None,
    });
    assert_eq!(
        ddl_add.unwrap().column("c").unwrap().default,
        Some(synchdb_types::ColumnDefault::Literal("7".into()))
    );
}

fn rand_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Tracked schemas after applying received DDL (what the checkpoint stores).
fn track(schemas: &mut HashMap<TableId, TableSchema>, txs: &[Transaction]) {
    for e in txs.iter().flat_map(|t| &t.events) {
        if let ChangeEvent::Schema(s) = e {
            match &s.change {
                SchemaChange::DropTable { table } => {
                    schemas.remove(table);
                }
                SchemaChange::RenameTable { from, .. } => {
                    schemas.remove(from);
                    if let Some(a) = &s.schema_after {
                        schemas.insert(a.id.clone(), (**a).clone());
                    }
                }
                _ => {
                    if let Some(a) = &s.schema_after {
                        schemas.insert(a.id.clone(), (**a).clone());
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_and_resumes_from_the_checkpoint_exactly_once() {
    let server = synchdb_testkit::mariadb();
    let db = server.create_database("resume").unwrap();
    let name = db.name().to_string();
    server
        .exec(&format!("USE `{name}`; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); CREATE TABLE k (v VARCHAR(5)); {TYPES_TABLE}"))
        .unwrap();
    let opts = options(&db.url(), 9102);
    let start = master_status(server);
    let initial = schemas(&opts).await;
    let work = workload(&name);
    let expected: Vec<String> = work.iter().flat_map(|(_, e)| e.iter().map(|s| s.to_string())).collect();
    // The workload runs in the background while the reader is stopped and restarted twice.
    let writer = {
        let sqls: Vec<String> = work.iter().map(|(s, _)| s.clone()).collect();
        std::thread::spawn(move || {
            for sql in sqls {
                synchdb_testkit::mariadb().exec(&sql).unwrap();
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let mut all: Vec<Transaction> = Vec::new();
    let mut tracked: HashMap<TableId, TableSchema> = initial.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut checkpoint = start;
    for round in 0..3 {
        let mut reader = start_reader(opts.clone(), checkpoint.clone(), tracked.values().cloned().collect());
        let mut got = Vec::new();
        let target = (round + 1) * 4;
        reader
            .until(&mut got, |t| {
                round == 2 && summaries(std::slice::from_ref(t)).iter().any(|s| s == "insert t 30|end")
                    || (round < 2 && t.sequence as usize >= target)
            })
            .await;
        reader.stop().await.unwrap();
        // Anything the reader sent is "applied": the checkpoint is the last end position.
        track(&mut tracked, &got);
        checkpoint = got.last().unwrap().end_position.clone();
        all.extend(got);
    }
    writer.join().unwrap();
    assert_eq!(summaries(&all), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_server_restart_and_loses_nothing() {
    let server = MariaDb::start().unwrap();
    let db = server.create_database("restart").unwrap();
    let name = db.name().to_string();
    server.exec(&format!("CREATE TABLE `{name}`.t (id INT PRIMARY KEY, v VARCHAR(20))")).unwrap();
    let opts = options(&db.url(), 9103);
    let start = master_status(&server);
    let mut reader = start_reader(opts.clone(), start, schemas(&opts).await);
    let mut got = Vec::new();
    for i in 1..=20 {
        server.exec(&format!("INSERT INTO `{name}`.t VALUES ({i}, 'r{i}')")).unwrap();
    }
    reader.until(&mut got, |t| summaries(std::slice::from_ref(t)) == ["insert t 5|r5"]).await;
    server.restart().unwrap();
    for i in 21..=40 {
        server.exec(&format!("INSERT INTO `{name}`.t VALUES ({i}, 'r{i}')")).unwrap();
    }
    reader.until(&mut got, |t| summaries(std::slice::from_ref(t)) == ["insert t 40|r40"]).await;
    reader.stop().await.unwrap();
    let expected: Vec<String> = (1..=40).map(|i| format!("insert t {i}|r{i}")).collect();
    assert_eq!(summaries(&got), expected);
    // The binlog file changed with the restart, and positions kept increasing.
    assert_ne!(got.first().unwrap().end_position.binlog.file, got.last().unwrap().end_position.binlog.file);
    assert!(got.windows(2).all(|w| w[0].end_position < w[1].end_position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_binlog_is_a_lost_position() {
    let server = synchdb_testkit::mariadb();
    let db = server.create_database("purged").unwrap();
    let opts = options(&db.url(), 9104);
    let start = Position::new(BinlogPosition::new("mysql-bin.999999", 4));
    let reader = start_reader(opts, start, Vec::new());
    let r = tokio::time::timeout(Duration::from_secs(20), reader.task).await.unwrap().unwrap();
    let e = r.unwrap_err();
    assert_eq!(e.kind(), synchdb_core::ErrorKind::SourcePositionLost, "{e}");
    assert!(e.to_string().contains("mysql-bin.999999") && e.to_string().contains("snapshot"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_when_caught_up_and_heartbeats_on_unselected_changes() {
    let server = synchdb_testkit::mariadb();
    let db = server.create_database("caught").unwrap();
    let name = db.name().to_string();
    server
        .exec(&format!("CREATE TABLE `{name}`.t (id INT PRIMARY KEY); CREATE TABLE `{name}`.skip (id INT)"))
        .unwrap();
    let start = master_status(server);
    server.exec(&format!("INSERT INTO `{name}`.t VALUES (1); INSERT INTO `{name}`.skip VALUES (1)")).unwrap();
    let target = master_status(server);
    let opts = options(&format!("{}?tables=!{name}.skip", db.url()), 9105).stop_at_caught_up(true);
    let mut reader = start_reader(opts.clone(), start, schemas(&opts).await);
    let r = tokio::time::timeout(Duration::from_secs(20), &mut reader.task).await.unwrap().unwrap();
    r.unwrap();
    let mut msgs = Vec::new();
    while let Ok(m) = reader.rx.try_recv() {
        msgs.push(m);
    }
    let Some(SourceMessage::Transaction(t)) =
        msgs.iter().find(|m| matches!(m, SourceMessage::Transaction(_)))
    else {
        panic!("{msgs:?}")
    };
    assert_eq!(summaries(std::slice::from_ref(t)), ["insert t 1"]);
    // The skipped transaction of the excluded table moves the position by a heartbeat.
    let Some(SourceMessage::Heartbeat { position, .. }) = msgs.last() else { panic!("{msgs:?}") };
    assert!(position.binlog >= target.binlog, "{position} < {target}");
}

/// A [`Source`](synchdb_core::Source) that only follows (for measuring the
/// binlog decode rate through a pipeline into the in-memory sink).
struct FollowSource {
    opts: MySqlSourceOptions,
    start: Position,
    schemas: Vec<TableSchema>,
}

#[async_trait::async_trait]
impl synchdb_core::Source for FollowSource {
    fn name(&self) -> &str {
        "follow"
    }
    async fn run(&mut self, ctx: SourceContext) -> synchdb_core::Result<()> {
        let info = preflight_info(&self.opts).await;
        super::follow(
            &self.opts,
            0,
            &info,
            &ctx,
            self.start.clone(),
            self.schemas.clone(),
            Vec::new(),
            None,
            Vec::new(),
        )
        .await
    }
}

/// Decode rate: `cargo test --release -p synchdb-mysql --lib -- --ignored --nocapture follow_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run in release mode"]
async fn follow_rate() {
    let rows: u64 = std::env::var("FOLLOW_RATE_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let server = MariaDb::start().unwrap();
    let db = server.create_database("rate").unwrap();
    let name = db.name().to_string();
    server
        .exec(&format!(
            "CREATE TABLE `{name}`.t (id BIGINT PRIMARY KEY, a INT, b VARCHAR(40), c DECIMAL(12,2), d DATETIME(6), e DOUBLE)"
        ))
        .unwrap();
    let start = master_status(&server);
    let per_tx = 50_000u64;
    let mut done = 0;
    while done < rows {
        let n = per_tx.min(rows - done);
        server
            .exec(&format!(
                "USE `{name}`; INSERT INTO t SELECT seq, seq % 1000, CONCAT('row-', seq), seq / 100, \
                 '2024-01-01 00:00:00.000001' + INTERVAL seq SECOND, seq * 1.5 FROM seq_{}_to_{}",
                done + 1,
                done + n
            ))
            .unwrap();
        done += n;
    }
    let opts = options(&db.url(), 9199).stop_at_caught_up(true);
    let schemas = schemas(&opts).await;
    let sink = synchdb_core::memory::MemorySink::new();
    let began = std::time::Instant::now();
    let stats = synchdb_core::Pipeline::builder()
        .id("rate")
        .source(FollowSource { opts, start, schemas })
        .sink(sink.clone())
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    let secs = began.elapsed().as_secs_f64();
    let changes: usize = sink.data().transactions.iter().map(|t| t.events.len()).sum();
    assert_eq!(changes as u64, rows);
    println!(
        "follow_rate: {changes} row changes in {secs:.2} s = {:.0} row changes/s (stats: {stats:?})",
        changes as f64 / secs
    );
}
