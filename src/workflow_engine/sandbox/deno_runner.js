// The warm JavaScript sandbox process. Deno runs it with every permission denied (no --allow-*:
// no network, files, environment, subprocesses, FFI). Jobs {"id", "code", "inputs"} come as JSON
// lines on stdin; per job it writes {"id", "log"} lines, then {"id", "done", "result"|"error"}.
//
// Each run gets a fresh V8 context (node:vm, DONT_CONTEXTIFY: an ordinary global object of that
// context, its own Object.prototype and friends), so nothing a run changes (a polluted
// prototype, a global) is seen by the next. Nothing of this realm is handed to the run: code and
// inputs go in as source text, and what comes back is read as one string. Microtasks run inside
// the evaluation (afterEvaluate), so `timeout` bounds an async main too.
import vm from "node:vm";

const [timeoutMs, maxOutput, maxLog] = JSON.parse(Deno.args[0]);
const encoder = new TextEncoder();

// An unhandled rejection inside a run would otherwise end the process.
globalThis.addEventListener("unhandledrejection", (event) => event.preventDefault());

// Runs inside the context before the user's code. `__wfe` is the only way out: `run` evaluates
// the code, calls main, and keeps the outcome; `poll` hands it back as one JSON string.
const PRELUDE = `(() => {
  "use strict";
  const stringify = JSON.stringify, parse = JSON.parse, StringCtor = String;
  const maxLog = ${maxLog};
  const logs = [];
  let logSize = 0, truncated = false, outcome = { pending: true };
  class SandboxError extends Error {}
  Object.defineProperty(SandboxError.prototype, "name", { value: "SandboxError" });
  const show = (value) => {
    if (typeof value === "string") return value;
    try { const text = stringify(value); return text === undefined ? StringCtor(value) : text; }
    catch { return StringCtor(value); }
  };
  const log = (...args) => {
    if (truncated) return;
    const text = args.map(show).join(" ") + "\\n";
    if (logSize + text.length > maxLog) {
      logs.push(text.slice(0, maxLog - logSize), "\\n[log truncated: more than the 64 KiB a run may print]\\n");
      truncated = true;
      return;
    }
    logSize += text.length;
    logs.push(text);
  };
  globalThis.console = Object.freeze({ log, info: log, warn: log, error: log, debug: log });
  for (const name of ["Deno", "fetch", "require", "process", "WebSocket", "XMLHttpRequest",
                      "Worker", "setTimeout", "setInterval", "import"]) {
    Object.defineProperty(globalThis, name, {
      get() { throw new SandboxError(name + " is not available in the sandbox"); },
    });
  }
  const describe = (error) => {
    try {
      if (error instanceof Error) {
        const denied = error instanceof SandboxError || /dynamic import|allocation failed/.test(error.message);
        return { type: denied ? "sandbox" : "code_error",
                 message: error.name + ": " + error.message + "\\n" +
                   StringCtor(error.stack || "").split("\\n").filter((l) => l.includes("main.js")).slice(0, 5).join("\\n") };
      }
      return { type: "code_error", message: "Uncaught " + show(error) };
    } catch { return { type: "code_error", message: "the code threw something unprintable" }; }
  };
  const done = (value) => {
    try {
      const text = stringify(value);
      outcome = text === undefined
        ? { error: { type: "code_error", message: "main must return a JSON value (got " + typeof value + ")" } }
        : text.length > ${maxOutput}
        ? { error: { type: "sandbox", message: "the result is larger than ${maxOutput} bytes (JSON)" } }
        : { result: text };
    } catch (error) {
      outcome = { error: { type: "code_error", message: "main must return a JSON value: " + describe(error).message } };
    }
  };
  const fail = (error) => { outcome = { error: describe(error) }; };
  const wfe = Object.freeze({
    run(code, inputs) {
      let main;
      try { main = (0, eval)(code + "\\n;typeof main === 'function' ? main : undefined"); }
      catch (error) { fail(error); return; }
      if (typeof main !== "function") {
        outcome = { error: { type: "code_error", message: "the code must define a function \`main\`" } };
        return;
      }
      try { Promise.resolve(main(parse(inputs))).then(done, fail); } catch (error) { fail(error); }
    },
    poll() {
      return stringify({ logs: logs.join(""), ...(outcome.pending ? { error: {
        type: "code_error", message: "main's promise never settled" } } : outcome) });
    },
  });
  Object.defineProperty(globalThis, "__wfe", { value: wfe });
})();`;

function runJob(job) {
  const context = vm.createContext(vm.constants.DONT_CONTEXTIFY, { microtaskMode: "afterEvaluate" });
  vm.runInContext(PRELUDE, context);
  const call = `__wfe.run(${JSON.stringify(job.code)}, ${JSON.stringify(JSON.stringify(job.inputs))})`;
  try {
    vm.runInContext(call, context, { timeout: timeoutMs, filename: "main.js" });
  } catch (error) {
    // (only the runner's own errors get here: the run's are caught inside the context)
    const timedOut = error?.code === "ERR_SCRIPT_EXECUTION_TIMEOUT";
    return { error: { type: timedOut ? "timeout" : "sandbox",
                      message: timedOut ? `the code ran longer than ${timeoutMs / 1000} s` : "the code broke the sandbox runner" } };
  }
  let state;
  try {
    const text = vm.runInContext("__wfe.poll()", context, { timeout: timeoutMs });
    state = typeof text === "string" ? JSON.parse(text) : null;
  } catch {
    state = null;
  }
  if (state === null || typeof state !== "object") {
    return { error: { type: "sandbox", message: "the code broke the sandbox runner" } };
  }
  return state;
}

function finish(job, state) {
  const logs = typeof state.logs === "string" ? state.logs.slice(0, maxLog + 80) : "";
  if (logs) write({ id: job.id, log: logs });
  if (typeof state.result === "string") {
    if (encoder.encode(state.result).length > maxOutput) {
      return write({ id: job.id, done: true, error: { type: "sandbox", message: `the result is larger than ${maxOutput} bytes (JSON)` } });
    }
    // the result is already JSON text: spliced in, not parsed and written again
    return writeRaw(`{"id":${JSON.stringify(job.id)},"done":true,"result":${state.result}}\n`);
  }
  const error = state.error && typeof state.error.message === "string" ? state.error
    : { type: "sandbox", message: "the code broke the sandbox runner" };
  write({ id: job.id, done: true, error: { type: String(error.type), message: error.message } });
}

function write(message) { writeRaw(JSON.stringify(message) + "\n"); }

function writeRaw(text) {
  const data = encoder.encode(text);
  let written = 0;
  while (written < data.length) written += Deno.stdout.writeSync(data.subarray(written));
}

write({ ready: true });
const decoder = new TextDecoder();
let pending = "";
for await (const chunk of Deno.stdin.readable) {
  pending += decoder.decode(chunk, { stream: true });
  let newline;
  while ((newline = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, newline);
    pending = pending.slice(newline + 1);
    const job = JSON.parse(line);
    finish(job, runJob(job));
  }
}
