//! ARCHITECTURE.md stays true: the root of src/ holds only the entry points and the two files
//! every layer uses, the code map names every folder and nothing that is gone, the layers point
//! one way (a folder uses only the folders below it), and no two modules import each other but
//! the one pair ARCHITECTURE.md names. Read from the source text: `crate::` paths outside
//! comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn architecture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md")
}

/// Every .rs file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: src/cgroup/v2.rs -> cgroup::v2, src/os/mod.rs -> os.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

/// The code of a file without its test module and its comments.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `crate::a::b::…` paths a file names (the words after `crate::`).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: Vec<String> = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        out.push(path);
    }
    out
}

/// The folders (and the two shared files) in layer order, lowest first.
const LAYERS: &[&str] = &[
    "format",
    "os",
    "logger",
    "cgroup",
    "config",
    "report",
    "evidence",
    "alert",
    "ship",
    "supervise",
    "commands",
];

#[test]
fn the_root_of_src_holds_only_the_entry_points_and_the_shared_files() {
    let mut files: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["format.rs", "lib.rs", "logger.rs", "main.rs"]);
}

#[test]
fn architecture_md_maps_every_folder_and_names_nothing_that_is_gone() {
    let doc = architecture();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in std::fs::read_dir(src()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let named = if e.path().is_dir() {
            format!("`src/{name}/`")
        } else {
            format!("`src/{name}`")
        };
        assert!(doc.contains(&named), "ARCHITECTURE.md does not map {named}");
    }
    // Every path it names in backquotes exists.
    for piece in doc.split('`').skip(1).step_by(2) {
        let path = piece.trim_end_matches('/');
        let looks_like_path = ["src/", "tests/", "bench/", "scripts/", "man/", "packaging/"]
            .iter()
            .any(|p| path.starts_with(p))
            && !path.contains(' ')
            && !path.contains('*');
        // The cgroup v2 guests get the tree's src/, its docs and tests/fixtures, not the rest
        // of tests/ or scripts/: where this very file is absent the tree is such a partial
        // copy, and only the paths under src/ can be checked (the host lane checks them all).
        let whole_tree = root.join("tests/architecture.rs").is_file();
        if looks_like_path && (whole_tree || path.starts_with("src/")) {
            assert!(
                root.join(path).exists(),
                "ARCHITECTURE.md names {path}, which is gone"
            );
        }
    }
}

#[test]
fn the_layers_point_one_way() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let module = module_of(f);
        let top = module.split("::").next().unwrap_or("").to_string();
        let Some(level) = LAYERS.iter().position(|l| *l == top) else {
            continue; // lib.rs, main.rs: the dispatch, on top of everything
        };
        for path in crate_paths(&code(f)) {
            let Some(used) = path.first() else { continue };
            let Some(used_level) = LAYERS.iter().position(|l| l == used) else {
                continue;
            };
            // SIZE/DUR and the exit table are leaves every layer may use.
            let leaf = used == "config" && path.get(1).is_some_and(|m| m == "units" || m == "exit");
            if *used != top && used_level > level && !leaf {
                wrong.push(format!("{module} uses crate::{}", path.join("::")));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "a layer uses one above it (ARCHITECTURE.md, code map):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other_but_the_event_loop_and_its_hold() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        let mut code = code(f);
        // super:: paths, made crate:: paths.
        let parent: Vec<&str> = {
            let mut p: Vec<&str> = m.split("::").collect();
            p.pop();
            p
        };
        code = code.replace("super::", &format!("crate::{}::", parent.join("::")));
        let entry = deps.entry(m.clone()).or_default();
        for path in crate_paths(&code) {
            // The longest prefix that is a module.
            let found = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|p| modules.contains(p));
            if let Some(d) = found {
                if d != m && !m.starts_with(&format!("{d}::")) {
                    entry.insert(d);
                }
            }
        }
    }
    let mut pairs = Vec::new();
    for (a, ds) in &deps {
        for b in ds {
            if a < b && deps.get(b).is_some_and(|bd| bd.contains(a)) {
                pairs.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert_eq!(pairs, ["supervise::event_loop <-> supervise::hold"]);
}
