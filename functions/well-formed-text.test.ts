import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../core/ids";
import { customers, products } from "../db/schema";
import { type AdminHarness, startSeededAdmin } from "../test/support/admin";
import { expectProblem } from "../test/support/http";

type Problem = { errors?: { path: string; message: string }[] };
const pathsOf = (body: unknown) => ((body as Problem).errors ?? []).map((e) => e.path);

// JSON.stringify escribe un surrogate suelto como "\ud800": el cuerpo es JSON válido, el texto no
// es Unicode bien formado. Postgres lo guardaría como U+FFFD: debe ser un 400 que nombre el campo.
describe("text that is not well-formed Unicode", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("pglite"));
  });
  afterAll(async () => h?.stop());

  const post = (path: string, json: unknown) => h.request("POST", path, { token: admin, json });
  const code = () => `SURR_${newId().slice(0, 6).toUpperCase()}`;

  it.each([
    ["a lone high surrogate", "\ud800"],
    ["a lone low surrogate", "Farutech \udc00 POS"],
    ["a reversed pair", "\ude00\ud83d"],
    ["a high surrogate at the end", "POS\ud83d"],
  ])("rejects %s in a product name, storing nothing", async (_label, name) => {
    const productCode = code();
    const res = await post("/api/products", { code: productCode, name });
    expectProblem(res, 400, "validation_failed");
    expect(pathsOf(res.body)).toEqual(["body.name"]);
    const stored = await h.db.handle.db
      .select()
      .from(products)
      .where(eq(products.code, productCode));
    expect(stored).toHaveLength(0);
  });

  it("names the field wherever it is: description, legal name, client name, nested limits", async () => {
    const lone = "\ud800";
    const cases: [string, unknown, string][] = [
      ["/api/products", { code: code(), name: "POS", description: lone }, "body.description"],
      [
        "/api/products",
        { code: code(), name: "POS", limits: [{ name: "registers", description: `x${lone}` }] },
        "body.limits.0.description",
      ],
      [
        "/api/customers",
        {
          legalName: `ACME${lone} S.A.`,
          taxId: `900${Date.now() % 1_000_000}-1`,
          billingEmail: "billing@acme.example",
          country: "CO",
        },
        "body.legalName",
      ],
      ["/api/admin-clients", { name: `CRM${lone}`, roles: ["support"] }, "body.name"],
    ];
    for (const [path, json, field] of cases) {
      const res = await post(path, json);
      expectProblem(res, 400, "validation_failed");
      expect(pathsOf(res.body), path).toEqual([field]);
    }
    const acme = await h.db.handle.db
      .select()
      .from(customers)
      .where(eq(customers.billingEmail, "billing@acme.example"));
    expect(acme).toHaveLength(0);
  });

  it("rejects a lone surrogate in a key too", async () => {
    const res = await h.request("POST", "/api/products", {
      token: admin,
      headers: { "content-type": "application/json" },
      body: `{"code":"${code()}","name":"POS","\\ud800":1}`,
    });
    expectProblem(res, 400, "validation_failed");
    expect(pathsOf(res.body)).toHaveLength(1);
    expect(pathsOf(res.body)[0]).toMatch(/^body/);
  });

  it("keeps accepting surrogate pairs, escaped or not", async () => {
    for (const body of [
      `{"code":"${code()}","name":"Farutech \\ud83d\\ude00 POS"}`,
      JSON.stringify({ code: code(), name: "Farutech 😀 POS" }),
    ]) {
      const res = await h.request("POST", "/api/products", {
        token: admin,
        headers: { "content-type": "application/json" },
        body,
      });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ name: "Farutech 😀 POS" });
    }
  });

  it("leaves malformed JSON and other errors to the route's own validation", async () => {
    const res = await h.request("POST", "/api/products", {
      token: admin,
      headers: { "content-type": "application/json" },
      body: '{"name":"\\ud800"',
    });
    expectProblem(res, 400);
  });
});
