// crowbar web UI. Pages are built from /api/v2 answers with h() (never from
// HTML strings), routed by the URL's hash, and kept live by the server's
// event stream. docs/ui.md says why it is written this way.

const main = document.getElementById('main');
const top = document.getElementById('top');
const STATES = { '-1': 'error', 0: 'active', 1: 'todo', 2: 'transition', 3: 'blocked', 4: 'proposed' };
const PAGE = 50;

// S is what the UI knows between pages.
const S = {
  me: null,          // {username, role, csrf_token, expires_at}
  gen: 0,            // bumped on every navigation; stale loads are dropped
  onEvent: null,     // the current page's handler of node-role events
  es: null,          // the EventSource
  lastEventId: '',   // the last event's id, to resume from
  anneal: null,      // the last /api/v2/anneal answer
  samples: [],       // [time ms, done] while annealing, for the ETA
  roles: null,       // id -> role, loaded once per sign-in
  flash: null,       // a message for the next drawing of a page (a secret shown once)
  rendering: false,  // a page is being fetched: events wait in held
  held: [],
};

// ---------- DOM ----------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k == null || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

const canWrite = () => S.me && S.me.role !== 'reader';
const isAdmin = () => S.me && S.me.role === 'admin';
const stateName = (n) => STATES[n] || String(n);
const badge = (state) => h('span', { class: 'badge s-' + stateName(state) }, stateName(state));
const json = (v) => h('pre', {}, v == null ? '(none)' : JSON.stringify(v, null, 2));
const when = (t) => (t ? new Date(t).toLocaleString() : '');
const link = (href, text) => h('a', { href }, text);

function table(head, rows, cls) {
  return h('table', { class: cls || 'wide' },
    h('thead', {}, h('tr', {}, head.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, 'None.'))));
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || 'HTTP ' + status);
    this.status = status;
    this.field = (body && body.field) || '';
  }
}

async function api(method, path, body, raw) {
  const headers = { 'X-Crowbar-Client': 'ui', Accept: 'application/json' };
  const opt = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD' && S.me) headers['X-CSRF-Token'] = S.me.csrf_token || '';
  if (raw) {
    opt.body = raw.body;
    headers['Content-Type'] = raw.type;
  } else if (body !== undefined) {
    opt.body = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, opt);
  } catch (e) {
    throw new ApiError(0, { message: 'the server did not answer (' + e.message + ')' });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (res.status === 401 && path !== '/api/v2/session') {
    signedOut('Your session has ended; sign in again.');
    throw new ApiError(401, data);
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return { data, total: Number(res.headers.get('X-Total-Count') || 0) };
}

const get = async (path) => (await api('GET', path)).data;
const enc = encodeURIComponent;

async function roles() {
  if (!S.roles) {
    S.roles = new Map();
    for (const r of await get('/api/v2/roles')) S.roles.set(r.id, r);
  }
  return S.roles;
}

// ---------- forms and errors ----------

// errorBox shows an API error where it happened; a field the server names
// is marked and explained beside its input.
function showError(form, err) {
  const box = form.querySelector(':scope > .error') || form.appendChild(h('p', { class: 'error', role: 'alert' }));
  box.textContent = (err.status ? err.status + ': ' : '') + err.message;
  form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  form.querySelectorAll('.field-error').forEach((el) => el.remove());
  const input = err.field && form.querySelector(`[name="${CSS.escape(err.field)}"]`);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    const id = 'err-' + err.field;
    input.setAttribute('aria-describedby', id);
    input.closest('label').append(h('span', { class: 'field-error', id }, err.message));
    input.focus();
  }
}

// form builds a form whose submit calls action(values); errors stay next to
// it and the page is reloaded on success unless action returns false.
function form(cls, fields, label, action, id) {
  const f = h('form', { class: cls, novalidate: true, id },
    fields.map((fd) => {
      let input;
      if (fd.options) {
        input = h('select', { name: fd.name, multiple: fd.multiple, size: fd.multiple ? 6 : null },
          fd.options.map(([v, t]) => h('option', { value: v, selected: String(v) === String(fd.value ?? '') }, t)));
      } else {
        input = h('input', { name: fd.name, type: fd.type || 'text', value: fd.value ?? '', placeholder: fd.placeholder,
          autocomplete: fd.autocomplete, accept: fd.accept, required: fd.required, autofocus: fd.autofocus });
      }
      return h('label', {}, fd.label, input);
    }),
    h('button', { type: 'submit' }, label));
  const dirty = () => { f.dataset.dirty = '1'; };
  f.addEventListener('input', dirty);
  f.addEventListener('change', dirty);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = f.querySelector('button[type=submit]');
    const values = {};
    for (const el of f.elements) {
      if (!el.name) continue;
      if (el.type === 'file') values[el.name] = el.files[0];
      else if (el.multiple) values[el.name] = [...el.selectedOptions].map((o) => o.value);
      else values[el.name] = el.value;
    }
    btn.disabled = true;
    try {
      const again = await action(values, f);
      f.querySelector(':scope > .error')?.remove();
      if (again !== false) render();
    } catch (err) {
      if (err instanceof ApiError) {
        if (err.status !== 401) showError(f, err);
      } else {
        showError(f, { status: 0, message: err.message });
      }
    } finally {
      btn.disabled = false;
    }
  });
  return f;
}

// action is a button that calls fn; its errors show beside it.
function action(label, fn, cls) {
  const wrap = h('span', {});
  const b = h('button', { type: 'button', class: cls || 'secondary' }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    wrap.querySelector('.error')?.remove();
    try {
      if ((await fn()) !== false) render();
    } catch (err) {
      if (err.status !== 401) wrap.append(' ', h('span', { class: 'error', role: 'alert' }, (err.status ? err.status + ': ' : '') + err.message));
    } finally {
      b.disabled = false;
    }
  });
  wrap.append(b);
  return wrap;
}

// ---------- session ----------

function signedOut(message) {
  S.me = null;
  S.roles = null;
  stopEvents();
  S.signOutMessage = message;
  render();
}

function loginPage() {
  const f = form('stack', [
    { name: 'username', label: 'User name', autocomplete: 'username', required: true, autofocus: true },
    { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', required: true },
  ], 'Sign in', async (v) => {
    S.me = (await api('POST', '/api/v2/session', { username: v.username, password: v.password })).data;
    S.signOutMessage = '';
    startEvents();
  });
  f.id = 'login';
  return h('section', { class: 'login card' }, h('h1', {}, 'Sign in to crowbar'),
    S.signOutMessage ? h('p', { class: 'ok', role: 'status' }, S.signOutMessage) : null,
    h('p', { class: 'muted' }, 'Use your crowbar user; on a new server, the install key (user crowbar, the password in the key file the server wrote).'),
    f);
}

// ---------- live: events and the annealer ----------

// startEvents opens the event stream; resume asks for what followed the
// last event seen (the server replays it, or sends reset when it has been
// pruned).
function startEvents(resume) {
  if (S.es) S.es.close();
  const es = new EventSource('/api/v2/events' + (resume && S.lastEventId ? '?last_event_id=' + enc(S.lastEventId) : ''));
  S.es = es;
  const onEv = (e) => {
    if (e.lastEventId) S.lastEventId = e.lastEventId;
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    // While a page is being fetched its events wait, and are played onto
    // the page once it is drawn: its data may be older than they are.
    if (S.rendering) S.held.push(ev);
    else if (S.onEvent) S.onEvent(ev);
    annealSoon();
  };
  es.addEventListener('node_role', onEv);
  es.addEventListener('deployment', onEv);
  es.addEventListener('reset', () => { render(); }); // events were lost: draw afresh
  // A stream the server closed for good: the session may have ended (sign
  // in again), else reconnect from the last event seen.
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED || !S.me) return;
    setTimeout(async () => {
      if (!S.me || S.es !== es) return;
      try {
        await api('GET', '/api/v2/anneal');
        startEvents(true);
      } catch {
        if (S.me && S.es === es) es.onerror(); // the server is away: try again in 2 s (a 401 signed us out)
      }
    }, 2000);
  };
  refreshAnneal();
}

function stopEvents() {
  if (S.es) S.es.close();
  S.es = null;
}

// A browser keeps at most six HTTP/1.1 connections per server, and each
// open event stream holds one: a page that is left, or a tab in the
// background, gives its stream back, and resumes from the last event it saw
// when it is shown again (no redraw: what the user was typing stays).
window.addEventListener('pagehide', stopEvents);
window.addEventListener('pageshow', (e) => { if (e.persisted && S.me && !S.es) startEvents(true); });
document.addEventListener('visibilitychange', () => {
  if (document.hidden) stopEvents();
  else if (S.me && !S.es) startEvents(true);
});

let annealTimer = null;
function annealSoon() {
  if (!annealTimer) annealTimer = setTimeout(() => { annealTimer = null; refreshAnneal(); }, 700);
}

async function refreshAnneal() {
  if (!S.me) return;
  try {
    S.anneal = await get('/api/v2/anneal');
  } catch {
    return;
  }
  drawAnneal();
  if (!S.anneal.idle) annealSoon();
}

function drawAnneal() {
  const el = document.getElementById('anneal');
  const a = S.anneal;
  if (!el || !a) return;
  const c = a.counts;
  const done = (c.active || 0) + (c.error || 0);
  const left = (c.todo || 0) + (c.transition || 0) + (c.blocked || 0);
  const now = Date.now();
  // Node-roles waiting for a callback (an OS install, say) are work in
  // progress to an operator even though the annealer has nothing to run.
  const busy = !a.idle || a.waiting > 0;
  if (!busy) S.samples = [];
  else {
    S.samples.push([now, done]);
    while (S.samples.length > 2 && now - S.samples[0][0] > 15000) S.samples.shift();
  }
  el.replaceChildren();
  if (!busy) {
    append(el, [h('span', {}, 'Annealer idle'), h('span', { class: 'muted' }, `${c.active || 0} active · ${c.error || 0} error · ${c.proposed || 0} proposed`)]);
    return;
  }
  let eta = '';
  if (S.samples.length > 1) {
    const [t0, d0] = S.samples[0];
    const rate = (done - d0) / ((now - t0) / 1000);
    if (rate > 0) eta = ` · ETA ${Math.ceil(left / rate)} s`;
  }
  append(el, [h('span', {}, 'Annealing'),
    h('progress', { max: done + left || 1, value: done, 'aria-label': 'node-roles done' }),
    h('span', {}, `${done} / ${done + left} done · ${a.in_flight} running · ${a.runnable} queued` +
      (a.waiting ? ` · ${a.waiting} waiting for a callback` : '') + eta)]);
}

// ---------- pages ----------

async function overview() {
  const [a, all, alive, available, errors, rs] = await Promise.all([
    get('/api/v2/anneal'), api('GET', '/api/v2/nodes?limit=0'), api('GET', '/api/v2/nodes?alive=true&limit=0'),
    api('GET', '/api/v2/nodes?available=true&limit=0'), api('GET', '/api/v2/node_roles?state=-1&limit=10'), roles()]);
  S.anneal = a;
  drawAnneal();
  const names = new Map();
  await Promise.all([...new Set(errors.data.map((nr) => nr.node_id))].map(async (id) => {
    names.set(id, (await get('/api/v2/nodes/' + id)).name);
  }));
  S.onEvent = later(() => render(), 1500);
  return [h('h1', {}, 'Overview'),
    h('div', { class: 'cards' },
      h('section', { class: 'card', 'aria-labelledby': 'h-nodes' }, h('h2', { id: 'h-nodes' }, 'Nodes'),
        h('div', { class: 'big' }, all.total),
        h('p', {}, `${alive.total} alive · ${all.total - alive.total} not alive`),
        h('p', {}, `${available.total} available · ${all.total - available.total} not available`),
        link('#/nodes', 'All nodes')),
      h('section', { class: 'card', 'aria-labelledby': 'h-nr' }, h('h2', { id: 'h-nr' }, 'Node-roles by state'),
        table(['State', 'Count'], Object.entries(STATES).map(([n, name]) =>
          h('tr', {}, h('td', {}, badge(n)), h('td', {}, a.counts[name] || 0))), '')),
      h('section', { class: 'card', 'aria-labelledby': 'h-an' }, h('h2', { id: 'h-an' }, 'Annealer'),
        h('p', {}, a.idle ? 'Idle' : 'Working'),
        h('p', {}, `${a.in_flight} running · ${a.runnable} queued · ${a.waiting} waiting for a callback`))),
    h('h2', { id: 'errors' }, `Latest errors (${errors.total})`),
    table(['Node-role', 'Node', 'Role', 'Runs', 'Updated'], errors.data.map((nr) => h('tr', {},
      h('td', {}, link('#/node_roles/' + nr.id, '#' + nr.id)), h('td', {}, link('#/nodes/' + nr.node_id, names.get(nr.node_id))),
      h('td', {}, rs.get(nr.role_id)?.name), h('td', {}, nr.run_count), h('td', {}, when(nr.updated_at)))))];
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// later is debounce for a page: a call still pending when the user has
// moved to another page is dropped.
function later(fn, ms) {
  const where = location.hash;
  return debounce((...args) => { if (location.hash === where && S.me) fn(...args); }, ms);
}

async function deploymentsPage() {
  const list = await get('/api/v2/deployments');
  return [h('h1', {}, 'Deployments'),
    table(['Name', 'State', 'Description'], list.map((d) => h('tr', {},
      h('td', {}, link('#/deployments/' + d.id, d.name)), h('td', {}, d.state_name + (d.system ? ' (system)' : '')),
      h('td', {}, d.description)))),
    canWrite() ? [h('h2', {}, 'New deployment'), form('inline', [
      { name: 'name', label: 'Name', required: true }, { name: 'description', label: 'Description' }],
    'Create', async (v) => {
      const d = (await api('POST', '/api/v2/deployments', v)).data;
      location.hash = '#/deployments/' + d.id;
      return false;
    }, 'new-deployment')] : null];
}

// roleOrder sorts roles so that each comes after what it requires.
function roleOrder(names, byName) {
  const out = [];
  const seen = new Set();
  const visit = (n, depth) => {
    if (seen.has(n) || depth > 50) return;
    seen.add(n);
    for (const r of byName.get(n)?.requires || []) if (names.has(r)) visit(r, depth + 1);
    out.push(n);
  };
  [...names].sort().forEach((n) => visit(n, 0));
  return out;
}

async function deploymentPage(id, q) {
  const [d, graph, enabled, installed, rs] = await Promise.all([
    get('/api/v2/deployments/' + id), get(`/api/v2/deployments/${id}/graph`),
    get(`/api/v2/deployments/${id}/barclamps`), get('/api/v2/barclamps'), roles()]);
  const byName = new Map([...rs.values()].map((r) => [r.name, r]));
  // The graph: roles down, nodes across, a page of nodes at a time.
  const nodeNames = [...new Set(graph.nodes.map((n) => n.node))].sort();
  const first = Math.max(0, Number(q.get('from') || 0));
  const shown = nodeNames.slice(first, first + 40);
  const cells = new Map(graph.nodes.map((n) => [n.role + '\u0000' + n.node, n]));
  const order = roleOrder(new Set(graph.nodes.map((n) => n.role)), byName);
  const parents = new Map();
  const children = new Map();
  for (const e of graph.edges) {
    (parents.get(e.child) || parents.set(e.child, []).get(e.child)).push(e.parent);
    (children.get(e.parent) || children.set(e.parent, []).get(e.parent)).push(e.child);
  }
  const mark = (nrID, on) => {
    for (const p of parents.get(nrID) || []) main.querySelector(`[data-nr="${p}"]`)?.classList.toggle('parent', on);
    for (const c of children.get(nrID) || []) main.querySelector(`[data-nr="${c}"]`)?.classList.toggle('child', on);
  };
  const cell = (n) => {
    const a = h('a', { class: 'cell s-' + n.state_name, href: '#/node_roles/' + n.id, dataset: { nr: n.id },
      title: `${n.role} on ${n.node}: ${n.state_name}; ${(parents.get(n.id) || []).length} required node-roles (outlined when focused)` }, n.state_name);
    for (const [evn, on] of [['mouseenter', true], ['mouseleave', false], ['focus', true], ['blur', false]]) a.addEventListener(evn, () => mark(n.id, on));
    return a;
  };
  const grid = h('table', { class: 'graph', id: 'graph', 'aria-label': 'node-roles: roles by nodes' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Role \\ node'), shown.map((n) => h('th', { scope: 'col' }, n)))),
    h('tbody', {}, order.map((role) => h('tr', {},
      h('th', { scope: 'row', class: 'role' }, role,
        (byName.get(role)?.requires || []).length ? h('span', { class: 'req' }, 'requires ' + byName.get(role).requires.join(', ')) : null),
      shown.map((node) => { const n = cells.get(role + '\u0000' + node); return h('td', {}, n ? cell(n) : ''); })))));
  const enabledNames = new Set(enabled.map((b) => b.name));
  const enabledRoles = [...rs.values()].filter((r) => !r.library && [...installed].some((b) => b.id === r.barclamp_id && enabledNames.has(b.name)));
  const out = [h('h1', {}, 'Deployment ', d.name, ' ', h('span', { class: 'badge', id: 'dstate' }, d.state_name)),
    d.description ? h('p', {}, d.description) : null];
  if (canWrite()) {
    out.push(h('div', { class: 'toolbar', role: 'group', 'aria-label': 'deployment actions' },
      // No redraw after: the event stream changes the cells in place.
      ['propose', 'commit', 'recall'].map((verb) => action(verb[0].toUpperCase() + verb.slice(1),
        async () => { await api('PUT', `/api/v2/deployments/${id}/${verb}`); return false; }))));
  }
  out.push(h('h2', {}, `Node-roles (${graph.nodes.length})`));
  if (nodeNames.length > shown.length) {
    out.push(h('div', { class: 'pager' },
      first > 0 ? link(`#/deployments/${id}?from=${Math.max(0, first - 40)}`, 'Previous nodes') : null,
      h('span', {}, `Nodes ${first + 1}–${first + shown.length} of ${nodeNames.length}`),
      first + 40 < nodeNames.length ? link(`#/deployments/${id}?from=${first + 40}`, 'Next nodes') : null));
  }
  out.push(graph.nodes.length ? grid : h('p', { class: 'muted' }, 'No node-roles yet: bind a role to a node below.'));
  if (canWrite()) {
    const here = (await api('GET', `/api/v2/nodes?deployment=${id}&limit=500`)).data;
    out.push(h('h2', {}, 'Bind a role'),
      enabledRoles.length && here.length ? form('inline', [
        { name: 'role', label: 'Role', options: enabledRoles.sort((a, b) => a.name.localeCompare(b.name)).map((r) => [r.name, r.name]) },
        { name: 'nodes', label: 'Nodes', multiple: true, options: here.map((n) => [n.id, n.name]) }],
      'Bind', async (v) => {
        if (!v.nodes.length) throw new ApiError(422, { message: 'choose at least one node', field: 'nodes' });
        for (const node of v.nodes) await api('POST', '/api/v2/node_roles', { node: Number(node), role: v.role, deployment: Number(id) });
      }, 'bind-role') : h('p', { class: 'muted' }, here.length ? 'Enable a barclamp to bind its roles.' : 'Move nodes into this deployment to bind roles to them.'),
      h('h2', {}, 'Move a node here'),
      form('inline', [{ name: 'node', label: 'Node name', placeholder: 'node.example.com', required: true }], 'Move here',
        async (v) => { await api('PUT', '/api/v2/nodes/' + enc(v.node.trim()), { deployment_id: Number(id) }); }, 'move-node'));
  }
  out.push(h('h2', {}, 'Barclamps'),
    table(['Barclamp', 'Version', ''], enabled.map((b) => h('tr', {}, h('td', {}, b.name), h('td', {}, b.version),
      h('td', {}, canWrite() ? action('Disable', () => api('DELETE', `/api/v2/deployments/${id}/barclamps/${enc(b.name)}`), 'danger') : '')))));
  const others = installed.filter((b) => !enabledNames.has(b.name));
  if (canWrite() && others.length) {
    out.push(form('inline', [{ name: 'barclamp', label: 'Barclamp', options: others.map((b) => [b.name, `${b.name} ${b.version}`]) }],
      'Enable', async (v) => { await api('PUT', `/api/v2/deployments/${id}/barclamps/${enc(v.barclamp)}`); S.roles = null; }, 'enable-barclamp'));
  }
  // New node-roles need a redraw, unless the user is filling in a form.
  const refetch = later(() => { if (!main.querySelector('form:focus-within, form[data-dirty]')) render(); }, 400);
  S.onEvent = (ev) => {
    if (ev.type === 'deployment' && String(ev.id) === String(id)) {
      const el = document.getElementById('dstate');
      if (el) el.textContent = ev.state_name;
      return;
    }
    if (String(ev.deployment_id) !== String(id)) return;
    const el = main.querySelector(`[data-nr="${ev.id}"]`);
    if (!el) { refetch(); return; }
    el.className = el.className.replace(/\bs-\w+/, 's-' + ev.state_name);
    el.textContent = ev.state_name;
    el.title = el.title.replace(/: \w+;/, `: ${ev.state_name};`);
  };
  return out;
}

async function nodesPage(q) {
  const page = Math.max(0, Number(q.get('page') || 0));
  const params = new URLSearchParams({ limit: PAGE, offset: page * PAGE });
  for (const k of ['search', 'deployment', 'alive', 'available']) if (q.get(k)) params.set(k, q.get(k));
  const [res, deps] = await Promise.all([api('GET', '/api/v2/nodes?' + params), get('/api/v2/deployments')]);
  const depName = new Map(deps.map((d) => [d.id, d.name]));
  const go = (p) => { const n = new URLSearchParams(q); n.set('page', p); return '#/nodes?' + n; };
  const filters = h('form', { class: 'inline', role: 'search', id: 'node-filter' },
    h('label', {}, 'Name contains', h('input', { name: 'search', type: 'search', value: q.get('search') || '' })),
    h('label', {}, 'Deployment', h('select', { name: 'deployment' }, h('option', { value: '' }, 'any'),
      deps.map((d) => h('option', { value: d.name, selected: q.get('deployment') === d.name }, d.name)))),
    h('label', {}, 'Alive', h('select', { name: 'alive' }, [['', 'any'], ['true', 'yes'], ['false', 'no']].map(([v, t]) =>
      h('option', { value: v, selected: (q.get('alive') || '') === v }, t)))),
    h('label', {}, 'Available', h('select', { name: 'available' }, [['', 'any'], ['true', 'yes'], ['false', 'no']].map(([v, t]) =>
      h('option', { value: v, selected: (q.get('available') || '') === v }, t)))),
    h('button', { type: 'submit' }, 'Filter'));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const n = new URLSearchParams();
    for (const el of filters.elements) if (el.name && el.value) n.set(el.name, el.value);
    location.hash = '#/nodes?' + n;
  });
  const last = Math.max(0, Math.ceil(res.total / PAGE) - 1);
  return [h('h1', {}, 'Nodes'), filters,
    h('div', { class: 'pager' }, page > 0 ? link(go(page - 1), 'Previous') : null,
      h('span', { id: 'node-count' }, res.total ? `${page * PAGE + 1}–${page * PAGE + res.data.length} of ${res.total}` : 'No nodes match.'),
      page < last ? link(go(page + 1), 'Next') : null),
    table(['Name', 'Deployment', 'Alive', 'Available', 'Boot env'], res.data.map((n) => h('tr', {},
      h('td', {}, link('#/nodes/' + n.id, n.name)), h('td', {}, depName.get(n.deployment_id) || n.deployment_id),
      h('td', {}, n.alive ? 'yes' : 'no'), h('td', {}, n.available ? 'yes' : 'no'), h('td', {}, n.bootenv)))),
    canWrite() ? [h('h2', {}, 'New node'), form('inline', [{ name: 'name', label: 'Name (FQDN)', placeholder: 'node1.example.com', required: true },
      { name: 'deployment', label: 'Deployment', options: deps.map((d) => [d.name, d.name]) }],
    'Create', async (v) => {
      const n = (await api('POST', '/api/v2/nodes', { name: v.name, deployment: v.deployment })).data;
      location.hash = '#/nodes/' + n.id;
      return false;
    }, 'new-node')] : null];
}

async function nodePage(id) {
  const [n, nrs, attribs, deps, rs, bcs] = await Promise.all([get('/api/v2/nodes/' + id), get(`/api/v2/nodes/${id}/node_roles`),
    get(`/api/v2/nodes/${id}/attribs`), get('/api/v2/deployments'), roles(), get('/api/v2/barclamps')]);
  const depName = new Map(deps.map((d) => [d.id, d.name]));
  const out = [h('h1', {}, 'Node ', n.name),
    h('dl', { class: 'kv' },
      [['Deployment', link('#/deployments/' + n.deployment_id, depName.get(n.deployment_id) || n.deployment_id)],
      ['Alive', n.alive ? 'yes' : 'no'], ['Available', n.available ? 'yes' : 'no'], ['Allocated', n.allocated ? 'yes' : 'no'],
      ['Boot env', n.bootenv], ['Description', n.description], ['Updated', when(n.updated_at)]].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))];
  if (canWrite()) {
    out.push(h('div', { class: 'toolbar' },
      form('inline', [{ name: 'deployment_id', label: 'Deployment', value: n.deployment_id, options: deps.map((d) => [d.id, d.name]) }],
        'Move', async (v) => { await api('PUT', '/api/v2/nodes/' + id, { deployment_id: Number(v.deployment_id) }); }),
      action(n.alive ? 'Mark not alive' : 'Mark alive', () => api('PUT', '/api/v2/nodes/' + id, { alive: !n.alive })),
      action(n.available ? 'Mark not available' : 'Mark available', () => api('PUT', '/api/v2/nodes/' + id, { available: !n.available })),
      action('Commit its node-roles', () => api('PUT', `/api/v2/nodes/${id}/commit`))));
  }
  out.push(h('h2', {}, 'Roles'),
    table(['Role', 'Deployment', 'State', 'Runs'], nrs.map((nr) => h('tr', {},
      h('td', {}, rs.get(nr.role_id)?.name || nr.role_id), h('td', {}, depName.get(nr.deployment_id) || nr.deployment_id),
      h('td', {}, h('a', { href: '#/node_roles/' + nr.id, class: 'cell s-' + nr.state_name, dataset: { nr: nr.id } }, nr.state_name)),
      h('td', {}, nr.run_count)))),
    h('h2', {}, 'Attribs'),
    table(['Attrib', 'Value', 'Description'], attribs.map((a) => h('tr', {}, h('td', {}, a.name),
      h('td', {}, h('code', {}, JSON.stringify(a.value))), h('td', {}, a.description)))),
    h('h2', {}, 'Hint'), json(n.hint), h('h2', {}, 'Discovery data'), json(n.discovery));
  const zid = n.discovery && n.discovery.zero_os && n.discovery.zero_os.id;
  if (zid && bcs.some((b) => b.name === 'zero-os')) out.push(await zeroOS(zid));
  S.onEvent = (ev) => {
    if (String(ev.node_id) !== String(id)) return;
    const el = main.querySelector(`[data-nr="${ev.id}"]`);
    if (!el) return render();
    el.className = 'cell s-' + ev.state_name;
    el.textContent = ev.state_name;
  };
  return out;
}

// zeroOS is a node's Zero-OS side (the zero-os barclamp's routes): its
// containers, jobs and processes, each fetched on its own so one failing
// (an agent down: 502) leaves the others.
async function zeroOS(zid) {
  const part = async (title, path, head, row) => {
    try {
      const list = await get(`/zero-os/v2/nodes/${enc(zid)}/${path}`);
      return [h('h3', {}, title), table(head, (list || []).map(row))];
    } catch (err) {
      return [h('h3', {}, title), h('p', { class: 'error', role: 'alert' }, `${err.status}: ${err.message}`)];
    }
  };
  const started = (t) => (t ? new Date(t > 1e12 ? t : t * 1000).toLocaleString() : '');
  const parts = await Promise.all([
    part('Containers', 'containers', ['Name', 'Status', 'Hostname', 'Root'], (c) => h('tr', {},
      h('td', {}, c.name || c.id), h('td', {}, c.status), h('td', {}, c.hostname), h('td', {}, h('code', {}, c.flist)))),
    part('Jobs', 'jobs', ['Id', 'Started'], (j) => h('tr', {}, h('td', {}, h('code', {}, j.id)), h('td', {}, started(j.startTime)))),
    part('Processes', 'processes', ['PID', 'Command', 'RSS'], (p) => h('tr', {}, h('td', {}, p.pid), h('td', {}, h('code', {}, p.cmdline)),
      h('td', {}, p.rss))),
  ]);
  return h('section', { 'aria-labelledby': 'h-zos' }, h('h2', { id: 'h-zos' }, 'Zero-OS'), parts);
}

async function nodeRolePage(id) {
  const nr = await get('/api/v2/node_roles/' + id);
  const [n, d, rs] = await Promise.all([get('/api/v2/nodes/' + nr.node_id), get('/api/v2/deployments/' + nr.deployment_id), roles()]);
  const role = rs.get(nr.role_id);
  const redraw = later(() => render(), 200);
  S.onEvent = (ev) => { if (String(ev.id) === String(id)) redraw(); };
  return [h('h1', {}, 'Node-role ', role?.name || nr.role_id, ' on ', n.name, ' ', h('span', { class: 'badge s-' + nr.state_name, id: 'nr-state' }, nr.state_name)),
    h('dl', { class: 'kv' }, [['Node', link('#/nodes/' + n.id, n.name)], ['Deployment', link('#/deployments/' + d.id, d.name)],
      ['Role', (role?.name || '') + (role?.requires?.length ? ' (requires ' + role.requires.join(', ') + ')' : '')],
      ['Runs', nr.run_count], ['Status', nr.status || ''], ['Updated', when(nr.updated_at)]].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    canWrite() ? h('div', { class: 'toolbar' },
      action('Retry', () => api('PUT', `/api/v2/node_roles/${id}/retry`), nr.state === -1 ? 'primary' : 'secondary'),
      action('Unbind', async () => { await api('DELETE', '/api/v2/node_roles/' + id); location.hash = '#/deployments/' + d.id; return false; }, 'danger')) : null,
    h('h2', {}, 'Run log'), h('pre', { id: 'runlog', tabindex: '0' }, nr.runlog || '(empty)'),
    h('h2', {}, 'Wall data'), json(nr.wall), h('h2', {}, 'System data'), json(nr.sysdata),
    h('h2', {}, 'User data (proposed)'), json(nr.proposed_data), h('h2', {}, 'User data (committed)'), json(nr.committed_data)];
}

async function barclampsPage() {
  const list = await get('/api/v2/barclamps');
  const out = [h('h1', {}, 'Barclamps'),
    table(['Name', 'Version', 'Source', 'Status', 'Roles', 'Routes', ''], list.map((b) => {
      const m = b.manifest || {};
      return h('tr', {}, h('td', {}, h('strong', {}, b.name), h('br', {}), h('span', { class: 'muted' }, b.description)),
        h('td', {}, b.version), h('td', {}, b.source), h('td', {}, b.status),
        h('td', {}, (m.roles || []).map((r) => r.name).join(', ')),
        h('td', {}, (m.routes || []).map((r) => h('div', {}, h('code', {}, `${r.method} /${b.name}/v2${r.path}`)))),
        h('td', {}, canWrite() && b.source === 'installed' ? action('Remove', () => api('DELETE', '/api/v2/barclamps/' + b.id), 'danger') : ''));
    }))];
  if (canWrite()) {
    out.push(h('h2', {}, 'Install a barclamp'), h('p', { class: 'muted' }, 'A .wasm module built with crowbar barclamp build.'),
      form('inline', [{ name: 'module', label: 'Module (.wasm)', type: 'file', accept: '.wasm,application/wasm' }], 'Install', async (v) => {
        if (!v.module) throw new ApiError(422, { message: 'choose a .wasm file', field: 'module' });
        await api('POST', '/api/v2/barclamps', undefined, { body: await v.module.arrayBuffer(), type: 'application/wasm' });
        S.roles = null;
      }));
  }
  return out;
}

async function usersPage() {
  const [users, tokens] = await Promise.all([get('/api/v2/users'), get('/api/v2/join_tokens')]);
  // A secret the server shows once survives the redraw that lists it.
  const shown = h('div', { id: 'secret', 'aria-live': 'polite' }, S.flash);
  S.flash = null;
  return [h('h1', {}, 'Users and tokens'),
    table(['User', 'Role', 'API access', 'Email', ''], users.map((u) => h('tr', {}, h('td', {}, u.username), h('td', {}, u.role),
      h('td', {}, u.api_access ? 'yes' : 'no'), h('td', {}, u.email),
      h('td', {}, u.username === S.me.username ? '' : action('Delete', () => api('DELETE', '/api/v2/users/' + enc(u.username)), 'danger'))))),
    h('h2', {}, 'New user'),
    form('inline', [{ name: 'username', label: 'User name', required: true }, { name: 'password', label: 'Password', type: 'password', autocomplete: 'new-password' },
      { name: 'role', label: 'Role', options: [['reader', 'reader'], ['operator', 'operator'], ['admin', 'admin']] }, { name: 'email', label: 'Email' }],
    'Create', async (v) => { await api('POST', '/api/v2/users', { ...v, api_access: true }); }, 'new-user'),
    h('h2', {}, 'Join tokens (agents joining)'),
    table(['Id', 'Description', 'Created by', 'Expires', 'Uses', ''], tokens.map((t) => h('tr', {}, h('td', {}, t.id), h('td', {}, t.description),
      h('td', {}, t.created_by), h('td', {}, when(t.expires_at)), h('td', {}, t.uses),
      h('td', {}, t.revoked_at ? 'revoked ' + when(t.revoked_at) : action('Revoke', () => api('DELETE', '/api/v2/join_tokens/' + t.id), 'danger'))))),
    form('inline', [{ name: 'description', label: 'Description' }, { name: 'ttl', label: 'Valid for', value: '1h' }], 'Create join token', async (v) => {
      const t = (await api('POST', '/api/v2/join_tokens', v)).data;
      S.flash = h('p', { class: 'ok' }, 'Join token (shown once): ', h('span', { class: 'secret' }, t.token));
    }, 'new-join-token'),
    h('h2', {}, 'API token for you'),
    form('inline', [{ name: 'validity', label: 'Valid for (seconds, at most 3600)', type: 'number', value: 3600 }], 'Mint token', async (v) => {
      const t = (await api('POST', '/api/v2/tokens', { validity: Number(v.validity) })).data;
      S.flash = h('p', { class: 'ok' }, 'Bearer token until ', when(t.expires_at), ': ', h('span', { class: 'secret' }, t.token));
    }, 'new-api-token'),
    shown];
}

// ---------- routing ----------

const routes = [
  [/^\/?$/, () => overview(), 'overview'],
  [/^\/deployments$/, () => deploymentsPage(), 'deployments'],
  [/^\/deployments\/(\d+)$/, (m, q) => deploymentPage(m[1], q), 'deployments'],
  [/^\/nodes$/, (m, q) => nodesPage(q), 'nodes'],
  [/^\/nodes\/(\d+)$/, (m) => nodePage(m[1]), 'nodes'],
  [/^\/node_roles\/(\d+)$/, (m) => nodeRolePage(m[1]), 'deployments'],
  [/^\/barclamps$/, () => barclampsPage(), 'barclamps'],
  [/^\/users$/, () => usersPage(), 'users'],
];

function nav(section) {
  const items = [['#/', 'Overview', 'overview'], ['#/deployments', 'Deployments', 'deployments'], ['#/nodes', 'Nodes', 'nodes'],
    ['#/barclamps', 'Barclamps', 'barclamps']];
  if (isAdmin()) items.push(['#/users', 'Users', 'users']);
  top.replaceChildren(h('span', { class: 'brand' }, 'crowbar'),
    h('nav', { 'aria-label': 'main' }, items.map(([href, text, s]) => [h('a', { href, 'aria-current': s === section ? 'page' : null }, text), ' '])),
    h('span', { class: 'who' }, h('span', { id: 'me' }, `${S.me.username} (${S.me.role})`),
      h('button', { type: 'button', id: 'signout', onclick: signOut }, 'Sign out')),
    h('div', { id: 'anneal', role: 'status', 'aria-live': 'off' }));
  drawAnneal();
}

async function signOut() {
  try { await api('DELETE', '/api/v2/session'); } catch { /* signed out either way */ }
  signedOut('Signed out.');
}

async function render() {
  const gen = ++S.gen;
  S.onEvent = null;
  S.rendering = true;
  S.held = [];
  if (!S.me) {
    S.rendering = false;
    top.replaceChildren(h('span', { class: 'brand' }, 'crowbar'));
    main.replaceChildren(loginPage());
    return;
  }
  const [path, qs] = (location.hash.replace(/^#/, '') || '/').split('?');
  const q = new URLSearchParams(qs || '');
  const route = routes.find(([re]) => re.test(path));
  nav(route ? route[2] : '');
  let content;
  try {
    content = route ? await route[1](path.match(route[0]), q) : [h('h1', {}, 'Not found'), h('p', {}, 'No page at ', path, '. '), link('#/', 'Overview')];
  } catch (err) {
    if (err.status === 401) { S.rendering = false; return; }
    content = [h('h1', {}, 'Could not load this page'), h('p', { class: 'error', role: 'alert' }, (err.status ? err.status + ': ' : '') + err.message)];
  }
  if (gen !== S.gen) return; // a newer navigation won
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('main') ? null : 'main';
  main.replaceChildren(...[content].flat(Infinity).filter((x) => x != null && x !== false));
  main.dataset.page = route ? route[2] : 'none';
  main.dataset.ready = String(gen);
  if (!window.__painted) window.__painted = performance.now(); // first paint with data, for benchmarks
  if (focused && S.navigated) main.focus({ preventScroll: true });
  S.rendering = false;
  const held = S.held;
  S.held = [];
  for (const ev of held) if (S.onEvent) S.onEvent(ev);
}

window.addEventListener('hashchange', () => { S.navigated = true; render(); });

(async function boot() {
  try {
    const me = (await api('GET', '/api/v2/session')).data;
    if (me.scheme === 'session') {
      S.me = me;
      startEvents();
    }
  } catch { /* not signed in */ }
  render();
})();
