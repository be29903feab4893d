#![allow(dead_code)]
pub mod cli;
pub mod clock;
pub mod controller;
pub mod faults;
pub mod helm;
pub mod kube;
pub mod pg;
pub mod traffic;
