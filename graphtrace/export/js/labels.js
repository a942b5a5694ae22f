// Where the number on each edge is drawn: on the part of the edge between its two boxes (not at the
// middle of the line between their centres, which a wide box covers), at the first place along it that
// is clear of every box, every container's name and the numbers already placed (else where it covers
// least). vis-network would draw it at the middle, under the boxes; these are drawn on top, after the
// network, in its coordinates. An edge's number travels as its `text` (the vis DataSet has no label).
GT.labels = function (network) {
  "use strict";
  const FONT = "12px ui-monospace, monospace", TITLE_FONT = "14px ui-monospace, monospace", H = 15, PAD = 3;
  const SPOTS = [0.5, 0.35, 0.65, 0.2, 0.8, 0.1, 0.9], MAX_AVOID = 600;
  let placed = null, titles = [];
  let ctx = null;
  function measure(text, font) {
    if (ctx === null) { ctx = document.createElement("canvas").getContext("2d"); }
    ctx.font = font;
    return ctx.measureText(text).width;
  }
  // a point of edge d at t in [0, 1]: the straight line between the centres, or vis-network's vertical
  // cubic curve (smooth cubicBezier, forceDirection vertical: control points straight below and above)
  function pointAt(d, t) {
    const a = d.a, b = d.b;
    if (!d.curve) { return { x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t }; }
    const r = d.curve, dy = a.y - b.y, p1 = { x: a.x, y: a.y - r * dy }, p2 = { x: b.x, y: b.y + r * dy }, u = 1 - t;
    return { x: u * u * u * a.x + 3 * u * u * t * p1.x + 3 * u * t * t * p2.x + t * t * t * b.x,
             y: u * u * u * a.y + 3 * u * u * t * p1.y + 3 * u * t * t * p2.y + t * t * t * b.y };
  }
  function inside(p, r) { return p.x >= r.left && p.x <= r.right && p.y >= r.top && p.y <= r.bottom; }
  // the t where the edge leaves box r (from the start) or enters it (from the end), by bisection
  function border(d, r, fromStart) {
    let lo = fromStart ? 0 : 0.5, hi = fromStart ? 0.5 : 1;
    if (fromStart ? !inside(pointAt(d, lo), r) : !inside(pointAt(d, hi), r)) { return fromStart ? 0 : 1; }
    for (let j = 0; j < 18; j++) {
      const mid = (lo + hi) / 2, inn = inside(pointAt(d, mid), r);
      if (fromStart === inn) { lo = mid; } else { hi = mid; }
    }
    return (lo + hi) / 2;
  }
  function overlap(a, b) {
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    return w > 0 && h > 0 ? w * h : 0;
  }
  // every edge's number placed (network coordinates): [{id, text, left, top, right, bottom}]
  function place() {
    const body = network.body, boxes = [], list = [];
    body.data.nodes.getIds().forEach(function (id) { const b = network.getBoundingBox(id); if (b) { boxes.push(b); } });
    const edges = body.data.edges.get();
    const avoid = edges.length <= MAX_AVOID;
    edges.forEach(function (e) {
      if (!e.text) { return; }
      const from = body.nodes[e.from], to = body.nodes[e.to];
      if (!from || !to) { return; }
      const d = { a: { x: from.x, y: from.y }, b: { x: to.x, y: to.y }, curve: e.smooth && e.smooth.enabled ? e.smooth.roundness : 0 };
      const t0 = border(d, network.getBoundingBox(e.from), true), t1 = border(d, network.getBoundingBox(e.to), false);
      const w = measure(e.text, FONT) + 2 * PAD;
      let best = null, bestCost = Infinity;
      for (let j = 0; j < (avoid ? SPOTS.length : 1); j++) {
        const p = pointAt(d, t1 > t0 ? t0 + (t1 - t0) * SPOTS[j] : 0.5);
        const r = { left: p.x - w / 2, right: p.x + w / 2, top: p.y - H / 2, bottom: p.y + H / 2 };
        let cost = 0;
        if (avoid) {
          boxes.forEach(function (b) { cost += overlap(r, b); });
          titles.forEach(function (b) { cost += overlap(r, b); });
          list.forEach(function (b) { cost += overlap(r, b); });
        }
        if (cost < bestCost) { best = r; bestCost = cost; }
        if (cost === 0) { break; }
      }
      list.push({ id: e.id, text: e.text, left: best.left, top: best.top, right: best.right, bottom: best.bottom });
    });
    return list;
  }
  function draw(ctx2) {
    if (placed === null) { placed = place(); }
    ctx2.save();
    ctx2.font = FONT;
    ctx2.textBaseline = "middle";
    ctx2.textAlign = "center";
    placed.forEach(function (l) {
      ctx2.fillStyle = "rgba(255, 255, 255, 0.9)";
      ctx2.fillRect(l.left, l.top, l.right - l.left, l.bottom - l.top);
      ctx2.fillStyle = "#343434";
      ctx2.fillText(l.text, (l.left + l.right) / 2, (l.top + l.bottom) / 2 + 0.5);
    });
    ctx2.restore();
  }
  network.on("afterDrawing", draw);
  network.on("dragging", function () { placed = null; });
  network.on("dragEnd", function () { placed = null; });
  return {
    // after a render: the container names to keep clear (the frames drawn, GT.layout.frame), and the
    // numbers placed anew at the next drawing
    reset: function (clusters) {
      placed = null;
      titles = clusters.map(function (c) {
        const f = GT.layout.frame(c);
        return { left: f.x + 2, top: f.y + 1, right: f.x + 10 + measure(c.label, TITLE_FONT), bottom: f.y + 21 };
      });
    },
    // what is drawn, in CSS px of the graph's area (for tests and scripts)
    drawn: function () {
      if (placed === null) { placed = place(); }
      return placed.map(function (l) {
        const tl = network.canvasToDOM({ x: l.left, y: l.top }), br = network.canvasToDOM({ x: l.right, y: l.bottom });
        return { id: l.id, text: l.text, left: tl.x, top: tl.y, right: br.x, bottom: br.y };
      });
    },
    titles: function () {
      return titles.map(function (l) {
        const tl = network.canvasToDOM({ x: l.left, y: l.top }), br = network.canvasToDOM({ x: l.right, y: l.bottom });
        return { left: tl.x, top: tl.y, right: br.x, bottom: br.y };
      });
    }
  };
};
