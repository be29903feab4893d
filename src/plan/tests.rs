//! The planner's rules, on a simulated clock: the window is covered or a hole is
//! reported, nothing planned overlaps, the plan grows with the window (never with the
//! table's history), and retention takes only whole expired ranges pgpart made.

use super::Plan;
use super::action;
use super::action::Action;
use super::grid::uncovered;
use super::model::Strategy as PartStrategy;
use super::model::{Bound, KeyValue, ObservedPartition, ObservedTable};
use crate::policy::{PartitionPolicySpec, ValidPolicy, validate};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use proptest::prelude::*;

fn policy(spec: &str) -> ValidPolicy {
    let spec: PartitionPolicySpec =
        serde_yaml_ng::from_str(&format!("table: public.events\n{spec}")).expect("spec parses");
    validate(&spec).expect("spec is valid")
}

fn t(y: i32, m: u32, d: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    (t(y, m, d) + Duration::hours(h as i64)).and_utc()
}

fn part(name: &str, from: NaiveDateTime, to: NaiveDateTime, managed: bool) -> ObservedPartition {
    ObservedPartition {
        schema: "public".into(),
        name: name.into(),
        bound: Bound::Range {
            from: KeyValue::Time(from),
            to: KeyValue::Time(to),
        },
        managed,
        detach_pending: false,
        estimated_rows: 0,
        bytes: 0,
    }
}

/// `public.events`, timestamptz key `at`, with these partitions.
fn table(partitions: Vec<ObservedPartition>) -> ObservedTable {
    ObservedTable {
        schema: "public".into(),
        name: "events".into(),
        strategy: PartStrategy::Range,
        key_columns: vec![Some("at".into())],
        key_types: vec!["timestamp with time zone".into()],
        partitions,
        default_rows: Default::default(),
        max_key: None,
        default_slot_keys: vec![],
        retiring: vec![],
        default_guard: false,
        referenced_by: vec![],
        orphans: vec![],
        fingerprint: String::new(),
        rows_unread: false,
    }
}

fn creates(p: &Plan) -> Vec<(String, KeyValue, KeyValue)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateRange { slot } | Action::Repair { slot } => {
                Some((slot.name.clone(), slot.from, slot.to))
            }
            _ => None,
        })
        .collect()
}

fn reasons(p: &Plan) -> Vec<&'static str> {
    p.findings.iter().map(|f| f.reason).collect()
}

fn kv(t: NaiveDateTime) -> KeyValue {
    KeyValue::Time(t)
}

/// Monthly partitions made by pgpart, from `from` for `n` months.
fn monthly_parts(from: NaiveDateTime, n: u32) -> Vec<ObservedPartition> {
    (0..n)
        .map(|k| {
            let s = from + chrono::Months::new(k);
            part(
                &format!("events_p{}", s.format("%Y%m%d")),
                s,
                s + chrono::Months::new(1),
                true,
            )
        })
        .collect()
}

#[test]
fn long_history_costs_nothing_and_never_stalls() {
    // 210 days of hourly partitions (5040): the day-210 stall of the first version.
    let p = policy("range: {interval: 1 hour, premake: 24}");
    let start = t(2026, 1, 1);
    let parts: Vec<_> = (0..210 * 24)
        .map(|h| {
            let s = start + Duration::hours(h);
            part(
                &format!("events_p{}", s.format("%Y%m%d%H")),
                s,
                s + Duration::hours(1),
                true,
            )
        })
        .collect();
    let now = (start + Duration::hours(210 * 24) - Duration::minutes(30)).and_utc();
    let plan = super::plan(&p, Some(&table(parts)), now).expect("no partition limit from history");
    // The current hour exists; the 24 ahead of it do not (bar the first, which does not).
    assert_eq!(creates(&plan).len(), 24, "{:?}", plan.actions);
    assert!(
        plan.summary
            .holes
            .iter()
            .all(|(f, _)| *f >= kv(start + Duration::hours(210 * 24)))
    );
}

#[test]
fn a_stray_old_partition_does_not_widen_the_window() {
    let p = policy("range: {interval: 1 day, premake: 3}");
    let stray = part("events_p19700101", t(1970, 1, 1), t(1970, 1, 2), true);
    let plan = super::plan(&p, Some(&table(vec![stray])), at(2026, 11, 22, 10)).unwrap();
    let c = creates(&plan);
    assert_eq!(c.len(), 4, "today and 3 ahead only: {c:?}");
    assert_eq!(c[0].1, kv(t(2026, 11, 22)));
}

#[test]
fn start_from_walks_only_what_is_missing() {
    // Ten years of daily partitions from startFrom exist: nothing to do, no limit hit.
    let p = policy("range: {interval: 1 day, premake: 2, startFrom: \"2017-01-01\"}");
    let start = t(2017, 1, 1);
    let days = (t(2027, 1, 4) - start).num_days();
    let parts: Vec<_> = (0..days)
        .map(|d| {
            let s = start + Duration::days(d);
            part(
                &format!("events_p{}", s.format("%Y%m%d")),
                s,
                s + Duration::days(1),
                true,
            )
        })
        .collect();
    let plan = super::plan(&p, Some(&table(parts)), at(2027, 1, 1, 10)).unwrap();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    // Far too far back is refused, naming startFrom.
    let p = policy("range: {interval: 1 hour, premake: 2, startFrom: \"1900-01-01\"}");
    let e = super::plan(&p, Some(&table(vec![])), at(2027, 1, 1, 10)).unwrap_err();
    assert!(e.to_string().contains("spec.range.startFrom"), "{e}");
}

#[test]
fn a_hand_made_partition_off_the_grid_is_bridged() {
    // [2026-11-10, 2026-12-10) on a monthly policy: December's rest gets a bridge.
    let p = policy("range: {interval: 1 month, premake: 2}");
    let hand = part("events_hand", t(2026, 11, 10), t(2026, 12, 10), false);
    let plan = super::plan(&p, Some(&table(vec![hand])), at(2026, 11, 22, 10)).unwrap();
    let c = creates(&plan);
    let bridges: Vec<_> = c.iter().filter(|(n, ..)| n.contains("_bridge_")).collect();
    assert_eq!(
        bridges,
        [
            &(
                "events_bridge_202611010000".to_string(),
                kv(t(2026, 11, 1)),
                kv(t(2026, 11, 10))
            ),
            &(
                "events_bridge_202612100000".to_string(),
                kv(t(2026, 12, 10)),
                kv(t(2027, 1, 1))
            ),
        ]
    );
    assert!(c.iter().any(|(n, ..)| n == "events_p20270101"), "{c:?}");
    assert!(!reasons(&plan).contains(&"Hole"), "{:?}", plan.findings);
}

#[test]
fn interval_edits_leave_no_hole() {
    // Monthly up to 2027-04-01, then the policy becomes weekly: [04-01, 04-05) bridged.
    let p = policy("range: {interval: 1 week, premake: 6}");
    let plan = super::plan(
        &p,
        Some(&table(monthly_parts(t(2027, 1, 1), 3))),
        at(2027, 3, 10, 0),
    )
    .unwrap();
    let c = creates(&plan);
    assert!(
        c.iter()
            .any(|(_, f, to)| *f == kv(t(2027, 4, 1)) && *to == kv(t(2027, 4, 5))),
        "{c:?}"
    );
    // Weekly up to 2027-05-31, back to monthly: [05-31, 06-01) bridged.
    let p = policy("range: {interval: 1 month, premake: 2}");
    let weeks: Vec<_> = (0..8)
        .map(|k| {
            let s = t(2027, 4, 5) + Duration::weeks(k);
            part(&format!("events_w{k}"), s, s + Duration::weeks(1), true)
        })
        .collect();
    let plan = super::plan(&p, Some(&table(weeks)), at(2027, 5, 20, 0)).unwrap();
    let c = creates(&plan);
    assert!(
        c.iter()
            .any(|(_, f, to)| *f == kv(t(2027, 5, 31)) && *to == kv(t(2027, 6, 1))),
        "{c:?}"
    );
    assert!(c.iter().any(|(n, ..)| n == "events_p20270601"), "{c:?}");
}

#[test]
fn holes_are_counted_and_unfillable_ones_reported() {
    let p = policy("range: {interval: 1 month, premake: 2}");
    // This month exists, the next two do not: holes now, none left by the plan.
    let plan_ = super::plan(
        &p,
        Some(&table(monthly_parts(t(2026, 11, 1), 1))),
        at(2026, 11, 22, 0),
    )
    .unwrap();
    assert_eq!(
        plan_.summary.holes,
        [(kv(t(2026, 12, 1)), kv(t(2027, 2, 1)))]
    );
    assert!(!reasons(&plan_).contains(&"Hole"));
    // Rows in the default in December block its partition (Report): a Hole finding.
    let mut tb = table(monthly_parts(t(2026, 11, 1), 1));
    tb.partitions.push(ObservedPartition {
        bound: Bound::Default,
        ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
    });
    tb.default_rows.rows = 3;
    tb.default_slot_keys = vec![kv(t(2026, 12, 5))];
    let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
    assert!(reasons(&plan_).contains(&"BlockedByDefaultRows"));
    assert!(reasons(&plan_).contains(&"Hole"), "{:?}", plan_.findings);
}

/// Daily partitions from 11-16 to 11-19 and a default holding rows on these days.
fn daily_with_default_rows(days: &[NaiveDateTime]) -> ObservedTable {
    let mut tb = table(
        (16..20)
            .map(|d| {
                part(
                    &format!("events_p202611{d}"),
                    t(2026, 11, d),
                    t(2026, 11, d + 1),
                    true,
                )
            })
            .collect(),
    );
    tb.partitions.push(ObservedPartition {
        bound: Bound::Default,
        ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
    });
    tb.default_rows.rows = 100;
    tb.default_slot_keys = days.iter().map(|d| kv(*d + Duration::hours(5))).collect();
    tb
}

fn repairs(p: &Plan) -> Vec<(String, KeyValue, KeyValue)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Repair { slot } => Some((slot.name.clone(), slot.from, slot.to)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_backlog_becomes_one_partition_and_strays_their_own() {
    let p = policy(
        "range: {interval: 1 day, premake: 3}\ndefaultPartition: {create: true, onRows: Repair}",
    );
    let now = at(2026, 11, 22, 12);
    // Three days in a row, one more after one empty day: one range, made first.
    let tb = daily_with_default_rows(&[
        t(2026, 11, 20),
        t(2026, 11, 21),
        t(2026, 11, 23),
        t(2026, 11, 22),
    ]);
    let plan_ = super::plan(&p, Some(&tb), now).unwrap();
    assert_eq!(
        repairs(&plan_),
        [(
            "events_repaired_202611200000".to_string(),
            kv(t(2026, 11, 20)),
            kv(t(2026, 11, 24))
        )]
    );
    assert!(matches!(plan_.actions.first(), Some(Action::Repair { .. })));
    // The window's slots inside the repaired range are not created again; the rest are.
    let made: Vec<_> = creates(&plan_).into_iter().map(|c| c.0).collect();
    assert_eq!(
        made,
        [
            "events_repaired_202611200000",
            "events_p20261124",
            "events_p20261125"
        ]
    );
    assert!(!reasons(&plan_).contains(&"Hole"), "{:?}", plan_.findings);

    // Two rows of one day: one range (found by the property test below).
    let mut tb = daily_with_default_rows(&[t(2026, 11, 20)]);
    tb.default_slot_keys
        .push(kv(t(2026, 11, 20) + Duration::hours(17)));
    let plan_ = super::plan(&p, Some(&tb), now).unwrap();
    assert_eq!(
        repairs(&plan_),
        [(
            "events_p20261120".to_string(),
            kv(t(2026, 11, 20)),
            kv(t(2026, 11, 21))
        )]
    );

    // Three empty days between: two ranges, the one with more occupied days first.
    let tb = daily_with_default_rows(&[t(2026, 11, 20), t(2026, 11, 24), t(2026, 11, 25)]);
    let names: Vec<_> = repairs(&super::plan(&p, Some(&tb), now).unwrap())
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(names, ["events_repaired_202611240000", "events_p20261120"]);

    // A stray row in 1970 and one a year ahead: each its own slot, after the backlog.
    let tb = daily_with_default_rows(&[
        t(1970, 1, 1),
        t(2026, 11, 20),
        t(2026, 11, 21),
        t(2027, 11, 1),
    ]);
    let plan_ = super::plan(&p, Some(&tb), now).unwrap();
    let names: Vec<_> = repairs(&plan_).into_iter().map(|r| r.0).collect();
    assert_eq!(
        names,
        [
            "events_repaired_202611200000",
            "events_p20271101",
            "events_p19700101"
        ]
    );

    // Retention has passed 1970: that row stays in the default, no partition for it.
    let p = policy(
        "range: {interval: 1 day, premake: 3}\ndefaultPartition: {create: true, onRows: Repair}\nretention: {keep: 30 days}",
    );
    let plan_ = super::plan(&p, Some(&tb), now).unwrap();
    let names: Vec<_> = repairs(&plan_).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["events_repaired_202611200000", "events_p20271101"]);
}

#[test]
fn a_repair_is_refused_for_a_referenced_table_and_leftovers_are_undone() {
    let p = policy(
        "range: {interval: 1 day, premake: 3}\ndefaultPartition: {create: true, onRows: Repair}",
    );
    let now = at(2026, 11, 22, 12);
    let mut tb = daily_with_default_rows(&[t(2026, 11, 20)]);
    tb.referenced_by = vec!["public.comments".into()];
    let plan_ = super::plan(&p, Some(&tb), now).unwrap();
    assert!(repairs(&plan_).is_empty(), "{:?}", plan_.actions);
    assert!(reasons(&plan_).contains(&"RepairRefused"));
    assert!(reasons(&plan_).contains(&"RowsInDefault"));

    let mut tb = daily_with_default_rows(&[]);
    tb.default_rows.rows = 0;
    tb.default_guard = true;
    tb.orphans = vec!["events_p20261120".into()];
    let plan_ = super::plan(&p, Some(&tb), now).unwrap();
    assert_eq!(plan_.actions[0], Action::DropDefaultGuard);
    assert_eq!(
        plan_.actions[1],
        Action::RestoreOrphan {
            table: "events_p20261120".into()
        }
    );
    assert!(reasons(&plan_).contains(&"HiddenRows"));
    assert!(reasons(&plan_).contains(&"DefaultGuardLeft"));
}

#[test]
fn an_archive_mark_keeps_its_url_and_bound_and_is_finished_only_to_that_archive() {
    use crate::policy::RetentionAction::Archive;
    let bound = "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')";
    let mark = action::retiring_mark("events", Archive, Some("file:///a"), Some(bound));
    assert_eq!(
        action::parse_retiring_mark("events", &mark),
        Some((Archive, Some("file:///a".to_string())))
    );
    assert_eq!(action::retiring_bound("events", &mark), Some(bound));
    assert_eq!(action::retiring_bound("other", &mark), None);
    assert_eq!(action::parse_retiring_mark("other", &mark), None);

    let mut tb = table(monthly_parts(t(2026, 11, 1), 3));
    tb.retiring = vec![("events_p20240101".into(), mark)];
    let archive_to = |url: &str| {
        policy(&format!(
            "range: {{interval: 1 month, premake: 2}}\nretention: {{keep: 12 months, action: Archive, archive: {{url: \"{url}\"}}}}"
        ))
    };
    // The same archive: finished there.
    let plan_ = super::plan(&archive_to("file:///a"), Some(&tb), at(2026, 11, 22, 0)).unwrap();
    assert!(plan_.actions.contains(&Action::FinishRetire {
        partition: "events_p20240101".into(),
        action: Archive,
        target: Some("file:///a".into()),
    }));
    let finish = plan_
        .actions
        .iter()
        .find(|a| matches!(a, Action::FinishRetire { .. }))
        .unwrap();
    let shown = action::statements(finish, &plan_.ctx, false);
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("-- COPY \"public\".\"events_p20240101\" TO STDOUT")),
        "{shown:?}"
    );
    assert_eq!(
        shown.last().unwrap(),
        "DROP TABLE \"public\".\"events_p20240101\""
    );
    // Another archive now: never written where the spec no longer says.
    let plan_ = super::plan(&archive_to("file:///b"), Some(&tb), at(2026, 11, 22, 0)).unwrap();
    assert!(plan_.actions.contains(&Action::AbandonRetire {
        partition: "events_p20240101".into()
    }));
}

#[test]
fn a_stale_retiring_mark_is_never_acted_on() {
    let mut tb = table(monthly_parts(t(2026, 11, 1), 3));
    tb.retiring = vec![(
        "events_p20240101".into(),
        action::retiring_mark("events", crate::policy::RetentionAction::Drop, None, None),
    )];
    // The spec now says Detach: the mark from Drop is cleared, nothing is dropped.
    let p = policy(
        "range: {interval: 1 month, premake: 2}\nretention: {keep: 12 months, action: Detach}",
    );
    let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
    assert!(
        plan_
            .actions
            .iter()
            .all(|a| !matches!(a, Action::FinishRetire { .. })),
        "{:?}",
        plan_.actions
    );
    assert!(plan_.actions.contains(&Action::AbandonRetire {
        partition: "events_p20240101".into()
    }));
    // No retention at all: the same.
    let p = policy("range: {interval: 1 month, premake: 2}");
    let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
    assert!(plan_.actions.contains(&Action::AbandonRetire {
        partition: "events_p20240101".into()
    }));
    // The spec still says Drop: the drop is finished.
    let p = policy(
        "range: {interval: 1 month, premake: 2}\nretention: {keep: 12 months, action: Drop}",
    );
    let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
    assert!(plan_.actions.iter().any(
        |a| matches!(a, Action::FinishRetire { partition, .. } if partition == "events_p20240101")
    ));
}

#[test]
fn adoption_needs_both_ends_on_the_grid() {
    let p = policy("range: {interval: 1 month, premake: 1}\nadoptExisting: true");
    let tb = table(vec![
        part("events_exact", t(2026, 10, 1), t(2026, 11, 1), false),
        part("events_half", t(2026, 9, 15), t(2026, 10, 1), false),
    ]);
    let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
    let adopted: Vec<_> = plan_
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Adopt { partition } => Some(partition.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(adopted, ["events_exact"]);
}

#[test]
fn uncovered_is_the_difference() {
    let (a, b, c, d) = (
        KeyValue::Int(0),
        KeyValue::Int(10),
        KeyValue::Int(20),
        KeyValue::Int(30),
    );
    assert_eq!(uncovered(a, d, &[]), [(a, d)]);
    assert_eq!(uncovered(a, d, &[(b, c)]), [(a, b), (c, d)]);
    assert_eq!(uncovered(a, d, &[(a, b), (b, d)]), []);
    assert_eq!(uncovered(b, c, &[(a, d)]), []);
}

/// A random table: monthly partitions from a random start for a random length (some
/// removed to leave gaps), plus a few off-grid ones that do not overlap the rest.
fn any_table() -> impl proptest::strategy::Strategy<Value = (ObservedTable, DateTime<Utc>)> {
    (
        0u32..48,
        1u32..40,
        proptest::collection::vec(any::<bool>(), 40),
        proptest::collection::vec((0i64..2000, 1i64..60), 0..4),
        0i64..(4 * 365 * 24),
        proptest::collection::vec(any::<bool>(), 40),
    )
        .prop_map(|(start, n, keep, extra, hours, managed)| {
            let first = t(2024, 1, 1) + chrono::Months::new(start);
            let mut parts: Vec<ObservedPartition> = monthly_parts(first, n)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep[*i % keep.len()])
                .map(|(i, mut p)| {
                    p.managed = managed[i % managed.len()];
                    p
                })
                .collect();
            for (i, (off_days, len_days)) in extra.into_iter().enumerate() {
                let f = t(2024, 1, 1) + Duration::days(off_days) + Duration::hours(7);
                let to = f + Duration::days(len_days);
                let overlaps = parts.iter().any(|p| match p.bound {
                    Bound::Range {
                        from: KeyValue::Time(a),
                        to: KeyValue::Time(b),
                    } => a < to && f < b,
                    _ => false,
                });
                if !overlaps {
                    parts.push(part(&format!("events_x{i}"), f, to, false));
                }
            }
            let now = (t(2024, 1, 1) + Duration::hours(hours)).and_utc();
            (table(parts), now)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn window_covered_nothing_overlaps_retention_takes_only_what_it_may(
        (tb, now) in any_table(),
        premake in 1u32..8,
        keep in 1u32..24,
        adopt in any::<bool>(),
    ) {
        let p = policy(&format!(
            "range: {{interval: 1 month, premake: {premake}}}\nretention: {{keep: {keep} months, action: Drop, maxPerPass: 100}}\nadoptExisting: {adopt}"
        ));
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        let existing: Vec<(KeyValue, KeyValue)> = tb.partitions.iter().filter_map(|p| match p.bound {
            Bound::Range { from, to } => Some((from, to)),
            _ => None,
        }).collect();
        let new = creates(&plan_);
        // Nothing planned overlaps what exists or another planned partition.
        let mut all = existing.clone();
        all.extend(new.iter().map(|(_, f, t)| (*f, *t)));
        all.sort();
        for w in all.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "overlap {:?} / {:?}: {:?}", w[0], w[1], plan_.actions);
        }
        // After the plan, now .. the end of the premake window is covered.
        let now_local = now.naive_utc();
        let horizon = t(now_local.year(), now_local.month(), 1) + chrono::Months::new(premake + 1);
        prop_assert!(
            uncovered(kv(now_local), kv(horizon), &all).is_empty(),
            "hole after the plan: {:?}\nexisting {:?}\nplanned {:?}", uncovered(kv(now_local), kv(horizon), &all), existing, new
        );
        // The plan is the size of the window, whatever the history.
        prop_assert!(new.len() <= 2 * (premake as usize + 1), "{new:?}");
        // Retention: whole ranges before the cutoff, pgpart's own or adopted grid slots.
        let cutoff = kv((now - chrono::Months::new(keep)).naive_utc());
        for a in &plan_.actions {
            if let Action::Retire { partition, .. } = a {
                let p = tb.partitions.iter().find(|p| &p.name == partition).unwrap();
                let Bound::Range { from, to } = p.bound else { panic!() };
                prop_assert!(to <= cutoff, "{partition} ends after the cutoff");
                let on_grid = matches!((from, to), (KeyValue::Time(f), KeyValue::Time(t)) if f.day() == 1 && f.hour() == 0 && t == f + chrono::Months::new(1));
                prop_assert!(p.managed || (adopt && on_grid), "{partition} is not pgpart's");
            }
        }
    }

    #[test]
    fn repairs_home_every_default_row_and_overlap_nothing(
        (mut tb, now) in any_table(),
        offsets in proptest::collection::vec(-40_000i64..40_000, 1..8),
        keep in proptest::option::of(1u32..24),
    ) {
        let retention = keep
            .map(|k| format!("\nretention: {{keep: {k} months, action: Detach, maxPerPass: 100}}"))
            .unwrap_or_default();
        let p = policy(&format!(
            "range: {{interval: 1 month, premake: 3}}\ndefaultPartition: {{create: true, onRows: Repair}}{retention}"
        ));
        let existing: Vec<(KeyValue, KeyValue)> = {
            let mut v: Vec<_> = tb.partitions.iter().filter_map(|p| match p.bound {
                Bound::Range { from, to } => Some((from, to)),
                _ => None,
            }).collect();
            v.sort();
            v
        };
        // Rows in the default: keys (hours from now) that no partition takes.
        let mut keys: Vec<KeyValue> = offsets
            .iter()
            .map(|h| kv(now.naive_utc() + Duration::hours(*h)))
            .filter(|k| !existing.iter().any(|(f, t)| f <= k && k < t))
            .collect();
        keys.sort();
        keys.dedup();
        prop_assume!(!keys.is_empty());
        tb.partitions.push(ObservedPartition {
            bound: Bound::Default,
            ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
        });
        tb.default_rows.rows = keys.len() as i64;
        tb.default_slot_keys = keys.clone();
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        let repaired = repairs(&plan_);
        // Repairs first, largest first; nothing overlaps anything.
        let mut all = existing.clone();
        all.extend(creates(&plan_).iter().map(|(_, f, t)| (*f, *t)));
        all.sort();
        for w in all.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "overlap {:?} / {:?}: {:?}", w[0], w[1], plan_.actions);
        }
        // Every row newer than the cutoff has a home after the plan; older ones stay.
        let cutoff = keep.map(|k| kv((now - chrono::Months::new(k)).naive_utc()));
        for k in &keys {
            let homed = repaired.iter().any(|(_, f, t)| f <= k && k < t);
            let month_end = |k: &KeyValue| match k {
                KeyValue::Time(v) => kv(t(v.year(), v.month(), 1) + chrono::Months::new(1)),
                other => *other,
            };
            let expired = cutoff.is_some_and(|c| month_end(k) <= c);
            prop_assert!(homed != expired, "key {k:?}: homed {homed}, expired {expired}: {repaired:?}");
        }
    }
}

/// `v` (a timestamptz value) as the key `encoding` holds it, computed here from the
/// definitions: a UUIDv7's 48-bit millisecond prefix (`tail` in its other 80 bits), or
/// seconds, milli- or microseconds since 1970 UTC.
fn encoded_as(encoding: &str, v: KeyValue, tail: u128) -> KeyValue {
    let KeyValue::Time(t) = v else { return v };
    let us = t.and_utc().timestamp_micros();
    match encoding {
        "uuidv7" => KeyValue::Uuid(((us.div_euclid(1_000) as u128) << 80) | tail),
        "epochSeconds" => KeyValue::Int(us.div_euclid(1_000_000)),
        "epochMillis" => KeyValue::Int(us.div_euclid(1_000)),
        "epochMicros" => KeyValue::Int(us),
        other => panic!("{other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A key that holds time in a uuid or an integer (`keyEncoding`) is planned as the
    /// instants it holds: whatever the table (gaps, foreign and off-grid partitions, rows in
    /// the default), the plan is the timestamptz key's plan, action for action, with every
    /// bound encoded; the findings and the summary read the same.
    #[test]
    fn an_encoded_key_is_planned_as_the_time_it_holds(
        (mut tb, now) in any_table(),
        encoding in prop::sample::select(vec!["uuidv7", "epochSeconds", "epochMillis", "epochMicros"]),
        interval in prop::sample::select(vec!["1 hour", "1 day", "1 week", "1 month", "1 quarter"]),
        zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "+05:30"]),
        offsets in proptest::collection::vec(-40_000i64..40_000, 0..6),
        keep in proptest::option::of(1u32..24),
        premake in 1u32..6,
    ) {
        let spec = |enc: &str| {
            let retention = keep
                .map(|k| format!("\nretention: {{keep: {k} months, action: Drop, maxPerPass: 100}}"))
                .unwrap_or_default();
            format!(
                "range: {{interval: {interval}, premake: {premake}, timeZone: \"{zone}\"{enc}}}\ndefaultPartition: {{create: true, onRows: Repair}}{retention}"
            )
        };
        let plain = policy(&spec(""));
        let held = policy(&spec(&format!(", keyEncoding: {encoding}")));
        // Rows in the default at keys no partition takes.
        let mut keys: Vec<KeyValue> = offsets
            .iter()
            .map(|h| kv(now.naive_utc() + Duration::hours(*h)))
            .filter(|k| !tb.partitions.iter().any(|p| matches!(p.bound, Bound::Range { from, to } if from <= *k && *k < to)))
            .collect();
        keys.sort();
        keys.dedup();
        tb.partitions.push(ObservedPartition {
            bound: Bound::Default,
            ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
        });
        tb.default_rows.rows = keys.len() as i64;
        tb.default_slot_keys = keys;

        // The same table with the key as the encoding holds it.
        let row_tail = 0x7000_8000_0000_0000_0000u128 | 0x1234;
        let mut enc = tb.clone();
        enc.key_types = vec![if encoding == "uuidv7" { "uuid" } else { "bigint" }.into()];
        for p in &mut enc.partitions {
            if let Bound::Range { from, to } = p.bound {
                p.bound = Bound::Range {
                    from: encoded_as(encoding, from, 0),
                    to: encoded_as(encoding, to, 0),
                };
            }
        }
        for k in &mut enc.default_slot_keys {
            *k = encoded_as(encoding, *k, row_tail);
        }

        let want = super::plan(&plain, Some(&tb), now).unwrap();
        let got = super::plan(&held, Some(&enc), now).unwrap();
        let bounds_encoded = |a: &Action| match a {
            Action::CreateRange { slot } | Action::Repair { slot } => {
                let slot = action::RangeSlot {
                    name: slot.name.clone(),
                    from: encoded_as(encoding, slot.from, 0),
                    to: encoded_as(encoding, slot.to, 0),
                };
                if matches!(a, Action::Repair { .. }) { Action::Repair { slot } } else { Action::CreateRange { slot } }
            }
            other => other.clone(),
        };
        let want_actions: Vec<Action> = want.actions.iter().map(bounds_encoded).collect();
        prop_assert_eq!(&got.actions, &want_actions);
        prop_assert_eq!(&got.findings, &want.findings);
        let mut want_summary = want.summary.clone();
        for h in &mut want_summary.holes {
            *h = (encoded_as(encoding, h.0, 0), encoded_as(encoding, h.1, 0));
        }
        prop_assert_eq!(&got.summary, &want_summary);
    }
}

#[test]
fn a_time_past_what_the_key_holds_is_a_hole() {
    let p = policy("range: {interval: 1 month, premake: 2, keyEncoding: epochSeconds}");
    let mut tb = table(vec![]);
    tb.key_types = vec!["integer".into()];
    // The window of 2037-12 reaches past 2038-01-19T03:14:07Z: January 2038 ends at
    // MAXVALUE (the last second the integer holds is in it), no partition after it.
    let plan_ = super::plan(&p, Some(&tb), at(2037, 12, 10, 0)).unwrap();
    let made = creates(&plan_);
    assert_eq!(made.len(), 2, "{:?}", plan_.actions);
    assert_eq!(made[1].1, KeyValue::Int(2_145_916_800), "2038-01-01");
    assert_eq!(made[1].2, KeyValue::Max);
    assert!(plan_.findings.is_empty(), "{:?}", plan_.findings);
    // Past it, nothing can be made: a hole, so the pass fails rather than reports Ready.
    let plan_ = super::plan(&p, Some(&tb), at(2039, 1, 1, 0)).unwrap();
    assert!(plan_.actions.is_empty(), "{:?}", plan_.actions);
    assert_eq!(reasons(&plan_), ["Hole"]);
    assert!(
        plan_.findings[0].message.contains("integer key"),
        "{:?}",
        plan_.findings
    );
    assert_eq!(
        plan_.summary.holes,
        [(KeyValue::Int(i32::MAX.into()), KeyValue::Max)]
    );
    // Seconds in a smallint end in 1970: refused, naming the field.
    tb.key_types = vec!["smallint".into()];
    let err = super::plan(&p, Some(&tb), at(2026, 1, 1, 0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.range.keyEncoding") && err.contains("smallint"),
        "{err}"
    );
}

#[test]
fn a_uuid_that_is_not_a_uuidv7_holds_no_time() {
    let kind = super::model::KeyKind::Uuidv7;
    let ms = 1_767_225_600_000u128 << 80;
    // A bound (nothing after the milliseconds) and a UUIDv7 row are times; a v4 is not.
    assert!(kind.decode(KeyValue::Uuid(ms)).is_some());
    assert!(
        kind.decode(KeyValue::Uuid(ms | 0x7abc_8def_0000_0000_0001))
            .is_some()
    );
    assert_eq!(
        kind.decode(KeyValue::Uuid(ms | 0x4abc_8def_0000_0000_0001)),
        None
    );
}
