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
    Ok(spellings(national_types(without_attributes(type_attributes(without_lock_waits(out))))))
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
        // `RENAME TABLE t NOWAIT TO u`
        let before_to = bare(tokens.get(i + 1), "TO");
        if bare(tokens.get(i), "NOWAIT")
            && (ends || matches!(out.last(), Some(Token::RParen)) || after_name || before_to)
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
            b'\'' | b'"' | b'`' => i = past_quoted(b, i),
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
        if is_word(Some(t), "CHARSET") && !matches!(next, Some(Token::Eq | Token::LParen)) {
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

/// Whether `i` is where a column's type is written: right after the column's
/// name and followed by what may end a type (see [`ends_a_type`]). A column
/// *named* `long` or `serial` (`(long INT`, `ADD serial INT`) is not a type
/// position.
fn at_type_position(tokens: &[Token], out: &[Token], i: usize, also: &[&str]) -> bool {
    let prev_is_name =
        matches!(out.last(), Some(Token::Word(w)) if w.quote_style.is_some() || !is_clause_word(w));
    prev_is_name && ends_a_type(tokens.get(i + 1), also)
}

/// Whether `next` may follow a column's type: `,`, `)`, the end, a column
/// attribute, or one of `also`.
fn ends_a_type(next: Option<&Token>, also: &[&str]) -> bool {
    const ENDS: [&str; 14] = [
        "NOT",
        "NULL",
        "DEFAULT",
        "COMMENT",
        "PRIMARY",
        "UNIQUE",
        "KEY",
        "FIRST",
        "AFTER",
        "CHARACTER",
        "CHARSET",
        "COLLATE",
        "AUTO_INCREMENT",
        "REFERENCES",
    ];
    next.is_none()
        || matches!(next, Some(Token::Comma | Token::RParen | Token::SemiColon))
        || ENDS.iter().chain(also).any(|k| is_word(next, k))
}

/// Words after which a word is not a column's name but a clause's.
fn is_clause_word(w: &sqlparser::tokenizer::Word) -> bool {
    [
        "ADD", "COLUMN", "MODIFY", "CHANGE", "TABLE", "EXISTS", "DROP", "ALTER", "CREATE", "KEY", "INDEX",
        "AFTER",
    ]
    .iter()
    .any(|k| w.value.eq_ignore_ascii_case(k))
}

/// MySQL's column-type spellings and attributes that sqlparser does not
/// read, as the server stores them (`SHOW CREATE TABLE`):
/// - `LONG VARBINARY` is `MEDIUMBLOB`; `LONG VARCHAR`, `LONG CHAR VARYING`
///   and `LONG` are `MEDIUMTEXT`;
/// - `SERIAL` is `BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE`, and an
///   integer's `SERIAL DEFAULT VALUE` is `NOT NULL AUTO_INCREMENT UNIQUE`;
/// - a text type's `ASCII` is `CHARACTER SET latin1`, `UNICODE` is
///   `CHARACTER SET ucs2` (with `BINARY` next to either: the `_bin`
///   collation, which the replica does not keep), `CHAR(n) BYTE` is
///   `BINARY(n)`;
/// - MariaDB's `COMPRESSED[=zlib]` changes how the server stores the
///   column, not its values: dropped.
pub(super) fn type_attributes(tokens: Vec<Token>) -> Vec<Token> {
    const TEXT_TYPES: [&str; 8] =
        ["CHAR", "CHARACTER", "VARCHAR", "TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT", "VARYING"];
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let at = |k: usize| tokens.get(i + k);
        let after_text_type = |out: &[Token]| match out.last() {
            Some(Token::RParen) => true,
            Some(Token::Word(w)) if w.quote_style.is_none() => {
                TEXT_TYPES.iter().any(|k| w.value.eq_ignore_ascii_case(k))
                    || w.value.eq_ignore_ascii_case("BINARY")
            }
            _ => false,
        };
        if is_word(Some(t), "LONG") {
            let (words, replacement) = if is_word(at(1), "VARBINARY") {
                (2, "MEDIUMBLOB")
            } else if is_word(at(1), "VARCHAR") {
                (2, "MEDIUMTEXT")
            } else if (is_word(at(1), "CHAR") || is_word(at(1), "CHARACTER")) && is_word(at(2), "VARYING") {
                (3, "MEDIUMTEXT")
            } else {
                (1, "MEDIUMTEXT")
            };
            let also = ["BINARY", "ASCII", "UNICODE", "COMPRESSED"];
            if at_type_position(&tokens, &out, i + words - 1, &also) {
                out.push(Token::make_keyword(replacement));
                i += words;
                continue;
            }
        }
        if is_word(Some(t), "SERIAL") && is_word(at(1), "DEFAULT") && is_word(at(2), "VALUE") {
            for w in ["NOT", "NULL", "AUTO_INCREMENT", "UNIQUE"] {
                out.push(Token::make_keyword(w));
            }
            i += 3;
            continue;
        }
        if is_word(Some(t), "SERIAL") && at_type_position(&tokens, &out, i, &[]) {
            for w in ["BIGINT", "UNSIGNED", "NOT", "NULL", "AUTO_INCREMENT", "UNIQUE"] {
                out.push(Token::make_keyword(w));
            }
            i += 1;
            continue;
        }
        let charset = if is_word(Some(t), "ASCII") {
            Some("latin1")
        } else if is_word(Some(t), "UNICODE") {
            Some("ucs2")
        } else {
            None
        };
        if let Some(cs) = charset.filter(|_| after_text_type(&out)) {
            if is_word(out.last(), "BINARY") && out.len() >= 2 && after_text_type(&out[..out.len() - 1]) {
                // `BINARY ASCII`: the collation, dropped with the word.
                out.pop();
            }
            out.extend([
                Token::make_keyword("CHARACTER"),
                Token::make_keyword("SET"),
                Token::make_word(cs, None),
            ]);
            let collation_next = is_word(at(1), "BINARY") && !matches!(at(2), Some(Token::LParen));
            i += if collation_next { 2 } else { 1 };
            continue;
        }
        if is_word(Some(t), "BYTE") {
            // `CHAR[(n)] BYTE`: find the type word.
            let type_at = match out.last() {
                Some(Token::RParen) => {
                    out.iter().rposition(|t| matches!(t, Token::LParen)).and_then(|p| p.checked_sub(1))
                }
                Some(_) => Some(out.len() - 1),
                None => None,
            };
            if let Some(k) =
                type_at.filter(|&k| is_word(out.get(k), "CHAR") || is_word(out.get(k), "CHARACTER"))
            {
                out[k] = Token::make_keyword("BINARY");
                i += 1;
                continue;
            }
        }
        if is_word(Some(t), "COMPRESSED")
            && matches!(out.last(), Some(Token::RParen) | Some(Token::Word(_)))
            && !matches!(out.last(), Some(Token::Word(w)) if w.quote_style.is_none() && is_clause_word(w))
            && (matches!(at(1), Some(Token::Eq)) || ends_a_type(at(1), &[]))
        {
            i += if matches!(at(1), Some(Token::Eq)) { 3 } else { 1 };
            continue;
        }
        out.push(t.clone());
        i += 1;
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

/// `CREATE TABLE t (...) options [PARTITION BY ...] [[IGNORE|REPLACE] [AS] SELECT ...]`:
/// the table options and the partitioning clause do not change the table's
/// shape, and sqlparser does not read many of them (MariaDB's
/// `TRANSACTIONAL=1`, `PAGE_CHECKSUM=1`, `ENCRYPTED=YES`, ...): both are cut
/// (the table's character set is read from the tokens before this). A
/// query, or `WITH SYSTEM VERSIONING` (refused later), stays.
pub(super) fn without_table_options(tokens: Vec<Token>) -> Vec<Token> {
    // Only after a column list right after the name (not `LIKE t`, `SELECT ...`, `(LIKE t)`).
    let Some(open) = tokens.iter().position(|t| matches!(t, Token::LParen)) else { return tokens };
    let head_is_name = tokens[..open].iter().enumerate().all(|(k, t)| match t {
        Token::Period => true,
        Token::Word(w) if w.quote_style.is_none() => {
            !["SELECT", "LIKE", "AS", "IGNORE"].iter().any(|x| w.value.eq_ignore_ascii_case(x))
                && (!w.value.eq_ignore_ascii_case("REPLACE")
                    || is_word(k.checked_sub(1).and_then(|j| tokens.get(j)), "OR"))
        }
        Token::Word(_) => true,
        _ => false,
    });
    if head_is_name && is_word(tokens.get(open + 1), "LIKE") && matches!(tokens.last(), Some(Token::RParen)) {
        // `CREATE TABLE t (LIKE s)` is `CREATE TABLE t LIKE s`.
        let mut tokens = tokens;
        tokens.pop();
        tokens.remove(open);
        return tokens;
    }
    if !head_is_name || is_word(tokens.get(open + 1), "SELECT") {
        return tokens;
    }
    let mut depth = 0i32;
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        out.push(t.clone());
        i += 1;
        if depth == 0 && matches!(t, Token::RParen) {
            break;
        }
    }
    let at = |k: usize| tokens.get(k);
    let mut depth = 0i32;
    while i < tokens.len() {
        let t = &tokens[i];
        let query = depth == 0
            && (["SELECT", "AS", "IGNORE", "REPLACE", "WITH"].iter().any(|w| is_word(Some(t), w))
                || (matches!(t, Token::LParen) && is_word(at(i + 1), "SELECT")));
        if query {
            // `IGNORE|REPLACE SELECT` (duplicate handling; sqlparser reads neither).
            let from = if is_word(Some(t), "IGNORE") || is_word(Some(t), "REPLACE") { i + 1 } else { i };
            out.extend(tokens[from..].iter().cloned());
            break;
        }
        if depth == 0 && is_word(Some(t), "PARTITION") && is_word(at(i + 1), "BY") {
            break;
        }
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    out
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
