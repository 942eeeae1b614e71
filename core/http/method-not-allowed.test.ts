import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { PROBLEM_CONTENT_TYPE, problemErrorHandler, problemNotFound } from "./problem";

function buildApp(): Hono {
  const app = new Hono();
  app.onError(problemErrorHandler());
  app.notFound(problemNotFound(app));
  // Un middleware en todo: no cuenta como un método de la ruta.
  app.use("*", async (_c, next) => next());
  app.get("/items", (c) => c.json([]));
  app.post("/items", (c) => c.json({}, 201));
  app.delete("/items/:id", (c) => c.body(null, 204));
  app.patch("/items/:id", (c) => c.json({}));
  app.post("/actions/run", (c) => c.json({}));
  return app;
}

describe("problemNotFound with the app's routes", () => {
  const app = buildApp();

  it.each([
    ["PUT", "/items", "GET, HEAD, POST"],
    ["DELETE", "/items", "GET, HEAD, POST"],
    ["GET", "/items/42", "PATCH, DELETE"],
    ["POST", "/items/42", "PATCH, DELETE"],
    ["GET", "/actions/run", "POST"],
    ["HEAD", "/actions/run", "POST"],
    ["OPTIONS", "/items", "GET, HEAD, POST"],
  ])("%s %s → 405 with Allow: %s", async (method, path, allow) => {
    const res = await app.request(path, { method });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(res.headers.get("content-type")).toBe(PROBLEM_CONTENT_TYPE);
    if (method === "HEAD") return;
    expect(await res.json()).toEqual({
      type: "https://docs.farutech.com/problems/method_not_allowed",
      title: "Method not allowed",
      status: 405,
      detail: `${method} is not allowed on ${path}; allowed: ${allow}`,
      code: "method_not_allowed",
      instance: path,
    });
  });

  it("keeps 404 for a path no method serves", async () => {
    const res = await app.request("/nothing/here", { method: "PUT" });
    expect(res.status).toBe(404);
    expect(res.headers.get("allow")).toBeNull();
    expect(await res.json()).toMatchObject({ code: "not_found", status: 404 });
  });

  it("keeps serving the allowed methods, HEAD included through GET", async () => {
    expect((await app.request("/items")).status).toBe(200);
    expect((await app.request("/items", { method: "HEAD" })).status).toBe(200);
    expect((await app.request("/items/1", { method: "DELETE" })).status).toBe(204);
  });

  it("without the app (old signature) still answers 404", async () => {
    const bare = new Hono();
    bare.notFound(problemNotFound());
    bare.get("/x", (c) => c.text("x"));
    expect((await bare.request("/x", { method: "POST" })).status).toBe(404);
  });
});
