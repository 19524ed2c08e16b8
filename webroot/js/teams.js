/*
 * The Teams view.
 *
 * Everyone: the teams they are in with their role there (an admin: every team), and for the
 * team picked, its members and its secrets' names (when and by whom each changed, and the key
 * that sealed it), never a value. Admins create and delete teams and place members; a team's
 * maintainers and admins save and delete its secrets (README, "Secrets"). A secret's value is
 * typed into a password input that is emptied once sent: the API never answers one, so the page
 * never holds one it did not just send.
 *
 * app.js owns the page (tabs, dialogs, helpers) and hands this view its helpers in init();
 * the API calls are in api.js. Anything from users is inserted as text, never as HTML.
 */
import { teamApi } from './api.js';

const $ = window.jQuery;
const TEAM_ROLES = ['guest', 'user', 'maintainer'];

let ui = null;           // app.js's helpers, from init()
let teams = [];          // as /team/list answered
let selected = null;     // the name of the team whose members and secrets show
let secretsSeq = 0;      // the latest secrets request: only its answer is shown

function str(v) { return (v === null || v === undefined) ? '' : String(v); }

// ------------------------------------------------------------------ entry points --

/**
 * Bind the view once. ctx: {isAdmin(), me(): {username, role}, toast, confirmThen,
 * clearErrors, showError, timeSpan, placeholderRow}.
 */
export function init(ctx) {
  ui = ctx;
  $('#team-form').on('submit', createTeam);
  $('#member-form').on('submit', saveMember);
  $('#secret-form').on('submit', saveSecret);
  $('#team-form, #member-form, #secret-form').on('input change', '.is-invalid', function () {
    $(this).removeClass('is-invalid');
  });
  $('#teams-body')
    .on('click', '.act-open-team', function () { select(teamOf(this)); })
    .on('click', '.act-delete-team', function () { askDeleteTeam(teamOf(this)); });
  $('#members-body')
    .on('change', '.member-role-select', changeRole)
    .on('click', '.act-remove-member', function () { askRemoveMember($(this).closest('tr').attr('data-user')); });
  $('#secrets-body').on('click', '.act-delete-secret', function () {
    askDeleteSecret($(this).closest('tr').attr('data-secret'));
  });
}

/** The view was opened: everything fresh. */
export function show() {
  loadTeams();
}

// ------------------------------------------------------------------------ teams --

function teamOf(el) { return $(el).closest('tr.team-row').attr('data-team'); }

function current() { return teams.find((t) => str(t.name) === selected) || null; }

/** Whether the caller may save and delete the team's secrets: as the server decides
 *  (gdts/manager/secrets_api.py), with the account's own role capping the team's. */
function maySaveSecrets(team) {
  if (ui.isAdmin()) { return true; }
  return !!team && str(team.role) === 'maintainer' && ui.me().role !== 'guest';
}

function loadTeams() {
  return teamApi.list().then(function (list) {
    teams = Array.isArray(list) ? list : [];
    if (!current()) { selected = teams.length ? str(teams[0].name) : null; }
    renderTeams();
    renderDetail();
  }, function (err) {
    $('#teams-body').empty().append(ui.placeholderRow(4, 'Could not load the teams: ' + err.msg, 'text-danger'));
  });
}

function renderTeams() {
  const $body = $('#teams-body').empty();
  $('#teams-count').text(teams.length);
  if (!teams.length) {
    $body.append(ui.placeholderRow(4, ui.isAdmin() ? 'No team yet.' : 'You are in no team: an admin adds you to one.'));
    return;
  }
  teams.forEach(function (t) {
    const name = str(t.name);
    const members = Array.isArray(t.members) ? t.members : [];
    const role = ui.isAdmin() ? 'admin' : str(t.role);
    const $actions = $('<td class="text-end text-nowrap"></td>').append(
      $('<button type="button" class="btn btn-sm btn-outline-primary act-open-team">Members and secrets</button>'));
    if (ui.isAdmin()) {
      $actions.append(' ').append($('<button type="button" class="btn btn-sm btn-outline-danger act-delete-team">Delete</button>'));
    }
    $body.append($('<tr class="team-row"></tr>').attr('data-team', name)
      .toggleClass('table-active', name === selected)
      .append($('<td class="text-break fw-semibold team-name"></td>').text(name))
      .append($('<td class="team-role"></td>').text(role))
      .append($('<td class="text-break small team-members"></td>').text(
        members.map((m) => str(m.username) + ' (' + str(m.role) + ')').join(', ') || '—'))
      .append($actions));
  });
}

function select(name) {
  selected = name || null;
  $('#team-detail-error').addClass('d-none').text('');
  $('#teams-body tr.team-row').each(function () { $(this).toggleClass('table-active', $(this).attr('data-team') === selected); });
  renderDetail();
}

function createTeam(ev) {
  ev.preventDefault();
  const $f = $('#team-form');
  ui.clearErrors($f);
  $('#teams-error').addClass('d-none').text('');
  const name = str($('#team-name').val()).trim();
  teamApi.save(name).then(function () {
    $f[0].reset();
    ui.toast('Created team ' + name, 'success');
    selected = name;
    loadTeams();
  }, function (err) { ui.showError($f, err); });
}

function askDeleteTeam(name) {
  if (!name) { return; }
  ui.confirmThen('Delete team', 'Delete the team “' + name + '”? Its members leave it. A team that still has jobs or secrets is not deleted.',
    'Delete', function () {
      $('#teams-error').addClass('d-none').text('');
      return teamApi.remove(name).then(function () {
        ui.toast('Deleted team ' + name, 'success');
        if (selected === name) { selected = null; }
        loadTeams();
      }, function (err) {
        // 409: it still has jobs or secrets, named in the message; it stays on the page.
        $('#teams-error').removeClass('d-none').text(err.msg);
      });
    });
}

// ---------------------------------------------------------------------- members --

function renderDetail() {
  const team = current();
  $('#team-detail').toggleClass('d-none', !team);
  if (!team) { return; }
  $('#team-detail-name').text(str(team.name));
  renderMembers(team);
  const writable = maySaveSecrets(team);
  $('#secret-form-box').toggleClass('d-none', !writable);
  $('#secrets-readonly-note').toggleClass('d-none', writable);
  loadSecrets();
}

function renderMembers(team) {
  const $body = $('#members-body').empty();
  const members = Array.isArray(team.members) ? team.members : [];
  const cols = ui.isAdmin() ? 3 : 2;
  $('#members-table th:last-child').toggleClass('d-none', !ui.isAdmin());
  if (!members.length) {
    $body.append(ui.placeholderRow(cols, 'No member.'));
    return;
  }
  members.forEach(function (m) {
    const name = str(m.username);
    const $row = $('<tr class="member-row"></tr>').attr('data-user', name)
      .append($('<td class="text-break fw-semibold"></td>').text(name));
    if (ui.isAdmin()) {
      const $role = $('<select class="form-select form-select-sm w-auto member-role-select"></select>')
        .attr('aria-label', 'Role of ' + name + ' in the team');
      TEAM_ROLES.forEach(function (r) { $role.append($('<option></option>').val(r).text(r)); });
      $role.val(str(m.role)).data('was', str(m.role));
      $row.append($('<td></td>').append($role))
        .append($('<td class="text-end"></td>').append(
          $('<button type="button" class="btn btn-sm btn-outline-danger act-remove-member">Remove</button>')));
    } else {
      $row.append($('<td class="member-role"></td>').text(str(m.role)));
    }
    $body.append($row);
  });
}

function saveMember(ev) {
  ev.preventDefault();
  const $f = $('#member-form');
  ui.clearErrors($f);
  const team = selected;
  const username = str($('#member-username').val()).trim();
  const role = $('#member-role').val();
  teamApi.saveMember(team, username, role).then(function (saved) {
    $('#member-username').val('');
    ui.toast(username + (saved && saved.before ? ' is now ' : ' joined ' + team + ' as ') + role, 'success');
    loadTeams();
  }, function (err) { ui.showError($f, err); });
}

function changeRole() {
  const $sel = $(this);
  const username = $sel.closest('tr').attr('data-user');
  const team = selected;
  teamApi.saveMember(team, username, $sel.val()).then(function () {
    $sel.data('was', $sel.val());
    ui.toast(username + ' is now ' + $sel.val() + ' in ' + team, 'success');
    loadTeams();
  }, function (err) {
    $sel.val($sel.data('was'));
    ui.toast(err.msg, 'danger');
  });
}

function askRemoveMember(username) {
  const team = selected;
  if (!username || !team) { return; }
  ui.confirmThen('Remove member', 'Take “' + username + '” out of the team “' + team + '”? The team\'s jobs and secrets stay.',
    'Remove', function () {
      return teamApi.removeMember(team, username).then(function () {
        ui.toast('Took ' + username + ' out of ' + team, 'success');
        loadTeams();
      });
    });
}

// ---------------------------------------------------------------------- secrets --

function loadSecrets() {
  const team = selected;
  const seq = ++secretsSeq;
  const cols = maySaveSecrets(current()) ? 5 : 4;
  $('#secrets-table th:last-child').toggleClass('d-none', cols === 4);
  return teamApi.secrets(team).then(function (answer) {
    if (seq !== secretsSeq) { return; }
    renderSecrets(answer && Array.isArray(answer.secrets) ? answer.secrets : [], cols);
  }, function (err) {
    if (seq !== secretsSeq) { return; }
    $('#secrets-body').empty().append(ui.placeholderRow(cols, 'Could not load the secrets: ' + err.msg, 'text-danger'));
  });
}

function renderSecrets(secrets, cols) {
  const $body = $('#secrets-body').empty();
  if (!secrets.length) {
    $body.append(ui.placeholderRow(cols, 'No secret yet.'));
    return;
  }
  secrets.forEach(function (s) {
    const name = str(s.name);
    const $row = $('<tr class="secret-row"></tr>').attr('data-secret', name)
      .append($('<td class="text-break fw-semibold secret-name"></td>').text(name))
      .append($('<td class="text-nowrap"></td>').append(ui.timeSpan(s.updatedAt)))
      .append($('<td class="text-break secret-by"></td>').text(str(s.updatedBy)))
      .append($('<td class="secret-key"></td>').append($('<code></code>').text(str(s.keyId))));
    if (cols === 5) {
      $row.append($('<td class="text-end"></td>').append(
        $('<button type="button" class="btn btn-sm btn-outline-danger act-delete-secret">Delete</button>')));
    }
    $body.append($row);
  });
}

function saveSecret(ev) {
  ev.preventDefault();
  const $f = $('#secret-form');
  ui.clearErrors($f);
  $('#team-detail-error').addClass('d-none').text('');
  const team = selected;
  const name = str($('#secret-name').val()).trim();
  const $value = $('#secret-value');
  const value = str($value.val());
  $value.val('');   // sent or refused, it does not stay in the page: typed again on a retry
  teamApi.saveSecret(team, name, value).then(function (saved) {
    $('#secret-name').val('');
    ui.toast((saved && saved.replaced ? 'Replaced secret ' : 'Saved secret ') + name + ' of ' + team, 'success');
    loadSecrets();
  }, function (err) { ui.showError($f, err); });
}

function askDeleteSecret(name) {
  const team = selected;
  if (!name || !team) { return; }
  ui.confirmThen('Delete secret', 'Delete the secret “' + name + '” of the team “' + team + '”? A job that names it could no longer run.',
    'Delete', function () {
      $('#team-detail-error').addClass('d-none').text('');
      return teamApi.removeSecret(team, name).then(function () {
        ui.toast('Deleted secret ' + name + ' of ' + team, 'success');
        loadSecrets();
      }, function (err) {
        // 409: jobs of the team name it (the message names them); it stays.
        $('#team-detail-error').removeClass('d-none').text(err.msg);
      });
    });
}
