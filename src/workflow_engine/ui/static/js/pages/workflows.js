// Stored workflows: the latest version of each, a workflow's versions and graph, and a run
// form built from its `input_schema`.

import { html, useMemo, useState } from "../../vendor/htm-preact-standalone.module.js";
import { get, post, query } from "../api.js";
import { Graph } from "../graph.js";
import { SchemaForm } from "../schemaform.js";
import { Json, Problem, decoded, navigate, useLoad, when } from "../ui.js";

function WorkflowList() {
  const [items, setItems] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [, error] = useLoad(async () => {
    const page = await get(`/api/workflows${query({ limit: 100 })}`);
    setItems(page.items);
    setCursor(page.nextCursor);
    return page;
  }, []);
  const [moreError, setMoreError] = useState(null);
  const more = async () => {
    try {
      const page = await get(`/api/workflows${query({ limit: 100, cursor })}`);
      setItems([...items, ...page.items]);
      setCursor(page.nextCursor);
    } catch (err) {
      setMoreError(err);
    }
  };
  return html`<section>
    <header class="page-head"><h1>Workflows</h1></header>
    <${Problem} error=${error || moreError} />
    ${items === null
      ? !error && html`<p class="muted">Loading…</p>`
      : items.length === 0
        ? html`<p class="muted">No stored workflows. Store one with <code>POST /api/workflows</code> or <code>wfe workflows push FILE</code>.</p>`
        : html`<div class="table-wrap"><table class="table workflows">
            <thead><tr><th>workflow</th><th>name</th><th>latest version</th><th>updated</th><th></th></tr></thead>
            <tbody>
              ${items.map(
                (w) => html`<tr key=${w.workflowId} data-workflow=${w.workflowId}>
                  <td><a href=${`#/workflows/${encodeURIComponent(w.workflowId)}`}><code>${w.workflowId}</code></a></td>
                  <td>${w.name || ""}</td><td>${w.version}</td><td>${when(w.updatedAt)}</td>
                  <td><a class="button small" href=${`#/workflows/${encodeURIComponent(w.workflowId)}`}>Open / run</a></td>
                </tr>`,
              )}
            </tbody></table></div>
          ${cursor && html`<button type="button" onClick=${more}>More</button>`}`}
  </section>`;
}

function shapeOf(definition) {
  return {
    nodes: (definition.nodes || []).map((n) => ({ id: n.id, type: n.type, name: n.name })),
    edges: (definition.edges || []).map((e) => ({ source: e.source, target: e.target, branch: e.branch, recursive: !!e.recursive })),
  };
}

function WorkflowDetail({ id, version }) {
  const [versions, versionsError] = useLoad(() => get(`/api/workflows/${encodeURIComponent(id)}/versions`), [id]);
  const [workflow, error] = useLoad(() => get(`/api/workflows/${encodeURIComponent(id)}${query({ version })}`), [id, version]);
  const [queue, setQueue] = useState("");
  const shape = useMemo(() => workflow && shapeOf(workflow.definition), [workflow]);
  const run = async (inputs) => {
    const body = { workflowId: id, version: workflow.version, inputs };
    if (queue) body.type = queue;
    const started = await post("/api/workflow/execute", body);
    navigate(`#/executions/${encodeURIComponent(started.executionId)}`);
  };
  return html`<section class="workflow" data-workflow=${id}>
    <header class="page-head">
      <div>
        <p class="crumbs"><a href="#/workflows">Workflows</a> /</p>
        <h1><code>${id}</code> ${workflow && html`<small>v${workflow.version}</small>`}</h1>
        ${workflow && html`<p class="muted">${workflow.name || ""} · stored ${when(workflow.createdAt)} · <a href=${`#/executions?workflowId=${encodeURIComponent(id)}`}>its executions</a></p>`}
      </div>
      ${versions &&
      html`<label class="inline">Version
        <select value=${workflow ? String(workflow.version) : ""} onChange=${(e) => navigate(`#/workflows/${encodeURIComponent(id)}?version=${e.currentTarget.value}`)}>
          ${versions.items.map((v) => html`<option value=${String(v.version)}>v${v.version} · ${when(v.createdAt)}</option>`)}
        </select>
      </label>`}
    </header>
    <${Problem} error=${error || versionsError} />
    ${workflow &&
    html`<div class="split">
        <section class="card graph-card"><h2>Graph</h2><div class="graph-scroll"><${Graph} shape=${shape} fit=${shape.nodes.length > 4} /></div></section>
        <section class="card run-form" aria-label="run this workflow">
          <h2>Run v${workflow.version}</h2>
          <label class="inline">Queue
            <select value=${queue} onChange=${(e) => setQueue(e.currentTarget.value)}>
              <option value="">default</option>
              ${["realtime", "workflow", "background"].map((q) => html`<option value=${q}>${q}</option>`)}
            </select>
          </label>
          <${SchemaForm} key=${`${id}-${workflow.version}`} schema=${workflow.definition.input_schema || { type: "object", properties: {} }}
            idPrefix="input" submitLabel="Run" onSubmit=${run} />
        </section>
      </div>
      <details class="card"><summary>Definition</summary><${Json} value=${workflow.definition} /></details>`}
  </section>`;
}

export function WorkflowsPage({ rest, params }) {
  if (rest) return html`<${WorkflowDetail} id=${decoded(rest)} version=${params.get("version") || undefined} />`;
  return html`<${WorkflowList} />`;
}
