//! pgpart: keeps PostgreSQL partitioned tables healthy, from Kubernetes or the command line.
//!
//! Data flows one way: policy → resolve → observe → plan → execute → report.
//! `plan` is pure (no I/O); `db` and `controller` are the thin imperative shell.

pub mod archive;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod db;
pub mod engine;
pub mod error;
pub mod plan;
pub mod policy;
pub mod telemetry;
