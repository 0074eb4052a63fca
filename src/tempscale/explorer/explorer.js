/* tempscale explorer: vanilla JS, no dependencies, no network.
 * User-supplied text only ever reaches the page through textContent / setAttribute /
 * createElementNS; the page never assigns HTML strings to the DOM. */
(function () {
  "use strict";

  var SVG_NS = "http" + "://www.w3.org/2000/svg";  // the SVG namespace name, not a URL to fetch
  var LOG10_MIN = -2, LOG10_MAX = 2;
  var LN2 = Math.LN2;
  var MAX_N = 1048576;      // the most classes a page takes (tempscale.explorer.MAX_CLASSES)
  var FULL_VIEW_MAX = 500;  // more classes than this: the top-N view
  var DEFAULT_TOP = 50;     // its default N
  var HASH_MAX = 2000;      // larger inputs are not written into the URL

  // ------------------------------------------------------------------------------------------
  // numerics: the library contract (tempscale.softmax / tempscale.temper)
  // ------------------------------------------------------------------------------------------
  /** log-softmax of x at temperature T (0 <= T <= inf); returns {lp, p, nan, empty}. */
  function softmax(x, T) {
    var n = x.length, i, m = -Infinity, nan = false;
    var lp = new Float64Array(n), p = new Float64Array(n);
    for (i = 0; i < n; i++) {
      if (x[i] !== x[i]) nan = true;
      else if (x[i] > m) m = x[i];
    }
    if (nan || T !== T) {
      for (i = 0; i < n; i++) { lp[i] = NaN; p[i] = NaN; }
      return { lp: lp, p: p, nan: true, empty: false };
    }
    if (m === -Infinity) {  // every entry masked: zeros, never NaN
      for (i = 0; i < n; i++) { lp[i] = -Infinity; p[i] = 0; }
      return { lp: lp, p: p, nan: false, empty: true };
    }
    // T = 0 (argmax) and a +inf maximum both split the mass among the maxima
    var tie = (m === Infinity) || T === 0;
    var mh = m / 2, th = T / 2, y = new Float64Array(n), s = 0;
    for (i = 0; i < n; i++) {
      var v = x[i];
      if (v === -Infinity) y[i] = -Infinity;
      else if (tie) y[i] = (v === m) ? 0 : -Infinity;
      // (x - m)/T without overflow for any finite x and T: (x/2 - m/2)/(T/2); for a subnormal T
      // whose half is 0, (x - m)/T itself (it can only overflow to the right answer, -inf)
      else y[i] = th > 0 ? (v / 2 - mh) / th : (v - m) / T;
      if (y[i] === 0) y[i] = 0;  // -0 (T = inf) -> 0
      s += Math.exp(y[i]);
    }
    var ls = Math.log(s);
    for (i = 0; i < n; i++) {
      lp[i] = y[i] - ls;
      p[i] = y[i] === -Infinity ? 0 : Math.exp(lp[i]);
    }
    return { lp: lp, p: p, nan: false, empty: false };
  }

  /**
   * a.map(f) built by push: V8 keeps a large array made by new Array(n) (or by map) in slow
   * dictionary mode, so arrays of 100k+ classes are grown element by element or typed.
   */
  function mapList(a, f) {
    var out = [];
    for (var i = 0; i < a.length; i++) out.push(f(a[i], i));
    return out;
  }

  /** probabilities -> log space (temper(p, T) = softmax(log p, T)); zeros stay zero. */
  function logOfProbabilities(p) {
    return mapList(p, function (v) { return v > 0 ? Math.log(v) : (v === 0 ? -Infinity : v); });
  }

  function stats(r) {
    var n = r.p.length;
    if (r.nan) return { entropy: NaN, perplexity: NaN, top: NaN, effective: NaN, argmax: [] };
    if (r.empty) return { entropy: NaN, perplexity: NaN, top: 0, effective: NaN, argmax: [] };
    var h = 0, sq = 0, top = -1, i;
    for (i = 0; i < n; i++) {
      if (r.p[i] > 0 && r.lp[i] > -Infinity) h -= r.p[i] * r.lp[i];
      sq += r.p[i] * r.p[i];
      if (r.p[i] > top) top = r.p[i];
    }
    if (h < 0) h = 0;
    var argmax = [];
    for (i = 0; i < n; i++) if (r.p[i] === top) argmax.push(i);
    return { entropy: h, perplexity: Math.exp(h), top: top, effective: 1 / sq, argmax: argmax };
  }

  // ------------------------------------------------------------------------------------------
  // truncation: tempscale.sampling.warp's rules, in its float64 arithmetic
  // ------------------------------------------------------------------------------------------
  function bitLength(n) { var b = 0; while (n > 0) { b++; n = Math.floor(n / 2); } return b; }

  /** exponents of the grids of an exact multi-part sum (tempscale.sampling._arith.grids, float64) */
  function grids(V, head) {
    var mant = 53, lv = Math.max(1, bitLength(V));
    var g = mant - head - 1, step = Math.max(1, mant - lv - 1), out = [g];
    var reach = g + mant + 10;
    while (g < reach && out.length < 8) { g += step; out.push(g); }
    return out;
  }

  function combine(sums) {
    var total = sums[sums.length - 1];
    for (var j = sums.length - 2; j >= 0; j--) total = sums[j] + total;
    return total;
  }

  /** probabilities over keep: e * (1 / s), s the exact sum of the kept e */
  function keptProbs(e, keep) {
    var V = e.length, grid = grids(V, Math.max(1, bitLength(V))), G = grid.length;
    var sums = new Float64Array(G), sc = grid.map(function (g) { return Math.pow(2, g); });
    var i, j;
    for (i = 0; i < V; i++) {
      if (!keep[i]) continue;
      var v = e[i];
      for (j = 0; j < G; j++) {  // partsOf, inline
        var q = Math.floor(v * sc[j]) / sc[j];
        sums[j] += q;
        v = v - q;
      }
    }
    var s = combine(Array.prototype.slice.call(sums));
    if (!(s > 0)) s = 1;
    var inv = 1 / s, p = new Float64Array(V);
    for (i = 0; i < V; i++) p[i] = keep[i] ? e[i] * inv : 0;
    return p;
  }

  /** indices by logit, largest first, ties lower index first (computed once per input) */
  function rankOf(key) {
    var idx = new Uint32Array(key.length);
    for (var i = 0; i < key.length; i++) idx[i] = i;
    idx.sort(function (a, b) { return key[a] > key[b] ? -1 : key[a] < key[b] ? 1 : a - b; });
    return idx;
  }

  /** remove rem from keep except the logits >= the n-th largest kept one (min_tokens_to_keep) */
  function cut(key, keep, rem, mtk, rank) {
    var V = key.length, n = Math.min(mtk, V), kth, i, c = 0;
    kth = -Infinity;
    for (i = 0; i < V; i++) {  // the n-th largest kept logit (-inf when fewer are kept)
      var j = rank[i];
      if (keep[j]) { c++; if (c === n) { kth = key[j]; break; } }
    }
    for (i = 0; i < V; i++) if (keep[i] && rem[i] && key[i] < kth) keep[i] = false;
  }

  function topNSigma(key, keep, n, mtk, rank) {
    var V = key.length, i, cnt = 0, sum = 0, m = -Infinity, mfin = -Infinity;
    for (i = 0; i < V; i++) {
      if (!keep[i]) continue;
      if (key[i] > m) m = key[i];
      if (isFinite(key[i])) { cnt++; sum += key[i]; if (key[i] > mfin) mfin = key[i]; }
    }
    var c = cnt > 0 ? cnt : 1, mean = sum / c, ss = 0;
    for (i = 0; i < V; i++) if (keep[i] && isFinite(key[i])) { var d = key[i] - mean; ss += d * d; }
    var sigma = Math.sqrt(ss / c);
    var thr = n === Infinity ? -Infinity : mfin - n * sigma;
    if (m === Infinity) thr = Infinity;
    var rem = new Uint8Array(V);
    for (i = 0; i < V; i++) rem[i] = key[i] < thr;
    cut(key, keep, rem, mtk, rank);
  }

  /**
   * tempscale.sampling.warp(x, T, top_k=, top_p=, min_p=, top_n_sigma=, order=, min_tokens_to_keep=)
   * for one row: {p (renormalised), keep (booleans), nan, empty}.  f: {topK, topP, minP, topNSigma,
   * order, mtk}; 0 / 1 / 0 / 0 switch a filter off.  rank: rankOf(key) (optional).
   */
  function warp(x, T, f, rank) {
    var V = x.length, i, key = new Float64Array(V), valid = new Uint8Array(V), nan = false, m = -Infinity;
    for (i = 0; i < V; i++) {
      if (x[i] !== x[i]) nan = true;
      valid[i] = x[i] > -Infinity ? 1 : 0;
      key[i] = valid[i] ? x[i] : -Infinity;
      if (key[i] > m) m = key[i];
    }
    if (nan || T !== T) {
      var pn = [], kn = [];
      for (i = 0; i < V; i++) { pn.push(NaN); kn.push(false); }
      return { p: pn, keep: kn, nan: true, empty: false };
    }
    rank = rank || rankOf(key);
    var mtk = Math.max(1, Math.floor(f.mtk || 1));
    var keep = valid.slice();
    if (f.topNSigma > 0) topNSigma(key, keep, f.topNSigma, mtk, rank);
    if (f.topK > 0) {
      var k = Math.min(Math.max(Math.min(f.topK, V), mtk), V), kth = key[rank[k - 1]];
      for (i = 0; i < V; i++) if (!(key[i] >= kth)) keep[i] = false;
    }
    var useTopP = f.topP > 0 && f.topP < 1, useMinP = f.minP > 0;
    if (useTopP || useMinP) {
      // the max-shifted tempered logits (x/2 - m/2) / (T/2); T = 1 for temperature-last and T = 0
      var Tf = f.order === "temperature-last" || T === 0 ? 1 : T;
      var ms = isFinite(m) ? m : 0, e = new Float64Array(V);
      for (i = 0; i < V; i++) {
        var z;
        if (m === Infinity) z = key[i] === Infinity ? 0 : -Infinity;
        else if (key[i] === -Infinity) z = -Infinity;
        else {
          var d = key[i] / 2 - ms / 2;
          z = Tf === 1 ? d * 2 : (d === 0 ? 0 : d / Tf * 2);
        }
        e[i] = Math.exp(z);
      }
      var p, pos;
      if (useTopP) {
        // ascending by logit, ties by index (a stable sort); the removed tokens (p = 0) come first
        p = keptProbs(e, keep);
        // rank (largest first, ties lower index first) read backwards, each run of ties turned
        // back round: ascending logits, ties by index, without sorting again
        var kept = [], lo, hi;
        for (i = V - 1; i >= 0; i--) if (keep[rank[i]]) kept.push(rank[i]);
        for (lo = 0; lo < kept.length; lo = hi) {
          for (hi = lo + 1; hi < kept.length && key[kept[hi]] === key[kept[lo]]; hi++) { /* the run */ }
          if (hi - lo > 1) {
            var run = kept.slice(lo, hi).reverse();
            for (var t2 = 0; t2 < run.length; t2++) kept[lo + t2] = run[t2];
          }
        }
        var grid = grids(V, 2), G = grid.length, cs = new Array(G), thr = 1.0 - f.topP;
        var sc = grid.map(function (g) { return Math.pow(2, g); });
        var base = V - kept.length, drop = [];
        for (var g = 0; g < G; g++) cs[g] = 0;
        for (var j = 0; j < kept.length; j++) {
          var v = p[kept[j]];
          for (g = 0; g < G; g++) {  // partsOf, inline: exact cumulative sums per part
            var q = Math.floor(v * sc[g]) / sc[g];
            cs[g] += q;
            v = v - q;
          }
          pos = base + j;
          if (combine(cs) <= thr && pos < V - mtk) drop.push(kept[j]);
        }
        drop.forEach(function (t) { keep[t] = false; });
      }
      if (useMinP) {
        p = keptProbs(e, keep);
        var pmax = 0;
        for (i = 0; i < V; i++) if (keep[i] && p[i] > pmax) pmax = p[i];
        var mthr = pmax * f.minP, prot = {};
        if (mtk > 1) {  // the first mtk of the kept ranking (ties: lower index first)
          var c2 = 0;
          for (i = 0; i < V && c2 < mtk; i++) if (keep[rank[i]]) { prot[rank[i]] = true; c2++; }
        }
        for (i = 0; i < V; i++) if (keep[i] && p[i] < mthr && !prot[i]) keep[i] = false;
      }
    }
    if (T === 0) {  // greedy: the first maximal logit only
      var am = 0;
      for (i = 1; i < V; i++) if (key[i] > key[am]) am = i;
      for (i = 0; i < V; i++) keep[i] = i === am && valid[i];
    }
    var xm = new Float64Array(V);
    for (i = 0; i < V; i++) xm[i] = keep[i] ? x[i] : -Infinity;
    var r = softmax(xm, T);
    return { p: r.p, keep: keep, nan: false, empty: r.empty };
  }

  function filtersOn(f) {
    return f.topK > 0 || (f.topP > 0 && f.topP < 1) || f.minP > 0 || f.topNSigma > 0;
  }

  // ------------------------------------------------------------------------------------------
  // parsing and formatting
  // ------------------------------------------------------------------------------------------
  var NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

  function parseNumber(tok) {
    var t = tok.trim().replace(/\u2212/g, "-").toLowerCase();
    if (t === "inf" || t === "+inf" || t === "infinity" || t === "+infinity" || t === "\u221e" || t === "+\u221e") return Infinity;
    if (t === "-inf" || t === "-infinity" || t === "-\u221e") return -Infinity;
    if (t === "nan") return NaN;
    if (NUM_RE.test(t)) return Number(t);
    return undefined;
  }

  function parseValues(text) {
    var toks = text.split(/[\s,;]+/).filter(function (s) { return s.length > 0; });
    if (toks.length === 0) return { error: "Enter at least one number." };
    var out = [];
    for (var i = 0; i < toks.length; i++) {
      var v = parseNumber(toks[i]);
      if (v === undefined) {
        var shown = toks[i].length > 24 ? toks[i].slice(0, 24) + "\u2026" : toks[i];
        return { error: "Entry " + (i + 1) + " (\u201c" + shown + "\u201d) is not a number." };
      }
      out.push(v);
    }
    if (out.length > MAX_N) return { error: "At most " + MAX_N + " classes (got " + out.length + ")." };
    return { values: out };
  }

  function parseLabels(text) {
    if (!text.trim()) return [];
    return text.split(/[,\n]/).map(function (s) { return s.trim(); });
  }

  function fmtInput(v) {
    if (v === Infinity) return "inf";
    if (v === -Infinity) return "-inf";
    if (v !== v) return "nan";
    return String(v);
  }

  function fmtT(T) {
    if (T === Infinity) return "inf";
    return String(T);
  }

  /** n significant digits, no trailing zeros; exponent form for tiny/huge values. */
  function fmt(v, digits) {
    if (v !== v) return "NaN";
    if (v === Infinity) return "\u221e";
    if (v === -Infinity) return "\u2212\u221e";
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a < 1e-4 || a >= 1e6) {
      var e = v.toExponential(Math.max(0, digits - 1)).replace(/\.?0+e/, "e");
      return e.replace("e+", "e").replace("e-", "e\u2212");
    }
    if (a >= Math.pow(10, digits)) return v.toFixed(0);
    var s = v.toPrecision(digits);
    if (s.indexOf(".") >= 0) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s;
  }

  function fmtBarValue(p, wide) {
    if (p !== p) return "NaN";
    if (p === 0) return "0";
    if (p === 1) return "1";
    if (p >= 0.995) return "\u22481";
    if (p < 0.001) return wide ? "<0.001" : "<.001";
    var s = p.toFixed(p < 0.01 ? 3 : 2);
    return wide ? s : s.replace(/^0\./, ".");
  }

  // ------------------------------------------------------------------------------------------
  // state
  // ------------------------------------------------------------------------------------------
  var CLASSIC = [];  // the classic 10-class example: N(4, 1) density at 0..9
  for (var k = 0; k < 10; k++) CLASSIC.push(Math.exp(-0.5 * (k - 4) * (k - 4)) / Math.sqrt(2 * Math.PI));

  var EXAMPLES = {
    "classic-probabilities": { values: CLASSIC, labels: [], mode: "probabilities", T: 1 },
    "probabilities-as-logits": { values: CLASSIC, labels: [], mode: "logits", T: 1 },
    "three": { values: [-1, 0, 1], labels: [], mode: "logits", T: 0.5 },
    "ties": { values: [2, 2, 1, 0.5, -Infinity], labels: ["tie A", "tie B", "third", "fourth", "masked"], mode: "logits", T: 0.5 }
  };

  function decode(v) {
    if (typeof v === "number") return v;
    var p = parseNumber(String(v));
    return p === undefined ? NaN : p;
  }

  var raw = {};
  try { raw = JSON.parse(document.getElementById("tempscale-data").textContent) || {}; } catch (e) { raw = {}; }

  var state = {
    values: Array.isArray(raw.values) && raw.values.length ? mapList(raw.values, decode) : CLASSIC.slice(),
    labels: Array.isArray(raw.labels) ? mapList(raw.labels, String) : [],
    mode: raw.mode === "logits" || raw.mode === "probabilities" ? raw.mode : "probabilities",
    T: raw.temperature !== undefined ? decode(raw.temperature) : 1,
    error: null,
    zoom: false,
    filters: { topK: 0, topP: 1, minP: 0, topNSigma: 0, order: "temperature-first", mtk: 1 },
    top: null,      // the top-N view's N (null: every class up to FULL_VIEW_MAX, else DEFAULT_TOP)
    search: "",
    version: 0      // bumped when the numbers change (caches of the ranking and the curve)
  };
  (function readFilters(f) {
    if (!f || typeof f !== "object") return;
    var v = decode(f.top_k); if (v >= 0 && Math.floor(v) === v) state.filters.topK = v;
    v = decode(f.top_p); if (v > 0 && v <= 1) state.filters.topP = v;
    v = decode(f.min_p); if (v >= 0 && v <= 1) state.filters.minP = v;
    v = decode(f.top_n_sigma); if (v >= 0) state.filters.topNSigma = v;
    v = decode(f.min_tokens_to_keep); if (v >= 1 && Math.floor(v) === v) state.filters.mtk = v;
    if (f.order === "temperature-first" || f.order === "temperature-last") state.filters.order = f.order;
  })(raw.filters);
  if (typeof raw.top === "number" && raw.top >= 1) state.top = Math.floor(raw.top);
  var FILTER_DEFAULTS = { topK: 0, topP: 1, minP: 0, topNSigma: 0, order: "temperature-first", mtk: 1 };
  var INITIAL_FILTERS = {};
  Object.keys(state.filters).forEach(function (k) { INITIAL_FILTERS[k] = state.filters[k]; });
  if (!(state.T >= 0)) state.T = 1;

  var FILTER_KEYS = { top_k: "topK", top_p: "topP", min_p: "minP", top_n_sigma: "topNSigma",
    min_tokens_to_keep: "mtk", order: "order" };
  /** null when v is a valid value of filter name, else the message */
  function filterError(name, v) {
    if (name === "order") return v === "temperature-first" || v === "temperature-last" ? null : "order: temperature-first or temperature-last";
    if (v !== v || v === undefined) return "not a number";
    if (name === "topK") return v >= 0 && Math.floor(v) === v && v !== Infinity ? null : "top-k must be an integer \u2265 0 (0 = off)";
    if (name === "topP") return v > 0 && v <= 1 ? null : "top-p must be in (0, 1] (1 = off)";
    if (name === "minP") return v >= 0 && v <= 1 ? null : "min-p must be in [0, 1] (0 = off)";
    if (name === "topNSigma") return v >= 0 ? null : "top-n\u03c3 must be in [0, inf] (0 = off)";
    if (name === "mtk") return v >= 1 && Math.floor(v) === v && v !== Infinity ? null : "min tokens to keep must be an integer \u2265 1";
    return "unknown filter";
  }

  // URL fragment (shareable state): #x=1,2,3&labels=a,b,c&T=0.5&mode=logits&title=...
  var titleOverride = null;
  (function readHash() {
    var h = window.location.hash.replace(/^#/, "");
    if (!h) return;
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("="), key, val;
      if (i < 0) return;
      key = kv.slice(0, i);
      try { val = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " ")); } catch (e) { return; }
      if (key === "x") {
        var r = parseValues(val);
        if (r.values) state.values = r.values;
      } else if (key === "labels") {
        // a JSON array of strings (what the page writes: labels may hold commas) or "a,b,c"
        var arr = null;
        if (val.charAt(0) === "[") { try { arr = JSON.parse(val); } catch (e) { arr = null; } }
        state.labels = Array.isArray(arr) ? arr.map(function (v) { return String(v); }) : parseLabels(val);
      } else if (key === "T") {
        var t = parseNumber(val);
        if (t !== undefined && t >= 0) state.T = t;
      } else if (key === "mode" && (val === "logits" || val === "probabilities")) {
        state.mode = val;
      } else if (key === "title") {
        titleOverride = val;
      } else if (key === "top") {
        var tn = parseNumber(val);
        if (tn >= 1 && Math.floor(tn) === tn) state.top = tn;
      } else if (FILTER_KEYS.hasOwnProperty(key)) {
        var fv = key === "order" ? val : parseNumber(val);
        if (fv !== undefined && filterError(FILTER_KEYS[key], fv) === null) state.filters[FILTER_KEYS[key]] = fv;
      }
    });
  })();

  // ------------------------------------------------------------------------------------------
  // DOM helpers
  // ------------------------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(SVG_NS, name);
    if (attrs) for (var a in attrs) if (Object.prototype.hasOwnProperty.call(attrs, a)) el.setAttribute(a, String(attrs[a]));
    if (parent) parent.appendChild(el);
    return el;
  }
  function svgText(parent, str, attrs) {
    var t = svgEl("text", attrs, parent);
    t.textContent = str;
    return t;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function setText(id, s) { $(id).textContent = s; }
  function sizeOf(svg, fallbackW, fallbackH) {
    var r = svg.getBoundingClientRect();
    return { w: Math.max(240, Math.round(r.width || fallbackW)), h: Math.max(160, Math.round(r.height || fallbackH)) };
  }
  function truncate(s, n) { return s.length > n ? s.slice(0, Math.max(1, n - 1)) + "\u2026" : s; }
  /** keeps both ends ("class n\u202639"): labels often share a prefix and differ at the end */
  function truncateMiddle(s, n) {
    if (s.length <= n) return s;
    var tail = Math.floor((n - 1) / 2), head = n - 1 - tail;
    return s.slice(0, head) + "\u2026" + (tail > 0 ? s.slice(s.length - tail) : "");
  }

  var slider = $("t-slider"), tInput = $("t-input"), valuesBox = $("values"), labelsBox = $("labels");
  var root = $("explorer");

  if (titleOverride !== null) {
    document.title = titleOverride;
    setText("page-title", titleOverride);
  }

  // ------------------------------------------------------------------------------------------
  // computation for the current state
  // ------------------------------------------------------------------------------------------
  function logits() {
    return state.mode === "probabilities" ? logOfProbabilities(state.values) : state.values;
  }
  function labelOf(i) {
    var l = state.labels[i];
    return (l !== undefined && l !== "") ? l : String(i);
  }
  function validate() {
    if (state.mode === "probabilities") {
      for (var i = 0; i < state.values.length; i++) {
        if (state.values[i] < 0) {
          return "Probabilities must be \u2265 0: entry " + (i + 1) + " is " + fmtInput(state.values[i]) +
            ". Switch to \u201clogits\u201d if these are scores.";
        }
      }
    }
    return null;
  }

  // ------------------------------------------------------------------------------------------
  // rendering
  // ------------------------------------------------------------------------------------------
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1];
    for (var i = 0; i < steps.length; i++) if (v <= steps[i] * 1.0001) return steps[i];
    return 1;
  }

  /**
   * view: the class indices drawn, in drawing order; w: warp's result (each bar's data-warped and
   * data-kept); active: a filter is on, so kept bars show the renormalised probability and
   * removed ones, greyed, their probability before truncation.
   */
  function renderBars(x, r, ref, st, view, w, active) {
    var svg = $("bars");
    clear(svg);
    var sz = sizeOf(svg, 760, 330), W = sz.w, H = sz.h;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var n = view.length;
    var labels = [], maxLab = 0, i, k;
    for (k = 0; k < n; k++) { labels.push(labelOf(view[k])); maxLab = Math.max(maxLab, labels[k].length); }
    var left = 50, right = 8, top = 22;
    var slot0 = (W - left - right) / n;
    var rotate = n > 1 && slot0 < Math.min(110, 7.5 * Math.min(maxLab, 14) + 10);
    // crowded: vertical labels; otherwise slanted, short enough not to run off the left edge
    var vertical = rotate && slot0 < 18;
    var maxChars = rotate && !vertical ? Math.max(3, Math.min(14, Math.floor((left + slot0 / 2) / 5.2))) : 14;
    var bottom = rotate ? Math.min(96, 18 + (vertical ? 7 : 5.2) * Math.min(maxLab, maxChars)) : 30;
    var pw = W - left - right, ph = H - top - bottom;
    var slot = pw / n;
    var ymax = 1;
    if ((state.zoom || n < state.values.length) && !r.nan) {  // the top-N view always zooms
      var mx = 0;
      for (k = 0; k < n; k++) { i = view[k]; mx = Math.max(mx, r.p[i] || 0, ref.p[i] || 0, active ? w.p[i] || 0 : 0); }
      ymax = niceMax(mx);
    }
    var ys = function (v) { return top + ph * (1 - Math.min(v, ymax) / ymax); };
    // grid and y ticks
    var ticks = [0, 0.25, 0.5, 0.75, 1].map(function (f) { return f * ymax; });
    ticks.forEach(function (t) {
      svgEl("line", { x1: left, x2: W - right, y1: ys(t), y2: ys(t), "class": t === 0 ? "axis" : "gridline" }, svg);
      svgText(svg, fmt(t, 3), { x: left - 6, y: ys(t) + 4, "text-anchor": "end", "class": "tick" });
    });
    var yl = svgText(svg, "probability", { x: 9, y: top + ph / 2, "text-anchor": "middle", "class": "axis-title",
      transform: "rotate(-90 9 " + (top + ph / 2) + ")" });
    yl.setAttribute("aria-hidden", "true");

    if (state.error) {
      svgText(svg, "Fix the input to see the distribution.", { x: left + pw / 2, y: top + ph / 2, "text-anchor": "middle", "class": "empty-msg" });
      return;
    }
    var bw = Math.min(150, Math.max(1, slot * (n > 60 ? 0.9 : 0.72)));
    var showVals = slot >= 30;
    var labelEvery = Math.max(1, Math.ceil((rotate ? 15 : 8 * Math.min(maxLab, 14) + 8) / slot));
    var group = svgEl("g", { "class": "bars" }, svg), refPath = "";
    var topSet = {};
    st.argmax.forEach(function (j) { topSet[j] = true; });
    var found = searchHit();
    for (k = 0; k < n; k++) {
      i = view[k];
      var x0 = left + slot * k + (slot - bw) / 2, p = r.p[i];
      var masked = x[i] === -Infinity;
      var kept = w.keep[i];
      var shown = active && kept ? w.p[i] : p;
      var hp = shown === shown ? shown : 0;
      var rect = svgEl("rect", {
        x: x0, y: ys(hp), width: bw, height: Math.max(0, ys(0) - ys(hp)), rx: Math.min(3, bw / 4),
        "class": "bar" + (topSet[i] && !r.empty && (kept || !active) ? " top" : "") + (active && !kept ? " removed" : "") +
          (i === found ? " found" : ""),
        "data-index": i, "data-p": String(p), "data-masked": masked ? "true" : "false",
        "data-kept": kept ? "true" : "false", "data-warped": String(w.p[i])
      }, group);
      rect.setAttribute("data-label", labels[k]);
      if (n <= 200) {  // tooltips; many bars are read from the table instead
        var tip = svgEl("title", null, rect);
        tip.textContent = labels[k] + ": p = " + fmt(p, 6) + (masked ? " (masked, \u2212inf)" : "") +
          (active ? (kept ? "; kept, renormalised p = " + fmt(w.p[i], 6) : "; removed by the filters") : "");
      }
      if (ref.p[i] === ref.p[i] && ref.p[i] > 0) {  // the T = 1 outline, one path for all bars
        var ry = ys(ref.p[i]), rb = ys(0);
        refPath += "M" + x0.toFixed(2) + "," + rb.toFixed(2) + "V" + ry.toFixed(2) + "H" + (x0 + bw).toFixed(2) + "V" + rb.toFixed(2);
      }
      if (masked) {
        svgText(svg, "\u00d7", { x: x0 + bw / 2, y: ys(0) - 5, "text-anchor": "middle", "class": "masked" });
      } else if (showVals) {
        // above the bar and above its dashed T = 1 outline
        var refTop = ref.p[i] === ref.p[i] ? ys(ref.p[i]) : ys(0);
        svgText(svg, fmtBarValue(shown, slot >= 46), { x: x0 + bw / 2, y: Math.max(12, Math.min(ys(hp), refTop) - 5), "text-anchor": "middle", "class": "val" });
      }
      if (k % labelEvery === 0) {
        var cx = x0 + bw / 2, ly = ys(0) + 15;
        var lab = svgText(svg, truncateMiddle(labels[k], maxChars), vertical
          ? { x: cx + 4, y: ly - 8, "text-anchor": "end", "class": "xlabel", transform: "rotate(-90 " + (cx + 4) + " " + (ly - 8) + ")" }
          : rotate
          ? { x: cx, y: ly - 4, "text-anchor": "end", "class": "xlabel", transform: "rotate(-40 " + cx + " " + (ly - 4) + ")" }
          : { x: cx, y: ly + 2, "text-anchor": "middle", "class": "xlabel" });
        lab.setAttribute("data-label-index", String(i));
      }
    }
    if (refPath) svgEl("path", { d: refPath, "class": "ref" }, svg);
    if (r.empty) {
      svgText(svg, "Every class is masked (\u2212inf): all probabilities are 0.", { x: left + pw / 2, y: top + ph / 2, "text-anchor": "middle", "class": "empty-msg" });
    } else if (r.nan) {
      svgText(svg, "A NaN input makes every probability NaN.", { x: left + pw / 2, y: top + ph / 2, "text-anchor": "middle", "class": "empty-msg" });
    }
  }

  var CURVE_N = 161, curveCache = { key: null, pts: null };
  function curveData(x) {
    // the curve depends on the numbers only: recompute it when they change, not as T moves
    var key = state.version + "|" + state.mode;
    if (curveCache.key === key) return curveCache.pts;
    var pts = [];
    var npts = x.length > 20000 ? 41 : CURVE_N;  // large inputs: fewer points, the same curve
    for (var i = 0; i < npts; i++) {
      var lt = LOG10_MIN + (LOG10_MAX - LOG10_MIN) * i / (npts - 1);
      pts.push([lt, stats(softmax(x, Math.pow(10, lt))).entropy]);
    }
    curveCache = { key: key, pts: pts };
    return pts;
  }

  var curveGeom = null;
  function renderCurve(x, st) {
    var svg = $("curve");
    clear(svg);
    var sz = sizeOf(svg, 420, 230), W = sz.w, H = sz.h;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var left = 58, right = 14, top = 14, bottom = 34;
    var pw = W - left - right, ph = H - top - bottom;
    var nValid = 0;
    x.forEach(function (v) { if (v > -Infinity) nValid++; });
    var hmax = nValid > 1 ? Math.log(nValid) : 1;
    var xs = function (lt) { return left + pw * (lt - LOG10_MIN) / (LOG10_MAX - LOG10_MIN); };
    var ys = function (h) { return top + ph * (1 - h / (hmax * 1.08)); };
    curveGeom = { left: left, pw: pw, W: W };
    for (var d = LOG10_MIN; d <= LOG10_MAX; d++) {
      svgEl("line", { x1: xs(d), x2: xs(d), y1: top, y2: top + ph, "class": "gridline" }, svg);
      svgText(svg, fmt(Math.pow(10, d), 2), { x: xs(d), y: top + ph + 16, "text-anchor": "middle", "class": "tick" });
    }
    svgText(svg, "T (log scale)", { x: left + pw / 2, y: H - 2, "text-anchor": "middle", "class": "curve-note" });
    [0, 0.5, 1].forEach(function (f) {
      var h = f * hmax;
      svgEl("line", { x1: left, x2: left + pw, y1: ys(h), y2: ys(h), "class": f === 0 ? "axis" : "gridline" }, svg);
      svgText(svg, fmt(h, 3), { x: left - 6, y: ys(h) + 4, "text-anchor": "end", "class": "tick" });
    });
    var hl = svgText(svg, "H (nats)", { x: 9, y: top + ph / 2, "text-anchor": "middle", "class": "axis-title",
      transform: "rotate(-90 9 " + (top + ph / 2) + ")" });
    hl.setAttribute("aria-hidden", "true");
    if (state.error || st.entropy !== st.entropy) {
      svgText(svg, state.error ? "Fix the input to see the curve." : "No entropy to draw for this input.",
        { x: left + pw / 2, y: top + ph / 2, "text-anchor": "middle", "class": "empty-msg" });
      return;
    }
    if (nValid > 1) {
      svgEl("line", { x1: left, x2: left + pw, y1: ys(hmax), y2: ys(hmax), "class": "curve-uniform" }, svg);
      svgText(svg, "uniform: ln " + nValid + " = " + fmt(hmax, 3), { x: left + pw - 4, y: ys(hmax) - 5, "text-anchor": "end", "class": "curve-note" });
    }
    var pts = curveData(x), dstr = "";
    pts.forEach(function (pt, i) {
      if (pt[1] !== pt[1]) return;
      dstr += (dstr ? "L" : "M") + xs(pt[0]).toFixed(2) + "," + ys(pt[1]).toFixed(2);
    });
    svgEl("path", { d: dstr, "class": "curve-line" }, svg);
    // the current T (pinned to an edge outside 0.01 .. 100)
    var T = state.T, lt = T > 0 ? Math.log(T) / Math.LN10 : -Infinity;
    var cl = Math.min(LOG10_MAX, Math.max(LOG10_MIN, lt));
    var cx = xs(cl), cy = ys(st.entropy);
    svgEl("line", { x1: cx, x2: cx, y1: top, y2: top + ph, "class": "curve-now" }, svg);
    svgEl("circle", { cx: cx, cy: cy, r: 5.5, "class": "curve-dot", id: "curve-marker",
      "data-t": String(T), "data-entropy": String(st.entropy) }, svg);
    var label = "T = " + fmt(T, 3) + (lt < LOG10_MIN ? " \u2190" : lt > LOG10_MAX ? " \u2192" : "");
    var right_side = cx < left + pw * 0.7;
    svgText(svg, label, { x: cx + (right_side ? 8 : -8), y: Math.min(top + ph - 6, Math.max(top + 10, cy - 9)),
      "text-anchor": right_side ? "start" : "end", "class": "curve-note" });
  }

  function renderTable(r, ref, view, w) {
    var body = $("table-body");
    clear(body);
    if (!$("numbers").open) return;  // filled when opened
    setText("col-input", state.mode === "probabilities" ? "probability given" : "logit");
    for (var k = 0; k < view.length; k++) {
      var i = view[k], tr = document.createElement("tr");
      var cells = [labelOf(i), fmtInput(state.values[i]), fmt(ref.p[i], 6), fmt(r.p[i], 6),
        w.keep[i] ? fmt(w.p[i], 6) : "removed"];
      cells.forEach(function (c, j) {
        var td = document.createElement(j === 0 ? "th" : "td");
        if (j === 0) td.setAttribute("scope", "row");
        td.textContent = c;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    if (view.length < state.values.length) {
      var more = document.createElement("tr"), td = document.createElement("td");
      td.setAttribute("colspan", "5");
      td.textContent = "\u2026 " + (state.values.length - view.length) + " more classes (the table lists the bars shown)";
      more.appendChild(td);
      body.appendChild(more);
    }
  }

  // ------------------------------------------------------------------------------------------
  // large inputs: the ranking, the top-N view, the search box
  // ------------------------------------------------------------------------------------------
  var inputCache = { key: null, x: null, rank: null };
  /** the logits of the current input and their ranking (recomputed when the numbers change) */
  function current() {
    var key = state.version + "|" + state.mode;
    if (inputCache.key !== key) {
      var x = logits(), kx = mapList(x, function (v) { return v > -Infinity ? v : -Infinity; });
      inputCache = { key: key, x: x, rank: rankOf(kx) };
    }
    return inputCache;
  }

  function viewSize() {
    var n = state.values.length;
    if (state.top !== null) return Math.min(n, state.top);
    return n <= FULL_VIEW_MAX ? n : Math.min(n, DEFAULT_TOP);
  }

  /** the indices drawn: every class in index order, or the N largest logits, largest first */
  function viewOf(rank) {
    var n = state.values.length, N = viewSize(), out = [], i;
    if (N === n && state.top === null) { for (i = 0; i < n; i++) out.push(i); return out; }
    return rank.slice(0, N);
  }

  function searchHit() {
    var q = state.search.trim(), n = state.values.length;
    if (!q) return -1;
    if (/^\d+$/.test(q)) { var i = Number(q); if (i < n) return i; }
    for (var j = 0; j < n; j++) if (state.labels[j] === q) return j;
    return -2;  // not found
  }

  function renderSearch(r, w, rank) {
    var out = $("search-result"), i = searchHit();
    ["data-index", "data-rank", "data-p", "data-warped", "data-kept"].forEach(function (a) { out.removeAttribute(a); });
    if (i === -1) { out.textContent = ""; return; }
    if (i === -2) { out.textContent = "No class has index or label \u201c" + truncate(state.search.trim(), 40) + "\u201d."; return; }
    var pos = rank.indexOf(i) + 1;
    out.setAttribute("data-index", String(i));
    out.setAttribute("data-rank", String(pos));
    out.setAttribute("data-p", String(r.p[i]));
    out.setAttribute("data-warped", String(w.p[i]));
    out.setAttribute("data-kept", w.keep[i] ? "true" : "false");
    var lab = labelOf(i);
    out.textContent = "Class " + i + (lab !== String(i) ? " (\u201c" + truncate(lab, 40) + "\u201d)" : "") +
      ": rank " + pos + " of " + state.values.length + ", p = " + fmt(r.p[i], 6) + " at T = " + fmtT(state.T) +
      (w.keep[i] ? "; kept, p = " + fmt(w.p[i], 6) + " after the filters" : "; removed by the filters") + ".";
  }

  function renderKept(r, w, view, active) {
    var n = state.values.length, nk = 0, mass = 0, shownMass = 0, shownW = 0, i;
    for (i = 0; i < n; i++) if (w.keep[i]) { nk++; mass += r.p[i]; }
    view.forEach(function (j) { shownMass += r.p[j] || 0; shownW += w.p[j] || 0; });
    var ks = $("kept-summary");
    ks.setAttribute("data-kept", String(nk));
    ks.setAttribute("data-mass", String(mass));
    ks.textContent = state.error || w.nan || !(active || state.T === 0) ? "" : active || state.T === 0
      ? nk + " of " + n + " classes kept, holding " + fmt(mass, 4) + " of the probability at T = " + fmtT(state.T) +
        "; the bars show the kept classes renormalised" + (active ? "" : " (T = 0 is greedy: one class)") + "."
      : "";
    ks.hidden = ks.textContent === "";
    var vn = $("view-note");
    if (view.length < n) {
      vn.textContent = "Showing the " + view.length + " most probable of " + n + " classes; the other " +
        (n - view.length) + " hold p = " + fmt(Math.max(0, 1 - shownMass), 4) +
        (active ? " (" + fmt(Math.max(0, 1 - shownW), 4) + " after the filters)" : "") + ".";
    } else vn.textContent = "";
    vn.hidden = vn.textContent === "";
    vn.setAttribute("data-shown", String(view.length));
  }

  function setStat(id, v, text, unit) {
    var el = $(id);
    el.textContent = text;
    if (unit) {
      var u = document.createElement("span");
      u.className = "unit";
      u.textContent = unit;
      el.appendChild(u);
    }
    el.setAttribute("data-value", String(v));
  }

  function renderStats(r, st) {
    if (state.error) {
      ["stat-entropy", "stat-perplexity", "stat-top", "stat-effective"].forEach(function (id) { setStat(id, NaN, "\u2013"); });
      setText("stat-entropy-bits", "\u2013"); setText("stat-perplexity-sub", "\u2013"); setText("stat-top-label", "\u2013");
      return;
    }
    var none = r.empty ? "\u2013" : null;
    setStat("stat-entropy", st.entropy, none || fmt(st.entropy, 4), none ? "" : "nats");
    var bits = st.entropy / LN2;
    var be = $("stat-entropy-bits");
    be.textContent = none || "= " + fmt(bits, 4) + " bits";
    be.setAttribute("data-value", String(bits));
    setStat("stat-perplexity", st.perplexity, none || fmt(st.perplexity, 4));
    setText("stat-perplexity-sub", none || "of " + r.p.length + " classes");
    setStat("stat-top", st.top, none || fmt(st.top, 4));
    var tl = $("stat-top-label");
    if (none || st.argmax.length === 0) tl.textContent = r.empty ? "every class masked" : "\u2013";
    else if (st.argmax.length === 1) {
      var lab = labelOf(st.argmax[0]);
      tl.textContent = /^\d+$/.test(lab) ? "class " + lab : truncate(lab, 40);
    }
    else tl.textContent = st.argmax.length + " tied: " + truncate(st.argmax.map(labelOf).join(", "), 40);
    setStat("stat-effective", st.effective, none || fmt(st.effective, 4));
  }

  function renderModeText() {
    var probs = state.mode === "probabilities";
    $("mode-logits").checked = !probs;
    $("mode-probabilities").checked = probs;
    setText("values-label", probs ? "Probabilities" : "Logits");
    setText("mode-help", probs
      ? "Shown: temper(p, T) = p\u1d62^(1/T) / \u03a3 p\u2096^(1/T), computed as softmax(log p / T). T = 1 gives p back (normalised)."
      : "Shown: softmax(x / T). Only differences between logits matter; adding a constant changes nothing.");
    setText("values-help", probs
      ? "Comma or space separated non-negative weights (normalised for you). A 0 stays 0 at every T."
      : "Comma or space separated; -inf masks a class (probability 0 at every T), inf takes all the mass.");
    // the common mistake: probabilities read as logits
    var show = false, spread = 0;
    if (!probs && !state.error && state.values.length > 1) {
      var sum = 0, lo = Infinity, hi = -Infinity, ok = true;
      state.values.forEach(function (v) {
        if (!(v >= 0 && v <= 1)) ok = false;
        sum += v; lo = Math.min(lo, v); hi = Math.max(hi, v);
      });
      show = ok && Math.abs(sum - 1) < 0.02;
      spread = hi - lo;
    }
    $("mistake-callout").hidden = !show;
    if (show) {
      setText("mistake-text", "These numbers look like probabilities (all in [0, 1], summing to about 1). " +
        "Read as logits they differ by at most " + fmt(spread, 3) + ", and e^" + fmt(spread, 3) + " \u2248 " +
        fmt(Math.exp(spread), 3) + ", so at T = 1 softmax is nearly uniform: probabilities read as logits.");
    }
  }

  function syncTControls(fromSlider) {
    var T = state.T;
    if (!fromSlider) {
      var lt = T > 0 ? Math.log(T) / Math.LN10 : -Infinity;
      slider.value = String(Math.min(LOG10_MAX, Math.max(LOG10_MIN, lt)));
    }
    slider.setAttribute("aria-valuetext", "T = " + fmtT(T));
    setText("t-out", T === Infinity ? "\u221e" : fmt(T, 4));
    Array.prototype.forEach.call(document.querySelectorAll(".presets button"), function (b) {
      b.setAttribute("aria-pressed", parseNumber(b.getAttribute("data-t")) === T ? "true" : "false");
    });
  }

  var hashTimer = null;
  function writeHash() {
    if (hashTimer) clearTimeout(hashTimer);
    hashTimer = setTimeout(function () {
      var big = state.values.length > HASH_MAX, f = state.filters;
      var parts = big ? [] : ["x=" + encodeURIComponent(state.values.map(fmtInput).join(","))];
      parts.push("T=" + encodeURIComponent(fmtT(state.T)), "mode=" + state.mode);
      // a filter is written when it is on, or when the page opened with it on (so that a
      // reload keeps it off)
      Object.keys(FILTER_KEYS).forEach(function (key) {
        var name = FILTER_KEYS[key], v = f[name];
        if (v !== FILTER_DEFAULTS[name] || INITIAL_FILTERS[name] !== FILTER_DEFAULTS[name]) {
          parts.push(key + "=" + (name === "order" ? v : fmtInput(v)));
        }
      });
      if (state.top !== null) parts.push("top=" + state.top);
      if (state.labels.length && !big) parts.push("labels=" + encodeURIComponent(JSON.stringify(state.labels)));
      if (titleOverride !== null) parts.push("title=" + encodeURIComponent(titleOverride));
      try { history.replaceState(null, "", "#" + parts.join("&")); } catch (e) { /* a file URL may refuse */ }
    }, 250);
  }

  function update(opts) {
    opts = opts || {};
    state.error = validate();
    var ve = $("values-error");
    if (state.error && !opts.keepValueError) {
      ve.textContent = state.error; ve.hidden = false; valuesBox.setAttribute("aria-invalid", "true");
    } else if (!opts.keepValueError) {
      ve.hidden = true; ve.textContent = ""; valuesBox.setAttribute("aria-invalid", "false");
    }
    var cur = current(), x = cur.x;
    var r = softmax(x, state.T), ref = softmax(x, 1), st = stats(r);
    var w = warp(x, state.T, state.filters, cur.rank), active = filtersOn(state.filters);
    if (state.error) { r.p = mapList(r.p, function () { return NaN; }); w.p = mapList(w.p, function () { return NaN; }); }
    var view = viewOf(cur.rank);
    root.setAttribute("data-temperature", String(state.T));
    root.setAttribute("data-mode", state.mode);
    root.setAttribute("data-n", String(state.values.length));
    root.setAttribute("data-error", state.error ? "true" : "false");
    renderModeText();
    syncTControls(!!opts.fromSlider);
    root.setAttribute("data-filters", active ? "true" : "false");
    renderFilters();
    renderBars(x, r, ref, st, view, w, active);
    renderStats(r, st);
    renderCurve(x, st);
    renderTable(r, ref, view, w);
    renderKept(r, w, view, active);
    renderSearch(r, w, cur.rank);
    var desc = state.error ? state.error : (r.empty ? "Every class is masked." : r.nan ? "The input holds NaN." :
      "Largest probability " + fmt(st.top, 3) + "; entropy " + fmt(st.entropy, 3) + " nats over " + r.p.length + " classes.");
    setText("chart-desc", desc);
    writeHash();
  }

  // ------------------------------------------------------------------------------------------
  // events
  // ------------------------------------------------------------------------------------------
  function setT(T, source) {
    state.T = T;
    if (source !== "box") { tInput.value = fmtT(T); tInput.setAttribute("aria-invalid", "false"); $("t-error").hidden = true; }
    update({ fromSlider: source === "slider" });
  }

  slider.addEventListener("input", function () {
    var v = Number(slider.value);
    // three significant digits, so the number shown is the number used
    setT(Number(Math.pow(10, v).toPrecision(3)), "slider");
  });
  slider.addEventListener("keydown", function (ev) {
    if (ev.key === "PageUp" || ev.key === "PageDown") {
      ev.preventDefault();
      var v = Number(slider.value) + (ev.key === "PageUp" ? 0.1 : -0.1);
      v = Math.min(LOG10_MAX, Math.max(LOG10_MIN, Math.round(v * 100) / 100));
      slider.value = String(v);
      setT(Number(Math.pow(10, v).toPrecision(3)), "slider");
    }
  });

  function onBox() {
    var t = parseNumber(tInput.value), err = $("t-error");
    if (t === undefined || t !== t || t < 0) {
      err.textContent = tInput.value.trim() === "" ? "Enter a temperature." :
        "T must be a number \u2265 0 (or inf); got \u201c" + truncate(tInput.value.trim(), 24) + "\u201d.";
      err.hidden = false;
      tInput.setAttribute("aria-invalid", "true");
      return;
    }
    err.hidden = true;
    tInput.setAttribute("aria-invalid", "false");
    setT(t, "box");
  }
  tInput.addEventListener("input", onBox);
  tInput.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { ev.preventDefault(); onBox(); }
  });

  Array.prototype.forEach.call(document.querySelectorAll(".presets button"), function (b) {
    b.addEventListener("click", function () { setT(parseNumber(b.getAttribute("data-t")), "preset"); });
  });

  function onValues() {
    var r = parseValues(valuesBox.value), ve = $("values-error");
    if (r.error) {
      ve.textContent = r.error; ve.hidden = false;
      valuesBox.setAttribute("aria-invalid", "true");
      return;
    }
    state.values = r.values;
    state.version++;
    update();
  }
  valuesBox.addEventListener("input", onValues);

  labelsBox.addEventListener("input", function () {
    state.labels = parseLabels(labelsBox.value);
    update();
  });

  ["mode-logits", "mode-probabilities"].forEach(function (id) {
    $(id).addEventListener("change", function () {
      if ($(id).checked) { state.mode = $(id).value; update(); }
    });
  });
  $("mistake-fix").addEventListener("click", function () {
    state.mode = "probabilities";
    update();
    $("mode-probabilities").focus();
  });
  $("zoom").addEventListener("change", function () { state.zoom = $("zoom").checked; update(); });
  $("numbers").addEventListener("toggle", function () { update({ keepValueError: true }); });

  Array.prototype.forEach.call(document.querySelectorAll("[data-example]"), function (b) {
    b.addEventListener("click", function () {
      var ex = EXAMPLES[b.getAttribute("data-example")];
      state.values = ex.values.slice();
      state.version++;
      state.labels = ex.labels.slice();
      state.mode = ex.mode;
      fillBoxes();
      setT(ex.T, "example");
    });
  });

  // the entropy curve doubles as a control
  var dragging = false;
  function curvePointer(ev) {
    if (!curveGeom) return;
    var svg = $("curve"), rect = svg.getBoundingClientRect();
    var px = (ev.clientX - rect.left) * (curveGeom.W / rect.width);
    var f = (px - curveGeom.left) / curveGeom.pw;
    var v = Math.round((LOG10_MIN + f * (LOG10_MAX - LOG10_MIN)) * 100) / 100;
    v = Math.min(LOG10_MAX, Math.max(LOG10_MIN, v));
    slider.value = String(v);
    setT(Number(Math.pow(10, v).toPrecision(3)), "curve");
  }
  $("curve").addEventListener("pointerdown", function (ev) {
    dragging = true;
    try { $("curve").setPointerCapture(ev.pointerId); } catch (e) { /* ignore */ }
    curvePointer(ev);
  });
  $("curve").addEventListener("pointermove", function (ev) { if (dragging) curvePointer(ev); });
  $("curve").addEventListener("pointerup", function () { dragging = false; });
  $("curve").addEventListener("pointercancel", function () { dragging = false; });

  var FILTER_BOXES = [["top-k", "topK"], ["top-p", "topP"], ["min-p", "minP"], ["top-n-sigma", "topNSigma"], ["min-keep", "mtk"]];
  var FILTER_OFF = { topK: 0, topP: 1, minP: 0, topNSigma: 0, mtk: 1 };
  function renderFilters() {
    $("order-first").checked = state.filters.order === "temperature-first";
    $("order-last").checked = state.filters.order === "temperature-last";
  }
  function fillFilterBoxes() {
    FILTER_BOXES.forEach(function (b) { $(b[0]).value = fmtInput(state.filters[b[1]]); });
    $("top-n").value = state.top === null ? "" : String(state.top);
  }
  function onFilter(box, name) {
    var text = $(box).value.trim(), v = text === "" ? FILTER_OFF[name] : parseNumber(text);
    var msg = v === undefined ? "not a number" : filterError(name, v), err = $("filter-error");
    if (msg !== null) {
      err.textContent = (v === undefined ? box + ": \u201c" + truncate(text, 24) + "\u201d is not a number" : msg) + ".";
      err.hidden = false;
      $(box).setAttribute("aria-invalid", "true");
      return;
    }
    $(box).setAttribute("aria-invalid", "false");
    err.hidden = true;
    state.filters[name] = v;
    update({ keepValueError: true });
  }
  FILTER_BOXES.forEach(function (b) {
    $(b[0]).addEventListener("input", function () { onFilter(b[0], b[1]); });
  });
  ["order-first", "order-last"].forEach(function (id) {
    $(id).addEventListener("change", function () {
      if ($(id).checked) { state.filters.order = $(id).value; update({ keepValueError: true }); }
    });
  });
  $("top-n").addEventListener("input", function () {
    var t = $("top-n").value.trim(), v = t === "" ? null : parseNumber(t);
    if (v === null || (v >= 1 && Math.floor(v) === v && v !== Infinity)) {
      $("top-n").setAttribute("aria-invalid", "false");
      state.top = v;
      update({ keepValueError: true });
    } else $("top-n").setAttribute("aria-invalid", "true");
  });
  $("search").addEventListener("input", function () {
    state.search = $("search").value;
    update({ keepValueError: true });
  });

  function fillBoxes() {
    // a very long input is not copied into the box (typing there replaces it)
    valuesBox.value = state.values.length > HASH_MAX ? "" : state.values.map(fmtInput).join(", ");
    valuesBox.setAttribute("placeholder", state.values.length > HASH_MAX
      ? state.values.length + " numbers loaded (too many to edit here); typing replaces them" : "");
    labelsBox.value = state.labels.length > HASH_MAX ? "" : state.labels.join(", ");
    $("values-error").hidden = true;
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    if (resizeTimer) clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { update({ keepValueError: true }); }, 60);
  });

  fillBoxes();
  fillFilterBoxes();
  tInput.value = fmtT(state.T);
  update();
  root.setAttribute("data-ready", "true");

  // exposed for tests and the curious (read-only helpers, no state)
  window.tempscaleExplorer = {
    softmax: softmax,
    temper: function (p, T) { return softmax(logOfProbabilities(p), T); },
    warp: function (x, T, f) {
      var o = f || {};
      var r = warp(x, T, { topK: o.top_k || 0, topP: o.top_p === undefined ? 1 : o.top_p, minP: o.min_p || 0,
        topNSigma: o.top_n_sigma || 0, order: o.order || "temperature-first", mtk: o.min_tokens_to_keep || 1 });
      return { p: Array.prototype.slice.call(r.p), keep: mapList(r.keep, Boolean) };
    }
  };
})();
