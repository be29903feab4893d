//! Actions the planner decides on, and the SQL each one runs. The SQL text is built
//! here (pure) so `pgpart plan` prints exactly what `apply` executes.

use std::time::Duration;

use serde::Serialize;

use super::bounds::{display_key_value, render_key_value};
use super::model::{KeyKind, KeyValue};
use crate::db::quote::{ident, literal, qualified};
use crate::policy::RetentionAction;

/// The comment that marks a partition as pgpart's own, for people reading the catalog.
pub const OWNER_MARK: &str = "pgpart: managed partition";
/// The no-op CHECK that marks a partition as pgpart's own: retention only retires these.
/// A person's own `COMMENT ON` replaces the comment, never this constraint.
pub const OWNER_CONSTRAINT: &str = "pgpart_managed";
/// A partition being retired by Drop or MoveToSchema carries this (plus what is left to
/// do) from before its detach until it is gone, so a pass that dies between the detach
/// and the drop/move is finished by the next one.
pub const RETIRING_MARK: &str = "pgpart: retiring partition of ";

/// A detached partition whose retirement the spec stopped asking for (see
/// [`Action::AbandonRetire`]): no longer pgpart's to drop or move.
pub const DETACHED_MARK: &str = "pgpart: detached from ";

/// What a retiring mark says is left to do, naming the parent table it left.
pub fn retiring_mark(table: &str, action: RetentionAction, to_schema: Option<&str>) -> String {
    match (action, to_schema) {
        (RetentionAction::MoveToSchema, Some(s)) => format!("{RETIRING_MARK}{table}: move to {s}"),
        _ => format!("{RETIRING_MARK}{table}: drop"),
    }
}

/// Read a retiring mark left by `table`'s policy: (action, target schema).
pub fn parse_retiring_mark(
    table: &str,
    comment: &str,
) -> Option<(RetentionAction, Option<String>)> {
    let rest = comment.strip_prefix(&format!("{RETIRING_MARK}{table}: "))?;
    if rest == "drop" {
        return Some((RetentionAction::Drop, None));
    }
    let schema = rest.strip_prefix("move to ")?;
    Some((RetentionAction::MoveToSchema, Some(schema.to_string())))
}

/// Name of the CHECK added to a child that is filled before it is attached.
pub const BOUND_CHECK: &str = "pgpart_bound";
/// Validated CHECK on the DEFAULT partition excluding the managed span from the current
/// slot on: with it, ATTACH of a partition in that span need not scan the default
/// (about 1 ms instead of 100+ ms with millions of rows there).
pub const DEFAULT_GUARD: &str = "pgpart_default_guard";
const DEFAULT_GUARD_NEXT: &str = "pgpart_default_guard_next";

/// What every statement about one table needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct TableCtx {
    pub schema: String,
    pub table: String,
    pub key_column: Option<String>,
    pub key_kind: Option<KeyKind>,
    pub default_partition: Option<String>,
    pub lock_timeout: Duration,
}

impl TableCtx {
    pub fn parent(&self) -> String {
        qualified(&self.schema, &self.table)
    }

    pub fn child(&self, name: &str) -> String {
        qualified(&self.schema, name)
    }

    fn kind(&self) -> KeyKind {
        self.key_kind.unwrap_or(KeyKind::Int {
            min: i64::MIN,
            max: i64::MAX,
        })
    }

    pub fn range_bound_sql(&self, from: KeyValue, to: KeyValue) -> String {
        format!(
            "FROM ({}) TO ({})",
            render_key_value(from, self.kind()),
            render_key_value(to, self.kind())
        )
    }

    /// `key >= from AND key < to`, the CHECK that lets ATTACH skip scanning a filled child
    /// and the predicate that selects a slot's rows in the default partition.
    pub fn range_predicate(&self, from: KeyValue, to: KeyValue) -> String {
        let key = ident(self.key_column.as_deref().unwrap_or_default());
        let mut parts = vec![format!("{key} IS NOT NULL")];
        if from != KeyValue::Min {
            parts.push(format!("{key} >= {}", render_key_value(from, self.kind())));
        }
        if to != KeyValue::Max {
            parts.push(format!("{key} < {}", render_key_value(to, self.kind())));
        }
        parts.join(" AND ")
    }

    pub fn show(&self, v: KeyValue) -> String {
        display_key_value(v, self.kind())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeSlot {
    pub name: String,
    #[serde(skip)]
    pub from: KeyValue,
    #[serde(skip)]
    pub to: KeyValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Finish a `DETACH ... CONCURRENTLY` that was interrupted.
    FinishDetach {
        partition: String,
    },
    CreateRange {
        slot: RangeSlot,
    },
    CreateList {
        partition: String,
        values: Vec<String>,
    },
    CreateHash {
        partition: String,
        modulus: u32,
        remainder: u32,
    },
    /// Mark an existing partition that matches a grid slot exactly as pgpart's own.
    Adopt {
        partition: String,
    },
    /// Replace the default partition's guard CHECK with one excluding [from, to).
    GuardDefault {
        from: KeyValue,
        to: KeyValue,
    },
    CreateDefault {
        partition: String,
    },
    /// Create the slot's partition standalone, move its rows out of the default partition
    /// in batches, then attach it.
    Repair {
        slot: RangeSlot,
    },
    Retire {
        partition: String,
        action: RetentionAction,
        to_schema: Option<String>,
    },
    /// Drop or move a partition an earlier pass detached but did not finish retiring.
    FinishRetire {
        partition: String,
        action: RetentionAction,
        to_schema: Option<String>,
    },
    /// Clear the retiring mark of a detached partition whose retirement the spec no
    /// longer asks for: it stays a plain detached table, never dropped on a stale mark.
    AbandonRetire {
        partition: String,
    },
}

impl Action {
    /// Execution order: finish detaches, create (oldest first), repair, default, retire.
    pub fn order(&self) -> (u8, Option<KeyValue>) {
        match self {
            Action::FinishDetach { .. } => (0, None),
            Action::Adopt { .. } => (1, None),
            Action::GuardDefault { .. } => (2, None),
            Action::CreateRange { slot } => (3, Some(slot.from)),
            Action::CreateList { .. } | Action::CreateHash { .. } => (3, None),
            Action::Repair { slot } => (4, Some(slot.from)),
            Action::CreateDefault { .. } => (5, None),
            Action::Retire { .. } | Action::FinishRetire { .. } | Action::AbandonRetire { .. } => {
                (6, None)
            }
        }
    }

    /// A short kind, used in events and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::FinishDetach { .. } => "finish_detach",
            Action::CreateRange { .. } | Action::CreateList { .. } | Action::CreateHash { .. } => {
                "create"
            }
            Action::Adopt { .. } => "adopt",
            Action::GuardDefault { .. } => "guard_default",
            Action::CreateDefault { .. } => "create_default",
            Action::Repair { .. } => "repair",
            Action::Retire {
                action: RetentionAction::Detach,
                ..
            } => "detach",
            Action::Retire {
                action: RetentionAction::Drop,
                ..
            } => "drop",
            Action::Retire {
                action: RetentionAction::MoveToSchema,
                ..
            } => "move_to_schema",
            Action::FinishRetire { .. } => "finish_retire",
            Action::AbandonRetire { .. } => "abandon_retire",
        }
    }

    pub fn partition(&self) -> &str {
        match self {
            Action::CreateRange { slot } | Action::Repair { slot } => &slot.name,
            Action::FinishDetach { partition }
            | Action::CreateList { partition, .. }
            | Action::CreateHash { partition, .. }
            | Action::Adopt { partition }
            | Action::CreateDefault { partition }
            | Action::Retire { partition, .. }
            | Action::FinishRetire { partition, .. }
            | Action::AbandonRetire { partition } => partition,
            Action::GuardDefault { .. } => "",
        }
    }

    /// One line a person reads in `plan`, status and events.
    pub fn describe(&self, ctx: &TableCtx) -> String {
        let parent = format!("{}.{}", ctx.schema, ctx.table);
        match self {
            Action::FinishDetach { partition } => {
                format!("finish detaching {partition} from {parent}")
            }
            Action::CreateRange { slot } => {
                format!(
                    "create {} for [{}, {}) on {parent}",
                    slot.name,
                    ctx.show(slot.from),
                    ctx.show(slot.to)
                )
            }
            Action::CreateList { partition, values } => {
                format!("create {partition} for values {values:?} on {parent}")
            }
            Action::CreateHash {
                partition,
                modulus,
                remainder,
            } => {
                format!(
                    "create {partition} for modulus {modulus} remainder {remainder} on {parent}"
                )
            }
            Action::Adopt { partition } => {
                format!("adopt {partition} (matches the grid) on {parent}")
            }
            Action::GuardDefault { from, to } => format!(
                "guard default partition {} against keys in [{}, {}) so attaching needs no scan of it",
                ctx.default_partition.as_deref().unwrap_or("?"),
                ctx.show(*from),
                ctx.show(*to)
            ),
            Action::CreateDefault { partition } => {
                format!("create default partition {partition} on {parent}")
            }
            Action::Repair { slot } => format!(
                "create {} for [{}, {}) and move its rows out of default partition {}",
                slot.name,
                ctx.show(slot.from),
                ctx.show(slot.to),
                ctx.default_partition.as_deref().unwrap_or("?")
            ),
            Action::Retire {
                partition,
                action,
                to_schema,
            } => match action {
                RetentionAction::Detach => format!("detach {partition} from {parent} (retention)"),
                RetentionAction::Drop => format!("detach and drop {partition} (retention)"),
                RetentionAction::MoveToSchema => {
                    format!(
                        "detach {partition} and move it to schema {} (retention)",
                        to_schema.as_deref().unwrap_or("?")
                    )
                }
            },
            Action::FinishRetire {
                partition,
                action,
                to_schema,
            } => match action {
                RetentionAction::MoveToSchema => format!(
                    "finish retiring {partition}: move it to schema {}",
                    to_schema.as_deref().unwrap_or("?")
                ),
                _ => format!("finish retiring {partition}: drop it"),
            },
            Action::AbandonRetire { partition } => format!(
                "keep {partition} as a detached table: the spec no longer asks to retire it as it was marked"
            ),
        }
    }
}

/// `CREATE TABLE child (LIKE parent ...)`: a standalone table that ATTACH can take with
/// only SHARE UPDATE EXCLUSIVE on the parent. Indexes come with the attach.
pub fn create_like(ctx: &TableCtx, name: &str) -> String {
    format!(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION)",
        ctx.child(name),
        ctx.parent()
    )
}

/// Before a Drop or MoveToSchema retirement detaches a partition, say what is left to do
/// (nothing to mark for a plain Detach).
pub fn mark_retiring(
    ctx: &TableCtx,
    partition: &str,
    action: RetentionAction,
    to_schema: Option<&str>,
) -> Option<String> {
    (action != RetentionAction::Detach).then(|| {
        format!(
            "COMMENT ON TABLE {} IS {}",
            ctx.child(partition),
            literal(&retiring_mark(&ctx.table, action, to_schema))
        )
    })
}

/// Repair's first transaction: the slot's child, standalone, with a CHECK of its bound
/// (so the attach need not scan it once filled), marked as pgpart's.
pub fn repair_create(ctx: &TableCtx, slot: &RangeSlot) -> Vec<String> {
    let mut v = vec![
        create_like(ctx, &slot.name),
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
            ctx.child(&slot.name),
            ident(BOUND_CHECK),
            ctx.range_predicate(slot.from, slot.to)
        ),
    ];
    v.extend(mark_owned(ctx, &slot.name));
    v
}

/// Repair's last statements: attach the filled child, drop its helper CHECK.
pub fn repair_attach(ctx: &TableCtx, slot: &RangeSlot) -> [String; 2] {
    [
        attach(
            ctx,
            &slot.name,
            &format!("FOR VALUES {}", ctx.range_bound_sql(slot.from, slot.to)),
        ),
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            ctx.child(&slot.name),
            ident(BOUND_CHECK)
        ),
    ]
}

/// Mark a partition as pgpart's own: the comment, and the constraint that counts (NOT
/// VALID, so adopting a large partition scans nothing).
pub fn mark_owned(ctx: &TableCtx, name: &str) -> [String; 2] {
    [
        format!(
            "COMMENT ON TABLE {} IS {}",
            ctx.child(name),
            literal(OWNER_MARK)
        ),
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK (true) NOT VALID",
            ctx.child(name),
            ident(OWNER_CONSTRAINT)
        ),
    ]
}

/// A new partition of pgpart's: made standalone, marked, attached with `bound`.
fn create_owned(ctx: &TableCtx, name: &str, bound: &str) -> Vec<String> {
    let mut v = vec![create_like(ctx, name)];
    v.extend(mark_owned(ctx, name));
    v.push(attach(ctx, name, bound));
    v
}

pub fn attach(ctx: &TableCtx, name: &str, bound: &str) -> String {
    format!(
        "ALTER TABLE {} ATTACH PARTITION {} {bound}",
        ctx.parent(),
        ctx.child(name)
    )
}

pub fn list_bound(values: &[String]) -> String {
    let vs: Vec<String> = values.iter().map(|v| literal(v)).collect();
    format!("FOR VALUES IN ({})", vs.join(", "))
}

pub fn detach(ctx: &TableCtx, name: &str, concurrently: bool) -> String {
    format!(
        "ALTER TABLE {} DETACH PARTITION {}{}",
        ctx.parent(),
        ctx.child(name),
        if concurrently { " CONCURRENTLY" } else { "" }
    )
}

/// The statements of one action as `pgpart plan` shows them. Repair's batches are shown once.
pub fn statements(action: &Action, ctx: &TableCtx, concurrent_detach: bool) -> Vec<String> {
    match action {
        Action::FinishDetach { partition } => {
            vec![format!(
                "ALTER TABLE {} DETACH PARTITION {} FINALIZE",
                ctx.parent(),
                ctx.child(partition)
            )]
        }
        Action::CreateRange { slot } => create_owned(
            ctx,
            &slot.name,
            &format!("FOR VALUES {}", ctx.range_bound_sql(slot.from, slot.to)),
        ),
        Action::CreateList { partition, values } => {
            create_owned(ctx, partition, &list_bound(values))
        }
        Action::CreateHash {
            partition,
            modulus,
            remainder,
        } => create_owned(
            ctx,
            partition,
            &format!("FOR VALUES WITH (MODULUS {modulus}, REMAINDER {remainder})"),
        ),
        Action::Adopt { partition } => mark_owned(ctx, partition).to_vec(),
        Action::GuardDefault { from, to } => guard_default(ctx, *from, *to)
            .into_iter()
            .flatten()
            .collect(),
        Action::CreateDefault { partition } => {
            vec![
                create_like(ctx, partition),
                attach(ctx, partition, "DEFAULT"),
            ]
        }
        Action::Repair { slot } => {
            let default = ctx.default_partition.as_deref().unwrap_or_default();
            let mut v = repair_create(ctx, slot);
            v.push(format!(
                "-- in batches, each its own transaction: move rows of [{}, {}) from {} into {}",
                ctx.show(slot.from),
                ctx.show(slot.to),
                ctx.child(default),
                ctx.child(&slot.name)
            ));
            v.extend(repair_attach(ctx, slot));
            v
        }
        Action::Retire {
            partition,
            action,
            to_schema,
        } => {
            let mut v: Vec<String> = mark_retiring(ctx, partition, *action, to_schema.as_deref())
                .into_iter()
                .collect();
            v.push(detach(ctx, partition, concurrent_detach));
            v.extend(finish_retire(ctx, partition, *action, to_schema.as_deref()));
            v
        }
        Action::FinishRetire {
            partition,
            action,
            to_schema,
        } => finish_retire(ctx, partition, *action, to_schema.as_deref()),
        Action::AbandonRetire { partition } => vec![format!(
            "COMMENT ON TABLE {} IS {}",
            ctx.child(partition),
            literal(&format!(
                "{DETACHED_MARK}{}: its retirement was abandoned when the spec changed",
                ctx.table
            ))
        )],
    }
}

/// The guard's three steps, each its own transaction: add the new CHECK unvalidated (brief
/// lock), validate it (SHARE UPDATE EXCLUSIVE: inserts continue during the scan), swap names.
pub fn guard_default(ctx: &TableCtx, from: KeyValue, to: KeyValue) -> [Vec<String>; 3] {
    let default = ctx.child(ctx.default_partition.as_deref().unwrap_or_default());
    let key = ident(ctx.key_column.as_deref().unwrap_or_default());
    let kind = ctx.kind();
    let mut outside = Vec::new();
    if from != KeyValue::Min {
        outside.push(format!("{key} < {}", render_key_value(from, kind)));
    }
    if to != KeyValue::Max {
        outside.push(format!("{key} >= {}", render_key_value(to, kind)));
    }
    let check = if outside.is_empty() {
        "false".to_string()
    } else {
        outside.join(" OR ")
    };
    [
        vec![
            format!(
                "ALTER TABLE {default} DROP CONSTRAINT IF EXISTS {}",
                ident(DEFAULT_GUARD_NEXT)
            ),
            format!(
                "ALTER TABLE {default} ADD CONSTRAINT {} CHECK ({check}) NOT VALID",
                ident(DEFAULT_GUARD_NEXT)
            ),
        ],
        vec![format!(
            "ALTER TABLE {default} VALIDATE CONSTRAINT {}",
            ident(DEFAULT_GUARD_NEXT)
        )],
        vec![
            format!(
                "ALTER TABLE {default} DROP CONSTRAINT IF EXISTS {}",
                ident(DEFAULT_GUARD)
            ),
            format!(
                "ALTER TABLE {default} RENAME CONSTRAINT {} TO {}",
                ident(DEFAULT_GUARD_NEXT),
                ident(DEFAULT_GUARD)
            ),
        ],
    ]
}

/// Undo a guard that could not be validated (the default holds rows in the span).
pub fn drop_guard_next(ctx: &TableCtx) -> String {
    format!(
        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
        ctx.child(ctx.default_partition.as_deref().unwrap_or_default()),
        ident(DEFAULT_GUARD_NEXT)
    )
}

/// Remove the guard altogether: attaches scan the default again, and nothing is refused.
pub fn drop_guard(ctx: &TableCtx) -> String {
    format!(
        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
        ctx.child(ctx.default_partition.as_deref().unwrap_or_default()),
        ident(DEFAULT_GUARD)
    )
}

/// What follows a retiring partition's detach, in one transaction.
pub fn finish_retire(
    ctx: &TableCtx,
    partition: &str,
    action: RetentionAction,
    to_schema: Option<&str>,
) -> Vec<String> {
    match (action, to_schema) {
        (RetentionAction::Detach, _) => Vec::new(),
        (RetentionAction::MoveToSchema, Some(schema)) => vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)),
            format!(
                "ALTER TABLE {} SET SCHEMA {}",
                ctx.child(partition),
                ident(schema)
            ),
            format!(
                "COMMENT ON TABLE {} IS {}",
                qualified(schema, partition),
                literal("pgpart: retired partition")
            ),
        ],
        _ => vec![format!("DROP TABLE {}", ctx.child(partition))],
    }
}
