import { describe, expect, it } from "vitest";
import { type Output, OutputCollector } from "../kernel/outputs.ts";

const msg = (msg_type: string, content: Record<string, unknown>) => ({ header: { msg_type }, content });

describe("OutputCollector", () => {
  it("joins consecutive stream text and keeps stdout and stderr apart", () => {
    const c = new OutputCollector();
    const out: Output[] = [];
    c.add(out, msg("stream", { name: "stdout", text: "a" }));
    c.add(out, msg("stream", { name: "stdout", text: "b\n" }));
    c.add(out, msg("stream", { name: "stderr", text: "warn\n" }));
    expect(c.add(out, msg("status", { execution_state: "idle" }))).toBe(false);
    expect(out).toEqual([
      { output_type: "stream", name: "stdout", text: "ab\n" },
      { output_type: "stream", name: "stderr", text: "warn\n" },
    ]);
  });

  it("applies update_display_data to earlier outputs with the same display_id, across cells", () => {
    const c = new OutputCollector();
    const first: Output[] = [];
    const second: Output[] = [];
    const figure = (y: number[]) => ({ data: [{ y }], layout: {} });
    c.add(
      first,
      msg("display_data", {
        data: { "application/vnd.plotly.v1+json": figure([1]), "text/plain": "1" },
        metadata: {},
        transient: { display_id: "live" },
      }),
    );
    c.add(
      second,
      msg("display_data", { data: { "text/plain": ["x", "y"] }, metadata: {}, transient: { display_id: "other" } }),
    );
    c.add(
      second,
      msg("update_display_data", {
        data: { "application/vnd.plotly.v1+json": figure([1, 2, 3]), "text/plain": "3" },
        metadata: { a: 1 },
        transient: { display_id: "live" },
      }),
    );
    expect(first).toEqual([
      {
        output_type: "display_data",
        data: { "application/vnd.plotly.v1+json": figure([1, 2, 3]), "text/plain": "3" },
        metadata: { a: 1 },
      },
    ]);
    expect(second).toEqual([{ output_type: "display_data", data: { "text/plain": "xy" }, metadata: {} }]);
  });

  it("clears outputs, at once or when the next output arrives", () => {
    const c = new OutputCollector();
    const out: Output[] = [];
    c.add(out, msg("stream", { name: "stdout", text: "old\n" }));
    c.add(out, msg("clear_output", { wait: true }));
    expect(out).toHaveLength(1);
    c.add(out, msg("execute_result", { data: { "text/plain": "new" }, metadata: {}, execution_count: 4 }));
    expect(out).toEqual([
      { output_type: "execute_result", data: { "text/plain": "new" }, metadata: {}, execution_count: 4 },
    ]);
    c.add(out, msg("clear_output", { wait: false }));
    expect(out).toEqual([]);
  });
});
