import { Hono } from "hono";
import { installBase } from "../core/http/base";
import type { EdgeDeps, EdgeEnv } from "./env";
import { registerEntitlements } from "./routes/entitlements";
import { registerOAuthRevoke } from "./routes/oauth-revoke";
import { registerOAuthToken } from "./routes/oauth-token";
import { registerOfrep } from "./routes/ofrep";
import { registerWellKnown } from "./routes/well-known";

// App hono portable: la misma corre en workerd (Cloudflare) y en Node (npm start).
export function createEdgeApp(deps: EdgeDeps): Hono<EdgeEnv> {
  const app = new Hono<EdgeEnv>();
  installBase(app, deps);
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  registerOAuthToken(app);
  registerOAuthRevoke(app);
  registerWellKnown(app);
  registerEntitlements(app);
  registerOfrep(app);
  return app;
}
