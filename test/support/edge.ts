import { fileURLToPath } from "node:url";
import { type Unstable_DevWorker, unstable_dev } from "wrangler";
import { silentLogger } from "../../core/logger";
import type { Database } from "../../db/types";
import { createNodeEdgeApp } from "../../edge/node";

export type EdgeFetch = (path: string, init?: RequestInit) => Promise<Response>;

export interface EdgeTarget {
  fetch: EdgeFetch;
  stop(): Promise<void>;
}

/** El edge en Node, en proceso, sobre la base dada (modo embebido). */
export async function startNodeEdge(
  env: Record<string, string>,
  db: Database,
): Promise<EdgeTarget> {
  const app = await createNodeEdgeApp(env, db, silentLogger);
  return { fetch: async (path, init) => app.request(path, init), stop: async () => {} };
}

/**
 * El edge dentro de workerd (wrangler unstable_dev). `env` necesita DATABASE_URL y NEON_WSPROXY:
 * llega a Postgres por WebSocket a través del proxy wsproxy, como llegaría a Neon.
 */
export async function startWorkerdEdge(env: Record<string, string>): Promise<EdgeTarget> {
  const worker: Unstable_DevWorker = await unstable_dev(
    fileURLToPath(new URL("../../edge/worker.ts", import.meta.url)),
    {
      config: fileURLToPath(new URL("../../edge/wrangler.toml", import.meta.url)),
      vars: env,
      ip: "127.0.0.1",
      persist: false,
      logLevel: "error",
      experimental: { disableExperimentalWarning: true, testMode: true },
    },
  );
  return {
    fetch: (path, init) =>
      worker.fetch(
        path,
        init as Parameters<Unstable_DevWorker["fetch"]>[1],
      ) as unknown as Promise<Response>,
    stop: () => worker.stop(),
  };
}

/** POST form-encoded, como piden /oauth/token y /oauth/revoke. */
export function formPost(values: Record<string, string>, headers: Record<string, string> = {}) {
  return {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(values).toString(),
  };
}
