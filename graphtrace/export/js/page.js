// The page put together: the data read, the vis Network mounted, the header's controls, clicks on boxes
// and nodes, and the entry points for scripts and tests (window.graphtrace*: Promises resolved once
// the view is drawn).
(function () {
  "use strict";
  performance.mark("graphtrace:start");
  const M = GT.data.read(document.getElementById("graphtrace-data")), P = M.P;
  performance.mark("graphtrace:read");
  const T = GT.folding(M), finder = GT.search(M, T);
  const network = new vis.Network(document.getElementById("graph"), { nodes: [], edges: [] }, {
    physics: { enabled: false },
    layout: { improvedLayout: false, hierarchical: { enabled: false } },
    interaction: { hover: true, tooltipDelay: 80 },
    // a label's text is monospace blocks of 14 px, the empty lines between them 6 px (view.js's visLabel);
    // labels are drawn at any zoom (their size for vis is the 6-px lines')
    nodes: { shape: "box", margin: 6, scaling: { label: { drawThreshold: 0 } },
             font: { face: "ui-monospace, monospace", size: 6, multi: "html",
                     mono: { face: "ui-monospace, monospace", size: 14, vadjust: 0 } } },
    edges: { arrows: { to: { enabled: true, scaleFactor: 0.5 } }, smooth: false, color: { color: "#848484", highlight: "#333" },
             font: { size: 12, align: "horizontal", strokeWidth: 4, background: "rgba(255,255,255,0.85)" } }
  });
  window.graphtraceNetwork = network;
  window.graphtraceFirstDraw = null;
  network.once("afterDrawing", function () {
    window.graphtraceFirstDraw = performance.now();
    document.body.setAttribute("data-drawn", "1");
  });
  const detailsEl = document.getElementById("details");
  if (M.P.scopes.length <= 1) {  // no scope: no box to open (the template's hint speaks of boxes)
    detailsEl.textContent = "Click a node for its numbers and how the chain rule makes its gradient. " +
      "Step through the backward pass with the buttons above.";
  }
  const hint = detailsEl.textContent;
  let view = null, rp = null;
  const details = GT.details(M, T, detailsEl, { go: function (i) { reveal(i); } });
  const colours = {};
  P.roles.forEach(function (r, j) { colours[r] = P.colors[j]; });

  view = GT.view(M, T, network, {
    nodeTitle: details.nodeTitle,
    drawn: function (c) {  // after every render: the legend, the counts, the instance picker
      const boxes = c.items.some(function (it) { return it.kind !== "n"; });
      const stacks = c.items.some(function (it) { return it.kind === "g" || (it.kind === "s" && T.twinsOf(it.ref)); });
      const sc = view.colourMode() === "role" ? null : GT.legend.scale(view.colourMode(),
        c.items.map(function (it, x) { return (view.colourMode() === "value" ? M.values : (view.colourMode() === "data" ? M.data : M.grad))[view.outputOf(x)]; }),
        view.colourMode() === "value" ? P.valueName : view.colourMode());
      const drawnRoles = new Set();  // the roles of the nodes drawn (boxes have their own colour)
      c.items.forEach(function (it) { if (it.kind === "n") { drawnRoles.add(M.role[it.ref]); } });
      GT.legend.draw(document.getElementById("gt-legend"), {
        roles: P.roles.filter(function (r, j) { return drawnRoles.has(j); }), colours: colours, scale: sc, boxes: boxes, stacks: stacks, tensor: M.tensor, normsOnly: P.stats === "norms",
        merged: c.links.some(function (m) { return m.count > 1; }), ranges: stacks, collections: c.items.some(function (it) { return it.kind === "s" && T.collects[it.ref]; }), anomalies: c.items.some(function (it, x) { return view.anomalous(x); }),
        edgeNumbers: c.links.some(function (m) { return m.count === 1; })
      });
      document.getElementById("stats").textContent = M.n + " nodes, " + M.E.length + " edges" +
        (c.items.length < M.n ? "; showing " + c.items.length + " boxes, " + c.links.length + " edges" : "");
      const pickEl = document.getElementById("gt-pick"), g = T.activeGroup();
      if (g >= 0 && T.groups[g].open) {
        const G = T.groups[g];
        pickEl.hidden = false;
        document.getElementById("gt-instance").max = String(G.members.length - 1);
        document.getElementById("gt-instance").value = String(G.sel);
        document.getElementById("gt-of").textContent = G.base + " \u00d7" + G.members.length;
        document.getElementById("gt-which").textContent = T.spath(G.members[G.sel]);
      } else { pickEl.hidden = true; }
    }
  });
  rp = GT.replay(M, {
    view: function () { return view.current(); },
    paint: function (refresh, cx, prev) { view.repaint(refresh); view.highlight(cx, prev); },
    describe: function (x) {
      const it = view.current().items[x];
      if (it.kind === "n") {
        const i = it.ref;
        return { name: M.label[i], grad: M.grad[i], text: "grad(" + M.label[i] + ") = " + GT.format.fmt(M.grad[i]) };
      }
      const tw = view.instances(x), o = view.outputOf(x), range = view.gradRange(x);
      if (range !== null) {  // parameters or inputs: no output, the range of their gradients
        return { name: view.nameOf(x), grad: NaN, text: view.nameOf(x) + " done, grad " + range };
      }
      return { name: view.nameOf(x), grad: M.grad[o],
               text: view.nameOf(x) + " done, grad " + (tw.length > 1 ? GT.format.spread(T.outputs(tw, M.grad)) : GT.format.fmt(M.grad[o])) };
    },
    told: function (s) {  // the side panel follows the replay: the current node's sum
      if (s.id === null) { detailsEl.textContent = hint; return; }
      showItem(s.id);
    }
  });
  view.setReplay(rp);

  function drawn(work) {
    return new Promise(function (resolve, reject) {
      let result;
      try { result = work(); } catch (err) { reject(err); return; }
      network.once("afterDrawing", function () { resolve(result); });
      network.redraw();
    });
  }
  function showItem(id) {
    const c = view.current(), x = c.byId.get(id);
    if (x === undefined) { return; }
    const it = c.items[x];
    if (it.kind === "n") { details.showNode(it.ref); } else { details.showText(view.boxTitle(x)); }
  }
  function select(id) {
    network.selectNodes([id]);
    showItem(id);
  }
  // node i made visible (its scopes opened), selected, in view and in the panel
  function reveal(i) {
    T.openPath(M.scope[i]);
    const c = view.render({ node: i }), id = c.items[c.itemOfNode[i]].id;
    select(id);
    return id;
  }
  const found = document.getElementById("gt-found");
  let missShown = false;  // the panel says a search found nothing
  function search(text) {
    const hit = finder.find(text);
    if (!hit) {  // said briefly in the toolbar (whole in its tooltip) and in the panel; the last match is let go
      const asked = String(text).trim();
      found.textContent = asked ? "no match" : "";
      found.title = asked ? "no node or scope matches \u201c" + asked + "\u201d" : "";
      found.className = "miss";
      if (!asked && missShown) { details.showText(hint); }  // the box cleared: so is what it said
      missShown = !!asked;
      if (asked) {
        network.unselectAll();
        details.showText("No node or scope matches \u201c" + asked + "\u201d. Search by a node's label or id, a " +
          "parameter's name as named_parameters() gives it, a scope's name or path (as the tables write it or as " +
          "the page shows it), or \u201closs\u201d for the output.");
      }
      return Promise.resolve({ found: false });
    }
    return drawn(function () {
      let i;
      if (hit.node !== undefined) { i = hit.node; T.openPath(M.scope[i]); }
      else {  // a scope: its box, or, for an instance of a stack, that instance opened
        i = T.last[hit.scope];
        if (T.foldOf[hit.scope] >= 0) { T.openPath(hit.scope); } else if (T.parent[hit.scope] > 0) { T.openPath(T.parent[hit.scope]); }
      }
      const c = view.render({ node: i }), id = c.items[c.itemOfNode[i]].id;
      select(id);
      found.textContent = hit.node !== undefined ? "found " + M.label[i] : "found scope " + T.spath(hit.scope);
      found.title = found.textContent;
      found.className = "hit";
      missShown = false;
      return { found: true, id: id };
    });
  }
  window.graphtraceSearch = search;
  document.getElementById("search").addEventListener("keydown", function (ev) { if (ev.key === "Enter") { search(ev.target.value); } });

  window.graphtraceExpand = function (path) {
    const k = T.scopeIndex(path);
    if (k < 0) { return Promise.reject(new Error("no scope " + JSON.stringify(path))); }
    return drawn(function () { T.openPath(k); view.render({ open: k }); });
  };
  window.graphtraceCollapse = function (path) {
    const k = T.scopeIndex(path);
    if (k <= 0) { return Promise.reject(new Error("no scope " + JSON.stringify(path))); }
    return drawn(function () { T.close(k); view.render("keep"); });
  };
  // show instance `pos` of the stack last opened (or of the one named `base`)
  window.graphtracePick = function (pos, base) {
    let g = T.activeGroup();
    if (typeof base === "string") { g = T.groups.findIndex(function (G) { return G.base === base; }); }
    if (g < 0) { return Promise.reject(new Error("no stack is open" + (base ? " named " + JSON.stringify(base) : ""))); }
    if (typeof pos !== "number" || !Number.isInteger(pos)) { return Promise.reject(new TypeError("graphtracePick: the instance must be an integer, got " + String(pos))); }
    return drawn(function () { T.pick(g, pos); view.render("keep"); }).then(function () {
      const G = T.groups[g];
      return { instance: G.sel, of: G.members.length, scope: T.spath(G.members[G.sel]) };
    });
  };
  document.getElementById("gt-instance").addEventListener("change", function (ev) {
    const g = T.activeGroup(), pos = Number(ev.target.value);
    if (g >= 0 && Number.isInteger(pos)) { T.pick(g, pos); view.render("keep"); }
  });
  window.graphtraceStep = function (n) {
    let result;
    try { result = rp.step(n); } catch (err) { return Promise.reject(err); }
    return drawn(function () { return result; });
  };
  const select_ = document.getElementById("gt-colour");
  function setColour(mode) { view.colour(mode); select_.value = mode; view.render("keep"); }
  select_.addEventListener("change", function () { setColour(select_.value); });
  window.graphtraceColorByGrad = function (on) { return drawn(function () { setColour(on ? "absgrad" : (P.values ? "value" : "role")); }); };
  window.graphtraceClusters = function () { return view.clusters(); };
  // the numbers drawn on edges and the containers' names, as rectangles in CSS px of the graph's area
  window.graphtraceEdgeLabels = function () { return view.edgeLabels(); };
  window.graphtraceClusterTitles = function () { return view.clusterTitles(); };
  window.graphtraceFit = function () { return drawn(function () { view.fitAll(); }); };
  document.getElementById("gt-fit").addEventListener("click", function () { view.fitAll(); });

  // a click on a box opens it a moment later, unless it was the first click of a double-click; a
  // double-click inside an opened scope closes it
  let clickTimer = null;
  network.on("click", function (params) {
    if (!params.nodes.length) { return; }
    const id = String(params.nodes[0]), kind = id.charAt(0);
    if (kind === "n") { showItem(id); return; }
    if (clickTimer !== null) { clearTimeout(clickTimer); }
    clickTimer = setTimeout(function () {
      clickTimer = null;
      const x = view.current().byId.get(id);
      if (x === undefined) { return; }
      const it = view.current().items[x];
      const k = kind === "g" ? T.groups[it.group].members[T.groups[it.group].sel] : it.ref;
      if (kind === "g") { T.pick(it.group, T.groups[it.group].sel); } else { T.open(k); }
      const c = view.render({ open: k });
      const inside = c.items[c.itemOfNode[T.last[k]]];
      if (inside) { network.selectNodes([inside.id]); showItem(inside.id); }
    }, 250);
  });
  network.on("doubleClick", function (params) {
    if (clickTimer !== null) { clearTimeout(clickTimer); clickTimer = null; }
    if (!params.nodes.length) { return; }
    const id = String(params.nodes[0]);
    if (id.charAt(0) === "g") { return; }
    const x = view.current().byId.get(id), it = view.current().items[x];
    let k = it.kind === "s" ? T.parent[it.ref] : M.scope[it.ref];
    while (k > 0 && !T.isOpen(k)) { k = T.parent[k]; }
    if (k > 0) { T.close(k); view.render("keep"); }
  });

  function png() { const canvas = document.querySelector("#graph canvas"); return canvas ? canvas.toDataURL("image/png") : ""; }
  window.graphtracePNG = png;
  document.getElementById("gt-png").addEventListener("click", function () {
    const a = document.createElement("a");
    a.href = png();
    a.download = (document.title || "graph").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80) + ".png";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
  view.firstView();
  performance.mark("graphtrace:first-view");
})();
