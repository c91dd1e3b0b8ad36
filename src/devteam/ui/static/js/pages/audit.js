// The audit log, for admins: who did what, when, from where.

import {api} from '../api.js';
import {clear, field, h} from '../dom.js';
import {timeTag} from '../format.js';
import {go} from '../nav.js';
import {may} from '../roles.js';

export async function auditPage(main, {query}) {
  main.append(h('h1', {}, 'Audit log'));
  if (!may.admin()) {
    main.append(h('p', {class: 'empty'}, 'Only admins read the audit log.'));
    return;
  }
  const filters = {actor: query.get('actor') || '', action: query.get('action') || ''};
  const actor = h('input', {name: 'actor', value: filters.actor, maxlength: 64, placeholder: 'any'});
  const action = h('input', {name: 'action', value: filters.action, maxlength: 64, placeholder: 'e.g. auth.login'});
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter the audit log'},
    field('Actor', actor), field('Action', action),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Filter'), h('a', {href: '#/audit', class: 'button quiet'}, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (actor.value.trim()) params.set('actor', actor.value.trim());
    if (action.value.trim()) params.set('action', action.value.trim());
    const text = params.toString();
    go(text ? `#/audit?${text}` : '#/audit');
  });
  const body = h('tbody');
  const empty = h('p', {class: 'empty', hidden: true}, 'No entries.');
  const more = h('button', {type: 'button', hidden: true}, 'Older entries');
  let cursor = null;

  async function load({older = false} = {}) {
    const page = await api('/api/v1/audit', {query: {...filters, limit: 50, cursor: older ? cursor : null}});
    if (!older) clear(body);
    body.append(...page.items.map((e) => h('tr', {class: `outcome-${e.outcome}`},
      h('td', {'data-label': 'When'}, timeTag(e.ts)),
      h('td', {'data-label': 'Actor'}, e.actor || '—'),
      h('td', {'data-label': 'Action'}, h('code', {}, e.action)),
      h('td', {'data-label': 'Outcome'}, e.outcome),
      h('td', {'data-label': 'Resource'}, e.resource_type ? `${e.resource_type} ${e.resource_id || ''}` : '—'),
      h('td', {'data-label': 'From'}, e.client_ip || '—'),
      h('td', {'data-label': 'Details'}, Object.keys(e.details || {}).length ? h('code', {}, JSON.stringify(e.details)) : ''))));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    empty.hidden = body.childElementCount > 0;
  }
  more.addEventListener('click', () => load({older: true}));
  main.append(form,
    h('div', {class: 'table-wrap'}, h('table', {class: 'audit'},
      h('caption', {class: 'visually-hidden'}, 'Audit entries, newest first'),
      h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Outcome', 'Resource', 'From', 'Details'].map((t) => h('th', {scope: 'col'}, t)))),
      body)),
    empty, more);
  await load();
}
