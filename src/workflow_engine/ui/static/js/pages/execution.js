// One execution: its graph with live node statuses, a node's details, the timing waterfall,
// the event log; cancel, rerun from a node, and the answer form of a waiting `wait_input`.

import { html, useEffect, useMemo, useRef, useState } from "../../vendor/htm-preact-standalone.module.js";
import { get, post } from "../api.js";
import { Graph } from "../graph.js";
import { follow } from "../live.js";
import { SchemaForm } from "../schemaform.js";
import { ACTIVE, FINAL, Json, Problem, Status, duration, navigate, span, when } from "../ui.js";

const MAX_EVENTS_SHOWN = 500;
const MAX_EVENTS_KEPT = 5000; // (an llm node streams thousands of chunks)
const FLUSH_MS = 60; // events are applied in batches: a 1,000-node run sends thousands

// The state an execution's events build, starting from its status snapshot.
function fromSnapshot(body) {
  const nodes = {};
  for (const n of body.nodes || []) nodes[n.nodeId] = n;
  return {
    context: body.context,
    progress: body.progress,
    result: body.result,
    nodes,
    logs: {},
    streams: {},
    retries: {},
    children: {},
    events: [],
    eventCount: 0,
  };
}

function apply(state, event) {
  const data = event.data || {};
  const id = data.nodeId;
  state.events.push(event);
  state.eventCount += 1;
  if (state.events.length > MAX_EVENTS_KEPT) state.events.splice(0, state.events.length - MAX_EVENTS_KEPT);
  if (data.childExecutionId) {
    // a child execution's node (a `workflow` node runs it): shown under that node, not in
    // this graph, where its id could name another node
    const under = data.parentNodeId || "";
    const children = (state.children[under] = state.children[under] || {});
    const child = (children[data.childExecutionId] = children[data.childExecutionId] || {});
    child[id] = data.status || (event.type === "node.started" ? "running" : child[id]);
    return;
  }
  switch (event.type) {
    case "execution.queued":
      break;
    case "execution.started":
      state.context = { ...state.context, status: "running" };
      break;
    case "execution.progress":
      state.progress = data;
      break;
    case "execution.waiting":
      state.context = { ...state.context, status: "waiting" };
      for (const w of data.nodes || []) state.nodes[w.nodeId] = { ...(state.nodes[w.nodeId] || { nodeId: w.nodeId }), status: "waiting", output: w };
      if (data.progress) state.progress = data.progress;
      break;
    case "execution.completed":
    case "execution.failed":
    case "execution.cancelled": {
      const status = data.status || event.type.slice("execution.".length);
      state.context = { ...state.context, status, error: data.error || state.context.error };
      if (data.progress) state.progress = data.progress;
      if ("result" in data) state.result = data.result;
      break;
    }
    case "node.started":
      state.nodes[id] = { ...(state.nodes[id] || {}), nodeId: id, nodeType: data.nodeType, status: "running", input: data.input, startedAt: data.startedAt, completedAt: null, error: null };
      break;
    case "node.completed":
    case "node.failed":
    case "node.skipped":
      state.nodes[id] = { ...(state.nodes[id] || {}), ...data };
      break;
    case "node.retrying":
      (state.retries[id] = state.retries[id] || []).push(data);
      break;
    case "node.log":
      (state.logs[id] = state.logs[id] || []).push(data.text);
      break;
    case "node.stream": {
      const chunk = data.chunk || {};
      const text = chunk.text || chunk.reasoning || (typeof chunk.data === "string" ? chunk.data : JSON.stringify(chunk));
      state.streams[id] = (state.streams[id] || "") + text;
      break;
    }
    default:
      break;
  }
}

function topLevel(nodeId) {
  return !nodeId.includes("[");
}

function NodeDetails({ id, state, shape }) {
  if (!id) return html`<p class="muted">Select a node in the graph for its input, output, error, logs and timings.</p>`;
  const result = state.nodes[id] || { nodeId: id, status: "pending" };
  const node = shape.nodes.find((n) => n.id === id) || {};
  const iterations = Object.values(state.nodes).filter((n) => n.nodeId.startsWith(`${id}[`));
  const logs = state.logs[id] || [];
  const retries = state.retries[id] || [];
  const stream = state.streams[id];
  const children = { ...(state.children[id] || {}) };
  const waitedChild = result.output && result.output.childExecutionId;
  if (waitedChild && !children[waitedChild]) children[waitedChild] = {};
  return html`<div class="node-details" data-node=${id}>
    <h3>${id} <${Status} status=${result.status} /></h3>
    <dl class="facts">
      <dt>Type</dt><dd>${result.nodeType || node.type}</dd>
      ${node.name && html`<dt>Name</dt><dd>${node.name}</dd>`}
      <dt>Attempt</dt><dd>${result.attempt ?? "—"}</dd>
      <dt>Started</dt><dd>${when(result.startedAt) || "—"}</dd>
      <dt>Completed</dt><dd>${when(result.completedAt) || "—"}</dd>
      <dt>Duration</dt><dd>${result.durationMs != null ? duration(result.durationMs) : duration(span(result.startedAt, result.completedAt)) || "—"}</dd>
    </dl>
    ${result.error && html`<h4>Error</h4><${Json} value=${result.error} />`}
    <h4>Input</h4><${Json} value=${result.input} />
    <h4>Output</h4><${Json} value=${result.output} />
    ${stream && html`<h4>Streamed</h4><pre class="json">${stream}</pre>`}
    <h4>Logs</h4>
    ${logs.length ? html`<pre class="logs">${logs.join("")}</pre>` : html`<p class="muted">none</p>`}
    ${retries.length > 0 &&
    html`<h4>Attempts</h4>
      <ol class="attempts">
        ${retries.map((r) => html`<li>attempt ${r.attempt}: ${(r.error && r.error.message) || JSON.stringify(r.error)}; retried after ${r.delay} s</li>`)}
      </ol>`}
    ${Object.keys(children).length > 0 &&
    html`<h4>Child executions</h4>
      <ul class="children">
        ${Object.entries(children).map(
          ([child, nodes]) => html`<li><a href=${`#/executions/${encodeURIComponent(child)}`}><code>${child}</code></a>
            ${Object.entries(nodes).map(([n, st]) => html` <code>${n}</code> <${Status} status=${st} />`)}</li>`,
        )}
      </ul>`}
    ${iterations.length > 0 &&
    html`<h4>Iterations (${iterations.length} node results)</h4>
      <ul class="iterations">
        ${iterations.slice(0, 200).map((n) => html`<li><code>${n.nodeId}</code> <${Status} status=${n.status} /> ${duration(n.durationMs)}</li>`)}
      </ul>`}
  </div>`;
}

function Waterfall({ state, onSelect }) {
  const rows = Object.values(state.nodes)
    .filter((n) => n.startedAt && topLevel(n.nodeId))
    .sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt));
  if (!rows.length) return html`<p class="muted">No node has started yet.</p>`;
  const t0 = Date.parse(rows[0].startedAt);
  const ends = rows.map((n) => (n.completedAt ? Date.parse(n.completedAt) : Date.now()));
  const total = Math.max(1, Math.max(...ends) - t0);
  return html`<div class="waterfall" role="list">
    <div class="waterfall-scale"><span>0</span><span>${duration(total)}</span></div>
    ${rows.map((n, i) => {
      const left = ((Date.parse(n.startedAt) - t0) / total) * 100;
      const width = Math.max(0.4, ((ends[i] - Date.parse(n.startedAt)) / total) * 100);
      return html`<div class="waterfall-row" role="listitem" key=${n.nodeId}>
        <button type="button" class="link" onClick=${() => onSelect(n.nodeId)}>${n.nodeId}</button>
        <div class="waterfall-track"><div class=${`bar status-${n.status}`} style=${{ left: `${left}%`, width: `${width}%` }}
          title=${`${n.nodeId}: ${duration(ends[i] - Date.parse(n.startedAt))}`}></div></div>
        <span class="waterfall-ms">${duration(ends[i] - Date.parse(n.startedAt))}</span>
      </div>`;
    })}
  </div>`;
}

function EventLog({ events, total }) {
  const shown = events.slice(-MAX_EVENTS_SHOWN);
  return html`<div class="event-log">
    ${total > shown.length && html`<p class="muted">The last ${shown.length} of ${total} events.</p>`}
    <table class="table compact">
      <thead><tr><th>time</th><th>event</th><th>node</th></tr></thead>
      <tbody>
        ${shown.map((e) => html`<tr key=${e.id}><td>${when(e.timestamp)}</td><td><code>${e.type}</code></td><td>${(e.data && e.data.nodeId) || ""}</td></tr>`)}
      </tbody>
    </table>
  </div>`;
}

function WaitingForms({ executionId, state }) {
  const waiting = Object.values(state.nodes).filter((n) => n.status === "waiting" && n.output && n.output.waitingFor === "input");
  if (state.context.status !== "waiting" || !waiting.length) return null;
  return html`<section class="card waiting" aria-label="answer the waiting input">
    ${waiting.map(
      (n) => html`<div key=${n.nodeId} class="wait-input" data-node=${n.nodeId}>
        <h2>Input wanted by <code>${n.nodeId}</code></h2>
        ${n.output.prompt && html`<p class="prompt">${n.output.prompt}</p>`}
        ${n.output.timeoutAt && html`<p class="muted">Answer before ${when(n.output.timeoutAt)}.</p>`}
        <${SchemaForm} schema=${n.output.schema || {}} idPrefix=${`answer-${n.nodeId}`} submitLabel="Send answer"
          onSubmit=${(input) => post(`/api/workflow/resume/${encodeURIComponent(executionId)}`, { nodeId: n.nodeId, input })} />
      </div>`,
    )}
  </section>`;
}

// In a big graph: select a node by its id, and bring it into view.
function FindNode({ shape, onFound }) {
  const [text, setText] = useState("");
  const [missing, setMissing] = useState(false);
  const find = (e) => {
    e.preventDefault();
    const id = text.trim();
    const known = shape.nodes.some((n) => n.id === id);
    setMissing(!known);
    if (!known) return;
    onFound(id);
    const box = document.querySelector(`svg.graph g.node[data-node="${CSS.escape(id)}"]`);
    if (box) {
      box.scrollIntoView({ block: "center", inline: "center" });
      box.focus({ preventScroll: true });
    }
  };
  return html`<form class="find-node" onSubmit=${find} role="search">
    <label for="find-node" class="sr-only">Node id</label>
    <input id="find-node" placeholder="node id" value=${text} aria-invalid=${missing}
      onInput=${(e) => setText(e.currentTarget.value)} />
    <button type="submit" class="small">Find</button>
    ${missing && html`<span class="muted" role="status">no such node</span>`}
  </form>`;
}

export function ExecutionPage({ id }) {
  const [shape, setShape] = useState(null);
  const [state, setState] = useState(null);
  const [problem, setProblem] = useState(null); // the page could not load
  const [refused, setRefused] = useState(null); // an action the API refused
  const [selected, setSelected] = useState(null);
  const [fit, setFit] = useState(false);
  const [busy, setBusy] = useState(false);
  const live = useRef(null);

  useEffect(() => {
    let stopped = false;
    let unfollow = () => {};
    let timer = null;
    const pending = [];
    const flush = () => {
      timer = null;
      if (stopped || !live.current) return;
      const final = pending.some((e) => e.type.startsWith("execution.") && FINAL.has(e.data && e.data.status ? e.data.status : e.type.slice(10)));
      for (const e of pending.splice(0)) apply(live.current, e);
      setState({ ...live.current });
      performance.clearMarks("wfe:events-applied"); // (one mark, the latest: for benchmarks)
      performance.mark("wfe:events-applied");
      // the recorded results are the last word (a cancel ends nodes without node events)
      if (final) refresh().catch((err) => !stopped && setRefused(err));
    };
    const refresh = async () => {
      const body = await get(`/api/workflow/status/${encodeURIComponent(id)}?nodes=true`);
      if (stopped) return;
      const next = fromSnapshot(body);
      const old = live.current;
      if (old) {
        const { logs, streams, retries, children, events, eventCount } = old;
        Object.assign(next, { logs, streams, retries, children, events, eventCount });
      }
      live.current = next;
      setState({ ...next });
    };
    (async () => {
      try {
        const [graph] = await Promise.all([get(`/ui/api/graph/${encodeURIComponent(id)}`), refresh()]);
        if (stopped) return;
        setShape(graph);
        unfollow = follow(id, (event) => {
          pending.push(event);
          if (timer === null) timer = setTimeout(flush, FLUSH_MS);
        });
      } catch (err) {
        if (!stopped) setProblem(err);
      }
    })();
    return () => {
      stopped = true;
      unfollow();
      clearTimeout(timer);
      live.current = null;
    };
  }, [id]);

  const statuses = useMemo(() => {
    const out = {};
    if (state) for (const [nodeId, n] of Object.entries(state.nodes)) out[nodeId] = n.status;
    return out;
  }, [state]);

  if (problem) return html`<section><h1>Execution <code>${id}</code></h1><${Problem} error=${problem} /></section>`;
  if (!state || !shape) return html`<p class="muted">Loading execution ${id}…</p>`;

  const ctx = state.context;
  const act = async (what) => {
    setBusy(true);
    setRefused(null);
    try {
      await what();
    } catch (err) {
      setRefused(err);
    } finally {
      setBusy(false);
    }
  };
  const cancel = () => act(() => post(`/api/workflow/cancel/${encodeURIComponent(id)}`));
  const rerun = () =>
    act(async () => {
      const started = await post(`/api/workflow/rerun/${encodeURIComponent(id)}`, { fromNode: selected });
      navigate(`#/executions/${encodeURIComponent(started.executionId)}`);
    });
  const progress = state.progress || {};
  const canRerun = FINAL.has(ctx.status) && selected && topLevel(selected) && shape.nodes.some((n) => n.id === selected);

  return html`<section class="execution" data-execution=${id} data-status=${ctx.status}>
    <header class="page-head">
      <div>
        <p class="crumbs"><a href="#/executions">Executions</a> /</p>
        <h1><code>${id}</code> <${Status} status=${ctx.status} /></h1>
        <p class="muted">
          ${ctx.workflowId || "inline definition"}${ctx.workflowVersion ? ` v${ctx.workflowVersion}` : ""} · ${ctx.type} · created ${when(ctx.createdAt)}
          ${ctx.startedAt && ` · ran ${duration(span(ctx.startedAt, ctx.completedAt))}`}
          ${progress.totalNodes ? ` · ${progress.percentage ?? 0}% of ${progress.totalNodes} nodes` : ""}
          ${ctx.metadata && ctx.metadata.rerunOf && html` · rerun of <a href=${`#/executions/${encodeURIComponent(ctx.metadata.rerunOf)}`}>${ctx.metadata.rerunOf}</a>`}
        </p>
      </div>
      <div class="actions">
        ${ACTIVE.has(ctx.status) && html`<button type="button" class="danger" id="cancel" disabled=${busy} onClick=${cancel}>Cancel execution</button>`}
        <button type="button" id="rerun" disabled=${busy || !canRerun} onClick=${rerun}
          title=${canRerun ? "" : "select a node of an ended execution"}>Rerun from ${selected && topLevel(selected) ? selected : "selected node"}</button>
      </div>
    </header>
    <${Problem} error=${refused} />
    ${ctx.error && html`<div class="problem"><strong>${ctx.error.type || "error"}${ctx.error.nodeId ? ` in ${ctx.error.nodeId}` : ""}:</strong> ${ctx.error.message}</div>`}
    <${WaitingForms} executionId=${id} state=${state} />
    <div class="split">
      <section class="card graph-card" aria-label="graph">
        <div class="card-head"><h2>Graph</h2>
          <div class="row-actions">
            ${shape.nodes.length > 12 && html`<${FindNode} shape=${shape} onFound=${setSelected} />`}
            <button type="button" class="small" onClick=${() => setFit(!fit)} aria-pressed=${fit}>${fit ? "Actual size" : "Fit to width"}</button>
          </div>
        </div>
        <div class="graph-scroll"><${Graph} shape=${shape} statuses=${statuses} selected=${selected} onSelect=${setSelected} fit=${fit} /></div>
      </section>
      <aside class="card details" aria-label="node details"><${NodeDetails} id=${selected} state=${state} shape=${shape} /></aside>
    </div>
    ${FINAL.has(ctx.status) && ctx.status === "completed" && html`<section class="card"><h2>Result</h2><${Json} value=${state.result} /></section>`}
    <section class="card"><h2>Timing</h2><${Waterfall} state=${state} onSelect=${setSelected} /></section>
    <section class="card"><h2>Events</h2><${EventLog} events=${state.events} total=${state.eventCount} /></section>
  </section>`;
}
