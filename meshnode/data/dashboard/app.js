// meshnode dashboard. Peers are hostile: every string that comes from the API is put in the
// page as text (textContent, text nodes), never as HTML.
"use strict";

const TOKEN_KEY = "meshnode-dashboard-token";
const SVG = "http://www.w3.org/2000/svg";
let token = null;

// ---- small DOM helpers --------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function $(id) { return document.getElementById(id); }
function setText(id, value) { $(id).textContent = value === null || value === undefined ? "" : String(value); }
function short(peer) { return typeof peer === "string" ? "…" + peer.slice(-8) : "?"; }
function num(value, digits = 3) { return typeof value === "number" ? value.toFixed(digits) : "–"; }
function ago(ts) {
  if (typeof ts !== "number") return "–";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}
function rows(tbody, list, cells) {
  tbody.replaceChildren(...list.map((item) => el("tr", {}, ...cells(item).map((c) => el("td", {}, c)))));
}

// ---- login: a one-time code in the URL fragment becomes a token in sessionStorage ----------

async function login() {
  const params = new URLSearchParams(location.hash.slice(1));
  const code = params.get("code");
  if (location.hash) history.replaceState(null, "", location.pathname);  // the code leaves the address bar
  if (code) {
    const reply = await fetch("/dashboard/login", {
      method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({code}),
    });
    if (reply.ok) sessionStorage.setItem(TOKEN_KEY, (await reply.json()).token);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin() {
  $("main").hidden = true;
  $("login").hidden = false;
  setStatus("down", "not logged in");
}

function setStatus(kind, text) {
  const status = $("status");
  status.className = "status " + kind;
  status.textContent = text;
}

async function api(path, options = {}) {
  const headers = {...(options.headers || {}), authorization: "Bearer " + token};
  const reply = await fetch(path, {...options, headers});
  if (reply.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
    throw new Error("not authorised");
  }
  return reply;
}

// ---- the live stream: Server-Sent Events read with fetch, so that it can carry the token ----

async function follow() {
  for (;;) {
    try {
      const reply = await api("/v1/dashboard/events?interval=1");
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      setStatus("live", "live");
      const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          frame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (error.message === "not authorised") return;
    }
    setStatus("down", "disconnected: retrying");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function frame(text) {
  let event = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (event === "snapshot" && data.length) render(JSON.parse(data.join("\n")));
}

// ---- rendering a snapshot -----------------------------------------------------------------

function render(s) {
  renderMesh(s.self, s.peers || []);
  renderAgents(s.agents || []);
  renderTrust(s.trust || {});
  renderMemory(s.memory || {});
  renderAsks(s.asks || []);
  renderLatency(s.latency || {}, s.tasks || {});
}

function renderMesh(self, peers) {
  const connected = peers.filter((p) => p.connected);
  setText("peers-connected", connected.length);
  setText("peers-known", peers.length);
  const graph = $("graph");
  const parts = [];
  const radius = 130;
  peers.forEach((peer, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, peers.length) - Math.PI / 2;
    const x = Math.round(radius * Math.cos(angle));
    const y = Math.round(radius * Math.sin(angle));
    const kind = peer.connected ? "connected" : "known";
    parts.push(svg("line", {x1: 0, y1: 0, x2: x, y2: y, class: kind}));
    const group = svg("g", {"data-peer": peer.peer_id, class: "peer " + kind});
    group.append(svg("circle", {cx: x, cy: y, r: 9, class: kind}));
    const label = svg("text", {x, y: y + 22});
    label.textContent = short(peer.peer_id);
    const title = svg("title", {});
    title.textContent = `${peer.peer_id}\n${(peer.agents || []).join(", ")}`;
    group.append(label, title);
    parts.push(group);
  });
  const me = svg("g", {class: "self"});
  me.append(svg("circle", {cx: 0, cy: 0, r: 12, class: "self"}));
  const label = svg("text", {x: 0, y: 28});
  label.textContent = "this node";
  me.append(label);
  parts.push(me);
  graph.replaceChildren(...parts);
  const body = $("peers").tBodies[0];
  body.replaceChildren(...peers.map((p) => el("tr", {"data-peer": p.peer_id},
    el("td", {title: p.peer_id}, el("code", {}, short(p.peer_id))),
    el("td", {class: p.connected ? "ok" : ""}, p.connected ? "yes" : "no"),
    el("td", {}, num(p.rtt_ms, 1)),
    el("td", {}, ago(p.last_seen)),
    el("td", {}, (p.agents || []).join(", ")))));
}

function renderAgents(agents) {
  $("agents").replaceChildren(...agents.map((a) => el("li", {"data-agent": a.agent},
    el("strong", {}, a.agent), " ", el("code", {title: a.peer_id}, a.local ? "(this node)" : short(a.peer_id)),
    el("div", {class: "meta"}, a.description || ""),
    a.quality ? el("div", {class: "meta quality"}, `checked here: ${a.quality.answers} answer(s), faithfulness ${num(a.quality.faithfulness, 2)}, retrieval precision ${num(a.quality.retrieval_precision, 2)}, quality ${num(a.quality.quality, 2)}`) : null,
    el("div", {}, ...(a.skills || []).flatMap((skill) => [
      el("span", {class: "tag", title: (skill.tags || []).join(", ")}, skill.name || skill.id)])))));
}

function renderTrust(t) {
  setText("trust-pre", (t.pre_trusted || []).length);
  setText("trust-authors", t.authors ?? 0);
  rows($("trust").tBodies[0], t.peers || [], (p) => [
    el("code", {title: p.peer_id}, (p.self ? "self " : "") + short(p.peer_id) + (p.pre_trusted ? " ★" : "")),
    num(p.local), num(p.global), num(p.experience, 2),
    Object.entries(p.evidence || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "–",
    p.attestation ? `${p.attestation.peers} peers, ${ago(p.attestation.last_seen)}` : "–",
  ]);
}

function renderMemory(m) {
  setText("memory-backend", m.backend ? `${m.backend}, ${(m.embedder || {}).name || ""}` : "");
  rows($("collections").tBodies[0], Object.entries(m.collections || {}), ([name, count]) => [name, count]);
  const authors = Object.entries(m.authors || {}).sort((a, b) => b[1] - a[1]);
  rows($("authors").tBodies[0], authors, ([author, count]) => [el("code", {title: author}, short(author)), count]);
  const peers = Object.entries((m.replication || {}).peers || {});
  rows($("replication").tBodies[0], peers, ([peer, lag]) => [
    el("code", {title: peer}, short(peer)), ago(lag.last_sync), lag.pulled ?? 0, lag.authors_behind ?? 0,
    lag.last_error || "",
  ]);
}

function stageText(timings) {
  return ["routing", "network", "retrieval", "llm"].map((s) => `${s} ${num(timings[s + "_s"])}`).join(" · ");
}

function renderAsks(asks) {
  const list = $("asks");
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.seq));
  list.replaceChildren(...asks.map((ask) => {
    const r = ask.result || {};
    const summary = el("summary", {},
      el("span", {class: ask.ok ? "ok" : "error"}, ask.ok ? "✓ " : "✗ "), new Date(ask.at * 1000).toLocaleTimeString(), " — ",
      ask.question, " → ", ask.ok ? `${r.agent} (${short(r.peer)})` : "no answer",
      ` in ${num(ask.seconds, 2)} s`, ask.forwarded ? " [forwarded]" : "");
    const details = el("details", {"data-seq": ask.seq}, summary);
    if (open.has(String(ask.seq))) details.open = true;
    if (ask.ok) {
      details.append(el("p", {class: "meta"}, stageText(r.timings || {})));
      details.append(...qualityFields(r.answer || {}));
      details.append(explanation(r.explain || {}));
    } else {
      details.append(el("p", {class: "error"}, ask.error));
    }
    return details;
  }));
}

function explanation(explain) {
  const box = el("div", {});
  const candidates = explain.candidates || [];
  if (candidates.length) {
    box.append(el("h3", {}, "Candidates"));
    const table = el("table", {}, el("thead", {}, el("tr", {}, ...["agent", "peer", "score", "factors"].map((h) => el("th", {}, h)))));
    const body = el("tbody");
    rows(body, candidates, (c) => [c.agent + (c.explore ? " (explore)" : ""), short(c.peer_id), num(c.score),
      Object.entries(c.factors || {}).map(([k, v]) => `${k} ${num(v, 2)}`).join(" · ")]);
    table.append(body);
    box.append(table);
  }
  (explain.waves || []).forEach((wave, i) => {
    box.append(el("h3", {}, `Wave ${i + 1}`));
    box.append(el("ul", {}, ...(wave.outcomes || []).map((o) =>
      el("li", {}, `${o.agent} (${short(o.peer)}): ${o.state}`, o.reason ? ` — ${o.reason}` : "",
        o.quality !== null && o.quality !== undefined ? `, quality ${num(o.quality, 2)}` : "", `, ${num(o.seconds, 2)} s`))));
  });
  if (explain.chosen) box.append(el("p", {}, `chosen: ${explain.chosen.agent} — ${explain.chosen.why}`));
  if (explain.forwarded) box.append(el("p", {class: "meta"}, "forwarded: " + JSON.stringify(explain.forwarded)));
  return box;
}

// Retrieval quality, faithfulness and any other figures an answer carries beyond the usual.
const USUAL = new Set(["text", "mode", "model", "citations", "retrieval_s", "llm_s", "agent", "peer", "body", "records", "learnable"]);
function qualityFields(answer) {
  const extra = Object.entries(answer).filter(([key]) => !USUAL.has(key));
  if (!extra.length) return [];
  const list = el("dl", {class: "quality"});
  for (const [key, value] of extra) {
    list.append(el("dt", {}, key), el("dd", {}, typeof value === "object" ? JSON.stringify(value) : String(value)));
  }
  return [list];
}

function renderLatency(latency, tasks) {
  rows($("latency").tBodies[0], Object.entries(latency), ([stage, p]) => [stage, num(p.p50), num(p.p95)]);
  const states = Object.entries(tasks.by_state || {}).filter(([, n]) => n > 0);
  $("tasks").replaceChildren(el("li", {}, `running ${tasks.running ?? 0}`),
    ...states.map(([state, n]) => el("li", {}, `${state} ${n}`)));
}

// ---- the ask box: POST /v1/ask, an NDJSON stream of progress and then the result ------------

function describe(progress) {
  if (progress.stage === "routed") return `routing: ${progress.candidates} relevant agent(s)`;
  if (progress.stage === "asking") return `asking ${progress.agent} on ${short(progress.peer)}`;
  if (progress.stage === "status") return `${progress.agent}: ${progress.state}`;
  return JSON.stringify(progress);
}

async function ask(question) {
  const button = $("ask-button");
  button.disabled = true;
  $("ask-progress").replaceChildren();
  $("ask-result").hidden = true;
  $("ask-error").hidden = true;
  try {
    const reply = await api("/v1/ask", {
      method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({question, timeout: 60}),
    });
    if (!reply.ok) throw new Error((await reply.json()).error || "HTTP " + reply.status);
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (line) askLine(JSON.parse(line));
      }
    }
  } catch (error) {
    showAskError(error.message);
  } finally {
    button.disabled = false;
  }
}

function askLine(line) {
  if (line.progress) $("ask-progress").append(el("li", {}, describe(line.progress)));
  if (line.error !== undefined) showAskError(line.error || line.state || "failed");
  if (line.result) showAnswer(line.result);
}

function showAskError(message) {
  const box = $("ask-error");
  box.textContent = "The mesh could not answer: " + message;
  box.hidden = false;
}

function showAnswer(result) {
  const answer = result.answer || {};
  setText("ask-who", `answered by ${result.agent} on ${short(result.peer)} (${answer.mode || ""}) · ${stageText(result.timings || {})}`);
  setText("ask-answer", answer.text || "");
  $("ask-citations").replaceChildren(...(answer.citations || []).map((c) => el("li", {"data-id": c.id},
    el("code", {title: c.id}, c.id ? c.id.slice(0, 12) : "?"), ` ${c.collection || ""} by ${short(c.author)} (score ${num(c.score)}): `,
    c.snippet || "")));
  $("ask-quality").replaceChildren(...qualityFields(answer));
  $("ask-result").hidden = false;
}

// ---- the memory search box ----------------------------------------------------------------

async function search(query) {
  const reply = await api("/v1/memory/search?" + new URLSearchParams({q: query, k: "10"}));
  const hits = reply.ok ? await reply.json() : [];
  $("search-results").replaceChildren(...hits.map((h) => el("li", {},
    el("code", {title: h.id}, (h.id || "").slice(0, 12)), ` ${h.collection || h.kind || ""} · score ${num(h.score)} · by ${short(h.author)}: `,
    h.text || "")));
}

// ---- start --------------------------------------------------------------------------------

async function start() {
  token = await login();
  if (!token) { showLogin(); return; }
  $("main").hidden = false;
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("ask-input").value.trim();
    if (question) ask(question);
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("search-input").value.trim();
    if (query) search(query).catch(() => {});
  });
  try {
    const status = await (await api("/v1/status")).json();
    setText("node-id", status.peer_id);
    setText("node-network", status.network_id + (status.private ? " (private)" : ""));
    setText("node-version", status.version);
  } catch (error) {
    if (error.message === "not authorised") return;
  }
  follow();
}

document.addEventListener("DOMContentLoaded", start);
