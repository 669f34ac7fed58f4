// The graph of a workflow, laid out left to right by dagre and drawn as SVG: one box per node,
// coloured by its status. The layout depends on the shape only, so it is computed once per
// graph; status changes repaint the boxes.

import { html, useEffect, useMemo } from "../vendor/htm-preact-standalone.module.js";
import dagre from "../vendor/dagre.esm.js";

const NODE_W = 168;
// dagre's default ranker (network simplex) gives the most compact layout but costs ~1.5 s
// of 1.9 s at 1,000 nodes in headless Chromium; "tight-tree" lays the same graph out in ~0.4 s
const BIG_GRAPH = 300;
const NODE_H = 46;

export function layout(shape) {
  performance.clearMeasures("wfe:layout"); // the latest layout's time, for benchmarks/ui_render.py
  performance.mark("wfe:layout-start");
  const g = new dagre.graphlib.Graph({ multigraph: true });
  const ranker = shape.nodes.length > BIG_GRAPH ? "tight-tree" : "network-simplex";
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 56, marginx: 12, marginy: 12, ranker });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of shape.nodes) g.setNode(node.id, { width: NODE_W, height: NODE_H });
  const known = new Set(shape.nodes.map((n) => n.id));
  shape.edges.forEach((edge, i) => {
    if (known.has(edge.source) && known.has(edge.target)) g.setEdge(edge.source, edge.target, { edge }, `e${i}`);
  });
  dagre.layout(g);
  const nodes = shape.nodes.map((node) => {
    const box = g.node(node.id);
    return { ...node, x: box.x - NODE_W / 2, y: box.y - NODE_H / 2 };
  });
  const edges = g.edges().map((e) => {
    const drawn = g.edge(e);
    return { ...drawn.edge, points: drawn.points };
  });
  const size = g.graph();
  performance.measure("wfe:layout", "wfe:layout-start");
  return { nodes, edges, width: Math.max(size.width || 0, NODE_W), height: Math.max(size.height || 0, NODE_H) };
}

function path(points) {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// `statuses`: nodeId -> status; `selected`: a node id; `onSelect(nodeId)`.
export function Graph({ shape, statuses, selected, onSelect, fit }) {
  const drawn = useMemo(() => layout(shape), [shape]);
  useEffect(() => {
    performance.clearMarks("wfe:graph-drawn");
    performance.mark("wfe:graph-drawn");
  }, [drawn]);
  const key = (e, id) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect && onSelect(id);
    }
  };
  const style = fit ? { width: "100%", height: "auto", maxHeight: "70vh" } : { width: `${drawn.width}px`, height: `${drawn.height}px` };
  return html`<svg class="graph" role="group" aria-label="workflow graph" data-nodes=${drawn.nodes.length}
      viewBox=${`0 0 ${drawn.width} ${drawn.height}`} style=${style}>
    <defs>
      <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
      </marker>
    </defs>
    ${drawn.edges.map(
      (edge, i) => html`<g key=${`e${i}`} class=${`edge${edge.recursive ? " recursive" : ""}`}>
        <path d=${path(edge.points)} marker-end="url(#arrow)" />
        ${edge.branch && html`<text x=${edge.points[Math.floor(edge.points.length / 2)].x} y=${edge.points[Math.floor(edge.points.length / 2)].y - 4} class="branch">${edge.branch}</text>`}
      </g>`,
    )}
    ${drawn.nodes.map((node) => {
      const status = statuses ? statuses[node.id] || "pending" : null; // no statuses: a definition
      const cls = `node${status ? ` status-${status}` : ""}${selected === node.id ? " selected" : ""}`;
      return html`<g key=${node.id} class=${cls} transform=${`translate(${node.x},${node.y})`}
          tabindex=${onSelect ? "0" : undefined} role=${onSelect ? "button" : undefined}
          data-node=${node.id} data-status=${status || undefined} aria-label=${`${node.id} (${node.type})${status ? `: ${status}` : ""}`}
          onClick=${() => onSelect && onSelect(node.id)} onKeyDown=${(e) => key(e, node.id)}>
        <rect width=${NODE_W} height=${NODE_H} rx="7" />
        <text x="10" y="19" class="node-id">${clip(node.name || node.id, 22)}</text>
        <text x="10" y="36" class="node-type">${clip(status ? `${node.type} · ${status}` : node.type, 26)}</text>
      </g>`;
    })}
  </svg>`;
}
