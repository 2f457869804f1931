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
fn the_tmpfiles_entry_makes_the_evidence_directory_0700() {
    if !tools("the_tmpfiles_entry_makes_the_evidence_directory_0700") {
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
}
