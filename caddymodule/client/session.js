// caddy-session browser client. The session handler serves this file at
// <api_path>/client.js (/__session/client.js by default); it talks to the
// API path it was served under.
//
//   import {get, set, update, destroy, subscribe} from '/__session/client.js';
//
//   await update((s) => ({cart: {...s.cart, mug: (s.cart?.mug ?? 0) + 1}}));
//
// get()          the client-readable keys ({} without a session)
// set(patch)     merge a patch (null deletes a key); last write wins
// update(fn)     read, fn(current) -> patch, write only if the session is
//                still at the version read (If-Match); retried on 412/409;
//                the update() calls of all tabs take turns
// destroy()      end the session
// subscribe(fn)  fn(session or null) when another tab of this origin
//                changed the session through this client; returns an
//                unsubscribe function
//
// Every failure rejects with a SessionError: its message is the API's own
// ("key \"customerId\" is not client-writable; ..."), .status its status.

const script = new URL(import.meta.url);
const apiPath = script.pathname.replace(/\/client\.js$/, '');
const api = script.origin + apiPath;

// update() tries this many times in all before it gives up.
const TRIES = 5;
// Waits between tries: BASE_DELAY ms doubling each time, at most MAX_DELAY,
// half of it random (jitter), so two tabs that collided do not collide
// again in lockstep.
const BASE_DELAY = 20;
const MAX_DELAY = 500;

/** A failed session API call: message from the API, status its HTTP status. */
export class SessionError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'SessionError';
    this.status = status;
  }
}

async function call(method, {body, headers = {}} = {}) {
  const init = {method, credentials: 'same-origin', cache: 'no-store', headers: {Accept: 'application/json', ...headers}};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(api, init);
  let data = null;
  if (res.status !== 204 && method !== 'HEAD') {
    const text = await res.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = undefined; // not the API's JSON: a proxy's error page, say
    }
  }
  return {status: res.status, ok: res.ok, etag: res.headers.get('ETag'), data, res};
}

function fail(method, r) {
  if (r.data && typeof r.data.error === 'string') {
    return new SessionError(r.data.error, r.status);
  }
  return new SessionError(`${method} ${apiPath} answered ${r.status} ${r.res.statusText}`.trim(), r.status);
}

function object(r) {
  return r.data && typeof r.data === 'object' && !Array.isArray(r.data) ? r.data : {};
}

// ---- other tabs -------------------------------------------------------------

// One channel per API path: another handler on the same origin is another
// session.
const channelName = 'caddy-session:' + apiPath;
// Tells this module's own messages from other tabs'.
const tabID = Math.random().toString(36).slice(2) + Date.now().toString(36);
const listeners = new Set();
let inbox = null;

function announce(session) {
  if (typeof BroadcastChannel !== 'function') return;
  // A short-lived channel: an open one can keep a page out of the
  // back/forward cache, and a tab that only writes needs none.
  const ch = new BroadcastChannel(channelName);
  ch.postMessage({from: tabID, session});
  ch.close();
}

/**
 * Calls fn(session) whenever another tab or window of this origin changes
 * the session through this client (set, update, destroy): session is the
 * readable object it wrote, or null after destroy. Changes made otherwise
 * (the upstream's X-Session-* headers, a sign-in, plain fetch calls) are
 * not announced: call get() after them. Returns a function that
 * unsubscribes.
 */
export function subscribe(fn) {
  if (typeof fn !== 'function') throw new TypeError('subscribe(fn): fn must be a function');
  if (typeof BroadcastChannel !== 'function') return () => {};
  const entry = (s) => fn(s);
  listeners.add(entry);
  if (!inbox) {
    inbox = new BroadcastChannel(channelName);
    inbox.onmessage = (ev) => {
      const m = ev.data;
      if (!m || m.from === tabID) return;
      for (const l of [...listeners]) {
        try {
          l(m.session);
        } catch (err) {
          setTimeout(() => { throw err; }); // reported, and the others still run
        }
      }
    };
  }
  return () => {
    listeners.delete(entry);
    if (listeners.size === 0 && inbox) {
      inbox.close();
      inbox = null;
    }
  };
}

// ---- the API ----------------------------------------------------------------

/** Resolves to the session's client-readable keys ({} without a session). */
export async function get() {
  const r = await call('GET');
  if (!r.ok) throw fail('GET', r);
  return object(r);
}

function checkPatch(patch, what) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    throw new TypeError(`${what}: a patch is an object of keys to write (null deletes a key)`);
  }
}

/**
 * Merges patch into the session (null deletes a key) and resolves to the
 * resulting readable object. No version check: of two tabs that read, then
 * set, the last write wins; use update() to change a value that depends on
 * the current one.
 */
export async function set(patch) {
  checkPatch(patch, 'set(patch)');
  const r = await call('POST', {body: patch});
  if (!r.ok) throw fail('POST', r);
  const s = object(r);
  announce(s);
  return s;
}

// update() calls of every tab of this origin take turns (Web Locks, where
// the page is a secure context: https, localhost): two tabs adding to a
// cart then never collide, and none of them starves while the other keeps
// winning. If-Match still guards against every other writer (set(), the
// upstream, another browser).
const lockName = 'caddy-session:' + apiPath;

function exclusive(task) {
  const locks = globalThis.navigator && navigator.locks;
  return locks && typeof locks.request === 'function' ? locks.request(lockName, task) : task();
}

/**
 * Read-modify-write without lost updates. Reads the session and its
 * version, calls fn(current) (it may be async), and writes the patch it
 * returns (an object merged like set's: null deletes a key) only if the
 * session is still at the version read (If-Match; If-None-Match: * when
 * there was no session). When another request changed the session in
 * between (412), or the request raced a sign-in (409), it waits a little
 * (exponential backoff with jitter), reads again and calls fn again: fn
 * must compute from its argument, and may run several times. After 5
 * tries it rejects with a SessionError saying so. fn returning null or
 * undefined (or {}) writes nothing. Resolves to the resulting readable
 * object.
 *
 * The update() calls of all tabs of the origin run one at a time, so keep
 * fn quick (never wait for the user in it), and never call update() from
 * fn: it would wait for itself.
 */
export async function update(fn) {
  if (typeof fn !== 'function') throw new TypeError('update(fn): fn must be a function that returns a patch');
  return exclusive(() => readModifyWrite(fn));
}

async function readModifyWrite(fn) {
  let last = null;
  for (let attempt = 0; attempt < TRIES; attempt++) {
    if (attempt > 0) await backoff(attempt);
    const read = await call('GET');
    if (!read.ok) throw fail('GET', read);
    const current = object(read);
    const patch = await fn(structuredClone(current));
    if (patch === null || patch === undefined) return current;
    checkPatch(patch, 'update(fn): fn returned something else than a patch');
    if (Object.keys(patch).length === 0) return current;
    const headers = read.etag ? {'If-Match': read.etag} : {'If-None-Match': '*'};
    const r = await call('POST', {body: patch, headers});
    if (r.ok) {
      const s = object(r);
      announce(s);
      return s;
    }
    if (r.status !== 412 && r.status !== 409) throw fail('POST', r);
    last = r;
  }
  const why = last.status === 409
    ? 'each write raced a sign-in or another change of the session ID'
    : 'the session kept changing in other requests (412 Precondition Failed)';
  throw new SessionError(`update() gave up after ${TRIES} tries: ${why}; try again, or write less often from several tabs at once`, last.status);
}

function backoff(attempt) {
  const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1));
  return new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * ceiling / 2));
}

/** Ends the session (the store's record and the cookie). Resolves to undefined. */
export async function destroy() {
  const r = await call('DELETE');
  if (!r.ok) throw fail('DELETE', r);
  announce(null);
}
