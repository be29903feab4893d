//! PostgreSQL: connect, observe in one catalog query, execute actions.

pub mod quote;
