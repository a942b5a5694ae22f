// What every encoding on the page means: the colours (roles present, or the colour scale with its ends
// when colouring by a value), the replay's pending and current marks, the numbers on boxes and edges.
GT.legend = (function () {
  "use strict";
  const fmt = GT.format.fmt, num = GT.format.num;
  const PENDING = { background: "#f4f4f4", border: "#b0b0b0", font: "#666666" };
  const CURRENT = "#ff7f0e", ANOMALY = "#d62728", BOX = "#dadaeb", BOX_BORDER = "#54278f", NO_VALUE = "#d9d9d9";
  const ROLE_TEXT = { parameter: "parameter", leaf: "input (leaf)", constant: "constant", intermediate: "op result",
                      root: "output (root)" };
  // signed values: blue below 0, white at 0, red above, by sqrt(|v| / vmax); grey for NaN
  function diverging(v, vmax) {
    v = num(v);
    if (isNaN(v)) { return NO_VALUE; }
    const t = (!isFinite(v) || vmax <= 0) ? 1 : Math.sqrt(Math.min(1, Math.abs(v) / vmax));
    if (v > 0) { return "rgb(255," + Math.round(255 - 200 * t) + "," + Math.round(255 - 200 * t) + ")"; }
    if (v < 0) { return "rgb(" + Math.round(255 - 200 * t) + "," + Math.round(255 - 160 * t) + ",255)"; }
    return "#ffffff";
  }
  // |grad| on a log scale from 10^lo (a light orange: the smallest is not 0) to 10^hi (red); exactly 0
  // white, non-finite dark red
  const LOG_LOW = "rgb(253,224,200)", LOG_HIGH = "rgb(255,75,35)";
  function logColor(g, lo, hi) {
    g = Math.abs(num(g));
    if (isNaN(g)) { return NO_VALUE; }
    if (!isFinite(g)) { return ANOMALY; }
    if (g === 0 || hi <= lo) { return g === 0 ? "#ffffff" : LOG_HIGH; }
    const t = Math.max(0, Math.min(1, (Math.log10(g) - lo) / (hi - lo)));
    return "rgb(" + Math.round(253 + 2 * t) + "," + Math.round(224 - 149 * t) + "," + Math.round(200 - 165 * t) + ")";
  }
  // the scale of mode "data", "grad", "value" (diverging) or "absgrad" (log) over `values`
  function scale(mode, values, name) {
    if (mode === "absgrad") {
      let lo = Infinity, hi = -Infinity;
      values.forEach(function (v) {
        const a = Math.abs(num(v));
        if (isFinite(a) && a > 0) { const l = Math.log10(a); if (l < lo) { lo = l; } if (l > hi) { hi = l; } }
      });
      return { color: function (v) { return logColor(v, lo, hi); }, name: "|grad| (log)",
               gradient: "linear-gradient(to right, " + LOG_LOW + ", " + LOG_HIGH + ")",
               low: isFinite(lo) ? fmt(Math.pow(10, lo)) : "0", high: isFinite(hi) ? fmt(Math.pow(10, hi)) : "0",
               note: "white: 0, grey: none" };
    }
    let vmax = 0, negative = false;
    values.forEach(function (v) {
      const x = num(v), a = Math.abs(x);
      if (isFinite(a) && a > vmax) { vmax = a; }
      if (x < 0) { negative = true; }
    });
    if (!negative) {  // (norms: a torch trace's values and gradients): white at 0 to red, no unused blue half
      return { color: function (v) { return diverging(v, vmax); }, name: name || mode,
               gradient: "linear-gradient(to right, #ffffff, rgb(255,55,55))",
               low: "0", high: fmt(vmax), note: "square-root scale, white: 0, grey: none" };
    }
    return { color: function (v) { return diverging(v, vmax); }, name: name || mode,
             gradient: "linear-gradient(to right, rgb(55,95,255), #ffffff, rgb(255,55,55))",
             low: fmt(-vmax), high: fmt(vmax), note: "square-root scale, white: 0, grey: none" };
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function swatch(row, text, style) {
    const s = el("span", "swatch", text);
    Object.keys(style).forEach(function (k) { s.style[k] = style[k]; });
    row.appendChild(s);
    return s;
  }
  // s: {roles: role names present, colours: role -> colour, scale: null or a scale(), boxes, stacks,
  //     merged (edges drawn merged between boxes), ranges (boxes with min … median … max), tensor,
  //     anomalies, edgeNumbers (edges labelled with a number), normsOnly (a trace recorded with
  //     stats="norms": its mean, std, min and max are not recorded)}
  function draw(root, s) {
    root.textContent = "";
    const colours = el("div", "row");
    colours.setAttribute("data-legend", "colours");
    if (s.scale === null) {
      colours.appendChild(el("span", "what", s.roles.length ? "colour:" : "boxes:"));
      s.roles.forEach(function (r) {
        swatch(colours, ROLE_TEXT[r] || r, { background: s.colours[r] }).setAttribute("data-role", r);
      });
      if (s.boxes) { swatch(colours, "scope: click to open", { background: BOX, borderColor: BOX_BORDER, borderWidth: "2px" }); }
      if (s.stacks) {
        swatch(colours, "stack of alike instances", { background: BOX, borderColor: BOX_BORDER, borderWidth: "2px", borderStyle: "dashed" });
      }
    } else {
      colours.appendChild(el("span", "what", "colour: " + s.scale.name));
      const bar = el("span", "scale");
      bar.id = "gt-scale";
      bar.setAttribute("data-low", s.scale.low);
      bar.setAttribute("data-high", s.scale.high);
      bar.appendChild(el("span", "", s.scale.low));
      const b = el("span", "bar");
      b.style.background = s.scale.gradient;
      b.setAttribute("data-scale", "bar");
      bar.appendChild(b);
      bar.appendChild(el("span", "", s.scale.high));
      colours.appendChild(bar);
      colours.appendChild(el("span", "note", "(" + s.scale.note + ")"));
    }
    root.appendChild(colours);
    const marks = el("div", "row");
    marks.setAttribute("data-legend", "marks");
    swatch(marks, "grad ?  not computed yet", { background: PENDING.background, color: PENDING.font,
                                                 borderColor: PENDING.border, borderStyle: "dashed" }).setAttribute("data-pending", "1");
    swatch(marks, "current step", { background: "#fff", borderColor: CURRENT, borderWidth: "3px" });
    if (s.anomalies) { swatch(marks, "non-finite value (in a box: inside)", { background: "#fff", borderColor: ANOMALY, borderWidth: "3px" }); }
    root.appendChild(marks);
    const lines = [];
    if (s.tensor) {
      lines.push("\u2016x\u2016: L2 norm of an op's output tensor (x: its value when it has one element); " +
                 "\u2016\u2207\u2016: of its gradient; \u2014: not recorded");
      if (s.edgeNumbers) { lines.push("on an edge: \u2016gradient\u2016 flowing back along it"); }
      if (s.normsOnly) { lines.push("recorded with stats='norms': norms and non-finite counts; mean, std, min, max not recorded"); }
    } else {
      lines.push("data: the value; grad: \u2202output/\u2202value, filled in by the backward pass");
      if (s.edgeNumbers) { lines.push("on an edge: local \u2202out/\u2202in, the factor the chain rule multiplies by"); }
    }
    if (s.merged) { lines.push("\u00d7n on an edge: n edges between two boxes"); }
    if (s.ranges || s.collections) {
      lines.push("a \u2026 b \u2026 c: min \u2026 median \u2026 max" + (s.ranges ? ", on a stack over its instances' outputs" : "") +
                 (s.collections ? ", on parameters and inputs over their values" : ""));
    }
    if (s.boxes) { lines.push("on a scope: the numbers of its output (its last node)"); }
    lines.forEach(function (t) { const d = el("div", "line", t); d.setAttribute("data-legend", "numbers"); root.appendChild(d); });
  }
  return { PENDING: PENDING, CURRENT: CURRENT, ANOMALY: ANOMALY, BOX: BOX, BOX_BORDER: BOX_BORDER, NO_VALUE: NO_VALUE,
           diverging: diverging, logColor: logColor, scale: scale, draw: draw };
})();
