import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  chart,
  DenoKernelRenderer,
  detectRenderer,
  findDenoJupyter,
  JUPYTER_DISPLAY,
  liveChart,
  type MimeBundle,
  PLOTLY_MIME,
  progress,
  progressLine,
  type RecordedOutput,
  RecordingRenderer,
  setRenderer,
  show,
  type Terminal,
  TerminalRenderer,
  TslabRenderer,
  table,
  tableBundle,
} from "../cells-lib/display/index.ts";
import { trainingMonitor } from "../cells-lib/training/monitor.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { repoRoot } from "./helpers.ts";

function occurrences(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

function text(output: RecordedOutput | undefined): string {
  return output?.bundle["text/plain"] as string;
}

function html(output: RecordedOutput | undefined): string {
  return output?.bundle["text/html"] as string;
}

/** A terminal that keeps what is written. */
function fakeTerminal(isTTY: boolean): Terminal & { written: string[] } {
  const written: string[] = [];
  return { isTTY, written, write: (t: string) => void written.push(t) };
}

let recorder: RecordingRenderer;
beforeEach(() => {
  recorder = new RecordingRenderer();
  setRenderer(recorder);
});
afterEach(() => {
  setRenderer(undefined);
  vi.useRealTimers();
});

describe("table", () => {
  const rows = [
    { step: 0, loss: 2.345678, note: "start" },
    { step: 10, loss: 0.5, note: "two\nlines" },
    { step: 100, loss: 0.00012 },
  ];

  it("aligns text columns: numbers right, text left", () => {
    const bundle = tableBundle(rows, { title: "log" });
    expect(Object.keys(bundle).sort()).toEqual(["text/html", "text/plain"]);
    expect(bundle["text/plain"]).toBe(
      [
        "log",
        "step    loss  note",
        "----  ------  ---------",
        "   0  2.3457  start",
        "  10     0.5  two↵lines",
        " 100  1.2e-4",
      ].join("\n"),
    );
  });

  it("keeps its column names above the rule whatever the cells hold (control characters shown, never obeyed)", () => {
    // A sampled completion can hold a carriage return or an escape sequence (cursor up, erase
    // line): printed raw, it would overwrite the header in a terminal or a notebook's text output.
    const sampled = [
      { prompt: "2+3?", completion: "5\r\x1b[1A\x1b[2K\x1b[1A\x1b[2Kgone\x07", reward: 1 },
      { prompt: "x\ty", completion: "\u0085\x7f", reward: 0 },
    ];
    const text = tableBundle(sampled, { title: "Samples at step 1" })["text/plain"] as string;
    expect(text.split("\n")).toEqual([
      "Samples at step 1",
      "prompt  completion               reward",
      "------  -----------------------  ------",
      "2+3?    5↵␛[1A␛[2K␛[1A␛[2Kgone␇       1",
      "x y     \ufffd␡                            0",
    ]);
    // Nothing left that a terminal would act on (only the line breaks between rows).
    const controls = [...text].filter(
      (c) => c !== "\n" && (c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) < 0xa0)),
    );
    expect(controls).toEqual([]);
  });

  it("renders HTML with escaped cells, a caption and right-aligned numbers", () => {
    const h = tableBundle([{ name: "<b>", n: 1 }], { title: "a & b" })["text/html"] as string;
    expect(h).toContain("<caption");
    expect(h).toContain("a &#38; b");
    expect(h).toContain("&#60;b&#62;");
    expect(h).not.toContain("<b>");
    expect(h).toMatch(/<td style="text-align:right[^"]*">1<\/td>/);
  });

  it("selects columns, names array columns, and elides the middle of long tables", () => {
    expect(tableBundle(rows, { columns: ["loss", "step"] })["text/plain"]).toMatch(/^ {2}loss {2}step\n/);
    expect(
      tableBundle(
        [
          [1, "a"],
          [22, "bb"],
        ],
        { columns: ["n", "s"] },
      )["text/plain"],
    ).toBe(" n  s\n--  --\n 1  a\n22  bb");
    const many = Array.from({ length: 10 }, (_, i) => ({ i }));
    const lines = (tableBundle(many, { maxRows: 4 })["text/plain"] as string).split("\n");
    expect(lines).toEqual(["i", "-", "0", "1", "… 6 more rows …", "8", "9"]);
    expect(tableBundle(many, { maxRows: 4 })["text/html"]).toContain("… 6 more rows …");
  });

  it("displays through the current renderer", () => {
    table(rows);
    expect(recorder.outputs).toHaveLength(1);
    expect(recorder.outputs[0]!.kind).toBe("display");
    expect(text(recorder.outputs[0])).toContain("2.3457");
  });

  it("explains bad rows and options", () => {
    expect(() => table("rows" as never)).toThrow(OptionsError);
    expect(() => table("rows" as never)).toThrow(
      "table: rows must be an array (one object or array per row), got string rows",
    );
    expect(() => table([{ a: 1 }, 3] as never)).toThrow(
      "table: row 1 is number 3; each row must be an object (or an array)",
    );
    expect(() => table([{ a: 1 }, [1]])).toThrow(/mixes arrays and objects/);
    expect(() => table(rows, { maxRows: 0 })).toThrow(/^table: option "maxRows": /);
    expect(() => table(rows, { colums: ["a"] } as never)).toThrow('table: unknown option "colums"');
  });
});

describe("chart", () => {
  const figure = {
    data: [
      { type: "scatter", name: "loss", x: [0, 1, 2], y: [2.5, 1.25, 0.75] },
      { type: "bar", name: "reward", y: [0, 0.5] },
    ],
    layout: { title: { text: "SFT" } },
    config: { displayModeBar: false },
  };

  it("bundles the figure as plotly JSON, HTML, a static SVG image and a text summary", () => {
    chart(figure);
    const bundle = recorder.outputs[0]!.bundle;
    expect(Object.keys(bundle).sort()).toEqual([PLOTLY_MIME, "image/svg+xml", "text/html", "text/plain"]);
    expect(bundle["image/svg+xml"]).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(bundle[PLOTLY_MIME]).toEqual(figure);
    expect(bundle["text/plain"]).toBe(
      "SFT: 2 traces\n  loss (scatter): 3 points, last 0.75 at x=2\n  reward (bar): 2 points, last 0.5",
    );
  });

  it("never carries plotly.js: every chart's HTML loads it in the page (test/chart-loader.test.ts)", () => {
    chart(figure);
    chart(figure);
    for (const h of recorder.outputs.map(html)) {
      expect(h).not.toContain("plotly.js v4");
      expect(h.length).toBeLessThan(20_000);
      expect(h).toContain("thinkcellsPlotly().then(");
      expect(h).toContain("Plotly.newPlot(div, figure)");
    }
  });

  it("sends typed arrays as arrays and non-finite numbers as gaps; keeps </script> in data harmless", () => {
    chart({ data: [{ name: "</script><b>", y: new Float32Array([1, NaN, 0.5]) }] });
    const bundle = recorder.outputs[0]!.bundle;
    expect(bundle[PLOTLY_MIME]).toEqual({ data: [{ name: "</script><b>", y: [1, null, 0.5] }] });
    expect(occurrences(html(recorder.outputs[0]), "</script>")).toBe(1); // the drawing script's own
    expect(bundle["text/plain"]).toBe("Chart: 1 trace\n  </script><b> (scatter): 3 points, last 0.5");
  });

  it("explains bad figures", () => {
    expect(() => chart({ data: 3 } as never)).toThrow('chart: option "data": data must be an array of traces');
    expect(() => chart({ data: [], layouts: {} } as never)).toThrow('chart: unknown option "layouts"');
    expect(() => chart([] as never)).toThrow(
      "chart: the figure must be an object { data, layout?, config? }, got an array",
    );
  });
});

describe("liveChart", () => {
  it("displays once, then updates the same display_id; throttling coalesces pushes and close() emits the final state", () => {
    vi.useFakeTimers();
    const live = liveChart({ title: "GRPO", metrics: ["loss", "reward", "kl"], throttleMs: 500 });
    expect(recorder.outputs).toHaveLength(1);
    const first = recorder.outputs[0]!;
    expect(first.kind).toBe("display");
    expect(first.displayId).toBe(live.displayId);

    for (let step = 0; step < 200; step++) {
      live.push(step, { loss: 1 / (step + 1), reward: step / 200, kl: step % 10 === 0 ? 0.01 * step : undefined });
      vi.advanceTimersByTime(10); // 200 pushes over 2 s
    }
    const updates = recorder.outputs.slice(1);
    expect(updates.length).toBeGreaterThanOrEqual(3);
    expect(updates.length).toBeLessThanOrEqual(5);
    for (const u of updates) {
      expect(u.kind).toBe("update");
      expect(u.displayId).toBe(live.displayId);
      expect(html(u)).not.toContain("plotly.js v4");
    }

    live.close();
    const last = recorder.outputs.at(-1)!;
    expect(last).toMatchObject({ kind: "update", displayId: live.displayId, final: true });
    const fig = last.bundle[PLOTLY_MIME] as {
      data: { name: string; x: number[]; y: number[]; xaxis: string }[];
      layout: Record<string, unknown>;
    };
    expect(fig.data.map((t) => [t.name, t.x.length, t.x.at(-1), t.y.at(-1), t.xaxis])).toEqual([
      ["loss", 200, 199, 1 / 200, "x"],
      ["reward", 200, 199, 199 / 200, "x2"],
      ["kl", 20, 190, 0.01 * 190, "x3"],
    ]);
    expect(fig.layout.grid).toMatchObject({ rows: 2, columns: 2, pattern: "independent" });
    expect(text(last)).toBe(
      "GRPO: step 199\n  loss: 200 points, last 0.005 at step 199\n  reward: 200 points, last 0.995 at step 199\n  kl: 20 points, last 1.9 at step 190",
    );
    expect(() => live.push(200, { loss: 1 })).toThrow("liveChart: push() after close()");
  });

  it("never drops the last push: a pending redraw happens when the interval ends, or on flush()", () => {
    vi.useFakeTimers();
    const live = liveChart({ metrics: ["loss"], throttleMs: 500 });
    live.push(0, { loss: 3 });
    live.push(1, { loss: 2 });
    expect(recorder.outputs).toHaveLength(1);
    vi.advanceTimersByTime(500);
    expect(recorder.outputs).toHaveLength(2);
    expect(text(recorder.outputs[1])).toContain("2 points, last 2 at step 1");
    live.push(2, { loss: 1 });
    live.flush();
    expect(recorder.outputs).toHaveLength(3);
    expect(text(recorder.outputs[2])).toContain("last 1 at step 2");
    vi.advanceTimersByTime(1000);
    expect(recorder.outputs).toHaveLength(3); // nothing left pending
    live.close();
  });

  it("thins long series for drawing but keeps the last point and the true count", () => {
    const live = liveChart({ metrics: ["loss"], throttleMs: 0, maxPoints: 10 });
    for (let s = 0; s < 1000; s++) live.push(s, { loss: s === 999 ? NaN : s });
    live.close();
    const last = recorder.outputs.at(-1)!;
    const trace = (last.bundle[PLOTLY_MIME] as { data: { x: number[]; y: (number | null)[] }[] }).data[0]!;
    expect(trace.x.length).toBeLessThanOrEqual(10);
    expect(trace.x.at(-1)).toBe(999);
    expect(trace.y.at(-1)).toBeNull();
    expect(text(last)).toContain("loss: 1000 points, last NaN at step 999");
  });

  it("gives a metric its panel with its first finite value, and never mentions one that had none", () => {
    type Figure = {
      data: { name: string; y: (number | null)[]; xaxis: string }[];
      layout: { grid?: { columns: number }; annotations: { text: string }[] };
    };
    const figure = (o: RecordedOutput | undefined) => o?.bundle[PLOTLY_MIME] as Figure;
    const live = liveChart({ title: "GRPO", metrics: ["reward", "accuracy", "kl"], throttleMs: 0 });
    expect(figure(recorder.outputs[0]).data).toEqual([]);
    expect(figure(recorder.outputs[0]).layout.annotations.map((a) => a.text)).toEqual(["no data yet"]);
    expect(text(recorder.outputs[0])).toBe("GRPO: no data yet");

    // No correctness reward and β = 0: accuracy and KL arrive as NaN (a trainer's null).
    live.push(1, { reward: 0.5, accuracy: NaN, kl: NaN });
    live.push(2, { reward: 0.6, accuracy: NaN, kl: NaN });
    live.flush();
    const early = figure(recorder.outputs.at(-1));
    expect(early.data.map((t) => t.name)).toEqual(["reward"]);
    expect(early.layout.grid?.columns).toBe(1);
    expect(early.layout.annotations.map((a) => a.text)).toEqual(["reward"]);
    expect(text(recorder.outputs.at(-1))).toBe("GRPO: step 2\n  reward: 2 points, last 0.6 at step 2");

    live.push(3, { reward: 0.7, accuracy: 0.25, kl: NaN });
    live.close();
    const last = figure(recorder.outputs.at(-1));
    expect(last.data.map((t) => [t.name, t.y, t.xaxis])).toEqual([
      ["reward", [0.5, 0.6, 0.7], "x"],
      ["accuracy", [null, null, 0.25], "x2"],
    ]);
    expect(last.layout.annotations.map((a) => a.text)).toEqual(["reward", "accuracy"]);
    expect(text(recorder.outputs.at(-1))).toBe(
      "GRPO: step 3\n  reward: 3 points, last 0.7 at step 3\n  accuracy: 3 points, last 0.25 at step 3",
    );
  });

  it("explains bad options and points", () => {
    expect(() => liveChart({ metrics: [] })).toThrow('liveChart: option "metrics": give at least one metric name');
    expect(() => liveChart({ metrics: ["a", "a"] })).toThrow("metric names must be unique");
    expect(() => liveChart({ metrics: ["a"], throttleMs: -1 })).toThrow(/option "throttleMs"/);
    const live = liveChart({ metrics: ["loss", "reward"] });
    expect(() => live.push(0, { los: 1 })).toThrow(
      'liveChart.push: unknown metric "los"; this chart has "loss", "reward"',
    );
    expect(() => live.push(NaN, { loss: 1 })).toThrow("step must be a finite number");
    expect(() => live.push(0, { loss: "1" as never })).toThrow('metric "loss" must be a number, got string');
    live.close();
  });
});

describe("progress", () => {
  function withTerminal(isTTY: boolean) {
    const terminal = fakeTerminal(isTTY);
    setRenderer(new RecordingRenderer(terminal));
    let t = 1_000;
    return {
      terminal,
      now: () => t,
      at: (ms: number) => {
        t = 1_000 + ms;
      },
    };
  }

  it("draws rate and ETA from the clock, redrawn in place on a TTY", () => {
    const { terminal, now, at } = withTerminal(true);
    const p = progress({ total: 100, label: "sft", now });
    expect(terminal.written[0]).toMatch(
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal line ends with ESC[K
      /^\rsft {2}0\/100 {4}0% {2}\[-{24}\] {2}\? it\/s {2}elapsed 0:00 {2}ETA \?\x1b\[K$/,
    );
    at(2_000);
    p.tick(10, { loss: 0.53 });
    expect(terminal.written.at(-1)).toBe(
      "\rsft  10/100   10%  [##----------------------]  5.00 it/s  elapsed 0:02  ETA 0:18  loss=0.53\x1b[K",
    );
    at(2_050);
    p.tick(10);
    expect(terminal.written).toHaveLength(2); // within 100 ms of the last redraw
    at(40_000);
    p.tick(20, { loss: 0.25, phase: "warmup" });
    expect(terminal.written.at(-1)).toContain(
      "40/100   40%  [##########--------------]  1.00 it/s  elapsed 0:40  ETA 1:00  loss=0.25 phase=warmup",
    );
    at(100_000);
    p.done();
    expect(terminal.written.at(-1)).toBe(
      "\rsft  40/100   40%  [##########--------------]  2.50 s/it  stopped after 1:40  loss=0.25 phase=warmup\x1b[K\n",
    );
    p.done();
    expect(() => p.tick()).toThrow('progress "sft": tick() after done()');
  });

  it("prints plain lines at most every few seconds without a TTY, and the final line", () => {
    const { terminal, now, at } = withTerminal(false);
    const p = progress({ total: 10, now, unit: "step" });
    expect(terminal.written).toEqual([]);
    for (let i = 1; i <= 10; i++) {
      at(i * 1_000);
      p.tick();
    }
    p.done();
    expect(terminal.written).toEqual([
      "5/10   50%  [############------------]  1.00 step/s  elapsed 0:05  ETA 0:05\n",
      "10/10  100%  [########################]  1.00 step/s  elapsed 0:10  ETA 0:00\n",
      "10/10  100%  [########################]  1.00 step/s  done in 0:10\n",
    ]);
    expect(terminal.written.every((l) => !l.includes("\r"))).toBe(true);
  });

  it("updates one HTML/text output in a notebook", () => {
    vi.useFakeTimers();
    const p = progress({ total: 4, label: "eval" });
    for (let i = 0; i < 4; i++) p.tick();
    p.done();
    const [first, ...rest] = recorder.outputs;
    expect(first).toMatchObject({ kind: "display" });
    expect(first!.displayId).toMatch(/^thinkcells-progress-/);
    expect(rest.every((o) => o.kind === "update" && o.displayId === first!.displayId)).toBe(true);
    expect(rest.at(-1)).toMatchObject({ kind: "update", final: true });
    expect(html(rest.at(-1))).toContain('<progress value="1" max="1"');
    expect(text(rest.at(-1))).toMatch(/^eval {2}4\/4 {2}100% {2}\[#{24}\] {2}.* done in 0:00$/);
  });

  it("computes the line from a snapshot alone", () => {
    expect(progressLine({ unit: "it", count: 0, total: 0, elapsedMs: 0, info: {}, done: true })).toBe(
      "0/0  100%  [########################]  ? it/s  done in 0:00",
    );
  });

  it("explains bad options", () => {
    expect(() => progress({} as never)).toThrow(
      'progress: option "total": total must be the number of items (a whole number ≥ 0)',
    );
    expect(() => progress({ total: 1.5 })).toThrow('progress: option "total": total must be a whole number');
    expect(() => progress({ total: 3, now: 5 as never })).toThrow("now must be a function returning milliseconds");
    const p = progress({ total: 3 });
    expect(() => p.tick(-1)).toThrow("n must be a finite number ≥ 0");
    expect(() => p.tick(1, { loss: [1] as never })).toThrow('info "loss" must be a number or a string');
    p.done();
  });
});

describe("show", () => {
  it("passes MIME bundles through, and picks text, tables or JSON for other values", async () => {
    const bundle = { "text/html": "<b>hi</b>", "text/plain": "hi" };
    show(bundle);
    show("just text");
    show([{ a: 1 }, { a: 22 }]);
    show({ nested: { n: 1 } });
    show(42);
    show({ [JUPYTER_DISPLAY]: async () => ({ "text/markdown": "**md**" }) });
    await Promise.resolve();
    await Promise.resolve();
    const bundles = recorder.outputs.map((o) => o.bundle);
    expect(bundles[0]).toBe(bundle);
    expect(bundles[1]).toEqual({ "text/plain": "just text" });
    expect(bundles[2]!["text/plain"]).toBe(" a\n--\n 1\n22");
    expect(bundles[3]).toEqual({ "application/json": { nested: { n: 1 } }, "text/plain": "{ nested: { n: 1 } }" });
    expect(bundles[4]).toEqual({ "text/plain": "42" });
    expect(bundles[5]).toEqual({ "text/markdown": "**md**" });
  });

  it("shows plotly figures as charts", () => {
    show({ data: [{ y: [1, 2] }] });
    expect(recorder.outputs[0]!.bundle[PLOTLY_MIME]).toEqual({ data: [{ y: [1, 2] }] });
  });
});

describe("renderers", () => {
  it("the terminal renderer prints text, live outputs only now and then and at the end, and clears an open bar first", () => {
    const out: string[] = [];
    const err: string[] = [];
    let t = 0;
    const r = new TerminalRenderer({
      stdout: { write: (s: string) => out.push(s) },
      stderr: { isTTY: true, write: (s: string) => err.push(s) },
      liveEveryMs: 1_000,
      now: () => t,
    });
    const b = (s: string): MimeBundle => ({ "text/plain": s, "text/html": `<p>${s}</p>` });
    r.display(b("table"));
    r.display(b("live 0"), { displayId: "x" });
    t = 500;
    r.update(b("live 1"), { displayId: "x", final: false });
    t = 1_200;
    r.update(b("live 2"), { displayId: "x", final: false });
    r.terminal.write("\rbar 50%");
    r.update(b("live 3"), { displayId: "x", final: true });
    expect(out).toEqual(["table\n", "live 2\n", "live 3\n"]);
    expect(err).toEqual(["\rbar 50%", "\r\x1b[K"]);
  });

  it("the Deno kernel renderer broadcasts display_data, then update_display_data with the same transient display_id", () => {
    const sent: [string, Record<string, unknown>][] = [];
    const r = new DenoKernelRenderer({ broadcast: async (type, content) => void sent.push([type, content]) });
    r.display({ "text/plain": "a" });
    r.display({ "text/plain": "b" }, { displayId: "d1" });
    r.update({ "text/plain": "c" }, { displayId: "d1", final: true });
    expect(sent).toEqual([
      ["display_data", { data: { "text/plain": "a" }, metadata: {}, transient: {} }],
      ["display_data", { data: { "text/plain": "b" }, metadata: {}, transient: { display_id: "d1" } }],
      ["update_display_data", { data: { "text/plain": "c" }, metadata: {}, transient: { display_id: "d1" } }],
    ]);
  });

  it("finds Deno.jupyter only in Deno's kernel (elsewhere its getter throws)", () => {
    const g = globalThis as { Deno?: unknown };
    expect(g.Deno).toBeUndefined();
    try {
      g.Deno = {
        get jupyter(): never {
          throw new Error("Deno.jupyter is only available in `deno jupyter` subcommand");
        },
      };
      expect(findDenoJupyter()).toBeUndefined();
      const calls: string[] = [];
      g.Deno = { jupyter: { broadcast: async (type: string) => void calls.push(type) } };
      const found = findDenoJupyter();
      expect(found).toBeDefined();
      void found!.broadcast("display_data", {});
      expect(calls).toEqual(["display_data"]);
      expect(detectRenderer()).toBeInstanceOf(DenoKernelRenderer);
    } finally {
      delete g.Deno;
    }
    expect(detectRenderer()).toBeInstanceOf(TerminalRenderer); // plain Node: neither kernel
  });

  it("the tslab renderer sends the richest single type through newDisplay() handles", () => {
    const sent: string[] = [];
    const handle = (name: string) => ({
      raw: (type: string, content: string) => void sent.push(`${name} ${type} ${content}`),
    });
    let n = 0;
    const r = new TslabRenderer({ display: handle("plain"), newDisplay: () => handle(`live${++n}`) });
    r.display({ "text/plain": "t", "text/html": "<p>h</p>" });
    r.display({ "text/plain": "p0" }, { displayId: "p" });
    r.update({ "text/plain": "p1" }, { displayId: "p", final: false });
    r.update({ "application/json": { a: 1 } }, { displayId: "p", final: true });
    expect(sent).toEqual([
      "plain text/html <p>h</p>",
      "live1 text/plain p0",
      "live1 text/plain p1",
      'live1 text/plain {\n  "application/json": {\n    "a": 1\n  }\n}',
    ]);
  });
});

describe("trainingMonitor", () => {
  it("charts a trainer's null metrics as gaps once the metric has had a value, and leaves out metrics that never had one", () => {
    const monitor = trainingMonitor({
      title: "SFT",
      metrics: ["loss", "valLoss", "accuracy"],
      totalSteps: 2,
      display: true,
    });
    monitor.record(1, { step: 1, loss: 2, skipped: false }, true);
    // An evaluation without reference answers: accuracy null.
    monitor.record(1, { step: 1, valLoss: 2.5, accuracy: null });
    monitor.record(2, { step: 2, loss: null, skipped: true }, true);
    monitor.close();
    const final = recorder.finalBundles().find((b) => PLOTLY_MIME in b)!;
    const fig = final[PLOTLY_MIME] as { data: { name: string; y: (number | null)[] }[] };
    expect(fig.data.map((t) => [t.name, t.y])).toEqual([
      ["loss", [2, null]],
      ["valLoss", [2.5]],
    ]);
    expect(final["text/plain"]).toBe(
      "SFT: step 2\n  loss: 2 points, last NaN at step 2\n  valLoss: 1 point, last 2.5 at step 1",
    );
  });
});

describe("under Deno (the notebook kernel's runtime), headless", () => {
  it("prints tables and chart summaries to stdout and the progress bar to stderr", async () => {
    const script = `
      import { chart, liveChart, progress, table } from "./cells-lib/display/index.ts";
      table([{ step: 1, loss: 0.5 }, { step: 20, loss: 0.25 }], { title: "log" });
      chart({ data: [{ name: "loss", x: [1, 20], y: [0.5, 0.25] }] });
      const live = liveChart({ metrics: ["reward"], throttleMs: 0 });
      live.push(0, { reward: 0.5 });
      live.close();
      let t = 0;
      const p = progress({ total: 4, label: "steps", now: () => t });
      for (let i = 0; i < 4; i++) { t += 500; p.tick(); }
      p.done();
      console.log("runtime deno " + Deno.version.deno);
    `;
    const { stdout, stderr } = await promisify(execFile)(
      path.join(repoRoot, "node_modules/.bin/deno"),
      ["eval", script],
      {
        cwd: repoRoot,
        env: { ...process.env, NO_COLOR: "1" },
      },
    );
    expect(stdout).toBe(
      [
        "log",
        "step  loss",
        "----  ----",
        "   1   0.5",
        "  20  0.25",
        "Chart: 1 trace",
        "  loss (scatter): 2 points, last 0.25 at x=20",
        "Live chart: step 0",
        "  reward: 1 point, last 0.5 at step 0",
        `runtime deno ${stdout.match(/runtime deno (\S+)/)?.[1]}`,
        "",
      ].join("\n"),
    );
    expect(stdout).toMatch(/runtime deno 2\./);
    expect(stderr).toBe("steps  4/4  100%  [########################]  2.00 it/s  done in 0:02\n");
  });
});
