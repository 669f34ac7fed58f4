// Cron and interval schedules: their next run, and deleting one (asked twice).

import { html, useState } from "../../vendor/htm-preact-standalone.module.js";
import { del, get } from "../api.js";
import { Problem, useLoad, when } from "../ui.js";

function repeatText(repeat) {
  if (!repeat) return "";
  const every = repeat.every ? `every ${repeat.every} ms` : "";
  const cron = repeat.cron ? `cron ${repeat.cron}` : "";
  return [cron, every, repeat.tz && `(${repeat.tz})`, repeat.limit && `limit ${repeat.limit}`].filter(Boolean).join(" ");
}

function Row({ s, onDeleted }) {
  const [asking, setAsking] = useState(false);
  const [problem, setProblem] = useState(null);
  const remove = async () => {
    try {
      await del(`/api/workflow/schedules/${encodeURIComponent(s.scheduleId)}`);
      onDeleted();
    } catch (err) {
      setProblem(err);
    }
  };
  return html`<tr data-schedule=${s.scheduleId}>
    <td><code>${s.scheduleId}</code></td>
    <td>${s.workflowId || html`<span class="muted">inline</span>`}</td>
    <td>${repeatText(s.repeat)}</td>
    <td>${when(s.nextRunAt) || "—"}</td>
    <td>${s.iterations ?? ""}</td>
    <td>${when(s.createdAt)}</td>
    <td><div class="row-actions">
      ${asking
        ? html`<button type="button" class="danger small" onClick=${remove}>Delete it</button>
            <button type="button" class="small" onClick=${() => setAsking(false)}>Keep</button>`
        : html`<button type="button" class="small" onClick=${() => setAsking(true)}>Delete…</button>`}
      <${Problem} error=${problem} />
    </div></td>
  </tr>`;
}

export function SchedulesPage() {
  const [body, error, reload] = useLoad(() => get("/api/workflow/schedules"), []);
  return html`<section>
    <header class="page-head"><h1>Schedules</h1><button type="button" onClick=${reload}>Refresh</button></header>
    <${Problem} error=${error} />
    ${!body
      ? !error && html`<p class="muted">Loading…</p>`
      : body.items.length === 0
        ? html`<p class="muted">No schedules. <code>execute</code> with <code>repeat: {cron}</code> or <code>{every}</code> makes one.</p>`
        : html`<div class="table-wrap"><table class="table schedules">
            <thead><tr><th>schedule</th><th>workflow</th><th>repeat</th><th>next run</th><th>runs</th><th>created</th><th></th></tr></thead>
            <tbody>${body.items.map((s) => html`<${Row} key=${s.scheduleId} s=${s} onDeleted=${reload} />`)}</tbody>
          </table></div>`}
  </section>`;
}
