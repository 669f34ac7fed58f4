// A form generated from a JSON Schema: one field per property of an object schema (text,
// number, checkbox, a select for an enum, JSON for anything nested), or one field for a
// schema of another type. The server checks the answer against the schema; this only shapes it.

import { html, useState } from "../vendor/htm-preact-standalone.module.js";
import { Problem } from "./ui.js";

function kind(schema) {
  if (!schema || typeof schema !== "object") return "json";
  if (Array.isArray(schema.enum) && schema.enum.length) return "enum";
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "string") return "string";
  if (type === "integer" || type === "number") return type;
  if (type === "boolean") return "boolean";
  return "json";
}

function initial(schema) {
  const k = kind(schema);
  const d = schema && schema.default;
  if (k === "boolean") return d === true;
  if (k === "json") return d === undefined ? "" : JSON.stringify(d, null, 2);
  if (k === "enum") return d === undefined ? "" : JSON.stringify(d);
  return d === undefined ? "" : String(d);
}

// The field's value, `undefined` when left empty (and so omitted); throws on bad input.
function parse(schema, raw, label) {
  const k = kind(schema);
  if (k === "boolean") return raw;
  if (raw === "") return undefined;
  if (k === "string") return raw;
  if (k === "enum") return JSON.parse(raw);
  if (k === "integer" || k === "number") {
    const n = Number(raw);
    if (!Number.isFinite(n) || (k === "integer" && !Number.isInteger(n))) throw new Error(`${label}: expected ${k === "integer" ? "an integer" : "a number"}`);
    return n;
  }
  try {
    return JSON.parse(raw);
  } catch {
    throw new Error(`${label}: not valid JSON`);
  }
}

function isObjectSchema(schema) {
  return schema && typeof schema === "object" && (schema.type === "object" || schema.properties) && schema.properties;
}

function Field({ id, name, schema, required, value, onInput }) {
  const k = kind(schema);
  const title = (schema && schema.title) || name;
  const help = schema && schema.description;
  const label = html`<label for=${id}>${title}${required && html`<span class="required" aria-label="required"> *</span>`}</label>`;
  let control;
  if (k === "boolean") {
    return html`<div class="field field-check">
      <input id=${id} name=${name} type="checkbox" checked=${value} onChange=${(e) => onInput(e.currentTarget.checked)} />
      ${label}${help && html`<small>${help}</small>`}
    </div>`;
  }
  if (k === "enum") {
    control = html`<select id=${id} name=${name} value=${value} onChange=${(e) => onInput(e.currentTarget.value)}>
      <option value="" disabled=${required}>${required ? "choose…" : "—"}</option>
      ${schema.enum.map((option) => html`<option value=${JSON.stringify(option)}>${String(option)}</option>`)}
    </select>`;
  } else if (k === "json") {
    control = html`<textarea id=${id} name=${name} rows="4" class="mono" placeholder="JSON" value=${value} onInput=${(e) => onInput(e.currentTarget.value)}></textarea>`;
  } else {
    const numeric = k === "integer" || k === "number";
    control = html`<input id=${id} name=${name} type=${numeric ? "number" : "text"} step=${k === "integer" ? "1" : "any"}
      required=${required} value=${value} onInput=${(e) => onInput(e.currentTarget.value)} />`;
  }
  return html`<div class="field">${label}${control}${help && html`<small>${help}</small>`}</div>`;
}

export function SchemaForm({ schema, idPrefix, submitLabel, onSubmit }) {
  const objectForm = isObjectSchema(schema);
  const properties = objectForm ? Object.entries(schema.properties) : [["value", schema || {}]];
  const required = new Set(objectForm ? schema.required || [] : []);
  const [values, setValues] = useState(() => Object.fromEntries(properties.map(([n, s]) => [n, initial(s)])));
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setProblem(null);
    let answer;
    try {
      if (objectForm) {
        answer = {};
        for (const [name, s] of properties) {
          const v = parse(s, values[name], name);
          if (v !== undefined) answer[name] = v;
          else if (required.has(name) && kind(s) === "string") answer[name] = "";
        }
      } else {
        answer = parse(schema || {}, values.value, "value");
        if (answer === undefined) answer = kind(schema) === "string" ? "" : null;
      }
    } catch (err) {
      setProblem({ message: err.message });
      return;
    }
    setBusy(true);
    try {
      await onSubmit(answer);
    } catch (err) {
      setProblem(err);
    } finally {
      setBusy(false);
    }
  };

  return html`<form class="schema-form" onSubmit=${submit}>
    ${properties.map(
      ([name, s]) => html`<${Field} key=${name} id=${`${idPrefix}-${name}`} name=${name} schema=${s} required=${required.has(name)}
        value=${values[name]} onInput=${(v) => setValues((old) => ({ ...old, [name]: v }))} />`,
    )}
    <${Problem} error=${problem} />
    <button type="submit" class="primary" disabled=${busy}>${busy ? "Sending…" : submitLabel}</button>
  </form>`;
}
