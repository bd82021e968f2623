//! What a query event is: classification by its leading words, and the tables a DML or unparsed statement names.

use super::*;

/// Which statement a query event holds, from its first keywords only
/// (cheap: no tokenizer). `BEGIN`, `COMMIT`, `ROLLBACK` and
/// `SAVEPOINT`-style statements are recognised for transaction assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryKind {
    /// `BEGIN` / `START TRANSACTION` / `XA START`.
    Begin,
    /// `COMMIT` / `XA COMMIT` / `XA END`-free commits.
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// A statement that may change a table's shape (parse it).
    TableDdl,
    /// Row changes as SQL text (statement-based logging: a session with
    /// `binlog_format=STATEMENT`, or MariaDB emptying a MEMORY table).
    Dml,
    /// Anything else (SAVEPOINT, GRANT, SET, CREATE VIEW, ...): ignored.
    Other,
}

/// Classify a query event's statement by its leading keywords.
pub(crate) fn classify(sql: &str) -> QueryKind {
    let words = leading_words(sql, 4);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["BEGIN", ..] | ["START", "TRANSACTION", ..] | ["XA", "START", ..] | ["XA", "BEGIN", ..] => {
            QueryKind::Begin
        }
        ["COMMIT", ..] | ["XA", "COMMIT", ..] => QueryKind::Commit,
        ["ROLLBACK", "TO", ..] => QueryKind::Other,
        ["ROLLBACK", ..] | ["XA", "ROLLBACK", ..] => QueryKind::Rollback,
        ["ALTER", rest @ ..] if rest.iter().take(3).any(|w| *w == "TABLE") => QueryKind::TableDdl,
        ["CREATE", rest @ ..] if is_create_table_or_index(rest) => QueryKind::TableDdl,
        ["DROP", "TABLE" | "INDEX" | "DATABASE" | "SCHEMA", ..] => QueryKind::TableDdl,
        ["DROP", "TEMPORARY", ..] => QueryKind::Other,
        ["RENAME", "TABLE", ..] | ["TRUNCATE", ..] => QueryKind::TableDdl,
        ["INSERT" | "REPLACE" | "UPDATE" | "DELETE", ..] | ["LOAD", "DATA" | "XML", ..] => QueryKind::Dml,
        _ => QueryKind::Other,
    }
}

pub(super) fn is_create_table_or_index(rest: &[&str]) -> bool {
    let mut it = rest.iter().copied().peekable();
    if it.peek() == Some(&"OR") {
        it.next();
        it.next();
    }
    match it.next() {
        Some("TABLE") => true,
        Some("UNIQUE" | "FULLTEXT" | "SPATIAL" | "INDEX") => true,
        Some("ONLINE" | "OFFLINE") => matches!(it.next(), Some("UNIQUE" | "FULLTEXT" | "SPATIAL" | "INDEX")),
        // CREATE TEMPORARY TABLE is not logged in row format; views,
        // triggers, procedures, users, databases are not table shapes.
        _ => false,
    }
}

/// The first `n` words of `sql`, upper-cased, skipping comments (`/* */`,
/// `-- `, `#`); MariaDB's executable comments `/*! ... */` are read as code.
pub(crate) fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() && out.len() < n {
        let c = b[i];
        if c.is_ascii_whitespace() || c == b'(' || c == b';' {
            i += 1;
        } else if b[i..].starts_with(b"/*!") || b[i..].starts_with(b"/*M!") {
            // Executable comment: skip the marker and version digits.
            i += if b[i + 2] == b'M' { 4 } else { 3 };
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
        } else if b[i..].starts_with(b"*/") {
            i += 2;
        } else if b[i..].starts_with(b"--") || c == b'#' {
            i = sql[i..].find('\n').map_or(b.len(), |p| i + p + 1);
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(sql[start..i].to_ascii_uppercase());
        } else {
            break;
        }
    }
    out
}

/// The index just past the quoted string or name starting at `b[i]` (a
/// quote, double quote or backtick; backslash escapes inside strings).
pub(crate) fn past_quoted(b: &[u8], mut i: usize) -> usize {
    let q = b[i];
    i += 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && q != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// MariaDB's `SET STATEMENT var = value [, ...] FOR statement`: the statement
/// (the variables only hold while it runs); any other statement as it is.
pub(crate) fn without_set_statement(sql: &str) -> &str {
    if leading_words(sql, 2) != ["SET", "STATEMENT"] {
        return sql;
    }
    let b = sql.as_bytes();
    let mut i = 0;
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' | b'`' => {
                i = past_quoted(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            c if depth == 0
                && (c == b'F' || c == b'f')
                && b.get(i..i + 3).is_some_and(|w| w.eq_ignore_ascii_case(b"FOR"))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
                && b.get(i + 3).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_')) =>
            {
                return sql[i + 3..].trim_start();
            }
            _ => {}
        }
        i += 1;
    }
    sql
}

/// Names of the tables a DDL statement may touch, from its tokens only (no
/// full parse): used to ignore statements about unselected tables cheaply.
/// `None` when the names cannot be told (the caller then parses).
/// The table named at `tokens[i]` (`db.t` or `t` in the default database) and
/// the index after it.
pub(super) fn table_name_at(tokens: &[Token], i: usize, default_db: &str) -> Option<(TableId, usize)> {
    match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
        (Some(Token::Word(d)), Some(Token::Period), Some(Token::Word(t))) => {
            Some((TableId::new(d.value.clone(), t.value.clone()), i + 3))
        }
        (Some(Token::Word(t)), _, _) if !default_db.is_empty() => {
            Some((TableId::new(default_db, t.value.clone()), i + 1))
        }
        _ => None,
    }
}

/// The tables a DML statement writes (`INSERT|REPLACE INTO t`, `UPDATE t [, u]`,
/// `DELETE FROM t`, `DELETE t FROM ...`, `LOAD DATA ... INTO TABLE t`), or `None`
/// when they cannot be told from the text.
pub(crate) fn dml_tables(sql: &str, default_db: &str) -> Option<Vec<TableId>> {
    let tokens = tokenize(sql).ok()?;
    let name_at = |i: usize| table_name_at(&tokens, i, default_db);
    let modifiers = ["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "QUICK", "CONCURRENT", "LOCAL"];
    let skip = |mut i: usize| {
        while modifiers.iter().any(|m| is_word(tokens.get(i), m)) {
            i += 1;
        }
        i
    };
    let first = upper_words(&tokens, 1).into_iter().next()?;
    let mut out = Vec::new();
    match first.as_str() {
        "INSERT" | "REPLACE" => {
            let mut i = skip(1);
            if is_word(tokens.get(i), "INTO") {
                i += 1;
            }
            out.push(name_at(i)?.0);
        }
        "UPDATE" => {
            // UPDATE t [alias] [, u [alias]] SET ...: every listed table may be written.
            let set = tokens.iter().position(|t| is_word(Some(t), "SET"))?;
            let mut i = skip(1);
            while i < set {
                let (id, next) = name_at(i)?;
                out.push(id);
                i = next;
                while i < set && !matches!(tokens.get(i), Some(Token::Comma)) {
                    i += 1;
                }
                i += 1;
            }
            if tokens[1..set].iter().any(|t| is_word(Some(t), "JOIN")) {
                return None;
            }
        }
        "DELETE" => {
            let i = skip(1);
            let from = tokens.iter().position(|t| is_word(Some(t), "FROM"))?;
            if from == i {
                out.push(name_at(from + 1)?.0);
                if tokens.iter().any(|t| is_word(Some(t), "USING") || is_word(Some(t), "JOIN")) {
                    return None;
                }
            } else {
                // Multi-table DELETE t1, t2 FROM ...: aliases cannot be resolved here.
                return None;
            }
        }
        "LOAD" => {
            let t = tokens.iter().position(|t| is_word(Some(t), "TABLE"))?;
            out.push(name_at(t + 1)?.0);
        }
        _ => return None,
    }
    Some(out)
}

pub(crate) fn quick_tables(sql: &str, default_db: &str) -> Option<Vec<TableId>> {
    let tokens = tokenize(sql).ok()?;
    let words = upper_words(&tokens, 2);
    let mut names = Vec::new();
    let read_name = |i: usize| table_name_at(&tokens, i, default_db);
    let skip_if = |mut i: usize| {
        if is_word(tokens.get(i), "IF") {
            i += if is_word(tokens.get(i + 1), "NOT") { 3 } else { 2 };
        }
        i
    };
    let first = words.first().map(String::as_str)?;
    match first {
        "TRUNCATE" => {
            let i = if is_word(tokens.get(1), "TABLE") { 2 } else { 1 };
            names.push(read_name(i)?.0);
        }
        "DROP" | "RENAME" if is_word(tokens.get(1), "TABLE") => {
            // a [, b ...] / a TO b [, c TO d]
            let mut i = skip_if(2);
            loop {
                let (t, next) = read_name(i)?;
                names.push(t);
                i = next;
                match tokens.get(i) {
                    Some(Token::Comma) => i += 1,
                    Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("TO") => i += 1,
                    _ => break,
                }
            }
        }
        "ALTER" | "CREATE" => {
            let t = tokens.iter().position(|t| is_word(Some(t), "TABLE"))?;
            if tokens[..t].iter().any(|t| is_word(Some(t), "INDEX")) {
                return None;
            }
            let (id, next) = read_name(skip_if(t + 1))?;
            names.push(id);
            // CREATE TABLE a LIKE b, ALTER TABLE a RENAME TO b: also the other name.
            for j in next..tokens.len() {
                if is_word(tokens.get(j), "LIKE") || is_word(tokens.get(j), "RENAME") {
                    let k = if is_word(tokens.get(j + 1), "TO") || is_word(tokens.get(j + 1), "AS") {
                        j + 2
                    } else {
                        j + 1
                    };
                    if let Some((other, _)) = read_name(k) {
                        names.push(other);
                    }
                }
            }
        }
        _ => return None,
    }
    Some(names)
}
