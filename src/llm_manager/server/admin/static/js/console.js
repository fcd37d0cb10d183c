// The streaming console. A run is a POST (with the session's CSRF token) that registers the stream,
// then an EventSource that follows it; Stop POSTs a cancel. Model text is only ever inserted as
// text (never as HTML), and only the console's own boxes scroll: the page itself is never moved.
"use strict";

(() => {
  const form = document.getElementById("console-form");
  if (!form) return;

  const MONITOR_LINES = 200;
  const STOP_GRACE_MS = 3000;
  const byId = (id) => document.getElementById(id);
  const ui = {
    start: byId("console-start"),
    stop: byId("console-stop"),
    clear: byId("console-clear"),
    response: byId("console-response"),
    monitor: byId("console-monitor"),
    error: byId("console-error"),
    temperature: byId("f-temperature"),
    temperatureValue: byId("temperature-value"),
    prompt: byId("f-prompt"),
    log: byId("stat-log"),
    logNone: byId("stat-log-none"),
  };
  const STATS = ["status", "tokens", "chunks", "duration", "ttft", "rate", "cost"];
  let responseText = document.createTextNode("");
  ui.response.append(responseText);
  byId("monitor-limit").textContent = String(MONITOR_LINES);
  let run = null;

  // Keep a box scrolled to its end while text arrives — unless the reader scrolled up in it.
  function follower(box) {
    let stick = true;
    box.addEventListener("scroll", () => {
      stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    });
    return () => {
      if (stick) box.scrollTop = box.scrollHeight;
    };
  }
  const followResponse = follower(ui.response);
  const followMonitor = follower(ui.monitor);

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) return meta.getAttribute("content") || "";
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch {
      return "";
    }
  }

  function setStat(name, value) {
    byId(`stat-${name}`).textContent = value;
  }

  function resetStats() {
    for (const name of STATS) setStat(name, "—");
    setStat("status", "idle");
    ui.log.classList.add("hidden");
    ui.log.textContent = "";
    ui.logNone.classList.remove("hidden");
  }

  function showLog(logId) {
    ui.logNone.classList.add("hidden");
    ui.log.classList.remove("hidden");
    ui.log.textContent = logId.slice(0, 8);
    ui.log.title = logId;
    if (ui.log.dataset.usageLink === "yes") ui.log.href = `/admin/usage/${encodeURIComponent(logId)}`;
    else ui.log.removeAttribute("href");
  }

  function monitor(kind, text) {
    const line = document.createElement("div");
    if (kind === "error") line.className = "error";
    line.textContent = `${new Date().toISOString().slice(11, 23)}  ${kind.padEnd(6)} ${text}`;
    ui.monitor.append(line);
    while (ui.monitor.childElementCount > MONITOR_LINES) ui.monitor.firstElementChild.remove();
    followMonitor();
  }

  function clip(text, length = 160) {
    return text.length > length ? `${text.slice(0, length)}…` : text;
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.classList.toggle("hidden", !message);
  }

  function showFieldErrors(errors) {
    const unplaced = [];
    for (const [field, message] of Object.entries(errors || {})) {
      const slot = byId(`e-${field}`);
      const input = byId(`f-${field}`);
      if (slot && input) {
        slot.textContent = message;
        slot.classList.remove("hidden");
        input.setAttribute("aria-invalid", "true");
      } else {
        unplaced.push(`${field}: ${message}`);
      }
    }
    showError(unplaced.join("; "));
  }

  function clearFieldErrors() {
    for (const slot of form.querySelectorAll(".field-error")) {
      slot.textContent = "";
      slot.classList.add("hidden");
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    showError("");
  }

  function setRunning(running) {
    ui.start.disabled = running;
    ui.stop.disabled = !running;
    ui.start.setAttribute("aria-busy", running ? "true" : "false");
  }

  function seconds(ms) {
    return ms === null || ms === undefined ? "—" : `${(ms / 1000).toFixed(2)} s`;
  }

  // While streaming, the figures are measured here; `done` replaces them with the server's.
  function tick() {
    if (!run) return;
    const now = performance.now();
    setStat("duration", seconds(now - run.started));
    setStat("chunks", String(run.chunks));
    setStat("tokens", run.chunks ? `~${run.chunks}` : "—");
    if (run.firstAt !== null) {
      setStat("ttft", seconds(run.firstAt - run.started));
      const generating = (now - run.firstAt) / 1000;
      if (generating > 0.05) setStat("rate", (run.chunks / generating).toFixed(1));
    }
  }

  function showFinal(stats) {
    if (stats.tokens !== undefined) {
      setStat("tokens", `${stats.tokens} (${stats.prompt_tokens} in, ${stats.completion_tokens} out)`);
    }
    setStat("chunks", String(stats.chunks ?? 0));
    if (stats.duration_ms !== undefined) setStat("duration", seconds(stats.duration_ms));
    if (stats.ttft_ms !== undefined) setStat("ttft", seconds(stats.ttft_ms));
    if (stats.duration_ms && stats.completion_tokens) {
      const generating = (stats.duration_ms - (stats.ttft_ms || 0)) / 1000;
      if (generating > 0) setStat("rate", (stats.completion_tokens / generating).toFixed(1));
    }
    if (stats.cost !== undefined) setStat("cost", stats.cost === null ? "unpriced" : `$${stats.cost}`);
    if (stats.log_id) showLog(stats.log_id);
  }

  function handle(event) {
    if (event.type === "chunk") {
      if (run.firstAt === null) run.firstAt = performance.now();
      run.chunks += 1;
      responseText.appendData(event.content);
      followResponse();
      monitor("chunk", clip(JSON.stringify(event.content)));
      tick();
    } else if (event.type === "done") {
      const { response, ...rest } = event.stats || {};
      monitor("done", clip(JSON.stringify(rest), 400));
      showFinal(event.stats || {});
      finish(null, (event.stats && event.stats.status) || "ok");
    } else if (event.type === "error") {
      monitor("error", `${event.code}: ${event.message}`);
      if (event.log_id) showLog(event.log_id);
      const stopped = event.code === "cancelled";
      finish(stopped ? null : event.message, stopped ? "cancelled" : "error");
    }
  }

  function finish(message, status) {
    if (!run) return;
    const ended = run;
    run = null;
    ended.source.close();
    clearInterval(ended.timer);
    clearTimeout(ended.stopTimer);
    setStat("status", status);
    if (message) showError(message);
    setRunning(false);
    document.body.dispatchEvent(new CustomEvent("console-run-ended"));
  }

  function attach(created, started) {
    const source = new EventSource(created.events_url);
    run = { source, cancelUrl: created.cancel_url, started, firstAt: null, chunks: 0, timer: null, stopTimer: null };
    run.timer = setInterval(tick, 250);
    setStat("status", "streaming");
    monitor("start", `stream ${created.id}`);
    source.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        monitor("error", `unreadable event: ${clip(message.data)}`);
        return;
      }
      if (run && run.source === source) handle(event);
    };
    source.onerror = () => {
      if (run && run.source === source) {
        monitor("error", "connection closed");
        finish("The stream ended unexpectedly: it expired, or the connection dropped.", "error");
      }
    };
  }

  function formBody() {
    const data = Object.fromEntries(new FormData(form));
    delete data.csrf_token;
    return { ...data, temperature: Number(data.temperature), max_tokens: Number(data.max_tokens) };
  }

  async function start() {
    if (run) return;
    clearFieldErrors();
    resetStats();
    ui.response.textContent = "";
    responseText = document.createTextNode("");
    ui.response.append(responseText);
    setRunning(true);
    setStat("status", "starting");
    const started = performance.now();
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify(formBody()),
      });
    } catch {
      setRunning(false);
      setStat("status", "idle");
      showError("Could not reach the server.");
      return;
    }
    if (!response.ok) {
      setRunning(false);
      setStat("status", "idle");
      if (response.status === 422) showFieldErrors((await response.json()).errors);
      else if (response.status === 403) showError("Not allowed, or the page has expired: reload it and try again.");
      else showError(`Could not start the run (HTTP ${response.status}).`);
      return;
    }
    attach(await response.json(), started);
  }

  async function stop() {
    if (!run) return;
    const current = run;
    ui.stop.disabled = true;
    setStat("status", "stopping");
    monitor("stop", "cancel requested");
    try {
      await fetch(current.cancelUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken() },
      });
    } catch {
      // Hanging up below stops the call too: the server accounts a closed stream as cancelled.
    }
    // The server answers a cancel with `done` (status cancelled) and the partial reply's stats.
    current.stopTimer = setTimeout(() => {
      if (run === current) finish(null, "cancelled");
    }, STOP_GRACE_MS);
  }

  function clear() {
    ui.response.textContent = "";
    responseText = document.createTextNode("");
    ui.response.append(responseText);
    ui.monitor.replaceChildren();
    clearFieldErrors();
    if (!run) resetStats();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  ui.stop.addEventListener("click", stop);
  ui.clear.addEventListener("click", clear);
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  const showTemperature = () => {
    ui.temperatureValue.value = Number(ui.temperature.value).toFixed(1);
  };
  ui.temperature.addEventListener("input", showTemperature);
  showTemperature();
  window.addEventListener("pagehide", () => {
    if (run) run.source.close();
  });
})();
