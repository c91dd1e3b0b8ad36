// Live task events over the WebSocket (`/api/v1/ws`), resumed without gap or duplicate.
//
// One connection serves every page. Each follower of a task remembers the last
// `seq` it was handed; after a dropped connection (or a `lagged` notice) the task
// is subscribed again with `after` = that seq, so the server replays exactly what
// was missed, and an event at or below it is never handed on twice.

import {accessToken, refresh} from './api.js';

const PING_MS = 25000;
const MAX_DELAY_MS = 10000;

class Live {
  constructor() {
    this.follows = new Map();
    this.socket = null;
    this.failures = 0;
    this.timer = null;
    this.pinger = null;
    this.state = 'idle';
    this.listeners = new Set();
  }

  /** Hear about the connection: 'connecting', 'live', 'reconnecting', 'idle'. */
  onState(listener) {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  setState(state) {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  /**
   * Follow a task's events after `after`: `onEvent(event)` once per event, in seq
   * order; `onProblem(message)` for an `error` about it. Returns the unfollow function.
   * Several followers of one task (two pages, say) share one subscription.
   */
  follow(taskId, after, onEvent, onProblem = () => {}) {
    const follower = {last: after, onEvent, onProblem};
    let entry = this.follows.get(taskId);
    if (!entry) {
      entry = {followers: new Set(), seen: after};
      this.follows.set(taskId, entry);
    }
    entry.followers.add(follower);
    if (this.socket?.readyState === WebSocket.OPEN) {
      // A new follower may need events the subscription has passed: replay from its `after`.
      if (entry.followers.size === 1 || after < entry.seen) this.subscribe(taskId, entry);
    } else {
      this.connect();
    }
    return () => {
      if (!entry.followers.delete(follower) || entry.followers.size) return;
      if (this.follows.get(taskId) === entry) this.follows.delete(taskId);
      this.sendJson({type: 'unsubscribe', task_id: taskId});
    };
  }

  /** (Re)subscribe from the earliest event any follower still needs. */
  subscribe(taskId, entry) {
    entry.seen = Math.min(...[...entry.followers].map((f) => f.last));
    this.sendJson({type: 'subscribe', task_id: taskId, after: entry.seen});
  }

  sendJson(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  async connect() {
    if (this.socket || this.timer) return;
    this.setState(this.failures ? 'reconnecting' : 'connecting');
    let token;
    try {
      token = await accessToken();
    } catch {
      return; // no session: the app is on its way to the login page
    }
    if (this.socket) return;
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${window.location.host}/api/v1/ws?access_token=${encodeURIComponent(token)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.failures = 0;
      this.setState('live');
      for (const [taskId, entry] of this.follows) this.subscribe(taskId, entry);
      this.pinger = setInterval(() => this.sendJson({type: 'ping'}), PING_MS);
    });
    socket.addEventListener('message', (message) => this.receive(message.data));
    socket.addEventListener('close', (event) => this.closed(socket, event.code));
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const entry = this.follows.get(message.task_id);
    if (!entry) return;
    if (message.type === 'event') {
      const event = message.event;
      entry.seen = Math.max(entry.seen, event.seq);
      for (const follower of entry.followers) {
        if (event.seq <= follower.last) continue; // this one has it already
        follower.last = event.seq;
        follower.onEvent(event);
      }
    } else if (message.type === 'lagged') {
      this.subscribe(message.task_id, entry); // from the followers' own last seq
    } else if (message.type === 'error') {
      if (message.code === 'not_found') this.follows.delete(message.task_id);
      for (const follower of entry.followers) follower.onProblem(message.message || message.code);
    }
  }

  async closed(socket, code) {
    if (this.socket !== socket) return;
    this.socket = null;
    clearInterval(this.pinger);
    if (!this.follows.size) {
      this.setState('idle');
      return;
    }
    this.failures += 1;
    this.setState('reconnecting');
    if (code === 4401) {
      try {
        await refresh(); // the token expired: the next connection uses a new one
      } catch {
        this.follows.clear();
        this.setState('idle');
        return;
      }
    }
    const delay = Math.min(MAX_DELAY_MS, 250 * 2 ** Math.min(this.failures - 1, 6));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay * (0.75 + Math.random() / 2));
  }

  /** Forget every task and close (at log-out). */
  stop() {
    this.follows.clear();
    clearTimeout(this.timer);
    this.timer = null;
    clearInterval(this.pinger);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
    this.setState('idle');
  }
}

export const live = new Live();
