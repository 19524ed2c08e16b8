/*
 * The manager's API: the one place the console calls it.
 *
 * URLs are relative ("job/list", not "/job/list") so the console also works when the manager
 * is published under a path prefix by a proxy. Every change carries the session's CSRF token.
 *
 * Envelope: {"errno": 0, "msg": "success", "data": ...}; on error errno is -1, the HTTP status
 * 4xx, msg starts with the bad field's name and "field" names it.
 */
const $ = window.jQuery;

let csrfToken = null;

/** The session's CSRF token, from auth/me: sent with every request from then on. */
export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** Call the manager API. Resolves with `data`, rejects with {msg, field, status}. */
export function api(method, url, params) {
  return new Promise(function (resolve, reject) {
    $.ajax({
      url: url,
      method: method,
      data: params,           // GET: query string; POST: application/x-www-form-urlencoded
      dataType: 'json',
      // No cache: false: its "_=" parameter would be refused as an unknown field; JSON
      // answers carry Cache-Control: no-store instead.
      timeout: 15000,
      headers: csrfToken ? { 'X-CSRF-Token': csrfToken } : {}
    }).done(function (resp) {
      if (resp && resp.errno === 0) {
        resolve(resp.data);
      } else {
        reject(apiError(resp, 200));
      }
    }).fail(function (xhr, textStatus) {
      if (xhr.status === 401) {
        // Session expired or logged out elsewhere: back to the login page, which comes back
        // to what the address asked for (a run's link from a notification, a view).
        window.location.assign('login.html' + window.location.hash);
        return;
      }
      let body = xhr.responseJSON;
      if (!body && xhr.responseText) {
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      }
      if (body && typeof body === 'object' && 'errno' in body) {
        reject(apiError(body, xhr.status));
      } else if (xhr.status === 0) {
        reject({ msg: textStatus === 'timeout' ? 'request timed out' : 'manager unreachable', status: 0 });
      } else {
        reject({ msg: 'HTTP ' + xhr.status + ' ' + (xhr.statusText || textStatus), status: xhr.status });
      }
    });
  });
}

export function apiError(body, status) {
  const msg = (body && body.msg) ? String(body.msg) : 'unknown error';
  let field = body && body.field ? String(body.field) : null;
  if (!field) {
    const m = /^([A-Za-z][A-Za-z0-9.[\]]*)\s*:/.exec(msg);   // "cronExpr: minute field ..."
    if (m) { field = m[1]; }
  }
  return { msg: msg, field: field, status: status };
}

// ------------------------------------------------------------- notifications --

/** Channels, the cluster's rules and the outbox (README, "Notifications"). */
export const notifyApi = {
  /** Admins: [{name, type, settings, secretsSet}] (no secret's value); others: [{name, type}]. */
  channels: () => api('GET', 'notify/channels'),
  /** [{type, label, settings: [{name, label, description, kind, required, secret, ...}]}]. */
  types: () => api('GET', 'notify/types'),
  /** Create or replace; a secret left out keeps its stored value. Answers the public view. */
  saveChannel: (channel) => api('POST', 'notify/channel/save', { channel: JSON.stringify(channel) }),
  deleteChannel: (name) => api('POST', 'notify/channel/delete', { name: name }),
  /** {channel, delivered, error}: answered 200 whether or not it arrived. */
  testChannel: (name) => api('POST', 'notify/channel/test', { name: name }),
  /** {rules: [{channel, on}], minInterval} for worker_offline, worker_online. */
  rules: () => api('GET', 'notify/rules'),
  saveRules: (rules, minInterval) => api('POST', 'notify/rules/save', {
    rules: JSON.stringify(rules), minInterval: minInterval
  }),
  /** {events: [...], counts: {queued, sent, failed}}, newest first. */
  outbox: (state, limit) => {
    const params = { limit: limit };
    if (state) { params.state = state; }
    return api('GET', 'notify/outbox', params);
  }
};

// ------------------------------------------------------------------ run log --

/** The run log beyond one job's page (README, "Chains"). */
export const logApi = {
  /** One chain run's step runs, by step then attempt: the first 1,000 (a chain run holds at
   *  most 500 steps; each retry of a step is one more). */
  chainSteps: (chainId) => api('GET', 'job/log', { chainId: chainId, limit: 1000 })
};

// ---------------------------------------------------------------- dashboard --

/** The dashboard's figures (README, "Dashboard"): window "hour" or "day". */
export const dashboardApi = {
  summary: (window) => api('GET', 'dashboard/summary', { window: window })
};

// -------------------------------------------------------------------- teams --

/** Teams and their secrets (README, "Security" and "Secrets"). */
export const teamApi = {
  /** Admins: every team {name, members: [{username, role}], createdAt}; others: their own,
   *  each with their `role` in it. */
  list: () => api('GET', 'team/list'),
  save: (name) => api('POST', 'team/save', { name: name }),
  /** 409 while the team has jobs or secrets (the message names them). */
  remove: (name) => api('POST', 'team/delete', { name: name }),
  saveMember: (team, username, role) => api('POST', 'team/member/save', { team: team, username: username, role: role }),
  removeMember: (team, username) => api('POST', 'team/member/delete', { team: team, username: username }),
  /** {team, secrets: [{name, keyId, updatedAt, updatedBy}]}: never a value. */
  secrets: (team) => api('GET', 'secret/list', { team: team }),
  /** The value goes in the POST body (a value in the URL is refused). */
  saveSecret: (team, name, value) => api('POST', 'secret/save', { team: team, name: name, value: value }),
  /** 409 naming the jobs while a job of the team names it. */
  removeSecret: (team, name) => api('POST', 'secret/delete', { team: team, name: name })
};
