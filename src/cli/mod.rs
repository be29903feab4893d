//! The command line: controller | plan | apply | status | restore | crd | import-partman.
//! Exit codes: 0 done (or nothing to do), 1 failed, 2 bad input (nothing was changed).

mod import_partman;
mod restore;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "pgpart",
    version,
    about = "Keeps PostgreSQL partitioned tables healthy, from Kubernetes or the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// File with one or more PartitionPolicy documents.
    #[arg(long)]
    pub policy: PathBuf,
    /// postgresql://user:password@host:port/dbname?sslmode=…; replaces spec.database.
    #[arg(long, env = "PGPART_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Replace the clock (RFC 3339), for tests and what-ifs.
    #[arg(long)]
    pub now: Option<DateTime<Utc>>,
    /// Database connections used at once (tables are processed in parallel).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
}

#[derive(clap::Args, Clone)]
pub struct RestoreArgs {
    /// File with the PartitionPolicy whose retention archived the partition.
    #[arg(long)]
    pub policy: PathBuf,
    /// The policy's table (schema.table), when the file holds several that archive.
    #[arg(long)]
    pub table: Option<String>,
    /// The archived partition's name, e.g. events_p20240101.
    #[arg(long)]
    pub partition: String,
    /// Bring it back as a plain table of this name, beside the parent.
    #[arg(long)]
    pub as_table: Option<String>,
    /// Bring it back as the partition it was (its name and bound).
    #[arg(long)]
    pub attach: bool,
    #[arg(long, env = "PGPART_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (in cluster, or with KUBECONFIG).
    Controller(crate::controller::Args),
    /// Print what apply would do, with the SQL; change nothing.
    Plan {
        #[command(flatten)]
        args: RunArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Make the database match the policies; print each action taken.
    Apply {
        #[command(flatten)]
        args: RunArgs,
        /// text: each action as it completes; json: one document per table at the end.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Partitions with bounds, size, estimated rows, rows in default, gaps.
    Status {
        #[arg(long, env = "PGPART_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Only this table (schema.table).
        #[arg(long)]
        table: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Bring an archived partition back (retention.action: Archive), checked against its
    /// manifest.
    Restore(RestoreArgs),
    /// Print the CustomResourceDefinition YAML that crds/ holds.
    Crd,
    /// Print PartitionPolicies equivalent to pg_partman's part_config (for migrating).
    ImportPartman {
        #[arg(long, env = "PGPART_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Secret name to put in spec.database.secretRef.
        #[arg(long, default_value = "database")]
        secret: String,
    },
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Controller(_)) {
        crate::telemetry::init_tracing(crate::telemetry::LogFormat::Text, "warn");
    }
    let result = match cli.command {
        Command::Controller(args) => crate::controller::run(args).await,
        Command::Plan { args, output } => run::run(args, false, output).await,
        Command::Apply { args, output } => run::run(args, true, output).await,
        Command::Status {
            database_url,
            table,
            output,
        } => status::status(&database_url, table.as_deref(), output).await,
        Command::ImportPartman {
            database_url,
            secret,
        } => import_partman::import(&database_url, &secret).await,
        Command::Restore(args) => restore::restore(args).await,
        Command::Crd => {
            print!("{}", crate::policy::crd_yaml());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
