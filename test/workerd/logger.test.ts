import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleWorker, EDGE_COMPATIBILITY_DATE, type WorkerBundle } from "../support/edge";

// El logger del edge dentro de workerd: ahí pino es su versión de navegador, que sin su opción
// `browser` no redacta, no aplica los serializadores (el mensaje de drizzle lleva SQL y parámetros)
// y escribe sin nivel, hora ni servicio. Un worker de prueba, empaquetado por wrangler como el edge.

let bundle: WorkerBundle;
let lines: { method: string; args: Record<string, unknown>[] }[];

beforeAll(async () => {
  bundle = bundleWorker(fileURLToPath(new URL("./logger-worker.ts", import.meta.url)), [
    "--name",
    "logger-test",
    "--compatibility-date",
    EDGE_COMPATIBILITY_DATE,
  ]);
  const mf = new Miniflare({
    modules: true,
    scriptPath: bundle.script,
    modulesRoot: bundle.dir,
    compatibilityDate: EDGE_COMPATIBILITY_DATE,
    host: "127.0.0.1",
  });
  try {
    const res = await mf.dispatchFetch("http://logger.test/");
    lines = (await res.json()) as typeof lines;
  } finally {
    await mf.dispose();
  }
}, 120_000);

afterAll(() => bundle?.remove());

describe("the edge logger inside workerd", () => {
  it("writes one object per entry with level, time, service, bindings and message", () => {
    expect(lines.map((l) => [l.method, l.args.length])).toEqual([
      ["info", 1],
      ["error", 1],
    ]);
    for (const { args } of lines) {
      expect(args[0]).toMatchObject({
        level: expect.stringMatching(/^(info|error)$/),
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        service: "edge",
        requestId: "r-1",
        msg: expect.any(String),
      });
    }
  });

  it("redacts credentials and keeps SQL and parameters out of logged errors", () => {
    const text = JSON.stringify(lines);
    expect(text).not.toContain("leaked");
    expect(text).not.toContain("oauth_clients");
    expect(lines[0]?.args[0]).toMatchObject({
      authorization: "[redacted]",
      client: { client_secret: "[redacted]" },
    });
    expect(lines[1]?.args[0]?.err).toMatchObject({ type: "Error", stack: expect.any(String) });
  });
});
