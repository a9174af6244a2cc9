// The storefront scenario: browse the catalog, place an order (mixed payment tokens and
// baskets), then poll it until it is fulfilled or cancelled.
//
//   k6 run -e PROFILE=smoke load-tests/storefront.js
//
// Environment: BASE_URL (default http://127.0.0.1:8080), PROFILE (smoke | load | stress |
// soak | gateway-latency | overload), RATE (orders/s for the arrival-rate profiles),
// DURATION, MAX_RATE (stress), DECLINE_RATE (share of orders paid with a declined card,
// default 0.1).
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const PROFILE = __ENV.PROFILE || 'smoke';
const DECLINE_RATE = Number(__ENV.DECLINE_RATE || 0.1);
/// How long one order may take to finish before the iteration counts it as stuck.
const TERMINAL_TIMEOUT_S = Number(__ENV.TERMINAL_TIMEOUT_S || 30);
/// POLL=0: place orders without waiting for them (throughput runs measure fulfilment from
/// the database instead). BROWSE_EVERY=n lists the catalog on one iteration in n.
const POLL = (__ENV.POLL || '1') !== '0';
const BROWSE_EVERY = Math.max(1, Number(__ENV.BROWSE_EVERY || 1));

const timeToTerminal = new Trend('order_time_to_terminal', true);
const ordersFulfilled = new Counter('orders_fulfilled');
const ordersCancelled = new Counter('orders_cancelled');
const ordersStuck = new Counter('orders_stuck');
const orderErrors = new Rate('order_errors');
/// Orders the API turned away because the pipeline was behind (503 overloaded): load
/// shedding working as designed, not an error. Counted apart from `order_errors`.
const ordersShed = new Counter('orders_shed');

function arrival(rate, duration) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration,
    // Enough VUs for half a second of requests in flight: a VU that k6 must start mid-run
    // drops iterations while it starts, so the offered rate would fall short of `rate`.
    preAllocatedVUs: Math.max(10, Math.ceil(rate / 2)),
    maxVUs: Math.max(50, rate * 2),
  };
}

const profiles = {
  // Seconds, a couple of users: does the whole path work? (run by .ci/run)
  smoke: {
    scenarios: { storefront: { executor: 'constant-vus', vus: 2, duration: __ENV.DURATION || '10s' } },
    thresholds: {
      order_errors: ['rate==0'],
      orders_stuck: ['count==0'],
      checks: ['rate==1'],
      http_req_failed: ['rate==0'],
    },
  },
  // A constant arrival rate: what latency at this throughput?
  load: {
    scenarios: { storefront: arrival(Number(__ENV.RATE || 200), __ENV.DURATION || '60s') },
    thresholds: {
      order_errors: ['rate<0.001'],
      orders_stuck: ['count==0'],
      http_req_failed: ['rate<0.001'],
      'http_req_duration{name:place_order}': ['p(99)<100'],
      'http_req_duration{name:get_order}': ['p(99)<100'],
      order_time_to_terminal: ['p(99)<1000'],
    },
  },
  // Ramp the arrival rate until errors or latency break; k6 stops the run there.
  stress: {
    scenarios: {
      storefront: {
        executor: 'ramping-arrival-rate',
        startRate: 50,
        timeUnit: '1s',
        preAllocatedVUs: 100,
        maxVUs: 2000,
        stages: [
          { target: Number(__ENV.MAX_RATE || 2000), duration: __ENV.DURATION || '120s' },
        ],
      },
    },
    thresholds: {
      order_errors: [{ threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: '5s' }],
      'http_req_duration{name:place_order}': [
        { threshold: 'p(99)<1000', abortOnFail: true, delayAbortEval: '5s' },
      ],
    },
  },
  // Long and flat: leaks, bloat, slow drift.
  soak: {
    scenarios: { storefront: arrival(Number(__ENV.RATE || 100), __ENV.DURATION || '30m') },
    thresholds: {
      order_errors: ['rate<0.001'],
      orders_stuck: ['count==0'],
      http_req_failed: ['rate<0.001'],
      'http_req_duration{name:place_order}': ['p(99)<200'],
    },
  },
  // A payment provider as slow as a real one (the script starts gateway-sim with half a
  // second a charge): hundreds of charges in flight, and every order still finishes soon.
  'gateway-latency': {
    scenarios: { storefront: arrival(Number(__ENV.RATE || 400), __ENV.DURATION || '60s') },
    thresholds: {
      order_errors: ['rate<0.001'],
      orders_stuck: ['count==0'],
      orders_shed: ['count==0'],
      'http_req_duration{name:place_order}': ['p(99)<250'],
    },
  },
  // More orders than the box can finish: the API sheds the excess early (503 overloaded,
  // counted in orders_shed), answers every request fast, and finishes what it accepted.
  overload: {
    scenarios: { storefront: arrival(Number(__ENV.RATE || 1500), __ENV.DURATION || '60s') },
    thresholds: {
      order_errors: ['rate<0.001'],
      'http_req_duration{name:place_order}': ['p(99)<250'],
    },
  },
};


if (!profiles[PROFILE]) {
  throw new Error(`unknown PROFILE ${PROFILE}: use one of ${Object.keys(profiles).join(', ')}`);
}

// Every profile reports place-order and poll latency on its own (k6 exports a tagged
// sub-metric only when a threshold names it; these never fail, with or without samples).
const selected = profiles[PROFILE];
selected.thresholds = {
  'http_req_duration{name:place_order}': ['max>=0'],
  'http_req_duration{name:get_order}': ['max>=0'],
  ...selected.thresholds,
};

export const options = {
  ...selected,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  const response = http.get(`${BASE_URL}/products`, { tags: { name: 'list_products' } });
  if (response.status !== 200) {
    fail(`GET /products answered ${response.status}: is the API up and the catalog seeded?`);
  }
  const products = response.json().filter((product) => product.stock > 0);
  if (products.length === 0) {
    fail('the catalog is empty: run `order-api seed` first');
  }
  return { productIds: products.map((product) => product.id) };
}

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

function basket(productIds) {
  const lines = 1 + Math.floor(Math.random() * 3);
  const chosen = new Set();
  while (chosen.size < Math.min(lines, productIds.length)) {
    chosen.add(pick(productIds));
  }
  return [...chosen].map((productId) => ({
    product_id: productId,
    quantity: 1 + Math.floor(Math.random() * 3),
  }));
}

function idempotencyKey() {
  return `k6-${__VU}-${__ITER}-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
}

export default function (data) {
  if (__ITER % BROWSE_EVERY === 0) {
    http.get(`${BASE_URL}/products`, { tags: { name: 'list_products' } });
  }

  const order = {
    customer: { email: `shopper${__VU}@example.com`, name: `Shopper ${__VU}` },
    items: basket(data.productIds),
    payment: { token: Math.random() < DECLINE_RATE ? 'tok_chargeDeclined' : 'tok_visa' },
  };
  const placed = http.post(`${BASE_URL}/orders`, JSON.stringify(order), {
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey() },
    tags: { name: 'place_order' },
  });
  if (placed.status === 503 && placed.json('error.code') === 'overloaded') {
    ordersShed.add(1);
    return;
  }
  const accepted = check(placed, { 'order accepted (202)': (r) => r.status === 202 });
  orderErrors.add(!accepted);
  if (!accepted) {
    return;
  }
  if (!POLL) {
    return;
  }
  const id = placed.json('id');
  // The order opens with the token its 202 carried, as a shopper's browser would use it.
  const asCustomer = {
    headers: { Authorization: `Bearer ${placed.json('access_token')}` },
    tags: { name: 'get_order' },
  };
  const started = Date.now();
  while ((Date.now() - started) / 1000 < TERMINAL_TIMEOUT_S) {
    sleep(0.05);
    const current = http.get(`${BASE_URL}/orders/${id}`, asCustomer);
    if (current.status !== 200) {
      continue;
    }
    const status = current.json('status');
    if (status === 'fulfilled' || status === 'cancelled') {
      timeToTerminal.add(Date.now() - started);
      (status === 'fulfilled' ? ordersFulfilled : ordersCancelled).add(1);
      check(current, {
        'a cancelled order says why': (r) => status === 'fulfilled' || r.json('cancel_reason') !== null,
      });
      return;
    }
  }
  ordersStuck.add(1);
}
