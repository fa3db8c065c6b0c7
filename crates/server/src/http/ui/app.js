// The live page: everything it shows arrives on /ui/events (server-sent
// events); the only timer counts leases down between two events.
"use strict";

const locks = new Map(); // name -> {el, view, at (ms, this page's clock)}
// As many names as the node sends: the most recently changed.
const MAX_NAMES = 200;
const $ = (id) => document.getElementById(id);

function text(el, value) {
  el.textContent = value === undefined || value === null ? "–" : String(value);
}

function ms(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 120000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.round(n / 60000)} min`;
}

function ago(n) {
  return n < 1000 ? "just now" : `${ms(n)} ago`;
}

function showCluster(c) {
  text($("node"), `node ${c.node} (incarnation ${c.incarnation})`);
  const members = $("members");
  members.replaceChildren();
  for (const m of c.members) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "member";
    const cells = [
      m.self ? `${m.id} (this node)` : String(m.id),
      m.connected ? "up" : "down",
      m.last_heard_ms === null ? "never" : ago(m.last_heard_ms),
      m.round_trip_ms === null ? "–" : `${m.round_trip_ms} ms`,
      m.clock_rate_ppm === null ? "–" : `${m.clock_rate_ppm} ppm`,
    ];
    for (const [i, value] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = value;
      if (i === 1) td.className = m.connected ? "up" : "down";
      tr.append(td);
    }
    members.append(tr);
  }
  const enough = c.reachable >= c.quorum;
  const q = $("quorum");
  q.textContent = `${c.reachable} of ${c.members.length} nodes reachable (quorum ${c.quorum})` +
    (c.clock && c.clock.refusing ? " · this node's clock disagrees with its peers: it refuses requests" : "");
  q.className = enough && !(c.clock && c.clock.refusing) ? "up" : "down";
  const f = c.fsync || {};
  text($("fsync"), f.commits
    ? `fsync: median ≤ ${f.p50_ms_at_most} ms, 99th percentile ≤ ${f.p99_ms_at_most} ms over ${f.commits} commits`
    : "fsync: no commit yet");
}

function lockElement(name) {
  const known = locks.get(name);
  if (known) return known.el;
  const el = $("lock-template").content.firstElementChild.cloneNode(true);
  el.dataset.name = name;
  el.querySelector("[data-testid=name]").textContent = name;
  $("locks").prepend(el);
  $("empty").hidden = true;
  return el;
}

function showLock(data) {
  const el = lockElement(data.name);
  const v = data.view;
  const field = (id) => el.querySelector(`[data-testid=${id}]`);
  const state = field("state");
  state.textContent = v.state.replace("_", "-");
  state.className = `state badge state-${v.state}`;
  text(field("holder"), v.holder);
  text(field("token"), v.token);
  text(field("waiters"), v.waiters);
  const changes = field("changes");
  changes.replaceChildren();
  for (const c of data.changes) {
    const li = document.createElement("li");
    li.dataset.testid = "change";
    li.textContent = `${ago(c.ago_ms)}: ${c.change} token ${c.token} of ${c.holder}` +
      ` (ttl ${ms(c.ttl_ms)}), by node ${c.proposer} in ${c.took_ms} ms`;
    changes.append(li);
  }
  // Newest change first in the list; the oldest beyond the bound go.
  const list = $("locks");
  if (el !== list.firstElementChild) list.prepend(el);
  locks.set(data.name, { el, view: v, at: performance.now() });
  while (list.children.length > MAX_NAMES) {
    const oldest = list.lastElementChild;
    locks.delete(oldest.dataset.name);
    oldest.remove();
  }
  countDown();
}

function countDown() {
  const now = performance.now();
  for (const { el, view, at } of locks.values()) {
    const left = el.querySelector("[data-testid=remaining]");
    if (view.remaining_ms === undefined) {
      text(left, undefined);
    } else {
      text(left, ms(Math.max(0, view.remaining_ms - (now - at))));
    }
  }
}

const handlers = {
  cluster: (data) => showCluster(JSON.parse(data)),
  lock: (data) => showLock(JSON.parse(data)),
};

function setLive(text, up) {
  const live = $("live");
  live.textContent = text;
  live.className = up ? "badge up" : "badge down";
}

// A node started with --tokens wants one: the page takes it from its
// address (/ui#token=...), which the browser never sends to a server.
function token() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function connect() {
  if (token()) return connectWithToken(token());
  const events = new EventSource("/ui/events");
  events.addEventListener("open", () => setLive("live", true));
  events.addEventListener("error", () => {
    // EventSource reconnects by itself after a dropped stream, but not
    // after a refusal (a bound on streams, or a token wanted).
    setLive("reconnecting…", false);
    if (events.readyState === EventSource.CLOSED) {
      fetch("/ui/events").then((r) => {
        if (r.status === 401) setLive("this node wants a token: open /ui#token=TOKEN", false);
        r.body && r.body.cancel();
      }).catch(() => {});
      setTimeout(connect, 5000);
    }
  });
  for (const [kind, show] of Object.entries(handlers)) {
    events.addEventListener(kind, (e) => show(e.data));
  }
}

// The same stream read with fetch, which can send the token.
async function connectWithToken(secret) {
  try {
    const r = await fetch("/ui/events", { headers: { Authorization: `Bearer ${secret}` } });
    if (!r.ok) {
      setLive(r.status === 401 || r.status === 403 ? `token refused (${r.status})` : `refused (${r.status})`, false);
      setTimeout(connect, 5000);
      return;
    }
    setLive("live", true);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = /^event: (.*)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        const show = kind && data && handlers[kind[1]];
        if (show) show(data[1]);
      }
    }
  } catch (e) {
    // The node went away: try again, as EventSource would.
  }
  setLive("reconnecting…", false);
  setTimeout(connect, 2000);
}

connect();
setInterval(countDown, 250);
