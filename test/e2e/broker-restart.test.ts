import { and, count, eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisioningTasks } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { demoProvisionBody } from "../support/demo";
import { call } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

const REQUESTS = 60;

// nats-server se detiene y vuelve en medio de una ráfaga: toda petición aceptada termina provisionada.
describe("broker restart during a burst", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("loses none of the accepted provision requests", async () => {
    const token = await stack.adminToken();
    const accepted: string[] = [];
    const send = async (i: number) => {
      const res = await call<{ taskId: string }>(`${stack.adminUrl}/api/provisioning/provision`, {
        token,
        json: await demoProvisionBody(stack.db.handle.db, `burst-${i}`),
      });
      expect(res.status).toBe(202);
      accepted.push(res.body.taskId);
    };
    const burst = (async () => {
      for (let i = 0; i < REQUESTS; i++) await send(i);
    })();
    await waitFor(async () => (accepted.length >= REQUESTS / 4 ? true : undefined));
    await stack.nats.stop();
    await waitFor(async () => (accepted.length >= (REQUESTS * 3) / 4 ? true : undefined), {
      timeoutMs: 30_000,
    });
    await stack.nats.restart();
    await burst;
    expect(accepted).toHaveLength(REQUESTS);

    const done = await waitFor(
      async () => {
        const [row] = await stack.db.handle.db
          .select({ n: count() })
          .from(provisioningTasks)
          .where(
            and(inArray(provisioningTasks.id, accepted), eq(provisioningTasks.status, "succeeded")),
          );
        return row?.n === REQUESTS ? row : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(done.n).toBe(REQUESTS);
  }, 120_000);
});
