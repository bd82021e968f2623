//! Changes to a tracked schema: keys, foreign keys, columns found the way the server finds them.

use super::*;

/// Add a foreign key to a schema, naming an unnamed one as MySQL does
/// (`<table>_ibfk_<n>`, `n` one past the highest such number). Returns it as added.
pub(crate) fn add_foreign_key(schema: &mut TableSchema, mut fk: ForeignKey) -> ForeignKey {
    for c in &mut fk.columns {
        *c = column_spelling(schema, c);
    }
    if fk.referenced_table == schema.id {
        for c in &mut fk.referenced_columns {
            *c = column_spelling(schema, c);
        }
    }
    if fk.name.is_empty() {
        let table = &schema.id.table;
        let n = schema.foreign_keys.iter().filter_map(|k| generated_fk_number(&k.name, table)).max();
        fk.name = format!("{table}_ibfk_{}", n.unwrap_or(0) + 1);
    }
    schema.foreign_keys.push(fk.clone());
    fk
}

/// `n` when `name` is `<table>_ibfk_<n>`, a name InnoDB generated (and renames with the table).
pub(crate) fn generated_fk_number(name: &str, table: &str) -> Option<u64> {
    let prefix = format!("{table}_ibfk_");
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(&prefix).then(|| name[prefix.len()..].parse().ok())?
}

/// Add a key to a schema, naming an unnamed index as MySQL does (after its
/// first column, `_2`, `_3`, ... when taken). Returns the index as added.
/// The position of column `name` in `schema`, compared as MySQL compares
/// column names: without regard to case (the exact spelling first).
pub(crate) fn find_column(schema: &TableSchema, name: &str) -> Option<usize> {
    schema.column_index(name).or_else(|| {
        let folded = name.to_lowercase();
        schema.columns.iter().position(|c| c.name.to_lowercase() == folded)
    })
}

/// `name` as the column of `schema` spells it (unchanged when there is no such column).
pub(crate) fn column_spelling(schema: &TableSchema, name: &str) -> String {
    find_column(schema, name).map(|i| schema.columns[i].name.clone()).unwrap_or_else(|| name.to_string())
}

pub(crate) fn add_key(schema: &mut TableSchema, key: IndexDef) -> Option<IndexSchema> {
    // Key columns are named in any case; the replica's keys use the columns' own spelling.
    let key = match key {
        IndexDef::Primary(cols) => {
            IndexDef::Primary(cols.iter().map(|c| column_spelling(schema, c)).collect())
        }
        IndexDef::Index { name, kind, mut columns } => {
            for c in &mut columns {
                c.name = column_spelling(schema, &c.name);
            }
            IndexDef::Index { name, kind, columns }
        }
    };
    match key {
        IndexDef::Primary(cols) => {
            for c in &cols {
                if let Some(i) = schema.column_index(c) {
                    schema.columns[i].nullable = false;
                }
            }
            schema.primary_key = cols;
            None
        }
        IndexDef::Index { name, kind, columns } => {
            let name = name.unwrap_or_else(|| {
                let base = columns.first().map(|c| c.name.clone()).unwrap_or_else(|| "key".into());
                let mut candidate = base.clone();
                let mut n = 2;
                while schema.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(&candidate)) {
                    candidate = format!("{base}_{n}");
                    n += 1;
                }
                candidate
            });
            let ix = IndexSchema { name, kind, columns };
            schema.indexes.push(ix.clone());
            Some(ix)
        }
    }
}
