//! Parse errors of the model's text forms.

/// A text form that does not parse (`what` names the expected form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {input:?}")]
pub struct ParseError {
    /// What was expected (`date`, `GTID set`, ...).
    pub what: &'static str,
    /// The input, cut to 200 characters.
    pub input: String,
}

impl ParseError {
    /// A parse error for `input`, which should have been a `what`.
    pub fn new(what: &'static str, input: &str) -> Self {
        ParseError { what, input: input.chars().take(200).collect() }
    }
}
