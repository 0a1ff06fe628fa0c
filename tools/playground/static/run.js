// One run on the page: follow its server-sent events, fill in the cards, show the result.
import { $, clear, fmtCost, fmtInt, fmtSeconds, panelCard, setCard } from "./dom.js";
import { showResult } from "./result.js";

let source = null;
let current = null; // {id, panel, synthesizer, state, streams}

/** The run shown now, or null. */
export function currentRun() {
  return current;
}

export function openRun(id) {
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

export function setRunState(state) {
  const badge = $("run-state");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  const running = state === "running";
  $("stop").disabled = !running;
  $("ask").disabled = running;
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
      const cost = fmtCost({ cost: event.cost });
      if (cost) parts.push(`· ${cost}`);
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
    showResult(result, current);
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
  document.dispatchEvent(new CustomEvent("run-finished", { detail: current.id }));
}

