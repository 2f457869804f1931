//! examples/django_queryset with real Django (from PyPI, in the test venv scripts/install-pyspy
//! makes): the management command that iterates a QuerySet is capped, held and killed, and the
//! report names the QuerySet's result cache on the path to what holds the memory; the fixed
//! command (.iterator()) runs under the same cap. Root and a cgroup, like the other cap tests.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/django_queryset")
}

/// `python manage.py ARGS` in the example, with its database at `db`.
fn manage(py: &Path, db: &Path, args: &[&str]) {
    let o = Command::new(py)
        .arg("manage.py")
        .args(args)
        .current_dir(example_dir())
        .env("SHOP_DB", db)
        .bounded();
    assert!(o.status.success(), "manage.py {args:?}: {o:?}");
}

#[test]
fn the_queryset_cache_is_named_and_iterator_is_the_fix() {
    let test = "the_queryset_cache_is_named_and_iterator_is_the_fix";
    let Some(py) = privileged_python_with(test, "django") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("shop.sqlite3");
    manage(&py, &db, &["migrate", "-v0"]);
    manage(&py, &db, &["seed_images", "2000"]);
    let run = |extra: &[&str]| {
        guard_cmd()
            .current_dir(example_dir())
            .env("SHOP_DB", &db)
            .arg("--evidence-dir")
            .arg(d.path().join("ev"))
            .args([
                "--name",
                "fix_images",
                "--memory",
                "200M",
                "--warn",
                "off",
                "--",
            ])
            .arg(&py)
            .args(["manage.py", "fix_images"])
            .args(extra)
            .bounded()
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(137), "{err}");
    let bundle = bundle_named(&err, "exceeded its memory limit");
    let report = guard_cmd().arg("report").arg(&bundle).bounded();
    let text = String::from_utf8_lossy(&report.stdout);
    let path_line = text
        .lines()
        .find(|l| l.contains("QuerySet._result_cache"))
        .unwrap_or_else(|| panic!("the cache is not on the path:\n{text}"));
    assert!(path_line.contains("bytearray"), "{path_line}");
    assert!(path_line.contains("Image.buffer"), "{path_line}");
    assert!(
        path_line.contains("local 'images' in Command.handle (fix_images.py:"),
        "{path_line}"
    );
    // The fix: the same rows under the same cap.
    manage(&py, &db, &["seed_images", "2000"]);
    let o = run(&["--fixed"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("done: 2000 images"));
}
