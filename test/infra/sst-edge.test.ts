import { eq } from "drizzle-orm";
import type { BuildOptions } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { type RunningWsProxy, startWsProxy } from "../../infra/wsproxy/wsproxy";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import {
  bundleWorkerAsSst,
  type EdgeTestSigning,
  edgeTestSigning,
  SST_WORKER_CONDITIONS,
} from "../support/edge";
import { expectProblem } from "../support/http";
import { installSstStandIns, type Recorded, unwrap } from "./sst-standins";

// El edge tal como lo publica `sst deploy`, no como lo empaqueta wrangler: SST lo empaqueta él
// mismo (esbuild, opciones de Node más el `build.esbuild` de sst.config.ts), lo envuelve con su
// SDK y lo sube con la fecha y los flags del transform. Aquí se reproduce ese empaquetado (SST no
// corre sin red; su envoltorio es un doble fiel, ver test/support/edge.ts) y el bundle corre en
// workerd con esa compatibilidad, con los links como los pasa SST, contra Postgres por wsproxy.

let edgeArgs: Record<string, unknown>;
let secretNames: Map<object, string>;
let compatibility: { compatibilityDate: string; compatibilityFlags: string[] };
let db: TestDatabase;
let proxy: RunningWsProxy;
let signing: EdgeTestSigning;
let instanceId: string;

beforeAll(async () => {
  const standIns = await installSstStandIns();
  let calls: Recorded[];
  try {
    ({ calls } = await standIns.run("production"));
  } finally {
    standIns.restore();
  }
  const edge = calls.find((c) => c.type === "sst:cloudflare:Worker" && c.name === "Edge");
  if (!edge) throw new Error("sst.config.ts declares no Edge worker");
  edgeArgs = edge.args;
  secretNames = new Map(
    calls.filter((c) => c.type === "sst:sst:Secret").map((c) => [c.instance, c.name]),
  );
  const script: Record<string, unknown> = {};
  (edgeArgs.transform as { worker?: (args: object) => void } | undefined)?.worker?.(script);
  compatibility = {
    compatibilityDate: String(script.compatibilityDate),
    compatibilityFlags: (script.compatibilityFlags as string[] | undefined) ?? [],
  };

  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  const [instance] = await db.handle.db
    .select({ id: tenantInstances.id })
    .from(tenantInstances)
    .where(eq(tenantInstances.status, "active"));
  if (!instance) throw new Error("demo has no active instance");
  instanceId = instance.id;
  proxy = await startWsProxy();
  const environment = edgeArgs.environment as Record<string, unknown>;
  signing = await edgeTestSigning("sst-edge", String(unwrap(environment.AUTH_ISSUER)));
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

/** Bindings como los crea SST: `environment` en texto y cada link con su JSON `{"value": …}`. */
function bindings(): Record<string, string> {
  const values: Record<string, string> = {
    EdgeDatabaseUrl: db.edgeUrl ?? "",
    AuthSigningKeys: signing.env.AUTH_SIGNING_KEYS,
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(edgeArgs.environment as Record<string, unknown>)) {
    out[k] = String(unwrap(v));
  }
  for (const link of edgeArgs.link as object[]) {
    const name = secretNames.get(link);
    if (!name || values[name] === undefined) throw new Error(`no test value for link ${name}`);
    out[name] = JSON.stringify({ value: values[name] });
  }
  // Solo en la prueba: Postgres local por WebSocket, como se llega a Neon.
  out.NEON_WSPROXY = proxy.url;
  return out;
}

describe.each(Object.keys(SST_WORKER_CONDITIONS) as (keyof typeof SST_WORKER_CONDITIONS)[])(
  "the edge as `sst deploy` bundles it (SST %s conditions)",
  (conditions) => {
    it("starts in workerd with the deployed compatibility and serves keys, entitlements and OFREP", async () => {
      const build = (edgeArgs.build as { esbuild?: BuildOptions } | undefined)?.esbuild;
      const bundle = await bundleWorkerAsSst(String(edgeArgs.handler), build, conditions);
      const mf = new Miniflare({
        modules: true,
        scriptPath: bundle.script,
        modulesRoot: bundle.dir,
        ...compatibility,
        bindings: bindings(),
        host: "127.0.0.1",
      });
      try {
        await mf.ready;
        const edge = (path: string, init?: RequestInit) =>
          mf.dispatchFetch(
            `https://edge.farutech.com${path}`,
            init as never,
          ) as unknown as Promise<Response>;

        const jwks = await edge("/.well-known/jwks.json");
        expect(jwks.status).toBe(200);
        const keys = ((await jwks.json()) as { keys: { kid: string }[] }).keys;
        expect(keys.map((k) => k.kid)).toEqual(["sst-edge"]);

        const token = await signing.sign();
        const url = `/v1/entitlements?instanceId=${instanceId}`;
        const res = await edge(url, { headers: { authorization: `Bearer ${token}` } });
        expect(res.status).toBe(200);
        const body = (await res.json()) as {
          instanceId: string;
          features: Record<string, boolean>;
          limits: Record<string, number>;
        };
        expect(body.instanceId).toBe(instanceId);
        expect(Object.values(body.features)).toContain(true);
        expect(Object.keys(body.limits)).toContain("max_users");

        const flags = await edge("/ofrep/v1/evaluate/flags", {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ context: { targetingKey: instanceId } }),
        });
        expect(flags.status).toBe(200);
        expect(((await flags.json()) as { flags: unknown[] }).flags.length).toBeGreaterThan(0);

        const anonymous = await edge(url);
        expectProblem(
          { status: anonymous.status, headers: anonymous.headers, body: await anonymous.json() },
          401,
        );
      } finally {
        await mf.dispose();
        bundle.remove();
      }
    }, 60_000);
  },
);
