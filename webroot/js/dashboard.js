/*
 * The Dashboard view, the console's first: runs per minute by status, failure rate, fire lag,
 * missed and lost runs, the jobs that fail most, runs going on per worker and workers online,
 * from GET dashboard/summary (the API calls are in api.js).
 *
 * The charts are Chart.js (webroot/vendor/chartjs, loaded as a plain script before the
 * modules: window.Chart). Each chart is made once; a refresh puts the new figures into its
 * data and redraws it without animation (update('none')), so the page never flickers and a
 * tooltip being read stays where it is. Chart.js sizes its canvas through the element's style
 * object (CSSOM), which the CSP's style-src 'self' allows; nothing here writes inline styles.
 */
import { dashboardApi } from './api.js';

const $ = window.jQuery;

// A colour per status, in the order the API lists them (gdts.runrecord.RunStatus).
const STATUS_COLOURS = {
  succeeded: '#198754',
  failed: '#dc3545',
  killed: '#6c757d',
  timeout: '#fd7e14',
  limit: '#6f42c1',
  missed: '#ffc107',
  lost: '#212529',
  skipped: '#adb5bd'
};

let ui = null;          // app.js's helpers, from init()
let windowName = 'hour';
let charts = null;      // made on the first answer
let seq = 0;            // the latest request: only its answer is shown
let busy = false;

/** Bind the view once. ctx: {fmtClock(ms) -> "HH:MM" in the browser's zone, fmtDuration(ms)}. */
export function init(ctx) {
  ui = ctx;
  $('input[name="dash-window"]').on('change', function () {
    windowName = $(this).val();
    $('#dash-window-name').text(windowName);
    refresh(true);
  });
}

/** The view was shown: draw it now. */
export function show() { refresh(); }

/** Fetch the figures and put them into the charts. A timed refresh is skipped while a request
 *  is out; a new window (force) is asked for at once, the older answer then ignored. */
export function refresh(force) {
  if (busy && !force) { return Promise.resolve(); }
  busy = true;
  const mine = ++seq;
  return dashboardApi.summary(windowName).then(function (data) {
    if (mine !== seq) { return; }
    $('#dash-error').addClass('d-none').text('');
    render(data);
  }, function (err) {
    if (mine !== seq) { return; }
    $('#dash-error').removeClass('d-none').text('Dashboard: ' + err.msg);
  }).finally(function () { busy = false; });
}

function render(data) {
  if (!charts) { charts = makeCharts(); }
  $('#dash-failure-rate').text(data.failureRate === null ? '–' : (100 * data.failureRate).toFixed(1) + ' %');
  $('#dash-lag-p50').text(fmtLag(data.lagP50Ms));
  $('#dash-lag-p99').text(fmtLag(data.lagP99Ms));
  $('#dash-missed').text(String(data.missed));
  $('#dash-lost').text(String(data.lost));

  const labels = data.buckets.map(function (ms) { return ui.fmtClock(ms); });
  const runs = charts.runs;
  runs.data.labels = labels;
  runs.data.datasets.forEach(function (set) { set.data = data.perMinute[set.status] || []; });
  runs.update('none');

  const failing = charts.failing;
  failing.data.labels = data.topFailing.map(function (f) { return f.jobName; });
  failing.data.datasets[0].data = data.topFailing.map(function (f) { return f.failures; });
  failing.update('none');

  const running = charts.running;
  running.data.labels = data.runningPerWorker.map(function (w) { return w.worker; });
  running.data.datasets[0].data = data.runningPerWorker.map(function (w) { return w.running; });
  running.update('none');

  const workers = charts.workers;
  workers.data.labels = labels;
  workers.data.datasets[0].data = data.workersOnline;
  workers.update('none');
}

function makeCharts() {
  const Chart = window.Chart;
  const common = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: { legend: { display: false } }
  };
  const wholeNumbers = { beginAtZero: true, ticks: { precision: 0 } };
  return {
    runs: new Chart(document.getElementById('dash-runs'), {
      type: 'bar',
      data: {
        labels: [],
        datasets: Object.keys(STATUS_COLOURS).map(function (status) {
          return { label: status, status: status, data: [], backgroundColor: STATUS_COLOURS[status] };
        })
      },
      options: Object.assign({}, common, {
        plugins: { legend: { display: true, position: 'bottom', labels: { boxWidth: 12 } } },
        scales: {
          x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: 'runs / minute' } }
        }
      })
    }),
    failing: new Chart(document.getElementById('dash-failing'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'failing runs', data: [], backgroundColor: STATUS_COLOURS.failed, maxBarThickness: 24 }] },
      options: Object.assign({}, common, {
        indexAxis: 'y',
        scales: { x: wholeNumbers, y: { ticks: { autoSkip: false } } }
      })
    }),
    running: new Chart(document.getElementById('dash-running'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'running', data: [], backgroundColor: '#0d6efd', maxBarThickness: 48 }] },
      options: Object.assign({}, common, { scales: { y: wholeNumbers } })
    }),
    workers: new Chart(document.getElementById('dash-workers'), {
      type: 'line',
      data: { labels: [], datasets: [{ label: 'workers online', data: [], borderColor: '#0d6efd', backgroundColor: '#0d6efd', stepped: true, spanGaps: true, pointRadius: 2 }] },
      options: Object.assign({}, common, {
        scales: { x: { ticks: { autoSkip: true, maxRotation: 0 } }, y: wholeNumbers }
      })
    })
  };
}

/** A lag quantile is its histogram bucket's upper bound: the true value is at most that. */
function fmtLag(ms) {
  return (ms === null || ms === undefined) ? '–' : '≤ ' + ui.fmtDuration(Math.ceil(ms));
}
