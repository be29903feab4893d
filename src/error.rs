//! One error enum. Each variant maps to a condition reason, an event, a metric label
//! and a CLI exit code. Messages never carry secrets: database errors are rendered from
//! the server's message fields, never from connection strings.

use thiserror::Error;

#[derive(Clone, Debug, Error)]
pub enum Error {
    /// The policy itself is wrong; the message names the field and the fix.
    #[error("{field}: {message}")]
    InvalidPolicy { field: String, message: String },
    /// The table does not exist.
    #[error(
        "table {table} does not exist: create it PARTITION BY RANGE/LIST/HASH first, or fix spec.table"
    )]
    TableMissing { table: String },
    /// The table exists but does not match the policy (strategy, key type, naming).
    #[error("{field}: {message}")]
    Mismatch { field: String, message: String },
    /// Two policies manage one table.
    #[error("{0}")]
    Conflict(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("Kubernetes API: {0}")]
    KubeApi(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A lock could not be had within lockTimeout, after retries.
    #[error("lock timeout: {0}")]
    LockTimeout(String),
    /// Rows stand in the way (e.g. rows in DEFAULT for a partition being attached).
    #[error("rows violate a partition constraint: {0}")]
    CheckViolation(String),
    /// A repair pgpart will not do, and why (the rows stay in the default, reported).
    #[error("repair refused: {0}")]
    RepairRefused(String),
    #[error("database error: {0}")]
    Database(String),
    /// Keys between now and the end of the premake window have no partition after a pass:
    /// never success, whatever else went well.
    #[error("{0}")]
    Hole(String),
    #[error("{0}")]
    Input(String),
    /// Archiving a retired partition failed or did not verify: the partition is kept.
    #[error("archive: {0}")]
    Archive(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidPolicy {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn mismatch(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Mismatch {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The reason used in conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidPolicy { .. } => "InvalidPolicy",
            Error::TableMissing { .. } => "TableMissing",
            Error::Mismatch { .. } => "PolicyMismatch",
            Error::Conflict(_) => "Conflict",
            Error::Connect(_) => "DatabaseUnavailable",
            Error::KubeApi(_) => "KubernetesApiError",
            Error::PermissionDenied(_) => "PermissionDenied",
            Error::LockTimeout(_) => "LockTimeout",
            Error::CheckViolation(_) => "RowsInDefault",
            Error::RepairRefused(_) => "RepairRefused",
            Error::Database(_) => "DatabaseError",
            Error::Hole(_) => "MissingPartition",
            Error::Input(_) => "InvalidInput",
            Error::Archive(_) => "ArchiveFailed",
        }
    }

    /// Only a person can fix it: retrying will not help.
    pub fn is_stalled(&self) -> bool {
        matches!(
            self,
            Error::InvalidPolicy { .. }
                | Error::TableMissing { .. }
                | Error::Mismatch { .. }
                | Error::Conflict(_)
                | Error::PermissionDenied(_)
                | Error::Input(_)
        )
    }

    /// CLI exit code: 2 for bad input (nothing was changed), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidPolicy { .. }
            | Error::TableMissing { .. }
            | Error::Mismatch { .. }
            | Error::Conflict(_)
            | Error::Input(_) => 2,
            _ => 1,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            // Connection-level failures: the Display of tokio-postgres names the cause, not the URL.
            return Error::Connect(e.to_string());
        };
        let msg = match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        };
        match *db.code() {
            SqlState::LOCK_NOT_AVAILABLE => Error::LockTimeout(msg),
            SqlState::CHECK_VIOLATION => Error::CheckViolation(msg),
            SqlState::INSUFFICIENT_PRIVILEGE => Error::PermissionDenied(msg),
            SqlState::TOO_MANY_CONNECTIONS
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::ADMIN_SHUTDOWN
            | SqlState::INVALID_PASSWORD
            | SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            | SqlState::INVALID_CATALOG_NAME => Error::Connect(msg),
            _ => Error::Database(msg),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
