import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../core/auth/keys";
import type { Database } from "../db/types";
import { type EdgeTarget, startNodeEdge, startWorkerdEdge } from "../test/support/edge";

// Un método que la ruta no tiene es un 405 problem+json con Allow, en Node y dentro de workerd.
// Nada de esto llega a la base: basta una URL que no se usa.
const targets = new Map<string, EdgeTarget>();

beforeAll(async () => {
  const env = {
    DATABASE_URL: "postgres://unused:unused@127.0.0.1:9/unused",
    AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("edge-405-1")]),
    AUTH_ISSUER: "http://edge.test",
    AUTH_AUDIENCE: "farutech-orchestrator",
    LOG_LEVEL: "silent",
  };
  targets.set("node", await startNodeEdge(env, {} as Database));
  targets.set("workerd", await startWorkerdEdge(env));
}, 120_000);

afterAll(async () => {
  for (const t of targets.values()) await t.stop();
});

describe.each(["node", "workerd"])("edge on %s: method not allowed", (runtime) => {
  const fetchEdge = (path: string, init?: RequestInit) => {
    const target = targets.get(runtime);
    if (!target) throw new Error(`no ${runtime} target`);
    return target.fetch(path, init);
  };

  it.each([
    ["GET", "/oauth/token", "POST"],
    ["GET", "/oauth/revoke", "POST"],
    ["POST", "/v1/entitlements", "GET, HEAD"],
    ["DELETE", "/v1/entitlements", "GET, HEAD"],
    ["GET", "/ofrep/v1/evaluate/flags", "POST"],
    ["GET", "/ofrep/v1/evaluate/flags/DIGITAL_RECORDS", "POST"],
    ["POST", "/ofrep/v1/configuration", "GET, HEAD"],
    ["PUT", "/.well-known/jwks.json", "GET, HEAD"],
  ])("%s %s → 405 problem+json with Allow: %s", async (method, path, allow) => {
    const res = await fetchEdge(path, { method });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toMatchObject({
      status: 405,
      code: "method_not_allowed",
      title: "Method not allowed",
      instance: path,
    });
  });

  it("keeps 404 problem+json for unknown paths", async () => {
    const res = await fetchEdge("/v1/nothing-here", { method: "POST" });
    expect(res.status).toBe(404);
    expect(res.headers.get("allow")).toBeNull();
    expect(await res.json()).toMatchObject({ status: 404, code: "not_found" });
  });

  it("keeps OFREP's 401 without a body on the allowed method", async () => {
    const res = await fetchEdge("/ofrep/v1/evaluate/flags", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ context: { targetingKey: crypto.randomUUID() } }),
    });
    expect(res.status).toBe(401);
    expect(await res.text()).toBe("");
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="farutech"');
  });
});
