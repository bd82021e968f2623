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

mod alter;
mod ast;
mod kind;
mod mutate;
#[cfg(test)]
mod tests;
mod tokens;

use alter::*;
pub(crate) use ast::binary_charset_types;
use ast::*;
pub(crate) use kind::*;
pub(crate) use mutate::*;
use tokens::*;

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
    CreateTableSelect { table: TableId, if_not_exists: bool },
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
            Ddl::CreateTableSelect { table, .. } | Ddl::Truncate { table } => f(table),
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
            Ddl::CreateTableSelect { table, .. } | Ddl::Truncate { table } => vec![table],
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
    /// `RENAME COLUMN [IF EXISTS] a TO b`.
    RenameColumn { from: String, to: String, if_exists: bool },
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
    RenameIndex { from: String, to: String, if_exists: bool },
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
    // The table's character set, from its options (cut below).
    let table_charset = table_charset_option(&tokens);
    let mut tokens = if first.first().map(String::as_str) == Some("CREATE") {
        without_table_options(tokens)
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
                Some(Ddl::CreateTableSelect { table, if_not_exists: ct.if_not_exists })
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
                let default_charset = table_charset;
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
