/*
 * The job dialog's "Notifications" part: the job's notify rules (a channel and the run events
 * it hears of) and notifyMinInterval. app.js calls fillJobNotify when the dialog opens and
 * readJobNotify when it saves, so what the dialog shows is what it saves back.
 */
import { notifyApi } from './api.js';
import { RulesEditor } from './rules-editor.js';

const $ = window.jQuery;

// The events of a run's end (gdts/notify/notice.py RUN_EVENTS), as the dialog offers them.
export const RUN_EVENTS = [
  ['failed', 'failed'], ['timeout', 'timeout'], ['missed', 'missed'], ['lost', 'lost'],
  ['killed', 'killed'], ['succeeded', 'succeeded'], ['recovered', 'recovered'],
  ['completed', 'completed']
];
const NEW_RULE_EVENTS = ['failed', 'timeout', 'missed', 'lost'];
export const DEFAULT_MIN_INTERVAL_S = 300;

let editor = null;
let loadSeq = 0;

function setup() {
  if (editor) { return editor; }
  editor = new RulesEditor($('#job-notify-rules'), {
    field: 'notify', events: RUN_EVENTS, defaults: NEW_RULE_EVENTS
  });
  $('#job-notify-add').on('click', function () {
    editor.addRow(null).find('select').trigger('focus');
    summarize();
  });
  $('#job-notify-rules').on('rules:changed', summarize);
  return editor;
}

function summarize() {
  const n = editor.count();
  $('#job-notify-count').text(n ? '(' + n + (n === 1 ? ' rule)' : ' rules)') : '');
}

/** Show the job's rules (none for a new job), and fetch the channels to pick from. */
export function fillJobNotify(job) {
  const ed = setup();
  const rules = job && Array.isArray(job.notify) ? job.notify : [];
  ed.setRules(rules);
  const interval = job ? job.notifyMinInterval : null;
  $('#job-notifyMinInterval').val(
    interval === null || interval === undefined || interval === DEFAULT_MIN_INTERVAL_S ? '' : String(interval));
  summarize();
  const collapse = window.bootstrap.Collapse.getOrCreateInstance(document.getElementById('job-notify'), { toggle: false });
  if (rules.length) { collapse.show(); } else { collapse.hide(); }
  const seq = ++loadSeq;
  $('#job-notify-status').text('').removeClass('text-danger');
  notifyApi.channels().then(function (channels) {
    if (seq !== loadSeq) { return; }
    const names = (Array.isArray(channels) ? channels : []).map((c) => String(c.name));
    ed.setChannels(names);
    $('#job-notify-status').text(names.length ? ''
      : 'No channel yet: an admin adds them under Notifications.');
  }, function (err) {
    if (seq !== loadSeq) { return; }
    $('#job-notify-status').addClass('text-danger').text('Could not load the channels: ' + err.msg);
  });
}

/** The job's notify fields from the dialog: {notify?, notifyMinInterval?}; an empty list and
 *  an empty interval are left out (no rules; the default interval). */
export function readJobNotify() {
  const out = {};
  const rules = setup().rules();
  if (rules.length) { out.notify = rules; }
  const interval = String($('#job-notifyMinInterval').val() || '').trim();
  if (interval !== '') { out.notifyMinInterval = /^\d+(\.\d+)?$/.test(interval) ? Number(interval) : interval; }
  return out;
}
