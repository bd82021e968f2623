//! Bulk load: rows encoded in COPY's text format, streamed in bounded pieces.

use futures::StreamExt;
use sqlx::PgConnection;
use synchdb_core::{Error, ErrorKind, Result, RowStream};
use synchdb_types::Row;

use crate::ddl::{quote, PgTable};
use crate::error::{sqlx_error, Context};
use crate::options::ZeroDatePolicy;
use crate::typemap::{write_value, ValueError};

/// `COPY "schema"."table" ("a", "b") FROM STDIN`.
pub(crate) fn copy_sql(pt: &PgTable) -> String {
    let cols: Vec<String> = pt.columns.iter().map(|c| quote(&c.name)).collect();
    format!("COPY {} ({}) FROM STDIN", pt.qualified, cols.join(", "))
}

/// Append `s` to `out`, escaped for COPY's text format.
fn escape_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t')) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// Append one row as a COPY text line.
pub(crate) fn encode_row(
    row: &Row,
    pt: &PgTable,
    zero: ZeroDatePolicy,
    scratch: &mut String,
    out: &mut Vec<u8>,
) -> Result<()> {
    if row.len() != pt.columns.len() {
        return Err(Error::new(
            ErrorKind::SinkValue,
            format!("row has {} values, table has {} columns", row.len(), pt.columns.len()),
        )
        .with_table(pt.id.clone()));
    }
    for (i, (v, col)) in row.iter().zip(&pt.columns).enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        scratch.clear();
        match write_value(v, col, zero, scratch) {
            Ok(true) => escape_into(scratch, out),
            Ok(false) => out.extend_from_slice(b"\\N"),
            Err(ValueError(m)) => {
                return Err(Error::new(ErrorKind::SinkValue, m)
                    .with_table(pt.id.clone())
                    .with_column(col.name.clone()))
            }
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Stream `rows` into the table with one COPY on `conn` (inside the caller's
/// transaction), sending a piece whenever `piece` bytes are buffered. Returns the row count.
pub(crate) async fn copy_rows(
    conn: &mut PgConnection,
    pt: &PgTable,
    zero: ZeroDatePolicy,
    piece: usize,
    mut rows: RowStream<'_>,
) -> Result<u64> {
    let cx = Context::data(&pt.id, None);
    let mut copy = conn.copy_in_raw(&copy_sql(pt)).await.map_err(|e| sqlx_error(e, &cx))?;
    let mut buf: Vec<u8> = Vec::with_capacity(piece + 4096);
    let mut scratch = String::new();
    let mut count = 0u64;
    let failure: Option<Error> = 'stream: loop {
        let batch = match rows.next().await {
            None => break None,
            Some(Err(e)) => break Some(e),
            Some(Ok(b)) => b,
        };
        for row in &batch {
            if let Err(e) = encode_row(row, pt, zero, &mut scratch, &mut buf) {
                break 'stream Some(e);
            }
            count += 1;
            if buf.len() >= piece {
                if let Err(e) = copy.send(&buf[..]).await {
                    break 'stream Some(sqlx_error(e, &cx));
                }
                buf.clear();
            }
        }
    };
    if let Some(e) = failure {
        // Best effort: the caller's transaction is rolled back anyway.
        let _ = copy.abort("synchdb: chunk failed").await;
        return Err(e);
    }
    if !buf.is_empty() {
        copy.send(&buf[..]).await.map_err(|e| sqlx_error(e, &cx))?;
    }
    let written = copy.finish().await.map_err(|e| sqlx_error(e, &cx))?;
    if written != count {
        return Err(
            Error::internal(format!("COPY wrote {written} rows, {count} sent")).with_table(pt.id.clone())
        );
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        escape_into("a\\b\tc\nd\re", &mut out);
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
    }
}
