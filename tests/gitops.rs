//! pgpart as GitOps tools see it, and the docs and dashboard that go with it.
//!
//! * Argo CD: `gitops/argocd/health.lua` on each case of `gitops/argocd/health_test.yaml`,
//!   run by Argo CD's own Lua package (`tools/argolua`, Go) and by `lua5.4` (quick, and
//!   the Lua 5.1 subset check); `argocd-cm-patch.yaml` carries it verbatim.
//! * Flux: `tools/kstatus` (Go, sigs.k8s.io/cli-utils' kstatus, as Flux reads health)
//!   against the real apiserver of `PGPART_TEST_KUBECONFIG`.
//! * The Application, Flux objects and policies in `gitops/` point at what exists, and
//!   the apiserver accepts the policies.
//! * `dashboards/pgpart.json` queries only metrics pgpart exports, with their labels.
//! * `docs/` covers every field, every reason and the command-line flags it shows.
//!
//! Missing tools (`lua5.4`, `go`) or a missing `PGPART_TEST_KUBECONFIG` fail the tests.

#[allow(dead_code)]
#[path = "support/kube.rs"]
mod kube_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use pgpart::policy::{PartitionPolicy, validate};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"));
        if !v.is_null() {
            docs.push(v);
        }
    }
    docs
}

fn yaml_doc(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel} should hold one YAML document");
    docs.remove(0)
}

fn str_at<'a>(v: &'a Value, pointer: &str, what: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string at {pointer}"))
}

// ---------------------------------------------------------------------------------------
// Argo CD: the Lua health check, through a real interpreter
// ---------------------------------------------------------------------------------------

const LUA: &str = "lua5.4";
const HEALTH_LUA: &str = "gitops/argocd/health.lua";
const HEALTH_TESTS: &str = "gitops/argocd/health_test.yaml";
const HEALTH_KEY: &str = "resource.customizations.health.pgpart.io_PartitionPolicy";

/// A JSON value as a Lua table constructor (what Argo CD hands the script as `obj`).
fn to_lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => format!("{f:?}"),
            _ => unreachable!("a JSON number is i64, u64 or f64"),
        },
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(to_lua).collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), to_lua(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Run `body` (health.lua) the way Argo CD does: `obj` set, the body as a function, with
/// only the base libraries Argo CD opens (no io, os, require...). Returns (status, message).
fn run_health_check(obj: &Value, body: &str) -> (String, String) {
    let script = format!(
        r#"obj = {obj}
local sandbox = {{
  obj = obj, assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
  string = string, table = table, math = math,
}}
local function health(_ENV)
{body}
end
local hs = health(sandbox)
assert(type(hs) == "table", "health.lua must return a table")
io.write(tostring(hs.status), "\0", tostring(hs.message))
"#,
        obj = to_lua(obj)
    );
    let mut child = Command::new(LUA)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {LUA} ({e}): the Argo CD health check tests need a real Lua 5.4 \
                 interpreter on PATH. Install it with `apt-get install -y lua5.4` \
                 (scripts/install-deps does)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script to lua");
    let out = child.wait_with_output().expect("wait for lua");
    assert!(
        out.status.success(),
        "{LUA} failed ({}): {}\nscript:\n{script}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("lua prints UTF-8");
    let (status, message) = text
        .split_once('\0')
        .unwrap_or_else(|| panic!("unexpected output of the health check: {text:?}"));
    (status.to_string(), message.to_string())
}

#[test]
fn lua_interpreter_is_there() {
    let out = Command::new(LUA)
        .args(["-e", "io.write(_VERSION)"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {LUA} ({e}): install it with `apt-get install -y lua5.4` \
                 (scripts/install-deps does)"
            )
        });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Lua 5.4");
}

#[test]
fn lua_literals_round_trip() {
    let v: Value = serde_json::json!({
        "s": "quote \" backslash \\ newline \n tab \t del \u{7f} digit after escape \u{1}7 ü",
        "n": [1, -2, 3.5, 1e300, 18446744073709551615u64],
        "b": [true, false],
        "nested": {"empty": {}, "list": [], "null": null}
    });
    let body = r#"
local function dump(v)
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      local val = v[k]
      if val == nil then val = v[tonumber(k)] end
      parts[#parts + 1] = k .. "=" .. dump(val)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end
return { status = obj.s, message = dump(obj.n) .. dump(obj.b) .. dump(obj.nested) }
"#;
    let (s, m) = run_health_check(&v, body);
    assert_eq!(s, v["s"].as_str().unwrap());
    assert_eq!(
        m,
        "{1=1,2=-2,3=3.5,4=1e+300,5=1.844674407371e+19}{1=true,2=false}{empty={},list={}}"
    );
}

#[test]
fn argocd_health_check_cases() {
    let body = read(HEALTH_LUA);
    let cases = yaml_doc(HEALTH_TESTS);
    let cases = cases["tests"]
        .as_array()
        .expect("health_test.yaml: tests is a list");
    assert!(!cases.is_empty());

    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases {
        let input = str_at(case, "/inputPath", "health_test.yaml case");
        let want_status = str_at(case, "/healthStatus/status", input);
        let want_message = str_at(case, "/healthStatus/message", input);
        // Files are named by the status they must give.
        let file = Path::new(input)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name");
        let prefix = file.split('-').next().unwrap();
        let named = match prefix {
            "deleting" => "Progressing",
            "healthy" => "Healthy",
            "progressing" => "Progressing",
            "degraded" => "Degraded",
            "suspended" => "Suspended",
            other => panic!(
                "{input}: name it healthy-*, progressing-*, degraded-*, suspended-* or deleting*, not {other}"
            ),
        };
        assert_eq!(
            named, want_status,
            "{input} is named for {named} but expects {want_status}"
        );
        covered.insert(input.to_string());

        let obj = yaml_doc(&format!("gitops/argocd/{input}"));
        assert_eq!(obj["kind"], "PartitionPolicy", "{input}");
        assert_eq!(obj["apiVersion"], "pgpart.io/v1alpha1", "{input}");
        // The objects are real PartitionPolicies (status included).
        let _: PartitionPolicy = serde_json::from_value(obj.clone())
            .unwrap_or_else(|e| panic!("{input} is not a PartitionPolicy: {e}"));
        let (status, message) = run_health_check(&obj, &body);
        if status != want_status || message != want_message {
            failures.push(format!(
                "{input}: got {status} {message:?}, want {want_status} {want_message:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "health.lua disagrees with health_test.yaml:\n  {}",
        failures.join("\n  ")
    );

    // Every testdata file is a case, and the statuses the brief promises are all covered.
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("gitops/argocd/testdata")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        files.insert(format!("testdata/{name}"));
    }
    assert_eq!(
        files, covered,
        "every gitops/argocd/testdata file must be a case in health_test.yaml"
    );
    for needed in [
        "testdata/healthy.yaml",
        "testdata/progressing-no-status.yaml",
        "testdata/progressing-old-generation.yaml",
        "testdata/progressing-reconciling.yaml",
        "testdata/deleting.yaml",
    ] {
        assert!(covered.contains(needed), "missing case {needed}");
    }
    for prefix in ["degraded-", "suspended"] {
        assert!(
            covered
                .iter()
                .any(|f| f.starts_with(&format!("testdata/{prefix}"))),
            "no {prefix}* case"
        );
    }
}

#[test]
fn argocd_health_check_is_plain_lua_5_1() {
    // Argo CD runs gopher-lua (Lua 5.1): keep to what both it and 5.4 understand.
    let body = read(HEALTH_LUA);
    let code: String = body
        .lines()
        .map(|l| l.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for (bad, why) in [
        ("//", "integer division is Lua 5.3+"),
        ("goto ", "goto is Lua 5.2+"),
        ("::", "labels are Lua 5.2+"),
        ("<const>", "attributes are Lua 5.4"),
        ("<close>", "attributes are Lua 5.4"),
        ("_ENV", "_ENV is Lua 5.2+"),
        ("utf8.", "the utf8 library is Lua 5.3+"),
        ("require", "Argo CD opens no modules"),
        ("io.", "Argo CD opens no io library"),
        ("os.", "Argo CD opens no os library (unless useOpenLibs)"),
        (" & ", "bitwise operators are Lua 5.3+"),
        (" | ", "bitwise operators are Lua 5.3+"),
        ("~=nil", "write ~= nil"),
    ] {
        assert!(!code.contains(bad), "{HEALTH_LUA} uses {bad:?}: {why}");
    }
    assert!(
        code.trim_end().ends_with("return hs"),
        "{HEALTH_LUA} must end by returning hs"
    );
}

#[test]
fn argocd_cm_patch_carries_health_lua_verbatim() {
    let cm = yaml_doc("gitops/argocd/argocd-cm-patch.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let value = cm["data"][HEALTH_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("argocd-cm-patch.yaml has no data.{HEALTH_KEY}"));
    assert!(
        value == read(HEALTH_LUA),
        "argocd-cm-patch.yaml's {HEALTH_KEY} differs from {HEALTH_LUA}: regenerate it \
         (the value is health.lua, indented four spaces under `|`)"
    );
}

// ---------------------------------------------------------------------------------------
// Argo CD Application and Flux objects point at what exists
// ---------------------------------------------------------------------------------------

/// Every key path of `values` exists in the chart's values.yaml (catches renamed values).
fn assert_chart_values_exist(values: &Value, what: &str) {
    let chart = yaml_doc("charts/pgpart/values.yaml");
    fn walk(v: &Value, chart: &Value, path: &str, what: &str) {
        if let Value::Object(map) = v {
            for (k, sub) in map {
                let p = format!("{path}.{k}");
                let c = chart.get(k).unwrap_or_else(|| {
                    panic!("{what}: value {p} is not in charts/pgpart/values.yaml")
                });
                walk(sub, c, &p, what);
            }
        }
    }
    walk(values, &chart, "", what);
}

fn assert_dir(rel: &str, what: &str) {
    let rel = rel.trim_start_matches("./");
    assert!(
        root().join(rel).is_dir(),
        "{what} points at {rel}, which is not a directory of the repository"
    );
}

#[test]
fn argocd_application_syncs_the_chart_and_the_policies() {
    let app = yaml_doc("gitops/argocd/application.yaml");
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["kind"], "Application");
    let sources = app["spec"]["sources"]
        .as_array()
        .expect("spec.sources is a list");
    let mut paths = BTreeSet::new();
    for s in sources {
        let path = str_at(s, "/path", "Application source");
        assert_dir(path, "application.yaml");
        paths.insert(path.to_string());
        if let Some(values) = s.pointer("/helm/valuesObject") {
            assert_eq!(path, "charts/pgpart");
            assert_chart_values_exist(values, "application.yaml helm.valuesObject");
        }
    }
    assert!(paths.contains("charts/pgpart"), "the chart is a source");
    assert!(
        paths.contains("gitops/policies"),
        "the policies are a source"
    );
    let opts: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .expect("syncOptions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(opts.contains(&"ServerSideApply=true"), "{opts:?}");
}

#[test]
fn flux_objects_wait_for_the_policies() {
    let kust = yaml_doc("gitops/flux/kustomization.yaml");
    let mut objects = Vec::new();
    for r in kust["resources"].as_array().expect("resources") {
        let r = r.as_str().unwrap();
        objects.extend(yaml_docs(&format!("gitops/flux/{r}")));
    }
    let find = |kind: &str, name: &str| -> Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("gitops/flux has no {kind} {name}"))
    };
    let repo = find("GitRepository", "pgpart");
    assert_eq!(repo["apiVersion"], "source.toolkit.fluxcd.io/v1");

    let controller = find("Kustomization", "pgpart-controller");
    assert_eq!(controller["apiVersion"], "kustomize.toolkit.fluxcd.io/v1");
    assert_dir(
        str_at(&controller, "/spec/path", "pgpart-controller"),
        "pgpart-controller",
    );
    let checks = controller["spec"]["healthChecks"]
        .as_array()
        .expect("pgpart-controller has healthChecks");
    assert!(checks.iter().any(|c| c["kind"] == "HelmRelease"));

    let policies = find("Kustomization", "pgpart-policies");
    assert_eq!(
        str_at(&policies, "/spec/path", "pgpart-policies"),
        "./gitops/policies"
    );
    assert_dir("gitops/policies", "pgpart-policies");
    assert_eq!(
        policies["spec"]["wait"], true,
        "pgpart-policies waits for the policies"
    );
    assert_eq!(
        policies["spec"]["dependsOn"][0]["name"], "pgpart-controller",
        "the policies wait for the controller"
    );
    // tools/kstatus evaluates these expressions as Flux does; here: they are there.
    let exprs = policies["spec"]["healthCheckExprs"]
        .as_array()
        .expect("pgpart-policies has healthCheckExprs");
    let pp = exprs
        .iter()
        .find(|e| e["kind"] == "PartitionPolicy" && e["apiVersion"] == "pgpart.io/v1alpha1")
        .expect("healthCheckExprs for pgpart.io/v1alpha1 PartitionPolicy");
    for k in ["inProgress", "failed", "current"] {
        assert!(pp[k].is_string(), "healthCheckExprs entry has no {k}");
    }

    let release = yaml_doc("gitops/flux/controller/helmrelease.yaml");
    assert_eq!(release["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    let chart = str_at(&release, "/spec/chart/spec/chart", "HelmRelease");
    assert_dir(chart, "HelmRelease");
    assert_chart_values_exist(&release["spec"]["values"], "HelmRelease values");
}

/// The PartitionPolicies in gitops/policies, as kustomize would list them.
fn gitops_policies() -> Vec<(String, PartitionPolicy)> {
    let kust = yaml_doc("gitops/policies/kustomization.yaml");
    let listed: BTreeSet<String> = kust["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("gitops/policies")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            present.insert(name);
        }
    }
    assert_eq!(
        listed, present,
        "gitops/policies/kustomization.yaml lists exactly its files"
    );
    let mut out = Vec::new();
    for file in &listed {
        for doc in yaml_docs(&format!("gitops/policies/{file}")) {
            if doc["kind"] == "PartitionPolicy" {
                let p: PartitionPolicy = serde_json::from_value(doc)
                    .unwrap_or_else(|e| panic!("gitops/policies/{file}: {e}"));
                out.push((file.clone(), p));
            }
        }
    }
    assert!(!out.is_empty(), "gitops/policies holds policies");
    out
}

#[test]
fn gitops_policies_are_valid() {
    for (file, p) in gitops_policies() {
        validate(&p.spec).unwrap_or_else(|e| panic!("gitops/policies/{file}: {e}"));
        assert!(
            p.spec.database.is_some(),
            "{file}: a policy in a cluster names its Secret"
        );
    }
}

/// The PartitionPolicies of examples/*.yaml, by file.
fn example_policies() -> Vec<(String, PartitionPolicy)> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        for doc in yaml_docs(&format!("examples/{file}")) {
            if doc["kind"] == "PartitionPolicy" {
                let p: PartitionPolicy =
                    serde_json::from_value(doc).unwrap_or_else(|e| panic!("examples/{file}: {e}"));
                out.push((format!("examples/{file}"), p));
            }
        }
    }
    assert!(out.len() >= 5, "examples/ holds the example policies");
    out
}

/// Every example and GitOps policy passes the CRD's schema and CEL rules (a server-side
/// dry run), on whichever apiserver version this run has.
#[tokio::test]
async fn example_and_gitops_policies_are_accepted_by_the_apiserver() {
    let client = kube_support::client().await;
    // The CRD as this build generates it (the same field manager as the other tests).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = PartitionPolicy::crd();
    let name = crd.metadata.name.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match crds
            .patch(
                &name,
                &PatchParams::apply("pgpart-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("server-side apply of the CRD: {e}"),
        }
    }
    let ns = kube_support::TestNamespace::new(&client, "gitops").await;
    let api: Api<PartitionPolicy> = ns.api();
    let gitops = gitops_policies()
        .into_iter()
        .map(|(file, p)| (format!("gitops/policies/{file}"), p));
    for (file, mut p) in gitops.chain(example_policies()) {
        p.metadata.namespace = Some(ns.name().to_string());
        let pname = p.metadata.name.clone().expect("policy name");
        // Right after the CRD is (re)applied the resource may take a moment to be served.
        loop {
            match api
                .patch(
                    &pname,
                    &PatchParams::apply("pgpart-gitops-test").dry_run(),
                    &Patch::Apply(&p),
                )
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("the apiserver refuses {file}: {e}"),
            }
        }
    }
    ns.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// Flux: kstatus on objects served by the real apiserver (tools/kstatus, Go)
// ---------------------------------------------------------------------------------------

fn go_binary() -> PathBuf {
    if let Ok(go) = std::env::var("GO")
        && !go.trim().is_empty()
    {
        return PathBuf::from(go.trim());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let go = dir.join("go");
            if go.is_file() {
                return go;
            }
        }
    }
    let fallback = PathBuf::from("/usr/local/go/bin/go");
    assert!(
        fallback.is_file(),
        "no Go toolchain (not $GO, not on PATH, not /usr/local/go/bin/go): \
         tools/kstatus needs Go 1.26 to run kstatus as Flux does"
    );
    fallback
}

/// `go test -v ./...` in a Go module under tools/ (with the test kubeconfig); its stdout.
fn go_test(module: &str) -> String {
    let dir = root().join(module);
    let go = go_binary();
    let out = Command::new(&go)
        .args(["test", "-count=1", "-timeout=15m", "-v", "./..."])
        .current_dir(&dir)
        .env("GOTOOLCHAIN", "local")
        .env(
            kube_support::KUBECONFIG_ENV,
            kube_support::kubeconfig_path(),
        )
        .output()
        .unwrap_or_else(|e| panic!("run {} test in {}: {e}", go.display(), dir.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`go test ./...` in {module} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn kstatus_reads_partitionpolicy_status_like_flux() {
    let stdout = go_test("tools/kstatus");
    for state in [
        "healthy -> Current",
        "progressing -> InProgress",
        "stalled -> Failed",
        "stale-generation -> InProgress",
        "suspended-pending -> flux healthCheckExprs Current",
        "new policy without status -> flux healthCheckExprs",
    ] {
        assert!(
            stdout.contains(state),
            "go test did not report {state:?}:\n{stdout}"
        );
    }
}

#[test]
fn argocd_runs_health_lua_with_its_own_lua_package() {
    // tools/argolua: every case of health_test.yaml through argo-cd/v3/util/lua, the code
    // Argo CD's application controller evaluates custom health checks with.
    let stdout = go_test("tools/argolua");
    let cases = yaml_doc(HEALTH_TESTS);
    let cases = cases["tests"]
        .as_array()
        .expect("health_test.yaml: tests is a list");
    assert!(!cases.is_empty());
    for case in cases {
        let line = format!(
            "argo cd util/lua: {} -> {}",
            str_at(case, "/inputPath", HEALTH_TESTS),
            str_at(case, "/healthStatus/status", HEALTH_TESTS)
        );
        assert!(
            stdout.contains(&line),
            "go test did not report {line:?}:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Grafana dashboard
// ---------------------------------------------------------------------------------------

/// Sample names pgpart exports (as /metrics renders them) → their label names.
fn exported_metrics() -> BTreeMap<String, BTreeSet<String>> {
    use pgpart::telemetry::{ActionLabels, ErrorLabels, Metrics, PolicyLabels, TargetLabels};
    let m = Metrics::default();
    let p = PolicyLabels {
        namespace: "ns".into(),
        policy: "p".into(),
        table: "public.t".into(),
    };
    m.partitions.get_or_create(&p).set(1);
    m.coverage_seconds.get_or_create(&p).set(1);
    m.default_rows.get_or_create(&p).set(1);
    m.reconciles.get_or_create(&p).inc();
    m.reconcile_errors
        .get_or_create(&ErrorLabels {
            namespace: "ns".into(),
            policy: "p".into(),
            reason: "TableMissing".into(),
        })
        .inc();
    m.reconcile_seconds.observe(0.2);
    m.ddl_actions
        .get_or_create(&ActionLabels {
            kind: "create".into(),
            result: "ok".into(),
        })
        .inc();
    m.pool_in_use
        .get_or_create(&TargetLabels {
            target: "u@h:5432/d".into(),
        })
        .set(1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry).expect("encode metrics");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_string();
        let labels = out.entry(name).or_default();
        if line[end..].starts_with('{') {
            let inner = &line[end + 1..line.find('}').expect("closing brace")];
            for pair in inner.split(',') {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// PromQL identifiers that start with `pgpart_`, each with the label names used in the
/// selector right after it (`name{a="x", b=~"y"}`).
fn metric_refs(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !is_ident(chars[i - 1])) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.starts_with("pgpart_") {
                let mut labels = Vec::new();
                if i < chars.len() && chars[i] == '{' {
                    let close = chars[i..].iter().position(|&c| c == '}').unwrap() + i;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let mut in_quotes = false;
                    let mut current = String::new();
                    for c in inner.chars() {
                        match c {
                            '"' => in_quotes = !in_quotes,
                            '=' | '!' | '~' if !in_quotes => {
                                if !current.trim().is_empty() {
                                    labels.push(current.trim().to_string());
                                }
                                current.clear();
                            }
                            ',' if !in_quotes => current.clear(),
                            c if !in_quotes => current.push(c),
                            _ => {}
                        }
                    }
                    i = close;
                }
                out.push((word, labels));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Label names in `by (...)` / `without (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in ["by", "without"] {
        let mut rest = expr;
        while let Some(pos) = rest.find(kw) {
            let before_ok = pos == 0 || !is_ident(rest[..pos].chars().last().unwrap());
            let after = rest[pos + kw.len()..].trim_start();
            if before_ok && after.starts_with('(') {
                let close = after.find(')').expect("closing paren");
                out.extend(
                    after[1..close]
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                );
            }
            rest = &rest[pos + kw.len()..];
        }
    }
    out
}

#[test]
fn dashboard_queries_name_exported_metrics() {
    let metrics = exported_metrics();
    for family in [
        "pgpart_partitions",
        "pgpart_coverage_ahead_seconds",
        "pgpart_default_partition_rows",
        "pgpart_reconciles_total",
        "pgpart_reconcile_errors_total",
        "pgpart_reconcile_duration_seconds_bucket",
        "pgpart_ddl_actions_total",
        "pgpart_pool_connections_in_use",
    ] {
        assert!(
            metrics.contains_key(family),
            "pgpart no longer exports {family}: {:?}",
            metrics.keys()
        );
    }

    let text = read("dashboards/pgpart.json");
    let dash: Value = serde_json::from_str(&text).expect("dashboards/pgpart.json is valid JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string());

    fn panels(v: &Value, out: &mut Vec<Value>) {
        for p in v["panels"].as_array().into_iter().flatten() {
            out.push(p.clone());
            panels(p, out);
        }
    }
    let mut all = Vec::new();
    panels(&dash, &mut all);
    assert!(all.len() > 5, "the dashboard has panels");

    let mut exprs: Vec<(String, String)> = Vec::new();
    let mut ids = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let id = p["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("panel {title} has no id"));
        assert!(ids.insert(id), "panel id {id} is used twice");
        assert!(p["gridPos"].is_object(), "panel {title} has no gridPos");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no targets");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a target of panel {title} has no expr"));
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str().or(v["query"].as_str())
            && v["type"] == "query"
        {
            exprs.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }

    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (title, expr) in &exprs {
        let refs = metric_refs(expr);
        if refs.is_empty() {
            problems.push(format!("{title}: {expr:?} names no pgpart metric"));
        }
        let mut known_labels: BTreeSet<String> = BTreeSet::new();
        for (name, labels) in &refs {
            match metrics.get(name) {
                None => problems.push(format!(
                    "{title}: {name} is not a metric pgpart exports (in {expr:?})"
                )),
                Some(have) => {
                    used.insert(name.clone());
                    known_labels.extend(have.iter().cloned());
                    for l in labels {
                        if !have.contains(l) {
                            problems.push(format!(
                                "{title}: {name} has no label {l} (it has {have:?})"
                            ));
                        }
                    }
                }
            }
        }
        for l in grouping_labels(expr) {
            if !known_labels.contains(&l) {
                problems.push(format!(
                    "{title}: groups by {l}, which none of its metrics has (in {expr:?})"
                ));
            }
        }
        // label_values(metric, label)
        if let Some(rest) = expr.strip_prefix("label_values(") {
            let label = rest
                .trim_end_matches(')')
                .rsplit(',')
                .next()
                .unwrap()
                .trim();
            if !known_labels.contains(label) {
                problems.push(format!("{title}: label_values of unknown label {label}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboards/pgpart.json:\n  {}",
        problems.join("\n  ")
    );
    for family in [
        "pgpart_partitions",
        "pgpart_coverage_ahead_seconds",
        "pgpart_default_partition_rows",
        "pgpart_reconciles_total",
        "pgpart_reconcile_errors_total",
        "pgpart_reconcile_duration_seconds_bucket",
        "pgpart_ddl_actions_total",
        "pgpart_pool_connections_in_use",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
}

// ---------------------------------------------------------------------------------------
// Docs
// ---------------------------------------------------------------------------------------

/// The string literals in the body of `fn name` in a source file.
fn literals_in_fn(rel: &str, name: &str) -> Vec<String> {
    let src = read(rel);
    let start = src
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("{rel} has no fn {name}"));
    // The body ends at the next top-level item.
    let rest = &src[start..];
    let end = rest[1..]
        .find("\nfn ")
        .into_iter()
        .chain(rest[1..].find("\n    pub fn "))
        .chain(rest[1..].find("\n    fn "))
        .chain(rest[1..].find("\npub fn "))
        .chain(rest[1..].find("\nasync fn "))
        .chain(rest[1..].find("\npub async fn "))
        .chain(rest[1..].find("\n#[cfg(test)]"))
        .min()
        .map(|e| e + 1)
        .unwrap_or(rest.len());
    string_literals(&rest[..end])
}

fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(s);
        }
    }
    out
}

fn is_reason(s: &str) -> bool {
    s.len() > 2
        && s.chars().next().unwrap().is_ascii_uppercase()
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Every reason pgpart writes: error reasons, condition reasons, findings, event reasons.
fn all_reasons() -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    out.insert(
        "error (src/error.rs reason())",
        literals_in_fn("src/error.rs", "reason")
            .into_iter()
            .filter(|s| is_reason(s))
            .collect(),
    );
    out.insert(
        "condition (build_status)",
        literals_in_fn("src/controller/reconcile.rs", "build_status")
            .into_iter()
            .filter(|s| is_reason(s))
            .collect(),
    );
    let mut findings = BTreeSet::new();
    // The planner's findings, wherever in src/plan they are made.
    let mut files: Vec<String> = std::fs::read_dir(root().join("src/plan"))
        .expect("src/plan")
        .map(|e| {
            format!(
                "src/plan/{}",
                e.expect("entry").file_name().to_string_lossy()
            )
        })
        .filter(|f| f.ends_with(".rs"))
        .collect();
    files.sort();
    for file in &files {
        let src = read(file);
        let mut rest = src.as_str();
        while let Some(pos) = rest.find("finding(") {
            rest = &rest[pos + "finding(".len()..];
            let lit = string_literals(&rest[..rest.find(',').unwrap_or(0)]);
            if let Some(r) = lit.first().filter(|s| is_reason(s)) {
                findings.insert(r.clone());
            }
        }
    }
    out.insert("finding (src/plan)", findings);
    out.insert(
        "event (event_reason)",
        literals_in_fn("src/controller/reconcile.rs", "event_reason")
            .into_iter()
            .filter(|s| is_reason(s))
            .collect(),
    );
    out
}

#[test]
fn troubleshooting_covers_every_reason() {
    let doc = read("docs/troubleshooting.md");
    let reasons = all_reasons();
    for needed in [
        "InvalidPolicy",
        "TableMissing",
        "PolicyMismatch",
        "Conflict",
        "PermissionDenied",
        "RowsInDefault",
    ] {
        assert!(
            reasons["error (src/error.rs reason())"].contains(needed),
            "reason {needed} not found in src/error.rs: {reasons:?}"
        );
    }
    for needed in ["RowsInDefault", "BlockedByDefaultRows", "Overlap", "Gap"] {
        assert!(
            reasons["finding (src/plan)"].contains(needed),
            "finding {needed} not found in src/plan: {reasons:?}"
        );
    }
    let mut missing = Vec::new();
    for (kind, set) in &reasons {
        for r in set {
            // A heading of its own: "### `Reason`".
            if !doc.contains(&format!("### `{r}`")) && !doc.contains(&format!("`{r}`")) {
                missing.push(format!("{r} ({kind})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md does not explain: {}",
        missing.join(", ")
    );
    // The error and finding reasons each have a section.
    for r in reasons["error (src/error.rs reason())"]
        .iter()
        .chain(&reasons["finding (src/plan)"])
    {
        assert!(
            doc.contains(&format!("### `{r}`")),
            "docs/troubleshooting.md has no section \"### `{r}`\""
        );
    }
}

/// Field paths of a CRD schema: `spec.range.interval`, `spec.list.partitions[].name`.
fn schema_paths(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema["properties"].as_object() {
        for (k, sub) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            out.insert(p.clone());
            if p == "status.conditions" {
                continue; // metav1.Condition: documented as a whole
            }
            schema_paths(sub, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_paths(items, &format!("{path}[]"), out);
    }
}

#[test]
fn reference_covers_every_field() {
    let crd = serde_json::to_value(PartitionPolicy::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut paths = BTreeSet::new();
    schema_paths(&schema["properties"]["spec"], "spec", &mut paths);
    schema_paths(&schema["properties"]["status"], "status", &mut paths);
    assert!(paths.contains("spec.range.interval"), "{paths:?}");
    let doc = read("docs/reference.md");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/reference.md does not document (as `path`): {missing:?}"
    );
    // And documents no field that does not exist.
    let mut rest = doc.as_str();
    let mut unknown = BTreeSet::new();
    while let Some(pos) = rest.find('`') {
        rest = &rest[pos + 1..];
        let Some(end) = rest.find('`') else { break };
        let word = &rest[..end];
        rest = &rest[end + 1..];
        let looks_like_path = (word.starts_with("spec.") || word.starts_with("status."))
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '[' || c == ']');
        if looks_like_path && !paths.contains(word) {
            unknown.insert(word.to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/reference.md names fields the CRD does not have: {unknown:?}"
    );
}

/// `pgpart SUB --flag` in the docs' code blocks: each flag is one `pgpart SUB --help` knows.
#[test]
fn docs_show_real_command_line_flags() {
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut seen = 0;
    for doc in [
        "docs/reference.md",
        "docs/troubleshooting.md",
        "docs/migrating-from-pg-partman.md",
        "docs/gitops.md",
    ] {
        let text = read(doc);
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            let mut words = line.split_whitespace().peekable();
            // Commands may follow `$ ` or a pipe; find `pgpart SUB`.
            while let Some(w) = words.next() {
                if w != "pgpart" || !in_code {
                    continue;
                }
                let Some(sub) = words.next() else { break };
                if sub.starts_with('-') || sub.starts_with('<') {
                    continue;
                }
                seen += 1;
                let sub_help = help.entry(sub.to_string()).or_insert_with(|| {
                    let out = Command::new(env!("CARGO_BIN_EXE_pgpart"))
                        .args([sub, "--help"])
                        .output()
                        .expect("run pgpart --help");
                    if !out.status.success() {
                        String::new()
                    } else {
                        String::from_utf8_lossy(&out.stdout).into_owned()
                    }
                });
                if sub_help.is_empty() {
                    problems.push(format!("{doc}: `pgpart {sub}` is not a command"));
                    continue;
                }
                while let Some(&next) = words.peek() {
                    if next == "|" || next == "&&" || next == ";" || next == ">" {
                        break;
                    }
                    words.next();
                    let flag = next
                        .trim_start_matches('[')
                        .split(['=', ']', ')'])
                        .next()
                        .unwrap();
                    if flag.starts_with("--")
                        && flag.len() > 2
                        && !sub_help.contains(&format!("{flag} "))
                        && !sub_help.contains(&format!("{flag}\n"))
                        && !sub_help.contains(&format!("{flag}="))
                        && !sub_help.contains(&format!("{flag}["))
                    {
                        problems.push(format!("{doc}: `pgpart {sub}` has no flag {flag}"));
                    }
                }
            }
        }
    }
    assert!(seen > 0, "the docs show pgpart commands");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn migration_guide_uses_import_partman() {
    let doc = read("docs/migrating-from-pg-partman.md");
    for needed in [
        "pgpart import-partman --database-url",
        "--secret",
        "adoptExisting",
        "defaultPartition",
        "naming",
        "run_maintenance",
    ] {
        assert!(
            doc.contains(needed),
            "docs/migrating-from-pg-partman.md does not mention {needed}"
        );
    }
}
