//! `pgpart restore`: an archived partition back, as a table or attached again.

use super::RestoreArgs;
use crate::archive::store::Store;
use crate::archive::{RestoreAs, restore as restore_partition};
use crate::db::connect::Target;
use crate::error::{Error, Result};
use crate::plan::TableCtx;
use crate::policy::{RetentionAction, file::load_file, validate};

pub async fn restore(args: RestoreArgs) -> Result<()> {
    let policies = load_file(&args.policy)?;
    let mut archived = Vec::new();
    for p in &policies {
        let v = validate(&p.spec)?;
        let Some(spec) = v.retention.as_ref().and_then(|r| {
            (r.action == RetentionAction::Archive)
                .then(|| r.archive.clone())
                .flatten()
        }) else {
            continue;
        };
        if args
            .table
            .as_ref()
            .is_none_or(|t| *t == format!("{}.{}", v.schema, v.table))
        {
            archived.push((v, spec));
        }
    }
    let (policy, spec) = match archived.len() {
        1 => archived.pop().expect("one"),
        0 => {
            return Err(Error::Input(format!(
                "{}: no policy{} archives its retired partitions (spec.retention.action: Archive)",
                args.policy.display(),
                args.table
                    .as_ref()
                    .map(|t| format!(" for {t}"))
                    .unwrap_or_default()
            )));
        }
        _ => {
            return Err(Error::Input(format!(
                "{}: several policies archive; say which table with --table schema.table",
                args.policy.display()
            )));
        }
    };
    let how = match (&args.as_table, args.attach) {
        (Some(_), true) => {
            return Err(Error::Input(
                "--as-table and --attach: choose one (a restored table is attached under the partition's own name)".into(),
            ));
        }
        (Some(name), false) => RestoreAs::Table(name.clone()),
        (None, true) => RestoreAs::Attached,
        (None, false) => {
            return Err(Error::Input(
                "say how to bring it back: --as-table NAME (a plain table beside the parent) or --attach (the partition again)".into(),
            ));
        }
    };
    let store = Store::open(&spec)?;
    let ctx = TableCtx {
        schema: policy.schema.clone(),
        table: policy.table.clone(),
        key_column: None,
        key_kind: None,
        default_partition: None,
        lock_timeout: policy.lock_timeout,
        archive: Some(spec),
    };
    let client = Target::from_url(&args.database_url)?.connect().await?;
    let (manifest, rel) = restore_partition(&client, &ctx, &store, &args.partition, &how).await?;
    let attached = match (&how, &manifest.bound) {
        (RestoreAs::Attached, Some(b)) => format!(", attached to {}.{} {b}", ctx.schema, ctx.table),
        _ => String::new(),
    };
    println!(
        "restored {rel} from {}: {} rows, SHA-256 {} (as archived {}){attached}",
        store.describe(&ctx.schema, &ctx.table, &args.partition, "data.copy.gz"),
        manifest.rows,
        manifest.sha256,
        manifest.archived_at.to_rfc3339()
    );
    Ok(())
}
