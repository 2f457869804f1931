//! `manifest.json`, the machine-readable summary of a bundle. The keys named in the contract
//! (`format: guard-evidence/1`) are binding: more may be added, none renamed. `guard report` and
//! `guard list` read bundles through this type, so every added field is optional on reading.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: &str = "guard-evidence/1";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub guard_version: String,
    pub job: String,
    pub command: Vec<String>,
    /// The job's main process.
    pub pid: i32,
    pub started_at: String,
    pub captured_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// memory-limit | warning | kernel-oom | signal | timeout | drill
    pub trigger: String,
    /// pre-kill | post-mortem
    pub capture: String,
    pub limit_bytes: Option<u64>,
    #[serde(default)]
    pub warn_bytes: Option<u64>,
    pub usage_at_trigger_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub cgroup: CgroupInfo,
    pub processes: Vec<ProcessEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    pub collectors: Vec<CollectorResult>,
    pub timings: Timings,
    pub redacted_env_keys: Vec<String>,
    /// Added: the host name, whether guard confirmed the hold, milliseconds from the job's start
    /// to the trigger, and the kernel's memory event counters at capture.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub trigger_after_ms: Option<u64>,
    #[serde(default)]
    pub kernel_counters: BTreeMap<String, u64>,
    /// Added: each alert sink's delivery (sink, status, attempts, ms, detail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<crate::alert::Delivery>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// 1 or 2; None in poll mode.
    pub version: Option<u8>,
    pub path: Option<String>,
    /// cgroup-v1 | cgroup-v2 | poll
    pub mode: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub cmdline: String,
    pub rss_bytes: u64,
    pub pss_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    /// Added: anonymous and file-backed resident bytes, thread count, state letter, whether it
    /// vanished while being read, and its largest mappings by RSS.
    #[serde(default)]
    pub anon_bytes: Option<u64>,
    #[serde(default)]
    pub file_bytes: Option<u64>,
    #[serde(default)]
    pub threads: Option<u64>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vanished: bool,
    #[serde(default)]
    pub largest_mappings: Vec<Mapping>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mapping {
    /// `[heap]`, `[stack]`, `[anon]` for anonymous memory, or the file path.
    pub name: String,
    /// heap | anonymous | file | stack | other
    pub kind: String,
    pub rss_bytes: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CollectorResult {
    pub name: String,
    /// ok | failed | skipped | timeout
    pub status: String,
    pub duration_ms: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub trigger_to_frozen_ms: Option<f64>,
    pub capture_ms: Option<f64>,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The bundle-name timestamp `yyyymmddThhmmssZ`.
pub fn compact_utc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(compact_utc(t), "20261118T110640Z");
    }

    #[test]
    fn exit_is_code_or_signal() {
        let e = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"signal":9}"#);
    }
}
