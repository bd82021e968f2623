//! Parallel apply ([`PgSinkOptions::apply_workers`](crate::PgSinkOptions::apply_workers)):
//! a batch's row changes split over several PostgreSQL sessions, committed
//! together by two-phase commit.
//!
//! **Split.** Tables joined by foreign keys (in the schemas of the batch's
//! events) stay together on one worker, and so do tables whose changes must
//! keep their order for another reason (a unique key besides the row
//! identity, a self reference), keyless tables, and tables whose key goes
//! through an SQL transform. The rows of any other table are spread by a hash
//! of their key, so that every change of one row lands on the same worker, in
//! source order; an update that moves a row to another worker's share keeps
//! its whole table on one worker for that batch. A batch with DDL, a
//! TRUNCATE, or fewer than [`MIN_PARALLEL_EVENTS`] events is applied by one
//! session as before.
//!
//! **Commit.** Each worker runs `BEGIN`, its share, `PREPARE TRANSACTION
//! 'synchdb:<pipeline>:<run>.<n>.<w>'`. Then the coordinator's transaction
//! stores the checkpoint with the names of the prepared transactions
//! (`<state>.prepared`) and commits: that commit is the batch's decision.
//! Then each worker runs `COMMIT PREPARED`. A process that dies before the
//! decision leaves prepared transactions without a row: they are rolled back
//! when the pipeline starts again (or before its next batch); one that dies
//! after it leaves them with their row: they are committed. Exactly once
//! either way.
//!
//! **What readers see.** The workers' `COMMIT PREPARED`s are separate
//! commits, a few milliseconds apart: for that moment a reader can see part
//! of a batch (some tables, or some rows of a table, of a source transaction
//! before the rest). With one worker (the default), each batch is one
//! transaction.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use synchdb_core::{ChangeBatch, Result};
use synchdb_types::{ChangeEvent, TableId, TableSchema, TextNul, Value};

use crate::apply::TableEntry;
use crate::typemap::Family;

/// Batches with fewer events are applied by one session: two-phase commit
/// costs round trips that a small batch does not win back, and a small
/// batch (a paced source) is then also seen whole.
pub(crate) const MIN_PARALLEL_EVENTS: usize = 256;

/// One worker's share of a batch: per transaction (its index in the batch),
/// the indexes of its events, in source order.
pub(crate) type Part = Vec<(usize, Vec<usize>)>;

/// How a table's rows go to the workers.
enum Route {
    /// All to one worker, with the other tables of its group (named by its root).
    Whole(TableId),
    /// By a hash of the row identity (these columns).
    ByKey(Vec<usize>),
}

/// Split `batch` over `workers` sessions, or `None` when it is applied by
/// one (see the module docs). `entry` gives a table's mapping and whether a
/// foreign key on the target references it (its rows are not spread: two
/// shares' cascades could meet in one referencing row).
pub(crate) fn partition(
    batch: &ChangeBatch,
    workers: usize,
    entry: impl Fn(&Arc<TableSchema>) -> Result<(Arc<TableEntry>, bool)>,
) -> Result<Option<Vec<Part>>> {
    if workers < 2 || batch.open || batch.event_count() < MIN_PARALLEL_EVENTS {
        return Ok(None);
    }
    // The tables, in first-seen order (their latest schema: a batch without
    // DDL has one per table).
    let mut tables: Vec<Arc<TableSchema>> = Vec::new();
    let mut seen: HashMap<&TableId, usize> = HashMap::new();
    for tx in &batch.transactions {
        for event in &tx.events {
            let schema = match event {
                ChangeEvent::Insert(e) => &e.table,
                ChangeEvent::Update(e) => &e.table,
                ChangeEvent::Delete(e) => &e.table,
                _ => return Ok(None),
            };
            if !seen.contains_key(&schema.id) {
                seen.insert(&schema.id, tables.len());
                tables.push(schema.clone());
            }
        }
    }
    // Foreign keys join tables (a referenced table not in the batch joins too:
    // it may be the link between two that are).
    let mut groups = Groups::default();
    let mut linked: Vec<bool> = vec![false; tables.len()];
    for (i, t) in tables.iter().enumerate() {
        for fk in &t.foreign_keys {
            linked[i] = true;
            if let Some(&j) = seen.get(&fk.referenced_table) {
                linked[j] = true;
            }
            groups.join(&t.id, &fk.referenced_table);
        }
    }
    let mut routes: Vec<Route> = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let (e, referenced) = entry(t)?;
        let keyed = !e.pt.key.is_empty()
            && e.pt.key.iter().all(|&k| {
                // Distinct source keys stay distinct on the target (no SQL
                // transform, type override or NUL rewriting can merge them).
                e.pt.columns.get(k).is_some_and(|c| {
                    c.transform.is_none()
                        && c.default_mapping
                        && (c.family != Family::Text || c.nul == TextNul::Error)
                })
            });
        routes.push(if linked[i] || referenced || e.ordered || !keyed {
            Route::Whole(groups.root(&t.id))
        } else {
            Route::ByKey(e.pt.key.clone())
        });
    }
    // A row that would change workers (its key updated, or a key value that
    // does not hash as stored) keeps its table on one worker.
    for tx in &batch.transactions {
        for event in &tx.events {
            let (id, rows): (&TableId, [Option<&Vec<Value>>; 2]) = match event {
                ChangeEvent::Insert(e) => (&e.table.id, [Some(&e.row), None]),
                ChangeEvent::Update(e) => (&e.table.id, [Some(&e.before), Some(&e.after)]),
                ChangeEvent::Delete(e) => (&e.table.id, [Some(&e.row), None]),
                _ => unreachable!("only row events reach here"),
            };
            let i = seen[id];
            let Route::ByKey(key) = &routes[i] else { continue };
            let w: Vec<Option<usize>> = rows.iter().flatten().map(|r| key_worker(r, key, workers)).collect();
            if w.iter().any(Option::is_none) || w.windows(2).any(|p| p[0] != p[1]) {
                routes[i] = Route::Whole(groups.root(id));
            }
        }
    }
    // Groups go to the least loaded worker, largest first (rows spread by
    // key load every worker evenly).
    let mut load: Vec<usize> = vec![0; workers];
    let mut group_events: HashMap<TableId, usize> = HashMap::new();
    for tx in &batch.transactions {
        for event in &tx.events {
            match &routes[seen[event.table_id()]] {
                Route::Whole(root) => *group_events.entry(root.clone()).or_default() += 1,
                Route::ByKey(_) => load.iter_mut().for_each(|l| *l += 1),
            }
        }
    }
    let mut by_size: Vec<(TableId, usize)> = group_events.into_iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut group_worker: HashMap<TableId, usize> = HashMap::new();
    for (root, events) in by_size {
        let w = (0..workers).min_by_key(|&w| load[w]).expect("at least two workers");
        load[w] += events * workers;
        group_worker.insert(root, w);
    }
    let mut parts: Vec<Part> = vec![Vec::new(); workers];
    for (ti, tx) in batch.transactions.iter().enumerate() {
        for (ei, event) in tx.events.iter().enumerate() {
            let (id, row) = match event {
                ChangeEvent::Insert(e) => (&e.table.id, &e.row),
                ChangeEvent::Update(e) => (&e.table.id, &e.before),
                ChangeEvent::Delete(e) => (&e.table.id, &e.row),
                _ => unreachable!("only row events reach here"),
            };
            let w = match &routes[seen[id]] {
                Route::Whole(root) => group_worker[root],
                Route::ByKey(key) => key_worker(row, key, workers).expect("checked above"),
            };
            let part = &mut parts[w];
            match part.last_mut() {
                Some((t, events)) if *t == ti => events.push(ei),
                _ => part.push((ti, vec![ei])),
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    Ok((parts.len() > 1).then_some(parts))
}

/// The worker of a row by its key values; `None` for a value that is not
/// hashed (only integers, text, bytes and UUIDs are, stored as given).
fn key_worker(row: &[Value], key: &[usize], workers: usize) -> Option<usize> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for &k in key {
        match row.get(k)? {
            Value::Int(v) => v.hash(&mut h),
            Value::UInt(v) => v.hash(&mut h),
            Value::Text(v) => v.hash(&mut h),
            Value::Bytes(v) => v.hash(&mut h),
            Value::Uuid(v) => v.hash(&mut h),
            _ => return None,
        }
    }
    Some((h.finish() % workers as u64) as usize)
}

/// Union-find over table ids.
#[derive(Default)]
struct Groups {
    parent: HashMap<TableId, TableId>,
}

impl Groups {
    fn root(&self, id: &TableId) -> TableId {
        let mut at = id;
        while let Some(p) = self.parent.get(at) {
            at = p;
        }
        at.clone()
    }

    fn join(&mut self, a: &TableId, b: &TableId) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            // The smaller id becomes the root: the same groups give the same
            // roots whatever the order the edges came in.
            let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(child, root);
        }
    }
}

/// The name of worker `w`'s prepared transaction for batch `n` of this run.
pub(crate) fn gid(pipeline: &str, run: &str, n: u64, w: usize) -> String {
    format!("{}{run}.{n}.{w}", gid_prefix(pipeline))
}

/// What the names of a pipeline's prepared transactions start with.
pub(crate) fn gid_prefix(pipeline: &str) -> String {
    format!("synchdb:{pipeline}:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Statements;
    use crate::ddl::PgTable;
    use crate::PgSinkOptions;
    use synchdb_core::StateUpdate;
    use synchdb_types::{
        BinlogPosition, ColumnSchema, ColumnType, EventMeta, ForeignKey, InsertEvent, IntWidth, Position,
        ReferentialAction, Transaction, UpdateEvent,
    };

    fn table(name: &str, pk: bool, fk_to: Option<&str>) -> Arc<TableSchema> {
        let int = |n: &str| {
            ColumnSchema::new(
                n,
                ColumnType::Integer { width: IntWidth::Int, unsigned: false, display_width: None },
            )
        };
        let mut t = TableSchema::new(TableId::new("d", name), vec![int("id"), int("r")]);
        if pk {
            t.primary_key = vec!["id".into()];
            t.columns[0].nullable = false;
        }
        if let Some(p) = fk_to {
            t.foreign_keys.push(ForeignKey {
                name: "fk".into(),
                columns: vec!["r".into()],
                referenced_table: TableId::new("d", p),
                referenced_columns: vec!["id".into()],
                on_update: ReferentialAction::Cascade,
                on_delete: ReferentialAction::Cascade,
            });
        }
        Arc::new(t)
    }

    fn entry(t: &Arc<TableSchema>) -> Result<(Arc<TableEntry>, bool)> {
        let pt = PgTable::build(t, &PgSinkOptions::new(), false)?;
        let referenced = t.id.table == "referenced";
        Ok((Arc::new(TableEntry { stmts: Statements::new(&pt), pt, ordered: false }), referenced))
    }

    fn meta() -> EventMeta {
        EventMeta {
            position: BinlogPosition::new("b.000001", 4),
            commit_time: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            tx: 1,
            index: 0,
        }
    }

    fn ins(t: &Arc<TableSchema>, id: i64) -> ChangeEvent {
        ChangeEvent::Insert(InsertEvent {
            table: t.clone(),
            row: vec![Value::Int(id), Value::Int(id)],
            meta: meta(),
        })
    }

    fn batch(events: Vec<ChangeEvent>) -> ChangeBatch {
        let pos = Position::new(BinlogPosition::new("b.000001", 100));
        let now = chrono::DateTime::from_timestamp(0, 0).unwrap();
        ChangeBatch {
            transactions: events
                .chunks(100)
                .map(|c| Transaction::new(1, pos.clone(), now, c.to_vec()))
                .collect(),
            state: StateUpdate::default(),
            open: false,
        }
    }

    /// The parts each table's events went to, and whether each key stayed in one part.
    fn spread(b: &ChangeBatch, parts: &[Part]) -> HashMap<String, Vec<usize>> {
        let mut out: HashMap<String, Vec<usize>> = HashMap::new();
        let mut key_part: HashMap<(String, String), usize> = HashMap::new();
        for (w, part) in parts.iter().enumerate() {
            for (t, events) in part {
                for &e in events {
                    let event = &b.transactions[*t].events[e];
                    let name = event.table_id().table.clone();
                    let key = match event {
                        ChangeEvent::Insert(e) => format!("{:?}", e.row[0]),
                        ChangeEvent::Update(e) => format!("{:?}", e.before[0]),
                        _ => unreachable!(),
                    };
                    assert_eq!(*key_part.entry((name.clone(), key)).or_insert(w), w, "one row, one worker");
                    let seen = out.entry(name).or_default();
                    if !seen.contains(&w) {
                        seen.push(w);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn foreign_keys_keep_tables_together_and_keys_spread_the_rest() {
        let (parent, child, free, keyless, referenced) = (
            table("parent", true, None),
            table("child", true, Some("parent")),
            table("free", true, None),
            table("log", false, None),
            table("referenced", true, None),
        );
        let mut events = Vec::new();
        for i in 0..100 {
            events.extend([
                ins(&parent, i),
                ins(&child, i),
                ins(&free, i),
                ins(&keyless, i),
                ins(&referenced, i),
            ]);
        }
        let b = batch(events);
        let parts = partition(&b, 3, entry).unwrap().expect("split");
        let total: usize = parts.iter().flat_map(|p| p.iter().map(|(_, e)| e.len())).sum();
        assert_eq!(total, 500, "every event in exactly one part");
        let s = spread(&b, &parts);
        assert_eq!(s["parent"].len(), 1, "{s:?}");
        assert_eq!(s["parent"], s["child"], "tables joined by a foreign key share a worker");
        assert_eq!(s["log"].len(), 1, "a keyless table is applied whole");
        assert_eq!(
            s["referenced"].len(),
            1,
            "a table a foreign key on the target references is applied whole"
        );
        assert_eq!(s["free"].len(), 3, "a keyed table is spread over the workers by key");
        // Source order within a part: transaction indexes increase.
        for p in &parts {
            assert!(p.windows(2).all(|w| w[0].0 < w[1].0));
        }

        // An update moving a row to another worker's share keeps its table whole.
        let mut events: Vec<ChangeEvent> = (0..300).map(|i| ins(&free, i)).collect();
        let moved = (1..1000)
            .find(|&k| key_worker(&[Value::Int(k)], &[0], 3) != key_worker(&[Value::Int(0)], &[0], 3))
            .unwrap();
        events.push(ChangeEvent::Update(UpdateEvent {
            table: free.clone(),
            before: vec![Value::Int(0), Value::Int(0)],
            after: vec![Value::Int(moved), Value::Int(0)],
            meta: meta(),
        }));
        assert!(partition(&batch(events), 3, entry).unwrap().is_none(), "one table whole: one part");

        // Small batches and one worker: not split.
        assert!(partition(&batch((0..100).map(|i| ins(&free, i)).collect()), 3, entry).unwrap().is_none());
        assert!(partition(&batch((0..300).map(|i| ins(&free, i)).collect()), 1, entry).unwrap().is_none());
    }
}
