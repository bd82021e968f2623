//! ALTER TABLE: split at top-level commas, each operation parsed on its own.

use super::*;

/// `ALTER [ONLINE|OFFLINE] [IGNORE] TABLE [IF EXISTS] name op, op, ...`:
/// split the operations and parse each on its own.
pub(super) fn parse_alter(tokens: &[Token], default_db: &str) -> Result<Ddl, DdlError> {
    let mut i = 1;
    let mut ignore = false;
    while i < tokens.len() && !is_word(tokens.get(i), "TABLE") {
        ignore |= is_word(tokens.get(i), "IGNORE");
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
    // `ALTER IGNORE`: rows that would break a new unique key are deleted, values
    // that do not convert are changed, all without row events.
    let unique = |k: &IndexDef| {
        matches!(k, IndexDef::Primary(_) | IndexDef::Index { kind: synchdb_types::IndexKind::Unique, .. })
    };
    let removes_rows = ops.iter().any(|op| match op {
        AlterOp::AddIndex(k) => unique(k),
        AlterOp::AddColumn { keys, .. } => keys.iter().any(unique),
        AlterOp::ModifyColumn { .. } => true,
        _ => false,
    });
    if ignore && removes_rows {
        ops.push(AlterOp::DropsRows {
            clause: "IGNORE (rows removed or changed without row events)".into(),
            other: None,
            other_goes: false,
        });
    }
    Ok(Ddl::AlterTable { table, ops })
}

/// One ALTER TABLE operation (zero, one or several typed operations).
pub(super) fn alter_op(op: &[Token], name: &[Token], default_db: &str) -> Result<Vec<AlterOp>, DdlError> {
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
        // MariaDB's `RENAME COLUMN IF EXISTS a TO b` (sqlparser does not know it).
        ["RENAME", "COLUMN", "IF", "EXISTS"] => {
            let from = ident_of(op.get(4)).ok_or_else(|| err("RENAME COLUMN IF EXISTS without a name"))?;
            if !is_word(op.get(5), "TO") {
                return Err(err("RENAME COLUMN IF EXISTS without TO"));
            }
            let to = ident_of(op.get(6)).ok_or_else(|| err("RENAME COLUMN IF EXISTS without a new name"))?;
            return Ok(vec![AlterOp::RenameColumn { from, to, if_exists: true }]);
        }
        ["RENAME", "INDEX" | "KEY", ..] => {
            // MariaDB's `RENAME KEY IF EXISTS a TO b`.
            let if_exists = is_word(op.get(2), "IF") && is_word(op.get(3), "EXISTS");
            let at = if if_exists { 4 } else { 2 };
            let from = ident_of(op.get(at)).ok_or_else(|| err("RENAME INDEX without a name"))?;
            if !is_word(op.get(at + 1), "TO") {
                return Err(err("RENAME INDEX without TO"));
            }
            let to = ident_of(op.get(at + 2)).ok_or_else(|| err("RENAME INDEX without a new name"))?;
            return Ok(vec![AlterOp::RenameIndex { from, to, if_exists }]);
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

pub(super) fn is_key_word(t: Option<&Token>) -> bool {
    ["INDEX", "KEY", "UNIQUE", "PRIMARY", "FULLTEXT", "SPATIAL"].iter().any(|k| is_word(t, k))
}

/// `ADD [CONSTRAINT [name]] FOREIGN KEY ...`: where `FOREIGN` is.
pub(super) fn foreign_key_at(op: &[Token]) -> Option<usize> {
    (1..=3).find(|&i| {
        (i == 1 || is_word(op.get(1), "CONSTRAINT"))
            && is_word(op.get(i), "FOREIGN")
            && is_word(op.get(i + 1), "KEY")
    })
}

/// `ADD CONSTRAINT [name] PRIMARY KEY|UNIQUE ...` is an index, not a check or foreign key.
pub(super) fn is_named_key_constraint(op: &[Token]) -> bool {
    is_word(op.get(1), "CONSTRAINT")
        && op.iter().skip(2).take(2).any(|t| is_word(Some(t), "PRIMARY") || is_word(Some(t), "UNIQUE"))
}

pub(super) fn map_alter_operation(
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
            vec![AlterOp::RenameColumn {
                from: old_column_name.value,
                to: new_column_name.value,
                if_exists: false,
            }]
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

pub(super) fn wrap_options(options: Vec<ColumnOption>) -> Vec<sqlparser::ast::ColumnOptionDef> {
    options.into_iter().map(|option| sqlparser::ast::ColumnOptionDef { name: None, option }).collect()
}

pub(super) fn position(p: Option<MySQLColumnPosition>) -> Option<ColumnPosition> {
    p.map(|p| match p {
        MySQLColumnPosition::First => ColumnPosition::First,
        MySQLColumnPosition::After(c) => ColumnPosition::After(c.value),
    })
}

// ---------------------------------------------------------------- columns and keys
