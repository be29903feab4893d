//! A policy's Secret → connection target. Keys: `uri`, or host, port, dbname,
//! username (or user), password; optional sslmode and sslrootcert (PEM). A
//! kubernetes.io/basic-auth Secret and CloudNativePG's `<cluster>-app` Secret work as they are.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio_postgres::Config;

use super::{SECRET_WATCH_LABEL, SecretWatch};
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
    Ok((target, crate::db::targets::target_key(&settings)))
}

/// The Secrets in `api`'s scope that were created, changed or deleted since the watch
/// began, as `--secret-watch` selects them; `None` when nothing is watched. Only
/// metadata is asked for.
pub fn changes(
    api: Api<PartialObjectMeta<Secret>>,
    mode: SecretWatch,
) -> Option<impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static>
{
    let config = match mode {
        SecretWatch::None => return None,
        SecretWatch::Labeled => watcher::Config::default().labels(SECRET_WATCH_LABEL),
        SecretWatch::All => watcher::Config::default(),
    };
    let mut versions = SecretVersions::default();
    let stream = watcher(api, config.any_semantic())
        .default_backoff()
        .flat_map(move |event| {
            let changed = match event {
                Ok(event) => versions.changed(event).into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::warn!("watching Secrets (retrying): {e}");
                    vec![Err(e)]
                }
            };
            futures::stream::iter(changed)
        });
    Some(stream)
}

type SecretKey = (String, String);

/// The resource version of every watched Secret, to tell a change from a repeat. The
/// first listing only learns versions (every policy's first pass reads its Secret
/// anyway); a relist after a broken watch reports what changed while it was down,
/// deletions included.
#[derive(Default)]
struct SecretVersions {
    versions: HashMap<SecretKey, String>,
    /// The keys a relist in progress has seen so far.
    relisted: HashSet<SecretKey>,
    /// The first listing is done.
    listed: bool,
}

impl SecretVersions {
    /// The Secrets that `event` shows changed.
    fn changed(
        &mut self,
        event: watcher::Event<PartialObjectMeta<Secret>>,
    ) -> Vec<PartialObjectMeta<Secret>> {
        let key = |s: &PartialObjectMeta<Secret>| (s.namespace().unwrap_or_default(), s.name_any());
        match event {
            watcher::Event::Apply(s) => {
                self.versions
                    .insert(key(&s), s.resource_version().unwrap_or_default());
                vec![s]
            }
            watcher::Event::Delete(s) => {
                self.versions.remove(&key(&s));
                vec![s]
            }
            watcher::Event::Init => {
                self.relisted.clear();
                vec![]
            }
            watcher::Event::InitApply(s) => {
                let version = s.resource_version().unwrap_or_default();
                let before = self.versions.insert(key(&s), version.clone());
                self.relisted.insert(key(&s));
                if self.listed && before != Some(version) {
                    vec![s]
                } else {
                    vec![]
                }
            }
            watcher::Event::InitDone => {
                let seen = std::mem::take(&mut self.relisted);
                let mut gone = Vec::new();
                self.versions.retain(|(ns, name), _| {
                    let kept = seen.contains(&(ns.clone(), name.clone()));
                    if !kept {
                        let meta = ObjectMeta {
                            namespace: Some(ns.clone()),
                            name: Some(name.clone()),
                            ..Default::default()
                        };
                        gone.push(meta.into_response_partial());
                    }
                    kept
                });
                // Empty after the first listing: nothing was known before it.
                self.listed = true;
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watcher::Event;

    fn meta(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        ObjectMeta {
            namespace: Some("app".into()),
            name: Some(name.into()),
            resource_version: Some(version.into()),
            ..Default::default()
        }
        .into_response_partial()
    }

    fn names(changed: Vec<PartialObjectMeta<Secret>>) -> Vec<String> {
        changed.iter().map(|s| s.name_any()).collect()
    }

    fn list(v: &mut SecretVersions, secrets: &[(&str, &str)]) -> Vec<String> {
        let mut changed = names(v.changed(Event::Init));
        for (name, version) in secrets {
            changed.extend(names(v.changed(Event::InitApply(meta(name, version)))));
        }
        changed.extend(names(v.changed(Event::InitDone)));
        changed
    }

    #[test]
    fn the_first_listing_only_learns_versions() {
        let mut v = SecretVersions::default();
        assert!(list(&mut v, &[("a", "1"), ("b", "2")]).is_empty());
    }

    #[test]
    fn watched_changes_and_deletions_are_reported() {
        let mut v = SecretVersions::default();
        list(&mut v, &[("a", "1")]);
        assert_eq!(names(v.changed(Event::Apply(meta("a", "5")))), ["a"]);
        assert_eq!(names(v.changed(Event::Apply(meta("c", "6")))), ["c"]);
        assert_eq!(names(v.changed(Event::Delete(meta("a", "7")))), ["a"]);
    }

    #[test]
    fn a_relist_reports_what_changed_while_the_watch_was_down() {
        let mut v = SecretVersions::default();
        list(&mut v, &[("same", "1"), ("rotated", "2"), ("deleted", "3")]);
        let mut changed = list(&mut v, &[("same", "1"), ("rotated", "9"), ("new", "10")]);
        changed.sort();
        assert_eq!(changed, ["deleted", "new", "rotated"]);
        // What the relist learned is the base for the next one.
        assert!(list(&mut v, &[("same", "1"), ("rotated", "9"), ("new", "10")]).is_empty());
    }
}
