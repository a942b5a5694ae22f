// What a search box entry names: a node by its label or id, the output by "loss" (or "output", "root"),
// a parameter by the dotted name its model and the run tables use (named_parameters(): the scalar
// engine's layers.1.neurons.3.w.5 is the label L1.N3.w5, each word shortened to its first letter), a
// scope by its name or path; else the first label, then scope name, containing the text.
GT.search = function (M, T) {
  "use strict";
  const PARAM = M.P.roles.indexOf("parameter");
  function words(s) { return s.match(/[A-Za-z]+|\d+/g) || []; }
  // "layers.1.neurons.3.w.5" against the label "L1.N3.w5": the same numbers, each word of the label the
  // start of the query's (case aside)
  function abbreviates(label, query) {
    if (label.length !== query.length) { return false; }
    for (let j = 0; j < label.length; j++) {
      const a = label[j], b = query[j];
      if (/^\d/.test(a) || /^\d/.test(b)) { if (a !== b) { return false; } continue; }
      if (b.toLowerCase().indexOf(a.toLowerCase()) !== 0) { return false; }
    }
    return true;
  }
  function find(text) {
    const needle = String(text).trim(), n = M.n;
    if (!needle) { return null; }
    let i, k;
    for (i = 0; i < n; i++) { if (M.label[i] === needle) { return { node: i }; } }
    if (/^(loss|output|root)$/i.test(needle)) { return { node: M.root }; }
    for (i = 0; i < n; i++) { if (String(M.id(i)) === needle) { return { node: i }; } }
    k = T.scopeIndex(needle);
    if (k > 0) { return { scope: k }; }
    // a path as the run tables and by_scope write it: without the instance numbers (MLP/Layer1 for MLP[0]/Layer1)
    if (/\//.test(needle)) {
      for (k = 1; k < T.nS; k++) { if (T.spath(k).replace(/\[\d+\]/g, "") === needle) { return { scope: k }; } }
    }
    for (k = 1; k < T.nS; k++) { if (T.sname[k] === needle && !T.collects[k]) { return { scope: k }; } }
    for (k = 1; k < T.nS; k++) { if (T.sname[k] === needle) { return { scope: k }; } }
    if (/[.]/.test(needle)) {
      const q = words(needle);
      for (i = 0; i < n; i++) { if (M.role[i] === PARAM && abbreviates(words(M.label[i]), q)) { return { node: i }; } }
    }
    const low = needle.toLowerCase();
    for (i = 0; i < n; i++) { if (M.label[i].toLowerCase().indexOf(low) >= 0) { return { node: i }; } }
    for (k = 1; k < T.nS; k++) { if (T.sname[k].toLowerCase().indexOf(low) >= 0) { return { scope: k }; } }
    return null;
  }
  return { find: find };
};
