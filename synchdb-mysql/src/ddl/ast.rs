//! From sqlparser's AST to the schema model: names, columns, types, defaults, keys.

use super::*;

pub(super) fn table_id(name: &ObjectName, default_db: &str) -> Result<TableId, DdlError> {
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

pub(super) fn last_ident(name: &ObjectName) -> Result<String, DdlError> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .ok_or_else(|| err(format!("bad name {name}")))
}

// ---------------------------------------------------------------- ALTER TABLE

pub(super) fn column_def(c: &ColumnDef) -> Result<(ColumnSchema, Vec<IndexDef>), DdlError> {
    column_def_of(c)
}

/// A column definition: the column and the keys declared inline
/// (`PRIMARY KEY`, `UNIQUE`).
pub(super) fn column_def_of(c: &ColumnDef) -> Result<(ColumnSchema, Vec<IndexDef>), DdlError> {
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
    binary_charset_types(&mut col);
    if col.column_type == ColumnType::Json && col.charset.is_none() {
        // MariaDB's JSON is LONGTEXT CHARSET utf8mb4 COLLATE utf8mb4_bin.
        col.charset = Some("utf8mb4".into());
    }
    Ok((col, keys))
}

/// `CHAR(n) / VARCHAR(n) / TEXT CHARACTER SET binary` (written on the column
/// or inherited from the table): the server stores BINARY(n) / VARBINARY(n)
/// / BLOB, as information_schema shows.
pub(crate) fn binary_charset_types(col: &mut ColumnSchema) {
    if !col.charset.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("binary")) {
        return;
    }
    let binary = match &col.column_type {
        ColumnType::Char { length } => Some(ColumnType::Binary { length: *length }),
        ColumnType::VarChar { length } => Some(ColumnType::VarBinary { length: *length }),
        ColumnType::Text { size } => Some(ColumnType::Blob { size: *size }),
        _ => None,
    };
    if let Some(t) = binary {
        col.column_type = t;
        col.charset = None;
        col.collation = None;
    }
}

pub(super) fn name_text(n: &ObjectName) -> String {
    n.0.iter().filter_map(|p| p.as_ident().map(|i| i.value.clone())).collect::<Vec<_>>().join(".")
}

/// MySQL prints expressions in lower case without spaces before parentheses.
pub(super) fn expr_text(e: &Expr) -> String {
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

pub(super) fn default_of(e: &Expr) -> RawDefault {
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
    // `CHARACTER VARYING(n)` / `CHAR VARYING(n)` are VARCHAR(n).
    for long in ["character varying", "char varying"] {
        if let Some(rest) = s.strip_prefix(long) {
            s = format!("varchar{rest}");
            break;
        }
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
    let data_type = match head.as_str() {
        "bool" | "boolean" => "tinyint".to_string(),
        // FLOAT(p) with p > 24 is a DOUBLE (the type text says so already).
        "float" if ct.starts_with("double") => "double".to_string(),
        _ => head,
    };
    (ct, data_type)
}

pub(super) fn matching_paren(s: &str) -> Option<usize> {
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

pub(super) fn index_column(c: &sqlparser::ast::IndexColumn) -> Result<IndexColumn, DdlError> {
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

pub(super) fn constraint(c: &TableConstraint) -> Result<Vec<IndexDef>, DdlError> {
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
pub(super) fn foreign_key(
    fk: &sqlparser::ast::ForeignKeyConstraint,
    default_db: &str,
) -> Result<ForeignKey, DdlError> {
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
