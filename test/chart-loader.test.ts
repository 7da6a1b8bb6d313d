/** Where a chart output's page gets plotly.js: thinkcells' Jupyter server extension serves the
 * checkout's plotly.min.js; the chart's loader takes it from the server named in the page's
 * Jupyter config, else from the CDN, whose bytes must hash to the integrity the chart carries;
 * failing both, the static image stays, titled with why. Real jupyter-server, real Chromium;
 * the CDN is played by playwright's router (these machines are offline). */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chartBundle } from "../cells-lib/display/chart.ts";
import { plotlyCdn, SERVER_PLOTLY_PATH } from "../cells-lib/display/plotly-source.ts";
import { type JupyterServer, startJupyterServer } from "../kernel/jupyter-server.ts";
import { CHROMIUM } from "./chromium.ts";
import { repoRoot } from "./helpers.ts";

const plotlyFile = path.join(repoRoot, "node_modules/plotly.js-dist-min/plotly.min.js");
const plotlyBytes = readFileSync(plotlyFile);
const { version } = JSON.parse(
  readFileSync(path.join(repoRoot, "node_modules/plotly.js-dist-min/package.json"), "utf8"),
) as { version: string };

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`skipped: the chart loader's browser cases: no Chromium at ${CHROMIUM}`);

const figure = (title: string) => ({
  data: [{ type: "scatter", name: "loss", x: [1, 2, 3], y: [2, 1, 0.5] }],
  layout: { title: { text: title } },
});

/** A page holding two charts, with Jupyter's page config naming `baseUrl` (or none). */
function pageHtml(baseUrl: string | undefined): string {
  const config =
    baseUrl === undefined
      ? ""
      : `<script id="jupyter-config-data" type="application/json">${JSON.stringify({ baseUrl })}</script>`;
  const charts = ["first", "second"].map((t) => chartBundle(figure(t))["text/html"] as string);
  return `<!doctype html><html><head>${config}</head><body>${charts.join("\n")}</body></html>`;
}

interface Drawn {
  plotted: number;
  images: { title: string }[];
}

/** Waits until both charts are drawn by plotly.js or have given up (an image with a title). */
async function settle(page: Page): Promise<Drawn> {
  // A string: it runs in the page (the project compiles without the DOM's types).
  const read = () =>
    page.evaluate<Drawn>(`({
      // plotly.js marks the div it draws into.
      plotted: document.querySelectorAll(".thinkcells-chart.js-plotly-plot").length,
      images: [...document.querySelectorAll(".thinkcells-chart img")].map((i) => ({ title: i.title })),
    })`);
  await expect
    .poll(
      async () => {
        const d = await read();
        return d.plotted + d.images.filter((i) => i.title).length;
      },
      { timeout: 30_000 },
    )
    .toBe(2);
  return read();
}

describe("plotly.js for chart outputs", () => {
  let server: JupyterServer | undefined;
  let browser: Browser | undefined;
  let root = "";

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "thinkcells-chart-loader-"));
    server = await startJupyterServer(root);
    if (haveChromium) {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    }
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("the chart output is small: it names the server's path and the CDN with the file's own hash", () => {
    const html = chartBundle(figure("small"))["text/html"] as string;
    expect(html.length).toBeLessThan(20_000);
    expect(html).not.toContain("plotly.js v4");
    expect(html).toContain(JSON.stringify(SERVER_PLOTLY_PATH));
    const digest = createHash("sha384").update(plotlyBytes).digest("base64");
    expect(plotlyCdn()).toEqual({
      src: `https://cdn.jsdelivr.net/npm/plotly.js-dist-min@${version}/plotly.min.js`,
      integrity: `sha384-${digest}`,
    });
    expect(html).toContain(JSON.stringify(plotlyCdn()));
  });

  it("the server extension serves the checkout's plotly.min.js, and nothing else of the package", async () => {
    const url = `${server!.baseUrl}${SERVER_PLOTLY_PATH}`;
    // No token: a <script src> may be fetched before the page has logged in.
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/javascript/);
    expect(Buffer.from(await res.arrayBuffer()).equals(plotlyBytes)).toBe(true);
    // Cached by the browser: a second load is a 304 without the body.
    const again = await fetch(url, { headers: { "If-Modified-Since": res.headers.get("last-modified")! } });
    expect(again.status).toBe(304);
    for (const other of ["package.json", "plotly.js", "../package.json"]) {
      expect((await fetch(`${server!.baseUrl}thinkcells/${other}`)).status).toBe(404);
    }
  });

  describe.skipIf(!haveChromium)("in Chromium", () => {
    /** A page whose requests are recorded; the CDN answers with `cdnBody` (undefined: unreachable),
     * and nothing else beyond 127.0.0.1 is reachable. */
    async function open(cdnBody: Buffer | undefined): Promise<{ page: Page; requests: string[] }> {
      const page = await browser!.newPage();
      const requests: string[] = [];
      page.on("request", (r) => requests.push(r.url()));
      await page.route(
        (url) => url.hostname !== "127.0.0.1",
        (route) =>
          route.request().url() === plotlyCdn().src && cdnBody !== undefined
            ? route.fulfill({
                body: cdnBody,
                contentType: "application/javascript",
                headers: { "Access-Control-Allow-Origin": "*" },
              })
            : route.abort("internetdisconnected"),
      );
      return { page, requests };
    }

    it("loads it once from the Jupyter server in the page's config, not from the CDN", async () => {
      const { page, requests } = await open(plotlyBytes);
      await page.setContent(pageHtml(server!.baseUrl));
      expect(await settle(page)).toEqual({ plotted: 2, images: [] });
      expect(requests.filter((u) => u.includes("plotly"))).toEqual([`${server!.baseUrl}${SERVER_PLOTLY_PATH}`]);
      await page.close();
    });

    it("falls back to the CDN where the server has no extension, and to the CDN alone without a config", async () => {
      for (const baseUrl of [`${server!.baseUrl}no-such-base/`, undefined]) {
        const { page, requests } = await open(plotlyBytes);
        await page.setContent(pageHtml(baseUrl));
        expect(await settle(page)).toEqual({ plotted: 2, images: [] });
        expect(requests.filter((u) => u.includes("plotly")).at(-1)).toBe(plotlyCdn().src);
        await page.close();
      }
    });

    it("keeps the static images, titled with why, when the CDN's bytes are not the package's or it is unreachable", async () => {
      const tampered = Buffer.concat([plotlyBytes, Buffer.from("\nwindow.tampered = true;\n")]);
      for (const cdnBody of [tampered, undefined]) {
        const { page } = await open(cdnBody);
        await page.setContent(pageHtml(undefined));
        const drawn = await settle(page);
        expect(drawn.plotted).toBe(0);
        for (const img of drawn.images) {
          expect(img.title).toBe(`A static image of the chart: plotly.js could not be loaded from ${plotlyCdn().src}`);
        }
        expect(await page.evaluate(`"tampered" in window`)).toBe(false);
        await page.close();
      }
    });
  });
});
