//! A pipeline of a custom source, a transform and a custom sink, on the
//! facade without its database drivers.

use std::sync::Arc;

use synchdb::prelude::*;
use synchdb_embed_check::{CollectSink, VecSource};

#[tokio::test]
async fn custom_source_transform_and_sink() {
    let table = Arc::new(TableSchema::new(
        TableId::new("shop", "users"),
        vec![ColumnSchema::new("email", ColumnType::VarChar { length: 100 })],
    ));
    let meta = EventMeta {
        position: BinlogPosition::new("vec.000001", 100),
        commit_time: chrono::Utc::now(),
        tx: 1,
        index: 0,
    };
    let insert = ChangeEvent::Insert(InsertEvent {
        table: table.clone(),
        row: vec![Value::Text("New@Example.com".into())],
        meta: meta.clone(),
    });
    let tx = Transaction::new(
        1,
        Position::new(BinlogPosition::new("vec.000001", 200)),
        meta.commit_time,
        vec![insert],
    );
    let source = VecSource {
        table: table.clone(),
        rows: vec![vec![Value::Text("Ann@Example.com".into())], vec![Value::Text("BOB@example.com".into())]],
        transactions: vec![tx],
    };
    let sink = CollectSink::default();
    let lower = MapRows::new("lowercase", |_t: &TableSchema, row: Row| {
        Ok(Some(
            row.into_iter()
                .map(|v| match v {
                    Value::Text(s) => Value::Text(s.to_lowercase()),
                    other => other,
                })
                .collect(),
        ))
    });
    let stats = Pipeline::builder()
        .id("embedded")
        .source(source)
        .converter(lower)
        .sink(sink.clone())
        .build()
        .unwrap()
        .start()
        .wait()
        .await
        .unwrap();
    assert_eq!(stats.snapshot_rows, 2);
    assert_eq!(stats.inserts, 1);
    let data = sink.data.lock().unwrap();
    assert_eq!(data.rows[0][0], Value::Text("ann@example.com".into()));
    assert_eq!(data.rows[1][0], Value::Text("bob@example.com".into()));
    match &data.events[0] {
        ChangeEvent::Insert(i) => assert_eq!(i.row[0], Value::Text("new@example.com".into())),
        other => panic!("expected an insert, got {other:?}"),
    }
}
