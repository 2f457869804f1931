//! The heap census's settings (`--no-pyheap`, `--no-nodeheap`, `--pyheap-window`,
//! `--pyheap-headroom`, `--tracemalloc`): configuration values like the others, read and checked
//! in [`super`]; the census itself is [`crate::evidence::runtime`].

use std::time::Duration;

/// How long a census may take unless --pyheap-window says otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);
/// The headroom at the cap: this share of --memory, and at least MIN_HEADROOM.
pub const HEADROOM_PERCENT: u64 = 5;
pub const MIN_HEADROOM: u64 = 32 << 20;
/// The least headroom when a Node.js process is asked: V8's heap snapshot costs about 15 times
/// the used JS heap (bench/node), and a service that keeps its data off the heap (Buffers) has a
/// JS heap of a few MiB.
pub const MIN_NODE_HEADROOM: u64 = 128 << 20;

/// The census settings of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub window: Duration,
    /// Extra memory at the cap (None: HEADROOM_PERCENT of --memory, at least MIN_HEADROOM).
    pub headroom: Option<u64>,
    /// --tracemalloc FRAMES: the job's Python processes trace their allocations.
    pub tracemalloc: Option<u32>,
    /// The runtimes whose hook goes into the job (false: --no-pyheap, --no-nodeheap).
    pub python: bool,
    pub node: bool,
}

/// The most frames --tracemalloc takes (Python's own limit is far higher; each frame costs
/// the job memory for every live allocation).
pub const MAX_TRACEMALLOC_FRAMES: u32 = 100;

impl Settings {
    /// The headroom for a cap of `limit` bytes; `node`: a Node.js process is asked, whose heap
    /// snapshot needs more room than a Python census (unless --pyheap-headroom says otherwise).
    pub fn headroom_for(&self, limit: u64, node: bool) -> u64 {
        let least = if node {
            MIN_NODE_HEADROOM
        } else {
            MIN_HEADROOM
        };
        self.headroom
            .unwrap_or_else(|| (limit / 100 * HEADROOM_PERCENT).max(least))
    }
}
