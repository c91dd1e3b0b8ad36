// Submit a task: what to do, and how the team should go about it.

import {agentTypes, api} from '../api.js';
import {field, h, select} from '../dom.js';
import {agentText} from '../format.js';
import {go} from '../nav.js';
import {may} from '../roles.js';
import {errorBox} from './parts.js';

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function projectNames() {
  try {
    const page = await api('/api/v1/projects');
    return (page.items || []).map((p) => p.name).filter(Boolean);
  } catch {
    return []; // no projects API (404) or not allowed: the field stays free text
  }
}

function numberInput(name, attrs) {
  return h('input', {name, type: 'number', inputmode: 'decimal', ...attrs});
}

export async function submitPage(main) {
  main.append(h('h1', {}, 'Submit a task'));
  if (!may.submit()) {
    main.append(h('p', {class: 'empty'}, 'Your role may read tasks but not submit them.'));
    return;
  }
  const [agents, projects] = await Promise.all([agentTypes(), projectNames()]);
  const projectList = h('datalist', {id: 'project-names'}, projects.map((p) => h('option', {value: p})));
  const text = h('textarea', {name: 'task', rows: 6, required: true, minlength: 10, maxlength: 10000});
  const taskType = h('input', {name: 'task_type', value: 'feature', required: true, maxlength: 100});
  const agent = select('agent_type', [['', 'TeamLeader decides'], ...agents.map((a) => [a, agentText(a)])], '');
  const project = h('input', {name: 'project_id', list: 'project-names', pattern: '[A-Za-z0-9_\\-]{1,64}', maxlength: 64});
  const complexity = numberInput('complexity', {min: 1, max: 10, step: 1, value: 3, required: true});
  const priority = numberInput('priority', {min: 1, max: 10, step: 1, value: 5, required: true});
  const approval = h('input', {name: 'require_approval', type: 'checkbox', id: 'approve-first'});
  const maxTokens = numberInput('max_tokens', {min: 1, step: 1});
  const maxCost = numberInput('max_cost_usd', {min: 0, step: 0.01});
  const timeout = numberInput('timeout_s', {min: 1, step: 1});
  const problem = h('div', {class: 'problem', role: 'alert'});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Submit');
  // One key per filled-in form: a double click or a resend creates one task.
  let idempotencyKey = randomKey();

  const form = h('form', {class: 'card submit', 'aria-labelledby': 'submit-title'},
    h('h2', {id: 'submit-title', class: 'visually-hidden'}, 'Task'),
    field('What should the team do?', text, '10 to 10,000 characters: the goal, where, and how to tell it is done.'),
    h('div', {class: 'grid'},
      field('Type', taskType, 'e.g. feature, bugfix, research'),
      field('Agent', agent),
      field('Project', project, projects.length ? 'One of the projects, or empty.' : 'A project name, or empty.'),
      field('Complexity (1–10)', complexity),
      field('Priority (1–10)', priority, '10 runs first.'),
    ),
    h('div', {class: 'check'}, approval, h('label', {for: 'approve-first'}, 'Approve the plan before it runs')),
    h('fieldset', {},
      h('legend', {}, 'Budget (optional)'),
      h('div', {class: 'grid'},
        field('Max tokens', maxTokens),
        field('Max cost (USD)', maxCost),
        field('Timeout (seconds)', timeout))),
    problem,
    h('div', {class: 'actions'}, button, h('a', {href: '#/tasks', class: 'button quiet'}, 'Back to tasks')),
    projectList,
  );
  form.addEventListener('input', () => { idempotencyKey = randomKey(); });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    const body = {
      task: text.value,
      task_type: taskType.value.trim() || 'feature',
      complexity: Number(complexity.value),
      priority: Number(priority.value),
    };
    if (agent.value) body.agent_type = agent.value;
    if (project.value.trim()) body.project_id = project.value.trim();
    if (approval.checked) body.require_approval = true;
    const budget = {};
    if (maxTokens.value) budget.max_tokens = Number(maxTokens.value);
    if (maxCost.value) budget.max_cost_usd = Number(maxCost.value);
    if (timeout.value) budget.timeout_s = Number(timeout.value);
    if (Object.keys(budget).length) body.budget = budget;
    button.disabled = true;
    try {
      const task = await api('/api/v1/tasks', {method: 'POST', json: body, headers: {'Idempotency-Key': idempotencyKey}});
      go(`#/tasks/${task.id}`);
    } catch (error) {
      problem.append(errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  text.focus();
}
