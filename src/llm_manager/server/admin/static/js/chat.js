// The chat page. Sending is a POST (with the session's CSRF token): streamed, it registers the reply
// and an EventSource follows it (Stop POSTs a cancel); plain, the answer is the stored exchange as
// HTML. Streamed text is only ever inserted as text; once the reply is stored, the server's
// rendering of it (sanitized markdown, tokens, cost) replaces it. Only the message log scrolls,
// never the page.
"use strict";

(() => {
  const log = document.getElementById("chat-log");
  if (!log) return;

  const STOP_GRACE_MS = 3000;
  const byId = (id) => document.getElementById(id);
  const list = byId("chat-messages");

  // Keep the log scrolled to its end while text arrives — unless the reader scrolled up in it.
  let stick = true;
  log.addEventListener("scroll", () => {
    stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  });
  const follow = (force = false) => {
    if (force) stick = true;
    if (stick) log.scrollTop = log.scrollHeight;
  };
  follow(true);

  // "Load earlier messages" inserts above what is read: keep the reader where they were.
  let fromBottom = null;
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.target && event.detail.target.id === "chat-earlier") {
      fromBottom = log.scrollHeight - log.scrollTop;
    }
  });
  document.body.addEventListener("htmx:afterSettle", () => {
    if (fromBottom !== null) {
      log.scrollTop = log.scrollHeight - fromBottom;
      fromBottom = null;
    }
  });

  const form = byId("chat-form");
  if (!form) return;

  const ui = {
    content: byId("f-content"),
    stream: byId("f-stream"),
    after: byId("f-after"),
    send: byId("chat-send"),
    stop: byId("chat-stop"),
    error: byId("chat-error"),
    empty: byId("chat-empty"),
  };
  let run = null;
  let busy = false;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch {
      return "";
    }
  }

  function showError(message) {
    ui.error.textContent = message || "";
    ui.error.classList.toggle("hidden", !message);
  }

  function setBusy(state, streaming) {
    busy = state;
    ui.send.disabled = state;
    ui.send.setAttribute("aria-busy", state ? "true" : "false");
    ui.stop.disabled = !(state && streaming);
    if (ui.stream.dataset.locked !== "yes") ui.stream.disabled = state;
  }

  function lastSeq() {
    const shown = list.querySelectorAll("article.chat-message[data-seq]");
    return shown.length ? Number(shown[shown.length - 1].dataset.seq) : 0;
  }

  function bubble(role, label) {
    const article = document.createElement("article");
    article.className = `chat-message chat-${role} chat-pending`;
    const head = document.createElement("header");
    head.className = "chat-message-head";
    const name = document.createElement("strong");
    name.textContent = label;
    head.append(name);
    const body = document.createElement("div");
    body.className = "chat-text";
    article.append(head, body);
    return article;
  }

  // The message and a reply-to-be, shown at once; replaced by the stored ones when the reply ends.
  function addPending(content, streaming) {
    const user = bubble("user", "You");
    user.querySelector(".chat-text").textContent = content;
    const reply = bubble("assistant", "Assistant");
    const status = document.createElement("span");
    status.className = "badge";
    status.textContent = streaming ? "waiting…" : "thinking…";
    reply.querySelector("header").append(status);
    const text = document.createTextNode("");
    reply.querySelector(".chat-text").append(text);
    list.append(user, reply);
    ui.empty.classList.add("hidden");
    follow(true);
    return {
      text,
      status,
      anchor: user,
      remove() {
        user.remove();
        reply.remove();
      },
    };
  }

  // Server HTML in: messages go where the pending ones were; `hx-swap-oob` parts replace by id.
  function swapIn(html, pending) {
    const template = document.createElement("template");
    template.innerHTML = html;
    for (const part of template.content.querySelectorAll("[hx-swap-oob]")) {
      part.removeAttribute("hx-swap-oob");
      const current = part.id ? byId(part.id) : null;
      if (current) current.replaceWith(part);
      else part.remove();
    }
    const added = [];
    for (const article of template.content.querySelectorAll("article.chat-message")) {
      if (article.id && byId(article.id)) continue;
      list.insertBefore(article, pending ? pending.anchor : null);
      added.push(article);
    }
    if (pending) pending.remove();
    if (window.htmx) for (const article of added) window.htmx.process(article);
    ui.after.value = String(lastSeq());
    if (lastSeq()) ui.empty.classList.add("hidden");
    follow();
    return added.length;
  }

  async function problem(response) {
    if (response.status === 401) return "You have been signed out: reload the page to sign in again.";
    if (response.status === 403) return "Not allowed, or the page has expired: reload it and try again.";
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    const text = template.content.textContent.trim();
    return text && text.length < 500 ? text : `The message was not sent (HTTP ${response.status}).`;
  }

  // Nothing was stored (refused before any model was asked): the message goes back in the box.
  function refused(pending, content, message) {
    pending.remove();
    if (!ui.content.value) ui.content.value = content;
    if (!lastSeq()) ui.empty.classList.remove("hidden");
    showError(message);
  }

  async function fetchStored(after) {
    const url = `${form.dataset.messagesUrl}?after=${encodeURIComponent(after)}`;
    const response = await fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } });
    if (!response.ok) throw new Error(await problem(response));
    return response.text();
  }

  async function sendPlain(content, after, pending) {
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken(), "HX-Request": "true" },
        body: new URLSearchParams({ content, after: String(after) }),
      });
    } catch {
      refused(pending, content, "Could not reach the server.");
      return;
    }
    if (response.ok) swapIn(await response.text(), pending);
    else refused(pending, content, await problem(response));
  }

  async function streamReply(content, after, pending) {
    let response;
    try {
      response = await fetch(form.dataset.streamsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ content }),
      });
    } catch {
      refused(pending, content, "Could not reach the server.");
      return false;
    }
    if (!response.ok) {
      let message;
      if (response.status === 422) message = Object.values((await response.json()).errors || {}).join("; ");
      else message = await problem(response);
      refused(pending, content, message);
      return false;
    }
    const created = await response.json();
    const source = new EventSource(created.events_url);
    run = { source, cancelUrl: created.cancel_url, pending, content, after, stopTimer: null };
    pending.status.textContent = "streaming…";
    source.onmessage = (message) => {
      if (!run || run.source !== source) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === "chunk") {
        pending.text.appendData(event.content);
        follow();
      } else if (event.type === "done") {
        finish(null);
      } else if (event.type === "error") {
        finish(event.code === "cancelled" ? null : event.message);
      }
    };
    source.onerror = () => {
      if (run && run.source === source) finish("The reply stream ended unexpectedly: it expired, or the connection dropped.");
    };
    return true;
  }

  // The reply ended (done, error, Stop): show what was stored, or put the message back if nothing was.
  async function finish(message) {
    if (!run) return;
    const ended = run;
    run = null;
    ended.source.close();
    clearTimeout(ended.stopTimer);
    ui.stop.disabled = true;
    try {
      const stored = swapIn(await fetchStored(ended.after), ended.pending);
      if (!stored) refused(ended.pending, ended.content, message || "Nothing was stored; try again.");
    } catch (error) {
      refused(ended.pending, ended.content, message || String(error.message || error));
    }
    setBusy(false, false);
  }

  async function send() {
    if (busy) return;
    const content = ui.content.value;
    if (!content.trim()) {
      showError("Write a message first.");
      ui.content.focus();
      return;
    }
    showError("");
    const streaming = ui.stream.checked && !ui.stream.disabled;
    const after = lastSeq();
    setBusy(true, false);
    const pending = addPending(content, streaming);
    ui.content.value = "";
    if (streaming) {
      if (!(await streamReply(content, after, pending))) setBusy(false, false);
      else setBusy(true, true);
    } else {
      await sendPlain(content, after, pending);
      setBusy(false, false);
    }
  }

  async function stop() {
    if (!run) return;
    const current = run;
    ui.stop.disabled = true;
    current.pending.status.textContent = "stopping…";
    try {
      await fetch(current.cancelUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken() },
      });
    } catch {
      // Hanging up below stops the reply too: the server keeps a closed stream's partial reply.
    }
    // The server answers a Stop with `done` (status cancelled); if it does not, hang up.
    current.stopTimer = setTimeout(() => {
      if (run === current) finish(null);
    }, STOP_GRACE_MS);
  }

  if (ui.stream.disabled) ui.stream.dataset.locked = "yes";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.stop.addEventListener("click", stop);
  ui.content.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  window.addEventListener("pagehide", () => {
    if (run) run.source.close();
  });
})();
