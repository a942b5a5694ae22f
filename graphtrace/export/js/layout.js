// Where every box goes: a layered layout (dagre: ranking, crossing minimisation, coordinates) with the
// open scopes as nested containers, left to right or top to bottom; past DAGRE_MAX boxes (dagre takes
// tens of seconds on a thousand), or if dagre fails (its recursion overflows on chains of thousands), a
// layout by columns computed here without recursion. A long left-to-right layout can be wrapped into
// rows, read like text (wrap): a ResNet's fifteen modules in three rows of five instead of one line too
// long to read. items: [{id, text, first (its first node, topological), cluster (container id or null)}],
// links: [{from, to, text (the number drawn on it, optional)}], clusters: [{id, parent, label}] outermost first.
GT.layout = (function () {
  "use strict";
  const FONT = "14px ui-monospace, monospace", CHAR_PX = 8.45, LINE_PX = 20, PAD_W = 14, PAD_H = 14;
  const LABEL_CHAR_PX = 7.3, DAGRE_MAX = 400, MAX_CLUSTERS = 200, MAX_DEPTH = 24;
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
  function layered(items, links, clusters, dir, gap) {
    const depth = new Map();
    clusters.forEach(function (c) { depth.set(c.id, c.parent === null ? 0 : depth.get(c.parent) + 1); });
    const nested = clusters.length > 0 && clusters.length <= MAX_CLUSTERS &&
      clusters.every(function (c) { return depth.get(c.id) < MAX_DEPTH; });
    const g = new dagre.graphlib.Graph({ multigraph: false, compound: nested });
    g.setGraph({ rankdir: dir, nodesep: dir === "LR" ? 30 : 28, ranksep: dir === "LR" ? gap : 30, edgesep: 8,
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
      return { id: c.id, parent: c.parent, label: c.label, x: n.x, y: n.y, width: n.width, height: n.height,
               depth: depth.get(c.id), scope: c.scope, outer: c.outer };
    });
    return { pos: pos, clusters: drawn, dir: dir, engine: "dagre" };
  }
  // layers by the longest path along links that go forward in topological order (the others are drawn
  // but do not rank), a source just before its first user; within a layer in topological order, then
  // reordered to cross less (untangle)
  function columns(items, links, dir, gap) {
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
    untangle(keys, cols, preds, succs, n);
    const lr = dir === "LR", GAP_MAIN = lr ? gap : 40, GAP_CROSS = lr ? 16 : 24;
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
  // fewer crossings: each column ordered by the mean place of the items it links to (the barycentre
  // heuristic of Sugiyama's method, as dagre does), sweeping forward (by predecessors) and back (by
  // successors) SWEEPS times. An item's place is its index in its column over the column's length
  // (columns differ in length, and links may span several); an item with no link on the side swept
  // from keeps its place; ties keep the current order. O(SWEEPS * (links + n log n)), no recursion.
  const SWEEPS = 4;
  function untangle(keys, cols, preds, succs, n) {
    const at = new Float64Array(n);
    const place = function (col) { col.forEach(function (j, r) { at[j] = (r + 0.5) / col.length; }); };
    keys.forEach(function (k) { place(cols.get(k)); });
    for (let sweep = 0; sweep < SWEEPS; sweep++) {
      const forward = sweep % 2 === 0, seq = forward ? keys : keys.slice().reverse();
      for (let s = 1; s < seq.length; s++) {
        const col = cols.get(seq[s]), bar = new Float64Array(col.length);
        col.forEach(function (j, r) {
          const nb = forward ? preds[j] : succs[j];
          if (!nb.length) { bar[r] = at[j]; return; }
          let sum = 0;
          nb.forEach(function (a) { sum += at[a]; });
          bar[r] = sum / nb.length;
        });
        const ranked = col.map(function (_, r) { return r; }).sort(function (a, b) { return (bar[a] - bar[b]) || (a - b); });
        const sorted = ranked.map(function (r) { return col[r]; });
        cols.set(seq[s], sorted);
        place(sorted);
      }
    }
  }
  // the gap between layers left to right: room for the widest number drawn on an edge (GT.labels,
  // 12 px monospace) between two boxes, so it sits on neither (the small CNN's "0.06303" did)
  function labelGap(links) {
    let most = 0;
    links.forEach(function (l) { if (l.text && l.text.length > most) { most = l.text.length; } });
    return Math.max(64, Math.ceil(most * LABEL_CHAR_PX) + 24);
  }
  function layout(items, links, clusters, dir) {
    let out;
    const gap = labelGap(links);
    if (items.length > DAGRE_MAX) {
      out = columns(items, links, dir, gap);
    } else {
      try {
        out = layered(items, links, clusters, dir, gap);
      } catch (err) {  // e.g. "Maximum call stack size exceeded" inside dagre: lay out without it
        out = columns(items, links, dir, gap);
      }
    }
    out.bounds = bounds(items, out);
    return out;
  }
  // ---- wrapping into rows ------------------------------------------------------------------------
  // base: a left-to-right layout of items; the same layout cut between its layers into `rows` rows of
  // about equal width, each row under the one before, left-aligned (null if it has fewer layers than
  // rows). A container cut by a row end is drawn as one frame per row (its name on the first, "…" before
  // it on the others). out.row: item id -> its row (edges between rows are drawn as curves through the
  // gap between them).
  const ROW_GAP = 64, PIECE_PAD = 8;
  function slabs(items, base) {  // the x-intervals of the layers: boxes that overlap in x share one
    const iv = items.map(function (it) {
      const p = base.pos.get(it.id);
      return { x0: p.x - it.w / 2, x1: p.x + it.w / 2 };
    }).sort(function (a, b) { return a.x0 - b.x0; });
    const out = [];
    iv.forEach(function (v) {
      const last = out[out.length - 1];
      if (last && v.x0 < last.x1) { last.x1 = Math.max(last.x1, v.x1); } else { out.push({ x0: v.x0, x1: v.x1 }); }
    });
    return out;
  }
  // the slabs cut into at most `rows` consecutive runs, the widest run as narrow as it can be: the
  // index of each slab's row
  function cut(sl, rows) {
    const pack = function (width) {
      const row = new Int32Array(sl.length);
      let r = 0, start = sl[0].x0;
      for (let j = 0; j < sl.length; j++) {
        if (sl[j].x1 - start > width && j > 0 && sl[j - 1].x1 > start) { r += 1; start = sl[j].x0; }
        row[j] = r;
      }
      return { row: row, count: r + 1 };
    };
    let lo = 0, hi = sl[sl.length - 1].x1 - sl[0].x0;
    sl.forEach(function (v) { lo = Math.max(lo, v.x1 - v.x0); });
    for (let j = 0; j < 30 && hi - lo > 1; j++) {
      const mid = (lo + hi) / 2;
      if (pack(mid).count <= rows) { hi = mid; } else { lo = mid; }
    }
    return pack(hi);
  }
  function wrap(base, items, rows) {
    const sl = slabs(items, base);
    if (sl.length < rows || rows < 2) { return null; }
    const packed = cut(sl, rows), nR = packed.count;
    if (nR < 2) { return null; }
    const rowOfX = function (x) {  // the row of the slab holding x (binary search)
      let lo = 0, hi = sl.length - 1;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (sl[mid].x0 <= x) { lo = mid; } else { hi = mid - 1; } }
      return packed.row[lo];
    };
    const row = new Map();
    items.forEach(function (it) { row.set(it.id, rowOfX(base.pos.get(it.id).x)); });
    // the containers' pieces per row, innermost first: the boxes they hold there and their inner pieces
    const byId = new Map(), pieces = [];
    (base.clusters || []).forEach(function (c) { byId.set(c.id, c); });
    const content = new Map();  // cluster id + "/" + row -> rectangle (base coordinates)
    const grow = function (key, x0, y0, x1, y1) {
      const r = content.get(key);
      if (!r) { content.set(key, { x0: x0, y0: y0, x1: x1, y1: y1 }); return; }
      r.x0 = Math.min(r.x0, x0); r.y0 = Math.min(r.y0, y0); r.x1 = Math.max(r.x1, x1); r.y1 = Math.max(r.y1, y1);
    };
    items.forEach(function (it) {
      if (it.cluster && byId.has(it.cluster)) {
        const p = base.pos.get(it.id);
        grow(it.cluster + "/" + row.get(it.id), p.x - it.w / 2, p.y - it.h / 2, p.x + it.w / 2, p.y + it.h / 2);
      }
    });
    const clusters = base.clusters || [];
    for (let j = clusters.length - 1; j >= 0; j--) {  // inner containers come after their parents
      const c = clusters[j];
      for (let r = 0; r < nR; r++) {
        const b = content.get(c.id + "/" + r);
        if (!b) { continue; }
        const piece = { id: c.id, parent: c.parent, depth: c.depth, scope: c.scope, outer: c.outer, row: r,
                        label: c.label, x: (b.x0 + b.x1) / 2, y: (b.y0 + b.y1) / 2,
                        width: b.x1 - b.x0 + 2 * PIECE_PAD, height: b.y1 - b.y0 + 2 * PIECE_PAD };
        pieces.push(piece);
        if (c.parent !== null && byId.has(c.parent)) {
          const f = frame(piece);
          grow(c.parent + "/" + r, f.x, f.y, f.x + f.w, f.y + f.h);
        }
      }
    }
    // each row's extent, then the rows one under the other, left-aligned
    const ext = [];
    for (let r = 0; r < nR; r++) { ext.push({ x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity }); }
    const add = function (r, x0, y0, x1, y1) {
      const e = ext[r];
      e.x0 = Math.min(e.x0, x0); e.y0 = Math.min(e.y0, y0); e.x1 = Math.max(e.x1, x1); e.y1 = Math.max(e.y1, y1);
    };
    items.forEach(function (it) {
      const p = base.pos.get(it.id);
      add(row.get(it.id), p.x - it.w / 2, p.y - it.h / 2, p.x + it.w / 2, p.y + it.h / 2);
    });
    pieces.forEach(function (c) { const f = frame(c); add(c.row, f.x, f.y, f.x + f.w, f.y + f.h); });
    const dx = [], dy = [];
    let y = 0;
    for (let r = 0; r < nR; r++) {
      dx.push(-ext[r].x0);
      dy.push(y - ext[r].y0);
      y += ext[r].y1 - ext[r].y0 + ROW_GAP;
    }
    const pos = new Map();
    items.forEach(function (it) {
      const p = base.pos.get(it.id), r = row.get(it.id);
      pos.set(it.id, { x: Math.round(p.x + dx[r]), y: Math.round(p.y + dy[r]) });
    });
    const first = new Set();
    pieces.sort(function (a, b) { return (a.depth - b.depth) || (a.row - b.row); });
    pieces.forEach(function (c) {
      c.x += dx[c.row];
      c.y += dy[c.row];
      if (first.has(c.id)) { c.label = "\u2026 " + c.label; } else { first.add(c.id); }
    });
    const out = { pos: pos, clusters: pieces, dir: "LR", rows: nR, row: row, engine: base.engine + ", wrapped" };
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
  // the containers drawn behind the boxes: a tinted rectangle per open scope (nested scopes darker), in
  // the network's coordinates; their names (top left) are drawn over the edges, on a light ground
  // (drawTitles, after the network), so an edge crossing a container's top never hides its name
  function drawClusters(ctx2, clusters) {
    ctx2.save();
    clusters.forEach(function (c) {
      const f = frame(c);
      ctx2.fillStyle = "rgba(84, 39, 143, " + Math.min(0.04 + 0.03 * c.depth, 0.2) + ")";
      ctx2.strokeStyle = "#9e9ac8";
      ctx2.lineWidth = 1.5;
      ctx2.fillRect(f.x, f.y, f.w, f.h);
      ctx2.strokeRect(f.x, f.y, f.w, f.h);
    });
    ctx2.restore();
  }
  function drawTitles(ctx2, clusters) {
    ctx2.save();
    ctx2.font = "14px ui-monospace, monospace";
    ctx2.textBaseline = "top";
    clusters.forEach(function (c) {
      const f = frame(c), w = ctx2.measureText(c.label).width;
      ctx2.fillStyle = "rgba(255, 255, 255, 0.85)";
      ctx2.fillRect(f.x + 3, f.y + 2, w + 6, 18);
      ctx2.fillStyle = "#3f007d";
      ctx2.fillText(c.label, f.x + 6, f.y + 4);
    });
    ctx2.restore();
  }
  return { size: size, layout: layout, wrap: wrap, bounds: bounds, frame: frame, drawClusters: drawClusters, drawTitles: drawTitles, DAGRE_MAX: DAGRE_MAX };
})();
