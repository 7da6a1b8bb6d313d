import path from "node:path";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { convertLlama2c } from "../cells-lib/cells/convert.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { forwardBackward, optimStep, removeLora } from "../cells-lib/cells/train.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { generateArithmetic, formatExample, checkFormat, extractAnswer, answersMatch, parseReasoning } from "../cells-lib/reasoning/index.ts";
import { lrSchedule } from "../cells-lib/training/schedule.ts";

const steps = Number(process.env.STEPS ?? 200), lr = Number(process.env.LR ?? 2e-3), batch = Number(process.env.BATCH ?? 64);
const diff = JSON.parse(process.env.DIFF ?? "[2,3]");
const client = await BridgeClient.connect({ session: "exp" });
const dir = "/tmp/exp/stories";
await convertLlama2c("assets/stories260K/stories260K.bin", "assets/stories260K/tok512.bin", dir, client);
let model = await loadModel(dir, { client });
const tok = await loadTokenizer(dir);
model = await removeLora(model);
const all = generateArithmetic({ count: 2200, seed: 1, difficulty: diff });
const train = all.slice(0, 2000), test = all.slice(2000);
const enc = (row: any) => {
  const { prompt, completion } = formatExample(row);
  const p = tok.encode(prompt, { addSpecialTokens: true });
  const full = tok.encode(prompt + completion, { addSpecialTokens: true });
  return { tokens: [...full, tok.eosTokenId!], weights: [...full.map((_, i) => (i < p.length ? 0 : 1)), 1] };
};
console.log(formatExample(train[0]!), enc(train[0]).tokens.length);
async function evaluate(label: string) {
  const t0 = Date.now();
  const prompts = test.map((r) => formatExample(r).prompt);
  const outs = await sample(model, tok, prompts, { temperature: 0, maxNewTokens: 48 });
  let fmt = 0, acc = 0;
  outs.forEach((o, i) => {
    if (checkFormat(o.text, "think").ok) fmt++;
    const ans = parseReasoning(o.text).answer;
    if (answersMatch(extractAnswer(ans ?? o.text), test[i]!.answer)) acc++;
  });
  console.log(label, "format", fmt / outs.length, "acc", acc / outs.length, "eval s", (Date.now() - t0) / 1000, JSON.stringify(outs[0]!.text));
}
await evaluate("base");
const sched = lrSchedule({ kind: "cosine", lr, warmupSteps: 10, totalSteps: steps });
const t0 = Date.now();
for (let s = 0; s < steps; s++) {
  const ex = Array.from({ length: batch }, (_, i) => enc(train[(s * batch + i) % train.length]!));
  const r = await forwardBackward(model, ex, { kind: "cross_entropy" });
  await optimStep(model, { lr: sched(s), weightDecay: 0, maxGradNorm: 1 });
  if (s % 25 === 0) console.log(s, r.loss?.toFixed(3), ((Date.now() - t0) / 1000).toFixed(1));
  if ((s + 1) % 100 === 0) await evaluate(`step ${s + 1}`);
}
console.log("train s", (Date.now() - t0) / 1000);
await client.shutdown();
