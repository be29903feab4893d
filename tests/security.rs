//! Security: no secret value anywhere (logs at trace, events, status, error output) after
//! runs that include failures; TLS with verify-full against the test's own CA (and failing
//! closed with another CA); and a role with minimal privileges doing everything pgpart does.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use pgpart::policy::PartitionPolicy;
use serde_json::{Value, json};
use support::cli::{self, PolicyFile, Run, policy_doc};
use support::clock;
use support::controller::{
    self as ctl, WAIT, apply, condition, conditions_summary, uri_secret, wait_for, wait_ready,
};
use support::faults::{OwnPg, TraceController};
use support::kube::{self as testkube, TestNamespace};
use support::pg::{self, TestDb};

const PASSWORD: &str = "S3cr3t-Zebra-42";

/// A test CA, a server certificate it signed (SAN 127.0.0.1, localhost), and another CA.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Certs {
        let dir = dir.join("certs");
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(
                "set -e; exec 2>openssl.log
                 openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=pgpart-test-ca
                 openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=pgpart-other-ca
                 openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
                 printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > ext
                 openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext",
            )
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(
            out.success(),
            "openssl: {}",
            std::fs::read_to_string(dir.join("openssl.log")).unwrap_or_default()
        );
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }
}

/// An own PostgreSQL 17 with ssl=on (the test CA's server certificate), password auth and
/// `log_connections`, so a test can read how each session connected.
fn tls_server() -> (OwnPg, Certs) {
    let server = OwnPg::start(17, &[]);
    let certs = Certs::make(&server.dir);
    let crt = server.write_owned("server.crt", certs.read("server.crt").as_bytes(), 0o644);
    let key = server.write_owned("server.key", certs.read("server.key").as_bytes(), 0o600);
    server.restart_with(&[
        "ssl=on",
        &format!("ssl_cert_file={}", crt.display()),
        &format!("ssl_key_file={}", key.display()),
        "log_connections=on",
    ]);
    server.password_auth();
    (server, certs)
}

/// `pgpart ARGS` with `PGPART_LOG=trace`.
async fn pgpart_trace(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(cli::PGPART)
        .args(args)
        .env_remove("PGPART_DATABASE_URL")
        .env("PGPART_LOG", "trace")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn cli_run(cmd: &str, policy: &str, url: &str) -> Run {
    cli_run_at(cmd, policy, url, &clock::now_arg()).await
}

async fn cli_run_at(cmd: &str, policy: &str, url: &str, now: &str) -> Run {
    let file = PolicyFile::new(policy);
    pgpart_trace(&[
        cmd,
        "--policy",
        file.path_str(),
        "--database-url",
        url,
        "--now",
        now,
    ])
    .await
}

/// The server log's `connection authorized` lines of role `user`.
fn authorized_sessions(server: &OwnPg, user: &str) -> Vec<String> {
    std::fs::read_to_string(server.base.join("postgres.log"))
        .expect("read the server log")
        .lines()
        .filter(|l| l.contains(&format!("connection authorized: user={user} ")))
        .map(str::to_owned)
        .collect()
}

fn monthly_policy() -> String {
    policy_doc(
        "events",
        "table: public.events
         range:
           interval: 1 month
           premake: 2",
    )
}

async fn app_table(admin: &tokio_postgres::Client) {
    admin
        .batch_execute(&format!(
            "CREATE ROLE app LOGIN PASSWORD '{PASSWORD}';
             GRANT CREATE ON SCHEMA public TO app;
             CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             ALTER TABLE public.events OWNER TO app;"
        ))
        .await
        .unwrap();
}

/// A monthly policy (premake 2, re-checked every 5 s) on `table` with Secret `secret`.
fn policy(name: &str, secret: &str, table: &str) -> Value {
    ctl::policy(
        name,
        secret,
        json!({
            "table": table,
            "range": { "interval": "1 month", "premake": 2 },
            "schedule": { "every": "5s" },
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_connects_and_another_ca_fails_closed() {
    let (server, certs) = tls_server();
    let admin = pg::connect(&server.url).await;
    app_table(&admin).await;
    let base = format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );

    let good = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        certs.path("ca.pem")
    );
    assert!(authorized_sessions(&server, "app").is_empty());
    let cli_now = clock::now();
    cli_run_at("apply", &monthly_policy(), &good, &clock::rfc3339(cli_now))
        .await
        .ok("apply with verify-full and the right CA");
    assert_eq!(
        cli::partition_names(&admin, "public.events").await,
        clock::monthly("events", cli_now, 2)
    );
    // The server saw the CLI's sessions arrive over TLS, and no other kind.
    let sessions = authorized_sessions(&server, "app");
    assert!(!sessions.is_empty(), "the CLI's session was not logged");
    assert!(
        sessions.iter().all(|l| l.contains("SSL enabled")),
        "a session of the CLI did not use TLS: {sessions:#?}"
    );
    let before = cli::snapshot(&admin, true).await;
    let wider = monthly_policy().replace("premake: 2", "premake: 5");
    for (what, url) in [
        (
            "another CA",
            format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                certs.path("other.pem")
            ),
        ),
        (
            "verify-full by a name not in the certificate",
            format!(
                "postgresql://app:{PASSWORD}@127.0.0.2:{}/postgres?sslmode=verify-full&sslrootcert={}",
                server.port,
                certs.path("ca.pem")
            ),
        ),
    ] {
        let run = cli_run("apply", &wider, &url).await;
        run.expect_code(1, what);
        let text = run.both().to_lowercase();
        assert!(
            text.contains("certificate") || text.contains("tls"),
            "{what}: unclear message:\n{}",
            run.both()
        );
        assert!(!run.both().contains(PASSWORD), "{what}: password in output");
    }
    cli::assert_same_snapshot(&before, &cli::snapshot(&admin, true).await, "failed TLS");

    // The controller: a Secret carrying the CA as PEM, verify-full.
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    let ns = TestNamespace::new(&client, "tls").await;
    let secrets = ns.api::<Secret>();
    let policies = ns.api::<PartitionPolicy>();
    apply(
        &secrets,
        &json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "db" }, "type": "Opaque",
            "stringData": {
                "host": "127.0.0.1", "port": server.port.to_string(), "dbname": "postgres",
                "username": "app", "password": PASSWORD,
                "sslmode": "verify-full", "sslrootcert": certs.read("ca.pem"),
            },
        }),
    )
    .await
    .unwrap();
    let controller = ctl::Controller::start(ns.name()).await;
    let mut doc = policy("events", "db", "public.events");
    doc["spec"]["range"]["premake"] = json!(4);
    apply(&policies, &doc).await.unwrap();
    wait_ready(&policies, "events", WAIT).await;
    // The CLI's months, and the month of the controller's last pass and four ahead.
    ctl::wait_partitions_of_last_pass(
        &policies,
        "events",
        &admin,
        "public.events",
        |names, pass| names == clock::monthly_between("events", cli_now, pass, 4),
    )
    .await;
    drop(controller);
    ns.cleanup().await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_in_logs_events_status_or_errors() {
    let (server, certs) = tls_server();
    let admin = pg::connect(&server.url).await;
    app_table(&admin).await;
    let good = format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );
    let unreachable = format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{}/postgres?connect_timeout=3",
        ctl::free_port()
    );
    let wrong_user = format!(
        "postgresql://nobody:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );
    let bad_tls = format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        server.port,
        certs.path("other.pem")
    );
    // The password is right but the role does not own the table: the run fails inside the database.
    admin
        .batch_execute(&format!("CREATE ROLE other LOGIN PASSWORD '{PASSWORD}'"))
        .await
        .unwrap();
    let not_owner = format!(
        "postgresql://other:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );

    let mut output = String::new();
    for (url, code) in [
        (&good, 0),
        (&unreachable, 1),
        (&wrong_user, 1),
        (&bad_tls, 1),
        (&not_owner, 1),
    ] {
        for cmd in ["plan", "apply"] {
            let premake = if code == 0 {
                "premake: 3"
            } else {
                "premake: 6"
            };
            let run = cli_run(cmd, &monthly_policy().replace("premake: 2", premake), url).await;
            let tail: String = run
                .stderr
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n");
            if code == 0 || (cmd == "plan" && url == &not_owner) {
                assert_eq!(run.code, 0, "{cmd} {url}: {}\n{tail}", run.stdout);
            } else {
                assert_eq!(
                    run.code, 1,
                    "{cmd} {url} should fail: {}\n{tail}",
                    run.stdout
                );
            }
            output.push_str(&run.both());
        }
    }
    // A bad --database-url flag altogether.
    let run = cli_run(
        "plan",
        &monthly_policy(),
        &format!("postgresql://app:{PASSWORD}@[::1"),
    )
    .await;
    assert_ne!(run.code, 0);
    output.push_str(&run.both());
    assert!(
        output.lines().filter(|l| l.contains("TRACE")).count() >= 10,
        "the CLI runs did not log at trace, so the check below would prove little:\n{output}"
    );

    // The controller at trace level, with good and failing Secrets.
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    let ns = TestNamespace::new(&client, "secrets").await;
    let secrets = ns.api::<Secret>();
    let policies = ns.api::<PartitionPolicy>();
    admin
        .batch_execute(
            "CREATE TABLE public.t2 (at timestamptz NOT NULL) PARTITION BY RANGE (at); ALTER TABLE public.t2 OWNER TO app;
             CREATE TABLE public.t3 (at timestamptz NOT NULL) PARTITION BY RANGE (at); ALTER TABLE public.t3 OWNER TO app;
             CREATE TABLE public.t4 (at timestamptz NOT NULL) PARTITION BY RANGE (at); ALTER TABLE public.t4 OWNER TO app;
             CREATE TABLE public.t5 (at timestamptz NOT NULL) PARTITION BY RANGE (at); ALTER TABLE public.t5 OWNER TO app;",
        )
        .await
        .unwrap();
    let wrong_password = good.replace(PASSWORD, "S3cr3t-Zebra-43");
    for (name, url) in [
        ("good", &good),
        ("unreachable", &unreachable),
        ("wrongpw", &wrong_password),
        ("badtls", &bad_tls),
        ("notowner", &not_owner),
    ] {
        apply(&secrets, &uri_secret(name, url)).await.unwrap();
    }
    apply(
        &secrets,
        &json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "keys" }, "type": "Opaque",
            "stringData": { "host": "127.0.0.1", "port": server.port.to_string(), "dbname": "postgres",
                            "username": "nobody", "password": PASSWORD, "sslmode": "require" },
        }),
    )
    .await
    .unwrap();
    let controller = TraceController::spawn(ns.name(), "trace", &[]);
    let cases = [
        ("good", "good", "public.events"),
        ("unreachable", "unreachable", "public.t2"),
        ("wrongpw", "wrongpw", "public.t3"),
        ("badtls", "badtls", "public.t4"),
        ("notowner", "notowner", "public.t5"),
        ("keys", "keys", "public.t5"),
    ];
    for (name, secret, table) in cases {
        apply(&policies, &policy(name, secret, table))
            .await
            .unwrap();
    }
    wait_ready(&policies, "good", WAIT).await;
    for (name, ..) in &cases[1..] {
        wait_for(
            &policies,
            name,
            "Ready=False",
            Duration::from_secs(90),
            |p| {
                condition(p, "Ready")
                    .is_some_and(|c| c.status == "False" && c.reason != "Progressing")
            },
        )
        .await;
    }
    let mut status = String::new();
    for (name, ..) in cases {
        let p = policies.get(name).await.unwrap();
        status.push_str(&serde_json::to_string(&p.status).unwrap());
        status.push_str(&conditions_summary(&p));
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns.name());
    let core_events: Api<CoreEvent> = Api::namespaced(client.clone(), ns.name());
    let mut ev =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
    ev.push_str(
        &serde_json::to_string(
            &core_events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        )
        .unwrap(),
    );
    assert!(ev.contains("Warning"), "no warning events recorded: {ev}");
    let logs = controller.logs();
    drop(controller);
    assert!(
        logs.lines().filter(|l| l.contains("TRACE")).count() >= 10,
        "controller did not log at trace:\n{logs}"
    );

    for (what, text) in [
        ("CLI output", &output),
        ("controller log", &logs),
        ("events", &ev),
        ("status", &status),
    ] {
        for needle in [PASSWORD, "S3cr3t-Zebra-43", "Zebra"] {
            if let Some(i) = text.find(needle) {
                let from = i.saturating_sub(200);
                panic!(
                    "{what} carries a secret value: …{}…",
                    &text[from..(i + 200).min(text.len())]
                );
            }
        }
    }
    ns.cleanup().await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_without_superuser_creates_retires_and_repairs() {
    let now = clock::now();
    let month = clock::month_start(now);
    let start_from = clock::add_months(month, -10);
    let db = TestDb::create(&pg::server(17)).await;
    let role = format!("owner_{}", db.name);
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             CREATE SCHEMA app;
             GRANT USAGE, CREATE ON SCHEMA app TO {role};
             CREATE TABLE app.kept (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE app.dropped (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE app.repaired (id bigint NOT NULL, at timestamptz NOT NULL, v text) PARTITION BY RANGE (at);
             CREATE TABLE app.repaired_default PARTITION OF app.repaired DEFAULT;
             INSERT INTO app.repaired SELECT g, '{month}'::timestamptz + g * interval '1 minute', g::text
               FROM generate_series(1, 30000) g;
             ALTER TABLE app.kept OWNER TO {role};
             ALTER TABLE app.dropped OWNER TO {role};
             ALTER TABLE app.repaired OWNER TO {role};
             ALTER TABLE app.repaired_default OWNER TO {role};"
        ))
        .await
        .unwrap();
    let url = pg::with_database(&db.server.admin_url, &db.name).replacen(
        "postgres@",
        &format!("{role}@"),
        1,
    );
    assert!(url.contains(&role), "{url}");
    let super_: bool = pg::connect(&url)
        .await
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!super_);

    let make = cli::policy_docs(&[
        policy_doc(
            "kept",
            &format!(
                "table: app.kept\nrange:\n  interval: 1 month\n  premake: 1\n  startFrom: \"{start_from}\""
            ),
        ),
        policy_doc(
            "dropped",
            &format!(
                "table: app.dropped\nrange:\n  interval: 1 month\n  premake: 1\n  startFrom: \"{start_from}\""
            ),
        ),
        policy_doc(
            "repaired",
            "table: app.repaired\nrange:\n  interval: 1 month\n  premake: 1\ndefaultPartition:\n  create: true\n  onRows: Repair",
        ),
    ]);
    let now = clock::rfc3339(now);
    cli::apply(&url, &make, &now)
        .await
        .ok("create and repair as the owner");
    assert_eq!(cli::partitions(&db.client, "app.kept").await.len(), 12);
    assert_eq!(cli::partitions(&db.client, "app.dropped").await.len(), 12);
    assert_eq!(cli::count(&db.client, "app.repaired_default").await, 0);
    assert_eq!(cli::count(&db.client, "app.repaired").await, 30000);
    assert_eq!(
        cli::count(
            &db.client,
            &format!("ONLY app.{}", clock::monthly_name("repaired", month))
        )
        .await,
        30000
    );

    let retire = cli::policy_docs(&[
        policy_doc(
            "kept",
            "table: app.kept\nrange:\n  interval: 1 month\n  premake: 1\nretention:\n  keep: 3 months\n  action: Detach\n  maxPerPass: 100",
        ),
        policy_doc(
            "dropped",
            "table: app.dropped\nrange:\n  interval: 1 month\n  premake: 1\nretention:\n  keep: 3 months\n  action: Drop\n  maxPerPass: 100",
        ),
    ]);
    cli::apply(&url, &retire, &now)
        .await
        .ok("retention as the owner");
    // now − 3 months falls in the month 3 before this one: the 7 months from startFrom to
    // 4 months ago end before it.
    assert_eq!(cli::partitions(&db.client, "app.kept").await.len(), 5);
    assert_eq!(cli::partitions(&db.client, "app.dropped").await.len(), 5);
    assert!(
        cli::exists(
            &db.client,
            &format!("app.{}", clock::monthly_name("kept", start_from))
        )
        .await,
        "Detach keeps the table"
    );
    assert!(
        !cli::exists(
            &db.client,
            &format!("app.{}", clock::monthly_name("dropped", start_from))
        )
        .await,
        "Drop drops it"
    );
    let again = cli::apply(&url, &retire, &now).await;
    again.ok("second run");
    assert!(again.action_lines().is_empty(), "{}", again.both());
    db.drop_db().await;
    pg::connect(&db_admin_url())
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}

fn db_admin_url() -> String {
    pg::server(17).admin_url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_values_are_quoted_not_executed() {
    let db = TestDb::create(&pg::server(15)).await;
    db.client
        .batch_execute(
            r#"CREATE TABLE public.events (at timestamptz NOT NULL) PARTITION BY RANGE (at);
               CREATE TABLE public.regions (id int, region text NOT NULL) PARTITION BY LIST (region);
               CREATE TABLE public."we""ird; tbl" (at timestamptz NOT NULL) PARTITION BY RANGE (at);"#,
        )
        .await
        .unwrap();
    let policies = r#"apiVersion: pgpart.io/v1alpha1
kind: PartitionPolicy
metadata: {name: a}
spec:
  table: public.events
  range: {interval: 1 month, premake: 1}
  naming: {template: "{table}\"; DROP TABLE public.regions; --{YYYY}{MM}"}
---
apiVersion: pgpart.io/v1alpha1
kind: PartitionPolicy
metadata: {name: b}
spec:
  table: public.regions
  list:
    partitions:
      - name: "it's"
        values: ["it's", "a\"b", "x'); DROP TABLE public.events; --"]
---
apiVersion: pgpart.io/v1alpha1
kind: PartitionPolicy
metadata: {name: c}
spec:
  table: 'public.we"ird; tbl'
  range: {interval: 1 month, premake: 1}
  retention: {keep: 1 month, action: MoveToSchema, schema: "arch\"ive; x"}
"#;
    let now = clock::now();
    let month = clock::month_start(now);
    cli::apply(&db.url, policies, &clock::rfc3339(now))
        .await
        .ok("first apply");
    // Seven months on, keep 1 month: this month's partition of c moves to the archive.
    let later = now + chrono::Months::new(7);
    cli::apply(&db.url, policies, &clock::rfc3339(later))
        .await
        .ok("apply with retention");
    for rel in [
        "public.events".to_owned(),
        "public.regions".to_owned(),
        format!(
            r#"public."events""; DROP TABLE public.regions; --{}""#,
            month.format("%Y%m")
        ),
        r#"public."regions_it's""#.to_owned(),
        format!(
            r#""arch""ive; x"."we""ird; tbl_p{}""#,
            month.format("%Y%m%d")
        ),
    ] {
        assert!(cli::exists(&db.client, &rel).await, "{rel} is missing");
    }
    let bound: String = db
        .client
        .query_one(
            r#"SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'public."regions_it''s"'::regclass"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        bound.contains("'it''s'")
            && bound.contains("'a\"b'")
            && bound.contains("DROP TABLE public.events"),
        "{bound}"
    );
    db.client
        .batch_execute(
            "INSERT INTO public.regions VALUES (1, 'x''); DROP TABLE public.events; --')",
        )
        .await
        .expect("the hostile value routes to its partition");
    db.drop_db().await;
}
