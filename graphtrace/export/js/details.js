// The side panel: what a click (or the replay's current step) is. A node: its numbers, its operands and
// users (a parameter used by every sample of a batch: one line per group of alike users), and how its
// gradient is made: for scalars the chain rule grad(x) = Σ local_grad(x → c) · grad(c) with every number
// (terms of alike users grouped, each group expandable), for tensors the gradient norms along its edges.
// A box: its scope, size and output numbers. hooks.go(i) reveals and selects node i.
GT.details = function (M, T, el, hooks) {
  "use strict";
  const fmt = GT.format.fmt, rep = GT.format.rep, E = M.E, P = M.P;
  const MAX_GROUPS = 12, MAX_TERMS = 200;
  function div(parent, text, cls) {
    const d = document.createElement("div");
    if (cls) { d.className = cls; }
    if (text !== undefined) { d.textContent = text; }
    parent.appendChild(d);
    return d;
  }
  function link(parent, text, i) {
    const a = document.createElement("a");
    a.textContent = text;
    a.href = "#";
    a.addEventListener("click", function (ev) { ev.preventDefault(); hooks.go(i); });
    parent.appendChild(a);
    return a;
  }
  function roleName(i) { return P.roles[M.role[i]]; }
  function known(v, ok) { return ok ? rep(v) : "not recorded"; }
  // the tooltip and the head of the panel: every field of the node, numbers in full
  // the scope the node was recorded in (the page shows parameters and inputs in boxes of their own)
  function scopeOf(i) {
    const s = T.spath(M.scope[i]), top = s.split("/", 1)[0];
    return P.noAuto.indexOf(top) < 0 ? s : s.slice(top.length + 1);
  }
  function nodeTitle(i) {
    const s = scopeOf(i);
    return M.label[i] + "\nop: " + (M.op[i] || "(leaf)") + "\nrole: " + roleName(i) + "\nscope: " + (s || "(none)") +
      (M.shape ? "\nshape: " + M.shape[i] : "") +
      (M.tensor ? "\n\u2016x\u2016 (data): " + known(M.data[i], M.dataKnown(i)) + "\n\u2016\u2207\u2016 (grad): " + known(M.grad[i], M.gradKnown(i))
        : "\ndata: " + rep(M.data[i]) + "\ngrad: " + rep(M.grad[i])) +
      (M.info ? "\n" + M.info[i] : "") + (M.values ? "\n" + P.valueName + ": " + rep(M.values[i]) : "") +
      "\nnode: " + String(M.id(i));
  }
  // users of a node that differ only by the instance they sit in (MLP[3]/Layer1 vs MLP[4]/Layer1) group
  function groupOf(c) {
    const path = T.spath(M.scope[c]);
    return { key: M.label[c] + "\u0000" + path.replace(/\[\d+\]/g, "[*]"), path: path };
  }
  function grouped(edges) {  // edges -> [{key, label, edges, paths}] in first-use order
    const groups = new Map();
    edges.forEach(function (e) {
      const c = E.dst[e], g = groupOf(c);
      let G = groups.get(g.key);
      if (!G) { groups.set(g.key, G = { label: M.label[c], edges: [], paths: [] }); }
      G.edges.push(e);
      G.paths.push(g.path);
    });
    return Array.from(groups.values());
  }
  function where(G) {
    const n = G.edges.length;
    return n === 1 ? (G.paths[0] ? " in " + G.paths[0] : "") : " in " + n + " instances: " + (G.paths[0] || "(none)") + " \u2026 " + (G.paths[n - 1] || "(none)");
  }
  function operandsAndUsers(box, i) {
    div(box, "inputs:");
    if (E.start[i] === E.start[i + 1]) { div(box, "  none (a leaf)"); }
    for (let e = E.start[i]; e < E.start[i + 1]; e++) {
      const d = div(box, "  ");
      link(d, M.label[E.src[e]], E.src[e]);
      d.appendChild(document.createTextNode(M.tensor ? "  \u2016\u2207\u2016 along it " + edgeNorm(e) : "  local_grad " + fmt(E.lg[e])));
    }
    const users = Array.from(M.users(i));
    div(box, "used by:");
    if (!users.length) { div(box, "  nothing (an output)"); }
    grouped(users).forEach(function (G) {
      const d = div(box, "  ");
      d.setAttribute("data-users", String(G.edges.length));
      if (G.edges.length > 1) { d.appendChild(document.createTextNode(G.edges.length + "\u00d7 ")); }
      link(d, G.label, E.dst[G.edges[0]]);
      d.appendChild(document.createTextNode(where(G)));
    });
  }
  function edgeNorm(e) {
    const v = E.gn[e];
    return isNaN(v) && !(E.gbad && E.gbad[e]) ? "not recorded" : fmt(v);
  }
  // grad(x) = Σ over the users of x: local_grad(x → user) · grad(user), terms of alike users grouped
  function chainRule(box, i) {
    const name = M.label[i], users = Array.from(M.users(i));
    if (!users.length) {  // (no sum to show: the output's grad is where the backward pass starts)
      div(box, "chain rule: grad(" + name + ") is the seed " + fmt(M.grad[i]) +
          ": the output, used by no node (\u2202out/\u2202out = 1)", "head");
      return;
    }
    // (the user is written "user", not a letter: a node may be named c)
    div(box, "chain rule: grad(" + name + ") = \u03a3 over its users: local_grad(" + name + " \u2192 user) \u00b7 grad(user)",
        "head");
    let total = 0;
    const groups = grouped(users).map(function (G) {
      let sum = 0;
      G.edges.forEach(function (e) { sum += E.lg[e] * M.grad[E.dst[e]]; });
      total += sum;
      G.sum = sum;
      return G;
    });
    let shown = groups;
    if (groups.length > MAX_GROUPS) {
      shown = groups.slice().sort(function (a, b) { return Math.abs(b.sum) - Math.abs(a.sum); }).slice(0, MAX_GROUPS);
    }
    shown.forEach(function (G) {
      if (G.edges.length === 1) {
        const e = G.edges[0], c = E.dst[e], d = div(box, "  + " + fmt(E.lg[e]) + " \u00b7 grad(");
        d.setAttribute("data-term", String(M.id(c)));
        link(d, M.label[c], c);
        d.appendChild(document.createTextNode(") = " + fmt(E.lg[e]) + " \u00d7 " + fmt(M.grad[c]) + " = " + fmt(E.lg[e] * M.grad[c])));
        return;
      }
      const det = document.createElement("details");
      det.setAttribute("data-group", String(G.edges.length));
      const sum = document.createElement("summary");
      sum.textContent = "+ \u03a3 local_grad \u00b7 grad(" + G.label + ")" + where(G) + " = " + fmt(G.sum) + "  (" + G.edges.length + " terms)";
      det.appendChild(sum);
      G.edges.slice(0, MAX_TERMS).forEach(function (e, j) {
        const c = E.dst[e], d = div(det, "    ");
        d.setAttribute("data-term", String(M.id(c)));
        link(d, G.paths[j] || M.label[c], c);
        d.appendChild(document.createTextNode(": " + fmt(E.lg[e]) + " \u00d7 " + fmt(M.grad[c]) + " = " + fmt(E.lg[e] * M.grad[c])));
      });
      if (G.edges.length > MAX_TERMS) { div(det, "    \u2026 " + (G.edges.length - MAX_TERMS) + " more terms"); }
      box.appendChild(det);
    });
    if (shown.length < groups.length) {
      let rest = 0;
      groups.forEach(function (G) { if (shown.indexOf(G) < 0) { rest += G.sum; } });
      div(box, "  + " + (groups.length - shown.length) + " more groups of terms, summing to " + fmt(rest));
    }
    div(box, "  = " + fmt(total) + "  over " + users.length + " term" + (users.length === 1 ? "" : "s") + "; recorded grad " + fmt(M.grad[i]))
      .setAttribute("data-sum", String(total));
  }
  // a tensor node: its gradient is the sum of what flows back from each user; the trace records norms
  function gradientFlow(box, i) {
    const users = Array.from(M.users(i));
    div(box, "gradient of " + M.label[i] + ": what flows back from each user (\u2016\u2207\u2016 along the edge)", "head");
    if (!users.length) {
      div(box, "no users: the output, whose gradient is the seed (" + (M.gradKnown(i) ? fmt(M.grad[i]) : "not recorded") + ")");
      return;
    }
    users.forEach(function (e) {
      const d = div(box, "  \u2190 ");
      d.setAttribute("data-term", String(M.id(E.dst[e])));
      link(d, M.label[E.dst[e]], E.dst[e]);
      d.appendChild(document.createTextNode(": " + edgeNorm(e)));
    });
    div(box, "  \u2016\u2207\u2016 of " + M.label[i] + ": " + (M.gradKnown(i) ? fmt(M.grad[i]) : "not recorded") +
      (users.length === 1 ? " (one user: the same gradient)" : " (the sum of the " + users.length + " flows: at most the sum of their norms)"))
      .setAttribute("data-sum", String(M.grad[i]));
  }
  function showNode(i) {
    el.textContent = "";
    div(el, nodeTitle(i), "title");
    const box = div(el, undefined, "chain");
    operandsAndUsers(box, i);
    const rule = div(el, undefined, "chain");
    if (M.tensor) { gradientFlow(rule, i); } else { chainRule(rule, i); }
  }
  function showText(text) { el.textContent = ""; div(el, text, "title"); }
  return { nodeTitle: nodeTitle, showNode: showNode, showText: showText };
};
