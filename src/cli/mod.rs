//! The command line: controller | plan | apply | status | crd.
use std::process::ExitCode;

pub async fn main() -> ExitCode {
    ExitCode::SUCCESS
}
