//! Introspection: what each source table and column maps to (SynchDB's
//! `synchdb_att_view` as a Rust call).

use std::fmt;
use std::sync::Arc;

use synchdb_types::{ColumnSchema, TableId, TableSchema};

use crate::error::Result;

/// One source column and its destination.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMappingView {
    /// Source column name.
    pub source: String,
    /// Source type, as synchdb prints it (`tinyint(1)`, `varchar(120)`).
    pub source_type: String,
    /// The destination column (name, `target_type`, `target_expr`); `None` when excluded.
    pub target: Option<ColumnSchema>,
    /// The destination type: chosen by a rule, or filled in by the sink with
    /// [`TableMappingView::resolve_types`]; `None` when the sink's default applies
    /// and was not resolved.
    pub target_type: Option<String>,
    /// What happens to the values, in order (`mask hash (hmac-sha256)`, `sql lower(%d)`, ...).
    pub transforms: Vec<String>,
}

impl ColumnMappingView {
    /// The destination column name, `None` when excluded.
    pub fn target_name(&self) -> Option<&str> {
        self.target.as_ref().map(|c| c.name.as_str())
    }
}

/// One source table and its destination.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMappingView {
    /// Source table.
    pub source: TableId,
    /// Destination table; `None` when excluded.
    pub target: Option<TableId>,
    /// The row filter, as text.
    pub filter: Option<String>,
    /// The destination schema as the sink receives it.
    pub target_schema: Option<Arc<TableSchema>>,
    /// Every source column, in source order.
    pub columns: Vec<ColumnMappingView>,
    /// Foreign keys of the source table that the replica does not get, with the reason.
    pub left_out_foreign_keys: Vec<(String, String)>,
}

impl TableMappingView {
    /// Fill every destination type with the sink's type mapping (e.g.
    /// `synchdb_postgres::pg_type_for`), given the destination table and column.
    pub fn resolve_types(&mut self, f: impl Fn(&TableId, &ColumnSchema) -> Result<String>) -> Result<()> {
        let Some(target) = &self.target else { return Ok(()) };
        for c in &mut self.columns {
            if let Some(tc) = &c.target {
                c.target_type = Some(f(target, tc)?);
            }
        }
        Ok(())
    }
}

impl fmt::Display for TableMappingView {
    /// ```text
    /// shop.customers -> crm.clients  where tenant_id = 7
    ///   id      int unsigned  -> id          bigint
    ///   email   varchar(120)  -> email       text     mask hash (hmac-sha256)
    ///   notes   text          -> (excluded)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(t) => write!(f, "{} -> {t}", self.source)?,
            None => write!(f, "{} -> (excluded)", self.source)?,
        }
        if let Some(w) = &self.filter {
            write!(f, "  where {w}")?;
        }
        writeln!(f)?;
        if self.target.is_none() {
            return Ok(());
        }
        let w0 = self.columns.iter().map(|c| c.source.chars().count()).max().unwrap_or(0);
        let w1 = self.columns.iter().map(|c| c.source_type.chars().count()).max().unwrap_or(0);
        let w2 =
            self.columns.iter().map(|c| c.target_name().map_or(10, |n| n.chars().count())).max().unwrap_or(0);
        let w3 = self
            .columns
            .iter()
            .map(|c| c.target_type.as_deref().map_or(9, |t| t.chars().count()))
            .max()
            .unwrap_or(0);
        for c in &self.columns {
            match c.target_name() {
                None => writeln!(f, "  {:w0$}  {:w1$}  -> (excluded)", c.source, c.source_type)?,
                Some(n) => {
                    let ty = c.target_type.as_deref().unwrap_or("(default)");
                    let line = format!(
                        "  {:w0$}  {:w1$}  -> {n:w2$}  {ty:w3$}  {}",
                        c.source,
                        c.source_type,
                        c.transforms.join(", ")
                    );
                    writeln!(f, "{}", line.trim_end())?;
                }
            }
        }
        for (name, why) in &self.left_out_foreign_keys {
            writeln!(f, "  foreign key {name} left out: {why}")?;
        }
        Ok(())
    }
}
