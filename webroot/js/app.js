/*
 * GDTS console: jobs, their run logs, workers, the caller's account and (for admins) the
 * audit trail and the accounts. Plain jQuery + Bootstrap 5, no build step: an ES module
 * (script-src 'self' allows them) that imports the API calls (api.js) and the views that have
 * their own file (notifications.js; the job dialog's notify rules, job-notify.js; where jobs
 * run, placement.js; the job dialog's chain, job-chain.js; chain runs in the log, chain-runs.js;
 * runs going on in the log, live-output.js; the dashboard, dashboard.js; teams and their
 * secrets, teams.js).
 *
 * Rules kept on purpose:
 *  - No inline scripts or handlers anywhere: all behaviour is bound here, so the manager's
 *    Content-Security-Policy (script-src 'self'; style-src 'self') holds.
 *  - Anything that comes from users or job runs (names, commands, output, error messages,
 *    usernames, hosts...) is inserted with .text() / .val() / .attr(), never .html().
 *  - API URLs are relative ("job/list", not "/job/list") so the console also works when the
 *    manager is published under a path prefix by a proxy.
 *  - The tables refresh every few seconds; a refresh replaces only the rows that changed and
 *    never touches an open dialog, so typing, focus and scroll positions survive it.
 *
 * API envelope: {"errno": 0, "msg": "success", "data": ...}; on error errno is -1, the HTTP
 * status 4xx, msg starts with the bad field's name and "field" names it.
 */
import { api, setCsrfToken } from './api.js';
import * as chainRuns from './chain-runs.js';
import * as dashboard from './dashboard.js';
import { chainText, fillJobChain, readJobChain } from './job-chain.js';
import * as jobFilters from './job-filters.js';
import { fillJobNotify, readJobNotify } from './job-notify.js';
import { fillJobTags, readJobTags, tagLines } from './job-tags.js';
import { parseRunLink } from './links.js';
import * as liveOutput from './live-output.js';
import * as notifications from './notifications.js';
import { fillJobPlacement, labelBadges, labelsText, placementText, readJobPlacement } from './placement.js';
import * as teams from './teams.js';

(function ($) {
  'use strict';

  var REFRESH_MS = 3000;
  var LOG_PAGE_SIZE = 20;
  var AUDIT_PAGE_SIZE = 50;
  var OUTPUT_HEAD_LINES = 30;
  var OUTPUT_HEAD_CHARS = 4000;
  var AUDIT_ACTIONS = [
    'job.save', 'job.delete', 'job.kill', 'job.run', 'job.enable', 'job.disable', 'job.clone',
    'user.save', 'user.delete', 'user.password', 'token.create', 'token.revoke',
    'auth.login', 'auth.login_failed', 'auth.logout',
    'notify.channel.save', 'notify.channel.delete', 'notify.channel.test', 'notify.rules.save',
    'team.save', 'team.delete', 'team.member.save', 'team.member.delete',
    'secret.save', 'secret.delete', 'secret.rekey'
  ];
  var STATUS_BADGE = {
    succeeded: 'text-bg-success',
    failed: 'text-bg-danger',
    killed: 'text-bg-warning',
    timeout: 'text-bg-warning',
    limit: 'text-bg-danger',
    lost: 'text-bg-dark',
    missed: 'text-bg-secondary',
    skipped: 'text-bg-secondary',   // a chain run's step never run: an earlier step failed
    running: 'text-bg-primary'      // a chain run with a step still to come
  };

  // Who is logged in: {username, role, csrfToken}; every change the console makes carries
  // the session's CSRF token (api.js sends it).
  var me = { username: '', role: 'guest', csrfToken: null };
  var localZone = '';

  // ----------------------------------------------------------- helpers --

  function str(v) { return (v === null || v === undefined) ? '' : String(v); }

  function pad(n, w) {
    var s = String(n);
    while (s.length < (w || 2)) { s = '0' + s; }
    return s;
  }

  function validMs(ms) {
    return ms !== null && ms !== undefined && ms !== '' && isFinite(ms) && Number(ms) > 0;
  }

  /** epoch ms -> "YYYY-MM-DD HH:MM:SS" in the browser's time zone. */
  function fmtTime(ms, withMillis) {
    if (!validMs(ms)) { return '–'; }
    var d = new Date(Number(ms));
    var s = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    return withMillis ? s + '.' + pad(d.getMilliseconds(), 3) : s;
  }

  function isoUtc(ms) { return validMs(ms) ? new Date(Number(ms)).toISOString() : ''; }

  /** milliseconds -> "850 ms", "12.3 s", "4m 05s", "2h 03m", "3d 04h". */
  function fmtDuration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms) || ms < 0) { return '–'; }
    if (ms < 1000) { return Math.round(ms) + ' ms'; }
    var s = ms / 1000;
    if (s < 60) { return s.toFixed(s < 10 ? 2 : 1) + ' s'; }
    s = Math.floor(s);
    var m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (d > 0) { return d + 'd ' + pad(h % 24) + 'h'; }
    if (h > 0) { return h + 'h ' + pad(m % 60) + 'm'; }
    return m + 'm ' + pad(s % 60) + 's';
  }

  /** "in 12 s" / "3m 05s ago", relative to now. */
  function fmtRelative(ms) {
    if (!validMs(ms)) { return ''; }
    var delta = Number(ms) - Date.now();
    var text = fmtDuration(Math.abs(delta)).replace(/\.\d+ s$/, ' s');
    return delta >= 0 ? 'in ' + text : text + ' ago';
  }

  function timeSpan(ms, withRelative) {
    var $s = $('<span class="text-nowrap"></span>').text(fmtTime(ms)).attr('title', isoUtc(ms));
    if (withRelative && validMs(ms)) {
      return $('<span></span>').append($s).append(' ').append(
        $('<small class="text-muted rel-time text-nowrap"></small>').attr('data-ms', String(ms)).text(fmtRelative(ms)));
    }
    return $s;
  }

  function updateRelativeTimes() {
    $('.rel-time').each(function () {
      $(this).text(fmtRelative(Number($(this).attr('data-ms'))));
    });
  }

  function statusBadge(status) {
    status = str(status) || 'unknown';
    return $('<span class="badge"></span>').addClass(STATUS_BADGE[status] || 'text-bg-secondary').text(status);
  }

  function modal(id) {
    return bootstrap.Modal.getOrCreateInstance(document.getElementById(id));
  }

  function isShown(id) { return $('#' + id).hasClass('show'); }

  function toast(message, kind) {
    var $t = $('<div class="toast align-items-center border-0" role="status" aria-live="polite" aria-atomic="true"></div>')
      .addClass('text-bg-' + (kind || 'secondary'));
    var $flex = $('<div class="d-flex"></div>');
    $flex.append($('<div class="toast-body text-break"></div>').text(message));
    $flex.append($('<button type="button" class="btn-close btn-close-white me-2 m-auto" data-bs-dismiss="toast" aria-label="Close"></button>'));
    $t.append($flex);
    $('#toasts').append($t);
    $t.on('hidden.bs.toast', function () { $t.remove(); });
    bootstrap.Toast.getOrCreateInstance($t[0], { delay: kind === 'danger' ? 8000 : 4000 }).show();
  }

  function placeholderRow(colspan, text, cls) {
    return $('<tr class="placeholder-row"></tr>').append(
      $('<td class="text-center py-3"></td>').attr('colspan', colspan).addClass(cls || 'text-muted').text(text));
  }

  /**
   * Replace the rows of $body by `items`, reusing a row whose item did not change (same key
   * and signature), so a refresh does not move focus, selection or scroll positions.
   */
  function syncRows($body, items, keyOf, signatureOf, build) {
    $body.children('tr.placeholder-row').remove();
    var existing = {};
    $body.children('tr[data-key]').each(function () { existing[$(this).attr('data-key')] = this; });
    var keep = {};
    var prev = null;
    items.forEach(function (item) {
      var key = keyOf(item), sig = signatureOf(item);
      var row = existing[key];
      if (!row || $(row).data('sig') !== sig) {
        var $row = build(item).attr('data-key', key).data('sig', sig);
        if (row) { $(row).replaceWith($row); } else if (prev) { $(prev).after($row); } else { $body.prepend($row); }
        row = $row[0];
      } else if (prev ? row.previousElementSibling !== prev : row !== $body[0].firstElementChild) {
        if (prev) { $(prev).after(row); } else { $body.prepend(row); }
      }
      keep[key] = true;
      prev = row;
    });
    $body.children('tr[data-key]').each(function () {
      if (!keep[$(this).attr('data-key')]) { $(this).remove(); }
    });
  }

  // --------------------------------------------------- form errors --

  function clearErrors($form) {
    $form.find('.is-invalid').removeClass('is-invalid');
    $form.find('.invalid-feedback').text('');
    $form.find('.form-error').addClass('d-none').text('');
  }

  /** Open a collapsed part of a form; one that is folding now is opened once it is done
   *  (Bootstrap ignores a show during a transition). */
  function unfold(el) {
    var collapse = bootstrap.Collapse.getOrCreateInstance(el, { toggle: false });
    if ($(el).hasClass('collapsing')) {
      $(el).one('hidden.bs.collapse shown.bs.collapse', function () { collapse.show(); });
    } else {
      collapse.show();
    }
  }

  /** Show an API error next to its field (.is-invalid + .invalid-feedback), or above the form. */
  function showError($form, err) {
    var field = err.field;
    var named = function (name) { return $form.find('[name]').filter(function () { return this.name === name; }); };
    var $input = field ? named(field) : $();
    var whole = field ? field.split(/[.[]/)[0] : '';
    if (!$input.length && whole && whole !== field && named(whole).length) {
      // A part of a field typed in one input ("hostGroup.zone", "parents[2]"): under that input.
      field = whole;
      $input = named(field);
    }
    if ($input.length && $input.closest('.d-none').length === 0) {
      var $adv = $input.closest('.collapse');
      if ($adv.length && !$adv.hasClass('show')) { unfold($adv[0]); }
      $input.addClass('is-invalid');
      $form.find('.invalid-feedback').filter(function () { return $(this).attr('data-for') === field; }).text(err.msg);
      $input.first().trigger('focus');
    } else {
      $form.find('.form-error').first().removeClass('d-none').text(err.msg);
    }
  }

  // ------------------------------------------------------ permissions --

  function canWrite() { return me.role === 'user' || me.role === 'admin'; }
  function isAdmin() { return me.role === 'admin'; }
  function owns(job) { return isAdmin() || (me.role === 'user' && str(job.owner) === me.username); }

  // -------------------------------------------------------------- jobs --

  var jobsByName = {};
  var jobsLoading = false;
  var jobsAgain = false;   // the filters changed while a listing was on its way

  function loadJobs() {
    if (jobsLoading) { jobsAgain = true; return Promise.resolve(); }
    jobsLoading = true;
    return api('GET', 'job/list', jobFilters.params()).then(function (jobs) {
      jobs = Array.isArray(jobs) ? jobs : [];
      jobsByName = {};
      jobs.forEach(function (j) { jobsByName[str(j.name)] = j; });
      jobFilters.clearError();
      jobFilters.noteOwners(jobs);
      renderJobs(jobs);
    }, function (err) {
      if (jobFilters.showError(err) || $('#jobs-body tr[data-key]').length === 0) {
        $('#jobs-body').empty().append(placeholderRow(8, 'Could not load jobs: ' + err.msg, 'text-danger'));
      }
      throw err;
    }).finally(function () {
      jobsLoading = false;
      if (jobsAgain) { jobsAgain = false; loadJobs().catch(function () {}); }
    });
  }

  function renderJobs(jobs) {
    var filtered = jobFilters.active();
    $('#jobs-count').text(jobs.length + (filtered ? ' matching' : ''));
    var $body = $('#jobs-body');
    if (jobs.length === 0) {
      $body.empty().append(placeholderRow(8, filtered ? 'No job matches the filters.'
        : 'No jobs yet.' + (canWrite() ? ' Use “New job” to create one.' : '')));
      return;
    }
    syncRows($body, jobs,
      function (j) { return str(j.name); },
      function (j) { return JSON.stringify(j) + '|' + me.role + '|' + me.username; },
      jobRow);
    updateRelativeTimes();
  }

  function jobRow(job) {
    var name = str(job.name);
    var mine = owns(job);
    var notMine = me.role === 'guest' ? 'guests change nothing'
      : 'owned by ' + (str(job.owner) || 'nobody') + ': only its owner or an admin may change it';
    var $tr = $('<tr class="job-row"></tr>').attr('data-job', name);
    var $name = $('<td class="fw-semibold text-break cell-name"></td>').text(name).append(tagLines(job));
    if (Array.isArray(job.notify) && job.notify.length) {
      $name.append($('<div class="small fw-normal text-muted notify-summary"></div>')
        .text('notifies ' + job.notify.map(function (r) { return str(r.channel); }).join(', '))
        .attr('title', job.notify.map(function (r) {
          return str(r.channel) + ': ' + (Array.isArray(r.on) ? r.on.join(', ') : '');
        }).join('\n')));
    }
    var placement = placementText(job);
    if (placement) {
      $name.append($('<div class="small fw-normal text-muted placement-summary"></div>').text(placement));
    }
    var chain = chainText(job);
    if (chain) {
      $name.append($('<div class="small fw-normal text-muted text-break chain-summary"></div>').text(chain));
    }
    $tr.append($name);
    $tr.append($('<td class="text-break"></td>').text(str(job.owner) || '–'));

    var $what = $('<td class="cell-command"></td>');
    if (job.type === 'http' && job.http) {
      $what.append($('<span class="badge text-bg-light border me-1"></span>').text(str(job.http.method) || 'GET'))
        .append($('<code class="text-break"></code>').text(str(job.http.url)));
    } else {
      $what.append($('<code class="text-break"></code>').text(str(job.command)).attr('title', str(job.command)));
    }
    $tr.append($what);

    var $when = $('<td></td>');
    if (job.runAt) {
      var runAtMs = Date.parse(job.runAt);
      $when.append($('<span class="text-nowrap">once at </span>'))
        .append($('<span class="text-nowrap"></span>').text(fmtTime(runAtMs)).attr('title', str(job.runAt)));
    } else {
      $when.append($('<code class="text-nowrap"></code>').text(str(job.cronExpr)));
      if (job.timezone && job.timezone !== 'UTC') {
        $when.append($('<div class="small text-muted"></div>').text(str(job.timezone)));
      }
    }
    $tr.append($when);

    var $next = $('<td></td>');
    if (validMs(job.nextRunTime)) {
      $next.append(timeSpan(job.nextRunTime, true));
    } else {
      $next.append($('<span class="text-muted"></span>').text(job.enabled === false ? 'paused' : (job.runAt ? 'done' : '–')));
    }
    $tr.append($next);

    var $last = $('<td></td>');
    if (job.lastRun) {
      $last.append(statusBadge(job.lastRun.status)).append(' ')
        .append($('<small class="text-nowrap"></small>').text(fmtTime(job.lastRun.startTime || job.lastRun.planTime))
          .attr('title', str(job.lastRun.trigger) + ', attempt ' + str(job.lastRun.attempt)));
    } else {
      $last.append($('<span class="text-muted small">never</span>'));
    }
    $tr.append($last);

    var $state = $('<td class="text-nowrap"></td>');
    $state.append(job.enabled === false
      ? $('<span class="badge text-bg-secondary state-paused">paused</span>')
      : $('<span class="badge text-bg-light border state-active">active</span>'));
    if (job.running) {
      $state.append(' ').append($('<span class="badge text-bg-primary state-running">running</span>'));
    }
    if (job.liveWorkers === 0) {
      // Its ticks are recorded missed until a worker of the group is live (README: Host groups).
      $state.append(' ').append($('<span class="badge text-bg-danger no-live-worker">no live worker in host group</span>')
        .attr('title', 'No live worker carries the labels {' + labelsText(job.hostGroup) +
          '}: its ticks are recorded missed, and Run now is refused'));
    }
    $tr.append($state);

    function btn(cls, label, enabled, why, style) {
      return $('<button type="button" class="btn"></button>').addClass(cls).addClass(style || 'btn-outline-secondary')
        .text(label).prop('disabled', !enabled).attr('title', enabled ? '' : why);
    }
    var $actions = $('<div class="btn-group btn-group-sm" role="group"></div>')
      .attr('aria-label', 'Actions for ' + name)
      .append(btn('act-logs', 'Logs', true, ''))
      .append(btn('act-edit', 'Edit', mine, notMine, 'btn-outline-primary'))
      .append(btn('act-run', 'Run now', mine, notMine))
      .append(job.enabled === false
        ? btn('act-resume', 'Resume', mine, notMine)
        : btn('act-pause', 'Pause', mine, notMine))
      .append(btn('act-kill', 'Kill', mine && !!job.running, mine ? 'no run is going on' : notMine, 'btn-outline-warning'))
      .append(btn('act-clone', 'Clone', canWrite(), 'guests change nothing'))
      .append(btn('act-delete', 'Delete', mine, notMine, 'btn-outline-danger'));
    $tr.append($('<td class="text-end text-nowrap"></td>').append($actions));
    return $tr;
  }

  function jobOf(el) { return jobsByName[$(el).closest('tr.job-row').attr('data-job')]; }

  function jobAction(job, btn, path, done) {
    var $btn = $(btn).prop('disabled', true);
    return api('POST', path, { name: job.name }).then(function (data) {
      toast(done, 'success');
      return loadJobs().catch(function () {}).then(function () { return data; });
    }, function (err) {
      $btn.prop('disabled', false);
      toast(err.msg, 'danger');
    });
  }

  // ----------------------------------------------------------- workers --

  var workersLoading = false;

  function loadWorkers() {
    if (workersLoading) { return Promise.resolve(); }
    workersLoading = true;
    return api('GET', 'worker/list').then(function (workers) {
      renderWorkers(Array.isArray(workers) ? workers : []);
    }, function (err) {
      if ($('#workers-body tr[data-key]').length === 0) {
        $('#workers-body').empty().append(placeholderRow(9, 'Could not load workers: ' + err.msg, 'text-danger'));
      }
      throw err;
    }).finally(function () { workersLoading = false; });
  }

  /** Runs going on out of the worker's maxConcurrentRuns; flagged while it claims nothing new. */
  function capacityCell(w, running) {
    var $cell = $('<td class="text-nowrap cell-capacity"></td>')
      .text(running + ' / ' + (w.maxConcurrentRuns === undefined ? '–' : str(w.maxConcurrentRuns)));
    if (w.atCapacity === true) {
      $cell.append(' ').append($('<span class="badge text-bg-warning at-capacity">at capacity</span>'));
    }
    return $cell;
  }

  function renderWorkers(workers) {
    $('#workers-count').text(workers.length)
      .toggleClass('text-bg-success', workers.length > 0)
      .toggleClass('text-bg-danger', workers.length === 0)
      .removeClass('text-bg-secondary');
    var $body = $('#workers-body');
    if (workers.length === 0) {
      $body.empty().append(placeholderRow(9, 'No live worker: no job will run.', 'text-danger'));
      return;
    }
    workers = workers.slice().sort(function (a, b) { return str(a.id).localeCompare(str(b.id)); });
    syncRows($body, workers, function (w) { return str(w.id); }, function (w) { return JSON.stringify(w); }, function (w) {
      var $running = $('<td class="cell-running"></td>');
      var running = Array.isArray(w.running) ? w.running : [];
      if (running.length === 0) {
        $running.append($('<span class="text-muted small">idle</span>'));
      }
      running.forEach(function (name) {
        $running.append($('<span class="badge text-bg-primary me-1 text-break running-job"></span>').text(str(name)));
      });
      return $('<tr class="worker-row"></tr>')
        .append($('<td class="text-break"></td>').append($('<code></code>').text(str(w.id))))
        .append($('<td class="text-break"></td>').text(str(w.host)))
        .append($('<td></td>').text(str(w.pid)))
        .append($('<td class="text-nowrap"></td>').append(timeSpan(w.startedAt)))
        .append($('<td class="text-nowrap uptime"></td>').attr('data-since', str(w.startedAt)))
        .append(capacityCell(w, running.length))
        .append($('<td class="cell-labels"></td>').append(labelBadges(w.labels)))
        .append($('<td class="cell-weight"></td>').text(w.weight === undefined ? '1' : str(w.weight)))
        .append($running);
    });
    $body.find('.uptime').each(function () {
      var since = Number($(this).attr('data-since'));
      $(this).text(validMs(since) ? fmtDuration(Date.now() - since) : '–');
    });
  }

  // --------------------------------------------------------- job modal --

  var editing = null;   // the job being edited, or null for a new one

  function setJobType(type) {
    var http = type === 'http';
    $('#job-form .http-only').toggleClass('d-none', !http);
    $('#job-form .shell-only').toggleClass('d-none', http);
  }

  function setScheduleKind(kind) {
    var once = kind === 'once';
    $('#job-form .once-only').toggleClass('d-none', !once);
    $('#job-form .cron-only').toggleClass('d-none', once);
  }

  function toLocalInput(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return ''; }
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function numText(v) { return v === null || v === undefined ? '' : String(v); }

  function openJobModal(job) {
    editing = job || null;
    var $f = $('#job-form');
    $f[0].reset();
    clearErrors($f);
    bootstrap.Collapse.getOrCreateInstance(document.getElementById('job-advanced'), { toggle: false }).hide();
    $('#job-modal-title').text(job ? 'Edit job ' + job.name : 'New job');
    $('#job-name').val(job ? str(job.name) : '').prop('readonly', !!job);
    $('#job-name-help').text(job
      ? 'The name identifies the job; clone it to make a copy under another name.'
      : 'Unique job name: 1–128 characters, no “/”.');
    var type = job && job.type === 'http' ? 'http' : 'shell';
    $('#job-type').val(type);
    setJobType(type);
    $('#job-command').val(job ? str(job.command) : '');
    var http = (job && job.http) || {};
    $('#job-http-method').val(str(http.method) || 'GET');
    $('#job-http-url').val(str(http.url));
    var headers = http.headers && typeof http.headers === 'object' ? http.headers : {};
    $('#job-http-headers').val(Object.keys(headers).map(function (k) { return k + ': ' + str(headers[k]); }).join('\n'));
    $('#job-http-body').val(str(http.body));
    $('#job-http-expectedStatus').val(numText(http.expectedStatus));
    var kind = job && job.runAt ? 'once' : 'cron';
    $('#job-kind-' + kind).prop('checked', true);
    setScheduleKind(kind);
    $('#job-cronExpr').val(job ? str(job.cronExpr) : '');
    $('#job-runAt').val(job && job.runAt ? toLocalInput(job.runAt) : '');
    $('#job-timezone').val(job ? str(job.timezone) : '');
    $('#job-enabled').prop('checked', !job || job.enabled !== false);
    $('#job-timeout').val(job ? numText(job.timeout) : '');
    $('#job-retries').val(job && job.retries ? numText(job.retries) : '');
    $('#job-retryBackoff').val(job && job.retryBackoff !== 1 ? numText(job.retryBackoff) : '');
    $('#job-concurrencyPolicy').val(job ? str(job.concurrencyPolicy) || 'forbid' : 'forbid');
    $('#job-misfireGrace').val(job ? numText(job.misfireGrace) : '');
    $('#job-keepRuns').val(job ? numText(job.keepRuns) : '');
    $('#job-catchUp').prop('checked', !!(job && job.catchUp));
    $('#job-expectedExitCode').val(job && job.expectedExitCode ? numText(job.expectedExitCode) : '');
    $('#job-outputContains').val(job ? str(job.outputContains) : '');
    $('#job-outputNotContains').val(job ? str(job.outputNotContains) : '');
    $('#job-keepBackground').prop('checked', !!(job && job.keepBackground));
    LIMITS.forEach(function (f) {
      $('#job-limits-' + f).val(job && job.limits ? numText(job.limits[f]) : '');
    });
    fillJobTags(job);
    fillJobPlacement(job);
    fillJobChain(job);
    fillJobNotify(job);
    $('#job-save-btn').prop('disabled', false).text('Save');
    $('#cron-preview').empty();
    if (job && job.cronExpr) { runPreview(); }
    modal('job-modal').show();
  }

  /** A number field: a number when it reads as one, else the text as typed (the server then
   *  names the field in its error); undefined when empty (the field's default). */
  // A run's limits (job.limits), each a field of the dialog.
  var LIMITS = ['memoryMB', 'processes', 'cpuSeconds', 'openFiles'];

  function numberField(selector) {
    var v = str($(selector).val()).trim();
    if (v === '') { return undefined; }
    return /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }

  /** The job JSON from the form, or throws {field, msg} for what can be told before asking. */
  function readJobForm() {
    var job = { name: str($('#job-name').val()).trim(), type: $('#job-type').val() };
    if (job.type === 'http') {
      var headers = {};
      str($('#job-http-headers').val()).split('\n').forEach(function (line, i) {
        if (!line.trim()) { return; }
        var at = line.indexOf(':');
        if (at <= 0) {
          throw { field: 'http.headers', msg: 'http.headers: line ' + (i + 1) + ' is not “Name: value”' };
        }
        headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      });
      job.http = { method: $('#job-http-method').val(), url: str($('#job-http-url').val()).trim(), headers: headers };
      var body = str($('#job-http-body').val());
      if (body) { job.http.body = body; }
      var expected = numberField('#job-http-expectedStatus');
      if (expected !== undefined) { job.http.expectedStatus = expected; }
    } else {
      job.command = str($('#job-command').val());
      var exit = numberField('#job-expectedExitCode');
      if (exit !== undefined) { job.expectedExitCode = exit; }
      job.keepBackground = $('#job-keepBackground').prop('checked');
      var limits = {};
      LIMITS.forEach(function (f) {
        var v = numberField('#job-limits-' + f);
        if (v !== undefined) { limits[f] = v; }
      });
      if (Object.keys(limits).length) { job.limits = limits; }
    }
    if ($('#job-kind-once').prop('checked')) {
      var local = str($('#job-runAt').val());
      var at = local ? new Date(local) : null;
      if (!at || isNaN(at.getTime())) {
        throw { field: 'runAt', msg: 'runAt: pick the date and time of the run' };
      }
      job.runAt = at.toISOString();
    } else {
      job.cronExpr = str($('#job-cronExpr').val()).trim();
    }
    var zone = str($('#job-timezone').val()).trim();
    if (zone) { job.timezone = zone; }
    job.enabled = $('#job-enabled').prop('checked');
    ['timeout', 'retries', 'retryBackoff', 'misfireGrace', 'keepRuns'].forEach(function (f) {
      var v = numberField('#job-' + f);
      if (v !== undefined) { job[f] = v; }
    });
    job.concurrencyPolicy = $('#job-concurrencyPolicy').val();
    job.catchUp = $('#job-catchUp').prop('checked');
    ['outputContains', 'outputNotContains'].forEach(function (f) {
      var v = str($('#job-' + f).val());
      if (v) { job[f] = v; }
    });
    keepUnshownFields(job);
    return $.extend(job, readJobTags(), readJobPlacement(), readJobChain(), readJobNotify());
  }

  /** The fields the dialog does not show (team, env, secretEnv, http.secretHeaders) stay as
   *  the edited job had them: a save from the dialog must not drop a job's secrets. */
  function keepUnshownFields(job) {
    if (!editing) { return; }
    ['team', 'env', 'secretEnv'].forEach(function (f) {
      if (editing[f] !== undefined && editing[f] !== null) { job[f] = editing[f]; }
    });
    if (job.http && editing.http && editing.http.secretHeaders) {
      job.http.secretHeaders = editing.http.secretHeaders;
    }
  }

  function submitJob(ev) {
    ev.preventDefault();
    var $f = $('#job-form');
    clearErrors($f);
    var job;
    try {
      job = readJobForm();
    } catch (err) {
      showError($f, err);
      return;
    }
    var $btn = $('#job-save-btn').prop('disabled', true).text('Saving…');
    api('POST', 'job/save', { job: JSON.stringify(job) }).then(function (prev) {
      modal('job-modal').hide();
      toast((prev ? 'Saved job ' : 'Created job ') + job.name, 'success');
      loadJobs().catch(function () {});
    }, function (err) {
      // The dialog stays open with everything as typed; the message goes under its field.
      showError($f, err);
    }).finally(function () {
      $btn.prop('disabled', false).text('Save');
    });
  }

  // ------------------------------------------------------ cron preview --

  var previewTimer = null;
  var previewSeq = 0;

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(runPreview, 350);
  }

  function runPreview() {
    var seq = ++previewSeq;
    var $p = $('#cron-preview');
    var expr = str($('#job-cronExpr').val()).trim();
    if (!expr) { $p.empty().removeClass('text-danger preview-error'); return; }
    var params = { cronExpr: expr, count: 5 };
    var zone = str($('#job-timezone').val()).trim();
    if (zone) { params.timezone = zone; }
    api('GET', 'cron/preview', params).then(function (data) {
      if (seq !== previewSeq) { return; }
      var next = data && Array.isArray(data.next) ? data.next : [];
      $p.empty().removeClass('text-danger preview-error').addClass('preview-ok');
      $p.append($('<div class="text-muted"></div>').text(next.length
        ? 'Next runs (your time, ' + localZone + '):' : 'This expression never fires again.'));
      var $ul = $('<ul class="list-unstyled mb-0 font-monospace preview-runs"></ul>');
      next.forEach(function (ms) { $ul.append($('<li></li>').text(fmtTime(ms))); });
      $p.append($ul);
    }, function (err) {
      if (seq !== previewSeq) { return; }
      $p.empty().removeClass('preview-ok').addClass('text-danger preview-error').text(err.msg);
    });
  }

  // ------------------------------------------------------------ clone --

  var cloneSource = null;

  function openClone(job) {
    cloneSource = job.name;
    var $f = $('#clone-form');
    clearErrors($f);
    $('#clone-source').text(job.name);
    $('#clone-newName').val(job.name + '-copy');
    modal('clone-modal').show();
  }

  function submitClone(ev) {
    ev.preventDefault();
    var $f = $('#clone-form');
    clearErrors($f);
    var newName = str($('#clone-newName').val()).trim();
    var $btn = $('#clone-save-btn').prop('disabled', true);
    api('POST', 'job/clone', { name: cloneSource, newName: newName }).then(function () {
      modal('clone-modal').hide();
      toast('Cloned ' + cloneSource + ' as ' + newName, 'success');
      loadJobs().catch(function () {});
    }, function (err) {
      if (err.field === 'name') { err.field = null; }   // the source: shown above the field
      showError($f, err);
    }).finally(function () { $btn.prop('disabled', false); });
  }

  // ----------------------------------------------------- confirmations --

  var pendingConfirm = null;

  function confirmThen(title, text, okLabel, action) {
    pendingConfirm = action;
    $('#confirm-modal-title').text(title);
    $('#confirm-text').text(text);
    $('#confirm-ok').text(okLabel).prop('disabled', false);
    modal('confirm-modal').show();
  }

  function runConfirmed() {
    var action = pendingConfirm;
    if (!action) { return; }
    var $btn = $('#confirm-ok').prop('disabled', true);
    action().then(function () {
      modal('confirm-modal').hide();
    }, function (err) {
      modal('confirm-modal').hide();
      toast(err.msg, 'danger');
    }).finally(function () {
      $btn.prop('disabled', false);
      pendingConfirm = null;
    });
  }

  function askDelete(job) {
    var name = job.name;
    confirmThen('Delete job', 'Delete job “' + name + '”? It will no longer be scheduled, and a run of it going on is killed; its run history stays.',
      'Delete', function () {
        return api('POST', 'job/delete', { name: name }).then(function (deleted) {
          toast(deleted ? 'Deleted job ' + name : 'Job ' + name + ' did not exist', deleted ? 'success' : 'secondary');
          loadJobs().catch(function () {});
        });
      });
  }

  // --------------------------------------------------------- log modal --

  // target: the run a link named ({planTime, attempt}), marked when shown; seeking: the pages
  // are walked back until it shows (at most LOG_SEEK_PAGES).
  var logState = { name: null, skip: 0, target: null, seeking: false };
  var expandedRuns = {};
  var logsLoading = false;
  var LOG_SEEK_PAGES = 50;

  function openLogs(job, target) {
    var seek = !!(target && target.planTime);
    logState = { name: job.name, skip: 0, target: seek ? target : null, seeking: seek };
    $('#log-target').addClass('d-none').text('');
    expandedRuns = {};
    chainRuns.forget();
    liveOutput.open(job.name, owns(job));
    $('#log-modal-title').text('Runs of ' + job.name);
    $('#log-list').empty();
    $('#log-page-info').text('Loading…');
    modal('log-modal').show();
    loadLogs();
  }

  function runKey(r) {
    return [str(r.jobName), str(r.planTime), str(r.attempt), str(r.startTime), str(r.status)].join('|');
  }

  function loadLogs() {
    var st = logState;
    if (!st.name || logsLoading) { return; }
    logsLoading = true;
    var again = false;
    api('GET', 'job/log', { name: st.name, skip: st.skip, limit: LOG_PAGE_SIZE }).then(function (runs) {
      if (st !== logState) { return; }   // another job's logs were opened meanwhile
      runs = Array.isArray(runs) ? runs : [];
      $('#log-error').addClass('d-none').text('');
      if (st.seeking && !runs.some(function (r) { return isTarget(r, st.target); }) &&
          runs.length === LOG_PAGE_SIZE && st.skip < LOG_SEEK_PAGES * LOG_PAGE_SIZE &&
          !pageBefore(runs, st.target)) {
        st.skip += LOG_PAGE_SIZE;   // further back: on to the next page before showing any
        again = true;
        return;
      }
      renderLogs(runs);
      chainRuns.refresh($('#log-list'));
      if (st.skip === 0) { liveOutput.refresh(); }
      markTarget(st);
      $('#log-newer').prop('disabled', st.skip === 0);
      $('#log-older').prop('disabled', runs.length < LOG_PAGE_SIZE);
      $('#log-page-info').text(runs.length
        ? 'Runs ' + (st.skip + 1) + '–' + (st.skip + runs.length)
        : (st.skip ? 'No older runs' : ''));
    }, function (err) {
      if (st !== logState) { return; }
      $('#log-error').removeClass('d-none').text('Could not load the runs: ' + err.msg);
      $('#log-newer').prop('disabled', st.skip === 0);
    }).finally(function () {
      logsLoading = false;
      if (again) { loadLogs(); }
    });
  }

  function isTarget(r, target) {
    return !!target && Number(r.planTime) === target.planTime && (Number(r.attempt) || 1) === target.attempt;
  }

  /** Whether a page (newest first, by start) ends before the linked run was planned: then it
   *  is not further back either. A minute's slack for a start before its plan (clock skew). */
  function pageBefore(runs, target) {
    var last = runs[runs.length - 1];
    var at = Number(last.startTime) || Number(last.planTime);
    return at > 0 && at < target.planTime - 60000;
  }

  /** Mark the run the link named, and bring it into view the first time it shows. */
  function markTarget(st) {
    if (!st.target) { return; }
    var $hit = $('#log-list .run').filter(function () {
      return Number($(this).attr('data-plan')) === st.target.planTime &&
        Number($(this).attr('data-attempt')) === st.target.attempt;
    });
    // A step of a chain run: the chain run's card, opened.
    var $chain = $('#log-list .chain-run').filter(function () {
      return $(this).attr('data-runs').split(' ').indexOf(st.target.planTime + ':' + st.target.attempt) >= 0;
    });
    chainRuns.open($chain);
    $hit = $hit.add($chain);
    $hit.addClass('run-linked').children('.card-header').not(':has(.run-linked-badge)')
      .append($('<span class="badge text-bg-primary run-linked-badge">the linked run</span>'));
    if (!st.seeking) { return; }
    st.seeking = false;
    if ($hit.length) {
      $hit[0].scrollIntoView({ block: 'nearest' });
    } else {
      $('#log-target').removeClass('d-none').text('The run the link names (planned ' + fmtTime(st.target.planTime) +
        ', attempt ' + st.target.attempt + ') is not in this job’s log.');
    }
  }

  function triggerText(r) {
    var t = str(r.trigger) || 'schedule';
    var attempt = Number(r.attempt) || 1;
    return attempt > 1 ? t + ', retry (attempt ' + attempt + ')' : t;
  }

  function outputHead(text) {
    var lines = text.split('\n');
    var head = lines.length > OUTPUT_HEAD_LINES ? lines.slice(0, OUTPUT_HEAD_LINES).join('\n') : text;
    if (head.length > OUTPUT_HEAD_CHARS) { head = head.slice(0, OUTPUT_HEAD_CHARS); }
    return head.length < text.length ? { head: head, lines: lines.length } : null;
  }

  /** A run's output, folded to its head when long. A page of /job/log carries outputs cut to
   *  share its budget (run.outputBytes: the whole one's size); the whole one is fetched on demand. */
  function outputBlock(key, text, run) {
    var $wrap = $('<div class="run-output"></div>');
    var $pre = $('<pre class="log-output mb-1"></pre>');
    var cut = outputHead(text);
    $wrap.append($pre);
    if (!cut) {
      $pre.text(text);
    } else {
      var $toggle = $('<button type="button" class="btn btn-link btn-sm p-0 output-toggle"></button>');
      var show = function (all) {
        $pre.text(all ? text : cut.head + '\n…').toggleClass('log-output-full', all);
        $toggle.text(all ? 'Show less' : 'Show all (' + cut.lines + ' lines, ' + text.length + ' characters)');
      };
      show(!!expandedRuns[key]);
      $toggle.on('click', function () {
        expandedRuns[key] = !expandedRuns[key];
        show(expandedRuns[key]);
      });
      $wrap.append($toggle);
    }
    if (run && run.outputBytes !== undefined && run.outputBytes !== null) {
      var $whole = $('<button type="button" class="btn btn-link btn-sm p-0 ms-3 output-whole"></button>')
        .text('Load the whole output (' + Number(run.outputBytes) + ' bytes)');
      $whole.on('click', function () {
        $whole.prop('disabled', true).text('Loading…');
        api('GET', 'job/output', { name: str(run.jobName), planTime: run.planTime, attempt: run.attempt || 1 })
          .then(function (got) {
            expandedRuns[key] = true;
            $wrap.replaceWith(outputBlock(key, str(got.output), null));
          }, function (err) {
            $whole.prop('disabled', false).text('Load the whole output');
            toast(str(err && err.msg) || 'Could not load the output', 'danger');
          });
      });
      $wrap.append($whole);
    }
    return $wrap;
  }

  function renderLogs(runs) {
    var $list = $('#log-list');
    if (runs.length === 0) {
      $list.empty().append($('<p class="text-muted placeholder-row"></p>').text(
        logState.skip ? 'No older runs.' : 'No runs recorded for this job yet.'));
      return;
    }
    $list.children('.placeholder-row').remove();
    var existing = {};
    $list.children('.run, .chain-run').each(function () { existing[$(this).attr('data-key')] = this; });
    // A chain run's steps show as one card (chain-runs.js), keyed by this job's runs in it.
    var items = chainRuns.groupRuns(runs).map(function (item) {
      item.key = item.run ? runKey(item.run) : 'chain|' + item.chainId + '|' + item.runs.map(runKey).join(',');
      return item;
    });
    // Runs that arrive above keep what the reader looks at in place: remember where the
    // first run that stays is, and scroll by as much as it moves.
    var scroller = $('#log-modal .modal-body')[0];
    var anchor = null;
    items.some(function (item) { anchor = existing[item.key] || null; return !!anchor; });
    var anchorTop = anchor ? anchor.getBoundingClientRect().top : 0;
    var keep = {};
    var prev = null;
    items.forEach(function (item) {
      var el = existing[item.key] ||
        (item.run ? runCard(item.run, item.key) : chainRuns.chainCard(item, item.key))[0];
      if (prev) { if (el.previousElementSibling !== prev) { $(prev).after(el); } } else if ($list[0].firstElementChild !== el) { $list.prepend(el); }
      keep[item.key] = true;
      prev = el;
    });
    $list.children('.run, .chain-run').each(function () { if (!keep[$(this).attr('data-key')]) { $(this).remove(); } });
    if (anchor && scroller && scroller.scrollTop > 0) {
      scroller.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    }
  }

  function runCard(r, key) {
    var start = Number(r.startTime), end = Number(r.endTime), plan = Number(r.planTime);
    var $card = $('<div class="card mb-2 run"></div>').attr('data-key', key).attr('data-status', str(r.status))
      .attr('data-plan', str(r.planTime)).attr('data-attempt', str(Number(r.attempt) || 1));
    var $head = $('<div class="card-header d-flex flex-wrap align-items-center gap-2 py-1"></div>')
      .append(statusBadge(r.status).addClass('run-status'))
      .append($('<span class="small run-trigger"></span>').text(triggerText(r)))
      .append($('<span class="small"></span>').text('exit code ').append(
        $('<code class="run-exit"></code>').text(r.exitCode === null || r.exitCode === undefined ? '–' : str(r.exitCode))))
      .append($('<span class="small"></span>').text('took ' + (start > 0 && end >= start ? fmtDuration(end - start) : '–')))
      .append($('<span class="small text-muted ms-auto text-break"></span>').text(str(r.worker) ? 'on ' + str(r.worker) : ''));
    var late = start > 0 && plan > 0 ? ' (' + (start >= plan ? '+' : '−') + fmtDuration(Math.abs(start - plan)) + ')' : '';
    var $body = $('<div class="card-body py-2"></div>')
      .append($('<div class="small text-muted mb-1"></div>')
        .append('planned ').append(timeSpan(plan))
        .append(' · started ').append($('<span class="text-nowrap"></span>').text(fmtTime(start, true) + late))
        .append(' · ended ').append($('<span class="text-nowrap"></span>').text(fmtTime(end, true))));
    if (str(r.err)) {
      $body.append($('<pre class="log-output log-err text-danger mb-1 run-err"></pre>').text(str(r.err)));
    }
    if (str(r.output)) {
      $body.append(outputBlock(key, str(r.output), r));
    } else if (!str(r.err)) {
      $body.append($('<span class="text-muted small">(no output)</span>'));
    }
    return $card.append($head).append($body);
  }

  // ------------------------------------------------------------ account --

  function loadTokens() {
    return api('GET', 'token/list').then(function (tokens) {
      tokens = Array.isArray(tokens) ? tokens : [];
      var $body = $('#tokens-body').empty();
      if (tokens.length === 0) { $body.append(placeholderRow(5, 'No API tokens.')); return; }
      tokens.forEach(function (t) {
        $body.append($('<tr class="token-row"></tr>').attr('data-id', str(t.id))
          .append($('<td class="text-break token-name"></td>').text(str(t.name)))
          .append($('<td class="text-break"></td>').text(str(t.username)))
          .append($('<td></td>').append($('<code></code>').text(str(t.id))))
          .append($('<td class="text-nowrap"></td>').append(timeSpan(t.createdAt)))
          .append($('<td class="text-end"></td>').append(
            $('<button type="button" class="btn btn-sm btn-outline-danger act-revoke">Revoke</button>'))));
      });
    }, function (err) { toast('Could not load tokens: ' + err.msg, 'danger'); });
  }

  function createToken(ev) {
    ev.preventDefault();
    var $f = $('#token-form');
    clearErrors($f);
    var name = str($('#token-name').val()).trim();
    api('POST', 'token/create', { name: name }).then(function (t) {
      $('#token-created-name').text(str(t.name));
      $('#token-value').val(str(t.token));
      $('#token-created').removeClass('d-none');
      $('#token-name').val('');
      loadTokens();
    }, function (err) { showError($f, err); });
  }

  function copyToken() {
    var value = str($('#token-value').val());
    var done = function () { toast('Token copied', 'success'); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(done, function () { selectToken(); });
    } else {
      selectToken();
    }
  }

  function selectToken() {
    var input = document.getElementById('token-value');
    input.select();
    try {
      if (document.execCommand('copy')) { toast('Token copied', 'success'); return; }
    } catch (e) { /* fall through */ }
    toast('Selected: press Ctrl+C to copy', 'secondary');
  }

  function askRevoke(id, name) {
    confirmThen('Revoke token', 'Revoke the token “' + name + '”? Scripts using it stop working at once.',
      'Revoke', function () {
        return api('POST', 'token/revoke', { id: id }).then(function () {
          toast('Revoked token ' + name, 'success');
          loadTokens();
        });
      });
  }

  function changePassword(ev) {
    ev.preventDefault();
    var $f = $('#password-form');
    clearErrors($f);
    if ($('#pw-new').val() !== $('#pw-repeat').val()) {
      showError($f, { field: 'repeatPassword', msg: 'the two new passwords differ' });
      return;
    }
    api('POST', 'auth/password', {
      currentPassword: $('#pw-current').val(), newPassword: $('#pw-new').val()
    }).then(function () {
      $f[0].reset();
      toast('Password changed', 'success');
    }, function (err) { showError($f, err); });
  }

  // -------------------------------------------------------------- audit --

  var auditState = { skip: 0, filter: {} };

  function loadAudit() {
    var st = auditState;
    var params = $.extend({ skip: st.skip, limit: AUDIT_PAGE_SIZE }, st.filter);
    var $f = $('#audit-form');
    return api('GET', 'audit', params).then(function (entries) {
      if (st !== auditState) { return; }
      entries = Array.isArray(entries) ? entries : [];
      var $body = $('#audit-body').empty();
      if (entries.length === 0) { $body.append(placeholderRow(6, 'No entries.')); }
      entries.forEach(function (e) {
        var $details = $('<td class="cell-details"></td>');
        var extra = {};
        ['detail', 'before', 'after'].forEach(function (k) { if (e[k] !== undefined && e[k] !== null) { extra[k] = e[k]; } });
        if (Object.keys(extra).length) {
          $details.append($('<details></details>')
            .append($('<summary class="small"></summary>').text(Object.keys(extra).join(', ')))
            .append($('<pre class="log-output mb-0"></pre>').text(JSON.stringify(extra, null, 2))));
        }
        $body.append($('<tr class="audit-row"></tr>')
          .append($('<td class="text-nowrap"></td>').append(timeSpan(e.at)))
          .append($('<td></td>').append($('<code class="audit-action"></code>').text(str(e.action))))
          .append($('<td class="text-break"></td>').text(str(e.user) + (e.role ? ' (' + str(e.role) + ')' : '')))
          .append($('<td class="text-break small"></td>').text(str(e.source)))
          .append($('<td class="text-break"></td>').text(str(e.job)))
          .append($details));
      });
      $('#audit-newer').prop('disabled', st.skip === 0);
      $('#audit-older').prop('disabled', entries.length < AUDIT_PAGE_SIZE);
      $('#audit-page-info').text(entries.length ? 'Entries ' + (st.skip + 1) + '–' + (st.skip + entries.length) + ', newest first' : '');
    }, function (err) { showError($f, err); });
  }

  function submitAudit(ev) {
    ev.preventDefault();
    clearErrors($('#audit-form'));
    var filter = {};
    ['user', 'job', 'action'].forEach(function (k) {
      var v = str($('#audit-' + k).val()).trim();
      if (v) { filter[k] = v; }
    });
    auditState = { skip: 0, filter: filter };
    loadAudit();
  }

  // -------------------------------------------------------------- users --

  function loadUsers() {
    return api('GET', 'user/list').then(function (users) {
      users = Array.isArray(users) ? users : [];
      var $body = $('#users-body').empty();
      users.forEach(function (u) {
        var name = str(u.username);
        var $role = $('<select class="form-select form-select-sm user-role-select"></select>').attr('aria-label', 'Role of ' + name);
        ['guest', 'user', 'admin'].forEach(function (r) { $role.append($('<option></option>').val(r).text(r)); });
        $role.val(str(u.role)).data('was', str(u.role)).prop('disabled', name === me.username);
        var $del = $('<button type="button" class="btn btn-sm btn-outline-danger act-delete-user">Delete</button>')
          .prop('disabled', name === me.username).attr('title', name === me.username ? 'you cannot delete yourself' : '');
        $body.append($('<tr class="user-row"></tr>').attr('data-user', name)
          .append($('<td class="text-break fw-semibold"></td>').text(name))
          .append($('<td></td>').append($role))
          .append($('<td class="text-nowrap"></td>').append(timeSpan(u.createdAt)))
          .append($('<td class="text-nowrap"></td>').append(timeSpan(u.updatedAt)))
          .append($('<td class="text-end"></td>').append($del)));
      });
    }, function (err) { toast('Could not load accounts: ' + err.msg, 'danger'); });
  }

  function createUser(ev) {
    ev.preventDefault();
    var $f = $('#user-form');
    clearErrors($f);
    var name = str($('#user-username').val()).trim();
    if (!str($('#user-password').val())) {
      showError($f, { field: 'password', msg: 'password: a new account needs one' });
      return;
    }
    api('POST', 'user/save', {
      username: name, role: $('#user-role').val(), password: $('#user-password').val()
    }).then(function (before) {
      $f[0].reset();
      toast((before ? 'Changed account ' : 'Created account ') + name, 'success');
      loadUsers();
    }, function (err) { showError($f, err); });
  }

  // -------------------------------------------------------------- views --

  var currentView = 'dashboard';

  function showView(view) {
    var $tab = $('#main-tabs [data-view]').filter(function () { return $(this).attr('data-view') === view; });
    if (!$tab.length || $tab.closest('.d-none').length) { return; }
    bootstrap.Tab.getOrCreateInstance($tab[0]).show();
  }

  function onViewShown(view) {
    currentView = view;
    if (window.history && history.replaceState) { history.replaceState(null, '', '#' + view); }
    if (view === 'dashboard') { dashboard.show(); }
    if (view === 'jobs') { loadJobs().catch(function () {}); }
    if (view === 'workers') { loadWorkers().catch(function () {}); }
    if (view === 'account') { loadTokens(); }
    if (view === 'audit') { loadAudit(); }
    if (view === 'users') { loadUsers(); }
    if (view === 'notifications') { notifications.show(); }
    if (view === 'teams') { teams.show(); }
  }

  // ------------------------------------------------------ auto refresh --

  function refreshAll() {
    if (document.hidden) { return; }
    Promise.allSettled([loadJobs(), loadWorkers()]).then(function (results) {
      var failed = results.filter(function (r) { return r.status === 'rejected'; });
      var $s = $('#refresh-status');
      if (failed.length) {
        $s.removeClass('text-success').addClass('text-warning')
          .text('Refresh failed (' + failed[0].reason.msg + ') at ' + fmtTime(Date.now()));
      } else {
        $s.removeClass('text-warning').addClass('text-success').text('Updated ' + fmtTime(Date.now()));
      }
    });
    if (isShown('log-modal') && logState.skip === 0) { loadLogs(); }
    if (currentView === 'notifications') { notifications.refresh(); }
    if (currentView === 'dashboard') { dashboard.refresh(); }
  }

  /** An address "#log=<job>&planTime=..&attempt=.." (a notification's link): that job's runs,
   *  at that run. */
  function openLinkedRun() {
    var link = parseRunLink(window.location.hash);
    if (!link) { return false; }
    openLogs({ name: link.name }, link);
    return true;
  }

  // -------------------------------------------------------------- wire --

  $(function () {
    try { localZone = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { localZone = ''; }
    if (!localZone) {
      var off = -new Date().getTimezoneOffset();
      localZone = 'UTC' + (off >= 0 ? '+' : '-') + pad(Math.floor(Math.abs(off) / 60)) + ':' + pad(Math.abs(off) % 60);
    }
    $('#tz-name, .tz-label-plain').text(localZone);
    $('.tz-label').text('(' + localZone + ')');
    try {
      var $zones = $('#timezones');
      (Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : []).forEach(function (z) {
        $zones.append($('<option></option>').val(z));
      });
    } catch (e) { /* no zone list: the field still takes any name */ }
    AUDIT_ACTIONS.forEach(function (a) { $('#audit-action').append($('<option></option>').val(a).text(a)); });

    // Jobs
    $('#btn-new-job').on('click', function () { openJobModal(null); });
    $('#btn-refresh').on('click', refreshAll);
    jobFilters.init(function () { loadJobs().catch(function () {}); });
    $('#jobs-body')
      .on('click', '.act-edit', function () { var j = jobOf(this); if (j) { openJobModal(j); } })
      .on('click', '.act-clone', function () { var j = jobOf(this); if (j) { openClone(j); } })
      .on('click', '.act-delete', function () { var j = jobOf(this); if (j) { askDelete(j); } })
      .on('click', '.act-logs', function () { var j = jobOf(this); if (j) { openLogs(j); } })
      .on('click', '.act-kill', function () {
        var j = jobOf(this);
        if (j) { jobAction(j, this, 'job/kill', 'Kill sent to the running ' + j.name); }
      })
      .on('click', '.act-run', function () {
        var j = jobOf(this);
        if (j) { jobAction(j, this, 'job/run', 'A worker runs ' + j.name + ' now'); }
      })
      .on('click', '.act-pause', function () {
        var j = jobOf(this);
        if (j) { jobAction(j, this, 'job/disable', 'Paused ' + j.name); }
      })
      .on('click', '.act-resume', function () {
        var j = jobOf(this);
        if (j) { jobAction(j, this, 'job/enable', 'Resumed ' + j.name); }
      });

    // Job dialog
    $('#job-form').on('submit', submitJob);
    $('#job-form').on('input change', '.is-invalid', function () {
      $(this).removeClass('is-invalid');
    });
    $('#job-type').on('change', function () { setJobType($(this).val()); });
    $('#job-form input[name="scheduleKind"]').on('change', function () {
      setScheduleKind($('#job-kind-once').prop('checked') ? 'once' : 'cron');
    });
    $('#job-cronExpr').on('input', schedulePreview);
    $('#job-timezone').on('input change', schedulePreview);
    $('#job-modal').on('shown.bs.modal', function () {
      var first = $('#job-name').prop('readonly')
        ? ($('#job-type').val() === 'http' ? '#job-http-url' : '#job-command') : '#job-name';
      $(first).trigger('focus');
    });
    $('#job-modal').on('hidden.bs.modal', function () { clearTimeout(previewTimer); previewSeq++; });

    // Clone and confirmations
    $('#clone-form').on('submit', submitClone);
    $('#clone-form').on('input', '.is-invalid', function () { $(this).removeClass('is-invalid'); });
    $('#clone-modal').on('shown.bs.modal', function () { $('#clone-newName').trigger('focus').trigger('select'); });
    $('#confirm-ok').on('click', runConfirmed);
    $('#confirm-modal').on('hidden.bs.modal', function () { pendingConfirm = null; });

    // Logs
    $('#log-refresh').on('click', loadLogs);
    $('#log-newer').on('click', function () {
      logState.skip = Math.max(0, logState.skip - LOG_PAGE_SIZE); $('#log-list').empty(); loadLogs();
    });
    $('#log-older').on('click', function () {
      logState.skip += LOG_PAGE_SIZE; $('#log-list').empty(); loadLogs();
    });
    $('#log-modal').on('hidden.bs.modal', function () {
      logState = { name: null, skip: 0, target: null, seeking: false };
      liveOutput.close();
      // A reload shows the view, not the link's run again.
      if (parseRunLink(window.location.hash) && window.history && history.replaceState) {
        history.replaceState(null, '', '#' + currentView);
      }
    });
    window.addEventListener('hashchange', openLinkedRun);

    // Account
    $('#token-form').on('submit', createToken);
    $('#token-copy').on('click', copyToken);
    $('#tokens-body').on('click', '.act-revoke', function () {
      var $tr = $(this).closest('tr');
      askRevoke($tr.attr('data-id'), $tr.find('.token-name').text());
    });
    $('#password-form').on('submit', changePassword);
    $('#password-form, #token-form, #user-form, #audit-form').on('input change', '.is-invalid', function () {
      $(this).removeClass('is-invalid');
    });

    // Audit
    $('#audit-form').on('submit', submitAudit);
    $('#audit-newer').on('click', function () {
      auditState = { skip: Math.max(0, auditState.skip - AUDIT_PAGE_SIZE), filter: auditState.filter }; loadAudit();
    });
    $('#audit-older').on('click', function () {
      auditState = { skip: auditState.skip + AUDIT_PAGE_SIZE, filter: auditState.filter }; loadAudit();
    });

    // Users
    $('#user-form').on('submit', createUser);
    $('#users-body').on('change', '.user-role-select', function () {
      var $sel = $(this);
      var name = $sel.closest('tr').attr('data-user');
      api('POST', 'user/save', { username: name, role: $sel.val() }).then(function () {
        $sel.data('was', $sel.val());
        toast(name + ' is now ' + $sel.val(), 'success');
      }, function (err) {
        $sel.val($sel.data('was'));
        toast(err.msg, 'danger');
      });
    });
    $('#users-body').on('click', '.act-delete-user', function () {
      var name = $(this).closest('tr').attr('data-user');
      confirmThen('Delete account', 'Delete the account “' + name + '”? Its tokens and sessions end at once; its jobs stay.',
        'Delete', function () {
          return api('POST', 'user/delete', { username: name }).then(function () {
            toast('Deleted account ' + name, 'success');
            loadUsers();
          });
        });
    });

    // Chain runs in the log view: their own module, handed the log's helpers
    chainRuns.init({
      statusBadge: statusBadge,
      timeSpan: timeSpan,
      fmtTime: fmtTime,
      fmtDuration: fmtDuration,
      outputBlock: outputBlock,
      runKey: runKey,
      toast: toast
    });

    liveOutput.init({ statusBadge: statusBadge, fmtTime: fmtTime, toast: toast, reloadLogs: loadLogs });

    dashboard.init({
      fmtClock: function (ms) { var d = new Date(ms); return pad(d.getHours()) + ':' + pad(d.getMinutes()); },
      fmtDuration: fmtDuration
    });

    // Notifications view: its own module, handed the helpers it shares
    notifications.init({
      isAdmin: isAdmin,
      jobs: function () { return api('GET', 'job/list'); },
      toast: toast,
      confirmThen: confirmThen,
      modal: modal,
      clearErrors: clearErrors,
      showError: showError,
      timeSpan: timeSpan,
      placeholderRow: placeholderRow,
      syncRows: syncRows
    });

    // Teams view: its own module too
    teams.init({
      isAdmin: isAdmin,
      me: function () { return me; },
      toast: toast,
      confirmThen: confirmThen,
      clearErrors: clearErrors,
      showError: showError,
      timeSpan: timeSpan,
      placeholderRow: placeholderRow
    });

    // Views, session, refresh
    $('#main-tabs').on('shown.bs.tab', '[data-view]', function () { onViewShown($(this).attr('data-view')); });
    document.addEventListener('visibilitychange', function () { if (!document.hidden) { refreshAll(); } });
    $('#btn-logout').on('click', function () {
      api('POST', 'auth/logout', {}).then(function () { window.location.assign('login.html'); },
        function (err) { toast(err.msg, 'danger'); });
    });

    api('GET', 'auth/me', {}).then(function (who) {
      me = { username: str(who.username), role: str(who.role), csrfToken: who.csrfToken || null };
      setCsrfToken(me.csrfToken);
      $('#whoami').text(me.username + ' (' + me.role + ')').attr('title', me.username + ' (' + me.role + ')');
      $('#account-name').text(me.username);
      $('#account-role').text(me.role);
      $('.admin-only').toggleClass('d-none', !isAdmin());
      $('.needs-user').toggleClass('d-none', !canWrite());
      refreshAll();
      setInterval(refreshAll, REFRESH_MS);
      if (!openLinkedRun()) {
        var wanted = (window.location.hash || '').replace(/^#/, '');
        if (wanted && wanted !== 'dashboard') { showView(wanted); }
      }
    }, function (err) {
      $('#refresh-status').text('Could not ask who is logged in: ' + err.msg);
    });
  });
}(jQuery));
