/** notebooks/03 in a real JupyterLab, driven through Chromium (playwright-core, Debian's browser):
 * Run All Cells from the menu; while GRPO trains, its live chart (one output, redrawn by
 * update_display_data) grows and its progress bar advances; the sample tables render; the saved,
 * closed and reopened notebook still shows its charts. Screenshots: runs/test-artifacts/jupyterlab-browser/. */
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { cellTags, declaredParameters, parameterLiteral } from "../kernel/parameters.ts";
import { CHROMIUM } from "./chromium.ts";
import { repoRoot, stories, tempDir } from "./helpers.ts";
import { type JupyterLab, startJupyterLab } from "./jupyterlab.ts";
import {
  cellText,
  type GrpoView,
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

describe.skipIf(!haveChromium)("JupyterLab in Chromium runs notebooks/03", () => {
  // Paths relative to the notebook's directory (the kernel's), inside the test's own folder.
  const { text, grpoCell } = smallNotebook({ ...PARAMETERS, outDir: "../out", modelDir: "../out/stories260K" });
  const cellTypes = (JSON.parse(text) as RawNotebook).cells.map((c) => c.cell_type);
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
    await cp(stories, path.join(root, "assets/stories260K"), { recursive: true });
    await writeFile(path.join(root, "notebooks", NOTEBOOK), text);
    await rm(artifacts, { recursive: true, force: true });
    await mkdir(artifacts, { recursive: true });
    lab = await startJupyterLab(root, {
      // The kernel inherits these: its bridge is this test's own. Charts carry plotly.js, as in a user's JupyterLab.
      env: { THINKCELLS_BRIDGE_DIR: bridgeDir, THINKCELLS_SESSION: session, THINKCELLS_PLOTLY_INLINE: "1" },
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

    const unrun = state.prompts.findIndex((p) => !/^\[\d+\]:$/.test(p));
    if (unrun >= 0) {
      // The cell before the first one that did not run is the one that failed.
      const codeCells = cellTypes.flatMap((type, i) => (type === "code" ? [i] : []));
      const failed = codeCells[Math.max(0, unrun - 1)]!;
      throw new Error(
        `cell ${failed + 1} failed (prompts ${state.prompts.join(" ")}):\n${(await page.evaluate(cellText, failed)).slice(-3000)}`,
      );
    }
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
        `largest frame ${traffic.largestFrame} chars; frames with plotly.js: ${traffic.plotlyFrames}`,
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
    expect(traffic.plotlyFrames).toBeGreaterThanOrEqual(1);
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
    // Images decode asynchronously.
    await expect
      .poll(
        async () =>
          (await page.evaluate(readCharts)).every((c) => c.plotted || (c.image?.complete && c.image.natural.width > 0)),
        {
          timeout: 30_000,
        },
      )
      .toBe(true);
    const reopened = await page.evaluate(readCharts);
    // jupyter-server logs each opening of an unsigned notebook; the first one was.
    const untrusted = lab!.log().split(`Notebook notebooks/${NOTEBOOK} is not trusted`).length - 1;
    // A live chart's first display carried plotly.js, and its updates replaced it: the saved file has none.
    const carriers = saved.cells
      .flatMap((c) => c.outputs ?? [])
      .filter((o) => String(o.data?.["text/html"]).includes("if (!window.Plotly)"));
    console.log(
      `reopened notebook trusted (signed when saved): ${untrusted < 2 ? "yes" : "no"}; ` +
        `saved outputs carrying plotly.js: ${carriers.length}; window.Plotly in the reopened page: ` +
        `${await page.evaluate(() => typeof (globalThis as { Plotly?: unknown }).Plotly)}`,
    );
    console.log(
      `reopened: ${reopened.map((c) => `cell ${c.cell + 1}: ${c.plotted ? "plotly chart" : `image ${JSON.stringify(c.image)}`}`).join("; ")}`,
    );
    for (const c of reopened) {
      if (c.plotted) continue;
      expect(c.image?.src).toMatch(/^data:image\/svg\+xml[;,]/);
      expect(c.image!.natural.width).toBeGreaterThan(100);
      expect(c.image!.shown.width).toBeGreaterThan(100);
      expect(c.image!.shown.height).toBeGreaterThan(50);
    }
    await page.evaluate(scrollToCell, grpoCell);
    await shot("06-reopened");
    await grpoOutputs
      .locator(".thinkcells-chart")
      .screenshot({ path: path.join(artifacts, "07-reopened-grpo-chart.png") });
    if (pageErrors.length) console.log(`page errors: ${pageErrors.join("\n")}`);
    console.log(`browser test took ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${artifacts}`);
  }, 900_000);
});
