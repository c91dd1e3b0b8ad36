// A task's result, rendered by the type of its output (agents/models.py):
// ResearchReport, CodebaseReport, CodeChange (with its checks when present),
// Review; anything else as JSON.

import {h, safeLink} from './dom.js';
import {agentText, number, seconds, shortId, statusBadge} from './format.js';
import {facts} from './pages/parts.js';

function kindOf(result) {
  const output = result?.output || {};
  if (result?.output_type && result.output_type !== 'Echo') return result.output_type;
  if ('diff' in output && 'branch' in output) return 'CodeChange';
  if ('findings' in output && 'confidence' in output) return 'ResearchReport';
  if ('verdict' in output) return 'Review';
  if ('languages' in output && 'total_files' in output) return 'CodebaseReport';
  return 'other';
}

function list(items, render = (x) => x) {
  return items?.length ? h('ul', {}, items.map((item) => h('li', {}, render(item)))) : null;
}

function sub(title, ...children) {
  const body = children.filter(Boolean);
  return body.length ? h('div', {class: 'sub'}, h('h3', {}, title), ...body) : null;
}

function table(caption, headers, rows) {
  if (!rows.length) return null;
  return h('div', {class: 'table-wrap'}, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c, i) => h('td', {'data-label': headers[i]}, c)))))));
}

function research(output) {
  return h('div', {class: 'result research'},
    h('p', {class: 'summary'}, output.summary || ''),
    facts([['Confidence', output.confidence]]),
    sub('Findings', output.findings?.length ? h('ol', {class: 'findings'}, output.findings.map((f) =>
      h('li', {},
        h('p', {class: 'statement'}, f.statement),
        f.detail ? h('p', {class: 'detail'}, f.detail) : null,
        f.sources?.length ? h('p', {class: 'sources'}, 'Sources: ', f.sources.map((s, i) => [
          i ? '; ' : '',
          s.url ? safeLink(s.url, s.title || s.url) : s.title,
          s.kind === 'model_knowledge' ? ' (model knowledge: check it)' : '',
        ])) : null))) : null),
    sub('Open questions', list(output.open_questions)));
}

function codebase(output) {
  const tests = output.test_layout || {};
  const git = output.git || {};
  return h('div', {class: 'result codebase'},
    h('p', {class: 'summary'}, output.summary || ''),
    facts([
      ['Files', number(output.total_files)],
      ['Lines', number(output.total_lines)],
      ['Source folders', (output.source_dirs || []).join(', ')],
      ['Analysis', output.analysis],
      ['Branch', git.branch],
      ['Head', git.head ? shortId(git.head) : null],
    ]),
    output.narrative ? sub('How it is organised', h('p', {}, output.narrative)) : null,
    output.task_notes ? sub('For this task', h('p', {}, output.task_notes)) : null,
    table('Languages', ['Language', 'Files', 'Lines'], (output.languages || []).map((l) => [l.language, number(l.files), number(l.lines)])),
    table('Relevant files', ['File', 'Why'], (output.relevant_files || []).map((f) => [h('code', {}, f.path), f.reason])),
    table('Entry points', ['Name', 'Kind', 'Runs', 'Defined in'], (output.entry_points || []).map((e) => [e.name, e.kind, h('code', {}, e.target), e.defined_in])),
    sub('Tests', facts([
      ['Frameworks', (tests.frameworks || []).join(', ')],
      ['Folders', (tests.directories || []).join(', ')],
      ['Test files', tests.test_files ? number(tests.test_files) : null],
    ])),
    table('Conventions', ['Tool', 'Kind', 'Config'], (output.conventions || []).map((c) => [c.tool, c.kind, h('code', {}, c.config_file)])),
    output.dependencies?.length ? h('details', {class: 'sub'}, h('summary', {}, `Dependencies (${output.dependencies.length})`),
      table('Dependencies', ['Name', 'Version', 'Ecosystem', 'Scope'], output.dependencies.map((d) => [d.name, d.spec || '—', d.ecosystem, d.scope]))) : null,
    sub('Risks', list(output.risks)),
    sub('Recent commits', list(git.recent_commits)));
}

/** A unified diff as a table of lines: file headers, hunks, additions, deletions. */
export function diffView(diff) {
  const files = [];
  let current = null;
  let oldLine = 0;
  let newLine = 0;
  for (const line of String(diff || '').split('\n')) {
    if (line.startsWith('diff --git ')) {
      current = {title: line.replace(/^diff --git a\/(.*) b\/.*$/, '$1'), rows: []};
      files.push(current);
      continue;
    }
    if (!current) {
      current = {title: 'changes', rows: []};
      files.push(current);
    }
    const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(line);
    if (hunk) {
      oldLine = Number(hunk[1]);
      newLine = Number(hunk[2]);
      current.rows.push(['hunk', '', '', line]);
    } else if (line.startsWith('+++') || line.startsWith('---') || /^(index|new file|deleted file|similarity|rename|old mode|new mode)/.test(line)) {
      current.rows.push(['meta', '', '', line]);
    } else if (line.startsWith('+')) {
      current.rows.push(['add', '', newLine++, line]);
    } else if (line.startsWith('-')) {
      current.rows.push(['del', oldLine++, '', line]);
    } else if (line.startsWith(' ')) {
      current.rows.push(['ctx', oldLine++, newLine++, line]);
    } else if (line) {
      current.rows.push(['meta', '', '', line]);
    }
  }
  if (!files.length) return h('p', {class: 'muted'}, 'No changes.');
  const label = {add: 'added', del: 'removed', ctx: '', hunk: '', meta: ''};
  return h('div', {class: 'diff'}, files.map((file) => h('figure', {class: 'diff-file'},
    h('figcaption', {}, h('code', {}, file.title)),
    h('div', {class: 'diff-scroll', tabindex: '0', role: 'region', 'aria-label': `Diff of ${file.title}`},
      h('table', {class: 'diff-lines'},
        h('thead', {class: 'visually-hidden'}, h('tr', {}, h('th', {scope: 'col'}, 'Old line'), h('th', {scope: 'col'}, 'New line'), h('th', {scope: 'col'}, 'Line'))),
        h('tbody', {}, file.rows.map(([kind, a, b, text]) => h('tr', {class: `d-${kind}`},
          h('td', {class: 'ln'}, String(a)),
          h('td', {class: 'ln'}, String(b)),
          h('td', {class: 'code'}, label[kind] ? h('span', {class: 'visually-hidden'}, `${label[kind]}: `) : null, text)))))))));
}

function checksView(checks) {
  if (!Array.isArray(checks) || !checks.length) return null;
  return sub('Checks', h('ul', {class: 'checks'}, checks.map((c) => h('li', {class: c.passed ? 'pass' : 'fail'},
    h('span', {class: `badge ${c.passed ? 'status-completed' : 'status-failed'}`}, c.passed ? 'passed' : 'failed'),
    ' ', h('strong', {}, c.name), ' ', h('code', {}, c.command || ''),
    h('span', {class: 'muted'}, ` exit ${c.exit_code ?? '?'}${c.duration_s !== undefined ? `, ${seconds(c.duration_s)}` : ''}${c.was_failing_before ? ', failing before the change too' : ''}`),
    c.output_tail ? h('details', {}, h('summary', {}, 'Output'), h('pre', {}, c.output_tail)) : null))));
}

function codeChange(output) {
  const verified = output.verified;
  return h('div', {class: 'result code-change'},
    h('p', {class: 'summary'}, output.summary || ''),
    facts([
      ['Branch', output.branch ? h('code', {}, output.branch) : null],
      ['Base', output.base_commit ? h('code', {}, shortId(output.base_commit)) : null],
      ['Head', output.head_commit ? h('code', {}, shortId(output.head_commit)) : null],
      ['Verified', verified === undefined ? null : h('span', {class: `badge ${verified ? 'status-completed' : 'status-failed'}`}, verified ? 'yes: the checks pass' : 'no')],
    ]),
    table('Files changed', ['File', 'Change', '+', '−'], (output.files_changed || []).map((f) => [
      h('code', {}, f.old_path ? `${f.old_path} → ${f.path}` : f.path), f.status, `+${f.additions}`, `−${f.deletions}`])),
    checksView(output.checks),
    sub('Diff', diffView(output.diff)),
    sub('Tests added', list(output.tests_added, (t) => h('code', {}, t))),
    sub('Follow-ups', list(output.follow_ups)));
}

function finding(f) {
  if (typeof f !== 'object' || f === null) return String(f);
  const where = f.path || f.file ? `${f.path || f.file}${f.line ? `:${f.line}` : ''}` : null;
  return [
    f.severity ? h('span', {class: `badge severity-${String(f.severity).replace(/[^a-z]/gi, '')}`}, f.severity) : null, ' ',
    where ? h('code', {}, where) : null, where ? ' ' : null,
    f.message || f.comment || f.summary || f.description || f.statement || JSON.stringify(f),
    f.suggestion ? h('p', {class: 'detail'}, `Suggestion: ${f.suggestion}`) : null,
  ];
}

function review(output) {
  const approve = output.verdict === 'approve';
  return h('div', {class: 'result review'},
    h('p', {}, h('span', {class: `badge ${approve ? 'status-completed' : 'status-awaiting_approval'}`}, approve ? 'approved' : 'changes requested'),
      ' ', output.summary || ''),
    sub('Findings', list(output.findings, finding)));
}

function raw(output) {
  return h('pre', {class: 'json'}, JSON.stringify(output, null, 2));
}

const RENDERERS = {ResearchReport: research, CodebaseReport: codebase, CodeChange: codeChange, Review: review};

/** One task's result (`{output, output_type, summary, …}`). */
export function resultView(result) {
  // A parent's result gathers its subtasks' (`{"subtasks": {key: {…, result}}}`).
  const output = result?.output || (result?.subtasks ? result : null);
  if (!output) return h('p', {class: 'muted'}, 'No result.');
  if (output.subtasks && typeof output.subtasks === 'object' && !Array.isArray(output.subtasks)) {
    return h('div', {class: 'results'}, Object.entries(output.subtasks).map(([key, child]) =>
      h('article', {class: 'subresult', 'aria-label': `Result of ${key}`},
        h('h3', {}, key, ' ', h('span', {class: 'muted'}, `(${agentText(child.agent_type)})`), ' ', statusBadge(child.status)),
        child.error ? h('p', {class: 'error'}, `${child.error.code}: ${child.error.message}`) : null,
        child.result ? resultView(child.result) : h('p', {class: 'muted'}, 'No result.'))));
  }
  const render = RENDERERS[kindOf(result)] || raw;
  return render(output);
}
