//! A snapshot of 1,000,000 rows taken while another connection writes: the
//! snapshot holds exactly the rows as of its recorded position.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use synchdb_core::memory::MemorySink;
use synchdb_types::{BinlogPosition, TableId, Value};

const ROWS: i64 = 1_000_000;

/// One committed write and the binlog position right after it.
#[derive(Debug)]
enum Write {
    Insert { id: i64, after: BinlogPosition },
    Update { id: i64, after: BinlogPosition },
}

#[tokio::test]
async fn snapshot_is_exactly_its_position_while_writes_run() {
    let db = common::database("consist");
    let name = db.name().to_string();
    common::server()
        .exec(&format!(
            "USE `{name}`; CREATE TABLE `{name}`.big (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(20) NOT NULL);
             INSERT INTO `{name}`.big SELECT seq, seq % 1000, CONCAT('row', seq) FROM seq_1_to_{ROWS};
             ANALYZE TABLE `{name}`.big;"
        ))
        .unwrap();

    // The writer: alternately inserts a new row and updates an existing one
    // (spread over the key range), recording the position after each commit.
    let url = db.url();
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = stop.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(async move {
        let mut writes = Vec::new();
        let mut started = Some(started_tx);
        let mut k: i64 = 0;
        while !stop_writer.load(Ordering::SeqCst) && k < 20_000 {
            k += 1;
            let id = if k % 2 == 0 {
                let id = ROWS + k;
                conn.exec_drop("INSERT INTO big VALUES (?, -1, 'new')", (id,)).await.unwrap();
                id
            } else {
                let id = (k * 7919) % ROWS + 1;
                conn.exec_drop("UPDATE big SET a = -2, b = CONCAT('upd', ?) WHERE id = ?", (k, id))
                    .await
                    .unwrap();
                id
            };
            let (file, pos): (String, u64) = conn
                .query_first("SHOW MASTER STATUS")
                .await
                .unwrap()
                .map(|r: mysql_async::Row| {
                    let mut r = r;
                    (r.take(0).unwrap(), r.take(1).unwrap())
                })
                .unwrap();
            let after = BinlogPosition::new(file, pos);
            writes.push(if k % 2 == 0 { Write::Insert { id, after } } else { Write::Update { id, after } });
            if k == 50 {
                if let Some(tx) = started.take() {
                    let _ = tx.send(());
                }
            }
        }
        writes
    });
    started_rx.await.unwrap();

    let sink = MemorySink::new();
    let opts = common::options(&db).chunk_rows(100_000).snapshot_workers(2);
    let started = std::time::Instant::now();
    let stats = common::run("consistency", opts, &sink).await.unwrap();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();

    let data = sink.data();
    let position = data.state["consistency"].position.clone().expect("snapshot position stored");
    eprintln!(
        "snapshot of {} rows in {:.1?} ({} chunks) at {position}; {} writes ran meanwhile",
        stats.snapshot_rows,
        elapsed,
        stats.snapshot_chunks_done,
        writes.len()
    );
    assert!(stats.snapshot_chunks_done >= 10, "the table was split into chunks");

    let rows = &data.snapshot_rows[&TableId::new(&name, "big")];
    let mut by_id: std::collections::HashMap<i64, &Vec<Value>> =
        std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        let Value::Int(id) = r[0] else { panic!("id {:?}", r[0]) };
        assert!(by_id.insert(id, r).is_none(), "row {id} read twice");
    }
    let (mut before, mut after) = (0, 0);
    let mut inserted_before = 0;
    for w in &writes {
        let (id, at, insert) = match w {
            Write::Insert { id, after } => (*id, after, true),
            Write::Update { id, after } => (*id, after, false),
        };
        let visible = *at <= position.binlog;
        if visible {
            before += 1;
        } else {
            after += 1;
        }
        match (insert, visible) {
            (true, true) => {
                inserted_before += 1;
                assert!(by_id.contains_key(&id), "insert of {id} committed at {at} <= {position} is missing");
            }
            (true, false) => {
                assert!(
                    !by_id.contains_key(&id),
                    "insert of {id} committed at {at} > {position} is in the snapshot"
                )
            }
            (false, visible) => {
                // The last update of this id decides; later updates of the same id are rare but possible.
                let last_visible = writes.iter().rev().find_map(|x| match x {
                    Write::Update { id: i, after } if *i == id && *after <= position.binlog => Some(after),
                    _ => None,
                });
                let row = by_id[&id];
                match last_visible {
                    Some(_) => assert_eq!(
                        row[1],
                        Value::Int(-2),
                        "update of {id} at {at} (visible={visible}) missing"
                    ),
                    None => assert_eq!(
                        row[1],
                        Value::Int(id % 1000),
                        "update of {id} at {at} > {position} leaked in"
                    ),
                }
            }
        }
    }
    eprintln!("{before} writes at or before the snapshot position, {after} after");
    assert!(before > 0 && after > 0, "the writer must run on both sides of the snapshot position");
    assert_eq!(rows.len() as i64, ROWS + inserted_before);
}
