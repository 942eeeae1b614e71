import { Writable } from "node:stream";
import { Hono } from "hono";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AppError } from "../errors";
import { installBase } from "./base";
import { type RequestContextVariables, requestLogger } from "./request-context";

// Logs reales de pino a un stream en memoria: cada línea debe llevar los ids de su petición.
function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: pino({ level }, stream) };
}

function buildApp(level: string) {
  const { lines, logger } = capture(level);
  const app = new Hono<{
    Variables: RequestContextVariables & { deps: { logger: typeof logger } };
  }>();
  installBase(app, { logger });
  app.get("/ok", (c) => c.json({ ok: true }));
  app.get("/warns", (c) => {
    requestLogger(c).warn("something odd");
    // La segunda llamada reutiliza el mismo hijo.
    expect(requestLogger(c)).toBe(requestLogger(c));
    return c.json({ ok: true });
  });
  app.get("/fails", () => {
    throw new AppError("internal", "boom");
  });
  app.get("/raw", () => new Response("raw", { headers: { "content-type": "text/plain" } }));
  return { app, lines };
}

describe("requestContext", () => {
  it("logs every request with its request and correlation ids at info", async () => {
    const { app, lines } = buildApp("info");
    const res = await app.request("/ok", {
      headers: { "x-request-id": "req-1", "x-correlation-id": "corr-1" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("req-1");
    expect(lines).toEqual([
      expect.objectContaining({
        msg: "request completed",
        requestId: "req-1",
        correlationId: "corr-1",
        method: "GET",
        path: "/ok",
        status: 200,
      }),
    ]);
  });

  it("ignores malformed incoming ids and uses the request id as correlation id", async () => {
    const { app, lines } = buildApp("info");
    const res = await app.request("/ok", { headers: { "x-request-id": "bad id\twith spaces" } });
    const requestId = res.headers.get("x-request-id");
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(lines[0]).toMatchObject({ requestId, correlationId: requestId });
  });

  it("returns the request id on every kind of response", async () => {
    const { app } = buildApp("warn");
    for (const path of ["/ok", "/raw", "/fails", "/missing"]) {
      const res = await app.request(path, { headers: { "x-request-id": `req-${path.slice(1)}` } });
      expect(res.headers.get("x-request-id"), path).toBe(`req-${path.slice(1)}`);
    }
    const raw = await app.request("/raw");
    expect(await raw.text()).toBe("raw");
    expect(raw.headers.get("content-type")).toBe("text/plain");
  });

  it("at warn writes no request line but handler and error logs still carry the ids", async () => {
    const { app, lines } = buildApp("warn");
    await app.request("/ok", { headers: { "x-request-id": "req-quiet" } });
    expect(lines).toEqual([]);
    await app.request("/warns", { headers: { "x-request-id": "req-warn" } });
    const failed = await app.request("/fails", { headers: { "x-request-id": "req-fail" } });
    expect(failed.status).toBe(500);
    expect(lines).toEqual([
      expect.objectContaining({ msg: "something odd", requestId: "req-warn" }),
      expect.objectContaining({
        msg: "request failed",
        requestId: "req-fail",
        correlationId: "req-fail",
      }),
    ]);
  });
});
