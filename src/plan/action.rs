//! Actions the planner decides on, and the SQL each one runs. The SQL text is built
//! here (pure) so `pgpart plan` prints exactly what `apply` executes.

use std::time::Duration;

use serde::Serialize;

use super::bounds::{display_key_value, render_key_value};
use super::model::{KeyKind, KeyValue};
use crate::plan::quote::{ident, literal, qualified};
use crate::policy::{ArchiveSpec, RetentionAction};

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

/// What a retiring mark says is left to do, naming the parent table it left. An archive's
/// mark also keeps the partition's bound (`bound`, read before the detach clears it), which
/// the archive's manifest records for `pgpart restore --attach`.
pub fn retiring_mark(
    table: &str,
    action: RetentionAction,
    target: Option<&str>,
    bound: Option<&str>,
) -> String {
    match (action, target) {
        (RetentionAction::MoveToSchema, Some(s)) => format!("{RETIRING_MARK}{table}: move to {s}"),
        (RetentionAction::Archive, Some(url)) => format!(
            "{RETIRING_MARK}{table}: archive to {url}; {}",
            bound.unwrap_or("<its bound>")
        ),
        _ => format!("{RETIRING_MARK}{table}: drop"),
    }
}

/// Read a retiring mark left by `table`'s policy: (action, target schema or archive URL).
pub fn parse_retiring_mark(
    table: &str,
    comment: &str,
) -> Option<(RetentionAction, Option<String>)> {
    let rest = comment.strip_prefix(&format!("{RETIRING_MARK}{table}: "))?;
    if rest == "drop" {
        return Some((RetentionAction::Drop, None));
    }
    if let Some(archive) = rest.strip_prefix("archive to ") {
        let (url, _bound) = archive.split_once("; ")?;
        return Some((RetentionAction::Archive, Some(url.to_string())));
    }
    let schema = rest.strip_prefix("move to ")?;
    Some((RetentionAction::MoveToSchema, Some(schema.to_string())))
}

/// The partition bound an archive's retiring mark keeps (see [`retiring_mark`]).
pub fn retiring_bound<'a>(table: &str, comment: &'a str) -> Option<&'a str> {
    let rest = comment.strip_prefix(RETIRING_MARK)?.strip_prefix(table)?;
    let (_url, bound) = rest.strip_prefix(": archive to ")?.split_once("; ")?;
    bound.starts_with("FOR VALUES ").then_some(bound)
}

/// Left by earlier versions of pgpart on a standalone child it was filling during a repair (a
/// killed run left the child, and the rows in it, hidden): found and undone now.
pub const BOUND_CHECK: &str = "pgpart_bound";
/// Left by earlier versions of pgpart on the DEFAULT partition: a CHECK that refused rows for slots
/// not yet attached. Never added any more; removed wherever found.
pub const DEFAULT_GUARDS: [&str; 2] = ["pgpart_default_guard", "pgpart_default_guard_next"];

/// What every statement about one table needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct TableCtx {
    pub schema: String,
    pub table: String,
    pub key_column: Option<String>,
    pub key_kind: Option<KeyKind>,
    pub default_partition: Option<String>,
    pub lock_timeout: Duration,
    /// Where an Archive retirement writes (spec.retention.archive).
    pub archive: Option<ArchiveSpec>,
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
    /// Remove the CHECKs an older pgpart left on the default partition: they refuse rows.
    DropDefaultGuard,
    /// Put the rows of a standalone child an older pgpart's repair was filling when it was
    /// killed back into the table (they are hidden until then), and drop the child.
    RestoreOrphan {
        table: String,
    },
    CreateDefault {
        partition: String,
    },
    /// Give the default partition's rows in `slot` (one or more grid slots of one gap
    /// between partitions) a partition by making the default itself that partition, with a
    /// new default beside it, in one short transaction: no row is copied, hidden or
    /// changed, so every reader sees it and every UPDATE finds it. The few rows outside
    /// `slot` (other gaps, NULL keys, keys retention has passed) move to the new default
    /// in the same transaction.
    Repair {
        slot: RangeSlot,
    },
    Retire {
        partition: String,
        action: RetentionAction,
        target: Option<String>,
    },
    /// Drop or move a partition an earlier pass detached but did not finish retiring.
    FinishRetire {
        partition: String,
        action: RetentionAction,
        target: Option<String>,
    },
    /// Clear the retiring mark of a detached partition whose retirement the spec no
    /// longer asks for: it stays a plain detached table, never dropped on a stale mark.
    AbandonRetire {
        partition: String,
    },
}

impl Action {
    /// Execution order: undo what a crash left, repair (so the creates after it attach
    /// beside an empty default), create (oldest first), default, retire.
    pub fn order(&self) -> (u8, Option<KeyValue>) {
        match self {
            Action::DropDefaultGuard | Action::FinishDetach { .. } => (0, None),
            Action::RestoreOrphan { .. } | Action::Adopt { .. } => (1, None),
            // Planned largest first: keep that order.
            Action::Repair { .. } => (2, None),
            Action::CreateRange { slot } => (3, Some(slot.from)),
            Action::CreateList { .. } | Action::CreateHash { .. } => (3, None),
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
            Action::DropDefaultGuard => "drop_default_guard",
            Action::RestoreOrphan { .. } => "restore_orphan",
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
            Action::Retire {
                action: RetentionAction::Archive,
                ..
            } => "archive",
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
            Action::RestoreOrphan { table } => table,
            Action::DropDefaultGuard => "",
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
            Action::DropDefaultGuard => format!(
                "remove the guard CHECK an older pgpart left on default partition {}: it refuses rows",
                ctx.default_partition.as_deref().unwrap_or("?")
            ),
            Action::RestoreOrphan { table } => format!(
                "put the rows of {table} (left standalone by a killed repair of an older pgpart) back into {parent}, then drop it"
            ),
            Action::CreateDefault { partition } => {
                format!("create default partition {partition} on {parent}")
            }
            Action::Repair { slot } => format!(
                "make default partition {} the partition {} for [{}, {}), where its rows are, with a new default beside it",
                ctx.default_partition.as_deref().unwrap_or("?"),
                slot.name,
                ctx.show(slot.from),
                ctx.show(slot.to)
            ),
            Action::Retire {
                partition,
                action,
                target,
            } => match action {
                RetentionAction::Detach => format!("detach {partition} from {parent} (retention)"),
                RetentionAction::Drop => format!("detach and drop {partition} (retention)"),
                RetentionAction::MoveToSchema => {
                    format!(
                        "detach {partition} and move it to schema {} (retention)",
                        target.as_deref().unwrap_or("?")
                    )
                }
                RetentionAction::Archive => format!(
                    "detach {partition}, archive it to {}, verify, and drop it (retention)",
                    target.as_deref().unwrap_or("?")
                ),
            },
            Action::FinishRetire {
                partition,
                action,
                target,
            } => match action {
                RetentionAction::MoveToSchema => format!(
                    "finish retiring {partition}: move it to schema {}",
                    target.as_deref().unwrap_or("?")
                ),
                RetentionAction::Archive => format!(
                    "finish retiring {partition}: archive it to {}, verify, and drop it",
                    target.as_deref().unwrap_or("?")
                ),
                _ => format!("finish retiring {partition}: drop it"),
            },
            Action::AbandonRetire { partition } => format!(
                "keep {partition} as a detached table: the spec no longer asks to retire it as it was marked"
            ),
        }
    }
}

/// The transaction's lock wait: the policy's lockTimeout.
pub fn lock_timeout_sql(ctx: &TableCtx) -> String {
    format!(
        "SET LOCAL lock_timeout = {}",
        literal(&format!("{}ms", ctx.lock_timeout.as_millis().max(1)))
    )
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
    target: Option<&str>,
    bound: Option<&str>,
) -> Option<String> {
    (action != RetentionAction::Detach).then(|| {
        format!(
            "COMMENT ON TABLE {} IS {}",
            ctx.child(partition),
            literal(&retiring_mark(&ctx.table, action, target, bound))
        )
    })
}

/// The repair's one transaction (see [`Action::Repair`]). `move_columns`: the columns to
/// copy when rows outside the slot must go to the new default; `None` shows that step as
/// a comment (for `plan`, which does not know yet whether there are any).
pub fn repair(ctx: &TableCtx, slot: &RangeSlot, move_columns: Option<&str>) -> Vec<String> {
    let default = ctx.default_partition.as_deref().unwrap_or_default();
    let filled = ctx.child(&slot.name);
    let mut v = vec![
        format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", ctx.parent()),
        format!(
            "ALTER TABLE {} RENAME TO {}",
            ctx.child(default),
            ident(&slot.name)
        ),
        create_like(ctx, default),
    ];
    let outside = format!("NOT ({})", ctx.range_predicate(slot.from, slot.to));
    v.push(match move_columns {
        Some(cols) => format!(
            "WITH moved AS (DELETE FROM ONLY {filled} WHERE {outside} RETURNING {cols}) INSERT INTO {} ({cols}) SELECT {cols} FROM moved",
            ctx.child(default)
        ),
        None => format!(
            "-- only if it holds rows outside the slot: move them (WHERE {outside}) into the new {}",
            ctx.child(default)
        ),
    });
    v.push(detach(ctx, &slot.name, false));
    v.push(attach(
        ctx,
        &slot.name,
        &format!("FOR VALUES {}", ctx.range_bound_sql(slot.from, slot.to)),
    ));
    v.push(attach(ctx, default, "DEFAULT"));
    v.extend(mark_owned(ctx, &slot.name));
    v
}

/// Un-hide an orphan's rows through the parent and drop it, in one transaction (see
/// [`Action::RestoreOrphan`]); `columns` as for [`repair`].
pub fn restore_orphan(ctx: &TableCtx, table: &str, columns: Option<&str>) -> Vec<String> {
    let cols = columns.unwrap_or("<its columns but generated ones>");
    vec![
        format!(
            "INSERT INTO {} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {}",
            ctx.parent(),
            ctx.child(table)
        ),
        format!("DROP TABLE {}", ctx.child(table)),
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

/// Completes a `DETACH ... CONCURRENTLY` that was interrupted after its first transaction.
pub fn finalize_detach(ctx: &TableCtx, name: &str) -> String {
    format!(
        "ALTER TABLE {} DETACH PARTITION {} FINALIZE",
        ctx.parent(),
        ctx.child(name)
    )
}

/// The statements of one action as `pgpart plan` shows them. Repair's batches are shown once.
pub fn statements(action: &Action, ctx: &TableCtx, concurrent_detach: bool) -> Vec<String> {
    match action {
        Action::FinishDetach { partition } => vec![finalize_detach(ctx, partition)],
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
        Action::DropDefaultGuard => DEFAULT_GUARDS
            .iter()
            .map(|g| {
                format!(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                    ctx.child(ctx.default_partition.as_deref().unwrap_or_default()),
                    ident(g)
                )
            })
            .collect(),
        Action::RestoreOrphan { table } => restore_orphan(ctx, table, None),
        Action::CreateDefault { partition } => {
            vec![
                create_like(ctx, partition),
                attach(ctx, partition, "DEFAULT"),
            ]
        }
        Action::Repair { slot } => repair(ctx, slot, None),
        Action::Retire {
            partition,
            action,
            target,
        } => {
            let mut v: Vec<String> =
                mark_retiring(ctx, partition, *action, target.as_deref(), None)
                    .into_iter()
                    .collect();
            v.push(detach(ctx, partition, concurrent_detach));
            v.extend(shown_finish(ctx, partition, *action, target.as_deref()));
            v
        }
        Action::FinishRetire {
            partition,
            action,
            target,
        } => shown_finish(ctx, partition, *action, target.as_deref()),
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

/// How `plan` shows the archive's step, which is no SQL statement.
fn archive_step(ctx: &TableCtx, partition: &str, url: &str) -> String {
    format!(
        "-- COPY {} TO STDOUT, gzip, into {url} at {}, read back and verified (rows, SHA-256), in the transaction that then drops it:",
        ctx.child(partition),
        super::archive::object_dir(&ctx.schema, &ctx.table, partition)
    )
}

/// The statements that follow a retiring partition's detach, as `plan` shows them.
fn shown_finish(
    ctx: &TableCtx,
    partition: &str,
    action: RetentionAction,
    target: Option<&str>,
) -> Vec<String> {
    let mut v = Vec::new();
    if let (RetentionAction::Archive, Some(url)) = (action, target) {
        v.push(archive_step(ctx, partition, url));
    }
    v.extend(finish_retire(ctx, partition, action, target));
    v
}

/// What follows a retiring partition's detach, in one transaction (for Archive: the
/// transaction that archived it, see `archive::retire`).
pub fn finish_retire(
    ctx: &TableCtx,
    partition: &str,
    action: RetentionAction,
    target: Option<&str>,
) -> Vec<String> {
    match (action, target) {
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
