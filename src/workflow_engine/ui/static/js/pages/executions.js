// Executions, newest first, filtered by status, workflow and client. The rows of active
// executions follow their events over the WebSocket; new executions are picked up by asking
// for the first page again every few seconds (there is no tenant-wide event feed).

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.module.js";
import { get, query } from "../api.js";
import { follow, onConnection } from "../live.js";
import { ACTIVE, EXECUTION_STATUSES, Problem, Status, duration, span, usePoll, when } from "../ui.js";

const PAGE = 50;
const NEW_ROWS_MS = 2000;

function Filters({ filters, onChange }) {
  const [draft, setDraft] = useState(filters);
  useEffect(() => setDraft(filters), [filters.status, filters.workflowId, filters.clientId]);
  const submit = (e) => {
    e.preventDefault();
    onChange(draft);
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="filter executions">
    <label>Status
      <select name="status" value=${draft.status || ""} onChange=${(e) => onChange({ ...draft, status: e.currentTarget.value })}>
        <option value="">any</option>
        ${EXECUTION_STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
    </label>
    <label>Workflow <input name="workflowId" value=${draft.workflowId || ""} onInput=${(e) => setDraft({ ...draft, workflowId: e.currentTarget.value })} /></label>
    <label>Client <input name="clientId" value=${draft.clientId || ""} onInput=${(e) => setDraft({ ...draft, clientId: e.currentTarget.value })} /></label>
    <button type="submit">Apply</button>
  </form>`;
}

export function ExecutionsPage({ params }) {
  const filters = { status: params.get("status") || "", workflowId: params.get("workflowId") || "", clientId: params.get("clientId") || "" };
  const filterKey = JSON.stringify(filters);
  const [rows, setRows] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [problem, setProblem] = useState(null);
  const [connected, setConnected] = useState(false);
  const followed = useRef(new Map()); // executionId -> unfollow
  const filterKeyNow = useRef(filterKey);
  filterKeyNow.current = filterKey;

  useEffect(() => onConnection(setConnected), []);

  // the first page: merged with what is shown (new rows on top; rows already shown keep the
  // state their events gave them)
  const shownFor = useRef(null); // the filters the rows shown were fetched with
  usePoll(
    async () => {
      const asked = filterKey;
      try {
        const page = await get(`/api/workflow/executions${query({ ...filters, limit: PAGE })}`);
        if (asked !== filterKeyNow.current) return; // the filters changed meanwhile
        setProblem(null);
        if (shownFor.current !== asked) {
          shownFor.current = asked;
          setCursor(page.nextCursor);
          setRows(page.items);
          return;
        }
        setRows((old) => {
          const known = new Set(old.map((r) => r.executionId));
          const fresh = page.items.filter((r) => !known.has(r.executionId));
          return fresh.length ? [...fresh, ...old] : old;
        });
      } catch (err) {
        setProblem(err);
        throw err;
      }
    },
    NEW_ROWS_MS,
    [filterKey],
  );

  // follow every active row; stop when it ends or leaves the list
  useEffect(() => {
    const live = followed.current;
    const wanted = new Set((rows || []).filter((r) => ACTIVE.has(r.status)).map((r) => r.executionId));
    for (const [id, stop] of live) {
      if (!wanted.has(id)) {
        stop();
        live.delete(id);
      }
    }
    for (const id of wanted) {
      if (live.has(id)) continue;
      live.set(
        id,
        follow(id, (event) => {
          const status = statusOf(event);
          if (!status && event.type !== "execution.progress") return;
          setRows((old) =>
            (old || []).map((r) =>
              r.executionId !== id
                ? r
                : {
                    ...r,
                    status: status || r.status,
                    startedAt: r.startedAt || (event.type === "execution.started" ? event.timestamp : r.startedAt),
                    completedAt: status && !ACTIVE.has(status) ? event.timestamp : r.completedAt,
                    percentage: event.type === "execution.progress" ? event.data.percentage : r.percentage,
                  },
            ),
          );
        }),
      );
    }
  }, [rows]);
  useEffect(() => () => {
    for (const stop of followed.current.values()) stop();
    followed.current.clear();
  }, []);

  const more = async () => {
    try {
      const page = await get(`/api/workflow/executions${query({ ...filters, limit: PAGE, cursor })}`);
      setCursor(page.nextCursor);
      setRows((old) => [...(old || []), ...page.items.filter((r) => !(old || []).some((o) => o.executionId === r.executionId))]);
    } catch (err) {
      setProblem(err);
    }
  };
  const visible = shownFor.current === filterKey ? rows : null; // (other filters' rows: hidden)
  const apply = (next) => {
    location.hash = `#/executions${query(next)}`;
  };

  return html`<section>
    <header class="page-head">
      <h1>Executions</h1>
      <p class=${`live-dot ${connected ? "on" : "off"}`} title="live updates over the WebSocket">${connected ? "live" : "connecting…"}</p>
    </header>
    <${Filters} filters=${filters} onChange=${apply} />
    <${Problem} error=${problem} />
    ${visible === null
      ? html`<p class="muted">Loading…</p>`
      : visible.length === 0
        ? html`<p class="muted">No executions${filterKey !== "{\"status\":\"\",\"workflowId\":\"\",\"clientId\":\"\"}" ? " match these filters" : " yet"}.</p>`
        : html`<div class="table-wrap"><table class="table executions">
            <thead><tr><th>execution</th><th>status</th><th>workflow</th><th>client</th><th>created</th><th>took</th></tr></thead>
            <tbody>
              ${visible.map(
                (r) => html`<tr key=${r.executionId} data-execution=${r.executionId} data-status=${r.status}>
                  <td><a href=${`#/executions/${encodeURIComponent(r.executionId)}`}><code>${r.executionId}</code></a></td>
                  <td><${Status} status=${r.status} />${r.status === "running" && r.percentage != null ? html` <small>${r.percentage}%</small>` : ""}</td>
                  <td>${r.workflowId || html`<span class="muted">inline</span>`}${r.workflowVersion ? ` v${r.workflowVersion}` : ""}</td>
                  <td>${r.clientId || ""}</td>
                  <td>${when(r.createdAt)}</td>
                  <td>${r.startedAt ? duration(span(r.startedAt, r.completedAt)) : ""}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>
          ${cursor && html`<button type="button" id="older" onClick=${more}>Older executions</button>`}`}
  </section>`;
}

function statusOf(event) {
  switch (event.type) {
    case "execution.started":
      return "running";
    case "execution.waiting":
      return "waiting";
    case "execution.completed":
      return (event.data && event.data.status) || "completed";
    case "execution.failed":
      return "failed";
    case "execution.cancelled":
      return "cancelled";
    default:
      return null;
  }
}
