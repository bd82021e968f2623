//! Table map + rows event bytes → change events or typed errors (see `synchdb_fuzz::rows`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synchdb_fuzz::rows(data));
