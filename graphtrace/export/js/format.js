// Numbers as the page writes them, and the text drawn on nodes and boxes.
// Every script of the page hangs its part on the one global GT (no build step: the files are
// inlined into the page in the order graphtrace/export/html.py lists them).
var GT = {};
GT.format = (function () {
  "use strict";
  function num(x) { return typeof x === "number" ? x : (x === "inf" ? Infinity : (x === "-inf" ? -Infinity : NaN)); }
  // four significant digits, exponent form for very large or small magnitudes
  function fmt(x) {
    x = num(x);
    if (isNaN(x)) { return "nan"; }
    if (!isFinite(x)) { return x > 0 ? "inf" : "-inf"; }
    if (x === 0) { return "0"; }
    const a = Math.abs(x);
    return (a >= 1e4 || a < 1e-3) ? x.toExponential(3) : String(Number(x.toPrecision(4)));
  }
  // a number in full, as Python writes it (NaN, the infinities, -0.0)
  function rep(x) {
    if (isNaN(x)) { return "nan"; }
    if (!isFinite(x)) { return x > 0 ? "inf" : "-inf"; }
    return Object.is(x, -0) ? "-0.0" : String(x);
  }
  function cut(s, max) { return s.length > max ? s.slice(0, max - 1) + "\u2026" : s; }
  // "min … median … max" of some numbers (NaN left out), "nan" when none is a number
  function spread(values) {
    const v = values.filter(function (x) { return !isNaN(x); });
    if (!v.length) { return "nan"; }
    v.sort(function (a, b) { return a - b; });
    return fmt(v[0]) + " \u2026 " + fmt(v[(v.length - 1) >> 1]) + " \u2026 " + fmt(v[v.length - 1]);
  }
  return { num: num, fmt: fmt, rep: rep, cut: cut, spread: spread };
})();
