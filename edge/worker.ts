import type { Hono } from "hono";
import { AppError } from "../core/errors";
import { errorMessage } from "../core/http/db-errors";
import { problemResponse, toProblem } from "../core/http/problem";
import { createLogger, type Logger } from "../core/logger";
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

let startupLogger: Logger | undefined;
let lastStartupError: string | undefined;

/**
 * Sin app (configuración inválida): 503 problem+json sin detalles, no la excepción, que Cloudflare
 * convierte en su página 1101 en HTML. El motivo va al log, una vez por isolate y motivo: cada
 * petición vuelve a intentar el arranque.
 */
function startupFailure(err: unknown): Response {
  const reason = errorMessage(err);
  if (reason !== lastStartupError) {
    lastStartupError = reason;
    startupLogger ??= createLogger({ service: "edge", level: "error" });
    startupLogger.error({ err }, "edge failed to start; check its configuration");
  }
  const unavailable = new AppError("unavailable", "The edge is temporarily unavailable");
  return problemResponse(toProblem(unavailable), { "retry-after": "30" });
}

export default {
  async fetch(request: Request, env: WorkerBindings, ctx: ExecutionContextLike): Promise<Response> {
    let app: Hono<EdgeEnv>;
    try {
      // Desplegado con SST, los secretos son bindings con el nombre del link (sst.config.ts).
      app = await (appPromise ?? appFor(envWithSstLinks(env)));
    } catch (err) {
      return startupFailure(err);
    }
    return app.fetch(request, env, ctx);
  },
};
