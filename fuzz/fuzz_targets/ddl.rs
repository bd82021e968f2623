//! DDL statement text → schema changes or typed errors (see `synchdb_fuzz::ddl`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synchdb_fuzz::ddl(data));
