/**
 * Whether a plugin script is *bounded*: every call of its hooks ends after a number of steps fixed by the
 * script's length, whatever the request. Such a script cannot hang or grow without end, so the bridge may run it
 * in its own process (a hook call then costs tens of µs instead of a round trip to a Lua process); any other
 * script runs in sandboxed processes that are killed at their limits (pool.ts).
 *
 * A script is bounded when its text, read as Lua tokens, has:
 * - no loop or jump: no `while`, `for`, `repeat`, `goto` or label;
 * - no method call (`s:rep(…)`) and no call of a computed function (`t[k](…)`, `f()(…)`);
 * - no call but of the built-ins below, all of which take time in proportion to their arguments: so no call of
 *   the script's own functions (no recursion), no `setmetatable` (no metamethods), no `load`, `require`,
 *   `pcall` or `string.rep`;
 * - the built-ins' names used only to call them: never a `local print`, a parameter named `string`, an
 *   assignment `string.lower = f`, an alias `local s = string`, nor `_G` or `_ENV` (each would let a "built-in"
 *   call run the script's own function, and a tail call loop forever).
 * Each statement of a hook then runs at most once per call, and each step is linear in the data it is given.
 * The check is on tokens, not a parse: it may call a bounded script unbounded (it then runs in a process), never
 * the reverse. The count-hook deadline of the state stays in place as well.
 */

/** The functions a bounded script may call: each ends after steps linear in its arguments. */
const BOUNDED_CALLS = new Set([
  "assert",
  "error",
  "print",
  "rawequal",
  "rawget",
  "rawlen",
  "select",
  "tonumber",
  "tostring",
  "type",
  "string.byte",
  "string.char",
  "string.len",
  "string.lower",
  "string.sub",
  "string.upper",
  "table.insert",
  "table.remove",
  "math.abs",
  "math.ceil",
  "math.floor",
  "math.max",
  "math.min",
  "math.tointeger",
  "math.type",
  "os.clock",
  "os.date",
  "os.time",
  "cjson.decode",
  "cjson.encode",
]);

/** Names a bounded script may use only to call the built-ins above: never rebind, alias or change them. */
const ROOTS = new Set([...BOUNDED_CALLS].map((name) => name.split(".")[0]));
const LIBRARIES = new Set(
  [...BOUNDED_CALLS].filter((name) => name.includes(".")).map((name) => name.split(".")[0]),
);

const LOOPS_AND_JUMPS = new Set(["while", "for", "repeat", "until", "goto", "::"]);
const KEYWORDS = new Set([
  "and",
  "break",
  "do",
  "else",
  "elseif",
  "end",
  "false",
  "for",
  "function",
  "goto",
  "if",
  "in",
  "local",
  "nil",
  "not",
  "or",
  "repeat",
  "return",
  "then",
  "true",
  "until",
  "while",
]);

export type Verdict = { bounded: true } | { bounded: false; reason: string };

interface Token {
  kind: "name" | "string" | "number" | "symbol";
  text: string;
  line: number;
}

export function boundedScript(source: string): Verdict {
  let tokens: Token[];
  try {
    tokens = tokenize(source);
  } catch (error) {
    return { bounded: false, reason: (error as Error).message };
  }
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    const at = `line ${token.line}`;
    if ((token.kind === "name" || token.kind === "symbol") && LOOPS_AND_JUMPS.has(token.text)) {
      return { bounded: false, reason: `${at}: '${token.text}'` };
    }
    if (token.kind === "symbol" && token.text === ":") {
      return { bounded: false, reason: `${at}: a method call` };
    }
    const misuse = token.kind === "name" && tokens[i - 1]?.text !== "." && builtInMisused(tokens, i);
    if (misuse) return { bounded: false, reason: `${at}: ${misuse}` };
    const opensCall = (token.kind === "symbol" && (token.text === "(" || token.text === "{")) ||
      token.kind === "string";
    if (!opensCall || i === 0) continue;
    const before = tokens[i - 1];
    if (before.kind === "symbol" && (before.text === ")" || before.text === "]")) {
      return { bounded: false, reason: `${at}: a call of a computed function` };
    }
    if (before.kind !== "name" || KEYWORDS.has(before.text)) continue; // `return (`, `= {`, `function (`
    const callee = calleeName(tokens, i - 1);
    if (callee.definition) continue; // `function name(`
    if (!BOUNDED_CALLS.has(callee.name)) {
      return { bounded: false, reason: `${at}: a call of '${callee.name}'` };
    }
  }
  return { bounded: true };
}

/** What is wrong with the use of a built-in's name (or `_G`, `_ENV`) at `i`, if anything. */
function builtInMisused(tokens: Token[], i: number): string | undefined {
  const name = tokens[i].text;
  if (name === "_G" || name === "_ENV") return `'${name}'`;
  if (!ROOTS.has(name)) return undefined;
  const opensCall = (token?: Token) =>
    token?.kind === "string" || (token?.kind === "symbol" && (token.text === "(" || token.text === "{"));
  const called = LIBRARIES.has(name)
    ? tokens[i + 1]?.text === "." && tokens[i + 2]?.kind === "name" && opensCall(tokens[i + 3])
    : opensCall(tokens[i + 1]);
  const definition = tokens[i - 1]?.text === "function";
  return called && !definition ? undefined : `'${name}' used other than to call a built-in`;
}

/** The dotted name that ends at `end` (`string.lower`), and whether it is being defined (`function a.b(`). */
function calleeName(tokens: Token[], end: number): { name: string; definition: boolean } {
  let start = end;
  while (start >= 2 && tokens[start - 1].text === "." && tokens[start - 2].kind === "name") start -= 2;
  const name = tokens.slice(start, end + 1).map((token) => token.text).join("");
  const before = tokens[start - 1];
  // `t[1].f(` or `g().f(`: the chain hangs off a computed value. (A `)` or `]` right before the name ends the
  // previous statement instead: `f(r) print("x")`.)
  const computed = before?.text === ".";
  return {
    name: computed ? `(computed).${name}` : name,
    definition: before?.kind === "name" && before.text === "function",
  };
}

/** Lua 5.3 tokens, without comments; strings and long strings are one token each. */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  const longBracket = (at: number): number => { // the level of `[==[` at `at`, or -1
    const match = /^\[(=*)\[/.exec(source.slice(at, at + 64));
    return match ? match[1].length : -1;
  };
  const skipLong = (at: number, level: number): number => {
    const close = `]${"=".repeat(level)}]`;
    const end = source.indexOf(close, at);
    if (end < 0) throw new Error(`line ${line}: an unfinished long string or comment`);
    line += countLines(source.slice(at, end));
    return end + close.length;
  };
  while (i < source.length) {
    const c = source[i];
    if (c === "\n") {
      line++;
      i++;
    } else if (/\s/.test(c)) i++;
    else if (source.startsWith("--", i)) {
      const level = longBracket(i + 2);
      if (level >= 0) i = skipLong(i + 4 + level, level);
      else while (i < source.length && source[i] !== "\n") i++;
    } else if (c === "[" && longBracket(i) >= 0) {
      const level = longBracket(i);
      tokens.push({ kind: "string", text: "[[…]]", line });
      i = skipLong(i + 2 + level, level);
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) {
        if (source[j] === "\\") j++;
        if (source[j] === "\n") line++;
        j++;
      }
      if (j >= source.length) throw new Error(`line ${line}: an unfinished string`);
      tokens.push({ kind: "string", text: source.slice(i, j + 1), line });
      i = j + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i, i + 256))!;
      tokens.push({ kind: "name", text: match[0], line });
      i += match[0].length;
    } else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(source[i + 1] ?? ""))) {
      const match = /^(0[xX][0-9a-fA-F.]*([pP][+-]?\d+)?|[0-9.]*([eE][+-]?\d+)?)/.exec(
        source.slice(i, i + 256),
      )!;
      tokens.push({ kind: "number", text: match[0], line });
      i += Math.max(1, match[0].length);
    } else {
      const symbol = ["...", "..", "::", "==", "~=", "<=", ">=", "//", "<<", ">>"].find((s) =>
        source.startsWith(s, i)
      ) ??
        c;
      tokens.push({ kind: "symbol", text: symbol, line });
      i += symbol.length;
    }
  }
  return tokens;
}

function countLines(text: string): number {
  let lines = 0;
  for (const c of text) if (c === "\n") lines++;
  return lines;
}
