//! The first screen's lead when the process that holds the most memory is a Node.js process
//! with a census (`processes/<pid>/jsheap.json`): V8's memory by kind (the JS heap against what
//! lives outside it — Buffers, ArrayBuffers), the constructors holding the most with the way one
//! instance of each is held, the functions that allocated what lives (V8's sampling, from the
//! warning on), what to do, and why a part is missing.

use crate::config::units::format_size;
use crate::format::{JsAllocation, JsHeap, JsPath, Manifest, ProcessEntry};
use std::fmt::Write;

/// The lead: a header line, then two-space indented lines.
pub fn lead(o: &mut String, m: &Manifest, j: &JsHeap, p: &ProcessEntry, held: u64, total: u64) {
    let _ = writeln!(
        o,
        "\nwhat holds the memory ({}; it holds {}, {:.0} % of the job's):",
        title(j),
        format_size(held),
        held as f64 * 100.0 / total.max(1) as f64
    );
    for line in super::native_lines(m, p).into_iter().take(2) {
        let _ = writeln!(o, "  {line}");
    }
    for line in lines(j) {
        let _ = writeln!(o, "  {line}");
    }
}

/// `Node.js heap census of pid N, Node.js v20.20.2, 473 ms`; a census that failed before it
/// measured anything (its answer is the error alone) has no version and no duration.
pub fn title(j: &JsHeap) -> String {
    if j.node.is_empty() {
        return format!("Node.js heap census of pid {}", j.pid);
    }
    format!(
        "Node.js heap census of pid {}, Node.js {}, {:.0} ms",
        j.pid, j.node, j.duration_ms
    )
}

/// The census's lines, without the header.
pub fn lines(j: &JsHeap) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(e) = &j.error {
        v.push(format!("the census failed inside the process: {e}"));
    }
    // V8's figures, unless the census failed before it read them.
    if j.rss_bytes > 0 {
        v.push(figures(j));
    }
    let first = j.by_size.first().map_or(0, |g| g.bytes);
    // The largest three, those that matter beside the first (1 % of it or more).
    for g in j
        .by_size
        .iter()
        .take(3)
        .filter(|g| g.bytes.saturating_mul(100) >= first)
    {
        v.push(j.group_line(g));
    }
    if !j.allocated.is_empty() {
        v.push("allocated by (what still lives, V8's sampling since guard's first census):".into());
        v.extend(j.allocated.iter().take(3).map(allocation));
    }
    if let Some(r) = j.running.as_ref().filter(|r| !r.stacks.is_empty()) {
        v.push(format!(
            "running (JS stacks, V8's CPU samples since guard's first census: {} samples, {:.0} % idle):",
            r.samples,
            r.idle_samples as f64 * 100.0 / r.samples.max(1) as f64
        ));
        v.extend(r.stacks.iter().take(3).map(|s| {
            format!(
                "  {:>5.0} %  {}",
                s.share * 100.0,
                s.stack.join(" \u{2190} ")
            )
        }));
    }
    if let Some(fix) = j.paths.first().and_then(fix_hint) {
        v.push(format!("fix: {fix}"));
    }
    v.extend(j.notes.iter().take(3).map(|n| format!("note: {n}")));
    v
}

/// `JS heap 7.0 MiB used of 9.1 MiB · external 132 MiB (ArrayBuffers 132 MiB) · RSS 150 MiB`,
/// and which of the two holds most of the process.
fn figures(j: &JsHeap) -> String {
    let outside = j.external_bytes > j.heap_used_bytes;
    format!(
        "V8       JS heap {} used of {} \u{b7} external {} (ArrayBuffers {}) \u{b7} RSS {}; most of it {}",
        format_size(j.heap_used_bytes),
        format_size(j.heap_total_bytes),
        format_size(j.external_bytes),
        format_size(j.array_buffers_bytes),
        format_size(j.rss_bytes),
        if outside {
            "outside the JS heap (Buffers, ArrayBuffers: their holders are below)"
        } else {
            "on the JS heap"
        }
    )
}

fn allocation(a: &JsAllocation) -> String {
    format!(
        "  {:>10}  {}",
        format_size(a.bytes),
        a.stack.join(" \u{2190} ")
    )
}

/// What to do about the way the largest holder is held, when its path ends at a variable.
pub fn fix_hint(p: &JsPath) -> Option<&'static str> {
    let last = p.path.last()?;
    if last.starts_with("Map '") {
        return Some(
            "a Map that only grows keeps every value: delete entries when done with them \
             (map.delete(key)), bound it (an LRU cache with a maximum), or key a WeakMap by the \
             object whose lifetime it follows",
        );
    }
    if last.starts_with("Set '") {
        return Some(
            "a Set that only grows keeps every member: delete them when done, or use a WeakSet",
        );
    }
    let held_by_array = p
        .path
        .iter()
        .rev()
        .nth(1)
        .is_some_and(|l| l.contains("Array["))
        || last.starts_with("Array[");
    if held_by_array && p.root.as_deref() == Some("variable") {
        return Some(
            "an array that only grows (push in a loop or a handler) keeps every item for as long \
             as the closure or module that holds it: drop what is done with (splice, a bounded \
             queue), or keep only what is needed",
        );
    }
    if last.starts_with("Object '") {
        return Some(
            "an object used as a cache grows for the life of the process: bound it (a Map with \
             an LRU policy) or delete keys when done",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_says_where_the_memory_is_and_who_holds_it() {
        let j = JsHeap {
            pid: 7,
            node: "v20.20.2".into(),
            heap_used_bytes: 7 << 20,
            heap_total_bytes: 9 << 20,
            external_bytes: 132 << 20,
            array_buffers_bytes: 132 << 20,
            rss_bytes: 150 << 20,
            by_size: vec![crate::format::JsGroup {
                name: "Buffer".into(),
                count: 2100,
                bytes: 132 << 20,
            }],
            paths: vec![JsPath {
                name: "Buffer".into(),
                path: vec![
                    "Object.profile".into(),
                    "Map 'sessions' (sessions.js)".into(),
                ],
                root: Some("variable".into()),
            }],
            ..Default::default()
        };
        let l = lines(&j);
        assert!(
            l[0].contains("JS heap 7 MiB used") && l[0].contains("external 132 MiB"),
            "{l:?}"
        );
        assert!(l[0].contains("outside the JS heap"), "{l:?}");
        assert_eq!(
            l[1],
            "Buffer \u{d7}2,100 (132 MiB) \u{2190} Object.profile \u{2190} Map 'sessions' (sessions.js)"
        );
        assert!(l[2].starts_with("fix: a Map that only grows"), "{l:?}");
        assert_eq!(
            title(&j),
            "Node.js heap census of pid 7, Node.js v20.20.2, 0 ms"
        );
    }

    /// What ran since the warning: the JS stacks sampled most, with their share and the idle time.
    #[test]
    fn the_stacks_that_ran_are_listed_with_their_share() {
        let j = JsHeap {
            pid: 7,
            node: "v24.22.3".into(),
            rss_bytes: 1,
            running: Some(crate::format::JsRunning {
                samples: 200,
                idle_samples: 20,
                stacks: vec![crate::format::JsStack {
                    samples: 124,
                    share: 0.62,
                    stack: vec![
                        "addRow (rows.js:4)".into(),
                        "(anonymous) (rows.js:11)".into(),
                    ],
                }],
            }),
            ..Default::default()
        };
        let l = lines(&j);
        assert!(
            l.iter().any(
                |x| x.starts_with("running (JS stacks") && x.contains("200 samples, 10 % idle")
            ),
            "{l:?}"
        );
        assert!(
            l.contains(
                &"     62 %  addRow (rows.js:4) \u{2190} (anonymous) (rows.js:11)".to_string()
            ),
            "{l:?}"
        );
    }

    /// A census whose answer is an error alone (it failed before it measured): the error, no
    /// figures of zeros, no empty version.
    #[test]
    fn a_census_that_failed_before_measuring_shows_only_why() {
        let j = JsHeap {
            pid: 7,
            error: Some("Error: the heap snapshot ended early".into()),
            ..Default::default()
        };
        assert_eq!(
            lines(&j),
            ["the census failed inside the process: Error: the heap snapshot ended early"]
        );
        assert_eq!(title(&j), "Node.js heap census of pid 7");
    }
}
