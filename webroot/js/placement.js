/*
 * Where jobs run (README, "Host groups and routing"): the job dialog's "Where it runs" part
 * (the job's hostGroup, typed as "group=db, zone=eu-1", and its routing), and how the tables
 * show a job's placement and a worker's labels. app.js calls fillJobPlacement when the dialog
 * opens and readJobPlacement when it saves, so what the dialog shows is what it saves back.
 * Labels come from users and workers: inserted with .text(), never as HTML.
 */
const $ = window.jQuery;

// gdts/routing.py ROUTINGS, each with what it guarantees in one line.
export const ROUTINGS = [
  ['hash', 'hash', 'One worker runs every tick while it lives; the next in the order takes over when it goes.'],
  ['random', 'random', 'A new worker drawn for each tick, evenly, the same draw on every worker.'],
  ['roundRobin', 'roundRobin', 'The members take turns, one tick each (exact for a fixed-step schedule).'],
  ['weighted', 'weighted', 'Ticks shared in proportion to each worker’s weight.'],
  ['leastBusy', 'leastBusy', 'The member with the fewest runs going on, as it said within the last second.']
];
export const DEFAULT_ROUTING = 'hash';

function str(v) { return (v === null || v === undefined) ? '' : String(v); }

function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

/** An object of labels as the dialog shows it: "group=db, zone=eu-1" (keys sorted). */
export function labelsText(labels) {
  if (!isObject(labels)) { return ''; }
  return Object.keys(labels).sort().map(function (k) { return k + '=' + str(labels[k]); }).join(', ');
}

/**
 * "group=db, zone=eu-1" (commas or new lines between entries) -> {group: "db", zone: "eu-1"};
 * empty -> null (no host group: any worker). Throws {field, msg} naming the first malformed
 * entry: one without "=", with nothing on one side of it, or a key given twice. What a key or
 * value may hold is the server's to say (its 400 names hostGroup.<key>).
 */
export function parseHostGroup(text) {
  const group = {};
  const entries = str(text).split(/[,\n]/).map(function (e) { return e.trim(); }).filter(Boolean);
  entries.forEach(function (entry) {
    const at = entry.indexOf('=');
    const key = at < 0 ? '' : entry.slice(0, at).trim();
    const value = at < 0 ? '' : entry.slice(at + 1).trim();
    if (!key || !value) {
      throw {
        field: 'hostGroup',
        msg: 'hostGroup: “' + entry + '” is not key=value (write e.g. group=db, zone=eu-1)'
      };
    }
    if (Object.prototype.hasOwnProperty.call(group, key)) {
      throw { field: 'hostGroup', msg: 'hostGroup: the key “' + key + '” is given twice' };
    }
    group[key] = value;
  });
  return entries.length ? group : null;
}

/** "on {group=db} · roundRobin": a job's placement in a line, or '' for any worker by hash. */
export function placementText(job) {
  const group = labelsText(job && job.hostGroup);
  const routing = str(job && job.routing) || DEFAULT_ROUTING;
  const parts = [];
  if (group) { parts.push('on {' + group + '}'); }
  if (routing !== DEFAULT_ROUTING) { parts.push(routing); }
  return parts.join(' · ');
}

/** A worker's labels as badges (key=value), or a muted "none". */
export function labelBadges(labels) {
  const keys = isObject(labels) ? Object.keys(labels).sort() : [];
  if (!keys.length) { return [$('<span class="text-muted small">none</span>')]; }
  return keys.map(function (k) {
    return $('<span class="badge text-bg-light border me-1 worker-label"></span>').text(k + '=' + str(labels[k]));
  });
}

let ready = false;

function setup() {
  if (ready) { return; }
  ready = true;
  const $select = $('#job-routing');
  ROUTINGS.forEach(function (r) { $select.append($('<option></option>').val(r[0]).text(r[1])); });
  $select.on('change', showRoutingHelp);
  $('#job-hostGroup').on('input', summarize);
  $select.on('change', summarize);
}

function showRoutingHelp() {
  const chosen = ROUTINGS.filter(function (r) { return r[0] === $('#job-routing').val(); })[0];
  $('#job-routing-help').text(chosen ? chosen[2] : '');
}

function summarize() {
  const group = str($('#job-hostGroup').val()).trim();
  const routing = str($('#job-routing').val());
  const parts = [];
  if (group) { parts.push('{' + group + '}'); }
  if (routing && routing !== DEFAULT_ROUTING) { parts.push(routing); }
  $('#job-placement-summary').text(parts.length ? '(' + parts.join(' · ') + ')' : '');
}

/** Show the job's host group and routing (a new job: any worker, hash); unfolded when set. */
export function fillJobPlacement(job) {
  setup();
  $('#job-hostGroup').val(labelsText(job && job.hostGroup));
  const routing = str(job && job.routing) || DEFAULT_ROUTING;
  $('#job-routing').val(routing);
  showRoutingHelp();
  summarize();
  const collapse = window.bootstrap.Collapse.getOrCreateInstance(document.getElementById('job-placement'), { toggle: false });
  if (placementText(job)) { collapse.show(); } else { collapse.hide(); }
}

/** The job's placement fields from the dialog: {routing, hostGroup?} (no host group: left out,
 *  which clears one saved before). Throws {field, msg} for a malformed entry. */
export function readJobPlacement() {
  const out = { routing: str($('#job-routing').val()) || DEFAULT_ROUTING };
  const group = parseHostGroup($('#job-hostGroup').val());
  if (group) { out.hostGroup = group; }
  return out;
}
