//! The token layer: tokenizing, rewrites of MariaDB-only spellings sqlparser lacks, and token helpers.

use super::*;

pub(super) fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Tokenize, dropping whitespace and comments, with the MariaDB rewrites
/// that apply anywhere (`ZEROFILL`, `PERSISTENT`).
pub(super) fn tokenize(sql: &str) -> Result<Vec<Token>, DdlError> {
    let sql = without_comments_in_executable_comments(sql);
    let raw = Tokenizer::new(&MySqlDialect {}, &sql)
        .tokenize()
        .map_err(|e| err(format!("cannot tokenize: {e}")))?;
    let mut out: Vec<Token> = Vec::with_capacity(raw.len());
    let mut after_space = true;
    for t in raw {
        let adjacent = !std::mem::replace(&mut after_space, matches!(t, Token::Whitespace(_)));
        match &t {
            Token::Whitespace(_) | Token::EOF => continue,
            // MySQL identifiers may start with digits (`1ea10`, `1e`): sqlparser reads a number, then a word.
            Token::Word(w)
                if adjacent
                    && w.quote_style.is_none()
                    && matches!(out.last(), Some(Token::Number(n, false)) if n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                let Some(Token::Number(n, _)) = out.pop() else { unreachable!("checked above") };
                out.push(Token::make_word(&format!("{n}{}", w.value), None));
                continue;
            }
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("ZEROFILL") => {
                // ZEROFILL implies UNSIGNED.
                let has_unsigned =
                    matches!(out.last(), Some(Token::Word(p)) if p.keyword == Keyword::UNSIGNED);
                if !has_unsigned {
                    out.push(Token::make_keyword("UNSIGNED"));
                }
                continue;
            }
            // MariaDB's `AS (expr) PERSISTENT` is MySQL's `STORED`.
            Token::Word(w)
                if w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("PERSISTENT")
                    && matches!(out.last(), Some(Token::RParen)) =>
            {
                out.push(Token::make_keyword("STORED"));
                continue;
            }
            _ => {}
        }
        out.push(t);
    }
    Ok(spellings(national_types(without_attributes(without_lock_waits(out)))))
}

/// MariaDB's lock-wait clauses (`CREATE INDEX i ON t (a) WAIT 1`, `ALTER TABLE t
/// NOWAIT ADD ...`): no shape of their own, unknown to sqlparser, removed.
fn without_lock_waits(tokens: Vec<Token>) -> Vec<Token> {
    let bare = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if bare(tokens.get(i), "WAIT") && matches!(tokens.get(i + 1), Some(Token::Number(..))) {
            i += 2;
            continue;
        }
        let ends = matches!(tokens.get(i + 1), None | Some(Token::SemiColon));
        let after_name = matches!(out.as_slice(), [.., Token::Word(a), Token::Word(t), Token::Word(_)]
            if a.value.eq_ignore_ascii_case("ALTER") && t.value.eq_ignore_ascii_case("TABLE"))
            || matches!(out.as_slice(), [.., Token::Word(t), Token::Word(_), Token::Period, Token::Word(_)]
                if t.value.eq_ignore_ascii_case("TABLE"));
        if bare(tokens.get(i), "NOWAIT") && (ends || matches!(out.last(), Some(Token::RParen)) || after_name)
        {
            i += 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// A plain comment inside an executable one (`/*!50100 PARTITION BY HASH (a)
/// /* note */ PARTITIONS 5 */`), which the server skips and the tokenizer
/// cannot read, removed. Strings and quoted names are left alone.
pub(super) fn without_comments_in_executable_comments(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains("/*!") && !sql.contains("/*M!") {
        return std::borrow::Cow::Borrowed(sql);
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut i, mut start) = (0, 0);
    let mut in_exec = false;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let exec = matches!(b.get(i + 2), Some(b'!')) || b[i + 2..].starts_with(b"M!");
                if exec && !in_exec {
                    in_exec = true;
                    i += 2;
                } else if in_exec {
                    // A comment within: dropped up to its end.
                    out.push_str(&sql[start..i]);
                    i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                    out.push(' ');
                    start = i;
                } else {
                    i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                }
            }
            b'*' if in_exec && b.get(i + 1) == Some(&b'/') => {
                in_exec = false;
                i += 2;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[start.min(sql.len())..]);
    std::borrow::Cow::Owned(out)
}

/// MySQL spellings sqlparser does not read, as ones it does that mean the
/// same: `DOUBLE PRECISION(m,d)` is `DOUBLE(m,d)`; `BIT(0)` is `BIT(1)` (as
/// the server stores it); `INTERVAL(...)`, the function, is a function call
/// (sqlparser takes `INTERVAL` for the start of an interval literal).
pub(super) fn spellings(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let alter = is_word(tokens.first(), "ALTER");
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1);
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        // A column's `CHARSET x` (sqlparser reads only `CHARACTER SET x` there): inside a
        // CREATE TABLE's column list, or after a column type in an ALTER TABLE. A table's
        // `[DEFAULT] CHARSET[=]x` stays.
        if is_word(Some(t), "CHARSET") && !matches!(next, Some(Token::Eq)) {
            let after_type = matches!(out.last(), Some(Token::RParen))
                || ["TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT", "CHAR", "CHARACTER", "NCHAR", "VARCHAR"]
                    .iter()
                    .any(|w| is_word(out.last(), w));
            if depth >= 1 || (alter && after_type) {
                out.push(Token::make_keyword("CHARACTER"));
                out.push(Token::make_keyword("SET"));
                i += 1;
                continue;
            }
        }
        if is_word(Some(t), "PRECISION") && is_word(out.last(), "DOUBLE") {
            i += 1;
            continue;
        }
        if is_word(Some(t), "BIT")
            && matches!(next, Some(Token::LParen))
            && matches!(tokens.get(i + 2), Some(Token::Number(n, _)) if n.trim_start_matches('0').is_empty())
            && matches!(tokens.get(i + 3), Some(Token::RParen))
        {
            out.extend([t.clone(), Token::LParen, Token::Number("1".into(), false), Token::RParen]);
            i += 4;
            continue;
        }
        // A character set or collation named by a string (`CHARSET 'gbk'`,
        // `CHARACTER SET "latin1"`, `COLLATE 'utf8mb4_bin'`): the name itself.
        if let Token::SingleQuotedString(name) | Token::DoubleQuotedString(name) = t {
            let prev = out.last();
            let names_charset = is_word(prev, "CHARSET")
                || is_word(prev, "COLLATE")
                || (is_word(prev, "SET")
                    && is_word(out.len().checked_sub(2).and_then(|j| out.get(j)), "CHARACTER"));
            if names_charset && !name.is_empty() {
                out.push(Token::make_word(name, Some('`')));
                i += 1;
                continue;
            }
        }
        if is_word(Some(t), "INTERVAL") && matches!(next, Some(Token::LParen)) {
            out.push(Token::make_word("INTERVAL", Some('`')));
            i += 1;
            continue;
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

/// MySQL's national character types, which sqlparser does not read, as the
/// plain types with MySQL's national charset (`utf8mb3`, as
/// information_schema shows them): `NATIONAL VARCHAR(n)`, `NCHAR VARCHAR(n)`,
/// `NATIONAL CHARACTER VARYING(n)`, `NCHAR VARYING(n)`, `NVARCHAR(n)` are
/// `VARCHAR(n) CHARACTER SET utf8mb3`; `NATIONAL CHAR[ACTER](n)`, `NCHAR(n)`
/// are `CHAR(n) CHARACTER SET utf8mb3`. A double-quoted string (a comment,
/// a default) is a string in MySQL unless `ANSI_QUOTES` is set, which DDL in
/// the binlog practically never has: it becomes single-quoted.
pub(super) fn national_types(tokens: Vec<Token>) -> Vec<Token> {
    let word = |t: Option<&Token>, kw: &str| is_word(t, kw);
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let at = |k: usize| tokens.get(i + k);
        // (words consumed, varying)
        let national = if word(at(0), "NATIONAL") {
            match () {
                _ if word(at(1), "VARCHAR") => Some((2, true)),
                _ if (word(at(1), "CHARACTER") || word(at(1), "CHAR")) && word(at(2), "VARYING") => {
                    Some((3, true))
                }
                _ if word(at(1), "CHARACTER") || word(at(1), "CHAR") => Some((2, false)),
                _ => None,
            }
        } else if word(at(0), "NCHAR") {
            if word(at(1), "VARCHAR") || word(at(1), "VARYING") {
                Some((2, true))
            } else {
                Some((1, false))
            }
        } else if word(at(0), "NVARCHAR") {
            Some((1, true))
        } else {
            None
        };
        // Only in a column definition: after the column's name.
        let after_name = matches!(out.last(), Some(Token::Word(_)));
        match national {
            Some((n, varying)) if after_name => {
                out.push(Token::make_keyword(if varying { "VARCHAR" } else { "CHAR" }));
                i += n;
                if matches!(tokens.get(i), Some(Token::LParen)) {
                    while i < tokens.len() {
                        let t = tokens[i].clone();
                        i += 1;
                        let end = matches!(t, Token::RParen);
                        out.push(t);
                        if end {
                            break;
                        }
                    }
                }
                out.push(Token::make_keyword("CHARACTER"));
                out.push(Token::make_keyword("SET"));
                out.push(Token::make_word("utf8mb3", None));
            }
            _ => {
                let t = match &tokens[i] {
                    Token::DoubleQuotedString(s) => Token::SingleQuotedString(s.clone()),
                    Token::Word(w) if w.quote_style == Some('"') => {
                        Token::SingleQuotedString(w.value.clone())
                    }
                    t => t.clone(),
                };
                out.push(t);
                i += 1;
            }
        }
    }
    out
}

/// Drop the attributes sqlparser does not read and that do not change what
/// the replica stores: `VARCHAR(n) BINARY` (a binary collation), an index's
/// `USING BTREE|HASH` before its column list, `WITH PARSER p`, and MariaDB's
/// `IGNORED` / `NOT IGNORED` index flag.
pub(super) fn without_attributes(tokens: Vec<Token>) -> Vec<Token> {
    const TEXT_TYPES: [&str; 6] = ["CHAR", "VARCHAR", "TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT"];
    let word = |t: Option<&Token>, kw: &str| is_word(t, kw);
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1);
        if word(Some(t), "BINARY") && !matches!(next, Some(Token::LParen)) {
            let after_text_type = match out.last() {
                Some(Token::RParen) => true,
                Some(Token::Word(w)) => {
                    w.quote_style.is_none() && TEXT_TYPES.iter().any(|k| w.value.eq_ignore_ascii_case(k))
                }
                _ => false,
            };
            if after_text_type {
                i += 1;
                continue;
            }
        }
        if word(Some(t), "USING")
            && (word(next, "BTREE") || word(next, "HASH"))
            && matches!(tokens.get(i + 2), Some(Token::LParen))
        {
            i += 2;
            continue;
        }
        if word(Some(t), "WITH") && word(next, "PARSER") {
            i += 3;
            continue;
        }
        if word(Some(t), "IGNORED") && matches!(out.last(), Some(Token::RParen)) {
            i += 1;
            continue;
        }
        if word(Some(t), "NOT") && word(next, "IGNORED") && matches!(out.last(), Some(Token::RParen)) {
            i += 2;
            continue;
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

/// `CREATE TABLE ... PARTITION BY ...`: the partitioning clause (which
/// sqlparser does not read) ends the statement and does not change the
/// table's shape, so it is cut off.
pub(super) fn without_partitioning(mut tokens: Vec<Token>) -> Vec<Token> {
    let mut depth = 0i32;
    let mut seen_columns = false;
    for i in 0..tokens.len() {
        match &tokens[i] {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                seen_columns |= depth == 0;
            }
            _ if depth == 0
                && seen_columns
                && is_word(tokens.get(i), "PARTITION")
                && is_word(tokens.get(i + 1), "BY") =>
            {
                tokens.truncate(i);
                break;
            }
            _ => {}
        }
    }
    tokens
}

pub(super) fn parse_tokens(tokens: Vec<Token>) -> Result<Statement, DdlError> {
    let mut stmts = Parser::new(&MySqlDialect {})
        .with_tokens(tokens)
        .parse_statements()
        .map_err(|e| err(format!("sqlparser: {e}")))?;
    if stmts.len() != 1 {
        return Err(err(format!("expected one statement, found {}", stmts.len())));
    }
    Ok(stmts.remove(0))
}

pub(super) fn upper_words(tokens: &[Token], n: usize) -> Vec<String> {
    tokens
        .iter()
        .take(n)
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

pub(super) fn is_word(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

pub(super) fn ident_of(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    }
}

/// `DEFAULT CHARSET=x` / `CHARACTER SET x` / `COLLATE=y` among the table
/// options (after the closing parenthesis of the column list).
pub(super) fn table_charset_option(tokens: &[Token]) -> Option<String> {
    let mut depth = 0i32;
    let mut charset = None;
    let mut collation: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                let up = w.value.to_ascii_uppercase();
                let value_at = |mut j: usize| {
                    if matches!(tokens.get(j), Some(Token::Eq)) {
                        j += 1;
                    }
                    match tokens.get(j) {
                        Some(Token::Word(v)) => Some(v.value.clone()),
                        Some(Token::SingleQuotedString(v)) => Some(v.clone()),
                        _ => None,
                    }
                };
                if up == "CHARSET" {
                    charset = value_at(i + 1);
                } else if up == "CHARACTER" && is_word(tokens.get(i + 1), "SET") {
                    charset = value_at(i + 2);
                } else if up == "COLLATE" {
                    collation = value_at(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    charset.or_else(|| collation.and_then(|c| c.split('_').next().map(str::to_string)))
}

pub(super) fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            Token::SemiColon if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}
