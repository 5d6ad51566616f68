//! Policy errors with the 1-based line and column they were found at.

use std::fmt;
use std::ops::Range;

/// Why a policy text was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line of the offending value (1 when TOML gives no position).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, for the operator: `unknown permission "SELEC"`.
    pub message: String,
}

impl PolicyError {
    /// An error at byte offset `span.start` of `text`.
    pub(crate) fn at(text: &str, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let (line, column) = line_column(text, span.start);
        PolicyError {
            line,
            column,
            message: message.into(),
        }
    }

    /// A TOML syntax or shape error, at the position TOML reports.
    pub(crate) fn from_toml(text: &str, err: &toml::de::Error) -> PolicyError {
        let message = err.message().trim_end().to_string();
        match err.span() {
            Some(span) => PolicyError::at(text, span, message),
            None => PolicyError {
                line: 1,
                column: 1,
                message,
            },
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for PolicyError {}

/// The 1-based line of byte offset `offset` in `text` (clamped to the text).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    line_column(text, offset).0
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 1000), (3, 1));
        // Inside a multi-byte character: the character's start.
        assert_eq!(line_column(text, 8), (2, 2));
        assert_eq!(line_of(text, 7), 2);
    }
}
