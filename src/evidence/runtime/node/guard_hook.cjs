'use strict';
// guard's Node.js hook (guard(1), NODE.JS HEAP CENSUS), loaded with NODE_OPTIONS=--require.
//
// At start it only registers a listener for the signal GUARD_NODEHEAP names (when nothing
// listens for it yet) and keeps this file open, which is how guard knows the process is hooked;
// it never throws, so a program starts exactly as it would without guard. When guard sends the
// signal (at the warning threshold, or at the cap while the job is held), the listener — run by
// the event loop — connects to guard's socket (a file in guard's runtime directory), reads the
// terms (held or running, the memory budget, the time left) and answers with one JSON document:
// the process's memory by kind (V8's heap spaces, external memory, ArrayBuffers, RSS) and, when
// a heap snapshot fits the budget, the constructors holding the most (their own bytes plus the
// ArrayBuffer data they own) with a retainer path up to a root. The snapshot comes from the
// in-process inspector session (no port is opened) chunk by chunk and is summarised as it
// streams: nodes and edges go into typed arrays, and only the strings the summary names are
// kept. Nothing is written to disk. Node.js 18 to 24: the inspector answers synchronously up to
// 20 and on the event loop from 22, so every step takes a callback.
(function guardNodeHook() {
  try {
    // 'SOCKET:SIGNAL:WINDOW_MS'; SOCKET is a path (a socket file of guard's) or an abstract
    // name, and may itself hold a colon.
    const spec = String(process.env.GUARD_NODEHEAP || '').split(':');
    if (spec.length < 3) return;
    const windowText = spec.pop();
    const signal = spec.pop();
    const sock = spec.join(':');
    const windowMs = Number(windowText);
    if (!/^SIG[A-Z0-9]+$/.test(signal) || !(windowMs > 0)) return;
    if (process.listenerCount(signal) > 0) return;
    // A signal while a census runs (guard gave up on the warning's and asks again at the cap)
    // starts another as soon as this one is done.
    let busy = false;
    let again = false;
    const run = () => {
      busy = true;
      again = false;
      try {
        census(sock, windowMs, () => {
          busy = false;
          if (again) run();
        });
      } catch (e) {
        busy = false;
      }
    };
    const guardCensus = function guardCensus() {
      if (busy) again = true;
      else run();
    };
    process.on(signal, guardCensus);
    // The announcement guard looks for in /proc/PID/fd before it signals this process.
    const fs = require('fs');
    const announcement = fs.openSync(__filename, 'r');
    // The program listens for the signal itself (it does so after this hook ran): the hook
    // steps aside — its listener and its announcement go — so that guard never sends the
    // program a signal it would take as its own.
    const stepAside = (event) => {
      if (event !== signal) return;
      process.removeListener(signal, guardCensus);
      process.removeListener('newListener', stepAside);
      try {
        fs.closeSync(announcement);
      } catch (e) {
        // already closed by the program
      }
    };
    process.on('newListener', stepAside);
  } catch (e) {
    // a program starts as it would without guard
  }
})();

const FORMAT = 'guard-jsheap/1';
const TOP = 12; // constructors listed
const PATHS = 3; // constructors that get a retainer path
const SPARE = 3; // more taken, in case V8's own holders are among them
const MAX_DEPTH = 40; // steps up from an instance
const MAX_STRING = 200; // characters kept of a name
// What a snapshot costs the process, per byte of used JS heap: V8's graph of it (an entry and
// its edges for each object) and the summary's typed arrays (bench/node: about 2.2 measured).
const SNAPSHOT_COST = 16;
// V8's sampling heap profiler: one sample per this many bytes allocated on the JS heap (V8's
// default), kept while the sampled object lives.
const SAMPLING_INTERVAL = 32768;
const ALLOCATION_SITES = 10;

// The sampling session, from the first census on (a warning): who allocated what still lives.
let sampler = null;

// V8's CPU profiler, started with the allocation sampling: what ran between two censuses, as
// JS stacks. A sample every 100 ms: each one interrupts the main thread (SIGPROF) and touches
// V8's code, which a process at its cap may have to fault back in — at 10 ms a Node.js job
// beside busy loops was seen thrashing at its cap instead of reaching it. A listener on the
// event loop sees only its own stack; these are the program's.
const CPU_INTERVAL_US = 100000;
const RUNNING_STACKS = 3;

function startSampling(notes) {
  try {
    const inspector = require('inspector');
    const s = new inspector.Session();
    s.connect();
    s.post('HeapProfiler.startSampling', { samplingInterval: SAMPLING_INTERVAL });
    s.post('Profiler.enable');
    s.post('Profiler.setSamplingInterval', { interval: CPU_INTERVAL_US });
    s.post('Profiler.start');
    sampler = s;
    notes.push('allocation and CPU sampling started: the next census says which functions allocated ' +
      'what lives and what ran meanwhile');
  } catch (e) {
    notes.push('allocation sampling could not start: ' + describe(e));
  }
}

// What ran since sampling started: the stacks sampled most (innermost first), each with its share
// of the samples, and then sampling goes on for the next census; null when it does not run.
function running(cb) {
  askSampler('Profiler.stop', (res) => runningStacks(res.profile), (out) => {
    // Sampling goes on for the next census.
    try {
      if (sampler !== null) sampler.post('Profiler.start');
    } catch (e) {
      // the next census says sampling does not run
    }
    cb(out);
  });
}

// Ask the sampling session `method`; cb(summarise(answer)), or cb(null) when sampling does not
// run or anything fails. Synchronous up to Node.js 20, on the event loop from 22.
function askSampler(method, summarise, cb) {
  const reply = once(cb);
  if (sampler === null) return reply(null);
  try {
    sampler.post(method, (err, res) => {
      let out = null;
      try {
        if (!err) out = summarise(res);
      } catch (e) {
        out = null;
      }
      reply(out);
    });
  } catch (e) {
    reply(null);
  }
}

// `name (file:line)` of a profile's call frame, as V8 reports it.
function frameName(f) {
  const where = f.url ? ' (' + f.url.replace(/^file:\/\//, '') + ':' + (f.lineNumber + 1) + ')' : '';
  return (f.functionName || '(anonymous)') + where;
}

function runningStacks(profile) {
  const byId = new Map();
  const parent = new Map();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children || []) parent.set(c, n.id);
  }
  const counts = new Map();
  for (const id of profile.samples || []) counts.set(id, (counts.get(id) || 0) + 1);
  const total = (profile.samples || []).length;
  const stacks = [];
  let idle = 0;
  for (const [id, count] of counts) {
    const n = byId.get(id);
    if (!n) continue;
    const name = n.callFrame.functionName;
    if (name === '(idle)' || name === '(program)') {
      idle += count;
      continue;
    }
    const stack = [];
    let ownFile = false;
    for (let at = id; at !== undefined && stack.length < 8; at = parent.get(at)) {
      const m = byId.get(at);
      if (!m || m.callFrame.functionName === '(root)') break;
      const u = m.callFrame.url;
      if (u === __filename || u === 'file://' + __filename) ownFile = true;
      stack.push(frameName(m.callFrame));
    }
    // The census's own samples are not the program's.
    if (!ownFile) stacks.push({ samples: count, stack });
  }
  stacks.sort((a, b) => b.samples - a.samples);
  return {
    samples: total,
    idle_samples: idle,
    stacks: stacks.slice(0, RUNNING_STACKS).map((x) => ({
      samples: x.samples,
      share: total > 0 ? x.samples / total : 0,
      stack: x.stack,
    })),
  };
}

// The inspector session answers in-process requests synchronously up to Node.js 20 and on the
// event loop from 22 on: every step below takes a callback and works either way.

// A function that runs once; later calls do nothing.
function once(f) {
  let called = false;
  return (...args) => {
    if (called) return;
    called = true;
    f(...args);
  };
}

// The functions that allocated the most of what still lives, each with its callers (innermost
// first); null when sampling does not run.
function sampled(cb) {
  askSampler('HeapProfiler.getSamplingProfile', (res) => allocationSites(res.profile), cb);
}

function allocationSites(profile) {
  const sites = [];
  const walk = (node, stack) => {
    const f = node.callFrame;
    const s = stack.concat([frameName(f)]);
    // What the census itself allocated is not the program's.
    if (f.url === __filename || f.url === 'file://' + __filename) return;
    if (node.selfSize > 0) sites.push({ bytes: node.selfSize, stack: s.slice(-6).reverse() });
    for (const c of node.children || []) walk(c, s);
  };
  walk(profile.head, []);
  sites.sort((a, b) => b.bytes - a.bytes);
  return sites.slice(0, ALLOCATION_SITES).map((x) => ({ bytes: x.bytes, stack: x.stack.filter((f) => !f.startsWith('(root)')) }));
}

function census(sock, windowMs, done) {
  const net = require('net');
  const t0 = Date.now();
  const finish = once(done);
  const conn = net.createConnection({ path: sock.startsWith('/') ? sock : '\0' + sock });
  let head = '';
  const noTerms = setTimeout(() => { conn.destroy(); finish(); }, 1000);
  // A census never keeps a program that is done from exiting.
  noTerms.unref();
  conn.unref();
  conn.on('error', () => { clearTimeout(noTerms); finish(); });
  conn.on('close', () => { clearTimeout(noTerms); finish(); });
  conn.on('data', (d) => {
    if (head === null) return;
    head += d.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl < 0) {
      if (head.length > 256) conn.destroy();
      return;
    }
    clearTimeout(noTerms);
    const terms = parseTerms(head.slice(0, nl), windowMs);
    head = null;
    if (terms === null) {
      conn.destroy();
      return;
    }
    const answer = once((result) => {
      try {
        conn.end(JSON.stringify(result));
      } catch (e) {
        conn.end('{"format":"' + FORMAT + '","error":"' + describe(e).replace(/[^ -~]|["\\]/g, '?') + '"}');
      }
      finish();
    });
    try {
      measure(terms, t0, (result) => answer(result));
    } catch (e) {
      answer({ format: FORMAT, error: describe(e) });
    }
  });
}

function describe(e) {
  const name = (e && e.name) || 'Error';
  return (name + ': ' + String(e && e.message)).slice(0, MAX_STRING);
}

// guard's first line: 'guard-jsheap/1 live=0|1 budget=BYTES window_ms=MS'.
function parseTerms(line, windowMs) {
  const words = line.trim().split(/\s+/);
  if (words[0] !== FORMAT) return null;
  const kv = {};
  for (const w of words.slice(1)) {
    const at = w.indexOf('=');
    if (at > 0) kv[w.slice(0, at)] = w.slice(at + 1);
  }
  const budget = Number(kv.budget);
  const ms = kv.window_ms === undefined ? windowMs : Number(kv.window_ms);
  if (!Number.isFinite(budget) || !Number.isFinite(ms)) return null;
  return { live: kv.live === '1', budget, windowMs: ms };
}

// V8's figures at once, then what sampling saw, then the snapshot's summary when it fits the
// budget; `reply` gets the document (an error document when a step threw).
function measure(terms, t0, reply) {
  const v8 = require('v8');
  const mu = process.memoryUsage();
  const result = {
    format: FORMAT,
    pid: process.pid,
    node: process.version,
    live: terms.live,
    budget_bytes: terms.budget,
    rss_bytes: mu.rss,
    heap_total_bytes: mu.heapTotal,
    heap_used_bytes: mu.heapUsed,
    external_bytes: mu.external,
    array_buffers_bytes: mu.arrayBuffers,
    spaces: v8.getHeapSpaceStatistics().map((s) => ({
      name: s.space_name,
      size_bytes: s.space_size,
      used_bytes: s.space_used_size,
    })),
    notes: [],
  };
  const done = () => {
    const after = process.memoryUsage();
    result.rss_after_bytes = after.rss;
    result.duration_ms = Date.now() - t0;
    reply(result);
  };
  const guarded = (step) => (...args) => {
    try {
      step(...args);
    } catch (e) {
      reply({ format: FORMAT, error: describe(e) });
    }
  };
  sampled(guarded((allocated) => running(guarded((ran) => {
    if (ran !== null) result.running = ran;
    if (allocated !== null) result.allocated = allocated;
    else if (terms.live) startSampling(result.notes);
    const cost = mu.heapUsed * SNAPSHOT_COST;
    if (cost > terms.budget) {
      result.notes.push('no heap snapshot: it would cost about ' + mib(cost) + ' (the JS heap holds ' +
        mib(mu.heapUsed) + '), more than the census budget of ' + mib(terms.budget) +
        (terms.live ? ' (half the room left below the cap, at the warning)' : ' (--pyheap-headroom)'));
      done();
      return;
    }
    const deadline = t0 + Math.max(terms.windowMs, 100) * 0.8;
    snapshotSummary(deadline, guarded((err, summary) => {
      // V8's figures stand without the snapshot: say why it is missing.
      if (err) result.notes.push('no heap snapshot: ' + describe(err));
      else Object.assign(result, summary);
      done();
    }));
  }))));
}

function mib(n) {
  return (n / 1048576).toFixed(1) + ' MiB';
}

// The heap snapshot, taken through the in-process inspector session and summarised as it
// streams in; cb(error) or cb(null, summary).
function snapshotSummary(deadline, cb) {
  const inspector = require('inspector');
  const session = new inspector.Session();
  const parser = new SnapshotParser();
  let failed = null;
  const end = once((err) => {
    try {
      session.disconnect();
    } catch (e) {
      // already gone
    }
    if (err) return cb(err);
    if (failed !== null) return cb(failed);
    if (!parser.done) return cb(new Error('the heap snapshot ended early'));
    const out = parser.summary;
    if (Date.now() > deadline) out.complete = false;
    return cb(null, out);
  });
  try {
    session.connect();
    session.on('HeapProfiler.addHeapSnapshotChunk', (m) => {
      if (failed === null) {
        try {
          parser.push(m.params.chunk);
        } catch (e) {
          failed = e;
        }
      }
    });
    session.post('HeapProfiler.takeHeapSnapshot', { reportProgress: false }, (err) => end(err));
  } catch (e) {
    end(e);
  }
}

// A streaming reader of V8's heap snapshot JSON: {"snapshot":{"meta":…,"node_count":N,
// "edge_count":M,…},"nodes":[…],"edges":[…],…,"strings":[…]}. The summary is computed when the
// edges end; the strings that follow are kept only where the summary names them.
class SnapshotParser {
  constructor() {
    this.phase = 'head';
    this.text = '';
    this.array = null;
    this.at = 0;
    this.number = -1;
    this.done = false;
    this.strIndex = 0;
    this.inString = false;
    this.escaped = false;
    this.current = null;
  }

  push(chunk) {
    let i = 0;
    while (i < chunk.length && !this.done) {
      if (this.phase === 'head' || this.phase === 'skip') {
        i = this.scanText(chunk, i);
      } else if (this.phase === 'strings') {
        i = this.scanStrings(chunk, i);
      } else {
        i = this.scanNumbers(chunk, i);
      }
    }
  }

  // Text up to a marker: the header (kept), or what lies between the edges and the strings.
  scanText(chunk, i) {
    const marker = this.phase === 'head' ? '"nodes":[' : '"strings":[';
    this.text += chunk.slice(i);
    const at = this.text.indexOf(marker);
    if (at < 0) {
      if (this.phase === 'skip') this.text = this.text.slice(-marker.length);
      if (this.text.length > (1 << 20)) throw new Error('the heap snapshot has no ' + marker);
      return chunk.length;
    }
    const rest = this.text.slice(at + marker.length);
    if (this.phase === 'head') {
      this.header(this.text.slice(0, at));
      this.phase = 'nodes';
      this.array = this.nodes;
    } else {
      this.phase = 'strings';
    }
    this.text = '';
    // Go on with what followed the marker in this chunk.
    return chunk.length - rest.length;
  }

  header(text) {
    // '{"snapshot":{…},' — the header object, closed.
    const h = JSON.parse(text.replace(/,\s*$/, '') + '}').snapshot;
    const m = h.meta;
    this.nodeFields = m.node_fields.length;
    this.edgeFields = m.edge_fields.length;
    const idx = (fields, name) => {
      const at = fields.indexOf(name);
      if (at < 0) throw new Error('the heap snapshot has no ' + name + ' field');
      return at;
    };
    this.nType = idx(m.node_fields, 'type');
    this.nName = idx(m.node_fields, 'name');
    this.nSize = idx(m.node_fields, 'self_size');
    this.nEdges = idx(m.node_fields, 'edge_count');
    this.eType = idx(m.edge_fields, 'type');
    this.eName = idx(m.edge_fields, 'name_or_index');
    this.eTo = idx(m.edge_fields, 'to_node');
    this.nodeTypes = m.node_types[this.nType];
    this.edgeTypes = m.edge_types[this.eType];
    this.nodes = new Float64Array(h.node_count * this.nodeFields);
    this.edges = new Uint32Array(h.edge_count * this.edgeFields);
  }

  scanNumbers(chunk, i) {
    const a = this.array;
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (c >= 48 && c <= 57) {
        this.number = (this.number < 0 ? 0 : this.number * 10) + (c - 48);
      } else {
        if (this.number >= 0) {
          if (this.at >= a.length) throw new Error('the heap snapshot has more values than it said');
          a[this.at++] = this.number;
          this.number = -1;
        }
        if (c === 93) { // ]
          this.endArray();
          return i + 1;
        }
      }
    }
    return i;
  }

  endArray() {
    if (this.at !== this.array.length) throw new Error('the heap snapshot has fewer values than it said');
    this.at = 0;
    if (this.phase === 'nodes') {
      this.phase = 'edges'; // the text between ('],"edges":[') holds no digit and no ']'
      this.array = this.edges;
    } else {
      this.phase = 'skip';
      this.array = null;
      this.summary = this.summarise();
    }
  }

  // JSON strings: each kept (shortened) when the summary names its index, else skipped.
  scanStrings(chunk, i) {
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (!this.inString) {
        if (c === 34) { // "
          this.inString = true;
          this.current = this.wanted.has(this.strIndex) ? '' : null;
        } else if (c === 93) { // ]
          this.finishStrings();
          return chunk.length;
        }
        continue;
      }
      if (this.escaped) {
        this.escaped = false;
      } else if (c === 92) { // backslash
        this.escaped = true;
      } else if (c === 34) {
        this.inString = false;
        if (this.current !== null) this.strings.set(this.strIndex, unescapeJson(this.current));
        this.current = null;
        this.strIndex++;
        continue;
      }
      if (this.current !== null && this.current.length < MAX_STRING * 2) this.current += chunk[i];
    }
    return i;
  }

  finishStrings() {
    this.done = true;
    const name = (x) => (this.strings.has(x) ? this.strings.get(x) : '?');
    const out = this.summary;
    const own = (g) => !name(g.name).startsWith('system /');
    out.by_size = out.by_size.filter(own).slice(0, TOP);
    for (const g of out.by_size) g.name = name(g.name) || '(anonymous)';
    out.paths = out.paths.filter(own).slice(0, PATHS).map((p) => {
      const steps = p.path.map((step) => step.map((x, i) => (i < 4 && typeof x === 'number' ? name(x) : x)));
      const script = p.scripts.map(name).find((x) => /^(file:\/\/)?\/|\.[cm]?js$/.test(x) && !x.startsWith('system /'));
      return { name: name(p.name) || '(anonymous)', root: p.root, ...render(steps, script) };
    });
  }

  node(n, field) {
    return this.nodes[n * this.nodeFields + field];
  }

  // Constructors by the bytes they hold (their own, plus the ArrayBuffer data reached through
  // 'buffer' and 'backing_store'), and for the largest a path from one instance up to a root.
  summarise() {
    const count = this.nodes.length / this.nodeFields;
    const firstEdge = new Uint32Array(count + 1);
    for (let n = 0; n < count; n++) firstEdge[n + 1] = firstEdge[n] + this.node(n, this.nEdges) * this.edgeFields;
    this.firstEdge = firstEdge;
    const objectType = this.nodeTypes.indexOf('object');
    const closureType = this.nodeTypes.indexOf('closure');
    const owned = new Uint8Array(count); // data counted once, whoever reaches it
    const groups = new Map(); // name string index -> {name, count, bytes}
    let total = 0;
    const add = (n, bytes) => {
      const key = this.node(n, this.nName);
      let g = groups.get(key);
      if (g === undefined) {
        g = { name: key, count: 0, bytes: 0 };
        groups.set(key, g);
      }
      g.count++;
      g.bytes += bytes;
    };
    const buffers = [];
    for (let n = 0; n < count; n++) {
      const t = this.node(n, this.nType);
      total += this.node(n, this.nSize);
      if (t !== objectType && t !== closureType) continue;
      // An ArrayBuffer's data goes to the view that holds it (a Buffer), when one does.
      if (this.isArrayBufferLike(n)) {
        buffers.push(n);
        continue;
      }
      add(n, this.node(n, this.nSize) + this.ownedData(n, owned, 2));
    }
    for (const n of buffers) if (!owned[n]) add(n, this.node(n, this.nSize) + this.ownedData(n, owned, 1));
    // V8's own holders ("system / Context") are known by name only once the strings are in:
    // a few more are taken here, and finishStrings leaves them out.
    const bySize = [...groups.values()].sort((a, b) => b.bytes - a.bytes).slice(0, TOP + SPARE);
    this.wanted = new Set(bySize.map((g) => g.name));
    this.strings = new Map();
    const retainers = this.retainerIndex(count);
    const samples = this.typicalInstances(bySize.slice(0, PATHS + SPARE), count);
    const paths = bySize.slice(0, PATHS + SPARE).map((g) => this.pathOf(g, samples.get(g.name), retainers));
    for (const p of paths) {
      for (const step of p.path) for (const s of step.slice(0, 4)) if (typeof s === 'number') this.wanted.add(s);
      p.scripts = this.scriptOf(p.path);
      for (const x of p.scripts) this.wanted.add(x);
    }
    return {
      snapshot: { nodes: count, edges: this.edges.length / this.edgeFields, self_bytes: total },
      by_size: bySize.map((g) => ({ name: g.name, count: g.count, bytes: g.bytes })),
      paths,
      complete: true,
    };
  }

  ownedData(n, owned, depth) {
    let sum = 0;
    for (let e = this.firstEdge[n]; e < this.firstEdge[n + 1]; e += this.edgeFields) {
      const type = this.edgeTypes[this.edges[e + this.eType]];
      if (type !== 'internal' && type !== 'property' && type !== 'hidden') continue;
      const to = this.edges[e + this.eTo] / this.nodeFields;
      if (owned[to]) continue;
      const toType = this.nodeTypes[this.node(to, this.nType)];
      if (toType === 'native' && this.node(to, this.nSize) > 0) {
        owned[to] = 1;
        sum += this.node(to, this.nSize);
      } else if (depth > 1 && toType === 'object' && this.isArrayBufferLike(to)) {
        owned[to] = 1;
        sum += this.ownedData(to, owned, depth - 1);
      }
    }
    return sum;
  }

  // For each group, an instance of its most common size, the middle one of those: a leak's
  // instances are alike and the most of them, while the first or the largest one is more often
  // a singleton of the runtime's (a config object).
  typicalInstances(groups, count) {
    const sizes = new Map(groups.map((g) => [g.name, new Map()]));
    for (let n = 0; n < count; n++) {
      const bySize = sizes.get(this.node(n, this.nName));
      if (bySize === undefined) continue;
      const size = this.node(n, this.nSize);
      bySize.set(size, (bySize.get(size) || 0) + 1);
    }
    const want = new Map(); // name -> [size, how many of that size to pass first]
    for (const [name, bySize] of sizes) {
      let best = null;
      for (const [size, k] of bySize) if (best === null || k > best[1]) best = [size, k];
      if (best !== null) want.set(name, [best[0], Math.floor(best[1] / 2)]);
    }
    const out = new Map();
    for (let n = 0; n < count && out.size < want.size; n++) {
      const name = this.node(n, this.nName);
      const w = want.get(name);
      if (w === undefined || out.has(name) || this.node(n, this.nSize) !== w[0]) continue;
      if (w[1] === 0) out.set(name, n);
      else w[1]--;
    }
    return out;
  }

  // Where the closure that sees a path's first variable comes from: the names of the code
  // objects within two internal steps of it (its function info, and that one's script), as
  // string indices; which one is the script is known once the strings are (finishStrings).
  scriptOf(steps) {
    const at = steps.findIndex((s) => s[0] === 'context');
    if (at < 0) return [];
    const closure = steps.slice(at + 1).find((s) => s[2] === 'closure');
    if (closure === undefined) return [];
    const code = this.nodeTypes.indexOf('code');
    const out = [];
    const children = (n) => {
      const kids = [];
      for (let e = this.firstEdge[n]; e < this.firstEdge[n + 1]; e += this.edgeFields) {
        const to = this.edges[e + this.eTo] / this.nodeFields;
        if (this.node(to, this.nType) === code) kids.push(to);
      }
      return kids.slice(0, 16);
    };
    for (const c of children(closure[4])) {
      out.push(this.node(c, this.nName));
      for (const d of children(c)) out.push(this.node(d, this.nName));
    }
    return out;
  }

  // An ArrayBuffer: an object node whose own edges lead to native data.
  isArrayBufferLike(n) {
    for (let e = this.firstEdge[n]; e < this.firstEdge[n + 1]; e += this.edgeFields) {
      const to = this.edges[e + this.eTo] / this.nodeFields;
      if (this.nodeTypes[this.node(to, this.nType)] === 'native' && this.node(to, this.nSize) > 0) return true;
    }
    return false;
  }

  // For every node, the edges that lead to it (weak ones left out).
  retainerIndex(count) {
    const weak = this.edgeTypes.indexOf('weak');
    const ne = this.edges.length / this.edgeFields;
    const first = new Uint32Array(count + 1);
    for (let e = 0; e < ne; e++) {
      if (this.edges[e * this.edgeFields + this.eType] === weak) continue;
      first[this.edges[e * this.edgeFields + this.eTo] / this.nodeFields + 1]++;
    }
    for (let n = 0; n < count; n++) first[n + 1] += first[n];
    const fill = first.slice(0, count);
    const from = new Uint32Array(first[count]);
    const edgeOf = new Uint32Array(first[count]);
    for (let n = 0; n < count; n++) {
      for (let e = this.firstEdge[n]; e < this.firstEdge[n + 1]; e += this.edgeFields) {
        if (this.edges[e + this.eType] === weak) continue;
        const to = this.edges[e + this.eTo] / this.nodeFields;
        from[fill[to]] = n;
        edgeOf[fill[to]] = e;
        fill[to]++;
      }
    }
    return { first, from, edgeOf };
  }

  // From the group's largest instance up: at each step the retainer that is neither visited
  // nor synthetic, preferring a property, a variable (context) or an element; up to a root (a
  // synthetic node: V8's GC roots) or MAX_DEPTH steps.
  pathOf(g, sample, r) {
    const rank = { context: 0, property: 1, element: 2, internal: 3, hidden: 4, shortcut: 5 };
    const seen = new Set([sample]);
    const steps = [];
    let n = sample;
    let root = null;
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      let best = -1;
      let bestRank = 99;
      let rooted = false;
      for (let i = r.first[n]; i < r.first[n + 1]; i++) {
        const p = r.from[i];
        const ptype = this.nodeTypes[this.node(p, this.nType)];
        if (ptype === 'synthetic') {
          rooted = true;
          continue;
        }
        if (seen.has(p)) continue;
        const etype = this.edgeTypes[this.edges[r.edgeOf[i] + this.eType]];
        const k = etype in rank ? rank[etype] : 9;
        if (k < bestRank) {
          best = i;
          bestRank = k;
        }
      }
      if (best < 0) {
        root = rooted ? 'a GC root' : null;
        break;
      }
      const p = r.from[best];
      const e = r.edgeOf[best];
      const etype = this.edgeTypes[this.edges[e + this.eType]];
      const ename = this.edges[e + this.eName];
      const ptype = this.nodeTypes[this.node(p, this.nType)];
      // [edge type, edge name (a string index, or an element's index), holder's type, holder's name]
      steps.push([etype, etype === 'element' || etype === 'hidden' ? '[' + ename + ']' : ename, ptype, this.node(p, this.nName), p]);
      seen.add(p);
      n = p;
    }
    return { name: g.name, path: steps, root };
  }
}

function unescapeJson(s) {
  try {
    return JSON.parse('"' + s + '"').slice(0, MAX_STRING);
  } catch (e) {
    return s.slice(0, MAX_STRING);
  }
}

// A path as people read it, from the instance's holder up: 'Object.profile' (a property),
// 'Array[3]' (an element), 'Map' (reached through its internal table), up to the first variable
// of a closure or module, which names the holder before it: "Map 'sessions' (sessions.js)".
// V8's own holders (element stores, hash tables, "system / …") are passed through.
function render(steps, script) {
  const labels = [];
  let index = null;
  for (const [etype, ename, ptype, pname] of steps) {
    if (etype === 'context') {
      const where = script ? ' (' + script.replace(/^file:\/\//, '').replace(/^.*\//, '') + ')' : '';
      const last = labels.length - 1;
      if (last >= 0 && !/[.[\]]/.test(labels[last])) labels[last] += " '" + ename + "'" + where;
      else labels.push("variable '" + ename + "'" + where);
      return { path: labels, root: 'variable' };
    }
    const internal = ptype === 'array' || ptype === 'hidden' || ptype === 'code' || ptype === 'native' ||
      pname === '' || pname.startsWith('system /') || pname.startsWith('(');
    if (internal) {
      if (etype === 'element' && index === null) index = ename;
      continue;
    }
    const holder = ptype === 'closure' ? pname + '()' : pname;
    if (etype === 'property') labels.push(holder + '.' + ename);
    else if (etype === 'element') labels.push(holder + ename);
    else labels.push(holder + (index !== null && pname === 'Array' ? index : ''));
    index = null;
  }
  return { path: labels };
}
