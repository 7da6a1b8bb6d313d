/** The static SVG image every chart output carries (issue 20, item 2): drawn in TypeScript for
 * the traces and layout the library's charts use, placed where plotly places them. */
import { Buffer } from "node:buffer";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { previewDataset } from "../cells-lib/data/preview.ts";
import {
  chart,
  chartSvg,
  liveChart,
  PLOTLY_MIME,
  type RecordedOutput,
  RecordingRenderer,
  setRenderer,
} from "../cells-lib/display/index.ts";
import { liveFigure, type Series } from "../cells-lib/display/live-chart-figure.ts";
import { figureSvg } from "../cells-lib/display/svg/figure-svg.ts";
import { niceTicks, tickLabel } from "../cells-lib/display/svg/ticks.ts";

let recorder: RecordingRenderer;
beforeEach(() => {
  recorder = new RecordingRenderer();
  setRenderer(recorder);
});
afterEach(() => {
  setRenderer(undefined);
  vi.useRealTimers();
});

/** Every match of `pattern`'s first group. */
function all(svg: string, pattern: RegExp): string[] {
  return [...svg.matchAll(new RegExp(pattern.source, "g"))].map((m) => m[1]!);
}
const paths = (svg: string) => all(svg, /<path d="([^"]+)"/);
const texts = (svg: string) => all(svg, /<tspan[^>]*>([^<]*)<\/tspan>/);
const rects = (svg: string) =>
  all(svg.replace(/<defs>.*<\/defs>/, ""), /<rect (x="[^"]+" y="[^"]+" width="[^"]+" height="[^"]+")/);

/** 400×300 with 50 px margins: the plot area is x 50–350, y 50–250. */
const small = { width: 400, height: 300, margin: { l: 50, r: 50, t: 50, b: 50 } };

describe("chartSvg", () => {
  it("places a line where plotly does: x over the data's extent, y padded by 5%", () => {
    const svg = chartSvg({ data: [{ type: "scatter", mode: "lines", x: [0, 1], y: [0, 10] }], layout: small });
    // y range [-0.5, 10.5]: y=0 is at 250 - 200·0.5/11, y=10 at 250 - 200·10.5/11.
    expect(paths(svg)).toEqual(["M50,240.9L350,59.1"]);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="400" height="300" viewBox="0 0 400 300"/);
    expect(texts(svg)).toEqual(["0", "0.2", "0.4", "0.6", "0.8", "1", "0", "2", "4", "6", "8", "10"]);
  });

  it("breaks lines at missing values, draws markers on short traces, names skipped trace types", () => {
    const svg = chartSvg({
      data: [
        { type: "scatter", x: [1, 2, 3, 4, 5], y: [1, 2, null, 4, 5], name: "loss" },
        { type: "heatmap", z: [[1]] },
      ],
      layout: small,
    });
    const [d] = paths(svg);
    expect(d!.match(/M/g)).toHaveLength(2);
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(texts(svg)).toContain("not drawn in this static image: heatmap &#34;trace 1&#34;");
  });

  it("draws grouped bars on a category axis, and a legend when several traces have names", () => {
    const svg = chartSvg({
      data: [
        { type: "bar", name: "base", x: ["a", "b"], y: [1, 2] },
        { type: "bar", name: "trained", x: ["a", "b"], y: [2, 4] },
      ],
      layout: { ...small, margin: { l: 50, r: 0, t: 50, b: 50 }, showlegend: false },
    });
    // Two categories over x 50–400: 175 px each; a group fills 80% of it, each bar half of that.
    // Bars start at 0: y runs from 0 (no padding below) to 4.2.
    expect(rects(svg)).toEqual([
      'x="67.5" y="202.4" width="70" height="47.6"',
      'x="242.5" y="154.8" width="70" height="95.2"',
      'x="137.5" y="154.8" width="70" height="95.2"',
      'x="312.5" y="59.5" width="70" height="190.5"',
    ]);
    expect(texts(svg)).toEqual(expect.arrayContaining(["a", "b"]));
    expect(texts(svg)).not.toContain("trained");
    expect(
      texts(
        chartSvg({
          data: [
            { type: "bar", name: "base", y: [1] },
            { type: "bar", name: "trained", y: [2] },
          ],
        }),
      ),
    ).toEqual(expect.arrayContaining(["base", "trained"]));
  });

  it("draws shapes on data and paper coordinates, titles and axis titles", () => {
    const svg = chartSvg({
      data: [{ type: "scatter", mode: "lines", x: [0, 10], y: [0, 1] }],
      layout: {
        ...small,
        title: { text: "log-prob per position" },
        xaxis: { title: { text: "position" } },
        yaxis: { title: "log-prob" },
        shapes: [{ type: "line", x0: 5, x1: 5, yref: "paper", y0: 0, y1: 1 }],
      },
    });
    expect(svg).toContain('<line x1="200" y1="250" x2="200" y2="50" stroke="#444" stroke-width="2"/>');
    expect(svg).toContain("<title>log-prob per position</title>");
    expect(texts(svg)).toEqual(expect.arrayContaining(["log-prob per position", "position", "log-prob"]));
  });

  it("escapes text: a trace name cannot end the image", () => {
    const svg = chartSvg({
      data: [
        { type: "scatter", name: "</svg><script>x</script>", y: [1, 2] },
        { type: "scatter", name: "b", y: [2, 1] },
      ],
    });
    expect(svg).not.toContain("<script>");
    expect(svg.match(/<\/svg>/g)).toHaveLength(1);
  });

  it("draws every panel of a live chart's grid, with its title", () => {
    const series = new Map<string, Series>();
    const metrics = ["loss", "reward", "kl", "entropy", "lr"];
    for (const m of metrics) series.set(m, { steps: [1, 2, 3], values: [m === "kl" ? null : 1, 0.5, 0.25] });
    const svg = figureSvg(liveFigure({ title: "GRPO", metrics, series, maxPoints: 1000 }));
    expect(paths(svg)).toHaveLength(5);
    expect(texts(svg)).toEqual(expect.arrayContaining(["GRPO", ...metrics]));
    // Each panel clips to its own area.
    expect(svg.match(/<clipPath /g)).toHaveLength(5);
    const empty = figureSvg(liveFigure({ title: "SFT", metrics: ["loss"], series: new Map(), maxPoints: 10 }));
    expect(texts(empty)).toEqual(["no data yet", "SFT"]);
  });

  it("keeps a long line small: at most four points per pixel column, spikes kept", () => {
    const y = Array.from({ length: 20_000 }, (_, i) => (i === 12_345 ? 100 : Math.sin(i / 100)));
    const svg = chartSvg({ data: [{ type: "scatter", mode: "lines", y }], layout: small });
    const points = paths(svg)[0]!.split(/[ML]/).filter(Boolean);
    expect(points.length).toBeLessThanOrEqual(4 * 301);
    // The spike's top (y=100, the top of the padded range) is still drawn.
    expect(Math.min(...points.map((p) => Number(p.split(",")[1])))).toBeCloseTo(59.1, 0);
  });

  it("draws every chart the library makes", () => {
    previewDataset({ file: "pairs.jsonl", rows: [{ line: 1, row: { prompt: "1+1?", completion: "2" } }] }, { bins: 2 });
    const histogram = recorder.outputs.find((o) => PLOTLY_MIME in o.bundle)!;
    const svg = histogram.bundle["image/svg+xml"] as string;
    expect(rects(svg).length).toBeGreaterThanOrEqual(2);
    expect(texts(svg)).toEqual(
      expect.arrayContaining(["length per field (characters)", "rows", "prompt", "completion"]),
    );
  });
});

describe("ticks", () => {
  it("are round numbers, labelled as plotly labels them", () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.1, 0.35, 3)).toEqual([0.1, 0.2, 0.3]);
    expect(niceTicks(-3, 7, 4)).toEqual([-2, 0, 2, 4, 6]);
    expect(tickLabel(15_000, 5000)).toBe("15k");
    expect(tickLabel(2e-5, 1e-5)).toBe("2e-5");
    expect(tickLabel(1.5e-5, 5e-6)).toBe("1.5e-5");
    expect(tickLabel(0.30000000000000004, 0.1)).toBe("0.3");
  });
});

describe("chart outputs carry their static image", () => {
  const decoded = (output: RecordedOutput) => {
    const m = /src="data:image\/svg\+xml;base64,([^"]+)"/.exec(output.bundle["text/html"] as string);
    return m ? Buffer.from(m[1]!, "base64").toString("utf8") : undefined;
  };

  it("as image/svg+xml and inside the HTML, which plotly.js replaces where it is loaded", () => {
    chart({ data: [{ type: "scatter", y: [1, 2] }], layout: { title: { text: "t" } } });
    const out = recorder.outputs[0]!;
    expect(decoded(out)).toBe(out.bundle["image/svg+xml"]);
    const html = out.bundle["text/html"] as string;
    expect(html).toMatch(
      /<div id="[^"]+" class="thinkcells-chart" style="width:100%"><img class="thinkcells-chart-static" alt="t"/,
    );
    expect(html).toContain('div.textContent = "";');
  });

  it("on a live chart: at first, at most every staticEveryMs while running, and always at close()", () => {
    vi.useFakeTimers();
    const live = liveChart({ metrics: ["loss"], throttleMs: 100, staticEveryMs: 1000 });
    for (let step = 0; step < 30; step++) {
      live.push(step, { loss: 1 / (step + 1) });
      vi.advanceTimersByTime(100);
    }
    live.close();
    const withImage = recorder.outputs.map((o) => "image/svg+xml" in o.bundle);
    expect(withImage[0]).toBe(true);
    expect(withImage.at(-1)).toBe(true);
    // ~30 redraws over 3 s: the image goes with about one in ten.
    expect(withImage.filter(Boolean).length).toBeGreaterThanOrEqual(3);
    expect(withImage.filter(Boolean).length).toBeLessThanOrEqual(6);
    for (const o of recorder.outputs) expect(decoded(o)).toBe(o.bundle["image/svg+xml"]);
  });
});
