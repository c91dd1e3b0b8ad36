// What each role may do, as API.md's roles say; the buttons follow it, and the
// server checks again (a refusal is shown as the error it is).

import {session} from './api.js';

const MAY = {
  admin: {submit: true, approveAny: true, approveOwn: true, cancelAny: true, cancelOwn: true, admin: true, manageProjects: true},
  operator: {submit: true, approveOwn: true, cancelAny: true, cancelOwn: true, manageProjects: true},
  developer: {submit: true, approveOwn: true, cancelOwn: true},
  viewer: {},
};

function rights() {
  return MAY[session.user?.role] || {};
}

export const may = {
  submit: () => Boolean(rights().submit),
  admin: () => Boolean(rights().admin),
  manageProjects: () => Boolean(rights().manageProjects),
  approve(task) {
    const r = rights();
    return Boolean(r.approveAny || (r.approveOwn && task.created_by === session.user?.id));
  },
  cancel(task) {
    const r = rights();
    return Boolean(r.cancelAny || (r.cancelOwn && task.created_by === session.user?.id));
  },
};
