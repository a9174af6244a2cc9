// The live pipeline view: orders per status, each task kind's backlog, throughput over
// the last minutes, and dead tasks with retry. Refreshes every second while the tab is
// visible; the API builds its numbers at most once a second whoever asks.
import { el, errorMessage } from './common.js';

const TOKEN_KEY = 'orderflow.adminToken';
const REFRESH_MS = 1000;
const STATUSES = ['pending', 'paid', 'reserved', 'fulfilled', 'cancelled'];
let timer = null;
let deadFilter = { kind: '', error: '' };
let matching = 0;

const token = () => sessionStorage.getItem(TOKEN_KEY);
const headers = () => ({ Authorization: `Bearer ${token()}` });

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers ?? {}) } });
  if (response.status === 401 || response.status === 403) {
    const message = await errorMessage(response);
    signOut(message);
    throw new Error(message);
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

function showError(id, message) {
  const node = document.getElementById(id);
  node.textContent = message ?? '';
  node.hidden = !message;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  timer = null;
  document.getElementById('dashboard').hidden = true;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('token-form').hidden = false;
  showError('token-error', message);
  document.getElementById('token').focus();
}

function seconds(value) {
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  return value < 120 ? `${value.toFixed(1)} s` : `${Math.round(value / 60)} min`;
}

function renderStats(stats) {
  const format = new Intl.NumberFormat();
  for (const status of STATUSES) {
    document.getElementById(`count-${status}`).textContent = format.format(stats.orders[status]);
  }
  document.getElementById('kinds').replaceChildren(...stats.kinds.map((kind) => el('tr', {},
    el('th', { scope: 'row', text: kind.kind }),
    el('td', { text: format.format(kind.waiting) }),
    el('td', { text: format.format(kind.running) }),
    el('td', { class: kind.dead ? 'bad-text' : '', text: format.format(kind.dead) }),
    el('td', { text: kind.waiting ? seconds(kind.oldest_waiting_seconds) : '–' }))));
  const select = document.getElementById('dead-kind');
  const known = new Set([...select.options].map((option) => option.value));
  for (const kind of stats.kinds) {
    if (!known.has(kind.kind)) select.append(el('option', { value: kind.kind, text: kind.kind }));
  }
  drawChart(stats.per_second);
  const built = new Date(stats.built_at_ms);
  document.getElementById('freshness').textContent =
    `Updated ${built.toLocaleTimeString(undefined, { hour12: false })} (built in ${stats.build_ms.toFixed(1)} ms)`;
}

/// Accepted, fulfilled and cancelled per second as three lines, newest at the right.
function drawChart(series) {
  const svg = document.getElementById('chart');
  const [width, height, pad] = [600, 180, 24];
  const points = series.slice(-300);
  const top = Math.max(10, ...points.flatMap((p) => [p.accepted, p.fulfilled, p.cancelled]));
  const x = (i) => pad + (i / Math.max(1, points.length - 1)) * (width - pad - 4);
  const y = (v) => height - pad - (v / top) * (height - pad - 8);
  const svgNs = 'http://www.w3.org/2000/svg';
  const line = (key) => {
    const path = document.createElementNS(svgNs, 'polyline');
    path.setAttribute('points', points.map((p, i) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' '));
    path.setAttribute('class', `series ${key}`);
    return path;
  };
  const axis = document.createElementNS(svgNs, 'g');
  axis.setAttribute('class', 'axis');
  for (const value of [0, top / 2, top]) {
    const label = document.createElementNS(svgNs, 'text');
    label.setAttribute('x', '0');
    label.setAttribute('y', String(y(value) + 4));
    label.textContent = String(Math.round(value));
    const rule = document.createElementNS(svgNs, 'line');
    for (const [name, v] of [['x1', pad], ['x2', width], ['y1', y(value)], ['y2', y(value)]]) rule.setAttribute(name, String(v));
    axis.append(rule, label);
  }
  const desc = svg.querySelector('desc');
  svg.replaceChildren(desc, axis, line('accepted'), line('fulfilled'), line('cancelled'));
  const last = points.at(-1);
  document.getElementById('rate-now').textContent = last
    ? `· last second: ${last.accepted} accepted, ${last.fulfilled} fulfilled` : '';
}

function deadQuery() {
  const params = new URLSearchParams({ limit: '50' });
  if (deadFilter.kind) params.set('kind', deadFilter.kind);
  if (deadFilter.error) params.set('error', deadFilter.error);
  return params;
}

async function retryOne(id) {
  await api(`/admin/tasks/${id}/retry`, { method: 'POST' });
  await refresh();
}

function renderDead(dead) {
  matching = dead.matching;
  const retryAll = document.getElementById('retry-all');
  retryAll.disabled = matching === 0;
  retryAll.textContent = matching ? `Retry all ${matching} matching` : 'Retry all matching';
  document.getElementById('dead-summary').textContent = matching
    ? `${matching} dead task${matching === 1 ? '' : 's'} match${matching === 1 ? 'es' : ''}${dead.tasks.length < matching ? `; the ${dead.tasks.length} most recent are shown` : ''}.`
    : 'No dead task matches.';
  document.getElementById('dead-list').replaceChildren(...dead.tasks.map((task) => {
    const retry = el('button', { type: 'button', 'data-testid': 'retry-task', 'aria-label': `Retry task ${task.id}`, text: 'Retry' });
    retry.addEventListener('click', () => retryOne(task.id).catch((failure) => showError('ops-error', failure.message)));
    const order = task.payload?.order_id;
    return el('li', { class: 'dead-task', 'data-testid': 'dead-task' },
      el('div', {},
        el('strong', { text: `${task.kind} #${task.id}` }),
        el('span', { class: 'muted', text: ` · ${task.attempts} attempt${task.attempts === 1 ? '' : 's'} · died ${new Date(task.died_at).toLocaleTimeString(undefined, { hour12: false })}` }),
        order ? el('div', { class: 'muted', text: `order ${order}` }) : '',
        el('code', { class: 'error-text', text: task.last_error ?? '' })),
      retry);
  }));
}

async function refresh() {
  if (document.hidden || !token()) return;
  try {
    const [stats, dead] = await Promise.all([api('/admin/stats'), api(`/admin/tasks/dead?${deadQuery()}`)]);
    renderStats(stats);
    renderDead(dead);
    showError('ops-error', null);
  } catch (failure) {
    if (token()) showError('ops-error', `Could not refresh: ${failure.message}`);
  }
}

function open() {
  document.getElementById('token-form').hidden = true;
  document.getElementById('dashboard').hidden = false;
  document.getElementById('sign-out').hidden = false;
  refresh();
  timer ??= setInterval(refresh, REFRESH_MS);
}

document.getElementById('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = document.getElementById('token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  document.getElementById('token').value = '';
  showError('token-error', null);
  open();
});
document.getElementById('sign-out').addEventListener('click', () => signOut(null));
document.getElementById('dead-filter').addEventListener('input', (event) => {
  deadFilter = { ...deadFilter, [event.target.name]: event.target.value.trim() };
  refresh();
});
document.getElementById('dead-filter').addEventListener('submit', (event) => event.preventDefault());
document.getElementById('retry-all').addEventListener('click', () => {
  const dialog = document.getElementById('confirm-retry');
  const what = [deadFilter.kind && `of kind ${deadFilter.kind}`, deadFilter.error && `whose error contains "${deadFilter.error}"`].filter(Boolean).join(' ');
  document.getElementById('confirm-text').textContent =
    `${matching} dead task${matching === 1 ? '' : 's'}${what ? ` ${what}` : ''} will get a fresh set of attempts.`;
  dialog.showModal();
});
document.getElementById('confirm-retry').addEventListener('close', async () => {
  if (document.getElementById('confirm-retry').returnValue !== 'retry') return;
  try {
    const body = JSON.stringify({ kind: deadFilter.kind || null, error: deadFilter.error || null });
    const result = await api('/admin/tasks/dead/retry', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    document.getElementById('dead-summary').textContent = `${result.retried} retried.`;
    await refresh();
  } catch (failure) {
    showError('ops-error', failure.message);
  }
});
document.addEventListener('visibilitychange', refresh);

if (token()) open(); else signOut(null);
