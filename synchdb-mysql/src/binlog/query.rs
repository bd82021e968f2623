//! Query events: DDL statements parsed and applied to the tracked schemas,
//! or re-read from information_schema when they cannot be parsed, and
//! statements that change rows without row events.

use super::*;

impl<'a> Follower<'a> {
    /// A DDL statement: its own transaction. `error_code`: the query event's
    /// (non-zero when the server logged a statement that failed part-way).
    pub(super) async fn ddl(
        &mut self,
        sql: &str,
        db: &str,
        (fk_checks, strict, error_code): (bool, bool, u16),
        (begin, end): (u64, u64),
        time: DateTime<Utc>,
    ) -> Result<Flow> {
        let at = self.position(begin);
        if let Flow::Stop = self.end_open_tx(begin, time).await? {
            return Ok(Flow::Stop);
        }
        let gtid = self.take_gtid();
        let quick = quick_tables(sql, db).map(|t| self.fold_tables(t));
        if error_code != 0 {
            // Logged although it failed part-way (a CREATE OR REPLACE that dropped the
            // old table, then could not create the new one): its selected tables are
            // copied again, or found gone and dropped on the target.
            let tables: Vec<TableId> =
                quick.unwrap_or_default().into_iter().filter(|t| self.schemas.filter().matches(t)).collect();
            if !tables.is_empty() {
                let why = format!(
                    "the statement {:?} failed on the source (error {error_code}) after changing some of it",
                    short(sql)
                );
                self.schema_lost(tables, &why, &at)?;
            }
            return self.finish(Vec::new(), true, gtid, end, time, false).await;
        }
        // A statement about a resync's tables after its position waits for it to join.
        let touches_blocked = match &quick {
            Some(tables) => tables.iter().any(|t| self.must_join_before(t, &at)),
            None => self.resync.as_ref().is_some_and(|r| at >= r.position.binlog),
        };
        if touches_blocked {
            if let Flow::Stop = self.join_resync().await? {
                return Ok(Flow::Stop);
            }
        }
        if let Some(tables) = quick {
            if !self.schemas.concerns(&tables) {
                return self.finish(Vec::new(), true, gtid, end, time, false).await;
            }
        }
        let meta = EventMeta { position: at.clone(), commit_time: time, tx: 0, index: 0 };
        let applied = match parse_ddl(sql, db) {
            Ok(None) => Vec::new(),
            Ok(Some(mut ddl)) => {
                let (info, schemas) = (&self.info, &self.schemas);
                ddl.map_tables(&|t: &mut TableId| info.fold_table(t, &|id| schemas.find_ci(id)));
                if let crate::ddl::Ddl::DropDatabase { database } = &mut ddl {
                    *database = self.info.fold_database(database);
                }
                let concerns = self.schemas.concerns(&ddl.tables().into_iter().cloned().collect::<Vec<_>>())
                    || matches!(&ddl, crate::ddl::Ddl::DropDatabase { database } if self.schemas.tracks_database(database));
                if !concerns {
                    Vec::new()
                } else if let crate::ddl::Ddl::CreateTableSelect { table, if_not_exists } = &ddl {
                    // Its shape is the query's: information_schema may hold a later
                    // definition by now, so the new table is copied (shape and rows
                    // read together), its rows events until then skipped.
                    let existing = *if_not_exists && self.schemas.is_selected(table);
                    if self.schemas.filter().matches(table) && !existing {
                        info!(%table, %at, "CREATE TABLE ... SELECT: the table is copied");
                        self.request_resync(vec![table.clone()], format!("CREATE TABLE ... SELECT at {at}"));
                    }
                    Vec::new()
                } else {
                    let backup = self.schemas.clone();
                    let named: Vec<TableId> = ddl.tables().into_iter().cloned().collect();
                    let ignore = leading_words(sql, 3).iter().any(|w| w == "IGNORE");
                    self.schemas.set_strict(strict && !ignore);
                    match self.schemas.apply(ddl, &mut self.side).await {
                        Ok(a) => a,
                        Err(e) => {
                            self.schemas = backup;
                            let e = add_ddl_context(e, sql, &at);
                            // The server accepted a statement the tracked schemas cannot take
                            // (they missed something): the tables it names are copied again.
                            if e.kind() != ErrorKind::SourceSchema {
                                return Err(e);
                            }
                            let named: Vec<TableId> =
                                named.into_iter().filter(|t| self.schemas.filter().matches(t)).collect();
                            if named.is_empty() {
                                return Err(e);
                            }
                            self.schema_lost(named, &e.to_string(), &at)?;
                            Vec::new()
                        }
                    }
                }
            }
            Err(parse_error) => {
                self.ddl_fallback(sql, db, &at, &parse_error.message)?;
                Vec::new()
            }
        };
        if !applied.is_empty() {
            self.tables.clear();
        }
        let mut applied = applied;
        let mut copied_again: Vec<TableId> = Vec::new();
        for a in applied.iter().filter(|a| matches!(a, Applied::RowsChangedUnlogged(..))) {
            let Applied::RowsChangedUnlogged(table, what) = a else { continue };
            self.unlogged_rows(table.clone(), what, &at)?;
            copied_again.push(table.clone());
        }
        let renamed_from: Vec<TableId> = applied
            .iter()
            .filter_map(|a| match a {
                Applied::Schema(SchemaChange::RenameTable { from, to }, _) if copied_again.contains(to) => {
                    Some(from.clone())
                }
                _ => None,
            })
            .collect();
        copied_again.extend(renamed_from);
        // A table copied again takes its shape from the copy: the statement's
        // changes to it (e.g. a column type PostgreSQL would convert otherwise) are not applied.
        applied.retain(|a| match a {
            Applied::RowsChangedUnlogged(..) => false,
            Applied::Schema(SchemaChange::RenameTable { .. }, _) => true,
            Applied::Schema(c, _) => !copied_again.contains(c.table()),
            _ => true,
        });
        let events = applied
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let meta = EventMeta { index: i as u32, ..meta.clone() };
                match a {
                    Applied::Schema(change, schema_after) => {
                        ChangeEvent::Schema(Box::new(SchemaChangeEvent {
                            change,
                            schema_after,
                            ddl: sql.to_string(),
                            meta,
                        }))
                    }
                    Applied::Truncate(table) => ChangeEvent::Truncate(TruncateEvent { table, meta }),
                    Applied::RowsChangedUnlogged(..) => unreachable!("removed above"),
                }
            })
            .collect();
        self.finish(events, fk_checks, gtid, end, time, false).await
    }

    /// A statement changed `table`'s rows without row events: copy the table
    /// again (after the statement's transaction), or stop, as configured.
    pub(super) fn unlogged_rows(&mut self, table: TableId, what: &str, at: &BinlogPosition) -> Result<()> {
        match self.opts.get_unlogged_changes() {
            crate::options::UnloggedChanges::Stop => Err(Error::new(
                ErrorKind::SourceSchema,
                format!(
                    "{what} changes rows that the binlog does not list, so the replica cannot follow it \
                     (unlogged-changes policy stop); re-snapshot the table (or exclude it) to go on"
                ),
            )
            .with_table(table)
            .with_position(at.clone())),
            _ => {
                warn!(%table, %at, "{what} changed rows without row events: the table is copied again");
                self.request_resync(vec![table], format!("{what} at {at}"));
                Ok(())
            }
        }
    }

    /// DDL commits implicitly: an open transaction ends before it.
    async fn end_open_tx(&mut self, begin: u64, time: DateTime<Utc>) -> Result<Flow> {
        if let Some(mut open) = self.tx.take() {
            if !open.events.is_empty() || open.sent > 0 {
                let gtid = self.take_gtid();
                offset_indexes(&mut open.events, open.sent);
                let streamed = open.sent > 0;
                return self.finish(open.events, !open.no_fk_checks, gtid, begin, time, streamed).await;
            }
        }
        Ok(Flow::Continue)
    }

    /// The tracked schemas of `tables` cannot follow a statement the server
    /// accepted: copy the tables again (their shapes and rows as the server
    /// has them then), or stop under the unlogged-changes policy `stop`.
    pub(super) fn schema_lost(&mut self, tables: Vec<TableId>, why: &str, at: &BinlogPosition) -> Result<()> {
        if matches!(self.opts.get_unlogged_changes(), crate::options::UnloggedChanges::Stop) {
            return Err(Error::new(
                ErrorKind::SourceSchema,
                format!("{why}; the unlogged-changes policy `stop` forbids copying the tables again"),
            )
            .with_position(at.clone()));
        }
        warn!(tables = ?tables.iter().map(ToString::to_string).collect::<Vec<_>>(), %at, error = why,
            "the tracked schema cannot follow this statement: the tables are copied again");
        self.request_resync(tables, format!("a statement at {at} the tracked schema could not follow"));
        Ok(())
    }

    /// A DDL statement about selected tables that does not parse: a table it
    /// creates is copied, the tables it changes are copied again (see
    /// [`Self::schema_lost`]). Without a table name, or when it renames a
    /// table (the new name is not known), it is an error.
    pub(super) fn ddl_fallback(&mut self, sql: &str, db: &str, at: &BinlogPosition, why: &str) -> Result<()> {
        let Some(tables) = quick_tables(sql, db).map(|t| self.fold_tables(t)) else {
            return Err(Error::new(
                ErrorKind::SourceSchema,
                format!("cannot parse the DDL statement {:?}: {why}", short(sql)),
            )
            .with_position(at.clone()));
        };
        let creates = leading_words(sql, 1).first().map(String::as_str) == Some("CREATE");
        let new_tables: Vec<TableId> = tables
            .iter()
            .filter(|t| creates && !self.schemas.is_selected(t) && self.schemas.concerns(&[(*t).clone()]))
            .cloned()
            .collect();
        if let Some(id) =
            new_tables.first().filter(|_| sql.to_ascii_uppercase().contains("SYSTEM VERSIONING"))
        {
            return Err(Error::new(
                ErrorKind::SourceSchema,
                format!(
                    "system-versioned tables are not supported (their hidden row_start/row_end columns \
                     are in the binlog, not in information_schema): exclude the table to go on ({:?})",
                    short(sql)
                ),
            )
            .with_table(id.clone())
            .with_position(at.clone()));
        }
        // information_schema holds the tables as they are now, which may be a later
        // definition (or another table of the same name): the tables are copied again
        // instead, at a point where their shape and rows are read together (their
        // changes before it skipped). A new table is cheap to copy.
        if !new_tables.is_empty() {
            warn!(tables = ?new_tables.iter().map(ToString::to_string).collect::<Vec<_>>(), %at, error = why,
                "CREATE TABLE not parsed: the table is copied (its shape and rows read from the source)");
            self.request_resync(new_tables.clone(), format!("CREATE TABLE at {at} not parsed"));
        }
        let selected: Vec<TableId> =
            tables.into_iter().filter(|t| self.schemas.is_selected(t) && !new_tables.contains(t)).collect();
        if renames_table(sql) {
            // The new name is not known here.
            return Err(Error::new(
                ErrorKind::SourceSchema,
                format!("cannot parse the DDL statement {:?} ({why}), which renames a table", short(sql)),
            )
            .with_position(at.clone()));
        }
        if !selected.is_empty() {
            let why = format!("cannot parse the DDL statement {:?} ({why})", short(sql));
            self.schema_lost(selected, &why, at)?;
        }
        Ok(())
    }
}

/// Whether a statement renames a table (`RENAME TABLE`, `ALTER TABLE ... RENAME
/// [TO|AS]`), not just a column or an index.
fn renames_table(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    words.iter().enumerate().any(|(i, w)| {
        w == "RENAME" && !matches!(words.get(i + 1).map(String::as_str), Some("COLUMN" | "INDEX" | "KEY"))
    })
}

/// A query event's statement as the server read it: in the session's
/// `character_set_client` (its `Charset` status variable), so that names and
/// literals written by a `SET NAMES latin1` client are what the server made of them.
pub(super) fn query_text<'a>(q: &'a QueryEvent<'a>) -> std::borrow::Cow<'a, str> {
    let text = decoded_text(q);
    use mysql_common::constants::SqlMode;
    let mode = |flag: SqlMode| {
        q.status_vars()
            .get_status_var(StatusVarKey::SqlMode)
            .is_some_and(|v| matches!(v.get_value(), Ok(StatusVarVal::SqlMode(m)) if m.get().contains(flag)))
    };
    let ansi = mode(SqlMode::MODE_ANSI_QUOTES) && text.contains('"');
    let brackets = mode(SqlMode::MODE_MSSQL) && text.contains('[');
    if ansi || brackets {
        std::borrow::Cow::Owned(identifiers_to_backticks(&text, ansi, brackets))
    } else {
        text
    }
}

/// [`identifiers_to_backticks`] under `ANSI_QUOTES` alone.
#[cfg(test)]
pub(crate) fn ansi_quotes_to_backticks(sql: &str) -> String {
    identifiers_to_backticks(sql, true, false)
}

/// Under `sql_mode=ANSI_QUOTES` a double-quoted word is an identifier, and
/// under `sql_mode=MSSQL` a bracketed one (`[t 1]`, `]]` for `]`): written
/// with backticks, as the parser reads identifiers (`"a""b"` → `` `a"b` ``).
/// Strings, backticked names and comments are copied as they are.
pub(crate) fn identifiers_to_backticks(sql: &str, double_quotes: bool, brackets: bool) -> String {
    type Chars<'s> = std::iter::Peekable<std::str::Chars<'s>>;
    /// Copy a quoted string or name through its closing `q` (written twice
    /// inside it; after a backslash too where `backslash`).
    fn copy_quoted(out: &mut String, it: &mut Chars<'_>, q: char, backslash: bool) {
        out.push(q);
        while let Some(d) = it.next() {
            out.push(d);
            if backslash && d == '\\' {
                if let Some(e) = it.next() {
                    out.push(e);
                }
            } else if d == q {
                if it.peek() == Some(&q) {
                    out.push(it.next().unwrap_or(q));
                } else {
                    break;
                }
            }
        }
    }
    /// A name quoted up to `close` (written twice inside it), as a backticked name.
    fn backticked(out: &mut String, it: &mut Chars<'_>, close: char) {
        let mut name = String::new();
        while let Some(d) = it.next() {
            if d == close {
                if it.peek() == Some(&close) {
                    it.next();
                } else {
                    break;
                }
            }
            name.push(d);
        }
        out.push('`');
        out.push_str(&name.replace('`', "``"));
        out.push('`');
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut it = sql.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\'' => copy_quoted(&mut out, &mut it, c, true),
            '`' => copy_quoted(&mut out, &mut it, c, false),
            '"' if !double_quotes => copy_quoted(&mut out, &mut it, c, true),
            '"' => backticked(&mut out, &mut it, '"'),
            '[' if brackets => backticked(&mut out, &mut it, ']'),
            '/' if it.peek() == Some(&'*') => {
                out.push(c);
                out.push(it.next().unwrap_or('*'));
                let mut prev = ' ';
                for d in it.by_ref() {
                    out.push(d);
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            '#' => {
                out.push(c);
                for d in it.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '-' if it.peek() == Some(&'-') && {
                let mut ahead = it.clone();
                ahead.next();
                ahead.peek().is_none_or(|n| n.is_whitespace())
            } =>
            {
                out.push(c);
                for d in it.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn decoded_text<'a>(q: &'a QueryEvent<'a>) -> std::borrow::Cow<'a, str> {
    let raw = q.query_raw();
    if raw.is_ascii() {
        return q.query();
    }
    let client = q.status_vars().get_status_var(StatusVarKey::Charset).and_then(|v| match v.get_value() {
        Ok(StatusVarVal::Charset { charset_client, .. }) => Some(charset_client),
        _ => None,
    });
    let charset = client.map(|id| {
        mysql_common::collations::Collation::from(mysql_common::collations::CollationId::from(id))
            .charset()
            .to_string()
    });
    match charset.as_deref() {
        None | Some("utf8mb4" | "utf8mb3" | "utf8" | "binary" | "") => q.query(),
        Some(cs) => match crate::charset::decode_text(cs, raw.to_vec()) {
            Ok(text) => std::borrow::Cow::Owned(text),
            Err(_) => q.query(),
        },
    }
}

/// Whether a query event ran in strict mode (`STRICT_TRANS_TABLES` or
/// `STRICT_ALL_TABLES` in its `SqlMode` status variable; ALTER TABLE aborts
/// on a conversion warning then, for every engine). Without the variable: strict
/// (the server's default).
pub(super) fn strict_mode(q: &QueryEvent<'_>) -> bool {
    use mysql_common::constants::SqlMode;
    let Some(v) = q.status_vars().get_status_var(StatusVarKey::SqlMode) else { return true };
    match v.get_value() {
        Ok(StatusVarVal::SqlMode(m)) => {
            m.get().intersects(SqlMode::MODE_STRICT_TRANS_TABLES | SqlMode::MODE_STRICT_ALL_TABLES)
        }
        _ => true,
    }
}

/// Whether a query event ran with foreign key checks on (its `Flags2` status variable).
pub(super) fn foreign_key_checks(q: &QueryEvent<'_>) -> bool {
    let off = q.status_vars().get_status_var(StatusVarKey::Flags2).is_some_and(|v| {
        matches!(v.get_value(), Ok(StatusVarVal::Flags2(f)) if f.get().contains(Flags2::OPTION_NO_FOREIGN_KEY_CHECKS))
    });
    !off
}

pub(super) fn add_ddl_context(e: Error, sql: &str, at: &BinlogPosition) -> Error {
    let kind = e.kind();
    let table = e.table().cloned();
    let mut out = Error::new(kind, format!("applying DDL {:?} failed", short(sql))).with_position(at.clone());
    if let Some(t) = table {
        out = out.with_table(t);
    }
    out.with_source(e)
}

pub(super) fn short(sql: &str) -> String {
    let s: String = sql.chars().take(200).collect();
    if s.len() < sql.len() {
        format!("{s}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renames_of_tables_not_columns() {
        assert!(super::renames_table("RENAME TABLE a TO b"));
        assert!(super::renames_table("alter table t rename to u"));
        assert!(super::renames_table("ALTER TABLE t ADD x INT, RENAME AS u"));
        assert!(!super::renames_table("ALTER TABLE t1 RENAME COLUMN IF EXISTS a TO m"));
        assert!(!super::renames_table("ALTER TABLE t RENAME INDEX a TO b, RENAME KEY c TO d"));
    }

    #[test]
    fn mssql_brackets_become_backticks() {
        let f = |s: &str| super::identifiers_to_backticks(s, true, true);
        assert_eq!(f("CREATE TABLE [t 1] ([a b] INT)"), "CREATE TABLE `t 1` (`a b` INT)");
        assert_eq!(
            f("ALTER TABLE [a]]b] ADD c INT DEFAULT '[x]'"),
            "ALTER TABLE `a]b` ADD c INT DEFAULT '[x]'"
        );
        let g = |s: &str| super::identifiers_to_backticks(s, false, true);
        assert_eq!(
            g(r#"CREATE TABLE [t] (c VARCHAR(3) DEFAULT "[a")"#),
            r#"CREATE TABLE `t` (c VARCHAR(3) DEFAULT "[a")"#
        );
    }

    #[test]
    fn ansi_quotes_become_backticks() {
        let f = super::ansi_quotes_to_backticks;
        assert_eq!(f(r#"CREATE TABLE "t" ("""blah"" - 1" INT)"#), r#"CREATE TABLE `t` (`"blah" - 1` INT)"#);
        assert_eq!(f(r#"create table "a1\""b1" (a int)"#), r#"create table `a1\"b1` (a int)"#);
        assert_eq!(
            f(r#"CREATE TABLE "x`y" (c INT DEFAULT 'it''s "q"')"#),
            r#"CREATE TABLE `x``y` (c INT DEFAULT 'it''s "q"')"#
        );
        assert_eq!(
            f(r#"ALTER TABLE `a"b` ADD c INT COMMENT 'x\' "y"' /* "z" */"#),
            r#"ALTER TABLE `a"b` ADD c INT COMMENT 'x\' "y"' /* "z" */"#
        );
        assert_eq!(
            f("INSERT INTO \"t\" VALUES (1--1) -- \"c\"\n"),
            "INSERT INTO `t` VALUES (1--1) -- \"c\"\n"
        );
    }
}
