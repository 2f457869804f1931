//! The committed man page is what the code renders (regenerate with
//! `GUARD_REGEN_MAN=1 cargo test --test docs`), and it documents every exit status in the table.

mod man;

use std::path::Path;

#[test]
fn man_page_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/guard.1");
    let rendered = man::render();
    if std::env::var("GUARD_REGEN_MAN").as_deref() == Ok("1") {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "man/guard.1 is stale: run GUARD_REGEN_MAN=1 cargo test --test docs and commit it"
    );
}

#[test]
fn guard_toml_5_is_current_and_documents_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/guard.toml.5");
    let rendered = man::render_toml5();
    if std::env::var("GUARD_REGEN_MAN").as_deref() == Ok("1") {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "man/guard.toml.5 is stale: run GUARD_REGEN_MAN=1 cargo test --test docs and commit it"
    );
    for o in guard::config::options::file_keys() {
        assert!(rendered.contains(o.key), "guard.toml(5) lacks {}", o.key);
    }
}

#[test]
fn the_man_pages_have_their_sections_and_no_stray_escape() {
    let guard1 = man::render();
    for section in [
        ".SH FILES",
        ".SH \"SEE ALSO\"",
        ".SH \"EXIT STATUS\"",
        ".SH \"HOLDING A JOB\"",
    ] {
        assert!(guard1.contains(section), "guard(1) lacks {section}");
    }
    let toml5 = man::render_toml5();
    assert!(
        toml5.contains(".SH NAME\nguard.toml \\- configuration file for guard(1)\n"),
        "guard.toml(5)'s NAME line: {}",
        toml5.lines().take(4).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !toml5.contains("\\\\"),
        "a literal backslash in guard.toml(5)"
    );
}

/// bash, zsh and fish completions, generated from the CLI definition (clap_complete, a
/// dev-dependency: not in the binary) and committed under completions/; regenerate with
/// GUARD_REGEN_MAN=1 like the man pages.
#[test]
fn completions_are_current() {
    use clap_complete::{Shell, generate};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (shell, file) in [
        (Shell::Bash, "guard.bash"),
        (Shell::Zsh, "_guard"),
        (Shell::Fish, "guard.fish"),
    ] {
        let mut cmd = guard::config::cli::command_built();
        let mut out = Vec::new();
        generate(shell, &mut cmd, "guard", &mut out);
        let rendered = String::from_utf8(out).expect("UTF-8");
        let path = dir.join(file);
        if std::env::var("GUARD_REGEN_MAN").as_deref() == Ok("1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "completions/{file} is stale: run GUARD_REGEN_MAN=1 cargo test --test docs and commit it"
        );
        for sub in [
            "report", "list", "held", "kill", "drill", "doctor", "config",
        ] {
            assert!(rendered.contains(sub), "{file} lacks {sub}");
        }
        assert!(rendered.contains("hold-for"), "{file} lacks --hold-for");
    }
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/guard.toml");
    let f = guard::config::file::ConfigFile::load(&path).expect("examples/guard.toml parses");
    assert!(f.job_names().contains(&"fix_images".to_string()));
}

#[test]
fn man_page_documents_the_exit_table_and_every_option() {
    let page = man::render();
    for row in guard::config::exit::TABLE {
        assert!(
            page.contains(row.status),
            "EXIT STATUS lacks {}",
            row.status
        );
    }
    for opt in [
        "memory",
        "swap",
        "name",
        "kill\\-after",
        "require\\-cgroup",
        "verbose",
        "quiet",
    ] {
        assert!(page.contains(opt), "man page lacks --{opt}");
    }
    for env in [
        "GUARD_MEMORY",
        "GUARD_SWAP",
        "GUARD_NAME",
        "GUARD_KILL_AFTER",
        "GUARD_REQUIRE_CGROUP",
        "GUARD_VERBOSE",
    ] {
        assert!(page.contains(env), "man page lacks {env}");
    }
}

#[test]
fn readme_quotes_the_exit_table() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for row in guard::config::exit::TABLE {
        assert!(
            readme.contains(&format!("| {} | {} |", row.status, row.meaning)),
            "README lacks the row for {}",
            row.status
        );
    }
}
