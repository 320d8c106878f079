// The engine's live console: submit orders, watch every order of the account change as events arrive
// (WS /api/stream), and look into one order: its route, its timeline, its fill against the quote.
"use strict";

const TERMINAL = new Set(["confirmed", "failed", "cancelled", "expired"]);
const COLORS = ["#2563eb", "#db2777", "#16a34a", "#ea580c", "#7c3aed"];
const state = { orders: new Map(), selected: null, follow: null, lastEventId: null, stream: null, backoff: 500, prices: new Map() };
const $ = (selector) => document.querySelector(selector);

// ------------------------------------------------------------------ HTTP

function apiKey() { return localStorage.getItem("oee.apiKey") || ""; }

class ApiError extends Error {
  constructor(status, body) {
    super(`${body.error || "HTTP " + status}${body.message ? ": " + body.message : ""}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = {};
  try { body = text ? JSON.parse(text) : {}; } catch { body = { error: `HTTP ${response.status}`, message: text.slice(0, 200) }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function plainWords(error) {
  if (!(error instanceof ApiError)) return `The engine could not be reached (${error.message}).`;
  const lines = [`${error.body.error || "Error " + error.status}: ${error.body.message || ""}`.trim()];
  for (const detail of error.body.details || []) {
    const where = (detail.path || []).join(".") || "body";
    lines.push(`• ${where}: ${detail.message}`);
  }
  if (error.status === 401) lines.push("Enter an API key above.");
  return lines.join("\n");
}

function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  if (apiKey()) url.searchParams.set("token", apiKey());
  return url.toString();
}

// ------------------------------------------------------------------ formatting

const fmt = (value) => (value === null || value === undefined ? "" : Number(value).toLocaleString(undefined, { maximumSignificantDigits: 6 }));
const clock = (ms) => (ms ? new Date(ms).toISOString().slice(11, 23) : "");

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// ------------------------------------------------------------------ orders table

function upsert(order) {
  // One object per order for the page's whole life: a stream that holds it keeps writing to the one shown.
  let known = state.orders.get(order.orderId);
  if (!known) {
    known = { events: [] };
    state.orders.set(order.orderId, known);
  }
  const events = known.events;
  Object.assign(known, order);
  known.events = events;
  renderRow(known);
}

function renderRow(order) {
  const body = $("#orders tbody");
  let row = body.querySelector(`tr[data-order="${order.orderId}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.order = order.orderId;
    row.addEventListener("click", () => select(order.orderId));
    body.prepend(row);
  }
  row.replaceChildren();
  cell(row, order.orderId);
  cell(row, clock(order.submittedAt));
  cell(row, order.orderType);
  cell(row, `${order.tokenIn}/${order.tokenOut}`);
  cell(row, fmt(order.amount));
  const status = cell(row, order.status, "status");
  status.dataset.status = order.status;
  cell(row, order.exchangeId || "");
  cell(row, fmt(order.executionPrice));
  row.classList.toggle("selected", state.selected === order.orderId);
}

async function loadOrders() {
  const page = await api("/api/orders?limit=50");
  for (const order of page.orders.slice().reverse()) upsert(order);
}

// ------------------------------------------------------------------ the account stream

function applyEvent(event) {
  const order = state.orders.get(event.orderId);
  if (!order) {
    api(`/api/orders/${event.orderId}`).then(upsert).catch(() => {});
    return;
  }
  order.status = event.status;
  const data = event.data || {};
  if (data.routingDecision) { order.routingDecision = data.routingDecision; order.exchangeId = data.routingDecision.selectedDex; }
  if (data.executionPrice !== undefined) order.executionPrice = data.executionPrice;
  if (data.executionAmount !== undefined) order.executionAmount = data.executionAmount;
  if (data.txHash) order.txHash = data.txHash;
  if (data.failureReason) order.failureReason = data.failureReason;
  renderRow(order);
  if (state.selected === event.orderId) renderDetail();
}

function connectStream() {
  const pill = $("#connection");
  const socket = new WebSocket(wsUrl("/api/stream", { since: state.lastEventId }));
  state.stream = socket;
  socket.onopen = () => { pill.dataset.state = "live"; pill.textContent = "live"; state.backoff = 500; };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "connected") { if (state.lastEventId === null) state.lastEventId = event.eventId; return; }
    if (event.type !== "event") return;
    state.lastEventId = event.eventId;
    applyEvent(event);
  };
  socket.onclose = (closed) => {
    pill.dataset.state = "down";
    pill.textContent = closed.code === 4401 ? "enter an API key" : "reconnecting…";
    if (closed.code === 4401 || closed.code === 4403) return;
    setTimeout(connectStream, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 10000);
  };
}

// ------------------------------------------------------------------ one order

function select(orderId) {
  state.selected = orderId;
  for (const row of document.querySelectorAll("#orders tbody tr")) row.classList.toggle("selected", row.dataset.order === orderId);
  $("#detail-panel").hidden = false;
  const order = state.orders.get(orderId);
  order.events = [];
  renderDetail();
  if (state.follow) state.follow.close();
  // The order's own stream replays its whole history, then goes live until the terminal event.
  const socket = new WebSocket(wsUrl(`/api/orders/${orderId}/status`));
  state.follow = socket;
  socket.onmessage = (message) => {
    const update = JSON.parse(message.data);
    if (update.type !== "status" || state.selected !== orderId) return;
    const events = order.events.filter((e) => e.seq < update.seq);
    events.push(update);
    order.events = events;
    applyEvent(update);
    renderDetail();
  };
}

function renderRoute(decision) {
  const body = $("#route tbody");
  body.replaceChildren();
  if (!decision) { $("#route-reason").textContent = "not routed yet"; $("#route-legs").textContent = ""; return; }
  $("#route-reason").textContent = decision.selectionReason;
  const chosen = new Set((decision.legs || []).map((leg) => leg.dex));
  if (!chosen.size) chosen.add(decision.selectedDex);
  const quotes = Object.entries(decision).filter(([key, value]) => key.endsWith("Quote") && value && value.dex).map(([, q]) => q);
  for (const quote of quotes.sort((a, b) => b.amountOut - a.amountOut)) {
    const row = body.insertRow();
    cell(row, quote.dex);
    cell(row, fmt(quote.price));
    cell(row, fmt(quote.fee));
    cell(row, fmt(quote.netPrice));
    cell(row, fmt(quote.amountOut));
    cell(row, (quote.priceImpactPct ?? 0).toFixed(3));
    cell(row, chosen.has(quote.dex) ? "selected" : "", chosen.has(quote.dex) ? "chosen" : "");
  }
  for (const [dex, why] of Object.entries(decision.rejected || {})) {
    const row = body.insertRow();
    cell(row, dex);
    for (let i = 0; i < 5; i += 1) cell(row, "");
    cell(row, `rejected: ${why}`, "rejected");
  }
  const legs = decision.legs || [];
  $("#route-legs").textContent = legs.length > 1 ? `split: ${legs.map((l) => `${l.percent.toFixed(1)}% ${l.dex} (${fmt(l.amountIn)} in)`).join(", ")}` : "";
}

function renderDetail() {
  const order = state.orders.get(state.selected);
  if (!order) return;
  $("#detail-id").textContent = order.orderId;
  const status = $("#detail-status");
  status.textContent = order.status;
  status.dataset.status = order.status;
  $("#detail-summary").textContent = `${fmt(order.amount)} ${order.tokenIn} → ${order.tokenOut} (${order.orderType})` +
    (order.failureReason ? ` — ${order.failureReason}` : "");
  const decision = order.routingDecision;
  renderRoute(decision);
  if (order.status === "confirmed" && decision && order.executionAmount !== undefined) {
    const versus = ((order.executionAmount / decision.amountOut - 1) * 100).toFixed(3);
    $("#fill").textContent = `${fmt(order.executionAmount)} ${order.tokenOut} at ${fmt(order.executionPrice)}: ` +
      `${versus >= 0 ? "+" : ""}${versus}% against the quoted ${fmt(decision.amountOut)} (minimum ${fmt(decision.minAmountOut)})` +
      (order.txHash ? ` · tx ${order.txHash}` : "");
  } else {
    $("#fill").textContent = TERMINAL.has(order.status) ? "not filled" : "not filled yet";
  }
  const body = $("#timeline tbody");
  body.replaceChildren();
  let previous = null;
  for (const event of order.events || []) {
    const row = body.insertRow();
    cell(row, String(event.seq));
    cell(row, event.status, "status").dataset.status = event.status;
    cell(row, clock(event.timestamp));
    cell(row, previous === null ? "" : fmt(event.timestamp - previous));
    cell(row, event.message || "", "message");
    previous = event.timestamp;
  }
}

// ------------------------------------------------------------------ submitting

async function submit(form) {
  const fields = new FormData(form);
  const body = { tokenIn: fields.get("tokenIn").trim(), tokenOut: fields.get("tokenOut").trim(), amount: Number(fields.get("amount")), orderType: fields.get("orderType") };
  const number = (name) => (fields.get(name) ? Number(fields.get(name)) : null);
  if (number("slippageBps") !== null) body.slippageBps = number("slippageBps");
  if (body.orderType === "LIMIT" && number("limitPrice") !== null) body.limitPrice = number("limitPrice");
  if (body.orderType === "SNIPER" && number("maxPrice") !== null) body.maxPrice = number("maxPrice");
  if (body.orderType !== "MARKET" && number("expiresIn") !== null) body.expiresAt = Date.now() + number("expiresIn") * 1000;
  const error = $("#form-error");
  error.hidden = true;
  $("#submit-button").disabled = true;
  try {
    const accepted = await api("/api/orders/execute", { method: "POST", body: JSON.stringify(body) });
    upsert({ orderId: accepted.orderId, status: accepted.status, submittedAt: Date.now(), orderType: body.orderType, tokenIn: body.tokenIn.toUpperCase(), tokenOut: body.tokenOut.toUpperCase(), amount: body.amount });
    select(accepted.orderId);
  } catch (failure) {
    error.textContent = plainWords(failure);
    error.hidden = false;
  } finally {
    $("#submit-button").disabled = false;
  }
}

// ------------------------------------------------------------------ the price chart

async function pollPrices() {
  const form = $("#order-form");
  const tokenIn = form.tokenIn.value.trim().toUpperCase();
  const tokenOut = form.tokenOut.value.trim().toUpperCase();
  $("#chart-pair").textContent = `${tokenIn}/${tokenOut}`;
  const key = `${tokenIn}/${tokenOut}`;
  try {
    const answer = await api(`/api/market/prices?tokenIn=${encodeURIComponent(tokenIn)}&tokenOut=${encodeURIComponent(tokenOut)}`);
    const series = state.prices.get(key) || new Map();
    for (const venue of answer.venues) {
      if (venue.price === null || venue.price === undefined) continue;
      const points = series.get(venue.dex) || [];
      points.push([answer.timestamp, venue.price]);
      series.set(venue.dex, points.slice(-90));
    }
    state.prices.set(key, series);
    drawChart(series);
  } catch {
    drawChart(new Map());
  }
}

function drawChart(series) {
  const svg = $("#chart");
  svg.replaceChildren();
  const all = [...series.values()].flat();
  const legend = $("#chart-legend");
  legend.replaceChildren();
  if (!all.length) { legend.textContent = "no venue prices this pair"; return; }
  const [t0, t1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [low, high] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const pad = (high - low) * 0.1 || high * 0.001 || 1;
  low -= pad; high += pad;
  let index = 0;
  for (const [dex, points] of series) {
    const color = COLORS[index % COLORS.length];
    index += 1;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("points", points.map(([t, p]) => `${t1 > t0 ? ((t - t0) / (t1 - t0)) * 400 : 400},${140 - ((p - low) / (high - low)) * 140}`).join(" "));
    svg.append(line);
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    item.append(swatch, `${dex} ${fmt(points[points.length - 1][1])}`);
    legend.append(item);
  }
}

// ------------------------------------------------------------------ start

function start() {
  const keyInput = $("#api-key");
  keyInput.value = apiKey();
  keyInput.addEventListener("change", () => {
    localStorage.setItem("oee.apiKey", keyInput.value.trim());
    if (state.stream) state.stream.close();
    loadOrders().catch((error) => { $("#form-error").textContent = plainWords(error); $("#form-error").hidden = false; });
    connectStream();
  });
  const form = $("#order-form");
  form.dataset.type = form.orderType.value;
  form.orderType.addEventListener("change", () => { form.dataset.type = form.orderType.value; });
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(form); });
  loadOrders().catch((error) => { $("#form-error").textContent = plainWords(error); $("#form-error").hidden = false; });
  connectStream();
  pollPrices();
  setInterval(pollPrices, 2000);
}

start();
