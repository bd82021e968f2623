//! Source positions: binlog file and offset, and GTID sets.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;

/// A position in the binary log: file name and byte offset.
///
/// Ordered by the file's numeric suffix (`mysql-bin.000010` after
/// `mysql-bin.000009`), then by offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// File name, e.g. `mysql-bin.000003`.
    pub file: String,
    /// Byte offset in the file.
    pub pos: u64,
}

impl BinlogPosition {
    /// A position from its parts.
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        BinlogPosition { file: file.into(), pos }
    }

    /// The numeric suffix of the file name (`000003` is 3), if any.
    pub fn file_sequence(&self) -> Option<u64> {
        self.file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = (self.file_sequence(), &self.file, self.pos);
        let b = (other.file_sequence(), &other.file, other.pos);
        match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then(self.pos.cmp(&other.pos)),
            _ => a.cmp(&b),
        }
    }
}

impl fmt::Display for BinlogPosition {
    /// `file:pos`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for BinlogPosition {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, pos) = s.rsplit_once(':').ok_or_else(|| ParseError::new("binlog position", s))?;
        let pos = pos.parse().map_err(|_| ParseError::new("binlog position", s))?;
        if file.is_empty() {
            return Err(ParseError::new("binlog position", s));
        }
        Ok(BinlogPosition::new(file, pos))
    }
}

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MariaGtid {
    /// Replication domain id.
    pub domain: u32,
    /// Originating server id.
    pub server: u32,
    /// Sequence number within the domain.
    pub sequence: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

impl FromStr for MariaGtid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new("MariaDB GTID", s);
        let mut it = s.trim().splitn(3, '-');
        Ok(MariaGtid {
            domain: it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?,
            server: it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?,
            sequence: it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?,
        })
    }
}

/// A MySQL GTID interval `start-end` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GtidInterval {
    /// First transaction number.
    pub start: u64,
    /// Last transaction number, inclusive.
    pub end: u64,
}

/// A GTID set: MariaDB's per-domain positions or MySQL's `uuid:intervals`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GtidSet {
    /// MariaDB: the last GTID seen per replication domain.
    MariaDb(BTreeMap<u32, MariaGtid>),
    /// MySQL: executed transaction intervals per server uuid.
    MySql(BTreeMap<uuid::Uuid, Vec<GtidInterval>>),
}

impl GtidSet {
    /// An empty MariaDB GTID set.
    pub fn empty_mariadb() -> Self {
        GtidSet::MariaDb(BTreeMap::new())
    }

    /// Record a MariaDB GTID (replacing the domain's previous one).
    /// Does nothing on a MySQL set.
    pub fn add_mariadb(&mut self, gtid: MariaGtid) {
        if let GtidSet::MariaDb(m) = self {
            m.insert(gtid.domain, gtid);
        }
    }

    /// Add a MySQL GTID `uuid:n`, merging intervals. Does nothing on a MariaDB set.
    pub fn add_mysql(&mut self, sid: uuid::Uuid, n: u64) {
        if let GtidSet::MySql(m) = self {
            let v = m.entry(sid).or_default();
            v.push(GtidInterval { start: n, end: n });
            normalize(v);
        }
    }

    /// Whether this set contains every transaction of `other`.
    pub fn contains(&self, other: &GtidSet) -> bool {
        match (self, other) {
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                b.iter().all(|(d, g)| a.get(d).is_some_and(|mine| mine.sequence >= g.sequence))
            }
            (GtidSet::MySql(a), GtidSet::MySql(b)) => b.iter().all(|(sid, ivs)| {
                let mine = a.get(sid).map(Vec::as_slice).unwrap_or(&[]);
                ivs.iter().all(|iv| mine.iter().any(|m| m.start <= iv.start && m.end >= iv.end))
            }),
            _ => false,
        }
    }

    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MariaDb(m) => m.is_empty(),
            GtidSet::MySql(m) => m.values().all(Vec::is_empty),
        }
    }
}

fn normalize(v: &mut Vec<GtidInterval>) {
    v.sort();
    let mut out: Vec<GtidInterval> = Vec::with_capacity(v.len());
    for iv in v.drain(..) {
        match out.last_mut() {
            Some(last) if iv.start <= last.end.saturating_add(1) => last.end = last.end.max(iv.end),
            _ => out.push(iv),
        }
    }
    *v = out;
}

impl PartialOrd for GtidSet {
    /// Set inclusion: `a <= b` when `b` contains `a`; unrelated sets are unordered.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.contains(other), other.contains(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        }
    }
}

impl fmt::Display for GtidSet {
    /// MariaDB: `0-1-12,1-1-3`; MySQL: `uuid:1-5:7,uuid2:1-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MariaDb(m) => {
                let parts: Vec<String> = m.values().map(ToString::to_string).collect();
                f.write_str(&parts.join(","))
            }
            GtidSet::MySql(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(sid, ivs)| {
                        let mut s = sid.to_string();
                        for iv in ivs {
                            if iv.start == iv.end {
                                s.push_str(&format!(":{}", iv.start));
                            } else {
                                s.push_str(&format!(":{}-{}", iv.start, iv.end));
                            }
                        }
                        s
                    })
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl FromStr for GtidSet {
    type Err = ParseError;
    /// Parses either form; the empty string is an empty MariaDB set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(GtidSet::empty_mariadb());
        }
        let err = || ParseError::new("GTID set", s);
        if s.contains(':') {
            let mut m: BTreeMap<uuid::Uuid, Vec<GtidInterval>> = BTreeMap::new();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let mut it = part.split(':');
                let sid: uuid::Uuid = it.next().and_then(|u| u.parse().ok()).ok_or_else(err)?;
                let v = m.entry(sid).or_default();
                for iv in it {
                    let (a, b) = iv.split_once('-').unwrap_or((iv, iv));
                    let start = a.parse().map_err(|_| err())?;
                    let end = b.parse().map_err(|_| err())?;
                    if end < start {
                        return Err(err());
                    }
                    v.push(GtidInterval { start, end });
                }
                normalize(v);
            }
            Ok(GtidSet::MySql(m))
        } else {
            let mut set = GtidSet::empty_mariadb();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                set.add_mariadb(part.parse()?);
            }
            Ok(set)
        }
    }
}

/// Where a change stands in the source's history: the binlog position and,
/// when the server uses GTIDs, the GTID set executed up to and including it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// File and offset.
    pub binlog: BinlogPosition,
    /// GTID set, when known.
    pub gtid: Option<GtidSet>,
}

impl Position {
    /// A position without GTIDs.
    pub fn new(binlog: BinlogPosition) -> Self {
        Position { binlog, gtid: None }
    }

    /// Whether this position is later in the source's history than `other`.
    ///
    /// Binlog positions only compare on one server: after a failover the new
    /// server's files and offsets say nothing about the old one's. So when
    /// both carry different GTID sets, the sets decide (this one contains
    /// the other); otherwise the binlog positions do.
    pub fn is_after(&self, other: &Position) -> bool {
        match (&self.gtid, &other.gtid) {
            (Some(a), Some(b)) if a != b && a.contains(b) => true,
            (Some(a), Some(b)) if a != b && b.contains(a) => false,
            _ => self.binlog > other.binlog,
        }
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    /// Ordered by binlog position (the GTID set follows it on one server).
    fn cmp(&self, other: &Self) -> Ordering {
        self.binlog.cmp(&other.binlog)
    }
}

impl fmt::Display for Position {
    /// `file:pos` or `file:pos gtid=SET`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.binlog)?;
        if let Some(g) = &self.gtid {
            if !g.is_empty() {
                write!(f, " gtid={g}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Position {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.split_once(" gtid=") {
            Some((b, g)) => Ok(Position { binlog: b.parse()?, gtid: Some(g.parse()?) }),
            None => Ok(Position::new(s.parse()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_two_servers_compare_by_gtid() {
        let p = |f: &str, pos: u64, g: &str| Position {
            binlog: BinlogPosition::new(f, pos),
            gtid: Some(g.parse().unwrap()),
        };
        let old = p("mysql-bin.000009", 9000, "0-1-7");
        let new = p("mysql-bin.000001", 400, "0-2-8");
        assert!(new.is_after(&old));
        assert!(!old.is_after(&new));
        // Same GTID set: the binlog position decides (heartbeats move it on).
        assert!(p("mysql-bin.000001", 500, "0-2-8").is_after(&new));
        assert!(!new.is_after(&new));
        // No GTIDs: binlog order.
        assert!(Position::new(BinlogPosition::new("b.2", 4))
            .is_after(&Position::new(BinlogPosition::new("b.1", 9))));
    }

    #[test]
    fn binlog_positions_order_by_file_number() {
        let a: BinlogPosition = "mysql-bin.000009:900".parse().unwrap();
        let b: BinlogPosition = "mysql-bin.000010:4".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "mysql-bin.000010:4");
        assert!("nofile".parse::<BinlogPosition>().is_err());
    }

    #[test]
    fn mariadb_gtid_sets() {
        let s: GtidSet = "0-1-12,1-2-3".parse().unwrap();
        assert_eq!(s.to_string(), "0-1-12,1-2-3");
        let t: GtidSet = "0-1-10".parse().unwrap();
        assert!(s.contains(&t));
        assert!(t < s);
        let mut u = t.clone();
        u.add_mariadb("0-1-20".parse().unwrap());
        assert_eq!(u.to_string(), "0-1-20");
    }

    #[test]
    fn mysql_gtid_sets_merge() {
        let s: GtidSet = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7".parse().unwrap();
        let mut t = s.clone();
        t.add_mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562".parse().unwrap(), 6);
        assert_eq!(t.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7");
        assert!(t.contains(&s));
        assert!(!s.contains(&t));
    }

    #[test]
    fn position_round_trip() {
        let p: Position = "mysql-bin.000001:1234 gtid=0-1-5".parse().unwrap();
        assert_eq!(p.to_string(), "mysql-bin.000001:1234 gtid=0-1-5");
        let q: Position = p.to_string().parse().unwrap();
        assert_eq!(p, q);
    }
}
