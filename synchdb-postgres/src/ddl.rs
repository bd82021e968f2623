//! Tables, indexes and foreign keys in PostgreSQL, and follow-mode schema changes.

use std::collections::HashSet;
use std::sync::Mutex;

use sqlx::{AssertSqlSafe, Executor, PgConnection, Row as _};
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{
    ColumnSchema, ForeignKey, IndexKind, IndexSchema, ReferentialAction, SchemaChange, SchemaChangeEvent,
    TableId, TableSchema,
};
use tracing::{info, warn};

use crate::error::{sqlx_error, Context};
use crate::options::{check_identifier, PgSinkOptions, MAX_IDENTIFIER_BYTES};
use crate::typemap::{implicit_default, literal, map_column, translate_default, Family, PgColumn};

/// `"name"`, with embedded quotes doubled. Every identifier is quoted, case kept.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A name of at most 63 bytes: cut, with a stable hash appended, when longer.
pub(crate) fn bounded(name: &str) -> String {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name.to_string();
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let mut cut = MAX_IDENTIFIER_BYTES - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{h:08x}", &name[..cut])
}

/// Index names are per schema in PostgreSQL (per table in MySQL): `<table>_<index>`.
pub(crate) fn index_name(table: &str, index: &str) -> String {
    bounded(&format!("{table}_{index}"))
}

fn enum_check_name(column: &str) -> String {
    bounded(&format!("{column}_enum"))
}

/// A source table as mapped into PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct PgTable {
    pub id: TableId,
    pub schema: String,
    pub name: String,
    /// `"schema"."table"`.
    pub qualified: String,
    pub columns: Vec<PgColumn>,
    /// Row identity: primary key, else a NOT NULL unique key; empty for keyless tables.
    pub key: Vec<usize>,
    /// Keyless tables: the column whose index finds the rows an update or
    /// delete matches (the first column of a source index, else of the
    /// table's own index, [`KEYLESS_INDEX`]); see [`PgTable::probe_of`].
    pub probe: Option<usize>,
    /// Whether [`probe`](Self::probe) is the table's own index (not a source one).
    pub own_index: bool,
}

/// The name (after the table's) of the index a keyless table gets on the replica.
pub(crate) const KEYLESS_INDEX: &str = "synchdb_match";

/// Whether rows can be found by equality on stored column `c` with the same
/// outcome as the row match (`apply::comparable` is the plain column).
fn probe_ok(c: &PgColumn) -> bool {
    c.transform.is_none()
        && match c.family {
            Family::Text | Family::Bytea => true,
            Family::Other => c.default_mapping,
            Family::Json | Family::PostGis => false,
        }
}

/// Whether a B-tree index over `c` holds any value it can hold (PostgreSQL
/// refuses index entries above ~2,700 bytes): fixed-size types and short varchars.
fn index_ok(c: &PgColumn) -> bool {
    if !probe_ok(c) {
        return false;
    }
    let t = c.sql_type.to_ascii_lowercase();
    match c.family {
        Family::Text => t
            .strip_prefix("varchar(")
            .or_else(|| t.strip_prefix("character varying("))
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .is_some_and(|n| n <= 600),
        Family::Other => {
            c.enum_members.is_none()
                && c.bit_width.is_none()
                && [
                    "smallint",
                    "integer",
                    "bigint",
                    "numeric",
                    "real",
                    "double precision",
                    "date",
                    "timestamp",
                    "timestamptz",
                    "time",
                    "interval",
                    "uuid",
                    "boolean",
                ]
                .iter()
                .any(|p| t == *p || t.starts_with(&format!("{p}(")) || t.starts_with(&format!("{p} ")))
        }
        _ => false,
    }
}

impl PgTable {
    pub fn build(t: &TableSchema, opts: &PgSinkOptions, postgis: bool) -> Result<PgTable> {
        let schema = opts.target_schema(&t.id);
        let name = t.id.table.clone();
        check_identifier("schema", &schema).map_err(|e| e.with_table(t.id.clone()))?;
        check_identifier("table", &name).map_err(|e| e.with_table(t.id.clone()))?;
        let mut columns = Vec::with_capacity(t.columns.len());
        for c in &t.columns {
            check_identifier("column", &c.name).map_err(|e| e.with_table(t.id.clone()))?;
            columns.push(map_column(&t.id, c, opts, postgis)?);
        }
        let key = t.identity_columns();
        let (probe, own_index) =
            if key.is_empty() { Self::probe_of(t, &columns, opts) } else { (None, false) };
        Ok(PgTable {
            id: t.id.clone(),
            qualified: format!("{}.{}", quote(&schema), quote(&name)),
            schema,
            name,
            columns,
            key,
            probe,
            own_index,
        })
    }

    /// The probe column of a keyless table: the first column of the first
    /// plain or unique source index (whole column) that can find rows by
    /// equality; else, with [`PgSinkOptions::keyless_index`], the first
    /// column of a type a B-tree indexes whatever its values.
    fn probe_of(t: &TableSchema, columns: &[PgColumn], opts: &PgSinkOptions) -> (Option<usize>, bool) {
        let by_name = |n: &str| t.columns.iter().position(|c| c.name == n);
        for ix in &t.indexes {
            if !matches!(ix.kind, IndexKind::Plain | IndexKind::Unique) {
                continue;
            }
            let Some(first) = ix.columns.first() else { continue };
            if first.prefix_length.is_some() {
                continue;
            }
            if let Some(i) = by_name(&first.name).filter(|&i| probe_ok(&columns[i])) {
                return (Some(i), false);
            }
        }
        if !opts.get_keyless_index() {
            return (None, false);
        }
        let fixed = columns.iter().position(|c| c.family == Family::Other && index_ok(c));
        let own = fixed.or_else(|| columns.iter().position(index_ok));
        (own, own.is_some())
    }

    /// `CREATE INDEX` of a keyless table's own index, when it gets one.
    pub fn own_index_sql(&self) -> Option<String> {
        let c = &self.columns[self.probe.filter(|_| self.own_index)?];
        Some(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            quote(&index_name(&self.name, KEYLESS_INDEX)),
            self.qualified,
            quote(&c.name)
        ))
    }

    /// The table name as a text literal for `to_regclass` / `pg_get_serial_sequence`.
    pub fn regclass_literal(&self) -> String {
        literal(&self.qualified)
    }
}

/// Log lines that must appear once per sink (skipped/mapped indexes, dropped defaults).
#[derive(Debug, Default)]
pub(crate) struct Notes {
    seen: Mutex<HashSet<String>>,
}

impl Notes {
    pub fn once(&self, table: &TableId, message: String) {
        let key = format!("{table}: {message}");
        if self.seen.lock().expect("notes poisoned").insert(key) {
            warn!(table = %table, "{message}");
        }
    }
}

/// Everything the DDL code needs from the sink.
pub(crate) struct DdlCtx<'a> {
    pub opts: &'a PgSinkOptions,
    pub postgis: bool,
    pub notes: &'a Notes,
}

fn column_def(t: &TableId, c: &ColumnSchema, pg: &PgColumn, cx: &DdlCtx<'_>) -> String {
    let mut s = format!("{} {}", quote(&pg.name), pg.sql_type);
    if pg.identity {
        s.push_str(" GENERATED BY DEFAULT AS IDENTITY");
    } else if c.auto_increment {
        cx.notes
            .once(t, format!("AUTO_INCREMENT column {} of type {} is not an identity", c.name, pg.sql_type));
    }
    if !c.nullable {
        s.push_str(" NOT NULL");
    }
    match translate_default(c, pg, cx.opts.get_zero_dates()) {
        Ok(Some(d)) => {
            s.push_str(" DEFAULT ");
            s.push_str(&d);
        }
        Ok(None) => {}
        Err(why) => cx.notes.once(t, format!("default of column {} dropped: {why}", c.name)),
    }
    if c.generated.is_some() {
        cx.notes.once(t, format!("generated column {} is replicated as a plain column", c.name));
    }
    s
}

fn enum_check(pg: &PgColumn) -> Option<String> {
    let members = pg.enum_members.as_ref()?;
    let mut list: Vec<String> = members.iter().map(|m| literal(m)).collect();
    if !members.iter().any(String::is_empty) {
        list.push("''".into());
    }
    Some(format!(
        "CONSTRAINT {} CHECK ({} IN ({}))",
        quote(&enum_check_name(&pg.name)),
        quote(&pg.name),
        list.join(", ")
    ))
}

/// The `CONSTRAINT ... PRIMARY KEY (...)` clause of `t`, if it has a key.
fn primary_key_clause(t: &TableSchema, pt: &PgTable) -> Option<String> {
    if t.primary_key.is_empty() {
        return None;
    }
    let cols: Vec<String> = t.primary_key.iter().map(|c| quote(c)).collect();
    Some(format!("CONSTRAINT {} PRIMARY KEY ({})", quote(&index_name(&pt.name, "pkey")), cols.join(", ")))
}

/// `CREATE SCHEMA` and `CREATE TABLE` (columns, NOT NULL, defaults, enum
/// checks, and the primary key unless `without_key`).
pub(crate) fn create_table_sql(
    t: &TableSchema,
    pt: &PgTable,
    cx: &DdlCtx<'_>,
    without_key: bool,
) -> Vec<String> {
    let mut parts: Vec<String> =
        t.columns.iter().zip(&pt.columns).map(|(c, pg)| column_def(&t.id, c, pg, cx)).collect();
    parts.extend(pt.columns.iter().filter_map(enum_check));
    if !without_key {
        parts.extend(primary_key_clause(t, pt));
    }
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote(&pt.schema)),
        format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", pt.qualified, parts.join(",\n  ")),
    ]
}

/// `CREATE INDEX` for a MySQL index, or `None` (logged once) when PostgreSQL has no equivalent.
/// The index is named `name` ([`index_name_for`]).
fn index_sql_as(pt: &PgTable, ix: &IndexSchema, cx: &DdlCtx<'_>, name: &str) -> Option<String> {
    let col = |name: &str| pt.columns.iter().find(|c| c.name == name);
    let name = quote(name);
    let missing = ix.columns.iter().find(|c| col(&c.name).is_none());
    if let Some(m) = missing {
        cx.notes.once(&pt.id, format!("index {} skipped: unknown column {}", ix.name, m.name));
        return None;
    }
    match ix.kind {
        IndexKind::FullText => {
            if !cx.opts.get_fulltext_gin() {
                cx.notes.once(&pt.id, format!("FULLTEXT index {} skipped (fulltext_gin off)", ix.name));
                return None;
            }
            if ix.columns.iter().any(|c| col(&c.name).is_some_and(|p| p.family != Family::Text)) {
                cx.notes.once(&pt.id, format!("FULLTEXT index {} skipped: non-text column", ix.name));
                return None;
            }
            let doc: Vec<String> =
                ix.columns.iter().map(|c| format!("coalesce({}, '')", quote(&c.name))).collect();
            cx.notes.once(
                &pt.id,
                format!("FULLTEXT index {} built as GIN on to_tsvector('simple', ...)", ix.name),
            );
            Some(format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {} USING gin (to_tsvector('simple', {}))",
                pt.qualified,
                doc.join(" || ' ' || ")
            ))
        }
        IndexKind::Spatial => {
            let all_postgis =
                ix.columns.iter().all(|c| col(&c.name).is_some_and(|p| p.family == Family::PostGis));
            if !all_postgis {
                cx.notes.once(&pt.id, format!("SPATIAL index {} skipped (no PostGIS geometry)", ix.name));
                return None;
            }
            let cols: Vec<String> = ix.columns.iter().map(|c| quote(&c.name)).collect();
            Some(format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {} USING gist ({})",
                pt.qualified,
                cols.join(", ")
            ))
        }
        kind => {
            let unique = kind == IndexKind::Unique;
            let prefixed = ix.columns.iter().any(|c| c.prefix_length.is_some());
            if unique && prefixed {
                cx.notes.once(&pt.id, format!("UNIQUE prefix index {} skipped", ix.name));
                return None;
            }
            let mut parts = Vec::new();
            for c in &ix.columns {
                let pg = col(&c.name)?;
                let mut e = match (c.prefix_length, pg.family) {
                    (Some(n), Family::Text) => format!("left({}, {n})", quote(&c.name)),
                    (Some(n), Family::Bytea) => format!("substring({} from 1 for {n})", quote(&c.name)),
                    _ => quote(&c.name),
                };
                if c.prefix_length.is_some() {
                    e = format!("({e})");
                }
                if c.descending {
                    e.push_str(" DESC");
                }
                parts.push(e);
            }
            if prefixed {
                cx.notes
                    .once(&pt.id, format!("prefix index {} built on left(column, n) expressions", ix.name));
            }
            Some(format!(
                "CREATE {}INDEX IF NOT EXISTS {name} ON {} ({})",
                if unique { "UNIQUE " } else { "" },
                pt.qualified,
                parts.join(", ")
            ))
        }
    }
}

fn action(a: ReferentialAction) -> &'static str {
    match a {
        // InnoDB checks RESTRICT immediately like NO ACTION; NO ACTION can be deferred.
        ReferentialAction::Restrict | ReferentialAction::NoAction => "NO ACTION",
        other => other.as_sql(),
    }
}

/// `ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY ... DEFERRABLE INITIALLY DEFERRED NOT VALID`.
///
/// `NOT VALID`: the rows already there are the source's, which InnoDB may
/// hold with dangling references (loaded with `FOREIGN_KEY_CHECKS=0`); the
/// replica keeps them as they are and checks (and cascades) what follows.
pub(crate) fn foreign_key_sql(pt: &PgTable, fk: &ForeignKey, opts: &PgSinkOptions) -> String {
    let cols: Vec<String> = fk.columns.iter().map(|c| quote(c)).collect();
    let refs: Vec<String> = fk.referenced_columns.iter().map(|c| quote(c)).collect();
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}.{} ({}) ON UPDATE {} ON DELETE {} \
         DEFERRABLE INITIALLY DEFERRED NOT VALID",
        pt.qualified,
        quote(&bounded(&fk.name)),
        cols.join(", "),
        quote(&opts.target_schema(&fk.referenced_table)),
        quote(&fk.referenced_table.table),
        refs.join(", "),
        action(fk.on_update),
        action(fk.on_delete),
    )
}

async fn exec(conn: &mut PgConnection, sql: &str, cx: &Context) -> Result<()> {
    conn.execute(AssertSqlSafe(sql.to_string())).await.map_err(|e| sqlx_error(e, cx))?;
    Ok(())
}

/// Run `sql` inside a savepoint; on a database error, roll back to it and log once.
async fn try_exec(
    conn: &mut PgConnection,
    sql: &str,
    pt: &PgTable,
    what: &str,
    cx: &DdlCtx<'_>,
) -> Result<bool> {
    let ctx = Context::schema(&pt.id);
    exec(conn, "SAVEPOINT synchdb_ddl", &ctx).await?;
    match conn.execute(AssertSqlSafe(sql.to_string())).await {
        Ok(_) => {
            exec(conn, "RELEASE SAVEPOINT synchdb_ddl", &ctx).await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(e)) => {
            exec(conn, "ROLLBACK TO SAVEPOINT synchdb_ddl", &ctx).await?;
            cx.notes.once(&pt.id, format!("{what} skipped: {}", e.message()));
            Ok(false)
        }
        Err(e) => Err(sqlx_error(e, &ctx)),
    }
}

pub(crate) async fn constraint_exists(conn: &mut PgConnection, pt: &PgTable, name: &str) -> Result<bool> {
    let row =
        sqlx::query("SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2")
            .bind(&pt.qualified)
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| sqlx_error(e, &Context::schema(&pt.id)))?;
    Ok(row.get::<i64, _>(0) > 0)
}

pub(crate) async fn table_exists(conn: &mut PgConnection, qualified: &str) -> Result<bool> {
    let row = sqlx::query("SELECT to_regclass($1) IS NOT NULL")
        .bind(qualified)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sqlx_error(e, &Context::default()))?;
    Ok(row.get::<bool, _>(0))
}

/// Create a table (schema, columns, primary key, enum checks).
pub(crate) async fn create_table(
    conn: &mut PgConnection,
    t: &TableSchema,
    pt: &PgTable,
    cx: &DdlCtx<'_>,
) -> Result<()> {
    create_table_as(conn, t, pt, cx, false).await
}

/// Create a table to bulk-load: without its primary key, which
/// [`create_indexes_and_keys`] builds after the load (one sorted build
/// instead of a B-tree insertion per row, as `pg_dump` orders it).
pub(crate) async fn create_table_for_load(
    conn: &mut PgConnection,
    t: &TableSchema,
    pt: &PgTable,
    cx: &DdlCtx<'_>,
) -> Result<()> {
    create_table_as(conn, t, pt, cx, true).await
}

async fn create_table_as(
    conn: &mut PgConnection,
    t: &TableSchema,
    pt: &PgTable,
    cx: &DdlCtx<'_>,
    without_key: bool,
) -> Result<()> {
    move_index_out_of_the_way(conn, &pt.schema, &pt.name, &Context::schema(&t.id)).await?;
    for sql in create_table_sql(t, pt, cx, without_key) {
        exec(conn, &sql, &Context::schema(&t.id)).await?;
    }
    Ok(())
}

/// Add `t`'s primary key if the table has none (created for a load).
async fn ensure_primary_key(conn: &mut PgConnection, t: &TableSchema, pt: &PgTable) -> Result<()> {
    let Some(clause) = primary_key_clause(t, pt) else { return Ok(()) };
    let ctx = Context::schema(&t.id);
    let has: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary)",
    )
    .bind(&pt.qualified)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, &ctx))?;
    if !has {
        exec(conn, &format!("ALTER TABLE {} ADD {clause}", pt.qualified), &ctx).await?;
    }
    Ok(())
}

/// Indexes are named `<table>_<index>`, and PostgreSQL keeps tables and
/// indexes in one namespace per schema: a table created (or renamed) later
/// may want the name of another table's index (`bug48024` with index `b`,
/// then a table `bug48024_b`; `CREATE TABLE IF NOT EXISTS` would have done
/// nothing). Such an index is renamed to a free `<name>_synchdb<n>`, the
/// spelling [`actual_index_name`] finds again.
async fn move_index_out_of_the_way(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    ctx: &Context,
) -> Result<()> {
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, ctx))?;
    if !matches!(kind.as_deref(), Some("i" | "I")) {
        return Ok(());
    }
    let free = free_relation_name(conn, schema, name, ctx).await?;
    let sql = format!("ALTER INDEX {}.{} RENAME TO {}", quote(schema), quote(name), quote(&free));
    exec(conn, &sql, ctx).await
}

/// The PostgreSQL name of `pt`'s index `index`: `<table>_<index>`, unless
/// another relation of the schema holds that name (a table `t_b` next to
/// table `t`'s index `b`, or another table's index): then the
/// `<table>_<index>_synchdb<n>` this table's index has, or the first free one
/// (`CREATE INDEX IF NOT EXISTS` would otherwise make no index at all).
async fn index_name_for(conn: &mut PgConnection, pt: &PgTable, index: &str, ctx: &Context) -> Result<String> {
    let computed = index_name(&pt.name, index);
    let owner: Option<Option<String>> = sqlx::query_scalar(
        "SELECT (SELECT i.indrelid::regclass::text FROM pg_index i WHERE i.indexrelid = c.oid)          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(&pt.schema)
    .bind(&computed)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, ctx))?;
    let ours: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&pt.qualified)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sqlx_error(e, ctx))?;
    match owner {
        // Free, or this table's index already (IF NOT EXISTS keeps it).
        None => Ok(computed),
        Some(Some(table)) if Some(&table) == ours.as_ref() => Ok(computed),
        Some(_) => match actual_index_name(conn, &pt.qualified, &computed, ctx).await? {
            Some(moved) => Ok(moved),
            None => free_relation_name(conn, &pt.schema, &computed, ctx).await,
        },
    }
}

/// `wanted` if no relation of `schema` has that name, else the first free
/// `<wanted>_synchdb<n>`.
async fn free_relation_name(
    conn: &mut PgConnection,
    schema: &str,
    wanted: &str,
    ctx: &Context,
) -> Result<String> {
    let mut candidate = wanted.to_string();
    for n in 1.. {
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2)",
        )
        .bind(schema)
        .bind(&candidate)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sqlx_error(e, ctx))?;
        if !taken {
            break;
        }
        candidate = bounded_with_suffix(wanted, &format!("_synchdb{n}"));
    }
    Ok(candidate)
}

/// `base` cut so that `base + suffix` fits PostgreSQL's 63-byte names.
fn bounded_with_suffix(base: &str, suffix: &str) -> String {
    let mut end = base.len().min(63usize.saturating_sub(suffix.len()));
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &base[..end])
}

/// The name of `table`'s index whose synchdb name is `computed`: itself, or
/// the `<computed>_synchdb<n>` it was moved to ([`move_index_out_of_the_way`]).
async fn actual_index_name(
    conn: &mut PgConnection,
    qualified_table: &str,
    computed: &str,
    ctx: &Context,
) -> Result<Option<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = to_regclass($1)",
    )
    .bind(qualified_table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, ctx))?;
    if names.iter().any(|n| n == computed) {
        return Ok(Some(computed.to_string()));
    }
    Ok(names
        .into_iter()
        .find(|n| (1..100).any(|i| *n == bounded_with_suffix(computed, &format!("_synchdb{i}")))))
}

/// Build the indexes and foreign keys of a table (after the bulk load, or at CREATE TABLE
/// in follow mode). Foreign keys to tables that do not exist, or that PostgreSQL refuses
/// (e.g. to non-unique columns), are skipped and logged once.
pub(crate) async fn create_indexes_and_keys(
    conn: &mut PgConnection,
    t: &TableSchema,
    pt: &PgTable,
    cx: &DdlCtx<'_>,
) -> Result<()> {
    ensure_primary_key(conn, t, pt).await?;
    for ix in &t.indexes {
        let name = index_name_for(conn, pt, &ix.name, &Context::schema(&pt.id)).await?;
        if let Some(sql) = index_sql_as(pt, ix, cx, &name) {
            try_exec(conn, &sql, pt, &format!("index {}", ix.name), cx).await?;
        }
    }
    if let Some(sql) = pt.own_index_sql() {
        try_exec(conn, &sql, pt, "index for rows without a key", cx).await?;
    }
    for fk in &t.foreign_keys {
        create_foreign_key(conn, pt, fk, cx).await?;
    }
    Ok(())
}

/// Add a foreign key unless a constraint of its name exists. One whose referenced table
/// is not replicated, or that PostgreSQL refuses, is skipped and logged once.
async fn create_foreign_key(
    conn: &mut PgConnection,
    pt: &PgTable,
    fk: &ForeignKey,
    cx: &DdlCtx<'_>,
) -> Result<()> {
    if constraint_exists(conn, pt, &bounded(&fk.name)).await? {
        return Ok(());
    }
    ensure_fk_index(conn, pt, fk, cx).await?;
    let target = format!(
        "{}.{}",
        quote(&cx.opts.target_schema(&fk.referenced_table)),
        quote(&fk.referenced_table.table)
    );
    if !table_exists(conn, &target).await? {
        cx.notes.once(
            &pt.id,
            format!("foreign key {} skipped: {} is not replicated", fk.name, fk.referenced_table),
        );
        return Ok(());
    }
    try_exec(conn, &foreign_key_sql(pt, fk, cx.opts), pt, &format!("foreign key {}", fk.name), cx).await?;
    Ok(())
}

/// InnoDB gives every foreign key an index starting with its columns (its own,
/// named after the constraint, when no index starts so). The snapshot reads
/// those from information_schema; a foreign key met in follow mode (`CREATE
/// TABLE` or `ALTER TABLE ... ADD FOREIGN KEY`) gets one here when no index of
/// the target table starts with its columns, so that cascades and checks on
/// the replica do not read the whole child table.
async fn ensure_fk_index(
    conn: &mut PgConnection,
    pt: &PgTable,
    fk: &ForeignKey,
    cx: &DdlCtx<'_>,
) -> Result<()> {
    if fk.columns.is_empty() {
        return Ok(());
    }
    let indexes: Vec<Vec<String>> = sqlx::query_scalar(
        "SELECT array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord) \
         FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indexprs IS NULL AND i.indpred IS NULL",
    )
    .bind(&pt.qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, &Context::schema(&pt.id)))?;
    let served = indexes.iter().any(|cols| {
        cols.len() >= fk.columns.len() && fk.columns.iter().zip(cols).all(|(a, b)| a.eq_ignore_ascii_case(b))
    });
    if served {
        return Ok(());
    }
    let cols: Vec<String> = fk.columns.iter().map(|c| quote(c)).collect();
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
        quote(&index_name(&pt.name, &fk.name)),
        pt.qualified,
        cols.join(", ")
    );
    try_exec(conn, &sql, pt, &format!("index of foreign key {}", fk.name), cx).await?;
    Ok(())
}

/// Set each identity column's sequence past the highest value in the table.
pub(crate) async fn sync_identities(conn: &mut PgConnection, pt: &PgTable) -> Result<()> {
    for c in pt.columns.iter().filter(|c| c.identity) {
        let sql = format!(
            // The sequence starts at 1: with no positive value yet, the next one is 1.
            "SELECT setval(pg_get_serial_sequence({}, {}), greatest(max({col}), 1), coalesce(max({col}) >= 1, false)) \
             FROM {}",
            pt.regclass_literal(),
            literal(&c.name),
            pt.qualified,
            col = quote(&c.name)
        );
        exec(conn, &sql, &Context::schema(&pt.id)).await?;
    }
    Ok(())
}

/// Apply one follow-mode schema change inside the batch's transaction.
pub(crate) async fn apply_schema_change(
    conn: &mut PgConnection,
    ev: &SchemaChangeEvent,
    cx: &DdlCtx<'_>,
) -> Result<()> {
    let ctx = Context::schema(ev.change.table()).at(ev.meta.position.clone());
    let opts = cx.opts;
    let build = |t: &TableSchema| {
        PgTable::build(t, opts, cx.postgis).map_err(|e| e.with_position(ev.meta.position.clone()))
    };
    let after = ev.schema_after.as_deref();
    let qualified = |id: &TableId| format!("{}.{}", quote(&opts.target_schema(id)), quote(&id.table));
    info!(table = %ev.change.table(), ddl = %ev.ddl, "applying schema change");
    match &ev.change {
        SchemaChange::CreateTable { schema } => {
            let t = after.unwrap_or(schema);
            let pt = build(t)?;
            create_table(conn, t, &pt, cx).await?;
            create_indexes_and_keys(conn, t, &pt, cx).await?;
        }
        SchemaChange::DropTable { table } => {
            // CASCADE drops foreign keys of other tables that point here (MySQL allows the
            // drop with foreign_key_checks=0), never other tables.
            exec(conn, &format!("DROP TABLE IF EXISTS {} CASCADE", qualified(table)), &ctx).await?;
        }
        SchemaChange::RenameTable { from, to } => {
            let (fs, ts) = (opts.target_schema(from), opts.target_schema(to));
            check_identifier("table", &to.table)?;
            if from.table != to.table {
                move_index_out_of_the_way(conn, &fs, &to.table, &ctx).await?;
                exec(conn, &format!("ALTER TABLE {} RENAME TO {}", qualified(from), quote(&to.table)), &ctx)
                    .await?;
                rename_indexes(conn, &fs, &from.table, &to.table, &ctx).await?;
                rename_generated_foreign_keys(conn, &fs, &from.table, &to.table, &ctx).await?;
            }
            if fs != ts {
                exec(conn, &format!("CREATE SCHEMA IF NOT EXISTS {}", quote(&ts)), &ctx).await?;
                move_index_out_of_the_way(conn, &ts, &to.table, &ctx).await?;
                let mid = format!("{}.{}", quote(&fs), quote(&to.table));
                exec(conn, &format!("ALTER TABLE {mid} SET SCHEMA {}", quote(&ts)), &ctx).await?;
            }
        }
        SchemaChange::AddColumn { table, column, .. } => {
            let pg = map_column(table, column, opts, cx.postgis)?;
            let q = qualified(table);
            let mut def = column_def(table, column, &pg, cx);
            let declared = translate_default(column, &pg, opts.get_zero_dates()).ok().flatten();
            // MySQL fills existing rows of a new NOT NULL column with the type's implicit default.
            let fill = if !column.nullable && declared.is_none() && !pg.identity {
                implicit_default(column, &pg, opts.get_zero_dates())
            } else {
                None
            };
            if let Some(f) = &fill {
                def.push_str(" DEFAULT ");
                def.push_str(f);
            }
            exec(conn, &format!("ALTER TABLE {q} ADD COLUMN {def}"), &ctx).await?;
            if fill.is_some() {
                exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {} DROP DEFAULT", quote(&pg.name)), &ctx)
                    .await?;
            }
            if let Some(check) = enum_check(&pg) {
                exec(conn, &format!("ALTER TABLE {q} ADD {check}"), &ctx).await?;
            }
            if pg.identity {
                sync_identities(conn, &build_one(table, &q, pg)).await?;
            }
        }
        SchemaChange::DropColumn { table, name } => {
            exec(
                conn,
                &format!("ALTER TABLE {} DROP COLUMN IF EXISTS {}", qualified(table), quote(name)),
                &ctx,
            )
            .await?;
        }
        SchemaChange::RenameColumn { table, from, to } => {
            check_identifier("column", to)?;
            rename_column(conn, table, &qualified(table), from, to, &ctx).await?;
        }
        SchemaChange::ModifyColumn { table, old, new, .. } => {
            check_identifier("column", &new.name)?;
            modify_column(conn, table, &qualified(table), old, new, cx, &ctx).await?;
        }
        SchemaChange::CreateIndex { table, index } => {
            let pt = match after {
                Some(t) => build(t)?,
                None => {
                    return Err(Error::new(ErrorKind::SinkSchema, "CREATE INDEX without the table's schema")
                        .with_table(table.clone())
                        .with_position(ev.meta.position.clone()))
                }
            };
            let name = index_name_for(conn, &pt, &index.name, &ctx).await?;
            if let Some(sql) = index_sql_as(&pt, index, cx, &name) {
                exec(conn, &sql, &ctx).await?;
            }
        }
        SchemaChange::DropIndex { table, name } => {
            let computed = index_name(&table.table, name);
            let ix = actual_index_name(conn, &qualified(table), &computed, &ctx).await?.unwrap_or(computed);
            exec(
                conn,
                &format!("DROP INDEX IF EXISTS {}.{}", quote(&opts.target_schema(table)), quote(&ix)),
                &ctx,
            )
            .await?;
        }
        SchemaChange::SetPrimaryKey { table, columns } => {
            let q = qualified(table);
            let row = sqlx::query(
                "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
            )
            .bind(&q)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| sqlx_error(e, &ctx))?;
            if let Some(row) = row {
                let name: String = row.get(0);
                exec(conn, &format!("ALTER TABLE {q} DROP CONSTRAINT {}", quote(&name)), &ctx).await?;
            }
            if !columns.is_empty() {
                let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
                exec(
                    conn,
                    &format!(
                        "ALTER TABLE {q} ADD CONSTRAINT {} PRIMARY KEY ({})",
                        quote(&index_name(&table.table, "pkey")),
                        cols.join(", ")
                    ),
                    &ctx,
                )
                .await?;
            }
        }
        SchemaChange::AddForeignKey { table, foreign_key } => {
            let Some(t) = after else {
                return Err(Error::new(ErrorKind::SinkSchema, "ADD FOREIGN KEY without the table's schema")
                    .with_table(table.clone())
                    .with_position(ev.meta.position.clone()));
            };
            create_foreign_key(conn, &build(t)?, foreign_key, cx).await?;
        }
        SchemaChange::DropForeignKey { table, name } => {
            let sql = format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                qualified(table),
                quote(&bounded(name))
            );
            exec(conn, &sql, &ctx).await?;
        }
        other => {
            return Err(Error::new(ErrorKind::SinkSchema, format!("unsupported schema change {other:?}"))
                .with_table(ev.change.table().clone())
                .with_position(ev.meta.position.clone()))
        }
    }
    let alters = matches!(
        ev.change,
        SchemaChange::AddColumn { .. }
            | SchemaChange::DropColumn { .. }
            | SchemaChange::RenameColumn { .. }
            | SchemaChange::ModifyColumn { .. }
            | SchemaChange::CreateIndex { .. }
            | SchemaChange::DropIndex { .. }
            | SchemaChange::SetPrimaryKey { .. }
    );
    if let Some(t) = after.filter(|t| alters && t.id == *ev.change.table()) {
        reconcile_own_index(conn, &build(t)?, cx, &ctx).await?;
    }
    Ok(())
}

/// After an ALTER of a table: its own keyless index ([`KEYLESS_INDEX`]) is
/// where the table's new shape wants it — dropped when the table got a key or
/// a source index, or when its column's new type is unbounded (a B-tree entry
/// could exceed PostgreSQL's limit), and made on the column chosen now.
async fn reconcile_own_index(
    conn: &mut PgConnection,
    pt: &PgTable,
    cx: &DdlCtx<'_>,
    ctx: &Context,
) -> Result<()> {
    let name = index_name(&pt.name, KEYLESS_INDEX);
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass($1) AND c.relname = $2",
    )
    .bind(&pt.qualified)
    .bind(&name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, ctx))?;
    let wanted = pt.probe.filter(|_| pt.own_index).map(|i| pt.columns[i].name.clone());
    if existing == wanted {
        return Ok(());
    }
    if existing.is_some() {
        exec(conn, &format!("DROP INDEX IF EXISTS {}.{}", quote(&pt.schema), quote(&name)), ctx).await?;
    }
    if let Some(sql) = pt.own_index_sql() {
        try_exec(conn, &sql, pt, "index for rows without a key", cx).await?;
    }
    Ok(())
}

fn build_one(table: &TableId, qualified: &str, pg: PgColumn) -> PgTable {
    PgTable {
        id: table.clone(),
        schema: String::new(),
        name: table.table.clone(),
        qualified: qualified.to_string(),
        columns: vec![pg],
        key: vec![],
        probe: None,
        own_index: false,
    }
}

/// After a table rename, rename the indexes this sink named `<old table>_<index>`
/// (found in the catalog, so indexes created by earlier DDL are included).
async fn rename_indexes(
    conn: &mut PgConnection,
    schema: &str,
    from: &str,
    to: &str,
    ctx: &Context,
) -> Result<()> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = $2")
            .bind(schema)
            .bind(to)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| sqlx_error(e, ctx))?;
    let prefix = format!("{from}_");
    for old in names {
        let Some(rest) = old.strip_prefix(&prefix) else { continue };
        let new = free_relation_name(conn, schema, &index_name(to, rest), ctx).await?;
        let sql = format!("ALTER INDEX {}.{} RENAME TO {}", quote(schema), quote(&old), quote(&new));
        exec(conn, &sql, ctx).await?;
    }
    Ok(())
}

/// After a table rename, rename its foreign keys named `<old table>_ibfk_<n>`: InnoDB
/// renames the names it generated with the table, and a later DROP FOREIGN KEY uses the new one.
async fn rename_generated_foreign_keys(
    conn: &mut PgConnection,
    schema: &str,
    from: &str,
    to: &str,
    ctx: &Context,
) -> Result<()> {
    let q = format!("{}.{}", quote(schema), quote(to));
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f'",
    )
    .bind(&q)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| sqlx_error(e, ctx))?;
    let prefix = format!("{from}_ibfk_");
    for old in names {
        let Some(n) = old.strip_prefix(&prefix) else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let new = bounded(&format!("{to}_ibfk_{n}"));
        exec(conn, &format!("ALTER TABLE {q} RENAME CONSTRAINT {} TO {}", quote(&old), quote(&new)), ctx)
            .await?;
    }
    Ok(())
}

async fn rename_column(
    conn: &mut PgConnection,
    table: &TableId,
    q: &str,
    from: &str,
    to: &str,
    ctx: &Context,
) -> Result<()> {
    exec(conn, &format!("ALTER TABLE {q} RENAME COLUMN {} TO {}", quote(from), quote(to)), ctx).await?;
    let probe = build_one(table, q, PgColumn::placeholder());
    let old = enum_check_name(from);
    if constraint_exists(conn, &probe, &old).await? {
        let sql =
            format!("ALTER TABLE {q} RENAME CONSTRAINT {} TO {}", quote(&old), quote(&enum_check_name(to)));
        exec(conn, &sql, ctx).await?;
    }
    Ok(())
}

/// The expression converting the old column to the new type in `ALTER ... TYPE ... USING`.
fn using_expr(col: &str, old: &PgColumn, new: &PgColumn) -> String {
    let c = quote(col);
    match (old.family, new.family) {
        (Family::Bytea, Family::Text) => format!("convert_from({c}, 'UTF8')"),
        (Family::Text, Family::Bytea) => format!("convert_to({c}, 'UTF8')"),
        (_, Family::Text) => format!("{c}::text"),
        (Family::Json, _) | (Family::Text, _) => format!("{c}::text::{}", new.sql_type),
        _ => format!("{c}::{}", new.sql_type),
    }
}

async fn modify_column(
    conn: &mut PgConnection,
    table: &TableId,
    q: &str,
    old: &ColumnSchema,
    new: &ColumnSchema,
    cx: &DdlCtx<'_>,
    ctx: &Context,
) -> Result<()> {
    let zero = cx.opts.get_zero_dates();
    let old_pg = map_column(table, old, cx.opts, cx.postgis)?;
    let new_pg = map_column(table, new, cx.opts, cx.postgis)?;
    if old.name != new.name {
        rename_column(conn, table, q, &old.name, &new.name, ctx).await?;
    }
    let col = quote(&new.name);
    let probe = build_one(table, q, new_pg.clone());
    let check = enum_check_name(&new.name);
    let check_changes = old_pg.enum_members != new_pg.enum_members || old_pg.sql_type != new_pg.sql_type;
    if check_changes && constraint_exists(conn, &probe, &check).await? {
        exec(conn, &format!("ALTER TABLE {q} DROP CONSTRAINT {}", quote(&check)), ctx).await?;
    }
    let old_default = translate_default(old, &old_pg, zero).ok().flatten();
    let new_default = translate_default(new, &new_pg, zero).unwrap_or_else(|why| {
        cx.notes.once(table, format!("default of column {} dropped: {why}", new.name));
        None
    });
    if old_pg.sql_type != new_pg.sql_type {
        if old_default.is_some() {
            exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} DROP DEFAULT"), ctx).await?;
        }
        if old_pg.identity && !new_pg.identity {
            exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} DROP IDENTITY IF EXISTS"), ctx).await?;
        }
        let sql = format!(
            "ALTER TABLE {q} ALTER COLUMN {col} TYPE {} USING {}",
            new_pg.sql_type,
            using_expr(&new.name, &old_pg, &new_pg)
        );
        exec(conn, &sql, ctx).await?;
    } else if old_pg.identity && !new_pg.identity {
        exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} DROP IDENTITY IF EXISTS"), ctx).await?;
    }
    if old.nullable != new.nullable {
        let op = if new.nullable { "DROP" } else { "SET" };
        exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} {op} NOT NULL"), ctx).await?;
    }
    if new_pg.identity && !old_pg.identity {
        if old_default.is_some() {
            exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} DROP DEFAULT"), ctx).await?;
        }
        exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} ADD GENERATED BY DEFAULT AS IDENTITY"), ctx)
            .await?;
        sync_identities(conn, &probe).await?;
    } else if !new_pg.identity && (old_default != new_default || old_pg.sql_type != new_pg.sql_type) {
        match &new_default {
            Some(d) => {
                exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} SET DEFAULT {d}"), ctx).await?
            }
            None => exec(conn, &format!("ALTER TABLE {q} ALTER COLUMN {col} DROP DEFAULT"), ctx).await?,
        }
    }
    if let Some(c) = enum_check(&new_pg) {
        if !constraint_exists(conn, &probe, &check).await? {
            exec(conn, &format!("ALTER TABLE {q} ADD {c}"), ctx).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::{ColumnType, IndexColumn, LobSize};

    fn probe(
        columns: Vec<ColumnSchema>,
        indexes: Vec<IndexSchema>,
        opts: &PgSinkOptions,
    ) -> (Option<String>, bool) {
        let mut t = TableSchema::new(TableId::new("d", "t"), columns);
        t.indexes = indexes;
        let pt = PgTable::build(&t, opts, false).unwrap();
        (pt.probe.map(|i| pt.columns[i].name.clone()), pt.own_index)
    }

    fn col(name: &str, ty: ColumnType) -> ColumnSchema {
        ColumnSchema::new(name, ty)
    }

    #[test]
    fn keyless_probe_column() {
        let o = PgSinkOptions::new();
        let text = |n: &str| col(n, ColumnType::Text { size: LobSize::Long });
        let varchar = |n: &str, length| col(n, ColumnType::VarChar { length });
        let ts = col("ts", ColumnType::DateTime { fsp: 6 });
        // A fixed-size type first, then a short varchar; never text or a long varchar.
        assert_eq!(
            probe(vec![text("a"), varchar("b", 20), varchar("c", 700), ts.clone()], vec![], &o),
            (Some("ts".into()), true)
        );
        assert_eq!(
            probe(vec![text("a"), varchar("c", 700), varchar("b", 20)], vec![], &o),
            (Some("b".into()), true)
        );
        assert_eq!(probe(vec![text("a"), col("j", ColumnType::Json)], vec![], &o), (None, false));
        // A source index serves (a whole column), a prefix index does not.
        let ix = |c: IndexColumn| IndexSchema { name: "i".into(), kind: IndexKind::Plain, columns: vec![c] };
        assert_eq!(
            probe(vec![text("a"), ts.clone()], vec![ix(IndexColumn::new("a"))], &o),
            (Some("a".into()), false)
        );
        let mut prefix = IndexColumn::new("a");
        prefix.prefix_length = Some(10);
        assert_eq!(probe(vec![text("a"), ts.clone()], vec![ix(prefix)], &o), (Some("ts".into()), true));
        // Off: only a source index.
        let off = PgSinkOptions::new().keyless_index(false);
        assert_eq!(probe(vec![text("a"), ts.clone()], vec![], &off), (None, false));
        // A keyed table needs none.
        let mut keyed = TableSchema::new(TableId::new("d", "t"), vec![ts]);
        keyed.primary_key = vec!["ts".into()];
        assert_eq!(PgTable::build(&keyed, &o, false).unwrap().probe, None);
    }
}
