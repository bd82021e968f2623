//! Values through a plan: transforms, masks, filters.

use super::*;

impl Mapping {
    pub(super) fn apply_step(&self, step: &Step, v: Value) -> std::result::Result<Value, String> {
        Ok(match step {
            Step::Hash => hash_value(self.key.as_deref().unwrap_or_default(), &v),
            Step::Redact(r) => {
                if v.is_null() {
                    v
                } else {
                    r.clone()
                }
            }
            Step::Partial { keep_last, mask_char } => partial_mask(&v, *keep_last, *mask_char)
                .ok_or_else(|| format!("partial mask of a {} value", v.kind()))?,
            Step::ToBool => match v {
                Value::Int(i) => Value::Text((i != 0).to_string()),
                Value::UInt(u) => Value::Text((u != 0).to_string()),
                Value::Year(y) => Value::Text((y != 0).to_string()),
                Value::Bit(b) => Value::Text((b.value != 0).to_string()),
                other => other,
            },
            Step::CheckTime => match v {
                Value::Time(t) if t.micros < 0 || t.micros > 86_400_000_000 => {
                    return Err(format!(
                        "TIME {t} does not fit the destination type time (00:00:00 to 24:00:00)"
                    ))
                }
                other => other,
            },
            Step::CheckInt { min, max, ty } => {
                let n: Option<i128> = match &v {
                    Value::Int(i) => Some((*i).into()),
                    Value::UInt(u) => Some((*u).into()),
                    _ => None,
                };
                if let Some(n) = n {
                    if n < *min || n > *max {
                        return Err(format!("{n} does not fit the destination type {ty}"));
                    }
                }
                v
            }
        })
    }

    pub(super) fn map_values(&self, source: &TableSchema, plan: &TablePlan, row: Row) -> Result<Row> {
        if plan.rows_unchanged {
            return Ok(row);
        }
        if row.len() != plan.columns.len() {
            return Err(Error::new(
                ErrorKind::Convert,
                format!("row has {} values, table has {} columns", row.len(), plan.columns.len()),
            )
            .with_table(source.id.clone()));
        }
        let mut out = Vec::with_capacity(row.len());
        for ((cp, v), col) in plan.columns.iter().zip(row).zip(&source.columns) {
            if cp.target.is_none() {
                continue;
            }
            let mut v = v;
            for s in &cp.steps {
                v = self.apply_step(s, v).map_err(|m| {
                    Error::new(ErrorKind::Convert, m)
                        .with_table(source.id.clone())
                        .with_column(col.name.clone())
                })?;
            }
            out.push(v);
        }
        Ok(out)
    }

    pub(super) fn keep(&self, source: &TableSchema, plan: &TablePlan, row: &Row) -> Result<bool> {
        match &plan.filter {
            None => Ok(true),
            Some(f) => f
                .matches(&|c: &str| source.column_index(c).and_then(|i| row.get(i)))
                .map_err(|e| e.with_table(source.id.clone())),
        }
    }
}
