// Queue counts (every key sees its tenant's executions by status; an admin key sees the
// queues, and pauses, resumes and cleans them).

import { html, useState } from "../../vendor/htm-preact-standalone.module.js";
import { get, post } from "../api.js";
import { Problem, usePoll } from "../ui.js";

const JOB_STATES = ["waiting", "prioritized", "paused", "active", "delayed", "completed", "failed"];
const REFRESH_MS = 3000;

function Clean({ name, onDone }) {
  const [state, setState] = useState("completed");
  const [grace, setGrace] = useState("0");
  const [outcome, setOutcome] = useState(null);
  const [problem, setProblem] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setProblem(null);
    try {
      const body = await post(`/api/admin/queues/${encodeURIComponent(name)}/clean`, { state, graceMs: Number(grace) || 0 });
      setOutcome(`${body.removed} removed${body.cancelled ? `, ${body.cancelled} cancelled` : ""}`);
      onDone();
    } catch (err) {
      setProblem(err);
    }
  };
  return html`<form class="clean" onSubmit=${submit} aria-label=${`clean ${name}`}>
    <label>state <select value=${state} onChange=${(e) => setState(e.currentTarget.value)}>
      ${["completed", "failed", "delayed", "wait"].map((s) => html`<option value=${s}>${s}</option>`)}
    </select></label>
    <label>older than (ms) <input type="number" min="0" step="1" value=${grace} onInput=${(e) => setGrace(e.currentTarget.value)} /></label>
    <button type="submit" class="small">Clean</button>
    ${outcome && html`<span class="muted">${outcome}</span>`}
    <${Problem} error=${problem} />
  </form>`;
}

function AdminQueues() {
  const [queues, setQueues] = useState(null);
  const [problem, setProblem] = useState(null);
  const load = async () => {
    try {
      setQueues((await get("/api/admin/queues")).queues);
    } catch (err) {
      setProblem(err);
      throw err;
    }
  };
  usePoll(load, REFRESH_MS, []);
  const toggle = async (q) => {
    setProblem(null);
    try {
      await post(`/api/admin/queues/${encodeURIComponent(q.name)}/${q.paused ? "resume" : "pause"}`);
      await load();
    } catch (err) {
      setProblem(err);
    }
  };
  return html`<section class="card">
    <h2>Queues</h2>
    <${Problem} error=${problem} />
    ${!queues
      ? html`<p class="muted">Loading…</p>`
      : html`<div class="table-wrap"><table class="table queues">
          <thead><tr><th>queue</th><th>state</th>${JOB_STATES.map((s) => html`<th class="num">${s}</th>`)}<th class="num">workers</th><th></th></tr></thead>
          <tbody>
            ${queues.map(
              (q) => html`<tr key=${q.name} data-queue=${q.name} data-paused=${String(q.paused)}>
                <td><strong>${q.name}</strong></td>
                <td>${q.paused ? html`<span class="status status-waiting">paused</span>` : html`<span class="status status-completed">running</span>`}</td>
                ${JOB_STATES.map((s) => html`<td class="num">${q.jobs[s] ?? 0}</td>`)}
                <td class="num">${q.workers}</td>
                <td><div class="row-actions">
                  <button type="button" class="small" onClick=${() => toggle(q)}>${q.paused ? "Resume" : "Pause"}</button>
                  <${Clean} name=${q.name} onDone=${load} />
                </div></td>
              </tr>`,
            )}
          </tbody>
        </table></div>`}
  </section>`;
}

export function QueuesPage({ session }) {
  const [stats, setStats] = useState(null);
  const [problem, setProblem] = useState(null);
  usePoll(
    async () => {
      try {
        setStats(await get("/api/workflow/stats"));
        setProblem(null);
      } catch (err) {
        setProblem(err);
        throw err;
      }
    },
    REFRESH_MS,
    [],
  );
  const counts = stats ? Object.entries(stats.executions || {}) : [];
  return html`<section>
    <header class="page-head"><h1>Queues</h1></header>
    <${Problem} error=${problem} />
    <section class="card">
      <h2>Executions by status${session.authRequired ? html` <small class="muted">(tenant ${session.tenant})</small>` : ""}</h2>
      ${!stats
        ? html`<p class="muted">Loading…</p>`
        : html`<dl class="counts">${counts.map(([status, n]) => html`<div><dt class=${`status status-${status}`}>${status}</dt><dd>${n}</dd></div>`)}</dl>`}
    </section>
    ${session.admin
      ? html`<${AdminQueues} />`
      : html`<p class="muted">Queue-wide counts, pause, resume and clean need a key with the admin scope.</p>`}
  </section>`;
}
