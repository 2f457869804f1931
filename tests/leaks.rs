//! The leak fixtures (tests/leaks/): leaks written the way people write them, with the real
//! libraries (pandas, numpy, Flask under gunicorn, multiprocessing, sqlite3, functools, ctypes,
//! a shell pipeline; and a C program, and two Node.js services), each run under guard until its
//! cap kills it, in every Python this machine has — Debian's and pyenv's, each with the libraries
//! scripts/install-leak-libs put in a venv of its own — and the Node.js ones with the node on
//! PATH and each release scripts/install-node-versions fetched (18, 22, 24). Each asserts what
//! the person on call reads first: the first 30 lines of `guard report --latest` name what holds
//! the memory and, where one applies, the fix.
//!
//! A fixture says what it needs in its header, one `# key: value` per line:
//!   `# leak:` what it does (required: a file without it is a helper, such as an app module)
//!   `# needs:` Python modules beyond the standard library (the venv's interpreter runs it)
//!   `# guard:` guard's options (the cap)
//!   `# python: none` runs it once, with no interpreter (a C program)
//!   `# tools:` programs it needs on PATH (a skip without them, or a failure in CI)
//!   `# run:` the command, `{python}`, `{fixture}` and `{scratch}` (a directory the test removes)
//!   replaced (default `{python} {fixture}`)
//!   `# expect:` a text the first 30 lines must contain (any number of these)
//!   `# expect-lead:` a text the first screen's lead line ("what holds the memory ...") contains
//!   `# expect-lead-not:` a text it must not contain (`{pid}`: the job's main process)
//!   `# expect-stderr:` a text guard's stderr contains
//!
//! Root and a cgroup, like the other cap tests; a missing interpreter library is a skip, or a
//! failure under GUARD_TEST_REQUIRE_TOOLS (CI).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/leaks")
}

/// The header of one fixture.
#[derive(Default, Debug)]
struct Fixture {
    path: PathBuf,
    needs: Vec<String>,
    no_python: bool,
    tools: Vec<String>,
    guard: Vec<String>,
    run: String,
    expect: Vec<String>,
    lead: Vec<String>,
    lead_not: Vec<String>,
    stderr: Vec<String>,
}

fn parse(path: &Path) -> Option<Fixture> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut f = Fixture {
        path: path.to_path_buf(),
        run: "{python} {fixture}".into(),
        ..Default::default()
    };
    let mut leak = false;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let Some((key, value)) = line.trim_start_matches("# ").split_once(": ") else {
            continue;
        };
        let words = || value.split_whitespace().map(String::from);
        match key {
            "leak" => leak = true,
            "needs" => f.needs.extend(words()),
            "python" => f.no_python = value == "none",
            "tools" => f.tools.extend(words()),
            "guard" => f.guard.extend(words()),
            "run" => f.run = value.to_string(),
            "expect" => f.expect.push(value.to_string()),
            "expect-lead" => f.lead.push(value.to_string()),
            "expect-lead-not" => f.lead_not.push(value.to_string()),
            "expect-stderr" => f.stderr.push(value.to_string()),
            _ => {}
        }
    }
    leak.then_some(f)
}

/// Where scripts/install-leak-libs put the venvs (its default, or GUARD_TEST_LEAK_VENVS).
fn venvs() -> PathBuf {
    std::env::var_os("GUARD_TEST_LEAK_VENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/guard-test/leaks"))
}

/// The interpreter to run `f` with for the Python called `name`: its venv's (the libraries), or
/// the interpreter itself when the fixture needs nothing beyond the standard library and there
/// is no venv. None: the libraries are not there.
fn interpreter(name: &str, base: &Path, f: &Fixture) -> Option<PathBuf> {
    let venv = venvs().join(name.replace(' ', "-")).join("bin/python3");
    let py = if venv.is_file() {
        venv
    } else {
        base.to_path_buf()
    };
    if f.needs.is_empty() {
        return Some(py);
    }
    let probe = format!("import {}", f.needs.join(", "));
    Command::new(&py)
        .args(["-c", &probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(py)
}

/// Run fixture `file` under guard with every Python here and check the first screen.
fn check(file: &str) {
    let test = format!("leak fixture {file}");
    if !privileged(&test) {
        return;
    }
    let f = parse(&fixtures_dir().join(file)).unwrap_or_else(|| panic!("{file}: no '# leak:'"));
    if !f.tools.iter().all(|t| tool(&test, t)) {
        return;
    }
    if f.no_python {
        let mut failures = Vec::new();
        for (name, bin) in runs_without_python(&test, &f) {
            if let Err(e) = run_one(&f, Path::new("python3"), bin.as_deref()) {
                failures.push(format!("--- {name}:\n{e}"));
            }
        }
        assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
        return;
    }
    let pys = pythons();
    if !gate(
        &test,
        pys.is_empty().then(|| "no python3 here".to_string()),
        "GUARD_TEST_REQUIRE_TOOLS",
    ) {
        return;
    }
    let mut failures = Vec::new();
    for (name, base) in &pys {
        let Some(py) = interpreter(name, base, &f) else {
            let why = format!(
                "{name} has no {} (scripts/install-leak-libs installs them)",
                f.needs.join(", ")
            );
            if !gate(&test, Some(why), "GUARD_TEST_REQUIRE_TOOLS") {
                continue;
            }
            unreachable!("gate fails the test when the tools are required");
        };
        if let Err(e) = run_one(&f, &py, None) {
            failures.push(format!("--- {name} ({}):\n{e}", py.display()));
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

/// Where scripts/install-node-versions put the other Node.js releases (its default, or
/// GUARD_TEST_NODE_VERSIONS).
fn node_versions() -> PathBuf {
    std::env::var_os("GUARD_TEST_NODE_VERSIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/guard-test/node"))
}

/// The runs of a fixture without Python: once as it is; a Node.js fixture also with each
/// release scripts/install-node-versions fetched (its `bin` first on PATH), by name. When the
/// test script fetched them (GUARD_TEST_NODE_VERSIONS) and none is there, a skip of those — or
/// a failure under GUARD_TEST_REQUIRE_TOOLS.
fn runs_without_python(test: &str, f: &Fixture) -> Vec<(String, Option<PathBuf>)> {
    let mut runs = vec![("as it is".to_string(), None)];
    if !f.tools.iter().any(|t| t == "node") {
        return runs;
    }
    let mut releases: Vec<(String, PathBuf)> = std::fs::read_dir(node_versions())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("bin/node").is_file())
        .map(|e| {
            let name = format!("node {}", e.file_name().to_string_lossy());
            (name, e.path().join("bin"))
        })
        .collect();
    releases.sort();
    let fetched = std::env::var_os("GUARD_TEST_NODE_VERSIONS").is_some();
    let why = (fetched && releases.is_empty()).then(|| {
        format!(
            "no Node.js release in {} (scripts/install-node-versions)",
            node_versions().display()
        )
    });
    if gate(test, why, "GUARD_TEST_REQUIRE_TOOLS") {
        runs.extend(releases.into_iter().map(|(n, b)| (n, Some(b))));
    }
    runs
}

/// One run: guard kills the fixture at its cap; the first 30 lines of `guard report --latest`
/// say what the header expects. `bin`: a directory put first on the job's PATH.
fn run_one(f: &Fixture, py: &Path, bin: Option<&Path>) -> Result<(), String> {
    let ev = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let argv: Vec<String> = f
        .run
        .split_whitespace()
        .map(|w| {
            w.replace("{python}", &py.to_string_lossy())
                .replace("{fixture}", &f.path.to_string_lossy())
                .replace("{scratch}", &scratch.path().to_string_lossy())
        })
        .collect();
    let mut c = guard_cmd();
    if let Some(bin) = bin {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path));
        c.env(
            "PATH",
            std::env::join_paths(dirs).map_err(|e| e.to_string())?,
        );
    }
    c.arg("--evidence-dir").arg(ev.path());
    // A window long enough for the census of a 300 MiB heap on a loaded machine: these tests
    // check what it finds, not how fast (bench/census measures that).
    c.args(["--pyheap-window", "10s"]).args(&f.guard).arg("--");
    c.args(&argv).stdin(Stdio::null());
    let o = output_within(&mut c, Duration::from_secs(180));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(137) {
        return Err(format!(
            "exit {:?}, want 137 (killed at the cap)\n{err}",
            o.status
        ));
    }
    let r = guard_cmd()
        .arg("report")
        .arg("--latest")
        .arg("--evidence-dir")
        .arg(ev.path())
        .bounded();
    let report = String::from_utf8_lossy(&r.stdout).into_owned();
    let first: String = report.lines().take(30).collect::<Vec<_>>().join("\n");
    let pid = manifest(&bundle_named(&err, "exceeded its memory limit"))["pid"]
        .as_i64()
        .unwrap_or(0);
    let lead = first
        .lines()
        .find(|l| l.starts_with("what holds the memory"))
        .unwrap_or("");
    let mut missing: Vec<String> = Vec::new();
    missing.extend(
        f.expect
            .iter()
            .filter(|e| !first.contains(e.as_str()))
            .cloned(),
    );
    missing.extend(
        f.lead
            .iter()
            .filter(|e| !lead.contains(e.as_str()))
            .map(|e| format!("lead: {e}")),
    );
    // A release from scripts/install-node-versions is the one that answered the census.
    if let Some(ver) = bin.and_then(Path::parent).and_then(Path::file_name) {
        let want = format!("Node.js {}", ver.to_string_lossy());
        if !lead.contains(&want) {
            missing.push(format!("lead: {want}"));
        }
    }
    for e in &f.lead_not {
        let e = e.replace("{pid}", &pid.to_string());
        if lead.contains(&e) {
            missing.push(format!("lead must not contain: {e}"));
        }
    }
    missing.extend(
        f.stderr
            .iter()
            .filter(|e| !err.contains(e.as_str()))
            .map(|e| format!("stderr: {e}")),
    );
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing {missing:?}\nfirst 30 lines of guard report --latest:\n{first}\nguard's stderr:\n{err}"
    ))
}

macro_rules! fixtures {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                check($file);
            }
        )*

        /// Every fixture in tests/leaks has its test here (a file with a `# leak:` header).
        #[test]
        fn every_fixture_has_a_test() {
            let listed = [$($file),*];
            let mut found: Vec<String> = std::fs::read_dir(fixtures_dir())
                .unwrap()
                .flatten()
                .filter(|e| parse(&e.path()).is_some())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            found.sort();
            let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(found, listed, "tests/leaks and the fixtures! list differ");
            assert!(listed.len() >= 10, "issue 25 asks for at least 10 fixtures");
        }
    };
}

fixtures! {
    pandas_frames_kept_in_a_list => "pandas_frames.py",
    numpy_arrays_in_a_module_history => "numpy_history.py",
    one_pool_worker_leaks_and_leads => "pool_worker.py",
    flask_under_gunicorn_caches_pages_in_a_module_dict => "gunicorn_flask.sh",
    an_unbounded_lru_cache => "lru_cache.py",
    cycles_with_the_collector_off => "gc_cycles.py",
    c_memory_from_ctypes_is_said_to_be_native => "ctypes_native.py",
    sqlite_rows_kept_as_dicts => "sqlite_rows.py",
    a_class_attribute_registry => "class_registry.py",
    awk_in_a_pipeline_leads => "pipeline.sh",
    a_c_leak_is_named_by_its_native_stack => "native_decoder.sh",
    a_slow_leak_is_warned_then_explained => "slow_warn.py",
    a_node_map_of_buffers_is_named_with_its_holder => "node_sessions.sh",
    a_node_js_heap_leak_names_the_code_that_allocated_it => "node_rows.sh",
}
