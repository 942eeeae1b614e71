import { Hono } from "hono";
import { problemErrorHandler, problemNotFound } from "../core/http/problem";
import { requestContext } from "../core/http/request-context";
import type { EdgeDeps, EdgeEnv } from "./env";
import { registerEntitlements } from "./routes/entitlements";
import { registerOAuthToken } from "./routes/oauth-token";
import { registerWellKnown } from "./routes/well-known";

// App hono portable: la misma corre en workerd (Cloudflare) y en Node (npm start).
export function createEdgeApp(deps: EdgeDeps): Hono<EdgeEnv> {
  const app = new Hono<EdgeEnv>();
  app.onError(problemErrorHandler());
  app.notFound(problemNotFound());
  app.use("*", requestContext(deps.logger));
  app.use("*", async (c, next) => {
    c.set("deps", deps);
    await next();
  });
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  registerOAuthToken(app);
  registerWellKnown(app);
  registerEntitlements(app);
  return app;
}
