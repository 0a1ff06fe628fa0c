// A finished run's result: banners, the analysis tables, citations, answers and usage.
import { $, el, fmtCost, fmtInt, fmtSeconds, panelCard, safeUrl, setCard } from "./dom.js";

function banner(kind, text) {
  $("banners").append(el("p", { class: `banner ${kind}`, role: "status" }, text));
}

// The models that answered, in panel order: the columns of the analysis tables.
function modelsOf(result, run) {
  const answered = new Set((result.responses || []).map((r) => r.model));
  const order = run.panel.filter((m) => answered.has(m));
  for (const m of answered) if (!order.includes(m)) order.push(m);
  return order;
}

export function showResult(result, run) {
  const responded = new Set((result.responses || []).map((r) => r.model));
  for (const r of result.responses || []) {
    const card = panelCard(r.model);
    const parts = ["done"];
    if (typeof r.latency_s === "number") parts.push(`in ${fmtSeconds(r.latency_s)}`);
    if (r.usage && r.usage.output_tokens) parts.push(`· ${fmtInt(r.usage.output_tokens)} tokens`);
    const cost = fmtCost(r.usage);
    if (cost) parts.push(`· ${cost}`);
    if (r.fallback_for) parts.push(`· fallback for ${r.fallback_for}`);
    if (r.truncated) parts.push("· cut at its token cap");
    setCard(card, "done", parts.join(" "));
    card.querySelector(".text").textContent = r.content;
  }
  for (const f of result.failed_models || []) {
    if (responded.has(f.model)) continue;
    const status = f.status_code && !String(f.error).startsWith("HTTP") ? ` (HTTP ${f.status_code})` : "";
    const replaced = f.replaced_by ? `; replaced by ${f.replaced_by}` : "";
    setCard(panelCard(f.model), "failed", `failed: ${f.failure_reason}${status}${replaced}: ${f.error}`);
  }

  if (result.status === "error") {
    banner("error", `Fusion failed (${result.failure_reason}): ${result.error}`);
  } else if (!result.analysis) {
    banner("warning", `No analysis: the judge failed (${result.failure_reason}); the answer was written from the raw answers.`);
  } else if (result.failure_reason === "synthesis_failed") {
    banner("warning", "The synthesis failed: the analysis and the panel answers are kept, but there is no answer.");
  }
  if (result.answer_truncated) banner("warning", "The answer stopped at its token cap: it is cut short.");
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
  if (result.analysis) showAnalysis(result.analysis, modelsOf(result, run));
  showCitations(result.citations || []);
  showResponses(result.responses || []);
  showUsage(result, run);
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

function showUsage(result, run) {
  const rows = [];
  for (const r of result.responses || []) rows.push(["panel", r.model, r.usage, r.latency_s]);
  if (result.judge_usage) rows.push(["judge", result.judge_model || "", result.judge_usage, null]);
  const usage = result.usage || {};
  // Steps with a call whose provider sent no token counts (llama.cpp on a stream).
  const unreported = usage.unreported || [];
  if (usage.synthesis && usage.synthesis.total_tokens) rows.push(["synthesis", run.synthesizer || "", usage.synthesis, null]);
  else if (unreported.includes("synthesis")) rows.push(["synthesis", run.synthesizer || "", null, null]);
  if (!rows.length) return;
  $("usage").hidden = false;
  const total = usage.total || {};
  // A cost column only where a cost is known: reported by the provider, or (≈) at list prices.
  const costed = [...rows.map((row) => row[2]), total].some((u) => fmtCost(u));
  const table = $("usage-table");
  const heads = ["step", "model", "input", "output", "total", "seconds", ...(costed ? ["cost"] : [])];
  table.append(el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  const count = (u, key) => (u ? fmtInt(u[key]) : "not reported");
  const cells = (u, seconds) => [
    el("td", {}, count(u, "input_tokens")), el("td", {}, count(u, "output_tokens")),
    el("td", {}, count(u, "total_tokens")), el("td", {}, fmtSeconds(seconds)),
    ...(costed ? [el("td", {}, fmtCost(u))] : []),
  ];
  for (const [step, model, u, seconds] of rows) {
    body.append(el("tr", { "data-step": step, "data-model": model }, el("td", {}, step), el("td", {}, model), ...cells(u, seconds)));
  }
  const partial = unreported.length ? "some calls not reported" : "";
  body.append(el("tr", { "data-step": "total", class: "total" }, el("td", {}, "total"), el("td", {}, partial), ...cells(total, null)));
  table.append(body);
  if (total.cost_source === "price_table") {
    table.append(el("caption", { class: "muted" }, "≈ at list prices: the provider reported no cost for these calls"));
  }
}

