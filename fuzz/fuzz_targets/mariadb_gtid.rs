//! MariaDB GTID / GTID list / checkpoint events (see `synchdb_fuzz::mariadb_gtid`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synchdb_fuzz::mariadb_gtid(data));
