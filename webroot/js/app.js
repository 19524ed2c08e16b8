/*
 * GDTS console (minimal version).
 *
 * Rules kept on purpose:
 *  - No inline scripts/handlers anywhere: all behaviour is bound here, so a
 *    strict Content-Security-Policy (script-src 'self') can be enabled.
 *  - Anything that comes from users or job runs (names, commands, cron
 *    expressions, output, error messages, hosts, ...) is inserted with
 *    .text() / .val(), never .html().
 *  - API URLs are relative ("job/list", not "/job/list") so the console also
 *    works when the manager is published under a path prefix by a proxy.
 *
 * API envelope: {"errno": 0, "msg": "success", "data": ...}; on error
 * errno != 0, HTTP 4xx, msg starts with the field name and an optional
 * "field" key names the offending form field.
 */
(function ($) {
  'use strict';

  var REFRESH_MS = 5000;
  var LOG_PAGE_SIZE = 20;
  var JOB_FIELDS = ['name', 'command', 'cronExpr'];

  // ---------------------------------------------------------------- API --

  /**
   * Call the manager API. Resolves with `data`, rejects with
   * {msg, field, status}. A non-zero errno is an error even on HTTP 200.
   */
  // The session's CSRF token (from auth/me): every change the console makes carries it.
  var csrfToken = null;

  function api(method, url, params) {
    return new Promise(function (resolve, reject) {
      $.ajax({
        url: url,
        method: method,
        data: params,           // GET: query string; POST: application/x-www-form-urlencoded
        dataType: 'json',
        cache: false,
        timeout: 10000,
        headers: csrfToken ? { 'X-CSRF-Token': csrfToken } : {}
      }).done(function (resp) {
        if (resp && resp.errno === 0) {
          resolve(resp.data);
        } else {
          reject(apiError(resp, 200));
        }
      }).fail(function (xhr, textStatus) {
        if (xhr.status === 401) {
          // Session expired or logged out elsewhere: back to the login page.
          window.location.assign('login.html');
          return;
        }
        var body = xhr.responseJSON;
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

  function apiError(body, status) {
    var msg = (body && body.msg) ? String(body.msg) : 'unknown error';
    var field = body && body.field ? String(body.field) : null;
    if (!field) {
      // Messages start with the field name ("cronExpr: minute field ...").
      var m = /^([A-Za-z]+)\s*:/.exec(msg);
      if (m && JOB_FIELDS.indexOf(m[1]) !== -1) { field = m[1]; }
    }
    return { msg: msg, field: field, status: status, errno: body ? body.errno : undefined };
  }

  // ----------------------------------------------------------- helpers --

  function pad(n, w) {
    var s = String(n);
    while (s.length < (w || 2)) { s = '0' + s; }
    return s;
  }

  /** epoch ms -> "YYYY-MM-DD HH:MM:SS" in the browser's local time zone. */
  function fmtTime(ms, withMillis) {
    if (ms === null || ms === undefined || ms === '' || !isFinite(ms) || Number(ms) <= 0) { return '–'; }
    var d = new Date(Number(ms));
    var s = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    return withMillis ? s + '.' + pad(d.getMilliseconds(), 3) : s;
  }

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

  function str(v) { return (v === null || v === undefined) ? '' : String(v); }

  function anyModalOpen() {
    // .show is set while shown; body.modal-open covers the fade in/out too.
    return $('.modal.show').length > 0 || $(document.body).hasClass('modal-open');
  }

  function modal(id) {
    return bootstrap.Modal.getOrCreateInstance(document.getElementById(id));
  }

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

  // -------------------------------------------------------------- jobs --

  var jobsLoading = false;

  function loadJobs() {
    if (jobsLoading) { return Promise.resolve(); }
    jobsLoading = true;
    return api('GET', 'job/list').then(function (jobs) {
      renderJobs(Array.isArray(jobs) ? jobs : []);
      return true;
    }, function (err) {
      // Keep the last good table; only replace the "Loading" placeholder.
      if ($('#jobs-body tr.job-row').length === 0) {
        $('#jobs-body').empty().append(placeholderRow(4, 'Could not load jobs: ' + err.msg, 'text-danger'));
      }
      throw err;
    }).finally(function () { jobsLoading = false; });
  }

  function renderJobs(jobs) {
    var $body = $('#jobs-body').empty();
    if (jobs.length === 0) {
      $body.append(placeholderRow(4, 'No jobs yet. Use “New job” to create one.'));
      return;
    }
    jobs = jobs.slice().sort(function (a, b) { return str(a.name).localeCompare(str(b.name)); });
    jobs.forEach(function (job) {
      var j = { name: str(job.name), command: str(job.command), cronExpr: str(job.cronExpr) };
      var $tr = $('<tr class="job-row"></tr>').data('job', j);
      $tr.append($('<td class="fw-semibold text-break"></td>').text(j.name));
      $tr.append($('<td class="cell-command"></td>').append($('<code class="text-break"></code>').text(j.command)));
      $tr.append($('<td class="text-nowrap"></td>').append($('<code></code>').text(j.cronExpr)));
      var $actions = $('<div class="btn-group btn-group-sm" role="group"></div>')
        .attr('aria-label', 'Actions for ' + j.name)
        .append($('<button type="button" class="btn btn-outline-primary act-edit">Edit</button>'))
        .append($('<button type="button" class="btn btn-outline-danger act-delete">Delete</button>'))
        .append($('<button type="button" class="btn btn-outline-warning act-kill">Kill</button>'))
        .append($('<button type="button" class="btn btn-outline-secondary act-logs">Logs</button>'));
      $tr.append($('<td class="text-end text-nowrap"></td>').append($actions));
      $body.append($tr);
    });
  }

  function jobOf(el) { return $(el).closest('tr.job-row').data('job'); }

  // ----------------------------------------------------------- workers --

  var workersLoading = false;

  function loadWorkers() {
    if (workersLoading) { return Promise.resolve(); }
    workersLoading = true;
    return api('GET', 'worker/list').then(function (workers) {
      renderWorkers(Array.isArray(workers) ? workers : []);
      return true;
    }, function (err) {
      if ($('#workers-body tr.worker-row').length === 0) {
        $('#workers-body').empty().append(placeholderRow(5, 'Could not load workers: ' + err.msg, 'text-danger'));
      }
      throw err;
    }).finally(function () { workersLoading = false; });
  }

  function renderWorkers(workers) {
    var $body = $('#workers-body').empty();
    $('#workers-count').text(workers.length)
      .toggleClass('text-bg-success', workers.length > 0)
      .toggleClass('text-bg-danger', workers.length === 0)
      .removeClass('text-bg-secondary');
    if (workers.length === 0) {
      $body.append(placeholderRow(5, 'No workers registered: no job will run.', 'text-danger'));
      return;
    }
    var now = Date.now();
    workers.slice().sort(function (a, b) { return str(a.id).localeCompare(str(b.id)); }).forEach(function (w) {
      var started = Number(w.startedAt);
      $body.append($('<tr class="worker-row"></tr>')
        .append($('<td class="text-break"></td>').append($('<code></code>').text(str(w.id))))
        .append($('<td class="text-break"></td>').text(str(w.host)))
        .append($('<td></td>').text(str(w.pid)))
        .append($('<td class="text-nowrap"></td>').text(fmtTime(started)))
        .append($('<td class="text-nowrap"></td>').text(started > 0 ? fmtDuration(now - started) : '–')));
    });
  }

  // ------------------------------------------------------ auto refresh --

  function refreshAll(force) {
    if (!force && (anyModalOpen() || document.hidden)) { return; }
    Promise.allSettled([loadJobs(), loadWorkers()]).then(function (results) {
      var failed = results.filter(function (r) { return r.status === 'rejected'; });
      var $s = $('#refresh-status');
      if (failed.length) {
        $s.removeClass('text-success').addClass('text-warning')
          .text('Refresh failed (' + failed[0].reason.msg + ') at ' + fmtTime(Date.now()));
      } else {
        $s.removeClass('text-warning').addClass('text-success')
          .text('Updated ' + fmtTime(Date.now()));
      }
    });
  }

  // --------------------------------------------------------- job modal --

  function clearFieldErrors() {
    var $f = $('#job-form');
    $f.find('.is-invalid').removeClass('is-invalid');
    $f.find('.invalid-feedback').text('');
    $('#job-form-error').addClass('d-none').text('');
  }

  function showFieldError(field, msg) {
    var $input = $('#job-form').find('[name="' + field + '"]');
    if (field && $input.length) {
      $input.addClass('is-invalid');
      $('#job-form .invalid-feedback[data-for="' + field + '"]').text(msg);
      $input.trigger('focus');
    } else {
      $('#job-form-error').removeClass('d-none').text(msg);
    }
  }

  function openJobModal(job) {
    var editing = !!job;
    var $f = $('#job-form');
    $f[0].reset();
    clearFieldErrors();
    $('#job-modal-title').text(editing ? 'Edit job' : 'New job');
    // The name is the key: renaming would create a second job, so it is fixed while editing.
    $('#job-name').val(editing ? job.name : '').prop('readonly', editing);
    $('#job-name-help').text(editing
      ? 'The name identifies the job and cannot be changed; delete and re-create to rename.'
      : 'Unique job name. Saving an existing name replaces that job.');
    $('#job-command').val(editing ? job.command : '');
    $('#job-cronExpr').val(editing ? job.cronExpr : '');
    $('#job-save-btn').prop('disabled', false).text('Save');
    modal('job-modal').show();
  }

  function submitJob(ev) {
    ev.preventDefault();
    clearFieldErrors();
    var job = {
      name: str($('#job-name').val()).trim(),
      command: $('#job-command').val(),
      cronExpr: str($('#job-cronExpr').val()).trim()
    };
    // Cheap client-side checks; the server is authoritative and its errors are shown the same way.
    for (var i = 0; i < JOB_FIELDS.length; i++) {
      if (!job[JOB_FIELDS[i]].trim()) {
        showFieldError(JOB_FIELDS[i], JOB_FIELDS[i] + ': must not be empty');
        return;
      }
    }
    var $btn = $('#job-save-btn').prop('disabled', true).text('Saving…');
    api('POST', 'job/save', { job: JSON.stringify(job) }).then(function (prev) {
      modal('job-modal').hide();
      toast((prev ? 'Updated job ' : 'Created job ') + job.name, 'success');
      loadJobs().catch(function () {});
    }, function (err) {
      // Keep the modal open and show the message under the offending field.
      showFieldError(err.field, err.msg);
    }).finally(function () {
      $btn.prop('disabled', false).text('Save');
    });
  }

  // ------------------------------------------------------ delete / kill --

  var pendingDelete = null;

  function askDelete(job) {
    pendingDelete = job.name;
    $('#confirm-job-name').text(job.name);
    $('#confirm-delete-btn').prop('disabled', false);
    modal('confirm-modal').show();
  }

  function doDelete() {
    var name = pendingDelete;
    if (!name) { return; }
    var $btn = $('#confirm-delete-btn').prop('disabled', true);
    api('POST', 'job/delete', { name: name }).then(function (deleted) {
      modal('confirm-modal').hide();
      toast(deleted ? 'Deleted job ' + name : 'Job ' + name + ' did not exist', deleted ? 'success' : 'secondary');
      loadJobs().catch(function () {});
    }, function (err) {
      toast('Delete ' + name + ' failed: ' + err.msg, 'danger');
    }).finally(function () {
      $btn.prop('disabled', false);
      pendingDelete = null;
    });
  }

  function doKill(job, btn) {
    var $btn = $(btn).prop('disabled', true);
    api('POST', 'job/kill', { name: job.name }).then(function () {
      toast('Kill requested for ' + job.name + ' (applies to a run in progress, if any)', 'warning');
    }, function (err) {
      toast('Kill ' + job.name + ' failed: ' + err.msg, 'danger');
    }).finally(function () { $btn.prop('disabled', false); });
  }

  // --------------------------------------------------------- log modal --

  var logState = { name: null, skip: 0 };

  var STATUS_BADGE = {
    succeeded: 'text-bg-success',
    failed: 'text-bg-danger',
    killed: 'text-bg-warning'
  };

  function openLogs(job) {
    logState = { name: job.name, skip: 0 };
    $('#log-modal-title').text('Logs: ' + job.name);
    $('#log-body').empty();
    modal('log-modal').show();
    loadLogs();
  }

  function loadLogs() {
    var st = logState;
    if (!st.name) { return; }
    $('#log-error').addClass('d-none').text('');
    $('#log-newer, #log-older, #log-refresh').prop('disabled', true);
    $('#log-page-info').text('Loading…');
    api('GET', 'job/log', { name: st.name, skip: st.skip, limit: LOG_PAGE_SIZE }).then(function (runs) {
      if (st !== logState) { return; }   // another job's logs were opened meanwhile
      runs = Array.isArray(runs) ? runs : [];
      renderLogs(runs);
      $('#log-newer').prop('disabled', st.skip === 0);
      $('#log-older').prop('disabled', runs.length < LOG_PAGE_SIZE);
      $('#log-page-info').text(runs.length
        ? 'Runs ' + (st.skip + 1) + '–' + (st.skip + runs.length) + ', newest first'
        : (st.skip ? 'No older runs' : ''));
    }, function (err) {
      if (st !== logState) { return; }
      $('#log-error').removeClass('d-none').text('Could not load logs: ' + err.msg);
      $('#log-newer').prop('disabled', st.skip === 0);
      $('#log-page-info').text('');
    }).finally(function () {
      $('#log-refresh').prop('disabled', false);
    });
  }

  function renderLogs(runs) {
    var $body = $('#log-body').empty();
    if (runs.length === 0) {
      $body.append(placeholderRow(7, 'No runs recorded for this job yet.'));
      return;
    }
    runs.forEach(function (r) {
      var status = str(r.status) || 'unknown';
      var start = Number(r.startTime), end = Number(r.endTime), plan = Number(r.planTime);
      var $out = $('<td class="cell-output"></td>');
      if (str(r.err)) {
        $out.append($('<pre class="log-output log-err text-danger mb-1"></pre>').text(str(r.err)));
      }
      if (str(r.output)) {
        $out.append($('<pre class="log-output mb-0"></pre>').text(str(r.output)));
      } else if (!str(r.err)) {
        $out.append($('<span class="text-muted small">(no output)</span>'));
      }
      var $tr = $('<tr></tr>')
        .append($('<td></td>').append($('<span class="badge"></span>')
          .addClass(STATUS_BADGE[status] || 'text-bg-secondary').text(status)))
        .append($('<td class="font-monospace"></td>').text(r.exitCode === null || r.exitCode === undefined ? '–' : str(r.exitCode)))
        .append($('<td class="text-nowrap"></td>').text(fmtTime(plan))
          .attr('title', 'Scheduled (dispatched): ' + fmtTime(Number(r.scheduleTime), true)))
        .append($('<td class="text-nowrap"></td>').text(fmtTime(start))
          .attr('title', start > 0 && plan > 0 ? 'Started ' + fmtDuration(start - plan) + ' after the planned time' : ''))
        .append($('<td class="text-nowrap"></td>').text(start > 0 && end >= start ? fmtDuration(end - start) : '–')
          .attr('title', 'Ended ' + fmtTime(end, true)))
        .append($('<td class="text-break small"></td>').text(str(r.worker)))
        .append($out);
      $body.append($tr);
    });
  }

  // -------------------------------------------------------------- wire --

  $(function () {
    var tz = '';
    try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { tz = ''; }
    $('#tz-name').text(tz || 'UTC' + (new Date().getTimezoneOffset() <= 0 ? '+' : '-') +
      Math.abs(new Date().getTimezoneOffset() / 60));

    $('#btn-new-job').on('click', function () { openJobModal(null); });
    $('#btn-refresh').on('click', function () { refreshAll(true); });
    $('#job-form').on('submit', submitJob);
    $('#job-form').on('input', '.is-invalid', function () {
      $(this).removeClass('is-invalid');
    });
    $('#job-modal').on('shown.bs.modal', function () {
      $($('#job-name').prop('readonly') ? '#job-command' : '#job-name').trigger('focus');
    });

    $('#jobs-body')
      .on('click', '.act-edit', function () { openJobModal(jobOf(this)); })
      .on('click', '.act-delete', function () { askDelete(jobOf(this)); })
      .on('click', '.act-kill', function () { doKill(jobOf(this), this); })
      .on('click', '.act-logs', function () { openLogs(jobOf(this)); });

    $('#confirm-delete-btn').on('click', doDelete);
    $('#confirm-modal').on('hidden.bs.modal', function () { pendingDelete = null; });

    $('#log-refresh').on('click', loadLogs);
    $('#log-newer').on('click', function () {
      logState.skip = Math.max(0, logState.skip - LOG_PAGE_SIZE); loadLogs();
    });
    $('#log-older').on('click', function () {
      logState.skip += LOG_PAGE_SIZE; loadLogs();
    });
    $('#log-modal').on('hidden.bs.modal', function () { logState = { name: null, skip: 0 }; });

    // Refresh right after any dialog closes (something may have changed), then every 5 s.
    $('.modal').on('hidden.bs.modal', function () { refreshAll(false); });
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden) { refreshAll(false); }
    });
    $('#btn-logout').on('click', function () {
      api('POST', 'auth/logout', {}).then(function () { window.location.assign('login.html'); });
    });
    api('GET', 'auth/me', {}).then(function (me) {
      csrfToken = me.csrfToken;
      $('#whoami').text(me.username + ' (' + me.role + ')');
      refreshAll(true);
      setInterval(function () { refreshAll(false); }, REFRESH_MS);
    });
  });
}(jQuery));
