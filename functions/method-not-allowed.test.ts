import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";
import { expectProblem } from "../test/support/http";

// Un método que la ruta no tiene es un 405 con Allow, no un 404 que hace creer que la ruta no existe.
describe("admin API: method not allowed", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    h = await startAdminHarness("pglite");
    admin = await h.token(["platform_admin"]);
  });
  afterAll(async () => h?.stop());

  it.each([
    ["PUT", "/api/products", "GET, HEAD, POST"],
    ["PATCH", "/api/products", "GET, HEAD, POST"],
    ["DELETE", "/api/products", "GET, HEAD, POST"],
    ["PUT", `/api/products/${crypto.randomUUID()}`, "GET, HEAD, PATCH, DELETE"],
    ["GET", `/api/customers/${crypto.randomUUID()}/erase`, "POST"],
    ["POST", "/healthz", "GET, HEAD"],
    ["POST", "/openapi.json", "GET, HEAD"],
  ])("%s %s → 405 with Allow: %s", async (method, path, allow) => {
    // Con token o sin él: el método se decide antes que la autenticación de la ruta.
    for (const token of [admin, undefined]) {
      const res = await h.request(method, path, token ? { token } : {});
      expectProblem(res, 405, "method_not_allowed");
      expect(res.headers.get("allow")).toBe(allow);
      expect(res.body).toMatchObject({ instance: path });
    }
  });

  it("keeps 404 for unknown paths", async () => {
    const res = await h.request("PUT", "/api/nothing-here", { token: admin });
    expectProblem(res, 404, "not_found");
    expect(res.headers.get("allow")).toBeNull();
  });
});
