//! Subjects: `<prefix>.<database>.<table>`, identifiers escaped for subject syntax.
//!
//! A subject token may hold any byte but whitespace, `.`, `*` and `>`. Table
//! and database names keep ASCII letters, digits, `-` and `_` as they are;
//! every other byte of their UTF-8 form becomes `~XX` (two upper-case hex
//! digits), `~` included, and so does a leading `_`: tokens that start with
//! `_` are synchdb's own (`<prefix>._state`), never a table's.

use synchdb_types::TableId;

/// The subject token for one identifier.
pub fn escape(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len());
    for (i, b) in ident.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || (b == b'_' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    if out.is_empty() {
        // An empty identifier still needs a token.
        out.push('~');
    }
    out
}

/// The identifier of a subject token; `None` when it is not one [`escape`] makes.
pub fn unescape(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject of a table's messages.
pub fn table_subject(prefix: &str, table: &TableId) -> String {
    format!("{prefix}.{}.{}", escape(&table.database), escape(&table.table))
}

/// The table a data subject names, `None` for synchdb's own subjects and
/// subjects of another prefix.
pub fn subject_table(prefix: &str, subject: &str) -> Option<TableId> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (db, table) = rest.split_once('.')?;
    if db.starts_with('_') || table.contains('.') {
        return None;
    }
    Some(TableId::new(unescape(db)?, unescape(table)?))
}

/// The subject of the publisher's state messages (snapshot markers, chunk
/// completions, schema and position records) of one pipeline.
pub fn state_subject(prefix: &str, pipeline: &str) -> String {
    format!("{prefix}._state.{}", escape(pipeline))
}

/// Whether `prefix` is a valid subject prefix (dot-separated tokens, no
/// wildcards or whitespace, none starting with `_` reserved words aside).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the subject prefix is empty".into());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!("subject prefix {prefix:?} has an empty token"));
        }
        if token.chars().any(|c| c.is_whitespace() || c == '*' || c == '>') {
            return Err(format!("subject prefix {prefix:?} holds whitespace or a wildcard"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_through_subject_tokens() {
        for name in
            ["orders", "order items", "a.b", "_hidden", "x_y", "naïve", "*>", "~tilde", "", "Ünïcødé 表"]
        {
            let token = escape(name);
            assert!(!token.contains(['.', ' ', '*', '>']), "{token}");
            assert!(!token.starts_with('_'), "{token}");
            assert_eq!(unescape(&token).as_deref(), Some(name), "{name}");
        }
        let id = TableId::new("shop db", "t.1");
        let subject = table_subject("synchdb", &id);
        assert_eq!(subject, "synchdb.shop~20db.t~2E1");
        assert_eq!(subject_table("synchdb", &subject), Some(id));
        assert_eq!(subject_table("synchdb", &state_subject("synchdb", "p")), None);
        assert_eq!(subject_table("other", &subject), None);
        assert!(check_prefix("a.b").is_ok());
        assert!(check_prefix("a..b").is_err());
        assert!(check_prefix("a.*").is_err());
    }
}
