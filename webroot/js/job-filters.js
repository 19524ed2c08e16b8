/*
 * The jobs table's filter bar (README, "The web console"): name, command, tags, owner, status
 * and host, sent to job/list as its filters, so the table holds the matching jobs only (and a
 * page of them is a page of matches), and each refresh asks again for what the bar says: the bar is
 * never redrawn, so what is typed in it stays. app.js calls init with its reload and passes
 * params() to every listing. Text from users is inserted with .text()/.val() only.
 */
import { api } from './api.js';

const $ = window.jQuery;

export const FIELDS = ['name', 'command', 'tag', 'owner', 'status', 'host'];   // gdts/manager/jobfilter.py FILTER_FIELDS
const TYPING_MS = 300;   // a box's filter applies once typing pauses, not at every key

let reload = function () {};
let timer = null;
const owners = {};

function box(field) { return $('#filter-' + field); }

/** Wire the bar: ``onChange`` lists the jobs again (with params()). */
export function init(onChange) {
  reload = onChange;
  const $form = $('#job-filters');
  $form.on('input', 'input', function () { changed(TYPING_MS); });
  $form.on('change', 'select', function () { changed(0); });
  $form.on('submit', function (ev) { ev.preventDefault(); changed(0); });
  // The reset event comes before the fields are cleared.
  $form.on('reset', function () { setTimeout(function () { changed(0); }, 0); });
  box('host').on('focus', loadHosts);
  // A tag's badge in the table shows the jobs that have it.
  $('#jobs-body').on('click', '.job-tag', function () {
    box('tag').val($(this).attr('data-tag'));
    changed(0);
  });
}

function changed(delay) {
  clearTimeout(timer);
  $('#filter-clear').prop('disabled', !active());
  timer = setTimeout(reload, delay);
}

/** The filters to send: the boxes that hold something, trimmed. */
export function params() {
  const out = {};
  FIELDS.forEach(function (field) {
    const value = String(box(field).val() || '').trim();
    if (value) { out[field] = value; }
  });
  return out;
}

export function active() { return Object.keys(params()).length > 0; }

/** Show the API's 400 about a filter under its box; false when the error is about none. */
export function showError(err) {
  clearError();
  if (!err || FIELDS.indexOf(err.field) < 0) { return false; }
  box(err.field).addClass('is-invalid');
  $('#job-filters .invalid-feedback').filter(function () {
    return $(this).attr('data-for') === err.field;
  }).text(err.msg);
  return true;
}

export function clearError() {
  $('#job-filters .is-invalid').removeClass('is-invalid');
  $('#job-filters .invalid-feedback').text('');
}

/** The owners of the jobs listed so far, offered in the owner box. */
export function noteOwners(jobs) {
  let added = false;
  jobs.forEach(function (job) {
    const owner = job.owner ? String(job.owner) : '';
    if (owner && !owners[owner]) { owners[owner] = true; added = true; }
  });
  if (added) { fillList('#filter-owners', Object.keys(owners).sort()); }
}

/** The live workers, offered in the host box (a worker gone since is typed by hand). */
function loadHosts() {
  api('GET', 'worker/list').then(function (workers) {
    fillList('#filter-hosts', (Array.isArray(workers) ? workers : []).map(function (w) { return String(w.id); }).sort());
  }, function () { /* the box still takes any id */ });
}

function fillList(selector, values) {
  $(selector).empty().append(values.map(function (v) { return $('<option></option>').val(v); }));
}
