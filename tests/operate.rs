//! Operating a running pipeline through `replicate --http`: the status API,
//! Prometheus metrics that match the rows applied, the bearer token, pause
//! (nothing applied while the source writes) and resume, seek to an earlier
//! position (exact again in keyed tables; purged and future positions refused
//! with a 4xx and nothing changed), resnapshot of one table while the others
//! follow, the PostgreSQL state views, `replicate --status`, stop; and the web
//! console driven in a real headless Chromium.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

const TOKEN: &str = "op-test-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A client of the operations API.
struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(port: u16, token: Option<&str>) -> Self {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            token: token.map(String::from),
            http: reqwest::Client::new(),
        }
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.auth(self.http.get(format!("{}{path}", self.base))).send().await.expect("GET");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r =
            self.auth(self.http.post(format!("{}{path}", self.base))).json(&body).send().await.expect("POST");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self) -> Value {
        let (code, text) = self.get("/api/status").await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["pipelines"][0].clone()
    }

    async fn wait_up(&self, follower: &mut Follower) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = follower.try_wait().unwrap() {
                panic!("replicate exited: {s}");
            }
            if let Ok(r) = self.auth(self.http.get(format!("{}/api/status", self.base))).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "the API did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_phase(&self, phase: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.status().await;
            if s["phase"] == phase {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "phase never {phase}: {s:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Prometheus text: `name{labels}` → value (labels sorted by name).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let key = match key.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let mut parts: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
                parts.sort();
                format!("{name}{{{}}}", parts.join(","))
            }
            None => key.to_string(),
        };
        out.insert(key, value);
    }
    out
}

async fn count(pg: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pg)
        .await
        .unwrap()
}

fn table_counter(status: &Value, table: &str, field: &str) -> u64 {
    status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .map(|t| t[field].as_u64().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_pause_seek_resnapshot_over_http() {
    let my_server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = my_server.create_database("opsapi").unwrap();
    let dst = pg_server.create_database("opsapi").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&my_server.url()).await;
    my.query_drop(format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(40), n INT); \
         CREATE TABLE `{db}`.u (id INT PRIMARY KEY, v VARCHAR(40)); \
         CREATE TABLE `{db}`.ledger (n INT NOT NULL, note VARCHAR(20)); \
         INSERT INTO `{db}`.t SELECT seq, CONCAT('t', seq), 0 FROM seq.seq_1_to_500; \
         INSERT INTO `{db}`.u SELECT seq, CONCAT('u', seq) FROM seq.seq_1_to_300; \
         INSERT INTO `{db}`.ledger SELECT seq, 'snap' FROM seq.seq_1_to_20"
    ))
    .await
    .unwrap();
    let port = free_port();
    let pipeline = "opsapi";
    let mut cmd = replicate(&my_server.url(), &db, &dst.url(), pipeline);
    let selection = format!("{db}.t,{db}.u,{db}.ledger");
    cmd.args(["--http", &port.to_string(), "--heartbeat-secs", "1", "--tables", &selection])
        .env("SYNCHDB_HTTP_TOKEN", TOKEN);
    let mut follower = spawn(cmd);
    let api = Api::new(port, Some(TOKEN));
    api.wait_up(&mut follower).await;
    let pg = connect_pg(&dst.url()).await;

    // The token: none or a wrong one is refused on /api; the console page is public.
    let (code, body) = Api::new(port, None).get("/api/status").await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    assert_eq!(Api::new(port, Some("wrong")).get("/api/status").await.0, 401);
    assert_eq!(Api::new(port, Some("wrong")).post("/api/pause", json!({})).await.0, 401);
    let (code, page) = Api::new(port, None).get("/").await;
    assert_eq!(code, 200);
    assert!(page.contains("synchdb console"), "console page");

    let s = api.wait_phase("following").await;
    assert_eq!(s["pipeline"], pipeline);
    assert_eq!(s["snapshot"]["rows"], 820, "{s:#}");
    assert_eq!(s["snapshot"]["tables_total"], 3, "{s:#}");
    assert_eq!(table_counter(&s, &format!("{db}.t"), "snapshot_rows"), 500);

    // Seek is refused unless paused.
    let (code, body) = api.post("/api/seek", json!({"position": "mysql-bin.000001:4"})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("paused"), "{body}");

    // Changes: counted in the status, the metrics and the state views.
    let before_workload = master_position(&mut my).await;
    my.query_drop(format!(
        "INSERT INTO `{db}`.t SELECT seq, CONCAT('new', seq), 1 FROM seq.seq_1001_to_1200; \
         UPDATE `{db}`.t SET n = n + 1 WHERE id <= 50; \
         DELETE FROM `{db}`.t WHERE id BETWEEN 51 AND 70"
    ))
    .await
    .unwrap();
    for i in 0..30 {
        my.query_drop(format!("UPDATE `{db}`.u SET v = CONCAT(v, '.') WHERE id = {}", i + 1)).await.unwrap();
    }
    wait_caught_up(&mut my, &pg, pipeline, &mut follower).await;
    let s = api.status().await;
    let t = format!("{db}.t");
    assert_eq!(table_counter(&s, &t, "inserts"), 200, "{s:#}");
    assert_eq!(table_counter(&s, &t, "updates"), 50, "{s:#}");
    assert_eq!(table_counter(&s, &t, "deletes"), 20, "{s:#}");
    assert_eq!(table_counter(&s, &format!("{db}.u"), "updates"), 30, "{s:#}");
    assert!(s["counters"]["transactions"].as_u64().unwrap() >= 33, "{s:#}");
    assert!(s["applied"]["position"].is_string() && s["source"]["position"].is_string(), "{s:#}");
    assert!(s["lag_seconds"].is_number(), "{s:#}");

    let (code, text) = api.get("/metrics").await;
    assert_eq!(code, 200, "{text}");
    let m = parse_metrics(&text);
    let changes = |table: &str, op: &str| {
        m.get(&format!(
            "synchdb_changes_applied_total{{op=\"{op}\",pipeline=\"{pipeline}\",table=\"{table}\"}}"
        ))
        .copied()
        .unwrap_or_else(|| panic!("no {op} counter of {table}:\n{text}"))
    };
    assert_eq!(changes(&t, "insert"), 200.0);
    assert_eq!(changes(&t, "update"), 50.0);
    assert_eq!(changes(&t, "delete"), 20.0);
    assert_eq!(changes(&format!("{db}.u"), "update"), 30.0);
    assert_eq!(m[&format!("synchdb_snapshot_rows_total{{pipeline=\"{pipeline}\",table=\"{t}\"}}")], 500.0);
    assert_eq!(m[&format!("synchdb_pipeline_up{{pipeline=\"{pipeline}\"}}")], 1.0);
    assert!(m.contains_key(&format!("synchdb_lag_seconds{{pipeline=\"{pipeline}\"}}")), "{text}");
    assert!(m.contains_key(&format!("synchdb_lag_bytes{{pipeline=\"{pipeline}\"}}")), "{text}");
    assert!(m[&format!("synchdb_transactions_applied_total{{pipeline=\"{pipeline}\"}}")] >= 33.0, "{text}");
    assert!(m.keys().any(|k| k.starts_with("synchdb_batch_events_bucket")), "a histogram:\n{text}");

    // The state views, kept by the sink at most once a second.
    wait_until("the state views", Duration::from_secs(20), || {
        let pg = pg.clone();
        let t = t.clone();
        async move {
            let row: Option<(String, i64)> = sqlx::query_as(
                "SELECT s.phase, t.inserts FROM synchdb.pipeline_status s \
                 JOIN synchdb.table_stats t USING (pipeline_id) WHERE pipeline_id = $1 AND t.table_name = $2",
            )
            .bind("opsapi")
            .bind(&t)
            .fetch_optional(&pg)
            .await
            .unwrap();
            row.is_some_and(|(phase, inserts)| phase == "following" && inserts == 200)
        }
    })
    .await;

    // Pause: nothing is applied while the source writes.
    let (code, body) = api.post("/api/pause", json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["pipelines"][0]["paused"], true);
    api.wait_phase("paused").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = checkpoint(&pg, pipeline).await;
    let rows_before = count(&pg, &format!("\"{db}\".t")).await;
    my.query_drop(format!("INSERT INTO `{db}`.t SELECT seq, 'paused', 2 FROM seq.seq_2001_to_2100"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&pg, &format!("\"{db}\".t")).await, rows_before, "applied while paused");
    assert_eq!(checkpoint(&pg, pipeline).await, held, "checkpoint moved while paused");

    // Refused seeks change nothing: a purged file, a position after the head,
    // a position inside a transaction.
    let (code, body) = api.post("/api/seek", json!({"position": "mysql-bin.000000:4"})).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["kind"], "source_position_lost", "{body}");
    let (file, pos) = master_position(&mut my).await;
    let (code, body) =
        api.post("/api/seek", json!({"position": format!("{file}:{}", pos + 1_000_000)})).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["kind"], "request", "{body}");
    let (code, body) = api.post("/api/seek", json!({"position": "not a position"})).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = api.post("/api/seek", json!({"gtid": "0-1-999999999"})).await;
    assert_eq!(code, 400, "a GTID after the head: {body}");
    assert_eq!(checkpoint(&pg, pipeline).await, held, "a refused seek changed the checkpoint");
    assert_eq!(api.status().await["phase"], "paused");

    // Seek back to before the workload: applied again after resume, exact
    // in keyed tables (the keyless ledger had no change since).
    let (code, body) = api
        .post("/api/seek", json!({"position": format!("{}:{}", before_workload.0, before_workload.1)}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["position"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:{}", before_workload.0, before_workload.1)));
    api.wait_phase("paused").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&pg, &format!("\"{db}\".t")).await, rows_before, "applied while paused after the seek");
    let (code, _) = api.post("/api/resume", json!({})).await;
    assert_eq!(code, 200);
    wait_caught_up(&mut my, &pg, pipeline, &mut follower).await;
    assert_replica_equal(&mut my, &db, &pg).await;
    let s = api.status().await;
    assert!(table_counter(&s, &t, "inserts") >= 400, "the seek applied the inserts again: {s:#}");

    // Resnapshot one table while the others follow: the target copy was
    // damaged behind the pipeline's back; the copy repairs it.
    let (code, body) = api.post("/api/resnapshot", json!({"tables": ["nosuchdb.x"]})).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = api.post("/api/resnapshot", json!({"tables": [format!("{db}.nosuch")]})).await;
    assert_eq!(code, 400, "{body}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DELETE FROM \"{db}\".u WHERE id % 3 = 0")))
        .execute(&pg)
        .await
        .unwrap();
    let writer = {
        let url = my_server.url();
        let db = db.clone();
        tokio::spawn(async move {
            let mut my = connect_my(&url).await;
            for i in 0..150 {
                my.query_drop(format!(
                    "INSERT INTO `{db}`.t VALUES ({}, 'during', 3); UPDATE `{db}`.u SET v = 'during' WHERE id = {}",
                    5000 + i,
                    i % 300 + 1
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let (code, body) = api.post("/api/resnapshot", json!({"tables": [format!("{db}.u")]})).await;
    assert!(code == 200 || code == 202, "{code} {body}");
    writer.await.unwrap();
    wait_until("the resnapshot", Duration::from_secs(120), || async {
        let s = api.status().await;
        s["counters"]["resyncs"].as_u64().unwrap() >= 1 && s["resyncing"].as_array().unwrap().is_empty()
    })
    .await;
    wait_caught_up(&mut my, &pg, pipeline, &mut follower).await;
    assert_replica_equal(&mut my, &db, &pg).await;

    // A table added to the selection while running: copied while the others
    // follow, then followed.
    my.query_drop(format!(
        "CREATE TABLE `{db}`.extra (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO `{db}`.extra SELECT seq, 'e' FROM seq.seq_1_to_250"
    ))
    .await
    .unwrap();
    let (code, body) = api.post("/api/tables", json!({"add": [format!("{db}.missing")]})).await;
    assert_eq!(code, 400, "{body}");
    let resyncs = api.status().await["counters"]["resyncs"].as_u64().unwrap();
    let (code, body) =
        api.post("/api/tables", json!({"add": [format!("{db}.extra"), format!("{db}.t")]})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["added"], json!([format!("{db}.extra")]), "{body}");
    my.query_drop(format!(
        "INSERT INTO `{db}`.extra VALUES (1000, 'after'); UPDATE `{db}`.extra SET v = 'u' WHERE id < 10"
    ))
    .await
    .unwrap();
    wait_until("the added table's copy", Duration::from_secs(120), || async {
        let s = api.status().await;
        s["counters"]["resyncs"].as_u64().unwrap() > resyncs && s["resyncing"].as_array().unwrap().is_empty()
    })
    .await;
    wait_caught_up(&mut my, &pg, pipeline, &mut follower).await;
    assert_replica_equal(&mut my, &db, &pg).await;
    assert_eq!(count(&pg, &format!("\"{db}\".extra")).await, 251);

    // Verification started over the API while the pipeline follows.
    let (code, body) = api.post("/api/verify", json!({"chunk_rows": 100})).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["state"], "running");
    let (code, _) = api.post("/api/verify", json!({})).await;
    assert_eq!(code, 409, "one verification at a time");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let verified: Value = loop {
        let (code, text) = api.get("/api/verify").await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["state"] != "running" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "verification did not end: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(verified["state"], "done", "{verified:#}");
    assert_eq!(verified["equal"], true, "{verified:#}");
    // The options' selection: the table added over the API is not in it.
    assert_eq!(verified["report"]["tables"].as_array().unwrap().len(), 3, "{verified:#}");
    assert!(verified["summary"].as_str().unwrap().contains("3 tables, 3 equal, 0 differ"), "{verified:#}");

    // `replicate --status` reads the same from the target alone.
    wait_until("the stored status", Duration::from_secs(10), || async {
        let out = std::process::Command::new(replicate_bin())
            .args(["--status", "--pipeline-id", pipeline, "--target", &dst.url()])
            .env_remove("SYNCHDB_SOURCE_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["view"]["phase"] == "following" && v["status"]["counters"]["resyncs"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let out = std::process::Command::new(replicate_bin())
        .args(["--status", "--pipeline-id", "no-such-pipeline", "--target", &dst.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Stop: the process ends with its checkpoint stored.
    let (code, _) = api.post("/api/stop", json!({})).await;
    assert_eq!(code, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = follower.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "replicate did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let stopped: String =
        sqlx::query_scalar("SELECT phase FROM synchdb.pipeline_status WHERE pipeline_id = $1")
            .bind(pipeline)
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(stopped, "stopped");
}

/// chromedriver on a free port, killed when dropped.
struct Driver(std::process::Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_headless_browser() {
    let programs = synchdb_testkit::ensure_programs(&[
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
    ])
    .expect("chromium and chromedriver");
    let my_server = synchdb_testkit::mariadb();
    let pg_server = synchdb_testkit::postgres();
    let src = my_server.create_database("opsweb").unwrap();
    let dst = pg_server.create_database("opsweb").unwrap();
    let db = src.name().to_string();
    let mut my = connect_my(&my_server.url()).await;
    my.query_drop(format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(40)); \
         INSERT INTO `{db}`.t SELECT seq, 'x' FROM seq.seq_1_to_100"
    ))
    .await
    .unwrap();
    let port = free_port();
    let pipeline = "opsweb";
    let mut cmd = replicate(&my_server.url(), &db, &dst.url(), pipeline);
    cmd.args(["--http", &format!("127.0.0.1:{port}"), "--heartbeat-secs", "1"]);
    let mut follower = spawn(cmd);
    let api = Api::new(port, None);
    api.wait_up(&mut follower).await;
    let pg = connect_pg(&dst.url()).await;
    api.wait_phase("following").await;

    let driver_port = free_port();
    let driver = Driver(
        std::process::Command::new(&programs[1])
            .arg(format!("--port={driver_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver"),
        driver_port,
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": programs[0],
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400"],
        }),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let browser = loop {
        match fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.1))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let result = drive_console(&browser, &api, &mut my, &pg, &db, pipeline, port, &mut follower).await;
    let _ = browser.close().await;
    drop(driver);
    result.unwrap();
}

#[allow(clippy::too_many_arguments)]
async fn drive_console(
    browser: &fantoccini::Client,
    api: &Api,
    my: &mut mysql_async::Conn,
    pg: &sqlx::PgPool,
    db: &str,
    pipeline: &str,
    port: u16,
    follower: &mut Follower,
) -> Result<(), String> {
    use fantoccini::Locator;
    let e = |e: fantoccini::error::CmdError| e.to_string();
    browser.goto(&format!("http://127.0.0.1:{port}/")).await.map_err(e)?;
    let card = format!(".pipeline[data-pipeline=\"{pipeline}\"]");
    let phase_sel = format!("{card} .phase");
    let phase = |browser: &fantoccini::Client| {
        let sel = phase_sel.clone();
        let browser = browser.clone();
        async move {
            match browser.find(Locator::Css(&sel)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
    };
    wait_until("the console to show the pipeline following", Duration::from_secs(30), || async {
        phase(browser).await.trim() == "following"
    })
    .await;
    assert_eq!(browser.title().await.map_err(e)?, "synchdb console");

    // Pause from the page: the status says so and nothing is applied meanwhile.
    browser.find(Locator::Css(&format!("{card} .btn-pause"))).await.map_err(e)?.click().await.map_err(e)?;
    api.wait_phase("paused").await;
    wait_until("the console to show paused", Duration::from_secs(10), || async {
        phase(browser).await.trim() == "paused"
    })
    .await;
    let before = count(pg, &format!("\"{db}\".t")).await;
    my.query_drop(format!("INSERT INTO `{db}`.t SELECT seq, 'web' FROM seq.seq_1001_to_1100")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(pg, &format!("\"{db}\".t")).await, before, "applied while paused from the console");
    let shot = browser.screenshot().await.map_err(e)?;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("console-paused.png"), &shot).map_err(|e| e.to_string())?;

    // Resume from the page: it catches up exactly.
    browser.find(Locator::Css(&format!("{card} .btn-resume"))).await.map_err(e)?.click().await.map_err(e)?;
    wait_caught_up(my, pg, pipeline, follower).await;
    assert_replica_equal(my, db, pg).await;
    wait_until("the console to show following again", Duration::from_secs(10), || async {
        phase(browser).await.trim() == "following"
    })
    .await;
    // The per-table counters reached the page.
    wait_until("the table counters on the page", Duration::from_secs(10), || async {
        match browser.find(Locator::Css(&format!("{card} .tables"))).await {
            Ok(el) => el.text().await.unwrap_or_default().contains(&format!("{db}.t")),
            Err(_) => false,
        }
    })
    .await;
    let shot = browser.screenshot().await.map_err(e)?;
    std::fs::write(dir.join("console.png"), &shot).map_err(|e| e.to_string())?;
    Ok(())
}
