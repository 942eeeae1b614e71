import { type ChildProcess, spawn } from "node:child_process";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { startNatsForTest, type TestNats, waitFor } from "../support/stack";

// El proceso de workers real: /healthz dice si vive; /readyz, si base y broker responden.
describe("worker process health and readiness", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let child: ChildProcess | undefined;
  let port: number;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    nats = await startNatsForTest();
    port = await getPort();
    child = spawn(process.execPath, ["--import", "tsx", "workers/main.ts"], {
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        NATS_URL: nats.url,
        LOG_LEVEL: "silent",
        METRICS_PORT: String(port),
      },
      stdio: "ignore",
    });
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await nats?.dispose();
    await db?.drop();
  });

  const probe = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`).catch(() => undefined);
    return res ? { status: res.status, body: (await res.json()) as unknown } : undefined;
  };

  it("reports the broker failing in /readyz while /healthz stays up, and recovers", async () => {
    const ready = await waitFor(
      async () => ((await probe("/readyz"))?.status === 200 ? probe("/readyz") : undefined),
      { timeoutMs: 30_000 },
    );
    expect(ready?.body).toEqual({ status: "ready", checks: { database: "ok", broker: "ok" } });

    await nats.stop();
    const down = await waitFor(async () => {
      const r = await probe("/readyz");
      return r?.status === 503 ? r : undefined;
    });
    expect(down.body).toEqual({
      status: "not_ready",
      checks: { database: "ok", broker: "failing" },
    });
    // Reiniciar el proceso no arregla el broker: la sonda de vida sigue bien.
    expect((await probe("/healthz"))?.status).toBe(200);

    await nats.restart();
    await waitFor(async () => ((await probe("/readyz"))?.status === 200 ? true : undefined), {
      timeoutMs: 20_000,
    });
  }, 60_000);
});
