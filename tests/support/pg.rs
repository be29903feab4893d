//! Real PostgreSQL servers for integration tests.
//!
//! The servers are started outside the test binary (`scripts/testenv up`, which calls
//! `pg_up DIR NAME MAJOR` from `scripts/lib/postgres.sh`) and handed over in environment
//! variables:
//!
//! * `PGPART_TEST_PG_MAJORS` — the majors of this run, e.g. `14 15 16 17 18`
//! * `PGPART_TEST_PG<major>_URL` — superuser URL of that server's `postgres` database
//!
//! A missing variable is a test failure (panic), never a skip: a green run must mean the
//! tests really ran. The one exception is [`on_every_major!`](crate::on_every_major): a run
//! that chose fewer majors (`scripts/test --pg 16`) says by name which cases it left out.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

/// Every major pgpart supports, oldest first.
pub const MAJORS: [u32; 5] = [14, 15, 16, 17, 18];

/// Environment variable listing the majors of this run.
pub const MAJORS_ENV: &str = "PGPART_TEST_PG_MAJORS";

/// One PostgreSQL server under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Major version this server is expected to be.
    pub major: u32,
    /// Superuser URL to the `postgres` database, e.g. `postgresql://postgres@127.0.0.1:5432/postgres`.
    pub admin_url: String,
}

/// The majors this run's environment started. Panics if it names none or an unknown one.
pub fn majors_in_run() -> Vec<u32> {
    let list = std::env::var(MAJORS_ENV).unwrap_or_default();
    let majors: Vec<u32> = list
        .split_whitespace()
        .map(|m| match m.parse() {
            Ok(m) if MAJORS.contains(&m) => m,
            _ => panic!("{MAJORS_ENV}={list:?}: {m:?} is not a supported major ({MAJORS:?})"),
        })
        .collect();
    assert!(
        !majors.is_empty(),
        "{MAJORS_ENV} is not set: integration tests need real PostgreSQL servers; \
         run them through scripts/test, or `scripts/testenv up DIR && source DIR/env`"
    );
    majors
}

/// Every server of this run, one per major.
pub fn servers() -> Vec<Server> {
    majors_in_run().into_iter().map(server).collect()
}

/// The server of one major, or `None` (said on stderr, naming the case) when this run left
/// that major out. Used by [`on_every_major!`](crate::on_every_major) only.
pub fn server_in_run(major: u32, case: &str) -> Option<Server> {
    if majors_in_run().contains(&major) {
        Some(server(major))
    } else {
        eprintln!("{case}: not run: PostgreSQL {major} is not in {MAJORS_ENV}");
        None
    }
}

/// The server of one major. Panics if it is not configured.
pub fn server(major: u32) -> Server {
    let var = format!("PGPART_TEST_PG{major}_URL");
    match std::env::var(&var) {
        Ok(url) if !url.trim().is_empty() => Server {
            major,
            admin_url: url.trim().to_owned(),
        },
        _ => panic!(
            "{var} is not set: this test needs a real PostgreSQL {major} server. \
             scripts/testenv starts it unless PGPART_TESTENV_PG leaves it out"
        ),
    }
}

/// One async test per supported major for each named `async fn(&Server)`:
/// `on_every_major!(a, b)` makes `a::pg14` … `a::pg18`, each on a two-thread runtime;
/// `on_every_major!(worker_threads = 4; a, b)` chooses the thread count.
#[macro_export]
macro_rules! on_every_major {
    (worker_threads = $threads:literal; $($name:ident),* $(,)?) => {$(
        mod $name {
            $crate::on_every_major!(@case $threads, $name, pg14, 14);
            $crate::on_every_major!(@case $threads, $name, pg15, 15);
            $crate::on_every_major!(@case $threads, $name, pg16, 16);
            $crate::on_every_major!(@case $threads, $name, pg17, 17);
            $crate::on_every_major!(@case $threads, $name, pg18, 18);
        }
    )*};
    (@case $threads:literal, $name:ident, $test:ident, $major:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $test() {
            let case = concat!(stringify!($name), "::", stringify!($test));
            if let Some(server) = $crate::support::pg::server_in_run($major, case) {
                super::$name(&server).await
            }
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_every_major!(worker_threads = 2; $($name),*);
    };
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

/// Creates `uuidv7_at(t timestamptz) RETURNS uuid` in the connected database: a UUIDv7 for
/// the instant `t`, made by the server. On PostgreSQL 18 it is the built-in `uuidv7()`
/// shifted to `t`; older majors have no uuidv7(), so there it is the same layout in SQL
/// (48 bits of milliseconds since 1970, version 7, variant 10, random bits).
pub async fn create_uuidv7_at(client: &Client) {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("server_version_num")
        .get(0);
    let body = if version >= 180_000 {
        "SELECT uuidv7(t - clock_timestamp())"
    } else {
        "SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0')
                 || '7' || substr(md5(random()::text), 1, 3)
                 || to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid"
    };
    sql(
        client,
        &format!(
            "CREATE FUNCTION uuidv7_at(t timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $f$ {body} $f$"
        ),
    )
    .await;
}
