/*
 * An editor of notification rules, [{channel, on: [events]}]: one row per rule, a channel to
 * pick and the events to tick. The job dialog uses it for a job's "notify" (run events), the
 * Notifications view for the cluster's rules (worker events).
 *
 * Inputs are named as the API names its errors ("notify[1].channel", "rules[0].on"), so the
 * console's showError puts a 400 next to the field it is about; rows are renumbered when one
 * goes. Names come from users: inserted with .text() / .val() only.
 */
const $ = window.jQuery;

let rowSeq = 0;   // unique ids for the labels' "for", across editors

export class RulesEditor {
  /**
   * $list: the element the rows go in. field: the API's name of the list ("notify", "rules").
   * events: [[event, label], ...] to offer. defaults: the events a new row starts with.
   */
  constructor($list, { field, events, defaults }) {
    this.$list = $list;
    this.field = field;
    this.events = events;
    this.defaults = defaults || [];
    this.channels = [];
    $list.on('click', '.rule-remove', (ev) => {
      $(ev.currentTarget).closest('.rule-row').remove();
      this.renumber();
      this.$list.trigger('rules:changed');
    });
  }

  /** The channels a row may pick (names). A rule naming another keeps it, flagged. */
  setChannels(names) {
    this.channels = names.slice();
    this.$list.find('select.rule-channel').each((_, select) => this.fillSelect($(select), $(select).val()));
  }

  /** Replace the rows by these rules. */
  setRules(rules) {
    this.$list.empty();
    (rules || []).forEach((rule) => this.addRow(rule));
  }

  /** The rules as the rows say them; a row with no channel picked is sent as it is (the API
   *  then names it). */
  rules() {
    return this.$list.children('.rule-row').map((_, row) => {
      const $row = $(row);
      return {
        channel: String($row.find('select.rule-channel').val() || ''),
        on: $row.find('input.rule-event:checked').map((__, box) => box.value).get()
      };
    }).get();
  }

  count() { return this.$list.children('.rule-row').length; }

  addRow(rule) {
    const id = 'rule-' + (++rowSeq);
    const on = rule ? rule.on || [] : this.defaults;
    const $row = $('<div class="rule-row row g-2 align-items-start mb-2"></div>');

    const $pick = $('<div class="col-12 col-sm-4"></div>');
    $pick.append($('<label class="visually-hidden"></label>').attr('for', id + '-channel').text('Channel'));
    const $select = $('<select class="form-select form-select-sm rule-channel"></select>').attr('id', id + '-channel');
    this.fillSelect($select, rule ? String(rule.channel || '') : '');
    $pick.append($select).append($('<div class="invalid-feedback rule-channel-feedback"></div>'));

    const $events = $('<div class="col-10 col-sm-7 rule-events"></div>');
    this.events.forEach(([event, label]) => {
      const boxId = id + '-' + event;
      $events.append($('<div class="form-check form-check-inline"></div>')
        .append($('<input class="form-check-input rule-event" type="checkbox">').attr('id', boxId).val(event)
          .prop('checked', on.indexOf(event) !== -1))
        .append($('<label class="form-check-label"></label>').attr('for', boxId).text(label)));
    });
    $events.append($('<div class="invalid-feedback rule-on-feedback"></div>'));

    const $remove = $('<div class="col-2 col-sm-1 text-end"></div>').append(
      $('<button type="button" class="btn btn-sm btn-outline-danger rule-remove">×</button>')
        .attr('aria-label', 'Remove this rule').attr('title', 'Remove this rule'));

    $row.append($pick).append($events).append($remove);
    this.$list.append($row);
    this.renumber();
    return $row;
  }

  fillSelect($select, value) {
    $select.empty().append($('<option value=""></option>').text('— pick a channel —'));
    this.channels.forEach((name) => $select.append($('<option></option>').val(name).text(name)));
    if (value && this.channels.indexOf(value) === -1) {
      $select.append($('<option class="missing-channel"></option>').val(value).text(value + ' (no such channel)'));
    }
    $select.val(value || '');
  }

  /** Names in row order: "<field>[i].channel", "<field>[i].on", and their feedback. */
  renumber() {
    this.$list.children('.rule-row').each((i, row) => {
      const $row = $(row);
      const at = this.field + '[' + i + ']';
      $row.attr('data-index', i);
      $row.find('select.rule-channel').attr('name', at + '.channel')
        .attr('aria-label', 'Channel of rule ' + (i + 1));
      $row.find('.rule-channel-feedback').attr('data-for', at + '.channel');
      $row.find('input.rule-event').attr('name', at + '.on');
      $row.find('.rule-on-feedback').attr('data-for', at + '.on');
    });
  }
}
