// Where every box goes: a layered layout (dagre: ranking, crossing minimisation, coordinates) with the
// open scopes as nested containers, left to right or top to bottom; past DAGRE_MAX boxes (dagre takes
// tens of seconds on a thousand), or if dagre fails (its recursion overflows on chains of thousands), a
// layout by columns computed here without recursion. items: [{id, text, first (its first node, topological), cluster (container id or null)}],
// links: [{from, to}], clusters: [{id, parent, label}] outermost first.
GT.layout = (function () {
  "use strict";
  const FONT = "14px ui-monospace, monospace", CHAR_PX = 8.45, LINE_PX = 17, PAD_W = 14, PAD_H = 14;
  const DAGRE_MAX = 400, MAX_CLUSTERS = 200, MAX_DEPTH = 24;
  let ctx = null;
  // a box's size for its text, as vis-network draws it (monospace 14 px, margin 6)
  function size(text) {
    if (ctx === null) {
      try { ctx = document.createElement("canvas").getContext("2d"); ctx.font = FONT; } catch (err) { ctx = false; }
    }
    const lines = text.split("\n");
    let w = 0;
    for (let j = 0; j < lines.length; j++) {
      const lw = ctx ? ctx.measureText(lines[j]).width : lines[j].length * CHAR_PX;
      if (lw > w) { w = lw; }
    }
    return { w: Math.ceil(w) + PAD_W, h: lines.length * LINE_PX + PAD_H };
  }
  function layered(items, links, clusters, dir) {
    const depth = new Map();
    clusters.forEach(function (c) { depth.set(c.id, c.parent === null ? 0 : depth.get(c.parent) + 1); });
    const nested = clusters.length > 0 && clusters.length <= MAX_CLUSTERS &&
      clusters.every(function (c) { return depth.get(c.id) < MAX_DEPTH; });
    const g = new dagre.graphlib.Graph({ multigraph: false, compound: nested });
    g.setGraph({ rankdir: dir, nodesep: dir === "LR" ? 30 : 28, ranksep: dir === "LR" ? 64 : 30, edgesep: 8,
                 marginx: 0, marginy: 0 });
    g.setDefaultEdgeLabel(function () { return {}; });
    items.forEach(function (it) { g.setNode(it.id, { width: it.w, height: it.h }); });
    if (nested) {
      clusters.forEach(function (c) {
        g.setNode(c.id, {});
        if (c.parent !== null) { g.setParent(c.id, c.parent); }
      });
      items.forEach(function (it) { if (it.cluster) { g.setParent(it.id, it.cluster); } });
    }
    links.forEach(function (l) { if (l.from !== l.to) { g.setEdge(l.from, l.to); } });
    dagre.layout(g);
    const pos = new Map();
    items.forEach(function (it) { const n = g.node(it.id); pos.set(it.id, { x: Math.round(n.x), y: Math.round(n.y) }); });
    const drawn = !nested ? [] : clusters.map(function (c) {
      const n = g.node(c.id);
      return { label: c.label, x: n.x, y: n.y, width: n.width, height: n.height, depth: depth.get(c.id), scope: c.scope, outer: c.outer };
    });
    return { pos: pos, clusters: drawn, dir: dir, engine: "dagre" };
  }
  // layers by the longest path along links that go forward in topological order (the others are drawn
  // but do not rank), a source just before its first user; within a layer in topological order
  function columns(items, links, dir) {
    const n = items.length, idx = new Map();
    items.forEach(function (it, j) { idx.set(it.id, j); });
    const order = items.map(function (_, j) { return j; }).sort(function (a, b) { return items[a].first - items[b].first; });
    const rank = new Int32Array(n);
    order.forEach(function (j, r) { rank[j] = r; });
    const preds = new Array(n), succs = new Array(n);
    for (let j = 0; j < n; j++) { preds[j] = []; succs[j] = []; }
    links.forEach(function (l) {
      const a = idx.get(l.from), b = idx.get(l.to);
      if (rank[a] < rank[b]) { preds[b].push(a); succs[a].push(b); }
    });
    const level = new Int32Array(n);
    order.forEach(function (j) { preds[j].forEach(function (a) { if (level[a] + 1 > level[j]) { level[j] = level[a] + 1; } }); });
    order.forEach(function (j) {
      if (preds[j].length || !succs[j].length) { return; }
      let m = Infinity;
      succs[j].forEach(function (b) { if (level[b] < m) { m = level[b]; } });
      level[j] = Math.max(0, m - 1);
    });
    const cols = new Map();
    order.forEach(function (j) { let c = cols.get(level[j]); if (!c) { cols.set(level[j], c = []); } c.push(j); });
    const keys = Array.from(cols.keys()).sort(function (a, b) { return a - b; });
    const lr = dir === "LR", GAP_MAIN = lr ? 60 : 40, GAP_CROSS = lr ? 16 : 24;
    const pos = new Map();
    let at = 0;
    keys.forEach(function (key) {
      const col = cols.get(key);
      let thick = 0, span = 0;
      col.forEach(function (j) { const it = items[j]; thick = Math.max(thick, lr ? it.w : it.h); span += (lr ? it.h : it.w) + GAP_CROSS; });
      let c = -span / 2;
      col.forEach(function (j) {
        const it = items[j], along = at + thick / 2, extent = lr ? it.h : it.w;
        const across = c + extent / 2;
        c += extent + GAP_CROSS;
        pos.set(it.id, lr ? { x: Math.round(along), y: Math.round(across) } : { x: Math.round(across), y: Math.round(along) });
      });
      at += thick + GAP_MAIN;
    });
    return { pos: pos, clusters: [], dir: dir, engine: "columns" };
  }
  function layout(items, links, clusters, dir) {
    let out;
    if (items.length > DAGRE_MAX) {
      out = columns(items, links, dir);
    } else {
      try {
        out = layered(items, links, clusters, dir);
      } catch (err) {  // e.g. "Maximum call stack size exceeded" inside dagre: lay out without it
        out = columns(items, links, dir);
      }
    }
    out.bounds = bounds(items, out);
    return out;
  }
  // the drawn rectangle of a container (its name above the boxes it holds)
  function frame(c) { return { x: c.x - c.width / 2 - 10, y: c.y - c.height / 2 - 22, w: c.width + 20, h: c.height + 32 }; }
  function bounds(items, out) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    items.forEach(function (it) {
      const p = out.pos.get(it.id);
      x0 = Math.min(x0, p.x - it.w / 2); x1 = Math.max(x1, p.x + it.w / 2);
      y0 = Math.min(y0, p.y - it.h / 2); y1 = Math.max(y1, p.y + it.h / 2);
    });
    out.clusters.forEach(function (c) {
      const f = frame(c);
      x0 = Math.min(x0, f.x); x1 = Math.max(x1, f.x + f.w);
      y0 = Math.min(y0, f.y); y1 = Math.max(y1, f.y + f.h);
    });
    return items.length ? { x0: x0, y0: y0, x1: x1, y1: y1 } : { x0: 0, y0: 0, x1: 1, y1: 1 };
  }
  // the containers drawn behind the boxes: a tinted rectangle per open scope with its name at the top
  // left (nested scopes darker), in the network's coordinates
  function drawClusters(ctx2, clusters) {
    ctx2.save();
    clusters.forEach(function (c) {
      const f = frame(c);
      ctx2.fillStyle = "rgba(84, 39, 143, " + Math.min(0.04 + 0.03 * c.depth, 0.2) + ")";
      ctx2.strokeStyle = "#9e9ac8";
      ctx2.lineWidth = 1.5;
      ctx2.fillRect(f.x, f.y, f.w, f.h);
      ctx2.strokeRect(f.x, f.y, f.w, f.h);
      ctx2.fillStyle = "#3f007d";
      ctx2.font = "14px ui-monospace, monospace";
      ctx2.textBaseline = "top";
      ctx2.fillText(c.label, f.x + 6, f.y + 4);
    });
    ctx2.restore();
  }
  return { size: size, layout: layout, bounds: bounds, frame: frame, drawClusters: drawClusters, DAGRE_MAX: DAGRE_MAX };
})();
