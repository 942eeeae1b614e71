import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import getPort from "get-port";
import { afterAll, describe, expect, it } from "vitest";
import { findNatsServer, NatsServerMissingError } from "../infra/nats/local-server";
import { waitFor } from "../test/support/stack";

interface Credentials {
  adminUrl: string;
  edgeUrl: string;
  admin: { clientId: string; clientSecret: string };
}

/** Cabecera Authorization con un token de la credencial admin que `npm start` dejó en la carpeta. */
async function adminAuth(creds: Credentials): Promise<{ authorization: string }> {
  const res = await fetch(`${creds.edgeUrl}/oauth/token`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${btoa(`${creds.admin.clientId}:${creds.admin.clientSecret}`)}`,
    },
    body: "grant_type=client_credentials",
  });
  expect(res.status).toBe(200);
  return {
    authorization: `Bearer ${((await res.json()) as { access_token: string }).access_token}`,
  };
}

/**
 * `npm start` con la línea de package.json (node_modules/.bin en el PATH, como pone npm), en su
 * propio grupo de procesos: el de primer plano de una terminal, al que va el Ctrl-C. Sin el `sh -c`
 * de npm: el shell muere con el SIGINT y el código que importa es el del orquestador.
 */
function spawnNpmStart(env: NodeJS.ProcessEnv): ChildProcess {
  const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { scripts: { start: string } };
  // Como lo corre npm: `sh -c "<script>"`.
  return spawn("sh", ["-c", pkg.scripts.start], {
    env: { ...env, PATH: `${resolve("node_modules/.bin")}${delimiter}${env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
}

/** Los nats-server vivos que usan el store de `dataDir`: su pid y su grupo de procesos. */
function natsServersOf(dataDir: string): { pid: number; pgid: number }[] {
  const config = join(dataDir, "nats", "nats-server.conf");
  return execFileSync("ps", ["-A", "-o", "pid=,pgid=,stat=,args="], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, , stat, ...args]) => !stat?.startsWith("Z") && args.join(" ").includes(config))
    .map(([pid, pgid]) => ({ pid: Number(pid), pgid: Number(pgid) }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Espera el aviso «en marcha» (su última línea dice cómo pararlo) de un `npm start` lanzado. */
async function untilRunning(proc: ChildProcess): Promise<ChildProcess> {
  let log = "";
  proc.stdout?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  proc.stderr?.resume();
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`npm start exited early:\n${log}`);
      return log.includes("Ctrl-C") ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return proc;
}

// `npm start` de verdad: PGlite, nats-server propio, las tres piezas y Ctrl-C.
/** Un `npm start` que debe negarse a arrancar: su código y su stderr. */
async function startOnce(env: NodeJS.ProcessEnv): Promise<{ code: number | null; err: string }> {
  const proc = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], { env });
  let err = "";
  proc.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => proc.once("exit", resolve));
  return { code, err };
}

describe("npm start (embedded mode)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "farutech-start-"));
  let child: ChildProcess | undefined;
  let output = "";
  let env: NodeJS.ProcessEnv = {};
  let tenantInstanceId = "";

  afterAll(() => {
    // El primero tiene su propio grupo de procesos; los otros son un solo proceso.
    if (child?.pid && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("starts everything, provisions a Standard tenant end to end and stops cleanly on a terminal's Ctrl-C", {
    timeout: 90_000,
  }, async () => {
    const adminPort = await getPort();
    const edgePort = await getPort();
    const { DATABASE_URL: _db, NATS_URL: _nats, NATS_WS_URL: _ws, ...inherited } = process.env;
    env = {
      ...inherited,
      FARUTECH_DATA_DIR: dataDir,
      ADMIN_PORT: String(adminPort),
      EDGE_PORT: String(edgePort),
      LOG_LEVEL: "warn",
    };
    child = spawnNpmStart(env);
    child.stdout?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const credentialsPath = join(dataDir, "dev-credentials.json");
    await waitFor(async () => (output.includes("Ctrl-C") ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    expect(existsSync(join(dataDir, "pglite"))).toBe(true);
    const creds = JSON.parse(readFileSync(credentialsPath, "utf8")) as Credentials;
    expect(creds.adminUrl).toBe(`http://127.0.0.1:${adminPort}`);

    const auth = await adminAuth(creds);
    const get = async <T>(url: string) => (await (await fetch(url, { headers: auth })).json()) as T;
    const customers = await get<{ items: { id: string }[] }>(
      `${creds.adminUrl}/api/customers?country=CO`,
    );
    const products = await get<{ items: { id: string; code: string }[] }>(
      `${creds.adminUrl}/api/products`,
    );
    const vet = products.items.find((p) => p.code === "FARUTECH_VET");
    const plans = await get<{ items: { id: string; code: string }[] }>(
      `${creds.adminUrl}/api/plans?productId=${vet?.id}`,
    );
    const plan = plans.items.find((p) => p.code === "VET_STARTER");
    const accepted = await fetch(`${creds.adminUrl}/api/provisioning/provision`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({
        customerId: customers.items[0]?.id,
        productId: vet?.id,
        planId: plan?.id,
        instanceCode: "start-test",
        databaseTier: "standard",
        customFeatures: { STOCK_ALERTS: true },
      }),
    });
    expect(accepted.status).toBe(202);
    ({ tenantInstanceId } = (await accepted.json()) as { tenantInstanceId: string });
    const entitlements = await waitFor(async () => {
      const e = await get<{ status: string; features: Record<string, boolean> }>(
        `${creds.edgeUrl}/v1/entitlements?instanceId=${tenantInstanceId}`,
      );
      return e.status === "active" ? e : undefined;
    });
    expect(entitlements.features).toMatchObject({
      STOCK_ALERTS: true,
      DIGITAL_RECORDS: true,
      BATCH_CONTROL: false,
    });

    // La carpeta es de un solo proceso y de un solo usuario: un segundo `npm start` sobre ella se
    // niega (antes arrancaba otro nats-server y otra PGlite sobre los mismos archivos).
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, "pglite")).mode & 0o777).toBe(0o700);
    const second = await startOnce({
      ...env,
      ADMIN_PORT: String(await getPort()),
      EDGE_PORT: String(await getPort()),
    });
    expect(second.code).toBe(1);
    const holder = Number(/is in use by process (\d+)/.exec(second.err)?.[1]);
    expect(second.err).not.toMatch(/\n\s+at /);

    // Ctrl-C en una terminal: SIGINT a todo el grupo de primer plano. El nats-server no está en
    // él (moriría antes de que los workers drenen); el orquestador lo para al final.
    const proc = child;
    const group = proc.pid ?? 0;
    const [nats, ...others] = natsServersOf(dataDir);
    expect(others).toEqual([]);
    expect(nats?.pgid).not.toBe(group);
    const exitCode = new Promise<number | null>((resolve) =>
      proc.once("exit", (code) => resolve(code)),
    );
    const logBeforeStop = output.length;
    // El orquestador, ocupado un momento cuando llega la señal (PGlite calcula en el hilo
    // principal): un envoltorio que espera su acuse (el CLI de tsx) se la reenviaría y lo mataría.
    process.kill(holder, "SIGSTOP");
    process.kill(-group, "SIGINT");
    await sleep(150);
    process.kill(holder, "SIGCONT");
    // El mismo Ctrl-C repetido al instante (otro envoltorio que lo reenvía) no es un segundo Ctrl-C.
    await sleep(50);
    process.kill(-group, "SIGINT");
    expect(await exitCode).toBe(0);
    child = undefined;
    const stopLog = output.slice(logBeforeStop);
    expect(stopLog).not.toContain("forced exit");
    expect(stopLog).not.toContain("server shutdown");
    expect(stopLog).not.toMatch(/"level":"(error|fatal)"/);
    expect(natsServersOf(dataDir)).toEqual([]);
    expect(existsSync(join(dataDir, "farutech.lock"))).toBe(false);
  });

  it("starts again on the same folder with its data, and a second Ctrl-C exits at once while the drain waits", {
    timeout: 90_000,
  }, async () => {
    expect(tenantInstanceId).not.toBe("");
    let log = "";
    const proc = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      env: { ...env, LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    proc.stdout?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    proc.stderr?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    await waitFor(async () => (log.includes("Ctrl-C") ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    // El candado del primer arranque se soltó al salir y los datos siguen: el tenant de antes.
    const creds = JSON.parse(
      readFileSync(join(dataDir, "dev-credentials.json"), "utf8"),
    ) as Credentials;
    const instance = await fetch(`${creds.adminUrl}/api/tenant-instances/${tenantInstanceId}`, {
      headers: await adminAuth(creds),
    });
    expect(instance.status).toBe(200);
    expect(((await instance.json()) as { status: string }).status).toBe("active");

    // Una petición a medio subir retiene el drenaje: el servidor espera su cuerpo.
    const edgePort = Number(new URL(creds.edgeUrl).port);
    const slow = connect(edgePort, "127.0.0.1");
    await new Promise<void>((resolve) => slow.once("connect", () => resolve()));
    slow.write(
      "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type",
    );
    const exited = new Promise<number | null>((resolve) =>
      proc.once("exit", (code) => resolve(code)),
    );
    try {
      await new Promise((r) => setTimeout(r, 300));
      proc.kill("SIGINT");
      await waitFor(async () => (log.includes('"stopping"') ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 50,
      });
      // Pasado el margen en que una señal repetida es el mismo Ctrl-C (ver scripts/start.ts).
      await sleep(1_200);
      expect(proc.exitCode).toBeNull();
      proc.kill("SIGINT");
      expect(await exited).toBe(130);
    } finally {
      slow.destroy();
    }
    child = undefined;
    expect(log).toContain("forced exit before the drain finished");
    // Cada línea es JSON con claves únicas (jq y los agregadores se quedan con una sola).
    const lines = log.split("\n").filter((l) => l.startsWith("{"));
    expect(lines.some((l) => l.includes('"component":"maintenance"'))).toBe(true);
    expect(lines.filter((l) => /("component":).*\1/.test(l))).toEqual([]);
    // Salir a la fuerza también suelta el candado: un tercer arranque no encuentra la carpeta ocupada.
    expect(existsSync(join(dataDir, "farutech.lock"))).toBe(false);
  });

  it("stops cleanly on a SIGTERM to the process npm started (a process manager, timeout, an IDE)", {
    timeout: 90_000,
  }, async () => {
    // npm le reenvía la señal a su hijo, el shell de `sh -c`: si el shell no es el orquestador
    // (exec), muere solo y el orquestador sigue vivo, con su nats-server y la carpeta tomada.
    const proc = await untilRunning(spawnNpmStart(env));
    child = proc;
    const exited = new Promise<number | null>((resolve) => proc.once("exit", resolve));
    process.kill(proc.pid ?? 0, "SIGTERM");
    expect(await exited).toBe(0);
    child = undefined;
    await waitFor(
      async () =>
        natsServersOf(dataDir).length === 0 && !existsSync(join(dataDir, "farutech.lock"))
          ? true
          : undefined,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
  });

  // Antes nadie miraba a su nats-server: muerto, la API seguía aceptando tareas (202) que ningún
  // worker recibía, y /readyz quedaba en 503 hasta que alguien reiniciara todo a mano.
  it("restarts its nats-server when it dies, and the API is ready again (clients reconnect to the same port)", {
    timeout: 90_000,
  }, async () => {
    const proc = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      env: { ...env, LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    let log = "";
    for (const stream of [proc.stdout, proc.stderr]) {
      stream?.on("data", (d: Buffer) => {
        log += d.toString();
      });
    }
    await untilRunning(proc);
    const creds = JSON.parse(
      readFileSync(join(dataDir, "dev-credentials.json"), "utf8"),
    ) as Credentials;
    const [first] = natsServersOf(dataDir);
    expect(first).toBeDefined();
    process.kill(first?.pid ?? 0, "SIGKILL");
    const second = await waitFor(
      async () => natsServersOf(dataDir).find((s) => s.pid !== first?.pid),
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(second.pid).not.toBe(first?.pid);
    await waitFor(async () => (log.includes("local nats-server restarted") ? true : undefined));
    expect(log).toContain("local nats-server exited; restarting it");
    // Los clientes vuelven a conectarse solos: /readyz mira la base y el broker.
    await waitFor(
      async () => ((await fetch(`${creds.adminUrl}/readyz`)).status === 200 ? true : undefined),
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    const exited = new Promise<number | null>((resolve) => proc.once("exit", resolve));
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    child = undefined;
    await waitFor(async () => (natsServersOf(dataDir).length === 0 ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
  });

  it.skipIf(process.platform !== "linux")(
    "takes its nats-server with it when it is killed without a chance to clean up",
    {
      timeout: 90_000,
    },
    async () => {
      const proc = await untilRunning(
        spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        }),
      );
      child = proc;
      // Fuera del grupo del orquestador, el servidor no recibe su señal: lo mata el kernel al morir
      // su padre (setpriv --pdeathsig en infra/nats/local-server.ts).
      expect(natsServersOf(dataDir)).toHaveLength(1);
      await new Promise((resolve) => proc.once("exit", resolve).kill("SIGKILL"));
      child = undefined;
      await waitFor(async () => (natsServersOf(dataDir).length === 0 ? true : undefined), {
        timeoutMs: 5_000,
        intervalMs: 100,
      });
    },
  );
});

describe("nats-server discovery", () => {
  it("explains how to install nats-server when it is missing", () => {
    expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(NatsServerMissingError);
    expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(/apt-get install nats-server/);
  });
});

describe("npm start configuration", () => {
  it.each([
    ["ADMIN_PORT", { ADMIN_PORT: "abc", LOG_LEVEL: "silent" }],
    ["LOG_LEVEL", { LOG_LEVEL: "verbose" }],
  ])(
    "refuses an invalid %s with a message naming it, without a stack trace",
    async (name, env) => {
      const { code, err } = await startOnce({ ...process.env, ...env });
      expect(code).toBe(1);
      expect(err).toContain(name);
      expect(err).not.toMatch(/\n\s+at /);
    },
    30_000,
  );

  it("refuses an ADMIN_PORT already in use with a message naming it, without a stack trace", async () => {
    const busy = createServer();
    const port = await getPort();
    await new Promise<void>((resolve) => busy.listen(port, "127.0.0.1", resolve));
    const dataDir = mkdtempSync(join(tmpdir(), "farutech-start-port-"));
    try {
      const { DATABASE_URL: _db, NATS_URL: _nats, NATS_WS_URL: _ws, ...inherited } = process.env;
      const { code, err } = await startOnce({
        ...inherited,
        FARUTECH_DATA_DIR: dataDir,
        ADMIN_PORT: String(port),
        EDGE_PORT: String(await getPort()),
        LOG_LEVEL: "warn",
      });
      expect(code).toBe(1);
      expect(err).toContain(`ADMIN_PORT`);
      expect(err).toContain(String(port));
      expect(err).not.toMatch(/\n\s+at |"stack"/);
      // Su nats-server muere con él (el kernel se lo lleva al morir su padre).
      await waitFor(async () => (natsServersOf(dataDir).length === 0 ? true : undefined), {
        timeoutMs: 5_000,
        intervalMs: 100,
      });
    } finally {
      busy.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
