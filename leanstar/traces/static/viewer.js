/* leanstar trace viewer.
 *
 * One page for both ways of opening a run: `leanstar traces report` embeds the data in a JSON
 * script element (id "leanstar-data") and every query runs here (localApi); `leanstar traces
 * serve` leaves it out and the same queries go to /api/* on 127.0.0.1 (remoteApi). Both APIs
 * answer with the same shapes, so the views below do not know which one they talk to.
 * Record text is only ever put into the page with textContent (never parsed as HTML); the
 * summary and comparison fragments come from Python, which escapes them.
 */
"use strict";

const REPLAY = "replay (not checked by Lean)";
const STATUSES = [["any", "any status"], ["proved", "proved"], ["failed", "failed"],
  ["not_attempted", "not attempted"], ["rejected", "has a rejected proof"], ["error", "has an error"]];
const SORTS = [["order", "run order"], ["name", "name"], ["proved", "most proved attempts"],
  ["attempts", "most attempts"], ["shortest", "shortest proof"]];
const PER_PAGE = 50;

const dataEl = document.getElementById("leanstar-data");
const api = dataEl ? localApi(JSON.parse(dataEl.textContent)) : remoteApi();
const app = document.getElementById("app");
let META = null;
let lastTableHash = "#/";
let routeSeq = 0;
window.leanstarTimings = [];

/* ------------------------------------------------------------ helpers */

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function tokenize(text) {
  return text ? (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []) : [];
}

function matchesTokens(wanted, have) {
  return wanted.every((w) => have.some((h) => h.startsWith(w)));
}

function plural(n, word) { return `${fmtNum(n)} ${word}${n === 1 ? "" : "s"}`; }
function fmtNum(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }
function fmtSecs(s) { return s === null || s === undefined ? "—" : `${Number(s).toFixed(2)} s`; }
function outcomeBadge(outcome) { return el("span", { class: `badge ${outcome}`, text: outcome }); }
function replayTag() { return el("span", { class: "replay-tag", text: REPLAY }); }

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function setHash(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  location.hash = s ? `${path}?${s}` : path;
}

function roundsParam(params) {
  const r = params.get("round");
  return r === null || r === "" ? null : [Number(r)];
}

/* ------------------------------------------------------------ APIs */

function remoteApi() {
  async function get(path, params) {
    const response = await fetch(`${path}?${new URLSearchParams(params || {})}`);
    if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return response.json();
  }
  return {
    mode: "served from the run's index on 127.0.0.1",
    meta: () => get("api/meta"),
    theorems: (q) => get("api/theorems", q),
    theorem: (name, text) => get("api/theorem", { name, q: text || "" }),
    trajectory: (tid) => get("api/trajectory", { tid }),
    proofs: (name) => get("api/proofs", { name }),
    summary: () => get("api/summary").then((r) => r.html),
    rounds: () => get("api/rounds").then((r) => r.html),
  };
}

function localApi(data) {
  const byName = new Map(data.theorems.map((t, i) => [t.name, Object.assign(t, { order: i })]));
  const inRounds = (rounds, r) => rounds === null || rounds.includes(Number(r));

  function row(t, rounds) {
    const chosen = Object.entries(t.rounds).filter(([r]) => inRounds(rounds, r)).map(([, c]) => c);
    const best = chosen.map((c) => c.best_len).filter((b) => b !== null);
    const sum = (k) => chosen.reduce((a, c) => a + c[k], 0);
    return {
      name: t.name, split: t.split, goal: Array.from(t.goal || "").slice(0, 400).join(""), rounds: t.rounds,
      attempts: sum("attempts"), proved: sum("proved"), proved_replay: sum("proved_replay"),
      steps: sum("steps"), best_len: best.length ? Math.min(...best) : null,
    };
  }

  function keep(t, q, rounds, wanted) {
    if (q.split && t.split !== q.split) return false;
    const cells = Object.entries(t.rounds).filter(([r]) => inRounds(rounds, r)).map(([, c]) => c);
    const status = q.status || "any";
    if (status === "proved" && !cells.some((c) => c.proved > 0)) return false;
    if (status === "failed" && !(cells.length && cells.every((c) => c.proved === 0))) return false;
    if (status === "not_attempted" && cells.length) return false;
    if (status === "rejected" && !cells.some((c) => c.rejected > 0)) return false;
    if (status === "error" && !cells.some((c) => c.errors > 0)) return false;
    if ((q.q || "").trim()) {
      if (!wanted.length) return false;
      const have = Object.entries(t.tokens).filter(([r]) => r === "-1" || inRounds(rounds, r)).flatMap(([, v]) => v);
      if (!matchesTokens(wanted, have)) return false;
    }
    return true;
  }

  const sorters = {
    order: (a, b) => a.t.order - b.t.order,
    name: (a, b) => (a.t.name < b.t.name ? -1 : a.t.name > b.t.name ? 1 : 0),
    proved: (a, b) => b.r.proved - a.r.proved || a.t.order - b.t.order,
    attempts: (a, b) => b.r.attempts - a.r.attempts || a.t.order - b.t.order,
    shortest: (a, b) => (a.r.best_len === null) - (b.r.best_len === null)
      || (a.r.best_len || 0) - (b.r.best_len || 0) || a.t.order - b.t.order,
  };

  return {
    mode: "self-contained report (opened from disk)",
    meta: async () => data.meta,
    async theorems(q) {
      const rounds = q.round === undefined || q.round === "" ? null : [Number(q.round)];
      const wanted = [...new Set(tokenize(q.q || ""))];
      const hits = data.theorems.filter((t) => keep(t, q, rounds, wanted)).map((t) => ({ t, r: row(t, rounds) }));
      hits.sort(sorters[q.sort || "order"]);
      const page = Number(q.page || 1), per = Number(q.per_page || PER_PAGE);
      return { total: hits.length, page, per_page: per, rows: hits.slice((page - 1) * per, page * per).map((h) => h.r) };
    },
    async theorem(name, text) {
      const t = byName.get(name);
      if (!t) return null;
      const out = Object.assign(row(t, null), { statement: t.statement, goal: t.goal, attempts: t.attempts });
      const wanted = [...new Set(tokenize(text || ""))];
      if (wanted.length) {
        out.matches = t.attempts.map((a) => a.tid).filter((tid) => {
          const have = data.trajectories[tid].steps.flatMap((s) => tokenize(s.thought).concat(tokenize(s.tactic)));
          return matchesTokens(wanted, have);
        });
      }
      return out;
    },
    trajectory: async (tid) => data.trajectories[tid],
    async proofs(name) {
      const t = byName.get(name);
      const out = [];
      for (const r of Object.keys(t.rounds).map(Number).sort((a, b) => a - b)) {
        const proved = t.attempts.filter((a) => a.round === r && a.outcome === "proved");
        if (!proved.length) continue;
        const first = proved.reduce((a, b) => (b.attempt < a.attempt ? b : a));
        out.push({ round: r, proofs: proved.length, trajectory: data.trajectories[first.tid] });
      }
      return out;
    },
    summary: async () => data.summary_html,
    rounds: async () => data.rounds_html,
  };
}

/* ------------------------------------------------------------ routing */

async function route() {
  const seq = ++routeSeq;
  const started = performance.now();
  document.body.dataset.state = "loading";
  const { path, params } = parseHash();
  for (const a of document.querySelectorAll("header nav a")) {
    const target = a.getAttribute("href").slice(1);
    a.classList.toggle("active", target === "/" ? path === "/" || path.startsWith("/theorem") : path.startsWith(target));
  }
  let view = "theorems";
  try {
    if (!META) await loadMeta();
    if (path.startsWith("/theorem/")) {
      view = "theorem";
      await showTheorem(decodeURIComponent(path.slice("/theorem/".length)), params, seq);
    } else if (path === "/summary") {
      view = "summary";
      await showFragment("Summary", api.summary, seq);
    } else if (path === "/rounds") {
      view = "rounds";
      await showFragment("Rounds compared", api.rounds, seq);
    } else {
      lastTableHash = location.hash || "#/";
      await showTable(params, seq);
    }
  } catch (err) {
    if (seq !== routeSeq) return;
    app.replaceChildren(el("div", { class: "error-box", text: `Could not load this view: ${err.message}` }));
  }
  if (seq !== routeSeq) return;
  window.leanstarTimings.push({ view, hash: location.hash, ms: performance.now() - started, at: performance.now() });
  document.body.dataset.seq = String(seq);
  document.body.dataset.state = "ready";
}

async function loadMeta() {
  META = await api.meta();
  document.getElementById("run-name").textContent = `leanstar traces · ${META.name}`;
  document.getElementById("mode").textContent = api.mode;
  document.title = `${META.name} · leanstar traces`;
  const banner = document.getElementById("banner");
  banner.replaceChildren();
  const replayCount = META.checkers[REPLAY] || 0;
  if (replayCount) {
    banner.append(el("div", { class: "banner replay" },
      `${fmtNum(replayCount)} of ${fmtNum(META.trajectories)} attempts in this run were checked by `,
      el("b", { text: REPLAY }), ": a proof marked so was never compiled by Lean."));
  }
  for (const f of META.files.filter((f) => f.partial)) {
    banner.append(el("div", { class: "banner warn",
      text: `${f.path}: its last line is incomplete (a writer is still running, or was killed); that record is not shown.` }));
  }
  if (META.subset) banner.append(el("div", { class: "banner warn", text: META.subset }));
}

/* ------------------------------------------------------------ theorem table */

async function showTable(params, seq) {
  const q = {
    round: params.get("round") || "", split: params.get("split") || "", status: params.get("status") || "any",
    q: params.get("q") || "", sort: params.get("sort") || "order", page: params.get("page") || "1", per_page: PER_PAGE,
  };
  const result = await api.theorems(q);
  if (seq !== routeSeq) return;
  const pages = Math.max(1, Math.ceil(result.total / result.per_page));
  const update = (changes) => setHash("/", Object.assign({}, q, { per_page: "" }, changes));
  const select = (name, options, value) => el("select", { name, onchange: (e) => update({ [name]: e.target.value, page: 1 }) },
    options.map(([v, label]) => el("option", { value: v, selected: String(v) === String(value) ? "" : null, text: label })));
  let typing = null;
  const search = el("input", { type: "search", name: "q", value: q.q, placeholder: "words in statements, thoughts, tactics",
    oninput: (e) => { clearTimeout(typing); typing = setTimeout(() => update({ q: e.target.value, page: 1 }), 300); },
    onkeydown: (e) => { if (e.key === "Enter") { clearTimeout(typing); update({ q: e.target.value, page: 1 }); } } });
  const filters = el("div", { class: "filters" },
    el("label", {}, "round", select("round", [["", "all rounds"], ...META.rounds.map((r) => [r, `round ${r}`])], q.round)),
    el("label", {}, "split", select("split", [["", "all splits"], ...META.splits.map((s) => [s, s])], q.split)),
    el("label", {}, "status", select("status", STATUSES, q.status)),
    el("label", {}, "search", search),
    el("label", {}, "sort", select("sort", SORTS, q.sort)));
  const pager = el("div", { class: "pager" },
    el("button", { disabled: q.page <= 1 ? "" : null, onclick: () => update({ page: Number(q.page) - 1 }), text: "‹ prev" }),
    el("span", { id: "page-info", text: `page ${q.page} of ${pages}` }),
    el("button", { disabled: Number(q.page) >= pages ? "" : null, onclick: () => update({ page: Number(q.page) + 1 }), text: "next ›" }),
    el("span", { class: "muted", id: "total", text: `${fmtNum(result.total)} theorems` }));
  const head = el("tr", {}, el("th", { text: "theorem" }), el("th", { text: "split" }),
    META.rounds.map((r) => el("th", { text: `round ${r}` })),
    el("th", { class: "num", text: "attempts" }), el("th", { class: "num", text: "proved attempts" }),
    el("th", { class: "num", text: "shortest proof" }), el("th", { class: "num", text: "steps sampled" }));
  const body = el("tbody", {}, result.rows.map((r) => el("tr", { "data-name": r.name },
    el("td", {}, el("a", { class: "thm-name", href: `#/theorem/${encodeURIComponent(r.name)}${q.q ? `?q=${encodeURIComponent(q.q)}` : ""}`, title: r.goal, text: r.name })),
    el("td", { text: r.split || "—" }),
    META.rounds.map((rnd) => el("td", {}, roundCell(r.rounds[String(rnd)]))),
    el("td", { class: "num", text: fmtNum(r.attempts) }), el("td", { class: "num", text: fmtNum(r.proved) }),
    el("td", { class: "num", text: r.best_len === null ? "—" : `${r.best_len} tactics` }),
    el("td", { class: "num", text: fmtNum(r.steps) }))));
  const table = el("table", { class: "data", id: "theorems" }, el("thead", {}, head), body);
  const empty = result.rows.length ? null : el("p", { class: "muted", text: "No theorem matches these filters." });
  app.replaceChildren(filters, pager, table, empty || "");
  if (q.q) { const s = app.querySelector("input[name=q]"); s.focus(); s.setSelectionRange(s.value.length, s.value.length); }
}

function roundCell(cell) {
  if (!cell) return el("span", { class: "badge none", text: "not attempted" });
  const parts = [el("span", { class: `badge ${cell.status}`, text: `${cell.status} ${cell.proved}/${cell.attempts}` })];
  if (cell.replay_only) parts.push(" ", replayTag());
  if (cell.rejected) parts.push(el("div", { class: "small muted", text: `${cell.rejected} rejected` }));
  if (cell.errors) parts.push(el("div", { class: "small muted", text: plural(cell.errors, "error") }));
  return el("span", {}, parts);
}

/* ------------------------------------------------------------ theorem page */

async function showTheorem(name, params, seq) {
  const text = params.get("q") || "";
  const t = await api.theorem(name, text);
  if (seq !== routeSeq) return;
  if (!t) { app.replaceChildren(el("p", { text: `No theorem named ${name} in this run.` })); return; }
  const roundFilter = params.get("round") || "", outcomeFilter = params.get("outcome") || "";
  const matches = new Set(t.matches || []);
  const shown = t.attempts.filter((a) => (roundFilter === "" || String(a.round) === roundFilter)
    && (outcomeFilter === "" || a.outcome === outcomeFilter));
  const tid = params.get("tid") !== null ? Number(params.get("tid")) : pickAttempt(shown, matches);
  const go = (changes) => {
    const merged = { q: text, round: roundFilter, outcome: outcomeFilter, tid: params.get("tid") || "" };
    setHash(`/theorem/${encodeURIComponent(name)}`, Object.assign(merged, changes));
  };
  const header = el("div", {},
    el("a", { href: lastTableHash, text: "← theorems" }),
    el("h2", { id: "theorem-name", text: t.name }),
    t.split ? el("span", { class: "chip", text: `split: ${t.split}` }) : null,
    t.statement ? el("div", {}, el("h4", { text: "Statement" }), el("pre", { class: "goal", text: t.statement })) : null,
    t.goal ? el("div", {}, el("h4", { text: "Initial goal" }), el("pre", { class: "goal", text: t.goal })) : null,
    el("div", { class: "chips" }, Object.entries(t.rounds).map(([r, c]) =>
      el("span", { class: "chip" }, `round ${r}: `, roundCell(c)))));
  const proofsBox = el("div", { id: "proofs" });
  const select = (label, value, options, key) => el("label", {}, label, el("select", { name: `attempt_${key}`, onchange: (e) => go({ [key]: e.target.value, tid: "" }) },
    options.map(([v, l]) => el("option", { value: v, selected: String(v) === value ? "" : null, text: l }))));
  const attemptFilters = el("div", { class: "filters" },
    select("round", roundFilter, [["", "all rounds"], ...Object.keys(t.rounds).map((r) => [r, `round ${r}`])], "round"),
    select("outcome", outcomeFilter, [["", "any outcome"], ["proved", "proved"], ["failed", "failed"], ["rejected", "rejected"], ["error", "error"]], "outcome"),
    text ? el("span", { class: "muted small" }, el("span", { class: "match-dot", text: "● " }), `${plural(matches.size, "attempt")} containing “${text}”`) : null);
  const rows = shown.map((a) => el("tr", { class: a.tid === tid ? "selected" : null, "data-tid": a.tid, onclick: () => go({ tid: a.tid }) },
    el("td", {}, matches.has(a.tid) ? el("span", { class: "match-dot", title: `contains “${text}”`, text: "●" }) : ""),
    el("td", { class: "num", text: a.round }), el("td", { class: "num", text: a.attempt }),
    el("td", {}, outcomeBadge(a.outcome), a.outcome === "proved" && a.replay ? el("div", {}, replayTag()) : null),
    el("td", { class: "num", text: `${a.proof_len}/${a.n_steps}` }), el("td", { class: "num", text: fmtSecs(a.elapsed_s) })));
  const attempts = el("div", {}, el("h3", { text: `Attempts (${shown.length} of ${t.attempts.length})` }), attemptFilters,
    el("div", { class: "attempts" }, el("table", { class: "data", id: "attempts" },
      el("thead", {}, el("tr", {}, el("th", {}), el("th", { class: "num", text: "round" }), el("th", { class: "num", text: "attempt" }),
        el("th", { text: "outcome" }), el("th", { class: "num", title: "tactics that advanced the proof / tactics sampled", text: "ok/sampled" }),
        el("th", { class: "num", text: "time" }))),
      el("tbody", {}, rows))));
  const trajBox = el("div", { id: "trajectory" }, tid === null ? el("p", { class: "muted", text: "No attempt to show." }) : "");
  app.replaceChildren(header, proofsBox, el("div", { class: "theorem-layout" }, attempts, trajBox));
  const jobs = [];
  if (Object.values(t.rounds).filter((c) => c.proved > 0).length >= 2) {
    jobs.push(api.proofs(name).then((p) => { if (seq === routeSeq) proofsBox.replaceChildren(sideBySide(p)); }));
  }
  if (tid !== null) {
    jobs.push(api.trajectory(tid).then((traj) => { if (seq === routeSeq) trajBox.replaceChildren(renderTrajectory(traj, text)); }));
  }
  await Promise.all(jobs);
}

function pickAttempt(attempts, matches) {
  if (!attempts.length) return null;
  const matching = attempts.filter((a) => matches.has(a.tid));
  const pool = matching.length ? matching : attempts;
  // Like `traces show`: the first proof of the latest round that has one, else the first attempt
  // of the latest round.
  const proved = pool.filter((a) => a.outcome === "proved");
  const from = proved.length ? proved : pool;
  const latest = Math.max(...from.map((a) => a.round));
  return from.find((a) => a.round === latest).tid;
}

function checkTags(t) {
  const tags = [];
  if (t.checked_by === REPLAY) tags.push(replayTag());
  else tags.push(el("span", { class: "small muted", text: `checked by ${t.checked_by}` }));
  if (t.verdict) {
    if (t.verdict.ok && t.verdict.checked_by !== REPLAY && t.checked_by !== REPLAY) {
      tags.push(el("span", { class: "verified-tag", title: t.verdict.reason, text: `✓ passed the whole-proof check (${t.verdict.checked_by})` }));
    } else if (!t.verdict.ok) {
      tags.push(el("span", { class: "refused-tag", text: `✗ whole-proof check refused: ${t.verdict.reason}` }));
    }
  }
  return tags;
}

function highlight(text, wanted) {
  if (!wanted.length || !text) return [text || ""];
  const parts = [];
  const re = /[\p{L}\p{N}]+/gu;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (wanted.some((w) => m[0].toLowerCase().startsWith(w))) {
      parts.push(text.slice(last, m.index), el("mark", { text: m[0] }));
      last = m.index + m[0].length;
    }
  }
  parts.push(text.slice(last));
  return parts;
}

function renderTrajectory(t, text) {
  const wanted = [...new Set(tokenize(text || ""))];
  const head = el("div", { class: "traj-head" },
    el("span", { class: "title", text: `round ${t.round} · attempt ${t.attempt}` }), outcomeBadge(t.outcome), checkTags(t),
    el("span", { class: "small muted", text: `${t.stop_reason ? `stop: ${t.stop_reason} · ` : ""}${fmtSecs(t.elapsed_s)} · ${t.strategy}${t.model ? ` · ${t.model}` : ""}` }),
    t.source ? el("span", { class: "small muted", text: t.source }) : null);
  const proof = t.proof ? el("div", {}, el("h4", {}, t.outcome === "proved" ? "Proof" : "Proof (refused)",
    t.checked_by === REPLAY ? [" ", replayTag()] : null), el("pre", { class: "proof-text", text: t.proof })) : null;
  const groups = [];
  for (const s of t.steps) {
    const g = groups[groups.length - 1];
    if (g && g.depth === s.depth) g.steps.push(s); else groups.push({ depth: s.depth, steps: [s] });
  }
  const body = groups.map((g) => el("div", { class: "depth" },
    el("div", { class: "depth-title", text: depthTitle(g) }),
    el("pre", { class: "state", text: g.steps[0].state }),
    g.steps.map((s, i) => renderStep(s, i, g, wanted))));
  return el("div", { class: "trajectory", "data-tid": t.tid }, head, proof, body.length ? body : el("p", { class: "muted", text: "No steps." }));
}

function advancing(s) { return s.outcome === "proof_state" || s.outcome === "proof_finished"; }

function depthTitle(g) {
  const n = g.steps.length, ok = advancing(g.steps[n - 1]);
  if (ok) return `step ${g.depth + 1}${n > 1 ? ` · ${plural(n - 1, "failed tactic")} resampled before it` : ""}`;
  return `step ${g.depth + 1} · ${plural(n, "tactic")} failed here; the attempt stopped`;
}

function renderStep(s, i, group, wanted) {
  const ok = s.outcome === "proof_state" || s.outcome === "proof_finished";
  const kind = ok ? "✓ accepted" : i < group.steps.length - 1 ? "✗ failed, resampled" : "✗ failed";
  const answer = {
    proof_state: () => el("div", { class: "answer" }, "Lean: new goals", el("pre", { text: s.state_after || "" })),
    proof_finished: () => el("div", { class: "answer" }, "Lean: no goals — proof complete"),
    lean_error: () => el("div", { class: "answer err" }, "Lean: error", el("pre", { text: s.message || "(no message)" })),
    timeout: () => el("div", { class: "answer err" }, "timeout", s.message ? el("pre", { text: s.message }) : null),
    env_failure: () => el("div", { class: "answer err" }, "environment failure (not the tactic's fault)", s.message ? el("pre", { text: s.message }) : null),
    unknown_to_replay: () => el("div", { class: "answer err" }, "unknown to replay: no recorded state for this tactic", s.message ? el("pre", { text: s.message }) : null),
    unparsable: () => el("div", { class: "answer err" }, "unparsable completion: no tactic found", s.message ? el("pre", { text: s.message }) : null),
  }[s.outcome] || (() => el("div", { class: "answer err", text: s.outcome }));
  const ownState = i > 0 && s.state !== group.steps[0].state ? el("pre", { class: "state", text: s.state }) : null;
  const timing = [`sample ${fmtSecs(s.sample_s)}`, `Lean ${fmtSecs(s.lean_s)}`];
  if (s.logprob !== null && s.logprob !== undefined) timing.push(`log-prob ${Number(s.logprob).toFixed(2)}`);
  return el("div", { class: `step ${ok ? "ok" : "failed"}`, "data-outcome": s.outcome },
    el("div", { class: "kind", text: kind }), ownState,
    s.thought ? el("div", { class: "thought" }, highlight(s.thought, wanted)) : el("div", { class: "thought none", text: "(no thought)" }),
    el("pre", { class: "tactic" }, highlight(s.tactic || "(no tactic)", wanted)),
    answer(), el("div", { class: "timing", text: timing.join(" · ") }));
}

function sideBySide(proofs) {
  return el("div", {}, el("h3", { text: "Proofs by round, side by side" }),
    el("div", { class: "side-by-side" }, proofs.map((p) => {
      const t = p.trajectory;
      const steps = t.steps.filter((s) => s.outcome === "proof_state" || s.outcome === "proof_finished");
      return el("div", { class: "col", "data-round": p.round },
        el("h4", { text: `round ${p.round} · attempt ${t.attempt} (${plural(p.proofs, "proof")} this round)` }),
        el("div", {}, checkTags(t)),
        steps.map((s) => el("div", { class: "pstep" },
          s.thought ? el("div", { class: "thought", text: s.thought }) : el("div", { class: "thought none", text: "(no thought)" }),
          el("pre", { class: "tactic", text: s.tactic }))));
    })));
}

/* ------------------------------------------------------------ summary and rounds */

async function showFragment(title, load, seq) {
  const html = await load();
  if (seq !== routeSeq) return;
  const box = el("div", { class: "fragment" });
  box.innerHTML = html; // built and escaped by leanstar.traces.summary / compare
  app.replaceChildren(el("h2", { text: title }), box);
  if (load === api.summary) app.append(filesTable());
}

function filesTable() {
  const what = { trajectories: "trajectories", theorems: "theorems", proofs: "steps kept for training" };
  return el("div", {}, el("h3", { text: "Record files" }),
    el("table", { class: "data", id: "files" },
      el("thead", {}, el("tr", {}, el("th", { text: "file" }), el("th", { text: "holds" }), el("th", { class: "num", text: "records" }))),
      el("tbody", {}, META.files.map((f) => el("tr", {},
        el("td", { class: "mono", text: f.path + (f.partial ? " (last line incomplete)" : "") }),
        el("td", { text: what[f.kind] || f.kind }), el("td", { class: "num", text: fmtNum(f.records) }))))));
}

window.addEventListener("hashchange", route);
route();
