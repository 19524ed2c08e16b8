/*
 * Chain runs in the log view (README, "Chains"). A job's runs that are steps of a chain run
 * carry its chainId ("<head job>@<generation>/<planned ms>"); the log view shows them as one
 * card per chain run: its head job, its planned time and its overall status (the worst of its
 * steps, by their last attempts; "running" while a step has no run yet), which opens (click)
 * to every step of the chain run, from /job/log?chainId=: its position "k/n", its job (a link
 * to that run in the job's own log), status, times and output.
 *
 * A chain run's steps are fetched once when its card first shows, and again on the log's
 * refresh only while a step is missing (a chain run under way), or when the card is opened.
 * app.js owns the log view and hands this module its helpers in init(). Everything from jobs
 * and runs is inserted with .text(), never as HTML.
 */
import { logApi } from './api.js';
import { runLinkHash } from './links.js';

const $ = window.jQuery;

// The worst first: what a chain run that did not succeed shows (a stopped chain run's later
// steps are skipped, so the step that stopped it is worse than skipped).
export const WORST_FIRST = ['failed', 'lost', 'limit', 'timeout', 'killed', 'missed', 'skipped', 'succeeded'];
export const RUNNING = 'running';

let ui = null;          // app.js's helpers, from init()
let known = {};         // chainId -> {runs, total, settled}: its steps as last fetched
let loading = {};       // chainId -> the request under way
let opened = {};        // chainId -> true while its card is open
let shownOutputs = {};  // a step run's key -> true while its output shows

function str(v) { return (v === null || v === undefined) ? '' : String(v); }

/** "nightly@42/1767225600000" -> {head: "nightly", generation: 42, planTime: 1767225600000}
 *  (job names never hold "/", and may hold "@"); null for anything else. */
export function parseChainId(id) {
  const m = /^([^/]+)@([0-9]+)\/([0-9]+)$/.exec(str(id));
  return m ? { head: m[1], generation: Number(m[2]), planTime: Number(m[3]) } : null;
}

/** A step run's place for people: "2/4" (chainStep counts from 0). */
export function stepPosition(run) {
  return (Number(run.chainStep) + 1) + '/' + str(run.chainSteps);
}

/** Each step's last attempt, by step index. */
export function lastAttempts(runs) {
  const last = {};
  runs.forEach(function (r) {
    const step = Number(r.chainStep);
    if (!(step in last) || (Number(r.attempt) || 1) >= (Number(last[step].attempt) || 1)) { last[step] = r; }
  });
  return last;
}

/** A chain run's overall status from its step runs (``total``: how many steps it has):
 *  "running" while a step has no run, else the worst of the steps' last attempts. */
export function chainStatus(runs, total) {
  const last = lastAttempts(runs);
  const steps = Object.keys(last);
  if (!(total > 0) || steps.length < total) { return RUNNING; }
  let worst = WORST_FIRST.length - 1;
  steps.forEach(function (step) {
    const rank = WORST_FIRST.indexOf(str(last[step].status));
    worst = Math.min(worst, rank < 0 ? 0 : rank);   // a status this console does not know: shown as a failure
  });
  return WORST_FIRST[worst];
}

/** A page of a job's runs (newest first) as the log shows them: {run} for a run of its own,
 *  {chainId, runs} for a chain run (at the place of its newest run on the page). */
export function groupRuns(runs) {
  const items = [];
  const chains = {};
  runs.forEach(function (r) {
    const id = str(r.chainId);
    if (!id) { items.push({ run: r }); return; }
    if (!chains[id]) {
      chains[id] = { chainId: id, runs: [] };
      items.push(chains[id]);
    }
    chains[id].runs.push(r);
  });
  return items;
}

/** Bind once. helpers: {statusBadge, timeSpan, fmtTime, fmtDuration, outputBlock, runKey, toast}. */
export function init(helpers) {
  ui = helpers;
  $('#log-list').on('click', '.chain-run > .card-header', function (ev) {
    if ($(ev.target).closest('a').length) { return; }
    toggle($(this).closest('.chain-run'));
  });
}

/** A new job's log: nothing known of its chain runs. */
export function forget() {
  known = {};
  loading = {};
  opened = {};
  shownOutputs = {};
}

/** Open the card of the chain run that holds a job's run (a link named that run). */
export function open($card) {
  if ($card.length && !opened[$card.attr('data-chain')]) { toggle($card); }
}

/** The card of one chain run, as a job's log shows it: item from groupRuns. */
export function chainCard(item, key) {
  const id = item.chainId;
  const parsed = parseChainId(id);
  const mine = item.runs;
  const $card = $('<div class="card mb-2 chain-run"></div>').attr('data-key', key).attr('data-chain', id)
    .attr('data-runs', mine.map(function (r) { return str(r.planTime) + ':' + str(Number(r.attempt) || 1); }).join(' '));
  const $toggle = $('<button type="button" class="btn btn-link btn-sm p-0 chain-toggle" aria-expanded="false"></button>')
    .text('Chain run');
  const $head = $('<div class="card-header d-flex flex-wrap align-items-center gap-2 py-1 chain-header"></div>')
    .append($toggle)
    .append($('<span class="badge text-bg-light border chain-status">…</span>'))
    .append($('<span class="small"></span>').text('of ').append(
      $('<strong class="text-break chain-head"></strong>').text(parsed ? parsed.head : id)))
    .append($('<span class="small chain-planned"></span>').text('planned ').append(
      parsed ? ui.timeSpan(parsed.planTime) : $('<span></span>').text('–')))
    .append($('<span class="small text-muted ms-auto chain-mine"></span>').text(
      'this job: step ' + unique(mine.map(stepPosition)).join(', ')));
  const $body = $('<div class="card-body py-2 chain-steps d-none"></div>');
  $card.append($head).append($body);
  if (known[id]) { paint($card, known[id]); }
  if (!known[id] || !known[id].settled || opened[id]) { fetch(id); }
  if (opened[id]) { show($card, true); }
  return $card;
}

/** On the log's refresh: fetch again the chain runs under way that the page shows. */
export function refresh($list) {
  $list.children('.chain-run').each(function () {
    const id = $(this).attr('data-chain');
    if (!known[id] || !known[id].settled) { fetch(id); }
  });
}

function unique(list) { return list.filter(function (v, i) { return list.indexOf(v) === i; }); }

function toggle($card) {
  const id = $card.attr('data-chain');
  opened[id] = !opened[id];
  show($card, opened[id]);
  if (opened[id]) { fetch(id); }   // what a step became since: a retry, a late result
}

function show($card, isOpen) {
  $card.find('.chain-toggle').attr('aria-expanded', String(isOpen));
  $card.children('.chain-steps').toggleClass('d-none', !isOpen);
}

function cards(id) {
  return $('#log-list').children('.chain-run').filter(function () { return $(this).attr('data-chain') === id; });
}

function fetch(id) {
  if (loading[id]) { return loading[id]; }
  loading[id] = logApi.chainSteps(id).then(function (runs) {
    runs = Array.isArray(runs) ? runs : [];
    const total = runs.reduce(function (n, r) { return Math.max(n, Number(r.chainSteps) || 0); }, 0);
    const info = { runs: runs, total: total, settled: total > 0 && chainStatus(runs, total) !== RUNNING };
    known[id] = info;
    cards(id).each(function () { paint($(this), info); });
  }, function (err) {
    cards(id).find('.chain-status').text('?').attr('title', 'Could not load the chain run: ' + str(err && err.msg));
    ui.toast('Could not load the chain run ' + id + ': ' + str(err && err.msg), 'danger');
  }).finally(function () { delete loading[id]; });
  return loading[id];
}

function paint($card, info) {
  const status = chainStatus(info.runs, info.total);
  $card.attr('data-status', status);
  $card.find('.chain-status').replaceWith(ui.statusBadge(status).addClass('chain-status')
    .attr('title', info.total ? info.total + ' steps' : ''));
  const $body = $card.children('.chain-steps').empty();
  if (!info.runs.length) {
    $body.append($('<p class="text-muted small mb-0"></p>').text('No step has a run yet.'));
    return;
  }
  const $rows = $('<tbody></tbody>');
  info.runs.forEach(function (r) { stepRows(r).forEach(function ($tr) { $rows.append($tr); }); });
  const missing = info.total - Object.keys(lastAttempts(info.runs)).length;
  $body.append($('<div class="table-responsive"></div>').append(
    $('<table class="table table-sm align-middle mb-0 chain-steps-table"></table>')
      .append($('<thead><tr><th scope="col">Step</th><th scope="col">Job</th><th scope="col">Status</th>' +
        '<th scope="col">Started</th><th scope="col">Took</th><th scope="col"></th></tr></thead>'))
      .append($rows)));
  if (missing > 0) {
    $body.append($('<p class="small text-muted mt-1 mb-0 chain-waiting"></p>')
      .text(missing === 1 ? '1 step has no run yet.' : missing + ' steps have no run yet.'));
  }
}

function stepRows(r) {
  const key = 'chain|' + ui.runKey(r);
  const start = Number(r.startTime), end = Number(r.endTime);
  const attempt = Number(r.attempt) || 1;
  const $job = $('<a class="text-break step-job"></a>').text(str(r.jobName))
    .attr('href', runLinkHash(str(r.jobName), r.planTime, attempt))
    .attr('title', 'This run in the log of ' + str(r.jobName));
  const $status = $('<td class="step-status"></td>').append(ui.statusBadge(r.status));
  if (attempt > 1) { $status.append($('<span class="small text-muted ms-1"></span>').text('attempt ' + attempt)); }
  if (str(r.err)) { $status.append($('<div class="small text-muted text-break step-err"></div>').text(str(r.err))); }
  const $tr = $('<tr class="chain-step"></tr>').attr('data-status', str(r.status)).attr('data-step', str(r.chainStep))
    .append($('<td class="text-nowrap step-position"></td>').text(stepPosition(r)))
    .append($('<td></td>').append($job))
    .append($status)
    .append($('<td class="text-nowrap small step-started"></td>').text(start > 0 ? ui.fmtTime(start) : 'not started'))
    .append($('<td class="text-nowrap small step-took"></td>').text(start > 0 && end >= start ? ui.fmtDuration(end - start) : '–'));
  const $cell = $('<td class="text-end"></td>');
  $tr.append($cell);
  if (!str(r.output)) {
    $cell.append($('<span class="small text-muted">no output</span>'));
    return [$tr];
  }
  const $out = $('<tr class="chain-step-output"></tr>').toggleClass('d-none', !shownOutputs[key])
    .append($('<td colspan="6"></td>').append(ui.outputBlock(key, str(r.output), r)));
  const $btn = $('<button type="button" class="btn btn-link btn-sm p-0 step-output-toggle"></button>')
    .text(shownOutputs[key] ? 'Hide output' : 'Output')
    .attr('aria-expanded', String(!!shownOutputs[key]));
  $btn.on('click', function () {
    shownOutputs[key] = !shownOutputs[key];
    $out.toggleClass('d-none', !shownOutputs[key]);
    $btn.text(shownOutputs[key] ? 'Hide output' : 'Output').attr('aria-expanded', String(shownOutputs[key]));
  });
  $cell.append($btn);
  return [$tr, $out];
}
