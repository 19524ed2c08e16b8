/*
 * The job dialog's "Chain" part (README, "Chains"): the job's parents and children, typed as
 * comma-separated job names, each list with its mode (serial: one after another; parallel:
 * all at once). app.js calls fillJobChain when the dialog opens and readJobChain when it
 * saves, so what the dialog shows is what it saves back; chainText says a job's chain in a
 * line for the jobs table. Job names come from users: inserted with .text()/.val() only.
 */
const $ = window.jQuery;

export const CHAIN_MODES = ['serial', 'parallel'];   // gdts/chains.py CHAIN_MODES
const DEFAULT_MODE = 'serial';
const SIDES = ['parents', 'children'];

function str(v) { return (v === null || v === undefined) ? '' : String(v); }

function names(list) { return Array.isArray(list) ? list.map(str) : []; }

/** "extract, load" (commas or new lines between names) -> ["extract", "load"]; empty -> [].
 *  Whether a name is valid, known or given twice is the server's to say (its 400 names the
 *  list). */
export function parseNames(text) {
  return str(text).split(/[,\n]/).map(function (n) { return n.trim(); }).filter(Boolean);
}

/** "after extract · then load, report (parallel)": a job's chain in a line ('' for none). */
export function chainText(job) {
  const parts = [];
  const parents = names(job && job.parents);
  const children = names(job && job.children);
  const mode = function (list, side) {
    return list.length > 1 && str(job[side + 'Mode']) === 'parallel' ? ' (parallel)' : '';
  };
  if (parents.length) { parts.push('after ' + parents.join(', ') + mode(parents, 'parents')); }
  if (children.length) { parts.push('then ' + children.join(', ') + mode(children, 'children')); }
  return parts.join(' · ');
}

let ready = false;

function setup() {
  if (ready) { return; }
  ready = true;
  SIDES.forEach(function (side) {
    $('#job-' + side).on('input', summarize);
    $('#job-' + side + 'Mode').on('change', summarize);
  });
}

function summarize() {
  $('#job-chain-summary').text(chainText({
    parents: parseNames($('#job-parents').val()),
    parentsMode: $('#job-parentsMode').val(),
    children: parseNames($('#job-children').val()),
    childrenMode: $('#job-childrenMode').val()
  }).replace(/^(.+)$/, '($1)'));
}

/** Show the job's parents and children (a new job: none, serial); unfolded when it has any. */
export function fillJobChain(job) {
  setup();
  SIDES.forEach(function (side) {
    $('#job-' + side).val(names(job && job[side]).join(', '));
    const mode = str(job && job[side + 'Mode']);
    $('#job-' + side + 'Mode').val(CHAIN_MODES.indexOf(mode) >= 0 ? mode : DEFAULT_MODE);
  });
  summarize();
  const collapse = window.bootstrap.Collapse.getOrCreateInstance(document.getElementById('job-chain'), { toggle: false });
  if (chainText(job)) { collapse.show(); } else { collapse.hide(); }
}

/** The job's chain fields from the dialog: {parentsMode, childrenMode, parents?, children?}
 *  (an empty list is left out: none, which clears one saved before). */
export function readJobChain() {
  const out = {};
  SIDES.forEach(function (side) {
    const list = parseNames($('#job-' + side).val());
    if (list.length) { out[side] = list; }
    out[side + 'Mode'] = str($('#job-' + side + 'Mode').val()) || DEFAULT_MODE;
  });
  return out;
}
