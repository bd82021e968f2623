//! Reading a pipeline's stored checkpoint, shared by the tests and the benchmarks.

/// The query that reads the checkpoint text of a pipeline (one parameter:
/// the pipeline id) from the PostgreSQL sink's state tables.
pub const CHECKPOINT_SQL: &str = "SELECT position FROM synchdb.pipelines WHERE pipeline_id = $1";

/// The binlog `(file, pos)` of a stored position text (`bin.000001:1234 gtid=0-1-5`).
pub fn parse_checkpoint(text: &str) -> Option<(String, u64)> {
    let binlog = text.split_whitespace().next()?;
    let (f, p) = binlog.rsplit_once(':')?;
    Some((f.to_string(), p.parse().ok()?))
}

/// Whether binlog position `at` is at or after `target` (file names of one
/// server compare as strings: their numbers have a fixed width).
pub fn position_reached(at: &(String, u64), target: &(String, u64)) -> bool {
    at.0 > target.0 || (at.0 == target.0 && at.1 >= target.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_positions() {
        assert_eq!(parse_checkpoint("bin.000002:1234 gtid=0-1-5"), Some(("bin.000002".into(), 1234)));
        assert_eq!(parse_checkpoint("bin.000002:x"), None);
        let at = ("bin.000002".to_string(), 10);
        assert!(position_reached(&at, &("bin.000001".into(), 99)));
        assert!(position_reached(&at, &("bin.000002".into(), 10)));
        assert!(!position_reached(&at, &("bin.000002".into(), 11)));
    }
}
