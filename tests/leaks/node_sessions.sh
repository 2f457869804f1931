# leak: a Node.js service keeps every session in a module-level Map, each session holding a
# Buffer: the memory is outside V8's heap, held from a variable
# python: none
# tools: node
# guard: --memory 300M
# run: sh {fixture} {scratch}
# expect-lead: Node.js heap census
# expect: most of it outside the JS heap
# expect: Buffer ×
# expect: ← Object.profile ← Map 'sessions' (sessions.js)
# expect: fix: a Map that only grows keeps every value
cat > "$1/sessions.js" <<'JS'
const sessions = new Map();
let next = 0;

function login(id) {
  // the leak: nothing ever deletes a session
  sessions.set(id, { id, profile: Buffer.alloc(64 * 1024, 1), at: Date.now() });
}

setInterval(() => {
  for (let i = 0; i < 20; i++) login('user-' + next++);
}, 5);
JS
exec node "$1/sessions.js"
