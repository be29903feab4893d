//! The pure core: no I/O. From a policy, the observed table and `now`, compute the
//! desired partitions, the ordered actions that get there, and findings.

pub mod action;
pub mod archive;
pub mod bounds;
pub mod calendar;
pub mod diff;
pub mod grid;
pub mod model;
pub mod naming;
pub mod quote;
pub mod range;
pub mod repair;
pub mod retention;
pub mod sets;

pub use action::{Action, TableCtx};
pub use diff::{Finding, Plan, Summary, plan};

#[cfg(test)]
mod tests;
