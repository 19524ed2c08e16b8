/*
 * Runs going on, in the log view (README, "Live output"). Above the finished runs, the job's
 * runs going on now (from job/running, refreshed with the log); opening one streams its output
 * from job/output/stream (Server-Sent Events: an EventSource to the same origin, which the
 * manager's connect-src 'self' allows) as it grows, until the run's record is stored: then the
 * card goes and the log shows the finished run in its place. Kill is one click from there
 * (job/kill: every run of the job going on). app.js owns the log view and hands this module
 * its helpers in init(). Output is inserted with .text(), never as HTML.
 */
import { api } from './api.js';

const $ = window.jQuery;

let ui = null;        // app.js's helpers, from init()
let jobName = null;   // the job whose log shows
let canKill = false;
let streams = {};     // a run's key -> its EventSource while its output shows
let ended = {};       // a run's key -> true once its stream said it ended
let loading = false;

function str(v) { return (v === null || v === undefined) ? '' : String(v); }
function keyOf(run) { return str(run.planTime) + ':' + str(run.attempt || 1); }

/** helpers: {statusBadge, timeSpan, toast, reloadLogs}. */
export function init(helpers) { ui = helpers; }

/** The log view opened on ``name``; ``mayKill``: whether the caller may kill its runs. */
export function open(name, mayKill) {
  close();
  jobName = name;
  canKill = !!mayKill;
  $('#log-running').empty();
}

/** The log view closed (or moved to another job): every stream ends. */
export function close() {
  Object.keys(streams).forEach(function (key) { streams[key].close(); });
  streams = {};
  ended = {};
  jobName = null;
  $('#log-running').empty();
}

/** Look again at the job's runs going on (with each refresh of the log's first page). */
export function refresh() {
  const name = jobName;
  if (!name || loading) { return; }
  loading = true;
  api('GET', 'job/running', { name: name }).then(function (runs) {
    if (name !== jobName) { return; }
    render(Array.isArray(runs) ? runs : []);
  }, function () { /* the log's own error says the manager is away */ })
    .finally(function () { loading = false; });
}

function render(runs) {
  const $box = $('#log-running');
  const shown = {};
  runs.forEach(function (run) {
    const key = keyOf(run);
    shown[key] = true;
    if (ended[key] || $box.children('[data-key="' + key + '"]').length) { return; }
    $box.append(runningCard(run, key));
  });
  // A run no longer going on: its card goes unless its output is still streaming (the stream
  // says when its record is there).
  $box.children('.running-run').each(function () {
    const key = $(this).attr('data-key');
    if (!shown[key] && !streams[key]) { $(this).remove(); }
  });
}

function runningCard(run, key) {
  const $card = $('<div class="card mb-2 running-run border-primary"></div>')
    .attr('data-key', key).attr('data-plan', str(run.planTime)).attr('data-attempt', str(run.attempt || 1));
  const $head = $('<div class="card-header d-flex flex-wrap align-items-center gap-2 py-1"></div>');
  $head.append(ui.statusBadge('running'))
    .append($('<span class="small"></span>').text('planned ' + ui.fmtTime(run.planTime)))
    .append($('<span class="small text-muted"></span>').text('on ' + str(run.worker)));
  if ((Number(run.attempt) || 1) > 1) {
    $head.append($('<span class="small text-muted"></span>').text('attempt ' + run.attempt));
  }
  const $show = $('<button type="button" class="btn btn-outline-primary btn-sm ms-auto live-show">Show output</button>');
  $head.append($show);
  if (canKill) {
    const $kill = $('<button type="button" class="btn btn-outline-danger btn-sm live-kill">Kill</button>');
    $kill.on('click', function () { kill($kill); });
    $head.append($kill);
  }
  const $body = $('<div class="card-body py-2 d-none"></div>');
  const $pre = $('<pre class="log-output log-output-full mb-1 live-output-text"></pre>');
  const $state = $('<div class="small text-muted live-state"></div>');
  $body.append($pre, $state);
  $card.append($head, $body);
  $show.on('click', function () {
    if (streams[key]) { return; }
    $show.prop('disabled', true);
    $body.removeClass('d-none');
    follow(run, key, $card, $pre, $state);
  });
  return $card;
}

function follow(run, key, $card, $pre, $state) {
  const url = 'job/output/stream?' + $.param({ name: jobName, planTime: run.planTime, attempt: run.attempt || 1 });
  const source = new EventSource(url);
  streams[key] = source;
  $state.text('Waiting for output…');
  source.onmessage = function (ev) {
    const part = JSON.parse(ev.data);
    const pre = $pre[0];
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    $pre.text($pre.text() + str(part.output));
    if (atBottom) { pre.scrollTop = pre.scrollHeight; }
    $state.text('Going on: ' + Number(part.offset) + ' bytes so far');
  };
  source.addEventListener('end', function (ev) {
    const end = JSON.parse(ev.data);
    source.close();
    delete streams[key];
    ended[key] = true;
    $state.text('Ended: ' + (str(end.status) || 'unknown'));
    // The finished record takes the card's place.
    $card.remove();
    ui.reloadLogs();
  });
  source.onerror = function () {
    // EventSource reconnects by itself (from the start: the output is shown again whole).
    if (source.readyState === EventSource.CONNECTING) {
      $pre.text('');
      $state.text('Connection lost; reconnecting…');
    }
  };
}

function kill($btn) {
  const name = jobName;
  $btn.prop('disabled', true);
  api('POST', 'job/kill', { name: name }).then(function () {
    ui.toast('Killing the runs of ' + name, 'success');
  }, function (err) {
    $btn.prop('disabled', false);
    ui.toast(str(err && err.msg) || 'Could not kill', 'danger');
  });
}
