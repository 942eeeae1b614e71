import type { Hono } from "hono";
import { createLogger } from "../core/logger";
import { envWithSstLinks } from "../core/sst-links";
import { createNeonDb } from "../db/drivers/neon";
import { createEdgeApp } from "./app";
import { createEdgeDeps } from "./config";
import type { EdgeEnv } from "./env";

interface WorkerBindings {
  DATABASE_URL: string;
  NEON_WSPROXY?: string;
  [key: string]: unknown;
}

type ExecutionContextLike = Parameters<Hono<EdgeEnv>["fetch"]>[2];

let appPromise: Promise<Hono<EdgeEnv>> | undefined;

// Una app por isolate; la base no: workerd no comparte sockets entre peticiones.
function appFor(env: WorkerBindings): Promise<Hono<EdgeEnv>> {
  appPromise ??= (async () => {
    const logger = createLogger({
      service: "edge",
      level: typeof env.LOG_LEVEL === "string" ? env.LOG_LEVEL : "info",
    });
    const deps = await createEdgeDeps(env, logger, async (c, fn) => {
      const handle = createNeonDb({ url: env.DATABASE_URL, wsProxy: env.NEON_WSPROXY, max: 4 });
      try {
        return await fn(handle.db);
      } finally {
        c.executionCtx.waitUntil(handle.close());
      }
    });
    return createEdgeApp(deps);
  })();
  appPromise.catch(() => {
    appPromise = undefined;
  });
  return appPromise;
}

export default {
  async fetch(request: Request, env: WorkerBindings, ctx: ExecutionContextLike): Promise<Response> {
    // Desplegado con SST, los secretos son bindings con el nombre del link (sst.config.ts).
    const app = await (appPromise ?? appFor(envWithSstLinks(env)));
    return app.fetch(request, env, ctx);
  },
};
