//! The oracle's one error type.

use std::path::PathBuf;

/// Everything that can stop an oracle run.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// The scenario file did not parse.
    #[error(transparent)]
    Scenario(#[from] scenario::Error),
    /// The host lacks something the oracle needs (root, cgroup v1, swap, ...).
    #[error("cannot run the oracle here: {0}")]
    Unavailable(String),
    /// A file the oracle needs could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The call and its argument, as text.
        call: String,
        /// The errno.
        source: std::io::Error,
    },
    /// A worker process broke the protocol, died or did not answer in time.
    #[error("worker {proc} (pid {pid}): {what}")]
    Worker {
        /// The scenario process it plays.
        proc: String,
        /// Its pid.
        pid: i32,
        /// What happened.
        what: String,
    },
    /// SIGINT or SIGTERM arrived; the machine was restored.
    #[error("interrupted by signal {0}; the machine was restored")]
    Interrupted(i32),
    /// The scenario cannot be planned: a dead or unknown process, or more
    /// pages than the oracle reads per step.
    #[error("{file}:{line}: {what}")]
    Plan {
        /// The scenario file.
        file: String,
        /// The line.
        line: u32,
        /// What exceeded which bound.
        what: String,
    },
    /// The emulator refused a step the scenario contains.
    #[error("{file}:{line}: ptemu: {what}")]
    Emulator {
        /// The scenario file.
        file: String,
        /// The line.
        line: u32,
        /// The emulator's error.
        what: String,
    },
    /// The report could not be written.
    #[error("writing the report: {0}")]
    Report(String),
}

impl OracleError {
    /// Wraps an I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OracleError::Io { path: path.into(), source }
    }

    /// Wraps the current errno of a failed call.
    pub(crate) fn sys(call: impl Into<String>) -> Self {
        OracleError::Sys { call: call.into(), source: std::io::Error::last_os_error() }
    }
}
