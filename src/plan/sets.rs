//! List and hash policies: the declared set of partitions, created where missing, with
//! each existing member checked against the policy.

use super::action::Action;
use super::diff::{Finding, finding};
use super::model::{Bound, ObservedPartition, ObservedTable};
use crate::error::{Error, Result};
use crate::policy::validate::{ListItem, MAX_IDENT_BYTES};

/// The list members the policy declares: missing ones created unless another partition holds
/// some of their values; members holding other values reported. Returns the members that
/// match.
pub(super) fn plan_list(
    items: &[ListItem],
    attached: &[&ObservedPartition],
    actions: &mut Vec<Action>,
    findings: &mut Vec<Finding>,
) -> usize {
    let mut count = 0;
    for item in items {
        let values: Vec<Option<String>> = item.values.iter().cloned().map(Some).collect();
        match attached.iter().find(|p| p.name == item.name) {
            Some(p) if p.bound == Bound::List(values.clone()) => count += 1,
            Some(p) => findings.push(finding(
                "ListMismatch",
                format!(
                    "partition {} holds {:?}, but the policy lists {:?}",
                    p.name, p.bound, item.values
                ),
            )),
            None => {
                let clash = attached.iter().find(|p| match &p.bound {
                    Bound::List(vs) => vs.iter().flatten().any(|v| item.values.contains(v)),
                    _ => false,
                });
                match clash {
                    Some(p) => findings.push(finding(
                        "Overlap",
                        format!(
                            "partition {} already holds some of {:?}; pgpart will not create {}",
                            p.name, item.values, item.name
                        ),
                    )),
                    None => actions.push(Action::CreateList {
                        partition: item.name.clone(),
                        values: item.values.clone(),
                    }),
                }
            }
        }
    }
    count
}

/// `modulus` hash partitions: the missing remainders created; a partition of another
/// modulus refuses the policy (a hash table's modulus cannot change in place). Returns the
/// remainders that exist.
pub(super) fn plan_hash(
    modulus: u32,
    table: &ObservedTable,
    attached: &[&ObservedPartition],
    actions: &mut Vec<Action>,
) -> Result<usize> {
    let mut count = 0;
    for p in attached {
        if let Bound::Hash { modulus: m, .. } = p.bound
            && m != modulus
        {
            return Err(Error::mismatch(
                "spec.hash.modulus",
                format!(
                    "partition {} uses modulus {m}, the policy says {modulus}: a hash table's modulus can't change in place",
                    p.name
                ),
            ));
        }
    }
    for remainder in 0..modulus {
        let name = format!("{}_p{remainder}", table.name);
        let exists = attached
            .iter()
            .any(|p| p.bound == Bound::Hash { modulus, remainder });
        if exists {
            count += 1;
        } else if name.len() > MAX_IDENT_BYTES {
            return Err(Error::mismatch(
                "spec.table",
                format!("partition name {name:?} would be over 63 bytes"),
            ));
        } else {
            actions.push(Action::CreateHash {
                partition: name,
                modulus,
                remainder,
            });
        }
    }
    Ok(count)
}
