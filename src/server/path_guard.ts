/**
 * The first guard of every request: its path as the client sent it, checked and normalized (core/request_path.ts)
 * before anything routes on it. A refused path is a 400 whatever it would have reached.
 */
import type { MiddlewareHandler } from "hono";
import { normalizePath, rawPathOf } from "../core/request_path.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** The request's normalized path. */
    path: string;
  }
}

export const pathGuard: MiddlewareHandler = async function pathGuard(c, next) {
  c.set("path", normalizePath(rawPathOf(c.req.url)));
  await next();
};
