// The backward pass replayed over what is shown, one box or node per step, driven by the buttons
// |◀ ◀ play ▶ ▶| (and window.graphtraceStep). The order is the backward pass's over every node (outputs
// first, then layer by layer by the longest path to an output, breadth-first within a layer: on the
// seed L; d, f; e, c; a, b): a node shown gets its gradient at its turn, a box when the last of its nodes
// does, so nothing is filled before a node between it and the output. A fresh page shows every
// gradient; the first step (or play) greys every one not yet computed ("grad ?").
// host: view() (the items, links and node -> item index drawn now), paint(item indices to redraw or null for all, current
// item, previous current), describe(item) -> {name, grad, text}, told(state) after each step.
GT.replay = function (M, host) {
  "use strict";
  let rank = null;
  function ranks() {
    if (rank !== null) { return rank; }
    const n = M.n, E = M.E, height = new Int32Array(n);
    for (let i = n - 1; i >= 0; i--) {  // a node's users come after it in topological order
      const us = M.users(i);
      let h = 0;
      for (let q = 0; q < us.length; q++) { const v = E.dst[us[q]]; if (height[v] + 1 > h) { h = height[v] + 1; } }
      height[i] = h;
    }
    const bfs = new Int32Array(n).fill(-1), queue = new Int32Array(n);
    let qn = 0;
    for (let i = n - 1; i >= 0; i--) { if (M.users(i).length === 0) { bfs[i] = qn; queue[qn++] = i; } }
    for (let q = 0; q < qn; q++) {
      const v = queue[q];
      for (let e = E.start[v]; e < E.start[v + 1]; e++) { const u = E.src[e]; if (bfs[u] < 0) { bfs[u] = qn; queue[qn++] = u; } }
    }
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) { order[i] = i; }
    order.sort(function (a, b) { return (height[a] - height[b]) || (bfs[a] - bfs[b]); });
    rank = new Int32Array(n);
    for (let r = 0; r < n; r++) { rank[order[r]] = r; }
    return rank;
  }
  let order = null, posOf = null, k = 0, active = false, timer = null;
  const label = document.getElementById("gt-step"), playButton = document.getElementById("gt-play");
  // the items in the order they fill: a user before its operands along the edges shown (boxes and
  // nodes alike), among the items ready the one whose nodes are all done first (a cycle through boxes
  // is broken there too)
  function prepare() {
    if (order !== null) { return; }
    const r = ranks(), c = host.view(), items = c.items, ion = c.itemOfNode, nI = items.length;
    const done = new Float64Array(nI).fill(-1);
    for (let i = 0; i < M.n; i++) { const x = ion[i]; if (x >= 0 && r[i] > done[x]) { done[x] = r[i]; } }
    const waiting = new Int32Array(nI), operands = items.map(function () { return []; });
    c.links.forEach(function (m) {
      const a = c.byId.get(m.from), b = c.byId.get(m.to);
      waiting[a] += 1;  // a's users must fill first
      operands[b].push(a);
    });
    const heap = [], taken = new Uint8Array(nI);
    function push(x) {
      heap.push(x);
      for (let j = heap.length - 1; j > 0;) {
        const up = (j - 1) >> 1;
        if (done[heap[up]] <= done[heap[j]]) { break; }
        const t = heap[up]; heap[up] = heap[j]; heap[j] = t; j = up;
      }
    }
    function pop() {
      const top = heap[0], end = heap.pop();
      if (heap.length) {
        heap[0] = end;
        for (let j = 0; ;) {
          const l = 2 * j + 1, rr = l + 1;
          let m = j;
          if (l < heap.length && done[heap[l]] < done[heap[m]]) { m = l; }
          if (rr < heap.length && done[heap[rr]] < done[heap[m]]) { m = rr; }
          if (m === j) { break; }
          const t = heap[m]; heap[m] = heap[j]; heap[j] = t; j = m;
        }
      }
      return top;
    }
    for (let x = 0; x < nI; x++) { if (waiting[x] === 0) { push(x); } }
    const byDone = items.map(function (_, x) { return x; }).sort(function (a, b) { return done[a] - done[b]; });
    let next = 0;
    order = [];
    while (order.length < nI) {
      let x;
      if (heap.length) { x = pop(); } else {  // a cycle: the first item not taken by completion
        while (taken[byDone[next]]) { next += 1; }
        x = byDone[next];
      }
      if (taken[x]) { continue; }
      taken[x] = 1;
      order.push(x);
      operands[x].forEach(function (a) { if (!taken[a] && --waiting[a] === 0) { push(a); } });
    }
    posOf = new Int32Array(nI);
    order.forEach(function (x, p) { posOf[x] = p; });
  }
  function pending(x) { return active && order !== null && posOf[x] >= k; }
  function current() { return active && k > 0 ? order[k - 1] : -1; }
  function state() {
    const c = current();
    if (c < 0) { return { step: 0, of: order.length, name: null, grad: null, id: null }; }
    const d = host.describe(c);
    return { step: k, of: order.length, name: d.name, grad: d.grad, id: host.view().items[c].id };
  }
  function go(n) {
    prepare();
    n = Math.max(0, Math.min(order.length, n));
    const wasActive = active, before = k, prev = current();
    k = n;
    active = true;
    let refresh = null;  // everything, unless one step from a state already drawn
    if (wasActive && Math.abs(n - before) <= 1) {
      refresh = [];
      [n !== before ? order[Math.min(n, before)] : -1, prev, current()].forEach(function (x) {
        if (x >= 0 && refresh.indexOf(x) < 0) { refresh.push(x); }
      });
    }
    host.paint(refresh, current(), prev);
    const s = state();
    if (s.step === 0) { label.textContent = "step 0/" + s.of + ": no gradient yet"; }
    else { label.textContent = "step " + s.step + "/" + s.of + ": " + host.describe(order[k - 1]).text; }
    host.told(s);
    return s;
  }
  function stop() { if (timer !== null) { clearInterval(timer); timer = null; playButton.textContent = "play"; } }
  function step(n) {  // for scripts: an integer step number (0 .. steps), anything else is refused
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new TypeError("graphtraceStep: the step must be an integer (0 for none, 1 for the output's), got " + String(n));
    }
    stop();
    return go(n);
  }
  document.getElementById("gt-first").addEventListener("click", function () { stop(); go(0); });
  document.getElementById("gt-prev").addEventListener("click", function () { stop(); prepare(); go(active ? k - 1 : order.length - 1); });
  document.getElementById("gt-next").addEventListener("click", function () { stop(); go(active ? k + 1 : 1); });
  document.getElementById("gt-last").addEventListener("click", function () { stop(); prepare(); go(order.length); });
  playButton.addEventListener("click", function () {
    if (timer !== null) { stop(); return; }
    prepare();
    if (!active || k >= order.length) { go(0); }
    playButton.textContent = "pause";
    timer = setInterval(function () { if (k >= order.length) { stop(); } else { go(k + 1); } }, 700);
  });
  return {
    pending: pending,
    current: current,
    step: step,
    active: function () { return active; },
    // the view changed (a box opened): the replay starts again over what is shown now
    reset: function () { stop(); order = null; posOf = null; k = 0; active = false; label.textContent = ""; }
  };
};
