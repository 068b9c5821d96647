// Parse each AsyncAPI document named on the command line with the official parser (its own
// rules and every payload's schema, relative $refs resolved from the document's folder).
// Prints one JSON line per document: its path and the diagnostics that are errors.
// Exit status 1 if any document has an error.
import { Parser, fromFile } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const path of process.argv.slice(2)) {
  const { document, diagnostics } = await fromFile(parser, path).parse();
  const errors = diagnostics
    .filter((d) => d.severity === 0)
    .map((d) => ({ code: d.code, message: d.message, path: d.path.join("/") }));
  if (!document || errors.length) failed = true;
  console.log(JSON.stringify({ path, parsed: Boolean(document), errors }));
}
process.exit(failed ? 1 : 0);
