// llama.mjs — runs GGUF files in llama.cpp, through node-llama-cpp's prebuilt CPU binary
// (never building or downloading anything), for tests/cli_export.sh. Arguments are tasks,
// done in order in one process:
//
//   load MODEL.gguf          loads a model (the tasks below use the last one loaded)
//   exact                    later contexts use an F32 KV cache and no flash attention
//                            (llama.cpp's defaults, used before this, are an F16 cache and
//                            flash attention where the CPU backend has it)
//   info OUT                 the vocabulary facts llama.cpp read, one JSON line
//   probs IN OUT             next-token probabilities: for each sequence of IN, one line per
//                            position, the probabilities of all V tokens (softmax of
//                            llama.cpp's logits), %.9g, space-separated (the format of
//                            `ecr generate --ids --probs`)
//   generate N IN OUT        for each sequence, N token ids chosen greedily (temperature 0),
//                            going on past end-of-text (as `ecr generate --ignore-eot`)
//   embed IN OUT             for each sequence [BOS, t1..tn], h: the mean over positions
//                            1..n of the final-norm hidden state (what `ecr embed --raw`
//                            returns), from llama.cpp's embedding output of each prefix
//   tokenize IN OUT          the ids of each text line of IN, without BOS/EOS and without
//                            parsing special tokens (as `ecr tokenizer encode`)
//
// A sequence is a line of space-separated token ids: exactly what the model sees, BOS
// included. OUT "-" is stdout. One thread, CPU only.
//
//   node tests/interop/llama.mjs load m.gguf probs ids.txt p.txt generate 32 ids.txt g.txt
import { readFileSync, writeFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const usage = "usage: node llama.mjs load MODEL.gguf [exact] [info OUT] [probs IN OUT] " +
  "[generate N IN OUT] [embed IN OUT] [tokenize IN OUT] ...\n";
const args = process.argv.slice(2);
if (args[0] !== "load") { process.stderr.write(usage); process.exit(2); }

const readLines = (path) => {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(path === "-" ? 0 : path));
  const l = text.split("\n");
  if (l.length && l[l.length - 1] === "") l.pop();
  return l;
};
const sequences = (path) => readLines(path).map((line) => {
  const ids = line.trim().split(/\s+/).filter((s) => s !== "").map(Number);
  if (!ids.length || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`${path}: bad sequence '${line}'`);
  return ids;
});
const write = (path, lines) => {
  const text = lines.length ? lines.join("\n") + "\n" : "";
  if (path === "-") process.stdout.write(text); else writeFileSync(path, text);
};
const g9 = (x) => Number(x).toPrecision(9);

// llama.cpp's log: errors to stderr.
const llama = await getLlama({
  gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
  progressLogs: false, logLevel: "error", maxThreads: 1,
  logger: (level, message) => {
    if (level === "error" || level === "fatal") process.stderr.write(`llama.cpp: ${message}\n`);
  },
});
let model = null, exact = false;
const contextOptions = () => ({
  contextSize: model.trainContextSize, batchSize: model.trainContextSize, threads: 1,
  ...(exact ? { flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" } : {}),
});
const greedy = { temperature: 0 };

for (let i = 0; i < args.length;) {
  const task = args[i++];
  const need = (n) => {
    if (i + n > args.length) { process.stderr.write(`llama.mjs: ${task} needs ${n} arguments\n${usage}`); process.exit(2); }
    const a = args.slice(i, i + n);
    i += n;
    return a;
  };
  if (task === "load") {
    const [path] = need(1);
    if (model) await model.dispose();
    model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  } else if (task === "exact") {
    exact = true;
  } else if (task === "info") {
    const [out] = need(1);
    write(out, [JSON.stringify({
      bos: model.tokens.bos, eos: model.tokens.eos, add_bos: model.tokens.shouldPrependBosToken,
      add_eos: model.tokens.shouldAppendEosToken, context: model.trainContextSize, vocab_type: model.vocabularyType,
      vocab: model.fileInfo.metadata.tokenizer.ggml.tokens.length,
    })]);
  } else if (task === "tokenize") {
    const [inp, out] = need(2);
    write(out, readLines(inp).map((l) => Array.from(model.tokenize(l, false)).join(" ")));
  } else if (task === "probs" || task === "generate") {
    const n = task === "generate" ? Number(need(1)[0]) : 0;
    const [inp, out] = need(2);
    const context = await model.createContext(contextOptions());
    const seq = context.getSequence();
    const V = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const lines = [];
    for (const ids of sequences(inp)) {
      await seq.clearHistory();
      if (task === "probs") {
        const res = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: { probabilities: true, options: greedy } }]));
        for (const r of res) {
          const p = new Array(V).fill(0);
          for (const [id, pr] of r.next.probabilities) p[id] = pr;
          lines.push(p.map(g9).join(" "));
        }
      } else {
        const got = [];
        const ask = (t) => [t, { generateNext: { token: true, options: greedy } }];
        let input = ids.map((t, k) => k === ids.length - 1 ? ask(t) : t);
        while (got.length < n) {
          const res = await seq.controlledEvaluate(input);
          got.push(res[res.length - 1].next.token);
          input = [ask(got[got.length - 1])];
        }
        lines.push(got.join(" "));
      }
    }
    write(out, lines);
    await context.dispose();
  } else if (task === "embed") {
    const [inp, out] = need(2);
    const ctx = await model.createEmbeddingContext(contextOptions());
    const lines = [];
    for (const ids of sequences(inp)) {
      let h = null;
      for (let k = 2; k <= ids.length; k++) { /* the state at position k - 1 is the last of its prefix */
        const v = (await ctx.getEmbeddingFor(ids.slice(0, k))).vector;
        h = h ? h.map((x, j) => x + v[j]) : Array.from(v);
      }
      lines.push(h.map((x) => g9(x / (ids.length - 1))).join(" "));
    }
    write(out, lines);
    await ctx.dispose();
  } else {
    process.stderr.write(`llama.mjs: unknown task '${task}'\n${usage}`);
    process.exit(2);
  }
}
if (model) await model.dispose();
await llama.dispose();
