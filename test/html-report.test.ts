import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { plotlySource } from "../cells-lib/display/plotly-source.ts";
import { type ReportNotebook, renderNotebookHtml } from "../kernel/html-report.ts";
import { applyCarriageReturns, scriptSafe, stripAnsi } from "../kernel/html-text.ts";
import { readNotebook } from "../kernel/notebook.ts";
import { dumpDom } from "./chromium.ts";

const fixture = path.join(import.meta.dirname, "fixtures/report-sample.ipynb");
const sample = await readNotebook(fixture);
const html = renderNotebookHtml(sample, { title: "Sample <run>" });

function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, "g"))?.length ?? 0;
}

function codeCell(outputs: unknown[], extra: object = {}) {
  return { cell_type: "code", source: "", metadata: {}, execution_count: 1, outputs, ...extra };
}

describe("renderNotebookHtml", () => {
  it("is one page with the title and the rendered markdown", () => {
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).toContain("<title>Sample &#60;run&#62;</title>");
    expect(html).toContain("<h1>Training report</h1>");
    expect(html).toContain("<li>first item</li>");
    expect(html).toContain("<code>a &lt; b</code>");
    expect(html).toContain("5 code cells · ran 1.75 s · kernel Deno");
  });

  it("escapes code and output text", () => {
    expect(html).toContain("const html = &#34;&#60;/script&#62;&#60;b&#62;not bold&#60;/b&#62;&#34;;");
    expect(html).toContain("1 &#60; 2 &#38;&#38; 3 &#62; 2");
    expect(html).toContain("at &#60;anonymous&#62;:1:1");
    expect(html).not.toContain("<b>not bold</b>");
  });

  it("gives each cell an anchor and a prompt, and shows timing", () => {
    for (const id of ["intro", "hello", "chart", "answer", "boom", "after"]) expect(html).toContain(`id="${id}"`);
    expect(html).toContain('<a class="prompt" href="#answer">[3]</a>');
    expect(html).toContain('<a class="prompt" href="#after">[ ]</a>');
    expect(html).toContain('<span class="timing" title="started 2025-01-02T10:00:00.000000Z">1.25 s</span>');
    expect(html).toContain('<span class="timing">0.50 s</span>');
  });

  it("styles stdout and stderr apart, joining a redrawn progress line", () => {
    expect(html).toContain('<pre class="stream stdout">hello true\n</pre>');
    expect(html).toContain('<pre class="stream stderr">step 3/3\n</pre>');
  });

  it("strips ANSI codes from errors and plain-text results", () => {
    expect(html).not.toContain("\x1b");
    expect(html).toContain('<pre class="output-text">42</pre>');
    expect(html).toContain('<div class="error-head">ReferenceError: x is not defined</div>');
  });

  it("links the failing cell from a banner", () => {
    expect(html).toContain('<a href="#boom">Cell 5</a>: ReferenceError: x is not defined');
    expect(html).toContain('<section class="cell code-cell failed" id="boom">');
  });

  it("draws plotly figures from their JSON, not their text/html alternative", () => {
    expect(html).toContain('<div class="plotly-chart" style="height:360px"></div>');
    expect(html).not.toContain("HTML ALTERNATIVE");
    // The trace name holds "</script>": written as \u003c/script>, it cannot end the data block.
    expect(html).toContain('"name":"loss \\u003c/script>\\u003cb>x\\u003c/b>"');
    // Three script elements (figure, plotly.js, drawing), each closed where it should be.
    expect(count(html, /<script\b/)).toBe(3);
    expect(count(html, /<\/script/i)).toBe(3);
  });

  it("inlines plotly.js exactly once", () => {
    const plotly = plotlySource();
    expect(count(html, /plotly\.js v\d/)).toBe(1);
    expect(html.split(scriptSafe(plotly).slice(100_000, 100_400)).length).toBe(2);
  });

  it("leaves plotly.js out when no output is a chart", () => {
    const page = renderNotebookHtml({ cells: [codeCell([{ output_type: "stream", name: "stdout", text: "hi\n" }])] });
    expect(page).not.toContain("<script");
    expect(page.length).toBeLessThan(10_000);
    expect(page).toContain("<title>Notebook</title>");
  });

  it("prefers the richest type it can show", () => {
    const png = "iVBORw0KGgo=";
    const page = renderNotebookHtml({
      metadata: { title: "Types" },
      cells: [
        codeCell([
          {
            output_type: "display_data",
            data: { "text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "table" },
          },
          { output_type: "display_data", data: { "image/png": `${png}\n`, "text/plain": "<Figure>" } },
          { output_type: "display_data", data: { "text/markdown": ["**bold** ", "md"], "text/plain": "md" } },
          { output_type: "display_data", data: { "application/json": { a: 1 } } },
          // A malformed figure falls back to its summary, never to the HTML that loads plotly.
          {
            output_type: "display_data",
            data: { "application/vnd.plotly.v1+json": { data: 1 }, "text/html": "<p>alt</p>", "text/plain": "summary" },
          },
          { output_type: "mystery" },
        ]),
      ],
    });
    expect(page).toContain("<title>Types</title>");
    expect(page).toContain('<div class="output-html"><table><tr><td>1</td></tr></table></div>');
    expect(page).toContain(`<img class="output-image" alt="output image" src="data:image/png;base64,${png}">`);
    expect(page).toContain("<strong>bold</strong> md");
    expect(page).toContain("{\n  &#34;a&#34;: 1\n}");
    expect(page).toContain('<pre class="output-text">summary</pre>');
    expect(page).not.toContain("<p>alt</p>");
    expect(page).toContain("cannot read: output_type &#34;mystery&#34;");
    expect(page).not.toContain("<script");
  });

  it("inlines markdown attachments and falls back to numbered anchors", () => {
    const page = renderNotebookHtml({
      cells: [
        {
          cell_type: "markdown",
          source: "![plot](attachment:a%20b.png)",
          attachments: { "a b.png": { "image/png": "AAAA" } },
        },
        { cell_type: "raw", id: "not a valid id!", source: "<raw>" },
      ],
    } satisfies ReportNotebook);
    expect(page).toContain('<img src="data:image/png;base64,AAAA" alt="plot">');
    expect(page).toContain('id="cell-2"');
    expect(page).toContain("<pre>&#60;raw&#62;</pre>");
  });
});

describe("text helpers", () => {
  it("strips colour, cursor and OSC sequences", () => {
    expect(stripAnsi("\x1b[1;31mred\x1b[0m \x1b[2K\x1b]8;;http://x\x07link\x1b]8;;\x07")).toBe("red link");
  });

  it("lets a carriage return redraw its line", () => {
    expect(applyCarriageReturns("a\r\nstep 1\rstep 2\ndone")).toBe("a\nstep 2\ndone");
  });

  it("makes JavaScript safe inside <script> without changing what it means", () => {
    const js = `["</script>", "<!--", "<SCRIPT", /<\\/script>/.source]`;
    const safe = scriptSafe(js);
    expect(safe).not.toMatch(/<\/script|<!--|<script/i);
    expect(new Function(`return ${safe}`)()).toEqual(new Function(`return ${js}`)());
  });
});

describe("the report in Chromium", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "thinkcells-report-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("draws the plotly chart and shows the markdown", async () => {
    const file = path.join(dir, "report.html");
    writeFileSync(file, html);
    const dom = await dumpDom(file);
    // What plotly.js draws: the plot's SVG, one <g class="trace scatter …"> per trace, each
    // with a line through its points ("M x,y L x,y …"; the legend's samples are js-line paths
    // too, but drawn as "M5,0h30").
    expect(dom).toContain('<svg class="main-svg"');
    expect(count(dom, /<g class="trace scatter[ "]/)).toBe(2);
    expect(count(dom, /<path class="js-line" d="M[\d.]+,[\d.]+L/)).toBe(2);
    expect(dom).toContain('data-unformatted="reward"');
    expect(dom).not.toMatch(/class="plotly-chart[^>]*>Chart error/);
    expect(dom).toContain("<h1>Training report</h1>");
    expect(dom).toContain("<li>second item</li>");
  });
});
