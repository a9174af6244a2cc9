// One order's page: its progress through the pipeline, live. The API pushes each change
// over server-sent events; where the stream cannot be held the page polls instead, and a
// hidden tab does neither.
import { TERMINAL, el, errorMessage, money, savedOrders, updateSavedStatus } from './common.js';

const POLL_MS = 1000;
const STEPS = [
  { event: 'placed', label: 'Placed', service: 'order API' },
  { event: 'paid', label: 'Paid', service: 'payment worker' },
  { event: 'reserved', label: 'Reserved', service: 'inventory worker' },
  { event: 'shipped', label: 'Shipped', service: 'inventory worker' },
  { event: 'fulfilled', label: 'Fulfilled', service: 'notification worker' },
];
const EMAILS = { order_confirmed: 'order confirmation', order_cancelled: 'cancellation notice' };
const REASONS = {
  payment_declined: 'the card was declined',
  out_of_stock: 'an item ran out of stock (the payment was refunded)',
  customer_request: 'you cancelled it',
};

const id = decodeURIComponent(window.location.pathname.split('/').pop() ?? '');
const token = new URLSearchParams(window.location.hash.slice(1)).get('token')
  ?? savedOrders().find((order) => order.id === id)?.token;
const auth = { Authorization: `Bearer ${token}` };
let stream = null;
let poller = null;
let finished = false;

function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}

function time(at) {
  const date = new Date(at);
  return `${date.toLocaleTimeString(undefined, { hour12: false })}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

// A worker's step spans two times: waiting for a worker after the step before it ended,
// then running (the outside call and the write). `started_at` is when the worker took
// the task; a step without it (placing the order) has no split.
function stepTimes(event, previous) {
  if (!event?.started_at || !previous) return null;
  const started = Date.parse(event.started_at);
  return { waited: started - Date.parse(previous.at), ran: Date.parse(event.at) - started };
}

function describeTimes(times) {
  return `waited ${duration(times.waited)}, ran ${duration(times.ran)}`;
}

function renderSteps(order) {
  const reached = new Map(order.events.map((event) => [event.type, event]));
  const cancelled = order.status === 'cancelled';
  let previous = null;
  const items = [];
  for (const step of STEPS) {
    const event = reached.get(step.event);
    if (!event && cancelled) break;
    const times = stepTimes(event, previous);
    const detail = !event ? `waiting for the ${step.service}`
      : times ? `${step.service}: ${describeTimes(times)}`
      : previous ? `${step.service}: ${duration(Date.parse(event.at) - Date.parse(previous.at))}`
      : time(event.at);
    items.push(el('li', { class: event ? 'done' : 'todo', 'aria-current': !event && !items.some((i) => i.className === 'todo') ? 'step' : false },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'step-label', text: step.label }),
      el('span', { class: 'step-detail muted', text: detail })));
    if (event) previous = event;
  }
  if (cancelled) {
    const event = reached.get('cancelled');
    const times = stepTimes(event, previous);
    const detail = times ? describeTimes(times)
      : event && previous ? duration(Date.parse(event.at) - Date.parse(previous.at)) : '';
    items.push(el('li', { class: 'done cancelled' },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'step-label', text: 'Cancelled' }),
      el('span', { class: 'step-detail muted', text: detail })));
  }
  document.getElementById('steps').replaceChildren(...items);
}

function renderTimeline(order) {
  let previous = null;
  document.getElementById('timeline').replaceChildren(...order.events.map((event) => {
    const times = stepTimes(event, previous);
    const since = previous ? `+${duration(Date.parse(event.at) - Date.parse(previous.at))}` : 'start';
    previous = event;
    const detail = event.notification ? ` (${EMAILS[event.notification] ?? event.notification})`
      : event.tracking_number ? ` (${event.carrier} ${event.tracking_number})`
      : event.reason ? ` (${event.reason.replaceAll('_', ' ')})` : '';
    return el('li', {},
      el('time', { datetime: event.at, text: time(event.at) }),
      el('span', { class: 'event', text: `${event.type.replaceAll('_', ' ')}${detail}` }),
      times
        ? el('span', { class: 'muted step-times', 'data-waited-ms': String(times.waited), 'data-ran-ms': String(times.ran), text: describeTimes(times) })
        : el('span', { class: 'muted', text: since }));
  }));
}

function renderEmail(order) {
  const sent = order.events.find((event) => event.notification && (event.type === 'fulfilled' || event.type === 'notified'));
  const failed = order.events.find((event) => event.type === 'notification_failed');
  const note = document.getElementById('email-note');
  if (sent) note.textContent = `E-mail sent to ${order.customer.email}: ${EMAILS[sent.notification] ?? sent.notification}.`;
  else if (failed) note.textContent = `The ${EMAILS[failed.notification] ?? 'e-mail'} to ${order.customer.email} could not be delivered.`;
  else note.textContent = `An e-mail goes to ${order.customer.email} when the order is done.`;
}

function render(order) {
  document.getElementById('order').hidden = false;
  document.getElementById('order-id').textContent = order.id.slice(-8);
  const status = document.getElementById('order-status');
  status.textContent = order.status;
  status.className = `badge ${order.status}`;
  document.getElementById('outcome').textContent = order.status === 'cancelled'
    ? `Cancelled: ${REASONS[order.cancel_reason] ?? order.cancel_reason}.`
    : order.status === 'fulfilled' ? 'Paid, packed and confirmed.' : '';
  renderSteps(order);
  renderTimeline(order);
  renderEmail(order);
  document.getElementById('items').replaceChildren(...order.items.map((item) => el('tr', {},
    el('td', { text: item.sku }),
    el('td', { text: String(item.quantity) }),
    el('td', { text: money(item.unit_price_cents * item.quantity, order.currency) }))));
  document.getElementById('order-total').textContent = money(order.total_cents, order.currency);
  document.getElementById('cancel').hidden = !(order.status === 'pending' || order.status === 'paid');
  updateSavedStatus(order.id, order.status);
  const sentOrFailed = order.events.some((e) => e.type === 'fulfilled' || e.type === 'notified' || e.type === 'notification_failed');
  if (TERMINAL.has(order.status) && sentOrFailed) {
    finished = true;
    stop();
    document.getElementById('live').textContent = '';
  }
}

function showError(message) {
  const error = document.getElementById('order-error');
  error.textContent = message;
  error.hidden = false;
}

function setLive(text) {
  if (!finished) document.getElementById('live').textContent = text;
}

async function fetchOrder() {
  const response = await fetch(`/orders/${encodeURIComponent(id)}`, { headers: auth });
  if (response.status === 404) {
    finished = true;
    stop();
    showError('No such order, or this link is not the one from your order.');
    return;
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  render(await response.json());
}

/// Reads the event stream: `event: order` frames carry the whole order.
async function follow() {
  const controller = new AbortController();
  stream = controller;
  const response = await fetch(`/orders/${encodeURIComponent(id)}/events`, {
    headers: { ...auth, Accept: 'text/event-stream' }, signal: controller.signal,
  });
  if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
  setLive('live');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trimStart()).join('\n');
      if (frame.includes('event: order') && data) render(JSON.parse(data));
    }
  }
}

function stop() {
  stream?.abort();
  stream = null;
  clearInterval(poller);
  poller = null;
}

function poll() {
  setLive('updating every second');
  poller ??= setInterval(() => fetchOrder().catch(() => setLive('offline; retrying')), POLL_MS);
}

async function start() {
  if (finished || document.hidden || stream || poller) return;
  try {
    await follow();
    stream = null;
    // The server ended the stream (the order is done, or the stream's time is up).
    if (!finished) start();
  } catch (failure) {
    stream = null;
    if (failure.name === 'AbortError' || finished) return;
    poll();
  }
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    stop();
    setLive('paused');
  } else {
    fetchOrder().catch(() => {}).finally(start);
  }
});
document.getElementById('cancel').addEventListener('click', async () => {
  const response = await fetch(`/orders/${encodeURIComponent(id)}/cancel`, { method: 'POST', headers: auth });
  if (response.ok) render(await response.json());
  else showError(await errorMessage(response));
});

if (!token) {
  showError('This page needs the link from your order (it carries the order\'s key).');
} else {
  fetchOrder().then(start, (failure) => { showError(failure.message); poll(); });
}
