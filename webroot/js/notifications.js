/*
 * The Notifications view.
 *
 * Admins: the channels (their settings, never a secret's value: the API does not send them,
 * and the dialog's secret inputs start empty: left empty, a secret keeps its stored value),
 * a test send per channel, the cluster's rules (worker_offline, worker_online) and the recent
 * deliveries of the outbox. Everyone else: the channels' names and types, read-only, which is
 * what a job's rules pick from.
 *
 * app.js owns the page (tabs, dialogs, helpers) and hands this view its helpers in init();
 * the API calls are in api.js. Anything from users is inserted as text, never as HTML.
 */
import { notifyApi } from './api.js';
import { runLinkHash } from './links.js';
import { RulesEditor } from './rules-editor.js';

const $ = window.jQuery;

const OUTBOX_LIMIT = 50;
const CLUSTER_EVENTS = [
  ['worker_offline', 'worker went offline'],
  ['worker_online', 'worker came online']
];
const STATE_BADGE = { queued: 'text-bg-info', sent: 'text-bg-success', failed: 'text-bg-danger' };

/*
 * What each channel type takes, as GET /notify/types answers (from gdts/notify/channels.py, the
 * one source): type -> {label, settings: [{name, label, description, kind, required, secret,
 * choices, placeholder}]}. kind: string, integer, choice, url, addresses (a list: one a line),
 * headers (an object: "Name: value" a line). secret: write-only, shown as set or not.
 */
let CHANNEL_TYPES = {};
let typesLoaded = null;    // the one request for them

let ui = null;             // app.js's helpers, from init()
let channels = [];         // as /notify/channels answered
let clusterRules = [];     // as /notify/rules answered
let editing = null;        // the channel the dialog edits, or null for a new one
const testResults = {};    // channel name -> {sending} | {delivered, error}
let rulesEditor = null;
let outboxSeq = 0;         // the latest outbox request: only its answer is shown
let outboxBusy = false;

function str(v) { return (v === null || v === undefined) ? '' : String(v); }

// ------------------------------------------------------------------ entry points --

/**
 * Bind the view once. ctx: {isAdmin(), jobs(), toast, confirmThen, modal, clearErrors,
 * showError, timeSpan, placeholderRow, syncRows}.
 */
export function init(ctx) {
  ui = ctx;
  rulesEditor = new RulesEditor($('#notify-rules-list'), {
    field: 'rules', events: CLUSTER_EVENTS, defaults: ['worker_offline']
  });

  $('#btn-new-channel').on('click', function () { openChannel(null); });
  $('#channels-body')
    .on('click', '.act-edit-channel', function () { const c = channelOf(this); if (c) { openChannel(c); } })
    .on('click', '.act-delete-channel', function () { const c = channelOf(this); if (c) { askDelete(c); } })
    .on('click', '.act-test-channel', function () { const c = channelOf(this); if (c) { sendTest(c); } });
  $('#channel-type').on('change', function () { buildSettings($(this).val(), null); });
  $('#channel-form').on('submit', saveChannel);
  $('#channel-form, #notify-rules-form').on('input change', '.is-invalid', function () {
    $(this).removeClass('is-invalid');
  });
  $('#channel-modal').on('shown.bs.modal', function () {
    const $first = editing ? $('#channel-settings').find('input, select, textarea').first() : $('#channel-name');
    $first.trigger('focus');
  });
  $('#channel-modal').on('hidden.bs.modal', function () {
    // Nothing typed into a secret stays in the page once the dialog is closed.
    $('#channel-form')[0].reset();
    $('#channel-settings').empty();
    editing = null;
  });

  $('#notify-rules-add').on('click', function () { rulesEditor.addRow(null).find('select').trigger('focus'); });
  $('#notify-rules-form').on('submit', saveRules);
  $('#outbox-state').on('change', function () { loadOutbox(true); });
}

/** The view was opened: everything fresh. */
export function show() {
  // Without the types the list still shows; the channel form waits for the next look.
  loadTypes().catch(function () {}).then(loadChannels).then(function () {
    if (ui.isAdmin()) { loadRules(); }
  });
  if (ui.isAdmin()) { loadOutbox(true); }
}

/** The channel types, once: the form follows what the server checks. */
function loadTypes() {
  if (typesLoaded === null) {
    typesLoaded = notifyApi.types().then(function (types) {
      CHANNEL_TYPES = {};
      const $select = $('#channel-type').empty();
      (types || []).forEach(function (t) {
        CHANNEL_TYPES[t.type] = {
          label: t.label,
          settings: (t.settings || []).map(function (s) { return Object.assign({ help: s.description }, s); })
        };
        $select.append($('<option></option>').val(t.type).text(t.label));
      });
    }, function (err) {
      typesLoaded = null; // asked again next time
      throw err;
    });
  }
  return typesLoaded;
}

/** The console's periodic refresh while the view is open: only the outbox moves by itself. */
export function refresh() {
  if (ui.isAdmin()) { loadOutbox(); }
}

// ---------------------------------------------------------------------- channels --

function loadChannels() {
  return notifyApi.channels().then(function (list) {
    channels = Array.isArray(list) ? list : [];
    renderChannels();
    if (rulesEditor) { rulesEditor.setChannels(channels.map((c) => str(c.name))); }
  }, function (err) {
    $('#channels-body').empty().append(ui.placeholderRow(colspan(), 'Could not load the channels: ' + err.msg, 'text-danger'));
  });
}

function colspan() { return ui.isAdmin() ? 5 : 2; }

function channelOf(el) {
  const name = $(el).closest('tr.channel-row').attr('data-channel');
  return channels.find((c) => str(c.name) === name) || null;
}

function renderChannels() {
  const $body = $('#channels-body').empty();
  $('#channels-count').text(channels.length);
  if (channels.length === 0) {
    $body.append(ui.placeholderRow(colspan(), ui.isAdmin()
      ? 'No channel yet. Use “New channel” to add one.' : 'No channel yet: an admin adds them.'));
    return;
  }
  channels.forEach(function (c) { $body.append(channelRow(c)); });
}

function channelRow(c) {
  const name = str(c.name);
  const type = CHANNEL_TYPES[c.type];
  const $tr = $('<tr class="channel-row"></tr>').attr('data-channel', name);
  $tr.append($('<td class="fw-semibold text-break channel-name"></td>').text(name));
  $tr.append($('<td class="channel-type"></td>').text(str(c.type)));
  if (!ui.isAdmin()) { return $tr; }

  // What is set, secrets as "set" (a secret URL shows its scheme and host only).
  const settings = c.settings || {};
  const secretsSet = Array.isArray(c.secretsSet) ? c.secretsSet : [];
  const $settings = $('<td class="channel-settings small"></td>');
  const $secrets = $('<td class="channel-secrets"></td>');
  (type ? type.settings : []).forEach(function (s) {
    if (s.secret) {
      const set = secretsSet.indexOf(s.name) !== -1;
      $secrets.append($('<span class="badge me-1"></span>')
        .addClass(set ? 'text-bg-success secret-set' : 'text-bg-light border secret-unset')
        .attr('data-setting', s.name).text(s.name + (set ? ': set' : ': not set')));
    }
    if (settings[s.name] !== undefined && settings[s.name] !== null) {
      $settings.append($('<div class="text-break setting"></div>').attr('data-setting', s.name)
        .append($('<span class="text-muted"></span>').text(s.name + ': '))
        .append($('<span class="setting-value"></span>').text(settingText(s, settings[s.name]))));
    }
  });
  if (!$settings.children().length) { $settings.append($('<span class="text-muted">–</span>')); }
  $tr.append($settings);
  $tr.append($secrets);

  const $actions = $('<td class="text-end"></td>');
  $actions.append($('<div class="btn-group btn-group-sm" role="group"></div>').attr('aria-label', 'Actions for ' + name)
    .append($('<button type="button" class="btn btn-outline-secondary act-test-channel">Send test</button>'))
    .append($('<button type="button" class="btn btn-outline-primary act-edit-channel">Edit</button>'))
    .append($('<button type="button" class="btn btn-outline-danger act-delete-channel">Delete</button>')));
  $actions.append(testResultBlock(name));
  $tr.append($actions);
  return $tr;
}

function settingText(s, value) {
  if (Array.isArray(value)) { return value.map(str).join(', '); }
  if (value && typeof value === 'object') { return Object.keys(value).join(', '); }
  return str(value);
}

function testResultBlock(name) {
  const r = testResults[name];
  const $div = $('<div class="small test-result mt-1 text-break"></div>');
  if (!r) { return $div; }
  if (r.sending) { return $div.addClass('text-muted').text('Sending a test message…'); }
  if (r.delivered) {
    return $div.addClass('test-delivered').append($('<span class="badge text-bg-success">delivered</span>'));
  }
  return $div.addClass('text-danger test-failed').text('Not delivered: ' + str(r.error));
}

function showTestResult(name) {
  $('#channels-body tr.channel-row').filter(function () { return $(this).attr('data-channel') === name; })
    .find('.test-result').replaceWith(testResultBlock(name));
}

function sendTest(c) {
  const name = str(c.name);
  testResults[name] = { sending: true };
  showTestResult(name);
  const $btn = $('#channels-body tr.channel-row').filter(function () { return $(this).attr('data-channel') === name; })
    .find('.act-test-channel').prop('disabled', true);
  notifyApi.testChannel(name).then(function (result) {
    testResults[name] = { delivered: !!result.delivered, error: str(result.error) };
    ui.toast(result.delivered ? 'Test message delivered through ' + name
      : 'Test message through ' + name + ' not delivered', result.delivered ? 'success' : 'danger');
  }, function (err) {
    testResults[name] = { delivered: false, error: err.msg };
  }).finally(function () {
    showTestResult(name);
    $btn.prop('disabled', false);
  });
}

function askDelete(c) {
  const name = str(c.name);
  // Every job, asked for now: the jobs table may show only those its filters let through.
  ui.jobs().then(function (jobs) { return jobs; }, function () { return null; }).then(function (jobs) {
    const users = (Array.isArray(jobs) ? jobs : []).filter(function (j) {
      return Array.isArray(j.notify) && j.notify.some((r) => str(r.channel) === name);
    }).map((j) => str(j.name));
    if (clusterRules.some((r) => str(r.channel) === name)) { users.push('the cluster events'); }
    const text = 'Delete the channel “' + name + '”? ' + (users.length
      ? 'Rules name it (' + users.join(', ') + '): their messages fail until they name another channel.'
      : (jobs === null ? 'The jobs could not be read to tell whether a rule names it.' : 'No rule names it.'));
    ui.confirmThen('Delete channel', text, 'Delete', function () {
      return notifyApi.deleteChannel(name).then(function () {
        delete testResults[name];
        ui.toast('Deleted channel ' + name, 'success');
        show();
      });
    });
  });
}

// ---------------------------------------------------------------- channel dialog --

function openChannel(c) {
  editing = c;
  const $f = $('#channel-form');
  $f[0].reset();
  ui.clearErrors($f);
  $('#channel-modal-title').text(c ? 'Edit channel ' + str(c.name) : 'New channel');
  $('#channel-name').val(c ? str(c.name) : '').prop('readonly', !!c);
  const type = c && CHANNEL_TYPES[c.type] ? c.type : 'webhook';
  $('#channel-type').val(type).prop('disabled', !!c);
  $('#channel-type-help').text(c ? 'To change the type, delete the channel and make a new one.'
    : 'Each type takes its own settings.');
  buildSettings(type, c);
  $('#channel-save-btn').prop('disabled', false).text('Save');
  ui.modal('channel-modal').show();
}

/** The settings fields of a type; filled from `c` (its public view) when editing. Secret
 *  inputs are never filled: their placeholder says whether one is set. */
function buildSettings(type, c) {
  const $box = $('#channel-settings').empty();
  const settings = (c && c.settings) || {};
  const secretsSet = (c && Array.isArray(c.secretsSet)) ? c.secretsSet : [];
  (CHANNEL_TYPES[type] ? CHANNEL_TYPES[type].settings : []).forEach(function (s) {
    const id = 'channel-s-' + s.name;
    const field = 'settings.' + s.name;
    const wide = s.kind === 'addresses' || s.kind === 'headers' || s.kind === 'url';
    const $col = $('<div></div>').addClass(wide ? 'col-12' : 'col-12 col-md-6');
    const $label = $('<label class="form-label"></label>').attr('for', id).text(s.label);
    if (s.required) { $label.append($('<span class="text-danger" aria-hidden="true"> *</span>')); }
    if (s.secret) { $label.append(' ').append($('<span class="badge text-bg-light border fw-normal">secret</span>')); }
    $col.append($label);

    let $input;
    if (s.kind === 'choice') {
      $input = $('<select class="form-select"></select>');
      s.choices.forEach((v) => $input.append($('<option></option>').val(v).text(v)));
    } else if (s.kind === 'addresses' || s.kind === 'headers') {
      $input = $('<textarea class="form-control font-monospace" rows="3" spellcheck="false"></textarea>');
    } else if (s.secret) {
      $input = $('<input type="password" class="form-control" autocomplete="new-password" spellcheck="false">');
    } else {
      $input = $('<input type="text" class="form-control" spellcheck="false">')
        .attr('inputmode', s.kind === 'integer' ? 'numeric' : null);
    }
    $input.attr({ id: id, name: field, 'data-setting': s.name });
    if (s.kind === 'url' || s.kind === 'headers') { $input.addClass('font-monospace'); }

    if (s.secret) {
      $input.addClass('secret-input');
      const isSet = secretsSet.indexOf(s.name) !== -1;
      const shown = s.kind === 'url' && settings[s.name] ? str(settings[s.name]) + ' ' : '';
      $input.attr('placeholder', isSet ? '(' + shown + 'set — leave empty to keep)'
        : (s.required ? '(required)' : '(not set)'));
    } else {
      if (s.placeholder) { $input.attr('placeholder', s.placeholder); }
      const value = settings[s.name];
      if (s.kind === 'choice') {
        $input.val(value ? str(value) : s.choices[0]);
      } else if (Array.isArray(value)) {
        $input.val(value.map(str).join('\n'));
      } else if (value !== undefined && value !== null) {
        $input.val(str(value));
      }
    }
    $col.append($input).append($('<div class="invalid-feedback"></div>').attr('data-for', field));
    if (s.help) { $col.append($('<div class="form-text"></div>').text(s.help)); }
    $box.append($col);
  });
}

/** The channel JSON from the dialog, or throws {field, msg}. An empty field is left out: a
 *  secret then keeps its stored value, any other setting its default. */
function readChannelForm() {
  const type = $('#channel-type').val();
  const channel = { name: str($('#channel-name').val()).trim(), type: type, settings: {} };
  (CHANNEL_TYPES[type] ? CHANNEL_TYPES[type].settings : []).forEach(function (s) {
    const raw = str($('#channel-s-' + s.name).val());
    if (raw.trim() === '') { return; }
    const field = 'settings.' + s.name;
    let value;
    if (s.kind === 'integer') {
      value = /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw.trim();
    } else if (s.kind === 'addresses') {
      value = raw.split(/[\s,;]+/).filter(Boolean);
    } else if (s.kind === 'headers') {
      value = {};
      raw.split('\n').forEach(function (line, i) {
        if (!line.trim()) { return; }
        const at = line.indexOf(':');
        if (at <= 0) { throw { field: field, msg: field + ': line ' + (i + 1) + ' is not “Name: value”' }; }
        value[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      });
    } else {
      value = s.secret ? raw : raw.trim();
    }
    channel.settings[s.name] = value;
  });
  return channel;
}

/** An API error's field as the dialog names its inputs: "settings.to[1]" is the "To" box. */
function dialogError(err) {
  const m = /^(settings\.[A-Za-z]+)[.[]/.exec(str(err.field));
  return m ? { field: m[1], msg: err.msg, status: err.status } : err;
}

function saveChannel(ev) {
  ev.preventDefault();
  const $f = $('#channel-form');
  ui.clearErrors($f);
  let channel;
  try {
    channel = readChannelForm();
  } catch (err) {
    ui.showError($f, err);
    return;
  }
  const $btn = $('#channel-save-btn').prop('disabled', true).text('Saving…');
  notifyApi.saveChannel(channel).then(function () {
    ui.modal('channel-modal').hide();
    ui.toast((editing ? 'Saved channel ' : 'Created channel ') + channel.name, 'success');
    delete testResults[channel.name];
    loadChannels();
  }, function (err) {
    ui.showError($f, dialogError(err));
  }).finally(function () {
    $btn.prop('disabled', false).text('Save');
  });
}

// ---------------------------------------------------------------- cluster rules --

function loadRules() {
  const $f = $('#notify-rules-form');
  return notifyApi.rules().then(function (data) {
    clusterRules = Array.isArray(data.rules) ? data.rules : [];
    ui.clearErrors($f);
    rulesEditor.setRules(clusterRules);
    $('#notify-minInterval').val(str(data.minInterval));
  }, function (err) { ui.showError($f, err); });
}

function saveRules(ev) {
  ev.preventDefault();
  const $f = $('#notify-rules-form');
  ui.clearErrors($f);
  const rules = rulesEditor.rules();
  const $btn = $('#notify-rules-save').prop('disabled', true);
  notifyApi.saveRules(rules, str($('#notify-minInterval').val()).trim()).then(function (saved) {
    clusterRules = Array.isArray(saved.rules) ? saved.rules : [];
    $('#notify-minInterval').val(str(saved.minInterval));
    ui.toast('Saved the cluster’s rules', 'success');
  }, function (err) {
    ui.showError($f, err);
  }).finally(function () { $btn.prop('disabled', false); });
}

// ------------------------------------------------------------------------ outbox --

/** The newest deliveries. The periodic refresh skips a turn while one is on its way; a
 *  changed filter asks at once, and the answer to an older request is dropped. */
function loadOutbox(now) {
  if (outboxBusy && !now) { return Promise.resolve(); }
  const seq = ++outboxSeq;
  outboxBusy = true;
  const state = str($('#outbox-state').val());
  return notifyApi.outbox(state, OUTBOX_LIMIT).then(function (data) {
    if (seq !== outboxSeq) { return; }
    renderCounts(data.counts || {});
    renderOutbox(Array.isArray(data.events) ? data.events : [], state);
  }, function (err) {
    if (seq !== outboxSeq) { return; }
    $('#outbox-body').empty().append(ui.placeholderRow(7, 'Could not load the deliveries: ' + err.msg, 'text-danger'));
  }).finally(function () {
    if (seq === outboxSeq) { outboxBusy = false; }
  });
}

function renderCounts(counts) {
  ['queued', 'sent', 'failed'].forEach(function (state) {
    const n = Number(counts[state]) || 0;
    $('#outbox-count-' + state).text(state + ' ' + n)
      .toggleClass('text-bg-danger', state === 'failed' && n > 0)
      .toggleClass('text-bg-light border', !(state === 'failed' && n > 0));
  });
}

function renderOutbox(events, state) {
  const $body = $('#outbox-body');
  if (events.length === 0) {
    $body.empty().append(ui.placeholderRow(7, state ? 'No ' + state + ' deliveries.' : 'Nothing sent yet.'));
    return;
  }
  ui.syncRows($body, events,
    (e) => str(e.event) + '\n' + str(e.channel),
    (e) => JSON.stringify(e),
    outboxRow);
}

function outboxRow(e) {
  const state = str(e.state);
  const $tr = $('<tr class="outbox-row"></tr>').addClass('outbox-' + state).attr('data-state', state)
    .attr('data-channel', str(e.channel));
  if (state === 'failed') { $tr.addClass('table-danger'); }
  $tr.append($('<td class="text-nowrap"></td>').append(ui.timeSpan(e.queuedAt)));
  const $what = $('<td class="text-break outbox-title"></td>').text(str(e.title));
  if (Number(e.standsFor) > 1) {
    $what.append(' ').append($('<span class="badge text-bg-secondary"></span>').text('×' + Number(e.standsFor))
      .attr('title', 'one message for ' + Number(e.standsFor) + ' events'));
  }
  $tr.append($what);
  $tr.append($('<td class="text-break outbox-channel"></td>').text(str(e.channel)));
  $tr.append($('<td></td>').append($('<span class="badge outbox-state"></span>')
    .addClass(STATE_BADGE[state] || 'text-bg-secondary').text(state || 'unknown')));
  $tr.append($('<td class="text-nowrap"></td>').append(e.settledAt ? ui.timeSpan(e.settledAt) : $('<span class="text-muted">–</span>')));
  const $details = $('<td class="small text-break outbox-details"></td>');
  if (str(e.error)) { $details.append($('<div class="text-danger outbox-error"></div>').text(str(e.error))); }
  if (Number(e.tries) > 0) { $details.append($('<div class="text-muted"></div>').text('tries: ' + Number(e.tries))); }
  $tr.append($details);
  const $link = $('<td class="text-end"></td>');
  if (e.job && Number.isInteger(e.planTime) && Number.isInteger(e.attempt)) {
    $link.append($('<a class="btn btn-sm btn-outline-secondary outbox-run">Run</a>')
      .attr('href', runLinkHash(str(e.job), e.planTime, e.attempt))
      .attr('title', 'The run of ' + str(e.job) + ' this is about'));
  }
  $tr.append($link);
  return $tr;
}
