//! Why a command failed: the `code` of `polystream.command.failed.v1` and of
//! a failed command status. Clients and S3 match on these; the wire names
//! are stable (snake_case), so stored outcomes keep decoding.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// A user with this id already exists.
    DuplicateUser,
    /// A user with this email already exists.
    DuplicateEmail,
    /// A user with this CPF already exists.
    DuplicateCpf,
    /// The command names a user that does not exist.
    UnknownUser,
    /// The command names a title that does not exist.
    UnknownTitle,
    /// The command names an asset that was never uploaded.
    UnknownAsset,
    /// A constraint of the store the command broke (a check, a unique key
    /// other than the ones above).
    Rejected,
    /// The event could not be decoded or broke the contract; dead-lettered.
    InvalidEvent,
    /// A store rejected the command's data every time it was tried (a data
    /// exception, say); dead-lettered so it can be inspected.
    StoreRejected,
}

impl FailureCode {
    pub const ALL: [Self; 9] = [
        Self::DuplicateUser,
        Self::DuplicateEmail,
        Self::DuplicateCpf,
        Self::UnknownUser,
        Self::UnknownTitle,
        Self::UnknownAsset,
        Self::Rejected,
        Self::InvalidEvent,
        Self::StoreRejected,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DuplicateUser => "duplicate_user",
            Self::DuplicateEmail => "duplicate_email",
            Self::DuplicateCpf => "duplicate_cpf",
            Self::UnknownUser => "unknown_user",
            Self::UnknownTitle => "unknown_title",
            Self::UnknownAsset => "unknown_asset",
            Self::Rejected => "rejected",
            Self::InvalidEvent => "invalid_event",
            Self::StoreRejected => "store_rejected",
        }
    }

    /// The code a wire name stands for, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the event was also dead-lettered (it never became an effect
    /// and can be inspected on the dead-letter topic).
    pub fn is_dead_lettered(self) -> bool {
        matches!(self, Self::InvalidEvent | Self::StoreRejected)
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wire_names_are_serde_names_and_round_trip() {
        for c in FailureCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(
                serde_json::from_value::<FailureCode>(c.as_str().into()).unwrap(),
                c
            );
            assert_eq!(FailureCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(FailureCode::parse("nope"), None);
        assert!(FailureCode::StoreRejected.is_dead_lettered());
        assert!(!FailureCode::UnknownUser.is_dead_lettered());
    }
}
