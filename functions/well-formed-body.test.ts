import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import { installBase } from "../core/http/base";
import { validationHook } from "../core/http/problem";
import type { RequestContextVariables } from "../core/http/request-context";
import { silentLogger } from "../core/logger";
import { illFormedTextFields, isWellFormedText, wellFormedJsonBody } from "./text-input";

type Env = { Variables: RequestContextVariables & { deps: { logger: typeof silentLogger } } };

// La app mínima: el middleware delante de una ruta con su validación zod, como en la API admin.
function buildApp() {
  const app = new OpenAPIHono<Env>({ defaultHook: validationHook });
  installBase(app, { logger: silentLogger });
  app.use("/api/*", wellFormedJsonBody());
  const route = createRoute({
    method: "post",
    path: "/api/things",
    request: {
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z.strictObject({
              name: z.string().min(1),
              tags: z.array(z.object({ label: z.string() })).optional(),
              meta: z.record(z.string(), z.string()).optional(),
            }),
          },
        },
      },
    },
    responses: { 201: { description: "ok" } },
  });
  app.openapi(route, (c) => c.json(c.req.valid("json"), 201));
  return app;
}

const send = (body: string, contentType = "application/json") =>
  buildApp().request("/api/things", {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });

describe("isWellFormedText", () => {
  it("rejects lone surrogates and accepts pairs", () => {
    expect(isWellFormedText("Farutech 😀")).toBe(true);
    expect(isWellFormedText("\ud83d\ude00")).toBe(true);
    expect(isWellFormedText("")).toBe(true);
    for (const bad of ["\ud800", "\udfff", "a\ud83d", "\ude00\ud83d", "\ud83d\ud83d\ude00"]) {
      expect(isWellFormedText(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it("names every ill-formed field with the body.a.0.b paths of validation errors", () => {
    expect(
      illFormedTextFields({ a: "\ud800", b: [{ c: "ok" }, { c: "\udc00" }], ok: 1, n: null }),
    ).toEqual([
      { path: "body.a", message: "Not well-formed Unicode" },
      { path: "body.b.1.c", message: "Not well-formed Unicode" },
    ]);
    expect(illFormedTextFields({ m: { "\ud800": "x" } })).toEqual([
      { path: "body.m", message: "A key is not well-formed Unicode" },
    ]);
  });
});

describe("wellFormedJsonBody", () => {
  it("answers 400 naming the field before the route stores anything", async () => {
    const res = await send('{"name":"\\ud800","tags":[{"label":"x\\udc00"}]}');
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toMatchObject({
      code: "validation_failed",
      errors: [
        { path: "body.name", message: "Not well-formed Unicode" },
        { path: "body.tags.0.label", message: "Not well-formed Unicode" },
      ],
    });
  });

  it("accepts escaped and raw pairs, and an escaped backslash before u", async () => {
    for (const [body, name] of [
      ['{"name":"\\ud83d\\ude00"}', "😀"],
      ['{"name":"😀"}', "😀"],
      ['{"name":"\\\\ud800"}', "\\ud800"],
    ] as const) {
      const res = await send(body);
      expect(res.status, body).toBe(201);
      expect(await res.json()).toEqual({ name });
    }
  });

  it("checks +json media types with parameters and leaves other bodies to the route", async () => {
    const lone = '{"name":"\\ud800"}';
    expect((await send(lone, "application/merge-patch+json; charset=utf-8")).status).toBe(400);
    expect((await send(lone, "Application/JSON ; charset=utf-8")).status).toBe(400);
    // El validador de la ruta da su propio error a un JSON roto o a otro tipo de contenido.
    const broken = await send('{"name":"\\ud800"');
    expect(broken.status).toBe(400);
    expect(await broken.json()).not.toHaveProperty("errors");
    expect((await send(lone, "text/plain")).status).not.toBe(201);
  });
});
