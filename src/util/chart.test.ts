import { describe, expect, it } from "vitest";
import { lineChart } from "./chart.js";

describe("chart", () => {
  it("draws a titled line chart with axis titles and a legend, as SVG and as a PNG twice its size", async () => {
    const chart = await lineChart({
      title: "Loss",
      x: "optimiser step",
      y: "loss",
      series: [
        { name: "training", points: [1, 2, 3, 4].map((x) => ({ x, y: 5 / x })) },
        {
          name: "validation",
          points: [
            { x: 2, y: 2.4 },
            { x: 4, y: 1.6 },
          ],
        },
      ],
      width: 300,
      height: 200,
    });
    for (const text of ["Loss", "optimiser step", "loss", "training", "validation"])
      expect(chart.svg).toContain(`>${text}</text>`);
    expect(chart.png.subarray(1, 4).toString("latin1")).toBe("PNG");
    const width = chart.png.readUInt32BE(16);
    const height = chart.png.readUInt32BE(20);
    const svgWidth = Number(/<svg[^>]* width="(\d+)"/.exec(chart.svg)?.[1]);
    expect(width).toBe(2 * svgWidth);
    expect(height).toBeGreaterThan(400);
  });
});
