// encode.mjs — encodes stdin lines with Hugging Face's JavaScript tokenizer
// (@huggingface/tokenizers) loaded from a local tokenizer.json, printing one line of
// space-separated token ids per input line (the same format as `ecr tokenizer encode`).
//
//   node tests/interop/encode.mjs TOKENIZER.json < lines.txt > ids.txt
//   node tests/interop/encode.mjs --bench TOKENIZER.json < lines.txt   (prints "MB/s tokens")
//
// Lines are split on "\n" only; a final line without "\n" is encoded too. No special
// tokens are added (the tokenizer.json has no post-processor).
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const args = process.argv.slice(2);
const bench = args[0] === "--bench";
const path = bench ? args[1] : args[0];
if (!path) {
  process.stderr.write("usage: node encode.mjs [--bench] TOKENIZER.json < lines > ids\n");
  process.exit(2);
}
const tokenizer = new Tokenizer(JSON.parse(readFileSync(path, "utf8")), {});
const input = readFileSync(0);
const text = new TextDecoder("utf-8", { fatal: true }).decode(input);
const lines = text.split("\n");
if (lines.length && lines[lines.length - 1] === "") lines.pop();

if (bench) {
  // One cold pass, as a user would run it (the library's own word cache fills as it goes).
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (const l of lines) n += tokenizer.encode(l).ids.length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`${(input.length / 1e6 / s).toFixed(3)} ${n}\n`);
} else {
  const out = [];
  for (const l of lines) out.push(tokenizer.encode(l).ids.join(" "));
  process.stdout.write(out.length ? out.join("\n") + "\n" : "");
}
