import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import { plans, products } from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";

type Problem = { errors?: { path: string; message: string }[] };

describe("plan limits map keys", () => {
  let h: AdminHarness;
  let admin: string;
  let productId: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("pglite"));
    const [vet] = await h.db.handle.db
      .select()
      .from(products)
      .where(eq(products.code, "FARUTECH_VET"));
    if (!vet) throw new Error("demo data missing");
    productId = vet.id;
  });
  afterAll(async () => h?.stop());

  // Texto crudo: un literal {"__proto__": …} en JS cambiaría el prototipo en vez de crear la clave.
  const createPlan = (code: string, limits: string) =>
    h.request("POST", "/api/plans", {
      token: admin,
      headers: { "content-type": "application/json" },
      body: `{"productId":"${productId}","code":"${code}","name":"Proto","tier":"standard","price":"1.00","maxUsers":5,"limits":${limits}}`,
    });

  it.each([
    '{"__proto__":-1}',
    '{"__proto__":5}',
    '{"__proto__":{"storage_gb":1}}',
    '{"storage_gb":5,"__proto__":1}',
  ])("rejects limits %s with a 400 naming the key, creating nothing", async (limits) => {
    const code = `PROTO_${newId().slice(0, 6).toUpperCase()}`;
    const res = await createPlan(code, limits);
    expectProblem(res, 400, "validation_failed");
    expect((res.body as Problem).errors?.map((e) => e.path)).toContain("body.limits.__proto__");
    const stored = await h.db.handle.db.select().from(plans).where(eq(plans.code, code));
    expect(stored).toHaveLength(0);
  });

  it("treats __proto__ like any other invalid key ({foo:-1} was already a 400)", async () => {
    const res = await createPlan(`PROTO_${newId().slice(0, 6).toUpperCase()}`, '{"foo":-1}');
    expectProblem(res, 400, "validation_failed");
  });

  it("still creates a plan with ordinary limits", async () => {
    const res = await createPlan(`PROTO_${newId().slice(0, 6).toUpperCase()}`, "{}");
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ limits: {} });
  });
});
