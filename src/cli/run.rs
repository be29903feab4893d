//! `pgpart plan` and `pgpart apply`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::json;

use super::{Output, RunArgs};
use crate::db::connect::Target;
use crate::db::execute::{Outcome, can_detach_concurrently};
use crate::db::observe::{observe, plan_table, time_keyed};
use crate::engine;
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
        // Only the tables the policies name, in one statement.
        let tables: Vec<(String, String)> = valid
            .iter()
            .map(|(_, v)| (v.schema.clone(), v.table.clone()))
            .collect();
        let time_keyed: Vec<(String, String)> =
            valid.iter().flat_map(|(_, v)| time_keyed(v)).collect();
        let mut observed = observe(&client, Some(&tables), &time_keyed, false).await?;
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
                let first = Observed {
                    server_version_num: observed.server_version_num,
                    db_now: args.now.is_none().then_some(observed.db_now),
                };
                apply_all(&target, planned, &first, args.connections, now, output).await
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

fn summary_json(plan: &Plan) -> serde_json::Value {
    let s = &plan.summary;
    json!({
        "partitions": s.partitions,
        "oldest": s.oldest,
        "newest": s.newest,
        "coveredUntil": s.covered_until,
        "defaultPartitionRows": s.default_rows,
        "holes": s.holes.iter().map(|(f, t)| format!("[{}, {})", plan.ctx.show(*f), plan.ctx.show(*t))).collect::<Vec<_>>(),
    })
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
                        "summary": summary_json(&p.plan),
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
    observed: &Observed,
    connections: u16,
    now: chrono::DateTime<Utc>,
    output: Output,
) -> Result<()> {
    // Tables with nothing to do need no session of their own: no more workers than work.
    let busy = planned
        .iter()
        .filter(|p| !p.plan.actions.is_empty())
        .count();
    let queue = Arc::new(Mutex::new(VecDeque::from(planned)));
    let workers = (connections as usize).min(busy).max(1);
    let documents = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let queue = queue.clone();
        let target = target.clone();
        let observed = *observed;
        let documents = documents.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = target.connect().await?;
            let mut failures = 0usize;
            while let Some(job) = next_job(&queue) {
                match apply_one(&mut client, job, observed, now, output).await {
                    Ok((f, doc)) => {
                        failures += f;
                        if let (Some(doc), Ok(mut docs)) = (doc, documents.lock()) {
                            docs.push(doc);
                        }
                    }
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
    if output == Output::Json {
        let mut docs = documents.lock().map(|d| d.clone()).unwrap_or_default();
        docs.sort_by(|a, b| a["table"].as_str().cmp(&b["table"].as_str()));
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if failures > 0 {
        return Err(Error::Database(format!(
            "{failures} tables did not reach their policy; see above"
        )));
    }
    Ok(())
}

/// What the first observation said about the server, for every table's pass.
#[derive(Clone, Copy)]
struct Observed {
    server_version_num: i32,
    /// `None` when `--now` was given (no clock check).
    db_now: Option<chrono::DateTime<Utc>>,
}

/// Take the next table; the queue's lock is released before any await.
fn next_job(queue: &Mutex<VecDeque<Planned>>) -> Option<Planned> {
    queue.lock().ok()?.pop_front()
}

/// One table's pass through the engine, printed as it goes (text) or returned as one
/// document (json). Counts 1 when the table did not reach its policy (an action failed,
/// or a hole is left), else 0.
async fn apply_one(
    client: &mut tokio_postgres::Client,
    job: Planned,
    observed: Observed,
    now: chrono::DateTime<Utc>,
    output: Output,
) -> Result<(usize, Option<serde_json::Value>)> {
    let text = output == Output::Text;
    let Planned {
        policy_name,
        policy,
        plan,
    } = job;
    let table = format!("{}.{}", policy.schema, policy.table);
    let n = plan.actions.len();
    if text {
        // Findings first, then what is (not) done about the table.
        for f in &plan.findings {
            println!("{table}: ! {}: {}", f.reason, f.message);
        }
        if n == 0 {
            println!("{table}: nothing to do");
        } else if policy.suspend || policy.dry_run {
            // The same contract as in a cluster: observe and report, change nothing.
            let why = if policy.suspend {
                "suspended"
            } else {
                "dry run"
            };
            println!("{table}: {why}, {n} actions pending (see pgpart plan)");
        }
    }
    let mut print = |o: &Outcome| match &o.result {
        _ if !text => {}
        Ok(()) if o.rows > 0 => println!(
            "{table}: {} ({} rows moved to the new default)",
            o.description, o.rows
        ),
        Ok(()) => println!("{table}: {}", o.description),
        Err(e) => println!(
            "{table}: FAILED {}: {e} (policy {policy_name})",
            o.description
        ),
    };
    let start = engine::Start {
        plan,
        server_version_num: observed.server_version_num,
        db_now: observed.db_now,
    };
    let report = engine::pass(client, &policy, start, now, &mut print).await?;
    let failed = usize::from(report.error.is_some());
    if !text {
        let doc = json!({
            "policy": policy_name,
            "table": table,
            "actions": report.outcomes.iter().map(|o| json!({
                "kind": o.action.kind(),
                "partition": o.action.partition(),
                "description": o.description,
                "ok": o.result.is_ok(),
                "error": o.result.as_ref().err().map(|e| e.to_string()),
                "rowsMoved": o.rows,
            })).collect::<Vec<_>>(),
            "anotherRunDidIt": report.replanned && report.outcomes.is_empty(),
            "findings": report.plan.findings.iter().map(|f| json!({"reason": f.reason, "message": f.message})).collect::<Vec<_>>(),
            "pending": report.pending(),
            "summary": summary_json(&report.plan),
            "error": report.error.as_ref().map(|e| json!({"reason": e.reason(), "message": e.to_string()})),
        });
        return Ok((failed, Some(doc)));
    }
    if report.replanned && report.outcomes.is_empty() {
        println!("{table}: another pgpart run changed it meanwhile; nothing left to do");
    }
    // A failed action was printed as it happened; a hole is printed here.
    if let Some(e) = &report.error
        && report.outcomes.iter().all(|o| o.result.is_ok())
    {
        println!("{table}: FAILED {e} (policy {policy_name})");
    }
    Ok((failed, None))
}
