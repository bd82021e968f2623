//! A short smoke run of the cargo-fuzz targets (`fuzz/`) in the normal test
//! suite, on stable Rust: every committed seed of `fuzz/corpus/<target>/`
//! plus a few thousand deterministic pseudo-random mutations of them (bit
//! flips, byte insertions and deletions, truncations, splices) go through the
//! same target bodies the fuzzers run (`fuzz/src/lib.rs`, included here). A
//! panic fails the test and prints the input.
//!
//! `capture_seeds` (ignored: it starts a private MariaDB) regenerates the
//! binlog seeds of the `rows` and `mariadb_gtid` corpora from a real binlog.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../fuzz/src/lib.rs"]
mod targets;

/// Mutated inputs per target.
const MUTATIONS: usize = 4000;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// The committed seeds of a target, in name order.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that often sit at boundaries: zero, sign bits, all ones, length
/// prefixes, and the ASCII that separates things in SQL and URLs.
const INTERESTING: &[u8] =
    &[0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF, 0xFC, 0xFD, b'(', b')', b',', b'\'', b'%', b':', b'/'];

/// One to four random edits of `input`; `other` is a splice partner.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let b = if rng.below(2) == 0 {
                    rng.next() as u8
                } else {
                    INTERESTING[rng.below(INTERESTING.len())]
                };
                v.insert(i, b);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = 1 + rng.below((v.len() - i).min(16));
                v.drain(i..i + n);
            }
            4 => v.truncate(rng.below(v.len() + 1)),
            5 if !other.is_empty() => {
                // Splice: a prefix of this one and a suffix of the other.
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 if !v.is_empty() => {
                // Duplicate a chunk in place (repeated list items, columns, rows).
                let i = rng.below(v.len());
                let n = 1 + rng.below((v.len() - i).min(64));
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            _ if v.len() >= 2 => {
                // Overwrite a little-endian length-like field with a boundary value.
                let i = rng.below(v.len() - 1);
                let x: u16 = [0, 1, 0xFF, 0x100, 0x7FFF, 0xFFFF][rng.below(6)];
                v[i..i + 2].copy_from_slice(&x.to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

fn run_one(name: &str, body: fn(&[u8]), input: &[u8], what: &str) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) {
        eprintln!(
            "fuzz target {name} panicked on {what} ({} bytes): {:?}\nhex: {}",
            input.len(),
            String::from_utf8_lossy(input),
            input.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        std::panic::resume_unwind(panic);
    }
}

fn smoke(name: &str) {
    let body = targets::TARGETS.iter().find(|(n, _)| *n == name).expect("a target").1;
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "no seeds for {name}");
    let started = Instant::now();
    for (i, s) in seeds.iter().enumerate() {
        run_one(name, body, s, &format!("seed {i}"));
    }
    // A fixed seed per target: the same inputs on every run.
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    for m in 0..MUTATIONS {
        let base = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, other);
        run_one(name, body, &input, &format!("mutation {m}"));
    }
    eprintln!("{name}: {} seeds, {MUTATIONS} mutations in {:?}", seeds.len(), started.elapsed());
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in targets::TARGETS {
        assert!(corpus_dir(name).is_dir(), "fuzz/corpus/{name} is missing");
    }
}

#[test]
fn ddl() {
    smoke("ddl");
}

#[test]
fn rows() {
    smoke("rows");
}

/// The captured seeds still decode (the input framing and the decoder agree),
/// so the fuzzer starts from valid structure.
#[test]
fn rows_seeds_decode() {
    let seeds = seeds("rows");
    let decoded: Vec<usize> = seeds
        .iter()
        .filter_map(|s| synchdb_mysql::fuzzing::rows_event(s).ok())
        .map(|(_, e)| e.len())
        .collect();
    assert!(
        decoded.len() >= 10 && decoded.iter().sum::<usize>() >= 20,
        "{decoded:?} of {} seeds",
        seeds.len()
    );
}

#[test]
fn mariadb_gtid() {
    smoke("mariadb_gtid");
}

#[test]
fn mysql_url() {
    smoke("mysql_url");
}

#[test]
fn pg_url() {
    smoke("pg_url");
}

// ------------------------------------------------------------------ seed capture

/// Statements whose binlog events become seeds: every column type MariaDB
/// writes, NULLs, boundary values, and each rows event kind (then
/// [`big_enum_table`] and a row of it).
const CAPTURE_WORKLOAD: &[&str] = &[
    "CREATE TABLE ints (id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, \
     mi MEDIUMINT, mu MEDIUMINT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, b1 TINYINT(1), y YEAR, bt BIT(10), b64 BIT(64))",
    "INSERT INTO ints VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -9223372036854775808, \
     18446744073709551615, 1, 2155, b'1000000001', b'1111111111111111111111111111111111111111111111111111111111111111'), \
     (2, 127, 0, 32767, 0, 8388607, 0, 9223372036854775807, 0, 0, 1901, 0, 0), \
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL)",
    "UPDATE ints SET ti = ti - 1, bu = 5 WHERE id = 2",
    "DELETE FROM ints WHERE id = 3",
    "CREATE TABLE nums (id INT PRIMARY KEY, d1 DECIMAL(5,2), d2 DECIMAL(65,30), d3 DECIMAL(10,0) UNSIGNED, \
     d4 DECIMAL(1,1), f FLOAT, f2 FLOAT(7,3), dbl DOUBLE, dbl2 DOUBLE PRECISION UNSIGNED)",
    "INSERT INTO nums VALUES (1, -999.99, '-12345678901234567890123456789012345.123456789012345678901234567890', \
     4294967295, 0.9, -3.4e38, 1234.567, 1.7976931348623157e308, 0), (2, 0, 0, 0, -0.9, 1e-38, 0, -2.2250738585072014e-308, 1e300)",
    "CREATE TABLE temporal (id INT PRIMARY KEY, d DATE, dt DATETIME, dt3 DATETIME(3), dt6 DATETIME(6), \
     ts TIMESTAMP NULL, ts1 TIMESTAMP(1) NULL, ts6 TIMESTAMP(6) NULL, t TIME, t1 TIME(1), t2 TIME(2), t4 TIME(4), t6 TIME(6))",
    "INSERT INTO temporal VALUES (1, '2024-02-29', '9999-12-31 23:59:59', '2000-01-01 00:00:00.123', \
     '1000-01-01 00:00:00.000001', '2038-01-19 03:14:07', '1970-01-01 00:00:01.5', '2024-06-01 12:00:00.999999', \
     '838:59:59', '-838:59:59.9', '-12:30:00.5', '-00:00:00.0001', '-838:59:59.000001'), \
     (2, '0000-00-00', '0000-00-00 00:00:00', '2024-00-15 00:00:00', NULL, '0000-00-00 00:00:00', NULL, NULL, \
     '00:00:00', '00:00:00.1', '23:59:59.99', '100:00:00.0001', '00:00:00.000001')",
    "UPDATE temporal SET t2 = '-00:00:00.01', d = '2024-00-00' WHERE id = 1",
    "CREATE TABLE strs (id INT PRIMARY KEY, c CHAR(4) CHARACTER SET latin1, c2 CHAR(100) CHARACTER SET utf8mb4, \
     v VARCHAR(10) CHARACTER SET latin1, v2 VARCHAR(300) CHARACTER SET utf8mb4, vb VARBINARY(4), b4 BINARY(4), \
     tt TINYTEXT, tx TEXT CHARACTER SET latin1, mt MEDIUMTEXT, lt LONGTEXT, tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, \
     lb LONGBLOB, cs VARCHAR(10) CHARACTER SET sjis, cu VARCHAR(10) CHARACTER SET ucs2)",
    "INSERT INTO strs VALUES (1, 'é', 'ünïcode 😀', 'çà', REPEAT('x', 300), 0x00FF, 0x01, 'tiny', 'lätin', \
     'medium', REPEAT('long', 100), 0x00, 0xDEADBEEF, '', 0x00, 'ソ', 'ü'), \
     (2, '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '')",
    "DELETE FROM strs WHERE id = 2",
    "CREATE TABLE special (id INT PRIMARY KEY, e ENUM('x','y','z'), s SET('a','b','c','d','e','f','g','h','i'), \
     j JSON, uu UUID, i4 INET4, i6 INET6, g GEOMETRY, p POINT)",
    "INSERT INTO special VALUES (1, 'y', 'a,c,i', '{\"k\": [1, 2, {\"n\": null}]}', '123e4567-e89b-12d3-a456-426614174000', \
     '192.168.0.1', '2001:db8::1', ST_GeomFromText('LINESTRING(0 0, 1 1)'), POINT(1.5, -2)), \
     (2, '', '', '[]', NULL, '0.0.0.0', '::', NULL, NULL)",
    "UPDATE special SET e = 'z', s = '' WHERE id = 1",
    "CREATE TABLE wide (c1 INT, c2 INT, c3 INT, c4 INT, c5 INT, c6 INT, c7 INT, c8 INT, c9 INT, c10 VARCHAR(5), \
     c11 INT, c12 INT, c13 INT, c14 INT, c15 INT, c16 INT, c17 INT, c18 DATETIME(2))",
    "INSERT INTO wide VALUES (1,NULL,3,NULL,5,NULL,7,NULL,9,'ten',NULL,12,NULL,14,NULL,16,NULL,'2001-02-03 04:05:06.07')",
    "UPDATE wide SET c2 = 2, c10 = NULL",
    "DELETE FROM wide",
];

/// An ENUM of 261 members (two bytes in the row image) and a SET of 64 (eight bytes).
fn big_enum_table() -> String {
    let members =
        |prefix: &str, n: usize| (0..n).map(|i| format!("'{prefix}{i}'")).collect::<Vec<_>>().join(",");
    format!(
        "CREATE TABLE bigenum (id INT PRIMARY KEY, e ENUM({}), s SET({}))",
        members("m", 261),
        members("s", 64)
    )
}

/// A stable file name for a seed (FNV-1a).
fn seed_name(prefix: &str, bytes: &[u8]) -> String {
    let h =
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{prefix}-{h:016x}")
}

fn write_seed(target: &str, prefix: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(seed_name(prefix, bytes)), bytes).unwrap();
}

/// The table map and rows event data of MySQL's binary JSON (which MariaDB
/// does not write): `{"a": 1}` and `["x", true, null]` in a JSON column.
fn mysql_json_seed() -> Vec<u8> {
    let mut tm = vec![7, 0, 0, 0, 0, 0, 1, 0]; // table id 7, flags
    tm.extend([2, b'd', b'b', 0, 1, b'j', 0]); // db, table
    tm.extend([2, 3, 245]); // 2 columns: LONG, JSON
    tm.extend([1, 4]); // metadata: JSON length bytes 4
    tm.push(0b10); // nullable: j
    let obj = [0x00, 0x01, 0x00, 0x0C, 0x00, 0x0B, 0x00, 0x01, 0x00, 0x05, 0x01, 0x00, b'a'];
    let arr =
        [0x02, 0x03, 0x00, 0x0F, 0x00, 0x0C, 0x0D, 0x00, 0x04, 0x01, 0x00, 0x04, 0x00, 0x00, 0x01, b'x'];
    let mut rows = vec![7, 0, 0, 0, 0, 0, 1, 0, 2, 0]; // table id, flags, extra data length 2
    rows.extend([2, 0b11]); // 2 columns, both present
    for (id, doc) in [(1i32, &obj[..]), (2, &arr[..])] {
        rows.push(0); // no NULLs
        rows.extend(id.to_le_bytes());
        rows.extend((doc.len() as u32).to_le_bytes());
        rows.extend(doc);
    }
    let write_v2 = synchdb_mysql::fuzzing::rows_event_type_index(30).unwrap();
    synchdb_mysql::fuzzing::rows_input(write_v2, "id\tint(11)\nj\tjson", &tm, &rows)
}

/// Run [`CAPTURE_WORKLOAD`] on a private MariaDB and write, from its binlog
/// file, one `rows` seed per rows event (with its table map and the table's
/// columns from information_schema) and one `mariadb_gtid` seed per MariaDB
/// GTID, GTID list and binlog checkpoint event.
#[test]
#[ignore = "regenerates fuzz/corpus seeds; starts a private MariaDB"]
fn capture_seeds() {
    let db = synchdb_testkit::MariaDb::start().unwrap();
    db.exec("CREATE DATABASE seeds").unwrap();
    let big_enum = big_enum_table();
    let big_enum_row = "INSERT INTO bigenum VALUES (1, 'm260', 's0,s63'), (2, 'm0', 's7,s8,s31,s32')";
    for sql in CAPTURE_WORKLOAD.iter().copied().chain([big_enum.as_str(), big_enum_row]) {
        // Zero dates and out-of-range values as they are, each statement is its own session.
        db.exec(&format!("USE seeds; SET SESSION sql_mode = ''; {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    db.exec("FLUSH BINARY LOGS").unwrap();
    write_seed("rows", "mysql-json", &mysql_json_seed());

    let mut files: Vec<PathBuf> = std::fs::read_dir(db.data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .strip_prefix("mysql-bin.")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    files.sort();
    let (mut rows, mut maria) = (0, 0);
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..4], b"\xfebin", "{}", file.display());
        let mut at = 4;
        let mut checksum = 0;
        let mut maps = std::collections::HashMap::new();
        while at + 19 <= bytes.len() {
            let ty = bytes[at + 4];
            let server_id = &bytes[at + 5..at + 9];
            let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
            let body = &bytes[at + 19..at + size - checksum];
            at += size;
            match ty {
                // Format description: the checksum algorithm is its data's fifth-last byte.
                15 => checksum = if body[body.len() - 5] == 1 { 4 } else { 0 },
                19 => {
                    maps.insert(body[..6].to_vec(), body.to_vec());
                }
                23..=25 | 30..=32 => {
                    let tm = &maps[&body[..6]];
                    let db_len = usize::from(tm[8]);
                    let table_at = 8 + 1 + db_len + 1;
                    let table =
                        String::from_utf8_lossy(&tm[table_at + 1..table_at + 1 + usize::from(tm[table_at])]);
                    let spec = db
                        .exec(&format!(
                            "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
                             WHERE TABLE_SCHEMA = 'seeds' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
                        ))
                        .unwrap();
                    let flags = synchdb_mysql::fuzzing::rows_event_type_index(ty).unwrap();
                    let seed = synchdb_mysql::fuzzing::rows_input(flags, spec.trim_end(), tm, body);
                    write_seed("rows", &table, &seed);
                    // The same without a schema: made up from the table map's types.
                    let adapt = flags | synchdb_mysql::fuzzing::ROWS_ADAPT_SCHEMA;
                    write_seed("rows", &table, &synchdb_mysql::fuzzing::rows_input(adapt, "", tm, body));
                    rows += 1;
                }
                161..=163 => {
                    // The target's selector: 0 GTID, 1 GTID list, 2 binlog checkpoint.
                    let mut seed = vec![match ty {
                        162 => 0,
                        163 => 1,
                        _ => 2,
                    }];
                    seed.extend(server_id);
                    seed.extend(body);
                    write_seed("mariadb_gtid", "captured", &seed);
                    maria += 1;
                }
                _ => {}
            }
        }
    }
    assert!(rows > 10 && maria > 2, "{rows} rows events, {maria} MariaDB events");
    for entry in std::fs::read_dir(corpus_dir("rows")).unwrap() {
        let path = entry.unwrap().path();
        match synchdb_mysql::fuzzing::rows_event(&std::fs::read(&path).unwrap()) {
            Ok((schema, events)) => eprintln!("{}: {} events of {}", path.display(), events.len(), schema.id),
            Err(e) => eprintln!("{}: {e}", path.display()),
        }
    }
    eprintln!("wrote {rows} rows seeds and {maria} MariaDB event seeds");
}
