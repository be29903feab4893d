//! `pgpart plan` and `pgpart apply`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::json;

use super::{Output, RunArgs};
use crate::db::connect::Target;
use crate::db::execute::{self, Outcome, can_detach_concurrently};
use crate::db::observe::{observe, plan_table, replan_if_stale};
use crate::error::{Error, Result};
use crate::plan::{Plan, action};
use crate::policy::{PartitionPolicy, ValidPolicy, file::load_file, validate};

struct Planned {
    policy_name: String,
    policy: ValidPolicy,
    plan: Plan,
}

fn policy_name(p: &PartitionPolicy) -> String {
    p.metadata
        .name
        .clone()
        .unwrap_or_else(|| "(unnamed)".into())
}

pub async fn run(args: RunArgs, apply: bool, output: Output) -> Result<()> {
    let now = args.now.unwrap_or_else(Utc::now);
    let policies = load_file(&args.policy)?;
    // Judge every policy before touching anything: bad input changes nothing.
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for p in &policies {
        let name = policy_name(p);
        match validate(&p.spec) {
            Ok(v) => {
                if let Some(other) = seen.insert((v.schema.clone(), v.table.clone()), name.clone())
                {
                    errors.push(Error::Conflict(format!(
                        "policy {name}: table {}.{} is already managed by policy {other}",
                        v.schema, v.table
                    )));
                }
                valid.push((name, v));
            }
            Err(e) => errors.push(prefix(&name, e)),
        }
    }
    let target = Target::from_url(&args.database_url)?;
    if errors.is_empty() {
        let client = target.connect().await?;
        let mut observed = observe(&client, None, false).await?;
        let mut planned = Vec::new();
        for (name, v) in valid {
            let table = observed.take(&v.schema, &v.table);
            match plan_table(&client, table, &v, now).await {
                Ok(plan) => planned.push(Planned {
                    policy_name: name,
                    policy: v,
                    plan,
                }),
                Err(e) => errors.push(prefix(&name, e)),
            }
        }
        if errors.is_empty() {
            drop(client);
            return if apply {
                apply_all(
                    &target,
                    planned,
                    observed.server_version_num,
                    args.connections,
                    now,
                )
                .await
            } else {
                print_plans(&planned, observed.server_version_num, output);
                Ok(())
            };
        }
    }
    for e in &errors[..errors.len() - 1] {
        eprintln!("error: {e}");
    }
    Err(errors
        .pop()
        .unwrap_or_else(|| Error::Input("no policies".into())))
}

/// Keep the variant (and so the exit code) while naming the policy.
fn prefix(policy: &str, e: Error) -> Error {
    match e {
        Error::InvalidPolicy { field, message } => Error::InvalidPolicy {
            field: format!("policy {policy}: {field}"),
            message,
        },
        Error::Mismatch { field, message } => Error::Mismatch {
            field: format!("policy {policy}: {field}"),
            message,
        },
        Error::TableMissing { table } => Error::TableMissing {
            table: format!("{table} (policy {policy})"),
        },
        other => other,
    }
}

fn print_plans(planned: &[Planned], version: i32, output: Output) {
    match output {
        Output::Json => {
            let doc: Vec<_> = planned
                .iter()
                .map(|p| {
                    let concurrent = can_detach_concurrently(version, &p.plan.ctx);
                    json!({
                        "policy": p.policy_name,
                        "table": format!("{}.{}", p.policy.schema, p.policy.table),
                        "actions": p.plan.actions.iter().map(|a| json!({
                            "kind": a.kind(),
                            "partition": a.partition(),
                            "description": a.describe(&p.plan.ctx),
                            "sql": action::statements(a, &p.plan.ctx, concurrent),
                        })).collect::<Vec<_>>(),
                        "findings": p.plan.findings.iter().map(|f| json!({"reason": f.reason, "message": f.message})).collect::<Vec<_>>(),
                        "summary": {
                            "partitions": p.plan.summary.partitions,
                            "oldest": p.plan.summary.oldest,
                            "newest": p.plan.summary.newest,
                            "coveredUntil": p.plan.summary.covered_until,
                            "defaultPartitionRows": p.plan.summary.default_rows,
                        },
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Output::Text => {
            for p in planned {
                let ctx = &p.plan.ctx;
                let n = p.plan.actions.len();
                println!(
                    "{}.{} (policy {}): {}",
                    ctx.schema,
                    ctx.table,
                    p.policy_name,
                    match n {
                        0 => "nothing to do".to_string(),
                        1 => "1 action".to_string(),
                        n => format!("{n} actions"),
                    }
                );
                let concurrent = can_detach_concurrently(version, ctx);
                for a in &p.plan.actions {
                    println!("  + {}", a.describe(ctx));
                    for s in action::statements(a, ctx, concurrent) {
                        println!("      {s};");
                    }
                }
                for f in &p.plan.findings {
                    println!("  ! {}: {}", f.reason, f.message);
                }
            }
        }
    }
}

async fn apply_all(
    target: &Target,
    planned: Vec<Planned>,
    version: i32,
    connections: u16,
    now: chrono::DateTime<Utc>,
) -> Result<()> {
    let mut work: VecDeque<Planned> = VecDeque::new();
    for p in planned {
        let table = format!("{}.{}", p.plan.ctx.schema, p.plan.ctx.table);
        for f in &p.plan.findings {
            println!("{table}: ! {}: {}", f.reason, f.message);
        }
        let n = p.plan.actions.len();
        if n == 0 {
            println!("{table}: nothing to do");
        } else if p.policy.suspend || p.policy.dry_run {
            // The same contract as in a cluster: observe and report, change nothing.
            let why = if p.policy.suspend {
                "suspended"
            } else {
                "dry run"
            };
            println!("{table}: {why}, {n} actions pending (see pgpart plan)");
        } else {
            work.push_back(p);
        }
    }
    let busy = work.len();
    let queue = Arc::new(Mutex::new(work));
    let workers = (connections as usize).min(busy);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let queue = queue.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = target.connect().await?;
            let mut failures = 0usize;
            while let Some(job) = next_job(&queue) {
                match apply_one(&mut client, job, version, now).await {
                    Ok(f) => failures += f,
                    Err(e) => {
                        eprintln!("error: {e}");
                        failures += 1;
                    }
                }
            }
            Ok::<usize, Error>(failures)
        }));
    }
    let mut failures = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(f)) => failures += f,
            Ok(Err(e)) => first_error = Some(e),
            Err(e) => first_error = Some(Error::Database(format!("worker failed: {e}"))),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if failures > 0 {
        return Err(Error::Database(format!(
            "{failures} actions failed; see above"
        )));
    }
    Ok(())
}

/// Take the next table; the queue's lock is released before any await.
fn next_job(queue: &Mutex<VecDeque<Planned>>) -> Option<Planned> {
    queue.lock().ok()?.pop_front()
}

/// One table, under its advisory lock. If another run held the lock, the table is
/// observed and planned again: the other run may already have done the work.
async fn apply_one(
    client: &mut tokio_postgres::Client,
    job: Planned,
    version: i32,
    now: chrono::DateTime<Utc>,
) -> Result<usize> {
    let Planned {
        policy_name,
        policy,
        mut plan,
    } = job;
    execute::lock_table(
        client,
        &plan.ctx,
        policy.lock_timeout.max(std::time::Duration::from_secs(30)),
    )
    .await?;
    let result = async {
        replan_if_stale(client, &mut plan, &policy, now).await?;
        let mut print = |o: &Outcome| match &o.result {
            Ok(()) if o.rows > 0 => println!(
                "{}.{}: {} ({} rows moved)",
                policy.schema, policy.table, o.description, o.rows
            ),
            Ok(()) => println!("{}.{}: {}", policy.schema, policy.table, o.description),
            Err(e) => println!(
                "{}.{}: FAILED {}: {e} (policy {policy_name})",
                policy.schema, policy.table, o.description
            ),
        };
        let outcomes = execute::execute_plan(client, &plan, version, &mut print).await;
        Ok::<usize, Error>(outcomes.iter().filter(|o| o.result.is_err()).count())
    }
    .await;
    execute::unlock_table(client, &plan.ctx).await?;
    result
}
