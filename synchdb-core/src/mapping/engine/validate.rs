//! Checking rules against the source tables, and explaining a mapping.

use super::*;

/// Whether two table rules treat columns and rows the same (everything but the table rename).
pub(super) fn same_table_rules(a: Option<&TableRule>, b: Option<&TableRule>) -> bool {
    let none = TableRule::default();
    let (a, b) = (a.unwrap_or(&none), b.unwrap_or(&none));
    a.exclude == b.exclude && a.filter == b.filter && a.columns == b.columns
}

impl Mapping {
    /// Check the rules against the source schema before any data moves:
    /// [`check_names`](Self::check_names), then [`check_tables`](Self::check_tables).
    pub fn validate(&self, tables: &[TableSchema]) -> Result<()> {
        self.check_names(tables)?;
        self.check_tables(tables)
    }

    /// Every table and column a rule names exists in `tables` (a misspelt name in an
    /// exclusion or mask rule would otherwise let the data through). On a restart,
    /// DDL may have dropped a named table or column since the first run: callers may
    /// then treat this check's error as a warning.
    pub fn check_names(&self, tables: &[TableSchema]) -> Result<()> {
        let by_id: HashMap<&TableId, &TableSchema> = tables.iter().map(|t| (&t.id, t)).collect();
        for (id, rule) in &self.rules.tables {
            let sid: TableId =
                id.parse().map_err(|e| Error::config(format!("mapping rule {id:?}")).with_source(e))?;
            let Some(t) = by_id.get(&sid) else {
                return Err(Error::config(
                    "a mapping rule names a table the source does not have (or does not replicate)",
                )
                .with_table(sid));
            };
            for c in rule.columns.keys() {
                if t.column(c).is_none() {
                    return Err(cfg_err(&sid, c, "a mapping rule names a column the table does not have"));
                }
            }
        }
        Ok(())
    }

    /// Every table maps (types, masks, filters, renames), and no two tables or
    /// columns map to one destination.
    pub fn check_tables(&self, tables: &[TableSchema]) -> Result<()> {
        let mut targets: HashMap<TableId, TableId> = HashMap::new();
        for t in tables {
            let plan = self.build_plan(t)?;
            if let Some(target) = &plan.target {
                if let Some(other) = targets.insert(target.id.clone(), t.id.clone()) {
                    return Err(Error::config(format!(
                        "tables {other} and {} both map to {}",
                        t.id, target.id
                    ))
                    .with_table(t.id.clone()));
                }
            }
        }
        Ok(())
    }

    /// For each source table and column: the destination name, the destination type
    /// chosen by a rule (the sink's default otherwise; fill it with
    /// [`TableMappingView::resolve_types`]) and the transforms applied.
    pub fn explain(&self, tables: &[TableSchema]) -> Result<Vec<TableMappingView>> {
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            let plan = self.build_plan(t)?;
            let rule = self.table_rule(&t.id);
            let columns = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let cp = plan.columns.get(i);
                    let target = cp.and_then(|p| p.target.clone());
                    let mut transforms = Vec::new();
                    if let Some(r) = self.column_rule(&t.id, &c.name) {
                        if let Some(m) = &r.mask {
                            transforms.push(m.to_string());
                        }
                        if let Some(x) = &r.transform {
                            transforms.push(format!("sql {x}"));
                        }
                        if let Some(z) = r.zero_dates {
                            transforms.push(format!("zero dates {z}"));
                        }
                        if let Some(n) = r.text_nul {
                            transforms.push(format!("NUL characters {n}"));
                        }
                    }
                    for s in cp.map(|p| p.steps.as_slice()).unwrap_or_default() {
                        match s {
                            Step::ToBool => transforms.push("0/1 to false/true".into()),
                            Step::CheckTime => transforms.push("checked to fit time".into()),
                            Step::CheckInt { ty, .. } => transforms.push(format!("checked to fit {ty}")),
                            _ => {}
                        }
                    }
                    ColumnMappingView {
                        source: c.name.clone(),
                        source_type: c.column_type.to_string(),
                        target_type: target
                            .as_ref()
                            .and_then(|t| t.target_type.as_ref().map(ToString::to_string)),
                        target,
                        transforms,
                    }
                })
                .collect();
            let mut left_out_foreign_keys = Vec::new();
            if plan.target.is_some() {
                for fk in &t.foreign_keys {
                    if let Err(why) = self.foreign_key_target(&t.id, fk)? {
                        left_out_foreign_keys.push((fk.name.clone(), why));
                    }
                }
            }
            out.push(TableMappingView {
                left_out_foreign_keys,
                source: t.id.clone(),
                target: plan.target.as_ref().map(|s| s.id.clone()),
                filter: rule.and_then(|r| r.filter.as_ref()).map(ToString::to_string),
                target_schema: plan.target.clone(),
                columns,
            });
        }
        Ok(out)
    }
}
