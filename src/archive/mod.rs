//! Archive before retire, the I/O half: a detached partition written to the store, read
//! back and verified, then dropped, all in one transaction that holds SHARE on it; and
//! `pgpart restore`, the way back. What is written and checked is decided in
//! `plan::archive`.

pub mod store;

use std::io::Write;

use bytes::Bytes;
use chrono::Utc;
use flate2::Compression;
use flate2::write::{GzDecoder, GzEncoder};
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::plan::action::{self, TableCtx};
use crate::plan::archive::{self as rules, Column, FORMAT, Manifest, Tally, Totals};
use crate::plan::quote::ident;
use store::Store;

/// Gzip output is handed to the store in pieces of about this size.
const CHUNK: usize = 1024 * 1024;

/// The columns COPY moves, in order: all but generated ones (computed again on restore).
async fn copy_columns(client: &Client, rel: &str) -> Result<Vec<Column>> {
    Ok(client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
                AND attgenerated = '' ORDER BY attnum",
            &[&rel],
        )
        .await?
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_name: r.get(1),
        })
        .collect())
}

fn column_list(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run `body` in a transaction that waits at most lockTimeout for its locks; commit when it
/// succeeds, roll back otherwise (the session stays usable).
async fn in_transaction<T>(
    client: &Client,
    ctx: &TableCtx,
    body: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    client
        .batch_execute(&format!("BEGIN; {}", action::lock_timeout_sql(ctx)))
        .await?;
    match body.await {
        Ok(v) => {
            client.batch_execute("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Archive the detached `partition` and drop it. One transaction: SHARE on the partition
/// (no write reaches it until the end), COPY out through gzip into the store, the object
/// read back and checked against the rows written and the table's count, the manifest,
/// then DROP. Any failure, or a kill, rolls back: the partition is kept, marked, and the
/// next pass tries again from the start; an unfinished object is never one with a manifest.
pub async fn archive_and_drop(
    client: &Client,
    ctx: &TableCtx,
    partition: &str,
    bound: Option<String>,
) -> Result<Manifest> {
    let spec = ctx.archive.as_ref().ok_or_else(|| {
        Error::invalid(
            "spec.retention.archive",
            "required when spec.retention.action is Archive",
        )
    })?;
    let store = Store::open(spec)?;
    let rel = ctx.child(partition);
    in_transaction(client, ctx, async {
        client
            .batch_execute(&format!("LOCK TABLE {rel} IN SHARE MODE"))
            .await?;
        let columns = copy_columns(client, &rel).await?;
        let table_rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {rel}"), &[])
            .await?
            .get(0);
        let server_version: String = client
            .query_one("SELECT current_setting('server_version')", &[])
            .await?
            .get(0);

        let written = write_data(client, &store, ctx, partition, &rel, &columns).await?;
        let read_back = read_data(&store, &ctx.schema, &ctx.table, partition).await?;
        rules::verify(table_rows, &written, &read_back).map_err(|e| {
            Error::Archive(format!(
                "{}: {e}; {partition} is kept",
                store.describe(&ctx.schema, &ctx.table, partition, rules::DATA_OBJECT)
            ))
        })?;
        let manifest = Manifest {
            format: FORMAT.to_string(),
            schema: ctx.schema.clone(),
            table: ctx.table.clone(),
            partition: partition.to_string(),
            bound,
            columns,
            rows: written.rows,
            bytes: written.bytes,
            sha256: written.sha256,
            archived_at: Utc::now(),
            server_version,
        };
        store.put_manifest(&manifest).await?;
        client.batch_execute(&format!("DROP TABLE {rel}")).await?;
        Ok(manifest)
    })
    .await
}

/// COPY the partition out through gzip into the data object; what was written.
async fn write_data(
    client: &Client,
    store: &Store,
    ctx: &TableCtx,
    partition: &str,
    rel: &str,
    columns: &[Column],
) -> Result<Totals> {
    let mut writer = store.data_writer(&ctx.schema, &ctx.table, partition);
    let written = async {
        let copy = client
            .copy_out(&format!("COPY {rel} ({}) TO STDOUT", column_list(columns)))
            .await?;
        futures::pin_mut!(copy);
        let mut tally = Tally::default();
        let mut gz = GzEncoder::new(Vec::with_capacity(2 * CHUNK), Compression::fast());
        let mut reported = 0;
        while let Some(chunk) = copy.next().await {
            let chunk = chunk?;
            tally.feed(&chunk);
            gz.write_all(&chunk).expect("writing to a Vec");
            if gz.get_ref().len() >= CHUNK {
                writer.put(std::mem::take(gz.get_mut())).await?;
            }
            if tally.bytes() >= reported + 256 * 1024 * 1024 {
                reported = tally.bytes();
                tracing::info!(table = %ctx.table, partition, rows = tally.rows(), bytes = tally.bytes(), "archiving");
            }
        }
        writer.put(gz.finish().expect("writing to a Vec")).await?;
        Ok::<_, Error>(tally.finish())
    }
    .await;
    match written {
        Ok(t) => {
            writer.finish().await?;
            Ok(t)
        }
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// Feeds decompressed bytes to a tally (and, on restore, to a buffer for COPY IN).
struct Sink {
    tally: Tally,
    keep: Option<Vec<u8>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tally.feed(buf);
        if let Some(k) = &mut self.keep {
            k.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn damaged(what: &str, e: std::io::Error) -> Error {
    Error::Archive(format!("{what} is not valid gzip: {e}"))
}

/// Read the data object back: its rows, bytes and hash after decompression.
async fn read_data(store: &Store, schema: &str, table: &str, partition: &str) -> Result<Totals> {
    let what = store.describe(schema, table, partition, rules::DATA_OBJECT);
    let mut gz = GzDecoder::new(Sink {
        tally: Tally::default(),
        keep: None,
    });
    let data = store.data(schema, table, partition).await?;
    futures::pin_mut!(data);
    while let Some(chunk) = data.next().await {
        gz.write_all(&chunk?).map_err(|e| damaged(&what, e))?;
    }
    let sink = gz.finish().map_err(|e| damaged(&what, e))?;
    Ok(sink.tally.finish())
}

/// How `pgpart restore` brings a partition back.
pub enum RestoreAs {
    /// A standalone table of this name in the parent's schema.
    Table(String),
    /// The partition again, under its own name and bound.
    Attached,
}

/// Bring an archived partition back from the store, in one transaction: the table made
/// like the parent, the rows copied in, checked against the manifest (count and SHA-256),
/// and attached if asked. Any failure rolls it all back.
pub async fn restore(
    client: &Client,
    ctx: &TableCtx,
    store: &Store,
    partition: &str,
    how: &RestoreAs,
) -> Result<(Manifest, String)> {
    let manifest = store.manifest(&ctx.schema, &ctx.table, partition).await?;
    let name = match how {
        RestoreAs::Table(n) => n.clone(),
        RestoreAs::Attached => partition.to_string(),
    };
    let bound = match how {
        RestoreAs::Attached => Some(manifest.bound.clone().ok_or_else(|| {
            Error::Input(format!(
                "the archive of {partition} keeps no bound: restore it as a table (--as-table NAME)"
            ))
        })?),
        RestoreAs::Table(_) => None,
    };
    let rel = ctx.child(&name);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&rel])
        .await?
        .get(0);
    if exists {
        return Err(Error::Input(format!(
            "{rel} exists already: restore under another name (--as-table NAME), or drop it first"
        )));
    }
    let restored = in_transaction(client, ctx, async {
        client
            .batch_execute(&action::create_like(ctx, &name))
            .await?;
        let columns = column_list(&manifest.columns);
        let sink = client
            .copy_in::<_, Bytes>(&format!("COPY {rel} ({columns}) FROM STDIN"))
            .await?;
        futures::pin_mut!(sink);
        let what = store.describe(&ctx.schema, &ctx.table, partition, rules::DATA_OBJECT);
        let mut gz = GzDecoder::new(Sink {
            tally: Tally::default(),
            keep: Some(Vec::with_capacity(2 * CHUNK)),
        });
        let data = store.data(&ctx.schema, &ctx.table, partition).await?;
        futures::pin_mut!(data);
        while let Some(chunk) = data.next().await {
            gz.write_all(&chunk?).map_err(|e| damaged(&what, e))?;
            let keep = gz.get_mut().keep.as_mut().expect("kept");
            if keep.len() >= CHUNK {
                sink.send(Bytes::from(std::mem::take(keep))).await?;
            }
        }
        let mut sink_state = gz.finish().map_err(|e| damaged(&what, e))?;
        let rest = sink_state.keep.take().unwrap_or_default();
        if !rest.is_empty() {
            sink.send(Bytes::from(rest)).await?;
        }
        let copied = sink.finish().await?;
        let read = sink_state.tally.finish();
        rules::verify_restore(&manifest, &read, copied as i64)
            .map_err(|e| Error::Archive(format!("{what}: {e}; nothing was restored")))?;
        if let Some(bound) = &bound {
            client
                .batch_execute(&action::attach(ctx, &name, bound))
                .await?;
        }
        Ok(rel.clone())
    })
    .await?;
    Ok((manifest, restored))
}
