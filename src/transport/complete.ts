/**
 * Responses whose whole body is already in memory. The proxy can hand such a response to the client as it is,
 * with its upstream call already over, instead of reading the body and building a new response.
 */

const complete = new WeakSet<Response>();

export function markComplete(response: Response): Response {
  complete.add(response);
  return response;
}

/** True when the response's body (if any) is in memory and its upstream connection is released. */
export function isComplete(response: Response): boolean {
  return complete.has(response);
}
