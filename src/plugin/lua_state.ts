/**
 * One Lua state running the plugin script (fengari: Lua 5.3 in JavaScript), as the original bridge's API
 * documents it: `HandleServerRequest(request)` and `HandleServerResponse(response)` (DESIGN §10).
 *
 * The state is sandboxed: no `io`, of `os` only `time`, `clock` and `date`, no `dofile`, `loadfile`,
 * `string.dump`, `debug` (but `debug.traceback`), `package.loadlib`, and `load` takes text chunks only.
 * `require` searches only the folders fixed at start (`--luajit-package-path`, then the script's folder):
 * whatever the script does to `package.path` or `package.searchers`. A count hook cuts a call that runs past its
 * deadline where it can (the process around the state is the sure stop: child.ts); `print` goes to the bridge's
 * log; `cjson` is built in, backed by the JavaScript JSON engine. Byte strings cross as bytes: a Lua string that
 * is not valid UTF-8 comes back as a Uint8Array, unchanged.
 */
import fengari from "fengari";
import lobject from "fengari/src/lobject.js";
import lstring from "fengari/src/lstring.js";
import { dirname } from "node:path";

const { lua, lauxlib, lualib } = fengari;
type State = unknown;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** For strings read back from Lua: exact bytes, or an error for those that are not UTF-8 (kept as bytes). */
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const str = (text: string) => encoder.encode(text);

/**
 * Text to and from Lua byte strings, with a fast path for short ASCII (keys, methods, header values): a loop
 * beats a TextEncoder/TextDecoder call at that size, and gives the same bytes.
 */
function keyName(bytes: Uint8Array): string {
  if (bytes.length > 64) return decoder.decode(bytes);
  let name = "";
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 0x7f) return decoder.decode(bytes);
    name += String.fromCharCode(bytes[i]);
  }
  return name;
}

function textBytes(text: string): Uint8Array {
  if (text.length > 64) return encoder.encode(text);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return encoder.encode(text);
    bytes[i] = code;
  }
  return bytes;
}

/**
 * Pushes bytes nobody else holds as a Lua string, without the copy lua_pushstring makes (fengari copies with
 * Uint8Array.from, element by element: the largest cost of a hook call with a body).
 */
function pushOwnedBytes(L: State, bytes: Uint8Array): void {
  lobject.pushsvalue2s(L, lstring.luaS_bless(L, bytes));
}

/** A value crossing between JavaScript and Lua: what hook tables are made of. */
export type LuaValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | LuaValue[]
  | { [key: string]: LuaValue };

export interface LuaStateOptions {
  script: string;
  /** Extra `package.path` entries (`--luajit-package-path`). */
  packagePath?: string;
  /** `--luajit-package-cpath`: accepted, but C modules cannot load in fengari. */
  packageCpath?: string;
  print(line: string): void;
}

/** A failure in the plugin: its message names the script and line where Lua knows them. */
export class LuaError extends Error {}

const REQUIRED = ["HandleServerRequest", "HandleServerResponse"];
/** How many VM instructions run between deadline checks: cheap, and fine-grained enough to stop near it. */
const HOOK_EVERY = 1000;

export class LuaState {
  readonly #L: State;
  #deadline = Infinity;
  /** The light userdata that stands for JSON null in cjson. */
  #null: unknown;
  /** Marks Lua tables that cjson must encode as `[]`. */
  #emptyArrayRef = 0;

  constructor(options: LuaStateOptions) {
    const L = this.#L = lauxlib.luaL_newstate();
    lualib.luaL_openlibs(L);
    this.#sandbox(options);
    this.#installPrint(options.print);
    this.#installCjson();
    lua.lua_sethook(
      L,
      (state: State) => {
        if (performance.now() > this.#deadline) lauxlib.luaL_error(state, str("plugin call timed out"));
      },
      lua.LUA_MASKCOUNT,
      HOOK_EVERY,
    );
    let source: string;
    try {
      source = Deno.readTextFileSync(options.script);
    } catch (error) {
      throw new LuaError(`Cannot read the Lua script ${options.script}: ${(error as Error).message}`);
    }
    if (lauxlib.luaL_loadbuffer(L, str(source), null, str(`@${options.script}`)) !== lua.LUA_OK) {
      throw new LuaError(`Lua syntax error: ${this.#popString()}`);
    }
    this.#deadline = performance.now() + 10_000;
    if (lua.lua_pcall(L, 0, 0, 0) !== lua.LUA_OK) {
      throw new LuaError(`Lua script failed to load: ${this.#popString()}`);
    }
    for (const name of REQUIRED) {
      if (lua.lua_getglobal(L, str(name)) !== lua.LUA_TFUNCTION) {
        lua.lua_settop(L, 0);
        throw new LuaError(`The Lua script ${options.script} does not define the function ${name}.`);
      }
      lua.lua_settop(L, 0);
    }
  }

  /** Calls a global function with one table argument; returns its `results` values. */
  call(name: string, argument: LuaValue, results: number, timeoutMs: number): LuaValue[] {
    const L = this.#L;
    lua.lua_settop(L, 0);
    lua.lua_getglobal(L, textBytes(name));
    this.#push(argument);
    this.#deadline = performance.now() + timeoutMs;
    const status = lua.lua_pcall(L, 1, results, 0);
    this.#deadline = Infinity;
    if (status !== lua.LUA_OK) throw new LuaError(`${name} failed: ${this.#popString()}`);
    const values: LuaValue[] = [];
    // A hook's table carries its `body` back as bytes: no UTF-8 decode, and it crosses to the bridge as is.
    for (let i = 1; i <= results; i++) values.push(this.#read(i, L, 0, true));
    lua.lua_settop(L, 0);
    return values;
  }

  #sandbox(options: LuaStateOptions): void {
    const L = this.#L;
    const run = (code: string) => {
      if (lauxlib.luaL_dostring(L, str(code)) !== lua.LUA_OK) throw new LuaError(this.#popString());
    };
    run(`
      io, dofile, loadfile = nil, nil, nil
      os = { time = os.time, clock = os.clock, date = os.date }
      string.dump = nil
      debug = { traceback = debug.traceback }
      package.loadlib, package.jspath, package.cpath = nil, nil, ""
      local textLoad = load
      load = function(chunk, name, _, env) return textLoad(chunk, name, "t", env) end
    `);
    // require: the folders fixed here, whatever the script does to package.path or package.searchers.
    const folder = dirname(options.script);
    const patterns = [...(options.packagePath ?? "").split(";"), `${folder}/?.lua`, `${folder}/?/init.lua`]
      .filter((pattern) => pattern.includes("?"));
    lua.lua_pushcfunction(L, (state: State) => this.#require(state, patterns));
    lua.lua_setglobal(L, str("require"));
    lua.lua_settop(L, 0);
  }

  /** `require(name)`: a loaded module, a preloaded one (cjson), or a `.lua` file from the fixed folders. */
  #require(L: State, patterns: readonly string[]): number {
    const name = decoder.decode(lauxlib.luaL_checkstring(L, 1));
    lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, str("_LOADED"));
    if (lua.lua_getfield(L, -1, str(name)) !== lua.LUA_TNIL) return 1;
    lua.lua_pop(L, 1);
    const store = () => {
      if (lua.lua_isnil(L, -1)) {
        lua.lua_pop(L, 1);
        lua.lua_pushboolean(L, true);
      }
      lua.lua_pushvalue(L, -1);
      lua.lua_setfield(L, -3, str(name));
      return 1;
    };
    lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, str("_PRELOAD"));
    if (lua.lua_getfield(L, -1, str(name)) === lua.LUA_TFUNCTION) {
      lua.lua_remove(L, -2);
      lua.lua_pushstring(L, str(name));
      lua.lua_call(L, 1, 1);
      return store();
    }
    lua.lua_pop(L, 2);
    if (!/^[\w-]+(\.[\w-]+)*$/.test(name)) {
      return lauxlib.luaL_error(L, str(`module '${name}' not found: not a module name`));
    }
    if (name === "ffi" || name.startsWith("jit")) {
      return lauxlib.luaL_error(
        L,
        str(`module '${name}' not found: fengari (Lua in JavaScript) has no LuaJIT modules`),
      );
    }
    const tried: string[] = [];
    for (const pattern of patterns) {
      const file = pattern.replaceAll("?", name.replaceAll(".", "/"));
      let source: string;
      try {
        source = Deno.readTextFileSync(file);
      } catch {
        tried.push(file);
        continue;
      }
      if (lauxlib.luaL_loadbufferx(L, str(source), null, str(`@${file}`), str("t")) !== lua.LUA_OK) {
        return lua.lua_error(L);
      }
      lua.lua_pushstring(L, str(name));
      lua.lua_call(L, 1, 1);
      return store();
    }
    return lauxlib.luaL_error(
      L,
      str(
        `module '${name}' not found (searched: ${tried.join(", ")}); native C modules cannot load in fengari`,
      ),
    );
  }

  #installPrint(print: (line: string) => void): void {
    const L = this.#L;
    lua.lua_pushcfunction(L, (state: State) => {
      const parts: string[] = [];
      // luaL_tolstring pushes its result: count the arguments once, before it grows the stack.
      const count = lua.lua_gettop(state);
      for (let i = 1; i <= count; i++) parts.push(decoder.decode(lauxlib.luaL_tolstring(state, i)));
      print(parts.join("\t"));
      return 0;
    });
    lua.lua_setglobal(L, str("print"));
  }

  #installCjson(): void {
    const L = this.#L;
    lua.lua_pushlightuserdata(L, this);
    this.#null = lua.lua_touserdata(L, -1);
    lua.lua_pop(L, 1);
    lua.lua_getglobal(L, str("package"));
    lua.lua_getfield(L, -1, str("preload"));
    lua.lua_pushcfunction(L, (state: State) => {
      lua.lua_createtable(state, 0, 4);
      lua.lua_pushcfunction(state, (s: State) => {
        lua.lua_pushstring(s, str(JSON.stringify(this.#read(1, s) ?? null)));
        return 1;
      });
      lua.lua_setfield(state, -2, str("encode"));
      lua.lua_pushcfunction(state, (s: State) => {
        const text = decoder.decode(lauxlib.luaL_checkstring(s, 1));
        let value: LuaValue;
        try {
          value = JSON.parse(text);
        } catch (error) {
          return lauxlib.luaL_error(s, str(`cjson.decode: ${(error as Error).message}`));
        }
        this.#push(value, s);
        return 1;
      });
      lua.lua_setfield(state, -2, str("decode"));
      lua.lua_pushlightuserdata(state, this);
      lua.lua_setfield(state, -2, str("null"));
      lua.lua_createtable(state, 0, 0);
      this.#emptyArrayRef = lauxlib.luaL_ref(state, lua.LUA_REGISTRYINDEX);
      lua.lua_rawgeti(state, lua.LUA_REGISTRYINDEX, this.#emptyArrayRef);
      lua.lua_setfield(state, -2, str("empty_array"));
      return 1;
    });
    lua.lua_setfield(L, -2, str("cjson"));
    lua.lua_settop(L, 0);
  }

  /** Pushes a JavaScript value as Lua: objects and arrays become tables, null becomes nil. */
  #push(value: LuaValue | undefined, L: State = this.#L): void {
    if (value === null || value === undefined) lua.lua_pushnil(L);
    else if (typeof value === "boolean") lua.lua_pushboolean(L, value);
    else if (typeof value === "number") {
      if (Number.isInteger(value) && Math.abs(value) < 2 ** 31) lua.lua_pushinteger(L, value);
      else lua.lua_pushnumber(L, value);
    } else if (typeof value === "string") pushOwnedBytes(L, textBytes(value));
    else if (value instanceof Uint8Array) pushOwnedBytes(L, value.slice());
    else if (Array.isArray(value)) {
      lua.lua_createtable(L, value.length, 0);
      value.forEach((item, i) => {
        this.#push(item, L);
        lua.lua_rawseti(L, -2, i + 1);
      });
    } else {
      const entries = Object.entries(value);
      lua.lua_createtable(L, 0, entries.length);
      for (const [key, item] of entries) {
        this.#push(item, L);
        lua.lua_setfield(L, -2, textBytes(key));
      }
    }
  }

  /** Reads a Lua value as JavaScript: tables with keys 1..n become arrays, other tables objects. */
  #read(index: number, L: State = this.#L, depth = 0, bodyAsBytes = false): LuaValue {
    if (depth > 64) throw new LuaError("Table nested too deep to convert");
    switch (lua.lua_type(L, index)) {
      case lua.LUA_TBOOLEAN:
        return lua.lua_toboolean(L, index);
      case lua.LUA_TNUMBER:
        return lua.lua_tonumber(L, index);
      case lua.LUA_TSTRING: {
        const bytes: Uint8Array = lua.lua_tostring(L, index);
        try {
          return strictDecoder.decode(bytes);
        } catch {
          return Uint8Array.from(bytes); // not UTF-8: the bytes themselves
        }
      }
      case lua.LUA_TTABLE:
        return this.#readTable(lua.lua_absindex(L, index), L, depth, bodyAsBytes);
      default:
        return null; // nil, cjson.null, functions: nothing JSON can carry
    }
  }

  #readTable(index: number, L: State, depth: number, bodyAsBytes = false): LuaValue {
    if (this.#emptyArrayRef) {
      lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, this.#emptyArrayRef);
      const isEmptyArray = lua.lua_rawequal(L, -1, index);
      lua.lua_pop(L, 1);
      if (isEmptyArray) return [];
    }
    const object: Record<string, LuaValue> = {};
    const array: LuaValue[] = [];
    let arrayLike = true;
    let count = 0;
    lua.lua_pushnil(L);
    while (lua.lua_next(L, index) !== 0) {
      count++;
      if (lua.lua_type(L, -2) === lua.LUA_TNUMBER && lua.lua_isinteger(L, -2)) {
        const key = lua.lua_tointeger(L, -2);
        const value = this.#read(-1, L, depth + 1);
        array[key - 1] = value;
        object[String(key)] = value;
        if (key < 1) arrayLike = false;
      } else {
        arrayLike = false;
        // lua_tostring would turn a number key on the stack into a string and confuse lua_next: copy it first.
        lua.lua_pushvalue(L, -2);
        const key = keyName(lua.lua_tostring(L, -1));
        lua.lua_pop(L, 1);
        object[key] = bodyAsBytes && key === "body" && lua.lua_type(L, -1) === lua.LUA_TSTRING
          ? lua.lua_tostring(L, -1).slice()
          : this.#read(-1, L, depth + 1);
      }
      lua.lua_pop(L, 1);
    }
    if (count > 0 && arrayLike && array.length === count) return array;
    return object;
  }

  #popString(): string {
    const value = lua.lua_tostring(this.#L, -1);
    lua.lua_settop(this.#L, 0);
    return value ? decoder.decode(value) : "unknown error";
  }
}
