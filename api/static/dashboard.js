// The tgjobs dashboard: every queue's counts, streams, consumer groups, failed jobs and
// dead letters, kept live by GET /api/events (read with fetch(), parsed by sse.js).
// Counts arrive with the stream; the rest is fetched once at connect and again, debounced,
// after a queue's job events. Every call carries the token entered on the page.
import { drawChart, Throughput } from "./chart.js";
import { serverSentEvents } from "./sse.js";

const TOKEN_KEY = "tgjobs.token";
const DETAIL_REFRESH_MS = 2000;  // at most one refetch of streams and touched queues per interval
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
const STALE_STREAM_MS = 45000;  // the server sends a keep-alive after 15 s of quiet
const LIST_LIMIT = 5;  // failed jobs and dead letters shown per queue
const EVENTS_SHOWN = 12;
const JOB_STATES = ["waiting", "active", "delayed", "paused", "completed", "failed"];
const COUNT_STATES = [...JOB_STATES, "dead"];
const GROUP_COLUMNS = ["lane", "length", "group", "lag", "pending", "consumers"];
const FINISHING_EVENTS = new Set(["completed", "failed"]);
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563"];

const state = {
  token: localStorage.getItem(TOKEN_KEY) ?? "",
  queues: [],  // names, in the server's order
  counts: {},  // queue -> the figures' QueueCounts
  streams: {},  // queue -> QueueStreams of GET /api/streams
  details: {},  // queue -> {paused, length, lag, pending, failedJobs, deadLetters}
  throughput: new Throughput(),
  events: [],  // newest first
  busy: new Set(),  // buttons whose call is under way
  rendered: {},  // queue -> the JSON its card was last drawn from
};

const $ = (selector) => document.querySelector(selector);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// -- talking to the API ----------------------------------------------------------------

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers,
                                       body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, answer?.message ?? response.statusText);
  return answer;
}

function explain(error) {
  if (error.status === 401 && !state.token) return "The API needs a token (401): enter one above.";
  if (error.status === 401) return `The token was refused (401): ${error.message}. Enter a valid token above.`;
  if (error.status === 403) return `Not allowed with this token (403): ${error.message}.`;
  return error.status ? `The API answered ${error.status}: ${error.message}` : `${error.message}`;
}

async function loadStreams() {
  const overview = await api("GET", "/api/streams");
  state.streams = overview.queues;
  state.queues = Object.keys(overview.queues);
}

async function loadQueue(queue) {
  const name = encodeURIComponent(queue);
  const [view, dead] = await Promise.all([
    api("GET", `/api/queues/${name}?includeJobs=true&status=failed&limit=${LIST_LIMIT}`),
    api("GET", `/api/queues/${name}/dead?limit=${LIST_LIMIT}`),
  ]);
  state.details[queue] = { paused: view.paused, length: view.length, lag: view.lag, pending: view.pending,
                           failedJobs: view.jobs ?? [], deadLetters: dead.items };
  state.counts[queue] = { ...state.counts[queue], ...view.counts, dead: view.dead, lag: view.lag };
}

async function loadEverything() {
  await loadStreams();
  await Promise.all(state.queues.map(loadQueue));
  render();
}

// -- the event stream ------------------------------------------------------------------

const connection = { generation: 0, controller: null };

// One connection at a time: a new token ends the old loop (its generation is stale).
async function connect() {
  connection.controller?.abort();
  const generation = ++connection.generation;
  let delayMs = RECONNECT_MIN_MS;
  while (generation === connection.generation) {
    const controller = new AbortController();
    connection.controller = controller;
    let lastChunkAt = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastChunkAt > STALE_STREAM_MS) controller.abort();
    }, STALE_STREAM_MS / 3);
    try {
      showConnection("connecting", "connecting…");
      const response = await fetch("/api/events", { headers: authHeaders(), signal: controller.signal });
      if (response.status === 401 || response.status === 403) {
        const answer = await response.json().catch(() => ({}));
        const refusal = response.status === 403 ? "not allowed" : state.token ? "token refused" : "token needed";
        showConnection("refused", refusal);
        showMessage(explain(new ApiError(response.status, answer.message ?? response.statusText)), "error");
        return;  // until the operator enters another token
      }
      if (!response.ok) throw new ApiError(response.status, response.statusText);
      showConnection("live", "live");
      hideMessage();
      delayMs = RECONNECT_MIN_MS;
      await loadEverything();
      for await (const message of serverSentEvents(response.body, () => { lastChunkAt = Date.now(); })) {
        handleMessage(message);
      }
      throw new Error("the event stream ended");
    } catch (error) {
      if (generation !== connection.generation) return;
      showConnection("reconnecting", `reconnecting in ${Math.round(delayMs / 1000)} s`);
      if (error.name !== "AbortError") showMessage(`Connection lost: ${explain(error)}`, "error");
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, RECONNECT_MAX_MS);
    } finally {
      clearInterval(watchdog);
      controller.abort();
    }
  }
}

function handleMessage(message) {
  const data = JSON.parse(message.data);
  if (message.event === "figures") {
    for (const [queue, counts] of Object.entries(data.queues)) state.counts[queue] = counts;
    render();
  } else if (message.event === "job") {
    state.events.unshift({ ...data, at: Date.now() });
    state.events.length = Math.min(state.events.length, EVENTS_SHOWN);
    if (FINISHING_EVENTS.has(data.event)) {
      state.throughput.count(data.queue, Number(data.count ?? 1));  // a fast-path batch counts its jobs
      requestAnimationFrame(renderChart);
    }
    renderEvents();
    scheduleRefresh(data.queue);
  }
}

const refresh = { timer: null, lastAt: 0, queues: new Set() };

function scheduleRefresh(queue) {
  refresh.queues.add(queue);
  if (refresh.timer) return;
  const waitMs = Math.max(0, refresh.lastAt + DETAIL_REFRESH_MS - Date.now());
  refresh.timer = setTimeout(async () => {
    refresh.timer = null;
    refresh.lastAt = Date.now();
    const queues = [...refresh.queues];
    refresh.queues.clear();
    try {
      await Promise.all([loadStreams(), ...queues.map(loadQueue)]);
      render();
    } catch (error) {
      showMessage(explain(error), "error");
    }
  }, waitMs);
}

// -- buttons ---------------------------------------------------------------------------

const ACTIONS = {
  pause: (queue) => api("POST", `/api/queues/${encodeURIComponent(queue)}`, { action: "pause" }),
  resume: (queue) => api("POST", `/api/queues/${encodeURIComponent(queue)}`, { action: "resume" }),
  retry: (queue, job) => api("DELETE", `/api/jobs/${encodeURIComponent(job)}?action=retry`),
  replay: (queue, job) => api("POST", `/api/queues/${encodeURIComponent(queue)}/dead`,
                              { action: "replay", ids: [job] }),
};
const DONE = { pause: "paused", resume: "resumed", retry: "queued again", replay: "replayed" };

async function runAction(action, queue, job) {
  const key = `${action}:${queue}:${job ?? ""}`;
  state.busy.add(key);
  render();
  try {
    await ACTIONS[action](queue, job);
    showMessage(`${job ?? queue} ${DONE[action]}`, "info");
    await loadQueue(queue);
  } catch (error) {
    showMessage(explain(error), "error");
  } finally {
    state.busy.delete(key);
    render();
  }
}

// -- drawing ---------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "style") Object.assign(node.style, value);  // CSSOM: allowed by the page's CSP
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const number = (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString("en"));
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString("en-GB") : "–");
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function button(action, queue, job, label) {
  const busy = state.busy.has(`${action}:${queue}:${job ?? ""}`);
  return el("button", { type: "button", class: `action ${action}`, "data-action": action, "data-queue": queue,
                        "data-job": job, disabled: busy }, busy ? "…" : label);
}

function queueCard(queue) {
  const counts = state.counts[queue] ?? {};
  const details = state.details[queue] ?? { failedJobs: [], deadLetters: [] };
  const streams = state.streams[queue] ?? { streams: [], dead: [] };
  const color = COLORS[state.queues.indexOf(queue) % COLORS.length];
  const groupRows = streams.streams.flatMap((stream) => stream.groups.map((group) => el("tr", {},
    el("td", {}, stream.partition ? `${stream.lane} p${stream.partition}` : stream.lane),
    el("td", { class: "num" }, number(stream.length)), el("td", {}, group.name),
    el("td", { class: "num" }, number(group.lag)), el("td", { class: "num" }, number(group.pending)),
    el("td", { class: "num", title: group.consumers.map((c) => c.name).join("\n") }, group.consumers.length))));
  return el("section", { class: "panel queue", "data-queue": queue, "data-paused": details.paused ?? false },
    el("header", {},
      el("h2", {}, el("span", { class: "swatch", style: { background: color } }), queue),
      details.paused ? el("span", { class: "badge" }, "paused") : null,
      button(details.paused ? "resume" : "pause", queue, null, details.paused ? "Resume" : "Pause")),
    el("dl", { class: "counts" }, COUNT_STATES.map((name) => el("div", { "data-count": name, class: name },
      el("dt", {}, name), el("dd", {}, number(counts[name]))))),
    el("p", { class: "figures" }, `stream length ${number(details.length)} · lag ${number(counts.lag)}`
      + ` · pending ${number(details.pending)}`),
    groupRows.length ? el("table", { class: "groups" },
      el("thead", {}, el("tr", {}, GROUP_COLUMNS.map((name) => el("th", {}, name)))),
      el("tbody", {}, groupRows)) : el("p", { class: "empty" }, "no consumer group yet: no worker has read this queue"),
    el("h3", {}, "Failed jobs"),
    listOf(details.failedJobs, "no failed jobs", (job) => el("li", {},
      el("code", { title: job.id }, job.id),
      el("span", { class: "meta" }, `${plural(job.attemptsMade, "attempt")} · ${clock(job.finishedAt)}`),
      button("retry", queue, job.id, "Retry"), el("span", { class: "error" }, job.failedReason ?? ""))),
    el("h3", {}, `Dead letters (${number(counts.dead)})`),
    listOf(details.deadLetters, "no dead letters", (letter) => el("li", { "data-dead": letter.jobId },
      el("code", { title: letter.jobId }, letter.jobId),
      el("span", { class: "meta" }, `${plural(letter.attempts, "attempt")} · ${clock(letter.failedAt)}`),
      button("replay", queue, letter.jobId, "Replay"),
      el("span", { class: "error" }, `${letter.errorType}: ${letter.error}`))));
}

function listOf(items, emptyText, item) {
  return items.length ? el("ul", { class: "items" }, items.map(item)) : el("p", { class: "empty" }, emptyText);
}

function render() {
  const container = $("#queues");
  for (const queue of state.queues) {
    const drawnFrom = JSON.stringify([state.counts[queue], state.details[queue], state.streams[queue],
                                      [...state.busy].filter((key) => key.split(":")[1] === queue)]);
    const existing = container.querySelector(`[data-queue="${CSS.escape(queue)}"]`);
    if (existing && state.rendered[queue] === drawnFrom) continue;  // a click on it is not lost to a redraw
    state.rendered[queue] = drawnFrom;
    const card = queueCard(queue);
    if (existing) existing.replaceWith(card);
    else container.append(card);
  }
  renderTotal();
}

// The figures' totalJobs, counted again here: queue refetches update counts between figures.
function renderTotal() {
  const jobsOf = (queue) => JOB_STATES.reduce((sum, name) => sum + (state.counts[queue]?.[name] ?? 0), 0);
  const jobs = state.queues.reduce((sum, queue) => sum + jobsOf(queue), 0);
  $("#total").textContent = `${number(jobs)} jobs · updated ${new Date().toLocaleTimeString("en-GB")}`;
}

function renderEvents() {
  $("#events").replaceChildren(...state.events.map((e) => el("li", { "data-event": e.event },
    el("time", {}, new Date(e.at).toLocaleTimeString("en-GB")), el("span", { class: "queue-name" }, e.queue),
    el("span", { class: `event ${e.event}` }, e.event), el("code", {}, e.job || (e.count ? `${e.count} jobs` : "")),
    e.error ? el("span", { class: "error" }, e.error) : null)));
}

function renderChart() {
  drawChart($("#chart"), state.queues.map((queue) => state.throughput.perSecond(queue)), COLORS);
  $("#legend").replaceChildren(...state.queues.map((queue, index) => el("li", {},
    el("span", { class: "swatch", style: { background: COLORS[index % COLORS.length] } }),
    `${queue}: ${number(state.throughput.total(queue))} in 5 min`)));
}

// -- the page around it ----------------------------------------------------------------

function showConnection(kind, text) {
  const badge = $("#connection");
  badge.dataset.state = kind;
  badge.textContent = text;
}

function showMessage(text, kind) {
  const message = $("#message");
  message.textContent = text;
  message.dataset.kind = kind;
  message.hidden = false;
}

function hideMessage() {
  $("#message").hidden = true;
}

function start() {
  const input = $("#token");
  input.value = state.token;
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = input.value.trim();
    if (state.token) localStorage.setItem(TOKEN_KEY, state.token);
    else localStorage.removeItem(TOKEN_KEY);
    connect();
  });
  $("#queues").addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    if (target && !target.disabled) runAction(target.dataset.action, target.dataset.queue, target.dataset.job);
  });
  setInterval(renderChart, 1000);  // slides the window; no API call
  renderChart();
  connect();
}

start();
