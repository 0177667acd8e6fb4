// Contrast of what axe-core does not measure: focus rings and the borders of fields, against the
// colour they are drawn on, from the browser's computed styles (WCAG 2.1 1.4.11 wants 3:1).
// Evaluated by tests/web/pages.py inside a function, which returns focusRing() or fieldBorders().

// "rgb(1, 2, 3)", "rgba(1, 2, 3, 0.5)", "color(srgb 0.1 0.2 0.3 / 0.5)" → [r, g, b, a], 0–255 and 0–1.
function parseColor(text) {
  var m = text.match(/^rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)$/);
  if (m) return [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]];
  m = text.match(/^color\(srgb ([\d.e-]+) ([\d.e-]+) ([\d.e-]+)(?: \/ ([\d.]+))?\)$/);
  if (m) return [m[1] * 255, m[2] * 255, m[3] * 255, m[4] === undefined ? 1 : +m[4]];
  throw new Error("cannot read the colour " + text);
}

function over(top, bottom) { // alpha compositing of `top` over an opaque `bottom`
  var a = top[3];
  return [0, 1, 2].map(function (i) { return top[i] * a + bottom[i] * (1 - a); }).concat([1]);
}

// The opaque colour behind `el`: its own background and its ancestors', composited.
function backdrop(el) {
  var layers = [];
  for (var node = el; node && node.nodeType === 1; node = node.parentElement) {
    var c = parseColor(getComputedStyle(node).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] === 1) break;
  }
  var color = [255, 255, 255, 1]; // the canvas, should nothing be opaque
  if (layers.length && layers[layers.length - 1][3] === 1) color = layers.pop();
  while (layers.length) color = over(layers.pop(), color);
  return color;
}

function luminance(c) {
  var lin = c.slice(0, 3).map(function (v) {
    v = v / 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

function ratio(a, b) {
  var la = luminance(a), lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

function describe(el) {
  var name = el.getAttribute("aria-label") || el.textContent.trim().slice(0, 40) || el.id || el.name || "";
  return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " \u201c" + name + "\u201d";
}

// The outline sits outside the element (outline-offset ≥ 0), on its parent's colour.
function focusRing() {
  var el = document.activeElement;
  var style = getComputedStyle(el);
  var width = parseFloat(style.outlineWidth) || 0;
  var visible = style.outlineStyle !== "none" && width > 0;
  var against = parseFloat(style.outlineOffset) >= 0 ? backdrop(el.parentElement || el) : backdrop(el);
  var color = parseColor(style.outlineColor);
  return { element: describe(el), ratio: visible ? ratio(over(color, against), against) : 0, width: width, visible: visible };
}

function fieldBorders() {
  var fields = document.querySelectorAll('input:not([type="hidden"]):not([type="checkbox"]):not([type="radio"]), select, textarea');
  return Array.prototype.filter.call(fields, function (el) { return el.getClientRects().length > 0; })
    .map(function (el) {
      var border = parseColor(getComputedStyle(el).borderTopColor);
      var outside = backdrop(el.parentElement);
      var inside = backdrop(el);
      return [describe(el), Math.min(ratio(over(border, outside), outside), ratio(over(border, inside), inside))];
    });
}
