//! PostgreSQL: connect, observe in one catalog query, execute actions.

pub mod connect;
pub mod execute;
pub mod observe;
pub mod pool;
pub mod quote;
