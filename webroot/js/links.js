/*
 * Links into the console. A notification about a run links to
 *   <publicUrl>/#log=<urlencoded job name>&planTime=<epoch ms>&attempt=<n>
 * (gdts/notify/policy.py, run_link): the console opens that job's runs at that run.
 */

/** The run a "#log=..." address names: {name, planTime, attempt}, or null for any other
 *  address. planTime is null when the link does not say it (the job's newest runs then). */
export function parseRunLink(hash) {
  const text = String(hash || '').replace(/^#/, '');
  if (!/^log=/.test(text)) { return null; }
  const params = new URLSearchParams(text);
  const name = params.get('log');
  if (!name) { return null; }
  const planTime = Number(params.get('planTime'));
  const attempt = Number(params.get('attempt'));
  return {
    name: name,
    planTime: Number.isInteger(planTime) && planTime > 0 ? planTime : null,
    attempt: Number.isInteger(attempt) && attempt > 0 ? attempt : 1
  };
}

/** The address fragment of a run, as the notifications write it. */
export function runLinkHash(name, planTime, attempt) {
  return '#log=' + encodeURIComponent(name) + '&planTime=' + planTime + '&attempt=' + (attempt || 1);
}
