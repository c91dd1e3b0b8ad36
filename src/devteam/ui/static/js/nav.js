// Moving between pages and telling the user something above the page.

import {clear, h} from './dom.js';

let keepNotice = false;

/**
 * Show a short message above the page (e.g. why the user is on the login page);
 * with `keep`, it stays through the next change of page.
 */
export function notify(text, kind = 'info', {keep = false} = {}) {
  keepNotice = keep;
  const banner = document.getElementById('banner');
  clear(banner);
  if (text) banner.append(h('p', {class: `notice ${kind}`}, text));
}

/** Called on each change of page: clears the message unless it was to be kept. */
export function pageChanged() {
  if (keepNotice) keepNotice = false;
  else notify('');
}

export function go(hash) {
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else window.location.hash = hash;
}
