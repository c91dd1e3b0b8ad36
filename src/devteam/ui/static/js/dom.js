// Building the page. Data is only ever put in as text (text nodes, textContent,
// attribute values): never through innerHTML, so user-provided text cannot
// become markup or script.

/**
 * h('a', {href: '#/tasks', class: 'x', onclick: fn}, 'text', child, [more])
 * Attributes: `class`, `for`, `on<event>` (a listener), booleans (set when true,
 * left out when false), anything else as a string attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A same-site path or an http(s) address as an absolute URL; null for `javascript:` and the like. */
export function webAddress(url) {
  try {
    const parsed = new URL(String(url || ''), window.location.origin);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}

/** A link only for web addresses: `javascript:` and other schemes stay text. */
export function safeLink(url, text) {
  const href = webAddress(url);
  if (href) return h('a', {href, rel: 'noopener noreferrer', target: '_blank'}, text || url);
  return h('span', {}, text || url);
}

let ids = 0;
/** A unique element id, for labels and aria-describedby. */
export function uid(prefix = 'id') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field: the label, the control, an optional hint under it. */
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  const parts = [h('label', {for: id}, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    parts.push(h('p', {class: 'hint', id: hintId}, hint));
  }
  return h('div', {class: 'field'}, parts);
}

export function select(name, options, value) {
  return h('select', {name},
    options.map(([v, text]) => h('option', {value: v, selected: v === value}, text)));
}
