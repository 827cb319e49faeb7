"use strict";
// The rating page. It knows only "left" and "right": which method is where is decided and undone on
// the server. State: the rater, their example order and their votes (choices as clicked).

const STORAGE_KEY = "bgm-jax-study-rater";
const $ = (id) => document.getElementById(id);
let state = null;    // from GET /api/state
let position = 0;    // index into state.order

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  }
  return body;
}

function showSection(name) {
  for (const id of ["login", "rate", "done"]) $(id).hidden = id !== name;
  $("who").hidden = name === "login";
}

function ratedCount() { return Object.keys(state.votes).length; }

function firstUnrated(from) {
  const n = state.order.length;
  for (let i = 0; i < n; i++) {
    const j = (from + i) % n;
    if (!(String(state.order[j]) in state.votes)) return j;
  }
  return -1;
}

async function start(name) {
  $("login-error").textContent = "";
  try {
    state = await api(`/api/state?rater=${encodeURIComponent(name)}`);
  } catch (e) {
    $("login-error").textContent = e.message;
    showSection("login");
    return;
  }
  localStorage.setItem(STORAGE_KEY, state.rater);
  document.title = state.title;
  $("title").textContent = state.title;
  $("rater-name").textContent = state.rater;
  $("question").textContent = state.question;
  buildScale();
  const fromHash = parseInt(location.hash.slice(1), 10);
  if (fromHash >= 1 && fromHash <= state.order.length) {
    position = fromHash - 1;
  } else {
    position = firstUnrated(0);
    if (position < 0) { position = 0; showDone(); return; }
  }
  show();
}

function buildScale() {
  const scale = $("scale");
  scale.replaceChildren();
  state.scale.forEach((level, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.choice = String(level.choice);
    button.textContent = level.label;
    button.title = `key ${i + 1}`;
    button.addEventListener("click", () => vote(level.choice));
    scale.appendChild(button);
  });
}

function show() {
  const id = state.order[position];
  const rater = `?rater=${encodeURIComponent(state.rater)}`;
  $("img-original").src = `/image/${id}/original${rater}`;
  $("img-left").src = `/image/${id}/left${rater}`;
  $("img-right").src = `/image/${id}/right${rater}`;
  const chosen = state.votes[String(id)];
  for (const button of $("scale").children) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.choice) === chosen));
  }
  const n = state.order.length;
  $("position").textContent = `Example ${position + 1} of ${n}`;
  $("rated").textContent = `${ratedCount()} rated`;
  $("bar-fill").style.width = `${(100 * ratedCount()) / n}%`;
  $("prev").disabled = position === 0;
  $("saved").textContent = chosen === undefined ? "" : "Saved";
  $("rate-error").textContent = "";
  history.replaceState(null, "", `#${position + 1}`);  // a reload comes back to this example
  showSection("rate");
}

async function vote(choice) {
  const id = state.order[position];
  $("saved").textContent = "Saving…";
  try {
    await api("/api/vote", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rater: state.rater, example: id, choice: choice }),
    });
  } catch (e) {
    $("saved").textContent = "";
    $("rate-error").textContent = `Not saved: ${e.message}`;
    return;
  }
  state.votes[String(id)] = choice;
  show();
}

function next() {
  if (position + 1 < state.order.length) { position += 1; show(); return; }
  const unrated = firstUnrated(0);
  if (unrated < 0) { showDone(); return; }
  position = unrated;
  show();
  $("rate-error").textContent = `${state.order.length - ratedCount()} example(s) still to rate.`;
}

function previous() {
  if (position > 0) { position -= 1; show(); }
}

function showDone() {
  $("done-count").textContent = String(state.order.length);
  history.replaceState(null, "", location.pathname);
  showSection("done");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("rater").value);
  });
  $("switch").addEventListener("click", (event) => {
    event.preventDefault();
    localStorage.removeItem(STORAGE_KEY);
    state = null;
    $("rater").value = "";
    history.replaceState(null, "", location.pathname);
    showSection("login");
  });
  $("next").addEventListener("click", next);
  $("prev").addEventListener("click", previous);
  $("review").addEventListener("click", () => { position = 0; show(); });
  document.addEventListener("keydown", (event) => {
    if (!state || $("rate").hidden || event.target.tagName === "INPUT") return;
    const digit = Number(event.key);
    if (digit >= 1 && digit <= state.scale.length) vote(state.scale[digit - 1].choice);
    else if (event.key === "ArrowRight") next();
    else if (event.key === "ArrowLeft") previous();
  });
  // A link may carry the rater (?rater=TOKEN); otherwise the name used last in this browser.
  const params = new URLSearchParams(location.search);
  const name = params.get("rater") || localStorage.getItem(STORAGE_KEY);
  if (params.has("rater")) history.replaceState(null, "", location.pathname + location.hash);
  if (name) start(name); else showSection("login");
});
