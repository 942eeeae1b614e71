import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context, Hono } from "hono";
import type { Logger } from "../core/logger";
import type { Database } from "../db/types";
import { createEdgeApp } from "./app";
import { createEdgeDeps } from "./config";
import type { EdgeEnv } from "./env";

/** El edge en Node (modo embebido): comparte la base del proceso. */
export async function createNodeEdgeApp(
  rawEnv: Record<string, unknown>,
  db: Database,
  logger: Logger,
): Promise<Hono<EdgeEnv>> {
  const deps = await createEdgeDeps(rawEnv, logger, (_c, fn) => fn(db));
  return createEdgeApp({ ...deps, clientAddress: socketAddress });
}

/** Dirección del socket; sin socket (app.request en proceso) no hay y vale la cabecera. */
function socketAddress(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined;
  }
}
