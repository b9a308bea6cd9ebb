// The Messenger web client: plain JavaScript, no build step, nothing
// from other hosts. It talks to the public API of the gateway that
// served it (same origin) and keeps itself current with the long poll
// GET /v1/users/{id}/events (docs/realtime.md). Message text only ever
// reaches the page through textContent, never as HTML.
"use strict";

const POLL_TIMEOUT_S = 25; // well inside proxies' and networks' idle limits
const PAGE_SIZE = 30;

const state = {
  token: null,
  user: null,
  syncToken: null, // of the conversation list: what the events poll follows
  convs: new Map(), // conversation_id -> conversation
  open: null, // the open conversation: {cid, peer, messages: Map, hasMore}
  pollGen: 0, // bumps on sign-out so an old poll loop stops
};

const $ = (id) => document.getElementById(id);

// ---- errors --------------------------------------------------------------

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

class ApiError extends Error {
  constructor(status, title, detail) {
    super(`${status} ${title}${detail ? ": " + detail : ""}`);
    this.status = status;
  }
}

// One call to the API; throws ApiError with the problem+json of a 4xx/5xx.
async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "Network error", "the server cannot be reached");
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!resp.ok) {
    const title = (data && data.title) || resp.statusText || "Error";
    throw new ApiError(resp.status, title, data && data.detail);
  }
  return data;
}

// ---- ids and order ------------------------------------------------------

// Message ids are 64-bit decimals: compare as strings of digits.
function idCompare(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function newClientMessageId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function conversationId(a, b) {
  return a < b ? `${a}_${b}` : `${b}_${a}`;
}

// The user id of a token, from its sub claim (the server checks the rest).
function userOfToken(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const sub = JSON.parse(json).sub;
    return /^[1-9][0-9]*$/.test(sub) ? Number(sub) : null;
  } catch (e) {
    return null;
  }
}

// ---- rendering -------------------------------------------------------------

function renderConversations() {
  const list = $("conv-list");
  const convs = Array.from(state.convs.values()).sort((a, b) =>
    idCompare(b.last_message_id, a.last_message_id));
  list.replaceChildren(...convs.map((c) => {
    const li = document.createElement("li");
    li.dataset.cid = c.conversation_id;
    if (state.open && state.open.cid === c.conversation_id) li.className = "active";
    const peer = document.createElement("div");
    peer.className = "peer";
    peer.textContent = "User " + c.peer_id;
    const snippet = document.createElement("div");
    snippet.className = "snippet";
    snippet.textContent = c.snippet;
    li.append(peer, snippet);
    li.addEventListener("click", () => openConversation(c.peer_id));
    return li;
  }));
}

function renderMessages(keepBottom) {
  const list = $("messages");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const open = state.open;
  const msgs = open ? Array.from(open.messages.values()).sort((a, b) =>
    idCompare(a.message_id, b.message_id)) : [];
  list.replaceChildren(...msgs.map((m) => {
    const li = document.createElement("li");
    li.className = m.sender_id === state.user ? "mine" : "theirs";
    li.dataset.id = m.message_id;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${m.sender_id === state.user ? "you" : "user " + m.sender_id} · ${new Date(m.sent_at).toLocaleTimeString()}`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.content;
    li.append(meta, text);
    return li;
  }));
  $("older-btn").hidden = !(open && open.hasMore);
  if (keepBottom || atBottom) list.scrollTop = list.scrollHeight;
}

// ---- reading -------------------------------------------------------------

async function loadConversations() {
  const data = await api("GET", `/v1/users/${state.user}/conversations?page_size=100`);
  state.convs = new Map(data.conversations.map((c) => [c.conversation_id, c]));
  state.syncToken = data.sync_token;
  renderConversations();
}

async function loadMessages(before) {
  const open = state.open;
  let path = `/v1/users/${state.user}/conversations/${open.cid}/messages?page_size=${PAGE_SIZE}`;
  if (before) path += `&before=${before}`;
  const data = await api("GET", path);
  if (state.open !== open) return;
  for (const m of data.messages) open.messages.set(m.message_id, m);
  open.hasMore = data.has_more;
  renderMessages(!before);
}

async function openConversation(peer) {
  if (!Number.isSafeInteger(peer) || peer < 1 || peer === state.user) {
    showError("Enter the id of another user (a positive integer).");
    return;
  }
  state.open = { cid: conversationId(state.user, peer), peer, messages: new Map(), hasMore: false };
  sessionStorage.setItem("peer", String(peer));
  $("conv-title").textContent = "Conversation with user " + peer;
  $("compose").hidden = false;
  renderConversations();
  renderMessages(true);
  try {
    await loadMessages(null);
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

// ---- live updates --------------------------------------------------------

// Applies an events answer (or a delta of the conversation list).
async function applyEvents(data) {
  if (!data.is_delta_update) {
    // Too much changed for one answer: read both lists afresh.
    await loadConversations();
    if (state.open) {
      state.open.messages.clear();
      await loadMessages(null);
    }
    return;
  }
  for (const c of data.conversations) state.convs.set(c.conversation_id, c);
  let touched = false;
  for (const m of data.messages || []) {
    if (state.open && m.conversation_id === state.open.cid) {
      state.open.messages.set(m.message_id, m);
      touched = true;
    }
  }
  state.syncToken = data.sync_token;
  renderConversations();
  if (touched) renderMessages(false);
}

function setLive(on) {
  const badge = $("live");
  badge.hidden = false;
  badge.textContent = on ? "live" : "reconnecting";
  badge.classList.toggle("off", !on);
}

// The poll loop: always passes the last token, so nothing is missed
// across errors and reconnects; backs off on errors.
async function pollLoop(gen) {
  let pause = 500;
  setLive(true);
  while (gen === state.pollGen) {
    try {
      const data = await api("GET",
        `/v1/users/${state.user}/events?since=${encodeURIComponent(state.syncToken)}&timeout=${POLL_TIMEOUT_S}`);
      if (gen !== state.pollGen) return;
      await applyEvents(data);
      setLive(true);
      pause = 500;
    } catch (e) {
      if (gen !== state.pollGen) return;
      setLive(false);
      if (e.status === 401 || e.status === 403) {
        showError(e.message + " (sign in again)");
        return;
      }
      if (e.status === 400) await loadConversations().catch(() => {});
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10000);
    }
  }
}

// ---- sending ---------------------------------------------------------------

// One message, one client_message_id: a retry after a failure reuses it,
// so the server stores the message once whatever happens to the answer.
let pendingSend = null;

async function send(event) {
  event.preventDefault();
  const box = $("compose-text");
  const content = box.value;
  if (!content.trim() || !state.open) return;
  if (!pendingSend || pendingSend.content !== content || pendingSend.peer !== state.open.peer)
    pendingSend = { content, peer: state.open.peer, cmid: newClientMessageId() };
  const button = $("send-btn");
  button.disabled = true;
  try {
    const m = await api("POST", "/v1/messages", {
      sender_id: state.user,
      recipient_id: pendingSend.peer,
      content,
      client_message_id: pendingSend.cmid,
    });
    pendingSend = null;
    box.value = "";
    showError("");
    if (state.open && m.conversation_id === state.open.cid) {
      state.open.messages.set(m.message_id, m);
      renderMessages(true);
    }
  } catch (e) {
    showError("Not sent: " + e.message + (e.status >= 500 || e.status === 0 || e.status === 429 ? " (press Send to retry)" : ""));
  } finally {
    button.disabled = false;
  }
}

// ---- signing in ----------------------------------------------------------

async function signIn(token) {
  const user = userOfToken(token);
  if (!user) {
    showError("That is not a token of this service.");
    return;
  }
  state.token = token;
  state.user = user;
  try {
    await loadConversations();
  } catch (e) {
    state.token = null;
    showError("Sign-in failed: " + e.message);
    return;
  }
  sessionStorage.setItem("token", token);
  showError("");
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("whoami").textContent = "Signed in as user " + user;
  state.pollGen++;
  pollLoop(state.pollGen);
  const peer = Number(sessionStorage.getItem("peer"));
  if (peer) await openConversation(peer);
}

function signOut() {
  state.pollGen++;
  sessionStorage.clear();
  location.reload();
}

async function offerDevTokens() {
  try {
    const data = await api("GET", "/v1/dev/token");
    $("dev-form").hidden = !(data && data.enabled);
  } catch (e) {
    $("dev-form").hidden = true; // off: the usual case
  }
}

async function mintDevToken(event) {
  event.preventDefault();
  const user = Number($("dev-user").value);
  try {
    const data = await api("POST", "/v1/dev/token", { user_id: user });
    await signIn(data.token);
  } catch (e) {
    showError("Cannot mint a token: " + e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token-input").value.trim());
  });
  $("dev-form").addEventListener("submit", mintDevToken);
  $("open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    openConversation(Number($("peer-input").value));
  });
  $("compose").addEventListener("submit", send);
  $("compose-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  $("older-btn").addEventListener("click", async () => {
    const ids = Array.from(state.open.messages.keys()).sort(idCompare);
    try {
      await loadMessages(ids[0]);
    } catch (e) {
      showError(e.message);
    }
  });
  $("signout").addEventListener("click", signOut);
  const saved = sessionStorage.getItem("token");
  if (saved) signIn(saved);
  offerDevTokens();
});
