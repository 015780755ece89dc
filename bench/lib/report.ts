/** The benchmark's results: one row per measured figure, printed as a table and written as JSON. */

export interface Row {
  scenario: string;
  metric: string;
  value: number;
  unit: string;
  /** What the value is compared with, when the row has a target. */
  target?: { op: "<=" | ">="; value: number };
  /** Free-form context, such as the figures a ratio was computed from. */
  detail?: string;
}

export function passes(row: Row): boolean | undefined {
  if (!row.target || Number.isNaN(row.value)) return undefined;
  return row.target.op === "<=" ? row.value <= row.target.value : row.value >= row.target.value;
}

function format(value: number): string {
  if (Number.isNaN(value)) return "n/a";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(3);
}

export function printTable(rows: Row[]): void {
  const cells = rows.map((row) => {
    const verdict = passes(row);
    return [
      row.scenario,
      row.metric,
      `${format(row.value)} ${row.unit}`,
      row.target ? `${row.target.op} ${row.target.value}` : "",
      verdict === undefined ? "" : verdict ? "PASS" : "MISS",
      row.detail ?? "",
    ];
  });
  const header = ["scenario", "metric", "value", "target", "", "detail"];
  const widths = header.map((title, i) => Math.max(title.length, ...cells.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd();
  console.log(line(header));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const row of cells) console.log(line(row));
}

export async function writeResults(path: string, rows: Row[], meta: Record<string, unknown>): Promise<void> {
  const results = rows.map((row) => ({ ...row, pass: passes(row) }));
  await Deno.writeTextFile(path, JSON.stringify({ ...meta, results }, null, 2) + "\n");
}
