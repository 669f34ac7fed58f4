// Small pieces every page uses: the html tag, status badges, times, JSON, errors.

import { html, useEffect, useRef, useState } from "../vendor/htm-preact-standalone.module.js";

export { html };

export const FINAL = new Set(["completed", "failed", "cancelled", "skipped"]);
export const ACTIVE = new Set(["pending", "running", "waiting"]);
export const EXECUTION_STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled", "skipped"];

export function Status({ status }) {
  return html`<span class=${`status status-${status || "unknown"}`}>${status || "?"}</span>`;
}

// A path segment as it was before encoding; a malformed one (a lone "%") as it is.
export function decoded(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { hour12: false });
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function span(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? Date.parse(endIso) : Date.now();
  return end - Date.parse(startIso);
}

export function Json({ value }) {
  if (value === undefined) return html`<span class="muted">—</span>`;
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}

export function Problem({ error }) {
  if (!error) return null;
  const details = error.details || [];
  return html`<div class="problem" role="alert">
    <strong>${error.message || String(error)}</strong>
    ${details.length > 0 &&
    html`<ul>
      ${details.map((d) => html`<li><code>${d.path || d.loc || ""}</code> ${d.message || d.msg || JSON.stringify(d)}</li>`)}
    </ul>`}
  </div>`;
}

// Re-run `load` every `ms` while the component is shown (and at once); `deps` restart it.
export function usePoll(load, ms, deps) {
  const saved = useRef(load);
  saved.current = load;
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      try {
        await saved.current();
      } catch {
        // the loader shows its own errors; the next round tries again
      } finally {
        if (!stopped) timer = setTimeout(tick, ms);
      }
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, deps);
}

// [value, error, reload] of an async function, run when `deps` change.
export function useLoad(load, deps) {
  const [state, setState] = useState({ value: null, error: null });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let current = true;
    load().then(
      (value) => current && setState({ value, error: null }),
      (error) => current && setState({ value: null, error }),
    );
    return () => {
      current = false;
    };
  }, [...deps, round]);
  return [state.value, state.error, () => setRound((r) => r + 1)];
}

export function navigate(hash) {
  location.hash = hash;
}
