// The app: the key screen (when the server has keys), the navigation, and a hash router
// (#/executions, #/executions/<id>, #/workflows[/<id>], #/schedules, #/queues).

import { html, render, useEffect, useState } from "../vendor/htm-preact-standalone.module.js";
import { session, storeKey, storedKey } from "./api.js";
import { ExecutionPage } from "./pages/execution.js";
import { ExecutionsPage } from "./pages/executions.js";
import { QueuesPage } from "./pages/queues.js";
import { SchedulesPage } from "./pages/schedules.js";
import { WorkflowsPage } from "./pages/workflows.js";
import { Problem, decoded } from "./ui.js";

const PAGES = [
  ["executions", "Executions"],
  ["workflows", "Workflows"],
  ["schedules", "Schedules"],
  ["queues", "Queues"],
];

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search] = hash.split("?");
  const [page, ...rest] = path.split("/");
  return { page: page || "executions", rest: rest.join("/"), params: new URLSearchParams(search || "") };
}

function useRoute() {
  const [current, setCurrent] = useState(route);
  useEffect(() => {
    const changed = () => setCurrent(route());
    addEventListener("hashchange", changed);
    changed(); // (the address may have changed before this effect ran)
    return () => removeEventListener("hashchange", changed);
  }, []);
  return current;
}

function KeyForm({ message, onKey }) {
  const [key, setKey] = useState("");
  const [problem, setProblem] = useState(message ? { message } : null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const who = await session(key.trim());
      if (!who.authenticated) setProblem({ message: `That key was refused: ${who.message}` });
      else onKey(key.trim(), who);
    } catch (err) {
      setProblem(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card" onSubmit=${submit} aria-label="sign in">
      <h1>workflow-engine</h1>
      <p>This server needs an API key. It is kept in this tab only (sessionStorage).</p>
      <div class="field">
        <label for="api-key">API key</label>
        <input id="api-key" name="apiKey" type="password" autocomplete="off" required value=${key} onInput=${(e) => setKey(e.currentTarget.value)} />
      </div>
      <${Problem} error=${problem} />
      <button type="submit" class="primary" disabled=${busy}>Enter</button>
    </form>
  </main>`;
}

function Shell({ who, onSignOut }) {
  const { page, rest, params } = useRoute();
  let content;
  if (page === "executions" && rest) content = html`<${ExecutionPage} key=${rest} id=${decoded(rest)} />`;
  else if (page === "executions") content = html`<${ExecutionsPage} params=${params} />`;
  else if (page === "workflows") content = html`<${WorkflowsPage} key=${rest} rest=${rest} params=${params} />`;
  else if (page === "schedules") content = html`<${SchedulesPage} />`;
  else if (page === "queues") content = html`<${QueuesPage} session=${who} />`;
  else content = html`<p>Nothing here. <a href="#/executions">Executions</a></p>`;
  return html`<div class="shell">
    <button type="button" class="skip" onClick=${() => document.getElementById("main").focus()}>Skip to content</button>
    <header class="top">
      <a class="brand" href="#/executions">workflow-engine</a>
      <nav aria-label="pages">
        ${PAGES.map(([id, label]) => html`<a href=${`#/${id}`} aria-current=${page === id ? "page" : undefined}>${label}</a>`)}
      </nav>
      <div class="who">
        ${who.authRequired ? html`<span>${who.tenant}${who.admin ? " (admin)" : ""}</span>` : html`<span class="muted">no keys (dev)</span>`}
        ${who.authRequired && html`<button type="button" class="small" onClick=${onSignOut}>Sign out</button>`}
      </div>
    </header>
    <main id="main" tabindex="-1">${content}</main>
  </div>`;
}

function App() {
  const [state, setState] = useState({ who: null, message: null, checked: false });
  useEffect(() => {
    const had = storedKey();
    session(had).then(
      (who) => {
        if (!who.authenticated) storeKey("");
        setState({ who: who.authenticated ? who : null, message: had ? who.message : null, checked: true });
      },
      (err) => setState({ who: null, message: err.message, checked: true }),
    );
  }, []);
  if (!state.checked) return html`<p class="boot">Loading…</p>`;
  if (!state.who)
    return html`<${KeyForm} message=${state.message} onKey=${(key, who) => {
      storeKey(key);
      setState({ who, message: null, checked: true });
    }} />`;
  return html`<${Shell} who=${state.who} onSignOut=${() => {
    storeKey("");
    location.reload();
  }} />`;
}

render(html`<${App} />`, document.getElementById("app"));
