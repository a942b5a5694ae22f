// What is drawn: the items of the current folding state (boxes and nodes) with their text and colour,
// the edges between them (merged per pair of boxes), laid out (GT.layout) and put on the vis Network,
// and the camera. The first view opens the biggest boxes while everything still fits the window at a
// legible size (labels >= 10.5 CSS px), left to right or else top to bottom; it never shrinks below
// that: what cannot fit stays folded one level up.
GT.view = function (M, T, network, hooks) {
  "use strict";
  const F = GT.format, Lg = GT.legend, P = M.P;
  const LEGIBLE = 0.75, GOOD = 1.0, MAX_ZOOM = 2.0, MARGIN = 20, BIG = 3000, MAX_TRIES = 24, MAX_ROWS = 6;
  const container = document.getElementById("graph");
  let cur = null, laid = null, colourMode = P.values ? "value" : "role", scale = null, rp = null;
  let drawnClusters = [];
  network.on("beforeDrawing", function (ctx) { GT.layout.drawClusters(ctx, drawnClusters); });
  network.on("afterDrawing", function (ctx) { GT.layout.drawTitles(ctx, drawnClusters); });
  const labels = GT.labels(network);

  // ---- items ------------------------------------------------------------------------------------
  // c.items [{id, kind "n"/"s"/"g", ref (node or scope), group, first}], c.itemOfNode (node -> item
  // index or -1), with links: c.links [{from, to, count, e (an edge)}] and c.outLinks (item -> link ids)
  function collect(withLinks) {
    const st = T.assign(), n = M.n, itemOfNode = new Int32Array(n), items = [], byId = new Map();
    for (let i = 0; i < n; i++) {
      const s = st[M.scope[i]];
      if (s === null) { itemOfNode[i] = -1; continue; }
      const id = s === "" ? "n" + i : s;
      let x = byId.get(id);
      if (x === undefined) {
        x = items.length;
        byId.set(id, x);
        const kind = id.charAt(0), ref = kind === "n" ? i : Number(id.slice(1));
        items.push({ id: id, kind: kind, group: kind === "g" ? ref : -1, first: i,
                     ref: kind === "g" ? T.groups[ref].members[T.groups[ref].sel] : ref });
      }
      itemOfNode[i] = x;
    }
    const c = { items: items, byId: byId, itemOfNode: itemOfNode, links: null, outLinks: null };
    if (withLinks) {
      const E = M.E, nI = items.length, merged = new Map(), links = [], outLinks = items.map(function () { return []; });
      for (let e = 0; e < E.length; e++) {
        let a = itemOfNode[E.src[e]], b = itemOfNode[E.dst[e]], twin = false;
        if ((a < 0) !== (b < 0) && T.stackOfNode(E.src[e]) !== T.stackOfNode(E.dst[e])) {
          // between an instance of an open stack not shown and the rest: from (to) its twin in the one shown
          if (a < 0) { const t = T.twinNode(E.src[e]); a = t >= 0 ? itemOfNode[t] : -1; }
          else { const t = T.twinNode(E.dst[e]); b = t >= 0 ? itemOfNode[t] : -1; }
          twin = true;
        }
        if (a === b || a < 0 || b < 0) { continue; }
        const key = a * nI + b;
        let m = merged.get(key);
        if (m === undefined) {
          m = { from: items[a].id, to: items[b].id, count: 0, e: e, twin: twin };
          merged.set(key, m);
          outLinks[a].push(links.length);
          links.push(m);
        }
        m.count += 1;
      }
      c.links = links;
      c.outLinks = outLinks;
    }
    return c;
  }
  function scopeOf(it) { return it.kind === "n" ? -1 : it.ref; }
  function outputOf(it) { return it.kind === "n" ? it.ref : T.last[it.ref]; }
  function instances(it) {  // the scopes a box stands for: a stack's members, a scope's twins, or itself
    if (it.kind === "g") { return T.groups[it.group].members; }
    if (it.kind === "s") { return T.twinsOf(it.ref) || [it.ref]; }
    return null;
  }
  function nameOf(it) {
    if (it.kind === "n") { return M.label[it.ref]; }
    if (it.kind === "g") { const G = T.groups[it.group]; return G.base + " \u00d7" + G.members.length; }
    const tw = instances(it);
    return T.display(it.ref) + (tw.length > 1 ? " \u00d7" + tw.length : "");
  }
  // ---- text ---------------------------------------------------------------------------------------
  function opPart(i) {
    const op = M.op[i], label = M.label[i];
    return !op || label === op || label.indexOf(op + "_") === 0 ? "" : "  (" + op + ")";
  }
  function one(i) { return M.numel !== null && M.numel[i] === 1; }
  function tensorValue(v, ok) { return ok ? F.fmt(v) : "\u2014"; }
  function nodeText(i, pending) {
    const sc = M.scope[i], alone = sc > 0 && T.count[sc] === 1 && !T.collects[sc];
    const label = (alone ? F.cut(T.display(sc), P.maxLabel) + " \u00b7 " : "") + F.cut(M.label[i], P.maxLabel);
    if (!M.tensor) {
      return label + opPart(i) + "\ndata " + F.fmt(M.data[i]) + "\ngrad " + (pending ? "?" : F.fmt(M.grad[i]));
    }
    const x = one(i) ? "x " : "\u2016x\u2016 ", g = one(i) ? "\u2207 " : "\u2016\u2207\u2016 ";
    return label + opPart(i) + (M.shape[i] ? "  " + M.shape[i] : "") + "\n" + x + tensorValue(M.data[i], M.dataKnown(i)) +
      "  " + g + (pending ? "?" : tensorValue(M.grad[i], M.gradKnown(i)));
  }
  function boxText(it, pending) {
    const tw = instances(it), k = it.ref, o = T.last[k], many = tw.length > 1;
    const head = (it.kind === "g" ? "\u25a4 " : "\u25b8 ") + F.cut(nameOf(it), P.maxLabel + 6) + "  [" + T.count[k] +
      (many ? " nodes each]" : " node" + (T.count[k] === 1 ? "]" : "s]"));
    if (T.collects[k]) {  // parameters or inputs: the range of their values
      const pick = function (col, ok) { return rangeOf(k, col, ok); };
      const xs = M.tensor ? "\u2016x\u2016 " : "data ", gs = M.tensor ? "\u2016\u2207\u2016 " : "grad ";
      return head + "\n" + xs + pick(M.data, M.dataKnown) + "\n" + gs + (pending ? "?" : pick(M.grad, M.gradKnown));
    }
    const data = many ? F.spread(T.outputs(tw, M.data)) : F.fmt(M.data[o]);
    const grad = pending ? "?" : (many ? F.spread(T.outputs(tw, M.grad)) : F.fmt(M.grad[o]));
    if (!M.tensor) { return head + "\ndata " + data + "\ngrad " + grad; }
    const out = "\u2192 " + M.op[o] + (M.shape[o] ? "  " + M.shape[o] : "");
    if (many) { return head + "\n" + out + "\n\u2016x\u2016 " + data + "\n\u2016\u2207\u2016 " + grad; }
    return head + "\n" + out + "\n\u2016x\u2016 " + tensorValue(M.data[o], M.dataKnown(o)) + "  \u2016\u2207\u2016 " +
      (pending ? "?" : tensorValue(M.grad[o], M.gradKnown(o)));
  }
  // a bag of parameters or inputs has no output: its values' min ... median ... max ("\u2014": none recorded)
  function rangeOf(k, col, ok) {
    const v = T.nodesUnder(k).filter(ok).map(function (i) { return col[i]; });
    return v.length ? F.spread(v) : "\u2014";  // (tensors: only the values the trace recorded)
  }
  function textOf(it, pending) { return it.kind === "n" ? nodeText(it.ref, pending) : boxText(it, pending); }
  // vis-network stacks a label's lines with no space between them: an underscore touched the line below
  // ("nll_loss" over "x 10.78" read as x̄). Each line is drawn as a monospace block (its spaces kept) with an
  // empty line of GAP px between two (the page's font options: mono TEXT px, plain GAP px); GT.layout sizes boxes
  // at 20 px a line. vis centres the first line as if every line were GAP px high: visFont moves the text up to
  // the box's top.
  // A "<" is followed by a zero-width space (never a tag such as "<b>"). At an "&", vis's markup parser tries the
  // whole line as a regular expression: a line that is not one is drawn as plain lines (no gap) instead.
  const TEXT = 14, GAP = 6;
  function marked(text) {
    const lines = text.split("\n").map(function (line) { return "<code>" + line.replace(/</g, "<\u200b") + "</code>"; });
    if (text.indexOf("&") >= 0) {
      try { lines.forEach(function (l) { new RegExp(l); }); } catch (err) { return null; }
    }
    return lines.join("\n\n");
  }
  function visText(text, colour) {  // a box's vis label and font
    const m = marked(text);
    if (m === null) { return { label: text, font: { color: colour, multi: false, size: TEXT } }; }
    return { label: m, font: { color: colour, mono: { vadjust: -(TEXT - GAP) / 2 * (text.split("\n").length - 1) } } };
  }
  function boxTitle(it) {
    const tw = instances(it), k = it.ref, o = T.last[k];
    if (T.collects[k]) {
      return T.spath(k) + "\n" + T.count[k] + " nodes\ndata min \u2026 median \u2026 max: " + rangeOf(k, M.data, M.dataKnown) +
        "\ngrad min \u2026 median \u2026 max: " + rangeOf(k, M.grad, M.gradKnown) + "\nclick to open";
    }
    if (tw.length > 1) {
      const G = it.kind === "g" ? T.groups[it.group] : T.groups[T.foldOf[T.instOf[k]]];
      return (it.kind === "g" ? nameOf(it) + ": " + tw.length + " consecutive instances with the same structure (same ops, wiring and inner scopes), " + T.spath(tw[0]) + " \u2026 " + T.spath(tw[tw.length - 1])
        : T.spath(k) + " and the same scope in the other " + (tw.length - 1) + " instances") +
        "\n" + T.count[k] + " nodes each\noutput data min \u2026 median \u2026 max: " + F.spread(T.outputs(tw, M.data)) +
        "\noutput grad min \u2026 median \u2026 max: " + F.spread(T.outputs(tw, M.grad)) +
        (it.kind === "g" ? "\nclick to open one instance (pick which in the header)" : "\nshowing instance " + G.sel + ": " + T.spath(G.members[G.sel]));
    }
    return T.spath(k) + "\n" + T.count[k] + " nodes; output " + M.label[o] + (M.tensor ? " (" + M.op[o] + ", " + M.shape[o] + ")" : "") +
      "\ndata: " + F.rep(M.data[o]) + "\ngrad: " + F.rep(M.grad[o]) + "\nclick to open";
  }
  function titleOf(it) { return it.kind === "n" ? hooks.nodeTitle(it.ref) : boxTitle(it); }
  // ---- colour -------------------------------------------------------------------------------------
  function column() { return colourMode === "value" ? M.values : (colourMode === "data" ? M.data : M.grad); }
  function colourOf(it) {
    if (scale === null) { return it.kind === "n" ? P.colors[M.role[it.ref]] : Lg.BOX; }
    return scale.color(column()[outputOf(it)]);
  }
  // a node with a non-finite value, a box holding one (a stack: in any of its instances)
  function anomalous(it) {
    if (it.kind === "n") { return M.anomaly(it.ref); }
    return instances(it).some(function (k) { return T.bad[k] === 1; });
  }
  function visNode(x, pos) {
    const it = cur.items[x], pending = rp !== null && rp.pending(x), current = rp !== null && rp.current() === x;
    const anomaly = anomalous(it);
    let border = it.kind === "n" ? "#555" : Lg.BOX_BORDER, width = it.kind === "g" ? 3 : (it.kind === "s" ? 2 : 1);
    if (anomaly) { border = Lg.ANOMALY; width = 3; }
    if (pending) { border = Lg.PENDING.border; }
    if (current) { border = Lg.CURRENT; width = 4; }
    const bg = pending ? Lg.PENDING.background : colourOf(it);
    const drawn = visText(textOf(it, pending), pending ? Lg.PENDING.font : "#222");
    const v = {
      id: it.id, label: drawn.label, borderWidth: width, borderWidthSelected: width + 1,
      color: { background: bg, border: border, highlight: { background: bg, border: "#333" }, hover: { background: bg, border: "#333" } },
      font: drawn.font,
      shapeProperties: { borderDashes: pending || it.kind === "g" ? [6, 3] : false }
    };
    if (pos) { v.title = titleOf(it); v.x = pos.x; v.y = pos.y; }
    return v;
  }
  function edgeLabel(m) {
    if (m.count > 1) { return "\u00d7" + m.count; }
    if (m.twin) { return ""; }  // the number of another instance's edge: in the tooltip
    if (!M.tensor) { return F.fmt(M.E.lg[m.e]); }
    const v = M.E.gn[m.e];
    return isNaN(v) && !(M.E.gbad && M.E.gbad[m.e]) ? "" : F.fmt(v);
  }
  function visEdge(m, id, big) {
    const text = edgeLabel(m), e = { id: id, from: m.from, to: m.to,
      width: m.count > 1 ? Math.min(6, 1 + Math.log10(m.count) * 2) : 1 };
    if (laid.row && laid.row.get(m.from) !== laid.row.get(m.to)) {  // down to the next row, through the gap
      e.smooth = { enabled: true, type: "cubicBezier", forceDirection: "vertical", roundness: 0.5 };
    }
    if (big) { if (text) { e.title = (m.count > 1 ? "edges " : (M.tensor ? "\u2016\u2207\u2016 " : "local_grad ")) + text; } }
    else if (text) { e.text = text; }  // drawn by GT.labels
    if (m.twin && m.count === 1) {  // which instance it comes from (goes to), and its number
      const src = M.E.src[m.e], hidden = cur.itemOfNode[src] < 0 ? src : M.E.dst[m.e];
      e.title = (hidden === src ? "from " : "to ") + T.spath(T.instOf[M.scope[hidden]]) + " (drawn as the instance shown): " +
        (M.tensor ? "\u2016\u2207\u2016 " : "local_grad ") + F.fmt(M.tensor ? M.E.gn[m.e] : M.E.lg[m.e]);
    }
    return e;
  }
  // ---- layout and camera --------------------------------------------------------------------------
  // the open scope drawn around an item: a scope of one node is not (the node carries its name), and
  // inside the parameters and inputs boxes only their outermost (their names say the rest: L1.N3.w2)
  function containerOf(it) {
    let k;
    if (it.kind === "n") {
      k = M.scope[it.ref];
      while (k > 0 && T.count[k] === 1) { k = T.parent[k]; }
    } else {
      k = T.parent[it.kind === "g" ? T.groups[it.group].members[0] : it.ref];
    }
    while (k > 0 && T.collects[k] && T.parent[k] > 0) { k = T.parent[k]; }
    return k;
  }
  function clusterLabel(k) {
    const g = T.foldOf[k];
    if (g < 0) { return T.display(k); }
    const G = T.groups[g];
    return "\u25a4 " + G.base + " \u00d7" + G.members.length + ": instance " + G.sel + " (" + T.sname[k] + ")";
  }
  // c laid out in direction dir; containers: the open scopes as nested containers (dagre's compound
  // layout, several times slower) or without them (for the fit checks: a plain layout is never larger)
  function arrange(c, dir, containers) {
    const items = c.items;
    items.forEach(function (it) {
      const s = GT.layout.size(textOf(it, false));
      it.w = s.w; it.h = s.h; it.cluster = null;
    });
    const clusters = [];
    if (containers && items.length <= GT.layout.DAGRE_MAX && items.every(function (it) { return T.depth[containerOf(it)] <= 24; })) {
      const made = new Map();
      const clusterOf = function (k) {  // (at most 24 deep: checked above)
        if (k <= 0) { return null; }
        let id = made.get(k);
        if (id === undefined) {
          const up = clusterOf(T.parent[k]);
          id = "c" + k;
          made.set(k, id);
          clusters.push({ id: id, parent: up, label: clusterLabel(k), scope: k });
        }
        return id;
      };
      items.forEach(function (it) { it.cluster = clusterOf(containerOf(it)); });
      mergeChains(items, clusters);
    }
    if (items.length <= BIG) {  // the numbers drawn on the edges (the layout leaves room for them)
      c.links.forEach(function (m) { if (m.text === undefined) { m.text = edgeLabel(m); } });
    }
    return GT.layout.layout(items, c.links, clusters, dir);
  }
  // a container holding nothing but one other container is drawn as one ("parameters / MLP / Layer1"):
  // fewer nested frames to read, and dagre's compound layout costs grow with the nesting
  function mergeChains(items, clusters) {
    const direct = new Map(), inner = new Map();
    items.forEach(function (it) { if (it.cluster) { direct.set(it.cluster, (direct.get(it.cluster) || 0) + 1); } });
    clusters.forEach(function (c) { if (c.parent) { (inner.get(c.parent) || inner.set(c.parent, []).get(c.parent)).push(c); } });
    const gone = new Set();
    clusters.forEach(function (c) {  // parents first
      const kids = inner.get(c.id) || [];
      if (!direct.get(c.id) && kids.length === 1) {
        const k = kids[0];
        k.label = c.label + " / " + k.label;
        k.parent = c.parent;
        k.outer = c.outer || c.scope;
        gone.add(c.id);
      }
    });
    for (let j = clusters.length - 1; j >= 0; j--) { if (gone.has(clusters[j].id)) { clusters.splice(j, 1); } }
  }
  function viewport() {
    return { w: Math.max(100, container.clientWidth - 2 * MARGIN), h: Math.max(100, container.clientHeight - 2 * MARGIN) };
  }
  function fitScale(b) {
    const vp = viewport();
    return Math.min(vp.w / Math.max(1, b.x1 - b.x0), vp.h / Math.max(1, b.y1 - b.y0));
  }
  // the number of layers a layout of c needs at least: the longest path along the links that go forward
  // in topological order, in items
  function layers(c) {
    const items = c.items, idx = c.byId, depth = new Int32Array(items.length).fill(1);
    const order = items.map(function (_, x) { return x; }).sort(function (a, b) { return items[a].first - items[b].first; });
    const ins = items.map(function () { return []; });
    c.links.forEach(function (m) { const a = idx.get(m.from), b = idx.get(m.to); if (items[a].first < items[b].first) { ins[b].push(a); } });
    let most = 1;
    order.forEach(function (x) {
      ins[x].forEach(function (a) { if (depth[a] + 1 > depth[x]) { depth[x] = depth[a] + 1; } });
      if (depth[x] > most) { most = depth[x]; }
    });
    return most;
  }
  // whether a layout in direction dir could fit at all: its layers, each at least as deep as the
  // shallowest box, fit the window at the legible scale (a necessary condition, cheaper than dagre)
  function mayFit(c, dir, n) {
    const vp = viewport(), lr = dir === "LR";
    let least = Infinity;
    c.items.forEach(function (it) { const z = GT.layout.size(textOf(it, false)); least = Math.min(least, lr ? z.w : z.h); });
    return n * least + (n - 1) * (lr ? 64 : 30) <= (lr ? vp.w : vp.h) / LEGIBLE;
  }
  // the layout of c that reads best: of left to right, top to bottom and left to right wrapped into 2 ..
  // MAX_ROWS rows, the one drawn largest when zoomed to fit (up to GOOD: beyond it every choice reads
  // well), the simpler one within 5% (one line before rows, the current direction first). Each is
  // scored with a plain layout (no containers, never larger); only the one chosen is laid out with its
  // containers, and if those make it illegible the next is tried. dirs: the directions allowed.
  function choose(c, dirs) {
    dirs = dirs || (laid !== null && laid.dir === "TB" && !laid.rows ? ["TB", "LR"] : ["LR", "TB"]);
    const n = layers(c), cands = [];
    let plainLR = null;
    dirs.forEach(function (d, j) {
      const mayfit = mayFit(c, d, n);
      if (d === "TB" && !mayfit && cands.length) { return; }  // (left to right is needed for the rows)
      const plain = arrange(c, d, false);
      if (d === "LR") { plainLR = plain; }
      cands.push({ dir: d, rows: 0, scale: fitScale(plain.bounds), order: j });
    });
    if (plainLR !== null && fitScale(plainLR.bounds) < GOOD) {
      for (let r = 2; r <= MAX_ROWS; r++) {
        const w = GT.layout.wrap(plainLR, c.items, r);
        if (w === null) { break; }
        if (w.rows < r) { continue; }
        cands.push({ dir: "LR", rows: r, scale: fitScale(w.bounds), order: dirs.length + r });
      }
    }
    const score = function (x) { return Math.min(x.scale, GOOD); };
    let top = 0;
    cands.forEach(function (x) { top = Math.max(top, score(x)); });
    cands.sort(function (a, b) {
      const ga = score(a) >= 0.95 * top, gb = score(b) >= 0.95 * top;
      if (ga !== gb) { return ga ? -1 : 1; }
      return ga ? a.order - b.order : score(b) - score(a);
    });
    let first = null;
    for (let j = 0; j < cands.length && j < 3; j++) {
      const x = cands[j];
      let full = arrange(c, x.dir, true);
      if (x.rows) { full = GT.layout.wrap(full, c.items, x.rows) || full; }
      if (first === null) { first = full; }
      if (fitScale(full.bounds) >= LEGIBLE) { return full; }
      if (x.scale < LEGIBLE) { break; }  // nothing fits: the best of them
    }
    return first;
  }
  // look at the rectangle b (canvas coordinates): whole when it fits at a legible scale (zoomed in at
  // most to MAX_ZOOM), else at the legible scale centred on `anchor` (a point inside b)
  function look(b, anchor) {
    const s = Math.min(fitScale(b), MAX_ZOOM);
    if (s >= LEGIBLE) {
      network.moveTo({ position: { x: (b.x0 + b.x1) / 2, y: (b.y0 + b.y1) / 2 }, scale: s, animation: false });
    } else {
      const vp = viewport(), hw = vp.w / 2 / LEGIBLE, hh = vp.h / 2 / LEGIBLE;
      // the view around the anchor, kept inside b where b is larger than the view
      const x = Math.min(Math.max(anchor.x, b.x0 + hw), b.x1 - hw), y = Math.min(Math.max(anchor.y, b.y0 + hh), b.y1 - hh);
      network.moveTo({ position: { x: x, y: y }, scale: LEGIBLE, animation: false });
    }
  }
  function rootAnchor() {
    const x = cur.itemOfNode[M.root];
    const p = x >= 0 ? laid.pos.get(cur.items[x].id) : null;
    return p || { x: (laid.bounds.x0 + laid.bounds.x1) / 2, y: (laid.bounds.y0 + laid.bounds.y1) / 2 };
  }
  function fit() { look(laid.bounds, rootAnchor()); }
  // the fit button: everything drawn in the window, at whatever scale that takes (a person asked for it)
  function fitAll() {
    const b = laid.bounds, s = Math.min(fitScale(b), MAX_ZOOM);
    network.moveTo({ position: { x: (b.x0 + b.x1) / 2, y: (b.y0 + b.y1) / 2 }, scale: s, animation: false });
  }
  // the items inside scope k (what opening k showed), as a rectangle
  function boundsInside(k) {
    const inside = cur.items.filter(function (it) {
      for (let s = containerOf(it); s > 0; s = T.parent[s]) { if (s === k) { return true; } }
      return false;
    });
    if (!inside.length) { return null; }
    const b = GT.layout.bounds(inside, { pos: laid.pos, clusters: laid.clusters.filter(function (c) { return c.scope === k || c.outer === k; }) });
    return { b: b, anchor: laid.pos.get(inside[inside.length - 1].id) };
  }
  // ---- drawing ------------------------------------------------------------------------------------
  // camera: "fit" (the whole view), "keep" (where it was), {open: k} (the inside of scope k, or the whole
  // view when it fits), {node: i} (the item node i shows in, at a legible scale at least)
  function render(camera, pre) {
    if (rp !== null) { rp.reset(); }
    const keep = cur !== null ? { position: network.getViewPosition(), scale: network.getScale() } : null;
    cur = pre ? pre.c : collect(true);
    laid = pre ? pre.laid : choose(cur);
    drawnClusters = laid.clusters;
    if (colourMode === "role") { scale = null; }
    else {
      const col = column();
      scale = Lg.scale(colourMode, cur.items.map(function (it) { return col[outputOf(it)]; }), colourMode === "value" ? P.valueName : colourMode);
    }
    const big = cur.items.length > BIG;
    const nodes = new vis.DataSet(cur.items.map(function (it, x) { return visNode(x, laid.pos.get(it.id)); }));
    const edges = new vis.DataSet(cur.links.map(function (m, x) { return visEdge(m, x, big); }));
    network.setOptions({ interaction: { hideEdgesOnDrag: big, hideEdgesOnZoom: big } });
    network.setData({ nodes: nodes, edges: edges });
    labels.reset(drawnClusters);  // (after setData: setOptions may have drawn the old data)
    // the tooltip of the box just opened or closed would stay over the new view: hidden until the next hover
    const tip = network.body.container.querySelector(".vis-tooltip");
    if (tip) { tip.style.visibility = "hidden"; }
    if (camera === "keep" && keep !== null) { network.moveTo({ position: keep.position, scale: keep.scale, animation: false }); }
    else if (camera && camera.open !== undefined && fitScale(laid.bounds) < LEGIBLE) {
      const inside = boundsInside(camera.open);
      if (inside) { look(inside.b, inside.anchor); } else { fit(); }
    } else if (camera && camera.node !== undefined) {
      const p = laid.pos.get(cur.items[cur.itemOfNode[camera.node]].id);
      if (fitScale(laid.bounds) >= LEGIBLE) { fit(); }
      else { network.moveTo({ position: p, scale: Math.max(LEGIBLE, Math.min(1, keep ? keep.scale : 1)), animation: false }); }
    } else { fit(); }
    hooks.drawn(cur);
    return cur;
  }
  function repaint(refresh) {  // redraw the labels, colours and marks of some items (all: null)
    const ds = network.body.data.nodes;
    const xs = refresh === null ? cur.items.map(function (_, x) { return x; }) : refresh;
    ds.update(xs.map(function (x) { return visNode(x, null); }));
  }
  function highlight(cx, prev) {  // the edges the current item's gradient sums over
    const ds = network.body.data.edges, ups = [];
    if (prev >= 0) { cur.outLinks[prev].forEach(function (l) { ups.push({ id: l, color: { color: "#848484", inherit: false }, width: widthOf(l) }); }); }
    if (cx >= 0) { cur.outLinks[cx].forEach(function (l) { ups.push({ id: l, color: { color: Lg.CURRENT, inherit: false }, width: 3 }); }); }
    if (ups.length) { ds.update(ups); }
  }
  function widthOf(l) { const m = cur.links[l]; return m.count > 1 ? Math.min(6, 1 + Math.log10(m.count) * 2) : 1; }
  // the first view: boxes opened one at a time while the view fits and reads (at most P.budget boxes,
  // labels >= 10.5 px), those that explain the model first: a box whose inside has two or more named
  // parts (a model's modules; a stack's block: its attention and MLP), biggest first; a box of bare ops
  // or of copies of one part (a Linear's t and addmm, layer2's two blocks) only when no box of the
  // first kind could open, so the view shows a model's structure rather than one module's ops. A stack
  // inside a structure already shown stays folded: "h ×6" between the embeddings and the head is the
  // summary (one block opened beside them is wrapped into rows that read worse); a stack opens first
  // only when nothing else shows structure (the training step's "MLP ×100")
  function firstView() {
    if (!P.fold) { T.openAll(); return render("fit"); }
    const noAuto = new Set(P.noAuto);
    const top = function (k) { while (T.parent[k] > 0) { k = T.parent[k]; } return k; };
    const size = function (it) { return T.count[it.ref] * (it.kind === "g" ? T.groups[it.group].members.length : 1); };
    let c = collect(false), tries = 0, best = null, structure = false;
    for (;;) {
      const cands = c.items.filter(function (it) {
        return it.kind !== "n" && T.childItems[it.ref] > 1 && !(T.parent[it.ref] === 0 ? noAuto.has(T.sname[it.ref]) : noAuto.has(T.sname[top(it.ref)])) &&
          (!structure || (T.parts(it.ref) >= 2 && it.kind !== "g"));
      }).sort(function (a, b) {
        return ((T.parts(b.ref) >= 2) - (T.parts(a.ref) >= 2)) || (size(b) - size(a));
      });
      let taken = false;
      for (let j = 0; j < cands.length && tries < MAX_TRIES; j++) {
        const it = cands[j];
        tries += 1;
        if (it.kind === "g") { T.pick(it.group, 0); } else { T.open(it.ref); }
        const next = collect(false);
        if (next.items.length <= P.budget) {
          const full = collect(true), l = choose(full);
          if (fitScale(l.bounds) >= LEGIBLE) {
            c = next; best = { c: full, laid: l }; taken = true;
            if (T.parts(it.ref) >= 2) { structure = true; }
            break;
          }
        }
        if (it.kind === "g") { T.groups[it.group].open = false; } else { T.close(it.ref); }
      }
      if (!taken) { break; }
    }
    return render("fit", best);
  }
  return {
    render: render, repaint: repaint, highlight: highlight, firstView: firstView, fit: fit, fitAll: fitAll,
    current: function () { return cur; },
    clusters: function () { return drawnClusters.slice(); },
    edgeLabels: function () { return labels.drawn(); },
    clusterTitles: function () { return labels.titles(); },
    setReplay: function (r) { rp = r; },
    colour: function (mode) { colourMode = mode; },
    colourMode: function () { return colourMode; },
    nameOf: function (x) { return nameOf(cur.items[x]); },
    gradRange: function (x) { const it = cur.items[x]; return it.kind === "s" && T.collects[it.ref] ? rangeOf(it.ref, M.grad, M.gradKnown) : null; },
    boxTitle: function (x) { return boxTitle(cur.items[x]); },
    outputOf: function (x) { return outputOf(cur.items[x]); },
    instances: function (x) { return instances(cur.items[x]); },
    anomalous: function (x) { return anomalous(cur.items[x]); },
    LEGIBLE: LEGIBLE
  };
};
