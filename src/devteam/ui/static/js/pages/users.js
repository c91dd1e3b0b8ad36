// Users, for admins: who may use the service, with which role.

import {api} from '../api.js';
import {clear, field, h, select} from '../dom.js';
import {timeTag} from '../format.js';
import {may} from '../roles.js';
import {errorBox} from './parts.js';

const ROLES = ['viewer', 'developer', 'operator', 'admin'];

export async function usersPage(main) {
  main.append(h('h1', {}, 'Users'));
  if (!may.admin()) {
    main.append(h('p', {class: 'empty'}, 'Only admins manage users.'));
    return;
  }
  const body = h('tbody');
  const more = h('button', {type: 'button', hidden: true}, 'More users');
  let cursor = null;

  async function load({next = false} = {}) {
    const page = await api('/api/v1/users', {query: {limit: 100, cursor: next ? cursor : null}});
    if (!next) clear(body);
    body.append(...page.items.map((u) => h('tr', {},
      h('td', {'data-label': 'User'}, u.username),
      h('td', {'data-label': 'Role'}, u.role),
      h('td', {'data-label': 'Active'}, u.is_active === false ? 'deactivated' : 'active'),
      h('td', {'data-label': 'Created'}, timeTag(u.created_at)))));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => load({next: true}));

  const username = h('input', {name: 'username', required: true, autocomplete: 'off', autocapitalize: 'off'});
  const password = h('input', {name: 'password', type: 'password', required: true, autocomplete: 'new-password'});
  const role = select('role', ROLES.map((r) => [r, r]), 'developer');
  const problem = h('div', {role: 'alert'});
  const done = h('p', {role: 'status', class: 'muted'});
  const form = h('form', {class: 'card', 'aria-labelledby': 'add-user'},
    h('h2', {id: 'add-user'}, 'Add a user'),
    h('div', {class: 'grid'}, field('Username', username), field('Password', password), field('Role', role)),
    problem, done, h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Add user')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    done.textContent = '';
    try {
      const user = await api('/api/v1/users', {method: 'POST', json: {username: username.value.trim(), password: password.value, role: role.value}});
      done.textContent = `Added ${user.username} (${user.role}).`;
      form.reset();
      await load();
    } catch (error) {
      problem.append(errorBox(error));
    }
  });

  main.append(
    h('div', {class: 'table-wrap'}, h('table', {},
      h('caption', {class: 'visually-hidden'}, 'Users'),
      h('thead', {}, h('tr', {}, ['User', 'Role', 'Active', 'Created'].map((t) => h('th', {scope: 'col'}, t)))),
      body)),
    more, form);
  await load();
}
