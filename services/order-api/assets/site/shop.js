// The storefront: the catalog, a cart kept in this browser, checkout, and the orders placed
// here with their live status.
import {
  TERMINAL, el, errorMessage, money, orderPage, saveOrder, savedOrders, updateSavedStatus,
} from './common.js';

const CART_KEY = 'orderflow.cart';
const LIST_POLL_MS = 2000;
let products = new Map();
let cart = loadCart();

function loadCart() {
  try {
    const stored = JSON.parse(localStorage.getItem(CART_KEY) ?? '{}');
    return stored && typeof stored === 'object' ? stored : {};
  } catch {
    return {};
  }
}

function storeCart() {
  localStorage.setItem(CART_KEY, JSON.stringify(cart));
}

/// A product's picture: its initials on a colour of its own, drawn here (no image host).
function swatch(product) {
  // FNV-1a, then the golden angle: neighbouring SKUs (DEMO-001, DEMO-002) get far-apart hues.
  let hash = 2166136261;
  for (const char of product.sku) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
  const initials = product.name.split(/\s+/).map((word) => word[0] ?? '').join('').slice(0, 2);
  const art = el('div', { class: 'art', 'aria-hidden': 'true', text: initials.toUpperCase() });
  art.style.setProperty('--hue', String(Math.round((hash % 360) * 137.508) % 360));
  return art;
}

async function loadProducts() {
  const error = document.getElementById('catalog-error');
  try {
    const response = await fetch('/products');
    if (!response.ok) throw new Error(await errorMessage(response));
    const list = await response.json();
    products = new Map(list.map((product) => [product.id, product]));
    error.hidden = true;
    renderProducts();
    renderCart();
  } catch (failure) {
    error.textContent = `The catalog could not be loaded: ${failure.message}`;
    error.hidden = false;
  }
}

function renderProducts() {
  const grid = document.getElementById('products');
  grid.replaceChildren(...[...products.values()].map((product) => {
    const inCart = cart[product.id] ?? 0;
    const soldOut = product.stock <= inCart;
    const button = el('button', {
      type: 'button', 'data-testid': 'add-to-cart', class: 'primary', disabled: soldOut,
      'aria-label': `Add ${product.name} to the cart`,
      text: product.stock > 0 ? 'Add to cart' : 'Sold out',
    });
    button.addEventListener('click', () => {
      cart[product.id] = (cart[product.id] ?? 0) + 1;
      storeCart();
      renderProducts();
      renderCart();
    });
    return el('li', { class: 'card', 'data-testid': 'product' },
      swatch(product),
      el('h2', { text: product.name }),
      el('p', { class: 'sku muted', text: product.sku }),
      el('p', { class: 'price', text: money(product.price_cents, product.currency) }),
      el('p', { class: product.stock > 0 ? 'stock' : 'stock out', text: product.stock > 0 ? `${new Intl.NumberFormat().format(product.stock)} in stock` : 'Out of stock' }),
      button);
  }));
}

function cartLines() {
  return Object.entries(cart)
    .filter(([id, quantity]) => products.has(id) && quantity > 0)
    .map(([id, quantity]) => ({ product: products.get(id), quantity }));
}

function renderCart() {
  const lines = cartLines();
  document.getElementById('cart-empty').hidden = lines.length > 0;
  document.getElementById('checkout').disabled = lines.length === 0;
  const total = lines.reduce((sum, line) => sum + line.product.price_cents * line.quantity, 0);
  document.getElementById('cart-total').textContent = lines.length ? money(total, lines[0].product.currency) : '–';
  document.getElementById('cart-lines').replaceChildren(...lines.map(({ product, quantity }) => {
    const change = (delta, label) => {
      const button = el('button', { type: 'button', class: 'small', 'aria-label': `${label} ${product.name}`, text: delta > 0 ? '+' : '−' });
      button.addEventListener('click', () => {
        const next = Math.min(100, (cart[product.id] ?? 0) + delta);
        if (next <= 0) delete cart[product.id]; else cart[product.id] = next;
        storeCart();
        renderProducts();
        renderCart();
      });
      return button;
    };
    return el('li', {},
      el('span', { class: 'line-name', text: product.name }),
      el('span', { class: 'qty' }, change(-1, 'One fewer'), el('span', { text: String(quantity) }), change(1, 'One more')),
      el('span', { class: 'line-price', text: money(product.price_cents * quantity, product.currency) }));
  }));
}

async function placeOrder(event) {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById('form-error');
  if (!form.reportValidity()) return;
  const submit = form.querySelector('[data-testid="place-order"]');
  submit.disabled = true;
  error.hidden = true;
  const body = {
    customer: { email: form.email.value.trim(), name: form.name.value.trim() },
    items: cartLines().map(({ product, quantity }) => ({ product_id: product.id, quantity })),
    payment: { token: form.card.value },
  };
  // One key per attempt at this basket: a retried click cannot place a second order.
  form.dataset.key ||= crypto.randomUUID();
  try {
    const response = await fetch('/orders', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': form.dataset.key },
      body: JSON.stringify(body),
    });
    if (response.status !== 202) throw new Error(await errorMessage(response));
    const order = await response.json();
    saveOrder({ id: order.id, token: order.access_token, placed_at: order.created_at, total_cents: order.total_cents, currency: order.currency, status: order.status });
    cart = {};
    storeCart();
    delete form.dataset.key;
    window.location.assign(orderPage(order.id, order.access_token));
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
    submit.disabled = false;
  }
}

/// The orders placed in this browser, each with its status kept current while the tab is
/// visible (one request per unfinished order every two seconds).
function renderOrders() {
  const list = savedOrders();
  document.getElementById('orders-empty').hidden = list.length > 0;
  document.getElementById('orders-list').replaceChildren(...list.map((order) => el('li', {},
    el('a', { href: orderPage(order.id, order.token), text: `Order ${order.id.slice(-8)}` }),
    el('span', { class: 'muted', text: new Date(order.placed_at).toLocaleString() }),
    el('span', { text: money(order.total_cents, order.currency) }),
    el('span', { class: `badge ${order.status}`, 'data-testid': 'my-order-status', text: order.status }))));
}

async function refreshOrders() {
  if (document.hidden) return;
  const unfinished = savedOrders().filter((order) => !TERMINAL.has(order.status));
  await Promise.all(unfinished.map(async (order) => {
    try {
      const response = await fetch(`/orders/${order.id}`, { headers: { Authorization: `Bearer ${order.token}` } });
      if (response.ok) updateSavedStatus(order.id, (await response.json()).status);
    } catch {
      // Offline for a moment: the next round tries again.
    }
  }));
  renderOrders();
}

document.getElementById('checkout').addEventListener('click', () => {
  const form = document.getElementById('checkout-form');
  form.hidden = false;
  form.email.focus();
});
document.getElementById('checkout-form').addEventListener('submit', placeOrder);
window.addEventListener('storage', () => { cart = loadCart(); renderProducts(); renderCart(); renderOrders(); });
document.addEventListener('visibilitychange', refreshOrders);
renderOrders();
loadProducts();
refreshOrders();
setInterval(refreshOrders, LIST_POLL_MS);
