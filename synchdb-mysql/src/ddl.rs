//! DDL statements of the binlog, parsed into a small typed form.
//!
//! Query events carry DDL as SQL text. [`parse_ddl`] turns the statements
//! that change the shape of tables (CREATE/DROP/RENAME/TRUNCATE TABLE,
//! ALTER TABLE, CREATE/DROP INDEX, DROP DATABASE) into a [`Ddl`]; the binlog
//! follower applies it to its tracked schemas (see `binlog::schema`).
//!
//! The parser is sqlparser's `MySqlDialect`, with a thin token layer for what
//! it lacks: `ALTER TABLE` operations are split at top-level commas and
//! parsed one by one (so table options such as `ENGINE=...` or
//! `ALGORITHM=...` do not fail the whole statement), and MariaDB-only forms
//! are rewritten or handled here: `DROP KEY`, `ZEROFILL`, `ADD COLUMN IF NOT
//! EXISTS`, `DROP [COLUMN|INDEX] IF EXISTS`, `ADD COLUMN (a INT, b INT)`,
//! `RENAME INDEX a TO b`, `CONVERT TO CHARACTER SET`.
//!
//! Column types go through discovery's `parse_column_type` on the
//! information_schema spelling of the type (`int(10) unsigned`,
//! `enum('a','b')`), so there is one type parser.

use std::fmt;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnDef, ColumnOption, CreateTableLikeKind, Expr,
    MySQLColumnPosition, ObjectName, ObjectType, RenameTableNameKind, Statement, TableConstraint,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use synchdb_types::{
    ColumnPosition, ColumnSchema, ColumnType, ForeignKey, IndexColumn, IndexKind, IndexSchema,
    ReferentialAction, TableId, TableSchema,
};

use crate::defaults::{normalize as normalize_default, RawDefault};
use crate::discovery::parse_column_type;

/// A parsed table DDL statement. Table names are resolved against the
/// query event's default database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ddl {
    /// `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t (...)`. Textual columns
    /// without an explicit charset have `charset: None`: the caller fills the
    /// table default (`default_charset`, else the database's).
    CreateTable {
        schema: TableSchema,
        default_charset: Option<String>,
        if_not_exists: bool,
        or_replace: bool,
    },
    /// `CREATE TABLE t LIKE s`.
    CreateTableLike { table: TableId, like: TableId, if_not_exists: bool },
    /// `CREATE TABLE t ... SELECT ...`: the columns come from the query.
    CreateTableSelect { table: TableId },
    /// `DROP TABLE a, b`.
    DropTables { tables: Vec<TableId> },
    /// `DROP DATABASE d`: every table of `d` goes.
    DropDatabase { database: String },
    /// `RENAME TABLE a TO b, c TO d`.
    RenameTables { pairs: Vec<(TableId, TableId)> },
    /// `TRUNCATE [TABLE] t`.
    Truncate { table: TableId },
    /// `ALTER TABLE t op, op, ...` (also `CREATE INDEX` / `DROP INDEX`).
    AlterTable { table: TableId, ops: Vec<AlterOp> },
}

impl Ddl {
    /// Rewrite every table name the statement holds (`lower_case_table_names`).
    pub(crate) fn map_tables(&mut self, f: &dyn Fn(&mut TableId)) {
        match self {
            Ddl::CreateTable { schema, .. } => {
                f(&mut schema.id);
                for fk in &mut schema.foreign_keys {
                    f(&mut fk.referenced_table);
                }
            }
            Ddl::CreateTableLike { table, like, .. } => {
                f(table);
                f(like);
            }
            Ddl::CreateTableSelect { table } | Ddl::Truncate { table } => f(table),
            Ddl::DropTables { tables } => tables.iter_mut().for_each(f),
            Ddl::DropDatabase { .. } => {}
            Ddl::RenameTables { pairs } => {
                for (a, b) in pairs {
                    f(a);
                    f(b);
                }
            }
            Ddl::AlterTable { table, ops } => {
                f(table);
                for op in ops {
                    match op {
                        AlterOp::RenameTable { to } => f(to),
                        AlterOp::AddForeignKey { foreign_key, .. } => f(&mut foreign_key.referenced_table),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The tables the statement touches (old and new names).
    pub(crate) fn tables(&self) -> Vec<&TableId> {
        match self {
            Ddl::CreateTable { schema, .. } => vec![&schema.id],
            Ddl::CreateTableLike { table, like, .. } => vec![table, like],
            Ddl::CreateTableSelect { table } | Ddl::Truncate { table } => vec![table],
            Ddl::DropTables { tables } => tables.iter().collect(),
            Ddl::DropDatabase { .. } => vec![],
            Ddl::RenameTables { pairs } => pairs.iter().flat_map(|(a, b)| [a, b]).collect(),
            Ddl::AlterTable { table, ops } => {
                let mut v = vec![table];
                for op in ops {
                    if let AlterOp::RenameTable { to } = op {
                        v.push(to);
                    }
                }
                v
            }
        }
    }
}

/// One index definition of `ADD INDEX` / `CREATE INDEX` / inline keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IndexDef {
    /// `PRIMARY KEY (cols)`.
    Primary(Vec<String>),
    /// Another index; `name` is `None` when MySQL picks it (first column's name).
    Index { name: Option<String>, kind: IndexKind, columns: Vec<IndexColumn> },
}

/// One operation of an `ALTER TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AlterOp {
    /// `ADD [COLUMN] [IF NOT EXISTS] def [FIRST|AFTER c]`, with inline keys.
    AddColumn { column: ColumnSchema, position: ColumnPosition, if_not_exists: bool, keys: Vec<IndexDef> },
    /// `DROP [COLUMN] [IF EXISTS] c`.
    DropColumn { name: String, if_exists: bool },
    /// `MODIFY c def` (`old_name == column.name`) or `CHANGE old def`.
    ModifyColumn {
        old_name: String,
        column: ColumnSchema,
        position: Option<ColumnPosition>,
        keys: Vec<IndexDef>,
    },
    /// `RENAME COLUMN a TO b`.
    RenameColumn { from: String, to: String },
    /// `ALTER [COLUMN] c SET DEFAULT v` (`Some`) / `DROP DEFAULT` (`None`): converted
    /// to the column's type when applied.
    SetDefault { column: String, default: Option<RawDefault> },
    /// `ADD INDEX|KEY|UNIQUE|FULLTEXT|SPATIAL|PRIMARY KEY ...`.
    AddIndex(IndexDef),
    /// `DROP INDEX|KEY [IF EXISTS] name` (`PRIMARY` drops the primary key).
    DropIndex { name: String, if_exists: bool },
    /// `DROP PRIMARY KEY`.
    DropPrimaryKey,
    /// `RENAME INDEX|KEY a TO b`.
    RenameIndex { from: String, to: String },
    /// `ADD [CONSTRAINT [name]] FOREIGN KEY [IF NOT EXISTS] [index] (cols) REFERENCES t (cols) ...`.
    /// An empty `foreign_key.name` is generated when applied ([`add_foreign_key`]).
    AddForeignKey { foreign_key: ForeignKey, if_not_exists: bool },
    /// `DROP FOREIGN KEY [IF EXISTS] name`.
    DropForeignKey { name: String, if_exists: bool },
    /// `RENAME [TO|AS] t`.
    RenameTable { to: TableId },
    /// `CONVERT TO CHARACTER SET cs [COLLATE c]`: every textual column changes charset.
    ConvertCharset { charset: String, collation: Option<String> },
    /// `TRUNCATE|DROP|EXCHANGE PARTITION`, `IMPORT [PARTITION ...] TABLESPACE`,
    /// `CONVERT PARTITION ... TO TABLE t2` / `CONVERT TABLE t2 TO PARTITION`:
    /// rows removed, swapped or added without row events, so the table must
    /// be copied again. `other` is the second table whose rows change
    /// (`EXCHANGE ... WITH TABLE`, `CONVERT ... TO TABLE`); `other_goes` when
    /// that table ceases to exist (`CONVERT TABLE t2 TO PARTITION`).
    DropsRows { clause: String, other: Option<TableId>, other_goes: bool },
}

/// A DDL statement that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DdlError {
    /// What failed.
    pub(crate) message: String,
}

impl fmt::Display for DdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DdlError {}

fn err(message: impl Into<String>) -> DdlError {
    DdlError { message: message.into() }
}

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

fn is_create_table_or_index(rest: &[&str]) -> bool {
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

/// Parse a table DDL statement. `Ok(None)` when the statement does not
/// change table shapes; `Err` when it should but cannot be parsed.
pub(crate) fn parse_ddl(sql: &str, default_db: &str) -> Result<Option<Ddl>, DdlError> {
    if classify(sql) != QueryKind::TableDdl {
        return Ok(None);
    }
    let tokens = tokenize(sql)?;
    let first = upper_words(&tokens, 3);
    if first.first().map(String::as_str) == Some("ALTER") {
        return parse_alter(&tokens, default_db).map(Some);
    }
    let mut tokens = if first.first().map(String::as_str) == Some("CREATE") {
        without_partitioning(tokens)
    } else {
        tokens
    };
    // MariaDB's `RENAME TABLE IF EXISTS a TO b`: b exists after it exactly when a did,
    // which is what renaming a table the schema tracks (or not) does.
    if first.len() == 3
        && first[0] == "RENAME"
        && first[1] == "TABLE"
        && first[2] == "IF"
        && is_word(tokens.get(3), "EXISTS")
    {
        tokens.drain(2..4);
    }
    // `CREATE FULLTEXT|SPATIAL INDEX`: sqlparser reads `CREATE INDEX` (the kind is taken from `first`).
    if first.len() >= 3
        && first[0] == "CREATE"
        && matches!(first[1].as_str(), "FULLTEXT" | "SPATIAL")
        && first[2] == "INDEX"
    {
        tokens.remove(1);
    }
    let stmt = parse_tokens(tokens.clone())?;
    let db = |name: &ObjectName| table_id(name, default_db);
    Ok(match stmt {
        Statement::CreateTable(ct) => {
            let table = db(&ct.name)?;
            if let Some(like) = &ct.like {
                let like = match like {
                    CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l) => db(&l.name)?,
                };
                Some(Ddl::CreateTableLike { table, like, if_not_exists: ct.if_not_exists })
            } else if ct.query.is_some() {
                Some(Ddl::CreateTableSelect { table })
            } else {
                let mut schema = TableSchema::new(table, Vec::new());
                let mut keys = Vec::new();
                for c in &ct.columns {
                    let (col, k) = column_def(c)?;
                    schema.columns.push(col);
                    keys.extend(k);
                }
                let mut foreign_keys = Vec::new();
                for c in &ct.constraints {
                    match c {
                        TableConstraint::ForeignKey(fk) => foreign_keys.push(foreign_key(fk, default_db)?),
                        c => keys.extend(constraint(c)?),
                    }
                }
                for k in keys {
                    add_key(&mut schema, k);
                }
                // Inline `col INT REFERENCES t (c)` is not read: MySQL ignores it (MariaDB
                // 10.5+ does not); information_schema is the truth after a snapshot.
                for fk in foreign_keys {
                    add_foreign_key(&mut schema, fk);
                }
                let default_charset = table_charset_option(&tokens);
                Some(Ddl::CreateTable {
                    schema,
                    default_charset,
                    if_not_exists: ct.if_not_exists,
                    or_replace: ct.or_replace,
                })
            }
        }
        Statement::Drop { object_type: ObjectType::Table, names, .. } => {
            Some(Ddl::DropTables { tables: names.iter().map(db).collect::<Result<_, _>>()? })
        }
        Statement::Drop { object_type: ObjectType::Index, names, table: Some(table), .. } => {
            let table = db(&table)?;
            let ops = names
                .iter()
                .map(|n| Ok(AlterOp::DropIndex { name: last_ident(n)?, if_exists: false }))
                .collect::<Result<_, DdlError>>()?;
            Some(Ddl::AlterTable { table, ops })
        }
        Statement::Drop { object_type: ObjectType::Schema | ObjectType::Database, names, .. } => {
            let database = names.first().map(last_ident).transpose()?.ok_or_else(|| err("no database"))?;
            Some(Ddl::DropDatabase { database })
        }
        Statement::RenameTable(pairs) => Some(Ddl::RenameTables {
            pairs: pairs
                .iter()
                .map(|r| Ok((db(&r.old_name)?, db(&r.new_name)?)))
                .collect::<Result<_, _>>()?,
        }),
        Statement::Truncate(t) => {
            let name = t.table_names.first().ok_or_else(|| err("TRUNCATE without a table"))?;
            Some(Ddl::Truncate { table: db(&name.name)? })
        }
        Statement::CreateIndex(ci) => {
            let table = db(&ci.table_name)?;
            let name = ci.name.as_ref().map(last_ident).transpose()?;
            let columns = ci.columns.iter().map(index_column).collect::<Result<_, _>>()?;
            let kind = if ci.unique {
                IndexKind::Unique
            } else if first.iter().any(|w| w == "FULLTEXT") {
                IndexKind::FullText
            } else if first.iter().any(|w| w == "SPATIAL") {
                IndexKind::Spatial
            } else {
                IndexKind::Plain
            };
            Some(Ddl::AlterTable {
                table,
                ops: vec![AlterOp::AddIndex(IndexDef::Index { name, kind, columns })],
            })
        }
        Statement::Drop { .. } => None,
        other => return Err(err(format!("unexpected statement kind: {}", short(&other.to_string())))),
    })
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Tokenize, dropping whitespace and comments, with the MariaDB rewrites
/// that apply anywhere (`ZEROFILL`, `PERSISTENT`).
fn tokenize(sql: &str) -> Result<Vec<Token>, DdlError> {
    let raw =
        Tokenizer::new(&MySqlDialect {}, sql).tokenize().map_err(|e| err(format!("cannot tokenize: {e}")))?;
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
    Ok(spellings(national_types(without_attributes(out))))
}

/// MySQL spellings sqlparser does not read, as ones it does that mean the
/// same: `DOUBLE PRECISION(m,d)` is `DOUBLE(m,d)`; `BIT(0)` is `BIT(1)` (as
/// the server stores it); `INTERVAL(...)`, the function, is a function call
/// (sqlparser takes `INTERVAL` for the start of an interval literal).
fn spellings(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1);
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
fn national_types(tokens: Vec<Token>) -> Vec<Token> {
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
fn without_attributes(tokens: Vec<Token>) -> Vec<Token> {
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
fn without_partitioning(mut tokens: Vec<Token>) -> Vec<Token> {
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

fn parse_tokens(tokens: Vec<Token>) -> Result<Statement, DdlError> {
    let mut stmts = Parser::new(&MySqlDialect {})
        .with_tokens(tokens)
        .parse_statements()
        .map_err(|e| err(format!("sqlparser: {e}")))?;
    if stmts.len() != 1 {
        return Err(err(format!("expected one statement, found {}", stmts.len())));
    }
    Ok(stmts.remove(0))
}

fn upper_words(tokens: &[Token], n: usize) -> Vec<String> {
    tokens
        .iter()
        .take(n)
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

fn is_word(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

fn ident_of(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    }
}

/// `DEFAULT CHARSET=x` / `CHARACTER SET x` / `COLLATE=y` among the table
/// options (after the closing parenthesis of the column list).
fn table_charset_option(tokens: &[Token]) -> Option<String> {
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

fn table_id(name: &ObjectName, default_db: &str) -> Result<TableId, DdlError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.clone()).ok_or_else(|| err(format!("bad name {name}"))))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [t] if !default_db.is_empty() => Ok(TableId::new(default_db, t.clone())),
        [t] => Err(err(format!("table {t} has no database and the statement none"))),
        [d, t] => Ok(TableId::new(d.clone(), t.clone())),
        _ => Err(err(format!("bad table name {name}"))),
    }
}

fn last_ident(name: &ObjectName) -> Result<String, DdlError> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .ok_or_else(|| err(format!("bad name {name}")))
}

// ---------------------------------------------------------------- ALTER TABLE

/// `ALTER [ONLINE|OFFLINE] [IGNORE] TABLE [IF EXISTS] name op, op, ...`:
/// split the operations and parse each on its own.
fn parse_alter(tokens: &[Token], default_db: &str) -> Result<Ddl, DdlError> {
    let mut i = 1;
    while i < tokens.len() && !is_word(tokens.get(i), "TABLE") {
        i += 1;
    }
    i += 1;
    if is_word(tokens.get(i), "IF") && is_word(tokens.get(i + 1), "EXISTS") {
        i += 2;
    }
    // The table name: ident [. ident]
    let name_start = i;
    i += 1;
    if matches!(tokens.get(i), Some(Token::Period)) {
        i += 2;
    }
    let name_tokens = tokens.get(name_start..i).ok_or_else(|| err("ALTER TABLE without a table"))?;
    let table = match name_tokens {
        [Token::Word(t)] if !default_db.is_empty() => TableId::new(default_db, t.value.clone()),
        [Token::Word(d), Token::Period, Token::Word(t)] => TableId::new(d.value.clone(), t.value.clone()),
        _ => return Err(err("cannot read the table name of ALTER TABLE")),
    };
    let mut ops = Vec::new();
    for op in split_top_level(&tokens[i..]) {
        ops.extend(alter_op(op, name_tokens, default_db)?);
    }
    Ok(Ddl::AlterTable { table, ops })
}

fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
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

/// One ALTER TABLE operation (zero, one or several typed operations).
fn alter_op(op: &[Token], name: &[Token], default_db: &str) -> Result<Vec<AlterOp>, DdlError> {
    let w = upper_words(op, 4);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let mut op: Vec<Token> = op.to_vec();
    let mut if_flag = false;
    match w.as_slice() {
        // Rows removed or swapped inside the storage engine, never logged as row events.
        ["TRUNCATE" | "DROP" | "EXCHANGE", "PARTITION", ..]
        | ["IMPORT", ..]
        | ["CONVERT", "PARTITION" | "TABLE", ..] => {
            let clause = op.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
            let table_after = |kw: &str| {
                let i = op.iter().position(|t| is_word(Some(t), kw))?;
                let j = if is_word(op.get(i + 1), "TABLE") { i + 2 } else { i + 1 };
                table_name_at(&op, j, default_db).map(|(t, _)| t)
            };
            let (other, other_goes) = match w.as_slice() {
                ["EXCHANGE", ..] => (table_after("WITH"), false),
                ["CONVERT", "PARTITION", ..] => (table_after("TO"), false),
                ["CONVERT", "TABLE", ..] => (table_name_at(&op, 2, default_db).map(|(t, _)| t), true),
                _ => (None, false),
            };
            return Ok(vec![AlterOp::DropsRows { clause, other, other_goes }]);
        }
        // Table options, partitioning, ordering, locks: no shape change.
        [first, ..]
            if !matches!(*first, "ADD" | "DROP" | "MODIFY" | "CHANGE" | "RENAME" | "ALTER" | "CONVERT") =>
        {
            return Ok(vec![]);
        }
        ["DROP", "FOREIGN", "KEY", ..] => {
            let mut j = 3;
            if is_word(op.get(j), "IF") && is_word(op.get(j + 1), "EXISTS") {
                j += 2;
                if_flag = true;
            }
            let name = ident_of(op.get(j)).ok_or_else(|| err("DROP FOREIGN KEY without a name"))?;
            return Ok(vec![AlterOp::DropForeignKey { name, if_exists: if_flag }]);
        }
        ["ADD", ..] if foreign_key_at(&op).is_some() => {
            // MariaDB's `FOREIGN KEY IF NOT EXISTS`: sqlparser does not know it.
            let k = foreign_key_at(&op).unwrap_or_default() + 2;
            if is_word(op.get(k), "IF") && is_word(op.get(k + 1), "NOT") && is_word(op.get(k + 2), "EXISTS") {
                op.drain(k..k + 3);
                if_flag = true;
            }
        }
        ["ADD" | "DROP", "CONSTRAINT" | "FOREIGN" | "CHECK" | "PARTITION" | "PERIOD" | "SYSTEM", ..]
            if !is_named_key_constraint(&op) =>
        {
            return Ok(vec![]);
        }
        ["ALTER", "INDEX" | "KEY" | "CONSTRAINT" | "CHECK", ..] => return Ok(vec![]),
        ["CONVERT", "TO", ..] => {
            let charset = table_charset_option(&op).ok_or_else(|| err("CONVERT TO without a charset"))?;
            let collation = op.iter().position(|t| is_word(Some(t), "COLLATE")).and_then(|p| {
                let p = if matches!(op.get(p + 1), Some(Token::Eq)) { p + 2 } else { p + 1 };
                ident_of(op.get(p))
            });
            return Ok(vec![AlterOp::ConvertCharset { charset, collation }]);
        }
        ["RENAME", "INDEX" | "KEY", ..] => {
            let from = ident_of(op.get(2)).ok_or_else(|| err("RENAME INDEX without a name"))?;
            let to = ident_of(op.get(4)).ok_or_else(|| err("RENAME INDEX without a new name"))?;
            return Ok(vec![AlterOp::RenameIndex { from, to }]);
        }
        ["DROP", "KEY" | "INDEX", ..] => {
            let mut j = 2;
            if is_word(op.get(j), "IF") && is_word(op.get(j + 1), "EXISTS") {
                j += 2;
                if_flag = true;
            }
            let name = ident_of(op.get(j)).ok_or_else(|| err("DROP INDEX without a name"))?;
            return Ok(vec![AlterOp::DropIndex { name, if_exists: if_flag }]);
        }
        ["ADD", ..] => {
            // ADD [COLUMN] [IF NOT EXISTS] ... ; ADD [COLUMN] (def, def)
            let mut j = 1;
            let has_column = is_word(op.get(1), "COLUMN");
            if has_column {
                j = 2;
            }
            if is_word(op.get(j), "IF") && is_word(op.get(j + 1), "NOT") && is_word(op.get(j + 2), "EXISTS") {
                op.drain(j..j + 3);
                if_flag = true;
            }
            if matches!(op.get(j), Some(Token::LParen)) && (has_column || !is_key_word(op.get(j))) {
                // ADD [COLUMN] (a INT, b INT): one ADD COLUMN per definition.
                if op.len() < j + 2 || !matches!(op.last(), Some(Token::RParen)) {
                    return Err(err("ADD COLUMN (...) without its closing parenthesis"));
                }
                let inner = &op[j + 1..op.len() - 1];
                let mut out = Vec::new();
                for def in split_top_level(inner) {
                    // One level only: `ADD ((((...` must not recurse once per parenthesis.
                    if matches!(def.first(), Some(Token::LParen)) {
                        return Err(err("ADD COLUMN with nested parentheses"));
                    }
                    let mut single = vec![Token::make_keyword("ADD"), Token::make_keyword("COLUMN")];
                    single.extend_from_slice(def);
                    out.extend(alter_op(&single, name, default_db)?);
                }
                return Ok(out);
            }
        }
        // `RENAME new` and `RENAME AS new` are MySQL's spellings of `RENAME TO new`.
        ["RENAME", ..] if !["TO", "COLUMN", "INDEX", "KEY"].iter().any(|k| is_word(op.get(1), k)) => {
            if is_word(op.get(1), "AS") {
                op.remove(1);
            }
            op.insert(1, Token::make_keyword("TO"));
        }
        ["DROP", "COLUMN", "IF", "EXISTS", ..] => {
            op.drain(2..4);
            if_flag = true;
        }
        ["DROP", "IF", "EXISTS", ..] => {
            op.drain(1..3);
            if_flag = true;
        }
        _ => {}
    }
    let mut tokens = vec![Token::make_keyword("ALTER"), Token::make_keyword("TABLE")];
    tokens.extend_from_slice(name);
    tokens.extend(op);
    let Statement::AlterTable(alter) = parse_tokens(tokens)? else {
        return Err(err("not an ALTER TABLE"));
    };
    let mut out = Vec::new();
    for o in alter.operations {
        out.extend(map_alter_operation(o, default_db, if_flag)?);
    }
    Ok(out)
}

fn is_key_word(t: Option<&Token>) -> bool {
    ["INDEX", "KEY", "UNIQUE", "PRIMARY", "FULLTEXT", "SPATIAL"].iter().any(|k| is_word(t, k))
}

/// `ADD [CONSTRAINT [name]] FOREIGN KEY ...`: where `FOREIGN` is.
fn foreign_key_at(op: &[Token]) -> Option<usize> {
    (1..=3).find(|&i| {
        (i == 1 || is_word(op.get(1), "CONSTRAINT"))
            && is_word(op.get(i), "FOREIGN")
            && is_word(op.get(i + 1), "KEY")
    })
}

/// `ADD CONSTRAINT [name] PRIMARY KEY|UNIQUE ...` is an index, not a check or foreign key.
fn is_named_key_constraint(op: &[Token]) -> bool {
    is_word(op.get(1), "CONSTRAINT")
        && op.iter().skip(2).take(2).any(|t| is_word(Some(t), "PRIMARY") || is_word(Some(t), "UNIQUE"))
}

fn map_alter_operation(
    op: AlterTableOperation,
    default_db: &str,
    if_flag: bool,
) -> Result<Vec<AlterOp>, DdlError> {
    Ok(match op {
        AlterTableOperation::AddColumn { column_def, column_position, if_not_exists, .. } => {
            let (column, keys) = column_def_of(&column_def)?;
            vec![AlterOp::AddColumn {
                column,
                position: position(column_position).unwrap_or(ColumnPosition::Last),
                if_not_exists: if_not_exists || if_flag,
                keys,
            }]
        }
        AlterTableOperation::DropColumn { column_names, if_exists, .. } => column_names
            .into_iter()
            .map(|n| AlterOp::DropColumn { name: n.value, if_exists: if_exists || if_flag })
            .collect(),
        AlterTableOperation::ModifyColumn { col_name, data_type, options, column_position } => {
            let def = ColumnDef { name: col_name.clone(), data_type, options: wrap_options(options) };
            let (column, keys) = column_def_of(&def)?;
            vec![AlterOp::ModifyColumn {
                old_name: col_name.value,
                column,
                position: position(column_position),
                keys,
            }]
        }
        AlterTableOperation::ChangeColumn { old_name, new_name, data_type, options, column_position } => {
            let def = ColumnDef { name: new_name, data_type, options: wrap_options(options) };
            let (column, keys) = column_def_of(&def)?;
            vec![AlterOp::ModifyColumn {
                old_name: old_name.value,
                column,
                position: position(column_position),
                keys,
            }]
        }
        AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
            vec![AlterOp::RenameColumn { from: old_column_name.value, to: new_column_name.value }]
        }
        AlterTableOperation::AlterColumn { column_name, op } => match op {
            AlterColumnOperation::SetDefault { value } => {
                vec![AlterOp::SetDefault { column: column_name.value, default: Some(default_of(&value)) }]
            }
            AlterColumnOperation::DropDefault => {
                vec![AlterOp::SetDefault { column: column_name.value, default: None }]
            }
            other => return Err(err(format!("unsupported ALTER COLUMN operation {other}"))),
        },
        AlterTableOperation::AddConstraint { constraint: TableConstraint::ForeignKey(fk), .. } => {
            vec![AlterOp::AddForeignKey {
                foreign_key: foreign_key(&fk, default_db)?,
                if_not_exists: if_flag,
            }]
        }
        AlterTableOperation::AddConstraint { constraint: c, .. } => {
            constraint(&c)?.into_iter().map(AlterOp::AddIndex).collect()
        }
        AlterTableOperation::DropForeignKey { name, .. } => {
            vec![AlterOp::DropForeignKey { name: name.value, if_exists: if_flag }]
        }
        AlterTableOperation::DropIndex { name } => {
            vec![AlterOp::DropIndex { name: name.value, if_exists: if_flag }]
        }
        AlterTableOperation::DropPrimaryKey { .. } => vec![AlterOp::DropPrimaryKey],
        AlterTableOperation::RenameTable { table_name } => {
            let name = match table_name {
                RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => n,
            };
            vec![AlterOp::RenameTable { to: table_id(&name, default_db)? }]
        }
        AlterTableOperation::DropConstraint { .. }
        | AlterTableOperation::Algorithm { .. }
        | AlterTableOperation::Lock { .. }
        | AlterTableOperation::AutoIncrement { .. } => vec![],
        other => return Err(err(format!("unsupported ALTER TABLE operation {other}"))),
    })
}

fn wrap_options(options: Vec<ColumnOption>) -> Vec<sqlparser::ast::ColumnOptionDef> {
    options.into_iter().map(|option| sqlparser::ast::ColumnOptionDef { name: None, option }).collect()
}

fn position(p: Option<MySQLColumnPosition>) -> Option<ColumnPosition> {
    p.map(|p| match p {
        MySQLColumnPosition::First => ColumnPosition::First,
        MySQLColumnPosition::After(c) => ColumnPosition::After(c.value),
    })
}

// ---------------------------------------------------------------- columns and keys

fn column_def(c: &ColumnDef) -> Result<(ColumnSchema, Vec<IndexDef>), DdlError> {
    column_def_of(c)
}

/// A column definition: the column and the keys declared inline
/// (`PRIMARY KEY`, `UNIQUE`).
fn column_def_of(c: &ColumnDef) -> Result<(ColumnSchema, Vec<IndexDef>), DdlError> {
    let (column_type_text, data_type) = type_text(&c.data_type.to_string());
    let column_type = parse_column_type(&column_type_text, &data_type)
        .map_err(|e| err(format!("column {}: {e}", c.name.value)))?;
    let mut col = ColumnSchema::new(c.name.value.clone(), column_type);
    let mut keys = Vec::new();
    for o in &c.options {
        match &o.option {
            ColumnOption::Null => col.nullable = true,
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Default(e) => {
                let raw = default_of(e);
                let value = normalize_default(&col.column_type, &raw)
                    .map_err(|why| err(format!("column {}: default {raw:?}: {why}", c.name.value)))?;
                col.default = Some(value);
            }
            ColumnOption::PrimaryKey(_) => {
                col.nullable = false;
                keys.push(IndexDef::Primary(vec![col.name.clone()]));
            }
            ColumnOption::Unique(_) => keys.push(IndexDef::Index {
                name: None,
                kind: IndexKind::Unique,
                columns: vec![IndexColumn::new(col.name.clone())],
            }),
            ColumnOption::DialectSpecific(tokens)
                if tokens
                    .iter()
                    .any(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::AUTO_INCREMENT)) =>
            {
                col.auto_increment = true;
            }
            ColumnOption::CharacterSet(cs) => col.charset = Some(name_text(cs)),
            ColumnOption::Collation(c) => col.collation = Some(name_text(c)),
            ColumnOption::Comment(s) => col.comment = s.clone(),
            ColumnOption::OnUpdate(e) => col.on_update = Some(expr_text(e)),
            ColumnOption::Generated { generation_expr: Some(e), .. } => col.generated = Some(e.to_string()),
            _ => {}
        }
    }
    if col.charset.is_none() {
        if let Some(c) = &col.collation {
            col.charset = c.split('_').next().map(str::to_string);
        }
    }
    if col.column_type == ColumnType::Json && col.charset.is_none() {
        // MariaDB's JSON is LONGTEXT CHARSET utf8mb4 COLLATE utf8mb4_bin.
        col.charset = Some("utf8mb4".into());
    }
    Ok((col, keys))
}

fn name_text(n: &ObjectName) -> String {
    n.0.iter().filter_map(|p| p.as_ident().map(|i| i.value.clone())).collect::<Vec<_>>().join(".")
}

/// MySQL prints expressions in lower case without spaces before parentheses.
fn expr_text(e: &Expr) -> String {
    let s = e.to_string();
    if matches!(e, Expr::Function(_) | Expr::Identifier(_)) {
        let lower = s.to_ascii_lowercase();
        if lower == "current_timestamp" || lower == "now" || lower == "localtimestamp" {
            return "current_timestamp()".into();
        }
        if lower.starts_with("now(") || lower.starts_with("localtimestamp(") {
            return format!("current_timestamp({}", lower.split_once('(').map_or("", |x| x.1));
        }
        return lower;
    }
    s
}

fn default_of(e: &Expr) -> RawDefault {
    use sqlparser::ast::Value as V;
    match e {
        Expr::Value(v) => match &v.value {
            V::Null => RawDefault::Null,
            V::SingleQuotedString(s) | V::DoubleQuotedString(s) => RawDefault::Str(s.clone()),
            V::Number(n, _) => RawDefault::Num(n.to_string()),
            V::Boolean(b) => RawDefault::Num(if *b { "1".into() } else { "0".into() }),
            V::SingleQuotedByteStringLiteral(s) => RawDefault::Bits(s.clone()),
            V::HexStringLiteral(s) => RawDefault::Hex(s.clone()),
            other => RawDefault::Expr(other.to_string()),
        },
        Expr::UnaryOp { op: sqlparser::ast::UnaryOperator::Minus, expr } => match default_of(expr) {
            RawDefault::Num(s) => RawDefault::Num(match s.strip_prefix('-') {
                Some(pos) => pos.to_string(),
                None => format!("-{s}"),
            }),
            _ => RawDefault::Expr(e.to_string()),
        },
        Expr::UnaryOp { op: sqlparser::ast::UnaryOperator::Plus, expr } => default_of(expr),
        Expr::Nested(inner) => match default_of(inner) {
            RawDefault::Expr(_) => RawDefault::Expr(expr_text(e)),
            literal => literal,
        },
        other => {
            let text = expr_text(other);
            // `0b0101` and `0x1F` may come through as words.
            let lower = text.to_ascii_lowercase();
            match (lower.strip_prefix("0b"), lower.strip_prefix("0x")) {
                (Some(b), _) if !b.is_empty() && b.bytes().all(|c| c == b'0' || c == b'1') => {
                    RawDefault::Bits(b.to_string())
                }
                (_, Some(h)) if !h.is_empty() && h.bytes().all(|c| c.is_ascii_hexdigit()) => {
                    RawDefault::Hex(h.to_string())
                }
                _ => RawDefault::Expr(text),
            }
        }
    }
}

/// sqlparser's spelling of a type → information_schema's `(COLUMN_TYPE,
/// DATA_TYPE)`: lower case outside quotes, no spaces after commas,
/// synonyms resolved, MariaDB's default display widths and lengths.
pub(crate) fn type_text(sqlparser_type: &str) -> (String, String) {
    let mut s = String::with_capacity(sqlparser_type.len());
    let mut quote = false;
    let mut prev = ' ';
    for ch in sqlparser_type.chars() {
        if ch == '\'' {
            quote = !quote;
        }
        if !quote && ch == ' ' && prev == ',' {
            continue;
        }
        s.push(if quote { ch } else { ch.to_ascii_lowercase() });
        prev = ch;
    }
    let (head, rest) = match s.find(['(', ' ']) {
        Some(p) => (s[..p].to_string(), s[p..].to_string()),
        None => (s.clone(), String::new()),
    };
    let (args, tail) = if rest.starts_with('(') {
        let close = matching_paren(&rest).unwrap_or(rest.len() - 1);
        (Some(rest[1..close].to_string()), rest[close + 1..].trim().to_string())
    } else {
        (None, rest.trim().to_string())
    };
    let mut tail = tail;
    let mut head = head;
    if head == "double" && tail.starts_with("precision") {
        tail = tail["precision".len()..].trim().to_string();
    }
    let unsigned = tail.split_whitespace().any(|w| w == "unsigned");
    let suffix = if unsigned { " unsigned" } else { "" };
    head = match head.as_str() {
        "integer" => "int".into(),
        "int1" => "tinyint".into(),
        "int2" => "smallint".into(),
        "int3" | "middleint" => "mediumint".into(),
        "int4" => "int".into(),
        "int8" => "bigint".into(),
        "real" | "float8" => "double".into(),
        "float4" => "float".into(),
        "numeric" | "dec" | "fixed" => "decimal".into(),
        "nvarchar" | "varchar2" | "nationalvarchar" => "varchar".into(),
        "nchar" | "character" => "char".into(),
        "bytea" => "blob".into(),
        _ => head,
    };
    let ct = match (head.as_str(), args.as_deref()) {
        ("bool" | "boolean", _) => "tinyint(1)".to_string(),
        ("tinyint", None) => format!("tinyint({}){suffix}", if unsigned { 3 } else { 4 }),
        ("smallint", None) => format!("smallint({}){suffix}", if unsigned { 5 } else { 6 }),
        ("mediumint", None) => format!("mediumint({}){suffix}", if unsigned { 8 } else { 9 }),
        ("int", None) => format!("int({}){suffix}", if unsigned { 10 } else { 11 }),
        ("bigint", None) => format!("bigint(20){suffix}"),
        ("decimal", None) => format!("decimal(10,0){suffix}"),
        ("decimal", Some(a)) if !a.contains(',') => format!("decimal({a},0){suffix}"),
        ("float", Some(a)) if !a.contains(',') => {
            let p: u32 = a.trim().parse().unwrap_or(0);
            if p > 24 {
                format!("double{suffix}")
            } else {
                format!("float{suffix}")
            }
        }
        ("char" | "binary", None) => format!("{head}(1)"),
        ("bit", None) => "bit(1)".to_string(),
        ("datetime" | "timestamp" | "time", Some("0")) => head.clone(),
        ("enum" | "set", Some(a)) => format!("{head}({a})"),
        (h, Some(a)) => format!("{h}({a}){suffix}"),
        (h, None) => format!("{h}{suffix}"),
    };
    let data_type = if head == "bool" || head == "boolean" { "tinyint".to_string() } else { head };
    (ct, data_type)
}

fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote = false;
    for (i, ch) in s.char_indices() {
        match ch {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn index_column(c: &sqlparser::ast::IndexColumn) -> Result<IndexColumn, DdlError> {
    let descending = matches!(c.column.options.sort, Some(sqlparser::ast::OrderBySort::Desc));
    match &c.column.expr {
        Expr::Identifier(i) => Ok(IndexColumn { name: i.value.clone(), prefix_length: None, descending }),
        // `name(10)` parses as a function call.
        Expr::Function(f) => {
            let name = last_ident(&f.name)?;
            let text = f.args.to_string();
            let len = text.trim_matches(|c| c == '(' || c == ')').trim().parse().ok();
            Ok(IndexColumn { name, prefix_length: len, descending })
        }
        other => Err(err(format!("unsupported index part {other}"))),
    }
}

fn constraint(c: &TableConstraint) -> Result<Vec<IndexDef>, DdlError> {
    let cols =
        |cs: &[sqlparser::ast::IndexColumn]| cs.iter().map(index_column).collect::<Result<Vec<_>, _>>();
    Ok(match c {
        TableConstraint::PrimaryKey(pk) => {
            vec![IndexDef::Primary(cols(&pk.columns)?.into_iter().map(|c| c.name).collect())]
        }
        TableConstraint::Unique(u) => vec![IndexDef::Index {
            name: u.index_name.as_ref().or(u.name.as_ref()).map(|i| i.value.clone()),
            kind: IndexKind::Unique,
            columns: cols(&u.columns)?,
        }],
        TableConstraint::Index(ix) => vec![IndexDef::Index {
            name: ix.name.as_ref().map(|i| i.value.clone()),
            kind: IndexKind::Plain,
            columns: cols(&ix.columns)?,
        }],
        TableConstraint::FulltextOrSpatial(f) => vec![IndexDef::Index {
            name: f.opt_index_name.as_ref().map(|i| i.value.clone()),
            kind: if f.fulltext { IndexKind::FullText } else { IndexKind::Spatial },
            columns: cols(&f.columns)?,
        }],
        _ => vec![],
    })
}

/// A foreign key as declared; the name is empty when MySQL generates it. Without a
/// `CONSTRAINT` name, MariaDB names the key after its index name when one is given.
/// Unspecified actions are RESTRICT (as information_schema reports them).
fn foreign_key(fk: &sqlparser::ast::ForeignKeyConstraint, default_db: &str) -> Result<ForeignKey, DdlError> {
    let action = |a: Option<sqlparser::ast::ReferentialAction>| {
        use sqlparser::ast::ReferentialAction as A;
        match a {
            None | Some(A::Restrict) => ReferentialAction::Restrict,
            Some(A::Cascade) => ReferentialAction::Cascade,
            Some(A::SetNull) => ReferentialAction::SetNull,
            Some(A::NoAction) => ReferentialAction::NoAction,
            Some(A::SetDefault) => ReferentialAction::SetDefault,
        }
    };
    let idents = |v: &[sqlparser::ast::Ident]| v.iter().map(|i| i.value.clone()).collect::<Vec<_>>();
    let out = ForeignKey {
        name: fk.name.as_ref().or(fk.index_name.as_ref()).map(|i| i.value.clone()).unwrap_or_default(),
        columns: idents(&fk.columns),
        referenced_table: table_id(&fk.foreign_table, default_db)?,
        referenced_columns: idents(&fk.referred_columns),
        on_update: action(fk.on_update),
        on_delete: action(fk.on_delete),
    };
    if out.columns.is_empty() || out.columns.len() != out.referenced_columns.len() {
        return Err(err(format!("foreign key {fk}: columns and referenced columns do not pair up")));
    }
    Ok(out)
}

/// Add a foreign key to a schema, naming an unnamed one as MySQL does
/// (`<table>_ibfk_<n>`, `n` one past the highest such number). Returns it as added.
pub(crate) fn add_foreign_key(schema: &mut TableSchema, mut fk: ForeignKey) -> ForeignKey {
    for c in &mut fk.columns {
        *c = column_spelling(schema, c);
    }
    if fk.referenced_table == schema.id {
        for c in &mut fk.referenced_columns {
            *c = column_spelling(schema, c);
        }
    }
    if fk.name.is_empty() {
        let table = &schema.id.table;
        let n = schema.foreign_keys.iter().filter_map(|k| generated_fk_number(&k.name, table)).max();
        fk.name = format!("{table}_ibfk_{}", n.unwrap_or(0) + 1);
    }
    schema.foreign_keys.push(fk.clone());
    fk
}

/// `n` when `name` is `<table>_ibfk_<n>`, a name InnoDB generated (and renames with the table).
pub(crate) fn generated_fk_number(name: &str, table: &str) -> Option<u64> {
    let prefix = format!("{table}_ibfk_");
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(&prefix).then(|| name[prefix.len()..].parse().ok())?
}

/// Add a key to a schema, naming an unnamed index as MySQL does (after its
/// first column, `_2`, `_3`, ... when taken). Returns the index as added.
/// The position of column `name` in `schema`, compared as MySQL compares
/// column names: without regard to case (the exact spelling first).
pub(crate) fn find_column(schema: &TableSchema, name: &str) -> Option<usize> {
    schema.column_index(name).or_else(|| {
        let folded = name.to_lowercase();
        schema.columns.iter().position(|c| c.name.to_lowercase() == folded)
    })
}

/// `name` as the column of `schema` spells it (unchanged when there is no such column).
pub(crate) fn column_spelling(schema: &TableSchema, name: &str) -> String {
    find_column(schema, name).map(|i| schema.columns[i].name.clone()).unwrap_or_else(|| name.to_string())
}

pub(crate) fn add_key(schema: &mut TableSchema, key: IndexDef) -> Option<IndexSchema> {
    // Key columns are named in any case; the replica's keys use the columns' own spelling.
    let key = match key {
        IndexDef::Primary(cols) => {
            IndexDef::Primary(cols.iter().map(|c| column_spelling(schema, c)).collect())
        }
        IndexDef::Index { name, kind, mut columns } => {
            for c in &mut columns {
                c.name = column_spelling(schema, &c.name);
            }
            IndexDef::Index { name, kind, columns }
        }
    };
    match key {
        IndexDef::Primary(cols) => {
            for c in &cols {
                if let Some(i) = schema.column_index(c) {
                    schema.columns[i].nullable = false;
                }
            }
            schema.primary_key = cols;
            None
        }
        IndexDef::Index { name, kind, columns } => {
            let name = name.unwrap_or_else(|| {
                let base = columns.first().map(|c| c.name.clone()).unwrap_or_else(|| "key".into());
                let mut candidate = base.clone();
                let mut n = 2;
                while schema.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(&candidate)) {
                    candidate = format!("{base}_{n}");
                    n += 1;
                }
                candidate
            });
            let ix = IndexSchema { name, kind, columns };
            schema.indexes.push(ix.clone());
            Some(ix)
        }
    }
}

/// Names of the tables a DDL statement may touch, from its tokens only (no
/// full parse): used to ignore statements about unselected tables cheaply.
/// `None` when the names cannot be told (the caller then parses).
/// The table named at `tokens[i]` (`db.t` or `t` in the default database) and
/// the index after it.
fn table_name_at(tokens: &[Token], i: usize, default_db: &str) -> Option<(TableId, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::ColumnDefault;
    use synchdb_types::IntWidth;

    fn parse(sql: &str) -> Ddl {
        parse_ddl(sql, "db")
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: ignored"))
    }

    fn ops(sql: &str) -> Vec<AlterOp> {
        match parse(sql) {
            Ddl::AlterTable { ops, .. } => ops,
            other => panic!("not an alter: {other:?}"),
        }
    }

    #[test]
    fn classifies_statements_cheaply() {
        assert_eq!(classify("BEGIN"), QueryKind::Begin);
        assert_eq!(classify("COMMIT"), QueryKind::Commit);
        assert_eq!(classify("ROLLBACK"), QueryKind::Rollback);
        assert_eq!(classify("ROLLBACK TO SAVEPOINT a"), QueryKind::Other);
        assert_eq!(classify("SAVEPOINT a"), QueryKind::Other);
        assert_eq!(classify("/* x */ ALTER TABLE t ADD c INT"), QueryKind::TableDdl);
        assert_eq!(classify("ALTER ONLINE IGNORE TABLE t ADD c INT"), QueryKind::TableDdl);
        assert_eq!(classify("create or replace table t (a int)"), QueryKind::TableDdl);
        assert_eq!(classify("CREATE UNIQUE INDEX i ON t (a)"), QueryKind::TableDdl);
        assert_eq!(classify("CREATE VIEW v AS SELECT 1"), QueryKind::Other);
        assert_eq!(
            classify("CREATE DEFINER=`root`@`localhost` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @a=1"),
            QueryKind::Other
        );
        assert_eq!(classify("CREATE USER u"), QueryKind::Other);
        assert_eq!(classify("GRANT ALL ON *.* TO u"), QueryKind::Other);
        assert_eq!(classify("FLUSH PRIVILEGES"), QueryKind::Other);
        assert_eq!(classify("ANALYZE TABLE t"), QueryKind::Other);
        assert_eq!(classify("INSERT INTO t VALUES (1)"), QueryKind::Dml);
        for sql in [
            "ALTER TABLE t MODIFY c VARCHAR(20) BINARY NOT NULL",
            "ALTER TABLE t ADD PRIMARY KEY USING BTREE (id)",
            "ALTER TABLE t ADD FULLTEXT KEY ft (a, b) WITH PARSER ngram",
            "ALTER TABLE t ADD INDEX k2 (a) IGNORED, ADD INDEX k3 (b) NOT IGNORED",
            "CREATE TABLE t2 (id BINARY(16) PRIMARY KEY, p VARCHAR(40) BINARY, q TEXT BINARY, KEY k USING HASH (p))",
        ] {
            assert!(matches!(parse_ddl(sql, "db"), Ok(Some(_))), "{sql}: {:?}", parse_ddl(sql, "db"));
        }
        let Ok(Some(Ddl::CreateTable { schema, .. })) =
            parse_ddl("CREATE TABLE t2 (id BINARY(16) PRIMARY KEY, p VARCHAR(40) BINARY)", "db")
        else {
            panic!()
        };
        assert_eq!(schema.columns[0].column_type, ColumnType::Binary { length: 16 });
        assert_eq!(classify("/* x */ DELETE FROM `db`.`mem`"), QueryKind::Dml);
        assert_eq!(classify("LOAD DATA INFILE 'f' INTO TABLE t"), QueryKind::Dml);
        let t = |d: &str, n: &str| TableId::new(d, n);
        assert_eq!(dml_tables("INSERT IGNORE INTO a.t (x) VALUES (1)", "db"), Some(vec![t("a", "t")]));
        assert_eq!(dml_tables("REPLACE t SELECT * FROM u", "db"), Some(vec![t("db", "t")]));
        assert_eq!(dml_tables("UPDATE LOW_PRIORITY t SET x = 1", "db"), Some(vec![t("db", "t")]));
        assert_eq!(
            dml_tables("UPDATE t a, b.u c SET a.x = c.x", "db"),
            Some(vec![t("db", "t"), t("b", "u")])
        );
        assert_eq!(dml_tables("UPDATE t JOIN u ON t.id = u.id SET t.x = 1", "db"), None);
        assert_eq!(dml_tables("DELETE QUICK FROM `db`.`mem`", "x"), Some(vec![t("db", "mem")]));
        assert_eq!(dml_tables("DELETE t FROM t JOIN u", "db"), None);
        assert_eq!(dml_tables("LOAD DATA LOCAL INFILE 'f' INTO TABLE t", "db"), Some(vec![t("db", "t")]));
        assert_eq!(classify("SET @a = 1"), QueryKind::Other);
        assert_eq!(classify("DROP TEMPORARY TABLE IF EXISTS t"), QueryKind::Other);
        assert_eq!(classify("DROP TABLE `t` /* generated by server */"), QueryKind::TableDdl);
        assert_eq!(classify("TRUNCATE t"), QueryKind::TableDdl);
        assert_eq!(classify("# comment\nRENAME TABLE a TO b"), QueryKind::TableDdl);
        assert_eq!(classify("XA START 'x'"), QueryKind::Begin);
        assert_eq!(parse_ddl("CREATE VIEW v AS SELECT 1", "db").unwrap(), None);
        assert_eq!(
            parse_ddl("ALTER TABLE p TRUNCATE PARTITION p0, p1", "db").unwrap(),
            Some(Ddl::AlterTable {
                table: TableId::new("db", "p"),
                ops: vec![AlterOp::DropsRows {
                    clause: "TRUNCATE PARTITION p0".into(),
                    other: None,
                    other_goes: false
                }]
            })
        );
        let ops = |sql: &str| match parse_ddl(sql, "db").unwrap() {
            Some(Ddl::AlterTable { ops, .. }) => ops,
            other => panic!("{other:?}"),
        };
        assert!(matches!(&ops("ALTER TABLE p EXCHANGE PARTITION p0 WITH TABLE o.q")[..],
            [AlterOp::DropsRows { other: Some(t), other_goes: false, .. }] if *t == TableId::new("o", "q")));
        assert!(matches!(&ops("ALTER TABLE p CONVERT PARTITION p0 TO TABLE q")[..],
            [AlterOp::DropsRows { other: Some(t), other_goes: false, .. }] if t.table == "q"));
        assert!(matches!(&ops("ALTER TABLE p CONVERT TABLE q TO PARTITION p9 VALUES LESS THAN (10)")[..],
            [AlterOp::DropsRows { other: Some(t), other_goes: true, .. }] if t.table == "q"));
        assert!(matches!(
            &ops("ALTER TABLE p IMPORT TABLESPACE")[..],
            [AlterOp::DropsRows { other: None, .. }]
        ));
        for sql in ["ALTER TABLE p DROP PARTITION p0", "ALTER TABLE p EXCHANGE PARTITION p0 WITH TABLE q"] {
            assert!(
                matches!(parse_ddl(sql, "db").unwrap(), Some(Ddl::AlterTable { ops, .. }) if matches!(ops[..], [AlterOp::DropsRows { .. }])),
                "{sql}"
            );
        }
        for sql in [
            "ALTER TABLE p REORGANIZE PARTITION p0 INTO (PARTITION a VALUES LESS THAN (5))",
            "ALTER TABLE p PARTITION BY HASH (id) PARTITIONS 4",
            "ALTER TABLE p REMOVE PARTITIONING",
        ] {
            assert_eq!(
                parse_ddl(sql, "db").unwrap(),
                Some(Ddl::AlterTable { table: TableId::new("db", "p"), ops: vec![] }),
                "{sql}"
            );
        }
        let Some(Ddl::CreateTable { schema, .. }) = parse_ddl(
            "CREATE TABLE p (id INT NOT NULL, v INT, PRIMARY KEY (id)) ENGINE=InnoDB PARTITION BY RANGE (id) \
             (PARTITION p0 VALUES LESS THAN (100), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            "db",
        )
        .unwrap() else {
            panic!("a partitioned CREATE TABLE parses")
        };
        assert_eq!(schema.columns.len(), 2);
        assert_eq!(schema.primary_key, vec!["id".to_string()]);
    }

    #[test]
    fn create_table_with_types_keys_and_options() {
        let sql = "CREATE TABLE `t1` (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
            name VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT 'x' COMMENT 'hi', \
            e ENUM('a','b c') NOT NULL, d DECIMAL(65,30), \
            ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
            u UUID, i6 INET6, b BIT(10), j JSON, z INT(5) ZEROFILL, \
            KEY idx_name (name(10)), UNIQUE KEY uk (e, d DESC), UNIQUE (d)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        let Ddl::CreateTable { schema, default_charset, if_not_exists, or_replace } = parse(sql) else {
            panic!()
        };
        assert_eq!(schema.id, TableId::new("db", "t1"));
        assert_eq!(default_charset.as_deref(), Some("utf8mb4"));
        assert!(!if_not_exists && !or_replace);
        let c = &schema.columns;
        assert_eq!(c.len(), 10);
        assert_eq!(
            c[0].column_type,
            ColumnType::Integer { width: IntWidth::Int, unsigned: true, display_width: Some(10) }
        );
        assert!(c[0].auto_increment && !c[0].nullable);
        assert_eq!(c[1].column_type, ColumnType::VarChar { length: 20 });
        assert_eq!(c[1].charset.as_deref(), Some("latin1"));
        assert_eq!(c[1].collation.as_deref(), Some("latin1_swedish_ci"));
        assert_eq!(c[1].default, Some(ColumnDefault::Literal("x".into())));
        assert_eq!(c[1].comment, "hi");
        assert_eq!(c[2].column_type, ColumnType::Enum { members: vec!["a".into(), "b c".into()] });
        assert_eq!(c[3].column_type, ColumnType::Decimal { precision: 65, scale: 30, unsigned: false });
        assert_eq!(c[4].column_type, ColumnType::Timestamp { fsp: 6 });
        assert_eq!(c[4].default, Some(ColumnDefault::Expression("current_timestamp(6)".into())));
        assert_eq!(c[4].on_update.as_deref(), Some("current_timestamp(6)"));
        assert_eq!(c[5].column_type, ColumnType::Uuid);
        assert_eq!(c[6].column_type, ColumnType::Inet6);
        assert_eq!(c[7].column_type, ColumnType::Bit { width: 10 });
        assert_eq!(c[8].column_type, ColumnType::Json);
        assert_eq!(
            c[9].column_type,
            ColumnType::Integer { width: IntWidth::Int, unsigned: true, display_width: Some(5) }
        );
        assert_eq!(schema.primary_key, vec!["id".to_string()]);
        assert_eq!(schema.indexes.len(), 3);
        assert_eq!(schema.indexes[0].name, "idx_name");
        assert_eq!(schema.indexes[0].columns[0].prefix_length, Some(10));
        assert_eq!(schema.indexes[1].kind, IndexKind::Unique);
        assert!(schema.indexes[1].columns[1].descending);
        assert_eq!(schema.indexes[2].name, "d");
    }

    #[test]
    fn national_types_and_double_quoted_strings() {
        let sql = "CREATE TABLE b (id INT PRIMARY KEY, a NATIONAL VARCHAR(5), b NCHAR(2), c NVARCHAR(3), \
            d NCHAR VARCHAR(4), e NATIONAL CHARACTER VARYING(6), f NATIONAL CHAR(2), g NCHAR VARYING(3), \
            h NATIONAL CHAR VARYING(3) NOT NULL COMMENT \"dq\" DEFAULT \"x\") ENGINE=MyISAM COMMENT=\"t\"";
        let Ddl::CreateTable { schema, .. } = parse(sql) else { panic!() };
        let types: Vec<(String, Option<String>)> =
            schema.columns[1..].iter().map(|c| (c.column_type.to_string(), c.charset.clone())).collect();
        let want = [
            "varchar(5)",
            "char(2)",
            "varchar(3)",
            "varchar(4)",
            "varchar(6)",
            "char(2)",
            "varchar(3)",
            "varchar(3)",
        ];
        for ((t, cs), w) in types.iter().zip(want) {
            assert_eq!((t.as_str(), cs.as_deref()), (w, Some("utf8mb3")), "{types:?}");
        }
        let h = &schema.columns[8];
        assert!(!h.nullable);
        assert_eq!((h.comment.as_str(), h.default.clone()), ("dq", Some(ColumnDefault::Literal("x".into()))));
        // `NCHAR` as a column name is still a name.
        let Ddl::CreateTable { schema, .. } = parse("CREATE TABLE n (nchar INT, national INT)") else {
            panic!()
        };
        assert_eq!(schema.columns[0].name, "nchar");
    }

    #[test]
    fn type_spellings_follow_information_schema() {
        for (sql, ct) in [
            ("INT", "int(11)"),
            ("INTEGER UNSIGNED", "int(10) unsigned"),
            ("TINYINT(1)", "tinyint(1)"),
            ("BOOL", "tinyint(1)"),
            ("BIGINT UNSIGNED", "bigint(20) unsigned"),
            ("DECIMAL", "decimal(10,0)"),
            ("NUMERIC(10)", "decimal(10,0)"),
            ("DECIMAL(65, 30)", "decimal(65,30)"),
            ("DOUBLE PRECISION", "double"),
            ("REAL", "double"),
            ("FLOAT(30)", "double"),
            ("CHAR", "char(1)"),
            ("ENUM('A', 'b, c')", "enum('A','b, c')"),
            ("DATETIME(6)", "datetime(6)"),
            ("VARBINARY(16)", "varbinary(16)"),
        ] {
            assert_eq!(type_text(sql).0, ct, "{sql}");
        }
        assert_eq!(type_text("INT UNSIGNED").1, "int");
    }

    #[test]
    fn create_table_like_select_and_replace() {
        assert_eq!(
            parse("CREATE TABLE IF NOT EXISTS t3 LIKE other.t1"),
            Ddl::CreateTableLike {
                table: TableId::new("db", "t3"),
                like: TableId::new("other", "t1"),
                if_not_exists: true
            }
        );
        assert_eq!(
            parse("CREATE TABLE t4 AS SELECT * FROM t1"),
            Ddl::CreateTableSelect { table: TableId::new("db", "t4") }
        );
        let Ddl::CreateTable { or_replace, .. } = parse("CREATE OR REPLACE TABLE t5 (a int)") else {
            panic!()
        };
        assert!(or_replace);
    }

    #[test]
    fn drop_rename_truncate() {
        assert_eq!(
            parse("DROP TABLE IF EXISTS `a`,`x`.`b` /* generated by server */"),
            Ddl::DropTables { tables: vec![TableId::new("db", "a"), TableId::new("x", "b")] }
        );
        assert_eq!(
            parse("RENAME TABLE a TO b, x.c TO y.d"),
            Ddl::RenameTables {
                pairs: vec![
                    (TableId::new("db", "a"), TableId::new("db", "b")),
                    (TableId::new("x", "c"), TableId::new("y", "d"))
                ]
            }
        );
        assert_eq!(parse("TRUNCATE t1"), Ddl::Truncate { table: TableId::new("db", "t1") });
        assert_eq!(parse("TRUNCATE TABLE x.t1"), Ddl::Truncate { table: TableId::new("x", "t1") });
        assert_eq!(parse("DROP DATABASE IF EXISTS x"), Ddl::DropDatabase { database: "x".into() });
        assert_eq!(
            ops("ALTER TABLE t1 RENAME TO t2"),
            vec![AlterOp::RenameTable { to: TableId::new("db", "t2") }]
        );
        assert_eq!(
            ops("ALTER TABLE t1 RENAME AS x.t2"),
            vec![AlterOp::RenameTable { to: TableId::new("x", "t2") }]
        );
    }

    #[test]
    fn alter_column_operations() {
        let o = ops("ALTER TABLE t1 ADD COLUMN c INT AFTER id, DROP COLUMN x, MODIFY name VARCHAR(30) NOT NULL FIRST, \
            CHANGE old new BIGINT, RENAME COLUMN a TO b, ALTER COLUMN c SET DEFAULT 5, ALTER c DROP DEFAULT, \
            ALGORITHM=INPLACE, LOCK=NONE, ENGINE=InnoDB");
        assert_eq!(o.len(), 7, "{o:?}");
        let AlterOp::AddColumn { column, position, .. } = &o[0] else { panic!() };
        assert_eq!(column.name, "c");
        assert_eq!(position, &ColumnPosition::After("id".into()));
        assert_eq!(o[1], AlterOp::DropColumn { name: "x".into(), if_exists: false });
        let AlterOp::ModifyColumn { old_name, column, position, .. } = &o[2] else { panic!() };
        assert_eq!((old_name.as_str(), column.name.as_str(), column.nullable), ("name", "name", false));
        assert_eq!(position, &Some(ColumnPosition::First));
        let AlterOp::ModifyColumn { old_name, column, .. } = &o[3] else { panic!() };
        assert_eq!((old_name.as_str(), column.name.as_str()), ("old", "new"));
        assert_eq!(o[4], AlterOp::RenameColumn { from: "a".into(), to: "b".into() });
        assert_eq!(
            o[5],
            AlterOp::SetDefault { column: "c".into(), default: Some(RawDefault::Num("5".into())) }
        );
        assert_eq!(o[6], AlterOp::SetDefault { column: "c".into(), default: None });
    }

    #[test]
    fn alter_mariadb_forms() {
        let o = ops("ALTER TABLE t1 ADD COLUMN IF NOT EXISTS z INT, DROP COLUMN IF EXISTS y, ADD COLUMN (p INT, q TEXT), DROP KEY k2, DROP INDEX IF EXISTS k3, RENAME INDEX a TO b, ADD g DOUBLE UNSIGNED ZEROFILL");
        assert!(
            matches!(&o[0], AlterOp::AddColumn { column, if_not_exists: true, .. } if column.name == "z")
        );
        assert_eq!(o[1], AlterOp::DropColumn { name: "y".into(), if_exists: true });
        assert!(matches!(&o[2], AlterOp::AddColumn { column, .. } if column.name == "p"));
        assert!(
            matches!(&o[3], AlterOp::AddColumn { column, .. } if column.name == "q" && column.column_type == ColumnType::Text { size: synchdb_types::LobSize::Normal })
        );
        assert_eq!(o[4], AlterOp::DropIndex { name: "k2".into(), if_exists: false });
        assert_eq!(o[5], AlterOp::DropIndex { name: "k3".into(), if_exists: true });
        assert_eq!(o[6], AlterOp::RenameIndex { from: "a".into(), to: "b".into() });
        assert!(
            matches!(&o[7], AlterOp::AddColumn { column, .. } if column.column_type == ColumnType::Double { unsigned: true })
        );
        let o = ops("ALTER TABLE t1 CONVERT TO CHARACTER SET latin1 COLLATE latin1_bin");
        assert_eq!(
            o,
            vec![AlterOp::ConvertCharset { charset: "latin1".into(), collation: Some("latin1_bin".into()) }]
        );
        assert!(ops("ALTER TABLE t1 ADD CONSTRAINT ck CHECK (a > 0), DROP CONSTRAINT ck2, COMMENT = 'x'")
            .is_empty());
    }

    #[test]
    fn foreign_keys_named_unnamed_composite_and_dropped() {
        let fk = |name: &str, cols: &[&str], table: TableId, refs: &[&str], del, upd| ForeignKey {
            name: name.into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            referenced_table: table,
            referenced_columns: refs.iter().map(|c| c.to_string()).collect(),
            on_delete: del,
            on_update: upd,
        };
        use ReferentialAction::*;
        let o = ops("ALTER TABLE child ADD CONSTRAINT `fk_child` FOREIGN KEY (base_id, base_code) \
            REFERENCES base (id, code) ON DELETE CASCADE, \
            ADD FOREIGN KEY (p) REFERENCES other.parent (id) ON UPDATE SET NULL ON DELETE NO ACTION, \
            ADD CONSTRAINT FOREIGN KEY ix_q (q) REFERENCES parent (id) ON DELETE SET NULL ON UPDATE CASCADE, \
            ADD FOREIGN KEY IF NOT EXISTS (r) REFERENCES parent (id) ON DELETE RESTRICT, \
            DROP FOREIGN KEY fk_old, DROP FOREIGN KEY IF EXISTS `child_ibfk_9`, ALGORITHM=INPLACE");
        assert_eq!(
            o,
            vec![
                AlterOp::AddForeignKey {
                    foreign_key: fk(
                        "fk_child",
                        &["base_id", "base_code"],
                        TableId::new("db", "base"),
                        &["id", "code"],
                        Cascade,
                        Restrict
                    ),
                    if_not_exists: false
                },
                AlterOp::AddForeignKey {
                    foreign_key: fk("", &["p"], TableId::new("other", "parent"), &["id"], NoAction, SetNull),
                    if_not_exists: false
                },
                AlterOp::AddForeignKey {
                    foreign_key: fk("ix_q", &["q"], TableId::new("db", "parent"), &["id"], SetNull, Cascade),
                    if_not_exists: false
                },
                AlterOp::AddForeignKey {
                    foreign_key: fk("", &["r"], TableId::new("db", "parent"), &["id"], Restrict, Restrict),
                    if_not_exists: true
                },
                AlterOp::DropForeignKey { name: "fk_old".into(), if_exists: false },
                AlterOp::DropForeignKey { name: "child_ibfk_9".into(), if_exists: true },
            ]
        );
        // Unnamed keys get InnoDB's names: one past the highest `<table>_ibfk_<n>`.
        let Ddl::CreateTable { mut schema, .. } = parse(
            "CREATE TABLE child (id INT PRIMARY KEY, a INT, b INT, \
             FOREIGN KEY (a) REFERENCES parent (id), CONSTRAINT named FOREIGN KEY (b) REFERENCES parent (id), \
             CONSTRAINT FOREIGN KEY (a, b) REFERENCES parent2 (x, y) ON DELETE CASCADE)",
        ) else {
            panic!()
        };
        let names: Vec<&str> = schema.foreign_keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["child_ibfk_1", "named", "child_ibfk_2"]);
        assert_eq!(schema.foreign_keys[2].on_delete, Cascade);
        assert_eq!(schema.indexes.len(), 0, "implicit foreign key indexes are not tracked");
        schema.foreign_keys.remove(0);
        let added = add_foreign_key(
            &mut schema,
            fk("", &["a"], TableId::new("db", "p"), &["id"], Restrict, Restrict),
        );
        assert_eq!(added.name, "child_ibfk_3");
        assert_eq!(generated_fk_number("CHILD_IBFK_12", "child"), Some(12));
        assert_eq!(generated_fk_number("child_ibfk_x", "child"), None);
        // Inline REFERENCES still parse (and are not read).
        let Ddl::CreateTable { schema, .. } =
            parse("CREATE TABLE c2 (id INT PRIMARY KEY, a INT REFERENCES parent (id))")
        else {
            panic!()
        };
        assert!(schema.foreign_keys.is_empty());
        assert!(parse_ddl("ALTER TABLE t ADD FOREIGN KEY (a, b) REFERENCES p (id)", "db").is_err());
    }

    #[test]
    fn mariadb_persistent_generated_columns() {
        let o = ops("ALTER TABLE t1 ADD COLUMN total INT AS (id * 10) PERSISTENT, ADD persistent INT");
        assert_eq!(o.len(), 2, "{o:?}");
        let d = parse("CREATE TABLE g (a INT, b INT AS (a + 1) PERSISTENT, c INT AS (a * 2) VIRTUAL)");
        let Ddl::CreateTable { schema, .. } = d else { panic!("not a create: {d:?}") };
        assert!(schema.columns[1].generated.is_some(), "{:?}", schema.columns[1]);
        assert_eq!(schema.columns.len(), 3);
    }

    #[test]
    fn alter_index_operations() {
        let o = ops("ALTER TABLE t1 ADD INDEX ix (c), DROP INDEX ix, ADD UNIQUE KEY uq (c), DROP PRIMARY KEY, ADD PRIMARY KEY (id, c), ADD FULLTEXT INDEX ft (name), ADD CONSTRAINT u2 UNIQUE (d)");
        assert_eq!(o.len(), 7, "{o:?}");
        assert!(
            matches!(&o[0], AlterOp::AddIndex(IndexDef::Index { name: Some(n), kind: IndexKind::Plain, .. }) if n == "ix")
        );
        assert_eq!(o[1], AlterOp::DropIndex { name: "ix".into(), if_exists: false });
        assert!(matches!(&o[2], AlterOp::AddIndex(IndexDef::Index { kind: IndexKind::Unique, .. })));
        assert_eq!(o[3], AlterOp::DropPrimaryKey);
        assert_eq!(o[4], AlterOp::AddIndex(IndexDef::Primary(vec!["id".into(), "c".into()])));
        assert!(matches!(&o[5], AlterOp::AddIndex(IndexDef::Index { kind: IndexKind::FullText, .. })));
        assert!(
            matches!(&o[6], AlterOp::AddIndex(IndexDef::Index { name: Some(n), kind: IndexKind::Unique, .. }) if n == "u2")
        );
        let Ddl::AlterTable { table, ops } = parse("CREATE INDEX ix2 ON other.t1 (c DESC, d(4))") else {
            panic!()
        };
        assert_eq!(table, TableId::new("other", "t1"));
        let AlterOp::AddIndex(IndexDef::Index { columns, .. }) = &ops[0] else { panic!() };
        assert!(columns[0].descending);
        assert_eq!(columns[1].prefix_length, Some(4));
        let Ddl::AlterTable { ops, .. } = parse("CREATE UNIQUE INDEX u ON t1 (c)") else { panic!() };
        assert!(matches!(&ops[0], AlterOp::AddIndex(IndexDef::Index { kind: IndexKind::Unique, .. })));
        assert_eq!(
            ops_of(parse("DROP INDEX ix2 ON t1")),
            vec![AlterOp::DropIndex { name: "ix2".into(), if_exists: false }]
        );
    }

    fn ops_of(d: Ddl) -> Vec<AlterOp> {
        match d {
            Ddl::AlterTable { ops, .. } => ops,
            _ => panic!(),
        }
    }

    #[test]
    fn unparseable_relevant_statements_are_errors() {
        assert!(parse_ddl("ALTER TABLE t1 ADD COLUMN c INT WITH NONSENSE GARBAGE", "db").is_err());
        assert!(parse_ddl("CREATE TABLE t (a INT", "db").is_err());
        assert!(parse_ddl("CREATE TABLE t (a INT)", "").is_err());
        // Found by the ddl fuzz target: a slice panic, and one recursion per parenthesis.
        assert!(parse_ddl("ALTER TABLE t ADD (", "db").is_err());
        assert!(parse_ddl(&format!("ALTER TABLE t ADD {}", "(".repeat(100_000)), "db").is_err());
    }

    #[test]
    fn quick_table_extraction() {
        assert_eq!(quick_tables("ALTER TABLE t ADD c INT", "db"), Some(vec![TableId::new("db", "t")]));
        assert_eq!(
            quick_tables("CREATE TABLE IF NOT EXISTS x.t LIKE u", "db"),
            Some(vec![TableId::new("x", "t"), TableId::new("db", "u")])
        );
        assert_eq!(quick_tables("RENAME TABLE a TO b, c TO d", "db").map(|v| v.len()), Some(4));
        assert_eq!(
            quick_tables("DROP TABLE IF EXISTS `a` /* generated by server */", "db"),
            Some(vec![TableId::new("db", "a")])
        );
        assert_eq!(quick_tables("TRUNCATE TABLE t", "db"), Some(vec![TableId::new("db", "t")]));
        assert_eq!(
            quick_tables("ALTER TABLE a RENAME TO b", "db"),
            Some(vec![TableId::new("db", "a"), TableId::new("db", "b")])
        );
        assert_eq!(quick_tables("CREATE INDEX i ON t (a)", "db"), None);
    }
}

#[cfg(test)]
mod corpus_spellings {
    use super::*;

    /// Statements from MariaDB's regression suite that sqlparser alone does not read.
    #[test]
    fn mysql_spellings_parse() {
        for (sql, want) in [
            (
                "ALTER TABLE  `t+1` RENAME `t+2`",
                "RenameTable { to: TableId { database: \"d\", table: \"t+2\" } }",
            ),
            ("ALTER TABLE t1 RENAME AS t2", "RenameTable { to: TableId { database: \"d\", table: \"t2\" } }"),
            ("rename table if exists t1 to t2", "table: \"t2\""),
            ("CREATE TABLE t1 (a INT, b INT DEFAULT INTERVAL(a, 10, 20, 30, 40))", "interval`(a"),
            ("create table t1 (a bit(0))", "Bit { width: 1 }"),
            ("CREATE TABLE t1 (d DOUBLE PRECISION (10,10))", "Double"),
            (
                "create table 1ea10 (1a20 int,1e int)",
                "table: \"1ea10\" }, columns: [ColumnSchema { name: \"1a20\"",
            ),
        ] {
            let got = format!("{:?}", parse_ddl(sql, "d").unwrap().unwrap());
            assert!(got.contains(want), "{sql}: {got}");
        }
    }
}
