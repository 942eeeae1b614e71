import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClients, plans, products, provisioningTasks, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createApiClient } from "../support/clients";
import { startTestStack, type TestStack } from "../support/stack";

const run = promisify(execFile);
const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** El primer bloque ```bash que sigue a `heading` en el README. */
function bashBlockAfter(heading: string): string {
  const at = README.indexOf(heading);
  if (at < 0) throw new Error(`README has no "${heading}"`);
  const block = /```bash\n([\s\S]*?)```/.exec(README.slice(at));
  if (!block?.[1]) throw new Error(`README has no bash block after "${heading}"`);
  return block[1];
}

// Los ejemplos con curl del README, tal como están escritos, contra el stack real (API admin,
// edge, workers, JetStream y Postgres). Cada curl pasa por un envoltorio con --fail-with-body: un
// ejemplo que responde 4xx/5xx hace fallar la prueba (el README usa `curl -s`, que no fallaría).
describe("the README's curl examples", () => {
  let stack: TestStack;
  let dir: string;

  beforeAll(async () => {
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
    dir = mkdtempSync(join(tmpdir(), "farutech-readme-"));
    const { id, secret } = await createApiClient(stack.db.handle.db, {
      kind: "admin",
      roles: ["platform_admin"],
    });
    // La misma forma que .data/dev-credentials.json de `npm start`.
    writeFileSync(
      join(dir, "dev-credentials.json"),
      JSON.stringify({
        adminUrl: stack.adminUrl,
        edgeUrl: stack.edgeUrl,
        admin: { clientId: id, clientSecret: secret },
      }),
    );
  });
  afterAll(async () => {
    await stack?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("run as written: walkthrough, catalog, If-Match, features, suspension, clients, deprovision and audit", {
    timeout: 60_000,
  }, async () => {
    const walkthrough = bashBlockAfter("## Recorrido con curl")
      .replace("CRED=.data/dev-credentials.json", `CRED=${join(dir, "dev-credentials.json")}`)
      .replaceAll("/tmp/accepted.json", join(dir, "accepted.json"));
    const examples = bashBlockAfter("Ejemplos (con `TOKEN`").replaceAll(
      "/tmp/accepted.json",
      join(dir, "accepted.json"),
    );
    expect(walkthrough).toContain("/api/provisioning/provision");
    expect(examples).toContain("If-Match: $ETAG");
    // Entre los dos bloques, lo que haría quien lee: esperar a que la tarea termine (paso 4).
    const waitForTask = `
for _ in $(seq 1 100); do
  STATUS=$(curl -s -H "$AUTH" "$ADMIN/api/provisioning/tasks/$(jq -r .taskId ${join(dir, "accepted.json")})" | jq -r .status)
  [ "$STATUS" = succeeded ] && break
  sleep 0.2
done
[ "$STATUS" = succeeded ] || { echo "provisioning task ended $STATUS" >&2; exit 1; }
`;
    const script = [
      "set -euo pipefail",
      'curl() { command curl --fail-with-body "$@"; }',
      walkthrough,
      waitForTask,
      examples,
    ].join("\n");
    const { stdout } = await run("bash", ["-c", script], {
      cwd: dir,
      timeout: 50_000,
      maxBuffer: 10 * 1024 * 1024,
    }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`README example failed: ${err.message}\n${err.stdout}\n${err.stderr}`);
    });

    const accepted = JSON.parse(readFileSync(join(dir, "accepted.json"), "utf8")) as {
      tenantInstanceId: string;
      status: string;
    };
    expect(accepted.status).toBe("provisioning");
    const instanceId = accepted.tenantInstanceId;
    // El paso 5 imprimió las cabeceras del edge (curl -si) con su ETag.
    expect(stdout).toMatch(/^etag: /im);

    const db = stack.db.handle.db;
    const [pos] = await db.select().from(products).where(eq(products.code, "FARUTECH_POS"));
    expect(pos?.description).toBe("Punto de venta");
    const posPlans = await db
      .select()
      .from(plans)
      .where(and(eq(plans.productId, pos?.id ?? ""), eq(plans.code, "POS_STANDARD")));
    expect(posPlans).toHaveLength(1);
    const kinds = (
      await db
        .select({ kind: provisioningTasks.kind })
        .from(provisioningTasks)
        .where(eq(provisioningTasks.tenantInstanceId, instanceId))
    ).map((t) => t.kind);
    expect(kinds.sort()).toEqual(["deprovision", "provision", "update_features"].sort());
    const [client] = await db
      .select()
      .from(apiClients)
      .where(eq(apiClients.name, "Vet norte (producción)"));
    expect(client?.instanceIds).toEqual([instanceId]);
    const [instance] = await db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.id, instanceId));
    expect(instance?.instanceCode).toBe("norte");
    // La última orden lista la auditoría de la instancia: al menos la suspensión y su reactivación.
    expect(stdout).toContain('"action"');
  });
});
