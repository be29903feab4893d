//! Real PostgreSQL servers for integration tests.
//!
//! The servers are started outside the test binary (see `scripts/lib/postgres.sh`:
//! `pg_up DIR NAME MAJOR` prints a superuser URL) and handed over in environment variables:
//!
//! * `PGPART_TEST_PG15_URL` — superuser URL of a PostgreSQL 15 server, `postgres` database
//! * `PGPART_TEST_PG17_URL` — the same for PostgreSQL 17
//!
//! A missing variable is a test failure (panic), never a skip: a green run must mean the
//! tests really ran against both majors.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

/// Environment variable holding the admin URL for each supported major.
pub const SERVER_ENV: [(u32, &str); 2] =
    [(15, "PGPART_TEST_PG15_URL"), (17, "PGPART_TEST_PG17_URL")];

/// One PostgreSQL server under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Major version this server is expected to be (15 or 17).
    pub major: u32,
    /// Superuser URL to the `postgres` database, e.g. `postgresql://postgres@127.0.0.1:5432/postgres`.
    pub admin_url: String,
}

/// All servers the tests must run against, one per supported major. Panics if any is not configured.
pub fn servers() -> Vec<Server> {
    SERVER_ENV.iter().map(|&(major, _)| server(major)).collect()
}

/// The server of one major (15 or 17). Panics if it is not configured.
pub fn server(major: u32) -> Server {
    let var = SERVER_ENV
        .iter()
        .find(|(m, _)| *m == major)
        .unwrap_or_else(|| panic!("no test PostgreSQL server is defined for major {major}"))
        .1;
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Server {
            major,
            admin_url: url.trim().to_owned(),
        },
        _ => panic!(
            "{var} is not set: integration tests need a real PostgreSQL {major} server. \
             Start one with `source scripts/lib/postgres.sh && pg_install && \
             export {var}=$(pg_up \"$DIR\" pg{major} {major})`"
        ),
    }
}

impl Server {
    /// A new superuser connection to the `postgres` database.
    pub async fn admin_client(&self) -> Client {
        connect(&self.admin_url).await
    }
}

/// A freshly created, uniquely named database; drop it with [`TestDb::drop_db`].
pub struct TestDb {
    pub server: Server,
    /// Database name, e.g. `t_1234_0_9f3a1c2b`.
    pub name: String,
    /// Superuser URL to this database.
    pub url: String,
    /// Connected client (its connection task runs on the current tokio runtime).
    pub client: Client,
}

impl TestDb {
    /// Creates a new database on `server` and connects to it.
    pub async fn create(server: &Server) -> TestDb {
        let name = unique_db_name();
        let admin = server.admin_client().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .unwrap_or_else(|e| {
                panic!("CREATE DATABASE {name} on PostgreSQL {}: {e}", server.major)
            });
        let url = with_database(&server.admin_url, &name);
        let client = connect(&url).await;
        TestDb {
            server: server.clone(),
            name,
            url,
            client,
        }
    }

    /// A new, additional connection to this database.
    pub async fn connect(&self) -> Client {
        connect(&self.url).await
    }

    /// Drops the database, terminating any connection still open to it.
    pub async fn drop_db(self) {
        let TestDb {
            server,
            name,
            client,
            ..
        } = self;
        drop(client);
        let admin = server.admin_client().await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            ))
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {name} on PostgreSQL {}: {e}", server.major));
    }
}

/// Connects without TLS and spawns the connection task; panics with the URL on failure.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    let url = url.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection to {url} ended with an error: {e}");
        }
    });
    client
}

/// Runs `statements` (a batch); panics with them and the error on failure.
pub async fn sql(client: &Client, statements: &str) {
    client
        .batch_execute(statements)
        .await
        .unwrap_or_else(|e| panic!("{statements}\nfailed: {e:?}"));
}

/// `t_<pid>_<counter>_<random>`: unique across test threads, test binaries and reruns.
fn unique_db_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher(); // randomly seeded per process and per call
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u64(n);
    format!("t_{}_{}_{:08x}", std::process::id(), n, h.finish() as u32)
}

/// Double-quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The same URL with its database (path) replaced by `db`; any `?query` is kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}
