//! The every-type table and the OLTP schema and workload (with DDL) that
//! the end-to-end tests replicate, directly and through NATS.

pub const TYPES_SCHEMA: &str = r#"
CREATE TABLE all_types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, flag TINYINT(1),
  d DECIMAL(65,30), d2 DECIMAL(10,2) UNSIGNED, f FLOAT, db DOUBLE,
  c CHAR(4), vc VARCHAR(50), vl VARCHAR(50) CHARACTER SET latin1, tx TEXT, mt MEDIUMTEXT,
  bin BINARY(4), vb VARBINARY(16), bl BLOB,
  dt DATE, dtm DATETIME(6), dt0 DATETIME, ts TIMESTAMP(6) NULL, tm TIME(6), tm0 TIME, y YEAR,
  j JSON, e ENUM('small','medium','large'), s SET('a','b','c','d'), b1 BIT(1), b10 BIT(10), b64 BIT(64),
  g GEOMETRY, pt POINT, u UUID, ip4 INET4, ip6 INET6
);
"#;

pub const TYPES_ROWS: &str = r#"
INSERT INTO all_types VALUES
 (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1,
  '-12345678901234567890123456789012345.123456789012345678901234567890', 99999999.99, 3.14159, 2.718281828459045,
  'ab', 'héllo wörld €', 'café Besançon', 'text with émoji 😀 and "quotes" and \\backslash', REPEAT('x', 1000),
  X'01000000', X'00FF80FE00', X'DEADBEEF00',
  '2024-02-29', '2024-12-31 23:59:59.999999', '1999-01-01 00:00:00', '2038-01-19 03:14:07.123456', '-838:59:59.000000', '838:59:59', 2155,
  '{"a": [1, 2.5, "x"], "b": {"c": null}, "big": 12345678901234567890}', 'medium', 'a,c', b'1', b'1000000001', b'1111111111111111111111111111111111111111111111111111111111111111',
  ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'), ST_GeomFromText('POINT(1.5 -2.25)', 4326),
  '123e4567-e89b-12d3-a456-426614174000', '192.168.10.1', '2001:db8::ff00:42:8329'),
 (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0, 0,
  '0.000000000000000000000000000001', 0.00, -1.5e-10, -1.7976931348623157e308,
  '', '', '', '', '',
  X'00000000', X'', X'',
  '1000-01-01', '1000-01-01 00:00:00.000001', '9999-12-31 23:59:59', '1970-01-01 00:00:01', '00:00:00.000001', '-00:00:01', 1901,
  '[]', 'small', '', b'0', b'0', b'0',
  NULL, ST_GeomFromText('POINT(0 0)'), '00000000-0000-0000-0000-000000000000', '0.0.0.0', '::'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SET SESSION sql_mode = '';
INSERT INTO all_types (id, dt, dtm, dt0) VALUES (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00');
SET SESSION sql_mode = DEFAULT;
"#;

pub const OLTP_SCHEMA: &str = r#"
CREATE TABLE customers (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, email VARCHAR(120) NOT NULL, name VARCHAR(80) NOT NULL,
  balance DECIMAL(12,2) NOT NULL DEFAULT 0, created DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uq_email (email)
);
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT UNSIGNED NOT NULL, status ENUM('new','paid','shipped') NOT NULL,
  total DECIMAL(12,2) NOT NULL, KEY idx_status (status),
  CONSTRAINT fk_cust FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE order_lines (
  order_id BIGINT NOT NULL, line SMALLINT NOT NULL, sku VARCHAR(20) NOT NULL, qty INT NOT NULL,
  PRIMARY KEY (order_id, line),
  CONSTRAINT fk_order FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE
);
CREATE TABLE audit (at DATETIME, who VARCHAR(40), what TEXT);
CREATE TABLE tags (code VARCHAR(10) NOT NULL, label VARCHAR(40), UNIQUE KEY (code));
INSERT INTO customers (email, name, balance) SELECT CONCAT('c', seq, '@example.com'), CONCAT('Customer ', seq), seq * 1.25 FROM seq_1_to_200;
INSERT INTO orders (customer_id, status, total) SELECT 1 + seq % 200, ELT(1 + seq % 3, 'new', 'paid', 'shipped'), seq * 2.5 FROM seq_1_to_600;
INSERT INTO order_lines SELECT o.id, l.seq, CONCAT('SKU', o.id % 50), l.seq FROM orders o JOIN seq_1_to_3 l;
INSERT INTO audit VALUES ('2024-01-01 10:00:00', 'system', 'boot'), ('2024-01-01 10:00:00', 'system', 'boot'), (NULL, NULL, NULL);
INSERT INTO tags VALUES ('new', 'New'), ('hot', 'Hot');
"#;

/// The follow-mode workload: DML of every kind, multi-table transactions,
/// key changes, cascades, keyless duplicates, and DDL in the middle.
pub const WORKLOAD: &[&str] = &[
    "INSERT INTO customers (email, name) VALUES ('new1@example.com', 'New One'), ('new2@example.com', 'New Two')",
    "START TRANSACTION; INSERT INTO customers (email, name) VALUES ('tx@example.com', 'In Tx'); SET @c = LAST_INSERT_ID(); \
     INSERT INTO orders (customer_id, status, total) VALUES (@c, 'new', 10.00); SET @o = LAST_INSERT_ID(); \
     INSERT INTO order_lines VALUES (@o, 1, 'SKU1', 2), (@o, 2, 'SKU2', 1); \
     UPDATE customers SET balance = balance - 10 WHERE id = @c; COMMIT",
    "UPDATE orders SET status = 'paid' WHERE status = 'new' AND id % 7 = 0",
    "UPDATE customers SET id = 1000 WHERE id = 5",
    "DELETE FROM customers WHERE id IN (10, 11, 12)",
    "DELETE FROM order_lines WHERE line = 3 AND order_id < 50",
    "DELETE FROM audit WHERE who = 'system' LIMIT 1",
    "INSERT INTO audit VALUES (NOW(), 'alice', 'login')",
    "UPDATE audit SET what = 'logout' WHERE who = 'alice'",
    "START TRANSACTION; INSERT INTO tags VALUES ('tmp', 'temporary'); ROLLBACK",
    "UPDATE all_types SET vc = 'changed ✓', biu = 18446744073709551614, tm = '-12:00:00.5', d = '1.5', b10 = b'0101010101' WHERE id = 1",
    "INSERT INTO all_types (id, vl, bin, u, ip6, j, e, s) VALUES (5, 'ÀÉÎÕÜ', X'FF', UUID(), '::1', '{\"k\": true}', 'large', 'b,d')",
    "DELETE FROM all_types WHERE id = 2",
    // Every TIME precision, negative fractions included (each fsp has its own binlog layout).
    "CREATE TABLE times (id INT PRIMARY KEY, t0 TIME, t1 TIME(1), t2 TIME(2), t3 TIME(3), t4 TIME(4), t5 TIME(5), t6 TIME(6))",
    "INSERT INTO times VALUES (1, '-12:30:00', '-12:30:00.5', '-12:30:00.5', '-12:30:00.5', '-12:30:00.5', '-12:30:00.5', '-12:30:00.5'), \
     (2, '-838:59:59', '-838:59:59.9', '-838:59:59.99', '-838:59:59.999', '-838:59:59.9999', '-838:59:59.99999', '-838:59:59.999999'), \
     (3, '838:59:59', '838:59:59.9', '838:59:59.99', '838:59:59.999', '838:59:59.9999', '838:59:59.99999', '838:59:59.999999'), \
     (4, '-00:00:01', '-00:00:00.1', '-00:00:00.01', '-00:00:00.001', '-00:00:00.0001', '-00:00:00.00001', '-00:00:00.000001'), \
     (5, '00:00:00', '00:00:00', '00:00:00', '00:00:00', '00:00:00', '00:00:00', '00:00:00'), \
     (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "UPDATE times SET t2 = '-01:00:00.75', t1 = '-01:00:00.2' WHERE id = 5",
    // Every type (NULLs and zero dates included) through row events: inserted, updated, deleted.
    "SET SESSION sql_mode = ''; CREATE TABLE all_types_copy LIKE all_types; \
     INSERT INTO all_types_copy SELECT * FROM all_types; UPDATE all_types_copy SET id = id + 100, c = 'z'; \
     DELETE FROM all_types_copy WHERE id = 103; SET SESSION sql_mode = DEFAULT",
    "ALTER TABLE customers ADD COLUMN tier VARCHAR(10) NOT NULL DEFAULT 'basic' AFTER name",
    "UPDATE customers SET tier = 'gold' WHERE balance > 200",
    "ALTER TABLE orders MODIFY total DECIMAL(14,3) NOT NULL",
    "UPDATE orders SET total = total + 0.001 WHERE id < 20",
    "ALTER TABLE order_lines CHANGE qty quantity INT NOT NULL DEFAULT 1",
    "INSERT INTO order_lines (order_id, line, sku) VALUES (1, 9, 'EXTRA')",
    "ALTER TABLE audit DROP COLUMN who",
    "ALTER TABLE tags RENAME COLUMN label TO title",
    "CREATE TABLE coupons (code VARCHAR(16) PRIMARY KEY, pct TINYINT UNSIGNED NOT NULL, valid_until DATE)",
    "INSERT INTO coupons VALUES ('SPRING', 15, '2025-05-31'), ('VIP', 30, NULL)",
    "CREATE INDEX idx_name ON customers (name)",
    "ALTER TABLE customers DROP INDEX idx_name",
    "RENAME TABLE coupons TO promo_codes",
    "UPDATE promo_codes SET pct = 20 WHERE code = 'SPRING'",
    "CREATE TABLE scratch (id INT PRIMARY KEY, v TEXT)",
    "INSERT INTO scratch VALUES (1, 'a'), (2, 'b')",
    "TRUNCATE TABLE scratch",
    "INSERT INTO scratch VALUES (3, 'c')",
    "CREATE TABLE doomed (id INT PRIMARY KEY)",
    "INSERT INTO doomed VALUES (1)",
    "DROP TABLE doomed",
    "ALTER TABLE tags ADD PRIMARY KEY (code)",
    "UPDATE tags SET title = 'Hot!' WHERE code = 'hot'",
    "INSERT INTO customers (email, name, tier) VALUES ('late@example.com', 'Late', 'silver')",
];
