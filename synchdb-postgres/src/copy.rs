//! Bulk load: rows encoded in COPY's binary format (or its text format for
//! tables with type overrides or transforms), streamed in bounded pieces.
//!
//! Tables with SQL transforms (`lower(%d)`) are copied into a temporary table of
//! text columns first, then moved with `INSERT ... SELECT transform(cast(c))` in the
//! same transaction: the values never appear in SQL text.

use futures::StreamExt;
use sqlx::{AssertSqlSafe, Executor, PgConnection};
use synchdb_core::{Error, ErrorKind, Result, RowStream};
use synchdb_types::Row;

use crate::binary::{self, BinaryKind};
use crate::ddl::{quote, PgTable};
use crate::error::{sqlx_error, Context};
use crate::options::{CopyFormat, ZeroDatePolicy};
use crate::typemap::{write_value, ValueError};

/// `COPY "schema"."table" ("a", "b") FROM STDIN`.
pub(crate) fn copy_sql(pt: &PgTable) -> String {
    let cols: Vec<String> = pt.columns.iter().map(|c| quote(&c.name)).collect();
    format!("COPY {} ({}) FROM STDIN", pt.qualified, cols.join(", "))
}

/// The temporary table a chunk with transforms is copied into (dropped at commit).
const STAGING: &str = "synchdb_copy_staging";

/// `CREATE TEMP TABLE` of one text column per column, the `COPY` into it, and the
/// `INSERT ... SELECT` applying casts and transforms.
pub(crate) fn staged_sql(pt: &PgTable) -> (String, String, String) {
    let staging: Vec<String> = (0..pt.columns.len()).map(|i| format!("c{i}")).collect();
    let create = format!(
        "CREATE TEMP TABLE {STAGING} ({}) ON COMMIT DROP",
        staging.iter().map(|c| format!("{c} text")).collect::<Vec<_>>().join(", ")
    );
    let copy = format!("COPY {STAGING} ({}) FROM STDIN", staging.join(", "));
    let cols: Vec<String> = pt.columns.iter().map(|c| quote(&c.name)).collect();
    let exprs: Vec<String> =
        pt.columns.iter().zip(&staging).map(|(c, s)| c.value_expr(&format!("s.{s}"))).collect();
    let insert = format!(
        "INSERT INTO {} ({}) SELECT {} FROM {STAGING} AS s",
        pt.qualified,
        cols.join(", "),
        exprs.join(", ")
    );
    (create, copy, insert)
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

/// A row must have one value per column of the table.
fn check_width(row: &Row, pt: &PgTable) -> Result<()> {
    if row.len() != pt.columns.len() {
        return Err(Error::new(
            ErrorKind::SinkValue,
            format!("row has {} values, table has {} columns", row.len(), pt.columns.len()),
        )
        .with_table(pt.id.clone()));
    }
    Ok(())
}

/// Append one row as a COPY text line.
pub(crate) fn encode_row(
    row: &Row,
    pt: &PgTable,
    zero: ZeroDatePolicy,
    scratch: &mut String,
    out: &mut Vec<u8>,
) -> Result<()> {
    check_width(row, pt)?;
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

/// Append one row as a binary COPY tuple (`kinds`: each column's binary writer).
pub(crate) fn encode_row_binary(
    row: &Row,
    pt: &PgTable,
    kinds: &[BinaryKind],
    zero: ZeroDatePolicy,
    out: &mut Vec<u8>,
) -> Result<()> {
    check_width(row, pt)?;
    out.extend_from_slice(&(pt.columns.len() as i16).to_be_bytes());
    for ((v, col), kind) in row.iter().zip(&pt.columns).zip(kinds) {
        if let Err(ValueError(m)) = binary::write_field(v, col, *kind, zero, out) {
            return Err(Error::new(ErrorKind::SinkValue, m)
                .with_table(pt.id.clone())
                .with_column(col.name.clone()));
        }
    }
    Ok(())
}

/// The binary writers of a table's columns, when every column has one.
pub(crate) fn binary_kinds(pt: &PgTable) -> Option<Vec<BinaryKind>> {
    pt.columns.iter().map(BinaryKind::of).collect()
}

/// Stream `rows` into the table with one COPY on `conn` (inside the caller's
/// transaction), sending a piece whenever `piece` bytes are buffered. Returns the row count.
/// `format` asks for binary; tables with a column binary cannot carry
/// (overrides, transforms, PostGIS) are copied as text.
pub(crate) async fn copy_rows(
    conn: &mut PgConnection,
    pt: &PgTable,
    zero: ZeroDatePolicy,
    piece: usize,
    format: CopyFormat,
    mut rows: RowStream<'_>,
) -> Result<u64> {
    let cx = Context::data(&pt.id, None);
    let staged = pt.columns.iter().any(|c| c.transform.is_some()).then(|| staged_sql(pt));
    let kinds = match (&staged, format) {
        (None, CopyFormat::Binary) => binary_kinds(pt),
        _ => None,
    };
    let copy_statement = match (&staged, &kinds) {
        (Some((create, copy, _)), _) => {
            conn.execute(AssertSqlSafe(create.clone())).await.map_err(|e| sqlx_error(e, &cx))?;
            copy.clone()
        }
        (None, Some(_)) => format!("{} WITH (FORMAT binary)", copy_sql(pt)),
        (None, None) => copy_sql(pt),
    };
    let mut copy = conn.copy_in_raw(&copy_statement).await.map_err(|e| sqlx_error(e, &cx))?;
    let mut buf: Vec<u8> = Vec::with_capacity(piece + 4096);
    if kinds.is_some() {
        buf.extend_from_slice(binary::HEADER);
    }
    let mut scratch = String::new();
    let mut count = 0u64;
    let failure: Option<Error> = 'stream: loop {
        let batch = match rows.next().await {
            None => break None,
            Some(Err(e)) => break Some(e),
            Some(Ok(b)) => b,
        };
        for row in &batch {
            let encoded = match &kinds {
                Some(kinds) => encode_row_binary(row, pt, kinds, zero, &mut buf),
                None => encode_row(row, pt, zero, &mut scratch, &mut buf),
            };
            if let Err(e) = encoded {
                break 'stream Some(e);
            }
            count += 1;
            if buf.len() >= piece {
                // A wide row (a large BLOB) goes out in pieces too, so the
                // connection's buffer holds one piece, not the row.
                for part in buf.chunks(piece.max(1)) {
                    if let Err(e) = copy.send(part).await {
                        break 'stream Some(sqlx_error(e, &cx));
                    }
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
    if kinds.is_some() {
        buf.extend_from_slice(binary::TRAILER);
    }
    if !buf.is_empty() {
        copy.send(&buf[..]).await.map_err(|e| sqlx_error(e, &cx))?;
    }
    let mut written = copy.finish().await.map_err(|e| sqlx_error(e, &cx))?;
    if let Some((_, _, insert)) = &staged {
        let moved = conn.execute(AssertSqlSafe(insert.clone())).await.map_err(|e| sqlx_error(e, &cx))?;
        written = moved.rows_affected();
    }
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
    fn staged_copy_applies_transforms() {
        use crate::options::PgSinkOptions;
        use synchdb_types::{ColumnSchema, ColumnType, IntWidth, TableId, TableSchema};
        let mut email = ColumnSchema::new("email", ColumnType::VarChar { length: 50 });
        email.target_expr = Some(synchdb_types::SqlTransform::new("lower(%d)").unwrap());
        let mut n = ColumnSchema::new(
            "n",
            ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None },
        );
        n.target_expr = Some(synchdb_types::SqlTransform::new("%d * 2").unwrap());
        let t = TableSchema::new(TableId::new("shop", "users"), vec![email, n]);
        let pt = PgTable::build(&t, &PgSinkOptions::new(), false).unwrap();
        let (create, copy, insert) = staged_sql(&pt);
        assert_eq!(create, "CREATE TEMP TABLE synchdb_copy_staging (c0 text, c1 text) ON COMMIT DROP");
        assert_eq!(copy, "COPY synchdb_copy_staging (c0, c1) FROM STDIN");
        assert_eq!(
            insert,
            "INSERT INTO \"shop\".\"users\" (\"email\", \"n\") SELECT (lower(s.c0)), ((s.c1)::integer * 2) FROM synchdb_copy_staging AS s"
        );
    }

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        escape_into("a\\b\tc\nd\re", &mut out);
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
    }
}
