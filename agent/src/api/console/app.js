// Warden console: one script, no dependencies, no build step.
// Every recorded value (prompts are attacker-controlled text) enters the page through DOM nodes
// and textContent, never as HTML; the page's Content-Security-Policy forbids inline code anyway.
'use strict';

const state = {
  me: null,
  nav: 0, // bumped on each route change: a slow answer for a page left behind is dropped
  timers: [], // timeouts and intervals of the current page, cleared when it is left
  stream: null,
  queue: new Map(), // approval id → its li
  closedIds: new Set(), // approvals seen closed: a late list answer must not bring them back
};

const $ = (selector, root = document) => root.querySelector(selector);

// ---- DOM and formatting helpers ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) throw new Error('handlers are added with addEventListener');
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const dash = () => el('span', { class: 'muted', text: '—' });
const orDash = (value) => (value === null || value === undefined || value === '' ? dash() : String(value));

// A local time with its UTC ISO form on hover.
function timeEl(date, utcText) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return dash();
  const iso = utcText || date.toISOString();
  return el('time', { datetime: date.toISOString(), title: `${iso} (UTC)` }, date.toLocaleString());
}
const timeUs = (us) => (typeof us === 'number' ? timeEl(new Date(us / 1000)) : dash());
const timeText = (text) => (text ? timeEl(new Date(text), text) : dash());

function fmtSpan(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function fmtMs(ms) {
  if (typeof ms !== 'number') return null;
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// "alice (uid 1000) · unit bot.service · python3[4242]" from an identity snapshot.
function identityLabel(id) {
  if (!id) return '?';
  const parts = [id.user ? `${id.user} (uid ${id.uid})` : `uid ${id.uid}`];
  if (id.k8s_sa) parts.push(`sa ${id.k8s_sa}${id.k8s_sa_verified === false ? ' (unverified)' : ''}`);
  if (id.unit) parts.push(`unit ${id.unit}`);
  if (id.container) parts.push(`container ${id.container}`);
  if (id.comm || id.exe) parts.push(`${id.comm || id.exe}${id.pid ? `[${id.pid}]` : ''}`);
  return parts.join(' · ');
}

// Who acted: the signed-in person's email for a console decision, else the local user.
function actorLabel(by) {
  if (!by) return '?';
  if (by.oidc) return by.oidc.email || by.oidc.subject || 'oidc user';
  return by.user ? `${by.user} (uid ${by.uid})` : `uid ${by.uid}`;
}

function dl(target, rows) {
  target.replaceChildren();
  for (const [term, value] of rows) {
    if (value === null || value === undefined || value === '') continue;
    target.append(el('dt', { text: term }), el('dd', {}, value));
  }
}

function cell(...children) { return el('td', {}, ...children); }

function emptyRow(tbody, columns, text) {
  tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: columns, text })));
}

// Text with each masking placeholder ("[EMAIL]") wrapped in a mark, so a reader can tell a value
// Warden replaced from text the workload wrote.
function appendMarked(parent, text, placeholders) {
  if (!placeholders.length) { parent.append(text); return; }
  const escaped = placeholders.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const pattern = new RegExp(escaped.join('|'), 'g');
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parent.append(text.slice(last, match.index));
    parent.append(el('mark', { class: 'masked', title: 'masked by Warden' }, match[0]));
    last = match.index + match[0].length;
  }
  parent.append(text.slice(last));
}

// ---- errors and the API ----

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function showError(message) {
  $('#error-text').textContent = message;
  $('#error').hidden = false;
}
function clearError() { $('#error').hidden = true; }
function report(error) { if (!(error instanceof ApiError && error.status === 401)) showError(error.message); }

function toLogin() {
  location.href = '/login?return=' + encodeURIComponent(location.hash);
}

// GET, or POST of `body` as JSON with the CSRF token. Problem details become ApiError(detail).
async function api(path, body) {
  const init = { credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.headers['X-CSRF-Token'] = state.me ? state.me.csrf_token : '';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`Cannot reach Warden: ${error.message}`, 0);
  }
  if (response.status === 401) {
    toLogin();
    throw new ApiError('Your session has ended; signing in again.', 401);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const detail = (data && (data.detail || data.title)) || `${response.status} ${response.statusText}`;
    throw new ApiError(detail, response.status);
  }
  return data;
}

// Later work of the current page; cleared when the page is left.
function later(fn, ms) { state.timers.push(setTimeout(fn, ms)); }

const hasRole = (...roles) => state.me && Array.isArray(state.me.roles) && roles.some((r) => state.me.roles.includes(r));

// ---- routing ----

const routes = [
  [/^#\/approvals$/, 'approvals', 'nav-approvals', showApprovals],
  [/^#\/sessions(?:\?(.*))?$/, 'sessions', 'nav-sessions', showSessions],
  [/^#\/session\/([^/?]+)$/, 'session', 'nav-sessions', showSession],
  [/^#\/replay\/([^/?]+)$/, 'replay', 'nav-sessions', showReplay],
  [/^#\/identities$/, 'identities', 'nav-identities', showIdentities],
  [/^#\/audit$/, 'audit', 'nav-audit', showAudit],
];

function leavePage() {
  state.nav += 1;
  state.timers.forEach((t) => { clearTimeout(t); clearInterval(t); });
  state.timers = [];
  if (state.stream) { state.stream.close(); state.stream = null; }
}

function route() {
  leavePage();
  clearError();
  const hash = location.hash || '#/approvals';
  for (const [pattern, section, nav, show] of routes) {
    const match = pattern.exec(hash);
    if (!match) continue;
    for (const node of document.querySelectorAll('main > section')) node.hidden = node.id !== section;
    for (const link of document.querySelectorAll('nav a')) {
      if (link.id === nav) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    let argument = match[1] || '';
    if (section === 'session' || section === 'replay') {
      try { argument = decodeURIComponent(argument); } catch (_) { showError('That link is malformed.'); return; }
    }
    Promise.resolve(show(argument, state.nav)).catch(report);
    return;
  }
  location.replace('#/approvals');
}

const current = (nav) => nav === state.nav;

// ---- approvals ----

const closedStates = ['approved', 'denied', 'expired', 'cancelled', 'interrupted'];

async function showApprovals(_, nav) {
  state.queue = new Map();
  state.closedIds = new Set();
  $('#approval-queue').replaceChildren();
  $('#approval-empty').hidden = false;
  openStream();
  state.timers.push(setInterval(refreshClocks, 1000));
  // The queue and the history load apart: one failing must not blank the other.
  api('/api/v1/approvals')
    .then((pending) => { if (current(nav)) (pending.approvals || []).forEach(upsertApproval); })
    .catch(report);
  const all = await api('/api/v1/approvals?all=true');
  if (!current(nav)) return;
  const closed = (all.approvals || []).filter((v) => v.state !== 'pending');
  closed.sort((a, b) => (b.closed_at_us || b.created_at_us) - (a.closed_at_us || a.created_at_us));
  const tbody = $('#approval-history tbody');
  tbody.replaceChildren();
  for (const view of closed.slice(0, 50)) tbody.append(historyRow(view));
  if (!closed.length) emptyRow(tbody, 8, 'No decisions yet.');
}

function setLive(text) {
  const pill = $('#stream-status');
  pill.textContent = text;
  pill.className = `pill ${text === 'live' ? 'ok' : 'warn'}`;
}

function parsed(data, handle) {
  try { handle(JSON.parse(data)); } catch (error) { showError(`Unreadable update from Warden: ${error.message}`); }
}

function openStream() {
  if (state.stream) state.stream.close();
  const source = new EventSource('/api/v1/approvals/stream');
  state.stream = source;
  setLive('connecting');
  source.addEventListener('open', () => setLive('live'));
  source.addEventListener('approval', (event) => parsed(event.data, upsertApproval));
  source.addEventListener('closed', (event) => parsed(event.data, closeApproval));
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED) { setLive('reconnecting'); return; }
    // EventSource retries dropped connections itself but gives up on a refused one (401, 403, 5xx):
    // ask /me, which sends an expired session to sign-in, and otherwise try again shortly.
    setLive('disconnected');
    api('/api/v1/me')
      .then(() => { if (state.stream === source) later(openStream, 5000); })
      .catch(report);
  });
}

function upsertApproval(view) {
  if (closedStates.includes(view.state)) { closeApproval(view); return; }
  if (state.queue.has(view.id) || state.closedIds.has(view.id)) return;
  const li = approvalItem(view);
  state.queue.set(view.id, li);
  const queue = $('#approval-queue');
  const later_one = [...queue.children].find((other) => Number(other.dataset.created) > view.created_at_us);
  queue.insertBefore(li, later_one || null);
  $('#approval-empty').hidden = true;
}

function approvalItem(view) {
  const li = el('li', { class: 'approval', 'data-id': view.id, 'data-created': view.created_at_us, 'data-expires': view.expires_at_us });
  const exchange = view.exchange_id ? el('a', { href: `#/session/${encodeURIComponent(view.exchange_id)}`, text: 'exchange' }) : null;
  li.append(el('div', { class: 'approval-head' },
    el('span', { class: 'rule', text: view.rule }),
    el('span', { class: 'state pill warn', text: view.state }),
    el('span', { class: 'muted', text: view.id }), exchange));
  const details = el('dl', { class: 'approval-details' });
  dl(details, [
    ['Requester', identityLabel(view.requester)],
    ['Model', `${view.model || '(none)'} · ${view.endpoint}`],
    ['Requested', el('span', {}, timeUs(view.created_at_us), ' ', el('span', { class: 'age muted' }))],
    ['Expires', el('span', {}, timeUs(view.expires_at_us), ' ', el('span', { class: 'expiry muted' }))],
    ['Approvers', (view.approvers || []).join(', ')],
  ]);
  li.append(details);
  if (view.excerpt) li.append(el('blockquote', { class: 'excerpt', text: view.excerpt }));
  if (hasRole('approver', 'admin')) li.append(decisionControls(li, view));
  refreshClock(li);
  return li;
}

function decisionControls(li, view) {
  const reason = el('input', { class: 'reason', type: 'text', placeholder: 'Reason (required to deny)', maxlength: 500 });
  const duration = el('select', { class: 'for', title: 'Approve this request only, or also later ones of this identity under this rule' },
    el('option', { value: '', text: 'once' }),
    el('option', { value: '900', text: 'for 15 min' }),
    el('option', { value: '3600', text: 'for 1 h' }),
    el('option', { value: '28800', text: 'for 8 h' }));
  const approve = el('button', { type: 'button', class: 'approve', text: 'Approve' });
  const deny = el('button', { type: 'button', class: 'deny', text: 'Deny' });
  approve.addEventListener('click', () => decide(li, view, 'approve'));
  deny.addEventListener('click', () => decide(li, view, 'deny'));
  return el('div', { class: 'decide' }, reason, duration, approve, deny);
}

async function decide(li, view, decision) {
  const reasonInput = $('input.reason', li);
  const reason = reasonInput.value.trim();
  if (decision === 'deny' && !reason) {
    showError('Give a reason to deny: the requester and the audit trail see it.');
    reasonInput.focus();
    return;
  }
  const forSecs = $('select.for', li).value;
  const body = decision === 'approve'
    ? { reason: reason || null, for_secs: forSecs ? Number(forSecs) : null }
    : { reason };
  const buttons = li.querySelectorAll('.decide button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const closed = await api(`/api/v1/approvals/${encodeURIComponent(view.id)}/${decision}`, body);
    clearError();
    closeApproval(closed || { ...view, state: decision === 'approve' ? 'approved' : 'denied' });
  } catch (error) {
    buttons.forEach((b) => { b.disabled = false; });
    report(error);
  }
}

// A closed approval shows how it closed, then fades out of the queue into the history.
function closeApproval(view) {
  state.closedIds.add(view.id);
  const tbody = $('#approval-history tbody');
  const old = tbody.querySelector(`tr[data-id="${CSS.escape(view.id)}"]`);
  if (old) old.remove();
  const placeholder = tbody.querySelector('tr.empty');
  if (placeholder) placeholder.remove();
  tbody.prepend(historyRow(view));
  const li = state.queue.get(view.id);
  if (!li || li.classList.contains('closed')) return;
  li.classList.add('closed');
  const badge = $('.state', li);
  badge.textContent = view.state;
  badge.className = `state pill ${view.state === 'approved' ? 'ok' : 'bad'}`;
  const controls = $('.decide', li);
  if (controls) controls.remove();
  if (view.decided_by) li.append(el('p', { class: 'decided', text: `${view.state} by ${actorLabel(view.decided_by)}${view.reason ? `: ${view.reason}` : ''}` }));
  later(() => {
    li.classList.add('fading');
    later(() => {
      li.remove();
      state.queue.delete(view.id);
      $('#approval-empty').hidden = state.queue.size > 0;
    }, 1200);
  }, 4000);
}

function historyRow(view) {
  return el('tr', { class: 'decision', 'data-id': view.id },
    cell(timeUs(view.closed_at_us)),
    cell(el('span', { class: `pill ${view.state === 'approved' ? 'ok' : 'bad'}`, text: view.state })),
    cell(identityLabel(view.requester)),
    cell(view.rule),
    cell(orDash(view.model)),
    cell(view.decided_by ? actorLabel(view.decided_by) : dash()),
    cell(orDash(view.reason)),
    cell(view.grant ? timeUs(view.grant.expires_at_us) : dash()));
}

function refreshClock(li) {
  const now = Date.now() * 1000;
  if (li.classList.contains('closed')) return;
  $('.age', li).textContent = `(${fmtSpan((now - Number(li.dataset.created)) / 1e6)} ago)`;
  const left = (Number(li.dataset.expires) - now) / 1e6;
  $('.expiry', li).textContent = left > 0 ? `(in ${fmtSpan(left)})` : '(due now)';
}
function refreshClocks() { state.queue.forEach(refreshClock); }

// ---- sessions ----

async function showSessions(query, nav) {
  const params = new URLSearchParams(query);
  const form = $('#session-search');
  for (const field of form.elements) {
    if (field.name) field.value = params.get(field.name) || (field.name === 'limit' ? '100' : '');
  }
  if (!params.has('limit')) params.set('limit', '100');
  const tbody = $('#session-results tbody');
  tbody.replaceChildren();
  $('#session-count').textContent = 'Searching…';
  const rows = await api(`/api/v1/sessions?${params}`);
  if (!current(nav)) return;
  for (const s of rows) tbody.append(sessionRow(s));
  if (!rows.length) emptyRow(tbody, 9, 'No exchange matches.');
  $('#session-count').textContent = `${rows.length} exchange${rows.length === 1 ? '' : 's'}`;
}

function sessionRow(s) {
  const link = el('a', { href: `#/session/${encodeURIComponent(s.id)}` }, timeText(s.started_at));
  const who = identityLabel({ user: s.user, uid: s.uid, unit: s.unit, container: s.container, comm: s.exe && s.exe.split('/').pop(), pid: s.pid });
  const row = el('tr', { class: 'session', 'data-id': s.id },
    cell(link), cell(who), cell(orDash(s.model)), cell(s.endpoint),
    cell(el('span', { class: `pill ${s.outcome === 'ok' ? 'ok' : 'bad'}`, text: s.outcome })),
    cell(orDash(s.status)),
    cell(`${s.input_tokens ?? '–'} / ${s.output_tokens ?? '–'}`),
    cell(orDash(fmtMs(s.duration_ms))),
    cell(s.masked ? el('mark', { class: 'masked', text: String(s.masked) }) : '0'));
  row.addEventListener('click', (event) => {
    if (!event.target.closest('a')) location.hash = `#/session/${encodeURIComponent(s.id)}`;
  });
  return row;
}

function searchSubmitted(event) {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(event.target)) {
    if (String(value).trim()) params.set(name, String(value).trim());
  }
  const hash = `#/sessions?${params}`;
  if (location.hash === hash) route(); else location.hash = hash;
}

// ---- one session ----

// The masking placeholders that can occur in this exchange: `[LABEL]` for each label counted.
function placeholdersOf(detail) {
  const labels = new Set();
  for (const masked of [detail.request.policy && detail.request.policy.masked, detail.response && detail.response.masked]) {
    for (const counts of Object.values(masked || {})) Object.keys(counts).forEach((label) => labels.add(`[${label}]`));
  }
  return [...labels];
}

function contentText(content) {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part) => (typeof part === 'string' ? part : part.text ?? (part.type ? `[${part.type}]` : JSON.stringify(part)))).join('\n');
  }
  return JSON.stringify(content, null, 2);
}

// The prompt as role/text pairs, read from the recorded (already masked) request body.
function promptParts(body) {
  if (!body || !body.text) return [];
  let json;
  try { json = JSON.parse(body.text); } catch (_) {
    return [{ role: body.truncated ? 'body (truncated at the recording limit)' : 'body', text: body.text }];
  }
  const parts = [];
  if (json.instructions) parts.push({ role: 'instructions', text: contentText(json.instructions) });
  for (const m of Array.isArray(json.messages) ? json.messages : []) {
    const calls = (m.tool_calls || []).map((c) => `→ ${c.function ? `${c.function.name}(${c.function.arguments})` : JSON.stringify(c)}`);
    parts.push({ role: m.role || 'message', text: [contentText(m.content), ...calls].filter(Boolean).join('\n') });
  }
  if (typeof json.input === 'string') parts.push({ role: 'input', text: json.input });
  else if (Array.isArray(json.input)) {
    for (const item of json.input) parts.push({ role: item.role || item.type || 'input', text: contentText(item.content ?? item) });
  }
  if (json.prompt !== undefined) parts.push({ role: 'prompt', text: contentText(json.prompt) });
  if (!parts.length) parts.push({ role: 'body', text: JSON.stringify(json, null, 2) });
  return parts;
}

// The response as role/text pairs: the assembled stream, else the recorded body.
function responseParts(response) {
  if (!response) return [];
  const a = response.assembled;
  if (a) {
    const parts = [{ role: 'assistant', text: a.text }];
    if (a.refusal) parts.push({ role: 'refusal', text: a.refusal });
    for (const c of a.tool_calls || []) parts.push({ role: 'tool call', text: `${c.name || '?'}(${c.arguments})` });
    if (a.error) parts.push({ role: 'error', text: a.error });
    return parts;
  }
  const body = response.body;
  if (!body || !body.text) return [];
  let json;
  try { json = JSON.parse(body.text); } catch (_) { return [{ role: 'body', text: body.text }]; }
  if (Array.isArray(json.choices)) {
    return json.choices.map((c) => ({ role: (c.message && c.message.role) || 'choice', text: contentText(c.message ? c.message.content : c.text) }));
  }
  if (typeof json.output_text === 'string') return [{ role: 'assistant', text: json.output_text }];
  if (Array.isArray(json.output)) return json.output.map((o) => ({ role: o.role || o.type || 'output', text: contentText(o.content ?? o) }));
  if (json.error) return [{ role: 'error', text: json.error.message || JSON.stringify(json.error) }];
  return [{ role: 'body', text: JSON.stringify(json, null, 2) }];
}

function transcript(target, parts, placeholders, emptyText) {
  target.replaceChildren();
  if (!parts.length) { target.append(el('p', { class: 'muted', text: emptyText })); return; }
  for (const part of parts) {
    const pre = el('pre');
    appendMarked(pre, part.text || '', placeholders);
    target.append(el('div', { class: 'message' }, el('div', { class: 'role', text: part.role }), pre));
  }
}

function maskTable(title, masked) {
  const rows = [];
  for (const [rule, counts] of Object.entries(masked || {})) {
    for (const [label, count] of Object.entries(counts)) rows.push(el('tr', {}, cell(title), cell(rule), cell(el('mark', { class: 'masked', text: `[${label}]` })), cell(String(count))));
  }
  return rows;
}

async function showSession(id, nav) {
  $('#session-id').textContent = id;
  for (const target of ['#session-identity', '#session-usage', '#session-prompt', '#session-response', '#session-policy', '#session-approvals']) $(target).replaceChildren();
  const detail = await api(`/api/v1/sessions/${encodeURIComponent(id)}`);
  if (!current(nav)) return;
  const { request, response } = detail;
  const outcome = $('#session-outcome');
  outcome.textContent = detail.outcome;
  outcome.className = `pill ${detail.outcome === 'ok' ? 'ok' : 'bad'}`;
  $('#session-request-line').textContent = `${request.method} https://${request.host}${request.path} (${request.endpoint})`;
  $('#session-replay-link').setAttribute('href', `#/replay/${encodeURIComponent(id)}`);

  const who = request.identity;
  dl($('#session-identity'), [
    ['User', who.user ? `${who.user} (uid ${who.uid}, gid ${who.gid})` : `uid ${who.uid}, gid ${who.gid}`],
    ['Process', `${who.comm} [pid ${who.pid}]${who.process_exited ? ' (had exited)' : ''}`],
    ['Executable', who.exe],
    ['Command line', who.cmdline],
    ['Unit', who.unit],
    ['Container', who.container],
    ['Service account', who.k8s_sa ? `${who.k8s_sa}${who.k8s_sa_verified === false ? ' (unverified)' : ''}` : null],
    ['Account', who.account],
    ['Cgroup', who.cgroup],
  ]);

  const usage = (response && response.assembled && response.assembled.usage) || usageFromBody(response);
  const params = request.params || {};
  dl($('#session-usage'), [
    ['Started', timeUs(request.started_at_us)],
    ['Model', request.model],
    ['Parameters', [params.stream ? 'stream' : null, params.temperature != null ? `temperature ${params.temperature}` : null,
      params.max_tokens != null ? `max_tokens ${params.max_tokens}` : null,
      params.max_output_tokens != null ? `max_output_tokens ${params.max_output_tokens}` : null,
      (params.tools || []).length ? `tools ${params.tools.join(', ')}` : null].filter(Boolean).join(' · ')],
    ['Tokens', usage ? `${usage.input_tokens} in · ${usage.output_tokens} out · ${usage.total_tokens} total` : null],
    ['HTTP status', response ? orDash(response.status) : 'no response recorded'],
    ['First byte', response ? fmtMs(response.ttfb_ms) : null],
    ['Duration', response ? fmtMs(response.duration_ms) : null],
    ['Stream events', response && response.streamed ? String(response.events.length) : null],
    ['Finish reason', response && response.assembled ? response.assembled.finish_reason : null],
    ['Ended', response ? timeUs(response.ended_at_us) : null],
    ['Outcome reason', response ? response.reason : null],
  ]);

  const placeholders = placeholdersOf(detail);
  transcript($('#session-prompt'), promptParts(request.body), placeholders,
    request.body && request.body.size ? `Not recorded as text (${request.body.content_type || 'unknown type'}, ${request.body.size} bytes).` : 'No request body.');
  transcript($('#session-response'), responseParts(response), placeholders, response ? 'No response body recorded.' : 'The exchange has no response record (yet).');
  renderPolicy(request.policy || {}, response);
  renderTrail(detail.governance || []);
}

function usageFromBody(response) {
  if (!response || !response.body || !response.body.text) return null;
  try {
    const u = JSON.parse(response.body.text).usage;
    if (!u) return null;
    const input = u.prompt_tokens ?? u.input_tokens;
    const output = u.completion_tokens ?? u.output_tokens ?? 0;
    return { input_tokens: input, output_tokens: output, total_tokens: u.total_tokens ?? input + output };
  } catch (_) { return null; }
}

function renderPolicy(policy, response) {
  const target = $('#session-policy');
  const summary = el('dl');
  dl(summary, [
    ['Verdict', el('span', { class: `pill ${policy.verdict === 'allow' ? 'ok' : 'warn'}`, text: policy.verdict || 'none recorded' })],
    ['Deciding rule', policy.rule],
    ['Matched rules', (policy.matched || []).join(', ') || 'none'],
    ['Duration grant', policy.grant],
  ]);
  const rows = [...maskTable('request', policy.masked), ...maskTable('response', response && response.masked)];
  target.replaceChildren(summary);
  if (rows.length) {
    target.append(el('table', { class: 'masks' },
      el('thead', {}, el('tr', {}, el('th', { text: 'In' }), el('th', { text: 'Mask rule' }), el('th', { text: 'Placeholder' }), el('th', { text: 'Values masked' }))),
      el('tbody', {}, rows)));
  } else target.append(el('p', { class: 'muted', text: 'Nothing was masked.' }));
}

const trailNames = {
  approval_requested: 'held for approval', approval_cancelled: 'cancelled: the client left',
  approval_expired: 'expired: nobody decided in time', approval_interrupted: 'interrupted: the daemon stopped',
};

function renderTrail(records) {
  const target = $('#session-approvals');
  if (!records.length) { target.replaceChildren(el('p', { class: 'muted', text: 'No approval was involved.' })); return; }
  const tbody = el('tbody');
  for (const record of records) {
    const e = record.event || {};
    const what = e.type === 'approval_decided' ? (e.decision === 'approve' ? 'approved' : 'denied')
      : (trailNames[e.type] || e.type);
    const detail = e.type === 'approval_requested' ? `rule ${e.rule}` : e.reason || e.summary || '';
    tbody.append(el('tr', { class: `trail ${e.type}` },
      cell(timeUs(record.at_us)), cell(what), cell(e.by ? actorLabel(e.by) : dash()), cell(orDash(detail)),
      cell(e.grant ? el('span', {}, 'until ', timeUs(e.grant.expires_at_us)) : dash())));
  }
  target.replaceChildren(el('table', {},
    el('thead', {}, el('tr', {}, ['When', 'What', 'By', 'Rule or reason', 'Grant'].map((h) => el('th', { text: h })))), tbody));
}

// ---- replay ----

async function showReplay(id, nav) {
  $('#replay-id').textContent = id;
  $('#replay-session-link').setAttribute('href', `#/session/${encodeURIComponent(id)}`);
  $('#replay-lines').replaceChildren();
  $('#replay-progress').textContent = 'Loading…';
  const play = $('#replay-play');
  play.disabled = true;
  const replay = await api(`/api/v1/sessions/${encodeURIComponent(id)}/replay`);
  if (!current(nav)) return;
  state.replay = { nav, lines: replay.lines || [] };
  const last = state.replay.lines.length ? state.replay.lines[state.replay.lines.length - 1].offset_ms : 0;
  $('#replay-progress').textContent = `${state.replay.lines.length} lines over ${fmtMs(last) || '0 ms'}`;
  play.disabled = false;
}

// Plays the timeline from the start: each line appears at its recorded offset, divided by the speed.
function playReplay() {
  const replay = state.replay;
  if (!replay || !current(replay.nav)) return;
  state.timers.forEach((t) => clearTimeout(t));
  state.timers = [];
  const speed = Number($('#replay-speed').value) || 1;
  const list = $('#replay-lines');
  list.replaceChildren();
  $('#replay-play').textContent = 'Play again';
  replay.lines.forEach((line, index) => {
    later(() => {
      list.append(el('li', {}, el('span', { class: 'offset', text: `+${(line.offset_ms / 1000).toFixed(3)} s` }), el('span', { class: 'line', text: line.text })));
      $('#replay-progress').textContent = `${index + 1} / ${replay.lines.length}`;
    }, Math.max(0, line.offset_ms) / speed);
  });
}

// ---- identities and revocations ----

async function showIdentities(_, nav) {
  const [identities, revocations] = await Promise.all([api('/api/v1/identities'), api('/api/v1/revocations')]);
  if (!current(nav)) return;
  const admin = hasRole('admin');
  const ids = $('#identity-table tbody');
  ids.replaceChildren();
  for (const i of identities.identities || []) {
    const action = admin ? el('button', { type: 'button', class: 'revoke', text: 'Revoke' }) : null;
    const row = el('tr', { class: 'identity', 'data-selector': i.selector },
      cell(el('code', { text: i.selector })), cell(i.user ? `${i.user} (uid ${i.uid})` : i.uid != null ? `uid ${i.uid}` : dash()),
      cell(orDash(i.unit)), cell(orDash(i.container)), cell(orDash(i.k8s_sa)), cell(orDash(i.exe)),
      cell(String(i.exchanges ?? 0)), cell(timeUs(i.last_seen_us)), cell(action));
    if (action) action.addEventListener('click', () => askRevokeReason(row, i.selector));
    ids.append(row);
  }
  if (!ids.children.length) emptyRow(ids, 9, 'No workload has been seen yet.');
  const revoked = $('#revocation-table tbody');
  revoked.replaceChildren();
  for (const r of revocations.revocations || []) {
    const action = admin ? el('button', { type: 'button', class: 'restore', text: 'Restore' }) : null;
    if (action) action.addEventListener('click', () => changeRevocation('/api/v1/revocations/restore', { selector: r.selector }, action));
    revoked.append(el('tr', { class: 'revocation', 'data-selector': r.selector },
      cell(el('code', { text: r.selector })), cell(orDash(r.reason)), cell(timeUs(r.at_us)),
      cell(r.by ? actorLabel(r.by) : dash()), cell(action)));
  }
  if (!revoked.children.length) emptyRow(revoked, 5, 'No identity is revoked.');
}

// Revoking asks why, in the row itself: the reason goes into the chain with the revocation.
function askRevokeReason(row, selector) {
  const last = row.lastElementChild;
  const reason = el('input', { class: 'revoke-reason', type: 'text', placeholder: 'Why revoke?', maxlength: 500 });
  const confirm = el('button', { type: 'button', class: 'revoke-confirm danger', text: 'Revoke' });
  const cancel = el('button', { type: 'button', class: 'revoke-cancel', text: 'Cancel' });
  confirm.addEventListener('click', () => {
    const text = reason.value.trim();
    if (!text) { showError('Give a reason to revoke: it is recorded in the audit chain.'); reason.focus(); return; }
    changeRevocation('/api/v1/revocations', { selector, reason: text }, confirm);
  });
  cancel.addEventListener('click', route);
  last.replaceChildren(el('div', { class: 'inline-form' }, reason, confirm, cancel));
  reason.focus();
}

async function changeRevocation(path, body, button) {
  button.disabled = true;
  try {
    await api(path, body);
    route();
  } catch (error) {
    button.disabled = false;
    report(error);
  }
}

// ---- audit chain ----

async function showAudit(_, nav) {
  const status = $('#verify-status');
  status.textContent = 'verifying…';
  status.className = '';
  $('#verify-details').replaceChildren();
  const button = $('#verify-now');
  button.disabled = true;
  try {
    const result = (await api('/api/v1/audit/verify')) || {};
    if (!current(nav)) return;
    const problem = result.ok === false || result.problem || result.error;
    status.textContent = problem ? String(result.problem || result.error || result.detail || 'the chain is broken') : 'verified';
    status.className = problem ? 'bad' : 'ok';
    dl($('#verify-details'), [
      ['Records', result.records],
      ['Sequence', result.first_seq != null ? `${result.first_seq} … ${result.last_seq}` : null],
      ['Pruned through', result.anchor_seq],
      ['Head hash', result.head_hash ? el('code', { text: result.head_hash }) : null],
      ['Checked', timeEl(new Date())],
    ]);
  } catch (error) {
    if (!current(nav)) return;
    status.textContent = error.message;
    status.className = 'bad';
  } finally {
    if (current(nav)) button.disabled = false;
  }
}

// ---- start ----

async function signOut() {
  try {
    await api('/logout', {});
  } catch (error) {
    if (error.status !== 401) { report(error); return; }
  }
  location.href = '/login';
}

async function start() {
  $('#error-dismiss').addEventListener('click', clearError);
  $('#sign-out').addEventListener('click', signOut);
  $('#session-search').addEventListener('submit', searchSubmitted);
  $('#replay-play').addEventListener('click', playReplay);
  $('#verify-now').addEventListener('click', route);
  try {
    state.me = await api('/api/v1/me');
  } catch (error) {
    report(error);
    return;
  }
  const me = state.me;
  $('#whoami').textContent = me.name && me.email ? `${me.name} <${me.email}>` : me.email || me.name || me.subject;
  $('#whoami').title = `subject ${me.subject}`;
  $('#roles').textContent = (me.roles || []).join(', ') || 'no role';
  $('#sign-out').hidden = false;
  window.addEventListener('hashchange', route);
  route();
}

start();
