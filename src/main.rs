use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    pgpart::cli::main().await
}
