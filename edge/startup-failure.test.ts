import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../core/auth/keys";
import { bundleEdge, EDGE_COMPATIBILITY_DATE, type WorkerBundle } from "../test/support/edge";

// Un edge mal configurado (aquí, una clave de firma rota) no arranca. Dentro de workerd la
// excepción salía del handler en cada petición: Cloudflare responde su página 1101 en HTML y el SDK
// de las apps no la reconoce. Debe ser un 503 problem+json que no cuenta la configuración.
let bundle: WorkerBundle;

beforeAll(() => {
  bundle = bundleEdge();
}, 120_000);

afterAll(() => bundle?.remove());

describe("edge that cannot start", () => {
  it("answers 503 problem+json without details, and keeps answering", async () => {
    const broken = { ...(await generateSigningKey("broken")), x: "AAAA" };
    const mf = new Miniflare({
      modules: true,
      scriptPath: bundle.script,
      modulesRoot: bundle.dir,
      compatibilityDate: EDGE_COMPATIBILITY_DATE,
      bindings: {
        DATABASE_URL: "postgres://edge@127.0.0.1:1/none",
        AUTH_SIGNING_KEYS: JSON.stringify([broken]),
        AUTH_ISSUER: "http://edge.test",
        LOG_LEVEL: "silent",
      },
      host: "127.0.0.1",
    });
    try {
      for (const path of ["/.well-known/jwks.json", "/v1/entitlements?instanceId=x"]) {
        const res = await mf.dispatchFetch(`http://edge.test${path}`);
        expect(res.status).toBe(503);
        expect(res.headers.get("content-type")).toContain("application/problem+json");
        expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
        const text = await res.text();
        const body = JSON.parse(text) as Record<string, unknown>;
        expect(body).toMatchObject({ status: 503, code: "unavailable" });
        expect(text).not.toMatch(/AUTH_SIGNING_KEYS|broken|ConfigError|at /);
      }
    } finally {
      await mf.dispose();
    }
  }, 60_000);
});
