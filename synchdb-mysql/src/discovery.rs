//! Table schemas from `information_schema`.
//!
//! One query per catalog table (TABLES, COLUMNS, STATISTICS, foreign keys
//! from KEY_COLUMN_USAGE + REFERENTIAL_CONSTRAINTS, and on MariaDB
//! CHECK_CONSTRAINTS) for all selected databases at once, grouped in Rust.
//!
//! MariaDB specifics handled here:
//! - `COLUMN_DEFAULT` quotes literal defaults (`'abc'`), prints expressions
//!   bare (`current_timestamp()`), and says `NULL` for a nullable column
//!   without an explicit default; MySQL 8 prints literals bare and marks
//!   expressions with `DEFAULT_GENERATED` in `EXTRA`.
//! - `JSON` is an alias of `LONGTEXT` with a `CHECK (json_valid(col))`
//!   constraint: a longtext column with such a check is [`ColumnType::Json`].
//!   (A column declared JSON whose automatic check was replaced by an
//!   explicit `CHECK` on the same column looks like a plain longtext.)
//! - `UUID`, `INET4`, `INET6` data types.
//!
//! Only base tables are discovered (no views, sequences or system-versioned tables).

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{
    ColumnDefault, ColumnSchema, ColumnType, ForeignKey, IndexColumn, IndexKind, IndexSchema, IntWidth,
    LobSize, ReferentialAction, TableId, TableSchema,
};

use crate::filter::TableFilter;

/// An index being assembled: its kind and its parts with their sequence numbers.
type IndexParts = (IndexKind, Vec<(u32, IndexColumn)>);

/// Which server family the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// Ask the server (`SELECT VERSION()` contains `MariaDB` on MariaDB).
    pub(crate) async fn detect(conn: &mut Conn) -> Result<Flavor> {
        let v: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(query_error)?;
        Ok(if v.unwrap_or_default().to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        })
    }
}

/// A failed catalog query.
pub(crate) fn query_error(e: mysql_async::Error) -> Error {
    crate::errors::error("reading the source catalog failed", e)
}

/// Every table selected by `filter`, with full schemas, ordered by database and name.
pub(crate) async fn discover_tables(conn: &mut Conn, filter: &TableFilter) -> Result<Vec<TableSchema>> {
    let databases = selected_databases(conn, filter).await?;
    if databases.is_empty() {
        return Ok(Vec::new());
    }
    let mut tables = load(conn, &databases, None).await?;
    tables.retain(|t| filter.matches(&t.id));
    for db in &databases {
        if !tables.iter().any(|t| &t.id.database == db) {
            // Not an error: tables created later are picked up in follow mode.
            tracing::warn!(database = %db, "no selected tables in this database (does it exist?)");
        }
    }
    Ok(tables)
}

/// The databases `filter` can select tables in: its literal names, else
/// every database of the server it matches.
pub(crate) async fn selected_databases(conn: &mut Conn, filter: &TableFilter) -> Result<Vec<String>> {
    match filter.literal_databases() {
        Some(dbs) => Ok(dbs),
        None => {
            let all: Vec<String> = conn
                .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
                .await
                .map_err(query_error)?;
            Ok(all.into_iter().filter(|d| filter.matches_database(d)).collect())
        }
    }
}

/// One table's schema, or `None` when it does not exist (or is not a base table).
pub(crate) async fn discover_table(conn: &mut Conn, table: &TableId) -> Result<Option<TableSchema>> {
    let mut tables = load(conn, std::slice::from_ref(&table.database), Some(&table.table)).await?;
    Ok(tables.pop())
}

fn text(v: My) -> Option<String> {
    match v {
        My::NULL => None,
        My::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        My::Int(i) => Some(i.to_string()),
        My::UInt(u) => Some(u.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Take the row's values as optional strings.
fn cells(row: mysql_async::Row) -> Vec<Option<String>> {
    row.unwrap().into_iter().map(text).collect()
}

async fn select(conn: &mut Conn, sql: &str, params: Vec<My>) -> Result<Vec<Vec<Option<String>>>> {
    let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await.map_err(query_error)?;
    Ok(rows.into_iter().map(cells).collect())
}

async fn load(conn: &mut Conn, databases: &[String], table: Option<&str>) -> Result<Vec<TableSchema>> {
    let flavor = Flavor::detect(conn).await?;
    let marks = vec!["?"; databases.len()].join(",");
    let mut params: Vec<My> = databases.iter().map(|d| My::from(d.as_str())).collect();
    let mut where_ = format!("TABLE_SCHEMA IN ({marks})");
    if let Some(t) = table {
        where_.push_str(" AND TABLE_NAME = ?");
        params.push(My::from(t));
    }
    let get = |r: &mut Vec<Option<String>>, i: usize| r.get_mut(i).and_then(Option::take);

    // Tables.
    let mut tables: BTreeMap<TableId, TableSchema> = BTreeMap::new();
    for mut r in select(
        conn,
        &format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES \
             WHERE {where_} AND TABLE_TYPE = 'BASE TABLE'"
        ),
        params.clone(),
    )
    .await?
    {
        let id = TableId::new(get(&mut r, 0).unwrap_or_default(), get(&mut r, 1).unwrap_or_default());
        let mut schema = TableSchema::new(id.clone(), Vec::new());
        schema.comment = get(&mut r, 2).unwrap_or_default();
        tables.insert(id, schema);
    }
    // MariaDB system-versioned tables log hidden row_start/row_end columns that
    // information_schema does not show: not replicated, and said so.
    for mut r in select(
        conn,
        &format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE {where_} AND TABLE_TYPE = 'SYSTEM VERSIONED'"
        ),
        params.clone(),
    )
    .await?
    {
        let id = TableId::new(get(&mut r, 0).unwrap_or_default(), get(&mut r, 1).unwrap_or_default());
        tracing::warn!(table = %id, "system-versioned table not replicated (unsupported)");
    }
    if tables.is_empty() {
        return Ok(Vec::new());
    }

    // JSON checks (MariaDB): table -> columns with json_valid(`col`).
    let mut json_cols: HashMap<TableId, Vec<String>> = HashMap::new();
    if flavor == Flavor::MariaDb {
        let check_where = where_.replace("TABLE_SCHEMA", "CONSTRAINT_SCHEMA");
        for mut r in select(
            conn,
            &format!("SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE {check_where}"),
            params.clone(),
        )
        .await?
        {
            let id = TableId::new(get(&mut r, 0).unwrap_or_default(), get(&mut r, 1).unwrap_or_default());
            let clause = get(&mut r, 2).unwrap_or_default();
            json_cols.entry(id).or_default().extend(json_valid_columns(&clause));
        }
    }

    // Columns.
    for mut r in select(
        conn,
        &format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, COLUMN_TYPE, \
             CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, COLUMN_COMMENT, GENERATION_EXPRESSION \
             FROM information_schema.COLUMNS WHERE {where_} ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
        ),
        params.clone(),
    )
    .await?
    {
        let id = TableId::new(get(&mut r, 0).unwrap_or_default(), get(&mut r, 1).unwrap_or_default());
        let Some(schema) = tables.get_mut(&id) else { continue };
        let name = get(&mut r, 2).unwrap_or_default();
        let default = get(&mut r, 3);
        let nullable = get(&mut r, 4).is_some_and(|s| s.eq_ignore_ascii_case("YES"));
        let data_type = get(&mut r, 5).unwrap_or_default();
        let column_type = get(&mut r, 6).unwrap_or_default();
        let is_json = data_type.eq_ignore_ascii_case("longtext")
            && json_cols.get(&id).is_some_and(|cols| cols.iter().any(|c| c == &name));
        let ty = if is_json {
            ColumnType::Json
        } else {
            parse_column_type(&column_type, &data_type)
                .map_err(|e| e.with_table(id.clone()).with_column(name.clone()))?
        };
        let extra = get(&mut r, 9).unwrap_or_default();
        let mut col = ColumnSchema::new(name, ty);
        col.nullable = nullable;
        col.charset = get(&mut r, 7);
        col.collation = get(&mut r, 8);
        col.comment = get(&mut r, 10).unwrap_or_default();
        let generation = get(&mut r, 11).filter(|g| !g.is_empty());
        let extra_lc = extra.to_ascii_lowercase();
        col.auto_increment = extra_lc.contains("auto_increment");
        col.on_update = extra_lc.find("on update ").map(|i| extra[i + "on update ".len()..].trim().to_string());
        if extra_lc.contains("generated") && !extra_lc.contains("default_generated") {
            col.generated = generation;
        }
        col.default = if col.generated.is_some() {
            None
        } else {
            parse_default(flavor, default.as_deref(), nullable, extra_lc.contains("default_generated"))
        };
        schema.columns.push(col);
    }

    // Indexes.
    let mut indexes: BTreeMap<(TableId, String), IndexParts> = BTreeMap::new();
    let mut skipped: Vec<(TableId, String)> = Vec::new();
    for mut r in select(
        conn,
        &format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART, \
             INDEX_TYPE, COLLATION FROM information_schema.STATISTICS WHERE {where_} \
             ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
        ),
        params.clone(),
    )
    .await?
    {
        let id = TableId::new(get(&mut r, 0).unwrap_or_default(), get(&mut r, 1).unwrap_or_default());
        let index = get(&mut r, 2).unwrap_or_default();
        let non_unique = get(&mut r, 3).as_deref() != Some("0");
        let seq: u32 = get(&mut r, 4).and_then(|s| s.parse().ok()).unwrap_or(0);
        let Some(column) = get(&mut r, 5) else {
            // A functional index part (MySQL 8): no column to name.
            skipped.push((id, index));
            continue;
        };
        let prefix_length = get(&mut r, 6).and_then(|s| s.parse().ok());
        let index_type = get(&mut r, 7).unwrap_or_default().to_ascii_uppercase();
        let descending = get(&mut r, 8).as_deref() == Some("D");
        let kind = match index_type.as_str() {
            "FULLTEXT" => IndexKind::FullText,
            "SPATIAL" => IndexKind::Spatial,
            _ if !non_unique => IndexKind::Unique,
            _ => IndexKind::Plain,
        };
        let entry = indexes.entry((id, index)).or_insert_with(|| (kind, Vec::new()));
        entry.1.push((seq, IndexColumn { name: column, prefix_length, descending }));
    }
    for (id, index) in &skipped {
        tracing::warn!(table = %id, index, "index with an expression part is not replicated");
        indexes.remove(&(id.clone(), index.clone()));
    }
    for ((id, name), (kind, mut cols)) in indexes {
        let Some(schema) = tables.get_mut(&id) else { continue };
        cols.sort_by_key(|(seq, _)| *seq);
        let cols: Vec<IndexColumn> = cols.into_iter().map(|(_, c)| c).collect();
        if name == "PRIMARY" {
            schema.primary_key = cols.into_iter().map(|c| c.name).collect();
        } else {
            schema.indexes.push(IndexSchema { name, kind, columns: cols });
        }
    }

    // Foreign keys.
    let fk_where = where_.replace("TABLE_SCHEMA", "k.TABLE_SCHEMA").replace("TABLE_NAME", "k.TABLE_NAME");
    let mut fks: BTreeMap<(TableId, String), ForeignKey> = BTreeMap::new();
    for mut r in select(
        conn,
        &format!(
            "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
             k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, rc.UPDATE_RULE, rc.DELETE_RULE \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS rc \
               ON rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
              AND rc.TABLE_NAME = k.TABLE_NAME \
             WHERE {fk_where} AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
        ),
        params.clone(),
    )
    .await?
    {
        let id = TableId::new(get(&mut r, 0).unwrap_or_default(), get(&mut r, 1).unwrap_or_default());
        let name = get(&mut r, 2).unwrap_or_default();
        let column = get(&mut r, 3).unwrap_or_default();
        let referenced_table = TableId::new(get(&mut r, 4).unwrap_or_default(), get(&mut r, 5).unwrap_or_default());
        let referenced_column = get(&mut r, 6).unwrap_or_default();
        let on_update = get(&mut r, 7).and_then(|s| ReferentialAction::parse(&s)).unwrap_or(ReferentialAction::Restrict);
        let on_delete = get(&mut r, 8).and_then(|s| ReferentialAction::parse(&s)).unwrap_or(ReferentialAction::Restrict);
        let fk = fks.entry((id, name.clone())).or_insert_with(|| ForeignKey {
            name,
            columns: Vec::new(),
            referenced_table,
            referenced_columns: Vec::new(),
            on_update,
            on_delete,
        });
        fk.columns.push(column);
        fk.referenced_columns.push(referenced_column);
    }
    for ((id, _), fk) in fks {
        if let Some(schema) = tables.get_mut(&id) {
            schema.foreign_keys.push(fk);
        }
    }
    Ok(tables.into_values().filter(|t| !t.columns.is_empty()).collect())
}

/// Column names named by `json_valid(`col`)` in a CHECK clause.
fn json_valid_columns(clause: &str) -> Vec<String> {
    let lc = clause.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lc[from..].find("json_valid(") {
        let start = from + i + "json_valid(".len();
        let rest = &clause[start..];
        if let Some(inner) = rest.strip_prefix('`') {
            let mut name = String::new();
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '`' {
                    if chars.peek() == Some(&'`') {
                        chars.next();
                        name.push('`');
                    } else {
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            out.push(name);
        } else if let Some(end) = rest.find(')') {
            out.push(rest[..end].trim().to_string());
        }
        from = start;
    }
    out
}

/// Interpret `COLUMN_DEFAULT` (see the module docs for the two flavors).
pub(crate) fn parse_default(
    flavor: Flavor,
    raw: Option<&str>,
    nullable: bool,
    default_generated: bool,
) -> Option<ColumnDefault> {
    match flavor {
        Flavor::MariaDb => {
            let raw = raw?;
            if raw.eq_ignore_ascii_case("NULL") {
                return Some(ColumnDefault::Null);
            }
            if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
                return Some(ColumnDefault::Literal(unquote(&raw[1..raw.len() - 1])));
            }
            if is_number(raw) {
                return Some(ColumnDefault::Literal(raw.to_string()));
            }
            Some(ColumnDefault::Expression(raw.to_string()))
        }
        Flavor::MySql => match raw {
            None if nullable => Some(ColumnDefault::Null),
            None => None,
            Some(e) if default_generated => Some(ColumnDefault::Expression(e.to_string())),
            Some(l) => Some(ColumnDefault::Literal(l.to_string())),
        },
    }
}

fn is_number(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
        && t.as_bytes()[0].is_ascii_digit()
}

/// Undo SQL string escaping inside quotes: `''` and backslash escapes.
fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\u{1a}'),
                Some('b') => out.push('\u{8}'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// Split `enum('a','it''s')` members.
fn parse_members(inner: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('\'') => {}
            Some(c) => return Err(format!("unexpected {c:?} in member list")),
        }
        let mut raw = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated member".into()),
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    raw.push_str("''");
                }
                Some('\'') => break,
                Some('\\') => {
                    raw.push('\\');
                    if let Some(n) = chars.next() {
                        raw.push(n);
                    }
                }
                Some(c) => raw.push(c),
            }
        }
        out.push(unquote(&raw));
    }
    Ok(out)
}

/// Parse a column type as `information_schema.COLUMNS` prints it
/// (`COLUMN_TYPE` such as `int(10) unsigned`, `decimal(65,30)`,
/// `enum('a','it''s')`, with `DATA_TYPE` such as `int`), or as a DDL
/// statement writes it (`data_type` may then be empty: the first word of
/// `column_type` is used). Case-insensitive. Unknown types are an error of
/// kind [`ErrorKind::SourceSchema`].
pub(crate) fn parse_column_type(column_type: &str, data_type: &str) -> Result<ColumnType> {
    let ct = column_type.trim();
    let bad =
        |why: &str| Error::new(ErrorKind::SourceSchema, format!("cannot parse column type {ct:?}: {why}"));
    let base_end = ct.find(|c: char| c == '(' || c.is_whitespace()).unwrap_or(ct.len());
    let data_type = if data_type.trim().is_empty() { &ct[..base_end] } else { data_type.trim() };
    let dt = data_type.to_ascii_lowercase();
    // The parenthesised part right after the type name (members may contain parentheses).
    let after_name = ct[base_end..].trim_start();
    let (inner, rest) = if let Some(body) = after_name.strip_prefix('(') {
        let mut depth = 1usize;
        let mut in_quote = false;
        let mut end = None;
        let bytes: Vec<char> = body.chars().collect();
        let mut i = 0;
        let mut byte_pos = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if in_quote {
                if c == '\\' {
                    byte_pos += c.len_utf8();
                    i += 1;
                    if i < bytes.len() {
                        byte_pos += bytes[i].len_utf8();
                    }
                    i += 1;
                    continue;
                }
                if c == '\'' {
                    if bytes.get(i + 1) == Some(&'\'') {
                        byte_pos += 2;
                        i += 2;
                        continue;
                    }
                    in_quote = false;
                }
            } else if c == '\'' {
                in_quote = true;
            } else if c == '(' {
                depth += 1;
            } else if c == ')' {
                depth -= 1;
                if depth == 0 {
                    end = Some(byte_pos);
                    break;
                }
            }
            byte_pos += c.len_utf8();
            i += 1;
        }
        let end = end.ok_or_else(|| bad("unbalanced parentheses"))?;
        (Some(&body[..end]), &body[end + 1..])
    } else {
        (None, after_name)
    };
    let rest_lc = format!(" {} ", rest.to_ascii_lowercase());
    let unsigned = rest_lc.contains(" unsigned ");
    let nums = || -> Result<Vec<u32>> {
        match inner {
            None => Ok(Vec::new()),
            Some(s) => s
                .split(',')
                .map(|p| p.trim().parse::<u32>().map_err(|_| bad("expected numbers in parentheses")))
                .collect(),
        }
    };
    let first = |default: u32| -> Result<u32> { Ok(nums()?.first().copied().unwrap_or(default)) };
    let int = |width: IntWidth| -> Result<ColumnType> {
        Ok(ColumnType::Integer { width, unsigned, display_width: nums()?.first().copied() })
    };
    let fsp = || -> Result<u8> {
        let f = first(0)?;
        if f > 6 {
            return Err(bad("fractional seconds precision above 6"));
        }
        Ok(f as u8)
    };
    Ok(match dt.as_str() {
        "tinyint" | "int1" => int(IntWidth::Tiny)?,
        "bool" | "boolean" => {
            ColumnType::Integer { width: IntWidth::Tiny, unsigned: false, display_width: Some(1) }
        }
        "smallint" | "int2" => int(IntWidth::Small)?,
        "mediumint" | "int3" | "middleint" => int(IntWidth::Medium)?,
        "int" | "integer" | "int4" => int(IntWidth::Int)?,
        "bigint" | "int8" => int(IntWidth::Big)?,
        "serial" => ColumnType::Integer { width: IntWidth::Big, unsigned: true, display_width: None },
        "decimal" | "numeric" | "dec" | "fixed" => {
            let n = nums()?;
            let precision = n.first().copied().unwrap_or(10);
            let scale = n.get(1).copied().unwrap_or(0);
            if precision == 0 || precision > 65 || scale > 38 || scale > precision {
                return Err(bad("decimal precision must be 1..=65 and scale 0..=38 (MariaDB; MySQL 0..=30), at most the precision"));
            }
            ColumnType::Decimal { precision, scale, unsigned }
        }
        "float" => {
            // FLOAT(p) with p > 24 is a DOUBLE.
            let n = nums()?;
            if n.len() == 1 && n[0] > 24 {
                ColumnType::Double { unsigned }
            } else {
                ColumnType::Float { unsigned }
            }
        }
        "double" | "real" | "double precision" | "float8" => ColumnType::Double { unsigned },
        "float4" => ColumnType::Float { unsigned },
        "bit" => {
            let w = first(1)?;
            if !(1..=64).contains(&w) {
                return Err(bad("BIT width must be 1..=64"));
            }
            ColumnType::Bit { width: w }
        }
        "char" | "character" | "nchar" => ColumnType::Char { length: first(1)? },
        "varchar" | "nvarchar" | "varcharacter" => ColumnType::VarChar {
            length: nums()?.first().copied().ok_or_else(|| bad("VARCHAR needs a length"))?,
        },
        "binary" => ColumnType::Binary { length: first(1)? },
        "varbinary" => ColumnType::VarBinary {
            length: nums()?.first().copied().ok_or_else(|| bad("VARBINARY needs a length"))?,
        },
        "tinytext" => ColumnType::Text { size: LobSize::Tiny },
        "text" => ColumnType::Text { size: LobSize::Normal },
        "mediumtext" | "long" => ColumnType::Text { size: LobSize::Medium },
        "longtext" => ColumnType::Text { size: LobSize::Long },
        "tinyblob" => ColumnType::Blob { size: LobSize::Tiny },
        "blob" => ColumnType::Blob { size: LobSize::Normal },
        "mediumblob" => ColumnType::Blob { size: LobSize::Medium },
        "longblob" => ColumnType::Blob { size: LobSize::Long },
        "date" => ColumnType::Date,
        "datetime" => ColumnType::DateTime { fsp: fsp()? },
        "timestamp" => ColumnType::Timestamp { fsp: fsp()? },
        "time" => ColumnType::Time { fsp: fsp()? },
        "year" if inner.map(str::trim) == Some("2") => ColumnType::Year2,
        "year" => ColumnType::Year,
        "json" => ColumnType::Json,
        "enum" => ColumnType::Enum {
            members: parse_members(inner.ok_or_else(|| bad("ENUM needs members"))?).map_err(|e| bad(&e))?,
        },
        "set" => {
            let members =
                parse_members(inner.ok_or_else(|| bad("SET needs members"))?).map_err(|e| bad(&e))?;
            // MariaDB keeps duplicates (with a note): a 65th member that repeats
            // an earlier one can never be set, more distinct ones cannot exist.
            if members.len() > 64 && members[64..].iter().any(|m| !members[..64].contains(m)) {
                return Err(bad("SET has more than 64 members"));
            }
            ColumnType::Set { members }
        }
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            ColumnType::Geometry { subtype: dt.clone() }
        }
        "uuid" => ColumnType::Uuid,
        "inet4" => ColumnType::Inet4,
        "inet6" => ColumnType::Inet6,
        other => return Err(bad(&format!("unsupported data type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ct: &str, dt: &str) -> ColumnType {
        parse_column_type(ct, dt).unwrap()
    }

    #[test]
    fn integers_and_numbers() {
        assert_eq!(
            p("int(10) unsigned zerofill", "int"),
            ColumnType::Integer { width: IntWidth::Int, unsigned: true, display_width: Some(10) }
        );
        assert_eq!(
            p("bigint unsigned", "bigint"),
            ColumnType::Integer { width: IntWidth::Big, unsigned: true, display_width: None }
        );
        assert_eq!(
            p("tinyint(1)", ""),
            ColumnType::Integer { width: IntWidth::Tiny, unsigned: false, display_width: Some(1) }
        );
        assert_eq!(
            p("DECIMAL(65,30) UNSIGNED", ""),
            ColumnType::Decimal { precision: 65, scale: 30, unsigned: true }
        );
        assert_eq!(p("decimal", ""), ColumnType::Decimal { precision: 10, scale: 0, unsigned: false });
        assert_eq!(p("double(10,2)", "double"), ColumnType::Double { unsigned: false });
        assert_eq!(p("float(7,4)", "float"), ColumnType::Float { unsigned: false });
        assert_eq!(p("float(30)", ""), ColumnType::Double { unsigned: false });
        assert_eq!(p("bit(10)", "bit"), ColumnType::Bit { width: 10 });
        assert!(parse_column_type("decimal(66,0)", "").is_err());
        // MariaDB allows 38 digits after the point (MySQL 30).
        assert_eq!(
            p("decimal(34,33)", ""),
            ColumnType::Decimal { precision: 34, scale: 33, unsigned: false }
        );
        assert!(parse_column_type("decimal(65,39)", "").is_err());
        assert!(parse_column_type("bit(65)", "").is_err());
    }

    #[test]
    fn strings_and_temporal() {
        assert_eq!(p("varchar(255)", "varchar"), ColumnType::VarChar { length: 255 });
        assert_eq!(p("char(5)", "char"), ColumnType::Char { length: 5 });
        assert_eq!(p("binary(16)", "binary"), ColumnType::Binary { length: 16 });
        assert_eq!(p("longtext", "longtext"), ColumnType::Text { size: LobSize::Long });
        assert_eq!(p("datetime(6)", "datetime"), ColumnType::DateTime { fsp: 6 });
        assert_eq!(p("timestamp", "timestamp"), ColumnType::Timestamp { fsp: 0 });
        assert_eq!(p("time(3)", "time"), ColumnType::Time { fsp: 3 });
        assert_eq!(p("year(4)", "year"), ColumnType::Year);
        assert_eq!(p("year(2)", "year"), ColumnType::Year2);
        assert_eq!(p("point", "point"), ColumnType::Geometry { subtype: "point".into() });
        assert_eq!(p("uuid", "uuid"), ColumnType::Uuid);
        assert_eq!(p("inet6", "inet6"), ColumnType::Inet6);
        let e = parse_column_type("vector(3)", "vector").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SourceSchema);
        assert!(e.to_string().contains("unsupported data type vector"), "{e}");
    }

    #[test]
    fn enum_and_set_members() {
        assert_eq!(
            p(r"enum('it''s','b\\c','x,y','é','(p)')", "enum"),
            ColumnType::Enum {
                members: vec!["it's".into(), r"b\c".into(), "x,y".into(), "é".into(), "(p)".into()]
            }
        );
        assert_eq!(p("set('p','q')", "set"), ColumnType::Set { members: vec!["p".into(), "q".into()] });
        assert_eq!(p("ENUM('')", ""), ColumnType::Enum { members: vec![String::new()] });
        assert!(parse_column_type("enum('a", "enum").is_err());
    }

    #[test]
    fn defaults() {
        use ColumnDefault::*;
        let m = Flavor::MariaDb;
        assert_eq!(parse_default(m, Some("'it''s'"), true, false), Some(Literal("it's".into())));
        assert_eq!(parse_default(m, Some("'NULL'"), true, false), Some(Literal("NULL".into())));
        assert_eq!(parse_default(m, Some("NULL"), true, false), Some(Null));
        assert_eq!(parse_default(m, Some("1.50"), true, false), Some(Literal("1.50".into())));
        assert_eq!(parse_default(m, Some("-3"), true, false), Some(Literal("-3".into())));
        assert_eq!(parse_default(m, Some("''"), true, false), Some(Literal(String::new())));
        assert_eq!(
            parse_default(m, Some("current_timestamp(6)"), false, false),
            Some(Expression("current_timestamp(6)".into()))
        );
        assert_eq!(parse_default(m, Some("b'101'"), true, false), Some(Expression("b'101'".into())));
        assert_eq!(parse_default(m, None, false, false), None);
        let y = Flavor::MySql;
        assert_eq!(parse_default(y, Some("abc"), true, false), Some(Literal("abc".into())));
        assert_eq!(parse_default(y, None, true, false), Some(Null));
        assert_eq!(
            parse_default(y, Some("CURRENT_TIMESTAMP"), true, true),
            Some(Expression("CURRENT_TIMESTAMP".into()))
        );
    }

    #[test]
    fn json_checks() {
        assert_eq!(json_valid_columns("json_valid(`j`)"), vec!["j".to_string()]);
        assert_eq!(
            json_valid_columns("json_valid(`a``b`) and JSON_VALID(`c`)"),
            vec!["a`b".to_string(), "c".to_string()]
        );
        assert!(json_valid_columns("json_length(`l`) < 5").is_empty());
    }
}
