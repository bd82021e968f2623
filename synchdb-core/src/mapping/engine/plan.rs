//! The per-table plan: each column's destination and the steps its values go through.

use super::*;

/// Whether the source column's own type holds a 64-character hex string.
pub(super) fn source_holds_hash(t: &ColumnType) -> bool {
    match t {
        ColumnType::Text { .. } => true,
        ColumnType::Char { length } | ColumnType::VarChar { length } => *length >= 64,
        _ => false,
    }
}

impl Mapping {
    /// Map one column: the destination column (`None` when excluded) and its value steps.
    pub(super) fn map_column(
        &self,
        table: &TableId,
        col: &ColumnSchema,
        key_columns: &[&str],
    ) -> Result<(Option<ColumnSchema>, Vec<Step>)> {
        let none = ColumnRule::default();
        let rule = self.column_rule(table, &col.name).unwrap_or(&none);
        let err = |m: String| cfg_err(table, &col.name, m);
        let is_key = key_columns.contains(&col.name.as_str());
        if rule.exclude {
            if is_key {
                return Err(
                    err("cannot exclude a column of the row identity (primary or unique key)".into()),
                );
            }
            return Ok((None, Vec::new()));
        }
        let mut out = col.clone();
        if let Some(n) = &rule.rename {
            out.name = n.clone();
        }
        let explicit: Option<TargetType> = match rule
            .target_type
            .as_deref()
            .or_else(|| self.rules.type_for_source(&col.column_type.to_string()))
        {
            Some(t) => Some(check_target_type(table, &col.name, t)?),
            None => None,
        };
        let mut steps = Vec::new();
        match &rule.mask {
            Some(Mask::Hash) => {
                steps.push(Step::Hash);
                match &explicit {
                    Some(t) if !t.holds_text_of(64) => {
                        return Err(err(format!("type {t} cannot hold the 64-character hash of a hash mask")))
                    }
                    Some(_) => {}
                    None if !source_holds_hash(&col.column_type) => out.target_type = Some(TargetType::Text),
                    None => {}
                }
                out.default = None;
            }
            Some(Mask::Redact { value }) => {
                if is_key {
                    return Err(err(
                        "cannot redact a key column (every row would get the same key); use a hash mask"
                            .into(),
                    ));
                }
                match value {
                    None if !col.nullable => {
                        return Err(err(
                            "redacting a NOT NULL column to NULL: give the mask a fixed value".into()
                        ))
                    }
                    None => steps.push(Step::Redact(Value::Null)),
                    Some(v) => {
                        if let ColumnType::Char { length } | ColumnType::VarChar { length } = &col.column_type
                        {
                            if explicit.is_none() && v.chars().count() > *length as usize {
                                return Err(err(format!(
                                    "redaction value {v:?} is longer than {}",
                                    col.column_type
                                )));
                            }
                        }
                        if let ColumnType::Enum { members } = &col.column_type {
                            if explicit.is_none() && !v.is_empty() && !members.contains(v) {
                                return Err(err(format!(
                                    "redaction value {v:?} is not a member of the ENUM"
                                )));
                            }
                        }
                        steps.push(Step::Redact(Value::Text(v.clone())));
                    }
                }
                out.default = None;
            }
            Some(Mask::Partial { keep_last, mask_char }) => {
                match &col.column_type {
                    ColumnType::Char { .. } | ColumnType::VarChar { .. } | ColumnType::Text { .. } => {}
                    ColumnType::Enum { .. } if explicit.is_none() => out.target_type = Some(TargetType::Text),
                    ColumnType::Enum { .. } => {}
                    other => return Err(err(format!("a partial mask needs a textual column, not {other}"))),
                }
                steps.push(Step::Partial { keep_last: *keep_last, mask_char: *mask_char });
                out.default = None;
            }
            None => {}
        }
        if let Some(t) = explicit {
            out.target_type = Some(t);
        }
        if rule.mask.is_none() {
            let integer =
                matches!(col.column_type, ColumnType::Integer { .. } | ColumnType::Year | ColumnType::Year2);
            match &out.target_type {
                Some(TargetType::Boolean) if integer || matches!(col.column_type, ColumnType::Bit { .. }) => {
                    steps.push(Step::ToBool)
                }
                Some(TargetType::Time { .. }) if matches!(col.column_type, ColumnType::Time { .. }) => {
                    steps.push(Step::CheckTime)
                }
                Some(t) if integer => {
                    if let Some((min, max)) = t.integer_range() {
                        steps.push(Step::CheckInt { min, max, ty: t.clone() });
                    }
                }
                _ => {}
            }
        }
        if let Some(x) = &rule.transform {
            out.target_expr = Some(check_transform(table, &col.name, x)?);
        }
        if let Some(z) = rule.zero_dates {
            out.zero_dates = Some(z);
        }
        if let Some(n) = rule.text_nul {
            out.text_nul = Some(n);
        }
        Ok((Some(out), steps))
    }

    pub(super) fn build_plan(&self, t: &TableSchema) -> Result<TablePlan> {
        let rule = self.table_rule(&t.id);
        let Some(target_id) = self.target_table(&t.id)? else {
            return Ok(TablePlan { target: None, columns: Vec::new(), filter: None, rows_unchanged: true });
        };
        if let Some(r) = rule {
            if let Some(f) = &r.filter {
                for c in f.columns() {
                    if t.column(c).is_none() {
                        return Err(cfg_err(&t.id, c, "row filter names a column the table does not have"));
                    }
                }
            }
        }
        let key_idx = t.identity_columns();
        let key_columns: Vec<&str> = key_idx.iter().map(|&i| t.columns[i].name.as_str()).collect();
        let mut columns = Vec::with_capacity(t.columns.len());
        let mut names = HashSet::new();
        for c in &t.columns {
            let (target, steps) = self.map_column(&t.id, c, &key_columns)?;
            if let Some(tc) = &target {
                if !names.insert(tc.name.clone()) {
                    return Err(cfg_err(
                        &t.id,
                        &c.name,
                        format!("two columns map to the destination column {:?}", tc.name),
                    ));
                }
            }
            columns.push(ColumnPlan { target, steps });
        }
        let rows_unchanged = columns.iter().all(|c| c.target.is_some() && c.steps.is_empty());
        let rename = |n: &str| self.column_name(&t.id, n);
        let mut out = TableSchema::new(target_id, columns.iter().filter_map(|c| c.target.clone()).collect());
        out.comment = t.comment.clone();
        out.primary_key = t.primary_key.iter().filter_map(|n| rename(n)).collect();
        for ix in &t.indexes {
            let mut ix = ix.clone();
            let mut keep = true;
            for c in &mut ix.columns {
                match rename(&c.name) {
                    Some(n) => c.name = n,
                    None => keep = false,
                }
            }
            if keep {
                out.indexes.push(ix);
            }
        }
        for fk in &t.foreign_keys {
            if let Some(fk) = self.map_foreign_key(&t.id, fk)? {
                out.foreign_keys.push(fk);
            }
        }
        let filter = rule.and_then(|r| r.filter.clone());
        Ok(TablePlan { target: Some(Arc::new(out)), columns, filter, rows_unchanged })
    }

    /// A foreign key with both ends mapped; `None` (logged) when it is left out.
    pub(super) fn map_foreign_key(
        &self,
        table: &TableId,
        fk: &synchdb_types::ForeignKey,
    ) -> Result<Option<synchdb_types::ForeignKey>> {
        Ok(match self.foreign_key_target(table, fk)? {
            Ok(fk) => Some(fk),
            Err(why) => {
                warn!(table = %table, foreign_key = %fk.name, "foreign key left out: {why}");
                None
            }
        })
    }

    /// A foreign key with both ends mapped, or why it is left out: an end is
    /// excluded, the two ends are masked differently (their values could not
    /// match), or the referenced table has a row filter (rows that leave the
    /// filter are deleted on the replica while rows referencing them stay).
    pub(super) fn foreign_key_target(
        &self,
        table: &TableId,
        fk: &synchdb_types::ForeignKey,
    ) -> Result<std::result::Result<synchdb_types::ForeignKey, String>> {
        let Some(ref_table) = self.target_table(&fk.referenced_table)? else {
            return Ok(Err(format!("the referenced table {} is excluded", fk.referenced_table)));
        };
        if self.table_rule(&fk.referenced_table).is_some_and(|r| r.filter.is_some()) {
            return Ok(Err(format!(
                "the referenced table {} has a row filter, so references to filtered-out rows dangle",
                fk.referenced_table
            )));
        }
        let mut out = fk.clone();
        out.referenced_table = ref_table;
        for (i, (c, r)) in fk.columns.iter().zip(&fk.referenced_columns).enumerate() {
            let (Some(cn), Some(rn)) =
                (self.column_name(table, c), self.column_name(&fk.referenced_table, r))
            else {
                return Ok(Err("a column at one end is excluded".into()));
            };
            let mask = |t: &TableId, n: &str| self.column_rule(t, n).and_then(|r| r.mask.clone());
            if mask(table, c) != mask(&fk.referenced_table, r) {
                return Ok(Err("its columns are masked differently at both ends".into()));
            }
            out.columns[i] = cn;
            out.referenced_columns[i] = rn;
        }
        Ok(Ok(out))
    }

    pub(super) fn plan(&self, table: &Arc<TableSchema>) -> Result<Arc<TablePlan>> {
        let mut cache = self.cache.lock().expect("mapping cache poisoned");
        if let Some((source, plan)) = cache.get(&table.id) {
            if Arc::ptr_eq(source, table) || **source == **table {
                return Ok(plan.clone());
            }
        }
        let plan = Arc::new(self.build_plan(table)?);
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(table.id.clone(), (table.clone(), plan.clone()));
        Ok(plan)
    }
}
