// The playground page. Every model-written string reaches the DOM as text
// (textContent), never as markup; the one exception is the answer, which the
// server renders from Markdown with every tag escaped.
"use strict";

const $ = (id) => document.getElementById(id);

let config = null;
let source = null;
let current = null; // {id, panel, judge, synthesizer, state}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function fmtInt(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "";
}

function fmtSeconds(s) {
  return typeof s === "number" ? `${s.toFixed(1)}s` : "";
}

function fmtCost(usage) {
  const cost = usage && typeof usage.cost === "number" ? usage.cost : null;
  return cost === null ? "" : `$${cost.toFixed(4)}`;
}

// ---- the form ---------------------------------------------------------------

async function loadConfig() {
  config = await (await fetch("/api/config")).json();
  const preset = $("preset");
  clear(preset);
  preset.append(el("option", { value: "" }, `default (${config.resolved.preset})`));
  for (const [name, p] of Object.entries(config.presets)) {
    preset.append(el("option", { value: name }, `${name}: ${p.panel.join(", ")} → ${p.judge}`));
  }
  const d = config.defaults;
  preset.value = d.preset || "";
  $("panel-models").value = (d.analysis_models || []).join(", ");
  $("judge-model").value = d.model || "";
  $("synthesis-model").value = d.synthesis_model || "";
  $("web-tools").checked = Boolean(d.web_tools);
  $("key-status").textContent = config.api_key_set
    ? `${config.api_key_env} is set on the server`
    : `no ${config.api_key_env} on the server: the local preset runs the embedded model`;
  summarize();
}

function chosenPreset() {
  return $("preset").value || (config ? config.resolved.preset : "");
}

function summarize() {
  if (!config) return;
  const preset = config.presets[chosenPreset()];
  const panel = $("panel-models").value.trim() || (preset ? preset.panel.join(", ") : "");
  const judge = $("judge-model").value.trim() || (preset ? preset.judge : "");
  $("settings-summary").textContent = `${panel} → ${judge}`;
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  const error = $("form-error");
  error.hidden = true;
  if (!question) {
    error.textContent = "Type a question first.";
    error.hidden = false;
    return;
  }
  const body = {
    question,
    preset: $("preset").value || null,
    analysis_models: $("panel-models").value.trim() || null,
    model: $("judge-model").value.trim() || null,
    synthesis_model: $("synthesis-model").value.trim() || null,
    web_tools: $("web-tools").checked,
  };
  $("ask").disabled = true;
  const response = await fetch("/api/runs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    error.textContent = data.error || `HTTP ${response.status}`;
    error.hidden = false;
    $("ask").disabled = false;
    return;
  }
  openRun(data.id);
  loadHistory();
}

async function stop() {
  if (!current) return;
  $("stop").disabled = true;
  await fetch(`/api/runs/${encodeURIComponent(current.id)}/cancel`, { method: "POST" });
}

// ---- earlier runs -------------------------------------------------------------

async function loadHistory() {
  const data = await (await fetch("/api/runs")).json();
  const list = clear($("run-list"));
  for (const run of data.runs) {
    const state = run.state === "done" ? run.status || "done" : run.state;
    const button = el(
      "button",
      { type: "button", "data-run": run.id, class: current && current.id === run.id ? "current" : null },
      el("span", { class: "q" }, run.question.length > 90 ? `${run.question.slice(0, 89)}…` : run.question),
      el("span", { class: `badge ${state}` }, run.failure_reason ? `${state}: ${run.failure_reason}` : state),
    );
    button.addEventListener("click", () => openRun(run.id));
    list.append(el("li", {}, button));
  }
}

// ---- one run ----------------------------------------------------------------------

function openRun(id) {
  if (source) source.close();
  if (location.hash !== `#run=${id}`) history.replaceState(null, "", `#run=${id}`);
  current = { id, panel: [], state: "running", streams: {} };
  resetRunView();
  source = new EventSource(`/api/runs/${encodeURIComponent(id)}/events`);
  source.onmessage = (message) => apply(JSON.parse(message.data));
  source.onerror = () => {
    // The server ended the stream (or went away); a finished run has closed it already.
    if (source) source.close();
    if (current && current.id === id && current.state === "running") setRunState("disconnected");
  };
}

function resetRunView() {
  $("run").hidden = false;
  for (const id of ["answer-section", "analysis", "citations-section", "responses", "usage"]) {
    $(id).hidden = true;
  }
  for (const id of ["panel-cards", "banners", "answer", "answer-live", "consensus", "contradictions",
    "partial-coverage", "unique-insights", "blind-spots", "citations", "response-tabs",
    "response-panes", "usage-table"]) {
    clear($(id));
  }
  $("download").hidden = true;
  $("run-question").textContent = "";
  for (const card of [$("judge-card"), $("synthesis-card")]) {
    setCard(card, "waiting", "waiting");
    card.querySelector(".model").textContent = "";
  }
}

function setRunState(state) {
  const badge = $("run-state");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  const running = state === "running";
  $("stop").disabled = !running;
  $("ask").disabled = running;
}

function setCard(card, state, status) {
  card.dataset.state = state;
  card.querySelector(".status").textContent = status;
}

function panelCard(model) {
  let card = [...$("panel-cards").children].find((c) => c.dataset.model === model);
  if (!card) {
    card = el(
      "article",
      { class: "card", "data-model": model, "data-state": "waiting" },
      el("header", {}, el("span", { class: "role" }, "panel"), " ", el("span", { class: "model" }, model)),
      el("p", { class: "status" }, "waiting"),
      el("div", { class: "text" }),
    );
    $("panel-cards").append(card);
  }
  return card;
}

function apply(event) {
  switch (event.type) {
    case "started":
      current.panel = event.panel;
      current.synthesize = event.synthesize;
      current.synthesizer = event.synthesizer;
      $("run-question").textContent = event.question;
      event.panel.forEach(panelCard);
      $("judge-card").querySelector(".model").textContent = event.judge;
      $("synthesis-card").querySelector(".model").textContent = event.synthesize ? event.synthesizer : "";
      if (!event.synthesize) setCard($("synthesis-card"), "stopped", "not asked for");
      setRunState("running");
      break;
    case "progress":
      progress(event);
      break;
    case "token":
      token(event);
      break;
    case "finished":
      finished(event);
      break;
    default:
      break;
  }
}

function progress(event) {
  switch (event.event) {
    case "panel_started": {
      const card = panelCard(event.model);
      if (card.dataset.state === "waiting") setCard(card, "waiting", "answering…");
      break;
    }
    case "panel_finished": {
      const parts = ["done"];
      if (typeof event.seconds === "number") parts.push(`in ${fmtSeconds(event.seconds)}`);
      if (event.tokens) parts.push(`· ${fmtInt(event.tokens)} tokens`);
      setCard(panelCard(event.model), "done", parts.join(" "));
      break;
    }
    case "panel_failed":
      setCard(panelCard(event.model), "failed", `failed: ${event.reason}: ${event.error}`);
      break;
    case "judge_started":
      setCard($("judge-card"), "running", "comparing the answers…");
      break;
    case "judge_finished":
      if (event.ok) setCard($("judge-card"), "done", "done");
      else setCard($("judge-card"), "failed", `no analysis: ${event.failure_reason || "judge failed"}`);
      break;
    case "synthesis_started":
      setCard($("synthesis-card"), "running", "writing…");
      break;
    case "synthesis_failed":
      setCard($("synthesis-card"), "failed", `failed: ${event.reason}: ${event.error}`);
      break;
    default:
      break;
  }
}

function token(event) {
  const key = `${event.role}\u0000${event.model}`;
  // A new message id is a new attempt or tool round: its text replaces the last one's.
  const fresh = current.streams[key] !== event.message_id;
  current.streams[key] = event.message_id;
  if (event.role === "panel") {
    const card = panelCard(event.model);
    const text = card.querySelector(".text");
    if (fresh) text.textContent = "";
    text.textContent += event.text;
    if (card.dataset.state === "waiting" || card.dataset.state === "streaming") {
      setCard(card, "streaming", "streaming");
    }
  } else if (event.role === "synthesis") {
    $("answer-section").hidden = false;
    const live = $("answer-live");
    if (fresh) live.textContent = "";
    live.textContent += event.text;
    setCard($("synthesis-card"), "streaming", "streaming");
  }
}

function finished(event) {
  if (source) source.close();
  source = null;
  current.state = event.state;
  const result = event.result;
  setRunState(result && event.state === "done" ? (result.status === "ok" ? "done" : "error") : event.state);
  const stopped = event.state === "cancelled" ? "stopped" : "not run";
  for (const card of $("panel-cards").children) {
    if (card.dataset.state === "waiting" || card.dataset.state === "streaming") setCard(card, "stopped", stopped);
  }
  if (event.error) banner("error", `The run failed: ${event.error}`);
  if (result) {
    showResult(result);
    const link = $("download");
    link.href = `/api/runs/${encodeURIComponent(current.id)}/result.json`;
    link.hidden = false;
  }
  const synthesis = $("synthesis-card");
  if (event.answer) {
    $("answer-live").textContent = "";
    $("answer").innerHTML = event.answer_html; // rendered server-side with every tag escaped
    $("answer-section").hidden = false;
    const tokens = result && result.usage && result.usage.synthesis ? result.usage.synthesis.output_tokens : 0;
    setCard(synthesis, "done", tokens ? `done · ${fmtInt(tokens)} tokens` : "done");
  } else if (synthesis.dataset.state === "running" || synthesis.dataset.state === "streaming") {
    setCard(synthesis, "stopped", stopped);
  }
  for (const card of [$("judge-card"), synthesis]) {
    if (card.dataset.state === "waiting") setCard(card, "stopped", stopped);
    if (card.dataset.state === "running") setCard(card, "stopped", stopped);
  }
  loadHistory();
}

// ---- the result -------------------------------------------------------------------

function banner(kind, text) {
  $("banners").append(el("p", { class: `banner ${kind}`, role: "status" }, text));
}

// The models that answered, in panel order: the columns of the analysis tables.
function modelsOf(result) {
  const answered = new Set((result.responses || []).map((r) => r.model));
  const order = current.panel.filter((m) => answered.has(m));
  for (const m of answered) if (!order.includes(m)) order.push(m);
  return order;
}

function showResult(result) {
  const responded = new Set((result.responses || []).map((r) => r.model));
  for (const r of result.responses || []) {
    const card = panelCard(r.model);
    const parts = ["done"];
    if (typeof r.latency_s === "number") parts.push(`in ${fmtSeconds(r.latency_s)}`);
    if (r.usage && r.usage.output_tokens) parts.push(`· ${fmtInt(r.usage.output_tokens)} tokens`);
    const cost = fmtCost(r.usage);
    if (cost) parts.push(`· ${cost}`);
    setCard(card, "done", parts.join(" "));
    card.querySelector(".text").textContent = r.content;
  }
  for (const f of result.failed_models || []) {
    if (responded.has(f.model)) continue;
    const status = f.status_code && !String(f.error).startsWith("HTTP") ? ` (HTTP ${f.status_code})` : "";
    setCard(panelCard(f.model), "failed", `failed: ${f.failure_reason}${status}: ${f.error}`);
  }

  if (result.status === "error") {
    banner("error", `Fusion failed (${result.failure_reason}): ${result.error}`);
  } else if (!result.analysis) {
    banner("warning", `No analysis: the judge failed (${result.failure_reason}); the answer was written from the raw answers.`);
  } else if (result.failure_reason === "synthesis_failed") {
    banner("warning", "The synthesis failed: the analysis and the panel answers are kept, but there is no answer.");
  }
  const meta = result.analysis_meta;
  if (meta) {
    if (meta.degraded === "single_response") {
      banner("warning", `Degraded analysis: only ${meta.responses_compared ?? 1} answer was compared, so its consensus and contradictions are not a comparison.`);
    }
    const dropped = meta.dropped_citations || [];
    if (dropped.length) {
      const what = dropped.map((d) => (typeof d === "string" ? d : d.cited ? `${d.cited} (${d.section})` : JSON.stringify(d))).join("; ");
      banner("warning", `${dropped.length} citation${dropped.length === 1 ? "" : "s"} named no panelist and ${dropped.length === 1 ? "was" : "were"} dropped: ${what}`);
    }
    if (meta.repaired) banner("info", "The judge's output was not clean JSON and was repaired before it was checked.");
  }
  const judge = $("judge-card");
  if (judge.dataset.state === "done" && result.judge_usage && result.judge_usage.output_tokens) {
    setCard(judge, "done", `done · ${fmtInt(result.judge_usage.output_tokens)} tokens`);
  }
  if (result.analysis) showAnalysis(result.analysis, modelsOf(result));
  showCitations(result.citations || []);
  showResponses(result.responses || []);
  showUsage(result);
}

function showAnalysis(analysis, models) {
  $("analysis").hidden = false;
  const list = (id, items) => {
    const ul = $(id);
    for (const item of items) ul.append(el("li", {}, item));
    if (!items.length) ul.append(el("li", { class: "muted" }, "none"));
  };
  list("consensus", analysis.consensus || []);
  list("blind-spots", analysis.blind_spots || []);

  const contradictions = analysis.contradictions || [];
  const cited = [...models];
  for (const c of contradictions) for (const s of c.stances) if (!cited.includes(s.model)) cited.push(s.model);
  const stances = $("contradictions");
  if (contradictions.length) {
    stances.append(el("thead", {}, el("tr", {}, el("th", {}, "topic"), ...cited.map((m) => el("th", { "data-model": m }, m)))));
    const body = el("tbody");
    for (const c of contradictions) {
      const byModel = new Map(c.stances.map((s) => [s.model, s.stance]));
      body.append(el("tr", {}, el("th", { scope: "row" }, c.topic),
        ...cited.map((m) => el("td", { "data-model": m, class: byModel.has(m) ? null : "muted" }, byModel.get(m) ?? "—"))));
    }
    stances.append(body);
  } else {
    stances.append(el("tbody", {}, el("tr", {}, el("td", { class: "muted" }, "no contradictions"))));
  }

  const partial = analysis.partial_coverage || [];
  const coverage = $("partial-coverage");
  if (partial.length) {
    coverage.append(el("thead", {}, el("tr", {}, el("th", {}, "point"), ...models.map((m) => el("th", { "data-model": m }, m)))));
    const body = el("tbody");
    for (const p of partial) {
      body.append(el("tr", {}, el("th", { scope: "row" }, p.point),
        ...models.map((m) => el("td", { "data-model": m, "data-covered": p.models.includes(m) ? "yes" : "no" }, p.models.includes(m) ? "✓" : ""))));
    }
    coverage.append(body);
  } else {
    coverage.append(el("tbody", {}, el("tr", {}, el("td", { class: "muted" }, "no partial coverage"))));
  }

  const insights = $("unique-insights");
  const byModel = new Map();
  for (const u of analysis.unique_insights || []) {
    if (!byModel.has(u.model)) byModel.set(u.model, []);
    byModel.get(u.model).push(u.insight);
  }
  for (const [model, items] of byModel) {
    insights.append(el("section", { class: "insight", "data-model": model }, el("h4", {}, model),
      el("ul", {}, ...items.map((i) => el("li", {}, i)))));
  }
  if (!byModel.size) insights.append(el("p", { class: "muted" }, "none"));
}

function safeUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function showCitations(citations) {
  if (!citations.length) return;
  $("citations-section").hidden = false;
  const ul = $("citations");
  for (const c of citations) {
    const href = safeUrl(c.url);
    const label = c.title || c.url;
    const link = href ? el("a", { href, rel: "noopener noreferrer nofollow", target: "_blank" }, label) : el("span", {}, label);
    ul.append(el("li", { "data-url": c.url }, link, el("span", { class: "muted" }, ` — ${(c.models || []).join(", ")}`)));
  }
}

function showResponses(responses) {
  if (!responses.length) return;
  $("responses").hidden = false;
  const tabs = $("response-tabs");
  const panes = $("response-panes");
  responses.forEach((r, index) => {
    const tab = el("button", { type: "button", role: "tab", "data-model": r.model, "aria-selected": index === 0 ? "true" : "false" }, r.model);
    const pane = el("pre", { role: "tabpanel", class: "response", "data-model": r.model }, r.content);
    pane.hidden = index !== 0;
    tab.addEventListener("click", () => {
      for (const t of tabs.children) t.setAttribute("aria-selected", t === tab ? "true" : "false");
      for (const p of panes.children) p.hidden = p !== pane;
    });
    tabs.append(tab);
    panes.append(pane);
  });
}

function showUsage(result) {
  const rows = [];
  for (const r of result.responses || []) rows.push(["panel", r.model, r.usage, r.latency_s]);
  if (result.judge_usage) rows.push(["judge", result.judge_model || "", result.judge_usage, null]);
  const usage = result.usage || {};
  if (usage.synthesis && usage.synthesis.total_tokens) rows.push(["synthesis", current.synthesizer || "", usage.synthesis, null]);
  if (!rows.length) return;
  $("usage").hidden = false;
  const total = usage.total || {};
  // A cost column only where the provider reported one.
  const costed = [...rows.map((row) => row[2]), total].some((u) => fmtCost(u));
  const table = $("usage-table");
  const heads = ["step", "model", "input", "output", "total", "seconds", ...(costed ? ["cost"] : [])];
  table.append(el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  const cells = (u, seconds) => [
    el("td", {}, fmtInt(u ? u.input_tokens : null)), el("td", {}, fmtInt(u ? u.output_tokens : null)),
    el("td", {}, fmtInt(u ? u.total_tokens : null)), el("td", {}, fmtSeconds(seconds)),
    ...(costed ? [el("td", {}, fmtCost(u))] : []),
  ];
  for (const [step, model, u, seconds] of rows) {
    body.append(el("tr", { "data-step": step, "data-model": model }, el("td", {}, step), el("td", {}, model), ...cells(u, seconds)));
  }
  body.append(el("tr", { "data-step": "total", class: "total" }, el("td", {}, "total"), el("td", {}, ""), ...cells(total, null)));
  table.append(body);
}

// ---- start --------------------------------------------------------------------------

function fromHash() {
  const match = /^#run=([0-9a-f]+)$/.exec(location.hash);
  return match ? match[1] : null;
}

document.addEventListener("DOMContentLoaded", async () => {
  $("ask-form").addEventListener("submit", ask);
  $("stop").addEventListener("click", stop);
  for (const id of ["preset", "panel-models", "judge-model"]) $(id).addEventListener("input", summarize);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) $("ask-form").requestSubmit();
  });
  window.addEventListener("hashchange", () => {
    const id = fromHash();
    if (id && (!current || current.id !== id)) openRun(id);
  });
  await loadConfig();
  await loadHistory();
  const id = fromHash();
  if (id) openRun(id);
  document.body.dataset.ready = "true";
});
