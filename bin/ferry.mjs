#!/usr/bin/env node
// `ferry console|web|worker|all`: runs the compiled Ferry (dist/main.js) in this very process, so
// SIGTERM/SIGINT reach its shutdown handler directly (no child to forward them to).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const main = path.join(root, 'dist', 'main.js');
if (!fs.existsSync(main)) {
  process.stderr.write(`Ferry is not built: run "npm run build" in ${root} first.\n`);
  process.exit(1);
}
await import(pathToFileURL(main).href);
