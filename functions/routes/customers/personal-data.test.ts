import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, publicJwksOf } from "../../../core/auth/keys";
import { createTokenSigner, createTokenVerifier } from "../../../core/auth/tokens";
import { createLogger } from "../../../core/logger";
import { offlineBus } from "../../../test/support/admin";
import { createTestDatabase, type TestDatabase } from "../../../test/support/databases";
import { expectProblem, type JsonResponse } from "../../../test/support/http";
import { createAdminApp } from "../../app";
import { suffix } from "../subscriptions/test-fixtures";

const SETTINGS = {
  issuer: "http://edge.test",
  audience: "farutech-orchestrator",
  accessTokenTtlSeconds: 300,
};

// El detalle de un 4xx va al log ("request rejected") y el borrado GDPR no alcanza los logs:
// ningún problem+json puede repetir la razón social, el TaxId ni el correo de un cliente.
describe.each(["postgres", "pglite"] as const)(
  "customer personal data in problems on %s",
  (kind) => {
    let db: TestDatabase;
    let app: ReturnType<typeof createAdminApp>;
    let token: string;
    const lines: string[] = [];

    beforeAll(async () => {
      db = await createTestDatabase(kind);
      const key = await generateSigningKey("personal-data-test");
      const sink = new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      });
      app = createAdminApp({
        db: db.handle.db,
        bus: offlineBus,
        verifier: createTokenVerifier({ jwks: publicJwksOf([key]) }, SETTINGS),
        logger: createLogger({ service: "personal-data-test", destination: sink }),
        baseDomain: "farutech.test",
      });
      const signer = await createTokenSigner([key], SETTINGS);
      token = (
        await signer.sign({
          sub: "tester",
          tenant_id: null,
          instance_ids: [],
          roles: ["platform_admin"],
        })
      ).token;
    });
    afterAll(async () => db?.drop());

    async function send(method: string, path: string, json: unknown): Promise<JsonResponse> {
      const res = await app.request(path, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(json),
      });
      return { status: res.status, headers: res.headers, body: await res.json() };
    }

    it("a duplicate tax id is a 409 that names the field, not its value, in the body and the log", async () => {
      const s = suffix();
      const taxId = `901${s}`;
      const first = {
        legalName: `Clínica Privada ${s} S.A.S.`,
        taxId,
        billingEmail: `facturas-${s}@clinica.example`,
        country: "CO",
      };
      expect((await send("POST", "/api/customers", first)).status).toBe(201);
      const dup = {
        legalName: `Otra Razón ${s} S.A.S.`,
        taxId,
        billingEmail: `otra-${s}@clinica.example`,
        country: "CO",
      };
      lines.length = 0;
      const res = await send("POST", "/api/customers", dup);
      expectProblem(res, 409, "conflict");
      expect(lines.filter((l) => l.includes("request rejected"))).toHaveLength(1);
      for (const text of [JSON.stringify(res.body), lines.join("\n")]) {
        for (const value of [taxId, s, dup.legalName, dup.billingEmail]) {
          expect(text).not.toContain(value);
        }
      }
      const problem = res.body as { detail: string; errors: { path: string }[] };
      expect(problem.detail).toContain("taxId");
      expect(problem.errors.map((e) => e.path)).toEqual(["body.taxId"]);
    });

    it("no other rejection of a customer write echoes its personal data", async () => {
      const s = suffix();
      const created = await send("POST", "/api/customers", {
        legalName: `Clínica Norte ${s}`,
        taxId: `902${s}`,
        billingEmail: `norte-${s}@clinica.example`,
        country: "CO",
      });
      expect(created.status).toBe(201);
      const id = (created.body as { id: string }).id;
      const marker = `secreto${s}`;
      lines.length = 0;
      const rejections = [
        await send("POST", "/api/customers", {
          legalName: `${marker} `.repeat(40),
          taxId: `${marker}!`,
          billingEmail: `${marker}-no-es-correo`,
          country: "XX",
        }),
        await send("PATCH", `/api/customers/${id}`, { billingEmail: `${marker}@` }),
        await send("PATCH", `/api/customers/${id}`, { legalName: "", taxId: marker }),
      ];
      for (const res of rejections) expectProblem(res, 400, "validation_failed");
      expect(lines.filter((l) => l.includes("request rejected"))).toHaveLength(rejections.length);
      expect(JSON.stringify(rejections.map((r) => r.body))).not.toContain(marker);
      expect(lines.join("\n")).not.toContain(marker);
    });
  },
);
