/**
 * The admin page: plain HTML, CSS and JS, no framework and no build step. It reads
 * `/admin/events` (server-sent events: `summary` every few seconds, `change` per status change)
 * and `/admin/api/user?email=` for the search box. Data is only ever inserted as text.
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
    <div class="card"><h2>Connected providers</h2><p id="sockets" class="big">–</p></div>
    <div class="card"><h2>Users</h2><p id="users" class="big">–</p><p id="users-detail" class="muted"></p></div>
  </section>
  <section class="counts" aria-label="users by status">
    <div class="count online"><span class="dot"></span>online <b id="count-online">–</b></div>
    <div class="count away"><span class="dot"></span>away <b id="count-away">–</b></div>
    <div class="count dnd"><span class="dot"></span>do not disturb <b id="count-dnd">–</b></div>
    <div class="count offline"><span class="dot"></span>offline <b id="count-offline">–</b></div>
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
      <h2>Live changes <span id="feed-state" class="muted"></span></h2>
      <ol id="feed"></ol>
    </div>
  </section>
</main>
</body>
</html>
`;

export const ADMIN_CSS = `:root { font-family: system-ui, sans-serif; color: #1f2328; background: #f6f8fa; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 1rem; padding: 0.8rem 1.5rem; background: #1e325c; color: #fff; }
header h1 { font-size: 1.2rem; margin: 0; }
header .muted { color: #c9d1d9; }
main { padding: 1rem 1.5rem; max-width: 1100px; }
h2 { font-size: 0.85rem; text-transform: uppercase; letter-spacing: 0.04em; color: #57606a; margin: 0 0 0.4rem; }
.muted { color: #57606a; font-size: 0.85rem; }
.badge { padding: 0.15rem 0.6rem; border-radius: 1rem; background: #6e7781; font-size: 0.85rem; }
.badge.ok { background: #1a7f37; }
.badge.bad { background: #cf222e; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 0.8rem; }
.card, .panel { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 0.8rem 1rem; }
.card p { margin: 0.2rem 0; }
.big { font-size: 1.6rem; font-weight: 600; }
.counts { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.count { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 0.6rem 1rem; display: flex; align-items: center; gap: 0.5rem; }
.count b { font-size: 1.3rem; }
.dot { width: 0.75rem; height: 0.75rem; border-radius: 50%; display: inline-block; background: #8c959f; }
.online .dot, .dot.online { background: #2da44e; }
.away .dot, .dot.away { background: #d4a72c; }
.dnd .dot, .dot.dnd { background: #cf222e; }
.lower { display: grid; grid-template-columns: 1fr 1.4fr; gap: 0.8rem; }
@media (max-width: 800px) { .lower { grid-template-columns: 1fr; } }
form { display: flex; gap: 0.5rem; margin-bottom: 0.6rem; }
input { flex: 1; padding: 0.4rem; border: 1px solid #d0d7de; border-radius: 6px; }
button { padding: 0.4rem 0.9rem; border: 0; border-radius: 6px; background: #1e325c; color: #fff; cursor: pointer; }
#feed { list-style: none; margin: 0; padding: 0; max-height: 420px; overflow-y: auto; font-size: 0.9rem; }
#feed li { display: flex; gap: 0.6rem; align-items: center; padding: 0.2rem 0; border-bottom: 1px solid #eaeef2; }
#feed time { color: #57606a; font-variant-numeric: tabular-nums; }
#feed .email { flex: 1; overflow: hidden; text-overflow: ellipsis; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0.2rem 0.8rem; margin: 0; }
dt { color: #57606a; }
dd { margin: 0; }
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
    text("sockets", String(s.sockets));
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

  function connect() {
    const es = new EventSource("/admin/events");
    es.addEventListener("open", () => text("feed-state", "(live)"));
    es.addEventListener("summary", (e) => renderSummary(JSON.parse(e.data)));
    es.addEventListener("change", (e) => addChange(JSON.parse(e.data)));
    es.addEventListener("error", () => text("feed-state", "(reconnecting…)"));
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
})();
`;
