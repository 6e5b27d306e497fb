// certq dashboard: plain DOM, no framework, no build step. Every text from the server goes through
// text nodes (never innerHTML), so job payloads and error messages cannot inject markup.
"use strict";

const STATES = ["waiting", "active", "delayed", "completed", "failed", "paused"];
const CERT_STATUSES = ["PENDING", "QUEUED", "PROCESSING", "CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED"];
const ICONS = {
  CERTIFIED: "\u2714", PASSED: "\u2714", QUALITY_WARNING: "\u25B2", FAILED: "\u2716", CANCELLED: "\u25CB", PROCESSING: "\u21BB",
  QUEUED: "\u2026", PENDING: "\u2026", EXPIRED: "\u231B", completed: "\u2714", failed: "\u2716", active: "\u21BB",
  waiting: "\u2026", delayed: "\u23F1", paused: "\u23F8",
};
const LABELS = { QUALITY_WARNING: "Quality warning" };
const POLL_MS = 1500;
const $ = (sel) => document.querySelector(sel);
let pollTimer = null;
let refreshView = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// A page opened as http://user:password@host/... keeps the credentials in its URL, so a relative fetch would
// carry them too and fetch() refuses such a URL. The browser sends this realm's Authorization by itself.
function apiUrl(path) {
  const url = new URL(path, document.baseURI);
  url.username = "";
  url.password = "";
  return url.href;
}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (init.method !== "GET") {
    init.headers["X-Certq-Board"] = "1";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body || {});
  }
  const response = await fetch(apiUrl(path), init);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function notify(message, isError) {
  const box = $("#notice");
  box.hidden = false;
  box.className = isError ? "notice error" : "notice";
  box.textContent = message;
}

function confirmAction(title, text) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    $("#confirm-cancel").focus();
  });
}

async function act(path, body, confirmText) {
  if (confirmText && !(await confirmAction("Please confirm", confirmText))) {
    notify("Cancelled: nothing was changed.");
    return null;
  }
  try {
    const result = await api(path, { method: "POST", body });
    notify(`Done: ${result.outcome}`);
    await tick();
    return result;
  } catch (err) {
    notify(`Refused: ${err.message}`, true);
    return null;
  }
}

async function change(path, method, body, confirmText) {
  if (confirmText && !(await confirmAction("Please confirm", confirmText))) {
    notify("Cancelled: nothing was changed.");
    return null;
  }
  try {
    const result = await api(path, { method, body });
    notify(`Done: ${result.outcome}`);
    return result;
  } catch (err) {
    const field = err.body && err.body.field ? ` (field: ${err.body.field})` : "";
    notify(`Refused: ${err.message}${field}`, true);
    return null;
  }
}

function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "–";
  const d = typeof value === "number" ? new Date(value) : new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

function fmtAgo(ms) {
  if (!ms) return "–";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function availability(run) {
  // The share of requests that did not fail transiently, and what it cost the score (metrics.reliability).
  const rel = run.metrics && run.metrics.reliability;
  if (!rel || typeof rel.availability !== "number") return "–";
  const share = `${Math.round(rel.availability * 100)}%`;
  return rel.scorePenalty ? `${share} (\u2212${rel.scorePenalty})` : share;
}

function statusWord(status) {
  const word = LABELS[status] || String(status).replace(/_/g, " ").toLowerCase();
  return word.charAt(0).toUpperCase() + word.slice(1);
}

function statusBadge(status) {
  return h("span", { class: `status s-${status}` }, h("span", { "aria-hidden": "true" }, ICONS[status] || "\u2022"),
    statusWord(status));
}

function table(headers, rows, caption) {
  const head = h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.cls || null }, x.label || x)));
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", { class: "sr-only" }, caption) : null,
    h("thead", {}, head), h("tbody", {}, rows.length ? rows :
      h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "Nothing here.")))));
}

function pager(page, limit, total, go, capped) {
  const pages = Math.max(1, Math.ceil(total / limit));
  const more = capped ? "+" : "";
  return h("div", { class: "pager" },
    h("button", { class: "btn", type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, "\u2190 Previous"),
    h("span", {}, `Page ${page} of ${pages}${more} (${total}${more} total)`),
    h("button", { class: "btn", type: "button", disabled: page >= pages && !capped, onclick: () => go(page + 1) },
      "Next \u2192"));
}

// Live refreshes redraw only when the data changed, so keyboard focus is not lost every poll.
function unchanged(data, last) {
  return JSON.stringify(data) === last;
}

// Long ids are shortened to their head and tail: UUIDs differ at the start, the queue's own ids
// (a random base plus a counter) at the end.
function shortId(id) {
  const text = String(id);
  return text.length <= 14 ? text : `${text.slice(0, 8)}\u2026${text.slice(-4)}`;
}

function jobLink(id) {
  return h("a", { href: `#/job/${encodeURIComponent(id)}`, title: String(id) }, h("code", {}, shortId(id)));
}

// ---- live counts ----

async function tick() {
  try {
    const data = await api("api/overview");
    for (const state of STATES) $(`#count-${state}`).textContent = data.counts[state];
    const pill = $("#queue-state");
    pill.textContent = data.paused ? "\u23F8 Paused" : "\u25B6 Running";
    pill.className = data.paused ? "pill paused" : "pill running";
    const toggle = $("#pause-toggle");
    toggle.textContent = data.paused ? "Resume queue" : "Pause queue";
    toggle.dataset.paused = data.paused ? "1" : "0";
    $("#updated").textContent = `Updated ${new Date(data.at).toLocaleTimeString()}`;
    if (refreshView) await refreshView();
  } catch (err) {
    $("#updated").textContent = `Cannot reach the server: ${err.message}`;
  }
}

function startPolling() {
  clearInterval(pollTimer);
  pollTimer = setInterval(() => { if (document.visibilityState === "visible") tick(); }, POLL_MS);
}

// ---- views ----

const views = {};

views.queue = async (main, [state = "waiting"]) => {
  let page = 1;
  const body = h("div");
  const goto = h("input", { id: "goto-job", type: "search", placeholder: "job id", autocomplete: "off" });
  const toolbar = h("div", { class: "toolbar" },
    h("form", { class: "toolbar", role: "search", "aria-label": "Open a job by id", onsubmit: (ev) => {
      ev.preventDefault();
      if (goto.value.trim()) location.hash = `#/job/${encodeURIComponent(goto.value.trim())}`;
    } }, h("label", { for: "goto-job" }, "Open job", goto), h("button", { class: "btn", type: "submit" }, "Open")),
    h("button", { class: "btn", type: "button", id: "retry-all",
      onclick: () => act("api/jobs/retry-failed", {}, "Move every failed job back to waiting?") }, "Retry all failed"),
    cleanForm(state));
  main.append(h("h2", {}, `${state.charAt(0).toUpperCase()}${state.slice(1)} jobs`), toolbar, body);
  document.querySelectorAll("#counts a").forEach((a) => a.setAttribute("aria-current", a.dataset.state === state));
  let last = "";
  const load = async () => {
    const data = await api(`api/jobs?state=${state}&page=${page}&limit=20`);
    if (unchanged(data, last)) return;
    last = JSON.stringify(data);
    const rows = data.items.map((job) => h("tr", { "data-job": job.id },
      h("td", {}, jobLink(job.id)),
      h("td", {}, job.modelName || (job.payload && job.payload.modelId) || "–"),
      h("td", {}, (job.payload && job.payload.region) || job.group || "–"),
      h("td", { class: "num" }, `${job.attempts}/${job.maxAttempts}`),
      h("td", { class: "hide-sm" }, fmtTime(job.createdAt)),
      h("td", {}, job.lastError ? h("span", { class: "s-failed" }, job.lastError.slice(0, 80)) :
        progressText(job.progress)),
      h("td", {}, rowActions(job))));
    body.replaceChildren(table(["Job", "Model", "Region", { label: "Attempts", cls: "num" },
      { label: "Created", cls: "hide-sm" }, "Progress / error", "Actions"], rows, `Jobs ${state}`),
    pager(page, data.limit, data.total, (p) => { page = p; load(); }));
  };
  await load();
  return load;
};

function progressText(progress) {
  if (progress === null || progress === undefined) return "–";
  if (typeof progress === "object" && progress.total) return `${progress.done || 0}/${progress.total}`;
  return typeof progress === "object" ? JSON.stringify(progress) : String(progress);
}

function progressBar(progress) {
  if (!progress || typeof progress !== "object" || !progress.total) return null;
  return h("progress", { class: "progress", max: progress.total, value: progress.done || 0,
    "aria-label": `${progress.done || 0} of ${progress.total} done` });
}

function rowActions(job) {
  const id = encodeURIComponent(job.id);
  const out = [];
  if (job.state === "failed") {
    out.push(h("button", { class: "btn", type: "button", "aria-label": `Retry job ${job.id}`,
      onclick: () => act(`api/jobs/${id}/retry`) }, "Retry"));
  }
  if (job.state === "delayed") {
    out.push(h("button", { class: "btn", type: "button", "aria-label": `Promote job ${job.id}`,
      onclick: () => act(`api/jobs/${id}/promote`) }, "Promote"));
  }
  if (["waiting", "delayed", "active"].includes(job.state)) {
    out.push(h("button", { class: "btn", type: "button", "aria-label": `Cancel job ${job.id}`,
      onclick: () => act(`api/jobs/${id}/cancel`, {}, `Cancel job ${job.id}? It will not run (again).`) },
    "Cancel"));
  }
  if (job.state !== "active") {
    out.push(h("button", { class: "btn", type: "button", "aria-label": `Remove job ${job.id}`,
      onclick: () => act(`api/jobs/${id}/remove`, {}, `Remove job ${job.id}? Its queue record is deleted.`) },
    "Remove"));
  }
  return out;
}

function cleanForm(state) {
  const select = h("select", { id: "clean-state" }, ["completed", "failed"].map((s) =>
    h("option", { value: s, selected: s === state }, s)));
  const age = h("input", { id: "clean-age", type: "number", min: "0", step: "1", value: "60", inputmode: "numeric" });
  return h("form", { class: "toolbar", "aria-label": "Clean jobs by age", onsubmit: (ev) => {
    ev.preventDefault();
    act("api/queue/clean", { state: select.value, olderThanMinutes: Number(age.value || 0) },
      `Delete every ${select.value} job older than ${age.value} minutes? This cannot be undone.`);
  } },
  h("label", { for: "clean-state" }, "Clean state", select),
  h("label", { for: "clean-age" }, "Older than (minutes)", age),
  h("button", { class: "btn danger", type: "submit" }, "Clean\u2026"));
}

views.job = async (main, [id]) => {
  const box = h("div");
  main.append(h("p", {}, h("a", { href: "#/queue" }, "\u2190 Back to the queue")), box);
  let last = "";
  const load = async () => {
    let data;
    try {
      data = await api(`api/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      box.replaceChildren(h("p", { class: "empty" }, err.message));
      return;
    }
    if (unchanged(data, last)) return;
    last = JSON.stringify(data);
    box.replaceChildren(...jobDetail(id, data.job, data.certification));
  };
  await load();
  return load;
};

function jobDetail(id, job, cert) {
  const out = [h("h2", {}, "Job ", h("code", {}, id))];
  if (job) {
    out.push(h("div", { class: "panel" },
      h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", { id: "job-state" }, statusBadge(job.state)),
        h("dt", {}, "Attempts"), h("dd", {}, `${job.attempts} of ${job.maxAttempts}`),
        h("dt", {}, "Priority"), h("dd", {}, job.priority),
        h("dt", {}, "Model"), h("dd", {}, job.modelName || "–"),
        h("dt", {}, "Created"), h("dd", {}, fmtTime(job.createdAt)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(job.processedAt)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(job.finishedAt)),
        job.dueAt ? [h("dt", {}, "Due"), h("dd", {}, fmtTime(job.dueAt))] : null,
        h("dt", {}, "Progress"), h("dd", {}, progressBar(job.progress), " ", progressText(job.progress)),
        job.lastError ? [h("dt", {}, "Last error"), h("dd", {}, job.lastError)] : null,
        job.errorCategory ? [h("dt", {}, "Error category"), h("dd", {}, job.errorCategory)] : null),
      h("div", { class: "toolbar" }, rowActions(job))));
    out.push(h("h3", {}, "Payload"), h("pre", {}, JSON.stringify(job.payload, null, 2)));
    const errs = (job.errors || []).map((e, i) => h("tr", {},
      h("td", { class: "num" }, e.attempt ?? i + 1), h("td", {}, e.category || "–"),
      h("td", {}, fmtTime(e.at || e.time)),
      h("td", {}, e.message || e.error || "", e.stack ? h("details", {}, h("summary", {}, "Stack"),
        h("pre", {}, e.stack)) : null)));
    out.push(h("h3", {}, "Errors per attempt"),
      table([{ label: "Attempt", cls: "num" }, "Category", "When", "Message"], errs, "Errors per attempt"));
    out.push(h("h3", {}, "Result"), h("pre", {}, job.result === null ? "–" : JSON.stringify(job.result, null, 2)));
  } else {
    out.push(h("p", { class: "empty" }, "The queue no longer holds this job; the history below is from PostgreSQL."));
  }
  if (cert) out.push(...certificationDetail(cert));
  return out;
}

function certificationDetail(c) {
  const out = [h("h3", {}, "Certification"), h("div", { class: "panel" }, h("dl", { class: "facts" },
    h("dt", {}, "Status"), h("dd", {}, statusBadge(c.status)),
    h("dt", {}, "Model"), h("dd", {}, `${c.modelName || ""} (${c.apiModelId || c.modelId})`),
    h("dt", {}, "Region"), h("dd", {}, c.region),
    h("dt", {}, "Score / rating"), h("dd", {}, c.score === null ? "–" : `${c.score} / ${c.rating}`),
    h("dt", {}, "Certification id"), h("dd", {}, h("code", {}, c.id)),
    h("dt", {}, "Job id"), h("dd", {}, h("code", {}, c.jobId)),
    c.errorCategory ? [h("dt", {}, "Error"), h("dd", {}, `${c.errorCategory}: ${c.errorMessage || ""}`)] : null),
  ["CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED"].includes(c.status) ? h("div", { class: "toolbar" },
    h("button", { class: "btn", type: "button", onclick: () => act("api/certify",
      { mode: "single", modelIds: [c.modelId], regions: [c.region] }) }, "Certify again")) : null)];
  const log = (c.attemptLog || []).map((a) => h("tr", {}, h("td", { class: "num" }, a.attempt),
    h("td", {}, a.outcome), h("td", {}, a.errorCategory || "–"), h("td", {}, a.errorMessage || ""),
    h("td", {}, fmtTime(a.startedAt)), h("td", {}, fmtTime(a.finishedAt))));
  out.push(h("h3", {}, "Attempts"),
    table([{ label: "#", cls: "num" }, "Outcome", "Category", "Message", "Started", "Finished"], log, "Attempts"));
  if (c.testResults) out.push(h("h3", {}, "Probes"), probesTable(c.testResults));
  if (c.metrics) out.push(h("h3", {}, "Metrics"), h("pre", {}, JSON.stringify(c.metrics, null, 2)));
  return out;
}

function probesTable(results) {
  return table(["Probe", "Result", { label: "Score", cls: "num" }, { label: "Latency ms", cls: "num" }, "Detail"],
    results.map((p) => h("tr", {}, h("td", {}, p.name),
      h("td", {}, statusBadge(p.passed ? "PASSED" : "FAILED")),
      h("td", { class: "num" }, p.score ?? "–"), h("td", { class: "num" }, p.latencyMs ?? "–"),
      h("td", {}, typeof p.detail === "string" ? p.detail : JSON.stringify(p.detail ?? "")))), "Probe results");
}

views.history = async (main) => {
  const fields = [["jobId", "Job id", "text"], ["model", "Model", "text"], ["region", "Region", "text"],
    ["since", "From", "datetime-local"], ["until", "Until", "datetime-local"]];
  const inputs = {};
  const form = h("form", { class: "toolbar", role: "search", "aria-label": "Search the history" },
    fields.map(([name, label, type]) => {
      inputs[name] = h("input", { id: `q-${name}`, name, type });
      return h("label", { for: `q-${name}` }, label, inputs[name]);
    }),
    h("label", { for: "q-status" }, "Status", inputs.status = h("select", { id: "q-status", name: "status" },
      h("option", { value: "" }, "any"), CERT_STATUSES.map((s) => h("option", { value: s }, s)))),
    h("button", { class: "btn primary", type: "submit" }, "Search"));
  const results = h("div", { "aria-live": "polite" });
  let page = 1;
  const load = async () => {
    const params = new URLSearchParams({ page, limit: 20 });
    for (const [name, input] of Object.entries(inputs)) {
      if (!input.value) continue;
      params.set(name, input.type === "datetime-local" ? new Date(input.value).toISOString() : input.value);
    }
    try {
      const data = await api(`api/history?${params}`);
      results.replaceChildren(table(["Certification", "Model", "Region", "Status", { label: "Score", cls: "num" },
        { label: "Attempts", cls: "num" }, "Created", "Error"],
      data.items.map((r) => h("tr", {}, h("td", {}, jobLink(r.id)), h("td", {}, r.modelName),
        h("td", {}, r.region), h("td", {}, statusBadge(r.status)),
        h("td", { class: "num" }, r.score === null ? "–" : `${r.score} (${r.rating})`),
        h("td", { class: "num" }, r.attempts), h("td", {}, fmtTime(r.createdAt)),
        h("td", {}, r.errorCategory || ""))), "Certification history"),
      pager(page, data.limit, data.total, (p) => { page = p; load(); }, data.capped));
    } catch (err) {
      results.replaceChildren(h("p", { class: "notice error" }, err.message));
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); page = 1; load(); });
  main.append(h("h2", {}, "Certification history"), form, results);
  await load();
  return null;
};

views.workers = async (main) => {
  const box = h("div");
  main.append(h("h2", {}, "Live workers"), box);
  let last = "";
  const load = async () => {
    const data = await api("api/workers");
    if (unchanged(data.workers, last)) return;
    last = JSON.stringify(data.workers);
    box.replaceChildren(table(["Worker", "Host", { label: "PID", cls: "num" }, { label: "Concurrency", cls: "num" },
      { label: "Active jobs", cls: "num" }, "Health port", "Last heartbeat", "Up since", "State"],
    data.workers.map((w) => h("tr", {}, h("td", {}, h("code", {}, w.id)), h("td", {}, w.host || "–"),
      h("td", { class: "num" }, w.pid ?? "–"), h("td", { class: "num" }, w.concurrency ?? "–"),
      h("td", { class: "num" }, Array.isArray(w.active) ? w.active.length : (w.active ?? "–")),
      h("td", {}, w.health_port || w.healthPort || "–"), h("td", {}, fmtAgo(w.last_seen)),
      h("td", {}, fmtTime(w.started_at)), h("td", {}, w.draining ? "draining" : "running"))), "Live workers"));
  };
  await load();
  return load;
};

views.audit = async (main) => {
  const box = h("div");
  let page = 1;
  main.append(h("h2", {}, "Audit log"), box);
  const load = async () => {
    const data = await api(`api/audit?page=${page}&limit=25`);
    box.replaceChildren(table(["When", "Who", "Action", "Target", "Outcome", "From"],
      data.items.map((e) => h("tr", {}, h("td", {}, fmtTime(e.at)), h("td", {}, e.actor), h("td", {}, e.action),
        h("td", {}, e.target ? h("code", {}, e.target) : "–"), h("td", {}, e.outcome), h("td", {}, e.remoteAddr || ""))),
      "Audit log"), pager(page, data.limit, data.total, (p) => { page = p; load(); }));
  };
  await load();
  return null;
};

const CAPABILITIES = { tools: "tools", structuredOutput: "structured output", contextWindow: "context window",
  tokenAccounting: "token accounting" };
let capabilityFilter = "";

function declaredCapabilities(caps) {
  if (!caps) return [];
  return Object.keys(CAPABILITIES).filter((k) => (k === "contextWindow" ? caps[k] != null
    : k === "tokenAccounting" ? caps[k] !== false : Boolean(caps[k])));
}

function capabilityLine(c) {
  const verified = (c.verified || []).map((k) => `\u2713 ${CAPABILITIES[k] || k}`);
  const failed = (c.failedCapabilities || []).map((k) => `\u2717 ${CAPABILITIES[k] || k}`);
  const all = [...verified, ...failed];
  return all.length ? [h("br"), h("small", { class: "caps" }, all.join(", "))] : null;
}

function matrixTable(data, filter) {
  const cells = new Map(data.cells.map((c) => [`${c.modelId}|${c.region}`, c]));
  const rows = data.models.map((m) => h("tr", {}, h("th", { scope: "row" }, m.name, h("br"),
    h("small", {}, m.apiModelId),
    declaredCapabilities(m.capabilities).length ? [h("br"), h("small", { class: "caps" },
      `declares ${declaredCapabilities(m.capabilities).map((k) => CAPABILITIES[k]).join(", ")}`)] : null),
  data.regions.map((region) => {
    const c = cells.get(`${m.id}|${region}`);
    const offered = m.regions.includes(region);
    if (!c && !offered) {
      return h("td", { class: "c-none" }, h("span", { "aria-hidden": "true" }, "\u2014"),
        h("span", { class: "sr-only" }, "not offered"));
    }
    if (filter && !(c && (c.verified || []).includes(filter))) {
      const why = `${m.name} in ${region}: not certified for ${CAPABILITIES[filter]}`;
      return h("td", { class: "cell c-filtered", title: why }, h("span", { "aria-hidden": "true" }, "\u2205 "),
        h("small", {}, `not certified for ${CAPABILITIES[filter]}`), h("span", { class: "sr-only" }, why));
    }
    const standing = c ? c.standing || c.status : null;
    const until = c && c.validUntil ? new Date(c.validUntil).toLocaleString() : null;
    const validity = !c ? "" : standing === "EXPIRED" ? `, expired ${until}` : c.expiresSoon ? `, expires soon (${until})`
      : until ? `, valid until ${until}` : "";
    const caps = c && (c.verified || []).length ? `, verified ${c.verified.map((k) => CAPABILITIES[k] || k).join(", ")}` : "";
    const label = c ? `${m.name} in ${region}: ${standing}${standing === "EXPIRED" ? ` (was ${c.status})` : ""}`
      + `, rating ${c.rating || "none"}, score ${c.score ?? "none"}${validity}${caps}` : `${m.name} in ${region}: not certified yet`;
    const classes = `cell c-${c ? standing : "none"}${c && c.expiresSoon ? " c-expiring" : ""}`;
    return h("td", { class: "cell" }, h("button", { type: "button", class: classes,
      "aria-label": label, title: label, onclick: () => { location.hash = `#/pair/${m.id}/${encodeURIComponent(region)}`; } },
    c ? [statusBadge(standing), h("br"), `${c.rating || "–"} \u00B7 ${c.score === null ? "–" : Math.round(c.score)}`,
      standing === "EXPIRED" ? [h("br"), h("small", {}, `was ${LABELS[c.status] || c.status.toLowerCase()}`)] : null,
      c.expiresSoon ? [h("br"), h("small", { class: "expiring" }, "\u23F3 expires soon")] : null,
      c.recertification ? [h("br"), h("small", {}, `re-certification ${c.recertification.toLowerCase()}`)] : null,
      capabilityLine(c)]
      : "not yet"));
  })));
  return h("table", { class: "matrix" }, h("caption", { class: "sr-only" },
    filter ? `Latest verdict per model and region, certified for ${CAPABILITIES[filter]}` : "Latest verdict per model and region"),
  h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Model"), data.regions.map((r) => h("th", { scope: "col" }, r)))),
  h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty" }, "No active models."))));
}

views.certifications = async (main) => {
  const data = await api("api/certifications/matrix");
  const wrap = h("div", { class: "table-wrap" }, matrixTable(data, capabilityFilter));
  const filter = h("select", { id: "cap-filter", onchange: () => {
    capabilityFilter = filter.value;
    wrap.replaceChildren(matrixTable(data, capabilityFilter));
  } }, h("option", { value: "" }, "any verdict"),
  Object.entries(CAPABILITIES).map(([k, label]) => h("option", { value: k, selected: k === capabilityFilter }, label)));
  main.append(h("h2", {}, "Latest verdicts"),
    h("p", { class: "legend" }, statusBadge("CERTIFIED"), statusBadge("QUALITY_WARNING"), statusBadge("FAILED"),
      statusBadge("EXPIRED"), h("span", { class: "expiring" }, "\u23F3 expires within a day"),
      h("span", {}, "\u2713 capability verified, \u2717 declared but failed."),
      h("span", {}, "Each cell: status, rating \u00B7 score. Select a cell for its history.")),
    h("p", {}, h("label", { for: "cap-filter" }, "Certified for ", filter)),
    wrap,
    certifyForm(data));
  return null;
};

function certifyForm(data) {
  const mode = h("select", { id: "cf-mode" }, h("option", { value: "single" }, "one model, one region"),
    h("option", { value: "multiple" }, "chosen models"), h("option", { value: "all" }, "all active models"));
  const modelBoxes = data.models.map((m) => h("input", { type: "checkbox", value: m.id, id: `cf-m-${m.id}` }));
  const regionBoxes = data.regions.map((r, i) => h("input", { type: "checkbox", value: r, id: `cf-r-${i}` }));
  const priority = h("select", { id: "cf-priority" }, ["normal", "high", "low"].map((p) => h("option", { value: p }, p)));
  const modelSet = h("fieldset", {}, h("legend", {}, "Models"), h("div", { class: "checks" }, data.models.map((m, i) =>
    h("label", { for: modelBoxes[i].id }, modelBoxes[i], m.name))));
  mode.addEventListener("change", () => { modelSet.disabled = mode.value === "all"; });
  const form = h("form", { class: "panel", "aria-labelledby": "cf-title", onsubmit: async (ev) => {
    ev.preventDefault();
    const chosen = (boxes) => boxes.filter((b) => b.checked).map((b) => b.value);
    const result = await act("api/certify", { mode: mode.value, modelIds: chosen(modelBoxes),
      regions: chosen(regionBoxes), priority: priority.value });
    if (result) notify(`Done: ${result.outcome}. Job ${result.result.jobId || ""}`);
  } },
  h("h2", { id: "cf-title" }, "Certify"),
  h("label", { for: "cf-mode" }, "What", mode),
  modelSet,
  h("fieldset", {}, h("legend", {}, "Regions"), h("div", { class: "checks" }, data.regions.map((r, i) =>
    h("label", { for: regionBoxes[i].id }, regionBoxes[i], r)))),
  h("label", { for: "cf-priority" }, "Priority", priority),
  h("p", {}, h("button", { class: "btn primary", type: "submit" }, "Certify")));
  return form;
}

views.pair = async (main, [modelId, region]) => {
  const data = await api(`api/certifications/pair?modelId=${modelId}&region=${encodeURIComponent(region)}`);
  const runs = data.runs;
  main.append(h("p", {}, h("a", { href: "#/certifications" }, "\u2190 Back to the matrix")),
    h("h2", {}, `${data.model.name} in ${data.region}`),
    h("p", {}, `${data.model.provider} \u00B7 ${data.model.apiModelId} \u00B7 ${runs.length} certification(s)`),
    chart(runs),
    transitionLegend(data.events || []),
    table(["Certification", "Status", "Standing change", { label: "Score", cls: "num" },
      { label: "p50 latency ms", cls: "num" }, { label: "Availability", cls: "num" }, "Finished", "Probes and metrics"],
    runs.slice().reverse().map((r) => h("tr", { "data-run": r.id,
      class: (r.transitions || []).length ? `transition t-${r.transitions[r.transitions.length - 1].kind}` : null },
      h("td", {}, jobLink(r.id)),
      h("td", {}, statusBadge(r.status)),
      h("td", {}, (r.transitions || []).length ? r.transitions.map(transitionBadge) : "–"),
      h("td", { class: "num" }, r.score === null ? "–" : `${r.score} (${r.rating})`),
      h("td", { class: "num" }, r.latencyP50Ms ?? "–"),
      h("td", { class: "num" }, availability(r)), h("td", {}, fmtTime(r.completedAt)),
      h("td", {}, r.testResults ? h("details", {}, h("summary", {}, `${r.testResults.length} probes`),
        probesTable(r.testResults), h("pre", {}, JSON.stringify(r.metrics, null, 2))) : (r.errorMessage || "–")))),
    "Runs of this pair"));
  return null;
};

// A standing that changed class: an icon and a sentence, never colour alone.
const TRANSITIONS = {
  degraded: { icon: "\u25BC", word: "Degraded" },
  recovered: { icon: "\u25B2", word: "Recovered" },
  expired: { icon: "\u231B", word: "Expired" },
};

function transitionText(e) {
  const was = e.previousStatus ? `${statusWord(e.previousStatus)}${e.previousScore === null ? "" : ` ${e.previousScore}`}` : "";
  if (e.kind === "expired") return `certificate expired ${fmtTime(e.at)} (was ${was})`;
  const now = `${statusWord(e.status)}${e.score === null ? "" : ` ${e.score}`}`;
  return `from ${was} to ${now}`;
}

function transitionBadge(e) {
  const t = TRANSITIONS[e.kind] || { icon: "\u2022", word: e.kind };
  return h("span", { class: `transition-badge t-${e.kind}`, "data-kind": e.kind, title: transitionText(e) },
    h("span", { "aria-hidden": "true" }, t.icon), ` ${t.word}: `, h("small", {}, transitionText(e)));
}

function transitionLegend(events) {
  const counts = { degraded: 0, recovered: 0, expired: 0 };
  events.forEach((e) => { if (e.kind in counts) counts[e.kind] += 1; });
  return h("p", { class: "legend", id: "transitions-legend" },
    Object.entries(TRANSITIONS).map(([kind, t]) => h("span", { class: `transition-badge t-${kind}` },
      h("span", { "aria-hidden": "true" }, t.icon), ` ${t.word} (${counts[kind]})`)),
    h("span", {}, "Rows where the standing changed class are marked."));
}

function chart(runs) {
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, ...kids) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    kids.forEach((k) => el.append(k instanceof Node ? k : document.createTextNode(String(k))));
    return el;
  };
  const W = 640, H = 220, L = 44, R = 56, T = 16, B = 28;
  const points = runs.filter((r) => r.completedAt);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `Score and p50 latency of ${points.length} finished runs, oldest to newest` });
  svg.append(s("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafbfc", stroke: "#d0d7de" }));
  if (!points.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#4a5360" }, "No finished runs yet"));
    return svg;
  }
  const maxLat = Math.max(1, ...points.map((r) => r.latencyP50Ms || 0));
  const x = (i) => L + (points.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (points.length - 1));
  const yScore = (v) => T + (1 - v / 100) * (H - T - B);
  const yLat = (v) => T + (1 - v / maxLat) * (H - T - B);
  for (const v of [0, 50, 100]) {
    svg.append(s("line", { x1: L, x2: W - R, y1: yScore(v), y2: yScore(v), stroke: "#e1e4e8" }),
      s("text", { x: L - 6, y: yScore(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#0b5cad" }, v));
  }
  svg.append(s("text", { x: W - R + 6, y: T + 10, "font-size": 11, fill: "#8a5a00" }, `${Math.round(maxLat)} ms`),
    s("text", { x: W - R + 6, y: H - B, "font-size": 11, fill: "#8a5a00" }, "0 ms"),
    s("text", { x: L, y: H - 8, "font-size": 11, fill: "#4a5360" }, "\u25CF score (left)  \u25A0 p50 latency (right, dashed)"));
  const line = (key, y) => points.map((r, i) => (r[key] === null || r[key] === undefined ? null : `${x(i)},${y(r[key])}`))
    .filter(Boolean).join(" ");
  svg.append(s("polyline", { points: line("score", yScore), fill: "none", stroke: "#0b5cad", "stroke-width": 2 }),
    s("polyline", { points: line("latencyP50Ms", yLat), fill: "none", stroke: "#8a5a00", "stroke-width": 2,
      "stroke-dasharray": "5 4" }));
  points.forEach((r, i) => {
    if (r.score !== null) {
      svg.append(s("circle", { cx: x(i), cy: yScore(r.score), r: 4, fill: "#0b5cad" },
        s("title", {}, `${fmtTime(r.completedAt)}: score ${r.score} (${r.status})`)));
    }
    (r.transitions || []).forEach((e, k) => {
      const t = TRANSITIONS[e.kind];
      if (!t || r.score === null) return;
      svg.append(s("text", { x: x(i), y: Math.max(T + 10, yScore(r.score) - 8 - 12 * k), "text-anchor": "middle",
        "font-size": 12, fill: "#1b1f24", class: `chart-mark t-${e.kind}` }, t.icon, s("title", {}, `${t.word}: ${transitionText(e)}`)));
    });
    if (r.latencyP50Ms !== null && r.latencyP50Ms !== undefined) {
      svg.append(s("rect", { x: x(i) - 3.5, y: yLat(r.latencyP50Ms) - 3.5, width: 7, height: 7, fill: "#8a5a00" },
        s("title", {}, `${fmtTime(r.completedAt)}: p50 latency ${r.latencyP50Ms} ms`)));
    }
  });
  return svg;
}

// ---- schedules ----

let role = null;
async function myRole() {
  if (role === null) role = (await api("api/me")).role;
  return role;
}

function scheduleTarget(sc) {
  const models = sc.models.length ? sc.models.map((m) => m.name || m.id).join(", ") : "all active models";
  const regions = sc.regions.length ? sc.regions.join(", ") : "every region each offers";
  return `${models} \u00B7 ${regions}`;
}

function scheduleFilter(sc) {
  if (!sc.filter) return "every pair";
  if (sc.filter.standing) return `only ${sc.filter.standing.join(", ")}`;
  return `only expiring within ${Math.round(sc.filter.expiresWithinSeconds / 3600 * 10) / 10} h`;
}

function slotText(slot) {
  const what = slot.outcome === "dropped" ? "dropped (catch-up skip)"
    : `${slot.queued} queued, ${slot.skipped} already live`;
  const missed = slot.missed ? `, stood in for ${slot.missed} missed` : "";
  return `${fmtTime(slot.slotAt)}: ${what}${missed}`;
}

views.schedules = async (main) => {
  const writable = (await myRole()) !== "read";
  const box = h("div");
  const formBox = h("div");
  main.append(h("h2", {}, "Schedules"));
  if (!writable) main.append(h("p", { class: "notice" }, "This dashboard is read-only: schedules can be looked at, not changed."));
  main.append(box, formBox);
  let last = "";
  let editing = null;
  const load = async (force) => {
    const data = await api("api/schedules");
    if (!force && unchanged(data, last)) return;
    last = JSON.stringify(data);
    const rows = data.schedules.map((sc) => h("tr", { "data-schedule": sc.id },
      h("td", {}, sc.name), h("td", {}, h("code", {}, sc.cron), h("br"), h("small", {}, sc.timezone)),
      h("td", {}, scheduleTarget(sc), h("br"), h("small", {}, `priority ${sc.priority}`)),
      h("td", {}, scheduleFilter(sc)), h("td", {}, sc.catchUp === "once" ? "once for all missed" : "skip missed"),
      h("td", { class: "sched-state" }, sc.paused ? h("span", { class: "status s-paused" }, h("span", { "aria-hidden": "true" }, "\u2016"), "Paused")
        : h("span", { class: "status s-active" }, h("span", { "aria-hidden": "true" }, "\u25B6"), "Active")),
      h("td", {}, sc.paused ? "– (paused)" : fmtTime(sc.nextSlotAt)),
      h("td", {}, sc.recentSlots.length ? h("ul", { class: "slots" }, sc.recentSlots.map((s) => h("li", {}, slotText(s))))
        : "none yet"),
      h("td", {}, writable ? [
        h("button", { class: "btn", type: "button", "aria-label": `${sc.paused ? "Resume" : "Pause"} schedule ${sc.name}`,
          onclick: async () => {
            if (await change(`api/schedules/${sc.id}/${sc.paused ? "resume" : "pause"}`, "POST", {})) await load(true);
          } }, sc.paused ? "Resume" : "Pause"),
        h("button", { class: "btn", type: "button", "aria-label": `Edit schedule ${sc.name}`,
          onclick: () => { editing = sc; drawForm(); } }, "Edit"),
        h("button", { class: "btn danger", type: "button", "aria-label": `Delete schedule ${sc.name}`,
          onclick: async () => {
            if (await change(`api/schedules/${sc.id}`, "DELETE", {}, `Delete schedule ${sc.name}? The jobs it made stay.`)) await load(true);
          } }, "Delete\u2026")] : "–")));
    box.replaceChildren(table(["Name", "Cron", "Target", "Filter", "Catch-up", "State", "Next slot", "Last fired slots",
      "Actions"], rows, "Schedules"));
  };
  const drawForm = async () => {
    if (!writable) return;
    const matrix = await api("api/certifications/matrix");
    formBox.replaceChildren(scheduleForm(matrix, editing, async (saved) => {
      if (saved) { editing = null; await load(true); drawForm(); }
    }, () => { editing = null; drawForm(); }));
  };
  await load(true);
  await drawForm();
  return () => load(false);
};

function scheduleForm(matrix, sc, done, cancel) {
  const field = (id, label, input) => h("label", { for: id }, label, input);
  const name = h("input", { id: "sf-name", required: true, maxlength: 200, value: sc ? sc.name : "" });
  const cron = h("input", { id: "sf-cron", required: true, value: sc ? sc.cron : "0 3 * * *", spellcheck: "false" });
  const zone = h("input", { id: "sf-zone", value: sc ? sc.timezone : "UTC" });
  const chosen = new Set(sc ? sc.models.map((m) => m.id) : []);
  const boxes = matrix.models.map((m) => h("input", { type: "checkbox", value: m.id, id: `sf-m-${m.id}`, checked: chosen.has(m.id) }));
  const regions = h("input", { id: "sf-regions", placeholder: "empty: every region each model offers",
    value: sc ? sc.regions.join(", ") : "" });
  const priority = h("select", { id: "sf-priority" }, ["normal", "high", "low"].map((p) =>
    h("option", { value: p, selected: sc && sc.priority === p }, p)));
  const current = !sc || !sc.filter ? "" : sc.filter.standing ? sc.filter.standing.join(",") : "expiring";
  const filter = h("select", { id: "sf-filter" },
    [["", "every pair"], ["FAILED", "only FAILED pairs"], ["EXPIRED,NEVER_CERTIFIED", "only expired or never certified"],
      ["expiring", "only expiring within (hours)"]].map(([v, l]) => h("option", { value: v, selected: v === current }, l)));
  const hours = h("input", { id: "sf-hours", type: "number", min: "1", step: "1",
    value: sc && sc.filter && sc.filter.expiresWithinSeconds ? String(sc.filter.expiresWithinSeconds / 3600) : "24" });
  const catchUp = h("select", { id: "sf-catchup" }, [["once", "once for all missed slots"], ["skip", "skip missed slots"]]
    .map(([v, l]) => h("option", { value: v, selected: sc && sc.catchUp === v }, l)));
  const paused = h("input", { id: "sf-paused", type: "checkbox", checked: sc ? sc.paused : false });
  const form = h("form", { class: "panel", id: "schedule-form", "aria-labelledby": "sf-title", onsubmit: async (ev) => {
    ev.preventDefault();
    const modelIds = boxes.filter((b) => b.checked).map((b) => b.value);
    const regionList = regions.value.split(",").map((r) => r.trim()).filter(Boolean);
    let filterBody = null;
    if (filter.value === "expiring") filterBody = { expiresWithinSeconds: Math.round(Number(hours.value) * 3600) };
    else if (filter.value) filterBody = { standing: filter.value.split(",") };
    const body = { name: name.value, cron: cron.value, timezone: zone.value, priority: priority.value,
      catchUp: catchUp.value, paused: paused.checked, filter: filterBody,
      modelIds: modelIds.length ? modelIds : null, regions: regionList.length ? regionList : null };
    if (!sc) {
      for (const key of ["filter", "modelIds", "regions"]) if (body[key] === null) delete body[key];
    }
    done(await change(sc ? `api/schedules/${sc.id}` : "api/schedules", sc ? "PATCH" : "POST", body));
  } },
  h("h2", { id: "sf-title" }, sc ? `Change schedule ${sc.name}` : "New schedule"),
  h("div", { class: "toolbar" }, field("sf-name", "Name", name), field("sf-cron", "Cron (5 fields, or 6 with seconds)", cron),
    field("sf-zone", "Time zone (IANA)", zone), field("sf-priority", "Priority", priority)),
  h("fieldset", {}, h("legend", {}, "Models (none chosen: all active models)"), h("div", { class: "checks" },
    matrix.models.map((m, i) => h("label", { for: boxes[i].id }, boxes[i], m.name)))),
  h("div", { class: "toolbar" }, field("sf-regions", "Regions (comma-separated)", regions),
    field("sf-filter", "Only", filter), field("sf-hours", "Hours", hours), field("sf-catchup", "After downtime", catchUp),
    h("label", { for: "sf-paused", class: "inline" }, paused, "Paused")),
  h("p", {}, h("button", { class: "btn primary", type: "submit" }, sc ? "Save changes" : "Create schedule"), " ",
    sc ? h("button", { class: "btn", type: "button", onclick: cancel }, "Cancel") : null));
  return form;
}

// ---- routing ----

// Focus moves to the new view only on navigation, so the first Tab of a fresh page reaches the skip link.
async function route(event) {
  const parts = (location.hash.replace(/^#\/?/, "") || "queue").split("/").map(decodeURIComponent);
  const name = views[parts[0]] ? parts[0] : "queue";
  document.querySelectorAll("nav a").forEach((a) => {
    const current = a.dataset.view === name || (a.dataset.view === "queue" && name === "job") ||
      (a.dataset.view === "certifications" && name === "pair");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (name !== "queue") document.querySelectorAll("#counts a").forEach((a) => a.removeAttribute("aria-current"));
  const titles = { queue: "Queue", job: "Job", history: "History", workers: "Workers",
    certifications: "Certifications", pair: "Certification history", audit: "Audit log", schedules: "Schedules" };
  document.title = `${titles[name]} \u00B7 certq dashboard`;
  const main = $("#main");
  main.replaceChildren();
  refreshView = null;
  try {
    refreshView = await views[name](main, parts.slice(1));
  } catch (err) {
    main.append(h("p", { class: "notice error" }, `Could not load this view: ${err.message}`));
  }
  if (event) main.focus({ preventScroll: true });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#pause-toggle").addEventListener("click", () => {
    const paused = $("#pause-toggle").dataset.paused === "1";
    if (paused) act("api/queue/resume");
    else act("api/queue/pause", {}, "Pause the queue? Workers finish their running jobs and claim no new ones.");
  });
  window.addEventListener("hashchange", route);
  route(null).then(tick);
  startPolling();
});
