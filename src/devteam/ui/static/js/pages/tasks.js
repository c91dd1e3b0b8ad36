// The task list: newest first, filtered, following its unfinished tasks live.

import {agentTypes, api} from '../api.js';
import {clear, field, h, select} from '../dom.js';
import {STATUSES, TERMINAL, agentText, money, shortId, statusBadge, statusText, timeTag} from '../format.js';
import {live} from '../live.js';
import {go} from '../nav.js';
import {may} from '../roles.js';

const REFRESH_MS = 15000;
const PAGE = 25;

export async function tasksPage(main, {query}) {
  const filters = {
    status: query.get('status') || '',
    agent_type: query.get('agent_type') || '',
    project_id: query.get('project_id') || '',
  };
  const statusSelect = select('status', [['', 'Any status'], ...STATUSES.map((s) => [s, statusText(s)])], filters.status);
  const agents = await agentTypes();
  const agentSelect = select('agent_type', [['', 'Any agent'], ...agents.map((a) => [a, agentText(a)])], filters.agent_type);
  const projectInput = h('input', {name: 'project_id', value: filters.project_id, pattern: '[A-Za-z0-9_\\-]{1,64}', placeholder: 'any'});
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter tasks'},
    field('Status', statusSelect), field('Agent', agentSelect), field('Project', projectInput),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Filter'),
      h('a', {href: '#/tasks', class: 'button quiet'}, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
    const text = params.toString();
    go(text ? `#/tasks?${text}` : '#/tasks');
  });

  const status = h('p', {class: 'error', role: 'alert', hidden: true});
  const body = h('tbody');
  const table = h('table', {class: 'tasks'},
    h('caption', {class: 'visually-hidden'}, 'Tasks, newest first'),
    h('thead', {}, h('tr', {}, ['Task', 'Status', 'Agent', 'Project', 'Cost', 'Submitted'].map((t) => h('th', {scope: 'col'}, t)))),
    body);
  const empty = h('div', {class: 'empty', hidden: true});
  const more = h('button', {type: 'button', hidden: true}, 'Load older tasks');
  main.append(
    h('div', {class: 'title-row'}, h('h1', {}, 'Tasks'),
      may.submit() ? h('a', {href: '#/tasks/new', class: 'button primary'}, 'Submit a task') : null),
    form, status, h('div', {class: 'table-wrap'}, table), empty, more);

  const rows = new Map(); // task id -> {row, task, unfollow}
  let cursor = null;

  function cells(task) {
    return [
      h('td', {'data-label': 'Task'}, h('a', {href: `#/tasks/${task.id}`, class: 'task-link'}, task.task),
        h('span', {class: 'muted id'}, ` ${shortId(task.id)}`)),
      h('td', {'data-label': 'Status'}, statusBadge(task.status)),
      h('td', {'data-label': 'Agent'}, agentText(task.agent_type)),
      h('td', {'data-label': 'Project'}, task.project_id || '—'),
      h('td', {'data-label': 'Cost', class: 'num'}, money(task.usage?.cost_usd)),
      h('td', {'data-label': 'Submitted'}, timeTag(task.created_at)),
    ];
  }

  function show(task, {prepend = false} = {}) {
    const known = rows.get(task.id);
    if (known) {
      known.task = task;
      known.row.replaceChildren(...cells(task));
      known.row.dataset.status = task.status;
    } else {
      const row = h('tr', {'data-task-id': task.id, 'data-status': task.status}, cells(task));
      if (prepend) body.prepend(row);
      else body.append(row);
      rows.set(task.id, {row, task, unfollow: null});
    }
    follow(task);
  }

  // Unfinished tasks are followed live: a status event updates the row at once.
  function follow(task) {
    const entry = rows.get(task.id);
    if (TERMINAL.has(task.status)) {
      if (entry.unfollow) entry.unfollow();
      entry.unfollow = null;
      return;
    }
    if (entry.unfollow) return;
    // From the start: the replay brings the row up to date with the latest status.
    entry.unfollow = live.follow(task.id, 0, (event) => onEvent(task.id, event));
  }

  function onEvent(taskId, event) {
    const entry = rows.get(taskId);
    if (!entry || event.subtask_id !== null || !event.data?.status) return;
    const task = {...entry.task, status: event.data.status};
    entry.task = task;
    entry.row.dataset.status = task.status;
    entry.row.children[1].replaceChildren(statusBadge(task.status));
    if (TERMINAL.has(task.status)) {
      // The final usage and cost come with the task.
      api(`/api/v1/tasks/${taskId}`).then((fresh) => rows.has(taskId) && show(fresh)).catch(() => {});
    }
  }

  let loaded = false;
  async function load({older = false} = {}) {
    const page = await api('/api/v1/tasks', {query: {...filters, limit: PAGE, cursor: older ? cursor : null}});
    if (older) {
      page.items.forEach((task) => show(task));
      cursor = page.next_cursor;
    } else {
      // Newest first: tasks not shown yet go on top, oldest of them first.
      const fresh = page.items.filter((t) => !rows.has(t.id)).reverse();
      for (const task of page.items) if (rows.has(task.id)) show(task);
      for (const task of fresh) show(task, {prepend: true});
      if (!loaded) cursor = page.next_cursor;
      loaded = true;
    }
    more.hidden = !cursor;
    const filtered = Object.values(filters).some(Boolean);
    empty.hidden = rows.size > 0;
    table.hidden = rows.size === 0;
    clear(empty).append(filtered
      ? h('p', {}, 'No task matches these filters.')
      : h('p', {}, 'No tasks yet. ', may.submit() ? h('a', {href: '#/tasks/new'}, 'Submit the first one.') : 'Tasks you may read will appear here.'));
  }

  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      await load({older: true});
    } catch (error) {
      status.textContent = error.describe();
      status.hidden = false;
    } finally {
      more.disabled = false;
    }
  });

  await load();
  // New tasks (submitted elsewhere) show up on a gentle poll while the page is visible.
  const timer = setInterval(() => {
    if (document.visibilityState !== 'visible') return;
    load().then(() => { status.hidden = true; }).catch((error) => {
      status.textContent = error.describe ? error.describe() : String(error);
      status.hidden = false;
    });
  }, REFRESH_MS);
  return () => {
    clearInterval(timer);
    for (const entry of rows.values()) if (entry.unfollow) entry.unfollow();
  };
}
