// Log in with a username and password (and, when the server offers one, an
// identity provider: see `loginProviders`).

import {ApiError, identityProvider, login, session, startSignIn} from '../api.js';
import {field, h} from '../dom.js';
import {go, notify} from '../nav.js';

function nextRoute(query) {
  const next = query.get('next') || '';
  return next.startsWith('#/') && !next.startsWith('#/login') ? next : '#/tasks';
}

export async function loginPage(main, {query}) {
  if (session.read()?.access_token && session.user) {
    go(nextRoute(query));
    return;
  }
  const username = h('input', {name: 'username', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false'});
  const password = h('input', {name: 'password', type: 'password', autocomplete: 'current-password', required: true});
  const problem = h('p', {class: 'error', role: 'alert', hidden: true});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Log in');
  const providers = h('div', {class: 'providers'});
  const form = h('form', {class: 'card narrow', 'aria-labelledby': 'login-title'},
    h('h1', {id: 'login-title'}, 'Log in to DevTeam'),
    field('Username', username),
    field('Password', password),
    problem,
    h('div', {class: 'actions'}, button),
    providers,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problem.hidden = true;
    button.disabled = true;
    try {
      await login(username.value.trim(), password.value);
      notify('');
      go(nextRoute(query));
    } catch (error) {
      problem.textContent = error instanceof ApiError && error.status === 401
        ? 'Wrong username or password.'
        : (error.describe ? error.describe() : String(error));
      problem.hidden = false;
      password.select();
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  username.focus();

  // Single sign-on: the identity provider the server trusts, if any.
  const provider = await identityProvider();
  if (provider) {
    const host = new URL(provider.issuer).host;
    const button = h('button', {type: 'button', class: 'button'}, `Sign in with ${host}`);
    button.addEventListener('click', () => startSignIn(provider, nextRoute(query)));
    providers.append(h('p', {class: 'muted'}, 'or'), button);
  }
}
