//! MySQL source URLs (see `synchdb_fuzz::mysql_url`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synchdb_fuzz::mysql_url(data));
