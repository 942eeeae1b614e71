import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLOSE_BUDGET_MS,
  RELEASE_BUDGET_MS,
  SHUTDOWN_DEADLINE_MS,
  SHUTDOWN_SLACK_MS,
} from "../../workers/runtime/consumer";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { startNatsForTest, type TestNats, waitFor } from "../support/stack";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy";

interface LogLine {
  msg: string;
  /** ISO 8601 con milisegundos (pino isoTime). */
  time: string;
  drainTimeoutMs?: number;
}

// El plazo de 30 s cuenta desde la señal: si llega mientras los workers arrancan, el drenado
// que queda es el plazo menos lo que tardó el arranque pendiente (no el plazo entero).
describe("workers process: SIGTERM while starting", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let proxy: TcpProxy;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    nats = await startNatsForTest();
    // Cada trozo hacia y desde el broker tarda 60 ms: el arranque (conexión, streams, consumers)
    // dura segundos y el SIGTERM llega a mitad.
    proxy = await startTcpProxy(Number(new URL(nats.url).port), { delayMs: 60 });
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await proxy?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it("counts the drain deadline from the signal, not from the end of start-up", async () => {
    if (!db.url) throw new Error("postgres url missing");
    child = spawn(process.execPath, ["--import", "tsx", "workers/main.ts"], {
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        NATS_URL: `nats://127.0.0.1:${proxy.port}`,
        LOG_LEVEL: "info",
        // Mayor que lo que queda del plazo: manda el plazo contado desde la señal.
        WORKER_DRAIN_TIMEOUT_MS: String(SHUTDOWN_DEADLINE_MS),
        METRICS_PORT: String(await getPort()),
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines: LogLine[] = [];
    const seen = (msg: string) => lines.find((l) => l.msg === msg);
    const exit = new Promise<number | null>((resolve) => child?.once("exit", resolve));
    const waitForLine = (msg: string) =>
      new Promise<LogLine>((resolve, reject) => {
        const rl = createInterface({ input: child?.stdout ?? process.stdin });
        const check = () => {
          const line = seen(msg);
          if (line) resolve(line);
        };
        rl.on("line", (text) => {
          try {
            lines.push(JSON.parse(text) as LogLine);
          } catch {
            // líneas que no son JSON (no debería haberlas) no cuentan
          }
          check();
        });
        void exit.then(() =>
          reject(
            new Error(`workers exited before logging "${msg}": ${JSON.stringify(lines.slice(-3))}`),
          ),
        );
      });

    // En cuanto conecta con el broker (por el proxy lento) ya atiende señales y sigue arrancando.
    const connecting = waitForLine("workers drain deadline set");
    await waitFor(async () => (proxy.connections() > 0 ? true : undefined), {
      timeoutMs: 60_000,
    });
    child.kill("SIGTERM");
    const deadlineSet = await connecting;
    const draining = seen("workers draining");
    if (!draining || deadlineSet.drainTimeoutMs === undefined)
      throw new Error("drain logs missing");
    const startupAfterSignal = Date.parse(deadlineSet.time) - Date.parse(draining.time);
    // El arranque pendiente tardó de verdad tras la señal (si no, la prueba no probaría nada).
    expect(startupAfterSignal).toBeGreaterThan(500);
    const whole = SHUTDOWN_DEADLINE_MS - RELEASE_BUDGET_MS - CLOSE_BUDGET_MS - SHUTDOWN_SLACK_MS;
    // Los milisegundos de los logs y los del cálculo no coinciden exactos: margen de 100 ms.
    expect(deadlineSet.drainTimeoutMs).toBeLessThanOrEqual(whole - startupAfterSignal + 100);
    expect(deadlineSet.drainTimeoutMs).toBeGreaterThan(whole - startupAfterSignal - 1_000);
    expect(await exit).toBe(0);
  }, 90_000);
});
