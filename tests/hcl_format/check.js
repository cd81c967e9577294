// `terraform fmt -check` without Terraform: HashiCorp's hclwrite.Format (the formatter
// terraform fmt runs), from @cdktf/hcl-tools. Usage: node check.js FILE.tf...
// Prints each file that is not formatted with its first differing line; exit 1 if any.
const fs = require("fs");
const { format } = require("@cdktf/hcl-tools");

(async () => {
  let unformatted = 0;
  for (const file of process.argv.slice(2)) {
    const text = fs.readFileSync(file, "utf8");
    const formatted = await format(text);
    if (formatted === text) continue;
    unformatted += 1;
    const have = text.split("\n"), want = formatted.split("\n");
    let line = have.findIndex((value, i) => value !== want[i]);
    if (line < 0) line = have.length;  // only lines missing at the end
    console.log(`${file}:${line + 1}: not formatted\n  is:        ${JSON.stringify(have[line])}\n  formatted: ${JSON.stringify(want[line])}`);
  }
  process.exit(unformatted ? 1 : 0);
})().catch((error) => { console.error(String(error)); process.exit(2); });
