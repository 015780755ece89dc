/**
 * Writes a small llama-architecture GGUF model with random weights: real llama.cpp inference (the prompt is
 * read through every layer, its KV cache kept per slot) without downloading a model. Its answers are noise; its
 * prompt-evaluation cost is that of a real transformer of this size. The vocabulary is the 256 byte tokens of a
 * SentencePiece model with byte fallback, so every byte of text is one token.
 */

export interface TinyModelShape {
  embedding: number;
  layers: number;
  heads: number;
  feedForward: number;
  context: number;
}

export const TINY_MODEL: TinyModelShape = {
  embedding: 384,
  layers: 6,
  heads: 6,
  feedForward: 1024,
  context: 4096,
};

const enum Kind {
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
}

const ALIGNMENT = 32;

class Writer {
  readonly parts: Uint8Array[] = [];
  size = 0;

  bytes(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.length;
  }
  u32(value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value, true);
    this.bytes(bytes);
  }
  u64(value: number): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
    this.bytes(bytes);
  }
  f32(value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.bytes(bytes);
  }
  string(text: string): void {
    const bytes = new TextEncoder().encode(text);
    this.u64(bytes.length);
    this.bytes(bytes);
  }
  pad(): void {
    const extra = (ALIGNMENT - (this.size % ALIGNMENT)) % ALIGNMENT;
    if (extra) this.bytes(new Uint8Array(extra));
  }
}

type Value =
  | { kind: Kind.U32 | Kind.I32 | Kind.F32; value: number }
  | { kind: Kind.Bool; value: boolean }
  | { kind: Kind.String; value: string }
  | { kind: Kind.Array; of: Kind.String; values: string[] }
  | { kind: Kind.Array; of: Kind.F32 | Kind.I32; values: number[] };

function writeScalar(writer: Writer, kind: Kind, value: number | string | boolean): void {
  if (kind === Kind.Bool) writer.bytes(new Uint8Array([value ? 1 : 0]));
  else if (kind === Kind.String) writer.string(value as string);
  else if (kind === Kind.F32) writer.f32(value as number);
  else if (kind === Kind.I32) writer.u32((value as number) >>> 0);
  else writer.u32(value as number);
}

/** Writes the model to `path` and returns its size in bytes. */
export async function writeTinyModel(
  path: string,
  shape: TinyModelShape = TINY_MODEL,
  seed = 1,
): Promise<number> {
  const tokens = ["<unk>", "<s>", "</s>"];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`);
  }
  const vocab = tokens.length;
  const u32 = (value: number): Value => ({ kind: Kind.U32, value });
  const metadata: [string, Value][] = [
    ["general.architecture", { kind: Kind.String, value: "llama" }],
    ["general.name", { kind: Kind.String, value: "bridge-bench-tiny" }],
    ["general.file_type", u32(0)],
    ["llama.context_length", u32(shape.context)],
    ["llama.embedding_length", u32(shape.embedding)],
    ["llama.block_count", u32(shape.layers)],
    ["llama.feed_forward_length", u32(shape.feedForward)],
    ["llama.attention.head_count", u32(shape.heads)],
    ["llama.attention.head_count_kv", u32(shape.heads)],
    ["llama.rope.dimension_count", u32(shape.embedding / shape.heads)],
    ["llama.attention.layer_norm_rms_epsilon", { kind: Kind.F32, value: 1e-5 }],
    ["tokenizer.ggml.model", { kind: Kind.String, value: "llama" }],
    ["tokenizer.ggml.tokens", { kind: Kind.Array, of: Kind.String, values: tokens }],
    ["tokenizer.ggml.scores", { kind: Kind.Array, of: Kind.F32, values: tokens.map(() => 0) }],
    ["tokenizer.ggml.token_type", {
      kind: Kind.Array,
      of: Kind.I32,
      values: tokens.map((_, i) => i < 3 ? (i ? 3 : 2) : 6),
    }],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ["tokenizer.ggml.add_bos_token", { kind: Kind.Bool, value: true }],
  ];
  const { embedding: e, feedForward: f } = shape;
  const tensors: [string, number[]][] = [["token_embd.weight", [e, vocab]]];
  for (let layer = 0; layer < shape.layers; layer++) {
    const name = (part: string) => `blk.${layer}.${part}.weight`;
    tensors.push(
      [name("attn_norm"), [e]],
      [name("attn_q"), [e, e]],
      [name("attn_k"), [e, e]],
      [name("attn_v"), [e, e]],
      [name("attn_output"), [e, e]],
      [name("ffn_norm"), [e]],
      [name("ffn_gate"), [e, f]],
      [name("ffn_up"), [e, f]],
      [name("ffn_down"), [f, e]],
    );
  }
  tensors.push(["output_norm.weight", [e]], ["output.weight", [e, vocab]]);

  const head = new Writer();
  head.u32(0x46554747); // "GGUF"
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, value] of metadata) {
    head.string(key);
    head.u32(value.kind);
    if (value.kind === Kind.Array) {
      head.u32(value.of);
      head.u64(value.values.length);
      for (const item of value.values) writeScalar(head, value.of, item);
    } else writeScalar(head, value.kind, value.value);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const [name, dims] of tensors) {
    head.string(name);
    head.u32(dims.length);
    for (const dim of dims) head.u64(dim);
    head.u32(0); // F32
    head.u64(offset);
    const bytes = dims.reduce((a, b) => a * b, 4);
    sizes.push(bytes);
    offset += Math.ceil(bytes / ALIGNMENT) * ALIGNMENT;
  }
  head.pad();

  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (const part of head.parts) await file.write(part);
    let state = seed >>> 0;
    const random = () => {
      // xorshift32: repeatable weights without a dependency.
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 4294967296;
    };
    for (const [index, [name, dims]] of tensors.entries()) {
      const values = new Float32Array(sizes[index] / 4);
      const isNorm = name.includes("norm");
      const scale = isNorm ? 0 : 1 / Math.sqrt(dims[0]);
      for (let i = 0; i < values.length; i++) values[i] = isNorm ? 1 : (random() * 2 - 1) * scale;
      await writeAll(file, new Uint8Array(values.buffer));
      const padding = Math.ceil(sizes[index] / ALIGNMENT) * ALIGNMENT - sizes[index];
      if (padding) await writeAll(file, new Uint8Array(padding));
    }
    return head.size + offset;
  } finally {
    file.close();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written));
}
