import { Hono } from "hono";

// Techo de bench:edge: un worker hono desnudo en el mismo workerd, que devuelve cuerpos JSON del
// mismo tamaño que el edge (recibidos por vars), sin token, cache ni base.
interface Bindings {
  ENTITLEMENTS_BODY: string;
  OFREP_BODY: string;
}

let bodies: { entitlements: unknown; ofrep: unknown } | undefined;
const app = new Hono<{ Bindings: Bindings }>();
app.use("*", async (c, next) => {
  bodies ??= {
    entitlements: JSON.parse(c.env.ENTITLEMENTS_BODY),
    ofrep: JSON.parse(c.env.OFREP_BODY),
  };
  await next();
});
app.get("/v1/entitlements", (c) => c.json(bodies?.entitlements ?? {}));
// Lee el cuerpo como el edge: sin eso workerd corta la conexión keep-alive.
app.post("/ofrep/v1/evaluate/flags", async (c) => {
  await c.req.text();
  return c.json(bodies?.ofrep ?? {});
});

// biome-ignore lint/style/noDefaultExport: wrangler carga el worker por su export default.
export default app;
