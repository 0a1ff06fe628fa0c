// DOM and number helpers of the playground page.
// Every model-written string reaches the DOM as text (textContent), never as
// markup; the one exception is the answer, which the server renders from
// Markdown with every tag escaped.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, ...children) {
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

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function fmtInt(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "";
}

export function fmtSeconds(s) {
  return typeof s === "number" ? `${s.toFixed(1)}s` : "";
}

// A cost from the price table (not reported by the provider) is marked "≈".
export function fmtCost(usage) {
  const cost = usage && typeof usage.cost === "number" ? usage.cost : null;
  if (cost === null) return "";
  return `${usage.cost_source === "price_table" ? "≈" : ""}$${cost.toFixed(4)}`;
}

export function safeUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}


export function setCard(card, state, status) {
  card.dataset.state = state;
  card.querySelector(".status").textContent = status;
}

export function panelCard(model) {
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
