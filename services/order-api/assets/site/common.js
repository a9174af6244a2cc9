// What the storefront and the order page share: money, the API's errors, and the list of
// orders placed in this browser (with the tokens that open them).

const ORDERS_KEY = 'orderflow.orders';
export const TERMINAL = new Set(['fulfilled', 'cancelled']);

export function money(cents, currency = 'USD') {
  return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(cents / 100);
}

/// The API's error message, or a plain one when the answer was not the API's JSON.
export async function errorMessage(response) {
  try {
    const body = await response.json();
    const message = body?.error?.message ?? `request failed (${response.status})`;
    const retry = response.headers.get('Retry-After');
    return retry ? `${message} Try again in ${retry} s.` : message;
  } catch {
    return `request failed (${response.status})`;
  }
}

export function savedOrders() {
  try {
    const list = JSON.parse(localStorage.getItem(ORDERS_KEY) ?? '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

export function saveOrder(entry) {
  const others = savedOrders().filter((order) => order.id !== entry.id);
  localStorage.setItem(ORDERS_KEY, JSON.stringify([entry, ...others].slice(0, 50)));
}

export function updateSavedStatus(id, status) {
  const list = savedOrders();
  const entry = list.find((order) => order.id === id);
  if (entry && entry.status !== status) {
    entry.status = status;
    localStorage.setItem(ORDERS_KEY, JSON.stringify(list));
  }
}

/// The page's address for an order. The token rides in the fragment, which the browser
/// never sends: it stays out of server logs and Referer headers.
export function orderPage(id, token) {
  return `/track/${encodeURIComponent(id)}#token=${encodeURIComponent(token)}`;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children);
  return node;
}
