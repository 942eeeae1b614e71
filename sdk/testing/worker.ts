import { createFarutechClient, type FarutechClient, FarutechError } from "../index";

// Sonda para sdk.test.ts: prueba que el SDK corre en workerd. No es código de producto.

interface Env {
  EDGE_URL: string;
  CLIENT_ID: string;
  CLIENT_SECRET: string;
  INSTANCE_ID: string;
}

// En el ámbito del módulo: token y snapshot sobreviven entre peticiones del isolate.
let client: FarutechClient | undefined;

// biome-ignore lint/style/noDefaultExport: workerd carga el export default del módulo.
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    client ??= createFarutechClient({
      edgeUrl: env.EDGE_URL,
      clientId: env.CLIENT_ID,
      clientSecret: env.CLIENT_SECRET,
      instanceId: env.INSTANCE_ID,
    });
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
