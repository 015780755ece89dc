/**
 * Reads a V8 CPU profile (`deno run --cpu-prof`): which function of our own code took the most self time, as
 * a share of the samples in which the process was busy (idle samples left out, which makes shares larger).
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface TopFunction {
  /** `name file:line`, the file relative to the project. */
  readonly name: string;
  /** Its self time ÷ the busy samples' time. */
  readonly share: number;
}

const IDLE = new Set(["(idle)", "(root)"]);

/** The function under `ownDir` (a file URL prefix) with the most self time in the profile at `path`. */
export async function topOwnFunction(path: string, ownDir: string): Promise<TopFunction> {
  const profile: CpuProfile = JSON.parse(await Deno.readTextFile(path));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfTime = new Map<number, number>();
  let busy = 0;
  for (let i = 0; i < profile.samples.length - 1; i++) {
    const node = nodes.get(profile.samples[i])!;
    const time = profile.timeDeltas[i + 1];
    if (IDLE.has(node.callFrame.functionName)) continue;
    busy += time;
    selfTime.set(node.id, (selfTime.get(node.id) ?? 0) + time);
  }
  const byFunction = new Map<string, number>();
  for (const [id, time] of selfTime) {
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (!url.startsWith(ownDir)) continue;
    const name = `${functionName || "(anonymous)"} ${url.slice(ownDir.length)}:${lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + time);
  }
  const [name, time] = [...byFunction].sort((a, b) => b[1] - a[1])[0] ?? ["(none)", 0];
  return { name, share: busy ? time / busy : 0 };
}
