// The REST API of the same origin: tokens, refresh, errors in one shape.
//
// Tokens live in sessionStorage: they survive a reload of the tab, not the tab
// itself, and no other site can read them. The access token is refreshed shortly
// before it expires (and once more when a request gets 401); when refreshing
// fails the session is over and the app returns to the login page.

import {webAddress} from './dom.js';

const STORE = 'devteam.session';
const EARLY_S = 30;

export class ApiError extends Error {
  constructor(status, code, message, {details = [], retryAfter = null, requestId = null} = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }

  /** What to tell the user, in a sentence. */
  describe() {
    if (this.status === 429) {
      const wait = this.retryAfter !== null ? `in ${this.retryAfter} s` : 'in a moment';
      return `Too many requests: try again ${wait}.`;
    }
    if (this.status === 0) return this.message;
    return this.message || `The server answered ${this.status}.`;
  }
}

export const session = {
  read() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE) || 'null');
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(STORE, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(STORE);
  },
  get user() {
    return this.read()?.user || null;
  },
};

function keep(tokens, user, {sso = false} = {}) {
  const previous = session.read() || {};
  session.save({
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token || previous.refresh_token || null,
    expires_at: Date.now() + (Number(tokens.expires_in) || 300) * 1000,
    user: user || previous.user || null,
    sso: sso || previous.sso || false,
  });
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  const error = body?.error || {};
  const retry = response.headers.get('Retry-After');
  const retryAfter = retry !== null && /^\d+$/.test(retry.trim()) ? Number(retry) : null;
  return new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || `${response.status} ${response.statusText}`,
    {details: error.details || [], retryAfter, requestId: error.request_id || null},
  );
}

async function send(path, options) {
  try {
    return await fetch(path, options);
  } catch {
    throw new ApiError(0, 'network_error', 'The server cannot be reached; check the connection.');
  }
}

/** Log in with a password; keeps the tokens and the user. */
export async function login(username, password) {
  const response = await send('/api/v1/auth/token', {
    method: 'POST',
    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams({username, password}),
  });
  if (!response.ok) throw await errorOf(response);
  keep(await response.json(), null);
  const user = await api('/api/v1/users/me');
  session.save({...session.read(), user});
  return user;
}

let refreshing = null;

/** A new token pair; one refresh at a time, since a refresh token works once. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const current = session.read();
      if (!current?.refresh_token) throw expired();
      // Single sign-on tokens are the provider's: the service renews them there.
      const path = current.sso ? '/api/v1/auth/oidc/refresh' : '/api/v1/auth/refresh';
      const response = await send(path, {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({refresh_token: current.refresh_token}),
      });
      if (!response.ok) {
        if (response.status === 401 || response.status === 403) {
          endSession();
          throw expired();
        }
        throw await errorOf(response);
      }
      keep(await response.json(), current.user);
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

function expired() {
  return new ApiError(401, 'session_expired', 'Your session has expired; log in again.');
}

/** Forget the session and tell the app (which shows the login page). */
export function endSession(reason = 'expired') {
  session.clear();
  window.dispatchEvent(new CustomEvent('devteam:session-ended', {detail: {reason}}));
}

/** A valid access token, refreshed first when it is about to expire. */
export async function accessToken() {
  const current = session.read();
  if (!current?.access_token) throw expired();
  if (current.expires_at - Date.now() < EARLY_S * 1000) {
    await refresh();
    return session.read().access_token;
  }
  return current.access_token;
}

/**
 * Call the API: `api('/api/v1/tasks', {method: 'POST', json: {...}})`.
 * Returns the parsed JSON (null for 204); throws ApiError with the API's code.
 */
export async function api(path, {method = 'GET', json, query, headers = {}} = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const attempt = async () => {
    const options = {method, headers: {...headers, Authorization: `Bearer ${await accessToken()}`}};
    if (json !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(json);
    }
    return send(url, options);
  };
  let response = await attempt();
  if (response.status === 401) {
    await refresh(); // the token was revoked or expired early: once more with a new one
    response = await attempt();
    if (response.status === 401) {
      endSession();
      throw await errorOf(response);
    }
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

/** Log out: revoke the refresh family on the server, forget the tokens here. */
export async function logout() {
  try {
    await api('/api/v1/auth/logout', {method: 'POST'});
  } catch {
    // the session ends here either way
  }
  session.clear();
}

/** The agent types the server has (for the pickers), or the four API.md names. */
export async function agentTypes() {
  try {
    const agents = await api('/api/v1/agents');
    const types = agents.map((a) => a.agent_type).filter(Boolean);
    if (types.length) return types;
  } catch {
    // fall back to the contract's list
  }
  return ['research', 'codebase_analyzer', 'frontend', 'backend'];
}

/**
 * The identity provider the server trusts, when a browser can sign in there:
 * `GET /api/v1/auth/providers` → `identity_provider` with a client and an
 * authorization endpoint; null otherwise (password only).
 */
export async function identityProvider() {
  try {
    const response = await fetch('/api/v1/auth/providers', {headers: {Accept: 'application/json'}});
    if (!response.ok) return null;
    const provider = (await response.json()).identity_provider;
    if (!provider?.client_id || !webAddress(provider.authorization_endpoint)) return null;
    return provider;
  } catch {
    return null;
  }
}

const SSO_STORE = 'devteam.sso';

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

function redirectUri() {
  return `${window.location.origin}/ui/`;
}

/**
 * Go to the provider to sign in: the authorization code flow with PKCE (RFC 7636).
 * The verifier and state wait in sessionStorage for the way back (`finishSignIn`).
 */
export async function startSignIn(provider, next) {
  const verifier = randomText(48);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const state = randomText(24);
  sessionStorage.setItem(SSO_STORE, JSON.stringify({verifier, state, next}));
  const url = new URL(provider.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: provider.client_id,
    response_type: 'code',
    redirect_uri: redirectUri(),
    scope: provider.scopes,
    state,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: 'S256',
    resource: provider.audience,
  }).toString();
  window.location.assign(url.toString());
}

/**
 * Back from the provider with `?code=&state=` (or `?error=`): trade the code for
 * tokens through the service and keep them. Returns the route to go to next.
 */
export async function finishSignIn(query) {
  const pending = JSON.parse(sessionStorage.getItem(SSO_STORE) || 'null');
  sessionStorage.removeItem(SSO_STORE);
  if (query.get('error')) {
    throw new ApiError(401, query.get('error'),
      `The identity provider did not sign you in: ${query.get('error_description') || query.get('error')}.`);
  }
  if (!pending || pending.state !== query.get('state')) {
    throw new ApiError(400, 'bad_state', 'This sign-in did not start here; try again.');
  }
  const response = await send('/api/v1/auth/oidc/token', {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({
      code: query.get('code'),
      code_verifier: pending.verifier,
      redirect_uri: redirectUri(),
    }),
  });
  if (!response.ok) throw await errorOf(response);
  keep(await response.json(), null, {sso: true});
  const user = await api('/api/v1/users/me');
  session.save({...session.read(), user});
  return pending.next || '#/tasks';
}
