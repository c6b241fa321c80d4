/**
 * The admin page: plain HTML, CSS and JS, no framework and no build step. It reads
 * `/admin/events` (server-sent events: `summary` every few seconds, `change` per status change),
 * `/admin/api/user?email=` for the search box, `/admin/api/providers?address=` for the list of
 * connected providers and `/admin/api/history` for the last hour's chart (inline SVG, drawn
 * here: no chart library). Data is only ever inserted as text. It must fit a 360 px wide phone
 * without sideways scrolling (the browser test checks).
 */

export const ADMIN_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outlook presence gateway</title>
<link rel="stylesheet" href="/admin/admin.css">
<script src="/admin/admin.js" defer></script>
</head>
<body>
<header>
  <h1>Outlook presence gateway</h1>
  <span id="ready" class="badge">connecting…</span>
  <span id="version" class="muted"></span>
</header>
<main>
  <section class="cards">
    <div class="card"><h2>Upstream</h2><p id="upstream">–</p><p id="upstream-detail" class="muted"></p></div>
    <div class="card"><h2>Last poll</h2><p id="last-poll">–</p><p id="poll-detail" class="muted"></p></div>
    <div class="card"><h2>Connected providers</h2><p id="sockets" class="big">–</p><p id="sockets-detail" class="muted"></p></div>
    <div class="card"><h2>Users</h2><p id="users" class="big">–</p><p id="users-detail" class="muted"></p></div>
  </section>
  <section class="counts" aria-label="users by status">
    <div class="count online"><span class="dot"></span>online <b id="count-online">–</b></div>
    <div class="count away"><span class="dot"></span>away <b id="count-away">–</b></div>
    <div class="count dnd"><span class="dot"></span>do not disturb <b id="count-dnd">–</b></div>
    <div class="count offline"><span class="dot"></span>offline <b id="count-offline">–</b></div>
  </section>
  <section class="panel" aria-labelledby="history-title">
    <h2 id="history-title">Last hour</h2>
    <div class="charts">
      <figure>
        <figcaption>Status changes per minute <span id="changes-peak" class="muted"></span></figcaption>
        <svg id="chart-changes" class="chart" viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label="status changes per minute, last hour"></svg>
        <div class="axis"><span class="from"></span><span>now</span></div>
      </figure>
      <figure>
        <figcaption>Connected providers <span id="providers-peak" class="muted"></span></figcaption>
        <svg id="chart-providers" class="chart" viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label="connected providers, last hour"></svg>
        <div class="axis"><span class="from"></span><span>now</span></div>
      </figure>
    </div>
  </section>
  <section class="lower">
    <div class="panel">
      <h2>Look someone up</h2>
      <form id="search">
        <input id="search-email" type="search" placeholder="email@example.com" autocomplete="off" required>
        <button type="submit">Find</button>
      </form>
      <div id="result" class="muted">Type an email address as Outlook knows it.</div>
    </div>
    <div class="panel">
      <h2>Status changes <span id="feed-state" class="state">connecting…</span></h2>
      <ol id="feed"></ol>
    </div>
  </section>
  <section class="panel" aria-labelledby="providers-title">
    <h2 id="providers-title">Connected providers</h2>
    <form id="providers-filter" role="search">
      <input id="providers-address" type="search" placeholder="address, e.g. 10.1.2.3" autocomplete="off" aria-label="filter by address">
      <button type="submit">Filter</button>
    </form>
    <p id="providers-count" class="muted">…</p>
    <div class="table-wrap">
      <table id="providers">
        <thead><tr><th>Address</th><th>Protocol</th><th>Connected since</th><th class="num">Messages sent</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
</main>
</body>
</html>
`;

/**
 * What `/admin` answers (403) without a valid session: a sign-in form. It sends the token as
 * `?token=` (the same door scripts and bookmarks use), which the gateway trades for a cookie
 * and a redirect that takes the token out of the address bar.
 */
export const SIGNIN_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Outlook presence gateway</title>
<link rel="stylesheet" href="/admin/admin.css">
<script src="/admin/signin.js" defer></script>
</head>
<body class="signin-page">
<header>
  <h1>Outlook presence gateway</h1>
</header>
<main>
  <form id="signin" class="panel signin" method="get" action="/admin">
    <h2>Sign in</h2>
    <label for="signin-token">Admin token</label>
    <input id="signin-token" name="token" type="password" autocomplete="current-password" required autofocus>
    <p id="signin-error" class="error" role="alert" hidden>That token was not accepted.</p>
    <button type="submit">Sign in</button>
    <p class="muted">The value of <code>PRESENCE_ADMIN_TOKEN</code>, or the presence secret when no
    admin token is set. You stay signed in for 12 hours, until the gateway restarts or the token
    changes.</p>
  </form>
</main>
</body>
</html>
`;

/** Says so when a token was refused, and takes it out of the address bar. */
export const SIGNIN_JS = `"use strict";
if (new URLSearchParams(location.search).has("token")) {
  document.getElementById("signin-error").hidden = false;
  history.replaceState(null, "", location.pathname);
}
`;

export const ADMIN_CSS = `:root { font-family: system-ui, sans-serif; color: #1f2328; background: #f6f8fa; }
body { margin: 0; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 0.4rem 1rem; padding: 0.8rem 1.5rem; background: #1e325c; color: #fff; }
header h1 { font-size: 1.2rem; margin: 0; }
header .muted { color: #c9d1d9; }
main { padding: 1rem 1.5rem; max-width: 1100px; }
h2 { font-size: 0.85rem; text-transform: uppercase; letter-spacing: 0.04em; color: #57606a; margin: 0 0 0.4rem; }
.muted { color: #57606a; font-size: 0.85rem; }
.badge { padding: 0.15rem 0.6rem; border-radius: 1rem; background: #6e7781; font-size: 0.85rem; }
.badge.ok { background: #1a7f37; }
.badge.bad { background: #cf222e; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 0.8rem; }
.card, .panel { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 0.8rem 1rem; min-width: 0; }
main > .panel { margin-bottom: 1rem; }
.card p { margin: 0.2rem 0; }
.big { font-size: 1.6rem; font-weight: 600; }
.counts { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.count { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 0.6rem 1rem; display: flex; align-items: center; gap: 0.5rem; }
.count b { font-size: 1.3rem; }
.dot { width: 0.75rem; height: 0.75rem; border-radius: 50%; display: inline-block; background: #8c959f; }
.online .dot, .dot.online { background: #2da44e; }
.away .dot, .dot.away { background: #d4a72c; }
.dnd .dot, .dot.dnd { background: #cf222e; }
.lower { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 0.8rem; margin-bottom: 1rem; }
@media (max-width: 800px) { .lower { grid-template-columns: minmax(0, 1fr); } }
form { display: flex; gap: 0.5rem; margin-bottom: 0.6rem; }
input { flex: 1; min-width: 0; padding: 0.4rem; border: 1px solid #d0d7de; border-radius: 6px; font: inherit; }
button { padding: 0.4rem 0.9rem; border: 0; border-radius: 6px; background: #1e325c; color: #fff; cursor: pointer; font: inherit; }
button:hover { background: #2b4580; }
input:focus-visible, button:focus-visible { outline: 2px solid #0969da; outline-offset: 1px; }
h2 .state { text-transform: none; letter-spacing: 0; font-weight: normal; margin-left: 0.4rem; padding: 0 0.5rem; border-radius: 1rem; background: #eaeef2; }
h2 .state.ok { background: #dafbe1; color: #1a7f37; }
h2 .state.bad { background: #ffebe9; color: #cf222e; }
.signin-page main { max-width: none; }
.signin { flex-direction: column; align-items: stretch; gap: 0.6rem; max-width: 22rem; margin: 3rem auto; padding: 1.4rem 1.5rem; }
.signin h2 { font-size: 1.1rem; text-transform: none; letter-spacing: 0; color: #1f2328; }
.signin label { font-weight: 600; font-size: 0.9rem; }
.signin input { flex: none; padding: 0.55rem; }
.signin button { padding: 0.55rem; }
.signin .muted { margin: 0.4rem 0 0; }
.error { margin: 0; color: #cf222e; font-size: 0.9rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 0.8rem 1.5rem; }
figure { margin: 0; min-width: 0; }
figcaption { font-size: 0.9rem; margin-bottom: 0.3rem; }
.chart { display: block; width: 100%; height: 80px; background: #f6f8fa; border-radius: 4px; }
.chart rect { fill: #1e325c; }
.chart polyline { fill: none; stroke: #2da44e; stroke-width: 2; vector-effect: non-scaling-stroke; }
.axis { display: flex; justify-content: space-between; color: #57606a; font-size: 0.75rem; }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-size: 0.9rem; }
th { text-align: left; font-weight: 600; color: #57606a; border-bottom: 1px solid #d0d7de; padding: 0.3rem 0.6rem 0.3rem 0; }
td { padding: 0.3rem 0.6rem 0.3rem 0; border-bottom: 1px solid #eaeef2; overflow-wrap: anywhere; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td .port { color: #57606a; }
#feed { list-style: none; margin: 0; padding: 0; max-height: 420px; overflow-y: auto; font-size: 0.9rem; }
#feed li { display: flex; gap: 0.6rem; align-items: center; padding: 0.2rem 0; border-bottom: 1px solid #eaeef2; }
#feed time { color: #57606a; font-variant-numeric: tabular-nums; }
#feed .email { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
dl { display: grid; grid-template-columns: auto minmax(0, 1fr); gap: 0.2rem 0.8rem; margin: 0; }
dt { color: #57606a; }
dd { margin: 0; overflow-wrap: anywhere; }
/* Phones: last, so it overrides the rules above. */
@media (max-width: 560px) {
  header, main { padding-left: 0.8rem; padding-right: 0.8rem; }
  thead { display: none; }
  #providers tr { display: grid; grid-template-columns: 1fr auto; padding: 0.35rem 0; border-bottom: 1px solid #eaeef2; }
  #providers td { border: 0; padding: 0; }
  #providers td.when { grid-column: 1; color: #57606a; font-size: 0.85rem; }
  #providers td.num { grid-column: 2; grid-row: 2; }
  #providers td.num::after { content: " sent"; color: #57606a; }
  /* The feed's email gets the row's width: the time goes under it. */
  #feed li { display: grid; grid-template-columns: auto minmax(0, 1fr) auto; column-gap: 0.5rem; }
  #feed .dot { grid-column: 1; grid-row: 1; }
  #feed .email { grid-column: 2; grid-row: 1; }
  #feed .status { grid-column: 3; grid-row: 1; font-size: 0.85rem; }
  #feed time { grid-column: 2; grid-row: 2; font-size: 0.75rem; }
}
`;

export const ADMIN_JS = `"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const FEED_MAX = 200;
  const STATUS_LABEL = { online: "online", away: "away", dnd: "do not disturb", offline: "offline" };

  function ago(ms) {
    if (ms === null || ms === undefined) return "never";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function text(id, value) {
    $(id).textContent = value;
  }

  function renderSummary(s) {
    const ready = $("ready");
    ready.textContent = s.ready ? "ready" : "not ready: " + (s.notReadyReason || "");
    ready.className = "badge " + (s.ready ? "ok" : "bad");
    text("version", "v" + s.version + (s.leader ? "" : " · follower: serves the leader's snapshot"));
    const u = s.upstream;
    if (u.tokenRejected) text("upstream", "token rejected (401)");
    else if (u.consecutiveFailures > 0) text("upstream", "failing (" + u.consecutiveFailures + " in a row)");
    else text("upstream", "OK");
    text("upstream-detail", u.lastError ? u.lastError : u.url);
    text("last-poll", u.lastPollAt ? ago(s.now - u.lastPollAt) : "never");
    text(
      "poll-detail",
      (u.lastPollMs !== null ? Math.round(u.lastPollMs) + " ms, " : "") +
        u.statusRequestsLastCycle + " status request" + (u.statusRequestsLastCycle === 1 ? "" : "s") + " every " + s.pollIntervalMs + " ms",
    );
    text("sockets", String(s.providers));
    const v2 = s.providers - s.sockets;
    text("sockets-detail", v2 > 0 ? s.sockets + " on /ws, " + v2 + " on the API v2 stream" : "");
    text("users", String(s.users.visible));
    text(
      "users-detail",
      s.users.directory + " active in Mattermost" +
        (s.users.withoutEmail ? ", " + s.users.withoutEmail + " without a visible email" : ""),
    );
    for (const k of ["online", "away", "dnd", "offline"]) text("count-" + k, String(s.users.byStatus[k]));
  }

  function addChange(c) {
    const li = document.createElement("li");
    li.dataset.email = c.email;
    li.dataset.status = c.status;
    const time = document.createElement("time");
    time.textContent = new Date(c.at).toLocaleTimeString();
    const dot = document.createElement("span");
    dot.className = "dot " + c.status;
    const email = document.createElement("span");
    email.className = "email";
    email.textContent = c.email;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = STATUS_LABEL[c.status] || c.status;
    li.append(time, dot, email, status);
    const feed = $("feed");
    feed.prepend(li);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  }

  function feedState(value, kind) {
    const el = $("feed-state");
    el.textContent = value;
    el.className = "state " + kind;
  }

  const SVG = "http://www.w3.org/2000/svg";
  const W = 300;
  const H = 80;

  function svgEl(name, attrs, title) {
    const el = document.createElementNS(SVG, name);
    for (const k in attrs) el.setAttribute(k, String(attrs[k]));
    if (title) {
      const t = document.createElementNS(SVG, "title");
      t.textContent = title;
      el.append(t);
    }
    return el;
  }

  const hhmm = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  /** Bars for changes, a line (broken where unknown) for providers; each on its own scale. */
  function drawHistory(h) {
    const n = h.changes.length;
    const step = W / n;
    const changesMax = Math.max(1, ...h.changes);
    const bars = h.changes.map((v, i) => {
      const y = H - (v / changesMax) * (H - 4);
      return svgEl(
        "rect",
        { x: i * step + 0.5, y: y, width: Math.max(1, step - 1), height: H - y },
        hhmm(h.start + i * h.bucketMs) + ": " + v + " change" + (v === 1 ? "" : "s"),
      );
    });
    $("chart-changes").replaceChildren(...bars);
    text("changes-peak", "peak " + Math.max(0, ...h.changes) + ", total " + h.changes.reduce((a, b) => a + b, 0));

    const known = h.providers.filter((v) => v !== null);
    const providersMax = Math.max(1, ...known);
    const lines = [];
    let points = [];
    const flush = () => {
      // A lone minute (the first after a start) is drawn as a short flat segment, so it shows.
      if (points.length === 1) points.push([points[0][0] + step / 2, points[0][1]]);
      if (points.length) lines.push(svgEl("polyline", { points: points.map((p) => p.join(",")).join(" ") }));
      points = [];
    };
    h.providers.forEach((v, i) => {
      if (v === null) return flush();
      // Headroom above the peak, so a steady count is not drawn along the top edge.
      points.push([i * step + step / 4, H - 2 - (v / providersMax) * (H * 0.75)]);
    });
    flush();
    $("chart-providers").replaceChildren(...lines);
    text("providers-peak", known.length ? "peak " + Math.max(...known) + ", now " + known[known.length - 1] : "");
    for (const el of document.querySelectorAll(".axis .from")) el.textContent = hhmm(h.start);
  }

  async function loadHistory() {
    const res = await fetch("/admin/api/history", { credentials: "same-origin" });
    if (res.ok) drawHistory(await res.json());
  }

  function since(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    const d = s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : s < 86400 ? Math.floor(s / 3600) + " h" : Math.floor(s / 86400) + " d";
    return new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) + " (" + d + ")";
  }

  function providerRow(p, now) {
    const tr = document.createElement("tr");
    tr.dataset.address = p.address;
    tr.dataset.protocol = p.protocol;
    const td = (cls, value) => {
      const el = document.createElement("td");
      if (cls) el.className = cls;
      if (value !== undefined) el.textContent = value;
      tr.append(el);
      return el;
    };
    const addr = td("addr");
    const port = document.createElement("span");
    port.className = "port";
    port.textContent = p.remote.slice(p.address.length);
    addr.append(p.address, port);
    td("proto", p.protocol);
    td("when", since(p.connected_at, now));
    td("num", p.messages_sent.toLocaleString());
    return tr;
  }

  let providersSeq = 0;
  async function loadProviders() {
    const seq = ++providersSeq;
    const q = $("providers-address").value.trim();
    const res = await fetch("/admin/api/providers?address=" + encodeURIComponent(q), { credentials: "same-origin" });
    if (seq !== providersSeq || !res.ok) return; // a newer request is on its way
    const body = await res.json();
    const now = Date.now();
    $("providers").tBodies[0].replaceChildren(...body.providers.map((p) => providerRow(p, now)));
    let msg = body.total + " connected";
    if (q) msg += ", " + body.matched + " matching " + JSON.stringify(q);
    if (body.matched > body.providers.length) msg += "; the first " + body.providers.length + " by address are shown, filter to narrow";
    text("providers-count", msg);
  }

  let typing;
  $("providers-address").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(loadProviders, 300);
  });
  $("providers-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    void loadProviders();
  });

  function connect() {
    const es = new EventSource("/admin/events");
    es.addEventListener("open", () => feedState("live", "ok"));
    es.addEventListener("summary", (e) => renderSummary(JSON.parse(e.data)));
    es.addEventListener("change", (e) => addChange(JSON.parse(e.data)));
    es.addEventListener("error", () => feedState("reconnecting…", "bad"));
  }

  function showUser(u) {
    const dl = document.createElement("dl");
    const row = (k, v) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    };
    row("email", u.email);
    row("username", "@" + u.username + (u.is_bot ? " (bot)" : ""));
    row("user id", u.user_id);
    row("status", STATUS_LABEL[u.status] || u.status);
    const result = $("result");
    result.replaceChildren(dl);
    result.className = "";
  }

  $("search").addEventListener("submit", async (e) => {
    e.preventDefault();
    const email = $("search-email").value.trim();
    const result = $("result");
    result.className = "muted";
    result.textContent = "…";
    const res = await fetch("/admin/api/user?email=" + encodeURIComponent(email), { credentials: "same-origin" });
    const body = await res.json();
    if (res.ok) return showUser(body);
    let msg = body.error ? body.error.message : "HTTP " + res.status;
    if (body.suggestions && body.suggestions.length) msg += ". Did you mean: " + body.suggestions.join(", ") + "?";
    result.textContent = msg;
  });

  connect();
  void loadHistory();
  void loadProviders();
  setInterval(() => {
    if (document.hidden) return;
    void loadHistory();
    void loadProviders();
  }, 15000);
})();
`;
