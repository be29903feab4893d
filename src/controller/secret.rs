//! A policy's Secret → connection target. Keys: `uri`, or host, port, dbname,
//! username (or user), password; optional sslmode and sslrootcert (PEM). A
//! kubernetes.io/basic-auth Secret and CloudNativePG's `<cluster>-app` Secret work as they are.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use tokio_postgres::Config;

use crate::db::connect::{SslMode, Target};
use crate::error::{Error, Result};

/// Connection settings, and a key that changes whenever any of them does.
pub fn target_from_secret(secret: &Secret) -> Result<(Target, u64)> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut data: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        let s = String::from_utf8(v.0.clone())
            .map_err(|_| Error::Input(format!("Secret {name}: key {k} is not UTF-8")))?;
        data.insert(k.clone(), s.trim_end_matches('\n').to_string());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone());
    }
    let get = |k: &str| data.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut target =
        if let Some(uri) = get("uri") {
            // A file path means nothing in a cluster: the CA comes from the sslrootcert key.
            let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("sslrootcert="))
                .collect();
            let url = if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            Target::from_url(&url).map_err(|e| match e {
                Error::Input(m) if m.starts_with("sslmode") => {
                    Error::Input(format!("Secret {name}: {m}"))
                }
                _ => Error::Input(format!(
                    "Secret {name}: key uri is not a valid postgresql:// URL"
                )),
            })?
        } else {
            let host = get("host").ok_or_else(|| {
                Error::Input(format!(
                    "Secret {name}: needs key uri, or host (with port, dbname, username, password)"
                ))
            })?;
            let mut config = Config::new();
            config.host(host);
            if let Some(p) = get("port") {
                config.port(p.parse().map_err(|_| {
                    Error::Input(format!("Secret {name}: key port is not a number"))
                })?);
            }
            config.dbname(get("dbname").or(get("database")).unwrap_or("postgres"));
            if let Some(u) = get("username").or(get("user")) {
                config.user(u);
            }
            if let Some(p) = get("password") {
                config.password(p);
            }
            Target {
                config,
                sslmode: SslMode::Prefer,
                root_cert_pem: None,
            }
        };
    if let Some(mode) = get("sslmode") {
        target.sslmode = mode.parse()?;
    }
    if let Some(pem) = get("sslrootcert") {
        target.root_cert_pem = Some(pem.as_bytes().to_vec());
        if get("sslmode").is_none() && !data.get("uri").is_some_and(|u| u.contains("sslmode=")) {
            target.sslmode = SslMode::VerifyFull;
        }
    }
    let mut settings: Vec<(&str, &str)> =
        data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    settings.sort();
    Ok((target, crate::db::pool::target_key(&settings)))
}
