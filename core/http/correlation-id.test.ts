import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../logger";
import { installBase } from "./base";
import {
  type RequestContextVariables,
  requestLogger,
  requireValidCorrelationId,
} from "./request-context";

type Env = { Variables: RequestContextVariables & { deps: { logger: typeof silentLogger } } };

function buildApp(strict: boolean) {
  const app = new Hono<Env>();
  installBase(app, { logger: silentLogger });
  if (strict) app.use("*", requireValidCorrelationId());
  app.get("/ids", (c) => {
    requestLogger(c);
    return c.json({ requestId: c.var.requestId, correlationId: c.var.correlationId });
  });
  return app;
}

describe("requireValidCorrelationId", () => {
  it.each(["incident 42", "", "x".repeat(129), "ñandú", "a/b"])(
    "answers 400 naming header.x-correlation-id for %j",
    async (value) => {
      const res = await buildApp(true).request("/ids", { headers: { "x-correlation-id": value } });
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(res.headers.get("x-request-id")).toBeTruthy();
      expect(await res.json()).toMatchObject({
        status: 400,
        code: "validation_failed",
        type: expect.any(String),
        title: expect.any(String),
        detail: expect.stringContaining("X-Correlation-Id"),
        errors: [{ path: "header.x-correlation-id", message: expect.any(String) }],
      });
    },
  );

  it("lets a valid or absent id through", async () => {
    const app = buildApp(true);
    const valid = await app.request("/ids", {
      headers: { "x-correlation-id": "incident-42.vet:1_a", "x-request-id": "req-1" },
    });
    expect(await valid.json()).toEqual({
      requestId: "req-1",
      correlationId: "incident-42.vet:1_a",
    });
    const absent = await app.request("/ids", { headers: { "x-request-id": "req-2" } });
    expect(await absent.json()).toEqual({ requestId: "req-2", correlationId: "req-2" });
  });

  it("is opt-in: without it (the edge) a malformed id still falls back to the request id", async () => {
    const res = await buildApp(false).request("/ids", {
      headers: { "x-correlation-id": "incident 42", "x-request-id": "req-3" },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ requestId: "req-3", correlationId: "req-3" });
  });
});
