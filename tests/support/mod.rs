#![allow(dead_code)]
pub mod cli;
pub mod kube;
pub mod pg;
