//! Versioned snapshots of channel state for storage.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The snapshot format this crate writes. Bump it (and add a migration in
/// [`Snapshot::into_state`]) whenever a stored state's shape changes.
pub const SNAPSHOT_FORMAT: u16 = 1;

/// A state as stored: its format number beside it, so that a newer build can migrate it and an
/// older one refuses it rather than misreading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot<S> {
    /// Format of `state`.
    pub format: u16,
    /// The state.
    pub state: S,
}

/// Why a stored snapshot cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// Written by a newer (or unknown) format.
    UnsupportedFormat(u16),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedFormat(v) => {
                write!(
                    f,
                    "unsupported snapshot format {v} (this build reads {SNAPSHOT_FORMAT})"
                )
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl<S> Snapshot<S> {
    /// Wraps `state` in the current format.
    pub fn new(state: S) -> Self {
        Self {
            format: SNAPSHOT_FORMAT,
            state,
        }
    }

    /// The state, if this build reads its format.
    pub fn into_state(self) -> Result<S, SnapshotError> {
        match self.format {
            SNAPSHOT_FORMAT => Ok(self.state),
            other => Err(SnapshotError::UnsupportedFormat(other)),
        }
    }
}
