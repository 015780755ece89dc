/**
 * Responses whose whole body is already in memory. The proxy can look at the bytes (the think filter checks
 * them for tags) and hand such a response to the client as it is, with its upstream call already over, instead
 * of reading the body and building a new response.
 */

const completeBodies = new WeakMap<Response, Uint8Array<ArrayBuffer>>();
const EMPTY = new Uint8Array(0);

export function markComplete(response: Response, body: Uint8Array<ArrayBuffer> | null): Response {
  completeBodies.set(response, body ?? EMPTY);
  return response;
}

/** The body of a response whose body is in memory (empty when it has none), or undefined for one still arriving. */
export function completeBody(response: Response): Uint8Array<ArrayBuffer> | undefined {
  return completeBodies.get(response);
}
