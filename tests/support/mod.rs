#![allow(dead_code)]
pub mod cli;
pub mod controller;
pub mod helm;
pub mod kube;
pub mod pg;
