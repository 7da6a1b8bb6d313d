/** notebooks/03 in a real JupyterLab, driven through Chromium (playwright-core, Debian's browser):
 * Run All Cells from the menu; while GRPO trains, its live chart (one output, redrawn by
 * update_display_data) grows and its progress bar advances; the sample tables render; the saved,
 * closed and reopened notebook still shows its charts. Then, in another copy, the toolbar's stop
 * button (■) pressed mid-GRPO stops the cell with an InterruptedError, the kernel lives on, and a
 * new cell continues the run to its last step. Screenshots: runs/test-artifacts/jupyterlab-browser/. */
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { cellTags, declaredParameters, parameterLiteral } from "../kernel/parameters.ts";
import { CHROMIUM } from "./chromium.ts";
import { repoRoot, stories, tempDir } from "./helpers.ts";
import { type JupyterLab, startJupyterLab } from "./jupyterlab.ts";
import {
  type ChartImage,
  cellText,
  EDITOR_LINES,
  type GrpoView,
  OUTPUT_TEXT,
  type PageState,
  progressCount,
  readCharts,
  readPage,
  recorded,
  scrollToCell,
  startRecorder,
  watchKernelTraffic,
} from "./jupyterlab-page.ts";

const NOTEBOOK = "03-grpo-arithmetic.ipynb";
const GRPO_STEPS = 24;
/** Small enough for a few minutes on 2 CPU cores; GRPO long enough (several seconds) that the
 * browser sees its chart between the first and the last step. */
const PARAMETERS: Record<string, string> = {
  rows: "300",
  sftSteps: "8",
  heldOutRows: "8",
  grpoSteps: String(GRPO_STEPS),
  promptsPerStep: "2",
  groupSize: "4",
};
/** The copy whose GRPO run the stop button interrupts. Its steps take 0.1 s on an idle machine
 * and 2 s on a busy one: enough of them that the press lands mid-run, few enough that the
 * continued run stays short. */
const INTERRUPT_NOTEBOOK = "03-interrupt.ipynb";
const INTERRUPT_STEPS = 40;
const artifacts = path.join(repoRoot, "runs/test-artifacts/jupyterlab-browser");
const RUN_LIMIT_MS = 600_000;

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `skipped: the JupyterLab browser test: no Chromium at ${CHROMIUM} (scripts/setup.sh installs Debian's chromium; CHROMIUM=PATH picks another)`,
  );
}

interface RawNotebook {
  cells: { cell_type: string; source: string | string[]; metadata: Record<string, unknown>; outputs?: RawOutput[] }[];
}
interface RawOutput {
  output_type: string;
  data?: Record<string, unknown>;
}

/** notebooks/03 with its parameters cell rewritten to `values` (names it must declare), and the
 * index of the cell that runs GRPO. */
function smallNotebook(values: Record<string, string>): { text: string; grpoCell: number } {
  const nb = JSON.parse(readFileSync(path.join(repoRoot, "notebooks", NOTEBOOK), "utf8")) as RawNotebook;
  const cell = nb.cells.find((c) => c.cell_type === "code" && cellTags(c).includes("parameters"));
  if (!cell) throw new Error(`${NOTEBOOK}: no cell tagged "parameters"`);
  const source = typeof cell.source === "string" ? cell.source : cell.source.join("");
  const lines = source.split("\n");
  const declared = new Map(declaredParameters(source).map((p) => [p.name, p]));
  for (const [name, value] of Object.entries(values)) {
    const param = declared.get(name);
    if (!param) throw new Error(`${NOTEBOOK}: its parameters cell declares no "${name}"`);
    lines[param.line - 1] = `const ${name}${param.type ? `: ${param.type}` : ""} = ${parameterLiteral(param, value)};`;
  }
  cell.source = lines.join("\n");
  const grpoCell = nb.cells.findIndex((c) =>
    (typeof c.source === "string" ? c.source : c.source.join("")).includes("trainGrpo("),
  );
  if (grpoCell < 0) throw new Error(`${NOTEBOOK}: no cell calls trainGrpo`);
  return { text: `${JSON.stringify(nb, null, 1)}\n`, grpoCell };
}

/** jupyter-server's REST API (`route` under the server's root), as JSON; null when it answers with no body. */
async function api<T>(lab: JupyterLab, route: string, method = "GET"): Promise<T> {
  const res = await fetch(`${lab.baseUrl}${route}`, { method, headers: { Authorization: `token ${lab.token}` } });
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
  return (res.status === 204 ? null : await res.json()) as T;
}

/** Which cell failed once a run has stopped, and what it printed: the first that shows an error
 * (Deno's kernel runs the cells queued after a failed one), else the one before the first not run. */
async function failure(page: Page, prompts: string[], cellTypes: string[]): Promise<string> {
  const codeCells = cellTypes.flatMap((type, i) => (type === "code" ? [i] : []));
  const texts = await Promise.all(codeCells.map((i) => page.evaluate(cellText, { index: i, selector: OUTPUT_TEXT })));
  const errored = texts.findIndex((t) => /^\w*Error\b/m.test(t));
  const unrun = prompts.findIndex((p) => !/^\[\d+\]:$/.test(p));
  const at = errored >= 0 ? errored : Math.max(0, unrun - 1);
  return `cell ${codeCells[at]! + 1} failed (prompts ${prompts.join(" ")}):\n${texts[at]!.slice(-3000)}`;
}

interface ApiSession {
  id: string;
  path: string;
  kernel: { id: string; execution_state: string } | null;
}

/** A cell that continues the interrupted GRPO run (the notebook's `grpo` was never assigned: its
 * trainer is lastInterrupt().trainer) and prints the steps it ran and the trainer's whole history. */
const CONTINUE = [
  'import { lastInterrupt } from "thinkcells";',
  "const resumed = lastInterrupt()!.trainer!;",
  "const continued = await resumed.run();",
  "const steps = (h: readonly unknown[]) => JSON.stringify(h.map((m) => (m as { step: number }).step));",
  'console.log("continued steps " + steps(continued) + "; history steps " + steps(resumed.history));',
].join("\n");

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.skipIf(!haveChromium)("JupyterLab in Chromium runs notebooks/03", () => {
  // Paths relative to the notebook's directory (the kernel's), inside the test's own folder.
  const { text, grpoCell } = smallNotebook({ ...PARAMETERS, outDir: "../out", modelDir: "../out/stories260K" });
  const cellTypes = (JSON.parse(text) as RawNotebook).cells.map((c) => c.cell_type);
  // Its own output directory: the first test's files stay as that test left them.
  const interruptNotebook = smallNotebook({
    ...PARAMETERS,
    grpoSteps: String(INTERRUPT_STEPS),
    outDir: "../out-interrupt",
    modelDir: "../out-interrupt/stories260K",
  });
  const session = `jupyterlab-browser-${process.pid}`;
  // Made in beforeAll: vitest runs this body even when the suite is skipped.
  let root = "";
  let bridgeDir = "";
  let lab: JupyterLab | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    root = tempDir("jupyterlab-browser");
    bridgeDir = path.join(root, "bridge");
    // The notebook reads ../assets/stories260K/ from its own directory.
    await mkdir(path.join(root, "notebooks"), { recursive: true });
    await mkdir(path.join(root, "out"), { recursive: true });
    await mkdir(path.join(root, "out-interrupt"), { recursive: true });
    await cp(stories, path.join(root, "assets/stories260K"), { recursive: true });
    await writeFile(path.join(root, "notebooks", NOTEBOOK), text);
    await writeFile(path.join(root, "notebooks", INTERRUPT_NOTEBOOK), interruptNotebook.text);
    await rm(artifacts, { recursive: true, force: true });
    await mkdir(artifacts, { recursive: true });
    lab = await startJupyterLab(root, {
      // The kernel inherits these: its bridge is this test's own.
      env: { THINKCELLS_BRIDGE_DIR: bridgeDir, THINKCELLS_SESSION: session },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Chromium refuses to start as root (as in containers) with its sandbox on.
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await lab?.stop();
    if (!root) return;
    const client = await BridgeClient.connect({ session, dir: bridgeDir, start: false }).catch(() => undefined);
    await client?.shutdown().catch(() => {});
    await rm(root, { recursive: true, force: true, maxRetries: 5 });
  });

  it("runs all cells from the menu, live-updates chart and progress, and reopens with its charts", async () => {
    console.log(`screenshots: ${artifacts}`);
    onTestFailed(() => console.log(`JupyterLab's log (its end):\n${lab?.log().slice(-6000)}`));
    const started = Date.now();
    // Tall enough that the GRPO cell's chart (800 px) and tables fit in the notebook's scroll area.
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1800 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const traffic = watchKernelTraffic(page);
    // Every plotly.js the page loads (from the server's extension; never from a CDN).
    const plotlyLoads: string[] = [];
    page.on("request", (r) => /plotly[^/]*\.js/.test(r.url()) && plotlyLoads.push(r.url()));
    const shot = (name: string) => page.screenshot({ path: path.join(artifacts, `${name}.png`) });
    const notebookUrl = `${lab!.baseUrl}lab/tree/notebooks/${NOTEBOOK}?token=${lab!.token}`;

    await page.goto(notebookUrl);
    const cells = page.locator(".jp-Notebook .jp-Cell");
    await expect.poll(() => cells.count(), { timeout: 120_000 }).toBe(cellTypes.length);
    const status = page.locator("#jp-main-statusbar");
    await expect.poll(() => status.textContent(), { timeout: 120_000 }).toMatch(/TypeScript \(thinkcells\) \| Idle/);
    await shot("01-opened");

    await page.evaluate(startRecorder, grpoCell);
    // Run › Run All Cells.
    await page.locator(".lm-MenuBar-itemLabel", { hasText: /^Run$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^Run All Cells$/ }).click();
    const runStarted = Date.now();

    // Watch the GRPO cell until every cell has run: what its chart, bar and tables showed, in order.
    const seen: (GrpoView & { t: number })[] = [];
    let lastSeen = "";
    let queued = false;
    const shots: number[] = []; // the curve's length at each mid-run screenshot
    let state: PageState;
    for (;;) {
      state = await page.evaluate(readPage, grpoCell);
      queued ||= state.prompts.some((p) => p.includes("*"));
      const g = state.grpo;
      const key = JSON.stringify(g);
      if (g.charts + g.progressBars + g.tables.length > 0 && key !== lastSeen) {
        lastSeen = key;
        seen.push({ ...g, t: Date.now() - runStarted });
        // Screenshots of a partial curve, then of a longer one (both mid-run).
        const partial = g.plotted && g.points > 0 && g.points < GRPO_STEPS;
        const next = shots.length === 0 ? 4 : shots[0]! + GRPO_STEPS / 3;
        if (partial && shots.length < 2 && g.points >= next) {
          await page.evaluate(scrollToCell, grpoCell);
          await shot(shots.length === 0 ? "02-grpo-partial" : "03-grpo-longer");
          shots.push(g.points);
        }
      }
      const running = state.prompts.some((p) => p.includes("*"));
      // Idle with nothing queued, once the run has visibly started (or failed before queueing showed).
      if ((queued || Date.now() - runStarted > 15_000) && !running && /\| Idle/.test(state.status)) break;
      if (Date.now() - runStarted > RUN_LIMIT_MS)
        throw new Error(`the notebook did not finish within ${RUN_LIMIT_MS / 1000} s`);
      await sleep(200);
    }
    const runS = (Date.now() - runStarted) / 1000;
    await page.evaluate(scrollToCell, grpoCell);
    await shot("04-finished");

    if (state.prompts.some((p) => !/^\[\d+\]:$/.test(p)))
      throw new Error(await failure(page, state.prompts, cellTypes));
    // One line per change of the curve's length, the bar's count or the number of tables.
    const summary = seen
      .filter((s, i) => {
        const prev = seen[i - 1];
        const counted = (v: GrpoView) => [v.points, progressCount(v.progress), v.tables.length].join();
        return !prev || counted(s) !== counted(prev);
      })
      .map((s) => `${(s.t / 1000).toFixed(1)}s points=${s.points} bar="${s.progress}" tables=${s.tables.length}`);
    console.log(
      `ran all cells in ${runS.toFixed(1)} s; the GRPO cell as the browser showed it:\n  ${summary.join("\n  ")}`,
    );
    console.log(
      `live-chart updates received: ${[...traffic.liveUpdates.values()].join(", ")}; ` +
        `largest frame ${traffic.largestFrame} chars; plotly.js loaded from ${plotlyLoads.join(", ")}`,
    );

    // What the page drew, sampled in the page every 50 ms: each redraw of the chart and the bar.
    const drawn = await page.evaluate(recorded);
    console.log(
      `the page drew the GRPO curve with ${drawn.points.join(" → ")} points; its bar read ${drawn.bar.join(" → ")}`,
    );
    const ascending = (xs: number[]) => xs.every((x, i) => i === 0 || x > xs[i - 1]!);

    // The live chart: one output throughout, drawn by plotly.js, holding a partial curve, then a longer one, then all steps.
    expect(seen.every((s) => s.charts <= 1 && s.progressBars <= 1)).toBe(true);
    expect(drawn.points.filter((n) => n > 0 && n < GRPO_STEPS).length).toBeGreaterThanOrEqual(2);
    expect(ascending(drawn.points)).toBe(true);
    expect(drawn.points.at(-1)).toBe(GRPO_STEPS);
    // plotly.js came from the Jupyter server, once; no kernel message came near its 4.8 MB.
    expect(plotlyLoads).toEqual([`${lab!.baseUrl}thinkcells/plotly.min.js`]);
    expect(traffic.largestFrame).toBeLessThan(1_000_000);
    // Those redraws came as update_display_data for one live chart per training cell (SFT's and GRPO's).
    expect(traffic.liveUpdates.size).toBeGreaterThanOrEqual(2);
    expect(Math.max(...traffic.liveUpdates.values())).toBeGreaterThan(2);

    // The progress bar advanced mid-run (its text read at least twice between the first and last step) and ended at the last.
    expect(drawn.bar.filter((n) => n > 0 && n < GRPO_STEPS).length).toBeGreaterThanOrEqual(2);
    expect(ascending(drawn.bar)).toBe(true);
    expect(state.grpo.progress).toContain(`${GRPO_STEPS}/${GRPO_STEPS}`);

    // The sample tables (showSamplesEvery = grpoSteps / 2) rendered as HTML tables with rows.
    expect(state.grpo.tables.map((t) => t.caption)).toEqual([
      `Samples at step ${GRPO_STEPS / 2}`,
      `Samples at step ${GRPO_STEPS}`,
    ]);
    expect(state.grpo.tables.every((t) => t.rows > 0)).toBe(true);
    expect(existsSync(path.join(root, "out/results.json"))).toBe(true);
    const grpoOutputs = page.locator(".jp-Notebook .jp-Cell").nth(grpoCell).locator(".jp-OutputArea");
    await grpoOutputs.locator(".thinkcells-chart").screenshot({ path: path.join(artifacts, "05-grpo-chart.png") });
    await grpoOutputs
      .locator("table.thinkcells-table")
      .last()
      .screenshot({ path: path.join(artifacts, "05-grpo-samples.png") });

    // Save (Ctrl+S, in command mode), and wait for the file to hold the GRPO cell's final outputs.
    await page.locator(".jp-Notebook .jp-Cell").nth(grpoCell).locator(".jp-InputPrompt").click();
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+s");
    const file = path.join(root, "notebooks", NOTEBOOK);
    const savedOutputs = () =>
      ((JSON.parse(readFileSync(file, "utf8")) as RawNotebook).cells[grpoCell]?.outputs ?? []).filter(
        (o) => o.data?.["image/svg+xml"] !== undefined,
      ).length;
    await expect.poll(savedOutputs, { timeout: 30_000 }).toBeGreaterThan(0);
    await expect.poll(() => page.locator(".lm-TabBar-tab.jp-mod-dirty").count(), { timeout: 30_000 }).toBe(0);
    const saved = JSON.parse(readFileSync(file, "utf8")) as RawNotebook;
    const chartCells = saved.cells.flatMap((c, i) =>
      c.outputs?.some((o) => o.data?.["image/svg+xml"] !== undefined) ? [i] : [],
    );
    expect(chartCells).toContain(grpoCell);

    // File › Close Tab; then a fresh page (no plotly.js left in it) opens the notebook from the file browser.
    await page.locator(".lm-MenuBar-itemLabel", { hasText: /^File$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^Close Tab$/ }).click();
    await expect.poll(() => page.locator(".jp-NotebookPanel").count(), { timeout: 30_000 }).toBe(0);
    await page.goto(`${lab!.baseUrl}lab?token=${lab!.token}`);
    const item = (name: string) =>
      page.locator(".jp-DirListing-item", {
        has: page.locator(".jp-DirListing-itemText", { hasText: new RegExp(`^${name}$`) }),
      });
    // The file browser shows the root, or notebooks/ where it was last.
    await item(`(notebooks|${NOTEBOOK.replace(/\./g, "\\.")})`)
      .first()
      .waitFor({ timeout: 60_000 });
    if ((await item(NOTEBOOK.replace(/\./g, "\\.")).count()) === 0) await item("notebooks").dblclick();
    await item(NOTEBOOK.replace(/\./g, "\\.")).dblclick();
    await expect.poll(() => cells.count(), { timeout: 120_000 }).toBe(saved.cells.length);
    const chartCellsShown = async () => [...new Set((await page.evaluate(readCharts)).map((c) => c.cell))];
    await expect.poll(chartCellsShown, { timeout: 60_000 }).toEqual(chartCells);
    // jupyter-server logs each opening of an unsigned notebook; the first one was.
    const trusted = lab!.log().split(`Notebook notebooks/${NOTEBOOK} is not trusted`).length - 1 < 2;
    // A trusted notebook runs its outputs' scripts: each chart loads plotly.js from the server
    // again and is drawn, interactive. An untrusted one shows every chart's static image
    // (images decode asynchronously).
    const shown = (c: ChartImage) => (trusted ? c.plotted : c.image?.complete && c.image.natural.width > 0);
    await expect.poll(async () => (await page.evaluate(readCharts)).every(shown), { timeout: 60_000 }).toBe(true);
    const reopened = await page.evaluate(readCharts);
    console.log(
      `reopened notebook trusted (signed when saved): ${trusted ? "yes" : "no"}; plotly.js loads so far: ${plotlyLoads.length}; ` +
        `reopened: ${reopened.map((c) => `cell ${c.cell + 1}: ${c.plotted ? "plotly chart" : `image ${JSON.stringify(c.image)}`}`).join("; ")}`,
    );
    for (const c of reopened) {
      if (trusted) {
        expect(c.plotted, `cell ${c.cell + 1}'s chart drawn by plotly.js`).toBe(true);
        continue;
      }
      expect(c.image?.src).toMatch(/^data:image\/svg\+xml[;,]/);
      expect(c.image!.natural.width).toBeGreaterThan(100);
      expect(c.image!.shown.width).toBeGreaterThan(100);
      expect(c.image!.shown.height).toBeGreaterThan(50);
    }
    if (trusted) expect(plotlyLoads).toHaveLength(2);
    await page.evaluate(scrollToCell, grpoCell);
    await shot("06-reopened");
    await grpoOutputs
      .locator(".thinkcells-chart")
      .screenshot({ path: path.join(artifacts, "07-reopened-grpo-chart.png") });
    if (pageErrors.length) console.log(`page errors: ${pageErrors.join("\n")}`);
    console.log(`browser test took ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${artifacts}`);
  }, 900_000);

  it("stops GRPO mid-run with the toolbar's stop button; the kernel lives on and a new cell continues the run", async () => {
    onTestFailed(() => console.log(`JupyterLab's log (its end):\n${lab?.log().slice(-6000)}`));
    const started = Date.now();
    const N = INTERRUPT_STEPS;
    const { grpoCell: grpo } = interruptNotebook;
    const types = (JSON.parse(interruptNotebook.text) as RawNotebook).cells.map((c) => c.cell_type);
    const codeCells = types.flatMap((type, i) => (type === "code" ? [i] : []));
    const grpoPrompt = codeCells.indexOf(grpo); // the GRPO cell's place among the prompts
    const notebookPath = `notebooks/${INTERRUPT_NOTEBOOK}`;
    // The first test's kernel holds the bridge's "default" model, which this copy loads too (a
    // name another client holds is refused): close its page and shut its kernel down.
    for (const context of browser!.contexts()) await context.close();
    for (const s of await api<ApiSession[]>(lab!, "api/sessions")) await api(lab!, `api/sessions/${s.id}`, "DELETE");
    const notebookSession = async () =>
      (await api<ApiSession[]>(lab!, "api/sessions")).find((s) => s.path === notebookPath);

    const page = await browser!.newPage({ viewport: { width: 1400, height: 1800 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const traffic = watchKernelTraffic(page);
    const shot = (name: string) => page.screenshot({ path: path.join(artifacts, `interrupt-${name}.png`) });
    // A workspace of its own, so the page shows this notebook alone.
    await page.goto(`${lab!.baseUrl}lab/workspaces/interrupt/tree/${notebookPath}?token=${lab!.token}`);
    const cells = page.locator(".jp-Notebook .jp-Cell");
    await expect.poll(() => cells.count(), { timeout: 120_000 }).toBe(types.length);
    const status = page.locator("#jp-main-statusbar");
    await expect.poll(() => status.textContent(), { timeout: 120_000 }).toMatch(/TypeScript \(thinkcells\) \| Idle/);
    const kernelId = (await notebookSession())?.kernel?.id;
    expect(kernelId).toBeDefined();
    await shot("01-opened");

    await page.locator(".lm-MenuBar-itemLabel", { hasText: /^Run$/ }).click();
    await page.locator(".lm-Menu-itemLabel", { hasText: /^Run All Cells$/ }).click();
    const runStarted = Date.now();

    // Until GRPO's bar shows a step done, with the last far enough off for the press to land mid-run.
    let state: PageState;
    let queued = false;
    for (;;) {
      state = await page.evaluate(readPage, grpo);
      queued ||= state.prompts.some((p) => p.includes("*"));
      const count = progressCount(state.grpo.progress) ?? 0;
      if (count >= 1 && count <= N - 10) break;
      if (count > N - 10) throw new Error(`GRPO was at ${state.grpo.progress} before the test saw it mid-run`);
      const running = state.prompts.some((p) => p.includes("*"));
      if ((queued || Date.now() - runStarted > 15_000) && !running && /\| Idle/.test(state.status))
        throw new Error(`the run stopped before GRPO's first step: ${await failure(page, state.prompts, types)}`);
      if (Date.now() - runStarted > RUN_LIMIT_MS) throw new Error(`GRPO did not start within ${RUN_LIMIT_MS / 1000} s`);
      await sleep(200);
    }
    const seenAt = progressCount(state.grpo.progress)!;
    await page.evaluate(scrollToCell, grpo);

    // The notebook toolbar's stop button (■, "Interrupt the kernel"): jupyter-server sends the kernel
    // SIGINT. Pressed at once (the screenshot after), as steps can be short.
    await page.locator('.jp-NotebookPanel-toolbar [data-jp-item-name="interrupt"]').click();
    const pressed = Date.now();
    const pressedAt = progressCount((await page.evaluate(readPage, grpo)).grpo.progress)!;
    await shot("02-pressed");
    let grpoText = "";
    for (;;) {
      state = await page.evaluate(readPage, grpo);
      grpoText = await page.evaluate(cellText, { index: grpo, selector: OUTPUT_TEXT });
      const running = state.prompts.some((p) => p.includes("*"));
      // Deno's kernel may send a cell's error after its reply: wait for the message too.
      if (!running && /\| Idle/.test(state.status) && grpoText.includes("interrupted (the kernel's stop button)"))
        break;
      if (!running && /\| Idle/.test(state.status) && Date.now() - pressed > 30_000)
        throw new Error(`the kernel is idle but GRPO's cell shows no interrupt: ${grpoText.slice(-3000)}`);
      if (Date.now() - pressed > 180_000) {
        throw new Error(
          `no interrupt 180 s after the press (prompts ${state.prompts.join(" ")}, status "${state.status}"):\n` +
            grpoText.slice(-3000),
        );
      }
      await sleep(200);
    }
    const stoppedS = (Date.now() - pressed) / 1000;
    await page.evaluate(scrollToCell, grpo);
    await shot("03-interrupted");
    console.log(`GRPO cell after the stop button:\n${grpoText.slice(-2000)}`);

    // The cell failed with the InterruptedError, naming the step it stopped after and how to go on.
    const message = new RegExp(
      `grpo: interrupted \\(the kernel's stop button\\) after step (\\d+) of ${N}; nothing of step (\\d+) was applied: ` +
        "the trainer's run\\(\\) continues from step (\\d+)\\. Nothing is lost \\(the trainer is also lastInterrupt\\(\\)\\.trainer\\)\\.",
    ).exec(grpoText);
    expect(message, grpoText.slice(-3000)).not.toBeNull();
    const stoppedAfter = Number(message![1]);
    expect([Number(message![2]), Number(message![3])]).toEqual([stoppedAfter + 1, stoppedAfter + 1]);
    expect(stoppedAfter).toBeGreaterThanOrEqual(pressedAt);
    expect(stoppedAfter).toBeLessThan(N);
    expect(grpoText).toContain("InterruptedError");
    expect(grpoText).toContain("thinkcells: interrupt received: stopping grpo");
    // Its bar stays at the steps applied.
    expect(progressCount(state.grpo.progress)).toBe(stoppedAfter);
    // Every cell up to GRPO's ran.
    expect(
      state.prompts.slice(0, grpoPrompt + 1).every((p) => /^\[\d+\]:$/.test(p)),
      state.prompts.join(" "),
    ).toBe(true);
    // The cells after it did nothing. Run All sends every cell at once and leaves dropping the rest
    // after an error to the kernel (stop_on_error), which Deno's kernel (2.9) does not do: they run,
    // and each fails at once, the GRPO cell having never assigned its `grpo` and `rlEval`.
    const later = codeCells.slice(grpoPrompt + 1);
    const laterPrompts = state.prompts.slice(grpoPrompt + 1);
    const ranAfter = later.filter((_, k) => laterPrompts[k] !== "[ ]:");
    for (const cell of ranAfter) {
      // Its error may reach the page just after its reply.
      await expect
        .poll(() => page.evaluate(cellText, { index: cell, selector: OUTPUT_TEXT }), { timeout: 30_000 })
        .toMatch(/ReferenceError: (grpo|rlEval) is not defined/);
    }
    expect(existsSync(path.join(root, "out-interrupt/results.json"))).toBe(false);
    expect(existsSync(path.join(root, "out-interrupt/model"))).toBe(false);
    // The same kernel, idle: not restarted, not dead, and no dialog saying so.
    expect(await status.textContent()).toMatch(/TypeScript \(thinkcells\) \| Idle/);
    const after = await notebookSession();
    expect(after?.kernel).toMatchObject({ id: kernelId, execution_state: "idle" });
    expect(await page.locator(".jp-Dialog").count()).toBe(0);
    expect(traffic.states.filter((s) => /dead|restart/.test(s))).toEqual([]);

    // A new cell below GRPO's continues its trainer.
    await cells.nth(grpo).locator(".jp-InputPrompt").click();
    await page.keyboard.press("Escape");
    await page.keyboard.press("b");
    await expect.poll(() => cells.count(), { timeout: 30_000 }).toBe(types.length + 1);
    const added = grpo + 1;
    await cells.nth(added).locator(".cm-content").click();
    // As pasted: typed keys would meet the editor's auto-indent and bracket closing.
    await page.keyboard.insertText(CONTINUE);
    await expect
      .poll(() => page.evaluate(cellText, { index: added, selector: EDITOR_LINES }), { timeout: 30_000 })
      .toBe(CONTINUE);
    await page.keyboard.press("Control+Enter");
    const continueStarted = Date.now();
    let addedText = "";
    for (;;) {
      state = await page.evaluate(readPage, added);
      addedText = await page.evaluate(cellText, { index: added, selector: OUTPUT_TEXT });
      const prompt = state.prompts[grpoPrompt + 1] ?? "";
      if (/^\[\d+\]:$/.test(prompt) && /\| Idle/.test(state.status) && /continued steps|Error/.test(addedText)) break;
      if (Date.now() - continueStarted > RUN_LIMIT_MS)
        throw new Error(
          `the continuing cell did not finish within ${RUN_LIMIT_MS / 1000} s:\n${addedText.slice(-3000)}`,
        );
      await sleep(200);
    }
    const continueS = (Date.now() - continueStarted) / 1000;
    await page.evaluate(scrollToCell, added);
    await shot("04-continued");
    const printed = /continued steps (\[[\d,]*\]); history steps (\[[\d,]*\])/.exec(addedText);
    expect(printed, addedText.slice(-3000)).not.toBeNull();
    // The run went on from the step after the one it stopped after, to the last; no step twice.
    expect(JSON.parse(printed![1]!)).toEqual(range(stoppedAfter + 1, N));
    expect(JSON.parse(printed![2]!)).toEqual(range(1, N));
    // The continuing cell's bar counts the steps left, and its chart holds every step.
    expect(state.grpo.progress).toContain(`${N - stoppedAfter}/${N - stoppedAfter}`);
    expect(state.grpo).toMatchObject({ charts: 1, progressBars: 1, plotted: true, points: N });
    expect((await notebookSession())?.kernel?.id).toBe(kernelId);
    expect(await page.locator(".jp-Dialog").count()).toBe(0);
    expect(traffic.states.filter((s) => /dead|restart/.test(s))).toEqual([]);
    await cells
      .nth(added)
      .locator(".jp-OutputArea")
      .screenshot({ path: path.join(artifacts, "interrupt-05-continued-cell.png") });
    console.log(
      `interrupt: GRPO seen at step ${seenAt}/${N}, stop pressed at ${pressedAt}/${N}, stopped after step ${stoppedAfter}, ` +
        `idle ${stoppedS.toFixed(1)} s after the press; Run All went on to ${ranAfter.length} of the ${later.length} cells after it ` +
        `(prompts ${laterPrompts.join(" ")}); the new cell ran steps ${stoppedAfter + 1}..${N} in ${continueS.toFixed(1)} s; ` +
        `kernel states: ${traffic.states.join(" → ")}`,
    );
    if (pageErrors.length) console.log(`page errors: ${pageErrors.join("\n")}`);
    console.log(`interrupt browser test took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 900_000);
});
