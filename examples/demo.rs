//! The demo: private MariaDB and PostgreSQL, a sample shop schema, and
//! `replicate` through snapshot and follow while a workload runs.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//! Installs the server packages when missing (apt-get), starts both servers
//! on free ports in temporary directories, and removes them at the end.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use synchdb_testkit::{MariaDb, Postgres};

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

const SCHEMA: &str = r#"
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE customers (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) NOT NULL,
  city VARCHAR(60) CHARACTER SET latin1,
  balance DECIMAL(12,2) NOT NULL DEFAULT 0,
  status ENUM('new','active','vip') NOT NULL DEFAULT 'new',
  tags SET('newsletter','beta','wholesale'),
  created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_email (email)
);
CREATE TABLE products (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  sku CHAR(8) NOT NULL,
  title VARCHAR(120) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  weight_kg DOUBLE,
  attrs JSON,
  barcode VARBINARY(16),
  KEY idx_title (title)
);
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL,
  placed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  ship_window TIME,
  total DECIMAL(12,2) NOT NULL,
  flags BIT(4) NOT NULL DEFAULT b'0000',
  CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE
);
CREATE TABLE order_items (
  order_id BIGINT NOT NULL,
  product_id BIGINT NOT NULL,
  qty SMALLINT UNSIGNED NOT NULL,
  PRIMARY KEY (order_id, product_id),
  CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE,
  CONSTRAINT fk_items_product FOREIGN KEY (product_id) REFERENCES products(id)
);
CREATE TABLE page_views (path VARCHAR(200), viewed_at DATETIME, ms INT);
INSERT INTO customers (name, email, city, balance, status, tags) VALUES
  ('Zoë Åberg', 'zoe@example.com', 'Malmö', 120.50, 'vip', 'newsletter,beta'),
  ('Jean Dupont', 'jean@example.fr', 'Besançon', 0, 'active', 'newsletter'),
  ('Ada Lovelace', 'ada@example.org', 'London', 99999.99, 'vip', NULL),
  ('Li Wei 李伟', 'li@example.cn', NULL, 5.05, 'new', 'wholesale');
INSERT INTO products (sku, title, price, weight_kg, attrs, barcode) VALUES
  ('KB-0001', 'Keyboard', 49.90, 0.8, '{"layout":"fr","keys":105}', X'00FF10'),
  ('MS-0002', 'Mouse', 19.99, 0.1, '{"dpi":[800,1600]}', X'DEADBEEF'),
  ('MN-0003', 'Monitor 27"', 249.00, 5.6, '{"hz":144}', NULL),
  ('CB-0004', 'Cable', 4.99, NULL, NULL, X'00');
INSERT INTO orders (customer_id, ship_window, total, flags) VALUES
  (1, '09:00:00', 69.89, b'0001'), (2, '-01:30:00', 249.00, b'0010'), (3, '36:00:00', 4.99, b'1000');
INSERT INTO order_items VALUES (1, 1, 1), (1, 2, 1), (2, 3, 1), (3, 4, 1);
INSERT INTO page_views VALUES ('/', NOW(), 12), ('/', NOW(), 12), ('/cart', NOW(), 40);
"#;

const WORKLOAD: &[&str] = &[
    "INSERT INTO customers (name, email, city, status) VALUES ('Grace Hopper', 'grace@example.com', 'Arlington', 'active')",
    "BEGIN; INSERT INTO orders (customer_id, total) VALUES (5, 54.89); \
     INSERT INTO order_items VALUES (LAST_INSERT_ID(), 1, 1), (LAST_INSERT_ID(), 4, 1); COMMIT",
    "UPDATE customers SET balance = balance + 10, tags = 'newsletter,wholesale' WHERE id = 2",
    "UPDATE products SET price = price * 1.10, attrs = JSON_SET(COALESCE(attrs, '{}'), '$.sale', true) WHERE id <= 2",
    "DELETE FROM customers WHERE id = 3",
    "ALTER TABLE customers ADD COLUMN loyalty_points INT NOT NULL DEFAULT 0",
    "UPDATE customers SET loyalty_points = 250 WHERE status = 'vip'",
    "INSERT INTO page_views VALUES ('/checkout', NOW(), 87)",
    "DELETE FROM page_views WHERE path = '/' LIMIT 1",
    "INSERT INTO customers (name, email, loyalty_points) VALUES ('Alan Turing', 'alan@example.co.uk', 10)",
];

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn demo() -> DemoResult<()> {
    step("starting private MariaDB and PostgreSQL (installing the packages when missing)");
    let mariadb = MariaDb::start()?;
    let postgres = Postgres::start()?;
    println!("MariaDB on port {}, PostgreSQL on port {}", mariadb.port(), postgres.port());
    let target_db = "replica";
    postgres.exec("postgres", &format!("CREATE DATABASE {target_db}"))?;
    let source_url = mariadb.url();
    let target_url = postgres.url_for(target_db);

    step("loading the sample schema into MariaDB (database `shop`)");
    mariadb.exec(SCHEMA)?;

    step("building the replicate program");
    let replicate = build_replicate()?;

    step("replicate: snapshot, then follow until caught up");
    run_until_caught_up(&replicate, &source_url, &target_url)?;

    step("replicate: following the binlog while a workload runs on MariaDB");
    let mut follower = spawn_follow(&replicate, &source_url, &target_url)?;
    for sql in WORKLOAD {
        println!("mariadb> {sql}");
        mariadb.exec(&format!("USE shop; {sql}"))?;
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_caught_up(&mariadb, &postgres, target_db)?;
    stop(&mut follower)?;

    step("the replicated tables in PostgreSQL");
    for table in ["customers", "products", "orders", "order_items", "page_views"] {
        println!("-- shop.{table}");
        let out = postgres.exec_table(target_db, &format!("SELECT * FROM shop.{table} ORDER BY 1"))?;
        println!("{out}");
    }
    println!("-- shop.customers (PostgreSQL definition)");
    println!(
        "{}",
        postgres.exec_table(
            target_db,
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns \
             WHERE table_schema = 'shop' AND table_name = 'customers' ORDER BY ordinal_position"
        )?
    );

    step("row counts, MariaDB vs PostgreSQL");
    let mut equal = true;
    for table in ["customers", "products", "orders", "order_items", "page_views"] {
        let m = mariadb.exec(&format!("SELECT COUNT(*) FROM shop.{table}"))?.trim().to_string();
        let p = postgres.exec(target_db, &format!("SELECT COUNT(*) FROM shop.{table}"))?.trim().to_string();
        println!(
            "{table:<12} mariadb {m:>3}  postgres {p:>3}  {}",
            if m == p { "equal" } else { "DIFFERENT" }
        );
        equal &= m == p;
    }
    if !equal {
        return Err("the replica differs from the source".into());
    }
    step("done: servers are stopped and their directories removed");
    Ok(())
}

/// Build the `replicate` example with the same profile as this demo, return its path.
fn build_replicate() -> DemoResult<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no example directory")?.to_path_buf();
    let release = dir.components().any(|c| c.as_os_str() == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", "replicate"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err("building the replicate example failed".into());
    }
    Ok(dir.join("replicate"))
}

fn base_command(replicate: &std::path::Path, source: &str, target: &str) -> Command {
    let mut cmd = Command::new(replicate);
    cmd.env("SYNCHDB_SOURCE_URL", source).env("SYNCHDB_TARGET_URL", target).args([
        "--databases",
        "shop",
        "--pipeline-id",
        "demo",
    ]);
    cmd
}

fn run_until_caught_up(replicate: &std::path::Path, source: &str, target: &str) -> DemoResult<()> {
    let status = base_command(replicate, source, target).arg("--until-caught-up").status()?;
    if !status.success() {
        return Err(format!("replicate exited with {status}").into());
    }
    Ok(())
}

fn spawn_follow(replicate: &std::path::Path, source: &str, target: &str) -> DemoResult<Child> {
    Ok(base_command(replicate, source, target).stdin(Stdio::null()).spawn()?)
}

/// Wait until the replica's checkpoint has reached MariaDB's current binlog position.
fn wait_caught_up(mariadb: &MariaDb, postgres: &Postgres, db: &str) -> DemoResult<()> {
    let status = mariadb.exec("SHOW MASTER STATUS")?;
    let mut parts = status.split_whitespace();
    let (file, pos) =
        (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or("0").parse::<u64>()?);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored =
            postgres.exec(db, "SELECT position FROM synchdb.pipelines WHERE pipeline_id = 'demo'")?;
        let stored = stored.trim();
        let binlog = stored.split_whitespace().next().unwrap_or_default();
        if let Some((f, p)) = binlog.rsplit_once(':') {
            let p: u64 = p.parse().unwrap_or(0);
            if f > file.as_str() || (f == file && p >= pos) {
                println!("caught up at {stored}");
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("replica did not catch up with {file}:{pos} (at {stored:?})").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stop the follower like Ctrl-C does, and wait for its summary.
fn stop(child: &mut Child) -> DemoResult<()> {
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status()?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("replicate exited with {status}").into());
    }
    Ok(())
}
