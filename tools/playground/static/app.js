// The playground page: the question form, the earlier runs, and which run is shown.
import { $, clear, el, fmtInt } from "./dom.js";
import { currentRun, openRun } from "./run.js";

let config = null;

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
  $("min-responses").value = d.min_responses ?? "";
  $("quorum-grace").value = d.quorum_grace_s ?? "";
  $("fallback-models").value = (d.fallback_models || []).join(", ");
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

// The run the form describes, or null (and the form says why) when there is no question.
function formBody() {
  const question = $("question").value.trim();
  const error = $("form-error");
  error.hidden = true;
  if (!question) {
    error.textContent = "Type a question first.";
    error.hidden = false;
    return null;
  }
  return {
    question,
    preset: $("preset").value || null,
    analysis_models: $("panel-models").value.trim() || null,
    model: $("judge-model").value.trim() || null,
    synthesis_model: $("synthesis-model").value.trim() || null,
    web_tools: $("web-tools").checked,
    min_responses: numberOrNull($("min-responses").value),
    quorum_grace_s: numberOrNull($("quorum-grace").value),
    fallback_models: $("fallback-models").value.trim() || null,
  };
}

function numberOrNull(text) {
  return text.trim() === "" ? null : Number(text);
}

// The worst case of the run the form describes, before it is asked (no model is called).
async function estimate() {
  const body = formBody();
  if (!body) return;
  const line = $("estimate-line");
  const response = await fetch("/api/estimate", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    $("form-error").textContent = data.error || `HTTP ${response.status}`;
    $("form-error").hidden = false;
    return;
  }
  const p = data.projection;
  const steps = Object.entries(p.steps).map(([step, usd]) => `${step} $${usd.toFixed(4)}`);
  const parts = [`Worst case ${p.complete ? "at most" : "at least"} $${p.total_usd.toFixed(4)}`];
  if (steps.length) parts.push(`(${steps.join(" · ")})`);
  const rounds = p.calls.reduce((n, c) => n + c.rounds, 0);
  parts.push(`· ${fmtInt(rounds)} model requests at most`);
  if (p.unpriced.length) parts.push(`· no price for ${p.unpriced.join(", ")}`);
  if (p.uncapped.length) parts.push(`· no completion cap for ${p.uncapped.join(", ")}`);
  if (p.token_counting === "estimate") parts.push("· prompt tokens estimated");
  if (data.refused) parts.push(`· over the budget: ${data.refused}`);
  line.textContent = parts.join(" ");
  line.dataset.total = String(p.total_usd);
  line.hidden = false;
}

async function ask(event) {
  event.preventDefault();
  const body = formBody();
  if (!body) return;
  const error = $("form-error");
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
  const current = currentRun();
  if (!current) return;
  $("stop").disabled = true;
  await fetch(`/api/runs/${encodeURIComponent(current.id)}/cancel`, { method: "POST" });
}

// ---- earlier runs -------------------------------------------------------------

async function loadHistory() {
  const data = await (await fetch("/api/runs")).json();
  const current = currentRun();
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

// ---- start --------------------------------------------------------------------------

function fromHash() {
  const match = /^#run=([0-9a-f]+)$/.exec(location.hash);
  return match ? match[1] : null;
}

document.addEventListener("DOMContentLoaded", async () => {
  $("ask-form").addEventListener("submit", ask);
  $("stop").addEventListener("click", stop);
  $("estimate").addEventListener("click", estimate);
  for (const id of ["preset", "panel-models", "judge-model"]) $(id).addEventListener("input", summarize);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) $("ask-form").requestSubmit();
  });
  window.addEventListener("hashchange", () => {
    const id = fromHash();
    const current = currentRun();
    if (id && (!current || current.id !== id)) openRun(id);
  });
  document.addEventListener("run-finished", loadHistory);
  await loadConfig();
  await loadHistory();
  const id = fromHash();
  if (id) openRun(id);
  document.body.dataset.ready = "true";
});
