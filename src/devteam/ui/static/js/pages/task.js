// One task: what it is, its plan, its live timeline, its result, and the buttons
// the user's role allows (approve or reject a plan that waits, cancel a run).

import {ApiError, api} from '../api.js';
import {append, clear, field, h} from '../dom.js';
import {PHASES, TERMINAL, agentText, describeEvent, eventKind, money, number, shortId, statusBadge, timeOnly, timeTag, when} from '../format.js';
import {live} from '../live.js';
import {may} from '../roles.js';
import {resultView} from '../results.js';
import {errorBox, facts, section} from './parts.js';

const REFRESH_DELAY_MS = 250;

const FILTERS = [
  ['all', 'Everything'],
  ['decision', 'Rule decisions'],
  ['tool', 'Tool calls'],
  ['check', 'Checks and reviews'],
  ['status', 'Status changes'],
  ['trouble', 'Retries and failures'],
];

export async function taskPage(main, {params}) {
  let task;
  try {
    task = await api(`/api/v1/tasks/${params.id}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      main.append(h('h1', {}, 'Task not found'),
        h('p', {class: 'empty'}, 'There is no such task, or it is not yours to read. ', h('a', {href: '#/tasks'}, 'Back to the tasks.')));
      return;
    }
    throw error;
  }

  // Announced to screen readers when the status changes.
  const badge = h('span', {class: 'status-slot', 'aria-live': 'polite'});
  const liveState = h('span', {class: 'live-state', 'aria-live': 'polite'});
  const actions = h('div', {class: 'task-actions', 'aria-label': 'Actions'});
  const overview = h('div');
  const plan = h('div');
  const result = h('div');
  const timeline = h('ol', {class: 'timeline', 'data-filter': 'all', 'aria-label': 'Events, oldest first'});
  const emptyTimeline = h('p', {class: 'muted'}, 'No events yet.');
  const filter = h('select', {id: 'timeline-filter'}, FILTERS.map(([v, t]) => h('option', {value: v}, t)));
  filter.addEventListener('change', () => { timeline.dataset.filter = filter.value; });
  const count = h('span', {class: 'muted'});

  main.append(
    task.parent_id ? h('p', {class: 'crumbs'}, h('a', {href: `#/tasks/${task.root_id}`}, '← The whole task')) : h('p', {class: 'crumbs'}, h('a', {href: '#/tasks'}, '← Tasks')),
    h('div', {class: 'title-row task-title'},
      h('h1', {}, task.parent_id ? `Subtask ${task.key || shortId(task.id)}` : `Task ${shortId(task.id)}`),
      badge, liveState),
    h('p', {class: 'task-text'}, task.task),
    actions,
    h('div', {class: 'task-layout'},
      h('div', {class: 'task-main'}, overview, plan, result),
      h('section', {class: 'block task-events', 'aria-labelledby': 'timeline-title'},
        h('div', {class: 'title-row'}, h('h2', {id: 'timeline-title'}, 'Timeline'), count),
        field('Show', filter),
        emptyTimeline,
        h('div', {class: 'timeline-scroll', tabindex: '0', role: 'region', 'aria-label': 'Timeline events'}, timeline))),
  );

  const keys = new Map(); // subtask id -> key, for naming events
  let actionProblem = null;
  let confirmingCancel = false;

  function render() {
    if (badge.dataset.status !== task.status) {
      badge.dataset.status = task.status;
      badge.replaceChildren(statusBadge(task.status));
    }
    for (const s of task.subtasks || []) keys.set(s.id, s.key);
    renderActions();
    renderOverview();
    renderPlan();
    renderResult();
  }

  let shownActions = null;
  function renderActions() {
    // Rebuilt only when something it shows changed, so a half-filled reject form stays.
    const state = `${task.status}|${confirmingCancel}|${actionProblem ? actionProblem.textContent : ''}`;
    if (state === shownActions) return;
    shownActions = state;
    clear(actions);
    const buttons = [];
    if (task.status === 'awaiting_approval' && may.approve(task) && !task.parent_id) {
      const comment = h('input', {name: 'comment', maxlength: 1000});
      buttons.push(
        h('button', {type: 'button', class: 'primary', onclick: () => act('approve', {approved: true})}, 'Approve plan'),
        h('details', {class: 'reject'},
          h('summary', {}, 'Reject…'),
          h('div', {class: 'inline-form'}, field('Why (optional)', comment),
            h('button', {type: 'button', class: 'danger', onclick: () => act('approve', {approved: false, ...(comment.value.trim() ? {comment: comment.value.trim()} : {})})}, 'Reject plan'))));
    }
    if (!TERMINAL.has(task.status) && task.status !== 'cancelling' && may.cancel(task)) {
      if (confirmingCancel) {
        buttons.push(h('span', {class: 'confirm'}, 'Stop this task and its running agents?'),
          h('button', {type: 'button', class: 'danger', onclick: () => act('cancel')}, 'Yes, cancel it'),
          h('button', {type: 'button', onclick: () => { confirmingCancel = false; renderActions(); }}, 'Keep it running'));
      } else {
        buttons.push(h('button', {type: 'button', class: 'danger', onclick: () => { confirmingCancel = true; renderActions(); actions.querySelector('button.danger')?.focus(); }}, 'Cancel task'));
      }
    }
    actions.append(...buttons);
    if (actionProblem) actions.append(actionProblem);
    actions.hidden = !actions.childElementCount;
  }

  async function act(kind, body) {
    actionProblem = null;
    confirmingCancel = false;
    for (const b of actions.querySelectorAll('button')) b.disabled = true;
    try {
      await api(`/api/v1/tasks/${task.id}/${kind}`, {method: 'POST', json: body});
      await refresh();
    } catch (error) {
      actionProblem = errorBox(error);
      actionProblem.setAttribute('role', 'alert');
      renderActions();
    }
  }

  function renderOverview() {
    const usage = task.usage || {};
    append(clear(overview), [
      task.error ? h('div', {class: 'error', role: 'alert'}, h('p', {}, h('strong', {}, task.error.code), `: ${task.error.message}`)) : null,
      section('About',
        facts([
          ['Type', task.task_type],
          ['Agent', agentText(task.agent_type)],
          ['Project', task.project_id],
          ['Phase', task.phase],
          ['Complexity', String(task.complexity)],
          ['Priority', String(task.priority)],
          ['Attempt', String(task.attempt)],
          ['Approval first', task.require_approval ? 'yes' : null],
          ['Budget', budgetText(task.budget)],
          ['Submitted', timeTag(task.created_at)],
          ['Started', task.started_at ? timeTag(task.started_at) : null],
          ['Finished', task.finished_at ? timeTag(task.finished_at) : null],
        ])),
      section('Usage and cost',
        facts([
          ['LLM requests', number(usage.requests)],
          ['Input tokens', number(usage.input_tokens)],
          ['Output tokens', number(usage.output_tokens)],
          ['Tool calls', number(usage.tool_calls)],
          ['Cost', money(usage.cost_usd)],
        ], {class: 'facts usage'}))]);
  }

  function renderPlan() {
    const subtasks = task.subtasks || [];
    clear(plan);
    if (!subtasks.length) {
      if (!task.parent_id) {
        plan.append(section('Plan', h('p', {class: 'muted'},
          ['pending', 'planning'].includes(task.status) ? 'The TeamLeader is planning…' : 'Runs as one task, without subtasks.')));
      }
      return;
    }
    const byPhase = new Map();
    for (const s of subtasks) {
      const phase = s.phase || 'other';
      if (!byPhase.has(phase)) byPhase.set(phase, []);
      byPhase.get(phase).push(s);
    }
    const order = [...PHASES, ...[...byPhase.keys()].filter((p) => !PHASES.includes(p))];
    plan.append(section('Plan',
      h('ol', {class: 'phases'}, order.filter((p) => byPhase.has(p)).map((phase) => h('li', {class: 'phase'},
        h('h3', {}, phase === 'other' ? 'Subtasks' : `Phase: ${phase}`),
        h('ul', {class: 'subtasks'}, byPhase.get(phase).map((s) => h('li', {class: 'subtask', 'data-subtask': s.key || s.id},
          h('div', {class: 'subtask-head'},
            h('a', {href: `#/tasks/${s.id}`}, s.key || shortId(s.id)),
            ' ', h('span', {class: 'muted'}, agentText(s.agent_type)),
            ' ', statusBadge(s.status),
            Number(s.attempt) > 1 ? h('span', {class: 'muted'}, ` attempt ${s.attempt}`) : null,
            s.usage ? h('span', {class: 'muted cost'}, ` ${money(s.usage.cost_usd)}`) : null),
          s.task ? h('p', {class: 'subtask-text'}, s.task) : null,
          s.depends_on?.length ? h('p', {class: 'muted'}, `After: ${s.depends_on.map((d) => keys.get(d) || shortId(d)).join(', ')}`) : null,
          s.error ? h('p', {class: 'error'}, `${s.error.code}: ${s.error.message}`) : null))))))));
  }

  let shownResult = null;
  function renderResult() {
    // Left alone when unchanged, so an opened check output or a scrolled diff stays.
    const text = JSON.stringify(task.result);
    if (text === shownResult) return;
    shownResult = text;
    clear(result);
    if (task.result) result.append(section('Result', resultView(task.result)));
  }

  let timer = null;
  function refreshSoon() {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      refresh().catch(() => {});
    }, REFRESH_DELAY_MS);
  }

  async function refresh() {
    task = await api(`/api/v1/tasks/${task.id}`);
    render();
  }

  function onEvent(event) {
    emptyTimeline.hidden = true;
    const d = event.data || {};
    if (d.key && event.subtask_id) keys.set(event.subtask_id, d.key);
    const who = event.subtask_id ? keys.get(event.subtask_id) || shortId(event.subtask_id) : 'task';
    const kind = eventKind(event.type);
    timeline.append(h('li', {class: `event kind-${kind}`, 'data-seq': event.seq, 'data-type': event.type},
      h('div', {class: 'event-head'},
        h('span', {class: 'seq'}, `#${event.seq}`), ' ',
        h('time', {datetime: event.ts, title: when(event.ts)}, timeOnly(event.ts)), ' ',
        h('span', {class: 'event-type'}, event.type), ' ',
        h('span', {class: 'event-who'}, who)),
      h('p', {class: 'event-text'}, describeEvent(event))));
    count.textContent = `${timeline.childElementCount} events`;
    // The task as read after the event is the truth (a replayed event is history):
    // read it again, once for a burst of events.
    const changes = (d.status && event.type !== 'rule.decision')
      || ['check.completed', 'review.completed', 'task.planned'].includes(event.type);
    if (changes) refreshSoon();
  }

  render();
  const stopState = live.onState((state) => {
    liveState.textContent = {live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', idle: ''}[state] || '';
    liveState.dataset.state = state;
  });
  const unfollow = live.follow(task.id, 0, onEvent, (message) => {
    timeline.after(h('p', {class: 'error', role: 'alert'}, message));
  });
  return () => {
    unfollow();
    stopState();
    clearTimeout(timer);
  };
}

function budgetText(budget) {
  if (!budget) return null;
  const parts = [];
  if (budget.max_tokens) parts.push(`${number(budget.max_tokens)} tokens`);
  if (budget.max_cost_usd) parts.push(money(budget.max_cost_usd));
  if (budget.timeout_s) parts.push(`${Math.round(budget.timeout_s / 60)} min`);
  return parts.join(', ') || null;
}
