/**
 * Responses whose whole body is already in memory. The proxy can hand such a response to the client as it is,
 * with its upstream call already over, instead of reading the body and building a new response.
 */

const completeSizes = new WeakMap<Response, number>();

export function markComplete(response: Response, size: number): Response {
  completeSizes.set(response, size);
  return response;
}

/** The body size of a response whose body (if any) is in memory, or undefined for one still arriving. */
export function completeBodySize(response: Response): number | undefined {
  return completeSizes.get(response);
}
