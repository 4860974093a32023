//! The one error type of the crate's boundary.

use std::path::PathBuf;

/// Why a load run could not be set up or carried out. (Failed *requests* are not errors: they are
/// counted in the report.)
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A flag's value could not be understood.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag, e.g. `--slo`.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Generating an image failed.
    #[error("generating a JPEG: {0}")]
    Generate(String),
}

impl LoadError {
    /// An invalid value for `flag`.
    pub fn invalid(flag: &'static str, message: impl Into<String>) -> Self {
        LoadError::Invalid {
            flag,
            message: message.into(),
        }
    }
}
