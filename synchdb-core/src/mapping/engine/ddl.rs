//! Schema changes through the mapping.

use super::*;

impl Mapping {
    /// Rewrite a schema change for the destination; `None` when it is ignored
    /// (excluded table or column).
    pub(super) fn map_change(
        &self,
        change: SchemaChange,
        after: Option<&TableSchema>,
    ) -> Result<Option<SchemaChange>> {
        let table = change.table().clone();
        let conv_err = |m: String| Error::new(ErrorKind::Convert, m).with_table(table.clone());
        let Some(target) = self.target_table(&table)? else {
            if let SchemaChange::RenameTable { to, .. } = &change {
                if self.target_table(to)?.is_some() {
                    return Err(conv_err(format!(
                        "RENAME TABLE moves an excluded table to {to}, which is not excluded"
                    )));
                }
            }
            return Ok(None);
        };
        let keys: Vec<&str> = after
            .map(|t| t.identity_columns().into_iter().map(|i| t.columns[i].name.as_str()).collect())
            .unwrap_or_default();
        let col =
            |c: &ColumnSchema| -> Result<Option<ColumnSchema>> { Ok(self.map_column(&table, c, &keys)?.0) };
        let name = |n: &str| self.column_name(&table, n);
        let position = |p: ColumnPosition| match p {
            ColumnPosition::After(n) => name(&n).map(ColumnPosition::After).unwrap_or(ColumnPosition::Last),
            other => other,
        };
        let same_column_rules = |a: &str, b: &str| {
            let none = ColumnRule::default();
            let (ra, rb) =
                (self.column_rule(&table, a).unwrap_or(&none), self.column_rule(&table, b).unwrap_or(&none));
            ra.same_effect(rb)
        };
        Ok(Some(match change {
            SchemaChange::CreateTable { schema } => {
                let plan = self.build_plan(&schema)?;
                match &plan.target {
                    Some(t) => SchemaChange::CreateTable { schema: (**t).clone() },
                    None => return Ok(None),
                }
            }
            SchemaChange::DropTable { .. } => SchemaChange::DropTable { table: target },
            SchemaChange::RenameTable { from, to } => {
                let Some(to_target) = self.target_table(&to)? else {
                    return Err(conv_err(format!("RENAME TABLE moves the table to {to}, which is excluded")));
                };
                if !same_table_rules(self.table_rule(&from), self.table_rule(&to)) {
                    return Err(conv_err(format!(
                        "RENAME TABLE {from} TO {to}: the two names have different column or filter rules; \
                         give {to} the same rules"
                    )));
                }
                if to_target == target {
                    return Ok(None);
                }
                SchemaChange::RenameTable { from: target, to: to_target }
            }
            SchemaChange::AddColumn { column, position: p, .. } => match col(&column)? {
                Some(c) => SchemaChange::AddColumn { table: target, column: c, position: position(p) },
                None => return Ok(None),
            },
            SchemaChange::DropColumn { name: n, .. } => match name(&n) {
                Some(n) => SchemaChange::DropColumn { table: target, name: n },
                None => return Ok(None),
            },
            SchemaChange::ModifyColumn { old, new, position: p, .. } => {
                if !same_column_rules(&old.name, &new.name) {
                    return Err(conv_err(format!(
                        "column {} renamed to {} on the source, and the two names have different mapping rules",
                        old.name, new.name
                    )));
                }
                match (col(&old)?, col(&new)?) {
                    (Some(o), Some(n)) => SchemaChange::ModifyColumn {
                        table: target,
                        old: o,
                        new: n,
                        position: p.map(position),
                    },
                    _ => return Ok(None),
                }
            }
            SchemaChange::RenameColumn { from, to, .. } => {
                if !same_column_rules(&from, &to) {
                    return Err(conv_err(format!(
                        "column {from} renamed to {to} on the source, and the two names have different mapping rules"
                    )));
                }
                match (name(&from), name(&to)) {
                    (Some(f), Some(t)) if f == t => return Ok(None),
                    (Some(f), Some(t)) => SchemaChange::RenameColumn { table: target, from: f, to: t },
                    _ => return Ok(None),
                }
            }
            SchemaChange::CreateIndex { mut index, .. } => {
                for c in &mut index.columns {
                    match name(&c.name) {
                        Some(n) => c.name = n,
                        None => return Ok(None),
                    }
                }
                SchemaChange::CreateIndex { table: target, index }
            }
            SchemaChange::DropIndex { name: n, .. } => SchemaChange::DropIndex { table: target, name: n },
            SchemaChange::AddForeignKey { foreign_key, .. } => {
                match self.map_foreign_key(&table, &foreign_key)? {
                    Some(foreign_key) => SchemaChange::AddForeignKey { table: target, foreign_key },
                    None => return Ok(None),
                }
            }
            SchemaChange::DropForeignKey { name: n, .. } => {
                SchemaChange::DropForeignKey { table: target, name: n }
            }
            SchemaChange::SetPrimaryKey { columns, .. } => {
                let mut out = Vec::with_capacity(columns.len());
                for c in &columns {
                    match name(c) {
                        Some(n) => out.push(n),
                        None => {
                            return Err(conv_err(format!("the new primary key uses the excluded column {c}")))
                        }
                    }
                }
                SchemaChange::SetPrimaryKey { table: target, columns: out }
            }
            other => {
                return Err(conv_err(format!("the mapping does not support this schema change: {other:?}")))
            }
        }))
    }
}
