# leak: a Node.js report builder keeps every row it built in an array its closure holds: the
# memory is on V8's heap, too large for a heap snapshot at the cap, so the census names the code
# that allocated what lives (sampled from the warning on; the warning at half the cap: V8 grows its
# heap in steps of tens of MiB, which on a loaded machine can carry it from 80 % to the cap between
# two samples, and then sampling never starts)
# python: none
# tools: node
# guard: --memory 200M --warn 50%
# run: sh {fixture} {scratch}
# expect-lead: Node.js heap census
# expect: most of it on the JS heap
# expect: allocated by
# expect: rows.js:11) ← listOnTimeout
# expect: running (JS stacks
# expect: note: no heap snapshot
cat > "$1/rows.js" <<'JS'
function makeReport() {
  const rows = [];
  function addRow(i) {
    rows.push({ id: i, name: 'customer ' + i, tags: ['a', 'b', 'c'], total: i * 1.5 });
  }
  return { addRow, size: () => rows.length };
}

const report = makeReport();
let n = 0;
setInterval(() => {
  for (let i = 0; i < 20000; i++) report.addRow(n++);
}, 10);
JS
exec node "$1/rows.js"
