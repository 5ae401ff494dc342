//! Errors of the scenario crate: a parse error names the file, line and
//! column, what was expected there and what was found; a run error names the
//! step and era it happened at.

/// Everything that can go wrong reading or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text does not follow the grammar at this place.
    #[error("{file}:{line}:{col}: expected {expected}, found {found}")]
    Expected {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// What the grammar allows here.
        expected: String,
        /// What the text had (quoted), or `end of line`.
        found: String,
    },
    /// A number that does not fit in the field it was written for.
    #[error("{file}:{line}:{col}: number {text} does not fit in {what}")]
    Overflow {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// The number as written (possibly shortened).
        text: String,
        /// The field's range, e.g. `64 bits` or `a byte (0..=0xff)`.
        what: String,
    },
    /// A value outside one of the documented limits (docs/fixtures.md).
    #[error("{file}:{line}:{col}: {what} {value:#x} is outside the limit {min:#x}..={max:#x}")]
    Limit {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// What was limited (`memory size`, `swap size`, `length`, ...).
        what: &'static str,
        /// The value written.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A size that is not a whole number of 4 KiB pages.
    #[error("{file}:{line}:{col}: {what} {value:#x} is not a multiple of 4K")]
    Unaligned {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// What was unaligned.
        what: &'static str,
        /// The value written.
        value: u64,
    },
    /// Too many statements of some kind (docs/fixtures.md lists the limits).
    #[error("{file}:{line}:{col}: more than {max} {what} in one scenario")]
    TooMany {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// What was counted.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A setting given twice, or an era listed twice.
    #[error("{file}:{line}:{col}: {what} given twice (first at line {first_line})")]
    Duplicate {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// What was repeated.
        what: String,
        /// Where it was first given.
        first_line: u32,
    },
    /// A setup statement after the first operation.
    #[error("{file}:{line}:{col}: `{what}` must come before the first operation (line {first_op})")]
    SetupAfterOperation {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// The setup keyword.
        what: &'static str,
        /// Line of the first operation.
        first_op: u32,
    },
    /// The file is not UTF-8 text.
    #[error("{file}:{line}:{col}: expected UTF-8 text, found byte {byte:#04x}")]
    NotUtf8 {
        /// File name.
        file: String,
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// The first byte that is not valid UTF-8.
        byte: u8,
    },
    /// The file is larger than the scenario size limit.
    #[error("{file}: {size} bytes is larger than the limit of {max} bytes for a scenario")]
    FileTooLarge {
        /// File name.
        file: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The (line, column) of a parse error, if it has one.
    pub fn position(&self) -> Option<(u32, u32)> {
        match self {
            Error::Expected { line, col, .. }
            | Error::Overflow { line, col, .. }
            | Error::Limit { line, col, .. }
            | Error::Unaligned { line, col, .. }
            | Error::TooMany { line, col, .. }
            | Error::Duplicate { line, col, .. }
            | Error::SetupAfterOperation { line, col, .. }
            | Error::NotUtf8 { line, col, .. } => Some((*line, *col)),
            Error::FileTooLarge { .. } | Error::Io { .. } => None,
        }
    }
}
