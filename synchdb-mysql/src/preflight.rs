//! Preflight: before anything is read, check that the server settings and
//! the user's privileges allow replication, and that a stored resume
//! position is still in the binlog.
//!
//! Every failure is a typed error whose message names the setting or
//! privilege, what is expected and what the server has:
//!
//! | check | kind | expected |
//! |---|---|---|
//! | `log_bin` | [`ErrorKind::SourceSetting`] | `ON` |
//! | `binlog_format` | [`ErrorKind::SourceSetting`] | `ROW` |
//! | `binlog_row_image` | [`ErrorKind::SourceSetting`] | `FULL` |
//! | `binlog_row_metadata` (MariaDB 10.5+, MySQL 8.0.1+) | [`ErrorKind::SourceSetting`] | `FULL` |
//! | `REPLICATION SLAVE` (alias `REPLICATION REPLICA`) | [`ErrorKind::SourcePrivilege`] | granted on `*.*` |
//! | `REPLICATION CLIENT` (MariaDB 10.5+: `BINLOG MONITOR`) | [`ErrorKind::SourcePrivilege`] | granted on `*.*` |
//! | `SELECT` on every selected table | [`ErrorKind::SourcePrivilege`] | global, database or table grant |
//! | resume file in `SHOW BINARY LOGS` | [`ErrorKind::SourcePositionLost`] | listed |
//!
//! `RELOAD` is not required: without it the snapshot uses the single
//! connection method (see `snapshot.rs`).

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{Position, TableId, TableSchema};

use crate::discovery::{query_error, Flavor};
use crate::filter::TableFilter;

/// What preflight learned about the server and the user.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    /// MariaDB or MySQL.
    pub(crate) flavor: Flavor,
    /// `VERSION()`.
    pub(crate) version: String,
    /// The user's privileges.
    pub(crate) grants: Grants,
}

impl ServerInfo {
    /// Whether the user may run `FLUSH TABLES WITH READ LOCK` (RELOAD).
    pub(crate) fn can_lock(&self) -> bool {
        self.grants.has_global("RELOAD")
    }
}

/// Run the setting and privilege checks.
pub(crate) async fn check_server(conn: &mut Conn) -> Result<ServerInfo> {
    let version: String =
        conn.query_first("SELECT VERSION()").await.map_err(query_error)?.unwrap_or_default();
    let flavor =
        if version.to_ascii_lowercase().contains("mariadb") { Flavor::MariaDb } else { Flavor::MySql };
    check_settings(conn).await?;
    let grants = Grants::load(conn).await?;
    let user = grants.user.clone();
    if !grants.has_global_any(&["REPLICATION SLAVE", "REPLICATION REPLICA"]) {
        return Err(missing_privilege(
            &user,
            "REPLICATION SLAVE",
            "to read the binlog",
            &grants,
            "GRANT REPLICATION SLAVE ON *.*",
        ));
    }
    if !grants.has_global_any(&["REPLICATION CLIENT", "BINLOG MONITOR"]) {
        let name = if flavor == Flavor::MariaDb {
            "BINLOG MONITOR (REPLICATION CLIENT)"
        } else {
            "REPLICATION CLIENT"
        };
        let grant = if flavor == Flavor::MariaDb {
            "GRANT BINLOG MONITOR ON *.*"
        } else {
            "GRANT REPLICATION CLIENT ON *.*"
        };
        return Err(missing_privilege(
            &user,
            name,
            "to read the binlog position (SHOW MASTER STATUS)",
            &grants,
            grant,
        ));
    }
    Ok(ServerInfo { flavor, version, grants })
}

fn missing_privilege(user: &str, privilege: &str, why: &str, grants: &Grants, fix: &str) -> Error {
    Error::new(
        ErrorKind::SourcePrivilege,
        format!(
            "source user {user} lacks the {privilege} privilege, needed {why}: expected it granted ON *.*, \
             the user has: {}; fix with: {fix} TO {user}",
            grants.summary()
        ),
    )
}

/// The replication settings: name, expected value, whether the server may lack the variable.
const SETTINGS: &[(&str, &str, bool)] = &[
    ("log_bin", "ON", false),
    ("binlog_format", "ROW", false),
    ("binlog_row_image", "FULL", false),
    ("binlog_row_metadata", "FULL", true),
];

async fn check_settings(conn: &mut Conn) -> Result<()> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata')",
        )
        .await
        .map_err(query_error)?;
    check_setting_values(&rows)
}

/// Check `(name, value)` rows of `SHOW GLOBAL VARIABLES` against [`SETTINGS`].
fn check_setting_values(rows: &[(String, String)]) -> Result<()> {
    for (name, expected, optional) in SETTINGS {
        let actual = rows.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        match actual {
            None if *optional => {}
            Some(v) if v.eq_ignore_ascii_case(expected) => {}
            actual => {
                let actual = actual.unwrap_or("(not available on this server)");
                let fix = if *name == "log_bin" {
                    "start the server with --log-bin (log_bin cannot be changed at runtime)".to_string()
                } else {
                    format!("SET GLOBAL {name} = {expected}, and set {name}={expected} in the server configuration")
                };
                return Err(Error::new(
                    ErrorKind::SourceSetting,
                    format!("source setting {name} must be {expected}, but the server has {actual}: {fix}"),
                ));
            }
        }
    }
    Ok(())
}

/// Check that the binlog file of `position` is still on the server.
/// `what` says where the position comes from (for the message).
pub(crate) async fn check_position_available(conn: &mut Conn, position: &Position, what: &str) -> Result<()> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(query_error)?;
    let files: Vec<String> = rows.into_iter().filter_map(|mut r| r.take::<String, _>(0)).collect();
    if files.iter().any(|f| f == &position.binlog.file) {
        return Ok(());
    }
    if matches!(&position.gtid, Some(g @ synchdb_types::GtidSet::MariaDb(_)) if !g.is_empty()) {
        // Another server of the topology (failover) names its files
        // differently: follow mode continues from the GTID position there,
        // after checking that the server holds every applied transaction.
        return Ok(());
    }
    let listed = match (files.first(), files.last()) {
        (Some(a), Some(b)) if a != b => format!("the server has {a} to {b}"),
        (Some(a), _) => format!("the server has only {a}"),
        _ => "the server lists no binlog file".into(),
    };
    Err(Error::new(
        ErrorKind::SourcePositionLost,
        format!(
            "binlog file {} of the {what} {position} is no longer on the server ({listed}; it was purged): \
             the changes since cannot be replicated, a fresh snapshot is needed (--snapshot always, \
             SnapshotMode::Always)",
            position.binlog.file
        ),
    )
    .with_position(position.binlog.clone()))
}

/// Check SELECT on every table to be snapshotted.
pub(crate) fn check_select(grants: &Grants, tables: &[TableSchema]) -> Result<()> {
    let missing: Vec<&TableId> = tables.iter().map(|t| &t.id).filter(|id| !grants.can_select(id)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.iter().take(10).map(ToString::to_string).collect();
    let more = if missing.len() > 10 { format!(" and {} more", missing.len() - 10) } else { String::new() };
    Err(Error::new(
        ErrorKind::SourcePrivilege,
        format!(
            "source user {} lacks the SELECT privilege on {}{more}: expected SELECT on *.*, on the database or on \
             each table, the user has: {}; fix with: GRANT SELECT ON `{}`.* TO {}",
            grants.user,
            names.join(", "),
            grants.summary(),
            missing[0].database,
            grants.user
        ),
    )
    .with_table(missing[0].clone()))
}

/// Check SELECT on every database the filter names literally (tables the
/// user cannot see at all would otherwise be missing from discovery).
pub(crate) fn check_select_databases(grants: &Grants, filter: &TableFilter) -> Result<()> {
    for db in filter.literal_databases().unwrap_or_default() {
        if !grants.can_select_database(&db) {
            return Err(Error::new(
                ErrorKind::SourcePrivilege,
                format!(
                    "source user {} lacks the SELECT privilege on database {db}: expected SELECT on *.*, on `{db}`.* \
                     or on its tables, the user has: {}; fix with: GRANT SELECT ON `{db}`.* TO {}",
                    grants.user,
                    grants.summary(),
                    grants.user
                ),
            ));
        }
    }
    Ok(())
}

/// The privileges of the current user, from `SHOW GRANTS`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    /// `'user'@'host'` as the server reports it.
    pub(crate) user: String,
    global: HashSet<String>,
    /// Database name patterns (LIKE syntax) and their privileges.
    databases: Vec<(String, HashSet<String>)>,
    tables: Vec<(TableId, HashSet<String>)>,
    lines: Vec<String>,
}

impl Grants {
    async fn load(conn: &mut Conn) -> Result<Grants> {
        let user: String =
            conn.query_first("SELECT CURRENT_USER()").await.map_err(query_error)?.unwrap_or_default();
        let lines: Vec<String> = conn.query("SHOW GRANTS").await.map_err(query_error)?;
        let mut g = Grants::parse(&lines);
        g.user = match user.split_once('@') {
            Some((u, h)) => format!("'{u}'@'{h}'"),
            None => user,
        };
        Ok(g)
    }

    /// Parse `SHOW GRANTS` lines.
    pub(crate) fn parse(lines: &[String]) -> Grants {
        let mut g = Grants { lines: lines.to_vec(), ..Default::default() };
        for line in lines {
            let Some((privs, object)) = split_grant(line) else { continue };
            let privs: HashSet<String> = privs
                .into_iter()
                .map(|p| {
                    let up = p.to_ascii_uppercase();
                    if up == "ALL" {
                        "ALL PRIVILEGES".to_string()
                    } else {
                        up
                    }
                })
                .collect();
            match parse_object(&object) {
                Some(GrantObject::Global) => g.global.extend(privs),
                Some(GrantObject::Database(d)) => g.databases.push((d, privs)),
                Some(GrantObject::Table(t)) => g.tables.push((t, privs)),
                None => {}
            }
        }
        g
    }

    pub(crate) fn has_global(&self, privilege: &str) -> bool {
        self.global.contains("ALL PRIVILEGES") || self.global.contains(privilege)
    }

    fn has_global_any(&self, privileges: &[&str]) -> bool {
        privileges.iter().any(|p| self.has_global(p))
    }

    fn can_select(&self, table: &TableId) -> bool {
        let ok = |s: &HashSet<String>| s.contains("SELECT") || s.contains("ALL PRIVILEGES");
        self.has_global("SELECT")
            || self.databases.iter().any(|(pat, s)| like_match(pat, &table.database) && ok(s))
            || self.tables.iter().any(|(t, s)| t == table && ok(s))
    }

    /// Whether some table of `db` is visible to SELECT (column grants count: the
    /// per-table check then names the table).
    fn can_select_database(&self, db: &str) -> bool {
        let ok = |s: &HashSet<String>| s.contains("SELECT") || s.contains("ALL PRIVILEGES");
        self.has_global("SELECT")
            || self.databases.iter().any(|(pat, s)| like_match(pat, db) && ok(s))
            || self.tables.iter().any(|(t, s)| t.database == db && s.iter().any(|p| p.starts_with("SELECT")))
    }

    /// The grants in short, for messages (no password hashes).
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for line in &self.lines {
            if let Some((privs, object)) = split_grant(line) {
                parts.push(format!("{} ON {object}", privs.join(", ")));
            }
        }
        if parts.is_empty() {
            "no privileges".into()
        } else {
            parts.join("; ")
        }
    }
}

enum GrantObject {
    Global,
    Database(String),
    Table(TableId),
}

/// `GRANT a, b (col) ON obj TO ...` into the privilege list and the object.
fn split_grant(line: &str) -> Option<(Vec<String>, String)> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    // Find " ON " and " TO " outside backticks and parentheses.
    let (mut depth, mut quoted) = (0i32, false);
    let bytes = rest.as_bytes();
    let mut on = None;
    let mut to = None;
    for i in 0..bytes.len() {
        match bytes[i] {
            b'`' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b' ' if !quoted && depth == 0 => {
                if on.is_none() && rest[i..].starts_with(" ON ") {
                    on = Some(i);
                } else if on.is_some() && to.is_none() && rest[i..].starts_with(" TO ") {
                    to = Some(i);
                }
            }
            _ => {}
        }
    }
    let (on, to) = (on?, to?);
    let privs = split_top_level(&rest[..on]);
    Some((privs, rest[on + 4..to].trim().to_string()))
}

/// Split a privilege list at commas outside parentheses; column lists make a
/// privilege column-level (`SELECT (a)`), which is kept apart.
fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn unquote_ident(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => s.to_string(),
    }
}

fn parse_object(object: &str) -> Option<GrantObject> {
    let o = object.trim();
    if o.starts_with("FUNCTION ") || o.starts_with("PROCEDURE ") || o.starts_with("PACKAGE ") {
        return None;
    }
    if o == "*.*" || o == "*" {
        return Some(GrantObject::Global);
    }
    // Split at the dot outside backticks.
    let mut quoted = false;
    let mut dot = None;
    for (i, c) in o.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '.' if !quoted => {
                dot = Some(i);
                break;
            }
            _ => {}
        }
    }
    let dot = dot?;
    let (db, table) = (unquote_ident(&o[..dot]), o[dot + 1..].trim());
    if table == "*" {
        Some(GrantObject::Database(db))
    } else {
        Some(GrantObject::Table(TableId::new(db, unquote_ident(table))))
    }
}

/// SQL LIKE with `%`, `_` and backslash escapes (database grant patterns).
fn like_match(pattern: &str, text: &str) -> bool {
    fn rec(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| rec(&p[1..], &t[i..])),
            Some('_') => !t.is_empty() && rec(&p[1..], &t[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && rec(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && rec(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    rec(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(lines: &[&str]) -> Grants {
        Grants::parse(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_mariadb_grants() {
        let g = grants(&[
            "GRANT RELOAD, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*ABC'",
            "GRANT SELECT ON `shop`.* TO `repl`@`%`",
            "GRANT SELECT, INSERT ON `crm`.`users` TO `repl`@`%`",
            "GRANT SELECT (`a`) ON `crm`.`leads` TO `repl`@`%`",
            "GRANT `analyst` TO `repl`@`%`",
        ]);
        assert!(g.has_global("RELOAD"));
        assert!(g.has_global_any(&["REPLICATION CLIENT", "BINLOG MONITOR"]));
        assert!(g.has_global_any(&["REPLICATION SLAVE", "REPLICATION REPLICA"]));
        assert!(!g.has_global("SELECT"));
        assert!(g.can_select(&TableId::new("shop", "orders")));
        assert!(g.can_select(&TableId::new("crm", "users")));
        assert!(!g.can_select(&TableId::new("crm", "leads")));
        assert!(!g.can_select(&TableId::new("other", "t")));
        assert!(!g.summary().contains("*ABC"));
    }

    #[test]
    fn all_privileges_and_patterns() {
        let g = grants(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]);
        assert!(g.has_global("REPLICATION SLAVE"));
        assert!(g.can_select(&TableId::new("a", "b")));
        let g = grants(&["GRANT USAGE ON *.* TO `u`@`%`", "GRANT ALL ON `app\\_%`.* TO `u`@`%`"]);
        assert!(!g.has_global("RELOAD"));
        assert!(g.can_select(&TableId::new("app_1", "t")));
        assert!(!g.can_select(&TableId::new("appx1", "t")));
    }

    #[test]
    fn settings_messages() {
        let rows =
            |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let good = rows(&[("log_bin", "ON"), ("binlog_format", "ROW"), ("binlog_row_image", "FULL")]);
        check_setting_values(&good).unwrap();
        let e = check_setting_values(&rows(&[("log_bin", "OFF"), ("binlog_format", "ROW")])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SourceSetting);
        assert!(e.to_string().contains("source setting log_bin must be ON, but the server has OFF"), "{e}");
        let e = check_setting_values(&rows(&[("log_bin", "ON"), ("binlog_format", "ROW")])).unwrap_err();
        assert!(
            e.to_string().contains("binlog_row_image must be FULL, but the server has (not available"),
            "{e}"
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like_match("shop%", "shop_eu"));
        assert!(like_match("s_op", "shop"));
        assert!(!like_match("s\\_op", "shop"));
        assert!(like_match("s\\_op", "s_op"));
    }
}
