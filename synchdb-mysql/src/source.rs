//! [`MySqlSource`]: the [`Source`] implementation.

use async_trait::async_trait;
use synchdb_core::{Error, Result, Source, SourceContext};

use crate::options::MySqlSourceOptions;

/// A MySQL/MariaDB source: snapshot, then binlog follow mode.
#[derive(Debug, Clone)]
pub struct MySqlSource {
    options: MySqlSourceOptions,
}

impl MySqlSource {
    /// A source with these options.
    pub fn new(options: MySqlSourceOptions) -> Self {
        MySqlSource { options }
    }

    /// The options.
    pub fn options(&self) -> &MySqlSourceOptions {
        &self.options
    }
}

#[async_trait]
impl Source for MySqlSource {
    fn name(&self) -> &str {
        "mysql"
    }

    async fn run(&mut self, _ctx: SourceContext) -> Result<()> {
        self.options.validate()?;
        Err(Error::internal("mysql source run: work in progress"))
    }
}
