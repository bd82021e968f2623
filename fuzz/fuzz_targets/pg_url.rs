//! PostgreSQL sink URLs (see `synchdb_fuzz::pg_url`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synchdb_fuzz::pg_url(data));
