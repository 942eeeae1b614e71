import {
  type BackgroundScope,
  createFarutechClient,
  type FarutechClient,
  FarutechError,
} from "../index";

// Sonda para sdk.test.ts: prueba que el SDK corre en workerd. No es código de producto.

interface Env {
  EDGE_URL: string;
  CLIENT_ID: string;
  CLIENT_SECRET: string;
  INSTANCE_ID: string;
  MAX_AGE_MS?: string;
  TIMEOUT_MS?: string;
}

// En el ámbito del módulo: token y snapshot sobreviven entre peticiones del isolate.
let client: FarutechClient | undefined;

// biome-ignore lint/style/noDefaultExport: workerd carga el export default del módulo.
export default {
  async fetch(request: Request, env: Env, ctx: BackgroundScope): Promise<Response> {
    const url = new URL(request.url);
    client ??= createFarutechClient({
      edgeUrl: env.EDGE_URL,
      clientId: env.CLIENT_ID,
      clientSecret: env.CLIENT_SECRET,
      instanceId: env.INSTANCE_ID,
      maxAgeMs: env.MAX_AGE_MS ? Number(env.MAX_AGE_MS) : undefined,
      timeoutMs: env.TIMEOUT_MS ? Number(env.TIMEOUT_MS) : undefined,
    });
    if (url.pathname === "/peek") {
      // Con ?ctx la revalidación va a ctx.waitUntil; sin él muere con la petición.
      const snapshot = client.peek(url.searchParams.has("ctx") ? ctx : undefined);
      return Response.json({ version: snapshot?.source === "edge" ? snapshot.version : null });
    }
    if (url.pathname === "/gate") {
      // El patrón del README (sección Cloudflare Workers), tal cual.
      const snapshot = client.peek(ctx);
      const feature = url.searchParams.get("feature") ?? "";
      const enabled = snapshot
        ? snapshot.features[feature] === true
        : await client.isEnabled(feature);
      if (!enabled) return new Response("No incluido", { status: 403 });
      return new Response("ok");
    }
    if (url.pathname === "/snapshot") {
      const snapshot = await client.snapshot();
      return Response.json({ version: snapshot.source === "edge" ? snapshot.version : null });
    }
    try {
      const feature = url.searchParams.get("feature") ?? "";
      const limit = url.searchParams.get("limit") ?? "";
      return Response.json({
        enabled: await client.isEnabled(feature),
        limit: (await client.limit(limit)) ?? null,
        snapshot: await client.snapshot(),
      });
    } catch (err) {
      if (!(err instanceof FarutechError)) throw err;
      return Response.json(
        { error: err.name, code: err.code, status: err.status ?? null },
        { status: 500 },
      );
    }
  },
};
