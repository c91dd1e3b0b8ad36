// Words for what the API says: statuses, times, money, events.

import {h} from './dom.js';

export const STATUSES = [
  'pending', 'planning', 'awaiting_approval', 'delegated', 'in_progress',
  'cancelling', 'completed', 'failed', 'cancelled',
];
export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
export const PHASES = ['research', 'analysis', 'implementation', 'review'];

export function statusText(status) {
  return String(status || 'unknown').replaceAll('_', ' ');
}

export function statusBadge(status) {
  return h('span', {class: `badge status-${status}`}, statusText(status));
}

export function agentText(agent) {
  return agent ? String(agent).replaceAll('_', ' ') : 'TeamLeader decides';
}

export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'medium'});
}

export function timeOnly(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

export function timeTag(iso, text) {
  return h('time', {datetime: iso || ''}, text || when(iso));
}

export function money(value) {
  const amount = Number(value || 0);
  if (amount === 0) return '$0';
  return amount < 0.01 ? `$${amount.toFixed(4)}` : `$${amount.toFixed(2)}`;
}

export function number(value) {
  return Number(value || 0).toLocaleString();
}

export function shortId(id) {
  return String(id || '').slice(0, 8);
}

export function seconds(value) {
  const s = Number(value);
  return Number.isFinite(s) ? `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s` : '';
}

const DECISIONS = {
  reject: 'refused',
  delay: 'held back',
  rewrite: 'changed',
  accept: 'allowed',
};

function transitionText(transition) {
  return String(transition || '').replaceAll('_', ' ').replace('=>', '→');
}

/** One sentence for an event, as a user would say it. */
export function describeEvent(event) {
  const d = event.data || {};
  switch (event.type) {
    case 'task.created':
      return `Submitted (complexity ${d.complexity ?? '?'}, priority ${d.priority ?? '?'}${d.require_approval ? ', approval first' : ''}).`;
    case 'task.planned': {
      const steps = d.subtasks || [];
      const by = d.planner ? ` by the ${d.planner} planner` : '';
      if (!steps.length) return `Planned${by}: runs as one task.`;
      const keys = steps.map((s) => `${s.key} (${agentText(s.agent_type)})`).join(', ');
      const replans = d.replans ? `, after ${d.replans} re-plan(s)` : '';
      return `Planned${by}${replans}: ${steps.length} subtasks — ${keys}.${d.rationale ? ` ${d.rationale}` : ''}`;
    }
    case 'rule.decision': {
      const verb = DECISIONS[d.decision] || d.decision || 'decided';
      const transition = d.transition ? ` the step ${transitionText(d.transition)}` : '';
      return `Rule ${d.rule || '?'} ${verb}${transition}: ${d.reason || 'no reason given'}.`;
    }
    case 'tool.call': {
      const args = Object.entries(d)
        .filter(([k]) => !['server', 'tool', 'outcome', 'key'].includes(k))
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      return `Called ${d.server || '?'}.${d.tool || '?'}${args ? ` (${args})` : ''}: ${d.outcome || 'done'}.`;
    }
    case 'task.progress':
      if (d.message) return String(d.message);
      if (d.status) return `${statusText(d.from)} → ${statusText(d.status)}.`;
      return 'Progress.';
    case 'task.retrying': {
      const why = d.error ? ` after ${d.error.code}: ${d.error.message}` : d.reason ? ` (${d.reason})` : '';
      return `Retrying, attempt ${d.attempt ?? '?'}${why}.`;
    }
    case 'check.completed':
      return `Check ${d.name || '?'}, round ${d.round ?? '?'}: ${d.passed ? 'passed' : 'failed'} (exit ${d.exit_code ?? '?'}${d.duration_s !== undefined ? `, ${seconds(d.duration_s)}` : ''})${d.command ? ` — ${d.command}` : ''}.`;
    case 'review.completed': {
      const findings = Array.isArray(d.findings) ? d.findings.length : Number(d.findings || 0);
      const verdict = d.verdict === 'approve' ? 'approved' : d.verdict === 'request_changes' ? 'changes requested' : d.verdict;
      return `Review, round ${d.round ?? '?'}: ${verdict || '?'} (${findings} finding${findings === 1 ? '' : 's'}).`;
    }
    case 'task.awaiting_approval':
      return `Waiting for a person to approve the plan${d.reason ? ` (${d.reason})` : ''}.`;
    case 'task.approved':
      return `${d.approved === false ? 'Rejected' : 'Approved'}${d.by ? ` by ${d.by}` : ''}${d.comment ? `: ${d.comment}` : ''}.`;
    case 'task.failed': {
      const error = d.error ? `${d.error.code}: ${d.error.message}` : d.reason || '';
      return `Failed${error ? ` — ${error}` : ''}.`;
    }
    default: {
      const parts = [];
      if (d.status) parts.push(`${d.from ? `${statusText(d.from)} → ` : ''}${statusText(d.status)}`);
      if (d.agent_type) parts.push(agentText(d.agent_type));
      if (Number(d.attempt) > 1) parts.push(`attempt ${d.attempt}`);
      if (d.reason) parts.push(d.reason);
      if (d.error) parts.push(`${d.error.code}: ${d.error.message}`);
      return parts.length ? `${parts.join(' · ')}.` : event.type;
    }
  }
}

/** What the event is, for its label and colour. */
export function eventKind(type) {
  if (type === 'rule.decision') return 'decision';
  if (type === 'tool.call') return 'tool';
  if (type === 'check.completed') return 'check';
  if (type === 'review.completed') return 'review';
  if (type === 'task.retrying' || type === 'task.failed') return 'trouble';
  return 'status';
}
