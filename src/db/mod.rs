//! PostgreSQL: connect, observe in one catalog query, execute actions.

pub mod quote;
pub mod connect;
pub mod observe;
pub mod execute;
