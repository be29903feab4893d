//! Archive before retire, the pure half: where a partition's archive lives, what its
//! manifest says, and whether what was read back is what was written. The I/O is in
//! `crate::archive`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What `manifest.json` says the data object is.
pub const FORMAT: &str = "pgpart-archive/1: COPY text format, gzip";
pub const DATA_OBJECT: &str = "data.copy.gz";
pub const MANIFEST_OBJECT: &str = "manifest.json";

/// The archive's folder for one partition, as people see it (the store encodes each part).
pub fn object_dir(schema: &str, table: &str, partition: &str) -> String {
    format!("{schema}/{table}/{partition}")
}

/// One column as the archive holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// `format_type` of the column, e.g. `timestamp with time zone`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Written last, after the data object was read back and verified: an archive without one
/// is unfinished (a killed pass), and its partition was not dropped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub schema: String,
    pub table: String,
    pub partition: String,
    /// `FOR VALUES ...` as the partition had it before its detach.
    pub bound: Option<String>,
    /// The columns in the data object, in its order (generated columns are not in it:
    /// they are computed again on restore).
    pub columns: Vec<Column>,
    pub rows: u64,
    /// Bytes of COPY text before compression.
    pub bytes: u64,
    /// Hex SHA-256 of the COPY text before compression.
    pub sha256: String,
    pub archived_at: DateTime<Utc>,
    pub server_version: String,
}

/// Rows, bytes and a SHA-256 of a COPY text stream, fed chunk by chunk: the same count
/// when the rows are written and when they are read back. In COPY text format every row
/// ends in one newline (newlines in values are written as `\n`).
#[derive(Clone, Default)]
pub struct Tally {
    rows: u64,
    bytes: u64,
    hash: Sha256,
}

/// What a [`Tally`] ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl Tally {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        self.bytes += chunk.len() as u64;
        self.hash.update(chunk);
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> Totals {
        let sha256 = self
            .hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Totals {
            rows: self.rows,
            bytes: self.bytes,
            sha256,
        }
    }
}

/// The archive is good only when the table's row count, the rows written and the rows read
/// back agree, and the bytes read back hash to what was written.
pub fn verify(table_rows: i64, written: &Totals, read_back: &Totals) -> Result<(), String> {
    if u64::try_from(table_rows).ok() != Some(written.rows) {
        return Err(format!(
            "the table has {table_rows} rows but {} were written",
            written.rows
        ));
    }
    if read_back != written {
        return Err(format!(
            "read back {} rows, {} bytes, SHA-256 {} where {} rows, {} bytes, SHA-256 {} were written",
            read_back.rows,
            read_back.bytes,
            read_back.sha256,
            written.rows,
            written.bytes,
            written.sha256
        ));
    }
    Ok(())
}

/// The restored rows match the manifest's.
pub fn verify_restore(manifest: &Manifest, read: &Totals, table_rows: i64) -> Result<(), String> {
    if read.rows != manifest.rows || read.sha256 != manifest.sha256 || read.bytes != manifest.bytes
    {
        return Err(format!(
            "the data object holds {} rows, SHA-256 {}, but its manifest says {} rows, SHA-256 {}: it is damaged or not this partition's",
            read.rows, read.sha256, manifest.rows, manifest.sha256
        ));
    }
    if u64::try_from(table_rows).ok() != Some(manifest.rows) {
        return Err(format!(
            "{} rows were read but the table holds {table_rows}",
            manifest.rows
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(chunks: &[&[u8]]) -> Totals {
        let mut t = Tally::default();
        for c in chunks {
            t.feed(c);
        }
        t.finish()
    }

    #[test]
    fn a_tally_counts_rows_whatever_the_chunking() {
        let whole = totals(&[b"1\ta\n2\tb\\nc\n3\t\\N\n"]);
        let split = totals(&[b"1\ta", b"\n2\tb\\", b"nc\n", b"3\t\\N\n"]);
        assert_eq!(whole, split);
        assert_eq!(whole.rows, 3);
        assert_eq!(whole.bytes, 16);
        assert_eq!(
            totals(&[]).sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verify_refuses_a_short_or_changed_archive() {
        let written = totals(&[b"1\n2\n"]);
        assert!(verify(2, &written, &written).is_ok());
        assert!(
            verify(3, &written, &written)
                .unwrap_err()
                .contains("3 rows")
        );
        let short = totals(&[b"1\n"]);
        assert!(
            verify(2, &written, &short)
                .unwrap_err()
                .contains("read back 1 rows")
        );
        let changed = totals(&[b"1\n3\n"]);
        assert!(verify(2, &written, &changed).is_err());
    }
}
