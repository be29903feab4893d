//! PostgreSQL: connect, observe in one catalog query (shared by every policy on a
//! database), execute actions.

pub mod connect;
pub mod execute;
pub mod observe;
pub mod pool;
pub mod shared;
pub mod targets;
