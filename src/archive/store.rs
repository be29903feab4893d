//! Where archives are kept: a directory or an S3-compatible bucket, behind object_store's
//! one interface. Objects are written whole or not at all (a file is renamed into place, an
//! S3 multipart upload completes or is aborted), so a killed pass leaves no object that
//! looks finished.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::plan::archive::{DATA_OBJECT, MANIFEST_OBJECT, Manifest, object_dir};
use crate::policy::ArchiveSpec;

pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
}

/// A store error, naming the archive and the object (never credentials: object_store's
/// messages carry paths and the server's answer).
fn store_error(url: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Archive(format!("{url}: {what}: {e}"))
}

impl Store {
    pub fn open(spec: &ArchiveSpec) -> Result<Store> {
        let url = spec.url.clone();
        let inner: Arc<dyn ObjectStore> = if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir)
                .map_err(|e| store_error(&url, "cannot create the directory", e))?;
            Arc::new(
                LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| store_error(&url, "cannot open the directory", e))?,
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            // reqwest's rustls takes the process's provider: pgpart's is ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &spec.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(region) = &spec.region {
                b = b.with_region(region);
            }
            let s3 = b
                .build()
                .map_err(|e| store_error(&url, "cannot open the bucket", e))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        } else {
            return Err(Error::invalid(
                "spec.retention.archive.url",
                format!("{url:?}: must be file:///absolute/dir or s3://bucket[/prefix]"),
            ));
        };
        Ok(Store { inner, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(schema: &str, table: &str, partition: &str, object: &str) -> Path {
        Path::from_iter([schema, table, partition, object])
    }

    /// Where one partition's object is, for messages.
    pub fn describe(&self, schema: &str, table: &str, partition: &str, object: &str) -> String {
        format!(
            "{}/{}/{object}",
            self.url.trim_end_matches('/'),
            object_dir(schema, table, partition)
        )
    }

    /// A writer of the partition's data object; nothing is visible until `finish`.
    pub fn data_writer(&self, schema: &str, table: &str, partition: &str) -> DataWriter {
        DataWriter {
            inner: BufWriter::with_capacity(
                self.inner.clone(),
                Self::path(schema, table, partition, DATA_OBJECT),
                8 * 1024 * 1024,
            ),
            what: self.describe(schema, table, partition, DATA_OBJECT),
        }
    }

    /// The partition's data object, chunk by chunk.
    pub async fn data(
        &self,
        schema: &str,
        table: &str,
        partition: &str,
    ) -> Result<impl futures::Stream<Item = Result<Bytes>> + use<>> {
        let what = self.describe(schema, table, partition, DATA_OBJECT);
        let got = self
            .inner
            .get(&Self::path(schema, table, partition, DATA_OBJECT))
            .await
            .map_err(|e| store_error(&self.url, &format!("cannot read {what}"), e))?;
        let url = self.url.clone();
        Ok(got
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| store_error(&url, &format!("reading {what}"), e))))
    }

    pub async fn put_manifest(&self, m: &Manifest) -> Result<()> {
        let what = self.describe(&m.schema, &m.table, &m.partition, MANIFEST_OBJECT);
        let body = serde_json::to_vec_pretty(m).expect("a manifest serializes");
        self.inner
            .put(
                &Self::path(&m.schema, &m.table, &m.partition, MANIFEST_OBJECT),
                PutPayload::from(body),
            )
            .await
            .map_err(|e| store_error(&self.url, &format!("cannot write {what}"), e))?;
        Ok(())
    }

    pub async fn manifest(&self, schema: &str, table: &str, partition: &str) -> Result<Manifest> {
        let what = self.describe(schema, table, partition, MANIFEST_OBJECT);
        let body = self
            .inner
            .get(&Self::path(schema, table, partition, MANIFEST_OBJECT))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => Error::Input(format!(
                    "{what} does not exist: no finished archive of {partition} (a killed archive leaves none; its partition was kept)"
                )),
                e => store_error(&self.url, &format!("cannot read {what}"), e),
            })?
            .bytes()
            .await
            .map_err(|e| store_error(&self.url, &format!("reading {what}"), e))?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::Archive(format!("{what} is not a pgpart manifest: {e}")))
    }
}

pub struct DataWriter {
    inner: BufWriter,
    what: String,
}

impl DataWriter {
    pub async fn put(&mut self, bytes: Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let what = &self.what;
        self.inner
            .put(Bytes::from(bytes))
            .await
            .map_err(|e| Error::Archive(format!("writing {what}: {e}")))
    }

    /// Complete the object: from here on it is visible whole.
    pub async fn finish(mut self) -> Result<()> {
        let what = &self.what;
        self.inner
            .shutdown()
            .await
            .map_err(|e| Error::Archive(format!("finishing {what}: {e}")))
    }

    /// Give up on the object: a multipart upload's parts are removed.
    pub async fn abort(mut self) {
        let _ = self.inner.abort().await;
    }
}
