/** Walkthrough 08 run headless (issue 20): its HTML report shows the rollout inspector and the
 * playground (items 5, 6), and `jupyter nbconvert --to html` of the executed notebook, a page
 * without plotly.js as GitHub or a plain HTML export shows a saved notebook, shows every chart
 * drawn from the static image its output carries (item 2). */
import { Buffer } from "node:buffer";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import type { ExecutedNotebook } from "../kernel/run.ts";
import { dumpDom } from "./chromium.ts";
import { repoRoot, tempDir } from "./helpers.ts";
import { runWithOwnBridge } from "./notebooks.ts";

const exec = promisify(execFile);
const VENV_BIN = path.join(repoRoot, ".venv/bin");
const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** Appended to the converted page: after load, writes each chart image's state into the DOM
 * (Chromium's --dump-dom returns the DOM, not what scripts compute). */
const PROBE = `<script>
window.addEventListener("load", function () {
  var shown = Array.from(document.querySelectorAll("img.thinkcells-chart-static")).map(function (img) {
    var box = img.getBoundingClientRect();
    var style = getComputedStyle(img);
    return { loaded: img.complete, naturalWidth: img.naturalWidth, width: box.width, height: box.height,
      visible: style.display !== "none" && style.visibility !== "hidden" && Number(style.opacity) > 0, src: img.src };
  });
  var pre = document.createElement("pre");
  pre.id = "chart-probe";
  pre.textContent = JSON.stringify(shown);
  document.body.appendChild(pre);
});
</script>`;

interface Shown {
  loaded: boolean;
  naturalWidth: number;
  width: number;
  height: number;
  visible: boolean;
  src: string;
}

const dir = tempDir("nb-08");
const executed = path.join(dir, "08.ipynb");
const report = path.join(dir, "08.report.html");
let notebook: ExecutedNotebook;

beforeAll(async () => {
  ({ notebook } = await runWithOwnBridge(path.join(repoRoot, "notebooks/08-inspect-and-compare.ipynb"), dir, "nb-08", {
    parameters: new Map([
      ["modelDir", path.join(dir, "stories260K")],
      ["sftSteps", "8"],
      ["grpoSteps", "2"],
      ["playgroundRows", "4"],
    ]),
    out: executed,
    html: report,
    timeoutS: 240,
  }));
}, 600_000);

describe("walkthrough 08-inspect-and-compare (headless, small parameters)", () => {
  it("shows the rollout inspector and the playground in the HTML report", () => {
    const html = readFileSync(report, "utf8");
    expect(html.match(/<div class="thinkcells-rollouts"/g)).toHaveLength(2);
    expect(html).toContain("GRPO step 2: 2 groups, 8 completions; tokens shaded by log-prob");
    expect(html).toContain("tokens shaded by advantage");
    expect(html).toMatch(/<span class="tc-token"[^>]* title="[^"]+" data-id="\d+" data-logprob="-?[\d.e-]+"/);
    expect(html).toMatch(/SFT \+ GRPO vs stories260K \(reward\): (no win rate|win rate [\d.]+%) over/);
    expect(html).toMatch(/trained vs base \(judge\): win rate [\d.]+% over 4 prompts/);
  });

  it("nbconvert's HTML shows every chart drawn, without plotly.js", async () => {
    const charts = notebook.cells.flatMap((c) =>
      (c.outputs ?? []).flatMap((o) => ("data" in o && PLOTLY_MIME in o.data ? [o.data] : [])),
    );
    expect(charts).toHaveLength(2); // GRPO's live chart (its final state) and the win/tie/loss bars

    await exec(path.join(VENV_BIN, "jupyter"), ["nbconvert", "--to", "html", "--output-dir", dir, executed], {
      env: { ...process.env, PATH: `${VENV_BIN}:${process.env.PATH}` },
      timeout: 120_000,
    });
    const page = path.join(dir, "08.html");
    const html = readFileSync(page, "utf8");
    expect(html).not.toContain("plotly.js v4"); // only the static images can show the charts
    writeFileSync(page, html.replace(/<\/body>/i, `${PROBE}</body>`));

    const dom = await dumpDom(page);
    const probe = /<pre id="chart-probe">([^<]*)<\/pre>/.exec(dom);
    expect(probe, "the probe ran").not.toBeNull();
    const shown = JSON.parse(probe![1]!.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&")) as Shown[];
    expect(shown).toHaveLength(2);
    for (const img of shown) {
      expect(img).toMatchObject({ loaded: true, visible: true, naturalWidth: 900 });
      expect(img.width).toBeGreaterThan(300);
      expect(img.height).toBeGreaterThan(100);
    }
    const svgs = shown.map((img) =>
      Buffer.from(img.src.replace(/^data:image\/svg\+xml;base64,/, ""), "base64").toString("utf8"),
    );
    // The live chart's final state: one line per metric panel, with the panel's title.
    const live = charts[0]![PLOTLY_MIME] as { data: { name: string }[] };
    expect(svgs[0]!.match(/<path d="M/g)).toHaveLength(live.data.length);
    for (const t of live.data) expect(svgs[0]).toContain(`>${t.name}</tspan>`);
    // The bar chart: three bars, one per outcome.
    expect(/<g class="trace bars"[^>]*>(.*?)<\/g>/.exec(svgs[1]!)?.[1]?.match(/<rect /g)).toHaveLength(3);
    expect(svgs[1]).toContain("SFT + GRPO against stories260K (correctness)");
  }, 300_000);
});
