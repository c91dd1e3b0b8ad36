// The app shell and its router. Routes live in the URL fragment (`#/tasks/…`), so
// the server has a single page to serve and a reload keeps the view.
//
// A page is `async function (main, {params, query}) → cleanup?`: it fills `main`
// and may return a function that stops its timers and live subscriptions when the
// user goes elsewhere.

import {endSession, finishSignIn, logout, session} from './api.js';
import {clear, h} from './dom.js';
import {live} from './live.js';
import {go, notify, pageChanged} from './nav.js';
import {may} from './roles.js';
import {auditPage} from './pages/audit.js';
import {loginPage} from './pages/login.js';
import {projectsPage} from './pages/projects.js';
import {submitPage} from './pages/submit.js';
import {taskPage} from './pages/task.js';
import {tasksPage} from './pages/tasks.js';
import {usersPage} from './pages/users.js';

const ROUTES = [
  {path: /^\/login$/, page: loginPage, title: 'Log in', open: true},
  {path: /^\/tasks$/, page: tasksPage, title: 'Tasks', nav: 'tasks'},
  {path: /^\/tasks\/new$/, page: submitPage, title: 'Submit a task', nav: 'new'},
  {path: /^\/tasks\/(?<id>[0-9a-fA-F-]{36})$/, page: taskPage, title: 'Task', nav: 'tasks'},
  {path: /^\/projects$/, page: projectsPage, title: 'Projects', nav: 'projects'},
  {path: /^\/users$/, page: usersPage, title: 'Users', nav: 'users'},
  {path: /^\/audit$/, page: auditPage, title: 'Audit log', nav: 'audit'},
];

const main = document.getElementById('main');
let cleanup = null;
let rendering = 0;
let moved = false;

function parse() {
  const raw = window.location.hash.replace(/^#/, '') || '/tasks';
  const [path, search = ''] = raw.split('?');
  return {path, query: new URLSearchParams(search)};
}

function renderNav(active) {
  const top = document.getElementById('top');
  const user = session.user;
  top.hidden = !user;
  if (!user) return;
  const items = [['tasks', '#/tasks', 'Tasks']];
  if (may.submit()) items.push(['new', '#/tasks/new', 'Submit']);
  items.push(['projects', '#/projects', 'Projects']);
  if (may.admin()) items.push(['users', '#/users', 'Users'], ['audit', '#/audit', 'Audit log']);
  clear(document.getElementById('nav')).append(...items.map(([key, href, text]) =>
    h('li', {}, h('a', {href, 'aria-current': key === active ? 'page' : false}, text))));
  const who = document.getElementById('who');
  who.textContent = `${user.username} (${user.role})`;
}

async function route() {
  const {path, query} = parse();
  if (!path.startsWith('/')) return; // an in-page anchor such as the skip link
  const match = ROUTES.map((r) => ({r, m: r.path.exec(path)})).find((x) => x.m);
  if (!match) {
    go('#/tasks');
    return;
  }
  const {r, m} = match;
  if (!r.open && !session.read()?.access_token) {
    const next = window.location.hash;
    window.location.hash = `#/login?next=${encodeURIComponent(next)}`;
    return;
  }
  if (cleanup) {
    const stop = cleanup;
    cleanup = null;
    stop();
  }
  const mine = ++rendering;
  renderNav(r.nav);
  document.title = `${r.title} · DevTeam`;
  clear(main);
  main.setAttribute('aria-busy', 'true');
  try {
    const stop = await r.page(main, {params: m.groups || {}, query});
    if (mine !== rendering) {
      if (typeof stop === 'function') stop();
      return;
    }
    cleanup = typeof stop === 'function' ? stop : null;
    // After a move, keyboard and screen-reader users land on the new page, not on a
    // removed link; a freshly loaded page starts at the top (the skip link).
    if (moved && !main.contains(document.activeElement)) main.focus({preventScroll: true});
    moved = true;
  } catch (error) {
    if (mine === rendering) {
      clear(main).append(h('h1', {}, r.title), h('p', {class: 'error', role: 'alert'},
        error.describe ? error.describe() : String(error.message || error)));
    }
  } finally {
    if (mine === rendering) main.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', () => {
  if (!window.location.hash.startsWith('#/')) return;
  pageChanged();
  route();
});

window.addEventListener('devteam:session-ended', (event) => {
  live.stop();
  const {path} = parse();
  if (path === '/login') return;
  notify(event.detail?.reason === 'logout' ? 'You have logged out.' : 'Your session has expired; log in again.',
    event.detail?.reason === 'logout' ? 'info' : 'warn', {keep: true});
  const next = window.location.hash;
  window.location.hash = `#/login?next=${encodeURIComponent(next)}`;
});

document.getElementById('logout').addEventListener('click', async () => {
  live.stop();
  await logout();
  endSession('logout');
});

document.getElementById('skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

// Back from the identity provider (`/ui/?code=…&state=…`): finish signing in, then
// drop the code from the address bar and the history.
async function start() {
  const query = new URLSearchParams(window.location.search);
  if (query.has('code') || query.has('error')) {
    let next = '#/tasks';
    try {
      next = await finishSignIn(query);
    } catch (error) {
      notify(error.describe ? error.describe() : String(error), 'warn', {keep: true});
      next = '#/login';
    }
    window.history.replaceState(null, '', `/ui/${next}`);
  }
  route();
}

start();
