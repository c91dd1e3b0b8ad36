// Projects: the git repositories the agents work on. Older servers have no
// projects API; the page says so instead of failing.

import {ApiError, api} from '../api.js';
import {clear, field, h} from '../dom.js';
import {may} from '../roles.js';
import {errorBox} from './parts.js';

export async function projectsPage(main) {
  main.append(h('h1', {}, 'Projects'));
  const content = h('div');
  main.append(content);

  async function load() {
    let page;
    try {
      page = await api('/api/v1/projects');
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
        clear(content).append(h('div', {class: 'empty'},
          h('p', {}, 'No projects API: this server does not manage projects.'),
          h('p', {class: 'muted'}, 'Tasks can still name a project by its id when you submit them.')));
        return;
      }
      throw error;
    }
    const items = page.items || [];
    clear(content).append(items.length
      ? h('div', {class: 'table-wrap'}, h('table', {},
        h('caption', {class: 'visually-hidden'}, 'Projects'),
        h('thead', {}, h('tr', {}, ['Name', 'Repository', 'Branch', 'State'].map((t) => h('th', {scope: 'col'}, t)))),
        h('tbody', {}, items.map((p) => h('tr', {},
          h('td', {'data-label': 'Name'}, p.name),
          h('td', {'data-label': 'Repository'}, h('code', {}, p.git_url || '')),
          h('td', {'data-label': 'Branch'}, p.default_branch || '—'),
          h('td', {'data-label': 'State'}, h('span', {class: `badge state-${p.state}`}, p.state || '?'),
            p.error ? h('span', {class: 'muted'}, ` ${typeof p.error === 'string' ? p.error : p.error.message || ''}`) : null))))))
      : h('p', {class: 'empty'}, 'No projects yet.'));
    if (may.manageProjects()) content.append(addForm());
  }

  function addForm() {
    const name = h('input', {name: 'name', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}'});
    const url = h('input', {name: 'git_url', required: true, placeholder: 'https://… or git://… or ssh://…'});
    const branch = h('input', {name: 'default_branch', placeholder: 'main'});
    const problem = h('div', {role: 'alert'});
    const form = h('form', {class: 'card', 'aria-labelledby': 'add-project'},
      h('h2', {id: 'add-project'}, 'Add a project'),
      h('div', {class: 'grid'}, field('Name', name), field('Git URL', url), field('Default branch (optional)', branch)),
      problem, h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Add project')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      problem.replaceChildren();
      const body = {name: name.value.trim(), git_url: url.value.trim()};
      if (branch.value.trim()) body.default_branch = branch.value.trim();
      try {
        await api('/api/v1/projects', {method: 'POST', json: body});
        await load();
      } catch (error) {
        problem.append(errorBox(error));
      }
    });
    return form;
  }

  await load();
}
