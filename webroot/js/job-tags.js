/*
 * A job's tags, description and team (README, "Job fields", "Teams"): the job dialog's Tags
 * (comma-separated), Description and Team fields (Team offers the caller's teams), and how the jobs table shows them: the tags as small badges under
 * the name (a click filters the table by one, see job-filters.js), the description as a muted
 * line, whole in its tooltip. app.js calls fillJobTags when the dialog opens and readJobTags
 * when it saves. Text from users is inserted with .text()/.val()/.attr() only.
 */
import { teamApi } from './api.js';
import { parseNames } from './job-chain.js';

const $ = window.jQuery;

function str(v) { return (v === null || v === undefined) ? '' : String(v); }

function tagsOf(job) { return job && Array.isArray(job.tags) ? job.tags.map(str) : []; }

/** Show the job's tags, description and team (a new job: none, and the team left to the
 *  server: the caller's only team). */
export function fillJobTags(job) {
  $('#job-tags').val(tagsOf(job).join(', '));
  $('#job-description').val(str(job && job.description));
  $('#job-team').val(str(job && job.team));
  teamApi.list().then(function (teams) {
    $('#job-team-options').empty().append((teams || []).map(function (team) {
      return $('<option></option>').attr('value', str(team.name));
    }));
  }, function () { /* the field still takes a typed name */ });
}

/** {tags?, description?} from the dialog; left out when empty (none, which clears them). Which
 *  tag is valid is the server's to say: its 400 names tags[i], shown under the box. */
export function readJobTags() {
  const out = {};
  const tags = parseNames($('#job-tags').val());
  if (tags.length) { out.tags = tags; }
  const description = str($('#job-description').val());
  if (description.trim()) { out.description = description; }
  const team = str($('#job-team').val()).trim();
  if (team) { out.team = team; }
  return out;
}

/** The lines under a job's name in the table: its tags and its description ([] for none). */
export function tagLines(job) {
  const lines = [];
  const tags = tagsOf(job);
  if (tags.length) {
    lines.push($('<div class="job-tags"></div>').append(tags.map(function (tag) {
      return $('<button type="button" class="badge rounded-pill text-bg-light border job-tag"></button>')
        .text(tag).attr('data-tag', tag).attr('title', 'Show the jobs tagged ' + tag);
    })));
  }
  const description = str(job && job.description);
  if (description) {
    lines.push($('<div class="small fw-normal text-muted text-truncate job-description"></div>')
      .text(description).attr('title', description));
  }
  return lines;
}
