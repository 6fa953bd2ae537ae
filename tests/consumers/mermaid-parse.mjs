// Parses Mermaid files with the real Mermaid parser (the `mermaid` package under jsdom, as in a
// browser): `node mermaid-parse.mjs FILE...`. Prints `ok FILE TYPE` per file; exits 1 on the
// first file Mermaid refuses, with its error. NODE_PATH must point at the node_modules holding
// `mermaid` and `jsdom` (see .ci/node-consumers.sh).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const modules = process.env.NODE_PATH;
if (!modules) {
  console.error("NODE_PATH is not set: run .ci/node-consumers.sh");
  process.exit(2);
}
const require = createRequire(path.join(modules, "noop.js"));
const { JSDOM } = require("jsdom");
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const k of ["DOMParser", "Element", "HTMLElement", "Node", "navigator"]) {
  if (!(k in globalThis)) globalThis[k] = dom.window[k];
}
const mermaid = (await import(require.resolve("mermaid"))).default;
mermaid.initialize({ startOnLoad: false });

let failed = 0;
for (const file of process.argv.slice(2)) {
  let text = readFileSync(file, "utf8");
  // A Markdown report: parse each ```mermaid block.
  const blocks = file.endsWith(".md")
    ? [...text.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((m) => m[1])
    : [text];
  if (blocks.length === 0) {
    console.error(`${file}: no mermaid block`);
    failed = 1;
    continue;
  }
  for (const block of blocks) {
    try {
      const r = await mermaid.parse(block);
      console.log(`ok ${file} ${r.diagramType}`);
    } catch (e) {
      console.error(`${file}: ${e.message ?? e}`);
      failed = 1;
    }
  }
}
process.exit(failed);
