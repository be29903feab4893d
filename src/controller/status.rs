//! Conditions as Flux's kstatus reads them: Ready, Reconciling, Stalled (abnormal-true),
//! each with observedGeneration; lastTransitionTime moves only when the status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const DEFAULT_EMPTY: &str = "DefaultPartitionEmpty";

pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

pub fn cond(
    type_: &'static str,
    status: bool,
    reason: impl Into<String>,
    message: impl Into<String>,
) -> Cond {
    Cond {
        type_,
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

/// Build the new condition list, keeping the transition time of any condition whose
/// status did not change.
pub fn conditions(
    previous: &[Condition],
    new: Vec<Cond>,
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = Time(Timestamp::now());
    new.into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" }.to_string();
            let last = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.to_string(),
                status,
                reason: c.reason,
                message: truncate(&c.message, 1000),
                observed_generation: generation,
                last_transition_time: last,
            }
        })
        .collect()
}

/// Messages stay short and specific; the API caps them at 32 KiB, people at less.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
