//! Object mapping, filters and transforms: typed, composable converters.
//!
//! - [`MappingRules`]: rules as data (TOML, JSON, or the builder): table renames
//!   (across databases/schemas), column renames and exclusions, destination type
//!   overrides per column and per source type, SQL transforms evaluated by the
//!   sink (`lower(%d)`), PII [`Mask`]s (keyed hash, redaction, partial), per-column
//!   zero-date policies and row filters ([`Predicate`]).
//! - [`Mapping`]: the [`Converter`](crate::Converter) applying them to the
//!   snapshot, to row changes and to DDL; [`Mapping::validate`] checks them against
//!   the source schema at startup, [`Mapping::explain`] shows what maps to what.
//! - [`ColumnTransform`] and [`RowFilter`]: converters from Rust closures, added
//!   to the pipeline builder in the order they should run.
//!
//! The module knows no database: destination types are strings in the sink's
//! syntax, carried in [`ColumnSchema::target_type`](synchdb_types::ColumnSchema),
//! and SQL transforms in [`ColumnSchema::target_expr`](synchdb_types::ColumnSchema).
//!
//! ```
//! use synchdb_core::mapping::{Mapping, MappingRules};
//! let rules = MappingRules::from_toml_str(r#"
//!     hash_key = "not-in-files-please"
//!     source_types = { "tinyint(1)" = "boolean" }
//!     [tables."shop.customers"]
//!     rename = "crm.clients"
//!     filter = "tenant_id = 7"
//!     columns.email = { mask = { kind = "hash" } }
//!     columns.phone = { mask = { kind = "partial", keep_last = 4 } }
//!     columns.name = { rename = "full_name", transform = "upper(%d)" }
//!     columns.notes = { exclude = true }
//! "#)?;
//! let mapping = Mapping::new(rules)?;
//! # Ok::<(), synchdb_core::Error>(())
//! ```

mod engine;
mod explain;
mod mask;
mod predicate;
mod rules;
mod transform;

pub use engine::Mapping;
pub use explain::{ColumnMappingView, TableMappingView};
pub use mask::{hash_value, partial_mask};
pub use predicate::{CompareOp, Literal, Predicate};
pub use rules::{ColumnRule, MappingRules, Mask, TableRule};
pub use transform::{ColumnTransform, RowFilter};
