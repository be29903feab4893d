//! Policies from YAML files, for the CLI: one or more `PartitionPolicy` documents.

use serde::Deserialize;

use super::PartitionPolicy;
use crate::error::{Error, Result};

pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<PartitionPolicy>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| Error::Input(format!("{origin}: document {}: {e}", i + 1)))?;
        if value.is_null() {
            continue;
        }
        let api = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let kind = value
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if api != "pgpart.io/v1alpha1" || kind != "PartitionPolicy" {
            return Err(Error::Input(format!(
                "{origin}: document {}: expected apiVersion pgpart.io/v1alpha1 and kind PartitionPolicy, found {api:?} {kind:?}",
                i + 1
            )));
        }
        // The path (e.g. spec.range) makes "unknown field `premke`" findable.
        let policy: PartitionPolicy = serde_path_to_error::deserialize(value).map_err(|e| {
            Error::Input(format!(
                "{origin}: document {}: {}: {}",
                i + 1,
                e.path(),
                e.inner()
            ))
        })?;
        out.push(policy);
    }
    if out.is_empty() {
        return Err(Error::Input(format!(
            "{origin}: no PartitionPolicy documents found"
        )));
    }
    Ok(out)
}

pub fn load_file(path: &std::path::Path) -> Result<Vec<PartitionPolicy>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    parse_documents(&text, &path.display().to_string())
}
