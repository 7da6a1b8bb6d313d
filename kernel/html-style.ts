/** The report's stylesheet: readable on screen and in print, no external fonts. */
export const REPORT_CSS = `
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --code-bg: #f6f8fa; --err: #cf222e; --err-bg: #ffebe9; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; }
main, header.report-head { max-width: 980px; margin: 0 auto; padding: 0 20px; }
header.report-head { padding-top: 24px; }
header.report-head h1 { margin: 0 0 4px; font-size: 1.7em; }
.summary { margin: 0 0 16px; color: var(--muted); }
.error-banner { margin: 0 0 16px; padding: 10px 14px; border: 1px solid var(--err); border-radius: 6px; background: var(--err-bg); }
.error-banner ul { margin: 4px 0 0; padding-left: 20px; }
.error-banner a { color: var(--err); }
pre {
  margin: 0; padding: 8px 12px; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
.cell { margin: 14px 0; scroll-margin-top: 12px; }
.cell:target { outline: 2px solid #0969da; outline-offset: 4px; border-radius: 4px; }
.markdown-cell img, .output-markdown img { max-width: 100%; }
.markdown-cell table, .output-markdown table { border-collapse: collapse; }
.markdown-cell th, .markdown-cell td, .output-markdown th, .output-markdown td { border: 1px solid var(--line); padding: 4px 8px; }
.markdown-cell code, .output-markdown code { background: var(--code-bg); padding: 1px 4px; border-radius: 4px; font-size: 0.9em; }
.markdown-cell pre code, .output-markdown pre code { padding: 0; background: none; }
.markdown-cell pre, .output-markdown pre { background: var(--code-bg); border-radius: 6px; }
.cell-head { display: flex; gap: 10px; align-items: baseline; font: 12px ui-monospace, monospace; color: var(--muted); }
.prompt { color: var(--muted); text-decoration: none; }
.timing { margin-left: auto; }
.source { background: var(--code-bg); border: 1px solid var(--line); border-radius: 6px; }
.outputs { border-left: 3px solid var(--line); margin-top: 6px; padding-left: 6px; }
.outputs > * + * { margin-top: 4px; }
.stream.stderr { background: #fff8c5; }
.output-error { border: 1px solid var(--err); border-radius: 6px; background: var(--err-bg); }
.output-error .error-head { padding: 6px 12px 0; font-weight: 600; color: var(--err); }
.failed .source { border-color: var(--err); }
.output-note { color: var(--muted); font-style: italic; margin: 0; }
.output-image { max-width: 100%; }
.output-html { overflow-x: auto; }
.output-html table { border-collapse: collapse; font-size: 13px; }
.output-html th, .output-html td { border: 1px solid var(--line); padding: 2px 8px; text-align: right; }
.plotly-chart { width: 100%; }
`;
