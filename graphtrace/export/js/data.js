// The page's data (graphtrace/export/payload.py) decoded into typed columns, nodes in topological order.
// Numbers arrive as base64 typed arrays (float64 bit for bit), strings as distinct words and an index.
GT.data = (function () {
  "use strict";
  const TYPES = { u1: Uint8Array, u2: Uint16Array, i4: Int32Array };
  function typed(b64, T) {
    const bin = atob(b64), u = new Uint8Array(bin.length);
    for (let j = 0; j < bin.length; j++) { u[j] = bin.charCodeAt(j); }
    return new T(u.buffer);
  }
  function ints(c) { return typed(c.b, TYPES[c.t]); }
  function floats(c) {
    const v = typed(c.values, Float64Array);
    if (!c.index) { return v; }
    const ix = ints(c.index), out = new Float64Array(ix.length);
    for (let j = 0; j < ix.length; j++) { out[j] = v[ix[j]]; }
    return out;
  }
  function words(c) {
    const ix = ints(c.index), w = c.words, out = new Array(ix.length);
    for (let j = 0; j < ix.length; j++) { out[j] = w[ix[j]]; }
    return out;
  }
  // M: n nodes; scope/role/label/op/data/grad per node; E: the edges grouped by result (E.start[i] ..
  // E.start[i + 1] are node i's operands in order: E.src the operand, E.lg its local_grad, E.gn the
  // gradient norm along it on a tensor trace); users(i): the edges leaving node i (built on first use)
  function read(el) {
    const P = JSON.parse(el.textContent), C = P.columns;
    const scope = ints(C.scope), n = scope.length;
    const nargs = ints(C.nargs), src = ints(C.src), start = new Int32Array(n + 1), dst = new Int32Array(src.length);
    for (let i = 0; i < n; i++) {
      start[i + 1] = start[i] + nargs[i];
      for (let e = start[i]; e < start[i + 1]; e++) { dst[e] = i; }
    }
    const ids = C.id === null ? null : (Array.isArray(C.id) ? C.id : ints(C.id));
    const M = {
      P: P, n: n, tensor: P.kind === "tensor",
      scope: scope, role: ints(C.role), label: words(C.label), op: words(C.op), opCode: ints(C.op.index),
      data: floats(C.data), grad: floats(C.grad),
      shape: C.shape ? words(C.shape) : null, info: C.info ? words(C.info) : null,
      numel: C.numel ? floats(C.numel) : null, known: C.known ? ints(C.known) : null, bad: C.bad ? ints(C.bad) : null,
      E: { src: src, dst: dst, start: start, lg: floats(C.lg), gn: C.gn ? floats(C.gn) : null,
           gbad: C.gbad ? ints(C.gbad) : null, length: src.length },
      values: P.values ? floats(P.values) : null
    };
    M.id = function (i) { return ids === null ? i : ids[i]; };
    const ROOT = P.roles.indexOf("root");
    M.root = P.root >= 0 ? P.root : (function () { for (let i = n - 1; i >= 0; i--) { if (M.role[i] === ROOT) { return i; } } return n - 1; })();
    let outs = null;
    M.users = function (i) {  // the edge indices whose operand is node i, in result order
      if (outs === null) {
        const deg = new Int32Array(n + 1);
        for (let e = 0; e < src.length; e++) { deg[src[e] + 1] += 1; }
        for (let j = 0; j < n; j++) { deg[j + 1] += deg[j]; }
        const at = deg.slice(0, n), list = new Int32Array(src.length);
        for (let e = 0; e < src.length; e++) { list[at[src[e]]++] = e; }
        outs = { start: deg, list: list };
      }
      return outs.list.subarray(outs.start[i], outs.start[i + 1]);
    };
    // a value of node i that is not finite while it was recorded: an anomaly, drawn as such
    M.anomaly = function (i) {
      if (M.bad !== null) { return (M.bad[i] & 3) !== 0; }  // (4: contained, e.g. a -inf mask before softmax)
      return !isFinite(M.data[i]) || !isFinite(M.grad[i]);
    };
    M.gradKnown = function (i) { return M.known === null || (M.known[i] & 2) !== 0; };
    M.dataKnown = function (i) { return M.known === null || (M.known[i] & 1) !== 0; };
    return M;
  }
  return { read: read };
})();
