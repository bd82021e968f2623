//! Writing snapshot chunks.

use super::*;

/// Stream one chunk's rows through the converters into the sink.
pub(super) async fn write_chunk(
    ctx: &Ctx,
    converters: &[Arc<dyn Converter>],
    chain: Option<Vec<Arc<TableSchema>>>,
    chunk: ChunkInfo,
    read_at: Position,
    rows: RowReceiver,
) -> Result<()> {
    let Some(chain) = chain else {
        // The table is filtered out: drain the rows, record the chunk.
        let mut rows = rows;
        while let Some(r) = rows.recv().await {
            r?;
        }
        let update = StateUpdate::chunk_done(&chunk, 0, read_at);
        return ctx.save_state(&update).await;
    };
    let target = chain.last().expect("non-empty").clone();
    let converters = converters.to_vec();
    let stages = chain.clone();
    let stream: RowStream<'static> =
        tokio_stream_from(rows).map(move |batch| convert_rows(&converters, &stages, batch?)).boxed();
    let written = ctx.sink.write_chunk(&ctx.id, &target, &chunk, &read_at, stream).await?;
    ctx.stats.record_chunk_rows(&chunk.table, &target.id, written);
    let update = StateUpdate::chunk_done(&chunk, written, read_at);
    ctx.after_durable(&update).await?;
    debug!(table = %chunk.table, chunk = chunk.index, rows = written, "chunk durable");
    Ok(())
}

pub(super) fn table_list(tables: &[Arc<TableSchema>]) -> String {
    tables.iter().map(|t| t.id.to_string()).collect::<Vec<_>>().join(", ")
}
