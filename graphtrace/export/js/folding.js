// The scope tree and what of it is open: which box (a closed scope "s<k>", a closed stack "g<g>") or
// node ("n<i>") every node shows in. Stacks are the consecutive sibling instances with the same
// structure that the exporter found (graphtrace/export/stacks.py); an open stack shows the inside of the
// instance picked, each box there summarising that scope over every instance.
GT.folding = function (M) {
  "use strict";
  const P = M.P, S = P.scopes, nS = S.length;
  const parent = new Int32Array(nS), sname = new Array(nS), depth = new Int32Array(nS);
  // the scopes the exporter added for a torch Sequential/ModuleList (payload.py): drawn as scopes, left
  // out of paths (its children are recorded as "ResNet18/layer2[0]", not "ResNet18/layer2/layer2[0]")
  const virtual = new Uint8Array(nS);
  (P.virtual || []).forEach(function (k) { virtual[k] = 1; });
  for (let k = 0; k < nS; k++) {
    parent[k] = k === 0 ? -1 : S[k][0];
    sname[k] = k === 0 ? "" : S[k][1];
    depth[k] = k === 0 ? 0 : depth[parent[k]] + 1;
  }
  // per scope: the nodes under it, its last node (its output), its direct children (scopes and nodes)
  const count = new Int32Array(nS), last = new Int32Array(nS).fill(-1), childItems = new Int32Array(nS);
  const bad = new Uint8Array(nS);  // a non-finite value somewhere inside
  for (let i = 0; i < M.n; i++) {
    const s = M.scope[i];
    count[s] += 1; last[s] = i; childItems[s] += 1;
    if (M.anomaly(i)) { bad[s] = 1; }
  }
  for (let k = nS - 1; k > 0; k--) {  // children come after their parents: add each scope to its parent
    const p = parent[k];
    count[p] += count[k];
    bad[p] |= bad[k];
    if (last[k] > last[p]) { last[p] = last[k]; }
    childItems[p] += 1;
  }
  let kids = null;  // scope -> Map(segment -> child), built on first lookup by name
  function child(k, seg) {
    if (kids === null) {
      kids = new Array(nS);
      for (let j = 0; j < nS; j++) { kids[j] = null; }
      for (let j = 1; j < nS; j++) {
        (kids[parent[j]] || (kids[parent[j]] = new Map())).set(sname[j], j);
        // a child of an added scope is found by its recorded path too (from the scope above)
        for (let up = parent[j]; up > 0 && virtual[up]; up = parent[up]) {
          (kids[parent[up]] || (kids[parent[up]] = new Map())).set(sname[j], j);
        }
      }
    }
    const m = kids[k];
    return m ? m.get(seg) : undefined;
  }
  function spath(k) {  // the full path (walking the parents: no path is stored, scopes nest 10,000 deep)
    const segs = [];
    for (let j = k; j > 0; j = parent[j]) { if (j === k || !virtual[j]) { segs.push(sname[j]); } }
    return segs.reverse().join("/");
  }
  // a scope by its path ("MLP[3]/Layer0"), -1 if none; "" is the root
  function scopeIndex(path) {
    if (typeof path !== "string") { return -1; }
    if (path === "") { return 0; }
    const segs = path.split("/");
    let k = 0;
    for (let j = 0; j < segs.length; j++) {
      const next = child(k, segs[j]);
      if (next === undefined) { return -1; }
      k = next;
    }
    return k;
  }
  // the name a box shows: its segment, a bare index ("0" under a torch Sequential) after its parent's name
  function display(k) {
    const s = sname[k];
    return /^\d+$/.test(s) && parent[k] > 0 ? display(parent[k]) + "[" + s + "]" : s;
  }

  // ---- stacks ------------------------------------------------------------------------------
  const groups = [];  // {base, members (scope indices, in order), sel (position picked), open}
  const foldOf = new Int32Array(nS).fill(-1);  // a stack's member scope -> its group
  const instOf = new Int32Array(nS).fill(-1);  // a scope inside a member (or the member) -> the member
  const relOf = new Int32Array(nS).fill(-1);   // -> its path relative to the member, as an id
  const posOf = new Map(), twins = new Map();
  (P.stacks || []).forEach(function (stack) {  // [base name ("" for bare indices), member scopes]
    const g = groups.length, members = stack[1];
    groups.push({ base: stack[0] || display(parent[members[0]]), members: members.slice(), sel: 0, open: false });
    members.forEach(function (k, pos) { foldOf[k] = g; instOf[k] = k; relOf[k] = 0; posOf.set(k, pos); });
    twins.set(g + ":0", members.slice());
  });
  if (groups.length) {
    const rel = new Map();
    for (let k = 1; k < nS; k++) {
      const p = parent[k];
      if (instOf[p] < 0 || foldOf[k] >= 0) { continue; }
      instOf[k] = instOf[p];
      const key = relOf[p] + "/" + sname[k];
      let r = rel.get(key);
      if (r === undefined) { r = rel.size + 1; rel.set(key, r); }
      relOf[k] = r;
      const tk = foldOf[instOf[k]] + ":" + r;
      let tw = twins.get(tk);
      if (!tw) { twins.set(tk, tw = []); }
      tw[posOf.get(instOf[k])] = k;
    }
  }
  // the same scope in every instance of its stack (null outside stacks)
  function twinsOf(k) { return instOf[k] < 0 ? null : twins.get(foldOf[instOf[k]] + ":" + relOf[k]) || null; }

  // ---- what is open --------------------------------------------------------------------------
  const expanded = new Uint8Array(nS);
  expanded[0] = 1;
  let activeGroup = -1;
  function isOpen(k) { return k === 0 || (foldOf[k] >= 0 ? groups[foldOf[k]].open : !!expanded[k]); }
  function pick(g, pos) {  // show instance `pos` of stack g, with the same scopes open inside as before
    const G = groups[g], old = G.members[G.sel];
    pos = Math.max(0, Math.min(G.members.length - 1, pos | 0));
    if (pos !== G.sel) {
      for (let k = 1; k < nS; k++) {
        if (instOf[k] === old && k !== old && expanded[k]) {
          expanded[k] = 0;
          const t = twins.get(g + ":" + relOf[k]);
          if (t && t[pos] !== undefined) { expanded[t[pos]] = 1; }
        }
      }
    }
    G.sel = pos;
    G.open = true;
    activeGroup = g;
  }
  function open(k) { if (foldOf[k] >= 0) { pick(foldOf[k], posOf.get(k)); } else { expanded[k] = 1; } }
  function close(k) { if (foldOf[k] >= 0) { groups[foldOf[k]].open = false; } else if (k > 0) { expanded[k] = 0; } }
  function openPath(k) { while (k > 0) { open(k); k = parent[k]; } }
  function openAll() { expanded.fill(1); }
  // every scope's state: "" open (or holding a single node, drawn as itself), null hidden (inside an instance of an open stack not picked), or
  // the id of the box it shows in
  function assign() {
    const st = new Array(nS);
    st[0] = "";
    for (let k = 1; k < nS; k++) {
      const up = st[parent[k]];
      if (up !== "") { st[k] = up; continue; }
      const g = foldOf[k];
      if (g >= 0) {
        const G = groups[g];
        st[k] = !G.open ? "g" + g : (G.members[G.sel] === k ? "" : null);
      } else {
        st[k] = expanded[k] || count[k] === 1 ? "" : "s" + k;  // a box of one node is that node
      }
    }
    return st;
  }
  // the boxes that collect leaves rather than compute (parameters, model inputs, and every scope inside
  // them): they show the range of their nodes' values, not an output's
  const collects = new Uint8Array(nS);
  let holds = null;
  for (let k = 1; k < nS; k++) {
    collects[k] = parent[k] === 0 ? (sname[k] === P.noAuto[0] || sname[k] === P.noAuto[1] ? 1 : 0) : collects[parent[k]];
  }
  function nodesUnder(k) {  // every node under scope k, a scope of parameters or inputs (one pass, on first use)
    if (holds === null) {
      holds = new Map();
      for (let i = 0; i < M.n; i++) {
        for (let s = M.scope[i]; s > 0 && collects[s]; s = parent[s]) {
          let list = holds.get(s);
          if (list === undefined) { holds.set(s, list = []); }
          list.push(i);
        }
      }
    }
    return holds.get(k) || [];
  }
  // an open stack shows one instance; an edge between another instance and the rest of the graph is
  // drawn from (or to) the same node of the instance shown: blocks[5]'s output feeds ln_f, drawn from
  // the output of the block shown (else what follows a stack would float unconnected)
  let twinAt = null;
  function stackOfNode(i) { const m = instOf[M.scope[i]]; return m < 0 ? -1 : foldOf[m]; }
  function twinNode(i) {
    const m = instOf[M.scope[i]];
    if (m < 0) { return -1; }
    if (twinAt === null) {  // each node's position inside its instance, each instance's nodes (first use)
      twinAt = { pos: new Int32Array(M.n).fill(-1), nodes: new Map() };
      for (let j = 0; j < M.n; j++) {
        const mm = instOf[M.scope[j]];
        if (mm < 0) { continue; }
        let list = twinAt.nodes.get(mm);
        if (list === undefined) { twinAt.nodes.set(mm, list = []); }
        twinAt.pos[j] = list.length;
        list.push(j);
      }
    }
    const G = groups[foldOf[m]], shown = twinAt.nodes.get(G.members[G.sel]), p = twinAt.pos[i];
    return shown !== undefined && p < shown.length ? shown[p] : -1;
  }
  // how many named parts opening scope k shows: its child scopes (modules), one per name once indices
  // are left out (layer2[0] and layer2[1] are one part, a Sequential's 0, 1, 2 three), never the
  // parameters or inputs; the ops directly inside are not parts
  let partCount = null;
  function parts(k) {
    if (partCount === null) {
      partCount = new Int32Array(nS);
      const seen = new Set();
      for (let j = 1; j < nS; j++) {
        if (collects[j]) { continue; }
        const key = parent[j] + "/" + (/^\d+$/.test(sname[j]) ? sname[j] : sname[j].replace(/(\[\d+\])+$/, "").replace(/\d+$/, ""));
        if (!seen.has(key)) { seen.add(key); partCount[parent[j]] += 1; }
      }
    }
    return partCount[k];
  }
  // a box's output values over the instances it stands for: M.data or M.grad of each one's last node
  function outputs(scopes, column) { return scopes.map(function (k) { return column[last[k]]; }); }
  return {
    nS: nS, parent: parent, sname: sname, virtual: virtual, depth: depth, count: count, bad: bad, last: last, childItems: childItems,
    groups: groups, foldOf: foldOf, instOf: instOf, posOf: posOf,
    collects: collects, nodesUnder: nodesUnder, parts: parts, twinNode: twinNode, stackOfNode: stackOfNode,
    spath: spath, scopeIndex: scopeIndex, display: display, twinsOf: twinsOf, outputs: outputs,
    isOpen: isOpen, open: open, close: close, openPath: openPath, openAll: openAll, pick: pick, assign: assign,
    activeGroup: function () { return activeGroup; },
    isExpanded: function (k) { return !!expanded[k]; }
  };
};
