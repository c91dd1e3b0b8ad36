// Pieces several pages use.

import {h} from '../dom.js';

/** An API error as the user should read it, with the fields the server named. */
export function errorBox(error) {
  const message = error.describe ? error.describe() : String(error.message || error);
  const details = (error.details || []).filter((d) => d && (d.message || d.msg))
    .filter((d) => !message.includes(d.message || d.msg));
  return h('div', {class: 'error'},
    h('p', {}, message),
    details.length ? h('ul', {}, details.map((d) => h('li', {}, d.field ? `${d.field}: ${d.message || d.msg}` : d.message || d.msg))) : null);
}

/** A definition list from [term, value] pairs; values may be nodes. Empty values are left out. */
export function facts(pairs, attrs = {}) {
  return h('dl', {class: 'facts', ...attrs}, pairs
    .filter(([, value]) => value !== undefined && value !== null && value !== '')
    .map(([term, value]) => h('div', {}, h('dt', {}, term), h('dd', {}, value))));
}

export function section(title, ...children) {
  return h('section', {class: 'block'}, h('h2', {}, title), ...children);
}
