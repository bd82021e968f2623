//! Change apply: events of a batch turned into statements on one transaction.
//!
//! Set-based mode groups maximal runs of the same operation on the same table in which
//! no key repeats, and sends each run as one statement whose text does not depend on
//! the row count (values go in `text[]` parameters, cast per column):
//!
//! - inserts, and updates that keep the key → `INSERT ... SELECT ... FROM unnest(...)
//!   ON CONFLICT (key) DO UPDATE` (idempotent: replaying gives the same rows);
//! - deletes → `DELETE ... USING unnest(...) WHERE key = ...`;
//! - updates that change the key → `UPDATE ... WHERE key = old AND NOT EXISTS (new key)`
//!   (a real UPDATE, so `ON UPDATE CASCADE` foreign keys follow); on a replay, where the
//!   new key exists already, the stale new row is replaced if the old row exists again,
//!   else the after image is written in place (never a delete that would cascade);
//! - tables without a key: inserts in runs; each update/delete changes exactly one row
//!   whose columns all match the before image. Set-based mode sends a run of deletes,
//!   or of updates none of which matches a row an earlier one of the run wrote, as one
//!   statement: one pass over the table pairs the run's before images with the rows
//!   holding them as a multiset (a before image given m times takes m such rows), by
//!   the text of a row of comparable values; the statement changes nothing unless every
//!   before image found its row, and then the run is applied row by row instead
//!   (`WHERE ctid = (SELECT ctid ... LIMIT 1)`), so a row that cannot be matched keeps
//!   the row-by-row semantics.
//!
//! On a keyed table, a run of upserts and a run of deletes stay pending side by side
//! while no key repeats between them (rows of different keys commute), so a batch of
//! many small source transactions becomes one statement per table and operation rather
//! than one per transaction; a key met again sends the run holding it first. Tables
//! with a foreign key to themselves, or with a unique key besides the row identity
//! (where a deleted and an inserted row could collide), keep the source order of
//! upserts and deletes.
//!
//! A batch (or a parallel share) made only of row changes of keyed tables that keep
//! their keys is *piped*: runs are cut at 1,000 rows and each goes, in order, to the
//! session executing them while the next is encoded (two futures joined on one task:
//! PostgreSQL works on one statement while this process encodes the next), instead
//! of encoding a whole batch and then waiting for it.
//!
//! Row-by-row mode sends one statement per row change, with the same semantics.
//!
//! A column with an SQL transform (`PgColumn::transform`, e.g. `lower(%d)`) stores the
//! transform of its parameter wherever the plain cast would be used, keys included (so a
//! deterministic transform of a key column still finds its rows).

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, PgConnection};
use synchdb_core::Result;
use synchdb_types::{BinlogPosition, ChangeEvent, Row};

use crate::ddl::{quote, PgTable};
use crate::error::{sqlx_error, Context};
use crate::options::{ApplyMode, ZeroDatePolicy};
use crate::typemap::{encode_param, Family, PgColumn};

type Values = Vec<Option<String>>;

/// The statements of one table shape.
#[derive(Debug)]
pub(crate) struct Statements {
    upsert_many: Arc<str>,
    upsert_one: Arc<str>,
    delete_many: Arc<str>,
    delete_one: Arc<str>,
    update_key: Arc<str>,
    delete_new_if_old: Arc<str>,
    delete_match: Arc<str>,
    update_match: Arc<str>,
    delete_match_many: Arc<str>,
    update_match_many: Arc<str>,
    /// The keyless statements again, finding candidate rows by equality on the
    /// probe column ([`PgTable::probe`]) first: `(column, delete_match,
    /// update_match, delete_match_many, update_match_many)`. Used when no
    /// before image has NULL there.
    probed: Option<(usize, [Arc<str>; 4])>,
}

fn params(from: usize, n: usize) -> impl Iterator<Item = String> {
    (from..from + n).map(|i| format!("${i}"))
}

/// Whether stored column `c` holds the value of text parameter `param`: the
/// two [`comparable`] forms compared, so the row-by-row match and the
/// set-based one (`row_text`) agree by construction.
fn matches_expr(c: &PgColumn, param: &str) -> String {
    let col = quote(&c.name);
    format!("{} IS NOT DISTINCT FROM {}", comparable(c, Some(&col), param), comparable(c, None, param))
}

/// A value of column `c` in the form rows are matched by (JSON as jsonb,
/// geometry as bytes, transformed or overridden columns as text): `col` is
/// the stored column, else `param` (a text parameter) cast as it would be stored.
fn comparable(c: &PgColumn, col: Option<&str>, param: &str) -> String {
    let stored = |e: String| col.map(str::to_string).unwrap_or(e);
    if c.transform.is_some() {
        return match col {
            Some(col) => format!("({col})::text"),
            None => format!("(({})::{})::text", c.value_expr(param), c.sql_type),
        };
    }
    match c.family {
        Family::Json => format!("({})::jsonb", stored(param.to_string())),
        Family::PostGis => match col {
            Some(col) => format!("({col})::bytea"),
            None => format!("(({param})::geometry)::bytea"),
        },
        Family::Other if !c.default_mapping => format!("({})::text", stored(c.value_expr(param))),
        _ => stored(c.value_expr(param)),
    }
}

/// `ROW(...)::text` of the comparable values of every column, stored (`t.`) or
/// from the parameters `u.{prefix}{i}`.
fn row_text(pt: &PgTable, stored: bool, prefix: &str) -> String {
    let parts: Vec<String> = pt
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let col = format!("t.{}", quote(&c.name));
            comparable(c, stored.then_some(col.as_str()), &format!("u.{prefix}{i}"))
        })
        .collect();
    format!("ROW({})::text", parts.join(", "))
}

impl Statements {
    pub fn new(pt: &PgTable) -> Statements {
        let q = &pt.qualified;
        let n = pt.columns.len();
        let cols: Vec<String> = pt.columns.iter().map(|c| quote(&c.name)).collect();
        let cols = cols.join(", ");
        let key: Vec<&PgColumn> = pt.key.iter().map(|&i| &pt.columns[i]).collect();
        let conflict = if key.is_empty() {
            String::new()
        } else {
            let kc: Vec<String> = key.iter().map(|c| quote(&c.name)).collect();
            let rest: Vec<String> = pt
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| !pt.key.contains(i))
                .map(|(_, c)| format!("{0} = EXCLUDED.{0}", quote(&c.name)))
                .collect();
            if rest.is_empty() {
                format!(" ON CONFLICT ({}) DO NOTHING", kc.join(", "))
            } else {
                format!(" ON CONFLICT ({}) DO UPDATE SET {}", kc.join(", "), rest.join(", "))
            }
        };
        let arrays: Vec<String> = params(1, n).map(|p| format!("{p}::text[]")).collect();
        let aliases: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let casts: Vec<String> =
            pt.columns.iter().enumerate().map(|(i, c)| c.value_expr(&format!("u.c{i}"))).collect();
        let upsert_many = format!(
            "INSERT INTO {q} ({cols}) SELECT {} FROM unnest({}) AS u({}){conflict}",
            casts.join(", "),
            arrays.join(", "),
            aliases.join(", ")
        );
        let values: Vec<String> =
            pt.columns.iter().zip(params(1, n)).map(|(c, p)| c.value_expr(&p)).collect();
        let upsert_one = format!("INSERT INTO {q} ({cols}) VALUES ({}){conflict}", values.join(", "));
        let k = key.len();
        let karrays: Vec<String> = params(1, k).map(|p| format!("{p}::text[]")).collect();
        let kaliases: Vec<String> = (0..k).map(|i| format!("k{i}")).collect();
        let kjoin: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("t.{} = {}", quote(&c.name), c.value_expr(&format!("u.k{i}"))))
            .collect();
        let delete_many = format!(
            "DELETE FROM {q} AS t USING unnest({}) AS u({}) WHERE {}",
            karrays.join(", "),
            kaliases.join(", "),
            kjoin.join(" AND ")
        );
        let kwhere = |from: usize| -> String {
            let w: Vec<String> = key
                .iter()
                .zip(params(from, k))
                .map(|(c, p)| format!("{} = {}", quote(&c.name), c.value_expr(&p)))
                .collect();
            w.join(" AND ")
        };
        let delete_one = format!("DELETE FROM {q} WHERE {}", kwhere(1));
        let set: Vec<String> = pt
            .columns
            .iter()
            .zip(params(1, n))
            .map(|(c, p)| format!("{} = {}", quote(&c.name), c.value_expr(&p)))
            .collect();
        let update_key = format!(
            "UPDATE {q} SET {} WHERE {} AND NOT EXISTS (SELECT 1 FROM {q} WHERE {})",
            set.join(", "),
            kwhere(n + 1),
            kwhere(n + k + 1)
        );
        let delete_new_if_old = format!(
            "DELETE FROM {q} WHERE {} AND EXISTS (SELECT 1 FROM {q} WHERE {})",
            kwhere(1),
            kwhere(k + 1)
        );
        let all_match = |from: usize, probe: Option<usize>| -> String {
            let mut w: Vec<String> = Vec::with_capacity(n + 1);
            if let Some(i) = probe {
                let c = &pt.columns[i];
                w.push(format!("{} = {}", quote(&c.name), c.value_expr(&format!("${}", from + i))));
            }
            w.extend(pt.columns.iter().zip(params(from, n)).map(|(c, p)| matches_expr(c, &p)));
            format!("ctid = (SELECT ctid FROM {q} WHERE {} LIMIT 1)", w.join(" AND "))
        };
        let delete_match_with = |probe| format!("DELETE FROM {q} WHERE {}", all_match(1, probe));
        let update_match_with =
            |probe| format!("UPDATE {q} SET {} WHERE {}", set.join(", "), all_match(n + 1, probe));
        // Runs of keyless deletes/updates: rows paired with before images as a
        // multiset, nothing changed unless all pair; without a probe column in
        // one pass over the table.
        let stored = row_text(pt, true, "");
        let barrays: Vec<String> = params(1, n).map(|p| format!("{p}::text[]")).collect();
        let baliases: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        // With a probe column: each distinct before image takes as many rows as
        // it has in the run, through the index (`LIMIT m`), instead of every
        // row holding one of the probe values: a run over many identical rows
        // (a keyless log table, `UPDATE t SET a = 7` on 131,072 rows of (4, 6))
        // was matched against all of them in every batch.
        let limited = |i: usize| {
            let c = &pt.columns[i];
            format!(
                "d AS (SELECT r, count(*) AS m, min(pv) AS pv FROM b GROUP BY r), \
                 x AS (SELECT l.id, d.r FROM d CROSS JOIN LATERAL \
                 (SELECT t.ctid AS id FROM {q} AS t WHERE t.{} = {} AND {stored} = d.r LIMIT d.m) AS l)",
                quote(&c.name),
                c.value_expr("d.pv"),
            )
        };
        let delete_match_many_with = |probe: Option<usize>| {
            if let Some(i) = probe {
                return format!(
                    "WITH b AS (SELECT {before} AS r, u.b{i} AS pv FROM unnest({arrays}) AS u({aliases})), {x} \
                     DELETE FROM {q} WHERE ctid = ANY (ARRAY(SELECT id FROM x)) AND (SELECT count(*) FROM x) = ${k}",
                    before = row_text(pt, false, "b"),
                    arrays = barrays.join(", "),
                    aliases = baliases.join(", "),
                    x = limited(i),
                    k = n + 1,
                );
            }
            format!(
            "WITH b AS (SELECT {before} AS r, count(*) AS m FROM unnest({arrays}) AS u({aliases}) GROUP BY 1), \
             s AS (SELECT t.ctid AS id, {stored} AS r FROM {q} AS t), \
             x AS (SELECT s.id, row_number() OVER (PARTITION BY s.r) AS rn, b.m FROM s JOIN b ON s.r = b.r), \
             y AS (SELECT id FROM x WHERE rn <= m) \
             DELETE FROM {q} WHERE ctid = ANY (ARRAY(SELECT id FROM y)) AND (SELECT count(*) FROM y) = ${k}",
            before = row_text(pt, false, "b"),
            arrays = barrays.join(", "),
            aliases = baliases.join(", "),
            k = n + 1,
        )
        };
        let aarrays: Vec<String> = params(n + 1, n).map(|p| format!("{p}::text[]")).collect();
        let aaliases: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
        let after: Vec<String> = pt
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} AS a{i}", c.value_expr(&format!("u.a{i}"))))
            .collect();
        let set_after: Vec<String> =
            pt.columns.iter().enumerate().map(|(i, c)| format!("{} = y.a{i}", quote(&c.name))).collect();
        let set_after_b: Vec<String> =
            pt.columns.iter().enumerate().map(|(i, c)| format!("{} = b.a{i}", quote(&c.name))).collect();
        let update_match_many_with = |probe: Option<usize>| {
            if let Some(i) = probe {
                // Rows and after images are paired by position, not by a join
                // (the planner, which sees no row counts for the arrays, chose
                // a nested loop over both: quadratic): the matched rows in
                // before-image order as one array, each after image taking the
                // element of its own ordinal in that order. Within one before
                // image any pairing is right (the rows are equal).
                return format!(
                    "WITH b AS (SELECT z.*, row_number() OVER (ORDER BY z.r) AS g FROM \
                     (SELECT {before} AS r, u.b{i} AS pv, {after} FROM unnest({arrays}) AS u({aliases})) AS z), {x}, \
                     ids AS (SELECT ARRAY(SELECT x.id FROM x ORDER BY x.r) AS a) \
                     UPDATE {q} AS t SET {set} FROM b, ids WHERE t.ctid = ids.a[b.g] AND (SELECT count(*) FROM x) = ${k}",
                    before = row_text(pt, false, "b"),
                    after = after.join(", "),
                    arrays = [barrays.clone(), aarrays.clone()].concat().join(", "),
                    aliases = [baliases.clone(), aaliases.clone()].concat().join(", "),
                    set = set_after_b.join(", "),
                    x = limited(i),
                    k = 2 * n + 1,
                );
            }
            format!(
            "WITH b AS (SELECT {before} AS r, row_number() OVER (PARTITION BY {before}) AS k, {after} \
             FROM unnest({arrays}) AS u({aliases})), \
             s AS (SELECT t.ctid AS id, {stored} AS r FROM {q} AS t), \
             x AS (SELECT s.id, s.r, row_number() OVER (PARTITION BY s.r) AS k FROM s WHERE s.r IN (SELECT r FROM b)), \
             y AS (SELECT x.id, b.* FROM x JOIN b USING (r, k)) \
             UPDATE {q} AS t SET {set} FROM y WHERE t.ctid = y.id AND (SELECT count(*) FROM y) = ${k}",
            before = row_text(pt, false, "b"),
            after = after.join(", "),
            arrays = [barrays.clone(), aarrays.clone()].concat().join(", "),
            aliases = [baliases.clone(), aaliases.clone()].concat().join(", "),
            set = set_after.join(", "),
            k = 2 * n + 1,
        )
        };
        let probed = pt.probe.map(|i| {
            let some = Some(i);
            let p: [Arc<str>; 4] = [
                delete_match_with(some).into(),
                update_match_with(some).into(),
                delete_match_many_with(some).into(),
                update_match_many_with(some).into(),
            ];
            (i, p)
        });
        Statements {
            upsert_many: upsert_many.into(),
            upsert_one: upsert_one.into(),
            delete_many: delete_many.into(),
            delete_one: delete_one.into(),
            update_key: update_key.into(),
            delete_new_if_old: delete_new_if_old.into(),
            delete_match: delete_match_with(None).into(),
            update_match: update_match_with(None).into(),
            delete_match_many: delete_match_many_with(None).into(),
            update_match_many: update_match_many_with(None).into(),
            probed,
        }
    }
}

impl Statements {
    /// The single-row keyless statement (update or delete) for a before image:
    /// probed when the image has a value in the probe column.
    fn match_one(&self, update: bool, before: &[Option<String>]) -> &Arc<str> {
        let probed = self.probed.as_ref().filter(|(i, _)| before[*i].is_some());
        match (probed, update) {
            (Some((_, p)), true) => &p[1],
            (Some((_, p)), false) => &p[0],
            (None, true) => &self.update_match,
            (None, false) => &self.delete_match,
        }
    }
}

/// A mapped table with its statements.
#[derive(Debug)]
pub(crate) struct TableEntry {
    pub pt: PgTable,
    pub stmts: Statements,
    /// Its upserts and deletes keep their source order (see [`Applier`]):
    /// a foreign key references the table itself, or a unique key other than
    /// the row identity could collide between a deleted and an inserted row.
    pub ordered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Insert or key-preserving update (upsert when keyed, plain insert when keyless).
    Upsert,
    Delete,
    /// Keyless delete: the run holds whole before images.
    DeleteMatch,
    /// Keyless update: the run holds before images, then after images (2n columns).
    UpdateMatch,
}

/// The run being accumulated.
struct Run {
    table: Arc<TableEntry>,
    op: Op,
    /// Column-major values: one array per column (or key column for deletes).
    columns: Vec<Values>,
    /// Keys written by the run (keyed tables), or after images (keyless
    /// updates): a row that conflicts with one starts a new run.
    keys: HashSet<Values>,
    rows: usize,
    position: BinlogPosition,
}

impl Run {
    fn new(table: Arc<TableEntry>, op: Op, width: usize, position: &BinlogPosition) -> Run {
        Run {
            columns: vec![Vec::new(); width],
            table,
            op,
            keys: HashSet::new(),
            rows: 0,
            position: position.clone(),
        }
    }

    /// Add a row, remembering `remember` (see `keys`).
    fn add(&mut self, vals: Values, remember: Option<Values>) {
        for (col, v) in self.columns.iter_mut().zip(vals) {
            col.push(v);
        }
        if let Some(k) = remember {
            self.keys.insert(k);
        }
        self.rows += 1;
    }
}

/// A statement of a run and its error context, on its way to the session
/// that executes it (see [`Applier::piped`]).
pub(crate) type Piped = (Context, sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>);

/// Rows of a run after which a piped applier sends it (so that PostgreSQL
/// executes one part while the next is encoded).
const PIPED_RUN_ROWS: usize = 1000;

/// Whether every event of `events` can go through a piped applier: row
/// events of keyed tables, no key changed, set-based mode (no statement
/// whose result decides what comes next).
pub(crate) fn pipeable<'a>(
    mode: ApplyMode,
    mut events: impl Iterator<Item = (&'a ChangeEvent, &'a TableEntry)>,
) -> bool {
    mode == ApplyMode::SetBased
        && events.all(|(event, table)| {
            let key = &table.pt.key;
            !key.is_empty()
                && match event {
                    ChangeEvent::Insert(_) | ChangeEvent::Delete(_) => true,
                    ChangeEvent::Update(e) => key.iter().all(|&k| e.before.get(k) == e.after.get(k)),
                    _ => false,
                }
        })
}

/// Whether the probe column `probe` narrows a keyless run's rows enough for
/// the probed statement (each distinct before image looked up through the
/// probe index): not when many distinct images share few probe values (a
/// delete of 128,000 distinct rows all with the same indexed value would read
/// those rows once per image); then one pass over the table serves better.
fn probe_selective(run: &Run, probe: usize, n: usize) -> bool {
    if run.rows <= 64 {
        return true;
    }
    let images: HashSet<Vec<&Option<String>>> =
        (0..run.rows).map(|r| run.columns[..n].iter().map(|c| &c[r]).collect()).collect();
    let probes: HashSet<&Option<String>> = run.columns[probe].iter().collect();
    images.len() <= 64 || probes.len() * 8 >= images.len()
}

/// Applies the events of one batch on one connection (in the caller's
/// transaction), or, [piped](Self::piped), hands its statements to the task
/// that executes them.
pub(crate) struct Applier<'c> {
    conn: Option<&'c mut PgConnection>,
    pipe: Option<tokio::sync::mpsc::Sender<Piped>>,
    pub mode: ApplyMode,
    pub zero: ZeroDatePolicy,
    run: Option<Run>,
    /// On a keyed table, the pending run of the other operation (upserts
    /// while `run` holds deletes, or the reverse). The two runs never hold
    /// the same key, so their rows commute: a batch's upserts and deletes of
    /// one table go in one statement each until a key repeats, instead of a
    /// statement per source transaction.
    other: Option<Run>,
    /// Rows changed, for statistics and tests.
    pub changed: u64,
}

impl<'c> Applier<'c> {
    pub fn new(conn: &'c mut PgConnection, mode: ApplyMode, zero: ZeroDatePolicy) -> Self {
        Applier { conn: Some(conn), pipe: None, mode, zero, run: None, other: None, changed: 0 }
    }

    /// An applier that sends its statements to `pipe` instead of executing
    /// them (only for events [`pipeable`] accepts): the caller executes them
    /// in order on its connection while this one encodes the next.
    pub fn piped(pipe: tokio::sync::mpsc::Sender<Piped>, zero: ZeroDatePolicy) -> Self {
        Applier {
            conn: None,
            pipe: Some(pipe),
            mode: ApplyMode::SetBased,
            zero,
            run: None,
            other: None,
            changed: 0,
        }
    }

    /// The connection (not of a piped applier).
    pub fn conn(&mut self) -> Result<&mut PgConnection> {
        self.conn.as_deref_mut().ok_or_else(|| {
            synchdb_core::Error::internal("a piped applier met an event that needs its statement's result")
        })
    }

    fn encode(
        &self,
        t: &TableEntry,
        row: &Row,
        only: Option<&[usize]>,
        pos: &BinlogPosition,
    ) -> Result<Values> {
        let pt = &t.pt;
        if row.len() != pt.columns.len() {
            return Err(synchdb_core::Error::new(
                synchdb_core::ErrorKind::SinkValue,
                format!("row has {} values, table has {} columns", row.len(), pt.columns.len()),
            )
            .with_table(pt.id.clone())
            .with_position(pos.clone()));
        }
        let enc = |i: usize| {
            encode_param(&row[i], &pt.columns[i], self.zero, &pt.id).map_err(|e| e.with_position(pos.clone()))
        };
        match only {
            Some(idx) => idx.iter().map(|&i| enc(i)).collect(),
            None => (0..row.len()).map(enc).collect(),
        }
    }

    /// Handle one row event (inserts, updates, deletes) of `table`.
    pub async fn row_event(&mut self, table: Arc<TableEntry>, event: &ChangeEvent) -> Result<()> {
        let pos = &event.meta().position;
        let keyed = !table.pt.key.is_empty();
        let key_idx = table.pt.key.clone();
        match event {
            ChangeEvent::Insert(e) => {
                let vals = self.encode(&table, &e.row, None, pos)?;
                self.upsert(table, vals, &key_idx, pos).await
            }
            ChangeEvent::Update(e) => {
                let after = self.encode(&table, &e.after, None, pos)?;
                if keyed {
                    let old_key = self.encode(&table, &e.before, Some(&key_idx), pos)?;
                    let new_key: Values = key_idx.iter().map(|&i| after[i].clone()).collect();
                    if old_key == new_key {
                        return self.upsert(table, after, &key_idx, pos).await;
                    }
                    self.flush().await?;
                    self.key_change(&table, after, new_key, old_key, pos).await
                } else if self.mode == ApplyMode::SetBased {
                    let before = self.encode(&table, &e.before, None, pos)?;
                    let mut vals = before.clone();
                    vals.extend(after.iter().cloned());
                    self.push_run(table, Op::UpdateMatch, vals, Some(&before), Some(after), pos).await
                } else {
                    self.flush().await?;
                    let before = self.encode(&table, &e.before, None, pos)?;
                    let sql = table.stmts.match_one(true, &before).clone();
                    let mut binds = after;
                    binds.extend(before);
                    self.exec(&table, &sql, binds, pos).await.map(|_| ())
                }
            }
            ChangeEvent::Delete(e) => {
                if keyed {
                    let key = self.encode(&table, &e.row, Some(&key_idx), pos)?;
                    if self.mode == ApplyMode::RowByRow {
                        return self.exec(&table, &table.stmts.delete_one, key, pos).await.map(|_| ());
                    }
                    self.push(table, Op::Delete, key.clone(), key, pos).await
                } else if self.mode == ApplyMode::SetBased {
                    let row = self.encode(&table, &e.row, None, pos)?;
                    self.push_run(table, Op::DeleteMatch, row, None, None, pos).await
                } else {
                    self.flush().await?;
                    let row = self.encode(&table, &e.row, None, pos)?;
                    let sql = table.stmts.match_one(false, &row).clone();
                    self.exec(&table, &sql, row, pos).await.map(|_| ())
                }
            }
            _ => Ok(()),
        }
    }

    async fn upsert(
        &mut self,
        table: Arc<TableEntry>,
        vals: Values,
        key_idx: &[usize],
        pos: &BinlogPosition,
    ) -> Result<()> {
        if self.mode == ApplyMode::RowByRow {
            return self.exec(&table, &table.stmts.upsert_one, vals, pos).await.map(|_| ());
        }
        let key: Values =
            if key_idx.is_empty() { Vec::new() } else { key_idx.iter().map(|&i| vals[i].clone()).collect() };
        self.push(table, Op::Upsert, vals, key, pos).await
    }

    async fn key_change(
        &mut self,
        table: &TableEntry,
        after: Values,
        new_key: Values,
        old_key: Values,
        pos: &BinlogPosition,
    ) -> Result<()> {
        // Fresh apply: a real UPDATE from the old key (ON UPDATE CASCADE foreign keys
        // follow), guarded so that it never collides with an existing new key.
        let k = old_key.len();
        let guarded = |after: &Values| {
            let mut b = after.clone();
            b.extend(old_key.iter().cloned());
            b.extend(new_key.iter().cloned());
            b
        };
        if self.exec(table, &table.stmts.update_key, guarded(&after), pos).await? > 0 {
            return Ok(());
        }
        // Replay where an earlier event of the batch recreated the old key: the new key's
        // row is stale; remove it and move the old row.
        let mut b = new_key.clone();
        b.extend(old_key.iter().cloned());
        debug_assert_eq!(b.len(), 2 * k);
        if self.exec(table, &table.stmts.delete_new_if_old, b, pos).await? > 0 {
            self.exec(table, &table.stmts.update_key, guarded(&after), pos).await?;
            return Ok(());
        }
        // Replay of this event alone (the new key exists, the old does not), or a missing
        // row: write the after image in place.
        self.exec(table, &table.stmts.upsert_one, after, pos).await?;
        Ok(())
    }

    async fn push(
        &mut self,
        table: Arc<TableEntry>,
        op: Op,
        vals: Values,
        key: Values,
        pos: &BinlogPosition,
    ) -> Result<()> {
        let (check, remember) = if key.is_empty() { (None, None) } else { (Some(key.clone()), Some(key)) };
        self.push_run(table, op, vals, check.as_ref(), remember, pos).await
    }

    /// Add a row to the current run, or start a new run when the table or
    /// operation differs or `check` is among the run's remembered values.
    async fn push_run(
        &mut self,
        table: Arc<TableEntry>,
        op: Op,
        vals: Values,
        check: Option<&Values>,
        remember: Option<Values>,
        pos: &BinlogPosition,
    ) -> Result<()> {
        let merge = check.is_some()
            && matches!(op, Op::Upsert | Op::Delete)
            && !table.pt.key.is_empty()
            && !table.ordered;
        if merge {
            return self.push_keyed(table, op, vals, check, remember, pos).await;
        }
        if self.other.is_some() {
            self.flush().await?;
        }
        let same = self.run.as_ref().is_some_and(|r| {
            Arc::ptr_eq(&r.table, &table) && r.op == op && check.is_none_or(|k| !r.keys.contains(k))
        });
        if !same {
            self.flush().await?;
            self.run = Some(Run::new(table, op, vals.len(), pos));
        }
        self.run.as_mut().expect("run just set").add(vals, remember);
        self.send_full().await
    }

    /// A keyed row (upsert or delete by key) of a table whose upserts and
    /// deletes may be reordered (not [`TableEntry::ordered`]): into the run of
    /// its operation, with the other operation's run kept pending beside it
    /// (see `other`).
    async fn push_keyed(
        &mut self,
        table: Arc<TableEntry>,
        op: Op,
        vals: Values,
        check: Option<&Values>,
        remember: Option<Values>,
        pos: &BinlogPosition,
    ) -> Result<()> {
        let other_op = if op == Op::Upsert { Op::Delete } else { Op::Upsert };
        let fits = |r: &Run| Arc::ptr_eq(&r.table, &table) && (r.op == op || r.op == other_op);
        if !self.run.as_ref().is_none_or(fits) || !self.other.as_ref().is_none_or(fits) {
            self.flush().await?;
        }
        if self.run.as_ref().is_some_and(|r| r.op != op) || self.other.as_ref().is_some_and(|r| r.op == op) {
            std::mem::swap(&mut self.run, &mut self.other);
        }
        let holds = |r: &Option<Run>| r.as_ref().is_some_and(|r| check.is_some_and(|k| r.keys.contains(k)));
        // The key's earlier change in the other run must be applied first.
        if holds(&self.other) {
            let earlier = self.other.take().expect("held");
            self.send(earlier).await?;
        }
        // A key already in this run: the run goes first, a new one starts.
        if holds(&self.run) {
            let earlier = self.run.take().expect("held");
            self.send(earlier).await?;
        }
        let width = vals.len();
        self.run.get_or_insert_with(|| Run::new(table, op, width, pos)).add(vals, remember);
        self.send_full().await
    }

    /// Piped: send the current run once it is long enough.
    async fn send_full(&mut self) -> Result<()> {
        if self.pipe.is_some() && self.run.as_ref().is_some_and(|r| r.rows >= PIPED_RUN_ROWS) {
            let run = self.run.take().expect("checked");
            self.send(run).await?;
        }
        Ok(())
    }

    /// Send the pending runs, if any.
    pub async fn flush(&mut self) -> Result<()> {
        if let Some(run) = self.run.take() {
            self.send(run).await?;
        }
        if let Some(run) = self.other.take() {
            self.send(run).await?;
        }
        Ok(())
    }

    /// Send one run.
    async fn send(&mut self, run: Run) -> Result<()> {
        if matches!(run.op, Op::DeleteMatch | Op::UpdateMatch) {
            return self.flush_matching(run).await;
        }
        let stmts = &run.table.stmts;
        let mut q;
        if run.rows == 1 {
            // A run of one row: the single-row statement is cheaper than unnest.
            q = sqlx::query(AssertSqlSafe(match run.op {
                Op::Upsert => stmts.upsert_one.clone(),
                _ => stmts.delete_one.clone(),
            }));
            for mut col in run.columns {
                q = q.bind(col.pop().flatten());
            }
        } else {
            q = sqlx::query(AssertSqlSafe(match run.op {
                Op::Upsert => stmts.upsert_many.clone(),
                _ => stmts.delete_many.clone(),
            }));
            for col in run.columns {
                q = q.bind(col);
            }
        }
        let cx = Context::data(&run.table.pt.id, Some(&run.position));
        if let Some(pipe) = &self.pipe {
            // The executing side stopped at an error of its own, which it reports.
            return pipe
                .send((cx, q))
                .await
                .map_err(|_| synchdb_core::Error::internal("the statement pipe closed"));
        }
        let r = q.execute(self.conn()?).await.map_err(|e| sqlx_error(e, &cx))?;
        self.changed += r.rows_affected();
        Ok(())
    }

    /// A run of keyless deletes or updates: one statement when every before
    /// image pairs with a row, else row by row (see the module docs).
    async fn flush_matching(&mut self, run: Run) -> Result<()> {
        let stmts = &run.table.stmts;
        let update = run.op == Op::UpdateMatch;
        // One UPDATE changes the rows in the join's order, not the binlog's: with a
        // unique key (or a self-reference) an order-dependent run could meet
        // itself half-way (`UPDATE IGNORE t SET b = b + 3` over b = 2..7), so such
        // tables' update runs go row by row, as the source applied them.
        // Before images sit in the first n columns (updates: then the after images).
        let n = run.table.pt.columns.len();
        let probed = stmts
            .probed
            .as_ref()
            .filter(|(i, _)| run.columns[*i].iter().all(Option::is_some) && probe_selective(&run, *i, n));
        if run.rows > 1 && !(update && run.table.ordered) {
            let sql = match (probed, update) {
                (Some((_, p)), true) => &p[3],
                (Some((_, p)), false) => &p[2],
                (None, true) => &stmts.update_match_many,
                (None, false) => &stmts.delete_match_many,
            };
            let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
            for col in &run.columns {
                q = q.bind(col);
            }
            q = q.bind(run.rows as i64);
            let cx = Context::data(&run.table.pt.id, Some(&run.position));
            let r = q.execute(self.conn()?).await.map_err(|e| sqlx_error(e, &cx))?;
            if r.rows_affected() == run.rows as u64 {
                self.changed += r.rows_affected();
                return Ok(());
            }
            debug_assert_eq!(r.rows_affected(), 0, "the statement is all or nothing");
            tracing::debug!(
                table = %run.table.pt.id,
                rows = run.rows,
                "keyless run: a before image has no row on the target; applying it row by row"
            );
        }
        // One row, or a run some of whose before images have no row: row by row.
        for i in 0..run.rows {
            let row: Values = run.columns.iter().map(|c| c[i].clone()).collect();
            let sql = stmts.match_one(update, &row[..n]);
            let binds = if update {
                let mut b = row[n..].to_vec();
                b.extend(row[..n].iter().cloned());
                b
            } else {
                row
            };
            self.exec(&run.table, sql, binds, &run.position).await?;
        }
        Ok(())
    }

    async fn exec(
        &mut self,
        table: &TableEntry,
        sql: &Arc<str>,
        binds: Values,
        pos: &BinlogPosition,
    ) -> Result<u64> {
        let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
        for b in binds {
            q = q.bind(b);
        }
        let cx = Context::data(&table.pt.id, Some(pos));
        let r = q.execute(self.conn()?).await.map_err(|e| sqlx_error(e, &cx))?;
        self.changed += r.rows_affected();
        Ok(r.rows_affected())
    }
}
