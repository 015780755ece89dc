/** The frames between the bridge and its Lua processes: bytes stay bytes, empty ones included, across chunks. */
import { encodeFrame, FrameReader, type ToLua } from "../src/plugin/frames.ts";
import { assertEquals } from "./assert.ts";

Deno.test("frames: byte strings (empty ones too) come back as bytes, whatever the chunk boundaries", () => {
  const binary = new Uint8Array([0, 255, 10, 13, 0xc3]);
  const message: ToLua = {
    type: "call",
    id: 7,
    name: "HandleServerRequest",
    argument: { body: binary, empty: new Uint8Array(), nested: [{ text: "é", bytes: binary }] },
    results: 2,
  };
  const frame = encodeFrame(message);
  const reader = new FrameReader();
  const received: ToLua[] = [];
  for (let i = 0; i < frame.length; i += 3) received.push(...reader.push<ToLua>(frame.slice(i, i + 3)));
  assertEquals(received.length, 1);
  assertEquals(received[0], message);
  const only = new FrameReader().push<ToLua>(
    encodeFrame({ ...message, argument: { body: new Uint8Array() } }),
  );
  assertEquals(only[0].type === "call" && only[0].argument, { body: new Uint8Array() });
});
