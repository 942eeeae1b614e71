import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import { provisioningTasks, tenantInstances } from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { demoProvisionBody } from "../../../test/support/demo";
import { expectProblem } from "../../../test/support/http";
import { createTestInstance } from "../tenant-instances/test-fixtures";

type Problem = { errors?: { path: string; message: string }[] };
const pathsOf = (body: unknown) => ((body as Problem).errors ?? []).map((e) => e.path);

describe("provisioning input guards", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("pglite"));
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const tasksOf = (id: string) =>
    db().select().from(provisioningTasks).where(eq(provisioningTasks.tenantInstanceId, id));

  describe("X-Correlation-Id", () => {
    it("rejects a malformed id on PUT …/features instead of deduplicating nothing", async () => {
      const inst = await createTestInstance(db());
      const headers = { "x-correlation-id": "incident 42" };
      for (let i = 0; i < 2; i++) {
        const res = await h.request("PUT", `/api/provisioning/${inst.id}/features`, {
          token: admin,
          json: { max_users: 50 },
          headers,
        });
        expectProblem(res, 400, "validation_failed");
        expect(pathsOf(res.body)).toEqual(["header.x-correlation-id"]);
      }
      expect(await tasksOf(inst.id)).toHaveLength(0);
    });

    it("still replays the first task for a valid id", async () => {
      const inst = await createTestInstance(db());
      const headers = { "x-correlation-id": `incident-42-${newId().slice(0, 8)}` };
      const put = () =>
        h.request("PUT", `/api/provisioning/${inst.id}/features`, {
          token: admin,
          json: { max_users: 50 },
          headers,
        });
      const first = await put();
      const second = await put();
      expect(first.status).toBe(202);
      expect(second.status).toBe(202);
      expect(second.headers.get("idempotent-replayed")).toBe("true");
      expect(await tasksOf(inst.id)).toHaveLength(1);
    });

    it.each([
      ["a space", "incident 42"],
      ["an empty value", ""],
      ["too long", "x".repeat(129)],
      ["a slash", "incident/42"],
    ])("rejects %s on every provisioning route", async (_label, value) => {
      const inst = await createTestInstance(db());
      const headers = { "x-correlation-id": value };
      const calls = [
        h.request("DELETE", `/api/provisioning/${inst.id}`, { token: admin, headers }),
        h.request("POST", "/api/provisioning/provision", {
          token: admin,
          json: await demoProvisionBody(db(), `c-${newId().slice(0, 8)}`),
          headers,
        }),
        h.request("GET", "/api/provisioning/tasks", { token: admin, headers }),
        h.request("GET", `/api/provisioning/tasks/${newId()}`, { token: admin, headers }),
      ];
      for (const res of await Promise.all(calls)) {
        expectProblem(res, 400, "validation_failed");
        expect(pathsOf(res.body)).toEqual(["header.x-correlation-id"]);
      }
      expect(await tasksOf(inst.id)).toHaveLength(0);
    });
  });

  describe("__proto__ in feature maps", () => {
    const raw = (method: string, path: string, body: string) =>
      h.request(method, path, {
        token: admin,
        body,
        headers: { "content-type": "application/json" },
      });

    it("rejects customFeatures.__proto__ on provision (nothing is provisioned)", async () => {
      const instanceCode = `p-${newId().slice(0, 8)}`;
      const body = await demoProvisionBody(db(), instanceCode);
      for (const value of ["null", "true", "5"]) {
        const json = JSON.stringify(body).replace(
          /}$/,
          `,"customFeatures":{"__proto__":${value}}}`,
        );
        const res = await raw("POST", "/api/provisioning/provision", json);
        expectProblem(res, 400, "validation_failed");
        expect(pathsOf(res.body)).toContain("body.customFeatures.__proto__");
      }
      const created = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.instanceCode, instanceCode));
      expect(created).toHaveLength(0);
    });

    it("rejects __proto__ in a PUT …/features map, alone or next to a valid entry", async () => {
      const inst = await createTestInstance(db());
      for (const json of ['{"__proto__":true}', '{"max_users":10,"__proto__":5}']) {
        const res = await raw("PUT", `/api/provisioning/${inst.id}/features`, json);
        expectProblem(res, 400, "validation_failed");
        expect(pathsOf(res.body)).toContain("body.__proto__");
      }
      expect(await tasksOf(inst.id)).toHaveLength(0);
    });

    it("still accepts ordinary keys and checks other Object.prototype names as codes", async () => {
      const inst = await createTestInstance(db());
      const ok = await raw("PUT", `/api/provisioning/${inst.id}/features`, '{"max_users":10}');
      expect(ok.status).toBe(202);
      // "constructor" llega al servicio como cualquier código: no existe en el producto (422).
      const unknown = await raw(
        "PUT",
        `/api/provisioning/${inst.id}/features`,
        '{"constructor":1}',
      );
      expectProblem(unknown, 422);
    });
  });
});
