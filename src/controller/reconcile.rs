//! One reconcile pass: resolve → observe → plan → execute → report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use super::secret::target_from_secret;
use super::status::{DEFAULT_EMPTY, READY, RECONCILING, STALLED, cond, conditions, truncate};
use crate::db::execute::Outcome;
use crate::db::observe::plan_table;
use crate::db::pool;
use crate::db::targets::Pools;
use crate::engine;
use crate::error::Error;
use crate::plan::{Action, Plan};
use crate::policy::validate::DEFAULT_EVERY;
use crate::policy::{PartitionPolicy, PartitionPolicyStatus, ValidPolicy, validate};
use crate::telemetry::{ActionLabels, ErrorLabels, Metrics, PolicyLabels, TargetLabels};

pub struct Ctx {
    pub client: Client,
    pub recorder: Recorder,
    pub pools: Pools,
    pub pool_size: usize,
    pub metrics: Arc<Metrics>,
    /// "target schema.table" → uid of the policy that manages it (see [`claim`]).
    pub claims: Mutex<HashMap<String, String>>,
    /// The watched policies (one cache per watched scope), for the claims of others.
    pub policies: Vec<Store<PartitionPolicy>>,
    /// Consecutive transient failures per policy uid, for back-off.
    pub failures: Mutex<HashMap<String, u32>>,
    /// The metric label sets each policy (by uid) has written, so that a deleted policy
    /// leaves no series behind.
    pub series: Mutex<HashMap<String, PolicySeries>>,
    /// pgpart's clock: the wall clock, or `--now` advancing from the start.
    pub clock: crate::clock::Clock,
    /// Secrets read in the last [`SECRET_REUSE`], by (namespace, name): the policies due
    /// together on one database read its Secret once, not once each.
    pub secrets: Mutex<HashMap<(String, String), SecretRead>>,
}

/// A Secret and when it was read.
pub type SecretRead = (Instant, Arc<Secret>);

#[derive(Default)]
pub struct PolicySeries {
    labels: Option<PolicyLabels>,
    errors: std::collections::HashSet<ErrorLabels>,
}

impl Ctx {
    /// Forgets a policy that is gone: its claims, back-off and metric series.
    pub fn forget(&self, uid: &str) {
        self.claims
            .lock()
            .expect("claims lock")
            .retain(|_, holder| holder != uid);
        self.failures.lock().expect("failures lock").remove(uid);
        if let Some(series) = self.series.lock().expect("series lock").remove(uid) {
            if let Some(labels) = series.labels {
                self.metrics.remove_policy(&labels);
            }
            for e in series.errors {
                self.metrics.reconcile_errors.remove(&e);
            }
        }
    }

    /// A watched Secret changed: drop its cached read and name the policies in `policies`
    /// that use it, so each runs a pass with the new Secret at once.
    pub fn secret_changed(
        &self,
        policies: &Store<PartitionPolicy>,
        ns: &str,
        name: &str,
    ) -> Vec<ObjectRef<PartitionPolicy>> {
        self.secrets
            .lock()
            .expect("secrets lock")
            .remove(&(ns.to_owned(), name.to_owned()));
        let users: Vec<_> = policies
            .state()
            .iter()
            .filter(|p| {
                p.namespace().as_deref() == Some(ns)
                    && p.spec
                        .database
                        .as_ref()
                        .is_some_and(|d| d.secret_ref.name == name)
            })
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect();
        if !users.is_empty() {
            tracing::info!(
                "Secret {ns}/{name} changed: a pass now for the {} policies that use it",
                users.len()
            );
        }
        users
    }

    /// Records the label sets a pass of policy `uid` wrote (spec.table is immutable, so
    /// its policy labels never change).
    fn record_series(&self, uid: &str, labels: &PolicyLabels, error: Option<ErrorLabels>) {
        let mut all = self.series.lock().expect("series lock");
        let mine = all.entry(uid.to_owned()).or_default();
        mine.labels.get_or_insert_with(|| labels.clone());
        mine.errors.extend(error);
    }
}

/// How soon to look again when partitions remain to be made (a bounded pass left work for
/// the next). Retirements left over wait for `schedule.every`: maxPerPass bounds them per
/// period, so a clock that jumped ahead does not retire everything within seconds.
const MORE_WORK: Duration = Duration::from_secs(2);
/// Actions of one kind named per event (a note stays well under its 1000 characters).
const ACTIONS_PER_EVENT: usize = 5;
/// At most this many pending actions are listed in status (an object must stay small).
const MAX_PENDING_IN_STATUS: usize = 20;
/// Longest back-off after a transient error: without `--secret-watch`, a fixed Secret is
/// noticed at the next retry.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How long a Secret read is reused by other passes (a fixed or rotated Secret is seen
/// after at most this).
const SECRET_REUSE: Duration = Duration::from_secs(10);
/// How soon to look again when only a person can fix it.
const STALLED_RECHECK: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(String);

pub fn error_policy(_: Arc<PartitionPolicy>, e: &ReconcileError, _: Arc<Ctx>) -> Requeue {
    tracing::warn!("reconcile failed: {e}");
    Requeue::requeue(Duration::from_secs(10))
}

/// What a pass found and did, for status, events and metrics.
#[derive(Default)]
struct PassReport {
    plan: Option<Plan>,
    outcomes: Vec<Outcome>,
    /// Actions still to do after this pass.
    pending: Vec<String>,
    error: Option<Error>,
    /// The table this policy holds (see [`claim`]), once this pass claimed it.
    claim: Option<String>,
}

pub async fn reconcile(
    policy: Arc<PartitionPolicy>,
    ctx: Arc<Ctx>,
) -> Result<Requeue, ReconcileError> {
    // Every log line of the pass carries namespace, policy and table.
    let span = tracing::info_span!(
        "reconcile",
        namespace = %policy.namespace().unwrap_or_default(),
        policy = %policy.name_any(),
        table = %policy.spec.table
    );
    reconcile_pass(policy, ctx).instrument(span).await
}

async fn reconcile_pass(
    policy: Arc<PartitionPolicy>,
    ctx: Arc<Ctx>,
) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let labels = PolicyLabels {
        namespace: ns.clone(),
        policy: name.clone(),
        table: policy.spec.table.clone(),
    };
    let uid = policy.uid().unwrap_or_default();
    ctx.record_series(&uid, &labels, None);
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    // One instant for the whole pass: the plan, the status and the metrics agree on it.
    let now = ctx.clock.now();

    let (report, every) = match validate(&policy.spec) {
        Err(e) => (
            PassReport {
                error: Some(e),
                ..Default::default()
            },
            DEFAULT_EVERY,
        ),
        Ok(valid) => (pass(&policy, &valid, &ctx, &ns, now).await, valid.every),
    };

    // Events for every change and every warning; the Recorder de-duplicates repeats.
    let oref = policy.object_ref(&());
    let mut events = Vec::new();
    if let Some(plan) = &report.plan {
        // What was done, a few actions of a kind per event (each API write costs the
        // server more than the DDL did); every failure on its own.
        let mut done: Vec<(&'static str, String)> = Vec::new();
        for o in &report.outcomes {
            let result = if o.result.is_ok() { "ok" } else { "error" };
            ctx.metrics
                .ddl_actions
                .get_or_create(&ActionLabels {
                    kind: o.action.kind().into(),
                    result: result.into(),
                })
                .inc();
            match &o.result {
                Ok(()) if o.rows > 0 => done.push((
                    event_reason(o.action.kind()),
                    format!(
                        "{} ({} rows moved to the new default)",
                        o.description, o.rows
                    ),
                )),
                Ok(()) => done.push((event_reason(o.action.kind()), o.description.clone())),
                Err(e) => events.push(event(
                    EventType::Warning,
                    e.reason(),
                    format!("{}: {e}", o.description),
                )),
            }
        }
        done.sort_by_key(|(reason, _)| *reason);
        for same in done.chunk_by(|a, b| a.0 == b.0) {
            for few in same.chunks(ACTIONS_PER_EVENT) {
                let notes: Vec<&str> = few.iter().map(|(_, n)| n.as_str()).collect();
                events.push(event(EventType::Normal, few[0].0, notes.join("; ")));
            }
        }
        for f in &plan.findings {
            events.push(event(EventType::Warning, f.reason, f.message.clone()));
        }
    }
    if let Some(e) = &report.error {
        let error_labels = ErrorLabels {
            namespace: ns.clone(),
            policy: name.clone(),
            reason: e.reason().into(),
        };
        ctx.metrics
            .reconcile_errors
            .get_or_create(&error_labels)
            .inc();
        ctx.record_series(&uid, &labels, Some(error_labels));
        events.push(event(EventType::Warning, e.reason(), e.to_string()));
    }
    for ev in &events {
        if let Err(e) = ctx.recorder.publish(ev, &oref).await {
            tracing::warn!("could not record event: {e}");
        }
    }

    let status = build_status(&policy, &report, now);
    if !is_repeat(policy.status.as_ref(), &status, now, every) {
        let api: Api<PartitionPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({ "apiVersion": "pgpart.io/v1alpha1", "kind": "PartitionPolicy", "status": status });
        api.patch_status(
            &name,
            &PatchParams::apply("pgpart").force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| ReconcileError(format!("writing status: {e}")))?;
    }

    if let Some(plan) = &report.plan {
        let s = &plan.summary;
        ctx.metrics
            .partitions
            .get_or_create(&labels)
            .set(s.partitions as i64);
        ctx.metrics
            .default_rows
            .get_or_create(&labels)
            .set(s.default_rows);
        if let Some(secs) = s.covered_seconds_ahead {
            ctx.metrics
                .coverage_seconds
                .get_or_create(&labels)
                .set(secs);
            // Absolute, so an alert on it minus time() still fires while passes fail.
            ctx.metrics
                .covered_until
                .get_or_create(&labels)
                .set(now.timestamp().saturating_add(secs));
        }
    }
    for (target, in_use) in ctx.pools.snapshot() {
        ctx.metrics
            .pool_in_use
            .get_or_create(&TargetLabels { target })
            .set(in_use as i64);
    }
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());

    let requeue = match &report.error {
        Some(e) if e.is_stalled() => every.min(STALLED_RECHECK),
        Some(_) => {
            let mut failures = ctx.failures.lock().expect("failures lock");
            let n = failures.entry(uid).or_insert(0);
            *n = (*n + 1).min(6);
            Duration::from_secs(5 << *n).min(every).min(MAX_RETRY)
        }
        None => {
            ctx.failures.lock().expect("failures lock").remove(&uid);
            let held = policy.spec.suspend || policy.spec.dry_run;
            let making = report.plan.as_ref().is_some_and(|p| {
                p.actions.iter().any(|a| {
                    !matches!(
                        a,
                        Action::Retire { .. }
                            | Action::FinishRetire { .. }
                            | Action::AbandonRetire { .. }
                    )
                })
            });
            if making && !held { MORE_WORK } else { every }
        }
    };
    Ok(Requeue::requeue(jitter(requeue, &policy.metadata.uid)))
}

/// Up to a tenth later, differently per policy and pass: policies started together must
/// not all come due in the same instant every period.
fn jitter(d: Duration, uid: &Option<String>) -> Duration {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    (uid, Instant::now()).hash(&mut h);
    let tenth = d.as_millis() as u64 / 10;
    d + Duration::from_millis(h.finish() % (tenth + 1))
}

/// A status that says what the written one says, written less than half a period ago:
/// not written again. Status writes are most of a quiet pass's cost to the API server
/// (1000 policies restarting would write 1000 equal statuses); `lastPassTime` still moves
/// at least once per `schedule.every`.
fn is_repeat(
    previous: Option<&PartitionPolicyStatus>,
    status: &PartitionPolicyStatus,
    now: DateTime<Utc>,
    every: Duration,
) -> bool {
    let Some(previous) = previous else {
        return false;
    };
    let written = previous
        .last_pass_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let recent = written.is_some_and(|t| {
        let age = now.signed_duration_since(t);
        age >= chrono::TimeDelta::zero() && age.to_std().is_ok_and(|a| a < every / 2)
    });
    let same = PartitionPolicyStatus {
        last_pass_time: previous.last_pass_time.clone(),
        ..status.clone()
    } == *previous;
    recent && same
}

/// An event whose `action` carries a digest of its note: the Recorder folds repeats of the
/// same message into one series, while different messages (another partition created)
/// stay separate events instead of becoming a count on the first.
fn event(type_: EventType, reason: &str, note: String) -> Event {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    note.hash(&mut h);
    Event {
        type_,
        reason: reason.into(),
        action: format!("Reconcile-{:016x}", h.finish()),
        note: Some(truncate(&note, 1000)),
        secondary: None,
    }
}

fn event_reason(kind: &str) -> &'static str {
    match kind {
        "create" => "PartitionCreated",
        "create_default" => "DefaultPartitionCreated",
        "repair" => "DefaultPartitionRepaired",
        "adopt" => "PartitionAdopted",
        "drop_default_guard" => "DefaultGuardRemoved",
        "restore_orphan" => "HiddenRowsRestored",
        "finish_detach" => "DetachFinished",
        "detach" | "drop" | "move_to_schema" => "PartitionRetired",
        "archive" => "PartitionArchived",
        "abandon_retire" => "RetirementAbandoned",
        _ => "Changed",
    }
}

async fn pass(
    policy: &PartitionPolicy,
    valid: &ValidPolicy,
    ctx: &Ctx,
    ns: &str,
    now: DateTime<Utc>,
) -> PassReport {
    match pass_inner(policy, valid, ctx, ns, now).await {
        Ok(r) => r,
        Err(e) => PassReport {
            error: Some(e),
            ..Default::default()
        },
    }
}

async fn pass_inner(
    policy: &PartitionPolicy,
    valid: &ValidPolicy,
    ctx: &Ctx,
    ns: &str,
    now: DateTime<Utc>,
) -> Result<PassReport, Error> {
    let db = policy.spec.database.as_ref().ok_or_else(|| {
        Error::invalid(
            "spec.database.secretRef",
            "required: name a Secret in this namespace holding the connection",
        )
    })?;
    if let Some(other) = db.secret_ref.namespace.as_deref().filter(|n| *n != ns) {
        return Err(Error::invalid(
            "spec.database.secretRef.namespace",
            format!(
                "{other:?} is another namespace; a policy may only use Secrets in its own namespace ({ns})"
            ),
        ));
    }
    let secret = read_secret(ctx, ns, &db.secret_ref.name).await?;
    let (target, key) = target_from_secret(&secret)?;

    let description = target.describe();
    let (pool, observer) = ctx.pools.get_with_observer(key, &target, ctx.pool_size);
    // The shared observation first: it takes a session of the pool itself.
    let time_keyed = !crate::db::observe::time_keyed(valid).is_empty();
    let seen = observer
        .observe(&pool, &valid.schema, &valid.table, time_keyed)
        .await?;
    let mut conn = pool::get(&pool).await?;
    let first = plan_table(&conn, seen.table, valid, now).await?;
    // Claim the table only once the policy plans cleanly: a broken policy must not make
    // a good one on the same table report Conflict instead of its own error.
    let claim = Some(claim(ctx, policy, &description, valid).await?);
    let start = engine::Start {
        plan: first,
        server_version_num: seen.server_version_num,
        db_now: ctx.clock.is_wall().then_some(seen.db_now),
    };
    let report = engine::pass(&mut conn, valid, start, now, &mut |o| {
        tracing::info!(
            action = o.action.kind(),
            ok = o.result.is_ok(),
            "{}",
            o.description
        );
    })
    .await?;
    Ok(PassReport {
        pending: report.pending(),
        plan: Some(report.plan),
        outcomes: report.outcomes,
        error: report.error,
        claim,
    })
}

/// The policy's Secret, read again only when no pass read it in the last [`SECRET_REUSE`].
async fn read_secret(ctx: &Ctx, ns: &str, secret_name: &str) -> Result<Arc<Secret>, Error> {
    let key = (ns.to_owned(), secret_name.to_owned());
    if let Some((read, s)) = ctx.secrets.lock().expect("secrets lock").get(&key)
        && read.elapsed() < SECRET_REUSE
    {
        return Ok(s.clone());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = match secrets.get_opt(secret_name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Error::invalid(
                "spec.database.secretRef.name",
                format!("Secret {ns}/{secret_name} not found: create it or fix the name"),
            ));
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(Error::PermissionDenied(format!(
                "pgpart may not read Secret {ns}/{secret_name}"
            )));
        }
        Err(e) => return Err(Error::KubeApi(e.to_string())),
    };
    let secret = Arc::new(secret);
    let mut cache = ctx.secrets.lock().expect("secrets lock");
    cache.retain(|_, (read, _)| read.elapsed() < SECRET_REUSE);
    cache.insert(key, (Instant::now(), secret.clone()));
    Ok(secret)
}

/// Two policies on one table: the one that holds it keeps it, the other is Stalled
/// (Conflict), whatever their names or creation times. A hold lives in this process
/// (`ctx.claims`, so two new policies reconciled at once cannot both win) and in the
/// holder's `status.claim`, so it survives a restart or a change of leader.
async fn claim(
    ctx: &Ctx,
    policy: &PartitionPolicy,
    target: &str,
    valid: &ValidPolicy,
) -> Result<String, Error> {
    let table = format!("{}.{}", valid.schema, valid.table);
    let claim = format!("{target} {table}");
    let me = policy.uid().unwrap_or_default();
    for store in &ctx.policies {
        // Every policy's status is known before any claim is judged.
        store
            .wait_until_ready()
            .await
            .map_err(|e| Error::KubeApi(format!("policy cache: {e}")))?;
    }
    // These run over every cached policy: the cheap comparison first, and no clones.
    let holds = |p: &PartitionPolicy| {
        p.spec.table == policy.spec.table && p.metadata.uid.as_deref() != Some(me.as_str())
    };
    let mut claims = ctx.claims.lock().expect("claims lock");
    if claims.get(&claim) == Some(&me) {
        // Granted by this process, which grants a table to no other while it is held.
        return Ok(claim);
    }
    let live = |uid: &str| {
        ctx.policies
            .iter()
            .find_map(|s| s.find(|p| holds(p) && p.metadata.uid.as_deref() == Some(uid)))
    };
    let holder = claims
        .get(&claim)
        .filter(|uid| **uid != me)
        .and_then(|uid| live(uid))
        .or_else(|| {
            ctx.policies.iter().find_map(|s| {
                s.find(|p| {
                    holds(p) && p.status.as_ref().and_then(|st| st.claim.as_deref()) == Some(&claim)
                })
            })
        });
    if let Some(h) = holder {
        return Err(Error::Conflict(format!(
            "table {table} is already managed by PartitionPolicy {}/{}; delete one of the two policies",
            h.namespace().unwrap_or_default(),
            h.name_any()
        )));
    }
    claims.insert(claim.clone(), me);
    Ok(claim)
}

/// The first `max` items, and a last one that counts the rest.
fn bounded(items: &[String], max: usize) -> Vec<String> {
    let mut out: Vec<String> = items.iter().take(max).cloned().collect();
    if items.len() > max {
        out.push(format!("… and {} more", items.len() - max));
    }
    out
}

fn build_status(
    policy: &PartitionPolicy,
    report: &PassReport,
    now: DateTime<Utc>,
) -> PartitionPolicyStatus {
    // Milliseconds: two passes in one second stay apart.
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let summary = report
        .plan
        .as_ref()
        .map(|p| p.summary.clone())
        .unwrap_or_default();
    let blocked = report
        .plan
        .as_ref()
        .and_then(|p| {
            p.findings
                .iter()
                .find(|f| f.reason == "BlockedByDefaultRows")
        })
        .map(|f| f.message.clone());
    let mut conds = Vec::new();
    match (&report.error, blocked) {
        // Rows in the default block a partition (and may leave a hole): a person must act.
        (None | Some(Error::Hole(_)), Some(msg)) => {
            conds.push(cond(READY, false, "RowsInDefault", msg.clone()));
            conds.push(cond(
                RECONCILING,
                false,
                "RowsInDefault",
                "waiting for a person: rows in the default partition",
            ));
            conds.push(cond(STALLED, true, "RowsInDefault", msg));
        }
        (Some(e), _) if e.is_stalled() => {
            conds.push(cond(READY, false, e.reason(), e.to_string()));
            conds.push(cond(
                RECONCILING,
                false,
                e.reason(),
                "waiting for a person to fix the cause",
            ));
            conds.push(cond(STALLED, true, e.reason(), e.to_string()));
        }
        (Some(e), _) => {
            conds.push(cond(READY, false, e.reason(), e.to_string()));
            conds.push(cond(
                RECONCILING,
                true,
                "RetryingAfterError",
                format!("will retry: {e}"),
            ));
            conds.push(cond(
                STALLED,
                false,
                "Retrying",
                "the cause may clear by itself; retrying with back-off",
            ));
        }
        (None, None) if !report.pending.is_empty() => {
            let (reason, why) = if policy.spec.suspend {
                ("Suspended", "suspended: observing only")
            } else if policy.spec.dry_run {
                ("DryRun", "dry run: nothing is changed")
            } else {
                ("Progressing", "more to do in the next pass")
            };
            let msg = format!("{} actions pending ({why})", report.pending.len());
            conds.push(cond(READY, false, reason, msg.clone()));
            // kstatus: a suspended or dry-run policy is not progressing by itself.
            conds.push(cond(RECONCILING, reason == "Progressing", reason, msg));
            conds.push(cond(STALLED, false, reason, why));
        }
        (None, None) => {
            let msg = match &summary.covered_until {
                Some(u) => format!("{} partitions, covered until {u}", summary.partitions),
                None => format!("{} partitions", summary.partitions),
            };
            conds.push(cond(READY, true, "Reconciled", msg));
            conds.push(cond(RECONCILING, false, "Reconciled", "up to date"));
            conds.push(cond(STALLED, false, "Reconciled", "up to date"));
        }
    }
    if report.plan.is_some() {
        let rows = summary.default_rows;
        conds.push(if rows > 0 {
            cond(
                DEFAULT_EMPTY,
                false,
                "RowsInDefault",
                format!("{rows} rows in the default partition"),
            )
        } else {
            cond(
                DEFAULT_EMPTY,
                true,
                "Empty",
                "no rows in the default partition (or no default partition)",
            )
        });
    }
    let touched_db = report.plan.is_some();
    PartitionPolicyStatus {
        observed_generation: generation,
        conditions: conditions(&previous.conditions, conds, generation),
        partitions: if touched_db {
            Some(summary.partitions as i64)
        } else {
            previous.partitions
        },
        oldest: if touched_db {
            summary.oldest
        } else {
            previous.oldest
        },
        newest: if touched_db {
            summary.newest
        } else {
            previous.newest
        },
        covered_until: if touched_db {
            summary.covered_until
        } else {
            previous.covered_until
        },
        default_partition_rows: if touched_db {
            Some(summary.default_rows)
        } else {
            previous.default_partition_rows
        },
        last_maintenance_time: if report.outcomes.iter().any(|o| o.result.is_ok()) {
            Some(stamp.clone())
        } else {
            previous.last_maintenance_time
        },
        pending_actions: bounded(&report.pending, MAX_PENDING_IN_STATUS),
        last_pass_time: Some(stamp),
        // A policy refused for a conflict holds nothing; a pass that failed before it
        // could claim keeps what it held.
        claim: match &report.error {
            Some(Error::Conflict(_)) => None,
            _ => report.claim.clone().or(previous.claim),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{bounded, is_repeat};
    use crate::policy::PartitionPolicyStatus;
    use chrono::DateTime;
    use std::time::Duration;

    #[test]
    fn an_equal_status_is_written_again_only_after_half_a_period() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        let written = PartitionPolicyStatus {
            partitions: Some(4),
            last_pass_time: Some("2026-12-01T10:00:00.000Z".into()),
            ..Default::default()
        };
        let again = |partitions| PartitionPolicyStatus {
            partitions: Some(partitions),
            last_pass_time: Some("2026-12-01T10:20:00.000Z".into()),
            ..Default::default()
        };
        let hour = Duration::from_secs(3600);
        let now = at("2026-12-01T10:20:00Z");
        assert!(is_repeat(Some(&written), &again(4), now, hour));
        // Anything else changed, half a period gone, the clock gone back, nothing written yet.
        assert!(!is_repeat(Some(&written), &again(5), now, hour));
        assert!(!is_repeat(
            Some(&written),
            &again(4),
            at("2026-12-01T10:30:00Z"),
            hour
        ));
        assert!(!is_repeat(
            Some(&written),
            &again(4),
            at("2026-12-01T09:59:00Z"),
            hour
        ));
        assert!(!is_repeat(None, &again(4), now, hour));
    }

    #[test]
    fn pending_actions_in_status_stay_few() {
        let items: Vec<String> = (0..500).map(|i| format!("create p{i}")).collect();
        let shown = bounded(&items, 20);
        assert_eq!(shown.len(), 21);
        assert_eq!(shown[19], "create p19");
        assert_eq!(shown[20], "… and 480 more");
        assert_eq!(bounded(&items[..3], 20), items[..3]);
    }
}
