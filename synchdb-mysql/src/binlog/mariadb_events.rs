//! MariaDB's own binlog events, which mysql_common returns as unknown
//! events: GTID (162), GTID list (163) and binlog checkpoint (161).
//!
//! The input is the event's data after the 19-byte common header, with the
//! checksum already removed (`mysql_common::binlog::events::Event::data`).

use synchdb_types::{GtidSet, MariaGtid};

/// `ANNOTATE_ROWS_EVENT`: the statement text of the following row events.
pub(crate) const ANNOTATE_ROWS_EVENT: u8 = 160;
/// `BINLOG_CHECKPOINT_EVENT`.
pub(crate) const BINLOG_CHECKPOINT_EVENT: u8 = 161;
/// `GTID_EVENT`: starts an event group (transaction or standalone statement).
pub(crate) const GTID_EVENT: u8 = 162;
/// `GTID_LIST_EVENT`: the GTID state at the start of a binlog file.
pub(crate) const GTID_LIST_EVENT: u8 = 163;

/// `FL_STANDALONE`: the group is one statement without BEGIN/COMMIT (DDL).
pub(crate) const FL_STANDALONE: u8 = 1;

/// A decoded MariaDB GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MariaGtidEvent {
    /// The GTID (the server id comes from the event header).
    pub(crate) gtid: MariaGtid,
    /// `flags2` (`FL_STANDALONE`, `FL_TRANSACTIONAL`, `FL_DDL`, ...).
    pub(crate) flags: u8,
}

impl MariaGtidEvent {
    /// Whether the group is a single statement without BEGIN (DDL).
    pub(crate) fn standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MariaDB {what} event: {len} bytes")]
pub(crate) struct MalformedEvent {
    what: &'static str,
    len: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// GTID event: `seq_no` (8), `domain_id` (4), `flags2` (1), then optional
/// parts (commit id, XA) this reader does not need.
pub(crate) fn decode_gtid(server_id: u32, data: &[u8]) -> Result<MariaGtidEvent, MalformedEvent> {
    let bad = || MalformedEvent { what: "GTID", len: data.len() };
    let sequence = u64_at(data, 0).ok_or_else(bad)?;
    let domain = u32_at(data, 8).ok_or_else(bad)?;
    let flags = *data.get(12).ok_or_else(bad)?;
    Ok(MariaGtidEvent { gtid: MariaGtid { domain, server: server_id, sequence }, flags })
}

/// GTID list event: count (4, low 28 bits), then `count` entries of
/// `domain_id` (4), `server_id` (4), `seq_no` (8).
pub(crate) fn decode_gtid_list(data: &[u8]) -> Result<GtidSet, MalformedEvent> {
    let bad = || MalformedEvent { what: "GTID list", len: data.len() };
    let count = (u32_at(data, 0).ok_or_else(bad)? & 0x0FFF_FFFF) as usize;
    let mut set = GtidSet::empty_mariadb();
    for i in 0..count {
        let at = 4 + i * 16;
        let domain = u32_at(data, at).ok_or_else(bad)?;
        let server = u32_at(data, at + 4).ok_or_else(bad)?;
        let sequence = u64_at(data, at + 8).ok_or_else(bad)?;
        set.add_mariadb(MariaGtid { domain, server, sequence });
    }
    Ok(set)
}

/// Binlog checkpoint event: name length (4), then the file name.
pub(crate) fn decode_binlog_checkpoint(data: &[u8]) -> Result<String, MalformedEvent> {
    let bad = || MalformedEvent { what: "binlog checkpoint", len: data.len() };
    let len = u32_at(data, 0).ok_or_else(bad)? as usize;
    let name = data.get(4..4 + len).ok_or_else(bad)?;
    Ok(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_event() {
        // seq 42, domain 3, flags FL_STANDALONE|FL_DDL, then a commit id.
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend(3u32.to_le_bytes());
        data.push(1 | 32);
        data.extend(0u64.to_le_bytes());
        let e = decode_gtid(7, &data).unwrap();
        assert_eq!(e.gtid.to_string(), "3-7-42");
        assert!(e.standalone());
        assert!(decode_gtid(7, &data[..10]).is_err());
    }

    #[test]
    fn gtid_list_event() {
        let mut data = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 12u64), (1, 2, 3)] {
            data.extend(d.to_le_bytes());
            data.extend(s.to_le_bytes());
            data.extend(n.to_le_bytes());
        }
        assert_eq!(decode_gtid_list(&data).unwrap().to_string(), "0-1-12,1-2-3");
        assert!(decode_gtid_list(&data[..20]).is_err());
        assert!(decode_gtid_list(&0u32.to_le_bytes()).unwrap().is_empty());
    }

    #[test]
    fn checkpoint_event() {
        let mut data = 16u32.to_le_bytes().to_vec();
        data.extend(b"mysql-bin.000002");
        assert_eq!(decode_binlog_checkpoint(&data).unwrap(), "mysql-bin.000002");
        assert!(decode_binlog_checkpoint(&data[..8]).is_err());
    }
}
