//! Network faults end to end: `replicate` talks to MariaDB and PostgreSQL through a
//! [`FaultProxy`] each, which cuts connections (in the middle of packets), stalls the
//! traffic and refuses new connections while a workload runs, during follow and during
//! the snapshot. `replicate` must never exit, must catch up, and the replica must be
//! exact: a keyless `ledger` table (insert only, identical rows included) turns any
//! transaction applied twice into an extra row, and `assert_replica_equal` compares
//! multisets of rows.
//!
//! The random moments come from a seed printed by each test; set `FAULTS_SEED` to replay
//! one.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use synchdb_testkit::FaultProxy;

/// The seed of a test's random moments: `FAULTS_SEED`, else the clock.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{test}: FAULTS_SEED={seed}");
    seed
}

/// Random numbers for the moments of the faults (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

/// `url` with the server's port replaced by the proxy's.
fn via(url: &str, server_port: u16, proxy: &FaultProxy) -> String {
    let from = format!("127.0.0.1:{server_port}");
    assert!(url.contains(&from), "{url} has {from}");
    url.replacen(&from, &format!("127.0.0.1:{}", proxy.port()), 1)
}

/// The servers, a database on each and a proxy in front of each.
struct Setup {
    src: synchdb_testkit::TestDatabase,
    target: synchdb_testkit::TestDatabase,
    my_proxy: FaultProxy,
    pg_proxy: FaultProxy,
}

impl Setup {
    fn new(prefix: &str) -> Setup {
        let (my, pg) = (synchdb_testkit::mariadb(), synchdb_testkit::postgres());
        let src = my.create_database(prefix).unwrap();
        let target = pg.create_database(prefix).unwrap();
        let my_proxy = FaultProxy::start(("127.0.0.1", my.port())).unwrap();
        let pg_proxy = FaultProxy::start(("127.0.0.1", pg.port())).unwrap();
        Setup { src, target, my_proxy, pg_proxy }
    }

    /// `replicate` for this database through both proxies.
    fn replicate(&self, pipeline: &str, extra: &[&str]) -> std::process::Command {
        let source =
            via(&synchdb_testkit::mariadb().url(), synchdb_testkit::mariadb().port(), &self.my_proxy);
        let target = via(&self.target.url(), synchdb_testkit::postgres().port(), &self.pg_proxy);
        let mut c = replicate(&source, self.src.name(), &target, pipeline);
        c.args(extra);
        c
    }
}

const SCHEMA: &str = "
    CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL, note VARCHAR(64));
    CREATE TABLE ledger (account INT NOT NULL, delta BIGINT NOT NULL, note VARCHAR(64));
    INSERT INTO accounts SELECT seq, 0, 'initial' FROM seq_1_to_500;
    INSERT INTO ledger SELECT seq, 0, 'initial' FROM seq_1_to_500;";

/// The follow workload, on a direct connection, until `stop`: small transactions that
/// insert, update and delete accounts and add two identical ledger rows, and every
/// tenth a large one (300 ledger rows, 50 account updates). Returns the transactions run.
fn start_workload(url: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut my = connect_my(&url).await;
        let mut i: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let acc = 1 + (i * 7) % 500;
            let sql = if i % 10 == 9 {
                format!(
                    "START TRANSACTION; \
                     INSERT INTO ledger SELECT {acc}, seq, 'bulk {i}' FROM seq_1_to_300; \
                     UPDATE accounts SET balance = balance + 1, note = 'bulk {i}' WHERE id % 10 = {m}; \
                     COMMIT",
                    m = i % 10
                )
            } else {
                let delete = if i >= 20 {
                    format!("DELETE FROM accounts WHERE id = {};", 10_000 + i - 20)
                } else {
                    String::new()
                };
                format!(
                    "START TRANSACTION; \
                     INSERT INTO accounts (id, balance, note) VALUES ({new}, {i}, 'new {i}'); \
                     UPDATE accounts SET balance = balance - 1, note = 'tx {i}' WHERE id = {acc}; \
                     {delete} \
                     INSERT INTO ledger VALUES ({acc}, -1, 'tx'), ({acc}, -1, 'tx'); \
                     COMMIT",
                    new = 10_000 + i
                )
            };
            my.query_drop(sql).await.unwrap_or_else(|e| panic!("workload transaction {i}: {e}"));
            i += 1;
            done.store(i, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
        i
    })
}

/// The follower is still running.
fn assert_running(follower: &mut Follower, when: &str) {
    if let Some(status) = follower.try_wait().unwrap() {
        panic!("replicate exited {when}: {status}");
    }
}

/// Wait until the follower has connected through `proxy` again (more connections
/// accepted than `accepted_before`) and the checkpoint has moved past where it was
/// then: the pipeline runs again and applies.
async fn wait_recovered(
    proxy: &FaultProxy,
    accepted_before: u64,
    pg: &sqlx::PgPool,
    pipeline: &str,
    follower: &mut Follower,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().accepted <= accepted_before || proxy.connections() == 0 {
        assert_running(follower, &format!("after {what}"));
        assert!(Instant::now() < deadline, "no reconnection after {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at = checkpoint(pg, pipeline).await;
    while checkpoint(pg, pipeline).await <= at {
        assert_running(follower, &format!("after {what}"));
        assert!(Instant::now() < deadline, "no progress after {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until live connections go through `proxy`.
async fn wait_connected(proxy: &FaultProxy, follower: &mut Follower) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.connections() == 0 {
        assert_running(follower, "while connecting");
        assert!(Instant::now() < deadline, "no connection through the proxy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Follow mode: the binlog connection cut at random moments (some in the middle of a
/// packet), then the PostgreSQL connections; each side stalled for a few seconds; each
/// side refusing new connections for a few seconds after a cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_survives_cuts_stalls_and_refusals() {
    let mut rng = Rng(seed("follow_survives_cuts_stalls_and_refusals"));
    let s = Setup::new("faults_follow");
    let mut my = connect_my(&s.src.url()).await;
    my.query_drop(SCHEMA).await.unwrap();
    let pg = connect_pg(&s.target.url()).await;
    let pipeline = "faults-follow";
    let mut follower = spawn(s.replicate(pipeline, &["--heartbeat-secs", "1", "--batch-size", "100"]));
    wait_until("the follow start", Duration::from_secs(60), || async {
        checkpoint(&pg, pipeline).await.is_some()
    })
    .await;

    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let workload = start_workload(s.src.url(), stop.clone(), done.clone());
    wait_until("the first transactions", Duration::from_secs(30), || {
        let done = done.clone();
        async move { done.load(Ordering::Relaxed) >= 20 }
    })
    .await;

    // The binlog (and any side) connection: cut now, or after a few more bytes.
    for round in 0..3 {
        tokio::time::sleep(rng.millis(100, 700)).await;
        wait_connected(&s.my_proxy, &mut follower).await;
        let before = s.my_proxy.stats().accepted;
        if round % 2 == 0 {
            s.my_proxy.cut_all();
        } else {
            s.my_proxy.cut_after_bytes(rng.next() % 600);
        }
        wait_recovered(&s.my_proxy, before, &pg, pipeline, &mut follower, "a MariaDB cut").await;
    }
    // The PostgreSQL connections, the same way.
    for round in 0..2 {
        tokio::time::sleep(rng.millis(100, 700)).await;
        wait_connected(&s.pg_proxy, &mut follower).await;
        let before = s.pg_proxy.stats().accepted;
        if round % 2 == 0 {
            s.pg_proxy.cut_after_bytes(rng.next() % 400);
        } else {
            s.pg_proxy.cut_all();
        }
        wait_recovered(&s.pg_proxy, before, &pg, pipeline, &mut follower, "a PostgreSQL cut").await;
    }
    // Stalls shorter than the binlog idle limit: the connections survive them.
    for proxy in [&s.my_proxy, &s.pg_proxy] {
        proxy.stall(true);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_running(&mut follower, "during a stall");
        proxy.stall(false);
    }
    // A cut, then new connections refused for a while.
    for proxy in [&s.my_proxy, &s.pg_proxy] {
        let before = proxy.stats().accepted;
        proxy.refuse_for(Duration::from_millis(1500));
        proxy.cut_all();
        wait_recovered(proxy, before, &pg, pipeline, &mut follower, "refused connections").await;
    }

    stop.store(true, Ordering::Relaxed);
    let transactions = workload.await.unwrap();
    wait_caught_up(&mut my, &pg, pipeline, &mut follower).await;
    assert_running(&mut follower, "at the end");
    assert_replica_equal(&mut my, s.src.name(), &pg).await;
    let (ms, ps) = (s.my_proxy.stats(), s.pg_proxy.stats());
    eprintln!("follow: {transactions} transactions; MariaDB proxy {ms:?}; PostgreSQL proxy {ps:?}");
    assert!(ms.cuts >= 4 && ps.cuts >= 3, "the faults happened: {ms:?} {ps:?}");
}

/// The snapshot of 200 000 rows in chunks of 5 000 with two readers while the MariaDB
/// proxy cuts connections at random moments in the middle of the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_survives_random_source_cuts() {
    let seed = seed("snapshot_survives_random_source_cuts");
    let s = Setup::new("faults_snap");
    let mut my = connect_my(&s.src.url()).await;
    my.query_drop(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, grp INT NOT NULL, name VARCHAR(64), amount DECIMAL(12,2), note TEXT);
         INSERT INTO big SELECT seq, seq % 97, CONCAT('name-', seq), seq / 100, REPEAT('n', seq % 50)
           FROM seq_1_to_120000;
         CREATE TABLE wide (a INT NOT NULL, b VARCHAR(20) NOT NULL, v VARCHAR(40), PRIMARY KEY (a, b));
         INSERT INTO wide SELECT seq % 1000, CONCAT('b', seq), CONCAT('v', seq) FROM seq_1_to_60000;
         CREATE TABLE ledger (account INT, delta BIGINT, note VARCHAR(20));
         INSERT INTO ledger SELECT seq % 100, seq % 7, 'snap' FROM seq_1_to_20000;",
    )
    .await
    .unwrap();
    let pg = connect_pg(&s.target.url()).await;
    let pipeline = "faults-snap";
    let mut run = spawn(s.replicate(
        pipeline,
        &["--until-caught-up", "--chunk-rows", "5000", "--snapshot-workers", "2", "--heartbeat-secs", "1"],
    ));
    wait_until("the first durable chunk", Duration::from_secs(60), || async {
        durable_chunks(&pg, pipeline).await >= 1
    })
    .await;
    // Writes while the snapshot runs: a resumed snapshot reads its remaining chunks at a
    // later point than the first ones, and the binlog between must still apply exactly once.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (s.src.url(), stop.clone());
        tokio::spawn(async move {
            let mut w = connect_my(&url).await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                w.query_drop(format!(
                    "START TRANSACTION; \
                     UPDATE big SET amount = amount + 1, name = 'w{i}' WHERE id = {u}; \
                     DELETE FROM big WHERE id = {d}; \
                     INSERT INTO big VALUES ({n}, 1, 'live', 1.00, 'x'); \
                     INSERT INTO wide VALUES ({a}, 'live{i}', 'x'); \
                     INSERT INTO ledger VALUES ({a}, 1, 'live'), ({a}, 1, 'live'); \
                     COMMIT",
                    u = 1 + (i * 7919) % 120_000,
                    d = 2 + (i * 104_729) % 120_000,
                    n = 1_000_000 + i,
                    a = i % 100,
                ))
                .await
                .unwrap_or_else(|e| panic!("writer transaction {i}: {e}"));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            i
        })
    };
    // One cut for sure while the readers copy (whatever the machine's load),
    // then random ones.
    s.my_proxy.wait_for_connections(2, Duration::from_secs(20));
    s.my_proxy.cut_after_bytes(16 * 1024);
    s.my_proxy.chaos(seed, Duration::from_millis(150));
    // Chaos until a few cuts happened (each restarts the run from the durable chunks,
    // with a growing backoff) or the run ended.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut cut_while_snapshotting = false;
    while s.my_proxy.stats().cuts < 4 && Instant::now() < deadline {
        if run.try_wait().unwrap().is_some() {
            break;
        }
        // The position is stored when the snapshot ends and following starts.
        if s.my_proxy.stats().cuts >= 1 && !cut_while_snapshotting {
            cut_while_snapshotting = checkpoint(&pg, pipeline).await.is_none();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.my_proxy.chaos_off();
    let cuts_during = s.my_proxy.stats().cuts;
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the snapshot did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "replicate --until-caught-up failed: {status}");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(
        cuts_during >= 1 && cut_while_snapshotting,
        "chaos cut some connections during the snapshot: {:?}",
        s.my_proxy.stats()
    );
    // The writes after the run's stop position, without faults.
    run_until_caught_up(s.replicate(pipeline, &[]));
    assert_replica_equal(&mut my, s.src.name(), &pg).await;
    eprintln!("snapshot: {writes} write transactions; MariaDB proxy {:?}", s.my_proxy.stats());
}

/// Follow mode with the PostgreSQL connections cut at random moments, in the middle of
/// the statements and results of batches being applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_survives_random_target_cuts() {
    let seed = seed("follow_survives_random_target_cuts");
    let s = Setup::new("faults_pgchaos");
    let mut my = connect_my(&s.src.url()).await;
    my.query_drop(SCHEMA).await.unwrap();
    let pg = connect_pg(&s.target.url()).await;
    let pipeline = "faults-pgchaos";
    let mut follower = spawn(s.replicate(pipeline, &["--heartbeat-secs", "1", "--batch-size", "50"]));
    wait_until("the follow start", Duration::from_secs(60), || async {
        checkpoint(&pg, pipeline).await.is_some()
    })
    .await;
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let workload = start_workload(s.src.url(), stop.clone(), done.clone());
    wait_until("the first transactions", Duration::from_secs(30), || {
        let done = done.clone();
        async move { done.load(Ordering::Relaxed) >= 20 }
    })
    .await;
    s.pg_proxy.chaos(seed, Duration::from_millis(400));
    let deadline = Instant::now() + Duration::from_secs(12);
    while s.pg_proxy.stats().cuts < 5 && Instant::now() < deadline {
        assert_running(&mut follower, "under chaos");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.pg_proxy.chaos_off();
    stop.store(true, Ordering::Relaxed);
    let transactions = workload.await.unwrap();
    wait_caught_up(&mut my, &pg, pipeline, &mut follower).await;
    assert_running(&mut follower, "at the end");
    assert_replica_equal(&mut my, s.src.name(), &pg).await;
    let stats = s.pg_proxy.stats();
    eprintln!("target chaos: {transactions} transactions; PostgreSQL proxy {stats:?}");
    assert!(stats.cuts >= 1, "chaos cut some connections: {stats:?}");
}
